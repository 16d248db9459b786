"""Figures drawn from one trained cell's checkpoint: the paper's latent-space pictures (Fig. 1, 3-6).

Drawn when the cell selected by a benchmark's ``latent_figures:`` is run, into its folder
(``cells/<id>/latent-*.png``), so rendering a leaderboard only reads files.

- 2-D latents (Fig. 1): fθ(Eφ(x)) and Eφ(x) coloured by class, Eφ(x) plain, fθ⁻¹(z0) for z0 ~ N(0, I).
- Interpolations (Fig. 3, 6): Dψ(lerp(zA, zB; t)) in Z_T against Dψ(fθ⁻¹(slerp(fθ(zA), fθ(zB); t))) in Z_0.
- Attribute edits (Fig. 5): add t·(mean code with a class − mean code without) in Z_T and in Z_0.
- PCA of Eφ(x) with both interpolation paths drawn (Fig. 4).

Z_0 rows need an invertible prior (``Prior.invertible``); otherwise only the Z_T versions are drawn.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from torch import Tensor  # noqa: E402

from harness.api import DataSplit  # noqa: E402
from harness.conditions import condition_shape, load_splits  # noqa: E402
from harness.grid import Cell  # noqa: E402
from harness.images import legible  # noqa: E402
from harness.paths import atomic_figure, under  # noqa: E402
from harness.registry import Registry  # noqa: E402
from harness.model.checkpoint import CHECKPOINT, restore  # noqa: E402
from harness.model.train import Model, build_model, encode_means, fit_post_hoc  # noqa: E402


def load_cell(out_dir: Path, cell: Cell, registry: Registry) -> tuple[Model, DataSplit, DataSplit]:
    """Rebuild a finished cell from its checkpoint (on the CPU), with its ex-post prior refitted."""
    device = torch.device("cpu")
    train, test = load_splits(registry.get("dataset", cell.dataset), cell.dataset, cell.dataset_options)
    if train.cond is not None:
        raise ValueError("the latent-space figures read unconditional codes; this cell's data carry a condition")
    torch.manual_seed(cell.seed)
    model = build_model(cell, registry, tuple(train.x.shape[1:]), device, condition_shape(train))
    restore(model, torch.load(out_dir / "cells" / cell.cell_id / CHECKPOINT, map_location=device, weights_only=True))
    fit_post_hoc(model, train, cell.seed)
    model.train(False)
    return model, train, test


def slerp(a: Tensor, b: Tensor, t: Tensor) -> Tensor:
    """Spherical interpolation from ``a`` to ``b`` (White 2016), one row per value of ``t``.

    Between unit vectors the path stays on the unit sphere at constant angular speed. For (anti)parallel
    vectors the great circle is undefined or numerically unstable (sin Ω ≈ 0): fall back to lerp.
    """
    cos = (a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-12)
    omega = torch.arccos(cos.clamp(-1.0, 1.0))
    so = torch.sin(omega)
    if so.abs() < 1e-6:
        return a + t[:, None] * (b - a)
    return (torch.sin((1 - t) * omega)[:, None] * a + torch.sin(t * omega)[:, None] * b) / so


def _decode(model: Model, z: Tensor) -> Tensor:
    return model.likelihood.mean(model.decoder(z)).clamp(0, 1)


@dataclass(frozen=True)
class ImageGrid:
    """Decoded images in rows, with what each row and column shows and a title saying what the figure is."""

    rows: list[Tensor]  # each [columns, C, H, W] in [0, 1]
    row_labels: list[str]
    column_labels: list[str]
    title: str


def grid_figure(grid: ImageGrid) -> Figure:
    """The images tiled as ``torchvision.utils.make_grid`` does, labelled along the left and the top."""
    from torchvision.utils import make_grid

    images = legible(torch.cat(grid.rows))
    columns, pad, size = len(grid.column_labels), 2, images.shape[-1]
    tiled = make_grid(images, nrow=columns, padding=pad, pad_value=1.0).permute(1, 2, 0).numpy()
    # Two figure pixels per image pixel at dpi 110: a 28-px image is about half an inch.
    width, height = 2 * tiled.shape[1] / 110, 2 * tiled.shape[0] / 110
    fig, ax = plt.subplots(figsize=(width + 2.2, height + 1.3))
    ax.imshow(tiled, interpolation="nearest")
    centre = [pad + i * (size + pad) + size / 2 for i in range(max(columns, len(grid.row_labels)))]
    ax.set_xticks(centre[:columns], grid.column_labels, fontsize=7)
    ax.xaxis.tick_top()
    ax.set_yticks(centre[: len(grid.row_labels)], grid.row_labels, fontsize=7)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    # Wrapped to the figure's width (about 0.07 in per character at 8 pt) so a narrow grid keeps its whole title.
    chars = max(30, int((fig.get_figwidth() - 0.4) / 0.07))
    lines = [part for line in grid.title.split("\n") for part in textwrap.wrap(line, chars)]
    fig.suptitle("\n".join(lines), fontsize=8)
    fig.tight_layout()
    return fig


def save_grid(grid: ImageGrid, path: Path) -> Path:
    fig = grid_figure(grid)
    fig.savefig(path, dpi=110, bbox_inches="tight", pad_inches=0.1)
    plt.close(fig)
    return path


def class_names(split: DataSplit, count: int) -> list[str]:
    """The dataset's names for its classes (or attributes) when it has them, else the numbers."""
    names = split.label_names
    return list(names) if names and len(names) >= count else [str(k) for k in range(count)]


