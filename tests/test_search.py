"""Optuna searches: exact trial totals across workers, continued studies, pruning, failed and killed trials,
reports whose best cell `harness run` reproduces, and bad search configs rejected with one line."""

from __future__ import annotations

import csv
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import yaml
from optuna.storages.journal import JournalFileBackend, JournalStorage
from optuna.trial import TrialState

import plugin_doubles
from conftest import TINY
from harness.cli import main
from harness.config import load_config
from harness.registry import load_registry
from harness.search import run, tally
from harness.search.space import resolve
from harness.run.store import Store

#: A benchmark of tiny digits cells (about a second each on a CPU core).
BENCH: dict[str, Any] = {**TINY, "default": True, "regularizers": ["kl"], "sample_grid": 0}
SEARCH: dict[str, Any] = {
    "benchmark": "tiny",
    "prior": {"realnvp": {"hidden": 16}},
    "regularizer": "kl",
    "space": {
        "beta": {"low": 0.1, "high": 2.0},
        "prior.depth": {"low": 1, "high": 3, "type": "int"},
        "train.lr": {"low": 1.0e-3, "high": 1.0e-2, "log": True},
    },
    "objective": {"metric": "reconstruction.mse"},
    "pruner": {"enabled": False},
    "trials": 4,
}


def write(path: Path, search: dict[str, Any] | None = None, name: str = "s", **bench: Any) -> Path:
    data = {"benchmarks": {"tiny": {**BENCH, **bench}}, "searches": {name: {**SEARCH, **(search or {})}}}
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def journal_study(out: Path) -> optuna.Study:
    storage = JournalStorage(JournalFileBackend(str(out / "study.journal")))
    (name,) = optuna.study.get_all_study_names(storage)
    return optuna.load_study(study_name=name, storage=storage)


def search_cli(cfg: Path, out: Path, *extra: str) -> int:
    return main(["search", str(cfg), "--search", "s", "--out", str(out), "--device", "cpu", "--quiet", *extra])


FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@pytest.fixture(autouse=True)
def one_torch_thread():
    """In-process trials on one thread, like a worker of a 2-worker search on 2 cores (and much faster on a
    busy machine than two spinning threads)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


#: A trial is killed only this early in its training (the searches here train 8 to 12 epochs a trial).
EARLY_EPOCHS = 2


@contextmanager
def sigkill_a_worker_mid_trial(study: Callable[[], optuna.Study]) -> Iterator[dict[str, Any]]:
    """While the block runs a search, SIGKILL the worker process of the first trial seen running with one to
    ``EARLY_EPOCHS`` epochs reported (so mid-training, and far from its end: a trial seen in its last epoch can
    finish between the look and the kill on a busy machine); yields {"victim": that trial} once it is done."""
    caught: dict[str, Any] = {}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                running = study().get_trials(states=(TrialState.RUNNING,))
            except (ValueError, FileNotFoundError):  # no storage or no study yet
                running = []
            for trial in running:
                pid = int(str(trial.user_attrs.get("worker", ":0")).rsplit(":", 1)[1])
                if 0 < len(trial.intermediate_values) <= EARLY_EPOCHS and pid and pid != os.getpid():
                    os.kill(pid, signal.SIGKILL)
                    caught["victim"] = trial
                    return
            time.sleep(0.1)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield caught
    finally:
        stop.set()
        watcher.join()
    assert "victim" in caught, "no trial was seen running"


@pytest.fixture(scope="module")
def searched(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """`harness search --workers 2 --trials 4` on a journal file with one worker SIGKILLed mid-trial, then the
    same command asking for 6."""
    root = tmp_path_factory.mktemp("search")
    cfg = write(root / "b.yaml", train={"epochs": 12, "batch_size": 64, "lr": 0.003})
    out = root / "out"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with sigkill_a_worker_mid_trial(lambda: journal_study(out)) as caught:
            first = search_cli(cfg, out, "--trials", "4", "--workers", "2")
        before = journal_study(out).trials
        second = search_cli(cfg, out, "--trials", "6")
    finally:
        torch.set_num_threads(threads)
    return {"root": root, "cfg": cfg, "out": out, "status": (first, second), "before": before,
            "victim": caught["victim"].number}


def test_two_workers_on_a_journal_finish_exactly_the_asked_trials_each_once(searched):
    assert searched["status"][0] == 0
    before = searched["before"]
    counts = tally(before)
    assert counts["finished"] == counts["complete"] == 4 and counts["running"] == counts["waiting"] == 0
    # Four answered trials, each run once: the killed one's retry replaced it (see the next test).
    answered = [t for t in before if t.state == TrialState.COMPLETE]
    assert len({t.user_attrs["cell_id"] for t in answered}) == 4
    done = {r.cell["cell_id"] for r in Store(searched["out"]).results() if r.status == "done"}
    assert {t.user_attrs["cell_id"] for t in answered} <= done


def test_a_sigkilled_worker_s_trial_is_failed_and_retried_never_lost(searched):
    trials = searched["before"]
    killed = trials[searched["victim"]]
    assert killed.state == TrialState.FAIL
    assert "died during the trial (killed by signal 9)" in killed.user_attrs["reason"]
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params
    # The retry resumed the cell from its last epoch checkpoint, keeping the epochs reported before the kill.
    assert set(killed.intermediate_values) <= set(retry.intermediate_values)
    assert "retried as trial" in (searched["out"] / "best.md").read_text()


def test_running_again_with_more_trials_continues_the_same_study(searched):
    assert searched["status"][1] == 0
    study = journal_study(searched["out"])  # one study in the journal: the same one
    assert [t.number for t in study.trials[: len(searched["before"])]] == [t.number for t in searched["before"]]
    assert [(t.state, t.params) for t in study.trials[: len(searched["before"])]] == [
        (t.state, t.params) for t in searched["before"]
    ]
    assert all(t.state in FINISHED for t in study.trials)
    assert tally(study.trials)["finished"] == 6


def test_trials_csv_importances_plots_and_best_md_are_written(searched):
    out = searched["out"]
    for name in ("trials.csv", "importances.csv", "best.md", "best.yaml", "history.png", "importances.png",
                 "intermediate.png", "objective-vs-beta.png", "objective-vs-prior.depth.png"):
        assert (out / name).stat().st_size > 0, name
    assert len((out / "trials.csv").read_text().strip().splitlines()) == 1 + len(journal_study(out).trials)
    rows = (out / "importances.csv").read_text().strip().splitlines()
    assert rows[0] == "parameter,importance" and {r.split(",")[0] for r in rows[1:]} == set(SEARCH["space"])
    assert all(0.0 <= float(r.split(",")[1]) <= 1.0 for r in rows[1:])  # plain numbers, not `np.float64(...)`
    assert "optuna-dashboard" in (out / "best.md").read_text()


def test_the_best_cell_reproduces_its_metric_with_harness_run(searched):
    best = journal_study(searched["out"]).best_trial
    page = (searched["out"] / "best.md").read_text()
    snippet = re.search(r"```yaml\n(.*?)```", page, re.S).group(1)
    cfg = searched["root"] / "best.yaml"
    cfg.write_text(snippet, encoding="utf-8")
    repro = searched["root"] / "repro"
    assert main(["run", str(cfg), "--out", str(repro), "--quiet", "--device", "cpu"]) == 0
    (result,) = Store(repro).results()
    assert result.cell["cell_id"] == best.user_attrs["cell_id"]
    assert result.metrics is not None and result.metrics["reconstruction.mse"] == best.value


def test_pruning_stops_a_hopeless_trial_and_the_store_says_pruned(tmp_path):
    # A good learning rate first, then one so small that the first epoch barely moves: hopeless next to it.
    cfg = write(tmp_path / "b.yaml", {
        "prior": "gaussian",
        "space": {"train.lr": {"low": 1.0e-7, "high": 1.0e-2, "log": True}},
        "enqueue": [{"train.lr": 0.003}, {"train.lr": 1.0e-7}],
        "pruner": {"startup_trials": 1, "warmup_epochs": 0},
        "trials": 2,
    }, train={"epochs": 3, "batch_size": 64, "lr": 0.003})
    out = tmp_path / "out"
    assert search_cli(cfg, out) == 0
    good, hopeless = journal_study(out).trials
    assert good.state == TrialState.COMPLETE and good.params == {"train.lr": 0.003}
    assert hopeless.state == TrialState.PRUNED and hopeless.params == {"train.lr": 1.0e-7}
    assert sorted(hopeless.intermediate_values) == [1]  # stopped after its first epoch of three
    assert hopeless.intermediate_values[1] > good.intermediate_values[1]
    # trials.csv: `value` is the objective, so the pruned trial has none; its training term has columns of its own.
    with (out / "trials.csv").open(newline="") as f:
        rows = {int(row["number"]): row for row in csv.DictReader(f)}
    assert float(rows[good.number]["value"]) == good.value
    assert rows[good.number]["pruned_at_epoch"] == rows[good.number]["pruned_train_reconstruction"] == ""
    assert rows[hopeless.number]["value"] == "" and rows[hopeless.number]["pruned_at_epoch"] == "1"
    assert float(rows[hopeless.number]["pruned_train_reconstruction"]) == hopeless.intermediate_values[1]
    (stored,) = [r for r in Store(out).results() if r.cell["cell_id"] == hopeless.user_attrs["cell_id"]]
    assert stored.status == "pruned" and stored.reason is not None and stored.reason.startswith("pruned at epoch 1 of 3")
    # Not done: a trial that samples the same values trains it again; the leaderboard takes the status in stride.
    config = load_config(cfg)
    registry = load_registry()
    cell = resolve(config, "s", registry, str(cfg)).cell({"train.lr": 1.0e-7}, registry)
    assert not Store(out).is_done(cell)
    assert main(["leaderboard", str(out)]) == 0


def test_a_nan_trial_fails_with_its_reason_and_the_search_goes_on(tmp_path):
    cfg = write(tmp_path / "b.yaml", {
        "prior": "poisonable",
        "space": {"prior.poison": {"choices": [False, True]}},
        "enqueue": [{"prior.poison": True}, {"prior.poison": False}],
        "trials": 2,
    })
    registry = load_registry(extra_modules=[plugin_doubles])
    search = resolve(load_config(cfg), "s", registry, str(cfg))
    summary = run(search, registry, tmp_path / "out", quiet=True)
    assert summary.ok, summary.text
    failed, complete = journal_study(tmp_path / "out").trials
    assert failed.state == TrialState.FAIL
    assert failed.user_attrs["reason"].startswith("cell failed: NonFiniteLoss: non-finite loss at epoch 1 step 1")
    assert complete.state == TrialState.COMPLETE
    assert "| fail " in (tmp_path / "out" / "best.md").read_text()


# --- bad search configs: exit 2, one line ----------------------------------------------------------------


def _one_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    status = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("warning: plugin ")]
    assert status == 2, err
    assert "Traceback" not in err and lines and lines[0].startswith("error: "), err
    assert len(lines) == 1 or (len(lines) == 2 and lines[1].startswith("  ")), err
    return lines[0]


@pytest.mark.parametrize(
    ("search", "expected"),
    [
        ({"space": {"prior.dpeth": {"low": 1, "high": 3, "type": "int"}}},
         "searches.s.space.prior.dpeth: unknown parameter 'prior.dpeth' (did you mean 'prior.depth'?)"),
        ({"space": {"optimizer.lr": {"low": 0.1, "high": 0.2}}}, "searches.s.space.optimizer.lr: unknown parameter"),
        ({"space": {"beta": {"low": 1.0, "high": 0.5}}}, "searches.s.space.beta: empty range: low 1 >= high 0.5"),
        ({"space": {"prior.depth": {"low": 3, "high": 3, "type": "int"}}}, "searches.s.space.prior.depth: empty range"),
        ({"space": {"train.lr": {"low": 0.0, "high": 0.1, "log": True}}},
         "searches.s.space.train.lr: log: true needs low > 0, got low 0"),
        ({"objective": {"metric": "reconstruction.mes"}},
         "searches.s.objective.metric: unknown metric 'reconstruction.mes' (did you mean 'reconstruction.mse'?)"),
        ({"objective": {"metric": "reconstruction.mse", "direction": "maximize"}},
         "searches.s.objective.direction: 'maximize', but reconstruction.mse is lower is better"),
        ({"benchmark": "tinny"}, "searches.s.benchmark: unknown benchmark 'tinny' (did you mean 'tiny'?)"),
        ({"prior": "realnvpp"}, "searches.s.prior: unknown prior 'realnvpp' (did you mean 'realnvp'?)"),
        ({"regularizer": "none", "space": {"beta": {"low": 0.1, "high": 1.0}}},
         "searches.s.space.beta: the 'none' regularizer ignores β"),
        ({"space": {"prior.depth": {"low": 0, "high": 3, "type": "int"}}},
         "searches.s.space.prior.depth: low 0 is rejected"),
        ({"spaces": {}}, "searches.s.spaces: unknown key 'spaces' (did you mean 'space'?)"),
        ({"enqueue": [{"beta": 5.0}]}, "searches.s.enqueue[0].beta: 5.0 is outside the searched range"),
    ],
)
def test_a_bad_search_exits_2_with_one_line(tmp_path, capsys, search, expected):
    cfg = write(tmp_path / "b.yaml", search)
    line = _one_error(capsys, ["search", str(cfg), "--search", "s", "--out", str(tmp_path / "out"), "--device", "cpu"])
    assert f"error: {cfg}: {expected}" in line, line
    assert not (tmp_path / "out").exists()


def test_an_unknown_search_name_or_storage_exits_2(tmp_path, capsys):
    cfg = write(tmp_path / "b.yaml", name="flow-beta")
    line = _one_error(capsys, ["search", str(cfg), "--search", "flow-bta"])
    assert line.startswith(f"error: {cfg}: --search: unknown search 'flow-bta' (did you mean 'flow-beta'?)"), line
    line = _one_error(capsys, ["search", str(cfg), "--storage", "redis://localhost/0", "--out", str(tmp_path / "o")])
    assert line.startswith("error: --storage: 'redis://': unsupported database"), line


@pytest.mark.parametrize("own_evaluators", [False, True], ids=["benchmark-evaluators", "search-evaluators"])
def test_missing_weights_stop_a_search_before_its_first_trial(tmp_path, capsys, monkeypatch, own_evaluators):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    fid = {"fid": {"extractor": "inception"}}
    search = {"objective": "fid", **({"evaluators": fid} if own_evaluators else {})}
    cfg = write(tmp_path / "b.yaml", search, **({} if own_evaluators else {"evaluators": fid}))
    out = tmp_path / "out"
    line = _one_error(capsys, ["search", str(cfg), "--search", "s", "--out", str(out), "--device", "cpu"])
    at = "searches.s.evaluators.fid" if own_evaluators else "benchmarks.tiny.evaluators.fid"
    assert line == f"error: {cfg}: {at}: the Inception weights are not available offline", line
    assert not out.exists()  # no study, no trial trained


def test_the_perceptual_weight_is_searchable_and_an_unset_term_leaves_study_names_alone(tmp_path, registry):
    space = {"model.perceptual.weight": {"low": 0.1, "high": 10.0, "log": True}}
    cfg = write(tmp_path / "b.yaml", {"space": space})
    search = resolve(load_config(cfg), "s", registry, str(cfg), check=False)
    cell = search.cell({"model.perceptual.weight": 2.5}, registry)
    assert cell.model["perceptual"]["weight"] == 2.5 and cell.model["perceptual"]["layers"][0] == "relu1_1"
    # The study name hashes base(): a benchmark without the term must hash as before the key existed.
    assert "perceptual" not in search.base()["model"]
    with_term = write(tmp_path / "p.yaml", model={**BENCH["model"], "perceptual": {"weight": 4.0}})
    assert resolve(load_config(with_term), "s", registry, str(with_term), check=False).base()["model"]["perceptual"]


def test_a_conditional_benchmark_is_searched_over_beta_and_flow_depth(tmp_path):
    cfg = write(tmp_path / "b.yaml", {"trials": 2, "objective": {"metric": "latent_usage.z", "direction": "maximize"},
                                      "evaluators": {"latent_usage": {"pairs": 50}}},
                datasets={"digits": {"condition": "class"}})
    out = tmp_path / "out"
    assert search_cli(cfg, out) == 0
    trials = journal_study(out).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    assert {"beta", "prior.depth"} <= set(trials[0].params)
    stored = [r for r in Store(out).results() if r.status == "done"]
    assert len(stored) == 2 and all(r.cell["dataset_options"]["condition"] == "class" for r in stored)
    assert all(r.metrics["latent_usage.z"] > 0 for r in stored)
