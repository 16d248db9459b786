"""The mlflow tracker: a tiny benchmark trained by two worker processes and read back with MLflow's own client (one
run per cell with dotted params, epoch histories and final metrics equal to result.json, the samples, a leaderboard
run); a failing cell's run is FAILED with its reason; a search's trained trials are nested under one parent run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import yaml
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from optuna.storages.journal import JournalFileBackend, JournalStorage

import plugin_doubles
from conftest import TINY, write_config
from harness.cli import main
from harness.config import load_config
from harness.registry import load_registry
from harness.run.plan import plan_benchmark, run_plan
from harness.run.store import Store


def _results(out: Path) -> dict[str, dict[str, Any]]:
    found = (json.loads(p.read_text()) for p in sorted(out.glob("cells/*/result.json")))
    return {r["cell"]["cell_id"]: r for r in found}


def _client(out: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{out.resolve() / 'mlflow.db'}")


def _runs(client: MlflowClient, experiment: str, view: int = ViewType.ACTIVE_ONLY) -> list[Any]:
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r}"
    return client.search_runs([found.experiment_id], run_view_type=view)


def test_two_worker_processes_log_one_run_per_cell_with_params_histories_metrics_and_samples(tmp_path):
    cfg = write_config(tmp_path / "b.yaml", trackers={"mlflow": {}},
                       train={"epochs": 3, "batch_size": 256, "lr": 0.003})
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet", "--device", "cpu", "--workers", "2"]) == 0
    results = _results(out)
    assert len(results) == 2 and all(r["status"] == "done" for r in results.values())
    client = _client(out)
    runs = _runs(client, "tiny")
    cells = {r.data.tags["harness.cell_id"]: r for r in runs if "harness.cell_id" in r.data.tags}
    assert cells.keys() == results.keys(), "one run per cell"
    for cell_id, result in results.items():
        run = cells[cell_id]
        cell = result["cell"]
        assert run.info.status == "FINISHED" and run.data.tags["harness.status"] == "done"
        assert run.data.tags["harness.benchmark"] == "tiny"
        assert run.info.run_name == f"digits gaussian {cell['regularizer']}" + (" β=1" if cell["beta"] else "") + " seed=0"
        params = run.data.params
        assert params["regularizer"] == cell["regularizer"] and params["prior"] == "gaussian"
        assert params["dataset"] == "digits" and params["seed"] == "0"
        assert params["beta"] == str(cell["beta"])
        assert params["model.latent_dim"] == "4" and params["model.architecture_options.hidden"] == "32"
        assert params["train.epochs"] == "3" and params["train.lr"] == "0.003"
        history = client.get_metric_history(run.info.run_id, "train/reconstruction")
        assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
            (row["epoch"], pytest.approx(row["reconstruction"], rel=1e-6)) for row in result["history"]]
        assert [row["epoch"] for row in result["history"]] == [1, 2, 3]
        for name, value in result["metrics"].items():
            assert run.data.metrics[name] == pytest.approx(value, rel=1e-9), name
        artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"samples.png", "checkpoint.pt"} <= artifacts
    (board,) = [r for r in runs if r.info.run_name == "leaderboard"]
    artifacts = {a.path for a in client.list_artifacts(board.info.run_id)}
    assert {"leaderboard.md", "results.csv"} <= artifacts
    local = Path(client.download_artifacts(board.info.run_id, "leaderboard.md", str(tmp_path)))
    assert local.read_text() == (out / "leaderboard.md").read_text()
    assert len(runs) == 3, "two cells and the leaderboard, nothing else"
    assert (out / "mlartifacts").is_dir(), "the default store keeps its artifacts in the run's folder"


def test_a_failing_cell_s_run_is_failed_with_its_reason_and_the_other_finishes(tmp_path):
    cfg = write_config(tmp_path / "b.yaml", priors={"poisonable": {"poison": [False, True]}}, regularizers=["none"],
                       trackers={"mlflow": {"experiment": "poisoned", "artifacts": False}})
    registry = load_registry(extra_modules=[plugin_doubles])
    plan = plan_benchmark("tiny", load_config(cfg).benchmarks["tiny"], registry, str(cfg))
    out = tmp_path / "out"
    # No start_run: the experiment is created by the first cell that needs it.
    assert run_plan(plan, registry, Store(out), torch.device("cpu"), progress=False) == {"done": 1, "failed": 1}
    by_poison = {r["cell"]["prior_options"]["poison"]: r for r in _results(out).values()}
    runs = {r.data.params["prior_options.poison"]: r for r in _runs(_client(out), "poisoned")}
    assert runs.keys() == {"True", "False"}
    failed, done = runs["True"], runs["False"]
    assert failed.info.status == "FAILED" and failed.data.tags["harness.status"] == "failed"
    assert failed.data.tags["harness.reason"] == by_poison[True]["reason"]
    assert failed.data.tags["harness.reason"].startswith("NonFiniteLoss: non-finite loss at epoch 1")
    assert done.info.status == "FINISHED" and "harness.reason" not in done.data.tags
    assert _client(out).list_artifacts(done.info.run_id) == [], "artifacts: false logs none"


SEARCH: dict[str, Any] = {
    "benchmark": "tiny",
    "prior": {"realnvp": {"hidden": 16}},
    "regularizer": "kl",
    "space": {"beta": {"low": 0.1, "high": 2.0}, "prior.depth": {"low": 1, "high": 3, "type": "int"}},
    "objective": {"metric": "reconstruction.mse"},
    "pruner": {"enabled": False},
    "trials": 3,
}


def _search_config(path: Path) -> Path:
    bench = {**TINY, "default": True, "regularizers": ["kl"], "sample_grid": 0}
    path.write_text(yaml.safe_dump({"benchmarks": {"tiny": bench}, "searches": {"s": SEARCH}}), encoding="utf-8")
    return path


def test_a_search_s_trained_trials_are_nested_runs_under_one_parent_found_across_workers(tmp_path):
    cfg = _search_config(tmp_path / "b.yaml")
    out = tmp_path / "out"
    assert main(["search", str(cfg), "--search", "s", "--out", str(out), "--device", "cpu", "--quiet",
                 "--workers", "2", "--tracker", "mlflow"]) == 0
    storage = JournalStorage(JournalFileBackend(str(out / "study.journal")))
    (name,) = optuna.study.get_all_study_names(storage)
    trials = optuna.load_study(study_name=name, storage=storage).trials
    trained = {t.number: t for t in trials if not t.user_attrs.get("cached")}
    assert len(trials) == 3 and trained

    client = _client(out)
    runs = _runs(client, "s", ViewType.ALL)
    (parent,) = [r for r in runs if r.data.tags.get("harness.search") == "s"]
    assert parent.info.lifecycle_stage == "active" and parent.info.status == "FINISHED"
    assert parent.data.tags["harness.search.study"] == name
    children = [r for r in runs if r.info.run_id != parent.info.run_id]
    assert all(r.data.tags["mlflow.parentRunId"] == parent.info.run_id for r in children)
    by_trial = {int(r.data.params["trial"]): r for r in children}
    assert len(by_trial) == len(children) and by_trial.keys() == trained.keys()
    for number, run in by_trial.items():
        trial = trained[number]
        assert run.data.tags["harness.cell_id"] == trial.user_attrs["cell_id"]
        assert run.data.params["beta"] == str(trial.params["beta"])
        assert run.data.params["prior_options.depth"] == str(trial.params["prior.depth"])
        assert run.data.metrics["reconstruction.mse"] == pytest.approx(trial.value, rel=1e-9)
        assert run.info.status == "FINISHED"
    assert "best.md" in {a.path for a in client.list_artifacts(parent.info.run_id)}


def test_bad_mlflow_options_and_an_unknown_search_tracker_are_one_error_line(tmp_path, capsys):
    cfg = write_config(tmp_path / "b.yaml", trackers={"mlflow": {"artifact": False}})
    assert main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet", "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[0]
    assert err.startswith(f"error: {cfg}: benchmarks.tiny.trackers.mlflow") and "artifact" in err
    scfg = _search_config(tmp_path / "s.yaml")
    assert main(["search", str(scfg), "--out", str(tmp_path / "sout"), "--device", "cpu", "--quiet",
                 "--tracker", "mlflw"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[0]
    assert err.startswith("error: --tracker mlflw: unknown tracker 'mlflw'") and "mlflow" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "sout" / "mlflow.db").exists()


def test_a_pruned_trial_is_killed_with_its_reason_under_the_parent_another_process_made(tmp_path):
    from harness import CellEnd, TrackedCell
    from harness_plugins.trackers.mlflow_tracking import MLflowTracker

    out = tmp_path / "out"
    supervisor, worker = MLflowTracker(), MLflowTracker()  # two processes' instances: nothing shared but the store
    supervisor.start_run("s", out, {"search": {"name": "s", "study": "s-0123456789"}})
    config = {"cell_id": "c1", "benchmark": "s", "dataset": "digits", "prior": "realnvp",
              "prior_options": {"depth": 2}, "train": {"epochs": 4}, "beta": 0.5, "seed": 0}
    cell = TrackedCell("c1", "s", "digits realnvp(depth=2) kl β=0.5 seed=0", config, "digits", "realnvp", "kl", 0.5,
                       0, out, out / "cells" / "c1", {"device": "cpu"}, search="s", trial=7)
    worker.start_cell(cell)
    worker.log_epoch("c1", 1, {"reconstruction": 3.0})
    reason = "pruned at epoch 1 of 4: training reconstruction term 3 is worse than the median"
    worker.end_cell(CellEnd("c1", "pruned", {}, reason, None, None))
    runs = _runs(_client(out), "s", ViewType.ALL)
    (parent,) = [r for r in runs if r.data.tags.get("harness.search") == "s"]
    (child,) = [r for r in runs if r is not parent]
    assert parent.data.tags["harness.search.study"] == "s-0123456789"
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.data.params["trial"] == "7" and child.data.params["prior_options.depth"] == "2"
    assert child.info.status == "KILLED" and child.data.tags["harness.reason"] == reason
    assert child.data.metrics == {"train/reconstruction": 3.0}
