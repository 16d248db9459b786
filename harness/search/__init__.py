"""Optuna searches over β, flow depth and any other option (``harness search``).

Each trial is one cell, built, trained, evaluated and stored exactly as ``harness run`` would (see
``harness.search.space``). Workers (local spawned processes, or the same command on other machines) pull trials
from one shared study: a journal file, or a database URL with heartbeats so the trial of a worker that died is
failed and retried.

``--trials N`` is the total the study should hold. Finished trials count (complete, pruned, and failed: a cell
that fails is an answer too), except one whose worker died: it is retried and its retry counts instead. Workers
take a study-wide lock only to count and ask, so exactly N finish however many workers share the study.

Pruning: after each epoch a trial reports the epoch's mean reconstruction term (−log p(x|z) on the training
batches; negated when the objective is maximised, so "worse" is always "reconstructs worse"), and Optuna's median
pruner stops it when that is worse than the median of earlier trials at the same epoch.
"""

from __future__ import annotations

import fcntl
import hashlib
import math
import multiprocessing.connection
import os
import random
import socket
import sys
import threading
import time
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TypeVar

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from harness.config import ConfigError, SearchHeartbeat, load_config
from harness.paths import atomic_figure, under, write_atomic
from harness.registry import Registry
from harness.run.result import Status
from harness.seeds import derived_seed
from harness.search.space import Search, TrialError, resolve

__all__ = ["Search", "check_available", "resolve", "run", "open_storage", "tally"]

#: A trial records which process runs it, so a dead local worker's trial can be failed and retried.
WORKER = f"{socket.gethostname()}:{os.getpid()}"

T = TypeVar("T")


# --- storage ----------------------------------------------------------------------------------------------


@dataclass
class Storage:
    """An Optuna storage plus the study-wide lock the workers take to count and ask."""

    optuna: optuna.storages.BaseStorage
    #: Journal files and SQLite lock a file next to the database; PostgreSQL and MySQL lock in the server.
    lock_file: Path | None
    journal: bool

    @property
    def heartbeat(self) -> int | None:
        if isinstance(self.optuna, optuna.storages.RDBStorage):
            return self.optuna.get_heartbeat_interval()
        return None

    @contextmanager
    def lock(self, study_name: str) -> Iterator[None]:
        if self.lock_file is not None:
            with self.lock_file.open("a") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)
            return
        import sqlalchemy

        assert isinstance(self.optuna, optuna.storages.RDBStorage)
        key = int.from_bytes(hashlib.sha256(study_name.encode()).digest()[:8], "big", signed=True)
        dialect = self.optuna.engine.dialect.name
        acquire, release = {
            "postgresql": ("SELECT pg_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)"),
            "mysql": ("SELECT GET_LOCK(:name, -1)", "SELECT RELEASE_LOCK(:name)"),
        }[dialect]
        args = {"key": key, "name": f"harness-{key}"}
        # A session-level lock on its own connection: the server drops it if this process dies.
        with self.optuna.engine.connect() as conn:
            conn.execute(sqlalchemy.text(acquire), args)
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text(release), args)
                conn.rollback()


_DIALECTS = ("postgresql", "mysql", "sqlite")


def _with_driver(url: str) -> str:
    """``postgresql://`` -> the PostgreSQL driver that is installed (SQLAlchemy's default differs by version)."""
    if not url.startswith("postgresql://"):
        return url
    import importlib.util

    for driver, module in (("psycopg2", "psycopg2"), ("psycopg", "psycopg")):
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{driver}://" + url.removeprefix("postgresql://")
    raise ConfigError("--storage", "no PostgreSQL driver is installed", "pip install psycopg2-binary")


