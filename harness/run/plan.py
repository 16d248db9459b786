"""A benchmark's run: check everything before training, then hand every cell not yet done to an executor.

Finished cells are skipped on a rerun; under ``--fresh`` each cell is redone once (see ``run_plan``).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from harness.config import BenchmarkConfig
from harness.grid import Cell, expand, metric_directions, primary_metric, resolved_options, selected_by
from harness.model.checkpoint import CHECKPOINT
from harness.registry import Registry
from harness.run import latent_figures
from harness.run.cell import check_available
from harness.run.console import progress_counter
from harness.run.executors import LocalExecutor
from harness.run.packing import members, packed_tasks
from harness.run.result import Outcome, Status
from harness.run.store import FreshRun, Store
from harness.run.task import CellTask, Executor
from harness.run.worker import CellJob


@dataclass
class Plan:
    """A benchmark checked and expanded: its cells and what the leaderboard needs to rank them."""

    name: str
    config: BenchmarkConfig
    cells: list[Cell]
    directions: dict[str, str]
    #: The benchmark's trackers (and ``--tracker``'s), with their options resolved.
    trackers: tuple[tuple[str, dict[str, Any]], ...] = ()


def plan_benchmark(
    name: str, bench: BenchmarkConfig, registry: Registry, source: str, extra_trackers: Sequence[str] = ()
) -> Plan:
    """Expand a benchmark and check that every dataset and evaluator can run, before anything trains.

    ``extra_trackers``: names given with ``--tracker`` (default options unless the benchmark sets them).
    """
    cells = expand(name, bench, registry, source)
    at = f"{source}: benchmarks.{name}"
    check_available(cells, registry, at, bench.models)
    trackers = resolve_trackers(bench, registry, at, extra_trackers)
    return Plan(name, bench, cells, metric_directions(registry, cells[0].evaluators), trackers)


def resolve_trackers(
    bench: BenchmarkConfig, registry: Registry, at: str, extra_trackers: Sequence[str] = ()
) -> tuple[tuple[str, dict[str, Any]], ...]:
    """The benchmark's ``trackers:`` and those named with ``--tracker`` (default options unless the benchmark sets
    them), each with its options validated: (name, options) pairs, plain data that crosses process boundaries.
    ``at`` is the benchmark's key path (``FILE: benchmarks.NAME``); a search resolves its benchmark's the same way."""
    wanted = {**{t: {} for t in extra_trackers}, **bench.trackers}
    where = {t: f"{at}.trackers.{t}" if t in bench.trackers else f"--tracker {t}" for t in wanted}
    return tuple((t, resolved_options(registry, "tracker", t, raw, where[t])) for t, raw in wanted.items())


def run_plan(
    plan: Plan,
    registry: Registry,
    store: Store,
    device: torch.device,
    fresh: bool = False,
    progress: bool = True,
    executor: Executor | None = None,
    pack: str | int = "off",
) -> Counter[str]:
    """Run every cell of ``plan`` not yet done; returns counts by status (done, failed, skipped, cached).

    ``executor`` defaults to in-process; cells that are already done are never handed to it.
    ``pack``: ``off``, ``auto`` or a number of cells per pack: cells differing only in seed and β train as one
    vectorised model (``harness.run.packing``), then are evaluated and stored as ordinary cells.

    Several runs may share one out folder. A cell another process is running is not skipped: it is set aside,
    and once the other cells are through this run waits for its lock, then takes that process's outcome (or, if
    it died, runs the cell itself, resuming from its checkpoint). So a return means every cell has an outcome in
    the store, and ``busy`` never appears in the counts.

    ``fresh`` redoes every cell once: it records the fresh run in the store (``Store.begin_fresh_run``), or joins
    the unfinished one recorded there (interrupted, or running in another process), so a cell it already redid
    is kept; the record is dropped once every cell has been through. An exception (Ctrl-C) keeps the record.
    """
    executor = executor or LocalExecutor()
    job = CellJob(registry)
    # Seed by seed: a run stopped halfway has already covered every configuration at least once.
    cells = sorted(plan.cells, key=lambda c: c.seed)
    run = _begin_fresh_run(store, cells) if fresh else None
    # Only in-process cells draw bars: a spawned worker's bar would fight the overall one for the terminal.
    tasks = _tasks(plan, cells, store, device, fresh, run, progress and isinstance(executor, LocalExecutor))
    counts, on_outcome, close = progress_counter(len(tasks), progress, plan.name)
    todo = []
    for task, cell in zip(tasks, cells):
        # Under --fresh, done means done by this fresh run (in this process, an earlier one or a concurrent one).
        if store.is_done(cell) and (run is None or store.redone(cell, run) is not None):
            if task.latent_figures is not None:
                _draw_missing_latent_figures(store, cell, task.latent_figures, registry)
            on_outcome(task, Outcome(Status.CACHED))
        else:
            todo.append(task)
    held_elsewhere: list[CellTask] = []

    def first_pass(task: CellTask, outcome: Outcome) -> None:
        for member, member_outcome in _per_member(task, outcome):
            if member_outcome.status == Status.BUSY:
                held_elsewhere.append(member)
            else:
                on_outcome(member, member_outcome)

    try:
        executor.run(packed_tasks(todo, registry, pack), job, first_pass)
        executor.run([replace(task, wait=True) for task in held_elsewhere], job, on_outcome)
    finally:
        close()
    if run is not None:
        store.end_fresh_run(run)
    return counts


def _per_member(task: CellTask, outcome: Outcome) -> list[tuple[CellTask, Outcome]]:
    """A packed task's outcome as its members' (a lone cell's as itself)."""
    if not task.pack:
        return [(task, outcome)]
    by_id = dict(outcome.members)
    return [(member, by_id.get(member.cell_id, outcome)) for member in members(task)]


def _tasks(
    plan: Plan, cells: list[Cell], store: Store, device: torch.device, fresh: bool, run: FreshRun | None,
    progress: bool,
) -> list[CellTask]:
    meta = {"primary_metric": primary_metric(plan.config, plan.directions), "directions": plan.directions}
    latent = plan.config.latent_figures.model_dump() if plan.config.latent_figures is not None else None
    stored = [cell.to_json() for cell in cells]  # to_json hashes the cell: once each
    return [
        CellTask(data, plan.name, out=str(store.root), device=str(device), fresh=fresh, progress=progress,
                 fresh_run=run, latent_figures=latent if latent and selected_by(data, latent) else None,
                 trackers=plan.trackers, **meta)
        for data in stored
    ]


def _draw_missing_latent_figures(store: Store, cell: Cell, options: dict[str, Any], registry: Registry) -> None:
    """A cell trained before its benchmark asked for latent figures gets them from its checkpoint, when it has one
    (a clone of committed results has none, and keeps the figures committed with them)."""
    if latent_figures.on_disk(store.root, cell.cell_id, cell.benchmark):
        return
    if not (store.cells_dir / cell.cell_id / CHECKPOINT).is_file():
        return
    for note in latent_figures.draw_noted(store.root, cell, options, registry):
        print(f"{cell.label}: {note}", file=sys.stderr)


def _begin_fresh_run(store: Store, cells: list[Cell]) -> FreshRun:
    run, joined = store.begin_fresh_run(cells)
    if joined:
        redone = sum(1 for cell in cells if store.redone(cell, run) is not None)
        print(f"{store.root}: continuing the fresh run started at {run.started} ({redone} cells already redone)",
              file=sys.stderr)
    return run
