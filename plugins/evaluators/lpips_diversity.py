"""LPIPS diversity: mean perceptual distance (Zhang et al. 2018, the ``lpips`` package) between pairs of samples.

Unconditional models: pairs of independent prior samples. Conditional models, as the paper measures diversity in
§6 (Table 2): for each of ``conditions`` test conditions, pairs of samples drawn for that condition, all pairs
averaged; it is 0 when the decoder ignores z.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlparse

import lpips
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor
from torchvision.models import AlexNet_Weights, SqueezeNet1_1_Weights, VGG16_Weights, WeightsEnum

from harness import EvalData, Evaluator, PluginUnavailable, TrainedModel, hookimpl
from harness.api import checked_options
from harness_plugins.evaluators.pairs import sample_pairs

#: The torchvision ImageNet weights lpips loads for each trunk (its legacy ``pretrained=True`` maps to these).
BACKBONES: dict[str, WeightsEnum] = {
    "alex": AlexNet_Weights.IMAGENET1K_V1,
    "vgg": VGG16_Weights.IMAGENET1K_V1,
    "squeeze": SqueezeNet1_1_Weights.IMAGENET1K_V1,
}
#: AlexNet's stride-4 first layer and two 3×3 max-pools leave nothing of inputs under 31 pixels a side (8×8
#: digits, 28×28 MNIST): smaller images are upsampled so their short side is 32.
MIN_SIDE = 32


def backbone_path(net: str) -> Path:
    """Where torchvision's pretrained loading looks for the trunk weights: torch.hub's checkpoint folder
    (``$TORCH_HOME/hub/checkpoints``, ``~/.cache/torch/hub/checkpoints`` by default)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(BACKBONES[net].url).path).name


def require_backbone(net: str) -> None:
    """Raise PluginUnavailable naming the file and folder when the trunk weights for ``net`` are missing."""
    path = backbone_path(net)
    if not path.is_file():
        raise PluginUnavailable(
            f"the LPIPS {net} backbone weights are not available offline: no {path.name} in {path.parent}",
            f"Place {path.name} (from {BACKBONES[net].url}) in {path.parent}/ or use the feature_diversity "
            "evaluator (offline)",
        )


def load_lpips(net: str) -> lpips.LPIPS:
    """LPIPS in eval mode: the trunk's ImageNet weights from torch.hub's checkpoint folder, the linear layers
    (``lpips/weights/v0.1/<net>.pth``) from inside the lpips package."""
    # Checked here too: with the file gone since the pre-run check, torchvision would download it mid-run.
    require_backbone(net)
    with warnings.catch_warnings():
        # lpips still passes torchvision's deprecated ``pretrained=True``; the warning is not ours to fix.
        warnings.simplefilter("ignore", UserWarning)
        return lpips.LPIPS(net=net, verbose=False)


def lpips_inputs(images: Tensor) -> Tensor:
    """Decoded images [B, C, H, W] in [0, 1] as lpips expects them: 3 channels in [-1, 1], short side >= 32."""
    if images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    height, width = images.shape[-2:]
    side = min(height, width)
    if side < MIN_SIDE:
        size = (round(height * MIN_SIDE / side), round(width * MIN_SIDE / side))
        images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
    return images * 2 - 1


class LPIPSDiversityEvaluator(Evaluator):
    """Mean LPIPS between ``pairs`` pairs of samples (of one condition each, spread over the first ``conditions``
    test conditions, for a conditional model); higher means more diverse samples.

    ``net`` picks the trunk (``alex`` as in the LPIPS paper's default). Its ImageNet weights must already be in
    torch.hub's checkpoint folder: the check runs before training and nothing is downloaded mid-run.
    """

    name = "lpips_diversity"
    metrics = {"": "max"}

    @checked_options
    def __init__(
        self,
        pairs: Annotated[int, Field(ge=1)] = 1000,
        net: Literal["alex", "vgg", "squeeze"] = "alex",
        batch_size: Annotated[int, Field(ge=1)] = 100,
        conditions: Annotated[int, Field(ge=1, description="test conditions pairs are drawn for")] = 100,
    ) -> None:
        self.pairs = pairs
        self.net = net
        self.batch_size = batch_size
        self.conditions = conditions

    def check_available(self) -> None:
        require_backbone(self.net)

    def evaluate(self, model: TrainedModel, data: EvalData) -> Mapping[str, float]:
        if len(model.data_shape) != 3:
            raise ValueError(f"lpips_diversity needs images; the model generates vectors of shape {model.data_shape}")
        metric = load_lpips(self.net).to(model.device)
        distances = [
            metric(lpips_inputs(first), lpips_inputs(second)).flatten()
            for first, second in sample_pairs(model, self.pairs, self.batch_size, self.conditions)
        ]
        return {"": float(torch.cat(distances).mean())}


@hookimpl
def harness_register_evaluators(register: Callable[[type[Evaluator]], None]) -> None:
    register(LPIPSDiversityEvaluator)
