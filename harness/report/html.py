"""Stored cell results -> ``index.html``: the leaderboard as an interactive page that works offline.

One file beside ``leaderboard.md``: a sortable, filterable table per benchmark (DataTables with its SearchPanes,
as ``itables`` bundles it), a chart of the chosen metric against β (Vega-Lite through vega-embed, as
``vl-convert`` bundles it), the claims with their verdicts, the figures, failed, skipped and pruned cells with
their reasons, provenance, and one drawer per cell with its loss curves, samples, metrics and config. Both
libraries are inlined, so the page opens from a ``file://`` URL with no network; figures and sample grids are
linked relative to the folder, which holds them.

Rendered only from what is stored (like the leaderboard), so ``harness report DIR`` redraws it at any time.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.conditions import dataset_label
from harness.images import CONDITIONAL_SAMPLES
from harness.paths import under, write_atomic
from harness.report.claims import check
from harness.report.leaderboard import (
    cell_label,
    missing_note,
    read_json,
    figure_paths,
    long_table,
    metric_order,
    ranked_configs,
)
from harness.run import latent_figures
from harness.grid import selected_by
from harness.run.result import CellResult, Status
from harness.run.store import Store

PAGE = "index.html"

#: Where the template, script and style of the page live (package data of harness.report).
_ASSETS = resources.files("harness.report") / "page"

#: ``<!--@name@-->`` in the template: filled in one pass, so nothing inserted is scanned again.
_SLOT = re.compile(r"<!--@(\w+)@-->")


def render(out_dir: Path, results: list[CellResult] | None = None, long: pd.DataFrame | None = None) -> Path:
    """Write ``index.html`` into ``out_dir`` from its stored results; returns its path. ``results`` and their
    ``long_table``, when the caller (the leaderboard) has read them already."""
    out_dir = Path(out_dir)
    data = page_data(out_dir, results, long)
    title = "Leaderboard: " + ", ".join(b["name"] for b in data["benchmarks"])
    parts = {
        "title": html.escape(title),
        "datatables_css": _inline(_datatables()[1]),
        "page_css": _asset("report.css"),
        "data": _json_for_script(data),
        "datatables_js": _inline(_datatables()[0]),
        "vega_js": _inline(_vega_bundle()),
        "page_js": _asset("report.js"),
    }
    page = _SLOT.sub(lambda m: parts[m.group(1)], _asset("index.html"))
    path = under(out_dir, PAGE)
    write_atomic(path, page)
    return path


def page_data(
    out_dir: Path, results: list[CellResult] | None = None, long: pd.DataFrame | None = None
) -> dict[str, Any]:
    """Everything the page shows, as JSON-ready values (NaN as null)."""
    store = Store(out_dir)
    results = store.results() if results is None else results
    long = long_table(results, out_dir / "cells") if long is None else long
    provenance = read_json(out_dir / "provenance.json")
    fresh_unfinished = store.fresh_run() is not None
    names = sorted({r.benchmark for r in results} or {out_dir.name})
    benchmarks = [
        _benchmark(out_dir, name, [r for r in results if r.benchmark == name], results, long, provenance,
                   fresh_unfinished)
        for name in names
    ]
    return _finite({"benchmarks": benchmarks, "provenance": _provenance(provenance)})


def _benchmark(
    out_dir: Path,
    name: str,
    mine: list[CellResult],
    results: list[CellResult],
    long: pd.DataFrame,
    provenance: dict[str, Any],
    fresh_unfinished: bool,
) -> dict[str, Any]:
    done = [r for r in mine if r.status == Status.DONE]
    config = provenance.get("benchmarks", {}).get(name, {})
    entry: dict[str, Any] = {
        "name": name,
        "description": _inline_markdown(provenance.get("descriptions", {}).get(name) or ""),
        "missing": _inline_markdown(missing_note(provenance, name, results, fresh_unfinished).strip()),
        "primary": None, "directions": {}, "metrics": [], "configs": [], "values": [], "claims": [],
        "figures": [], "problems": _problems(mine), "cells": [_cell(out_dir, r) for r in _by_label(mine)],
    }  # fmt: skip
    if not done:
        return entry
    primary, directions = done[-1].primary_metric, dict(done[-1].directions)
    frame = long[long["benchmark"] == name]
    entry.update(primary=primary, directions=directions, metrics=metric_order(frame, primary))
    for dataset in sorted(frame["dataset"].unique()):
        ranked = ranked_configs(frame[frame["dataset"] == dataset], primary, directions)
        entry["configs"] += [
            {**c.key, "beta": _beta(c.key["beta"]), "rank": rank, "seeds": c.seeds, "cells": c.cells,
             "stats": {m: list(s) for m, s in c.stats.items()}}
            for rank, c in enumerate(ranked, start=1)
        ]  # fmt: skip
    entry["values"] = [
        {"dataset": row.dataset, "series": _series(row), "beta": _beta(row.beta), "seed": int(row.seed),
         "metric": row.metric, "value": float(row.value), "cell_id": row.cell_id}
        for row in frame.itertuples(index=False)
    ]  # fmt: skip
    entry["claims"] = [dict(zip(("claim", "measured", "verdict"), check(claim, frame, directions)))
                       for claim in config.get("claims", [])]  # fmt: skip
    entry["figures"] = _figures(out_dir, name, primary, config.get("latent_figures"), done)
    return entry


def _beta(beta: Any) -> str:
    """β as the table and chart show it: ``0.1``, or ``–`` for a cell without one (regularizer none)."""
    return "–" if beta is None or beta == "–" or (isinstance(beta, float) and math.isnan(beta)) else f"{beta:g}"


def _series(row: Any) -> str:
    """A configuration's line in the chart: model variant, prior with its options, regularizer."""
    model = "" if row.model in ("–", None) else f"{row.model}: "
    options = "" if row.prior_options == "–" else f"({row.prior_options})"
    return f"{model}{row.prior}{options} {row.regularizer}"


