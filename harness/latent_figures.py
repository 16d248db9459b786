"""Figures drawn from one trained cell's checkpoint: the paper's latent-space pictures (Fig. 1, 3-6).

- 2-D latents (Fig. 1): fθ(Eφ(x)) and Eφ(x) coloured by class, Eφ(x) plain, fθ⁻¹(z0) for z0 ~ N(0, I).
- Interpolations (Fig. 3, 6): Dψ(lerp(zA, zB; t)) in Z_T against Dψ(fθ⁻¹(slerp(fθ(zA), fθ(zB); t))) in Z_0.
- Attribute edits (Fig. 5): add t·(mean code with a class − mean code without) in Z_T and in Z_0.
- PCA of Eφ(x) with both interpolation paths drawn (Fig. 4).

Z_0 rows need an invertible prior (``Prior.invertible``); otherwise only the Z_T versions are drawn.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from harness.api import DataSplit  # noqa: E402
from harness.grid import Cell  # noqa: E402
from harness.plugins import Registry  # noqa: E402
from harness.train import CHECKPOINT, Model, _restore, build_model, encode_means, fit_post_hoc  # noqa: E402


def load_cell(out_dir: Path, cell: Cell, registry: Registry) -> tuple[Model, DataSplit, DataSplit]:
    """Rebuild a finished cell from its checkpoint (on the CPU), with its ex-post prior refitted."""
    device = torch.device("cpu")
    dataset = registry.get("dataset", cell.dataset)(**cell.dataset_options)
    train, test = dataset.load("train"), dataset.load("test")
    torch.manual_seed(cell.seed)
    model = build_model(cell, registry, tuple(train.x.shape[1:]), device)
    _restore(model, torch.load(out_dir / "cells" / cell.cell_id / CHECKPOINT, map_location=device, weights_only=True))
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


def _image_rows(rows: list[Tensor], path: Path, columns: int) -> Path:
    from torchvision.utils import save_image

    grid = torch.cat(rows)
    scale = max(1, 32 // grid.shape[-1])
    grid = grid.repeat_interleave(scale, dim=-1).repeat_interleave(scale, dim=-2)
    save_image(grid, path, nrow=columns, padding=2, pad_value=1.0)
    return path


@torch.no_grad()
def latent_scatter(model: Model, test: DataSplit, path: Path, n: int = 5000) -> Path | None:
    """Fig. 1's four panels (2-D latents and an invertible prior only)."""
    if model.prior.latent_dim != 2 or not model.prior.invertible:
        return None
    z_t = encode_means(model, DataSplit(test.x[:n]))
    z_0 = model.prior.to_base(z_t)
    drawn = model.prior.from_base(torch.randn(n, 2))
    labels = None if test.labels is None else test.labels[:n].cpu()
    fig, axes = plt.subplots(1, 4, figsize=(16, 4))
    panels = [
        ("(a) fθ(Eφ(x)) by class", z_0, labels),
        ("(b) Eφ(x) by class", z_t, labels),
        ("(c) Eφ(x)", z_t, None),
        ("(d) fθ⁻¹(z0), z0 ~ N(0, I)", drawn, None),
    ]
    for ax, (title, points, colour) in zip(axes, panels):
        points = points.cpu()
        ax.scatter(points[:, 0], points[:, 1], s=1.5, c=colour, cmap="tab10" if colour is not None else None,
                   color=None if colour is not None else "0.2", alpha=0.6)
        ax.set_title(title, fontsize=10)
    limits = torch.cat([z_t, drawn]).cpu()
    lo, hi = limits.quantile(0.005, dim=0), limits.quantile(0.995, dim=0)
    for ax in axes[1:]:
        ax.set_xlim(float(lo[0]), float(hi[0]))
        ax.set_ylim(float(lo[1]), float(hi[1]))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _paths(model: Model, za: Tensor, zb: Tensor, t: Tensor) -> dict[str, Tensor]:
    paths = {"Z_T (lerp)": za + t[:, None] * (zb - za)}
    if model.prior.invertible:
        a0, b0 = model.prior.to_base(za[None])[0], model.prior.to_base(zb[None])[0]
        paths["Z_0 (slerp, mapped back)"] = model.prior.from_base(slerp(a0, b0, t))
    return paths


