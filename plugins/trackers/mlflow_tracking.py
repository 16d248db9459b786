"""The ``mlflow`` tracker: one MLflow experiment per benchmark (or search), one run per cell with the cell's config
as dotted params, each epoch's loss terms as ``train/<term>`` metric histories, the final metrics, the sample grid
and the checkpoint as artifacts, and a ``leaderboard`` run holding the leaderboard's files.

By default everything goes to a SQLite store in the run's folder, ``sqlite:///OUT/mlflow.db``, with artifacts in
``OUT/mlartifacts``: open it with ``mlflow ui --backend-store-uri sqlite:///OUT/mlflow.db``. ``tracking_uri``
names another store (a tracking server, ``http://host:5000``); its artifacts then go where that store puts them.

A search's trials are nested runs: one parent run per search (tag ``harness.search``), each trained trial a child
(tag ``mlflow.parentRunId``) with its Optuna trial number as the ``trial`` param. Workers in other processes, or
on other machines sharing the study and the tracking server, find the parent by its tag.

Only ``mlflow.tracking.MlflowClient`` with explicit run ids is used, never the fluent ``mlflow.start_run`` and its
process-global active run. Needs the ``mlflow`` package (``pip install 'prior-harness[mlflow]'``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness import CellEnd, PluginUnavailable, TrackedCell, Tracker, hookimpl

#: MLflow's limits (``mlflow.utils.validation``), fixed here so this module imports without mlflow.
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_KEY = 250
MAX_PER_BATCH = 100
#: A checkpoint larger than this is not copied into the artifact store: it stays in the cell's folder (the
#: ``harness.cell_dir`` tag says where). Small models' checkpoints (KBs to a few MBs) are copied, so a run viewed
#: from another machine has the model; a large conv model's would double the results folder for every cell.
CHECKPOINT_MAX_BYTES = 32 * 2**20
#: The cell config's keys that are tags (or display only), not params.
_NOT_PARAMS = {"cell_id", "benchmark", "prior_options_given", "skip_reason"}
#: Run end states by cell status; the reason is the ``harness.reason`` tag.
_RUN_STATUS = {"done": "FINISHED", "skipped": "FINISHED", "failed": "FAILED", "pruned": "KILLED"}
#: The report files of a results folder logged by ``end_run``: leaderboard.md, results.csv, index.html and the
#: figures of a benchmark; best.md, best.yaml, trials.csv, importances.csv and the plots of a search.
_REPORT_SUFFIXES = {".md", ".csv", ".png", ".html", ".yaml"}


def flat_params(config: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """A cell's config (``Cell.to_json``) as MLflow params: nested mappings flattened with dotted names
    (``prior_options.depth``, ``model.architecture_options.hidden``), values as text (lists as JSON, an empty
    mapping as ``{}``), cut to MLflow's length limits."""
    for key, value in config.items():
        if not prefix and key in _NOT_PARAMS:
            continue
        name = _key(f"{prefix}{key}")
        if isinstance(value, Mapping) and value:
            yield from flat_params(value, f"{name}.")
        else:
            text = json.dumps(value) if isinstance(value, (list, tuple)) else "{}" if isinstance(value, Mapping) else str(value)
            yield name, text[:MAX_PARAM_VALUE]


def _key(name: str) -> str:
    """A param, metric or tag name MLflow accepts (letters, digits and ``_-./ :``), at most its length limit."""
    return re.sub(r"[^\w\-./ :]", "_", name)[:MAX_KEY]


def _millis() -> int:
    return int(time.time() * 1000)


class _RetryingLocked:
    """An ``MlflowClient`` whose calls are retried while a SQLite store is locked by another worker's write.

    SQLite lets one writer at a time and gives up after 5 s; a tracker that raised is switched off for the rest of
    the run, so a burst of writes from many workers (every cell ending at once) is waited out instead."""

    def __init__(self, client: Any, attempts: int = 8) -> None:
        self._client, self._attempts = client, attempts

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def retried(*args: Any, **kwargs: Any) -> Any:
            for attempt in range(self._attempts):
                try:
                    return method(*args, **kwargs)
                except Exception as exc:
                    if "database is locked" not in str(exc) or attempt == self._attempts - 1:
                        raise
                    time.sleep(0.1 * 2**attempt)
            raise AssertionError("unreachable")

        return retried


