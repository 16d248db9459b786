"""Pairs of samples for the diversity evaluators: independent draws, or, for a conditional model, two draws for the
same condition (the paper's §6 diversity: how different the samples for one input are)."""

from __future__ import annotations

from collections.abc import Iterator

from torch import Tensor

from harness import TrainedModel


def sample_pairs(model: TrainedModel, pairs: int, batch_size: int, conditions: int) -> Iterator[tuple[Tensor, Tensor]]:
    """Batches of (a, b), ``pairs`` rows in all. Unconditional: independent prior samples. Conditional: pair i is
    two samples for test condition ``i mod conditions`` (the first ``conditions`` of the test split)."""
    for start in range(0, pairs, batch_size):
        n = min(batch_size, pairs - start)
        if model.conditions is None:
            first, second = model.sample(2 * n).chunk(2)
            yield first, second
            continue
        cond = model.test_conditions(n, start, among=conditions)
        yield model.sample(n, cond), model.sample(n, cond)
