"""The job every executor runs: one cell, in this process or another, unless its stored result says it needs
no run; and the failed result recorded for a cell whose process died."""

from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from harness.grid import Cell
from harness.registry import Registry, load_registry
from harness.run.cell import DataCache, run_cell
from harness.run.result import FINISHED, CellResult, Outcome, Status
from harness.run.store import Store
from harness.run.task import CellTask
from harness.run.tracking import TrackerSet

@dataclass
class _ProcessCaches:
    """Per process: the plugin registry and each device's datasets, loaded once however many cells it runs."""

    registry: Registry | None = None
    data: dict[str, DataCache] = field(default_factory=dict)
    #: One set per tracker configuration, so a tracker switched off stays off for the rest of the run.
    trackers: dict[str, TrackerSet] = field(default_factory=dict)


_CACHES = _ProcessCaches()


@dataclass
class CellJob:
    """Runs a ``CellTask``. ``registry``: the caller's (in-process runs); a job sent to another process drops it
    there and loads that process's own, since a plugin manager does not cross process boundaries."""

    registry: Registry | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"registry": None}

    def __call__(self, task: CellTask) -> Outcome:
        if task.device.startswith("cuda:"):
            # A spawned worker is pinned to its slot's device before anything touches CUDA; a bare "cuda" (the
            # local executor's --device cuda) has no index to pin and means the current device.
            torch.cuda.set_device(torch.device(task.device))
        if task.threads:
            torch.set_num_threads(task.threads)
        registry = self.registry or _process_registry()
        return run_task(task, registry)

    def crashed(self, task: CellTask, reason: str) -> Outcome:
        if task.pack:  # every member of a pack whose process died
            from harness.run.packing import members

            outcomes = tuple((m.cell_id, self.crashed(m, reason)) for m in members(task))
            return replace(outcomes[0][1], members=outcomes)
        store = Store(Path(task.out))
        cell = Cell.from_json(task.cell)
        existing = store.result(cell)
        # The cell got to store its own outcome before its process died: that one stands.
        if (existing is not None and existing.benchmark == task.benchmark
                and existing.status in (Status.DONE, Status.FAILED)):
            return existing.outcome
        store.write_result(cell, CellResult(Status.FAILED, task.benchmark, task.primary_metric, task.directions,
                                            reason=reason))
        return Outcome(Status.FAILED, reason)


def _process_registry() -> Registry:
    if _CACHES.registry is None:
        _CACHES.registry = load_registry()
    return _CACHES.registry


def _data_cache(registry: Registry, device: str) -> DataCache:
    cache = _CACHES.data.get(device)
    if cache is None or cache.registry is not registry:
        cache = _CACHES.data[device] = DataCache(registry, torch.device(device))
    return cache


def _tracker_set(registry: Registry, specs: tuple[tuple[str, dict[str, Any]], ...]) -> TrackerSet | None:
    if not specs:
        return None
    key = json.dumps(specs, sort_keys=True, default=str)
    if key not in _CACHES.trackers:
        _CACHES.trackers[key] = TrackerSet(registry, specs)
    return _CACHES.trackers[key]


def run_task(task: CellTask, registry: Registry) -> Outcome:
    """Run one cell (or a pack: ``task.pack``) unless it needs no run.

    Needs no run: done (under ``--fresh``: finished by this fresh run), or finished by another process while this
    one waited for its lock. Another process holding the cell gives ``busy``, or with ``task.wait`` a wait for it.
    """
    if task.pack:
        return _run_pack(task, registry)
    store = Store(Path(task.out))
    cell = Cell.from_json(task.cell)
    with ExitStack() as held:
        stored = _claimed(store, cell, task, held)
        if stored is not None:
            return stored
        return _run_claimed(task, cell, store, registry)


