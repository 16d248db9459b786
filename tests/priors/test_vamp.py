"""VampPrior: the prior contract with a bound encoder, its density against torch.distributions' mixture, and a cell
that trains with it (the harness binds the encoder)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from harness import Prior
from harness.cli import main
from harness.testing import PriorContract
from harness_plugins.priors.vamp import VampPrior

from conftest import write_config


def _encoder(latent_dim: int = 2) -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 32), nn.SiLU(), nn.Linear(32, 2 * latent_dim))


def _bound(components: int = 5, latent_dim: int = 2) -> VampPrior:
    prior = VampPrior(latent_dim=latent_dim, components=components)
    prior.bind_encoder(_encoder(latent_dim), (1, 4, 4))
    return prior


class TestVamp(PriorContract):
    @pytest.fixture
    def prior(self) -> Prior:
        return _bound()


def test_the_density_is_the_mixture_of_the_encoders_posteriors_at_the_pseudo_inputs():
    prior = _bound(components=7, latent_dim=3)
    encoder = _encoder(3)
    encoder.load_state_dict(prior._encoder[0].state_dict())
    with torch.no_grad():
        mean, logvar = encoder(prior.pseudo_inputs).chunk(2, dim=-1)
        mixture = MixtureSameFamily(Categorical(logits=torch.zeros(7)), Independent(Normal(mean, (0.5 * logvar).exp()), 1))
        z = torch.randn(50, 3)
        torch.testing.assert_close(prior.log_prob(z), mixture.log_prob(z), rtol=1e-5, atol=1e-5)


def test_without_an_encoder_it_says_what_is_missing():
    with pytest.raises(RuntimeError, match="bind_encoder"):
        VampPrior(latent_dim=2).sample(3)


def test_a_cell_trains_with_the_encoder_the_harness_binds(tmp_path):
    cfg = write_config(tmp_path / "b.yaml", priors={"vamp": {"components": 10}}, regularizers=["kl"],
                       evaluators={"reconstruction": {}, "prior_fit": {"samples": 200}})
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    (result,) = [json.loads(p.read_text()) for p in out.glob("cells/*/result.json")]
    assert result["status"] == "done" and result["metrics"]["prior_fit.nll"] < 50
