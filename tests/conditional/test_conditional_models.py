"""Conditional models end to end: the conditional Gaussian prior's KL against its closed form, the Variational U-Net's
shapes, and a conditional benchmark on digits whose flow prior at β = 0 uses both z and y."""

from __future__ import annotations

import json

import torch
from torch.distributions import Normal, kl_divergence

from harness.api import GaussianPosterior
from harness.cli import main
from harness_plugins.architectures.conv import Conv
from harness_plugins.architectures.mlp import MLP
from harness_plugins.priors.gaussian import GaussianPrior
from harness_plugins.regularizers.kl import KLRegularizer

from conftest import write_config


def test_the_kl_to_a_conditional_gaussian_prior_equals_torch_distributions():
    torch.manual_seed(0)
    prior = GaussianPrior(latent_dim=3, condition_shape=(4,))
    with torch.no_grad():
        for p in prior.parameters():
            p.add_(0.5 * torch.randn_like(p))  # move μ(y) away from its zero start
    cond = torch.eye(4)[torch.tensor([0, 1, 2, 3, 1])]
    posterior = GaussianPosterior(torch.randn(5, 3), torch.randn(5, 3))
    mu = prior.mean_net(cond)
    expected = kl_divergence(
        Normal(posterior.mean, posterior.logvar.mul(0.5).exp()), Normal(mu, torch.ones_like(mu))
    ).sum(dim=-1)
    got = KLRegularizer().penalty(posterior.rsample(), posterior, prior, cond)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    assert float(mu.detach().abs().max()) > 0.1, "the check needs a mean that depends on y"


def test_the_unconditional_gaussian_has_no_parameters_as_before():
    assert list(GaussianPrior(latent_dim=3).parameters()) == []


def test_the_variational_unet_reads_x_and_y_and_decodes_z_and_y_to_the_image_shape():
    encoder, decoder = Conv(channels=8).build((1, 28, 28), 5, condition_shape=(1, 28, 28))
    x, y, z = torch.rand(3, 1, 28, 28), torch.rand(3, 1, 28, 28), torch.randn(3, 5)
    assert encoder(x, y).shape == (3, 10)
    out = decoder(z, y)
    assert out.shape == (3, 1, 28, 28)
    assert not torch.allclose(out, decoder(z, torch.rand(3, 1, 28, 28))), "the decoder ignores y"
    assert not torch.allclose(out, decoder(torch.randn(3, 5), y)), "the decoder ignores z"


def test_the_mlp_concatenates_a_vector_condition():
    encoder, decoder = MLP(hidden=16, layers=1).build((1, 8, 8), 2, condition_shape=(10,))
    y = torch.eye(10)[:4]
    assert encoder(torch.rand(4, 1, 8, 8), y).shape == (4, 4)
    assert decoder(torch.randn(4, 2), y).shape == (4, 1, 8, 8)


def test_conv_refuses_a_vector_condition_with_a_pointer_to_mlp():
    try:
        Conv().build((1, 28, 28), 4, condition_shape=(10,))
    except ValueError as exc:
        assert "use mlp" in str(exc)
    else:
        raise AssertionError("conv built a U-Net over a vector condition")


def test_a_conditional_flow_at_beta_zero_uses_z_and_y_and_the_run_draws_fig7(tmp_path):
    cfg = write_config(
        tmp_path / "b.yaml",
        datasets={"digits": {"condition": {"downsample": 2}}},
        priors={"realnvp": {"depth": 2, "hidden": 16}, "gaussian": {}},
        regularizers=["kl"],
        beta=[0.0],
        train={"epochs": 3, "batch_size": 128, "lr": 0.003},
        evaluators={"latent_usage": {"pairs": 200}, "reconstruction": {}, "prior_fit": {"samples": 200}},
        primary_metric="latent_usage",
    )
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    results = [json.loads(p.read_text()) for p in sorted(out.glob("cells/*/result.json"))]
    flow = next(r for r in results if r["cell"]["prior"] == "realnvp")
    assert flow["status"] == "done", flow.get("reason")
    assert flow["metrics"]["latent_usage.z"] > 0, "samples for one condition are all the same"
    assert flow["metrics"]["latent_usage.y"] > 0, "the output does not depend on the condition"
    assert 0 < flow["metrics"]["latent_usage"] < 1
    assert (out / "cells" / flow["cell"]["cell_id"] / "conditional-samples.png").is_file()
    assert (out / "tiny-conditional-samples.png").is_file()
    assert "conditional samples (paper Fig. 7)" in (out / "leaderboard.md").read_text()


def _write_pairs(folder, count: int) -> None:
    """``count`` 64×32 PNGs: A (left) a flat grey level, B (right) a horizontal gradient scaled by it."""
    from PIL import Image

    folder.mkdir(parents=True)
    for i in range(count):
        level = 40 + 20 * i
        a = torch.full((32, 32, 3), level, dtype=torch.uint8)
        b = (torch.linspace(0, 1, 32).view(1, 32, 1).expand(32, 32, 3) * level).to(torch.uint8)
        Image.fromarray(torch.cat([a, b], dim=1).numpy()).save(folder / f"{i:03d}.png")


def test_paired_images_train_a_conditional_unet_from_their_own_condition(tmp_path):
    root = tmp_path / "pairs"
    _write_pairs(root / "train", 8)
    _write_pairs(root / "val", 4)
    cfg = write_config(
        tmp_path / "b.yaml",
        datasets={"paired-images": {"root": str(root), "size": 32}},
        model={"architecture": "conv", "latent_dim": 4, "likelihood": "gaussian", "gamma": 0.05,
               "architecture_options": {"channels": 8}},
        priors={"gaussian": {}}, regularizers=["kl"], train={"epochs": 1, "batch_size": 4, "lr": 0.001},
    )  # fmt: skip
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    (result,) = [json.loads(p.read_text()) for p in out.glob("cells/*/result.json")]
    assert result["status"] == "done" and "condition" not in result["cell"]["dataset_options"]
    assert (out / "cells" / result["cell"]["cell_id"] / "conditional-samples.png").is_file()


class _PointPrior(torch.nn.Module):
    """Every code is the same: a decoder fed by it cannot vary with z (a collapsed sampler)."""

    conditional = True

    def sample(self, n: int, cond: torch.Tensor | None = None) -> torch.Tensor:
        return torch.ones(n, 4)


def test_latent_usage_of_a_collapsed_sampler_is_zero_while_the_condition_still_moves_the_output():
    from torch import nn

    from harness.api import EvalData, TrainedModel
    from harness_plugins.evaluators.latent_usage import LatentUsageEvaluator

    class Decoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Linear(4 + 64, 64)

        def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            return self.net(torch.cat([z, y.flatten(1)], dim=1)).view(-1, 1, 8, 8)

    torch.manual_seed(0)
    conditions = torch.randint(0, 256, (20, 1, 8, 8), dtype=torch.uint8)
    model = TrainedModel(nn.Identity(), Decoder(), _PointPrior(), torch.sigmoid, 4, (1, 8, 8),  # type: ignore[arg-type]
                         torch.device("cpu"), 0, None, conditions)  # fmt: skip
    with torch.inference_mode():
        usage = LatentUsageEvaluator(pairs=40, batch_size=10).evaluate(model, None)  # type: ignore[arg-type]
    assert usage["z"] == 0.0 and usage[""] == 0.0
    assert usage["y"] > 0.01
