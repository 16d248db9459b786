"""What a run shows on the console: bars on a terminal, plain lines in a log, failures always, a winner at the end.

One rule decides between a bar and plain lines (``bars_enabled``): tqdm redraws with ``\\r`` and cursor codes, which
turn a log file or a pipe into noise, so bars are drawn only when stderr is a terminal; elsewhere the same progress
is reported as occasional plain lines (one per finished cell, one per evaluator).

Evaluators reach the run's progress setting through ``reporting_enabled()`` (set by the runner around evaluation)
rather than a new argument, so the plugin contract stays as it is; ``bar`` is what a plugin wraps a long loop in.
"""

from __future__ import annotations

import math
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tqdm.auto import tqdm

from harness.grid import Cell
from harness.run.store import Store

if TYPE_CHECKING:
    from harness.run.executors import CellTask, OnOutcome, Outcome
    from harness.run.cell import Plan

T = TypeVar("T")

#: Whether the code running now may report progress. True outside a run (a script training a classifier directly
#: still gets its bar); the runner sets it from ``--quiet`` around evaluation, and pool workers run with it off.
_REPORTING: ContextVar[bool] = ContextVar("harness_progress_reporting", default=True)


def bars_enabled(requested: bool) -> bool:
    """Draw a tqdm bar only when progress was asked for and stderr is a terminal (no ``\\r`` in logs or pipes)."""
    stream = sys.stderr
    return requested and stream is not None and hasattr(stream, "isatty") and stream.isatty()


def note(message: str) -> None:
    """One line on stderr that does not tear a bar being drawn."""
    tqdm.write(message, file=sys.stderr)


@contextmanager
def reporting(enabled: bool) -> Iterator[None]:
    """Within the block, ``reporting_enabled()`` is ``enabled`` (the runner wraps each cell's evaluation in it)."""
    token = _REPORTING.set(enabled)
    try:
        yield
    finally:
        _REPORTING.reset(token)


def reporting_enabled() -> bool:
    return _REPORTING.get()


def bar(
    iterable: Iterable[T], *, desc: str, unit: str, total: int | None = None, announce: bool = False
) -> Iterable[T]:
    """``iterable`` with a transient bar on a terminal when reporting is on; silent otherwise.

    ``announce``: for a loop long enough to matter (training a classifier), print ``desc`` once as a plain line
    when the bar cannot be drawn, so a log still says what the run is waiting for.
    """
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if bars_enabled(reporting_enabled()):
        return tqdm(iterable, desc=desc, unit=unit, total=total, leave=False, file=sys.stderr)
    if announce and reporting_enabled():
        note(f"{desc}: {total} {unit}{'s' if total != 1 else ''}..." if total is not None else f"{desc}...")
    return iterable


def stages(names: Sequence[str], label: str, enabled: bool) -> Iterator[str]:
    """Yield ``names`` (a cell's evaluators), showing ``evaluating NAME (i/n)`` as a bar or one plain line each."""
    if bars_enabled(enabled):
        with tqdm(total=len(names), desc="evaluating", unit="evaluator", leave=False, file=sys.stderr) as shown:
            for i, name in enumerate(names, start=1):
                shown.set_description(f"evaluating {name} ({i}/{len(names)})")
                yield name
                shown.update(1)
        return
    for i, name in enumerate(names, start=1):
        if enabled:
            note(f"{label}: evaluating {name} ({i}/{len(names)})...")
        yield name


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def failure_line(task: CellTask, outcome: Outcome) -> str:
    """``cell ID LABEL failed: REASON``, and where the traceback is when the cell left one."""
    label = Cell.from_json(task.cell).label
    line = f"cell {task.cell_id} {label} failed: {_one_line(outcome.get('reason') or 'no reason recorded')}"
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
            status = outcome["status"]
            counts[status] += 1
            drawn.update(1)
            drawn.set_postfix({k: counts[k] for k in ("done", "cached", "failed", "skipped") if counts.get(k)})
            if status == "failed":
                note(failure_line(task, outcome))
            elif enabled and status != "cached" and not bars_enabled(enabled):
                finished = sum(counts.values())
                note(f"{label}: cell {finished}/{total} {status}: {Cell.from_json(task.cell).label}")

    return counts, on_outcome, drawn.close


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def estimate(plan: Plan, store: Store, remaining: int, workers: int) -> str:
    """Time for ``remaining`` cells: the mean of this benchmark's finished cells in ``store``, else the
    benchmark's own ``cost:`` text, else no estimate."""
    if remaining == 0:
        return "nothing to run"
    seconds = [
        float(r["seconds"])
        for r in store.results()
        if r.get("benchmark") == plan.name and r.get("status") == "done" and r.get("seconds") is not None
    ]
    if seconds:
        mean = sum(seconds) / len(seconds)
        total = mean * math.ceil(remaining / max(1, workers))
        return (f"about {_duration(total)} for {remaining} cells (mean {_duration(mean)} per cell over "
                f"{len(seconds)} finished here, {workers} worker{'s' if workers != 1 else ''})")
    if plan.config.cost:
        return f"cost: {plan.config.cost} (from the benchmark; no finished cells here to time)"
    return "no estimate (no finished cells here to time and no cost: in the benchmark)"


