"""Run a benchmark's cells: check everything before training, then train, evaluate and store each cell.

A cell that fails (a non-finite loss, a plugin exception, out of memory) is recorded as failed with its reason
and the others go on; finished cells are skipped on a rerun.
"""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from harness.api import DataSplit, EvalData, PluginUnavailable
from harness.config import BenchmarkConfig, ConfigError, ModelVariant
from harness.run.executors import CellTask, Executor, LocalExecutor
from harness.grid import Cell, expand, metric_directions, primary_metric
from harness.model.perceptual import perceptual_weights
from harness.registry import Registry
from harness.progress import reporting, stages
from harness.run.console import progress_counter
from harness.run.provenance import git_commit
from harness.images import save_samples
from harness.run.store import FreshRun, Store
from harness.model.train import build_model, fit_post_hoc, train

OnEpoch = Callable[[int, dict[str, float]], None]


class CellPruned(Exception):
    """Raised by an ``on_epoch`` callback to stop a cell early (a search pruning a hopeless trial).

    The cell is stored with status ``pruned`` and the message as its reason; a rerun trains it again.
    """


@dataclass
class Plan:
    """A benchmark checked and expanded: its cells and what the leaderboard needs to rank them."""

    name: str
    config: BenchmarkConfig
    cells: list[Cell]
    directions: dict[str, str]


def plan_benchmark(name: str, bench: BenchmarkConfig, registry: Registry, source: str) -> Plan:
    """Expand a benchmark and check that every dataset and evaluator can run, before anything trains."""
    cells = expand(name, bench, registry, source)
    check_available(cells, registry, f"{source}: benchmarks.{name}", bench.models)
    return Plan(name, bench, cells, metric_directions(registry, cells[0].evaluators))


def check_available(
    cells: Sequence[Cell],
    registry: Registry,
    at: str,
    models: Mapping[str, ModelVariant] | None = None,
    evaluators_at: str | None = None,
) -> None:
    """Raise ConfigError (exit 2, before training) when a dataset, an evaluator's weights or the perceptual term's
    weights that ``cells`` need are missing.

    ``at`` is the benchmark's key path (``FILE: benchmarks.NAME``); ``models`` its named variants, to say where a
    perceptual term was set; ``evaluators_at`` where the evaluators were given when not in the benchmark.
    """
    for ds, options in {(c.dataset, json.dumps(c.dataset_options, sort_keys=True)) for c in cells}:
        _check(registry.get("dataset", ds)(**json.loads(options)), f"{at}.datasets.{ds}")
    for ev, options in cells[0].evaluators.items():
        _check(registry.get("evaluator", ev)(**options), f"{evaluators_at or f'{at}.evaluators'}.{ev}")
    variants = models or {}
    for cell in {c.variant: c for c in cells if c.model.get("perceptual")}.values():
        own = cell.variant in variants and "perceptual" in variants[cell.variant].model.model_fields_set
        model_at = f"models.{cell.variant}.model" if own else "model"
        try:
            perceptual_weights(cell.model["perceptual"])
        except PluginUnavailable as exc:
            raise ConfigError(f"{at}.{model_at}.perceptual", exc.message, exc.fix) from None


def _check(plugin: Any, where: str) -> None:
    try:
        plugin.check_available()
    except PluginUnavailable as exc:
        raise ConfigError(where, exc.message, exc.fix) from None


@dataclass
class DataCache:
    """Each dataset is loaded once per run and kept on the training device."""

    registry: Registry
    device: torch.device
    _splits: dict[str, tuple[DataSplit, DataSplit]] = field(default_factory=dict)

    def get(self, cell: Cell) -> tuple[DataSplit, DataSplit]:
        key = f"{cell.dataset}:{json.dumps(cell.dataset_options, sort_keys=True)}"
        if key not in self._splits:
            dataset = self.registry.get("dataset", cell.dataset)(**cell.dataset_options)
            self._splits[key] = (dataset.load("train").to(self.device), dataset.load("test").to(self.device))
        return self._splits[key]


def _evaluate(cell: Cell, registry: Registry, view: Any, data: EvalData, progress: bool = False) -> dict[str, float]:
    """Every evaluator of ``cell``; with ``progress`` each one is announced (evaluation can take minutes) and the
    evaluators' own bars (classifier training, sample generation) may show."""
    metrics: dict[str, float] = {}
    for ev in stages(list(cell.evaluators), cell.label, progress):
        options = cell.evaluators[ev]
        torch.manual_seed(cell.seed)
        with torch.inference_mode(), reporting(progress):
            values = registry.get("evaluator", ev)(**options).evaluate(view, data)
        for key, value in values.items():
            metrics[f"{ev}.{key}" if key else ev] = float(value)
    return metrics