def _figures(
    out_dir: Path, bench: str, primary: str, latent: dict[str, Any] | None, done: list[CellResult]
) -> list[dict[str, str]]:
    shown = [{"title": title, "src": path.name} for _, title, path in figure_paths(out_dir, bench, primary)
             if path.is_file()]  # fmt: skip
    for result in (r for r in done if latent and selected_by(r.cell, latent)):
        drawn = latent_figures.on_disk(out_dir, result.cell["cell_id"], bench)
        if drawn:
            shown += [{"title": f"{title} ({cell_label(result.cell)})", "src": path.relative_to(out_dir).as_posix()}
                      for title, path in drawn]  # fmt: skip
            break
    return shown


def _problems(mine: list[CellResult]) -> list[dict[str, Any]]:
    unfinished = [r for r in mine if r.status in (Status.FAILED, Status.SKIPPED, Status.PRUNED)]
    return [{"status": str(r.status), "cell_id": r.cell["cell_id"], "label": cell_label(r.cell), "reason": r.reason or ""}
            for r in _by_label(unfinished)]  # fmt: skip


def _by_label(results: list[CellResult]) -> list[CellResult]:
    return sorted(results, key=lambda r: (cell_label(r.cell, with_seed=False), r.cell["seed"]))


def _cell(out_dir: Path, result: CellResult) -> dict[str, Any]:
    """A cell's drawer: what it is, how it ended, its loss curves, samples and full config."""
    cell_id = result.cell["cell_id"]
    folder = Path("cells") / cell_id

    def image(name: str) -> str | None:
        return (folder / name).as_posix() if (out_dir / folder / name).is_file() else None

    return {
        "cell_id": cell_id,
        "label": cell_label(result.cell),
        "dataset": dataset_label(result.cell["dataset"], result.cell.get("dataset_options") or {}),
        "status": str(result.status),
        "reason": result.reason or "",
        "seconds": result.seconds,
        "metrics": dict(sorted((result.metrics or {}).items())),
        "history": list(result.history or []),
        "notes": list(result.notes or []),
        "samples": image("samples.png"),
        "conditional": image(CONDITIONAL_SAMPLES),
        "config": result.cell,
    }


def _provenance(provenance: dict[str, Any]) -> list[list[str]]:
    """(what, value) rows, as the leaderboard's provenance section lists them."""
    if not provenance:
        return []
    versions = ", ".join(f"{k} {v}" for k, v in provenance.get("versions", {}).items())
    rows = [("command", provenance.get("command")), ("config", provenance.get("config")),
            ("config sha256", provenance.get("config_sha256")), ("git commit", provenance.get("git_commit")),
            ("versions", versions), ("device", provenance.get("device")), ("platform", provenance.get("platform")),
            ("started", provenance.get("started"))]  # fmt: skip
    return [[what, str(value)] for what, value in rows if value]


def _inline_markdown(text: str) -> str:
    """The little Markdown the leaderboard's notes use (``**bold**``, ```code```), as escaped HTML."""
    escaped = html.escape(text)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"`(.+?)`", r"<code>\1</code>", escaped)


def _finite(value: Any) -> Any:
    """``value`` with NaN and ±inf as None (JSON has no NaN; one seed has no standard deviation) and numpy's
    scalars as Python's."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _json_for_script(data: dict[str, Any]) -> str:
    # "</" would end the <script> element early; "<\/" is the same string to JSON.
    return json.dumps(data, ensure_ascii=False, allow_nan=False).replace("</", "<\\/")


def _inline(source: str) -> str:
    """A bundled library's text, safe inside a <script> or <style> element."""
    return source.replace("</script", "<\\/script").replace("</style", "<\\/style")


def _asset(name: str) -> str:
    return (_ASSETS / name).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _datatables() -> tuple[str, str]:
    """DataTables with its extensions (SearchPanes, Select, ...) as one ES module, and its CSS, as itables ships
    them for offline notebooks."""
    bundle = resources.files("itables") / "html"
    return (bundle / "dt_bundle.js").read_text(encoding="utf-8"), (bundle / "dt_bundle.css").read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def _vega_bundle() -> str:
    """vega, vega-lite and vega-embed in one script that sets ``window.vegaEmbed`` (vl-convert bundles them).

    Bundling takes about a second, so the bundle is kept in the user's cache folder, one file per vl-convert
    version (every process that writes a leaderboard would otherwise pay it again)."""
    import vl_convert

    version = getattr(vl_convert, "__version__", "unknown")
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "prior-harness"
    path = cache / f"vega-embed-bundle-{version}.js"
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        pass
    bundle = vl_convert.javascript_bundle()
    try:
        cache.mkdir(parents=True, exist_ok=True)
        write_atomic(path, bundle)
    except OSError:  # a read-only home: bundle again next time
        pass
    return bundle
