"""The RealNVP prior: the Prior contract plus what is special to a flow (inverse, log-det, conditioning)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import Tensor
from torch.autograd.functional import jacobian
from torch.distributions import Independent, Normal

from conftest import write_config
from harness.cli import main
from harness.registry import load_registry
from harness.run.store import Store
from harness_plugins.priors.realnvp import RealNVPPrior

RING_RADIUS = 1.5
#: The fine grid densities are integrated on: trapezoid rule, 300 × 300 points over [-4, 4]².
GRID = torch.linspace(-4.0, 4.0, 300, dtype=torch.float64)


def perturbed(flow: RealNVPPrior, scale: float = 0.3) -> RealNVPPrior:
    """Add noise to every parameter, so the zero-initialised couplings are no longer the identity."""
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(scale * torch.randn_like(p))
    return flow


def initialise_actnorm(flow: RealNVPPrior, x: Tensor, cond: Tensor | None = None) -> None:
    """Run one training-mode batch through the flow, then switch to eval mode."""
    flow.train()
    flow.to_base(x, cond)
    flow.eval()


def grid_points() -> Tensor:
    xx, yy = torch.meshgrid(GRID, GRID, indexing="ij")
    return torch.stack([xx.flatten(), yy.flatten()], dim=1)


def integral_on_grid(flow: RealNVPPrior, cond: Tensor | None = None) -> float:
    """∫ pθ over [-4, 4]² by the trapezoid rule (float64 evaluation)."""
    points = grid_points().to(flow.dtype)
    c = None if cond is None else cond.expand(points.shape[0], -1)
    with torch.no_grad():
        density = flow.log_prob(points, c).exp().double().reshape(len(GRID), len(GRID))
    return float(torch.trapezoid(torch.trapezoid(density, GRID, dim=1), GRID))


def ring(n: int, generator: torch.Generator) -> Tensor:
    theta = 2 * math.pi * torch.rand(n, generator=generator)
    radius = RING_RADIUS + 0.1 * torch.randn(n, generator=generator)
    return torch.stack([radius * theta.cos(), radius * theta.sin()], dim=1)


def fit(flow: RealNVPPrior, x: Tensor, cond: Tensor | None, steps: int, seed: int = 0) -> RealNVPPrior:
    """Adam on ``fit_loss`` with minibatches of 512; returns the flow in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(flow.fit_parameters(), lr=5e-3)
    flow.train()
    for _ in range(steps):
        idx = torch.randint(0, x.shape[0], (512,), generator=generator)
        loss = flow.fit_loss(x[idx], None if cond is None else cond[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return flow.eval()


def ring_distance(samples: Tensor) -> Tensor:
    return (samples.norm(dim=1) - RING_RADIUS).abs()


@pytest.fixture(scope="module")
def ring_flow() -> RealNVPPrior:
    torch.manual_seed(0)
    x = ring(3000, torch.Generator().manual_seed(1))
    return fit(RealNVPPrior(latent_dim=2, depth=4, hidden=32), x, None, steps=500)


# --- the bijection and its density -------------------------------------------------------------------------


@pytest.mark.parametrize(("latent_dim", "cond_dim"), [(4, 0), (5, 0), (5, 3)])
def test_from_base_inverts_to_base_in_float64_with_initialised_actnorm_and_random_weights(latent_dim, cond_dim):
    torch.manual_seed(0)
    flow = RealNVPPrior(latent_dim=latent_dim, depth=4, hidden=16, cond_dim=cond_dim).double()
    cond = torch.randn(256, cond_dim, dtype=torch.float64) if cond_dim else None
    initialise_actnorm(flow, 3.0 + 2.0 * torch.randn(256, latent_dim, dtype=torch.float64), cond)
    assert all(bool(a.initialized) for a in flow.actnorms)
    perturbed(flow)
    z = 3.0 + 2.0 * torch.randn(256, latent_dim, dtype=torch.float64)
    z0 = flow.to_base(z, cond)
    assert (z0 - z).abs().max() > 0.1  # not trivially the identity
    assert (flow.from_base(z0, cond) - z).abs().max() < 1e-6


@pytest.mark.parametrize("cond_dim", [0, 2])
def test_log_prob_matches_change_of_variables_with_autograd_jacobian(cond_dim):
    torch.manual_seed(0)
    flow = RealNVPPrior(latent_dim=3, depth=4, hidden=16, cond_dim=cond_dim).double()
    cond, init_cond = (torch.randn(n, cond_dim, dtype=torch.float64) if cond_dim else None for n in (5, 64))
    initialise_actnorm(flow, torch.randn(64, 3, dtype=torch.float64), init_cond)
    perturbed(flow)
    z = torch.randn(5, 3, dtype=torch.float64)
    got = flow.log_prob(z, cond)
    for i in range(5):
        c = None if cond is None else cond[i : i + 1]
        jac = jacobian(lambda v: flow.to_base(v[None], c)[0], z[i])
        # The base mean is a linear map of cond: μ = W c + b.
        mean = torch.zeros(3, dtype=torch.float64) if c is None else flow.base_mean.weight @ c[0] + flow.base_mean.bias
        base = Independent(Normal(mean, 1.0), 1).log_prob(flow.to_base(z[i : i + 1], c)[0])
        torch.testing.assert_close(got[i], base + torch.linalg.slogdet(jac).logabsdet, rtol=0, atol=1e-10)


def test_every_dimension_is_transformed_for_odd_latent_dim():
    # Rows of the Jacobian equal to a unit vector would be dimensions that both couplings leave unchanged.
    torch.manual_seed(0)
    flow = perturbed(RealNVPPrior(latent_dim=5, depth=2, hidden=16, actnorm=False).double())
    jac = jacobian(lambda v: flow.to_base(v[None])[0], torch.randn(5, dtype=torch.float64))
    eye = torch.eye(5, dtype=torch.float64)
    assert all(not torch.allclose(jac[i], eye[i]) for i in range(5))


def test_new_flow_is_the_identity_and_actnorm_standardises_the_first_training_batch():
    torch.manual_seed(0)
    x = torch.tensor([4.0, -2.0, 0.5]) + torch.tensor([3.0, 0.2, 1.0]) * torch.randn(500, 3)
    flow = RealNVPPrior(latent_dim=3, depth=3, hidden=8).eval()
    assert torch.equal(flow.to_base(x), x)  # eval mode: ActNorm waits for a training batch
    flow.train()
    z0 = flow.to_base(x)
    torch.testing.assert_close(z0.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(z0.std(0, unbiased=False), torch.ones(3), atol=1e-5, rtol=0)


# --- fitted densities ----------------------------------------------------------------------------------------


def test_ring_flow_integrates_to_one_on_a_grid(ring_flow):
    assert integral_on_grid(ring_flow) == pytest.approx(1.0, abs=0.02)


def test_ring_flow_samples_lie_on_the_ring_and_an_untrained_flow_fails_the_same_check(ring_flow):
    # Thresholds: the ring has radius 1.5 and noise σ 0.1. Fitted flows (seeds 0-3) give a median distance
    # of ≈ 0.09 and 96-99 % of samples within 0.5; an untrained flow standardised on the ring (a Gaussian)
    # gives ≈ 0.53 and 48 %.
    def on_ring(flow: RealNVPPrior) -> bool:
        with torch.no_grad():
            distance = ring_distance(flow.sample(20_000))
        return bool(distance.median() < 0.25 and (distance < 0.5).float().mean() > 0.9)

    torch.manual_seed(0)
    untrained = RealNVPPrior(latent_dim=2, depth=4, hidden=32)
    initialise_actnorm(untrained, ring(3000, torch.Generator().manual_seed(1)))
    assert not on_ring(untrained)
    assert on_ring(ring_flow)


def test_fitted_flow_gives_finite_samples_and_log_probs_for_a_hundred_thousand_draws(ring_flow):
    torch.manual_seed(0)
    with torch.no_grad():
        samples = ring_flow.sample(100_000)
        assert samples.shape == (100_000, 2)
        assert torch.isfinite(samples).all()
        assert torch.isfinite(ring_flow.log_prob(samples)).all()


def test_conditions_give_different_densities_and_each_integrates_to_one():
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(2)
    label = torch.randint(0, 2, (3000,), generator=generator)
    centres = torch.tensor([[-1.5, 0.0], [1.5, 0.0]])
    x = centres[label] + 0.3 * torch.randn(3000, 2, generator=generator)
    cond = torch.nn.functional.one_hot(label, 2).float()
    flow = fit(RealNVPPrior(latent_dim=2, depth=4, hidden=32, cond_dim=2), x, cond, steps=300)
    one_hot = torch.eye(2)
    with torch.no_grad():
        at_centres = torch.stack([flow.log_prob(centres, one_hot[k].expand(2, -1)) for k in range(2)])
    # at_centres[k, j]: log density of centre j under condition k. Each condition puts the peak of its own
    # N(centre, 0.3² I) at its centre (log 1/(2π·0.09) ≈ 0.57; fits give 0.55-0.62) and ≈ 50 nats less on
    # the other centre.
    peak = -math.log(2 * math.pi * 0.3**2)
    torch.testing.assert_close(at_centres.diagonal(), torch.full((2,), peak), atol=0.3, rtol=0)
    assert at_centres[0, 0] - at_centres[1, 0] > 10.0
    assert at_centres[1, 1] - at_centres[0, 1] > 10.0
    for k in range(2):
        assert integral_on_grid(flow, one_hot[k : k + 1]) == pytest.approx(1.0, abs=0.02)


def test_a_conditional_flow_rejects_a_missing_or_misshaped_cond():
    flow = RealNVPPrior(latent_dim=2, depth=2, hidden=8, cond_dim=3)
    with pytest.raises(ValueError, match="cond_dim=3"):
        flow.log_prob(torch.randn(4, 2))
    with pytest.raises(ValueError, match=r"expected \[4, 3\]"):
        flow.sample(4, torch.randn(5, 3))
    assert flow.sample(4, torch.randn(4, 3)).shape == (4, 2)


# --- checkpoints, dtypes, options ----------------------------------------------------------------------------


def test_state_dict_round_trip_gives_identical_log_prob_and_does_not_reinitialise_actnorm(tmp_path: Path):
    torch.manual_seed(0)
    flow = RealNVPPrior(latent_dim=3, depth=3, hidden=16)
    initialise_actnorm(flow, 2.0 + 5.0 * torch.randn(128, 3))
    perturbed(flow)
    z = torch.randn(64, 3)
    expected = flow.log_prob(z)

    restored = RealNVPPrior(latent_dim=3, depth=3, hidden=16)
    restored.load_state_dict(flow.state_dict())
    restored.eval()
    assert torch.equal(restored.log_prob(z), expected)
    restored.train()
    restored.log_prob(-7.0 + 0.1 * torch.randn(128, 3))  # a batch with other statistics must not re-initialise
    assert torch.equal(restored.log_prob(z), expected)

    torch.save(flow.state_dict(), tmp_path / "prior.pt")
    from_disk = RealNVPPrior(latent_dim=3, depth=3, hidden=16)
    from_disk.load_state_dict(torch.load(tmp_path / "prior.pt", weights_only=True))
    assert all(bool(a.initialized) for a in from_disk.actnorms)
    assert torch.equal(from_disk.eval().log_prob(z), expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_outputs_follow_the_modules_dtype(dtype):
    torch.manual_seed(0)
    flow = RealNVPPrior(latent_dim=4, depth=2, hidden=8, cond_dim=2).to(dtype)
    z = torch.randn(16, 4, dtype=dtype)
    cond = torch.randint(0, 2, (16, 2))  # integer conditions are cast to the flow's dtype
    flow.train()
    loss = flow.fit_loss(z, cond)
    loss.backward()
    assert loss.dtype == dtype and torch.isfinite(loss)
    assert flow.log_prob(z, cond).dtype == dtype
    assert flow.to_base(z, cond).dtype == dtype and flow.from_base(z, cond).dtype == dtype
    assert flow.sample(16, cond).dtype == dtype


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"latent_dim": 2, "depth": 0}, "depth must be at least 1"),
        ({"latent_dim": 2, "hidden": 0}, "hidden must be at least 1"),
        ({"latent_dim": 2, "layers": 0}, "layers must be at least 1"),
        ({"latent_dim": 1}, "latent_dim must be at least 2"),
        ({"latent_dim": 2, "cond_dim": -1}, "cond_dim must be at least 0"),
    ],
)
def test_invalid_options_raise_value_error_naming_the_option(options, message):
    with pytest.raises(ValueError, match=message):
        RealNVPPrior(**options)


# --- the harness ---------------------------------------------------------------------------------------------


def test_registered_by_prior_harness_and_trains_end_to_end(tmp_path: Path):
    info = load_registry().plugins["prior"]["realnvp"]
    assert info.cls is RealNVPPrior and info.distribution == "prior-harness"
    cfg = write_config(tmp_path / "b.yaml", priors={"realnvp": {"depth": 2, "hidden": 16}}, regularizers=["kl", "none"])
    assert main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet", "--device", "cpu"]) == 0
    statuses = [r.status for r in Store(tmp_path / "out").results()]
    assert statuses == ["done", "done"]

