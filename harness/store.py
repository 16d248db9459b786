"""One folder per cell under ``OUT/cells/<cell_id>/``: its resolved config, checkpoint, samples and a
``result.json`` written atomically (temp file + rename). Finished cells are skipped by a rerun; a per-cell
file lock lets several processes share one out folder without running a cell twice.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.grid import Cell

RESULT = "result.json"


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, default=str)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class Store:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.cells_dir = self.root / "cells"

    def cell_dir(self, cell: Cell) -> Path:
        path = self.cells_dir / cell.cell_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def result(self, cell: Cell) -> dict[str, Any] | None:
        path = self.cells_dir / cell.cell_id / RESULT
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def is_done(self, cell: Cell) -> bool:
        result = self.result(cell)
        return result is not None and result.get("status") == "done"

    def write_config(self, cell: Cell) -> None:
        write_json_atomic(self.cell_dir(cell) / "config.json", cell.to_json())

    def write_result(self, cell: Cell, result: dict[str, Any]) -> None:
        write_json_atomic(self.cell_dir(cell) / RESULT, {"cell": cell.to_json(), **result})

    def forget(self, cell: Cell) -> None:
        """``--fresh``: drop a cell's result and checkpoint so it trains again from scratch."""
        for name in (RESULT, "checkpoint.pt"):
            (self.cells_dir / cell.cell_id / name).unlink(missing_ok=True)

    @contextmanager
    def claim(self, cell: Cell) -> Iterator[bool]:
        """Hold the cell's lock while running it; yields False when another process holds it.

        flock locks die with their process, so a SIGKILLed run leaves nothing stale behind.
        """
        lock_path = self.cell_dir(cell) / ".lock"
        with lock_path.open("w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def results(self) -> list[dict[str, Any]]:
        """Every stored result (any benchmark, any status), in a stable order."""
        out = []
        for path in sorted(self.cells_dir.glob(f"*/{RESULT}")):
            try:
                out.append(json.loads(path.read_text(encoding="utf-8")))
            except json.JSONDecodeError:
                continue  # only possible for a file written by something else: the store writes atomically
        return out
