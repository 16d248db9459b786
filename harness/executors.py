"""Where cells run: in-process (``local``), a spawn process pool (``pool``), or a Ray cluster (``ray``).

Every executor runs the same function on the same picklable ``CellTask`` (a cell's config and paths, never
modules or tensors), and every result goes through the same atomic per-cell store, so executors differ only in
where the work happens. A worker that dies (segfault, OOM kill) fails its own cell and nothing else.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Protocol

from harness.grid import Cell
from harness.plugins import Registry

WORKER_DIED = (
    "worker process died while running this cell (killed by a signal: out of memory, a segfault or SIGKILL); "
    "rerun to retry it"
)


@dataclass(frozen=True)
class CellTask:
    """Everything a worker needs to run one cell: plain data only, so it crosses process boundaries."""

    cell: dict[str, Any]
    benchmark: str
    primary_metric: str
    directions: dict[str, str]
    out: str
    device: str
    fresh: bool = False
    progress: bool = False
    #: torch threads for this worker (None: torch's default).
    threads: int | None = None

    @property
    def cell_id(self) -> str:
        return str(self.cell["cell_id"])


Outcome = dict[str, Any]
OnOutcome = Callable[[CellTask, Outcome], None]


class Executor(Protocol):
    def run(self, tasks: list[CellTask], on_outcome: OnOutcome) -> None: ...


@dataclass
class _WorkerState:
    """Per-process caches: the plugin registry and each dataset, loaded once per process."""

    registry: Registry | None = None
    data: dict[str, Any] = field(default_factory=dict)


_STATE = _WorkerState()


def run_task(task: CellTask, registry: Registry | None = None) -> Outcome:
    """Run one cell unless it is done or another process holds it; returns {"status": ..., "reason": ...}."""
    import torch

    from harness.runner import DataCache, run_cell
    from harness.store import Store

    if task.threads:
        torch.set_num_threads(task.threads)
    if registry is None:
        if _STATE.registry is None:
            from harness.plugins import load_registry

            _STATE.registry = load_registry()
        registry = _STATE.registry
    device = torch.device(task.device)
    cache = _STATE.data.get(task.device)
    if cache is None or cache.registry is not registry:
        cache = _STATE.data[task.device] = DataCache(registry, device)
    store = Store(Path(task.out))
    cell = Cell.from_json(task.cell)
    if task.fresh:
        store.forget(cell)
    if store.is_done(cell):
        return {"status": "cached"}
    with store.claim(cell) as claimed:
        if not claimed:
            return {"status": "busy", "reason": "another process is running this cell"}
        if store.is_done(cell):  # finished by another process while we waited
            return {"status": "cached"}
        meta = {"benchmark": task.benchmark, "primary_metric": task.primary_metric, "directions": task.directions}
        result = run_cell(cell, meta, registry, store, cache, device, Path(task.out) / "cache", task.progress)
    return {"status": result["status"], "reason": result.get("reason")}


class LocalExecutor:
    """In-process and sequential: the default for one worker, and what tests and debuggers use."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def run(self, tasks: list[CellTask], on_outcome: OnOutcome) -> None:
        for task in tasks:
            on_outcome(task, run_task(task, self.registry))


def _pool_entry(task: CellTask) -> Outcome:
    # A fresh spawned process: pin it to its device before anything touches CUDA.
    if task.device.startswith("cuda"):
        import torch

        torch.cuda.set_device(torch.device(task.device))
    return run_task(task)


