"""Where a study lives: a journal file or a database, and the study-wide lock the workers take to count and ask."""

from __future__ import annotations

import fcntl
import hashlib
import random
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import optuna
from optuna.trial import FrozenTrial, TrialState

from harness.config import ConfigError, SearchHeartbeat

T = TypeVar("T")


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


def _shown(spec: str) -> str:
    """A storage as it may be printed: a database URL without its password."""
    if "://" not in spec:
        return spec
    import sqlalchemy

    try:
        return sqlalchemy.engine.make_url(spec).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - only for display
        return spec.split("://")[0] + "://…"
