"""``PriorContract``: what the harness relies on from a prior (density, sampling, inverse, fitting, state)."""

from __future__ import annotations

import copy
import math
from typing import ClassVar

import pytest
import torch
from torch import Tensor

from harness.api import Prior

from harness.testing.importance import ImportanceSample
from harness.testing.packing import packed_and_alone
from harness.testing.support import _DEVICES, _DTYPES, _check_tensor, _reloaded, _rows, _same


def default_codes(latent_dim: int, n: int = 512, seed: int = 0) -> Tensor:
    """Codes like an encoder's: two clusters away from the origin, neither unit scale nor centred (float32 [n, D])."""
    g = torch.Generator().manual_seed(seed)
    sign = torch.tensor([1.0, -1.0]).repeat(latent_dim)[:latent_dim]
    centres = torch.stack([1.5 * sign, -0.5 * sign])
    which = torch.randint(0, 2, (n,), generator=g)
    return centres[which] + 0.6 * torch.randn(n, latent_dim, generator=g)


def _conditioned(codes: Tensor, cond: Tensor | None) -> Tensor:
    """Codes whose location depends on their condition, so a conditional prior fitted to them must use it."""
    if cond is None:
        return codes
    c = _rows(cond, len(codes)).flatten(1).to(codes)  # type: ignore[union-attr]
    weight = torch.randn(c.shape[1], codes.shape[1], generator=torch.Generator().manual_seed(1)).to(codes)
    return codes + c @ weight / math.sqrt(c.shape[1])


def fit_prior(
    prior: Prior, codes: Tensor, cond: Tensor | None = None, steps: int = 50, lr: float = 1e-2, seed: int = 0
) -> Prior:
    """Fit ``prior`` to ``codes`` as the harness does, and return it in eval mode.

    Adam on ``fit_loss(codes)`` over ``fit_parameters()`` in training mode (the whole batch each step), then
    ``fit_post_hoc(codes)`` in eval mode when the prior is ``post_hoc``. Codes and conditions are moved to the
    prior's device (codes also to its dtype) first.
    """
    torch.manual_seed(seed)
    codes = codes.detach().to(device=prior.device, dtype=prior.dtype)
    c = None if cond is None else _rows(cond.to(prior.device), len(codes))
    params = list(prior.fit_parameters())
    prior.train()
    if params and steps:
        optimizer = torch.optim.Adam(params, lr=lr)
        for _ in range(steps):
            loss = prior.fit_loss(codes, c)
            assert loss.requires_grad, "fit_loss has no gradient: the prior cannot be fitted"
            optimizer.zero_grad(set_to_none=True)
            loss.backward(inputs=params)
            optimizer.step()
    prior.eval()
    if prior.post_hoc:
        prior.fit_post_hoc(codes)
    return prior


