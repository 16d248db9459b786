"""The ``Tracker`` base class: what experiment trackers (MLflow, TensorBoard, ...) are shown of a run.

A tracker is a plugin like the others (``harness_register_trackers``), named under a benchmark's ``trackers:`` or
with ``--tracker NAME``, and built as ``cls(**options)``. Every method is optional. Run-level calls
(``start_run``, ``end_run``) happen in the process that runs ``harness run``; cell-level ones in the process that
trains the cell (a worker of the pool or Ray executor builds its own instance). A tracker that raises is reported
once and switched off for the rest of the run in that process; it never fails a cell.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.api import _Plugin


@dataclass(frozen=True)
class TrackedCell:
    """A cell as trackers see it when it starts training."""

    cell_id: str
    benchmark: str
    #: ``[variant] dataset prior(options) regularizer β=b seed=s``, as console lines and leaderboards name it.
    label: str
    #: The cell's full resolved config (``Cell.to_json``): dataset, model, prior and regularizer with options, ...
    config: Mapping[str, Any]
    dataset: str
    prior: str
    regularizer: str
    beta: float | None
    seed: int
    #: The run's output folder and this cell's folder in it.
    out_dir: Path
    cell_dir: Path
    #: What produced it: the harness's git commit, torch's version, the device.
    provenance: Mapping[str, Any]
    #: For a trial of ``harness search``: the search's name and the trial's Optuna number (None for ``harness run``).
    #: A tracker may show the trials of one search together (the ``mlflow`` tracker nests them under one run).
    search: str | None = None
    trial: int | None = None


@dataclass(frozen=True)
class CellEnd:
    """How a cell ended: ``status`` is done, failed, pruned or skipped (its architecture cannot model the data);
    ``reason`` says why it did not finish."""

    cell_id: str
    status: str
    metrics: Mapping[str, float]
    reason: str | None
    #: The sample grid and the checkpoint, when the cell wrote them.
    samples: Path | None
    checkpoint: Path | None


class Tracker(_Plugin):
    """Receives a run's progress. Constructed as ``cls(**options_from_yaml)``; override what you need."""

    def start_run(self, benchmark: str, out_dir: Path, config: Mapping[str, Any]) -> None:
        """A benchmark's run starts (before any cell), with the benchmark's config as written."""

    def start_cell(self, cell: TrackedCell) -> None:
        """A cell starts training (cached and skipped cells are not shown again)."""

    def log_epoch(self, cell_id: str, epoch: int, losses: Mapping[str, float]) -> None:
        """The mean loss terms of epoch ``epoch`` (1-based): reconstruction, regularizer, prior_fit."""

    def end_cell(self, end: CellEnd) -> None:
        """The cell has been evaluated and stored, or has failed or been pruned."""

    def end_run(self, benchmark: str, leaderboard: Path | None) -> None:
        """Every cell of the benchmark has ended and its leaderboard (when one was written) is on disk."""
