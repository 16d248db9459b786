"""The density check of ``PriorContract``: importance sampling against a proposal built from the prior's own
samples, so ∫p = 1 and E_p[f] can be checked for any prior, without knowing its form."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from harness.api import Prior
from harness.testing.support import _same


def _log_normal(x: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """log N(x; mean, diag(std²)) per row."""
    return (-0.5 * ((x - mean) / std).pow(2) - std.log() - 0.5 * math.log(2 * math.pi)).sum(dim=-1)


class ImportanceSample:
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