def _retry(max_retry: int) -> Callable[[optuna.Study, FrozenTrial], None]:
    """Queue a failed trial's parameters again, up to ``max_retry`` times (Optuna's ``failed_trial`` and
    ``retry_history`` system attrs, as ``RetryFailedTrialCallback`` writes them, with its intermediate values);
    unlike that callback, the dead attempt's worker and reason are not copied into the retry."""

    def retry(study: optuna.Study, trial: FrozenTrial) -> None:
        history = [*trial.system_attrs.get("retry_history", []), trial.number]
        if len(history) > max_retry:
            return
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                params=trial.params,
                distributions=trial.distributions,
                user_attrs={k: v for k, v in trial.user_attrs.items() if k not in ("worker", "reason")},
                system_attrs={**trial.system_attrs, "failed_trial": history[0], "retry_history": history},
                intermediate_values=trial.intermediate_values,
            )
        )

    return retry


def _retrying_schema_race(connect: Callable[[], T], errors: Any, attempts: int = 8) -> T:
    """``connect()``, again after a short random wait when it lost a race to create the schema.

    On a fresh database every worker that starts at once runs Optuna's CREATE TABLEs; PostgreSQL lets one win and
    fails the others with a unique violation (``pg_type_typname_nsp_index``) or "already exists". A second try
    finds the tables made. Any other error (a wrong password, no server) is raised at once.
    """
    for attempt in range(attempts):
        try:
            return connect()
        except (errors.IntegrityError, errors.ProgrammingError) as exc:
            text = str(exc).lower()
            if attempt == attempts - 1 or not ("duplicate key" in text or "already exists" in text):
                raise
            time.sleep(random.uniform(0.05, 0.2) * (attempt + 1))
    raise AssertionError("unreachable")


def open_storage(spec: str, heartbeat: SearchHeartbeat) -> Storage:
    """A path -> a journal file (one machine, or a shared file system); a database URL -> RDBStorage with
    heartbeats, for workers on many machines."""
    scheme, sep, _ = spec.partition("://")
    if not sep:
        path = Path(spec)
        path.parent.mkdir(parents=True, exist_ok=True)
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        backend = JournalFileBackend(str(path))
        return Storage(JournalStorage(backend), path.with_name(path.name + ".harness-lock"), journal=True)
    dialect = scheme.split("+")[0]
    if dialect not in _DIALECTS:
        raise ConfigError("--storage", f"{scheme + '://'!r}: unsupported database; use postgresql://, mysql:// or "
                          "sqlite:///, or a path for a journal file")
    import inspect

    import sqlalchemy

    url = _with_driver(spec)
    shown = sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    params = inspect.signature(optuna.storages.RDBStorage.__init__).parameters
    callback_kw = "heartbeat_stale_trial_callback" if "heartbeat_stale_trial_callback" in params else "failed_trial_callback"
    def connect() -> optuna.storages.RDBStorage:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(
                url,
                heartbeat_interval=heartbeat.interval,
                grace_period=heartbeat.grace or 2 * heartbeat.interval,
                **{callback_kw: _retry(heartbeat.max_retry)},
            )

    try:
        storage = _retrying_schema_race(connect, sqlalchemy.exc)
    except ImportError as exc:
        raise ConfigError("--storage", f"{shown}: the database driver is not installed ({exc.name})",
                          "pip install psycopg2-binary (PostgreSQL) or pymysql (MySQL)") from None
    except sqlalchemy.exc.SQLAlchemyError as exc:
        first = str(exc.orig if getattr(exc, "orig", None) else exc).strip().splitlines()[0]
        raise ConfigError("--storage", f"{shown}: cannot open the database: {first}") from None
    lock_file = None
    if dialect == "sqlite":
        database = sqlalchemy.engine.make_url(url).database
        lock_file = Path(f"{database}.harness-lock") if database and database != ":memory:" else None
        if lock_file is None:
            raise ConfigError("--storage", f"{shown}: an in-memory database cannot be shared; give a file")
    return Storage(storage, lock_file, journal=False)


# --- counting and reaping ---------------------------------------------------------------------------------


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


# --- one worker -------------------------------------------------------------------------------------------


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


