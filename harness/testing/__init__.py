"""Contract test suites that plugin packages reuse, one per plugin kind (like scikit-learn's ``check_estimator``).

Subclass a suite in a test module and provide the fixture it names; every check is a test method of the suite:

    import pytest
    from harness.testing import PriorContract

    class TestLaplace(PriorContract):
        @pytest.fixture
        def prior(self):
            return LaplacePrior(latent_dim=3, scale=2.0)

=======================  ====================  ===========================================================
suite                    required fixture      optional fixtures (with defaults)
=======================  ====================  ===========================================================
``PriorContract``        ``prior``             ``codes`` (what the prior is fitted to), ``cond`` (None)
``RegularizerContract``  ``regularizer``       ``prior`` (a standard normal of dimension 3)
``EvaluatorContract``    ``evaluator``         ``eval_data``, ``trained_model`` (tiny labelled 8×8 images)
``DatasetContract``      ``dataset``           none
=======================  ====================  ===========================================================

The checks are what the harness relies on, with tolerances that catch real bugs in priors of a few dimensions:
a log-density off by 0.1 nats, samples that ignore the parameters, a wrong inverse, a ``fit_loss`` without
gradients. A check that does not apply (no density, not invertible, no condition given) is skipped with its reason.
Only pytest (what plugin authors test with) and prior-harness's own dependencies are imported; no pytest plugin
is needed.
"""

from __future__ import annotations

import copy
import io
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal

import pytest
import torch
from torch import Tensor, nn

from harness.api import (
    DataSplit,
    Dataset,
    EvalData,
    Evaluator,
    GaussianPosterior,
    PluginUnavailable,
    Prior,
    Regularizer,
    TrainedModel,
    as_float,
    standard_normal_log_prob,
)

__all__ = [
    "DatasetContract",
    "EvaluatorContract",
    "PriorContract",
    "RegularizerContract",
    "default_codes",
    "fit_prior",
    "load_plugin",
    "make_eval_data",
    "make_trained_model",
]

_DTYPES = [pytest.param(torch.float32, id="float32"), pytest.param(torch.float64, id="float64")]
_DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")),
]


# --- helpers shared by the suites --------------------------------------------------------------------------------


def _check_tensor(t: Any, what: str, shape: tuple[int, ...], dtype: torch.dtype, device: str) -> None:
    assert isinstance(t, Tensor), f"{what} returned {type(t).__name__}, not a Tensor"
    assert tuple(t.shape) == shape, f"{what} has shape {list(t.shape)}, expected {list(shape)}"
    assert t.dtype == dtype, f"{what} has dtype {t.dtype}, expected {dtype} (the prior's, or the input's)"
    assert t.device.type == torch.device(device).type, f"{what} is on {t.device}, expected {device}"
    assert bool(torch.isfinite(t).all()), f"{what} has non-finite values: {t}"


def _reloaded(state: Mapping[str, Any]) -> Any:
    """``state`` after torch.save and torch.load(weights_only=True): how the harness's checkpoints restore it."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def _rows(cond: Tensor | None, n: int) -> Tensor | None:
    """``n`` conditions cycled from the ``cond`` fixture's rows (None for an unconditional prior)."""
    return None if cond is None else cond[torch.arange(n, device=cond.device) % len(cond)]


def _same(cond: Tensor | None, n: int, row: int = 0) -> Tensor | None:
    """One condition repeated ``n`` times: a density for a fixed condition."""
    return None if cond is None else cond[row : row + 1].expand(n, *cond.shape[1:])


