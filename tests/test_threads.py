"""Torch threads per worker: an explicit count is kept, ``auto`` splits the free cores, runs record what they used."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from conftest import TINY, write_config
from harness.cli import main
from harness.threads import AUTO, available_cores, choose_threads, other_load


def test_an_explicit_thread_count_is_used_as_is_whatever_the_cores_and_load():
    assert choose_threads(1, 3, cores=2, load=2.0, ceiling=1).threads == 3
    assert choose_threads(4, 2, cores=2, load=0.0, ceiling=1).threads == 2
    with pytest.raises(ValueError, match=">= 1"):
        choose_threads(1, 0)


def test_auto_on_an_idle_machine_splits_the_cores_between_the_workers():
    assert [choose_threads(w, AUTO, cores=8, load=0.0, ceiling=8).threads for w in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]


def test_auto_gives_no_worker_more_threads_than_free_cores_and_every_worker_at_least_one():
    # The case: a busy 2-core machine, where two threads ran 50x slower than one.
    assert choose_threads(1, AUTO, cores=2, load=1.9, ceiling=2).threads == 1
    assert choose_threads(1, AUTO, cores=2, load=6.0, ceiling=2).threads == 1
    assert choose_threads(2, AUTO, cores=8, load=3.2, ceiling=8).threads == 2  # 5 free cores, 2 workers
    assert choose_threads(1, AUTO, cores=8, load=2.6, ceiling=8).threads == 5  # 2.6 busy rounds to 3
    # Under half a core of load is the noise of an idle machine, not a busy core.
    assert choose_threads(1, AUTO, cores=2, load=0.3, ceiling=2).threads == 2


def test_auto_never_raises_the_thread_count_this_process_already_has():
    # torch's default, OMP_NUM_THREADS, or a caller's torch.set_num_threads: auto only ever lowers it.
    assert choose_threads(1, AUTO, cores=8, load=0.0, ceiling=3).threads == 3


def test_the_choice_says_in_one_line_what_it_was_chosen_from():
    assert choose_threads(2, AUTO, cores=2, load=1.94, ceiling=2).describe() == (
        "torch threads: 1 per worker (2 cores, load 1.9)"
    )
    assert choose_threads(1, 1, cores=2).describe() == "torch threads: 1 per worker (--threads 1)"


def test_a_busy_process_on_this_machine_counts_as_a_busy_core():
    cores = available_cores()
    burner = subprocess.Popen([sys.executable, "-c", "while True:\n    pass\n"])
    try:
        load = other_load(cores, seconds=0.3)
    finally:
        burner.kill()
        burner.wait()
    assert 0.7 <= load <= cores + 0.05


@pytest.mark.parametrize("command", ["run", "search"])
@pytest.mark.parametrize("value", ["0", "x", "-1"])
def test_threads_that_are_not_a_positive_integer_or_auto_are_one_error_line_and_exit_2(
    tmp_path, capsys, command, value
):
    cfg = write_config(tmp_path / "b.yaml")
    assert main([command, str(cfg), "--threads", value, "--out", str(tmp_path / "out")]) == 2
    error, *rest = capsys.readouterr().err.strip().splitlines()
    assert error.startswith(f"error: harness {command}: argument --threads: ") and value in error
    assert error.endswith("; use a positive integer or auto")
    assert len(rest) <= 1 and all(line.startswith("  ") for line in rest)
    assert not (tmp_path / "out").exists()


def test_explicit_threads_with_ray_are_refused_in_one_line(tmp_path, capsys):
    pytest.importorskip("ray", reason="Ray is the optional extra prior-harness[ray]")
    cfg = write_config(tmp_path / "b.yaml")
    assert main(["run", str(cfg), "--executor", "ray", "--threads", "2", "--out", str(tmp_path / "out")]) == 2
    error, fix = capsys.readouterr().err.strip().splitlines()
    assert error.startswith("error: --threads: 2: Ray tasks take their threads from Ray")
    assert fix == "  leave --threads out with --executor ray"


def _recorded_threads(out: Path) -> list[int]:
    return [json.loads(p.read_text())["torch_threads"] for p in sorted((out / "cells").glob("*/result.json"))]


@pytest.fixture
def two_torch_threads():
    """Start from two threads, so that a run that ignored --threads 1 would record 2."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(threads)


def test_a_run_with_threads_1_trains_on_one_thread_and_records_it(tmp_path, capsys, two_torch_threads):
    cfg = write_config(tmp_path / "b.yaml")
    assert main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet", "--threads", "1"]) == 0
    assert "torch threads: 1 per worker (--threads 1)" in capsys.readouterr().err.splitlines()
    assert _recorded_threads(tmp_path / "out") == [1, 1]
    assert "1 torch threads" in json.loads((tmp_path / "out" / "provenance.json").read_text())["device"]


def test_by_default_a_run_chooses_its_threads_once_says_why_and_records_them(tmp_path, capsys):
    cfg = write_config(tmp_path / "b.yaml")
    assert main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("torch threads: ")]
    assert len(lines) == 1
    found = re.fullmatch(r"torch threads: (\d+) per worker \((\d+) cores, load \d+\.\d\)", lines[0])
    assert found and int(found[2]) == available_cores()
    assert _recorded_threads(tmp_path / "out") == [int(found[1])] * 2


def test_a_search_with_threads_1_sets_them_before_its_trials(tmp_path, capsys, two_torch_threads):
    bench = {**TINY, "default": True, "regularizers": ["kl"], "sample_grid": 0}
    search = {"benchmark": "tiny", "prior": "gaussian", "regularizer": "kl",
              "space": {"beta": {"low": 0.1, "high": 2.0}}, "objective": {"metric": "reconstruction.mse"},
              "pruner": {"enabled": False}, "trials": 1}
    cfg = tmp_path / "b.yaml"
    cfg.write_text(yaml.safe_dump({"benchmarks": {"tiny": bench}, "searches": {"s": search}}), encoding="utf-8")
    out = tmp_path / "out"
    assert main(["search", str(cfg), "--out", str(out), "--device", "cpu", "--quiet", "--threads", "1"]) == 0
    assert "torch threads: 1 per worker (--threads 1)" in capsys.readouterr().err.splitlines()
    assert torch.get_num_threads() == 1
    assert "1 torch threads" in json.loads((out / "provenance.json").read_text())["device"]