class _TrialFailed(Exception):
    pass


class _Worker:
    """Pulls trials from the study until it holds the total wanted; each trial one cell through ``run_cell``."""

    def __init__(self, spec: WorkerSpec, search: Search, registry: Registry, storage: Storage) -> None:
        import torch

        from harness.run.cell import DataCache
        from harness.run.store import Store

        self.spec, self.search, self.registry, self.storage = spec, search, registry, storage
        self.device = torch.device(spec.device)
        self.store = Store(Path(spec.out))
        self.data = DataCache(registry, self.device)
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
        self.study = optuna.load_study(study_name=spec.study_name, storage=storage.optuna, sampler=sampler, pruner=pruner)

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
        from harness.run.cell import CellPruned, run_cell

        values = _suggest(trial, self.search)
        cell = self.search.cell(values, self.registry)
        trial.set_user_attr("cell_id", cell.cell_id)
        sign = 1.0 if self.search.direction == "minimize" else -1.0
        epochs = int(cell.train["epochs"])
        # A retry keeps the epochs its dead attempt reported; Optuna ignores (and warns about) a step reported twice.
        reported = set(self.storage.optuna.get_trial(trial._trial_id).intermediate_values)

        def report(step: int, term: float) -> None:
            if step not in reported:
                trial.report(sign * term, step)
                reported.add(step)

        def on_epoch(epoch: int, means: dict[str, float]) -> None:
            term = means["reconstruction"]
            report(epoch + 1, term)
            # A trial that trained to its last epoch is evaluated: its real objective beats the proxy.
            if epoch + 1 < epochs and trial.should_prune():
                raise CellPruned(f"pruned at epoch {epoch + 1} of {epochs}: training reconstruction term {term:.4g} "
                                 "is worse than the median of earlier trials at that epoch")

        meta = {"benchmark": self.search.name, "primary_metric": self.search.metric,
                "directions": dict(self.search.directions)}
        while True:
            stored = self.store.result(cell)
            if stored is not None and stored.status == Status.DONE:
                for row in stored.history or []:  # the curve, so the pruner compares like with like
                    report(int(row["epoch"]), row["reconstruction"])
                trial.set_user_attr("cached", True)
                result = stored
                break
            with self.store.claim(cell) as claimed:
                if not claimed:  # a trial with the same values runs elsewhere: wait for its result
                    time.sleep(1.0)
                    continue
                stored = self.store.result(cell)
                if stored is not None and stored.status == Status.DONE:
                    continue
                if stored is not None and stored.status == Status.PRUNED:
                    self.store.forget(cell)  # pruned before: train it from scratch, reporting every epoch
                result = run_cell(cell, meta, self.registry, self.store, self.data, self.device,
                                  Path(self.spec.out) / "cache", progress=False, on_epoch=on_epoch)
            break
        if result.status == Status.PRUNED:
            raise optuna.TrialPruned(result.reason or "pruned")
        if result.status != Status.DONE:
            raise _TrialFailed(f"cell {result.status}: {result.reason or ''}")
        value = (result.metrics or {}).get(self.search.metric)
        if value is None:
            raise _TrialFailed(f"the cell did not report {self.search.metric}")
        if not math.isfinite(value):
            raise _TrialFailed(f"{self.search.metric} is {value}")
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


# --- the command ------------------------------------------------------------------------------------------


@dataclass
class Summary:
    text: str
    ok: bool


def _exit_reason(code: int | None) -> str:
    if code is not None and code < 0:
        return f"killed by signal {-code}"
    return f"exit status {code}"


