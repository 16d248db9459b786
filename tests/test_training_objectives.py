"""The two objectives of the paper (§3): exact gradient routing and equivalence to joint ELBO ascent at β = 1."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import Tensor, nn

from harness import GaussianPosterior, Prior
from harness.model.likelihoods import GaussianLikelihood
from harness.model.train import Model, training_step
from harness_plugins.regularizers.kl import KLRegularizer


class LearnedDiagonalGaussian(Prior):
    """A prior with parameters, so that routing θ's gradient matters."""

    name = "learned-diagonal"

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = latent_dim
        self.mean = nn.Parameter(torch.randn(latent_dim) * 0.3)
        self.log_std = nn.Parameter(torch.randn(latent_dim) * 0.3)

    def log_prob(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        return (-0.5 * ((z - self.mean) / self.log_std.exp()) ** 2 - self.log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def sample(self, n: int, cond: Tensor | None = None) -> Tensor:
        return self.mean + self.log_std.exp() * torch.randn(n, self.latent_dim)


def _model(optimizer: str) -> Model:
    torch.manual_seed(0)
    model = Model(
        encoder=nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 4)),
        decoder=nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 6)),
        likelihood=GaussianLikelihood(0.1),
        prior=LearnedDiagonalGaussian(2),
        regularizer=KLRegularizer(analytic=False),
        lr=0.01,
        prior_lr=0.01,
    )
    if optimizer == "sgd":
        model.opt_model = torch.optim.SGD(model.model_params(), lr=0.01)
        model.opt_prior = torch.optim.SGD(model.prior_params(), lr=0.01)
    return model


def _all_params(model: Model) -> list[Tensor]:
    return [p.detach().clone() for p in (*model.model_params(), *model.prior_params())]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_beta_one_kl_updates_equal_one_joint_elbo_ascent_step(optimizer):
    x = torch.randn(32, 6)
    harness_model = _model(optimizer)
    reference = copy.deepcopy(harness_model)
    params = [*reference.model_params(), *reference.prior_params()]
    joint = torch.optim.SGD(params, lr=0.01) if optimizer == "sgd" else torch.optim.Adam(params, lr=0.01)

    torch.manual_seed(1)
    training_step(harness_model, x, beta=1.0)

    torch.manual_seed(1)
    mean, logvar = reference.encoder(x).chunk(2, dim=-1)
    q = GaussianPosterior(mean, logvar)
    z = q.rsample()
    elbo = -reference.likelihood.nll(x, reference.decoder(z)) + reference.prior.log_prob(z) - q.log_prob(z)
    joint.zero_grad()
    (-elbo.mean()).backward()
    joint.step()

    for got, want in zip(_all_params(harness_model), _all_params(reference)):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_prior_parameters_learn_only_from_the_fit_loss_never_from_beta():
    x = torch.randn(32, 6)
    model = _model("sgd")
    before = [p.detach().clone() for p in model.prior_params()]
    torch.manual_seed(1)
    mean, logvar = model.encoder(x).chunk(2, dim=-1)
    codes = GaussianPosterior(mean, logvar).rsample().detach()
    expected_grads = torch.autograd.grad(model.prior.fit_loss(codes), model.prior_params())

    torch.manual_seed(1)
    training_step(model, x, beta=7.0)  # a large β would show up in θ if L_φψ leaked into it
    for b, g, p in zip(before, expected_grads, model.prior_params()):
        torch.testing.assert_close(p.detach(), b - 0.01 * g)


def test_encoder_and_decoder_never_learn_from_the_prior_fit():
    x = torch.randn(32, 6)
    model = _model("sgd")
    model.regularizer = KLRegularizer(analytic=False)
    reference = copy.deepcopy(model)
    torch.manual_seed(1)
    training_step(model, x, beta=0.0)
    # With β = 0 the encoder/decoder step is plain reconstruction: compute it by hand.
    torch.manual_seed(1)
    mean, logvar = reference.encoder(x).chunk(2, dim=-1)
    z = GaussianPosterior(mean, logvar).rsample()
    loss = reference.likelihood.nll(x, reference.decoder(z)).mean()
    grads = torch.autograd.grad(loss, reference.model_params())
    for p, p0, g in zip(model.model_params(), reference.model_params(), grads):
        torch.testing.assert_close(p.detach(), p0.detach() - 0.01 * g)


def test_prior_steps_take_that_many_theta_steps_on_the_same_codes_and_one_autoencoder_step():
    x = torch.randn(32, 6)
    model = _model("sgd")
    model.prior_steps = 3
    reference = copy.deepcopy(model)
    torch.manual_seed(1)
    training_step(model, x, beta=0.5)

    torch.manual_seed(1)
    mean, logvar = reference.encoder(x).chunk(2, dim=-1)
    codes = GaussianPosterior(mean, logvar).rsample().detach()
    theta = [p.detach().clone().requires_grad_() for p in reference.prior_params()]
    for _ in range(3):  # three SGD steps of the fit loss, by hand, on the one batch of codes
        with torch.no_grad():
            for p, t in zip(reference.prior_params(), theta):
                p.copy_(t)
        grads = torch.autograd.grad(reference.prior.fit_loss(codes), reference.prior_params())
        theta = [(t - 0.01 * g).detach() for t, g in zip(theta, grads)]
    for p, t in zip(model.prior_params(), theta):
        torch.testing.assert_close(p.detach(), t)
    # φ and ψ took one step, as with prior_steps = 1.
    once = _model("sgd")
    torch.manual_seed(1)
    training_step(once, x, beta=0.5)
    for p, q in zip(model.model_params(), once.model_params()):
        torch.testing.assert_close(p.detach(), q.detach())


def test_one_prior_step_leaves_no_key_in_the_cell_so_old_cells_keep_their_ids(tmp_path):
    from harness.config import load_config
    from harness.grid import expand
    from harness.registry import load_registry

    from conftest import TINY, write_config

    ids = {}
    for name, steps in (("unset", None), ("one", 1), ("three", 3)):
        train = {**TINY["train"], **({} if steps is None else {"prior_steps": steps})}
        cfg = write_config(tmp_path / f"{name}.yaml", train=train)
        cells = expand("tiny", load_config(cfg).benchmarks["tiny"], load_registry(), "b.yaml")
        ids[name] = {c.cell_id for c in cells}
        assert ("prior_steps" in cells[0].train) == (steps == 3)
    assert ids["unset"] == ids["one"]
    assert not ids["one"] & ids["three"]
