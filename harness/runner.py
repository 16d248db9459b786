"""Run a benchmark's cells: check everything before training, then train, evaluate and store each cell.

A cell that fails (a non-finite loss, a plugin exception, out of memory) is recorded as failed with its reason
and the others go on; finished cells are skipped on a rerun.
"""

from __future__ import annotations

import json
import time
import traceback
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from harness.api import DataSplit, EvalData, PluginUnavailable
from harness.config import BenchmarkConfig, ConfigError, ModelVariant
from harness.executors import CellTask, Executor, LocalExecutor, progress_counter
from harness.grid import Cell, expand, metric_directions, primary_metric
from harness.perceptual import perceptual_weights
from harness.plugins import Registry
from harness.provenance import git_commit
from harness.samples import save_samples
from harness.store import Store
from harness.train import build_model, fit_post_hoc, train

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


def _evaluate(cell: Cell, registry: Registry, view: Any, data: EvalData) -> dict[str, float]:
    metrics: dict[str, float] = {}
    for ev, options in cell.evaluators.items():
        torch.manual_seed(cell.seed)
        with torch.inference_mode():
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
        history = train(cell, model, train_split, workdir, progress=progress, on_epoch=on_epoch)
        fit_post_hoc(model, train_split, cell.seed)
        view = model.view(cell, data_shape, device, workdir)
        eval_data = EvalData(cell.dataset, cell.dataset_options, train_split, test_split, cache_dir)
        metrics = {**_evaluate(cell, registry, view, eval_data), **model.likelihood.learned()}
        if cell.sample_grid:
            torch.manual_seed(cell.seed)
            save_samples(view, test_split, workdir / "samples.png", cell.sample_grid)
    except CellPruned as exc:
        result = {**base, "status": "pruned", "reason": str(exc), "seconds": round(time.perf_counter() - started, 3)}
        store.write_result(cell, result)
        return result
    except Exception as exc:  # noqa: BLE001 - a failing cell is recorded, the run goes on
        (workdir / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        if device.type == "cuda":
            torch.cuda.empty_cache()
        result = {**base, "status": "failed", "reason": f"{type(exc).__name__}: {exc}"}
        result["seconds"] = round(time.perf_counter() - started, 3)
        store.write_result(cell, result)
        return result
    result = {
        **base,
        "status": "done",
        "metrics": metrics,
        "history": history,
        "seconds": round(time.perf_counter() - started, 3),
        "device": str(device),
        # Per cell: a results folder filled over several runs holds cells of several commits.
        "git_commit": git_commit(Path.cwd()),
    }
    store.write_result(cell, result)
    return result


def run_plan(
    plan: Plan,
    registry: Registry,
    store: Store,
    device: torch.device,
    fresh: bool = False,
    progress: bool = True,
    executor: Executor | None = None,
) -> Counter[str]:
    """Run every cell of ``plan`` not yet done; returns counts by status (done, failed, skipped, cached, busy).

    ``executor`` defaults to in-process; cells that are already done are never handed to it.
    """
    executor = executor or LocalExecutor(registry)
    local = isinstance(executor, LocalExecutor)
    meta = {"primary_metric": primary_metric(plan.config, plan.directions), "directions": plan.directions}
    # Seed by seed: a run stopped halfway has already covered every configuration at least once.
    cells = sorted(plan.cells, key=lambda c: c.seed)
    tasks = [
        CellTask(cell.to_json(), plan.name, out=str(store.root), device=str(device), fresh=fresh,
                 progress=progress and local, **meta)
        for cell in cells
    ]
    counts, on_outcome, close = progress_counter(len(tasks), progress, plan.name)
    todo = []
    for task, cell in zip(tasks, cells):
        if not fresh and store.is_done(cell):
            on_outcome(task, {"status": "cached"})
        else:
            todo.append(task)
    try:
        executor.run(todo, on_outcome)
    finally:
        close()
    return counts