class PriorContract:
    """What the harness relies on from a ``Prior``. Provide a ``prior`` fixture (a new instance on the CPU).

    The suite fits the prior before checking it, as training does (``fit_prior``: ``fit_steps`` Adam steps of
    ``fit_loss`` at ``fit_lr`` on the ``codes`` fixture, then ``fit_post_hoc`` for ``post_hoc`` priors), so that
    learned parameters are away from their initial values. Override ``codes`` to fit to other codes, and ``cond``
    (a batch of conditions [N, ...]; the suite uses its rows) to check a conditional prior with its conditions.
    The density checks run in float64 on the CPU.
    """

    fit_steps: ClassVar[int] = 50
    fit_lr: ClassVar[float] = 1e-2
    #: Draws from ``sample`` and from the importance-sampling proposal in the density checks.
    density_samples: ClassVar[int] = 4000
    density_proposals: ClassVar[int] = 20000
    #: |log ∫p| allowed: half the smallest error the check must catch (0.1 nats).
    normalisation_tolerance: ClassVar[float] = 0.05
    #: How many combined standard errors E_sample[f] and E_density[f] may differ by, for each test function f.
    consistency_sigmas: ClassVar[float] = 5.0

    @pytest.fixture
    def codes(self, prior: Prior) -> Tensor:
        return default_codes(prior.latent_dim)

    @pytest.fixture
    def cond(self) -> Tensor | None:
        return None

    def fitted(
        self, prior: Prior, codes: Tensor, cond: Tensor | None, dtype: torch.dtype = torch.float64, device: str = "cpu"
    ) -> Prior:
        """``prior`` moved to ``device`` and ``dtype`` and fitted to the codes (made to depend on ``cond``)."""
        prior.to(device=device, dtype=dtype)
        c = None if cond is None else cond.to(device)
        return fit_prior(prior, _conditioned(codes, cond), c, steps=self.fit_steps, lr=self.fit_lr)

    @staticmethod
    def _require_density(prior: Prior) -> None:
        if not prior.has_density:
            pytest.skip(f"prior {prior.name!r} declares has_density = False")

    @staticmethod
    def _require_inverse(prior: Prior) -> None:
        if not prior.invertible:
            pytest.skip(f"prior {prior.name!r} declares invertible = False")

    # the declaration --------------------------------------------------------------------------------------------

    def test_declares_a_name_a_latent_dim_and_its_capabilities(self, prior: Prior) -> None:
        assert isinstance(prior, Prior), f"{type(prior).__name__} is not a subclass of harness.Prior"
        assert isinstance(type(prior).name, str) and type(prior).name, "set the class attribute `name` (the YAML key)"
        assert isinstance(prior.latent_dim, int) and prior.latent_dim >= 1, "keep `latent_dim` (an int) on the prior"
        for flag in ("has_density", "invertible", "conditional", "post_hoc"):
            assert isinstance(getattr(prior, flag), bool), f"`{flag}` must be a bool"
        own = {id(p) for p in prior.parameters()}
        assert all(id(p) in own for p in prior.fit_parameters()), (
            "fit_parameters() must return parameters of the prior itself, so checkpoints save them"
        )

    # shapes, dtypes, devices ------------------------------------------------------------------------------------

    @pytest.mark.parametrize("device", _DEVICES)
    @pytest.mark.parametrize("dtype", _DTYPES)
    def test_shapes_dtypes_and_devices(
        self, prior: Prior, codes: Tensor, cond: Tensor | None, dtype: torch.dtype, device: str
    ) -> None:
        d = prior.latent_dim
        prior.to(device=device, dtype=dtype).train()
        assert prior.device.type == device and prior.dtype == dtype, "Prior.__init__ must be called (device, dtype)"
        c = None if cond is None else cond.to(device)
        z = codes.to(device=device, dtype=dtype)
        _check_tensor(prior.fit_loss(z, _rows(c, len(z))), "fit_loss(codes)", (), dtype, device)
        if prior.post_hoc:
            prior.eval()
            prior.fit_post_hoc(z)
        for training in (True, False):
            prior.train(training)
            for n in (1, 7):
                _check_tensor(prior.sample(n, _rows(c, n)), f"sample({n})", (n, d), dtype, device)
                if prior.has_density:
                    _check_tensor(prior.log_prob(z[:n], _rows(c, n)), f"log_prob of [{n}, {d}]", (n,), dtype, device)
        with torch.inference_mode():  # how evaluators call it
            _check_tensor(prior.sample(5, _rows(c, 5)), "sample(5) under inference_mode", (5, d), dtype, device)
            if prior.has_density:
                _check_tensor(prior.log_prob(z[:5], _rows(c, 5)), "log_prob under inference_mode", (5,), dtype, device)

    # fitting ----------------------------------------------------------------------------------------------------

    def test_fit_loss_has_gradients_for_every_fit_parameter_and_none_for_the_codes(
        self, prior: Prior, codes: Tensor, cond: Tensor | None
    ) -> None:
        """The harness minimises fit_loss over fit_parameters() with the codes detached: every θ must get a gradient,
        the codes (detached leaves, as passed) must come back untouched and without a gradient."""
        prior.train()
        z = _conditioned(codes, cond).detach().clone()
        before = z.clone()
        loss = prior.fit_loss(z, _rows(cond, len(z)))
        assert isinstance(loss, Tensor) and loss.shape == (), "fit_loss must return a scalar tensor"
        assert bool(torch.isfinite(loss)), f"fit_loss is not finite: {loss}"
        params = list(prior.fit_parameters())
        names = {id(p): name for name, p in prior.named_parameters()}
        if params:
            assert loss.requires_grad, "fit_loss has no gradient: it does not depend on fit_parameters()"
            grads = dict(zip(params, torch.autograd.grad(loss, params, allow_unused=True), strict=True))
            missing = [names.get(id(p), "?") for p, g in grads.items() if g is None]
            assert not missing, f"fit_loss gives no gradient to: {', '.join(missing)}"
            bad = [names.get(id(p), "?") for p, g in grads.items() if not bool(torch.isfinite(g).all())]
            assert not bad, f"fit_loss gives non-finite gradients to: {', '.join(bad)}"
            assert any(bool(g.abs().sum() > 0) for g in grads.values()), "every gradient of fit_loss is zero"
        assert not z.requires_grad and z.grad is None, "fit_loss must not make the codes require gradients"
        assert torch.equal(z, before), "fit_loss modified the codes in place"

    def test_sample_depends_on_fit_parameters(self, prior: Prior, codes: Tensor, cond: Tensor | None) -> None:
        prior = self.fitted(prior, codes, cond)
        params = list(prior.fit_parameters())
        if not params:
            pytest.skip(f"prior {prior.name!r} has no fit_parameters()")
        c = _rows(cond, 256)
        torch.manual_seed(0)
        with torch.no_grad():
            before = prior.sample(256, c)
            for p in params:
                p.add_(0.3 * torch.randn_like(p))
        torch.manual_seed(0)
        with torch.no_grad():
            after = prior.sample(256, c)
        assert not torch.allclose(before, after, rtol=0, atol=1e-6), (
            "sample() ignores the prior's parameters: changing every fit parameter left the samples unchanged"
        )

    # the density ------------------------------------------------------------------------------------------------

    def _importance(self, prior: Prior, codes: Tensor, cond: Tensor | None) -> ImportanceSample:
        self._require_density(prior)
        prior = self.fitted(prior, codes, cond)
        return ImportanceSample(prior, cond, self.density_samples, self.density_proposals)

    def test_log_prob_integrates_to_one(self, prior: Prior, codes: Tensor, cond: Tensor | None) -> None:
        est = self._importance(prior, codes, cond)
        tol = self.normalisation_tolerance
        assert est.relative_error < tol / 4, (
            f"the importance-sampling estimate of ∫p is too noisy to check (relative error {est.relative_error:.3g}, "
            f"effective sample size {est.effective_size:.0f} of {len(est.log_w)}): the density is far from where "
            "sample() puts its draws, or very heavy-tailed (raise density_proposals)"
        )
        assert abs(est.log_integral) < tol, (
            f"log ∫p(z)dz = {est.log_integral:+.4f} nats (±{est.relative_error:.4f}); log_prob is not normalised "
            f"(allowed: ±{tol})"
        )

    def test_samples_score_higher_than_a_shifted_copy(self, prior: Prior, codes: Tensor, cond: Tensor | None) -> None:
        self._require_density(prior)
        prior = self.fitted(prior, codes, cond)
        torch.manual_seed(0)
        with torch.no_grad():
            x = prior.sample(2000, _same(cond, 2000))
            shift = 3 * x.std(dim=0)
            own, shifted = prior.log_prob(x, _same(cond, 2000)), prior.log_prob(x + shift, _same(cond, 2000))
        assert bool(torch.isfinite(own).all()), "samples fall where log_prob is not finite"
        assert float(own.mean()) > float(shifted.mean()), (
            f"samples score {float(own.mean()):.3f} on average under log_prob, a copy shifted by 3 standard "
            f"deviations {float(shifted.mean()):.3f}: sample() and log_prob() disagree"
        )

    def test_samples_match_the_density(self, prior: Prior, codes: Tensor, cond: Tensor | None) -> None:
        """A two-sample check: E[f] over sample()'s draws equals E[f] under the density (self-normalised importance
        sampling), for each coordinate, its square and Gaussian bumps at a few points, within a few standard errors."""
        est = self._importance(prior, codes, cond)
        x, y, w = est.samples, est.proposals, est.weights
        anchors = x[-8:]
        x = x[:-8]

        def features(z: Tensor) -> tuple[list[str], Tensor]:
            u = (z - est.mean) / est.std
            bumps = torch.exp(-0.5 * torch.cdist(u, (anchors - est.mean) / est.std).pow(2))
            names = [f"z[{i}]" for i in range(u.shape[1])] + [f"z[{i}]²" for i in range(u.shape[1])]
            names += [f"bump at sample {k}" for k in range(len(anchors))]
            return names, torch.cat([u, u.pow(2), bumps], dim=1)

        names, fx = features(x)
        fy = features(y)[1]
        by_samples, se_samples = fx.mean(dim=0), fx.std(dim=0) / math.sqrt(len(fx))
        by_density = (w[:, None] * fy).sum(dim=0)
        se_density = (w[:, None].pow(2) * (fy - by_density).pow(2)).sum(dim=0).sqrt()
        score = (by_samples - by_density).abs() / (se_samples.pow(2) + se_density.pow(2)).sqrt().clamp_min(1e-12)
        worst = int(score.argmax())
        assert float(score[worst]) < self.consistency_sigmas, (
            f"sample() does not draw from the density of log_prob(): E[{names[worst]}] is "
            f"{float(by_samples[worst]):.4f} over samples but {float(by_density[worst]):.4f} under the density "
            f"({float(score[worst]):.1f} standard errors apart; effective sample size {est.effective_size:.0f})"
        )

    # the bijection ----------------------------------------------------------------------------------------------

    def test_from_base_inverts_to_base(self, prior: Prior, codes: Tensor, cond: Tensor | None) -> None:
        self._require_inverse(prior)
        prior = self.fitted(prior, codes, cond)
        d = prior.latent_dim
        torch.manual_seed(1)
        with torch.no_grad():
            z = torch.cat([prior.sample(256, _rows(cond, 256)), _conditioned(codes, cond)[:256].double()])
            c = _rows(cond, len(z))
            z0 = prior.to_base(z, c)
            _check_tensor(z0, "to_base(z)", (len(z), d), torch.float64, "cpu")
            back = prior.from_base(z0, c)
            base = torch.randn(len(z), d, dtype=torch.float64)
            again = prior.to_base(prior.from_base(base, c), c)
        torch.testing.assert_close(back, z, rtol=1e-6, atol=1e-6, msg="from_base(to_base(z)) != z")
        torch.testing.assert_close(again, base, rtol=1e-6, atol=1e-6, msg="to_base(from_base(z0)) != z0")

    def test_log_prob_is_the_change_of_variables_of_a_standard_normal_base(
        self, prior: Prior, codes: Tensor, cond: Tensor | None
    ) -> None:
        """log p(z) = log N(to_base(z); 0, I) + log|det ∂to_base/∂z|, the Jacobian by autograd."""
        self._require_inverse(prior)
        self._require_density(prior)
        if cond is not None:
            pytest.skip("the base of a conditional prior may depend on the condition")
        prior = self.fitted(prior, codes, cond)
        d = prior.latent_dim
        torch.manual_seed(2)
        with torch.no_grad():
            z = torch.cat([prior.sample(3), codes[:3].double()])
            got = prior.log_prob(z)
        for i in range(len(z)):
            jac = torch.autograd.functional.jacobian(lambda v: prior.to_base(v[None])[0], z[i])
            z0 = prior.to_base(z[i : i + 1]).detach()[0]
            expected = -0.5 * (z0.pow(2).sum() + d * math.log(2 * math.pi)) + torch.linalg.slogdet(jac).logabsdet
            assert abs(float(got[i] - expected)) < 1e-6 * (1 + abs(float(expected))), (
                f"log_prob(z) = {float(got[i]):.8f} but log N(to_base(z)) + log|det J| = {float(expected):.8f} "
                f"at z = {z[i].tolist()}"
            )

    # conditioning -----------------------------------------------------------------------------------------------

    def test_conditioning_changes_the_distribution(self, prior: Prior, codes: Tensor, cond: Tensor | None) -> None:
        if not prior.conditional:
            pytest.skip(f"prior {prior.name!r} declares conditional = False")
        if cond is None:
            pytest.skip("the prior declares conditional = True: provide a `cond` fixture (conditions) to check it")
        prior = self.fitted(prior, codes, cond)
        other = next((i for i in range(len(cond)) if not torch.equal(cond[i], cond[0])), None)
        assert other is not None, "the `cond` fixture's rows are all equal"
        torch.manual_seed(3)
        first = prior.sample(64, _same(cond, 64))
        torch.manual_seed(3)
        second = prior.sample(64, _same(cond, 64, other))
        assert not torch.allclose(first, second, rtol=0, atol=1e-6), "sample() ignores cond"
        if prior.has_density:
            z = _conditioned(codes, cond)[:64].double()
            with torch.no_grad():
                a, b = prior.log_prob(z, _same(cond, 64)), prior.log_prob(z, _same(cond, 64, other))
            assert not torch.allclose(a, b, rtol=0, atol=1e-6), "log_prob() ignores cond"

    def test_samples_follow_their_condition(self, prior: Prior, codes: Tensor, cond: Tensor | None) -> None:
        """Draws for one condition score higher under that condition's density than under another's."""
        if not prior.conditional or cond is None:
            pytest.skip("needs a conditional prior and a `cond` fixture")
        self._require_density(prior)
        prior = self.fitted(prior, codes, cond)
        other = next((i for i in range(len(cond)) if not torch.equal(cond[i], cond[0])), None)
        assert other is not None, "the `cond` fixture's rows are all equal"
        torch.manual_seed(4)
        with torch.no_grad():
            x = prior.sample(500, _same(cond, 500))
            own, elsewhere = prior.log_prob(x, _same(cond, 500)), prior.log_prob(x, _same(cond, 500, other))
        assert float(own.mean()) > float(elsewhere.mean()), (
            f"draws for condition 0 score {float(own.mean()):.3f} under it and {float(elsewhere.mean()):.3f} under "
            f"condition {other}: sample(n, cond) does not follow cond"
        )

    # state and seeds --------------------------------------------------------------------------------------------

    # packing ----------------------------------------------------------------------------------------------------

    def test_packed_copies_fit_and_score_like_copies_alone(self, prior: Prior, codes: Tensor, cond: Tensor | None) -> None:
        """``packable = True`` promises that copies of the prior stacked and called through vmap (as
        ``harness.model.packed`` trains cells of it together) fit and score exactly like each copy alone."""
        if not type(prior).packable:
            pytest.skip(f"prior {prior.name!r} does not declare packable = True")
        if cond is not None:
            pytest.skip("conditional cells do not pack")
        z = _conditioned(codes, None)[:256].float()
        inputs = [(z + 0.2 * k,) for k in range(3)]
        copies = []
        for k, (z_k,) in enumerate(inputs):
            member = copy.deepcopy(prior).float()
            torch.manual_seed(k)
            with torch.no_grad():
                for p in member.fit_parameters():
                    p.add_(0.05 * torch.randn_like(p))  # members must differ, as packed cells of other seeds do
            if member.post_hoc:
                member.fit_post_hoc(z_k)
            copies.append(member)
        alone, packed, moved = packed_and_alone(copies, lambda m, x: m.fit_loss(x, None), inputs,
                                                lambda m: list(m.fit_parameters()))  # fmt: skip
        assert torch.allclose(packed, alone, rtol=1e-5, atol=1e-5), f"fit_loss packed {packed} vs alone {alone}"
        assert moved < 1e-4, f"the fitted parameters packed differ from alone by {moved:.3g}"
        if prior.has_density:
            alone, packed, _ = packed_and_alone(copies, lambda m, x: m.log_prob(x, None).mean(), inputs,
                                                lambda m: [], steps=1)  # fmt: skip
            assert torch.allclose(packed, alone, rtol=1e-5, atol=1e-5), f"log_prob packed {packed} vs alone {alone}"


    def test_state_dict_round_trip_preserves_log_prob_and_sample(
        self, prior: Prior, codes: Tensor, cond: Tensor | None
    ) -> None:
        restored = copy.deepcopy(prior).float()  # a new instance with the same options, as a resumed run builds it
        prior = self.fitted(prior, codes, cond, dtype=torch.float32)
        restored.load_state_dict(_reloaded(prior.state_dict()))
        restored.eval()
        c = _rows(cond, 64)
        torch.manual_seed(4)
        expected = prior.sample(64, c)
        torch.manual_seed(4)
        torch.testing.assert_close(restored.sample(64, c), expected, msg="sample() differs after a state_dict reload")
        if prior.has_density:
            z = _conditioned(codes, cond)[:64]
            torch.testing.assert_close(
                restored.log_prob(z, c), prior.log_prob(z, c), msg="log_prob() differs after a state_dict reload"
            )

    def test_fitting_and_sampling_are_deterministic_under_a_seed(
        self, prior: Prior, codes: Tensor, cond: Tensor | None
    ) -> None:
        first = self.fitted(copy.deepcopy(prior), codes, cond, dtype=torch.float32)
        second = self.fitted(copy.deepcopy(prior), codes, cond, dtype=torch.float32)
        c = _rows(cond, 64)
        draws = []
        for p in (first, first, second):
            torch.manual_seed(5)
            draws.append(p.sample(64, c))
        assert torch.equal(draws[0], draws[1]), "sample() differs between two calls under the same seed"
        assert torch.equal(draws[0], draws[2]), "two fits under the same seed give different priors"
        if prior.has_density:
            z = _conditioned(codes, cond)[:64]
            assert torch.equal(first.log_prob(z, c), second.log_prob(z, c)), "log_prob() differs between two fits"
