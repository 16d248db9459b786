"""Where cells run: in-process (``local``), a spawn process pool (``pool``), or a Ray cluster (``ray``).

Every executor runs the same function on the same picklable ``CellTask`` (a cell's config and paths, never
modules or tensors), and every result goes through the same atomic per-cell store, so executors differ only in
where the work happens. A worker that dies (segfault, OOM kill) fails its own cell and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Protocol

from harness.grid import Cell
from harness.registry import Registry
from harness.run.store import FINISHED, FreshRun, Store

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
    #: The ``--fresh`` run this cell belongs to: a result it already wrote is kept, the cell is not redone.
    fresh_run: FreshRun | None = None
    #: Block on the cell's lock when another process holds it (instead of returning ``busy``).
    wait: bool = False

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
    """Run one cell unless it needs no run; returns {"status": ..., "reason": ...}.

    Needs no run: done (under ``--fresh``: finished by this fresh run), or finished by another process while this
    one waited for its lock. Another process holding the cell gives ``busy``, or with ``task.wait`` a wait for it.
    """
    import torch

    from harness.run.cell import DataCache, run_cell

    if task.threads:
        torch.set_num_threads(task.threads)
    if registry is None:
        if _STATE.registry is None:
            from harness.registry import load_registry

            _STATE.registry = load_registry()
        registry = _STATE.registry
    device = torch.device(task.device)
    cache = _STATE.data.get(task.device)
    if cache is None or cache.registry is not registry:
        cache = _STATE.data[task.device] = DataCache(registry, device)
    store = Store(Path(task.out))
    cell = Cell.from_json(task.cell)
    stored = _stored_outcome(store, cell, task)
    if stored is not None:
        return stored
    seen = store.result_stamp(cell)
    with store.claim(cell, wait=task.wait) as claimed:
        if not claimed:
            return {"status": "busy", "reason": "another process is running this cell"}
        stored = _stored_outcome(store, cell, task, waited=True, seen=seen)  # finished elsewhere while we waited
        if stored is not None:
            return stored
        meta = {"benchmark": task.benchmark, "primary_metric": task.primary_metric, "directions": task.directions,
                "torch_threads": torch.get_num_threads()}
        if task.fresh:
            # Only here, holding the lock: forgetting before it deleted what a concurrent run had just redone.
            since = task.fresh_run.started_unix if task.fresh_run is not None else None
            store.forget(cell, keep_checkpoint_since=since)
        if task.fresh_run is not None:
            meta["fresh_run"] = task.fresh_run.id
        result = run_cell(cell, meta, registry, store, cache, device, Path(task.out) / "cache", task.progress)
    return {"status": result["status"], "reason": result.get("reason")}


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
    status = result.get("status")
    if status == "done":
        return {"status": "cached"}
    meanwhile = waited and store.result_stamp(cell) != seen
    if status in FINISHED and (task.fresh_run is not None or meanwhile):
        return {"status": status, "reason": result.get("reason")}
    return None


class LocalExecutor:
    """In-process and sequential: the default for one worker, and what tests and debuggers use."""

    def __init__(self, registry: Registry, threads: int | None = None) -> None:
        self.registry = registry
        #: torch threads for the cells, set in this process (None: leave the process's own)
        self.threads = threads

    def run(self, tasks: list[CellTask], on_outcome: OnOutcome) -> None:
        for task in tasks:
            if self.threads:
                task = CellTask(**{**task.__dict__, "threads": self.threads})
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
