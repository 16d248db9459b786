"""Nothing lost, nothing done twice, no file outside --out: containment of every path built from a name, atomic
leaderboard files, concurrent and interrupted runs on one out folder, corrupt checkpoints."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import re

import pytest
import torch
import yaml

from conftest import TINY, make_distribution, write_config
from harness.report import leaderboard
from harness.cli import main
from harness.config import load_config
from harness.paths import OutsideOutFolder, under, write_atomic
from harness.registry import load_registry
from harness.run.cell import CellPruned, DataCache, run_cell
from harness.run.plan import plan_benchmark, run_plan
from harness.run.store import FRESH_RUN, Store

#: A prior that appends one line per training (its first fit) to ``log``; then waits until the file ``gate`` exists
#: (so two processes' runs surely overlap) and sleeps ``delay`` seconds per step (so a signal can land mid-cell).
COUNTING = '''
import os
import time

import torch
from harness import Prior, hookimpl


class CountingPrior(Prior):
    """N(0, I) that logs "<pid>" to ``log`` when a training starts (or resumes), waits for ``gate``, and sleeps
    ``delay`` per step."""

    name = "counting"

    def __init__(self, latent_dim: int, log: str = "", delay: float = 0.0, gate: str = ""):
        super().__init__()
        self.latent_dim = latent_dim
        self.log, self.delay, self.gate = log, delay, gate
        self.started = False

    def log_prob(self, z, cond=None):
        return -0.5 * z.pow(2).sum(-1)

    def sample(self, n, cond=None):
        return torch.randn(n, self.latent_dim, device=self.device)

    def fit_loss(self, z, cond=None):
        if self.log and not self.started:
            fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            os.write(fd, f"{os.getpid()}\\n".encode())
            os.close(fd)
            self.started = True
            while self.gate and not os.path.exists(self.gate):
                time.sleep(0.01)
        if self.delay:
            time.sleep(self.delay)
        return super().fit_loss(z, cond)


@hookimpl
def harness_register_priors(register):
    register(CountingPrior)
'''


@pytest.fixture
def counting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Install the counting prior for this process and its subprocesses; returns its log file."""
    site = tmp_path / "site"
    site.mkdir()
    make_distribution(site, "harness-prior-counting", "counting_test_plugin", COUNTING)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return tmp_path / "trainings.log"


def _results(out: Path) -> dict[str, dict[str, Any]]:
    return {r.cell["cell_id"]: r.to_json() for r in Store(out).results()}


