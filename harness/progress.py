"""How long work shows its progress: bars on a terminal, plain lines in a log (the run's overall count is
``harness.run.console``; the dry run and the winners are ``harness.report.summary``).

One rule decides between a bar and plain lines (``bars_enabled``): tqdm redraws with ``\\r`` and cursor codes, which
turn a log file or a pipe into noise, so bars are drawn only when stderr is a terminal; elsewhere the same progress
is reported as occasional plain lines (one per finished cell, one per evaluator).

Evaluators reach the run's progress setting through ``reporting_enabled()`` (set by the runner around evaluation)
rather than a new argument, so the plugin contract stays as it is; ``bar`` is what a plugin wraps a long loop in.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

from tqdm.auto import tqdm

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