def _supervise(specs: list[WorkerSpec], storage: Storage, study: optuna.Study, search: Search, quiet: bool) -> None:
    """Run one spawned process per spec; when one dies mid-trial, fail and retry its trial and start another."""
    ctx = get_context("spawn")
    procs: dict[int, Any] = {}

    def start(spec: WorkerSpec) -> None:
        proc = ctx.Process(target=_worker_main, args=(spec,), name=f"harness-search-{spec.index}")
        proc.start()
        procs[proc.sentinel] = (proc, spec)

    for spec in specs:
        start(spec)
    restarts = 0
    try:
        while procs:
            for sentinel in multiprocessing.connection.wait(list(procs)):
                proc, spec = procs.pop(sentinel)
                proc.join()
                if proc.exitcode == 0:
                    continue
                with storage.lock(spec.study_name):
                    reaped = _reap(study, storage, search.config.heartbeat.max_retry,
                                   dead={proc.pid: _exit_reason(proc.exitcode)})
                    counts = tally(study.get_trials(deepcopy=False))
                if not quiet:
                    lost = f"; trial {', '.join(map(str, reaped))} failed and queued again" if reaped else ""
                    print(f"{search.name}: worker {spec.index} (pid {proc.pid}) {_exit_reason(proc.exitcode)}{lost}",
                          file=sys.stderr)
                # The others pick up the retry after their trial; when none is left, a new worker does. A worker
                # that fails before it took a trial is not replaced.
                if reaped and not procs and restarts < spec.total and counts["finished"] + counts["running"] < spec.total:
                    restarts += 1
                    start(replace(spec, index=spec.index + len(specs) * restarts))
    finally:
        for proc, _ in procs.values():
            proc.join(timeout=30)
            if proc.is_alive():
                proc.terminate()


def check_available(search: Search, registry: Registry) -> None:
    """What a trial needs (its dataset, the evaluators' weights, the perceptual term's weights) is here, or a
    ConfigError now (exit 2), instead of every trial training and then failing on the same missing file."""
    from harness.run.cell import check_available as check_cells

    evaluators_at = f"{search.at}.evaluators" if search.config.evaluators else None
    check_cells([search.cell({}, registry)], registry, f"{search.source}: benchmarks.{search.bench_name}",
                search.bench.models, evaluators_at)


def run(
    search: Search,
    registry: Registry,
    out: Path,
    storage_spec: str | None = None,
    trials: int | None = None,
    workers: int = 1,
    device: Any = "cpu",
    quiet: bool = False,
    threads: int | str = "auto",
) -> Summary:
    """Bring the study to ``trials`` finished trials (default: the search's), then write the reports into ``out``.

    ``threads``: torch threads per worker, or ``auto`` (see ``harness.threads.choose_threads``).
    """
    import torch

    from harness.run import provenance
    from harness.run.store import write_json_atomic
    from harness.threads import apply, choose_threads

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    device = torch.device(device)
    out = Path(out)
    spec_text = storage_spec or str(out / "study.journal")
    storage = open_storage(spec_text, search.config.heartbeat)
    out.mkdir(parents=True, exist_ok=True)
    total = trials or search.config.trials
    name = search.study_name
    with storage.lock(name):
        study = optuna.create_study(study_name=name, storage=storage.optuna, direction=search.direction,
                                    load_if_exists=True)
        if not study.get_trials(deepcopy=False):
            for key, value in (("search", search.name), ("benchmark", search.bench_name),
                               ("objective", search.metric), ("config", search.source)):
                study.set_user_attr(key, value)
            for point in search.config.enqueue:
                study.enqueue_trial(point)
        _reap(study, storage, search.config.heartbeat.max_retry)
    # Chosen once, and set here too (the in-process worker trains here) before provenance records the count.
    choice = choose_threads(workers, threads)
    print(choice.describe(), file=sys.stderr)
    apply(choice)
    prov = provenance.collect(Path(search.source), device, registry=registry)
    prov["descriptions"] = {search.name: search.config.description}
    prov["study"] = {"name": name, "storage": _shown(spec_text)}
    write_json_atomic(out / "provenance.json", prov)

    device_text = str(device)
    base = WorkerSpec(search.source, search.name, spec_text, name, str(out), total, device_text, 0,
                      threads=choice.threads, quiet=quiet)
    if workers == 1:
        work(base, registry, search)
    else:
        specs = [replace(base, index=i) for i in range(workers)]
        _supervise(specs, storage, study, search, quiet)

    study = optuna.load_study(study_name=name, storage=storage.optuna)
    trials_now = study.get_trials(deepcopy=False)
    counts = tally(trials_now)
    best = write_reports(study, search, out, _shown(spec_text))
    parts = ", ".join(f"{counts[k]} {k}" for k in ("complete", "pruned", "failed") if counts[k])
    pending = counts["running"] + counts["waiting"]
    line = f"{search.name}: study {name} ({_shown(spec_text)}): {counts['finished']} of {total} trials ({parts or 'none'})"
    if pending:
        line += f"; {pending} not finished (running elsewhere, or queued: run again to finish them)"
    if best is not None:
        line += f"; best {search.metric} = {best.value:.6g} (trial {best.number}); see {out / 'best.md'}"
    return Summary(line, ok=counts["finished"] >= total and best is not None)