class _StandardNormal(Prior):
    """N(0, I), invertible through the identity: the default prior the regularizer and evaluator suites use."""

    name = "contract-standard-normal"
    invertible = True

    def __init__(self, latent_dim: int = 3) -> None:
        super().__init__()
        self.latent_dim = latent_dim

    def log_prob(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        return standard_normal_log_prob(z)

    def sample(self, n: int, cond: Tensor | None = None) -> Tensor:
        return torch.randn(n, self.latent_dim, device=self.device, dtype=self.dtype)

    def analytic_kl(self, posterior: GaussianPosterior, cond: Tensor | None = None) -> Tensor:
        return posterior.kl_to_standard_normal()

    def to_base(self, z: Tensor, cond: Tensor | None = None) -> Tensor:
        return z

    def from_base(self, z0: Tensor, cond: Tensor | None = None) -> Tensor:
        return z0


class _NoDensity(_StandardNormal):
    name = "contract-no-density"
    has_density = False
    invertible = False


class _PostHoc(_StandardNormal):
    name = "contract-post-hoc"
    post_hoc = True


def load_plugin(kind: Literal["prior", "regularizer", "evaluator", "dataset", "architecture"], name: str) -> type:
    """The class the harness finds as ``kind`` ``name`` through the ``harness`` entry points.

    Checks that an installed package registers what it should; fails naming the plugins that did not load.
    """
    from harness.registry import load_registry

    registry = load_registry()
    found = registry.plugins[kind].get(name)
    broken = "; ".join(f"{b.entry_point} ({b.distribution}): {b.error}" for b in registry.broken) or "none"
    assert found is not None, (
        f"no {kind} {name!r} among the installed plugins (found: {', '.join(registry.names(kind))}; broken: {broken})"
    )
    return found.cls


# --- priors --------------------------------------------------------------------------------------------------------


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


def _log_normal(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """log N(x; mean, diag(std²)) per row."""
    return (-0.5 * ((x - mean) / std).pow(2) - std.log() - 0.5 * math.log(2 * math.pi)).sum(dim=-1)


class _ImportanceSample:
    """Draws from ``prior.sample`` and weighted draws from a proposal q that together check the density.

    q is half a Gaussian kernel density estimate on 500 of the prior's own samples (Silverman's bandwidth) and half
    a Gaussian three times as wide as the samples (so regions the samples miss are still proposed). The weights
    w = p/q give ∫p as mean(w), and E_p[f] by self-normalised importance sampling, each with its standard error.
    """

    def __init__(self, prior: Prior, cond: Tensor | None, n_samples: int, n_proposals: int, seed: int = 0) -> None:
        torch.manual_seed(seed)
        with torch.no_grad():
            x = prior.sample(n_samples, _same(cond, n_samples)).double()
        assert bool(torch.isfinite(x).all()), "sample() returned non-finite values"
        self.samples = x
        self.mean, self.std = x.mean(dim=0), x.std(dim=0).clamp_min(1e-6)
        g = torch.Generator().manual_seed(seed + 1)
        centres = x[: min(500, n_samples)]
        m, d = centres.shape
        bandwidth = self.std * (4 / ((d + 2) * m)) ** (1 / (d + 4))
        half = n_proposals // 2
        near = centres[torch.randint(0, m, (half,), generator=g)] + bandwidth * torch.randn(
            half, d, generator=g, dtype=torch.float64
        )
        wide = self.mean + 3 * self.std * torch.randn(n_proposals - half, d, generator=g, dtype=torch.float64)
        y = torch.cat([near, wide])
        # log of the kernel density: mean over centres c of N(y; c, diag(bandwidth²)), through scaled distances.
        scaled = centres / bandwidth
        norm = bandwidth.log().sum() + 0.5 * d * math.log(2 * math.pi) + math.log(m)
        log_kde = torch.cat(
            [torch.logsumexp(-0.5 * torch.cdist(chunk / bandwidth, scaled).pow(2), dim=1) for chunk in y.split(4096)]
        ) - norm
        log_q = torch.logaddexp(log_kde, _log_normal(y, self.mean, 3 * self.std)) - math.log(2)
        with torch.no_grad():
            log_p = torch.cat(
                [prior.log_prob(chunk.to(prior.dtype), _same(cond, len(chunk))).double() for chunk in y.split(5000)]
            )
        assert not bool(torch.isnan(log_p).any()), "log_prob returned NaN"
        assert not bool((log_p == math.inf).any()), "log_prob returned +inf"
        self.proposals = y
        self.log_w = log_p - log_q
        self.weights = torch.softmax(self.log_w, dim=0)

    @property
    def log_integral(self) -> float:
        return float(torch.logsumexp(self.log_w, dim=0) - math.log(len(self.log_w)))

    @property
    def relative_error(self) -> float:
        """The standard error of the ∫p estimate relative to it: sqrt((N·Σw̄² − 1) / N), w̄ the normalised weights."""
        n = len(self.weights)
        return math.sqrt(max(float(n * self.weights.pow(2).sum()) - 1.0, 0.0) / n)

    @property
    def effective_size(self) -> float:
        return float(1.0 / self.weights.pow(2).sum())


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

    def _importance(self, prior: Prior, codes: Tensor, cond: Tensor | None) -> _ImportanceSample:
        self._require_density(prior)
        prior = self.fitted(prior, codes, cond)
        return _ImportanceSample(prior, cond, self.density_samples, self.density_proposals)

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

    # state and seeds --------------------------------------------------------------------------------------------

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


# --- regularizers --------------------------------------------------------------------------------------------------


def _posterior(latent_dim: int, n: int, dtype: torch.dtype, device: str, seed: int = 0) -> GaussianPosterior:
    """q(z|x) for ``n`` rows whose mean and log-variance are leaves that require gradients (the encoder's output)."""
    g = torch.Generator().manual_seed(seed)
    mean = (0.3 + 0.8 * torch.randn(n, latent_dim, generator=g)).to(device=device, dtype=dtype).requires_grad_()
    logvar = (-1.0 + 0.3 * torch.randn(n, latent_dim, generator=g)).to(device=device, dtype=dtype).requires_grad_()
    return GaussianPosterior(mean, logvar)


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


# --- evaluators ----------------------------------------------------------------------------------------------------


def make_eval_data(cache_dir: Path, images: bool = True, n_train: int = 256, n_test: int = 128) -> EvalData:
    """A tiny labelled dataset as evaluators receive it: 8×8 grayscale uint8 images of 4 classes (one bright quadrant
    each), or float32 2-D points from 4 blobs when ``images`` is False."""
    g = torch.Generator().manual_seed(0)

    def split(n: int) -> DataSplit:
        labels = torch.randint(0, 4, (n,), generator=g)
        if images:
            x = 30 * torch.rand(n, 1, 8, 8, generator=g)
            for k in range(4):
                rows, cols = slice(4 * (k // 2), 4 * (k // 2) + 4), slice(4 * (k % 2), 4 * (k % 2) + 4)
                x[labels == k, :, rows, cols] += 200
            data = x.round().to(torch.uint8)
        else:
            centres = torch.tensor([[2.0, 0.0], [0.0, 2.0], [-2.0, 0.0], [0.0, -2.0]])
            data = centres[labels] + 0.3 * torch.randn(n, 2, generator=g)
        return DataSplit(data, labels, "class", ("0", "1", "2", "3"))

    train, test = split(n_train), split(n_test)
    return EvalData("contract-images" if images else "contract-points", {}, train, test, Path(cache_dir))


class _KL(Regularizer):
    name = "contract-kl"

    def penalty(self, z: Tensor, posterior: GaussianPosterior, prior: Prior, cond: Tensor | None = None) -> Tensor:
        closed = prior.analytic_kl(posterior, cond)
        return closed if closed is not None else posterior.log_prob(z) - prior.log_prob(z, cond)


def make_trained_model(
    data: EvalData, workdir: Path, prior: Prior | None = None, latent_dim: int = 3, steps: int = 200, seed: int = 0
) -> TrainedModel:
    """A small MLP VAE trained for ``steps`` steps with the harness's own training step on ``data.train``."""
    from harness.model.likelihoods import build_likelihood
    from harness.model.train import Model, training_step

    torch.manual_seed(seed)
    shape = tuple(data.train.x.shape[1:])
    flat = math.prod(shape)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(flat, 32), nn.SiLU(), nn.Linear(32, 2 * latent_dim))
    decoder = nn.Sequential(nn.Linear(latent_dim, 32), nn.SiLU(), nn.Linear(32, flat), nn.Unflatten(1, shape))
    prior = prior if prior is not None else _StandardNormal(latent_dim)
    likelihood = build_likelihood("bernoulli", 1.0) if data.train.is_image else build_likelihood("gaussian", 0.1)
    model = Model(encoder, decoder, likelihood, prior, _KL(), lr=3e-3)
    model.train(True)
    for _ in range(steps):
        idx = torch.randint(0, len(data.train), (64,))
        training_step(model, as_float(data.train.x[idx]), beta=1.0)
    model.train(False)
    if prior.post_hoc:
        with torch.no_grad():
            prior.fit_post_hoc(encoder(as_float(data.train.x)).chunk(2, dim=-1)[0])
    return TrainedModel(encoder, decoder, prior, likelihood.mean, latent_dim, shape, torch.device("cpu"), seed, workdir)


class EvaluatorContract:
    """What the harness relies on from an ``Evaluator``. Provide an ``evaluator`` fixture (a new instance).

    ``eval_data`` and ``trained_model`` (built once per test class) default to ``make_eval_data`` and
    ``make_trained_model``: a small VAE trained on tiny labelled 8×8 images. An evaluator whose ``check_available``
    raises ``PluginUnavailable`` here has its evaluation checks skipped with that message.
    """

    # Class-scoped fixtures are classmethods: pytest deprecates instance-method ones (removed in pytest 10).
    @pytest.fixture(scope="class")
    @classmethod
    def eval_data(cls, tmp_path_factory: pytest.TempPathFactory) -> EvalData:
        return make_eval_data(tmp_path_factory.mktemp("eval-cache"))

    @pytest.fixture(scope="class")
    @classmethod
    def trained_model(cls, eval_data: EvalData, tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
        return make_trained_model(eval_data, tmp_path_factory.mktemp("cell"))

    def _evaluate(self, evaluator: Evaluator, model: TrainedModel, data: EvalData) -> Mapping[str, float]:
        try:
            evaluator.check_available()
        except PluginUnavailable as exc:
            pytest.skip(f"unavailable here: {exc.message}")
        torch.manual_seed(model.seed)  # as the harness calls it
        with torch.inference_mode():
            return evaluator.evaluate(model, data)

    def test_declares_a_name_and_its_metrics(self, evaluator: Evaluator) -> None:
        assert isinstance(evaluator, Evaluator), f"{type(evaluator).__name__} is not a harness.Evaluator"
        assert isinstance(type(evaluator).name, str) and type(evaluator).name, "set the class attribute `name`"
        metrics = type(evaluator).metrics
        assert isinstance(metrics, Mapping) and metrics, "declare `metrics`: {key: 'min' | 'max'}"
        for key, direction in metrics.items():
            assert isinstance(key, str), f"metric key {key!r} is not a str"
            assert direction in ("min", "max"), f"metric {key!r}: direction {direction!r} is not 'min' or 'max'"

    def test_check_available_raises_only_plugin_unavailable(self, evaluator: Evaluator) -> None:
        try:
            evaluator.check_available()
        except PluginUnavailable as exc:
            assert isinstance(exc.message, str) and exc.message, "PluginUnavailable needs a message"
        except Exception as exc:  # noqa: BLE001 - the point of the check
            pytest.fail(f"check_available() raised {type(exc).__name__}: {exc}; raise harness.PluginUnavailable")

    def test_evaluate_returns_declared_finite_floats(
        self, evaluator: Evaluator, trained_model: TrainedModel, eval_data: EvalData
    ) -> None:
        result = self._evaluate(evaluator, trained_model, eval_data)
        assert isinstance(result, Mapping) and result, "evaluate() must return a non-empty mapping"
        undeclared = set(result) - set(type(evaluator).metrics)
        assert not undeclared, f"evaluate() returned undeclared metrics {sorted(undeclared)}; declare them in `metrics`"
        for key, value in result.items():
            assert isinstance(value, (int, float)) and not isinstance(value, bool), (
                f"metric {key!r} is {type(value).__name__}, not a float (use float(...))"
            )
            assert math.isfinite(value), f"metric {key!r} is not finite: {value}"

    def test_evaluate_is_deterministic_under_a_seed(
        self, evaluator: Evaluator, trained_model: TrainedModel, eval_data: EvalData
    ) -> None:
        first = self._evaluate(evaluator, trained_model, eval_data)
        second = self._evaluate(evaluator, trained_model, eval_data)
        assert first.keys() == second.keys()
        for key in first:
            assert math.isclose(first[key], second[key], rel_tol=1e-9, abs_tol=1e-12), (
                f"metric {key!r} differs between two evaluations under one seed: {first[key]} vs {second[key]}"
            )


# --- datasets ------------------------------------------------------------------------------------------------------


class DatasetContract:
    """What the harness relies on from a ``Dataset``. Provide a ``dataset`` fixture (a new instance).

    A dataset whose ``check_available`` raises ``PluginUnavailable`` here has its loading checks skipped with that
    message (write tiny files in the expected layout in ``tmp_path`` to check the loading code offline).
    """

    def _load(self, dataset: Dataset, split: Literal["train", "test"]) -> DataSplit:
        try:
            dataset.check_available()
        except PluginUnavailable as exc:
            pytest.skip(f"unavailable here: {exc.message}")
        data = dataset.load(split)
        assert isinstance(data, DataSplit), f"load({split!r}) returned {type(data).__name__}, not a harness.DataSplit"
        return data

    def test_declares_a_name(self, dataset: Dataset) -> None:
        assert isinstance(dataset, Dataset), f"{type(dataset).__name__} is not a harness.Dataset"
        assert isinstance(type(dataset).name, str) and type(dataset).name, "set the class attribute `name`"

    def test_check_available_raises_only_plugin_unavailable(self, dataset: Dataset) -> None:
        try:
            dataset.check_available()
        except PluginUnavailable as exc:
            assert isinstance(exc.message, str) and exc.message, "DatasetUnavailable needs a message"
            assert exc.fix is None or isinstance(exc.fix, str)
        except Exception as exc:  # noqa: BLE001 - the point of the check
            pytest.fail(f"check_available() raised {type(exc).__name__}: {exc}; raise harness.DatasetUnavailable")

    @pytest.mark.parametrize("split", ["train", "test"])
    def test_split_holds_uint8_images_or_float32_vectors(
        self, dataset: Dataset, split: Literal["train", "test"]
    ) -> None:
        x = self._load(dataset, split).x
        assert isinstance(x, Tensor) and len(x) >= 1, f"load({split!r}).x must be a non-empty tensor"
        if x.dtype == torch.uint8:
            assert x.dim() == 4, f"images must be uint8 [N, C, H, W], got shape {list(x.shape)}"
        else:
            assert x.dtype == torch.float32 and x.dim() == 2, (
                f"load({split!r}).x must be uint8 [N, C, H, W] or float32 [N, D], got {x.dtype} {list(x.shape)}"
            )
            assert bool(torch.isfinite(x).all()), "vectors must be finite"

    @pytest.mark.parametrize("split", ["train", "test"])
    def test_labels_agree_with_label_kind(self, dataset: Dataset, split: Literal["train", "test"]) -> None:
        data = self._load(dataset, split)
        labels, kind, names = data.labels, data.label_kind, data.label_names
        if labels is None:
            assert kind is None, f"label_kind is {kind!r} but there are no labels"
            return
        assert labels.dtype == torch.int64, f"labels must be int64, got {labels.dtype}"
        assert names is None or (isinstance(names, tuple) and all(isinstance(n, str) for n in names)), (
            "label_names must be a tuple of str"
        )
        if kind == "class":
            assert labels.shape == (len(data),), f"class labels must be [N], got {list(labels.shape)}"
            assert int(labels.min()) >= 0, "class labels must be >= 0"
            if names is not None:
                assert int(labels.max()) < len(names), f"a class label is >= len(label_names) = {len(names)}"
        elif kind == "attributes":
            assert labels.dim() == 2 and labels.shape[0] == len(data), "attribute labels must be [N, A]"
            assert bool(((labels == 0) | (labels == 1)).all()), "attribute labels must be 0 or 1"
            if names is not None:
                assert len(names) == labels.shape[1], "label_names must name every attribute"
        else:
            pytest.fail(f"label_kind is {kind!r}; with labels it must be 'class' or 'attributes'")

    def test_train_and_test_hold_the_same_kind_of_item(self, dataset: Dataset) -> None:
        train, test = self._load(dataset, "train"), self._load(dataset, "test")
        assert train.x.dtype == test.x.dtype and train.x.shape[1:] == test.x.shape[1:], (
            f"train items are {train.x.dtype} {list(train.x.shape[1:])}, test items {test.x.dtype} "
            f"{list(test.x.shape[1:])}"
        )
        assert train.label_kind == test.label_kind and train.label_names == test.label_names

    def test_loading_is_deterministic(self, dataset: Dataset) -> None:
        for split in ("train", "test"):
            first, second = self._load(dataset, split), self._load(dataset, split)
            assert torch.equal(first.x, second.x), f"two loads of {split!r} differ: every run must see the same data"
            assert (first.labels is None) == (second.labels is None)
            if first.labels is not None:
                assert torch.equal(first.labels, second.labels), f"two loads of {split!r} give different labels"