def robust_limits(*point_sets: Tensor, tail: float = 0.0025, pad: float = 0.05) -> list[tuple[float, float]]:
    """Per-axis limits holding the ``tail`` to 1 − ``tail`` quantiles of every set, widened by ``pad`` each side.

    With ``tail`` = 0.25 % per side and axis, at most 1 % of each set's 2-D points fall outside (a union bound),
    whatever a few far outliers do: autoscaling on them squeezed the bulk into a corner, and the 0.5–99.5 %
    quantiles of the pooled points put the heavier-tailed panel's points over the edge.
    """
    lo = torch.stack([points.quantile(tail, dim=0) for points in point_sets]).min(0).values
    hi = torch.stack([points.quantile(1 - tail, dim=0) for points in point_sets]).max(0).values
    margin = (hi - lo).clamp_min(1e-6) * pad
    return [(float(a), float(b)) for a, b in zip(lo - margin, hi + margin)]


def scatter_figure(z_0: Tensor, z_t: Tensor, drawn: Tensor, labels: Tensor | None, names: list[str]) -> Figure:
    """Fig. 1: (a) fθ(Eφ(x)) and (b) Eφ(x) coloured by class, (c) Eφ(x), (d) fθ⁻¹(z0); one class legend below.

    Panels (b)–(d) share limits from robust quantiles of every point they draw, so they can be compared.
    """
    fig, axes = plt.subplots(1, 4, figsize=(16, 4.8), layout="constrained")
    panels = [
        ("(a) fθ(Eφ(x)) in Z_0, by class", z_0, labels),
        ("(b) Eφ(x) in Z_T, by class", z_t, labels),
        ("(c) Eφ(x) in Z_T", z_t, None),
        ("(d) fθ⁻¹(z0), z0 ~ N(0, I), in Z_T", drawn, None),
    ]
    colours = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    for ax, (title, points, classes) in zip(axes, panels):
        if classes is None:
            ax.scatter(points[:, 0], points[:, 1], s=1.5, color="0.2", alpha=0.6)
        else:
            for k, name in enumerate(names):
                mine = points[classes == k]
                ax.scatter(mine[:, 0], mine[:, 1], s=1.5, color=colours(k % colours.N), alpha=0.6, label=name)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("z₁", fontsize=8)
        ax.set_ylabel("z₂", fontsize=8)
        ax.tick_params(labelsize=8)
    shared = robust_limits(z_t, drawn)
    for ax, limits in [(axes[0], robust_limits(z_0)), *((ax, shared) for ax in axes[1:])]:
        ax.set_xlim(*limits[0])
        ax.set_ylim(*limits[1])
    if labels is not None:
        fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", ncol=min(len(names), 10),
                   fontsize=8, markerscale=5, frameon=False, title="class", title_fontsize=8)
    return fig


