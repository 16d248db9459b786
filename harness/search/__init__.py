"""Optuna searches over β, flow depth and any other option (``harness search``).

Each trial is one cell, built, trained, evaluated and stored exactly as ``harness run`` would (see
``harness.search.space``). Workers (local spawned processes, or the same command on other machines) pull trials
from one shared study: a journal file, or a database URL with heartbeats so the trial of a worker that died is
failed and retried.

``--trials N`` is the total the study should hold. Finished trials count (complete, pruned, and failed: a cell
that fails is an answer too), except one whose worker died: it is retried and its retry counts instead. Workers
take a study-wide lock only to count and ask, so exactly N finish however many workers share the study.

Pruning: after each epoch a trial reports the epoch's mean reconstruction term (−log p(x|z) on the training
batches; negated when the objective is maximised, so "worse" is always "reconstructs worse"), and Optuna's median
pruner stops it when that is worse than the median of earlier trials at the same epoch.

The package, bottom to top: ``storage`` (where the study lives, the study-wide lock), ``reaping`` (counting trials,
failing and retrying a dead worker's), ``worker`` (one worker's trials), ``supervisor`` (the command: workers, then
reports); ``report`` writes a study's reports, ``space`` resolves a search and builds a trial's cell.
"""

from harness.search.reaping import tally
from harness.search.report import best_yaml, write_reports
from harness.search.space import Search, TrialError, resolve
from harness.search.storage import Storage, open_storage
from harness.search.supervisor import Summary, check_available, run
from harness.search.worker import WorkerSpec, work

__all__ = [
    "Search", "Storage", "Summary", "TrialError", "WorkerSpec",
    "best_yaml", "check_available", "open_storage", "resolve", "run", "tally", "work", "write_reports",
]
