"""One folder per cell under ``OUT/cells/<cell_id>/``: its resolved config, checkpoint, samples and a
``result.json`` written atomically (temp file + rename). Finished cells are skipped by a rerun; a per-cell
file lock lets several processes share one out folder without running a cell twice.

A ``--fresh`` run records itself in ``OUT/fresh-run.json`` (its id, start time and cells) until it has been
through every cell: a cell whose result carries that id was redone by it and is not redone again, whether the
run was interrupted and started again or a second ``--fresh`` run on the same folder joined it.
"""

from __future__ import annotations

import fcntl
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from harness.grid import Cell
from harness.model.checkpoint import CHECKPOINT
from harness.paths import under, write_json_atomic
from harness.run.result import FINISHED, CellResult, Status

RESULT = "result.json"
FRESH_RUN = "fresh-run.json"


def _read_result(path: Path) -> CellResult | None:
    try:
        return CellResult.from_json(json.loads(path.read_text(encoding="utf-8")))
    # None when there is no result; a file that is not one is only possible when written by something else
    # (the store writes atomically).
    except (FileNotFoundError, json.JSONDecodeError, KeyError, ValueError, TypeError):
        return None


@dataclass(frozen=True)
class FreshRun:
    """A ``--fresh`` run in progress on one out folder: results it wrote carry its ``id``."""

    id: str
    started: str
    started_unix: float
    cells: list[str]


class Store:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.cells_dir = self.root / "cells"

    def cell_dir(self, cell: Cell) -> Path:
        path = under(self.cells_dir, cell.cell_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def result(self, cell: Cell) -> CellResult | None:
        """The cell's stored result; None when there is none."""
        return _read_result(under(self.cells_dir, cell.cell_id) / RESULT)

    def is_done(self, cell: Cell) -> bool:
        result = self.result(cell)
        return result is not None and result.status == Status.DONE

    def write_config(self, cell: Cell) -> None:
        write_json_atomic(self.cell_dir(cell) / "config.json", cell.to_json())

    def write_result(self, cell: Cell, result: CellResult) -> None:
        write_json_atomic(self.cell_dir(cell) / RESULT, {**result.to_json(), "cell": cell.to_json()})

    def result_stamp(self, cell: Cell) -> int | None:
        """When the cell's result was last written (ns), to tell whether another process stored one meanwhile."""
        try:
            return (under(self.cells_dir, cell.cell_id) / RESULT).stat().st_mtime_ns
        except FileNotFoundError:
            return None

    def forget(self, cell: Cell, keep_checkpoint_since: float | None = None) -> None:
        """``--fresh``: drop a cell's result and checkpoint so it trains again from scratch.

        Call it holding the cell's lock (``claim``): otherwise it can delete what another process just finished.
        ``keep_checkpoint_since`` (a Unix time): keep a checkpoint written since then, by the fresh run itself
        before it was interrupted, so the cell resumes instead of starting over.
        """
        folder = under(self.cells_dir, cell.cell_id)
        (folder / RESULT).unlink(missing_ok=True)
        checkpoint = folder / CHECKPOINT
        try:
            if keep_checkpoint_since is not None and checkpoint.stat().st_mtime >= keep_checkpoint_since:
                return
        except FileNotFoundError:
            return
        checkpoint.unlink(missing_ok=True)

    @contextmanager
    def claim(self, cell: Cell, wait: bool = False) -> Iterator[bool]:
        """Hold the cell's lock while running it; yields False when another process holds it.

        ``wait``: block until the other process lets go (it finished the cell, or died) and yield True.
        flock locks die with their process, so a SIGKILLed run leaves nothing stale behind.
        """
        lock_path = self.cell_dir(cell) / ".lock"
        with lock_path.open("w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def results(self) -> list[CellResult]:
        """Every stored result (any benchmark, any status), in a stable order."""
        found = (_read_result(path) for path in sorted(self.cells_dir.glob(f"*/{RESULT}")))
        return [result for result in found if result is not None]

    # --- --fresh runs ---------------------------------------------------------------------------------------

    @contextmanager
    def _fresh_lock(self) -> Iterator[None]:
        # Two fresh runs starting together must agree on one record: read-or-create under one lock.
        self.root.mkdir(parents=True, exist_ok=True)
        with under(self.root, ".fresh-run.lock").open("w") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def fresh_run(self) -> FreshRun | None:
        """The unfinished ``--fresh`` run recorded here, if any."""
        try:
            data = json.loads(under(self.root, FRESH_RUN).read_text(encoding="utf-8"))
            return FreshRun(str(data["id"]), str(data["started"]), float(data["started_unix"]),
                            [str(c) for c in data["cells"]])
        except (FileNotFoundError, json.JSONDecodeError, KeyError, TypeError, ValueError):
            return None

    def begin_fresh_run(self, cells: list[Cell]) -> tuple[FreshRun, bool]:
        """Start a ``--fresh`` run, or join the unfinished one recorded here; returns (run, joined an old one)."""
        with self._fresh_lock():
            found = self.fresh_run()
            if found is not None:
                return found, True
            now = time.time()
            run = FreshRun(uuid.uuid4().hex, datetime.fromtimestamp(now, timezone.utc).isoformat(timespec="seconds"),
                           now, [c.cell_id for c in cells])
            write_json_atomic(under(self.root, FRESH_RUN), asdict(run))
            return run, False

    def end_fresh_run(self, run: FreshRun) -> None:
        """The fresh run has been through every cell: drop its record (unless a newer run's replaced it)."""
        with self._fresh_lock():
            found = self.fresh_run()
            if found is not None and found.id == run.id:
                under(self.root, FRESH_RUN).unlink(missing_ok=True)

    def redone(self, cell: Cell, run: FreshRun) -> CellResult | None:
        """The cell's result if the fresh run ``run`` already finished it (by any process), else None."""
        result = self.result(cell)
        if result is not None and result.fresh_run == run.id and result.status in FINISHED:
            return result
        return None