def _trainings(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


def _harness(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness", *args]


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


# --- containment ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["..", "../x", "a/../../x", "/tmp/x", "."])
def test_under_refuses_every_name_that_leaves_or_is_the_root(tmp_path, name):
    with pytest.raises(OutsideOutFolder, match="outside"):
        under(tmp_path / "out", name)


def test_under_refuses_a_symlink_inside_the_root_that_points_outside(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out" / "link").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OutsideOutFolder):
        under(tmp_path / "out", "link", "leaderboard.md")
    assert under(tmp_path / "out", "cells", "abc") == tmp_path / "out" / "cells" / "abc"


def test_a_benchmark_named_to_escape_writes_nothing_outside_its_out_folder(tmp_path):
    # The config refuses such names; a Plan built in code (or a result file written by something else) is the
    # case the second line of defence is for.
    cfg = write_config(tmp_path / "b.yaml", regularizers=["none"], sample_grid=0)
    registry = load_registry()
    plan = plan_benchmark("tiny", load_config(cfg).benchmarks["tiny"], registry, str(cfg))
    plan = replace(plan, name="../../escaped")
    out = tmp_path / "a" / "b" / "out"
    before = _files(tmp_path)
    assert run_plan(plan, registry, Store(out), torch.device("cpu"), progress=False) == {"done": 1}
    with pytest.raises(OutsideOutFolder, match="escaped"):
        leaderboard.render(out)
    assert {p for p in _files(tmp_path) - before if not p.is_relative_to(out)} == set()


def test_several_benchmarks_with_an_escaping_name_exit_2_before_training(tmp_path, capsys):
    bench = {**TINY, "regularizers": ["none"]}
    cfg = tmp_path / "b.yaml"
    cfg.write_text(yaml.safe_dump({"benchmarks": {"ok": bench, "../escaped": bench}}), encoding="utf-8")
    out = tmp_path / "a" / "out"
    before = _files(tmp_path)
    assert main(["run", str(cfg), "-b", "ok", "-b", "../escaped", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("error: ") and len([line for line in err if line.startswith("error")]) == 1
    assert _files(tmp_path) == before


# --- --out that is a file ------------------------------------------------------------------------------------


def _search_config(path: Path) -> Path:
    from test_search import write

    return write(path)


@pytest.mark.parametrize("command", ["run", "run --dry-run", "search"])
@pytest.mark.parametrize("under_file", [False, True], ids=["a-file", "under-a-file"])
def test_out_that_is_a_file_or_under_one_is_one_error_line_and_exit_2(tmp_path, capsys, command, under_file):
    cfg = _search_config(tmp_path / "b.yaml")
    blocker = tmp_path / "somefile"
    blocker.write_text("not a folder\n")
    out = blocker / "x" if under_file else blocker
    before = _files(tmp_path)
    assert main([*command.split(), str(cfg), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out: ") and "file" in err.splitlines()[0]
    assert len([line for line in err.splitlines() if not line.startswith("  ")]) == 1
    assert _files(tmp_path) == before and blocker.read_text() == "not a folder\n"


# --- atomic leaderboard files --------------------------------------------------------------------------------


def _fake_results(out: Path, configs: int, seeds: int) -> None:
    """Done results as the runner stores them, without training: enough rows that results.csv takes many writes."""
    for c in range(configs):
        for seed in range(seeds):
            cell_id = f"{c:04d}{seed:04d}deadbeef"
            cell = {"cell_id": cell_id, "benchmark": "tiny", "variant": None, "dataset": "digits", "dataset_options": {},
                    "model": {}, "prior": "gaussian", "prior_options": {}, "regularizer": "kl",
                    "regularizer_options": {}, "beta": 0.1 * (c + 1), "seed": seed, "train": {}, "evaluators": {}}
            folder = out / "cells" / cell_id
            folder.mkdir(parents=True)
            metrics = {"reconstruction.mse": 0.01 * c + 0.001 * seed, "reconstruction.psnr": 20.0 + c}
            (folder / "result.json").write_text(json.dumps(
                {"cell": cell, "benchmark": "tiny", "status": "done", "metrics": metrics,
                 "primary_metric": "reconstruction.mse", "directions": {"reconstruction.mse": "min",
                                                                       "reconstruction.psnr": "max"}}))


READER = '''
import sys, time
paths, stop, report = sys.argv[1:-2], sys.argv[-2], sys.argv[-1]
final = {p: open(p, "rb").read() for p in paths}
reads = bad = 0
import os
while not os.path.exists(stop):
    for p in paths:
        data = open(p, "rb").read()
        reads += 1
        if data != final[p]:
            bad += 1
open(report, "w").write(f"{reads} {bad}")
'''


def test_a_reader_polling_results_csv_and_leaderboard_md_never_sees_a_partial_file(tmp_path):
    out = tmp_path / "out"
    _fake_results(out, configs=6, seeds=300)  # results.csv ~250 kB: an in-place write takes many syscalls
    paths = [out / "results.csv", out / "leaderboard.md"]
    leaderboard.render(out)
    inodes = {p: p.stat().st_ino for p in paths}
    stop, report = tmp_path / "stop", tmp_path / "report"
    reader = subprocess.Popen([sys.executable, "-c", READER, *map(str, paths), str(stop), str(report)])
    try:
        time.sleep(0.5)  # the reader has read its reference copies
        for _ in range(4):
            leaderboard.render(out)  # the same store: every complete file is byte-identical to the first
    finally:
        stop.touch()
        reader.wait(timeout=60)
    reads, bad = map(int, report.read_text().split())
    assert reads > 100 and bad == 0
    # Each render replaced the files (a new inode) instead of rewriting them in place.
    assert all(p.stat().st_ino != inodes[p] for p in paths)
    assert not list(out.glob(".*.tmp*"))


def test_write_atomic_leaves_the_old_file_when_the_write_fails(tmp_path):
    path = tmp_path / "leaderboard.md"
    write_atomic(path, "old")
    with pytest.raises(TypeError):
        write_atomic(path, 42)  # type: ignore[arg-type]
    assert path.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["leaderboard.md"]


# --- concurrent runs -----------------------------------------------------------------------------------------


def _counting_config(path: Path, log: Path, delay: float, gate: str = "", **overrides: Any) -> Path:
    options = {"log": str(log), "delay": delay, "gate": gate}
    return write_config(path, priors={"counting": options}, sample_grid=0, **overrides)


def _summary_counts(stdout: str) -> dict[str, int]:
    """``tiny: 3 cached, 3 done; leaderboard: ...`` -> {"cached": 3, "done": 3}."""
    line = next(line for line in stdout.splitlines() if line.startswith("tiny: "))
    return {kind: int(n) for n, kind in re.findall(r"(\d+) (done|cached|failed|skipped|busy)\b", line)}


def test_two_concurrent_fresh_runs_train_every_cell_exactly_once(tmp_path, counting):
    gate = tmp_path / "gate"
    cfg = _counting_config(tmp_path / "b.yaml", counting, delay=0.0, gate=str(gate), beta=[0.5, 1.0], seeds=[0, 1])
    cells = 6  # kl: 2 β × 2 seeds, none: 2 seeds (β ignored)
    out = tmp_path / "out"
    cmd = _harness("run", str(cfg), "--out", str(out), "--fresh", "--quiet")
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        deadline = time.monotonic() + 240
        while len(set(_trainings(counting))) < 2:  # both are training a cell: from here on the runs overlap
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "the runs never overlapped"
            time.sleep(0.05)
    finally:
        gate.touch()
    outputs = [proc.communicate(timeout=300) for proc in procs]
    for proc, (stdout, stderr) in zip(procs, outputs):
        assert proc.returncode == 0, stderr
        assert sum(_summary_counts(stdout).values()) == cells and "busy" not in stdout
    trainings = _trainings(counting)
    assert len(trainings) == cells
    assert set(trainings) == {str(p.pid) for p in procs}  # both really ran cells: the runs overlapped
    results = _results(out)
    assert len(results) == cells and all(r["status"] == "done" for r in results.values())
    assert len({r["fresh_run"] for r in results.values()}) == 1  # one fresh run, joined by the second process
    assert not (out / FRESH_RUN).exists()
    board = (out / "leaderboard.md").read_text()
    assert "missing" not in board and board.count("| digits ") == 3  # 3 configurations, 2 seeds each
    assert len((out / "results.csv").read_text().splitlines()) == 1 + cells * 2


def test_a_cell_held_by_a_process_that_dies_is_waited_for_then_trained(tmp_path, counting):
    cfg = _counting_config(tmp_path / "b.yaml", counting, delay=0.0, regularizers=["none"], seeds=[0, 1])
    registry = load_registry()
    plan = plan_benchmark("tiny", load_config(cfg).benchmarks["tiny"], registry, str(cfg))
    held = Store(tmp_path / "out").cell_dir(plan.cells[0]) / ".lock"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, sys, time\n"
        f"fh = open({str(held)!r}, 'w'); fcntl.flock(fh, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)"
    )], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    killer = threading.Timer(3.0, holder.kill)  # the other run dies holding the cell, leaving no result
    killer.start()
    started = time.monotonic()
    try:
        assert main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    finally:
        killer.cancel()
        holder.kill()
        holder.wait()
    assert time.monotonic() - started >= 3.0  # it waited for the held cell instead of skipping it
    assert len(_trainings(counting)) == 2
    assert all(r["status"] == "done" for r in _results(tmp_path / "out").values())


# --- interrupted --fresh --------------------------------------------------------------------------------------


def _redone_and_midway(out: Path) -> tuple[list[Path], list[Path]]:
    """Cells redone by the recorded fresh run, and cells it is training (a checkpoint of its own, no result)."""
    try:
        record = json.loads((out / FRESH_RUN).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return [], []
    redone, midway = [], []
    for cell in (out / "cells").iterdir():
        try:
            result = json.loads((cell / "result.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            result = None
        if result is not None and result.get("fresh_run") == record["id"]:
            redone.append(cell)
        elif result is None:
            try:
                if (cell / "checkpoint.pt").stat().st_mtime >= record["started_unix"]:
                    midway.append(cell)
            except FileNotFoundError:
                pass
    return redone, midway


def test_an_interrupted_fresh_run_prints_its_resume_command_and_the_rerun_continues_it(tmp_path, counting, capfd):
    cfg = _counting_config(tmp_path / "b.yaml", counting, delay=0.02, seeds=[0, 1],
                           train={"epochs": 8, "batch_size": 256, "lr": 0.003})
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0  # results for --fresh to redo
    old = _results(out)
    argv = ["run", str(cfg), "--out", str(out), "--fresh", "--quiet"]
    proc = subprocess.Popen(_harness(*argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:  # interrupt once a cell is redone and the next is midway
            redone, midway = _redone_and_midway(out)
            if redone and midway:
                break
            time.sleep(0.01)
        else:
            raise AssertionError("the fresh run never got between two cells")
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert f"to resume, run the same command again:\n  {shlex.join(['harness', *argv])}\n" in stderr
    assert "keep --fresh" in stderr
    record = json.loads((out / FRESH_RUN).read_text())
    redone, midway = _redone_and_midway(out)
    kept = {cell.name: (cell / "result.json").read_bytes() for cell in redone}
    assert 0 < len(kept) < len(old)

    capfd.readouterr()
    assert main(argv) == 0
    err = capfd.readouterr().err
    assert f"continuing the fresh run started at {record['started']} ({len(kept)} cells already redone)" in err
    if midway:  # the cell interrupted midway picks up from the checkpoint the fresh run wrote
        assert "resuming at epoch" in err
    results = _results(out)
    assert {cell_id: (out / "cells" / cell_id / "result.json").read_bytes() for cell_id in kept} == kept
    assert results.keys() == old.keys()
    assert all(r["status"] == "done" and r["fresh_run"] == record["id"] for r in results.values())  # all redone
    assert not (out / FRESH_RUN).exists()
    # A plain rerun now finds everything done.
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    assert f"{len(old)} cached" in capfd.readouterr().out


def test_a_plain_run_after_an_unfinished_fresh_run_says_how_to_continue_it(tmp_path, capsys):
    cfg = write_config(tmp_path / "b.yaml", regularizers=["none"], sample_grid=0)
    out = tmp_path / "out"
    registry = load_registry()
    plan = plan_benchmark("tiny", load_config(cfg).benchmarks["tiny"], registry, str(cfg))
    run, joined = Store(out).begin_fresh_run(plan.cells)
    assert not joined
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    assert f"the --fresh run started at {run.started} did not finish" in capsys.readouterr().err
    assert Store(out).fresh_run() == run  # only a fresh run ends a fresh run


# --- checkpoints ---------------------------------------------------------------------------------------------


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _garbage(data: bytes) -> bytes:
    return (b"\x00garbage\xff" * len(data))[: len(data)]


def _without_decoder(data: bytes, path: Path) -> bytes:
    # A readable checkpoint that does not fit: the encoder loads, then the decoder is missing (a restore that
    # fails halfway must not leave a half-restored model behind).
    state = torch.load(path, weights_only=True)
    del state["decoder"]
    torch.save(state, path)
    return path.read_bytes()


@pytest.mark.parametrize("damage", ["truncated", "garbage", "another-model"])
def test_a_corrupt_checkpoint_is_set_aside_and_its_cell_retrained_from_scratch(tmp_path, capfd, damage):
    cfg = write_config(tmp_path / "b.yaml", regularizers=["none"], sample_grid=0)
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    ((cell_id, clean),) = _results(out).items()
    folder = out / "cells" / cell_id
    for attempt in range(2):  # twice: one copy is kept, the latest
        checkpoint = folder / "checkpoint.pt"
        data = checkpoint.read_bytes()
        if damage == "another-model":
            bad = _without_decoder(data, checkpoint)
        else:
            bad = _truncated(data) if damage == "truncated" else _garbage(data)
            checkpoint.write_bytes(bad)
        (folder / "result.json").unlink()
        capfd.readouterr()
        assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
        warning = [line for line in capfd.readouterr().err.splitlines() if line.startswith("warning:")]
        assert len(warning) == 1 and "checkpoint.pt could not be loaded" in warning[0]
        assert "trained from scratch" in warning[0]
        result = _results(out)[cell_id]
        assert result["status"] == "done" and len(result["notes"]) == 1 and result["notes"][0] in warning[0]
        assert result["metrics"] == clean["metrics"] and result["history"] == clean["history"]
        assert (folder / "checkpoint.pt.corrupt").read_bytes() == bad
        assert sorted(p.name for p in folder.glob("checkpoint*")) == ["checkpoint.pt", "checkpoint.pt.corrupt"]


def test_a_cell_resumed_from_its_checkpoint_says_at_which_epoch(tmp_path, capfd):
    cfg = write_config(tmp_path / "b.yaml", regularizers=["none"], sample_grid=0,
                       train={"epochs": 3, "batch_size": 256, "lr": 0.003})
    registry = load_registry()
    plan = plan_benchmark("tiny", load_config(cfg).benchmarks["tiny"], registry, str(cfg))
    (cell,) = plan.cells
    store, device = Store(tmp_path / "out"), torch.device("cpu")

    def stop_after_first(epoch: int, terms: dict[str, float]) -> None:
        raise CellPruned("stopped after epoch 1")

    meta = {"benchmark": "tiny", "primary_metric": "reconstruction.mse", "directions": plan.directions}
    stopped = run_cell(cell, meta, registry, store, DataCache(registry, device), device, tmp_path / "cache",
                       progress=False, on_epoch=stop_after_first)
    assert stopped.status == "pruned"
    capfd.readouterr()
    assert main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert f"{cell.label}: resuming at epoch 2 of 3" in capfd.readouterr().err
    assert main(["run", str(cfg), "--out", str(tmp_path / "clean"), "--quiet"]) == 0
    assert "resuming" not in capfd.readouterr().err
    resumed, clean = _results(tmp_path / "out")[cell.cell_id], _results(tmp_path / "clean")[cell.cell_id]
    assert resumed["history"] == clean["history"] and resumed["metrics"] == clean["metrics"]
