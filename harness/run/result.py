"""What a cell's run comes to: its ``Status``, the ``CellResult`` stored as its result.json, and the ``Outcome``
an executor reports for it (a status and a reason, without the metrics)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """A cell's status. The first five are stored; ``cached`` and ``busy`` are only reported by a run."""

    DONE = "done"
    FAILED = "failed"
    #: The grid or the architecture rules the cell out (gan × kl, say); stored with the reason.
    SKIPPED = "skipped"
    #: A search stopped the cell early; a rerun trains it again.
    PRUNED = "pruned"
    #: Already done before this run: nothing ran.
    CACHED = "cached"
    #: Another process holds the cell's lock; the run comes back to it.
    BUSY = "busy"


#: Statuses that end a cell's turn in a run; a cell left without one (interrupted, worker died) is run again.
FINISHED = (Status.DONE, Status.FAILED, Status.SKIPPED)


@dataclass(frozen=True)
class Outcome:
    """What running one cell came to, as an executor reports it."""

    status: Status
    reason: str | None = None
    #: A packed task's members (cell id -> outcome); the task's own status is its first member's.
    members: tuple[tuple[str, Outcome], ...] = ()


@dataclass(frozen=True)
class CellResult:
    """A cell's result.json. Keys that are None are not written, so a stored file holds what the run knew."""

    status: Status
    benchmark: str
    primary_metric: str
    directions: dict[str, str]
    #: The cell's resolved config, as ``Cell.to_json``; filled in by ``Store.write_result``.
    cell: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    metrics: dict[str, float] | None = None
    history: list[dict[str, Any]] | None = None
    seconds: float | None = None
    device: str | None = None
    #: Per cell: a results folder filled over several runs holds cells of several commits.
    git_commit: str | None = None
    torch_threads: int | None = None
    #: The id of the ``--fresh`` run that wrote it.
    fresh_run: str | None = None
    #: What a reader should know about how the result came about (a discarded checkpoint).
    notes: list[str] | None = None
    #: Trained as one member of a pack of this many cells (``harness.model.packed``); None: trained alone.
    packed: int | None = None
    #: Keys written by another version of the harness, kept so reading and rewriting loses nothing.
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def outcome(self) -> Outcome:
        return Outcome(self.status, self.reason)

    def to_json(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if v is not None and k != "extra" and (k != "cell" or v)}
        return {**self.extra, **data, "status": str(self.status)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CellResult:
        """Raises KeyError or ValueError for a file that is not a cell result (a missing key, an unknown status)."""
        missing = [k for k in ("status", "benchmark", "primary_metric", "directions") if k not in data]
        if missing:
            raise KeyError(f"not a cell result: no {', '.join(missing)}")
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: v for k, v in data.items() if k in known}
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**{**values, "status": Status(data["status"])}, extra=extra)