class PoolExecutor:
    """A pool of spawned processes, one fresh process per cell, one cell per slot at a time.

    Each slot is its own single-worker ``ProcessPoolExecutor`` (spawn, ``max_tasks_per_child=1``): when a
    worker dies, the standard pool marks every running future broken and kills its siblings, so a slot per
    worker is what keeps one crash to one cell. Slots are pinned to devices (one or more per GPU).
    """

    def __init__(self, devices: list[str], threads: int | None = None) -> None:
        if not devices:
            raise ValueError("the pool needs at least one slot")
        self.devices = devices
        self.threads = threads

    def _slot(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"), max_tasks_per_child=1)

    def run(self, tasks: list[CellTask], on_outcome: OnOutcome) -> None:
        queue = list(reversed(tasks))
        slots = [self._slot() for _ in self.devices]
        running: dict[Future[Outcome], tuple[int, CellTask]] = {}
        try:
            while queue or running:
                for index, device in enumerate(self.devices):
                    busy = any(slot_index == index for slot_index, _ in running.values())
                    if queue and not busy:
                        task = queue.pop()
                        task = CellTask(**{**task.__dict__, "device": device, "threads": self.threads})
                        running[slots[index].submit(_pool_entry, task)] = (index, task)
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    index, task = running.pop(future)
                    try:
                        outcome = future.result()
                    except BrokenProcessPool:
                        outcome = _record_crash(task)
                        slots[index].shutdown(wait=False)
                        slots[index] = self._slot()
                    on_outcome(task, outcome)
        finally:
            for slot in slots:
                slot.shutdown(wait=True, cancel_futures=True)


def _record_crash(task: CellTask) -> Outcome:
    """Store a failed result for a cell whose worker died, unless the cell got to store its own result."""
    from harness.store import Store

    store = Store(Path(task.out))
    cell = Cell.from_json(task.cell)
    existing = store.result(cell)
    if existing is not None and existing.get("benchmark") == task.benchmark and existing["status"] in ("done", "failed"):
        return {"status": existing["status"], "reason": existing.get("reason")}
    store.write_result(
        cell,
        {"benchmark": task.benchmark, "primary_metric": task.primary_metric, "directions": task.directions,
         "status": "failed", "reason": WORKER_DIED},
    )
    return {"status": "failed", "reason": WORKER_DIED}


class RayExecutor:
    """Each cell a Ray task (``num_gpus=1`` per cell when GPUs exist), retried when its worker dies.

    The driver writes nothing: results go through the same atomic per-cell store from inside the task, and a
    retried cell resumes from its last epoch checkpoint, so a retry never duplicates a result.
    """

    def __init__(self, address: str | None, gpus_per_cell: float, max_retries: int = 3, cpus_per_cell: float = 1) -> None:
        self.address = address
        self.gpus_per_cell = gpus_per_cell
        self.cpus_per_cell = cpus_per_cell
        self.max_retries = max_retries

    def run(self, tasks: list[CellTask], on_outcome: OnOutcome) -> None:
        import ray

        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
        remote = ray.remote(
            num_gpus=self.gpus_per_cell, num_cpus=self.cpus_per_cell, max_retries=self.max_retries
        )(_ray_entry)
        refs = {remote.remote(task): task for task in tasks}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            task = refs[done[0]]
            try:
                outcome = ray.get(done[0])
            except ray.exceptions.RayError as exc:  # retries exhausted
                outcome = _record_crash(task)
                outcome["reason"] = f"{WORKER_DIED} ({type(exc).__name__})"
            on_outcome(task, outcome)


def _ray_entry(task: CellTask) -> Outcome:
    import ray

    gpu_ids = ray.get_gpu_ids()
    if gpu_ids and task.device.startswith("cuda"):
        # Ray sets CUDA_VISIBLE_DEVICES to the GPU it granted: inside the task it is always cuda:0.
        task = CellTask(**{**task.__dict__, "device": "cuda:0"})
    return run_task(task)


def progress_counter(total: int, enabled: bool, label: str) -> tuple[Counter[str], OnOutcome, Callable[[], None]]:
    """One overall bar (done / failed / skipped / cached) shared by every executor."""
    from tqdm.auto import tqdm

    counts: Counter[str] = Counter()
    lock = threading.Lock()
    bar = tqdm(total=total, desc=label, unit="cell", disable=not enabled)

    def on_outcome(task: CellTask, outcome: Outcome) -> None:
        with lock:
            counts[outcome["status"]] += 1
            bar.update(1)
            bar.set_postfix({k: counts[k] for k in ("done", "cached", "failed", "skipped", "busy") if counts.get(k)})

    return counts, on_outcome, bar.close


def cpu_threads_per_worker(workers: int) -> int:
    """Split the cores so N CPU workers do not oversubscribe them."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, workers))
