"""The trackers of a run, each switched off (with one warning) the first time it raises: a tracker never fails a
cell, and the others keep going."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

from harness.registry import Registry
from harness.trackers import Tracker

#: (tracker name, its resolved options): what crosses process boundaries in a cell's task.
TrackerSpec = tuple[str, Mapping[str, Any]]


class TrackerSet:
    """The live trackers of one process."""

    def __init__(self, registry: Registry, specs: Sequence[TrackerSpec]) -> None:
        self._live: dict[str, Tracker] = {}
        for name, options in specs:
            try:
                self._live[name] = registry.get("tracker", name)(**options)
            except Exception as exc:  # noqa: BLE001 - a tracker that cannot start must not stop the run
                self._switch_off(name, "starting", exc)

    def __bool__(self) -> bool:
        return bool(self._live)

    @property
    def names(self) -> list[str]:
        return list(self._live)

    def call(self, method: str, *args: Any) -> None:
        """``tracker.method(*args)`` for every live tracker; one that raises is reported and dropped."""
        for name, tracker in list(self._live.items()):
            try:
                getattr(tracker, method)(*args)
            except Exception as exc:  # noqa: BLE001 - see the module docstring
                del self._live[name]
                self._switch_off(name, method, exc)

    @staticmethod
    def _switch_off(name: str, method: str, exc: BaseException) -> None:
        print(f"warning: tracker {name!r} failed in {method}: {type(exc).__name__}: {exc}; it is switched off "
              "for the rest of this run (cells are not affected)", file=sys.stderr)
