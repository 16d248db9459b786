"""How closely the prior matches the aggregate posterior: the codes the decoder was trained on.

A prior far from the codes makes the decoder turn prior samples it never saw into images, the gap the paper's
learned priors are meant to close.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated

import torch
from pydantic import Field
from torch import Tensor

from harness import EvalData, Evaluator, TrainedModel, hookimpl
from harness.api import as_float, checked_options


def mmd_squared(x: Tensor, y: Tensor) -> float:
    """Unbiased MMD² (Gretton et al. 2012, eq. 3) between samples ``x`` [m, D] and ``y`` [n, D].

    Gaussian kernel exp(-‖a - b‖² / 2σ²) with σ the median distance between distinct points of the pooled sample.
    The unbiased estimate has no 1/n offset, so it centres on 0 for equal distributions (and may dip below).
    Computed in float64: the three kernel means nearly cancel when the fit is good.
    """
    m, n = len(x), len(y)
    pooled = torch.cat([x, y]).double()
    sq_dist = torch.cdist(pooled, pooled).pow(2)
    distinct = torch.ones_like(sq_dist, dtype=torch.bool).triu(diagonal=1)
    # Clamped so that a pool of mostly identical points (a collapsed encoder) gives a finite kernel.
    two_sigma_sq = 2 * sq_dist[distinct].median().clamp_min(torch.finfo(torch.float64).eps)
    kernel = torch.exp(-sq_dist / two_sigma_sq)
    k_xx, k_yy, k_xy = kernel[:m, :m], kernel[m:, m:], kernel[:m, m:]
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    return float(within_x + within_y - 2 * k_xy.mean())


class PriorFitEvaluator(Evaluator):
    """The test split's codes (posterior means) against the prior.

    ``nll``: mean -log pθ(code) in nats per code, for priors with a density. ``mmd``: ``mmd_squared`` between
    prior samples and a random subset of the codes, ``samples`` on each side (fewer when the test split is
    smaller); for every prior, GANs included. No condition is passed to the prior: conditional priors (none
    exist yet) will need the test labels as conditions.
    """

    name = "prior_fit"
    metrics = {"nll": "min", "mmd": "min"}

    @checked_options
    def __init__(
        self,
        samples: Annotated[int, Field(ge=2, description="the unbiased MMD compares pairs")] = 2000,
        batch_size: Annotated[int, Field(ge=1)] = 1000,
    ) -> None:
        self.samples = samples
        self.batch_size = batch_size

    def evaluate(self, model: TrainedModel, data: EvalData) -> Mapping[str, float]:
        prior = model.prior
        test = data.test
        codes = torch.cat([model.encode(x, cond).mean for x, cond in test.batches(self.batch_size)])
        # A conditional prior is scored on each code's own condition, and sampled for the conditions of the codes
        # it is compared with.
        conds = None if test.cond is None else as_float(test.cond.to(codes.device))
        result: dict[str, float] = {}
        if prior.has_density:
            rows = range(0, len(codes), self.batch_size)
            log_p = [prior.log_prob(codes[i : i + self.batch_size], _rows(conds, i, self.batch_size)) for i in rows]
            result["nll"] = -float(torch.cat(log_p).mean())
        n = min(self.samples, len(codes))
        picked = torch.randperm(len(codes), device=codes.device)[:n]
        result["mmd"] = mmd_squared(prior.sample(n, None if conds is None else conds[picked]), codes[picked])
        return result


def _rows(conds: Tensor | None, start: int, count: int) -> Tensor | None:
    return None if conds is None else conds[start : start + count]


@hookimpl
def harness_register_evaluators(register: Callable[[type[Evaluator]], None]) -> None:
    register(PriorFitEvaluator)
