"""A cell's checkpoint: what is saved after each epoch so an interrupted cell resumes where it stopped, and how
it is loaded back (whole or not at all; an unreadable one is set aside and the cell trains from scratch)."""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from harness.grid import Cell
from harness.paths import replace_atomically

if TYPE_CHECKING:
    from harness.model.train import Model

CHECKPOINT = "checkpoint.pt"


def save_checkpoint(model: Model, epoch: int, history: list[dict[str, float]], path: Path) -> None:
    """Everything needed to go on training after ``epoch`` (modules, optimisers, RNG, history), atomically."""
    state = checkpoint_state(model, epoch, history)
    replace_atomically(path, lambda tmp: torch.save(state, tmp))


def checkpoint_state(model: Model, epoch: int, history: list[dict[str, float]]) -> dict[str, Any]:
    state: dict[str, Any] = {name: m.state_dict() for name, m in model.modules().items()}
    state["opt_model"] = model.opt_model.state_dict()
    state["opt_prior"] = model.opt_prior.state_dict() if model.opt_prior is not None else {}
    state["epoch"] = epoch
    state["history"] = history
    state["rng_cpu"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["rng_cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore(model: Model, state: dict[str, Any]) -> tuple[int, list[dict[str, float]]]:
    """Load ``state`` (from ``checkpoint_state``) into ``model``; returns (next epoch, history so far)."""
    for name, module in model.modules().items():
        module.load_state_dict(state[name])
    model.opt_model.load_state_dict(state["opt_model"])
    if model.opt_prior is not None:
        model.opt_prior.load_state_dict(state["opt_prior"])
    torch.set_rng_state(state["rng_cpu"])
    if "rng_cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng_cuda"])
    return int(state["epoch"]) + 1, list(state["history"])


def resume(
    cell: Cell, model: Model, path: Path, device: torch.device, notes: list[str], announce: bool = True
) -> tuple[int, list[dict[str, float]]]:
    """(first epoch to run, history so far) from the checkpoint at ``path``; (0, []) when there is none.

    ``announce``: say on stderr where it resumes (not for a cell its pack has just trained: that is no news).

    An unreadable checkpoint (truncated, garbage, another model's) would fail the cell on every rerun: it is
    set aside (``_set_aside``) and the cell trains from scratch, saying so on stderr and in ``notes``.
    """
    if not path.exists():
        return 0, []
    try:
        start, history = load_checkpoint(model, path, device)
    except torch.cuda.OutOfMemoryError:
        raise  # the checkpoint is fine, the device is full
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with the file, the cell can still be trained
        notes.append(_set_aside(cell, path, exc))
        return 0, []
    epochs = int(cell.train["epochs"])
    if announce and start < epochs:
        tqdm.write(f"{cell.label}: resuming at epoch {start + 1} of {epochs} from its checkpoint", file=sys.stderr)
    elif announce:
        tqdm.write(f"{cell.label}: its checkpoint holds all {epochs} epochs; evaluating it", file=sys.stderr)
    return start, history


def load_checkpoint(model: Model, path: Path, device: torch.device) -> tuple[int, list[dict[str, float]]]:
    """Restore ``model`` from ``path``; on failure the model is as it was (never half restored)."""
    state = torch.load(path, map_location=device, weights_only=True)
    blank = copy.deepcopy(checkpoint_state(model, -1, []))  # a restore can fail after loading some modules
    try:
        return restore(model, state)
    except Exception:
        restore(model, blank)
        raise


def _set_aside(cell: Cell, path: Path, exc: Exception) -> str:
    """Move an unloadable checkpoint to ``checkpoint.pt.corrupt`` (one copy: the latest), warn; returns the note."""
    corrupt = path.with_name(f"{path.name}.corrupt")
    os.replace(path, corrupt)
    why = (str(exc).strip().splitlines() or [""])[0][:200]
    note = f"{path.name} could not be loaded ({type(exc).__name__}: {why}); moved to {corrupt.name}, trained from scratch"
    tqdm.write(f"warning: {cell.label}: {note}", file=sys.stderr)
    return note
