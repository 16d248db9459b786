"""pψ(x|z): how the decoder's raw output scores a batch and what its mean is."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class Likelihood(nn.Module):
    def nll(self, x: Tensor, raw: Tensor) -> Tensor:
        """−log pψ(x|z) per row, summed over every data dimension, [B]."""
        raise NotImplementedError

    def mean(self, raw: Tensor) -> Tensor:
        raise NotImplementedError


class GaussianLikelihood(Likelihood):
    """N(x | Dψ(z), γI) with γ fixed."""

    def __init__(self, gamma: float) -> None:
        super().__init__()
        self.gamma = gamma

    def nll(self, x: Tensor, raw: Tensor) -> Tensor:
        sq = (x - raw).pow(2).flatten(1).sum(dim=1)
        dims = x[0].numel()
        return 0.5 * sq / self.gamma + 0.5 * dims * math.log(2 * math.pi * self.gamma)

    def mean(self, raw: Tensor) -> Tensor:
        return raw


class BernoulliLikelihood(Likelihood):
    """Bernoulli(x | sigmoid(Dψ(z))); x in [0, 1] (grey levels act as soft targets)."""

    def nll(self, x: Tensor, raw: Tensor) -> Tensor:
        return nn.functional.binary_cross_entropy_with_logits(raw, x, reduction="none").flatten(1).sum(dim=1)

    def mean(self, raw: Tensor) -> Tensor:
        return torch.sigmoid(raw)


def build_likelihood(kind: str, gamma: float) -> Likelihood:
    if kind == "gaussian":
        return GaussianLikelihood(gamma)
    if kind == "bernoulli":
        return BernoulliLikelihood()
    raise ValueError(f"unknown likelihood {kind!r}")
