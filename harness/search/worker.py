"""One search worker: it pulls trials from the shared study until the study holds the total wanted, and answers
each with one cell built, trained, evaluated and stored as ``harness run`` would."""

from __future__ import annotations

import math
import os
import socket
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import TrialState

from harness.config import ConfigError, load_config
from harness.registry import Registry
from harness.run.result import CellResult, Status
from harness.seeds import derived_seed
from harness.search.reaping import _fail_and_retry, _reap, tally
from harness.search.space import Search, TrialError, resolve
from harness.search.storage import Storage, open_storage

if TYPE_CHECKING:
    from harness.grid import Cell

#: A trial records which process runs it, so a dead local worker's trial can be failed and retried.
WORKER = f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True)
class WorkerSpec:
    """What a spawned worker needs: plain data only."""

    config: str
    search: str
    storage: str
    study_name: str
    out: str
    total: int
    device: str
    index: int
    threads: int | None = None
    quiet: bool = False
    #: The trackers shown each trained trial: (name, resolved options) pairs, built into live trackers once per
    #: worker process (``harness.run.tracking``).
    trackers: tuple[tuple[str, dict[str, Any]], ...] = ()


@contextmanager
def _heartbeat(storage: Storage, trial_id: int) -> Iterator[None]:
    """Beat for the trial from a thread while it runs (database storage only)."""
    interval = storage.heartbeat
    if not interval:
        yield
        return
    assert isinstance(storage.optuna, optuna.storages.RDBStorage)
    stop = threading.Event()
    rdb = storage.optuna

    def beat() -> None:
        while True:
            rdb.record_heartbeat(trial_id)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _suggest(trial: optuna.Trial, search: Search) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for path, p in search.config.space.items():
        if p.choices is not None:
            values[path] = trial.suggest_categorical(path, p.choices)
        elif p.type == "int":
            assert p.low is not None and p.high is not None
            values[path] = trial.suggest_int(path, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        else:
            assert p.low is not None and p.high is not None
            values[path] = trial.suggest_float(path, float(p.low), float(p.high), step=p.step, log=p.log)
    return values


def _load_study(spec: WorkerSpec, search: Search, storage: Storage) -> optuna.Study:
    """The shared study, with this worker's own sampler and the search's pruner."""
    cfg = search.config
    # A seed per worker and per start, so workers (and a rerun) do not replay the same random startup trials.
    before = len(optuna.load_study(study_name=spec.study_name, storage=storage.optuna).get_trials(deepcopy=False))
    seed = derived_seed(cfg.sampler.seed, spec.index * 7919 + before) % 2**32
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=cfg.sampler.startup_trials)
    pruner: optuna.pruners.BasePruner = (
        optuna.pruners.MedianPruner(n_startup_trials=cfg.pruner.startup_trials,
                                    n_warmup_steps=cfg.pruner.warmup_epochs + 1)
        if cfg.pruner.enabled else optuna.pruners.NopPruner()
    )
    return optuna.load_study(study_name=spec.study_name, storage=storage.optuna, sampler=sampler, pruner=pruner)


class _TrialFailed(Exception):
    """The cell answered, but not with the objective: it failed, or its metric is missing or not finite."""


