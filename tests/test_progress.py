"""What a run shows: the dry run's done marks and time estimate, progress as bars on a terminal and plain lines in a
pipe, failures as they happen, the winner per dataset at the end, and the missing cells of an unfinished run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import write_config
from harness import EvalData, progress
from harness.cli import main
from harness.report import summary
from harness.grid import Cell
from harness.run.store import Store
from harness_plugins.datasets.digits import Digits
from harness_plugins.evaluators.classifier import load_or_train_classifier


def _run(cfg: Path, out: Path, *extra: str) -> int:
    return main(["run", str(cfg), "--out", str(out), "--device", "cpu", *extra])


def _dry_run(cfg: Path, out: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> list[str]:
    capsys.readouterr()
    assert _run(cfg, out, "--dry-run", *extra) == 0
    return capsys.readouterr().out.splitlines()


def test_dry_run_marks_done_cells_and_estimates_the_rest_from_their_stored_seconds(tmp_path, capsys):
    out = tmp_path / "out"
    assert _run(write_config(tmp_path / "one.yaml"), out, "--quiet") == 0
    seconds = [r.seconds for r in Store(out).results()]
    lines = _dry_run(write_config(tmp_path / "two.yaml", seeds=[0, 1]), out, capsys, "--workers", "2")

    assert lines[0] == f"tiny: 4 cells (0 skipped, 2 done, 2 to run) -> {out}"
    mean = sum(seconds) / 2
    # 2 cells on 2 workers: one round of the mean cell time.
    assert lines[1] == (f"  estimate: about {summary._duration(mean)} for 2 cells (mean {summary._duration(mean)} "
                        "per cell over 2 finished here, 2 workers)")
    cells = lines[2:]
    assert len(cells) == 4
    assert all(line.endswith("[done]") == ("seed=0" in line) for line in cells)


def test_dry_run_without_finished_cells_quotes_the_benchmarks_cost_or_says_there_is_no_estimate(tmp_path, capsys):
    costed = write_config(tmp_path / "costed.yaml", cost="about 5 min on 2 CPU cores")
    assert _dry_run(costed, tmp_path / "a", capsys)[1] == (
        "  estimate: cost: about 5 min on 2 CPU cores (from the benchmark; no finished cells here to time)"
    )
    plain = write_config(tmp_path / "plain.yaml")
    assert _dry_run(plain, tmp_path / "b", capsys)[1].startswith("  estimate: no estimate")


def test_a_failed_cell_prints_its_id_label_and_reason_on_stderr_as_it_happens_even_when_quiet(tmp_path, capsys):
    # lr = 1e30 overflows the weights within two steps: a real divergence.
    cfg = write_config(tmp_path / "b.yaml", regularizers=["none"], train={"epochs": 2, "batch_size": 64, "lr": 1e30})
    out = tmp_path / "out"
    assert _run(cfg, out, "--quiet") == 1
    (result,) = Store(out).results()
    cell_id = result.cell["cell_id"]
    err = capsys.readouterr().err
    expected = f"cell {cell_id} digits gaussian none seed=0 failed: NonFiniteLoss: non-finite loss at epoch 1"
    assert expected in err
    assert f"(traceback: {out / 'cells' / cell_id / 'error.txt'})" in err
    assert "evaluating" not in err and "cell 1/1" not in err  # --quiet: the failure only


def test_the_run_ends_with_the_best_configuration_per_dataset_ranked_by_the_primary_metric(tmp_path, capsys):
    # psnr is higher-is-better: the winner must be the largest mean, not the smallest.
    cfg = write_config(tmp_path / "b.yaml", datasets={"digits": {}, "moons": {}}, seeds=[0, 1], sample_grid=0,
                       primary_metric="reconstruction.psnr")
    out = tmp_path / "out"
    assert _run(cfg, out, "--quiet") == 0
    printed = capsys.readouterr().out.splitlines()

    frame = pd.read_csv(out / "results.csv")
    psnr = frame[frame.metric == "reconstruction.psnr"].fillna({"beta": -1.0})
    expected = []
    for dataset in ("digits", "moons"):
        stats = psnr[psnr.dataset == dataset].groupby(["regularizer", "beta"])["value"].agg(["mean", "std", "count"])
        (regularizer, beta), best = stats["mean"].idxmax(), stats.loc[stats["mean"].idxmax()]
        config = f"gaussian × {regularizer}" + ("" if beta == -1.0 else f" (β={beta:g})")
        expected.append(f"tiny: best on {dataset} by reconstruction.psnr ↑: {config}: "
                        f"{best['mean']:.4g} ± {best['std']:.2g} (2 seeds)")
    assert printed[-2:] == expected


def test_the_leaderboard_of_an_unfinished_run_says_how_many_cells_are_missing_and_how_to_finish(tmp_path, capsys):
    cfg = write_config(tmp_path / "b.yaml", seeds=[0, 1], sample_grid=0)
    out = tmp_path / "out"
    assert _run(cfg, out, "--quiet", "--fresh") == 0
    assert "missing" not in (out / "leaderboard.md").read_text()

    # As after an interrupted run: one cell never stored a result, another failed.
    first, second, *_ = sorted((out / "cells").iterdir())
    (first / "result.json").unlink()
    failed = {**json.loads((second / "result.json").read_text()), "status": "failed", "reason": "boom"}
    (second / "result.json").write_text(json.dumps(failed))

    # The command recorded is the process's own (here pytest's): plant the one a user would have typed.
    prov = json.loads((out / "provenance.json").read_text())
    (out / "provenance.json").write_text(json.dumps({**prov, "command": f"harness run {cfg} --fresh --out {out}"}))
    assert main(["leaderboard", str(out)]) == 0

    note = "**2 of 4 cells are missing (not yet run or failed)**: rerun `harness run {} --out {}` to finish."
    # The --fresh run finished: rerunning with --fresh would redo the finished cells too, so the command leaves it out.
    assert note.format(cfg, out) in (out / "leaderboard.md").read_text().split("## digits")[0]

    # An interrupted --fresh run is recorded: its own command (with --fresh) is what continues it.
    Store(out).begin_fresh_run([Cell.from_json(r.cell) for r in Store(out).results()])
    assert main(["leaderboard", str(out)]) == 0
    assert note.format(f"{cfg} --fresh", out) in (out / "leaderboard.md").read_text()


def test_output_to_a_pipe_has_no_carriage_returns_or_cursor_codes_but_a_plain_line_per_cell(tmp_path):
    cfg = write_config(tmp_path / "b.yaml", sample_grid=0)
    cmd = [sys.executable, "-m", "harness", "run", str(cfg), "--out", str(tmp_path / "out"), "--device", "cpu"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    for stream in (done.stdout, done.stderr):
        assert "\r" not in stream and "\x1b[" not in stream
    err = done.stderr.splitlines()
    assert "tiny: cell 1/2 done: digits gaussian kl β=1 seed=0" in err
    assert "tiny: cell 2/2 done: digits gaussian none seed=0" in err
    assert "digits gaussian none seed=0: evaluating reconstruction (1/1)..." in err


def test_bars_are_drawn_only_when_progress_is_wanted_and_stderr_is_a_terminal(monkeypatch):
    leader, follower = os.openpty()  # a real terminal; the leader end stays open so that it stays one
    with open(leader, "rb", buffering=0), open(follower, "w") as terminal, open(os.devnull, "w") as log:
        monkeypatch.setattr(sys, "stderr", terminal)
        assert progress.bars_enabled(True) and not progress.bars_enabled(False)
        monkeypatch.setattr(sys, "stderr", log)
        assert not progress.bars_enabled(True)
        monkeypatch.setattr(sys, "stderr", None)  # pythonw, or a daemon with its streams closed
        assert not progress.bars_enabled(True)


def test_classifier_training_announces_itself_in_a_log_and_is_silent_when_reporting_is_off(tmp_path, capsys):
    digits = Digits()
    train, test = digits.load("train"), digits.load("test")
    for name, enabled in (("on", True), ("off", False)):
        capsys.readouterr()
        with progress.reporting(enabled), torch.inference_mode():
            load_or_train_classifier(EvalData("digits", {}, train, test, tmp_path / name), seed=0,
                                     device=torch.device("cpu"), epochs=1, frozen=False)
        err = capsys.readouterr().err
        assert ("training the evaluation classifier (seed 0): 1 epoch..." in err) == enabled
        assert "\r" not in err