def dry_run_lines(plan: Plan, out: Path, workers: int) -> list[str]:
    """What ``harness run --dry-run`` prints for one benchmark: a header with counts and a time estimate, then one
    line per cell, marked ``[done]`` when its stored result is done or ``[skip: ...]`` when the grid skips it."""
    store = Store(out)
    done = {c.cell_id for c in plan.cells if not c.skip_reason and store.is_done(c)}
    skipped = sum(1 for c in plan.cells if c.skip_reason)
    remaining = len(plan.cells) - skipped - len(done)
    lines = [
        f"{plan.name}: {len(plan.cells)} cells ({skipped} skipped, {len(done)} done, {remaining} to run) -> {out}",
        f"  estimate: {estimate(plan, store, remaining, workers)}",
    ]
    for cell in plan.cells:
        mark = f"  [skip: {cell.skip_reason}]" if cell.skip_reason else "  [done]" if cell.cell_id in done else ""
        lines.append(f"  {cell.cell_id}  {cell.label}{mark}")
    return lines


def _config_name(row: dict[str, Any]) -> str:
    """``[model] prior(options) × regularizer (β=b)`` from a leaderboard row."""
    model = f"[{row['model']}] " if row.get("model", "–") != "–" else ""
    options = "" if row["options"] == "–" else f"({row['options']})"
    beta = "" if row["β"] == "–" else f" (β={row['β']})"
    return f"{model}{row['prior']}{options} × {row['regularizer']}{beta}"


def winners(out: Path, bench: str) -> list[str]:
    """``BENCH: best on DATASET by METRIC ↓: CONFIG: mean ± std (n seeds)``, one line per dataset, ranked exactly as
    the leaderboard ranks (``leaderboard._ranked`` over ``long_table``) from the done cells in ``out``."""
    from harness.report.leaderboard import _arrow, _ranked, long_table

    done = [r for r in Store(out).results() if r.get("benchmark") == bench and r.get("status") == "done"]
    if not done:
        return [f"{bench}: no finished cells to rank"]
    primary, directions = done[-1]["primary_metric"], done[-1].get("directions", {})
    frame = long_table(done, Path(out) / "cells")
    lines = []
    for dataset in sorted(frame["dataset"].unique()):
        header, best, *_ = _ranked(frame[frame["dataset"] == dataset], primary, directions)
        row = dict(zip(header, best))
        by = f"{primary} {_arrow(directions.get(primary, 'min'))}"
        if not row.get(primary):
            lines.append(f"{bench}: {dataset}: no cell has {primary} to rank by")
            continue
        seeds = int(row["seeds"])
        lines.append(f"{bench}: best on {dataset} by {by}: {_config_name(row)}: {row[primary]} "
                     f"({seeds} seed{'s' if seeds != 1 else ''})")
    return lines
