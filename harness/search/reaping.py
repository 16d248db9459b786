"""Counting a study's trials, and failing and retrying the running trials whose worker died."""

from __future__ import annotations

import os
import socket
import warnings
from collections import Counter
from collections.abc import Mapping

import optuna
from optuna.trial import FrozenTrial, TrialState

from harness.search.storage import Storage, _retry


def tally(trials: list[FrozenTrial]) -> Counter[str]:
    """complete, pruned, failed (a retried failure excluded), finished (their sum), running, waiting, retried."""
    retried = {n for t in trials for n in t.system_attrs.get("retry_history", [])}
    counts: Counter[str] = Counter()
    for t in trials:
        if t.state == TrialState.COMPLETE:
            counts["complete"] += 1
        elif t.state == TrialState.PRUNED:
            counts["pruned"] += 1
        elif t.state == TrialState.FAIL:
            counts["retried" if t.number in retried else "failed"] += 1
        elif t.state == TrialState.RUNNING:
            counts["running"] += 1
        elif t.state == TrialState.WAITING:
            counts["waiting"] += 1
    counts["finished"] = counts["complete"] + counts["pruned"] + counts["failed"]
    return counts


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _fail_and_retry(study: optuna.Study, storage: Storage, trial: FrozenTrial, reason: str, max_retry: int) -> bool:
    """Fail a running trial another process owned, with ``reason``, and queue its retry."""
    try:
        storage.optuna.set_trial_user_attr(trial._trial_id, "reason", reason)
        if not storage.optuna.set_trial_state_values(trial._trial_id, TrialState.FAIL):
            return False
    except optuna.exceptions.UpdateFinishedTrialError:
        return False  # it finished (or another process failed it) meanwhile
    _retry(max_retry)(study, storage.optuna.get_trial(trial._trial_id))
    return True


def _reap(study: optuna.Study, storage: Storage, max_retry: int, dead: Mapping[int, str] | None = None) -> list[int]:
    """Fail and retry the running trials whose worker is gone; returns their numbers.

    ``dead``: pids of this machine known to have died (with why). A journal has no heartbeats, so any running
    trial of a local pid that no longer exists is reaped too; a database relies on its heartbeats instead.
    """
    if storage.heartbeat:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    host = socket.gethostname()
    reaped = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner, _, pid_text = str(trial.user_attrs.get("worker", "")).rpartition(":")
        if owner != host or not pid_text.isdigit():
            continue
        pid = int(pid_text)
        if dead and pid in dead:
            why = dead[pid]
        elif storage.journal and not _alive(pid):
            why = "its worker process is gone"
        else:
            continue
        if _fail_and_retry(study, storage, trial, f"worker {owner}:{pid} died during the trial ({why})", max_retry):
            reaped.append(trial.number)
    return reaped