class _Worker:
    """Pulls trials from the study until it holds the total wanted; each trial one cell through ``run_cell``."""

    def __init__(self, spec: WorkerSpec, search: Search, registry: Registry, storage: Storage) -> None:
        import torch

        from harness.run.cell import DataCache
        from harness.run.store import Store
        from harness.run.tracking import TrackerSet

        self.spec, self.search, self.registry, self.storage = spec, search, registry, storage
        self.device = torch.device(spec.device)
        self.store = Store(Path(spec.out))
        self.data = DataCache(registry, self.device)
        self.study = _load_study(spec, search, storage)
        # One set per worker, so a tracker that raised stays off for this worker's later trials.
        self.trackers = TrackerSet(registry, spec.trackers) if spec.trackers else None

    def loop(self) -> None:
        while True:
            with self.storage.lock(self.spec.study_name):
                _reap(self.study, self.storage, self.search.config.heartbeat.max_retry)
                counts = tally(self.study.get_trials(deepcopy=False))
                # ask() takes a queued trial (a retry, an enqueued point) before it creates a new one.
                trial = self._ask() if counts["finished"] + counts["running"] < self.spec.total else None
                if trial is not None:
                    trial.set_user_attr("worker", WORKER)
                    if self.storage.heartbeat:  # beat at once: a trial that never beat is never found stale
                        self.storage.optuna.record_heartbeat(trial._trial_id)  # type: ignore[attr-defined]
            if trial is None:
                return
            self.run_trial(trial)

    def _ask(self) -> optuna.Trial:
        with warnings.catch_warnings():
            # Optuna warns that heartbeats are meant for optimize(); this worker beats itself (_heartbeat).
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            return self.study.ask()

    def run_trial(self, trial: optuna.Trial) -> None:
        state, value, reason = TrialState.FAIL, None, None
        try:
            with _heartbeat(self.storage, trial._trial_id):
                try:
                    value = self.objective(trial)
                    state = TrialState.COMPLETE
                except optuna.TrialPruned as exc:
                    state, reason = TrialState.PRUNED, str(exc)
                except (_TrialFailed, TrialError) as exc:
                    reason = str(exc)
                except Exception as exc:  # noqa: BLE001 - a trial that breaks fails alone; the search goes on
                    reason = f"{type(exc).__name__}: {exc}"
        except KeyboardInterrupt:
            # Interrupted, not answered: fail it and queue it again, so the rerun continues where it stopped.
            with self.storage.lock(self.spec.study_name):
                frozen = self.storage.optuna.get_trial(trial._trial_id)
                _fail_and_retry(self.study, self.storage, frozen, "interrupted", max_retry=sys.maxsize)
            raise
        try:
            if reason:
                trial.set_user_attr("reason", reason)
            self.study.tell(trial, value, state=state)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Its heartbeats were late (a starved process), so another worker failed it and queued a retry.
            print(f"{self.search.name}: trial {trial.number} was failed meanwhile for missed heartbeats; "
                  "its retry answers instead", file=sys.stderr)
            return
        if not self.spec.quiet:
            shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items())
            what = f"{self.search.metric}={value:.6g}" if value is not None else (reason or "")
            print(f"{self.search.name}: trial {trial.number} {state.name.lower()}: {what} ({shown})", file=sys.stderr)

    def objective(self, trial: optuna.Trial) -> float:
        """The trial's value: its cell's metric, trained here or read from the store."""
        cell = self.search.cell(_suggest(trial, self.search), self.registry)
        trial.set_user_attr("cell_id", cell.cell_id)
        curve = _Curve(trial, self.storage, self.search.direction, int(cell.train["epochs"]))
        return _value(self._result(trial, cell, curve), self.search.metric)

    def _result(self, trial: optuna.Trial, cell: Cell, curve: _Curve) -> CellResult:
        """The cell's result: stored already (by an earlier trial with the same values), or trained now."""
        while True:
            stored = self.store.result(cell)
            if stored is not None and stored.status == Status.DONE:
                curve.replay(stored.history or [])
                trial.set_user_attr("cached", True)
                return stored
            trained = self._claim_and_train(cell, curve, trial.number)
            if trained is not None:
                return trained

    def _claim_and_train(self, cell: Cell, curve: _Curve, number: int) -> CellResult | None:
        """Train the cell (trial ``number``'s) under its claim; None when the store must be read again (it runs
        elsewhere, or it was done meanwhile)."""
        from harness.run.cell import run_cell

        with self.store.claim(cell) as claimed:
            if not claimed:  # a trial with the same values runs elsewhere: wait for its result
                time.sleep(1.0)
                return None
            stored = self.store.result(cell)
            if stored is not None and stored.status == Status.DONE:
                return None
            if stored is not None and stored.status == Status.PRUNED:
                self.store.forget(cell)  # pruned before: train it from scratch, reporting every epoch
            meta = {"benchmark": self.search.name, "primary_metric": self.search.metric,
                    "directions": dict(self.search.directions)}
            return run_cell(cell, meta, self.registry, self.store, self.data, self.device,
                            Path(self.spec.out) / "cache", progress=False, on_epoch=curve.on_epoch,
                            trackers=self.trackers, trial=(self.search.name, number))


class _Curve:
    """A trial's learning curve as the pruner sees it: each epoch's mean training reconstruction term, negated
    when the objective is maximised, so "worse" is always "reconstructs worse"."""

    def __init__(self, trial: optuna.Trial, storage: Storage, direction: str, epochs: int) -> None:
        self.trial, self.epochs = trial, epochs
        self.sign = 1.0 if direction == "minimize" else -1.0
        # A retry keeps the epochs its dead attempt reported; Optuna ignores (and warns about) a step reported twice.
        self.reported = set(storage.optuna.get_trial(trial._trial_id).intermediate_values)

    def report(self, step: int, term: float) -> None:
        if step not in self.reported:
            self.trial.report(self.sign * term, step)
            self.reported.add(step)

    def replay(self, history: list[dict[str, Any]]) -> None:
        """A stored cell's curve, so the pruner compares like with like."""
        for row in history:
            self.report(int(row["epoch"]), row["reconstruction"])

    def on_epoch(self, epoch: int, means: dict[str, float]) -> None:
        """``run_cell``'s callback after each epoch: report it, and stop the cell when the pruner says so."""
        from harness.run.cell import CellPruned

        term = means["reconstruction"]
        self.report(epoch + 1, term)
        # A trial that trained to its last epoch is evaluated: its real objective beats the proxy.
        if epoch + 1 < self.epochs and self.trial.should_prune():
            raise CellPruned(f"pruned at epoch {epoch + 1} of {self.epochs}: training reconstruction term {term:.4g} "
                             "is worse than the median of earlier trials at that epoch")


def _value(result: CellResult, metric: str) -> float:
    """The objective a cell's result answers, or why the trial was pruned or failed instead."""
    if result.status == Status.PRUNED:
        raise optuna.TrialPruned(result.reason or "pruned")
    if result.status != Status.DONE:
        raise _TrialFailed(f"cell {result.status}: {result.reason or ''}")
    value = (result.metrics or {}).get(metric)
    if value is None:
        raise _TrialFailed(f"the cell did not report {metric}")
    if not math.isfinite(value):
        raise _TrialFailed(f"{metric} is {value}")
    return float(value)


def work(spec: WorkerSpec, registry: Registry | None = None, search: Search | None = None) -> None:
    """One worker: in this process (``registry``, ``search`` given) or in a spawned one (loaded here)."""
    import torch

    if spec.threads:
        torch.set_num_threads(spec.threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if registry is None:
        from harness.registry import load_registry

        registry = load_registry()
    if search is None:
        search = resolve(load_config(spec.config), spec.search, registry, spec.config, check=False)
    storage = open_storage(spec.storage, search.config.heartbeat)
    _Worker(spec, search, registry, storage).loop()


def _worker_main(spec: WorkerSpec) -> None:
    if spec.device.startswith("cuda"):
        import torch

        torch.cuda.set_device(torch.device(spec.device))
    try:
        work(spec)
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
