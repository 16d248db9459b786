"""Which cells of a run train packed, in which packs, and the packed training itself.

Cells that differ only in seed and β, whose architecture, prior and regularizer all declare ``packable``, train as
one vectorised model (``harness.model.packed``). Packing is only a way of training: each member leaves its own
epoch checkpoints exactly as it would alone, and is then evaluated and stored by the ordinary ``run_cell``, which
finds all its epochs done. So a packed cell keeps its cell id (the computation is the same up to float rounding:
tests/test_packed.py), its result records ``packed: K``, and anything that goes wrong in a pack — a plugin that
refuses at build time, a non-finite loss, an interrupt — leaves members that resume alone from their last
checkpoint.
"""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

import torch

from harness.grid import Cell
from harness.model import packed
from harness.model.packed import config_reason
from harness.registry import Registry
from harness.run.cell import DataCache
from harness.run.store import Store
from harness.run.task import CellTask

#: ``--pack auto``: members per pack at most. Past a few dozen members the stacked step stops getting cheaper per
#: member on a CPU core, and a pack is one unit of work: a large one would leave the other workers idle.
AUTO_SIZE = 16


def unpacked_reason(cell: Cell, registry: Registry) -> str | None:
    """Why this cell cannot join a pack, decided from its config alone (a plugin that does not declare
    ``packable``, a training feature the packed step lacks: ``config_reason``), so no pack is formed only to be
    refused when it is built; None when it can."""
    kinds = (("architecture", cell.model["architecture"]), ("prior", cell.prior), ("regularizer", cell.regularizer))
    for kind, name in kinds:
        if not getattr(registry.get(kind, name), "packable", False):
            return f"{kind} {name!r} does not declare packable"
    return config_reason(cell)


def pack_size(choice: str | int, group: int) -> int:
    """Members per pack for a group of ``group`` packable cells: ``--pack K``, ``auto`` or ``off`` (1)."""
    if choice == "off":
        return 1
    if choice == "auto":
        return min(group, AUTO_SIZE)
    return max(1, int(choice))


def packed_tasks(tasks: Sequence[CellTask], registry: Registry, choice: str | int) -> list[CellTask]:
    """``tasks`` with the packable ones grouped: a pack is one task whose ``pack`` holds its other members.

    Packs are balanced (a group of 10 in packs of at most 8 is 5 + 5, not 8 + 2) and take the place of their first
    member, so the run's order (seed by seed) is kept as far as packing allows.
    """
    if choice == "off":
        return list(tasks)
    groups: dict[str, list[CellTask]] = {}
    alone: Counter[str] = Counter()  # why cells train alone, said once per reason
    for task in tasks:
        if task.cell.get("skip_reason"):
            continue
        cell = Cell.from_json(task.cell)
        reason = unpacked_reason(cell, registry)
        if reason is not None:
            alone[reason] += 1
        else:  # cells with one key (their config less seed and β) may train as one pack
            groups.setdefault(json.dumps(packed.pack_key(cell), sort_keys=True, default=str), []).append(task)
    lead: dict[str, CellTask] = {}
    member: set[str] = set()
    for group in groups.values():
        size = pack_size(choice, len(group))
        if len(group) < 2:
            alone["no other cell to run differs from it only in seed and β"] += 1
        if size < 2 or len(group) < 2:
            continue
        count = math.ceil(len(group) / size)
        for i in range(count):
            members = group[i::count]
            if len(members) < 2:
                continue
            lead[members[0].cell_id] = replace(members[0], pack=tuple(m.cell for m in members[1:]))
            member.update(m.cell_id for m in members[1:])
    for reason, count in sorted(alone.items()):
        print(f"note: --pack: {count} cell{'s' if count != 1 else ''} train alone: {reason}", file=sys.stderr)
    return [lead.get(t.cell_id, t) for t in tasks if t.cell_id not in member]


def members(task: CellTask) -> list[CellTask]:
    """A packed task as the member tasks it stands for (itself first), each as if it were to run alone."""
    return [replace(task, pack=()), *(replace(task, cell=cell, pack=()) for cell in task.pack)]


def train_pack(cells: Sequence[Cell], store: Store, data: DataCache, registry: Registry, device: torch.device,
               progress: bool) -> str | None:  # fmt: skip
    """Train ``cells`` as one pack, leaving each member's checkpoints in its folder; None when they trained,
    else why not (the members then train alone, from their last checkpoint if the pack wrote one)."""
    workdirs = [store.cell_dir(cell) for cell in cells]
    try:
        train_split, _ = data.get(cells[0])  # one dataset config: one split for every member
        data_shape = tuple(train_split.x.shape[1:])
        arch = registry.get("architecture", cells[0].model["architecture"])(**cells[0].model["architecture_options"])
        if arch.incompatibility(data_shape):
            return "the architecture cannot model the data"
        models, start_rng = packed.build_members(cells, registry, data_shape, device)
        reason = packed.pack_reason(cells, models, registry, workdirs)
        if reason:
            return reason
        packed.train_packed(cells, models, train_split, workdirs, progress, start_rng=start_rng)
    except Exception as exc:  # noqa: BLE001 - a pack that fails leaves its members to train (and fail) alone
        return f"packed training stopped ({type(exc).__name__}: {exc})"
    return None


def say_unpacked(cells: Sequence[Cell], reason: str) -> None:
    print(f"note: {len(cells)} cells ({cells[0].label}, ...) train unpacked: {reason}", file=sys.stderr)