def _shown(spec: str) -> str:
    """A storage as it may be printed: a database URL without its password."""
    if "://" not in spec:
        return spec
    import sqlalchemy

    try:
        return sqlalchemy.engine.make_url(spec).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for display
        return spec.split("://")[0] + "://…"


def best_yaml(search: Search, trial: FrozenTrial) -> str:
    """A benchmarks file whose one benchmark trains exactly the cell of ``trial``."""
    data = search.benchmark_data(trial.params)
    data["description"] = f"The best trial ({trial.number}) of search {search.name}, {search.metric} {trial.value!r}"
    data = {"default": True, **data}
    head = (f"# Trains the cell of trial {trial.number} of search {search.name} (study {search.study_name}) again:\n"
            f"#   harness run best.yaml --out <dir>    # {search.metric} = {trial.value!r} with the same seed\n")
    return head + yaml.safe_dump({"benchmarks": {f"{search.name}-best": data}}, sort_keys=False, allow_unicode=True)


# --- reports ----------------------------------------------------------------------------------------------


def _importances(study: optuna.Study, complete: list[FrozenTrial]) -> dict[str, float] | None:
    """fANOVA importance of each parameter over the complete trials (None below two, or without spread)."""
    if len(complete) < 2:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
            return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))
    except (RuntimeError, ValueError):
        return None


def _save(fig: Any, path: Path) -> str:
    def draw(tmp: Path) -> Path:
        fig.savefig(tmp, dpi=110)
        return tmp

    atomic_figure(draw, path)
    return path.name