@torch.no_grad()
def latent_scatter(model: Model, test: DataSplit, path: Path, n: int = 5000) -> Path | None:
    """Fig. 1's four panels (2-D latents and an invertible prior only)."""
    if model.prior.latent_dim != 2 or not model.prior.invertible:
        return None
    z_t = encode_means(model, DataSplit(test.x[:n])).cpu()
    z_0 = model.prior.to_base(z_t).cpu()
    drawn = model.prior.from_base(torch.randn(n, 2)).cpu()
    # Attribute labels (CelebA: [N, A]) have no single class per point to colour by.
    labels = None if test.labels is None or test.labels.ndim != 1 else test.labels[:n].cpu()
    names = class_names(test, int(labels.max()) + 1) if labels is not None else []
    fig = scatter_figure(z_0, z_t, drawn, labels, names)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _paths(model: Model, za: Tensor, zb: Tensor, t: Tensor) -> dict[str, Tensor]:
    paths = {"Z_T (lerp)": za + t[:, None] * (zb - za)}
    if model.prior.invertible:
        a0, b0 = model.prior.to_base(za[None])[0], model.prior.to_base(zb[None])[0]
        paths["Z_0 (slerp, mapped back)"] = model.prior.from_base(slerp(a0, b0, t))
    return paths


#: Row names of the two interpolation and edit paths, as ``_paths`` keys them.
_ROW_NAMES = {"Z_T (lerp)": "Z_T, lerp", "Z_0 (slerp, mapped back)": "Z_0, slerp"}


def _steps(t: Tensor) -> list[str]:
    return [f"t={float(v):.2g}" for v in t]


@torch.no_grad()
def interpolation_grid(model: Model, test: DataSplit, pairs: int, steps: int, seed: int) -> ImageGrid | None:
    """Rows per pair: the Z_0 path (when invertible) above the Z_T path; real images at both ends."""
    if not test.is_image:
        return None
    generator = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(test), generator=generator)[: 2 * pairs].view(pairs, 2)
    t = torch.linspace(0, 1, steps)
    rows, names = [], []
    for number, (a, b) in enumerate(idx.tolist(), start=1):
        xa, xb = test.x[a : a + 1].float() / 255, test.x[b : b + 1].float() / 255
        za, zb = model.encoder(xa).chunk(2, -1)[0][0], model.encoder(xb).chunk(2, -1)[0][0]
        for name, z in reversed(list(_paths(model, za, zb, t).items())):
            rows.append(torch.cat([xa, _decode(model, z), xb]))
            names.append(f"pair {number}: {_ROW_NAMES[name]}")
    where = ("Z_0 (top: slerp between fθ(z_A) and fθ(z_B), mapped back by fθ⁻¹) and Z_T (bottom: lerp)"
             if model.prior.invertible else "Z_T (lerp)")
    title = (f"Interpolations from test image A (left) to B (right), decoded by Dψ; per pair the path in {where};"
             f" z = Eφ(x), t from 0 to 1")
    return ImageGrid(rows, names, ["A", *_steps(t), "B"], title)


def interpolations(model: Model, test: DataSplit, path: Path, pairs: int, steps: int, seed: int) -> Path | None:
    grid = interpolation_grid(model, test, pairs, steps, seed)
    return None if grid is None else save_grid(grid, path)