class MLflowTracker(Tracker):
    """Logs to MLflow: ``tracking_uri`` (default ``sqlite:///OUT/mlflow.db``), ``experiment`` (default: the
    benchmark's or search's name), ``artifacts`` (log the sample grid, checkpoint and leaderboard files; default on)."""

    name = "mlflow"

    def __init__(self, tracking_uri: str | None = None, experiment: str | None = None, artifacts: bool = True) -> None:
        # Nothing opened here: the constructor also validates a benchmark's options before anything runs.
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.artifacts = artifacts
        self._client: Any = None
        self._experiments: dict[str, str] = {}  # experiment name -> id
        self._parents: dict[str, str] = {}  # search name -> parent run id
        self._runs: dict[str, str] = {}  # cell id -> run id of the cell being trained
        self._out: Path | None = None

    # --- the store -----------------------------------------------------------------------------------------
    def _uri(self, out_dir: Path) -> str:
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{Path(out_dir).resolve() / 'mlflow.db'}"

    def _connect(self, out_dir: Path) -> Any:
        if self._client is None:
            try:
                from mlflow.tracking import MlflowClient
            except ImportError as exc:
                raise PluginUnavailable("the mlflow tracker needs the mlflow package",
                                        "pip install 'prior-harness[mlflow]'") from exc
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            uri = self._uri(out_dir)
            client = MlflowClient(tracking_uri=uri)
            self._client = _RetryingLocked(client) if uri.startswith("sqlite:") else client
        return self._client

    def _experiment_id(self, benchmark: str, out_dir: Path) -> str:
        """The experiment's id, created when missing: in ``start_run`` by the command's process before any worker
        starts (which also creates the SQLite schema once), else by whichever worker comes first."""
        client = self._connect(out_dir)
        from mlflow.exceptions import MlflowException

        name = self.experiment or benchmark
        if name in self._experiments:
            return self._experiments[name]
        found = client.get_experiment_by_name(name)
        if found is None:
            location = None if self.tracking_uri else (Path(out_dir).resolve() / "mlartifacts").as_uri()
            try:
                client.create_experiment(name, artifact_location=location, tags={"harness.benchmark": benchmark})
            except MlflowException:
                # Another process created it meanwhile (it is found now), or the error was real: raise it.
                if client.get_experiment_by_name(name) is None:
                    raise
            found = client.get_experiment_by_name(name)
        elif found.lifecycle_stage == "deleted":
            client.restore_experiment(found.experiment_id)  # deleted in the UI: a new run brings it back
        self._experiments[name] = found.experiment_id
        return found.experiment_id

    def _parent_run(self, experiment_id: str, search: str) -> str:
        """The search's parent run, found by its tag, created when there is none. Two processes that both found
        none and created one converge on the older one, and the other is deleted by its creator."""
        if search in self._parents:
            return self._parents[search]
        client = self._client
        found = self._tagged(experiment_id, "harness.search", search)
        if found:
            run_id = found[0]
        else:
            mine = client.create_run(experiment_id, run_name=f"search {search}",
                                     tags={"harness.search": search, "harness.benchmark": search}).info.run_id
            run_id = self._tagged(experiment_id, "harness.search", search)[0]
            if run_id != mine:
                client.delete_run(mine)
        self._parents[search] = run_id
        return run_id

    def _tagged(self, experiment_id: str, tag: str, value: str) -> list[str]:
        """Active runs of the experiment whose tag ``tag`` is ``value``, oldest first (ties by run id)."""
        from mlflow.entities import ViewType

        quoted = value.replace("\\", "\\\\").replace("'", "\\'")
        runs = self._client.search_runs([experiment_id], filter_string=f"tags.`{tag}` = '{quoted}'",
                                        run_view_type=ViewType.ACTIVE_ONLY, max_results=1000)
        return [r.info.run_id for r in sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))]

    def _log_batch(self, run_id: str, params: Sequence[Any] = (), metrics: Sequence[Any] = (),
                   tags: Sequence[Any] = ()) -> None:
        """MLflow's batches hold at most 100 params and tags together (and 1000 metrics)."""
        params, metrics, tags = list(params), list(metrics), list(tags)
        while params or tags:
            p, params = params[:MAX_PER_BATCH], params[MAX_PER_BATCH:]
            t, tags = tags[:MAX_PER_BATCH - len(p)], tags[MAX_PER_BATCH - len(p):]
            self._client.log_batch(run_id, params=p, tags=t)
        for start in range(0, len(metrics), 1000):
            self._client.log_batch(run_id, metrics=metrics[start:start + 1000])

    # --- the tracker's calls -------------------------------------------------------------------------------
    def start_run(self, benchmark: str, out_dir: Path, config: Mapping[str, Any]) -> None:
        self._out = Path(out_dir)
        experiment_id = self._experiment_id(benchmark, out_dir)
        search = config.get("search")
        if isinstance(search, Mapping) and search.get("name"):
            parent = self._parent_run(experiment_id, str(search["name"]))
            shown = {k: v for k, v in search.items() if k not in ("name", "trackers")}
            tags = [(_key(f"harness.search.{k}"), (v if isinstance(v, str) else json.dumps(v, default=str))[:MAX_TAG_VALUE])
                    for k, v in shown.items()]
            self._set_tags(parent, dict(tags))

    def _set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        self._log_batch(run_id, tags=[RunTag(k, str(v)[:MAX_TAG_VALUE]) for k, v in tags.items()])

    def start_cell(self, cell: TrackedCell) -> None:
        experiment_id = self._experiment_id(cell.benchmark, cell.out_dir)
        from mlflow.entities import Param

        tags = {"harness.cell_id": cell.cell_id, "harness.benchmark": cell.benchmark, "harness.status": "running",
                "harness.cell_dir": str(cell.cell_dir)}
        tags.update({f"harness.{k}": str(v) for k, v in cell.provenance.items()})
        params = dict(flat_params(cell.config))
        if cell.search is not None:
            # Not tagged harness.search itself: that tag is how the parent is found.
            tags["mlflow.parentRunId"] = self._parent_run(experiment_id, cell.search)
            if cell.trial is not None:
                tags["trial"] = params["trial"] = str(cell.trial)
        run = self._client.create_run(experiment_id, run_name=cell.label, tags=tags)
        self._runs[cell.cell_id] = run.info.run_id
        self._log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()])

    def log_epoch(self, cell_id: str, epoch: int, losses: Mapping[str, float]) -> None:
        from mlflow.entities import Metric

        run_id = self._runs.get(cell_id)
        if run_id is not None:
            now = _millis()
            self._log_batch(run_id, metrics=[Metric(_key(f"train/{term}"), float(value), now, epoch)
                                             for term, value in losses.items()])

    def end_cell(self, end: CellEnd) -> None:
        from mlflow.entities import Metric

        run_id = self._runs.pop(end.cell_id, None)
        if run_id is None:
            return
        now = _millis()
        self._log_batch(run_id, metrics=[Metric(_key(k), float(v), now, 0) for k, v in end.metrics.items()])
        if self.artifacts:
            if end.samples is not None:
                self._client.log_artifact(run_id, str(end.samples))
            if end.checkpoint is not None and end.checkpoint.stat().st_size <= CHECKPOINT_MAX_BYTES:
                self._client.log_artifact(run_id, str(end.checkpoint))
        tags = {"harness.status": end.status}
        if end.reason:
            tags["harness.reason"] = end.reason
        self._set_tags(run_id, tags)
        self._client.set_terminated(run_id, _RUN_STATUS.get(end.status, "FINISHED"))

    def end_run(self, benchmark: str, leaderboard: Path | None) -> None:
        """The leaderboard's files as artifacts of the experiment's ``leaderboard`` run (a rerun logs into the
        same run); for a search, its reports as artifacts of the search's parent run, which is then ended."""
        folder = leaderboard.parent if leaderboard is not None else self._out
        if folder is None:
            return
        experiment_id = self._experiment_id(benchmark, folder)
        search = next(iter(self._parents.values()), None) if self._parents else None
        if search is not None:
            run_id = search
        else:
            found = self._tagged(experiment_id, "harness.leaderboard", benchmark)
            run_id = found[0] if found else self._client.create_run(
                experiment_id, run_name="leaderboard", tags={"harness.leaderboard": benchmark}).info.run_id
        if self.artifacts:
            for path in sorted(folder.iterdir()):
                if path.is_file() and path.suffix in _REPORT_SUFFIXES:
                    self._client.log_artifact(run_id, str(path))
        self._client.set_terminated(run_id, "FINISHED")


@hookimpl
def harness_register_trackers(register: Callable[[type[Tracker]], None]) -> None:
    register(MLflowTracker)
