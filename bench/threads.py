"""Training steps/s of a small MLP VAE for each torch thread count and for ``auto``, idle and under a competing load.

The step is a cell of the default benchmark (``quick``: MLP on 8x8 digits, latent 8, RealNVP prior, KL, batch 128),
built and stepped by the harness's own code. Each measurement is one spawned process: it loads the harness, waits,
then sets its torch threads (``auto``: ``harness.threads.choose_threads`` as ``harness run`` does), trains a few
warm-up steps and counts steps for ``--seconds``. The processes of a round start together and wait, so their start-up
never overlaps a measurement; the competing load is one pure-Python busy loop per core, running only while the
"under load" measurements run. The median over ``--rounds`` is reported.

    python bench/threads.py [--seconds 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import nullcontext
from multiprocessing import get_context
from multiprocessing.connection import Connection
from typing import Any

from harness.threads import AUTO, available_cores, other_load

WARMUP_STEPS = 2
#: Steps counted at least, unless that takes 3x --seconds (2 threads under load: 3 s a step, the rate is clear).
MIN_STEPS = 3
BURN = "while True:\n    pass\n"
CONDITIONS = ("idle", "load")


def _cell() -> Any:
    from harness.config import BenchmarkConfig
    from harness.grid import expand
    from harness.registry import load_registry

    registry = load_registry()
    bench = BenchmarkConfig.model_validate({
        "datasets": ["digits"],
        "model": {"architecture": "mlp", "latent_dim": 8, "likelihood": "gaussian", "gamma": 0.05},
        "priors": {"realnvp": {"depth": 4, "hidden": 64}},
        "regularizers": ["kl"],
        "beta": [1.0],
        "train": {"epochs": 1, "batch_size": 128, "lr": 1e-3},
    })
    (cell,) = expand("threads", bench, registry, "bench")
    return cell, registry


def _batches(n: int, batch_size: int) -> Iterator[Any]:
    import torch

    from harness.api import as_float
    from harness.model.train import batches

    # Digits' size and shape; random pixels step exactly as fast as real ones.
    data = torch.randint(0, 256, (n, 1, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    epoch = 0
    while True:
        for idx in batches(n, batch_size, 0, epoch, torch.device("cpu")):
            yield as_float(data[idx])
        epoch += 1


def _steps_per_second(cell: Any, registry: Any, seconds: float) -> float:
    import torch

    from harness.model.train import build_model, training_step

    torch.manual_seed(0)
    model = build_model(cell, registry, (1, 8, 8), torch.device("cpu"))
    model.train(True)
    beta, data = float(cell.beta), _batches(1437, int(cell.train["batch_size"]))
    for _ in range(WARMUP_STEPS):
        training_step(model, next(data), beta)
    steps, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or (steps < MIN_STEPS and elapsed < 3 * seconds):
        training_step(model, next(data), beta)
        steps += 1
    return steps / (time.perf_counter() - start)


def _measure(conn: Connection, setting: int | str, seconds: float) -> None:
    """One measurement in a spawned process: load, say ready, wait for go, set the threads, then time."""
    import torch

    from harness.threads import choose_threads

    cell, registry = _cell()
    conn.send("ready")
    if conn.recv() != "go":
        return
    threads = choose_threads(1, AUTO).threads if setting == AUTO else int(setting)
    torch.set_num_threads(threads)  # before any training step: the first parallel op sizes the pool
    conn.send((_steps_per_second(cell, registry, seconds), threads))


class _Load:
    """One busy-loop process per core, pure Python: a competing job that keeps every core busy."""

    def __init__(self, cores: int) -> None:
        self.cores = cores
        self.procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> _Load:
        self.procs = [subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(self.cores)]
        time.sleep(0.3)  # let them get onto the cores before anything measures
        return self

    def __exit__(self, *exc: object) -> None:
        for proc in self.procs:
            proc.kill()
        for proc in self.procs:
            proc.wait()


def _round(settings: list[int | str], condition: str, seconds: float, cores: int) -> dict[int | str, tuple[float, int]]:
    """Start one process per setting, wait until all have loaded, then measure them one at a time."""
    ctx = get_context("spawn")
    started = []
    for setting in settings:
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_measure, args=(child, setting, seconds), daemon=True)
        proc.start()
        started.append((setting, proc, parent))
    try:
        for _, _, conn in started:
            if conn.recv() != "ready":
                raise RuntimeError("a measuring process did not start")
        out: dict[int | str, tuple[float, int]] = {}
        with _Load(cores) if condition == "load" else nullcontext():
            for setting, proc, conn in started:
                conn.send("go")
                out[setting] = conn.recv()
                proc.join(timeout=30)  # a finishing process (its threads still spinning) must not slow the next one
        return out
    finally:
        for _, proc, conn in started:
            conn.close()
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()


def _label(setting: int | str, chosen: dict[str, list[int]]) -> str:
    if setting != AUTO:
        return f"{setting} thread{'s' if setting != 1 else ''}"
    return "auto (" + ", ".join(f"{c}: {_choices(chosen[c])}" for c in CONDITIONS) + ")"


def _choices(values: list[int]) -> str:
    distinct = sorted(set(values))
    return str(distinct[0]) if len(distinct) == 1 else "/".join(map(str, distinct))


def _versus(chosen: list[int], best: int, share: float) -> str:
    """How auto compares with the best setting: the same setting measured twice differs only by noise."""
    same = set(chosen) == {best}
    return f"the best setting; measured {share:.0%} of it" if same else f"{share:.0%} of the best"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=2.0, help="timed training per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per setting and condition (median)")
    args = parser.parse_args()
    # The measuring processes must start from torch's own default, not from a thread count set for this shell.
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if os.environ.pop(name, None) is not None:
            print(f"note: {name} is ignored here (each measurement sets its own threads)", file=sys.stderr)
    cores = available_cores()
    settings: list[int | str] = [*range(1, cores + 1), AUTO]
    load1, load5, load15 = os.getloadavg()
    busy = other_load(cores)
    # The sampled busy cores decide: the load average lags by a minute (it still counts a run that just ended).
    idle = busy < 0.5
    print(f"at start: load average {load1:.2f} {load5:.2f} {load15:.2f}, {busy:.1f} of {cores} cores busy"
          + ("" if idle else "  -- NOT IDLE: 'idle' below means 'without the extra load'; take final numbers idle"))
    rates: dict[str, dict[int | str, list[float]]] = {c: {s: [] for s in settings} for c in CONDITIONS}
    chosen: dict[str, list[int]] = {c: [] for c in CONDITIONS}
    started = time.perf_counter()
    for condition in CONDITIONS:  # every idle round first: the busy loops must not linger in the idle numbers
        for index in range(args.rounds):
            order = settings[index % len(settings):] + settings[: index % len(settings)]  # spread drift
            for setting, (rate, threads) in _round(order, condition, args.seconds, cores).items():
                rates[condition][setting].append(rate)
                if setting == AUTO:
                    chosen[condition].append(threads)
    median = {c: {s: statistics.median(v) for s, v in rates[c].items()} for c in CONDITIONS}

    print(f"{'setting':<26}{'idle steps/s':>14}{'ratio':>8}{'load steps/s':>15}{'ratio':>8}")
    for setting in settings:
        idle_rate, load_rate = median["idle"][setting], median["load"][setting]
        print(f"{_label(setting, chosen):<26}{idle_rate:>14.1f}{idle_rate / median['idle'][1]:>8.2f}"
              f"{load_rate:>15.1f}{load_rate / median['load'][1]:>8.2f}")
    fixed = [s for s in settings if s != AUTO]
    best_load = max(fixed, key=lambda s: median["load"][s])
    best_idle = max(fixed, key=lambda s: median["idle"][s])
    auto_load = median["load"][AUTO] / median["load"][best_load]
    auto_idle = median["idle"][AUTO] / median["idle"][best_idle]
    print(f"best under load: {best_load} thread(s); auto chose {_choices(chosen['load'])} under load "
          f"({_versus(chosen['load'], best_load, auto_load)}) and {_choices(chosen['idle'])} idle; auto idle is "
          f"{auto_idle:.0%} of the best idle ({best_idle} thread(s)): "
          f"{'within' if auto_idle >= 0.9 else 'NOT within'} 10%")
    if not idle:
        print("note: the machine was busy at the start: these 'idle' numbers are not idle ones")
    print(f"(mlp VAE step of `quick`, 8x8, RealNVP prior, KL, batch 128; median of {args.rounds} x {args.seconds:g} s "
          f"per cell, one process each; load = {cores} busy loops; {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
