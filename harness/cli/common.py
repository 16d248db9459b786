"""What every ``harness`` command shares: exit statuses, the one-line argument errors, the device and the plugins."""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

from harness.config import ConfigError
from harness.registry import PluginConflict, Registry, load_registry

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments as one ``error:`` line (exit 2) instead of a usage dump."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(self.prog, message, f"see `{self.prog} --help`")


def choose_device(spec: str) -> Any:
    import torch

    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ConfigError("--device", f"{spec!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError("--device", f"{spec!r}: only auto, cpu, cuda and cuda:N are supported")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("--device", f"{spec!r}: CUDA is not available on this machine", "use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError("--device", f"{spec!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device


def load_plugins(warn: bool = True) -> Registry:
    try:
        registry = load_registry()
    except PluginConflict as exc:
        raise ConfigError("plugins", str(exc), "uninstall one of the two distributions") from None
    for broken in registry.broken if warn else []:
        print(f"warning: plugin {broken.entry_point} ({broken.distribution}) failed to load: {broken.error}", file=sys.stderr)
    return registry


def positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def thread_count(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return positive(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; use a positive integer or auto") from None


def pack_choice(text: str) -> int | str:
    """``--pack``: off, auto, or the most cells per pack (1 is off)."""
    if text in ("auto", "off"):
        return text
    try:
        return positive(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; use a positive integer, auto or off") from None


THREADS_HELP = ("torch threads per worker process (default: auto: the free cores, those this process may use "
                "less the load, split between the workers; at least 1)")
