"""The ``tensorboard`` tracker: per cell, the loss terms per epoch as scalars, the sample grid as an image, and the
cell's options with its final metrics as hparams, so TensorBoard's HParams tab compares cells.

One event folder per cell, ``<logdir>/<cell_id>`` (``logdir`` defaults to ``OUT/tensorboard``): open it with
``tensorboard --logdir OUT/tensorboard``. Needs the ``tensorboard`` package (``pip install 'prior-harness[tensorboard]'``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from harness import CellEnd, PluginUnavailable, TrackedCell, Tracker, hookimpl

#: Scalars hparams accept; anything else (a list of layers, a mapping) is shown as its text.
HPARAM_TYPES = (bool, int, float, str)


def cell_hparams(cell: TrackedCell) -> dict[str, Any]:
    """The cell's axes and prior/regularizer options, flattened with dotted names to hparams' scalar types."""
    config = cell.config
    flat: dict[str, Any] = {"dataset": cell.dataset, "prior": cell.prior, "regularizer": cell.regularizer,
                            "beta": "none" if cell.beta is None else float(cell.beta), "seed": cell.seed}  # fmt: skip
    for group in ("prior_options", "regularizer_options", "dataset_options"):
        for key, value in (config.get(group) or {}).items():
            flat[f"{group.removesuffix('_options')}.{key}"] = value if isinstance(value, HPARAM_TYPES) else str(value)
    if config.get("variant"):
        flat["model"] = config["variant"]
    return flat


class TensorBoardTracker(Tracker):
    """Writes TensorBoard event files; ``logdir``: where (default: the run's ``OUT/tensorboard``)."""

    name = "tensorboard"

    def __init__(self, logdir: str | None = None) -> None:
        # Nothing opened here: the constructor also validates a benchmark's options before anything runs.
        self.logdir = logdir
        self._writers: dict[str, Any] = {}
        self._cells: dict[str, TrackedCell] = {}

    def _root(self, out_dir: Path) -> Path:
        return Path(self.logdir).expanduser() if self.logdir else out_dir / "tensorboard"

    def start_cell(self, cell: TrackedCell) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as exc:
            raise PluginUnavailable("the tensorboard tracker needs the tensorboard package",
                                    "pip install 'prior-harness[tensorboard]'") from exc
        writer = SummaryWriter(log_dir=str(self._root(cell.out_dir) / cell.cell_id))
        writer.add_text("cell", cell.label)
        self._writers[cell.cell_id] = writer
        self._cells[cell.cell_id] = cell

    def log_epoch(self, cell_id: str, epoch: int, losses: Mapping[str, float]) -> None:
        writer = self._writers.get(cell_id)
        if writer is not None:
            for term, value in losses.items():
                writer.add_scalar(f"train/{term}", value, epoch)

    def end_cell(self, end: CellEnd) -> None:
        writer = self._writers.pop(end.cell_id, None)
        cell = self._cells.pop(end.cell_id, None)
        if writer is None or cell is None:
            return
        if end.samples is not None:
            import numpy as np
            from PIL import Image

            with Image.open(end.samples) as image:
                writer.add_image("samples", np.asarray(image.convert("RGB")), 0, dataformats="HWC")
        metrics = {f"metric/{k}": float(v) for k, v in end.metrics.items()}
        if metrics:
            # run_name ".": the hparams land in the cell's own folder, beside its scalars.
            writer.add_hparams(cell_hparams(cell), metrics, run_name=".")
        else:
            writer.add_text("ended", f"{end.status}: {end.reason or ''}")
        writer.close()


@hookimpl
def harness_register_trackers(register: Callable[[type[Tracker]], None]) -> None:
    register(TensorBoardTracker)
