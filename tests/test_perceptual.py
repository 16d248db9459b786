"""The VGG19 perceptual reconstruction term (model.perceptual): layer names, the term against torchvision's own
VGG19 trunk computed directly, its place in L_φψ, and the offline weights check before training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn

from conftest import write_config
from harness.api import GaussianPosterior
from harness.cli import main
from harness.config import BenchmarkConfig
from harness.grid import expand
from harness.model.likelihoods import GaussianLikelihood
from harness.model.perceptual import PerceptualLoss, vgg19_trunk
from harness.vgg19 import LAYERS, PAPER_LAYERS, RELU_INDICES
from harness.model.checkpoint import CHECKPOINT
from harness.model.train import Model, training_step
from harness_plugins.priors.gaussian import GaussianPrior
from harness_plugins.regularizers.kl import KLRegularizer

VGG19_FILE = "vgg19-dcbb9e9d.pth"


def _torchvision_features() -> nn.Sequential:
    """torchvision's own VGG19 trunk (random weights): the independent reference."""
    torch.manual_seed(0)
    return torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["E"])


def _stand_in_weights(path: Path, features: nn.Sequential, last: int) -> None:
    """A weights file in torchvision's key layout (``features.N.weight``), cut after layer ``last`` to stay small."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {f"features.{k}": v for k, v in features.state_dict().items() if int(k.split(".")[0]) <= last}
    torch.save(state, path)


def test_layer_names_index_the_relus_of_torchvision_vgg19_and_the_trunk_has_its_keys_and_shapes():
    features = _torchvision_features()
    assert len(LAYERS) == 16 and set(PAPER_LAYERS) <= set(LAYERS)
    assert [i for i, m in enumerate(features) if isinstance(m, nn.ReLU)] == sorted(RELU_INDICES.values())
    # relu<b>_1 follows the (b-1)-th max-pool: the block numbering of the paper's layer names.
    pools = [i for i, m in enumerate(features) if isinstance(m, nn.MaxPool2d)]
    assert [RELU_INDICES[f"relu{b}_1"] for b in range(2, 6)] == [p + 2 for p in pools[:4]]
    ours = vgg19_trunk(RELU_INDICES["relu4_1"]).state_dict()
    theirs = {k: v for k, v in features.state_dict().items() if int(k.split(".")[0]) <= RELU_INDICES["relu4_1"]}
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}


def test_term_equals_the_normalised_feature_distance_computed_with_torchvision_vgg19():
    features = _torchvision_features().eval()
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    loss = PerceptualLoss(PAPER_LAYERS, weight=2.5, trunk_state=state)
    torch.manual_seed(1)
    x, x_hat = torch.rand(3, 1, 16, 16), torch.rand(3, 1, 16, 16)

    def direct(images: torch.Tensor) -> list[torch.Tensor]:
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        h, taps = (images.repeat(1, 3, 1, 1) - mean) / std, []
        for index, module in enumerate(features[:21]):
            h = module(h)
            if index in {1, 6, 11, 20}:  # relu1_1, relu2_1, relu3_1, relu4_1 in torchvision's features
                taps.append(h.clone())
        return taps

    with torch.no_grad():
        expected = sum(((a - b) ** 2).mean(dim=(1, 2, 3)) for a, b in zip(direct(x_hat), direct(x)))
        expected = 2.5 * 0.5 * (16 * 16) * expected
        assert torch.allclose(loss(x, x_hat), expected, rtol=1e-5)
        assert torch.equal(loss(x, x), torch.zeros(3))


def test_weights_without_the_needed_layers_are_refused_naming_the_missing_keys():
    state = {f"features.{k}": v for k, v in vgg19_trunk(RELU_INDICES["relu1_1"]).state_dict().items()}
    with pytest.raises(ValueError, match=r"lack features\.2\.bias, features\.2\.weight, features\.5\.bias"):
        PerceptualLoss(["relu2_1"], weight=1.0, trunk_state=state)


def test_term_joins_the_reconstruction_loss_of_l_phi_psi_and_never_trains_the_trunk():
    torch.manual_seed(0)
    trunk_state = {f"features.{k}": v for k, v in vgg19_trunk(RELU_INDICES["relu2_1"]).state_dict().items()}
    perceptual = PerceptualLoss(["relu1_1", "relu2_1"], weight=1.0, trunk_state=trunk_state)
    before = {k: v.clone() for k, v in perceptual.state_dict().items()}

    def model(with_perceptual: bool) -> Model:
        torch.manual_seed(0)
        return Model(
            encoder=nn.Sequential(nn.Flatten(), nn.Linear(64, 4)),
            decoder=nn.Sequential(nn.Linear(2, 64), nn.Sigmoid(), nn.Unflatten(1, (1, 8, 8))),
            likelihood=GaussianLikelihood(0.1), prior=GaussianPrior(latent_dim=2), regularizer=KLRegularizer(),
            perceptual=perceptual if with_perceptual else None,
        )  # fmt: skip

    x = torch.rand(5, 1, 8, 8)
    with_term, plain = model(True), model(False)
    torch.manual_seed(1)
    rec_with = training_step(with_term, x, beta=1.0)[0]
    torch.manual_seed(1)
    rec_plain = training_step(plain, x, beta=1.0)[0]

    # The same reparameterised draw, computed by hand on the untouched copy of the initial networks.
    reference = model(False)
    torch.manual_seed(1)
    mean, logvar = reference.encoder(x).chunk(2, dim=-1)
    x_hat = reference.decoder(GaussianPosterior(mean, logvar).rsample())
    with torch.no_grad():
        expected = perceptual(x, x_hat).mean()
    assert float(rec_with - rec_plain) == pytest.approx(float(expected), rel=1e-5)
    assert all(not p.requires_grad for p in perceptual.parameters())
    assert all(torch.equal(before[k], v) for k, v in perceptual.state_dict().items())
    assert "perceptual" not in with_term.modules()  # checkpoints leave the frozen trunk out


def test_a_run_without_the_vgg19_weights_exits_2_before_training_naming_the_file(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    model = {"architecture": "mlp", "latent_dim": 2, "perceptual": {"layers": ["relu1_1"]}}
    cfg = write_config(tmp_path / "b.yaml", model=model)
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 2
    assert not (out / "cells").exists()
    error, fix = capsys.readouterr().err.strip().splitlines()
    assert error == f"error: {cfg}: benchmarks.tiny.model.perceptual: the VGG19 weights are not available offline"
    assert VGG19_FILE in fix and str(tmp_path / "torch" / "hub" / "checkpoints") in fix
    assert "model.perceptual.weights_path" in fix and "model.perceptual.download: true" in fix


def test_a_run_with_stand_in_vgg19_weights_trains_and_keeps_the_trunk_out_of_checkpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    _stand_in_weights(tmp_path / "torch" / "hub" / "checkpoints" / VGG19_FILE, _torchvision_features(),
                      last=RELU_INDICES["relu2_1"])  # fmt: skip
    base = {"architecture": "mlp", "latent_dim": 2, "likelihood": "gaussian", "gamma": 0.05}
    plain_cfg = write_config(tmp_path / "plain.yaml", model=base, regularizers=["kl"])
    cfg = write_config(tmp_path / "b.yaml", regularizers=["kl"],
                       model={**base, "perceptual": {"layers": ["relu1_1", "relu2_1"], "weight": 0.5}})
    assert main(["run", str(plain_cfg), "--out", str(tmp_path / "plain"), "--quiet"]) == 0
    assert main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    (cell_dir,) = (tmp_path / "out" / "cells").iterdir()
    (plain_dir,) = (tmp_path / "plain" / "cells").iterdir()
    assert cell_dir.name != plain_dir.name  # the perceptual term is part of the cell's identity
    result = json.loads((cell_dir / "result.json").read_text())
    assert result["status"] == "done", result
    assert result["cell"]["model"]["perceptual"] == {"weight": 0.5, "layers": ["relu1_1", "relu2_1"], "download": False}
    assert "perceptual" not in json.loads((plain_dir / "result.json").read_text())["cell"]["model"]
    checkpoint = torch.load(cell_dir / CHECKPOINT, weights_only=True)
    assert not any("trunk" in key for part in checkpoint.values() if isinstance(part, dict) for key in part)


def test_a_run_on_vectors_fails_the_cell_saying_the_term_needs_images(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    _stand_in_weights(tmp_path / "torch" / "hub" / "checkpoints" / VGG19_FILE, _torchvision_features(), last=1)
    cfg = write_config(tmp_path / "b.yaml", datasets={"moons": {}}, regularizers=["kl"], sample_grid=0,
                       model={"architecture": "mlp", "latent_dim": 2, "perceptual": {"layers": ["relu1_1"]}})
    assert main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet"]) == 1
    (result,) = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("cells/*/result.json")]
    assert result["status"] == "failed"
    assert "model.perceptual needs images with 1 or 3 channels" in result["reason"]


def test_model_variants_inherit_the_benchmark_perceptual_term_and_null_switches_it_off(registry):
    bench = BenchmarkConfig.model_validate({
        "datasets": ["digits"],
        "model": {"latent_dim": 2, "perceptual": {"weight": 3.0}},
        "models": {
            "inherits": {"priors": ["gaussian"], "regularizers": ["kl"]},
            "switched-off": {"priors": ["gaussian"], "regularizers": ["kl"], "model": {"perceptual": None}},
            "own": {"priors": ["gaussian"], "regularizers": ["kl"], "model": {"perceptual": {"layers": ["relu3_2"]}}},
        },
    })
    cells = {cell.variant: cell for cell in expand("b", bench, registry, "b.yaml")}
    assert cells["inherits"].model["perceptual"] == {"weight": 3.0, "layers": list(PAPER_LAYERS), "download": False}
    assert "perceptual" not in cells["switched-off"].model
    assert cells["own"].model["perceptual"]["layers"] == ["relu3_2"]
    assert cells["own"].model["perceptual"]["weight"] == 1.0  # a variant's section replaces the benchmark's whole
