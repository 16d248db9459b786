"""Leaderboard figures: what people would rather look at than read."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.image import imread  # noqa: E402

from harness.conditions import dataset_label  # noqa: E402
from harness.images import CONDITIONAL_SAMPLES  # noqa: E402
from harness.run.result import CellResult  # noqa: E402

#: Dashes of the β-free reference lines in the metric-vs-β figure, in the order the series sort. Each line also
#: gets its own colour from SERIES_COLOURS (shared with the β series, so no two lines of a figure look alike).
BETA_FREE_DASHES: list[str | tuple[int, tuple[int, ...]]] = [
    "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (8, 2)), (0, (1, 3)),
]

#: One colour per series of the metric-vs-β figure (tab10, then tab20's lighter halves beyond ten series).
SERIES_COLOURS: list[str] = [f"C{i}" for i in range(10)] + [
    "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5",
]

#: Bar charts switch to a log axis only when the bars span more than this ratio (two decades): on a linear axis
#: the best bars would then be slivers, while a log axis below that exaggerates small differences.
LOG_SPAN = 100.0

#: Bar-chart label lines are wrapped at this many characters so the label column stays narrow.
LABEL_WIDTH = 32


def _direction_label(metric: str, direction: str) -> str:
    return f"{metric} ({'lower' if direction == 'min' else 'higher'} is better)"


def _named(row: pd.Series) -> bool:
    return row.get("model", "–") not in ("–", None) and not pd.isna(row.get("model"))


def _bar_label(row: pd.Series, ambiguous: set[str]) -> str:
    """A configuration's name: the model variant when it has one, else prior and regularizer; options only for a
    prior (or prior and regularizer only for a variant) that appears in more than one form, since otherwise they
    repeat on every row and say nothing."""
    beta = "" if pd.isna(row["beta"]) else f" β={row['beta']:g}"
    opts = f"({row['prior_options']})" if row["prior"] in ambiguous and row["prior_options"] != "–" else ""
    plain = f"{row['prior']}{opts} {row['regularizer']}"
    if _named(row):
        return f"{row['model']} {plain}{beta}" if row["model"] in ambiguous else f"{row['model']}{beta}"
    return f"{plain}{beta}"


def _bar_stats(sub: pd.DataFrame, direction: str) -> pd.DataFrame:
    """Mean, std and seed count per configuration, best first."""
    per_prior = sub.groupby("prior")["prior_options"].nunique()
    forms = sub.assign(form=sub["prior"] + sub["prior_options"] + sub["regularizer"]).groupby("model")["form"]
    per_model = forms.nunique()
    ambiguous = set(per_prior[per_prior > 1].index) | set(per_model[per_model > 1].index)
    labelled = sub.assign(config=sub.apply(_bar_label, axis=1, ambiguous=ambiguous))
    stats = labelled.groupby("config")["value"].agg(["mean", "std", "count"]).fillna({"std": 0.0})
    return stats.sort_values("mean", ascending=direction == "min")


def _wrap(label: str) -> str:
    return "\n".join(textwrap.wrap(label, LABEL_WIDTH, break_on_hyphens=False)) or label


def _use_log(values: pd.Series) -> bool:
    positive = values[values > 0]
    return len(positive) == len(values) and len(values) > 1 and positive.max() / positive.min() > LOG_SPAN


def _draw_bars(ax: Axes, stats: pd.DataFrame, title: str, xlabel: str) -> None:
    """Horizontal bars, best on top and highlighted, each with its mean ± std written at its end."""
    log = _use_log(stats["mean"])
    positions = range(len(stats))
    colours = ["tab:orange" if i == 0 else "tab:blue" for i in positions]
    spread = stats["std"] if bool((stats["std"] > 0).any()) else None  # one seed: no zero-width error caps
    ax.barh(list(positions), stats["mean"], xerr=spread, color=colours, alpha=0.85, capsize=3,
            error_kw={"elinewidth": 1})
    ax.set_yticks(list(positions), [_wrap(str(label)) for label in stats.index], fontsize=8)
    ax.set_ylim(len(stats) - 0.5, -0.5)  # best first, at the top; no empty rows above or below
    for y, (mean, std) in enumerate(zip(stats["mean"], stats["std"])):
        text = f"{mean:.4g}" if std == 0 else f"{mean:.4g} ± {std:.2g}"
        ax.annotate(text, (mean + std, y), xytext=(4, 0), textcoords="offset points", va="center", fontsize=7)
    if log:
        ax.set_xscale("log")
    else:
        ax.set_xlim(0, float((stats["mean"] + stats["std"]).max()) * 1.25)  # room for the value texts
    ax.set_xlabel(xlabel + (" (log scale)" if log else ""))
    seeds = int(stats["count"].max())
    ax.set_title(f"{title}: mean ± std over {seeds} seeds" if seeds > 1 else f"{title}: one seed", fontsize=10)
    ax.grid(axis="x", alpha=0.3)


def _fit_label_column(fig: Figure, axes: list[Axes], bar_inches: float) -> None:
    """Size the figure so the label column is as wide as its longest label and the bars get ``bar_inches``."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    label_px = max(
        (t.get_window_extent(renderer).width for ax in axes for t in ax.get_yticklabels() if t.get_text()),
        default=0.0,
    )
    label_in = label_px / fig.dpi + 0.3
    fig.set_size_inches(label_in + bar_inches + 0.4, fig.get_size_inches()[1])
    fig.tight_layout()


