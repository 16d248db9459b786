"""Wall time of one grid run in-process (``local``) against a spawn pool (``pool --workers N``), in one run.

Also measures what a spawned worker costs before it trains (interpreter, torch and plugin imports), which is
the pool's overhead per cell. With K GPUs it compares K workers (one per GPU) against one.

    python bench/grid_scaling.py [--cells 8] [--epochs 2] [--workers 2]

The defaults make minute-long conv cells on Fashion-MNIST (or random 28×28 images when it is not installed);
on 2 cores torch already spreads one conv cell over both, so the pool's gain there is small.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import torch
import yaml

from harness.config import load_config
from harness.run.executors import LocalExecutor, PoolExecutor
from harness.threads import cpu_threads_per_worker
from harness.registry import load_registry
from harness.run.plan import plan_benchmark, run_plan
from harness.run.store import Store


def _config(path: Path, cells: int, epochs: int) -> Path:
    registry = load_registry()
    fashion = registry.get("dataset", "fashion-mnist")()
    try:
        fashion.check_available()
        dataset = {"fashion-mnist": {}}
    except Exception:  # noqa: BLE001 - no Fashion-MNIST here: the same shapes from digits would not fit conv
        dataset = {"digits": {}}
    bench = {
        "datasets": dataset,
        "model": {"architecture": "conv" if "fashion-mnist" in dataset else "mlp", "latent_dim": 16, "gamma": 0.01},
        "priors": {"gaussian": {}},
        "regularizers": ["kl"],
        "beta": [1.0],
        "seeds": list(range(cells)),
        "train": {"epochs": epochs, "batch_size": 128, "lr": 0.001},
        "evaluators": {"reconstruction": {}},
        "sample_grid": 0,
    }
    path.write_text(yaml.safe_dump({"benchmarks": {"scaling": bench}}), encoding="utf-8")
    return path


def _probe() -> float:
    """What a fresh worker pays before its cell: imports and plugin discovery."""
    start = time.perf_counter()
    from harness.registry import load_registry as load
    from harness.run.cell import run_cell  # noqa: F401

    load()
    return time.perf_counter() - start


def startup_cost(samples: int = 3) -> float:
    costs = []
    for _ in range(samples):
        start = time.perf_counter()
        with ProcessPoolExecutor(1, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
            pool.submit(_probe).result()
        costs.append(time.perf_counter() - start)
    return sorted(costs)[len(costs) // 2]


def timed_run(cfg: Path, executor_name: str, workers: int, device: str) -> float:
    registry = load_registry()
    plan = plan_benchmark("scaling", load_config(cfg).benchmarks["scaling"], registry, str(cfg))
    if executor_name == "local":
        executor = LocalExecutor()
    elif device.startswith("cuda"):
        executor = PoolExecutor([f"cuda:{i}" for i in range(workers)])
    else:
        executor = PoolExecutor(["cpu"] * workers, threads=cpu_threads_per_worker(workers))
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        counts = run_plan(plan, registry, Store(Path(out)), torch.device(device), progress=False, executor=executor)
        wall = time.perf_counter() - start
    if counts.get("done") != len(plan.cells):
        raise SystemExit(f"{executor_name}: not every cell finished: {dict(counts)}")
    return wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    gpus = torch.cuda.device_count()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = _config(Path(tmp) / "scaling.yaml", args.cells, args.epochs)
        startup = startup_cost()
        if gpus:
            one = timed_run(cfg, "pool", 1, "cuda")
            many = timed_run(cfg, "pool", gpus, "cuda")
            print(f"pool, 1 GPU worker     {one:8.1f} s")
            print(f"pool, {gpus} GPU workers    {many:8.1f} s")
            print(f"ratio                  {one / many:8.2f}   (ideal {gpus}; {args.cells} cells)")
        local = timed_run(cfg, "local", 1, "cpu")
        pool = timed_run(cfg, "pool", args.workers, "cpu")
    cell = local / args.cells
    print(f"local                  {local:8.1f} s   ({cell:.1f} s per cell)")
    print(f"pool --workers {args.workers}       {pool:8.1f} s")
    print(f"ratio local/pool       {local / pool:8.2f}   (cpu, {args.cells} cells, {torch.get_num_threads()} cores)")
    print(f"worker start-up        {startup:8.2f} s per cell (spawn + imports + plugin discovery)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
