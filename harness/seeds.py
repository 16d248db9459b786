"""Deriving one seed from another, so every random stream the harness opens is fixed by the cell's seed."""

from __future__ import annotations

# A prime stride keeps derived seeds of neighbouring base seeds apart (seed 1 epoch 0 ≠ seed 0 epoch 1).
_STRIDE = 1_000_003


def derived_seed(base: int, offset: int) -> int:
    """The seed of stream ``offset`` (an epoch, a worker start) under ``base``; equal inputs give equal seeds."""
    return base * _STRIDE + offset
