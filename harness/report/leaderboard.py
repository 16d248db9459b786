"""Stored cell results -> ``results.csv`` (long format) and ``leaderboard.md`` (mean ± std over seeds).

Rendered only from what is in the store, so ``harness leaderboard DIR`` reproduces it at any time.
"""

from __future__ import annotations

import json
import math
import shlex
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from harness.grid import Cell, selected_by
from harness.report.claims import claims_section
from harness.conditions import dataset_label
from harness.report.figures import conditional_overview, metric_bars, metric_vs_beta, samples_overview
from harness.paths import atomic_figure, under, write_atomic
from harness.run import latent_figures
from harness.run.result import CellResult, Status
from harness.run.store import Store

GROUP = ["benchmark", "model", "dataset", "prior", "prior_options", "regularizer", "beta"]
COLUMNS = ["cell_id", *GROUP, "seed", "metric", "value", "details"]


def _options(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(options.items())) or "–"


def _given(cell: dict[str, Any]) -> dict[str, Any]:
    """The prior options the config wrote (defaults omitted); the full set is in the cell's config.json."""
    given = cell.get("prior_options_given")
    return cell["prior_options"] if given is None else given


def _row_key(cell: dict[str, Any]) -> dict[str, Any]:
    return {
        "cell_id": cell["cell_id"],
        "benchmark": cell["benchmark"],
        "model": cell.get("variant") or "–",
        "dataset": dataset_label(cell["dataset"], cell["dataset_options"]),
        "prior": cell["prior"],
        "prior_options": _options(_given(cell)),
        "regularizer": cell["regularizer"],
        "beta": cell["beta"],
        "seed": cell["seed"],
    }


def _metric_details(cells_dir: Path, result: CellResult, metric: str) -> str:
    """How the evaluator measured (extractor, sample count, reference split): its ``<evaluator>-details.json``."""
    path = cells_dir / result.cell["cell_id"] / f"{metric.split('.')[0]}-details.json"
    return json.dumps(json.loads(path.read_text(encoding="utf-8")), sort_keys=True) if path.exists() else ""


def long_table(results: list[CellResult], cells_dir: Path) -> pd.DataFrame:
    rows = [
        {**_row_key(r.cell), "metric": metric, "value": value, "details": _metric_details(cells_dir, r, metric)}
        for r in results
        if r.status == Status.DONE
        for metric, value in sorted((r.metrics or {}).items())
    ]
    return pd.DataFrame(rows, columns=COLUMNS)


def _fmt(mean: float, std: float, count: int) -> str:
    if count < 2 or math.isnan(std):
        return f"{mean:.4g}"
    return f"{mean:.4g} ± {std:.2g}"


@dataclass(frozen=True)
class RankedConfig:
    """One configuration of a benchmark with its seeds pooled: ``key`` holds GROUP's values (β "–" when it has
    none), ``stats`` metric -> (mean, std, count), ``cells`` the ids of its seeds' cells."""

    key: dict[str, Any]
    stats: dict[str, tuple[float, float, int]]
    seeds: int
    cells: list[str]


def metric_order(frame: pd.DataFrame, primary: str) -> list[str]:
    """The metrics measured, the primary one first."""
    return sorted(frame["metric"].unique(), key=lambda m: (m != primary, m))


def ranked_configs(frame: pd.DataFrame, primary: str, directions: dict[str, str]) -> list[RankedConfig]:
    """One entry per configuration (seeds pooled), best first by ``primary``; those without it last."""
    frame = frame.assign(beta=frame["beta"].astype(object).where(frame["beta"].notna(), "–"))
    sign = 1.0 if directions.get(primary, "min") == "min" else -1.0
    groups = []
    for key, group in frame.groupby(GROUP, sort=True, dropna=False):
        by_metric = group.groupby("metric")["value"]
        stats = {m: (s.mean(), s.std(), s.count()) for m, s in by_metric}
        order = sign * stats[primary][0] if primary in stats else math.inf
        cells = group.drop_duplicates("cell_id").sort_values("seed")["cell_id"].tolist()
        groups.append((order, RankedConfig(dict(zip(GROUP, key)), stats, group["seed"].nunique(), cells)))
    groups.sort(key=lambda g: g[0])
    return [config for _, config in groups]


def _ranked(frame: pd.DataFrame, primary: str, directions: dict[str, str]) -> list[list[Any]]:
    """One row per configuration (seeds pooled), best first by ``primary``."""
    metrics = metric_order(frame, primary)
    configs = ranked_configs(frame, primary, directions)
    named = any(c.key["model"] != "–" for c in configs)
    rows = []
    for rank, config in enumerate(configs, start=1):
        key, stats, seeds = config.key, config.stats, config.seeds
        beta = key["beta"] if key["beta"] == "–" else f"{key['beta']:g}"
        cells = [rank, *([key["model"]] if named else []), key["dataset"], key["prior"], key["prior_options"]]
        cells += [key["regularizer"], beta, seeds, *(_fmt(*stats[m]) if m in stats else "" for m in metrics)]
        rows.append(cells)
    header = ["rank", *(["model"] if named else []), "dataset", "prior", "options", "regularizer", "β", "seeds"]
    return [[*header, *metrics], *rows]


