"""VGG19's layer names, without torch: the config validates ``perceptual.layers`` against them and the perceptual
network (harness.model.perceptual) builds its trunk from the same layout, so the two cannot disagree."""

from __future__ import annotations

#: VGG19's convolutional trunk ("E" in Simonyan & Zisserman): output channels of each 3×3 conv, "M" a 2×2 max-pool.
VGG19_TRUNK: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M",
)  # fmt: skip


def _relu_indices() -> dict[str, int]:
    """``relu<block>_<conv>`` → its index in torchvision's ``vgg19().features`` (conv, ReLU pairs; pools between)."""
    names: dict[str, int] = {}
    block, conv, index = 1, 0, 0
    for item in VGG19_TRUNK:
        if item == "M":
            block, conv, index = block + 1, 0, index + 1
        else:
            conv += 1
            names[f"relu{block}_{conv}"] = index + 1
            index += 2
    return names


RELU_INDICES = _relu_indices()
LAYERS = tuple(RELU_INDICES)
#: The layers of the paper (§5.2): relu1_1, relu2_1, relu3_1 and relu4_1.
PAPER_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
