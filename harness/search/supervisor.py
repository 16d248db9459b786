"""``harness search``: open the study, run its workers (in this process, or one spawned process each, replacing
one that dies mid-trial), then write the reports."""

from __future__ import annotations

import multiprocessing.connection
import sys
from dataclasses import dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import optuna

from harness.registry import Registry
from harness.search.reaping import _reap, tally
from harness.search.report import write_reports
from harness.search.space import Search
from harness.search.storage import Storage, _shown, open_storage
from harness.search.worker import WorkerSpec, _worker_main, work


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
    trackers: tuple[tuple[str, dict[str, Any]], ...] = (),
) -> Summary:
    """Bring the study to ``trials`` finished trials (default: the search's), then write the reports into ``out``.

    ``threads``: torch threads per worker, or ``auto`` (see ``harness.threads.choose_threads``).
    ``trackers``: (name, resolved options) pairs (``harness.run.plan.resolve_trackers``). This process shows them
    the search starting and ending (``start_run``/``end_run``, named by the search); each worker shows them the
    trials it trains, each trial's cell tagged with the search and its trial number (``TrackedCell.search/trial``).
    """
    import torch

    from harness.run.tracking import TrackerSet
    from harness.threads import apply, choose_threads

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    device = torch.device(device)
    out = Path(out)
    spec_text = storage_spec or str(out / "study.journal")
    storage = open_storage(spec_text, search.config.heartbeat)
    out.mkdir(parents=True, exist_ok=True)
    total = trials or search.config.trials
    study = _open_study(search, storage)
    # Chosen once, and set here too (the in-process worker trains here) before provenance records the count.
    choice = choose_threads(workers, threads)
    print(choice.describe(), file=sys.stderr)
    apply(choice)
    _write_provenance(search, registry, device, out / "provenance.json", _shown(spec_text))

    base = WorkerSpec(search.source, search.name, spec_text, search.study_name, str(out), total, str(device), 0,
                      threads=choice.threads, quiet=quiet, trackers=tuple(trackers))
    live = TrackerSet(registry, trackers)
    # Before any worker starts: a tracker's one-off setup (the mlflow tracker's experiment and parent run) is
    # done once here, not raced by the workers.
    live.call("start_run", search.name, out, _tracked_config(search))
    if workers == 1:
        work(base, registry, search)
    else:
        specs = [replace(base, index=i) for i in range(workers)]
        _supervise(specs, storage, study, search, quiet)
    summary = _summary(search, storage, out, _shown(spec_text), total)
    best = out / "best.md"
    live.call("end_run", search.name, best if best.is_file() else None)
    return summary


def _tracked_config(search: Search) -> dict[str, Any]:
    """What ``start_run`` is shown of a search: its trial benchmark as plain data (before sampled values are
    written into it) and, under ``search``, what the search is (a benchmark's config has no such key)."""
    space = {k: v.model_dump(mode="json") for k, v in search.config.space.items()}
    return {**search.benchmark_data({}),
            "search": {"name": search.name, "study": search.study_name, "benchmark": search.bench_name,
                       "objective": search.metric, "direction": search.direction, "space": space}}


def _open_study(search: Search, storage: Storage) -> optuna.Study:
    """The search's study, created on its first run (with what it searches and its enqueued points), its dead
    workers' trials failed and queued again."""
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
    return study


def _write_provenance(search: Search, registry: Registry, device: Any, path: Path, storage_shown: str) -> None:
    from harness.run import provenance

    provenance.write(path, Path(search.source), device, registry, descriptions={search.name: search.config.description},
                     study={"name": search.study_name, "storage": storage_shown})


def _summary(search: Search, storage: Storage, out: Path, storage_shown: str, total: int) -> Summary:
    """Write the reports; the line that says how far the study got and its best trial."""
    study = optuna.load_study(study_name=search.study_name, storage=storage.optuna)
    counts = tally(study.get_trials(deepcopy=False))
    best = write_reports(study, search, out, storage_shown)
    parts = ", ".join(f"{counts[k]} {k}" for k in ("complete", "pruned", "failed") if counts[k])
    pending = counts["running"] + counts["waiting"]
    line = (f"{search.name}: study {search.study_name} ({storage_shown}): {counts['finished']} of {total} trials "
            f"({parts or 'none'})")
    if pending:
        line += f"; {pending} not finished (running elsewhere, or queued: run again to finish them)"
    if best is not None:
        line += f"; best {search.metric} = {best.value:.6g} (trial {best.number}); see {out / 'best.md'}"
    return Summary(line, ok=counts["finished"] >= total and best is not None)
