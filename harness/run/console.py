"""The run's overall count on the console: one bar (or plain lines in a log) over every cell, failures always."""

from __future__ import annotations

import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm.auto import tqdm

from harness.grid import Cell
from harness.progress import bars_enabled, note
from harness.run.result import Outcome, Status

if TYPE_CHECKING:
    from harness.run.task import CellTask, OnOutcome


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def failure_line(task: CellTask, outcome: Outcome) -> str:
    """``cell ID LABEL failed: REASON``, and where the traceback is when the cell left one."""
    label = Cell.from_json(task.cell).label
    line = f"cell {task.cell_id} {label} failed: {_one_line(outcome.reason or 'no reason recorded')}"
    error = Path(task.out) / "cells" / task.cell_id / "error.txt"
    return f"{line} (traceback: {error})" if error.exists() else line


def progress_counter(total: int, enabled: bool, label: str) -> tuple[Counter[str], OnOutcome, Callable[[], None]]:
    """One overall count (done / failed / skipped / cached) shared by every executor.

    On a terminal a bar; in a log one plain line per cell that ran (cached cells are counted, not listed).
    A failed cell's reason is printed as it happens, with progress on or off.
    """
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    drawn = tqdm(total=total, desc=label, unit="cell", disable=not bars_enabled(enabled), file=sys.stderr)

    def on_outcome(task: CellTask, outcome: Outcome) -> None:
        with lock:
            status = outcome.status
            counts[status] += 1
            drawn.update(1)
            drawn.set_postfix({k: counts[k] for k in (Status.DONE, Status.CACHED, Status.FAILED, Status.SKIPPED) if counts.get(k)})
            if status == Status.FAILED:
                note(failure_line(task, outcome))
            elif enabled and status != Status.CACHED and not bars_enabled(enabled):
                finished = sum(counts.values())
                note(f"{label}: cell {finished}/{total} {status}: {Cell.from_json(task.cell).label}")

    return counts, on_outcome, drawn.close