def _claimed(store: Store, cell: Cell, task: CellTask, held: ExitStack) -> Outcome | None:
    """Take the cell's lock into ``held``; None when this process is to run it, else the outcome instead: its
    stored one (done, or finished elsewhere while this one waited) or ``busy`` (another process holds it)."""
    stored = _stored_outcome(store, cell, task)
    if stored is not None:
        return stored
    seen = store.result_stamp(cell)
    if not held.enter_context(store.claim(cell, wait=task.wait)):
        return Outcome(Status.BUSY, "another process is running this cell")
    return _stored_outcome(store, cell, task, waited=True, seen=seen)  # finished elsewhere while we waited


def _forget_for_fresh(store: Store, cell: Cell, task: CellTask) -> None:
    """Under ``--fresh``, drop the cell's old result before redoing it, keeping a checkpoint this fresh run wrote.
    Only while holding its lock: forgetting before it deleted what a concurrent run had just redone."""
    if task.fresh:
        store.forget(cell, keep_checkpoint_since=task.fresh_run.started_unix if task.fresh_run is not None else None)


def _run_claimed(task: CellTask, cell: Cell, store: Store, registry: Registry, packed: int | None = None) -> Outcome:
    """Run a cell whose lock this process holds; ``packed``: the size of the pack that trained it (which forgot
    the cell's old result before training it: what it trained is this run's)."""
    meta: dict[str, Any] = {"benchmark": task.benchmark, "primary_metric": task.primary_metric,
                            "directions": task.directions, "torch_threads": torch.get_num_threads()}
    if packed:
        meta["packed"] = packed
    else:
        _forget_for_fresh(store, cell, task)
    if task.fresh_run is not None:
        meta["fresh_run"] = task.fresh_run.id
    cache = _data_cache(registry, task.device)
    result = run_cell(cell, meta, registry, store, cache, torch.device(task.device), Path(task.out) / "cache",
                      task.progress, latent_figures=task.latent_figures,
                      trackers=_tracker_set(registry, task.trackers))
    return result.outcome


def _run_pack(task: CellTask, registry: Registry) -> Outcome:
    """Train a pack's members together (``harness.run.packing``), then evaluate and store each as a cell.

    Each member is claimed as a lone cell would be; one done already or held by another process leaves the pack
    (``busy`` comes back for it, and the run returns to it alone). The outcome's status is the first member's;
    ``members`` has every member's."""
    from harness.run import packing

    store = Store(Path(task.out))
    outcomes: dict[str, Outcome] = {}
    with ExitStack() as held:
        ready: list[tuple[CellTask, Cell]] = []
        for member in packing.members(task):
            cell = Cell.from_json(member.cell)
            stored = _claimed(store, cell, member, held)
            if stored is not None:
                outcomes[member.cell_id] = stored
            else:
                ready.append((member, cell))
        packed = None
        if len(ready) > 1:
            cells = [cell for _, cell in ready]
            for member, cell in ready:
                _forget_for_fresh(store, cell, member)
            device = torch.device(task.device)
            reason = packing.train_pack(cells, store, _data_cache(registry, task.device), registry, device,
                                        task.progress)  # fmt: skip
            if reason:
                packing.say_unpacked(cells, reason)
            else:
                packed = len(cells)
        for member, cell in ready:
            outcomes[member.cell_id] = _run_claimed(member, cell, store, registry, packed)
    first = outcomes[task.cell_id]
    return Outcome(first.status, first.reason, members=tuple(outcomes.items()))


def _stored_outcome(
    store: Store, cell: Cell, task: CellTask, waited: bool = False, seen: int | None = None
) -> Outcome | None:
    """The outcome of a cell that needs no run, from its stored result; None when it must run.

    ``waited``: called after taking the cell's lock, ``seen`` the result's stamp from before. A result another
    process wrote meanwhile is that process's outcome, failed or not: running the cell again would do it twice.
    """
    result = store.redone(cell, task.fresh_run) if task.fresh_run is not None else store.result(cell)
    if result is None or (task.fresh and task.fresh_run is None):
        return None
    if result.status == Status.DONE:
        return Outcome(Status.CACHED)
    meanwhile = waited and store.result_stamp(cell) != seen
    if result.status in FINISHED and (task.fresh_run is not None or meanwhile):
        return result.outcome
    return None