def run_cell(
    cell: Cell,
    meta: Mapping[str, Any],
    registry: Registry,
    store: Store,
    data: DataCache,
    device: torch.device,
    cache_dir: Path,
    progress: bool,
    on_epoch: OnEpoch | None = None,
) -> dict[str, Any]:
    """Train and evaluate one cell and store its result; never raises for a problem of the cell itself.

    ``meta`` (benchmark, primary_metric, directions) is stored with the result for the leaderboard.
    ``on_epoch(epoch, mean loss terms)`` is called after each epoch; it may raise ``CellPruned``.
    """
    base = dict(meta)
    if cell.skip_reason:
        result = {**base, "status": "skipped", "reason": cell.skip_reason}
        store.write_result(cell, result)
        return result
    workdir = store.cell_dir(cell)
    store.write_config(cell)
    started = time.perf_counter()
    notes: list[str] = []  # what a reader should know about how this result came about (a discarded checkpoint)
    try:
        train_split, test_split = data.get(cell)
        data_shape = tuple(train_split.x.shape[1:])
        arch = registry.get("architecture", cell.model["architecture"])(**cell.model["architecture_options"])
        reason = arch.incompatibility(data_shape)
        if reason:
            result = {**base, "status": "skipped", "reason": reason}
            store.write_result(cell, result)
            return result
        torch.manual_seed(cell.seed)
        model = build_model(cell, registry, data_shape, device)
        history = train(cell, model, train_split, workdir, progress=progress, on_epoch=on_epoch, notes=notes)
        fit_post_hoc(model, train_split, cell.seed)
        view = model.view(cell, data_shape, device, workdir)
        eval_data = EvalData(cell.dataset, cell.dataset_options, train_split, test_split, cache_dir)
        metrics = {**_evaluate(cell, registry, view, eval_data, progress), **model.likelihood.learned()}
        if cell.sample_grid:
            torch.manual_seed(cell.seed)
            save_samples(view, test_split, workdir / "samples.png", cell.sample_grid)
    except CellPruned as exc:
        result = {**base, "status": "pruned", "reason": str(exc), "seconds": round(time.perf_counter() - started, 3)}
        store.write_result(cell, _noted(result, notes))
        return result
    except Exception as exc:  # noqa: BLE001 - a failing cell is recorded, the run goes on
        (workdir / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        if device.type == "cuda":
            torch.cuda.empty_cache()
        result = {**base, "status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
        result["seconds"] = round(time.perf_counter() - started, 3)
        store.write_result(cell, _noted(result, notes))
        return result
    result = {
        **base,
        "status": "done",
        "metrics": metrics,
        "history": history,
        "seconds": round(time.perf_counter() - started, 3),
        "device": str(device),
        # Per cell: a results folder filled over several runs holds cells of several commits.
        "git_commit": git_commit(),  # the harness code this process runs, whatever the cwd
    }
    store.write_result(cell, _noted(result, notes))
    return result


def _noted(result: dict[str, Any], notes: list[str]) -> dict[str, Any]:
    return {**result, "notes": notes} if notes else result


def run_plan(
    plan: Plan,
    registry: Registry,
    store: Store,
    device: torch.device,
    fresh: bool = False,
    progress: bool = True,
    executor: Executor | None = None,
) -> Counter[str]:
    """Run every cell of ``plan`` not yet done; returns counts by status (done, failed, skipped, cached).

    ``executor`` defaults to in-process; cells that are already done are never handed to it.

    Several runs may share one out folder. A cell another process is running is not skipped: it is set aside,
    and once the other cells are through this run waits for its lock, then takes that process's outcome (or, if
    it died, runs the cell itself, resuming from its checkpoint). So a return means every cell has an outcome in
    the store, and ``busy`` never appears in the counts.

    ``fresh`` redoes every cell once: it records the fresh run in the store (``Store.begin_fresh_run``), or joins
    the unfinished one recorded there (interrupted, or running in another process), so a cell it already redid
    is kept; the record is dropped once every cell has been through. An exception (Ctrl-C) keeps the record.
    """
    executor = executor or LocalExecutor(registry)
    local = isinstance(executor, LocalExecutor)
    meta = {"primary_metric": primary_metric(plan.config, plan.directions), "directions": plan.directions}
    # Seed by seed: a run stopped halfway has already covered every configuration at least once.
    cells = sorted(plan.cells, key=lambda c: c.seed)
    run = _begin_fresh_run(store, cells) if fresh else None
    tasks = [
        CellTask(cell.to_json(), plan.name, out=str(store.root), device=str(device), fresh=fresh,
                 progress=progress and local, fresh_run=run, **meta)
        for cell in cells
    ]
    counts, on_outcome, close = progress_counter(len(tasks), progress, plan.name)
    todo = []
    for task, cell in zip(tasks, cells):
        # Under --fresh, done means done by this fresh run (in this process, an earlier one or a concurrent one).
        if store.is_done(cell) and (run is None or store.redone(cell, run) is not None):
            on_outcome(task, {"status": "cached"})
        else:
            todo.append(task)
    held_elsewhere: list[CellTask] = []

    def first_pass(task: CellTask, outcome: dict[str, Any]) -> None:
        if outcome["status"] == "busy":
            held_elsewhere.append(task)
        else:
            on_outcome(task, outcome)

    try:
        executor.run(todo, first_pass)
        executor.run([replace(task, wait=True) for task in held_elsewhere], on_outcome)
    finally:
        close()
    if run is not None:
        store.end_fresh_run(run)
    return counts


def _begin_fresh_run(store: Store, cells: list[Cell]) -> FreshRun:
    run, joined = store.begin_fresh_run(cells)
    if joined:
        redone = sum(1 for cell in cells if store.redone(cell, run) is not None)
        print(f"{store.root}: continuing the fresh run started at {run.started} ({redone} cells already redone)",
              file=sys.stderr)
    return run
