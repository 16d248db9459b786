"""Names that become file and folder names (benchmarks, searches, model variants)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from harness.errors import quote

#: Benchmark, search and model-variant names end up in paths (leaderboards/<benchmark>/, <benchmark>-fid.png,
#: leaderboards/search-<search>/): a portable file name, never a path, so ``../x`` or ``/etc`` cannot steer a write.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}", re.ASCII)
NAME_RULE = "1-80 characters: letters, digits, '_', '.' and '-', starting with a letter or digit, without '..'"


def valid_name(name: object) -> bool:
    return isinstance(name, str) and _NAME.fullmatch(name) is not None and ".." not in name


def check_name(name: object, kind: str) -> None:
    """Raise ValueError unless ``name`` is a valid ``kind`` name (a benchmark, a search, a model variant)."""
    if not valid_name(name):
        raise ValueError(f"{quote(name)} is not a valid {kind} name; names are {NAME_RULE}")


def names_of(kind: str) -> Any:
    """A before-validator of a mapping whose keys are ``kind`` names."""

    def check(cls: type, value: Any) -> Any:
        if isinstance(value, Mapping):
            for name in value:
                check_name(name, kind)
        return value

    return classmethod(check)
