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


class GaussianLikelihood(Likelihood):
    """N(x | Dψ(z), γI), with γ fixed or learned (Dai & Wipf 2019: a learned scalar, log-parameterised,
    part of ψ, starting at γ = 1)."""

    def __init__(self, gamma: float | None) -> None:
        super().__init__()
        self.fixed_gamma = gamma
        self.log_gamma = nn.Parameter(torch.zeros(())) if gamma is None else None

    def nll(self, x: Tensor, raw: Tensor) -> Tensor:
        sq = (x - raw).pow(2).flatten(1).sum(dim=1)
        dims = x[0].numel()
        if self.log_gamma is None:
            return 0.5 * sq / self.fixed_gamma + 0.5 * dims * math.log(2 * math.pi * self.fixed_gamma)
        return 0.5 * sq * torch.exp(-self.log_gamma) + 0.5 * dims * (math.log(2 * math.pi) + self.log_gamma)

    def learned(self) -> dict[str, float]:
        return {} if self.log_gamma is None else {"likelihood.gamma": float(self.log_gamma.detach().exp())}

    def mean(self, raw: Tensor) -> Tensor:
        return raw


class BernoulliLikelihood(Likelihood):
    """Bernoulli(x | sigmoid(Dψ(z))); x in [0, 1] (grey levels act as soft targets)."""

    def nll(self, x: Tensor, raw: Tensor) -> Tensor:
        return nn.functional.binary_cross_entropy_with_logits(raw, x, reduction="none").flatten(1).sum(dim=1)

    def mean(self, raw: Tensor) -> Tensor:
        return torch.sigmoid(raw)


def build_likelihood(kind: str, gamma: float | str) -> Likelihood:
    """``gamma`` is the fixed variance, or "learned"."""
    if kind == "gaussian":
        return GaussianLikelihood(None if gamma == "learned" else float(gamma))
    if kind == "bernoulli":
        return BernoulliLikelihood()
    raise ValueError(f"unknown likelihood {kind!r}")
