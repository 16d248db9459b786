"""Whole runs through the CLI: reproducibility, failure isolation, resume after SIGKILL, the leaderboard."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

import plugin_doubles
from conftest import write_config
from harness.cli import main
from harness.config import load_config
from harness.registry import load_registry
from harness.run.plan import plan_benchmark, run_plan
from harness.run.store import Store
from harness.model.train import CHECK_EVERY


def _results(out: Path) -> dict[str, dict]:
    return {r.cell["cell_id"]: r.to_json() for r in Store(out).results()}


def test_same_seed_gives_identical_results_and_weights(tmp_path):
    cfg = write_config(tmp_path / "b.yaml")
    for name in ("a", "b"):
        assert main(["run", str(cfg), "--out", str(tmp_path / name), "--quiet", "--device", "cpu"]) == 0
    a, b = _results(tmp_path / "a"), _results(tmp_path / "b")
    assert a.keys() == b.keys() and len(a) == 2
    for cell_id in a:
        assert a[cell_id]["metrics"] == b[cell_id]["metrics"]
        assert a[cell_id]["history"] == b[cell_id]["history"]
        wa = torch.load(tmp_path / "a" / "cells" / cell_id / "checkpoint.pt", weights_only=True)
        wb = torch.load(tmp_path / "b" / "cells" / cell_id / "checkpoint.pt", weights_only=True)
        for key, tensor in wa["decoder"].items():
            assert torch.equal(tensor, wb["decoder"][key])


def test_a_nan_cell_fails_alone_naming_the_step_and_term(tmp_path):
    cfg = write_config(tmp_path / "b.yaml", priors={"poisonable": {"poison": [False, True]}}, regularizers=["none"])
    registry = load_registry(extra_modules=[plugin_doubles])
    config = load_config(cfg)
    plan = plan_benchmark("tiny", config.benchmarks["tiny"], registry, str(cfg))
    counts = run_plan(plan, registry, Store(tmp_path / "out"), torch.device("cpu"), progress=False)
    assert counts == {"done": 1, "failed": 1}
    by_poison = {r["cell"]["prior_options"]["poison"]: r for r in _results(tmp_path / "out").values()}
    assert by_poison[False]["status"] == "done"
    assert by_poison[True]["status"] == "failed"
    assert by_poison[True]["reason"] == "NonFiniteLoss: non-finite loss at epoch 1 step 1: prior_fit=nan"


@pytest.mark.parametrize("strict", [False, True], ids=["nan-trains-on", "plugin-raises-on-nan-parameters"])
def test_a_nan_after_the_first_check_window_is_named_by_its_own_step(tmp_path, strict):
    # 40 steps an epoch: the NaN at step 37 lies past the first window of CHECK_EVERY steps. A prior that raises on
    # its NaN parameters at step 38 still fails with the NaN of step 37, not with its own error.
    poisoned = {"poison": True, "poison_from": 37, "strict": strict}
    cfg = write_config(tmp_path / "b.yaml", priors={"poisonable": poisoned}, regularizers=["none"],
                       train={"epochs": 1, "batch_size": 36, "lr": 0.003})
    registry = load_registry(extra_modules=[plugin_doubles])
    plan = plan_benchmark("tiny", load_config(cfg).benchmarks["tiny"], registry, str(cfg))
    assert run_plan(plan, registry, Store(tmp_path / "out"), torch.device("cpu"), progress=False) == {"failed": 1}
    (result,) = _results(tmp_path / "out").values()
    assert CHECK_EVERY < 37
    assert result["reason"] == "NonFiniteLoss: non-finite loss at epoch 1 step 37: prior_fit=nan"


def test_failed_cells_make_exit_status_one_and_are_listed_on_the_leaderboard(tmp_path):
    # lr = 1e30 overflows the weights in a step or two: a real divergence, not a planted NaN.
    cfg = write_config(tmp_path / "b.yaml", train={"epochs": 3, "batch_size": 64, "lr": 1e30}, regularizers=["none"])
    assert main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet"]) == 1
    board = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "## Failed cells" in board and "non-finite loss at epoch" in board


def test_sigkilled_run_resumes_with_every_cell_once(tmp_path):
    cfg = write_config(tmp_path / "b.yaml", seeds=[0, 1], beta=[0.5, 1.0], train={"epochs": 6, "batch_size": 64, "lr": 0.003})
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "harness", "run", str(cfg), "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        # Kill mid-cell: once one cell is finished and another has a checkpoint but no result yet.
        while time.monotonic() < deadline:
            cells = list((out / "cells").glob("*")) if (out / "cells").exists() else []
            done = [c for c in cells if (c / "result.json").exists()]
            midway = [c for c in cells if (c / "checkpoint.pt").exists() and not (c / "result.json").exists()]
            if done and midway:
                break
            time.sleep(0.02)
        else:
            raise AssertionError("the run never reached the middle of a cell")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    total = 6  # 4 kl cells (2 β × 2 seeds) + 2 none cells (β ignored)
    assert len(_results(out)) < total

    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    resumed = _results(out)
    assert len(resumed) == total and all(r["status"] == "done" for r in resumed.values())
    for r in resumed.values():
        assert [h["epoch"] for h in r["history"]] == [1, 2, 3, 4, 5, 6]

    # Resuming changed nothing: an uninterrupted run gives the same numbers.
    assert main(["run", str(cfg), "--out", str(tmp_path / "clean"), "--quiet"]) == 0
    clean = _results(tmp_path / "clean")
    for cell_id, r in clean.items():
        assert resumed[cell_id]["metrics"] == r["metrics"]
        assert resumed[cell_id]["history"] == r["history"]


def test_rerun_skips_finished_cells_and_fresh_redoes_them(tmp_path, capsys):
    cfg = write_config(tmp_path / "b.yaml")
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    stamp = {k: r["seconds"] for k, r in _results(out).items()}
    capsys.readouterr()
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    assert "2 cached" in capsys.readouterr().out
    assert {k: r["seconds"] for k, r in _results(out).items()} == stamp
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--fresh"]) == 0
    assert "2 done" in capsys.readouterr().out


def test_leaderboard_long_csv_and_markdown_rerender_from_the_store(tmp_path, capsys):
    cfg = write_config(tmp_path / "b.yaml", seeds=[0, 1], beta=[0.1, 1.0])
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    frame = pd.read_csv(out / "results.csv")
    assert list(frame.columns) == [
        "cell_id", "benchmark", "model", "dataset", "prior", "prior_options", "regularizer", "beta", "seed", "metric",
        "value", "details",
    ]
    assert set(frame["metric"]) == {"reconstruction.mse", "reconstruction.psnr"}
    assert len(frame) == 6 * 2  # (2 β kl + 1 none) × 2 seeds × 2 metrics
    mse = frame[(frame.metric == "reconstruction.mse") & (frame.regularizer == "kl") & (frame.beta == 1.0)]["value"]
    board = (out / "leaderboard.md").read_text()
    assert f"{mse.mean():.4g} ± {mse.std():.2g}" in board
    assert "## Provenance" in board and "git commit" in board and "torch" in board

    (out / "leaderboard.md").unlink()
    assert main(["leaderboard", str(out)]) == 0
    assert (out / "leaderboard.md").read_text() == board


def test_each_cell_saves_a_png_grid_of_prior_samples(tmp_path):
    cfg = write_config(tmp_path / "b.yaml", regularizers=["none"])
    assert main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    (cell,) = (tmp_path / "out" / "cells").iterdir()
    assert (cell / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((cell / "config.json").read_text())["cell_id"] == cell.name


def test_each_cell_records_its_commit_and_the_leaderboard_lists_several(tmp_path):
    cfg = write_config(tmp_path / "b.yaml", seeds=[0, 1], regularizers=["none"])
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    paths = sorted(out.glob("cells/*/result.json"))
    commits = {json.loads(p.read_text())["git_commit"] for p in paths}
    assert commits == {json.loads((out / "provenance.json").read_text())["git_commit"]}
    assert "cells trained at" not in (out / "leaderboard.md").read_text()  # one commit: nothing more to say
    # A cell from before results recorded their commit, as a folder filled over several runs can hold.
    older = json.loads(paths[0].read_text())
    del older["git_commit"]
    paths[0].write_text(json.dumps(older), encoding="utf-8")
    assert main(["leaderboard", str(out)]) == 0
    (commit,) = commits
    assert f"- cells trained at: {commit} (1), not recorded (1)" in (out / "leaderboard.md").read_text()


def test_a_rerun_that_trains_nothing_keeps_the_provenance_of_the_run_that_did(tmp_path):
    # gan × kl is skipped by the grid (no density): a skipped cell is nothing to train either.
    cfg = write_config(tmp_path / "b.yaml", priors={"gaussian": {}, "gan": {}}, regularizers=["kl"])
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    statuses = sorted(json.loads(p.read_text())["status"] for p in out.glob("cells/*/result.json"))
    assert statuses == ["done", "skipped"]
    first = (out / "provenance.json").read_text()
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--device", "cpu"]) == 0
    assert (out / "provenance.json").read_text() == first


def test_a_rerun_leaves_the_stored_result_of_a_cell_the_grid_skips_untouched(tmp_path):
    from harness.cli import main

    cfg = write_config(tmp_path / "b.yaml", priors={"gan": {"hidden": 16, "d_steps": 1, "noise_dim": 4}},
                       regularizers=["kl"])  # gan × kl: skipped by the grid, nothing trains
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--device", "cpu", "--threads", "1"]) == 0
    (path,) = out.glob("cells/*/result.json")
    before = path.read_bytes()
    assert b'"skipped"' in before and b'"torch_threads": 1' in before
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--device", "cpu", "--threads", "2"]) == 0
    assert path.read_bytes() == before
