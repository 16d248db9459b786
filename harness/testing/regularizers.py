"""``RegularizerContract``: what the harness relies on from a regularizer (penalty, gradients, state)."""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from harness.api import GaussianPosterior, Prior, Regularizer

from harness.testing.packing import packed_and_alone
from harness.testing.support import _DEVICES, _DTYPES, _NoDensity, _PostHoc, _StandardNormal, _check_tensor, _reloaded


def _posterior(latent_dim: int, n: int, dtype: torch.dtype, device: str, seed: int = 0) -> GaussianPosterior:
    """q(z|x) for ``n`` rows whose mean and log-variance are leaves that require gradients (the encoder's output)."""
    g = torch.Generator().manual_seed(seed)
    mean = (0.3 + 0.8 * torch.randn(n, latent_dim, generator=g)).to(device=device, dtype=dtype).requires_grad_()
    logvar = (-1.0 + 0.3 * torch.randn(n, latent_dim, generator=g)).to(device=device, dtype=dtype).requires_grad_()
    return GaussianPosterior(mean, logvar)


class _Encoded(nn.Module):
    """A regularizer with a trainable posterior: the encoder's output as parameters, for the packing check."""

    def __init__(self, regularizer: Regularizer, mean: Tensor, logvar: Tensor) -> None:
        super().__init__()
        self.regularizer = regularizer
        self.mean = nn.Parameter(mean.clone())
        self.logvar = nn.Parameter(logvar.clone())


