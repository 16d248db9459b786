"""One cell: check what it needs before training, then train, evaluate and store it.

A cell that fails (a non-finite loss, a plugin exception, out of memory) is recorded as failed with its reason
and the others go on (``harness.run.plan`` runs a benchmark's cells).
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from harness.api import DataSplit, EvalData, PluginUnavailable
from harness.conditions import condition_shape, load_splits, split_options
from harness.config import ConfigError, ModelVariant
from harness.grid import Cell
from harness.model.perceptual import perceptual_weights
from harness.registry import Registry
from harness.progress import reporting, stages
from harness.run.provenance import git_commit
from harness.images import CONDITIONAL_SAMPLES, save_conditional_samples, save_samples
from harness.run.latent_figures import draw_noted
from harness.run.result import CellResult, Status
from harness.run.store import Store
from harness.run.tracking import TrackerSet
from harness.trackers import CellEnd, TrackedCell
from harness.model.checkpoint import CHECKPOINT
from harness.model.train import build_model, fit_post_hoc, train

OnEpoch = Callable[[int, dict[str, float]], None]


class CellPruned(Exception):
    """Raised by an ``on_epoch`` callback to stop a cell early (a search pruning a hopeless trial).

    The cell is stored with status ``pruned`` and the message as its reason; a rerun trains it again.
    """


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
        own, _ = split_options(json.loads(options), f"{at}.datasets.{ds}")
        _check(registry.get("dataset", ds)(**own), f"{at}.datasets.{ds}")
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
            train, test = load_splits(self.registry.get("dataset", cell.dataset), cell.dataset, cell.dataset_options)
            self._splits[key] = (train.to(self.device), test.to(self.device))
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
    latent_figures: Mapping[str, Any] | None = None,
    trackers: TrackerSet | None = None,
    *,
    trial: tuple[str, int] | None = None,
) -> CellResult:
    """Train and evaluate one cell and store its result; never raises for a problem of the cell itself.

    ``meta`` (benchmark, primary_metric, directions; torch_threads, fresh_run) is stored with the result.
    ``on_epoch(epoch, mean loss terms)`` is called after each epoch; it may raise ``CellPruned``.
    ``latent_figures``: the benchmark's ``latent_figures:`` options when it selects this cell (drawn once trained).
    ``trackers`` see the cell start, each epoch's losses and how it ended (``harness.trackers``); ``trial``
    (search name, Optuna trial number) tells them the cell is a search's trial.
    """
    base = CellResult(Status.DONE, **meta)
    if cell.skip_reason:
        # Nothing runs: the skip stored already (same reason; of this fresh run under --fresh) stands as it is,
        # so a rerun rewrites no result file (it would only change how many threads it did not use).
        stored = store.result(cell)
        fresh_run = meta.get("fresh_run")
        if (stored is not None and stored.status == Status.SKIPPED and stored.reason == cell.skip_reason
                and (fresh_run is None or stored.fresh_run == fresh_run)):
            return stored
        return _stored(store, cell, replace(base, status=Status.SKIPPED, reason=cell.skip_reason))
    workdir = store.cell_dir(cell)
    store.write_config(cell)
    started = time.perf_counter()
    notes: list[str] = []  # what a reader should know about how this result came about (a discarded checkpoint)

    live = trackers if trackers else None
    shown: set[int] = set()  # the epochs trackers saw as they were trained
    if live is not None:
        live.call("start_cell", tracked_cell(cell, store, workdir, device, trial))
        on_epoch = _tracked_epochs(live, cell.cell_id, on_epoch, shown)

    def ended(status: Status, **values: Any) -> CellResult:
        seconds = round(time.perf_counter() - started, 3)
        result = _stored(store, cell, replace(base, status=status, seconds=seconds, notes=notes or None, **values))
        if live is not None:
            live.call("end_cell", cell_end(cell, result, workdir))
        return result

    try:
        train_split, test_split = data.get(cell)
        data_shape = tuple(train_split.x.shape[1:])
        arch = registry.get("architecture", cell.model["architecture"])(**cell.model["architecture_options"])
        reason = arch.incompatibility(data_shape)
        if reason:
            skipped = _stored(store, cell, replace(base, status=Status.SKIPPED, reason=reason))
            if live is not None:
                live.call("end_cell", cell_end(cell, skipped, workdir))  # it was shown starting
            return skipped
        torch.manual_seed(cell.seed)
        model = build_model(cell, registry, data_shape, device, condition_shape(train_split))
        history = train(cell, model, train_split, workdir, progress=progress, on_epoch=on_epoch, notes=notes,
                        announce_resume=not meta.get("packed"))
        if live is not None:
            # Epochs restored from a checkpoint (a resumed cell, a packed one) are shown too, after the fact.
            for row in history:
                if row["epoch"] not in shown:
                    live.call("log_epoch", cell.cell_id, row["epoch"], {k: v for k, v in row.items() if k != "epoch"})
        fit_post_hoc(model, train_split, cell.seed)
        view = model.view(cell, data_shape, device, workdir, test_split.cond)
        eval_data = EvalData(cell.dataset, cell.dataset_options, train_split, test_split, cache_dir)
        metrics = {**_evaluate(cell, registry, view, eval_data, progress), **model.likelihood.learned()}
        if cell.sample_grid:
            torch.manual_seed(cell.seed)
            save_samples(view, test_split, workdir / "samples.png", cell.sample_grid)
            save_conditional_samples(view, test_split, workdir / CONDITIONAL_SAMPLES)
    except CellPruned as exc:
        return ended(Status.PRUNED, reason=str(exc))
    except Exception as exc:  # noqa: BLE001 - a failing cell is recorded, the run goes on
        (workdir / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        if device.type == "cuda":
            torch.cuda.empty_cache()
        return ended(Status.FAILED, reason=f"{type(exc).__name__}: {exc}")
    if latent_figures is not None:
        notes += draw_noted(store.root, cell, latent_figures, registry)
    # git_commit per cell: the harness code this process runs, whatever the cwd.
    return ended(Status.DONE, metrics=metrics, history=history, device=str(device), git_commit=git_commit())


def tracked_cell(cell: Cell, store: Store, workdir: Path, device: torch.device,
                 trial: tuple[str, int] | None = None) -> TrackedCell:
    provenance = {"git_commit": git_commit(), "torch": torch.__version__, "device": str(device)}
    search, number = trial if trial is not None else (None, None)
    return TrackedCell(cell.cell_id, cell.benchmark, cell.label, cell.to_json(), cell.dataset, cell.prior,
                       cell.regularizer, cell.beta, cell.seed, store.root, workdir, provenance,
                       search, number)  # fmt: skip


def cell_end(cell: Cell, result: CellResult, workdir: Path) -> CellEnd:
    samples, checkpoint = workdir / "samples.png", workdir / CHECKPOINT
    return CellEnd(cell.cell_id, str(result.status), dict(result.metrics or {}), result.reason,
                   samples if samples.is_file() else None, checkpoint if checkpoint.is_file() else None)  # fmt: skip


def _tracked_epochs(trackers: TrackerSet, cell_id: str, on_epoch: OnEpoch | None, shown: set[int]) -> OnEpoch:
    """``on_epoch`` that first shows the epoch (1-based) to the trackers, noting it in ``shown``."""

    def show(epoch: int, means: dict[str, float]) -> None:
        trackers.call("log_epoch", cell_id, epoch + 1, dict(means))
        shown.add(epoch + 1)
        if on_epoch is not None:
            on_epoch(epoch, means)

    return show


def _stored(store: Store, cell: Cell, result: CellResult) -> CellResult:
    store.write_result(cell, result)
    return result