def _arrow(direction: str) -> str:
    return "↓" if direction == "min" else "↑"


def render(out_dir: Path) -> Path:
    """Write ``results.csv``, ``leaderboard.md`` and the HTML page ``index.html`` into ``out_dir`` from its stored
    results."""
    out_dir = Path(out_dir)
    results = Store(out_dir).results()
    long = long_table(results, out_dir / "cells")
    # Atomic: a reader (a notebook, a dashboard) polling these files during a run never sees them half written.
    write_atomic(under(out_dir, "results.csv"), long.to_csv(index=False))
    provenance = read_json(out_dir / "provenance.json")

    lines: list[str] = []
    benchmarks = sorted({r.benchmark for r in results} or {out_dir.name})
    for bench in benchmarks:
        mine = [r for r in results if r.benchmark == bench]
        lines.append(f"# Leaderboard: {bench}\n")
        description = provenance.get("descriptions", {}).get(bench)
        if description:
            lines.append(f"{description}\n")
        lines.append(missing_note(provenance, bench, results, Store(out_dir).fresh_run() is not None))
        done = [r for r in mine if r.status == Status.DONE]
        if done:
            primary = done[-1].primary_metric
            directions = done[-1].directions
            lines.append(
                f"Ranked by `{primary}` ({'lower' if directions.get(primary, 'min') == 'min' else 'higher'} is better)"
                f"; mean ± std over seeds. " + ", ".join(f"`{m}` {_arrow(d)}" for m, d in sorted(directions.items()))
                + "\n"
            )
            frame = long[long["benchmark"] == bench]
            for dataset in sorted(frame["dataset"].unique()):
                header, *rows = _ranked(frame[frame["dataset"] == dataset], primary, directions)
                lines.append(f"## {dataset}\n")
                lines.append(tabulate(rows, headers=header, tablefmt="github", disable_numparse=True) + "\n")
            config = provenance.get("benchmarks", {}).get(bench, {})
            lines.append(claims_section(config.get("claims", []), frame, directions))
            lines.append(_figures_section(out_dir, bench, frame, primary, directions, done))
            lines.append(_latent_section(out_dir, config.get("latent_figures"), done))
            lines.append(_samples_section(out_dir, done))
        else:
            lines.append("No finished cells yet.\n")
        lines.append(_problem_section("Failed cells", [r for r in mine if r.status == Status.FAILED]))
        lines.append(_problem_section("Skipped cells", [r for r in mine if r.status == Status.SKIPPED]))
        lines.append(_problem_section("Pruned cells", [r for r in mine if r.status == Status.PRUNED]))
    lines.append(_provenance_section(provenance, [r for r in results if r.status == Status.DONE]))
    path = under(out_dir, "leaderboard.md")
    write_atomic(path, "\n".join(line for line in lines if line))
    from harness.report import html  # here, not above: the page reuses this module's tables

    html.render(out_dir, results, long)
    return path


def missing_note(
    provenance: dict[str, Any], bench: str, results: list[CellResult], fresh_unfinished: bool
) -> str:
    """Say how many cells the last run that trained planned but this folder holds no done (or skipped) result for:
    a leaderboard of an unfinished run must not read as the whole benchmark.

    ``fresh_unfinished``: an interrupted ``--fresh`` run is recorded here, which its own command continues.
    """
    planned = provenance.get("planned_cells", {}).get(bench)
    if not planned:
        return ""
    # Any benchmark's result counts: a cell shared by two benchmarks is one cell, and the runner skips it as done.
    finished = {r.cell["cell_id"] for r in results if r.status in (Status.DONE, Status.SKIPPED)}
    missing = sum(1 for cell_id in planned if cell_id not in finished)
    if not missing:
        return ""
    command = str(provenance.get("command", "harness run ..."))
    try:
        # A finished --fresh run is not continued by --fresh (that would redo every cell again): drop it then.
        command = shlex.join(w for w in shlex.split(command) if fresh_unfinished or w != "--fresh")
    except ValueError:  # not a command line shlex can read: show it as recorded
        pass
    return (f"**{missing} of {len(planned)} cells are missing (not yet run or failed)**: rerun `{command}` "
            "to finish.\n")


def cell_label(cell: dict[str, Any], with_seed: bool = True) -> str:
    return Cell.from_json(cell).describe(with_seed)