@torch.no_grad()
def edit_grid(model: Model, train: DataSplit, test: DataSplit, pairs: int, steps: int, seed: int) -> ImageGrid | None:
    """Add t·(mean code of a class − mean code of the rest), t from 0 to 1, in Z_0 (top) and Z_T (bottom).

    Class labels stand in for attributes (CelebA's attributes when ``label_kind`` is "attributes").
    """
    if not test.is_image or train.labels is None:
        return None
    codes = encode_means(model, DataSplit(train.x[:20000]))
    labels = train.labels[:20000]
    has = (labels == 1) if train.label_kind == "attributes" else None
    generator = torch.Generator().manual_seed(seed)
    count = labels.shape[1] if has is not None else int(labels.max()) + 1
    names = class_names(train, count)
    chosen = torch.randperm(count, generator=generator)[:pairs].tolist()
    t = torch.linspace(0, 1, steps)
    rows, row_names = [], []
    for k in chosen:
        inside = has[:, k] if has is not None else labels == k
        if inside.all() or not inside.any():
            continue
        test_inside = (test.labels[:, k] == 1) if has is not None else test.labels == k
        start = int(torch.nonzero(~test_inside)[int(torch.randint(0, int((~test_inside).sum()), (1,), generator=generator))])
        x = test.x[start : start + 1].float() / 255
        z = model.encoder(x).chunk(2, -1)[0]
        spaces = []
        if model.prior.invertible:
            base = model.prior.to_base(codes)
            vector0 = base[inside].mean(0) - base[~inside].mean(0)
            z0 = model.prior.to_base(z)
            spaces.append(("Z_0", model.prior.from_base(z0 + t[:, None] * vector0)))
        vector = codes[inside].mean(0) - codes[~inside].mean(0)
        spaces.append(("Z_T", z + t[:, None] * vector))
        for space, path_z in spaces:
            rows.append(torch.cat([x, _decode(model, path_z)]))
            row_names.append(f"+ {names[k]}, {space}")
    if not rows:
        return None
    where = "Z_0 (top) and Z_T (bottom)" if model.prior.invertible else "Z_T"
    title = (f"Class-vector edits: a test image not of the class (left) plus t·(mean code of the class − mean code"
             f" of the rest), in {where}, decoded by Dψ; t from 0 to 1")
    return ImageGrid(rows, row_names, ["start", *_steps(t)], title)


def attribute_edits(model: Model, train: DataSplit, test: DataSplit, path: Path, pairs: int, steps: int,
                    seed: int) -> Path | None:
    grid = edit_grid(model, train, test, pairs, steps, seed)
    return None if grid is None else save_grid(grid, path)


@torch.no_grad()
def pca_paths(model: Model, train: DataSplit, test: DataSplit, path: Path, steps: int, seed: int) -> Path | None:
    """PCA of Eφ(x) over training images with the Z_T (black) and Z_0 (red) interpolation paths of one pair."""
    from sklearn.decomposition import PCA

    codes = encode_means(model, DataSplit(train.x[:5000]))
    if codes.shape[1] < 2:
        return None
    pca = PCA(2).fit(codes.numpy())
    generator = torch.Generator().manual_seed(seed)
    a, b = torch.randperm(len(test), generator=generator)[:2].tolist()
    za = encode_means(model, DataSplit(test.x[a : a + 1]))[0]
    zb = encode_means(model, DataSplit(test.x[b : b + 1]))[0]
    fig, ax = plt.subplots(figsize=(5.5, 5.6), layout="constrained")
    flat = pca.transform(codes.numpy())
    ax.scatter(flat[:, 0], flat[:, 1], s=1, color="0.7", alpha=0.5, label="Eφ(x), training images")
    colours = {"Z_T (lerp)": "black", "Z_0 (slerp, mapped back)": "red"}
    lines = []
    for name, z in _paths(model, za, zb, torch.linspace(0, 1, 4 * steps)).items():
        lines.append(line := torch.as_tensor(pca.transform(z.numpy())))
        ax.plot(line[:, 0], line[:, 1], color=colours[name], linewidth=2, label=f"path in {name}")
    for name, z in (("A", za), ("B", zb)):
        x, y = pca.transform(z[None].numpy())[0]
        ax.annotate(name, (x, y), xytext=(4, 4), textcoords="offset points", fontsize=9, weight="bold")
    # The cloud's outliers may be cut, the paths never: they are what the figure is about.
    paths = torch.cat(lines)
    for axis, (lo, hi), set_lim in zip(range(2), robust_limits(torch.as_tensor(flat)), (ax.set_xlim, ax.set_ylim)):
        span = float(paths[:, axis].max() - paths[:, axis].min()) * 0.05
        set_lim(min(lo, float(paths[:, axis].min()) - span), max(hi, float(paths[:, axis].max()) + span))
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title("PCA of Eφ(x): interpolation paths between test images A and B", fontsize=9)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncol=2, fontsize=7, frameon=False,
               markerscale=4)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