def _plots(search: Search, trials: list[FrozenTrial], importances: dict[str, float] | None, out: Path) -> list[tuple[str, str]]:
    """(title, file) of each PNG: optimisation history, learning curves, importances, objective against each
    searched parameter (β and depth among them)."""
    from matplotlib.figure import Figure

    metric = search.metric
    minimize = search.direction == "minimize"
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    made: list[tuple[str, str]] = []
    if complete:
        fig = Figure(figsize=(6.4, 4), tight_layout=True)
        ax = fig.subplots()
        xs = [t.number for t in complete]
        ys = [float(t.value) for t in complete]  # type: ignore[arg-type]
        best, running = [], math.inf if minimize else -math.inf
        for y in ys:
            running = min(running, y) if minimize else max(running, y)
            best.append(running)
        ax.scatter(xs, ys, s=18, color="tab:blue", label="complete trial")
        ax.step(xs, best, where="post", color="tab:red", label="best so far")
        ax.set_xlabel("trial")
        ax.set_ylabel(f"{metric} ({'lower' if minimize else 'higher'} is better)")
        ax.set_title(f"{search.name}: optimisation history")
        ax.legend()
        made.append(("optimisation history", _save(fig, out / "history.png")))

    curves = [t for t in trials if t.intermediate_values]
    if curves:
        fig = Figure(figsize=(6.4, 4), tight_layout=True)
        ax = fig.subplots()
        sign = 1.0 if minimize else -1.0
        colors = {TrialState.COMPLETE: "tab:blue", TrialState.PRUNED: "tab:red"}
        for t in curves:
            steps = sorted(t.intermediate_values)
            ax.plot(steps, [sign * t.intermediate_values[s] for s in steps], color=colors.get(t.state, "tab:gray"),
                    alpha=0.7, marker="." if len(steps) < 3 else None)
        ax.set_xlabel("epoch")
        ax.set_ylabel("training reconstruction term")
        ax.set_title(f"{search.name}: per-epoch value the pruner sees (red: pruned)")
        made.append(("learning curves (pruned in red)", _save(fig, out / "intermediate.png")))

    if importances:
        fig = Figure(figsize=(6.4, 0.8 + 0.45 * len(importances)), tight_layout=True)
        ax = fig.subplots()
        names = list(reversed(importances))
        ax.barh(names, [importances[n] for n in names], color="tab:blue")
        ax.set_xlabel(f"importance for {metric} (fANOVA)")
        ax.set_title(f"{search.name}: parameter importances")
        made.append(("parameter importances", _save(fig, out / "importances.png")))

    for path, param in search.config.space.items():
        points = [(t.params[path], float(t.value)) for t in complete if path in t.params]  # type: ignore[arg-type]
        if not points:
            continue
        fig = Figure(figsize=(6.4, 4), tight_layout=True)
        ax = fig.subplots()
        xs = [p[0] if param.choices is None else str(p[0]) for p in points]
        ax.scatter(xs, [p[1] for p in points], s=18, color="tab:blue")
        if param.log:
            ax.set_xscale("log")
        ax.set_xlabel("β" if path == "beta" else path)
        ax.set_ylabel(metric)
        ax.set_title(f"{search.name}: {metric} against {'β' if path == 'beta' else path}")
        made.append((f"{metric} against {path}", _save(fig, under(out, f"objective-vs-{path}.png"))))
    return made


def _reason(trial: FrozenTrial, retried_as: Mapping[int, int]) -> str:
    reason = str(trial.user_attrs.get("reason", ""))
    if trial.state == TrialState.FAIL and not reason:
        reason = "its worker stopped sending heartbeats"
    if trial.number in retried_as:
        reason += f"; retried as trial {retried_as[trial.number]}"
    return reason


def _write_trials_csv(study: optuna.Study, trials: list[FrozenTrial], direction: str, path: Path) -> None:
    """Optuna's trials table, with ``value`` only where it is the objective (complete trials).

    Optuna stores a pruned trial's last intermediate value as its value: the training reconstruction term (negated
    for a maximised objective), not the objective. That goes to ``pruned_at_epoch`` and
    ``pruned_train_reconstruction`` (as training computed it), so no reader ranks it next to real objectives.
    """
    import pandas as pd

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = study.trials_dataframe()
    if frame.empty:
        write_atomic(path, frame.to_csv(index=False))
        return
    sign = 1.0 if direction == "minimize" else -1.0
    by_number = {t.number: t for t in trials}
    epochs: list[int | None] = []
    terms: list[float | None] = []
    for number in frame["number"]:
        trial = by_number[int(number)]
        pruned = trial.state == TrialState.PRUNED and trial.intermediate_values
        last = max(trial.intermediate_values) if pruned else None
        epochs.append(last)
        terms.append(None if last is None else sign * trial.intermediate_values[last])
    complete = [by_number[int(n)].state == TrialState.COMPLETE for n in frame["number"]]
    frame["value"] = frame["value"].where(complete)
    at = frame.columns.get_loc("value") + 1
    frame.insert(at, "pruned_at_epoch", pd.Series(epochs, index=frame.index, dtype="Int64"))
    frame.insert(at + 1, "pruned_train_reconstruction", pd.Series(terms, index=frame.index, dtype="float64"))
    write_atomic(path, frame.to_csv(index=False))