def _figures_section(
    out_dir: Path, bench: str, frame: pd.DataFrame, primary: str, directions: dict[str, str], done: list[CellResult]
) -> str:
    direction = directions.get(primary, "min")
    draw = {
        "vs-beta": lambda p: metric_vs_beta(frame, primary, direction, p),
        "bars": lambda p: metric_bars(frame, primary, direction, p),
        "samples": lambda p: samples_overview(out_dir, done, p),
        "conditional": lambda p: conditional_overview(out_dir, done, p),
    }
    drawn = [(title, atomic_figure(draw[kind], path)) for kind, title, path in figure_paths(out_dir, bench, primary)]
    links = [f"![{name}]({p.name})" for name, p in drawn if p is not None]
    return "## Figures\n\n" + "\n\n".join(links) + "\n" if links else ""


def figure_paths(out_dir: Path, bench: str, primary: str) -> list[tuple[str, str, Path]]:
    """The benchmark's figures (kind, title, where it is drawn): the leaderboard draws them, the HTML page shows
    those on disk."""
    return [
        ("vs-beta", f"{primary} against β", under(out_dir, f"{bench}-{primary}-vs-beta.png")),
        ("bars", primary, under(out_dir, f"{bench}-{primary}.png")),
        ("samples", "samples", under(out_dir, f"{bench}-samples.png")),
        ("conditional", "conditional samples (paper Fig. 7)", under(out_dir, f"{bench}-conditional-samples.png")),
    ]


def _latent_section(out_dir: Path, options: dict[str, Any] | None, done: list[CellResult]) -> str:
    """The latent-space figures drawn for the cell ``latent_figures`` selects (when it was run)."""
    if not options:
        return ""
    matches = [r for r in done if selected_by(r.cell, options)]
    if not matches:
        return "## Latent space\n\nNo finished cell matches `latent_figures` yet.\n"
    for result in matches:
        drawn = latent_figures.on_disk(out_dir, result.cell["cell_id"], result.benchmark)
        if drawn:
            break
    else:
        return ("## Latent space\n\nNo latent figures were drawn for the selected cell: they are drawn when it is "
                "run, from its checkpoint (see its result's notes).\n")
    body = "\n\n".join(f"**{name}**\n\n![{name}]({p.relative_to(out_dir).as_posix()})" for name, p in drawn)
    return f"## Latent space ({cell_label(result.cell)})\n\n{body}\n"


def _samples_section(out_dir: Path, done: list[CellResult]) -> str:
    """One line per configuration, linking each seed's sample grid."""
    by_config: dict[str, list[str]] = {}
    for r in sorted(done, key=lambda r: (cell_label(r.cell, with_seed=False), r.cell["seed"])):
        png = Path("cells") / r.cell["cell_id"] / "samples.png"
        if (out_dir / png).exists():
            by_config.setdefault(cell_label(r.cell, with_seed=False), []).append(
                f"[seed {r.cell['seed']}]({png.as_posix()})"
            )
    lines = [f"- {label}: {' · '.join(links)}" for label, links in by_config.items()]
    return "## Samples from each trained prior\n\n" + "\n".join(lines) + "\n" if lines else ""


def _problem_section(title: str, results: list[CellResult]) -> str:
    if not results:
        return ""
    rows = [[r.cell["cell_id"], cell_label(r.cell), r.reason or ""] for r in results]
    rows.sort(key=lambda row: row[1])
    return f"## {title}\n\n" + tabulate(rows, headers=["cell", "config", "reason"], tablefmt="github") + "\n"


def _trained_at(done: list[CellResult]) -> str:
    """Which commits trained the finished cells, when that is not simply the last run's: ``a (36), b (18)``."""
    commits = Counter(r.git_commit or "not recorded" for r in done)
    if len(commits) <= 1:
        return ""
    ranked = sorted(commits.items(), key=lambda item: (-item[1], item[0]))  # most cells first, then by name
    return "- cells trained at: " + ", ".join(f"{c} ({n})" for c, n in ranked) + "\n"


def _provenance_section(provenance: dict[str, Any], done: list[CellResult]) -> str:
    if not provenance:
        return ""
    versions = ", ".join(f"{k} {v}" for k, v in provenance.get("versions", {}).items())
    return (
        "## Provenance\n\n"
        f"- command: `{provenance.get('command', '?')}`\n"
        f"- config: `{provenance.get('config', '?')}` (sha256 {provenance.get('config_sha256', '?')})\n"
        f"- git commit: {provenance.get('git_commit', '?')} (the last run that trained)\n"
        f"{_trained_at(done)}"
        f"- versions: {versions}\n"
        f"- device: {provenance.get('device', '?')}\n"
        f"- platform: {provenance.get('platform', '?')}\n"
        f"- started: {provenance.get('started', '?')}\n"
    )


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