#: (title, file suffix) of each latent figure, in the order the leaderboard shows them.
FIGURES = (
    ("2-D latents (Fig. 1)", "2d"),
    ("interpolations: Z_0 (top) vs Z_T (bottom) per pair (Fig. 3, 6)", "interpolation"),
    ("class-vector edits: Z_0 (top) vs Z_T (bottom) per class (Fig. 5)", "attribute-edit"),
    ("PCA of Eφ(x) with the Z_T and Z_0 paths (Fig. 4)", "pca"),
)


def figure_path(cell_dir: Path, suffix: str) -> Path:
    return under(cell_dir, f"latent-{suffix}.png")


def on_disk(out_dir: Path, cell_id: str, benchmark: str) -> list[tuple[str, Path]]:
    """The latent figures drawn for a cell: in its folder, or (out folders of older versions) at the top level."""
    for name in (lambda suffix: figure_path(out_dir / "cells" / cell_id, suffix),
                 lambda suffix: under(out_dir, f"{benchmark}-latent-{suffix}.png")):
        found = [(title, name(suffix)) for title, suffix in FIGURES if name(suffix).is_file()]
        if found:
            return found
    return []


def draw(out_dir: Path, cell: Cell, options: Mapping[str, Any], registry: Registry) -> list[tuple[str, Path]]:
    """Every latent figure that applies to ``cell``, drawn from its checkpoint into its folder; (title, path)."""
    model, train, test = load_cell(out_dir, cell, registry)
    pairs, steps, seed = int(options.get("pairs", 4)), int(options.get("steps", 8)), cell.seed
    path = {suffix: figure_path(out_dir / "cells" / cell.cell_id, suffix) for _, suffix in FIGURES}
    made = {
        # Each drawn to a temporary file and moved into place: a reader never sees half a PNG.
        "2d": atomic_figure(lambda p: latent_scatter(model, test, p), path["2d"]),
        "interpolation": atomic_figure(lambda p: interpolations(model, test, p, pairs, steps, seed),
                                       path["interpolation"]),
        "attribute-edit": atomic_figure(lambda p: attribute_edits(model, train, test, p, pairs, steps, seed),
                                        path["attribute-edit"]),
        "pca": atomic_figure(lambda p: pca_paths(model, train, test, p, steps, seed), path["pca"]),
    }
    return [(title, drawn) for title, suffix in FIGURES if (drawn := made[suffix]) is not None]


def draw_noted(out_dir: Path, cell: Cell, options: Mapping[str, Any], registry: Registry) -> list[str]:
    """``draw``, with a failure turned into a note for the cell's result: the figures are extras, the cell is done."""
    try:
        draw(out_dir, cell, options, registry)
    except Exception as exc:  # noqa: BLE001 - a figure that cannot be drawn must not fail a trained cell
        return [f"latent figures not drawn: {type(exc).__name__}: {exc}"]
    return []
