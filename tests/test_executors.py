"""Executors: a spawn pool gives the same numbers as in-process runs, and a dead worker fails only its cell."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import make_distribution, write_config
from harness.cli import main
from harness.run.executors import WORKER_DIED

SUICIDAL = '''
import os
import signal

import torch
from harness import Prior, hookimpl


class SuicidalPrior(Prior):
    """N(0, I) that SIGKILLs its own process at its first fit while the file ``arm`` exists (deleting it first)."""

    name = "suicidal"

    def __init__(self, latent_dim: int, arm: str = ""):
        super().__init__()
        self.latent_dim = latent_dim
        self.arm = arm

    def log_prob(self, z, cond=None):
        return -0.5 * z.pow(2).sum(-1)

    def sample(self, n, cond=None):
        return torch.randn(n, self.latent_dim, device=self.device)

    def fit_loss(self, z, cond=None):
        if self.arm and os.path.exists(self.arm):
            os.remove(self.arm)
            os.kill(os.getpid(), signal.SIGKILL)
        return super().fit_loss(z, cond)


@hookimpl
def harness_register_priors(register):
    register(SuicidalPrior)
'''


def _results(out: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in (out / "cells").glob("*/result.json")}


def test_pool_of_two_spawned_workers_gives_the_same_numbers_as_local(tmp_path):
    cfg = write_config(tmp_path / "b.yaml", seeds=[0, 1], regularizers=["kl", "none"])
    assert main(["run", str(cfg), "--out", str(tmp_path / "pool"), "--quiet", "--executor", "pool", "--workers", "2"]) == 0
    assert main(["run", str(cfg), "--out", str(tmp_path / "local"), "--quiet"]) == 0
    pool, local = _results(tmp_path / "pool"), _results(tmp_path / "local")
    assert len(pool) == 4 and pool.keys() == local.keys()
    for cell_id, result in local.items():
        assert pool[cell_id]["status"] == "done"
        assert pool[cell_id]["metrics"] == result["metrics"]
        assert pool[cell_id]["history"] == result["history"]


def test_a_sigkilled_worker_fails_its_cell_only_and_a_rerun_completes_it(tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "harness-prior-suicidal", "suicidal_test_plugin", SUICIDAL)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", str(site))  # the spawned workers find the plugin the same way
    arm = tmp_path / "armed"
    arm.touch()
    cfg = write_config(
        tmp_path / "b.yaml", priors={"gaussian": {}, "suicidal": {"arm": str(arm)}}, regularizers=["none"], seeds=[0, 1]
    )
    out = tmp_path / "out"
    args = ["run", str(cfg), "--out", str(out), "--quiet", "--executor", "pool", "--workers", "2"]
    assert main(args) == 1
    results = _results(out)
    failed = [r for r in results.values() if r["status"] == "failed"]
    assert len(results) == 4 and len(failed) == 1
    assert failed[0]["reason"] == WORKER_DIED and failed[0]["cell"]["prior"] == "suicidal"
    assert "worker process died" in (out / "leaderboard.md").read_text()

    assert main(args) == 0
    assert all(r["status"] == "done" for r in _results(out).values())


GPU_LOGGER = '''
import os
import time

import torch
from harness import Prior, hookimpl


class GpuLoggingPrior(Prior):
    """N(0, I) that logs which (pretend) GPU its cell got and when it trained, to the file ``log``."""

    name = "gpu-logging"

    def __init__(self, latent_dim: int, log: str = ""):
        super().__init__()
        self.latent_dim = latent_dim
        self.log = log
        self.logged = False

    def log_prob(self, z, cond=None):
        return -0.5 * z.pow(2).sum(-1)

    def sample(self, n, cond=None):
        if not self.logged and self.log:  # sampling happens once training has ended
            with open(self.log, "a") as fh:
                fh.write(f"end {os.environ.get('CUDA_VISIBLE_DEVICES')} {time.time()}\\n")
            self.logged = True
        return torch.randn(n, self.latent_dim, device=self.device)

    def fit_loss(self, z, cond=None):
        if self.log and not getattr(self, "started", False):
            with open(self.log, "a") as fh:
                fh.write(f"start {os.environ.get('CUDA_VISIBLE_DEVICES')} {time.time()}\\n")
            self.started = True
        return super().fit_loss(z, cond)


@hookimpl
def harness_register_priors(register):
    register(GpuLoggingPrior)
'''


def _ray_plan(cfg: Path):
    from harness.config import load_config
    from harness.registry import load_registry
    from harness.run.plan import plan_benchmark

    registry = load_registry()
    return plan_benchmark("tiny", load_config(cfg).benchmarks["tiny"], registry, str(cfg)), registry


# Ray starts a cluster and a worker process per task: about 50 s on 2 idle cores, but past the suite's 300 s
# on 2 cores another run keeps busy (Ray's workers get little CPU there), so this one test may take longer.
@pytest.mark.timeout(900)
def test_ray_runs_at_most_one_cell_per_gpu_and_retries_a_dead_task_into_one_result(tmp_path, monkeypatch):
    ray = pytest.importorskip("ray", reason="Ray is the optional extra prior-harness[ray]")
    import torch

    from harness.run.executors import RayExecutor
    from harness.run.plan import run_plan
    from harness.run.store import Store

    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "harness-prior-suicidal", "suicidal_test_plugin", SUICIDAL)
    make_distribution(site, "harness-prior-gpu-logging", "gpu_logging_test_plugin", GPU_LOGGER)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", str(site))
    arm, log = tmp_path / "armed", tmp_path / "gpus.log"
    arm.touch()
    cfg = write_config(
        tmp_path / "b.yaml",
        priors={"gpu-logging": {"log": str(log)}, "suicidal": {"arm": str(arm)}},
        regularizers=["none", "kl"],
        seeds=[0, 1],
        train={"epochs": 3, "batch_size": 128, "lr": 0.003},
    )
    plan, registry = _ray_plan(cfg)
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, object_store_memory=80 * 1024**2,
             runtime_env={"env_vars": {"PYTHONPATH": str(site)}})
    try:
        counts = run_plan(plan, registry, Store(tmp_path / "out"), torch.device("cpu"), progress=False,
                          executor=RayExecutor(None, gpus_per_cell=1.0, cpus_per_cell=0.5))
    finally:
        ray.shutdown()
    assert counts == {"done": 8}
    assert not arm.exists()  # a suicidal cell really died once, and its retry finished
    results = _results(tmp_path / "out")
    assert len(results) == 8 and all(r["status"] == "done" for r in results.values())

    spans: dict[str, list[tuple[float, float]]] = {}
    opened: dict[str, list[float]] = {}
    for line in log.read_text().splitlines():
        kind, gpu, stamp = line.split()
        if kind == "start":
            opened.setdefault(gpu, []).append(float(stamp))
        else:
            spans.setdefault(gpu, []).append((opened[gpu].pop(0), float(stamp)))
    # 4 logged cells on 2 GPUs: some GPU ran several, and never two at once.
    assert set(spans) <= {"0", "1"} and sum(len(s) for s in spans.values()) == 4
    assert max(len(s) for s in spans.values()) >= 2
    for intervals in spans.values():
        intervals.sort()
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(intervals, intervals[1:]))


def test_the_job_runs_a_bare_cuda_device_without_pinning_it(tmp_path: Path) -> None:
    # `--device cuda` with the local executor hands the job "cuda": no index to pin, so nothing is pinned (pinning
    # it raised before any work). A stored done cell answers cached without touching the device at all.
    from harness.grid import Cell
    from harness.registry import load_registry
    from harness.run.result import CellResult, Outcome, Status
    from harness.run.store import Store
    from harness.run.task import CellTask
    from harness.run.worker import CellJob

    cell = Cell("b", "digits", {}, {}, "gaussian", {}, "kl", {}, 1.0, 0, {}, {})
    store = Store(tmp_path)
    store.write_result(cell, CellResult(Status.DONE, "b", "m", {"m": "min"}, metrics={"m": 1.0}))
    task = CellTask(cell.to_json(), "b", "m", {"m": "min"}, out=str(tmp_path), device="cuda")
    assert CellJob(load_registry())(task) == Outcome(Status.CACHED)
