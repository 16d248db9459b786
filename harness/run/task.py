"""The unit of work an executor hands out: a ``CellTask`` (plain data that crosses process boundaries) and the
``Job`` that runs one (``harness.run.worker.CellJob``), so executors decide only where the work happens."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from harness.run.result import Outcome
from harness.run.store import FreshRun


@dataclass(frozen=True)
class CellTask:
    """Everything a worker needs to run one cell: plain data only, so it crosses process boundaries."""

    cell: dict[str, Any]
    benchmark: str
    primary_metric: str
    directions: dict[str, str]
    out: str
    device: str
    fresh: bool = False
    progress: bool = False
    #: torch threads for this worker (None: torch's default).
    threads: int | None = None
    #: The ``--fresh`` run this cell belongs to: a result it already wrote is kept, the cell is not redone.
    fresh_run: FreshRun | None = None
    #: Block on the cell's lock when another process holds it (instead of returning ``busy``).
    wait: bool = False
    #: The benchmark's ``latent_figures:`` options when they select this cell, else None.
    latent_figures: dict[str, Any] | None = None
    #: The trackers shown this cell: (name, resolved options) pairs.
    trackers: tuple[tuple[str, dict[str, Any]], ...] = ()
    #: A pack's other members (``harness.run.packing``): their cells train together with this one.
    pack: tuple[dict[str, Any], ...] = ()

    @property
    def cell_id(self) -> str:
        return str(self.cell["cell_id"])

    def on(self, device: str | None = None, threads: int | None = None) -> CellTask:
        """This task pinned to ``device`` and/or ``threads`` (None keeps what it has)."""
        return replace(self, device=device or self.device, threads=threads or self.threads)


OnOutcome = Callable[[CellTask, Outcome], None]


class Job(Protocol):
    """Runs one task, in whatever process the executor chose; picklable, so it can be sent to that process."""

    def __call__(self, task: CellTask) -> Outcome: ...

    def crashed(self, task: CellTask, reason: str) -> Outcome:
        """Record that the process running ``task`` died, unless the task stored its own result first."""
        ...


class Executor(Protocol):
    def run(self, tasks: list[CellTask], job: Job, on_outcome: OnOutcome) -> None: ...
