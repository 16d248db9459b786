"""Where cells run: in-process (``local``), a spawn process pool (``pool``), or a Ray cluster (``ray``).

Every executor is handed the job to run (``harness.run.worker.CellJob``) and the picklable ``CellTask``s to run it
on (a cell's config and paths, never modules or tensors), so executors differ only in where the work happens and
know nothing of what a cell does. A worker that dies (segfault, OOM kill) fails its own cell and nothing else:
the executor tells the job (``Job.crashed``), which records it.
"""

from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context

from harness.run.result import Outcome
from harness.run.task import CellTask, Job, OnOutcome

#: Why a cell whose process died failed (the job records it, unless the cell stored its own result first).
WORKER_DIED = (
    "worker process died while running this cell (killed by a signal: out of memory, a segfault or SIGKILL); "
    "rerun to retry it"
)

class LocalExecutor:
    """In-process and sequential: the default for one worker, and what tests and debuggers use."""

    def __init__(self, threads: int | None = None) -> None:
        #: torch threads for the cells, set in this process (None: leave the process's own)
        self.threads = threads

    def run(self, tasks: list[CellTask], job: Job, on_outcome: OnOutcome) -> None:
        for task in tasks:
            task = task.on(threads=self.threads)
            on_outcome(task, job(task))


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

    def run(self, tasks: list[CellTask], job: Job, on_outcome: OnOutcome) -> None:
        queue = list(reversed(tasks))
        slots = [self._slot() for _ in self.devices]
        running: dict[Future[Outcome], tuple[int, CellTask]] = {}
        try:
            while queue or running:
                for index, device in enumerate(self.devices):
                    busy = any(slot_index == index for slot_index, _ in running.values())
                    if queue and not busy:
                        task = queue.pop()
                        task = task.on(device=device, threads=self.threads)
                        running[slots[index].submit(job, task)] = (index, task)
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    index, task = running.pop(future)
                    try:
                        outcome = future.result()
                    except BrokenProcessPool:
                        outcome = job.crashed(task, WORKER_DIED)
                        slots[index].shutdown(wait=False)
                        slots[index] = self._slot()
                    on_outcome(task, outcome)
        finally:
            for slot in slots:
                slot.shutdown(wait=True, cancel_futures=True)


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

    def run(self, tasks: list[CellTask], job: Job, on_outcome: OnOutcome) -> None:
        import ray

        if not ray.is_initialized():
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False)
        remote = ray.remote(
            num_gpus=self.gpus_per_cell, num_cpus=self.cpus_per_cell, max_retries=self.max_retries
        )(_ray_entry)
        refs = {remote.remote(job, task): task for task in tasks}
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            task = refs[done[0]]
            try:
                outcome = ray.get(done[0])
            except ray.exceptions.RayError as exc:  # retries exhausted
                outcome = job.crashed(task, f"{WORKER_DIED} ({type(exc).__name__})")
            on_outcome(task, outcome)


def _ray_entry(job: Job, task: CellTask) -> Outcome:
    import ray

    gpu_ids = ray.get_gpu_ids()
    if gpu_ids and task.device.startswith("cuda"):
        # Ray sets CUDA_VISIBLE_DEVICES to the GPU it granted: inside the task it is always cuda:0.
        task = task.on(device="cuda:0")
    return job(task)
