"""What a run prints about a benchmark as a whole: the dry run's plan with a time estimate, and the winners."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from harness.report.leaderboard import _arrow, _ranked, long_table
from harness.run.plan import Plan
from harness.run.result import Status
from harness.run.store import Store


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
        float(r.seconds)
        for r in store.results()
        if r.benchmark == plan.name and r.status == Status.DONE and r.seconds is not None
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
    done = [r for r in Store(out).results() if r.benchmark == bench and r.status == Status.DONE]
    if not done:
        return [f"{bench}: no finished cells to rank"]
    primary, directions = done[-1].primary_metric, done[-1].directions
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
