"""The ``zuko`` prior: zuko's flow families pass the prior contract, its density is zuko's own, and a family needs no
code beyond its name in YAML."""

from __future__ import annotations

import json

import pytest
import torch
import zuko
from torch import Tensor

from harness import Prior
from harness.cli import main
from harness.testing import PriorContract
from harness_plugins.priors.zuko_flows import FAMILIES, ZukoPrior

from conftest import perturbed, write_config


class TestZukoNSF(PriorContract):
    @pytest.fixture
    def prior(self) -> Prior:
        return perturbed(ZukoPrior(latent_dim=3, flow="nsf", transforms=2, hidden=16), 0.1)


class TestZukoMAFWithoutStandardizing(PriorContract):
    @pytest.fixture
    def prior(self) -> Prior:
        return perturbed(ZukoPrior(latent_dim=2, flow="maf", transforms=2, hidden=16, layers=1, standardize=False), 0.1)


class TestZukoNSFConditionedOnImages(PriorContract):
    @pytest.fixture
    def prior(self) -> Prior:
        return perturbed(ZukoPrior(latent_dim=2, flow="nsf", transforms=2, hidden=16, layers=1,
                                    condition_shape=(1, 8, 8)), 0.1)  # fmt: skip

    @pytest.fixture
    def cond(self) -> Tensor:
        pair = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(5))
        return pair[torch.arange(64) % 2]


def test_the_density_is_zukos_own_flow_with_the_same_weights():
    prior = perturbed(ZukoPrior(latent_dim=4, flow="nsf", transforms=2, hidden=8, layers=1, standardize=False), 0.1)
    twin = zuko.flows.NSF(4, 0, transforms=2, hidden_features=(8,))
    twin.load_state_dict({k.removeprefix("flow."): v for k, v in prior.state_dict().items() if k.startswith("flow.")})
    z = torch.randn(32, 4)
    torch.testing.assert_close(prior.log_prob(z), twin().log_prob(z), rtol=1e-6, atol=1e-6)


def test_standardizing_adds_the_actnorm_log_determinant():
    prior = perturbed(ZukoPrior(latent_dim=3, flow="maf", transforms=1, hidden=8, layers=1), 0.1)
    z = 4 * torch.randn(64, 3) + 2
    prior.train()
    prior.log_prob(z)  # the first batch sets the ActNorm layer
    prior.eval()
    with torch.no_grad():
        u, logdet = prior.actnorm(z)
    torch.testing.assert_close(prior.log_prob(z), prior.flow().log_prob(u) + logdet, rtol=1e-6, atol=1e-6)
    assert abs(float(u.mean())) < 1e-5 and abs(float(u.std(unbiased=False)) - 1) < 1e-4


def test_every_zuko_family_is_offered_by_name():
    assert {"nsf", "maf", "naf", "realnvp", "nice", "cnf"} <= set(FAMILIES)


def test_an_unknown_family_is_one_error_line_listing_the_families(tmp_path, capsys):
    cfg = write_config(tmp_path / "b.yaml", priors={"zuko": {"flow": "spline"}})
    assert main(["validate", str(cfg), "--config-only"]) == 2
    err = capsys.readouterr().err
    assert "benchmarks.tiny.priors.zuko.flow" in err and "'nsf'" in err and "'maf'" in err


def test_a_family_no_built_in_benchmark_uses_trains_from_its_name_alone(tmp_path):
    cfg = write_config(tmp_path / "b.yaml", priors={"zuko": {"flow": "sospf", "transforms": 1, "hidden": 16, "layers": 1}},
                       regularizers=["kl"])
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    (result,) = [json.loads(p.read_text()) for p in out.glob("cells/*/result.json")]
    assert result["status"] == "done" and result["cell"]["prior_options"]["flow"] == "sospf"
