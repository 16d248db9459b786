"""What a prior costs once trained: milliseconds to draw codes, to score them, and to take one fitting step.

Wall-clock times on the machine that ran the cell (compare them within one run, never across machines): the
median of ``repeats`` timings, each over ``batch`` codes, after one warm-up. The fitting step (``fit_loss`` and its
backward pass over θ) runs on a copy of the prior, so the trained one is left as it was; a prior without a density
or without parameters to fit reports only what applies.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Mapping
from typing import Annotated

import torch
from pydantic import Field

from harness import EvalData, Evaluator, TrainedModel, hookimpl
from harness.api import as_float, checked_options


def median_ms(run: Callable[[], object], repeats: int, device: torch.device) -> float:
    """Median wall time of ``run`` in milliseconds, after one untimed call (lazy initialisation, caches)."""
    run()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


class PriorCostEvaluator(Evaluator):
    """``prior_cost.sample_ms``, ``prior_cost.log_prob_ms`` and ``prior_cost.fit_step_ms`` per ``batch`` codes."""

    name = "prior_cost"
    metrics = {"sample_ms": "min", "log_prob_ms": "min", "fit_step_ms": "min"}

    @checked_options
    def __init__(self, batch: Annotated[int, Field(ge=1)] = 1000, repeats: Annotated[int, Field(ge=1)] = 5) -> None:
        self.batch = batch
        self.repeats = repeats

    def evaluate(self, model: TrainedModel, data: EvalData) -> Mapping[str, float]:
        prior, device = model.prior, model.device
        cond = None if model.conditions is None else as_float(model.test_conditions(self.batch).to(device))
        codes = prior.sample(self.batch, cond).detach()
        result = {"sample_ms": median_ms(lambda: prior.sample(self.batch, cond), self.repeats, device)}
        if prior.has_density:
            result["log_prob_ms"] = median_ms(lambda: prior.log_prob(codes, cond), self.repeats, device)
        # Evaluators run under inference mode; a fitting step needs autograd and tensors made outside it (a copy
        # made inside would hold inference tensors).
        with torch.inference_mode(False):
            trainee = copy.deepcopy(prior).train()
        params = list(trainee.fit_parameters())
        if params:
            def step() -> None:
                with torch.inference_mode(False), torch.enable_grad():
                    c = None if cond is None else cond.clone()
                    loss = trainee.fit_loss(codes.clone(), c)
                    if loss.requires_grad:
                        loss.backward(inputs=params)

            result["fit_step_ms"] = median_ms(step, self.repeats, device)
        return result


@hookimpl
def harness_register_evaluators(register: Callable[[type[Evaluator]], None]) -> None:
    register(PriorCostEvaluator)
