"""A finished (or partly finished) study's reports: trials.csv, importances.csv, the plots, best.md and best.yaml."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.trial import FrozenTrial, TrialState

from harness.paths import atomic_figure, under, write_atomic
from harness.search.reaping import tally
from harness.search.space import Search


def best_yaml(search: Search, trial: FrozenTrial) -> str:
    """A benchmarks file whose one benchmark trains exactly the cell of ``trial``."""
    data = search.benchmark_data(trial.params)
    data["description"] = f"The best trial ({trial.number}) of search {search.name}, {search.metric} {trial.value!r}"
    data = {"default": True, **data}
    head = (f"# Trains the cell of trial {trial.number} of search {search.name} (study {search.study_name}) again:\n"
            f"#   harness run best.yaml --out <dir>    # {search.metric} = {trial.value!r} with the same seed\n")
    return head + yaml.safe_dump({"benchmarks": {f"{search.name}-best": data}}, sort_keys=False, allow_unicode=True)



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
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    made: list[tuple[str, str]] = []
    if complete:
        made.append(("optimisation history", _save(_history_figure(search, complete), out / "history.png")))
    curves = [t for t in trials if t.intermediate_values]
    if curves:
        made.append(("learning curves (pruned in red)", _save(_curves_figure(search, curves), out / "intermediate.png")))
    if importances:
        made.append(("parameter importances", _save(_importances_figure(search, importances), out / "importances.png")))
    for path, param in search.config.space.items():
        points = [(t.params[path], float(t.value)) for t in complete if path in t.params]  # type: ignore[arg-type]
        if points:
            figure = _parameter_figure(search, path, param.choices is not None, param.log, points)
            made.append((f"{search.metric} against {path}", _save(figure, under(out, f"objective-vs-{path}.png"))))
    return made


def _history_figure(search: Search, complete: list[FrozenTrial]) -> Any:
    """Each complete trial's objective, and the best so far."""
    from matplotlib.figure import Figure

    minimize = search.direction == "minimize"
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
    ax.set_ylabel(f"{search.metric} ({'lower' if minimize else 'higher'} is better)")
    ax.set_title(f"{search.name}: optimisation history")
    ax.legend()
    return fig


