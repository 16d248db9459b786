"""Training throughput of packed cells (``harness.model.packed``) against the same cells trained one by one, in one run.

Two grids of benchmarks.yaml: ``quick`` (digits) and the MLP cells of ``paper-beta-fashion-mnist-cpu``. Of each it
takes the cells a pack accepts (``pack_reason`` None: every plugin declares ``packable``), groups those that differ
only in seed and β, and trains every group twice, alternating: each cell alone (``train``) and the group as packs
of ``--pack`` members (``train_packed``). Throughput is optimizer steps per second summed over all cells, training
only; the whole-cell line adds the evaluation of one member's trained view with the benchmark's evaluators
(ex-post fit included), the same work packed or not, counted once per cell.

    python bench/pack_throughput.py [--pack K] [--epochs N] [--fashion-epochs N] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from harness.api import DataSplit, EvalData
from harness.conditions import load_splits
from harness.config import load_config
from harness.grid import Cell, expand
from harness.model.packed import build_members, pack_key, pack_reason, train_packed
from harness.model.train import build_model, fit_post_hoc, train
from harness.registry import Registry, load_registry

CONFIG = Path(__file__).resolve().parent.parent / "benchmarks.yaml"
FASHION = Path("/usr/share/datasets/fashion-mnist")


@dataclass
class Timing:
    cells: int = 0
    steps: int = 0
    alone_s: float = 0.0
    packed_s: float = 0.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def packable_groups(cells: Sequence[Cell], registry: Registry, shape: tuple[int, ...]) -> list[list[Cell]]:
    """The cells a pack accepts, grouped by everything but seed and β."""
    groups: dict[str, list[Cell]] = defaultdict(list)
    meta = torch.device("meta")
    for cell in cells:
        if cell.skip_reason:
            continue
        classes = (registry.get("prior", cell.prior), registry.get("regularizer", cell.regularizer),
                   registry.get("architecture", cell.model["architecture"]))
        if not all(getattr(cls, "packable", False) for cls in classes):
            continue
        with torch.device(meta):  # pack_reason reads the built model's classes: build nothing real
            model = build_model(cell, registry, shape, meta)
        if pack_reason([cell], [model], registry) is None:
            groups[repr(pack_key(cell))].append(cell)
    return list(groups.values())


def _time_alone(cells: Sequence[Cell], registry: Registry, data: DataSplit, device: torch.device, tmp: Path) -> float:
    total = 0.0
    for i, cell in enumerate(cells):
        torch.manual_seed(cell.seed)
        model = build_model(cell, registry, tuple(data.x.shape[1:]), device)
        work = tmp / f"alone-{cell.cell_id}-{i}"
        work.mkdir()
        _sync(device)
        start = time.perf_counter()
        train(cell, model, data, work, progress=False)
        _sync(device)
        total += time.perf_counter() - start
    return total


def _time_packed(
    cells: Sequence[Cell], registry: Registry, data: DataSplit, device: torch.device, tmp: Path, pack: int
) -> float:
    total = 0.0
    for first in range(0, len(cells), pack):
        members = list(cells[first : first + pack])
        models, rngs = build_members(members, registry, tuple(data.x.shape[1:]), device)
        workdirs = [tmp / f"packed-{c.cell_id}-{first + i}" for i, c in enumerate(members)]
        for w in workdirs:
            w.mkdir()
        _sync(device)
        start = time.perf_counter()
        train_packed(members, models, data, workdirs, progress=False, start_rng=rngs)
        _sync(device)
        total += time.perf_counter() - start
    return total


def _evaluation_seconds(cell: Cell, registry: Registry, train_split: DataSplit, test_split: DataSplit,
                        device: torch.device, tmp: Path) -> float:
    """One member trained packed (as a pack of one), then its ex-post fit and every evaluator, timed."""
    work = tmp / "eval-member"
    work.mkdir()
    shape = tuple(train_split.x.shape[1:])
    models, rngs = build_members([cell], registry, shape, device)
    train_packed([cell], models, train_split, [work], progress=False, start_rng=rngs)
    model = models[0]
    start = time.perf_counter()
    fit_post_hoc(model, train_split, cell.seed)
    view = model.view(cell, shape, device, work)
    data = EvalData(cell.dataset, cell.dataset_options, train_split, test_split, tmp / "cache")
    for name, options in cell.evaluators.items():
        torch.manual_seed(cell.seed)
        with torch.inference_mode():
            registry.get("evaluator", name)(**options).evaluate(view, data)
    _sync(device)
    return time.perf_counter() - start


def run_grid(
    label: str, cells: list[Cell], registry: Registry, splits: tuple[DataSplit, DataSplit], device: torch.device,
    pack: int | None, note: str,
) -> None:
    train_split, test_split = splits
    groups = packable_groups(cells, registry, tuple(train_split.x.shape[1:]))
    runnable = [c for c in cells if not c.skip_reason]
    timing = Timing()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for group in groups:  # alternate alone and packed per group, so drift in machine load hits both alike
            steps = -(-len(train_split) // int(group[0].train["batch_size"])) * int(group[0].train["epochs"])
            timing.cells += len(group)
            timing.steps += steps * len(group)
            timing.alone_s += _time_alone(group, registry, train_split, device, tmp)
            timing.packed_s += _time_packed(group, registry, train_split, device, tmp, pack or len(group))
        eval_s = _evaluation_seconds(groups[0][0], registry, train_split, test_split, device, tmp) if groups else 0.0
    alone, packed = timing.steps / timing.alone_s, timing.steps / timing.packed_s
    sizes = ", ".join(str(len(g)) for g in groups)
    print(f"{label}: {timing.cells} of the grid's {len(runnable)} trainable cells pack "
          f"(groups of {sizes}; pack {pack or 'whole group'}){note}")
    print(f"  unpacked training   {alone:9,.1f} steps/s   ({timing.alone_s:.1f} s)")
    print(f"  packed training     {packed:9,.1f} steps/s   ({timing.packed_s:.1f} s)")
    print(f"  ratio               {packed / alone:9.2f}")
    per_cell_alone = timing.alone_s / timing.cells + eval_s
    per_cell_packed = timing.packed_s / timing.cells + eval_s
    print(f"  whole cell          {per_cell_alone:7.2f} s unpacked, {per_cell_packed:.2f} s packed per cell "
          f"(training + {eval_s:.2f} s evaluating one member: ex-post fit and {', '.join(groups[0][0].evaluators)})")
    print(f"  whole-cell ratio    {per_cell_alone / per_cell_packed:9.2f}")


def _with_epochs(cells: list[Cell], epochs: int | None) -> list[Cell]:
    if epochs is None:
        return cells
    return [replace(c, train={**c.train, "epochs": epochs}) for c in cells]


def _fashion_splits(
    cells: list[Cell], registry: Registry, device: torch.device
) -> tuple[tuple[DataSplit, DataSplit], str]:
    cell = cells[0]
    if FASHION.is_dir():
        train_split, test_split = load_splits(registry.get("dataset", cell.dataset), cell.dataset, cell.dataset_options)
        return (train_split.to(device), test_split.to(device)), f"Fashion-MNIST from {FASHION}"
    generator = torch.Generator().manual_seed(0)
    n = int(cell.dataset_options.get("max_train") or 10_000)
    x = torch.randint(0, 256, (n + 2000, 1, 28, 28), generator=generator, dtype=torch.uint8)
    labels = torch.randint(0, 10, (n + 2000,), generator=generator)
    split = lambda a, b: DataSplit(x[a:b].to(device), labels[a:b].to(device), "class")  # noqa: E731
    return (split(0, n), split(n, n + 2000)), f"random 28x28 images ({FASHION} is absent)"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pack", type=int, default=None, help="members per pack (default: each whole group)")
    parser.add_argument("--epochs", type=int, default=None, help="epochs of the quick grid (default: its own, 30)")
    parser.add_argument("--fashion-epochs", type=int, default=1,
                        help="epochs of the Fashion-MNIST grid (default 1 of its 10, to stay near 3 minutes)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    registry = load_registry()
    config = load_config(CONFIG)
    threads = f"{device.type}, {torch.get_num_threads()} threads"

    quick = _with_epochs(expand("quick", config.benchmarks["quick"], registry, str(CONFIG)), args.epochs)
    digits = quick[0]
    digits_cls = registry.get("dataset", digits.dataset)
    train_split, test_split = load_splits(digits_cls, digits.dataset, digits.dataset_options)
    epochs = int(quick[0].train["epochs"])
    run_grid("quick (digits 8x8)", quick, registry, (train_split.to(device), test_split.to(device)), device,
             args.pack, f"; {epochs} epochs, {threads}")

    fashion_all = expand("paper-beta-fashion-mnist-cpu", config.benchmarks["paper-beta-fashion-mnist-cpu"], registry,
                         str(CONFIG))
    fashion = _with_epochs([c for c in fashion_all if c.model["architecture"] == "mlp"], args.fashion_epochs)
    splits, source = _fashion_splits(fashion, registry, device)
    run_grid("paper-beta-fashion-mnist-cpu MLP", fashion, registry, splits, device, args.pack,
             f"; {args.fashion_epochs} epoch(s) of 10, {source}, {threads}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
