"""Searches on a real PostgreSQL server: workers share the study through the database; a local worker that is
SIGKILLed mid-trial, and a worker elsewhere that stops beating, each leave a trial that is failed and retried.

Needs ``HARNESS_TEST_POSTGRES_URL`` (e.g. ``postgresql://harness:harness@127.0.0.1/harness_test``); ``.ci/run``
installs Debian's postgresql, starts it and sets it. Each test uses a search name of its own and deletes its study.
"""

from __future__ import annotations

import functools
import os
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
import yaml
from optuna.trial import TrialState

from conftest import TINY
from harness.cli import main
from harness.config import SearchHeartbeat
from harness.search import open_storage, tally
from test_search import sigkill_a_worker_mid_trial

URL = os.environ.get("HARNESS_TEST_POSTGRES_URL", "")
pytestmark = pytest.mark.skipif(
    not URL, reason="HARNESS_TEST_POSTGRES_URL is not set: no PostgreSQL server to test against (.ci/run starts one)"
)

#: Short heartbeats so a dead worker's trial goes stale within seconds.
HEARTBEAT = {"interval": 1, "grace": 3, "max_retry": 2}


def write(path: Path, name: str, trials: int, epochs: int) -> Path:
    bench = {**TINY, "default": True, "regularizers": ["kl"], "sample_grid": 0,
             "train": {"epochs": epochs, "batch_size": 64, "lr": 0.003}}
    search = {"benchmark": "tiny", "prior": "gaussian", "regularizer": "kl",
              "space": {"beta": {"low": 0.1, "high": 2.0}}, "objective": "reconstruction.mse",
              "pruner": {"enabled": False}, "heartbeat": HEARTBEAT, "trials": trials}
    path.write_text(yaml.safe_dump({"benchmarks": {"tiny": bench}, "searches": {name: search}}), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.cache
def storage() -> optuna.storages.BaseStorage:
    return open_storage(URL, SearchHeartbeat(**HEARTBEAT)).optuna


def study_of(name: str) -> optuna.Study:
    (study,) = [s for s in optuna.study.get_all_study_names(storage()) if s.startswith(f"{name}-")]
    return optuna.load_study(study_name=study, storage=storage())


def search_argv(cfg: Path, name: str, out: Path, *extra: str) -> list[str]:
    return ["search", str(cfg), "--search", name, "--storage", URL, "--out", str(out), "--device", "cpu", "--quiet",
            *extra]


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A 2-worker search of 4 trials with one worker SIGKILLed mid-trial; then a trial of "another machine" that
    beats once and goes silent; then the same command asking for 5 (after that trial's grace period)."""
    root = tmp_path_factory.mktemp("pg")
    name = f"pg-{uuid.uuid4().hex[:8]}"
    cfg = write(root / "b.yaml", name, trials=4, epochs=8)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with sigkill_a_worker_mid_trial(lambda: study_of(name)) as caught:
            first = main(search_argv(cfg, name, root / "out", "--workers", "2"))
        before = study_of(name).trials
        # A worker on another machine takes a trial, beats once and dies with its machine.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Heartbeat of storage")  # it beats by hand, below
            gone = study_of(name).ask()
        gone.suggest_float("beta", 0.1, 2.0)
        gone.set_user_attr("worker", "another-machine:4242")
        storage().record_heartbeat(gone._trial_id)  # type: ignore[attr-defined]
        time.sleep(HEARTBEAT["grace"] + 1)  # its last heartbeat is now older than the grace period
        second = main(search_argv(cfg, name, root / "out", "--trials", "5"))
        yield {"root": root, "name": name, "status": (first, second), "before": before,
               "killed": caught["victim"].number, "gone": gone.number}
    finally:
        torch.set_num_threads(threads)
        for study in optuna.study.get_all_study_names(storage()):
            if study.startswith(f"{name}-"):
                optuna.delete_study(study_name=study, storage=storage())


def test_two_workers_on_postgres_finish_exactly_the_asked_trials(shared):
    assert shared["status"][0] == 0
    counts = tally(shared["before"])
    assert counts["finished"] == counts["complete"] == 4 and counts["running"] == counts["waiting"] == 0
    answered = [t for t in shared["before"] if t.state == TrialState.COMPLETE]
    assert len({t.user_attrs["cell_id"] for t in answered}) == 4


def test_a_sigkilled_worker_s_trial_is_failed_and_retried(shared):
    killed = shared["before"][shared["killed"]]
    assert killed.state == TrialState.FAIL and "(killed by signal 9)" in killed.user_attrs["reason"]
    (retry,) = [t for t in shared["before"] if t.system_attrs.get("failed_trial") == killed.number]
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params


def test_a_trial_whose_machine_stops_beating_is_failed_and_retried(shared):
    assert shared["status"][1] == 0
    trials = study_of(shared["name"]).trials
    gone = trials[shared["gone"]]
    assert gone.state == TrialState.FAIL
    (retry,) = [t for t in trials if t.system_attrs.get("failed_trial") == gone.number]
    assert retry.state == TrialState.COMPLETE and retry.params == gone.params
    assert "heartbeats; retried as trial" in (shared["root"] / "out" / "best.md").read_text()


def test_running_again_with_more_trials_continues_the_study_on_postgres(shared):
    trials = study_of(shared["name"]).trials
    n = len(shared["before"])
    assert [(t.number, t.state, t.params) for t in trials[:n]] == [(t.number, t.state, t.params) for t in shared["before"]]
    assert tally(trials)["finished"] == 5 and tally(trials)["running"] == tally(trials)["waiting"] == 0


def test_workers_opening_a_fresh_database_at_once_all_get_the_storage():
    """Every worker of a new search creates Optuna's tables; on a fresh database PostgreSQL fails all but one of
    them with a unique violation unless the losers try again (seen with 4 threads: 3 failed before the fix)."""
    import threading

    import psycopg2

    schema = f"fresh_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(URL)
    admin.autocommit = True
    admin.cursor().execute(f"CREATE SCHEMA {schema}")
    url = f"{URL}{'&' if '?' in URL else '?'}options=-csearch_path%3D{schema}"
    start, errors, opened = threading.Barrier(4), [], []

    def open_at_once() -> None:
        start.wait()
        try:
            opened.append(open_storage(url, SearchHeartbeat(**HEARTBEAT)).optuna)
        except Exception as exc:  # noqa: BLE001 - collected and asserted on below
            errors.append(str(exc))

    try:
        threads = [threading.Thread(target=open_at_once) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors, errors
        assert len(opened) == 4
        optuna.create_study(storage=opened[0], study_name="made-in-the-fresh-schema")
        assert optuna.study.get_all_study_names(opened[3]) == ["made-in-the-fresh-schema"]
    finally:
        admin.cursor().execute(f"DROP SCHEMA {schema} CASCADE")
        admin.close()