def _state_equal(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    if a.keys() != b.keys():
        return False
    return all(torch.equal(a[k], b[k]) if isinstance(a[k], Tensor) else True for k in a)


class RegularizerContract:
    """What the harness relies on from a ``Regularizer``. Provide a ``regularizer`` fixture (a new instance).

    ``prior`` (default: a standard normal in 3 dimensions) is the prior the regularizer is used with.
    """

    @pytest.fixture
    def prior(self) -> Prior:
        return _StandardNormal(latent_dim=3)

    def test_declares_a_name_and_its_flags(self, regularizer: Regularizer) -> None:
        assert isinstance(regularizer, Regularizer), f"{type(regularizer).__name__} is not a harness.Regularizer"
        assert isinstance(type(regularizer).name, str) and type(regularizer).name, "set the class attribute `name`"
        assert isinstance(regularizer.uses_beta, bool) and isinstance(regularizer.requires_density, bool)

    def test_incompatibility_is_a_reason_or_none(self, regularizer: Regularizer, prior: Prior) -> None:
        cls = type(regularizer)
        for prior_cls in (type(prior), _StandardNormal, _NoDensity, _PostHoc):
            reason = cls.incompatibility(prior_cls)
            assert reason is None or (isinstance(reason, str) and reason), (
                f"incompatibility({prior_cls.__name__}) must return None or a non-empty reason, got {reason!r}"
            )
        if cls.requires_density:
            assert cls.incompatibility(_NoDensity), "requires_density = True but a prior without density is accepted"

    @pytest.mark.parametrize("device", _DEVICES)
    @pytest.mark.parametrize("dtype", _DTYPES)
    def test_penalty_is_one_finite_value_per_row(
        self, regularizer: Regularizer, prior: Prior, dtype: torch.dtype, device: str
    ) -> None:
        regularizer.to(device=device, dtype=dtype).train()
        prior.to(device=device, dtype=dtype).train()
        posterior = _posterior(prior.latent_dim, 16, dtype, device)
        penalty = regularizer.penalty(posterior.rsample(), posterior, prior)
        _check_tensor(penalty, "penalty(z, posterior, prior)", (16,), dtype, device)
        logs = regularizer.update(posterior.rsample().detach(), prior)
        assert isinstance(logs, Mapping), "update() must return a mapping of name -> float"

    def test_penalty_gradient_reaches_the_encoder_when_beta_matters(
        self, regularizer: Regularizer, prior: Prior
    ) -> None:
        posterior = _posterior(prior.latent_dim, 32, torch.float32, "cpu")
        z = posterior.rsample()
        penalty = regularizer.penalty(z, posterior, prior)
        if not regularizer.uses_beta:
            assert torch.equal(penalty.detach(), torch.zeros_like(penalty)), (
                "uses_beta = False declares R identically zero (one cell instead of one per β), but the penalty is not"
            )
            return
        assert penalty.requires_grad, "the penalty has no gradient: it cannot move the encoder"
        inputs = [posterior.mean, posterior.logvar]
        grad_mean, grad_logvar = torch.autograd.grad(penalty.sum(), inputs, allow_unused=True)
        assert grad_mean is not None and bool(grad_mean.abs().sum() > 0), "no gradient reaches the posterior mean"
        assert bool(torch.isfinite(grad_mean).all()), "the penalty's gradient is not finite"
        assert grad_logvar is None or bool(torch.isfinite(grad_logvar).all()), "the penalty's gradient is not finite"

    def test_penalty_has_no_side_effects(self, regularizer: Regularizer, prior: Prior) -> None:
        posterior = _posterior(prior.latent_dim, 32, torch.float32, "cpu")
        z = posterior.rsample().detach()
        regularizer.penalty(z, posterior, prior)  # lazy layers may build themselves on the first call
        state = {k: v.clone() if isinstance(v, Tensor) else v for k, v in regularizer.state_dict().items()}
        values = []
        for _ in range(2):
            torch.manual_seed(8)  # a penalty may draw random numbers (prior samples); the harness seeds them
            values.append(regularizer.penalty(z, posterior, prior).detach())
        assert torch.equal(*values), "two penalty() calls on the same input under the same seed differ"
        assert _state_equal(state, regularizer.state_dict()), "penalty() changed the regularizer's state"

    def test_update_returns_finite_floats_and_leaves_the_codes_alone(
        self, regularizer: Regularizer, prior: Prior
    ) -> None:
        codes = _posterior(prior.latent_dim, 64, torch.float32, "cpu").rsample().detach()
        before = codes.clone()
        for _ in range(3):
            logs = regularizer.update(codes, prior)
            assert isinstance(logs, Mapping), "update() must return a mapping of name -> float"
            for key, value in logs.items():
                assert isinstance(key, str) and isinstance(value, float), f"update() log {key!r}: {value!r} not a float"
                assert math.isfinite(value), f"update() log {key!r} is not finite: {value}"
        assert torch.equal(codes, before) and codes.grad is None, "update() modified the codes"

    def test_packed_copies_penalise_and_train_the_encoder_like_copies_alone(
        self, regularizer: Regularizer, prior: Prior
    ) -> None:
        """``packable = True`` promises that the penalty of stacked copies called through vmap (as
        ``harness.model.packed`` trains cells with it together) equals each copy's alone, gradients included: here
        each copy's posterior is a trainable stand-in for its encoder, stepped by Adam on β·R alone and packed."""
        if not type(regularizer).packable:
            pytest.skip(f"regularizer {regularizer.name!r} does not declare packable = True")
        prior = prior.float()
        copies = []
        for k in range(3):
            q = _posterior(prior.latent_dim, 64, torch.float32, "cpu", seed=k)
            copies.append(_Encoded(copy.deepcopy(regularizer), q.mean.detach(), q.logvar.detach()))
        eps = [(torch.randn(64, prior.latent_dim, generator=torch.Generator().manual_seed(10 + k)),) for k in range(3)]

        def loss(member: nn.Module, noise: Tensor) -> Tensor:
            posterior = GaussianPosterior(member.mean, member.logvar)
            z = posterior.mean + torch.exp(0.5 * posterior.logvar) * noise
            return member.regularizer.penalty(z, posterior, prior, None).mean()

        alone, packed, moved = packed_and_alone(copies, loss, eps, lambda m: [m.mean, m.logvar])
        assert torch.allclose(packed, alone, rtol=1e-5, atol=1e-5), f"penalty packed {packed} vs alone {alone}"
        assert moved < 1e-4, f"the posteriors trained packed differ from alone by {moved:.3g}"


    def test_state_dict_round_trip_resumes_training_identically(
        self, regularizer: Regularizer, prior: Prior
    ) -> None:
        restored = copy.deepcopy(regularizer)  # a new instance with the same options
        posterior = _posterior(prior.latent_dim, 64, torch.float32, "cpu")
        torch.manual_seed(6)
        for _ in range(3):
            regularizer.penalty(posterior.rsample(), posterior, prior)
            regularizer.update(posterior.rsample().detach(), prior)
        restored.load_state_dict(_reloaded(regularizer.state_dict()))
        z = posterior.rsample().detach()

        def penalties() -> list[Tensor]:
            out = []
            for reg in (restored, regularizer):
                torch.manual_seed(8)
                out.append(reg.penalty(z, posterior, prior))
            return out

        torch.testing.assert_close(*penalties(), msg="penalty() differs after a state_dict reload")
        codes = posterior.rsample().detach()
        for reg in (regularizer, restored):
            torch.manual_seed(7)
            reg.update(codes, prior)
        torch.testing.assert_close(
            *penalties(), msg="one more update() after a state_dict reload differs (optimizer state not saved?)"
        )
