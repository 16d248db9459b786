"""pψ(x|z): how the decoder's raw output scores a batch and what its mean is."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class Likelihood(nn.Module):
    def learned(self) -> dict[str, float]:
        """Learned likelihood parameters to record beside the metrics (``likelihood.<name>``)."""
        return {}

    def nll(self, x: Tensor, raw: Tensor) -> Tensor:
        """−log pψ(x|z) per row, summed over every data dimension, [B]."""
        raise NotImplementedError

    def mean(self, raw: Tensor) -> Tensor:
        raise NotImplementedError

    def squared_error_weight(self) -> float:
        """What one unit of squared error costs in ``nll`` now: 1/(2γ) for a Gaussian, 1 for a likelihood whose NLL
        is itself the cost (Bernoulli's cross-entropy). A regularizer multiplies its term by it to state β in the
        units of the squared error (WAE's λ); read every step, so a learned or optimal γ is followed."""
        return 1.0


class GaussianLikelihood(Likelihood):
    """N(x | Dψ(z), γI), with γ fixed, learned or set to its per-batch optimum.

    - a number: γ fixed.
    - ``"learned"`` (or None): Dai & Wipf 2019, a learned scalar log γ, part of ψ, starting at γ = 1. Adam moves
      log γ by about its learning rate per step, so ``Model(gamma_lr=...)`` gives it a learning rate of its own
      (the harness default ``harness.config.DEFAULT_GAMMA_LR``) that reaches the ML value γ ≈ MSE in a few
      hundred steps.
    - ``"optimal"``: σ-VAE's analytic optimum (Rybkin et al. 2021, "Simple and effective VAE training with
      calibrated decoders"): γ* = the batch's mean squared error per dimension, which maximises the batch
      likelihood in closed form. As in σ-VAE it is detached: it scales the reconstruction gradient, it is not
      itself a path for gradients. ``learned()`` reports an exponential running mean of γ* over training batches.
    """

    #: Decay of the running mean of γ* that ``"optimal"`` records as ``likelihood.gamma``.
    RUNNING_DECAY = 0.99

    def __init__(self, gamma: float | str | None) -> None:
        super().__init__()
        self.optimal = gamma == "optimal"
        learned = gamma is None or gamma == "learned"
        self.fixed_gamma = None if learned or self.optimal else float(gamma)  # type: ignore[arg-type]
        self.log_gamma = nn.Parameter(torch.zeros(())) if learned else None
        if self.optimal:
            # NaN until the first training batch; a buffer, so a checkpoint carries it.
            self.register_buffer("running_gamma", torch.full((), float("nan")))

    def optimal_gamma(self, x: Tensor, raw: Tensor) -> Tensor:
        """γ* = mean over the batch and every dimension of (x - Dψ(z))², detached."""
        return (x - raw).detach().pow(2).mean()

    def nll(self, x: Tensor, raw: Tensor) -> Tensor:
        sq = (x - raw).pow(2).flatten(1).sum(dim=1)
        dims = x[0].numel()
        if self.optimal:
            # A floor keeps a perfect reconstruction (MSE = 0) finite.
            gamma = self.optimal_gamma(x, raw).clamp_min(1e-12)
            if self.training:
                with torch.no_grad():
                    run, decay = self.running_gamma, self.RUNNING_DECAY
                    run.copy_(torch.where(run.isnan(), gamma, decay * run + (1 - decay) * gamma))
            return 0.5 * sq / gamma + 0.5 * dims * torch.log(2 * math.pi * gamma)
        if self.log_gamma is None:
            return 0.5 * sq / self.fixed_gamma + 0.5 * dims * math.log(2 * math.pi * self.fixed_gamma)
        return 0.5 * sq * torch.exp(-self.log_gamma) + 0.5 * dims * (math.log(2 * math.pi) + self.log_gamma)

    def learned(self) -> dict[str, float]:
        if self.optimal:
            return {"likelihood.gamma": float(self.running_gamma)}
        return {} if self.log_gamma is None else {"likelihood.gamma": float(self.log_gamma.detach().exp())}

    def mean(self, raw: Tensor) -> Tensor:
        return raw

    def squared_error_weight(self) -> float:
        if self.optimal:
            gamma = float(self.running_gamma)
            return 1.0 if math.isnan(gamma) else 0.5 / max(gamma, 1e-12)  # NaN before the first batch
        if self.log_gamma is None:
            return 0.5 / float(self.fixed_gamma)  # type: ignore[arg-type]
        return 0.5 * math.exp(-float(self.log_gamma.detach()))


class BernoulliLikelihood(Likelihood):
    """Bernoulli(x | sigmoid(Dψ(z))); x in [0, 1] (grey levels act as soft targets)."""

    def nll(self, x: Tensor, raw: Tensor) -> Tensor:
        return nn.functional.binary_cross_entropy_with_logits(raw, x, reduction="none").flatten(1).sum(dim=1)

    def mean(self, raw: Tensor) -> Tensor:
        return torch.sigmoid(raw)


def build_likelihood(kind: str, gamma: float | str) -> Likelihood:
    """``gamma`` is the fixed variance, "learned" or "optimal" (see GaussianLikelihood)."""
    if kind == "gaussian":
        return GaussianLikelihood(gamma if gamma in ("learned", "optimal") else float(gamma))
    if kind == "bernoulli":
        return BernoulliLikelihood()
    raise ValueError(f"unknown likelihood {kind!r}")
