"""Leaderboard figures: what people would rather look at than read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
import pandas as pd  # noqa: E402
from matplotlib.image import imread  # noqa: E402


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
