"""Leaderboard figures: what people would rather look at than read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
import pandas as pd  # noqa: E402
from matplotlib.image import imread  # noqa: E402


#: Line styles of the β-free reference lines in the metric-vs-β figure, in the order the series sort.
BETA_FREE_STYLES: list[dict[str, str]] = [
    {"color": "black", "linestyle": "--"},
    {"color": "dimgray", "linestyle": ":"},
    {"color": "darkgray", "linestyle": "-."},
    {"color": "black", "linestyle": ":"},
    {"color": "dimgray", "linestyle": "-."},
    {"color": "darkgray", "linestyle": "--"},
]

def _config_label(row: pd.Series) -> str:
    beta = "" if pd.isna(row["beta"]) else f" β={row['beta']:g}"
    opts = "" if row["prior_options"] == "–" else f"({row['prior_options']})"
    return f"{row['prior']}{opts} {row['regularizer']}{beta}"


def metric_bars(long: pd.DataFrame, metric: str, direction: str, path: Path) -> Path | None:
    """Mean ± std over seeds of ``metric`` for every configuration, one panel per dataset."""
    frame = long[long["metric"] == metric]
    if frame.empty:
        return None
    datasets = sorted(frame["dataset"].unique())
    fig, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 0.5 + 0.35 * frame.groupby("dataset")["cell_id"].nunique().max() + 1), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        sub = frame[frame["dataset"] == dataset].copy()
        sub["config"] = sub.apply(_config_label, axis=1)
        stats = sub.groupby("config")["value"].agg(["mean", "std"]).fillna({"std": 0.0})
        stats = stats.sort_values("mean", ascending=direction != "min")
        ax.barh(stats.index, stats["mean"], xerr=stats["std"], color="tab:blue", alpha=0.8, capsize=3)
        ax.invert_yaxis()
        ax.set_title(dataset)
        ax.set_xlabel(f"{metric} ({'lower' if direction == 'min' else 'higher'} is better)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def samples_overview(out_dir: Path, results: list[dict[str, Any]], path: Path) -> Path | None:
    """The sample grid of the first seed of every configuration, side by side."""
    picks: dict[str, tuple[str, Path]] = {}
    for r in sorted(results, key=lambda r: r["cell"]["seed"]):
        cell = r["cell"]
        png = out_dir / "cells" / cell["cell_id"] / "samples.png"
        beta = "" if cell["beta"] is None else f" β={cell['beta']:g}"
        label = f"{cell['dataset']}\n{cell['prior']} {cell['regularizer']}{beta}"
        if png.exists():
            picks.setdefault(label, (label, png))
    if not picks:
        return None
    cols = min(4, len(picks))
    rows = (len(picks) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3.3 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (label, png) in zip(axes.flat, sorted(picks.values())):
        ax.imshow(imread(png), cmap="gray")
        ax.set_title(label, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _series_label(row: pd.Series) -> str:
    if row.get("model", "–") not in ("–", None):
        return str(row["model"])
    opts = "" if row["prior_options"] == "–" else f"({row['prior_options']})"
    return f"{row['prior']}{opts} {row['regularizer']}"


def metric_vs_beta(long: pd.DataFrame, metric: str, direction: str, path: Path) -> Path | None:
    """The paper's Fig. 2: ``metric`` against β (not to scale), mean ± std over seeds, one line per model.

    Configurations that ignore β (no regularizer, an ex-post prior) are drawn as dashed horizontal lines.
    """
    frame = long[long["metric"] == metric].copy()
    betas = sorted(pd.to_numeric(frame["beta"], errors="coerce").dropna().unique())
    if len(betas) < 2:
        return None
    frame["series"] = frame.apply(_series_label, axis=1)
    datasets = sorted(frame["dataset"].unique())
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4.2), squeeze=False)
    position = {b: i for i, b in enumerate(betas)}
    for ax, dataset in zip(axes[0], datasets):
        sub = frame[frame["dataset"] == dataset]
        beta_free = 0  # how many β-free lines this panel has drawn: each gets its own dash and shade
        for series, group in sorted(sub.groupby("series"), key=lambda kv: kv[0]):
            beta = pd.to_numeric(group["beta"], errors="coerce")
            if beta.isna().all():
                mean, std = group["value"].mean(), group["value"].std()
                # axhline does not advance the colour cycle: without a style of their own, every β-free line
                # would be the same blue dash and the legend could not tell them apart.
                style = BETA_FREE_STYLES[beta_free % len(BETA_FREE_STYLES)]
                beta_free += 1
                line = ax.axhline(mean, linewidth=1.2, label=f"{series} (β-free)", **style)
                if pd.notna(std):
                    ax.axhspan(mean - std, mean + std, color=line.get_color(), alpha=0.12)
                continue
            stats = group.assign(beta=beta).groupby("beta")["value"].agg(["mean", "std"]).fillna({"std": 0.0})
            xs = [position[b] for b in stats.index]
            ax.errorbar(xs, stats["mean"], yerr=stats["std"], marker="o", capsize=3, label=series)
        ax.set_xticks(range(len(betas)), [f"{b:g}" for b in betas])
        ax.set_xlabel("β (not to scale)")
        ax.set_ylabel(f"{metric} ({'lower' if direction == 'min' else 'higher'} is better)")
        ax.set_title(dataset)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