def _curves_figure(search: Search, curves: list[FrozenTrial]) -> Any:
    """Each trial's per-epoch training reconstruction term as the pruner saw it (the sign undone)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4), tight_layout=True)
    ax = fig.subplots()
    sign = 1.0 if search.direction == "minimize" else -1.0
    colors = {TrialState.COMPLETE: "tab:blue", TrialState.PRUNED: "tab:red"}
    for t in curves:
        steps = sorted(t.intermediate_values)
        ax.plot(steps, [sign * t.intermediate_values[s] for s in steps], color=colors.get(t.state, "tab:gray"),
                alpha=0.7, marker="." if len(steps) < 3 else None)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training reconstruction term")
    ax.set_title(f"{search.name}: per-epoch value the pruner sees (red: pruned)")
    return fig


def _importances_figure(search: Search, importances: dict[str, float]) -> Any:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 0.8 + 0.45 * len(importances)), tight_layout=True)
    ax = fig.subplots()
    names = list(reversed(importances))
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set_xlabel(f"importance for {search.metric} (fANOVA)")
    ax.set_title(f"{search.name}: parameter importances")
    return fig


def _parameter_figure(search: Search, path: str, categorical: bool, log: bool, points: list[tuple[Any, float]]) -> Any:
    """The objective of each complete trial against one searched parameter."""
    from matplotlib.figure import Figure

    metric = search.metric
    fig = Figure(figsize=(6.4, 4), tight_layout=True)
    ax = fig.subplots()
    xs = [p[0] if not categorical else str(p[0]) for p in points]
    ax.scatter(xs, [p[1] for p in points], s=18, color="tab:blue")
    if log:
        ax.set_xscale("log")
    ax.set_xlabel("β" if path == "beta" else path)
    ax.set_ylabel(metric)
    ax.set_title(f"{search.name}: {metric} against {'β' if path == 'beta' else path}")
    return fig


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
    trials = study.get_trials(deepcopy=False)
    _write_trials_csv(study, trials, search.direction, out / "trials.csv")
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    importances = _importances(study, complete)
    rows = sorted((importances or {}).items(), key=lambda kv: -kv[1])
    # float(): fANOVA hands back numpy floats, whose repr is `np.float64(0.5)`, not a number a CSV reader parses.
    write_atomic(out / "importances.csv", "parameter,importance\n" + "".join(f"{k},{float(v)!r}\n" for k, v in rows))
    plots = _plots(search, trials, importances, out)
    best = study.best_trial if complete else None

    lines = _heading(study, search, trials, storage_shown)
    lines += _best_section(search, best, out)
    lines += _importances_section(rows)
    if plots:
        lines.append("## Plots\n")
        lines.append("\n\n".join(f"![{title}]({name})" for title, name in plots) + "\n")
    lines += _pruned_and_failed_section(trials)
    lines.append(
        "Watch the study live with `optuna-dashboard "
        + (storage_shown if "://" in storage_shown else str(Path(storage_shown)))
        + "` (`pip install optuna-dashboard`).\n"
    )
    write_atomic(out / "best.md", "\n".join(lines))
    return best


def _heading(study: optuna.Study, search: Search, trials: list[FrozenTrial], storage_shown: str) -> list[str]:
    """best.md's title, the search's description, and what the study holds."""
    counts = tally(trials)
    better = "lower" if search.direction == "minimize" else "higher"
    lines = [f"# Search {search.name}\n"]
    if search.config.description:
        lines.append(f"{search.config.description}\n")
    lines.append(
        f"Study `{study.study_name}` in `{storage_shown}`: {counts['finished']} finished trials "
        f"({counts['complete']} complete, {counts['pruned']} pruned, {counts['failed']} failed)"
        + (f", {counts['running'] + counts['waiting']} not finished" if counts["running"] + counts["waiting"] else "")
        + f". Objective: `{search.metric}` ({better} is better) of benchmark `{search.bench_name}`'s evaluators, "
        f"prior `{search.prior}`, regularizer `{search.regularizer}`, seed {search.config.seed}.\n"
    )
    return lines


def _best_section(search: Search, best: FrozenTrial | None, out: Path) -> list[str]:
    """The best trial's parameters and how to train its cell again; writes that benchmarks file as best.yaml."""
    from tabulate import tabulate

    if best is None:
        return ["No trial has completed yet.\n"]
    cell_id = best.user_attrs.get("cell_id", "?")
    snippet = best_yaml(search, best)
    write_atomic(out / "best.yaml", snippet)
    table = [[k, f"{v!r}"] for k, v in best.params.items()]
    return [
        f"## Best trial: {best.number}\n",
        f"`{search.metric}` = **{best.value!r}**, cell `{cell_id}` (stored in `cells/{cell_id}/`).\n",
        tabulate(table, headers=["parameter", "value"], tablefmt="github") + "\n",
        "To reproduce it with `harness run` (same seed, same device type: the same number), use this "
        "benchmarks file, written next to this page as `best.yaml`:\n",
        f"```yaml\n{snippet}```\n",
        f"```bash\nharness run {out / 'best.yaml'} --out {out.parent / (out.name + '-best')}\n```\n",
    ]


def _importances_section(rows: list[tuple[str, float]]) -> list[str]:
    from tabulate import tabulate

    if not rows:
        return []
    return ["## Parameter importances\n",
            tabulate([[k, f"{v:.3f}"] for k, v in rows], headers=["parameter", "importance (fANOVA)"],
                     tablefmt="github") + "\n"]


def _pruned_and_failed_section(trials: list[FrozenTrial]) -> list[str]:
    """Why each pruned or failed trial stopped, and which trial retried it."""
    from tabulate import tabulate

    others = [t for t in trials if t.state in (TrialState.PRUNED, TrialState.FAIL)]
    if not others:
        return []
    retried_as = {t.system_attrs["retry_history"][-1]: t.number for t in trials if t.system_attrs.get("retry_history")}
    table = [[t.number, t.state.name.lower(), ", ".join(f"{k}={v!r}" for k, v in t.params.items()),
              _reason(t, retried_as)] for t in others]
    return ["## Pruned and failed trials\n",
            tabulate(table, headers=["trial", "state", "parameters", "reason"], tablefmt="github") + "\n"]