def write_reports(study: optuna.Study, search: Search, out: Path, storage_shown: str) -> FrozenTrial | None:
    """trials.csv, importances.csv, the plots, best.md and best.yaml; returns the best trial (None yet)."""
    from tabulate import tabulate

    trials = study.get_trials(deepcopy=False)
    _write_trials_csv(study, trials, search.direction, out / "trials.csv")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    importances = _importances(study, complete)
    rows = sorted((importances or {}).items(), key=lambda kv: -kv[1])
    # float(): fANOVA hands back numpy floats, whose repr is `np.float64(0.5)`, not a number a CSV reader parses.
    write_atomic(out / "importances.csv", "parameter,importance\n" + "".join(f"{k},{float(v)!r}\n" for k, v in rows))
    plots = _plots(search, trials, importances, out)
    counts = tally(trials)
    best = study.best_trial if complete else None
    metric, better = search.metric, "lower" if search.direction == "minimize" else "higher"

    lines = [f"# Search {search.name}\n"]
    if search.config.description:
        lines.append(f"{search.config.description}\n")
    lines.append(
        f"Study `{study.study_name}` in `{storage_shown}`: {counts['finished']} finished trials "
        f"({counts['complete']} complete, {counts['pruned']} pruned, {counts['failed']} failed)"
        + (f", {counts['running'] + counts['waiting']} not finished" if counts["running"] + counts["waiting"] else "")
        + f". Objective: `{metric}` ({better} is better) of benchmark `{search.bench_name}`'s evaluators, "
        f"prior `{search.prior}`, regularizer `{search.regularizer}`, seed {search.config.seed}.\n"
    )
    if best is None:
        lines.append("No trial has completed yet.\n")
    else:
        cell_id = best.user_attrs.get("cell_id", "?")
        snippet = best_yaml(search, best)
        write_atomic(out / "best.yaml", snippet)
        lines.append(f"## Best trial: {best.number}\n")
        lines.append(f"`{metric}` = **{best.value!r}**, cell `{cell_id}` (stored in `cells/{cell_id}/`).\n")
        table = [[k, f"{v!r}"] for k, v in best.params.items()]
        lines.append(tabulate(table, headers=["parameter", "value"], tablefmt="github") + "\n")
        lines.append(
            "To reproduce it with `harness run` (same seed, same device type: the same number), use this "
            "benchmarks file, written next to this page as `best.yaml`:\n"
        )
        lines.append(f"```yaml\n{snippet}```\n")
        lines.append(f"```bash\nharness run {out / 'best.yaml'} --out {out.parent / (out.name + '-best')}\n```\n")
    if rows:
        lines.append("## Parameter importances\n")
        lines.append(tabulate([[k, f"{v:.3f}"] for k, v in rows], headers=["parameter", "importance (fANOVA)"],
                              tablefmt="github") + "\n")
    if plots:
        lines.append("## Plots\n")
        lines.append("\n\n".join(f"![{title}]({name})" for title, name in plots) + "\n")
    retried_as = {t.system_attrs["retry_history"][-1]: t.number for t in trials if t.system_attrs.get("retry_history")}
    others = [t for t in trials if t.state in (TrialState.PRUNED, TrialState.FAIL)]
    if others:
        lines.append("## Pruned and failed trials\n")
        table = [[t.number, t.state.name.lower(), ", ".join(f"{k}={v!r}" for k, v in t.params.items()),
                  _reason(t, retried_as)] for t in others]
        lines.append(tabulate(table, headers=["trial", "state", "parameters", "reason"], tablefmt="github") + "\n")
    lines.append(
        "Watch the study live with `optuna-dashboard "
        + (storage_shown if "://" in storage_shown else str(Path(storage_shown)))
        + "` (`pip install optuna-dashboard`).\n"
    )
    write_atomic(out / "best.md", "\n".join(lines))
    return best