def _save(fig: Figure | None, path: Path) -> Path | None:
    if fig is None:
        return None
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def metric_bars(long: pd.DataFrame, metric: str, direction: str, path: Path) -> Path | None:
    """Mean ± std over seeds of ``metric`` for every configuration, best first, one panel per dataset (stacked)."""
    return _save(bars_figure(long, metric, direction), path)


def bars_figure(long: pd.DataFrame, metric: str, direction: str) -> Figure | None:
    """The figure ``metric_bars`` saves (None without values of ``metric``)."""
    frame = long[long["metric"] == metric]
    if frame.empty:
        return None
    datasets = sorted(frame["dataset"].unique())
    stats = {d: _bar_stats(frame[frame["dataset"] == d], direction) for d in datasets}
    rows = [len(s) for s in stats.values()]
    # Height grows with the rows (two-line labels need a little more); every dataset gets its own panel.
    heights = [1.0 + 0.32 * n for n in rows]
    fig, axes = plt.subplots(len(datasets), 1, figsize=(8, sum(heights) + 0.3), squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, dataset in zip(axes[:, 0], datasets):
        _draw_bars(ax, stats[dataset], dataset, _direction_label(metric, direction))
    _fit_label_column(fig, list(axes[:, 0]), bar_inches=5.5)
    return fig


def _first_seed_files(out_dir: Path, results: list[CellResult], filename: str) -> list[tuple[str, Path]]:
    """(label, file) of the first seed of every configuration whose cell folder holds ``filename``, by label."""
    picks: dict[str, tuple[str, Path]] = {}
    for r in sorted(results, key=lambda r: r.cell["seed"]):
        cell = r.cell
        png = out_dir / "cells" / cell["cell_id"] / filename
        beta = "" if cell["beta"] is None else f" β={cell['beta']:g}"
        name = cell.get("variant") or f"{cell['prior']} {cell['regularizer']}"
        label = f"{dataset_label(cell['dataset'], cell['dataset_options'])}\n{name}{beta}"
        if png.exists():
            picks.setdefault(label, (label, png))
    return sorted(picks.values())


def _image_grid(
    picks: list[tuple[str, Path]], path: Path, cols: int, cell_inches: tuple[float, float], title: Any
) -> Path | None:
    """The images of ``picks`` in a grid of at most ``cols`` columns, each titled ``title(label)``."""
    if not picks:
        return None
    cols = min(cols, len(picks))
    rows = (len(picks) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cell_inches[0] * cols, cell_inches[1] * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (label, png) in zip(axes.flat, picks):
        ax.imshow(imread(png), cmap="gray")
        ax.set_title(title(label), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def samples_overview(out_dir: Path, results: list[CellResult], path: Path) -> Path | None:
    """The sample grid of the first seed of every configuration, side by side."""
    return _image_grid(_first_seed_files(out_dir, results, "samples.png"), path, 4, (3, 3.3), lambda label: label)


def conditional_overview(out_dir: Path, results: list[CellResult], path: Path) -> Path | None:
    """Paper Fig. 7: each model's panel (condition, original, samples per row; first seed), side by side."""
    picks = _first_seed_files(out_dir, results, CONDITIONAL_SAMPLES)
    return _image_grid(picks, path, 3, (4.2, 3.9),
                       lambda label: label.replace("\n", ": ") + "\nrows: condition (if an image), original, samples")


def _series_label(row: pd.Series) -> str:
    if _named(row):
        return str(row["model"])
    opts = "" if row["prior_options"] == "–" else f"({row['prior_options']})"
    return f"{row['prior']}{opts} {row['regularizer']}"


def _beta_free(group: pd.DataFrame) -> bool:
    return bool(pd.to_numeric(group["beta"], errors="coerce").isna().all())


def series_styles(series: list[str], beta_free: set[str]) -> dict[str, dict[str, Any]]:
    """Line style per series: every series its own colour; β-free ones dashed, each with its own dash.

    Colours are assigned over the sorted names of the whole figure, so a model has one colour in every panel.
    """
    styles: dict[str, dict[str, Any]] = {}
    dashes = 0
    for i, name in enumerate(sorted(series)):
        style: dict[str, Any] = {"color": SERIES_COLOURS[i % len(SERIES_COLOURS)]}
        if name in beta_free:
            style["linestyle"] = BETA_FREE_DASHES[dashes % len(BETA_FREE_DASHES)]
            dashes += 1
        else:
            style["linestyle"] = "-"
        styles[name] = style
    return styles


def _draw_vs_beta(ax: Axes, sub: pd.DataFrame, position: dict[float, int], styles: dict[str, dict[str, Any]],
                  span: int) -> None:
    for series, group in sorted(sub.groupby("series"), key=lambda kv: kv[0]):
        style = styles[series]
        if _beta_free(group):
            mean, std = group["value"].mean(), group["value"].std()
            # Drawn across the whole β range as a line of its own (axhline would not advance any style cycle).
            ax.plot([-0.3, span - 0.7], [mean, mean], linewidth=1.6, label=f"{series} (β-free)", **style)
            if pd.notna(std):
                ax.fill_between([-0.3, span - 0.7], mean - std, mean + std, color=style["color"], alpha=0.12,
                                linewidth=0)
            continue
        beta = pd.to_numeric(group["beta"], errors="coerce")
        stats = group.assign(beta=beta).groupby("beta")["value"].agg(["mean", "std"]).fillna({"std": 0.0})
        xs = [position[b] for b in stats.index]
        ax.errorbar(xs, stats["mean"], yerr=stats["std"], marker="o", capsize=3, label=series, **style)


def metric_vs_beta(long: pd.DataFrame, metric: str, direction: str, path: Path) -> Path | None:
    """Save ``beta_figure`` (nothing when fewer than two β values were run)."""
    return _save(beta_figure(long, metric, direction), path)


def beta_figure(long: pd.DataFrame, metric: str, direction: str) -> Figure | None:
    """The paper's Fig. 2: ``metric`` against β (not to scale), mean ± std over seeds, one line per model.

    β values sit at evenly spaced positions (β = 0 is the leftmost, a log axis could not show it); configurations
    that ignore β (no regularizer, an ex-post prior) are horizontal dashed lines with a ±std band. The legend is
    outside the axes, to the right, so it never covers data.
    """
    frame = long[long["metric"] == metric].copy()
    betas = sorted(pd.to_numeric(frame["beta"], errors="coerce").dropna().unique())
    if len(betas) < 2:
        return None
    frame["series"] = frame.apply(_series_label, axis=1)
    free = {name for name, group in frame.groupby("series") if _beta_free(group)}
    styles = series_styles(sorted(frame["series"].unique()), free)
    datasets = sorted(frame["dataset"].unique())
    fig, axes = plt.subplots(1, len(datasets), figsize=(5.5 * len(datasets) + 3, 4.2), squeeze=False,
                             layout="constrained")
    position = {b: i for i, b in enumerate(betas)}
    for ax, dataset in zip(axes[0], datasets):
        _draw_vs_beta(ax, frame[frame["dataset"] == dataset], position, styles, len(betas))
        ax.set_xticks(range(len(betas)), [f"{b:g}" for b in betas], rotation=45 if len(betas) > 8 else 0)
        ax.set_xlim(-0.3, len(betas) - 0.7)
        ax.set_xlabel("β (evenly spaced, not to scale)")
        ax.set_ylabel(_direction_label(metric, direction))
        ax.set_title(dataset)
        ax.grid(alpha=0.3)
    handles: dict[str, Any] = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, handle)
    ordered = sorted(handles, key=lambda label: (label.endswith("(β-free)"), label))
    fig.legend([handles[k] for k in ordered], ordered, loc="outside right upper", fontsize=8,
               title="mean ± std over seeds", title_fontsize=8)
    return fig