@torch.no_grad()
def interpolations(model: Model, test: DataSplit, path: Path, pairs: int, steps: int, seed: int) -> Path | None:
    """Rows per pair: the Z_0 path (when invertible) above the Z_T path; real images at both ends."""
    if not test.is_image:
        return None
    generator = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(test), generator=generator)[: 2 * pairs].view(pairs, 2)
    t = torch.linspace(0, 1, steps)
    rows = []
    for a, b in idx.tolist():
        xa, xb = test.x[a : a + 1].float() / 255, test.x[b : b + 1].float() / 255
        za, zb = model.encoder(xa).chunk(2, -1)[0][0], model.encoder(xb).chunk(2, -1)[0][0]
        for z in reversed(list(_paths(model, za, zb, t).values())):
            rows.append(torch.cat([xa, _decode(model, z), xb]))
    return _image_rows(rows, path, steps + 2)


@torch.no_grad()
def attribute_edits(model: Model, train: DataSplit, test: DataSplit, path: Path, pairs: int, steps: int,
                    seed: int) -> Path | None:
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
    chosen = torch.randperm(count, generator=generator)[:pairs].tolist()
    t = torch.linspace(0, 1, steps)
    rows = []
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
            spaces.append(model.prior.from_base(z0 + t[:, None] * vector0))
        vector = codes[inside].mean(0) - codes[~inside].mean(0)
        spaces.append(z + t[:, None] * vector)
        for path_z in spaces:
            rows.append(torch.cat([x, _decode(model, path_z)]))
    return _image_rows(rows, path, steps + 1) if rows else None


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
    fig, ax = plt.subplots(figsize=(5.5, 5))
    flat = pca.transform(codes.numpy())
    ax.scatter(flat[:, 0], flat[:, 1], s=1, color="0.7", alpha=0.5, label="Eφ(x), training images")
    colours = {"Z_T (lerp)": "black", "Z_0 (slerp, mapped back)": "red"}
    for name, z in _paths(model, za, zb, torch.linspace(0, 1, 4 * steps)).items():
        line = pca.transform(z.numpy())
        ax.plot(line[:, 0], line[:, 1], color=colours[name], linewidth=2, label=name)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.legend(fontsize=7)
    fig.tight_layout()
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


def figure_path(out_dir: Path, benchmark: str, suffix: str) -> Path:
    return out_dir / f"{benchmark}-latent-{suffix}.png"


def drawn_before(out_dir: Path, benchmark: str) -> list[tuple[str, Path]]:
    """The latent figures already on disk (drawn when the cell was trained), for a folder without checkpoints."""
    paths = [(title, figure_path(out_dir, benchmark, suffix)) for title, suffix in FIGURES]
    return [(title, path) for title, path in paths if path.is_file()]


def draw(out_dir: Path, result: dict[str, Any], options: dict[str, Any], registry: Registry) -> list[tuple[str, Path]]:
    """Every latent figure that applies to the cell of ``result``; returns (title, path) pairs."""
    cell = Cell.from_json(result["cell"])
    model, train, test = load_cell(out_dir, cell, registry)
    pairs, steps, seed = int(options.get("pairs", 4)), int(options.get("steps", 8)), cell.seed
    path = {suffix: figure_path(out_dir, result["benchmark"], suffix) for _, suffix in FIGURES}
    made = {
        "2d": latent_scatter(model, test, path["2d"]),
        "interpolation": interpolations(model, test, path["interpolation"], pairs, steps, seed),
        "attribute-edit": attribute_edits(model, train, test, path["attribute-edit"], pairs, steps, seed),
        "pca": pca_paths(model, train, test, path["pca"], steps, seed),
    }
    return [(title, drawn) for title, suffix in FIGURES if (drawn := made[suffix]) is not None]
