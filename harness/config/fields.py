"""Field types and before-validators the benchmark and search schemas share."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Field

FROZEN = ConfigDict(extra="forbid", frozen=True)
PositiveInt = Annotated[int, Field(ge=1)]
Options = dict[str, Any]


def named_options(value: Any) -> Any:
    """``[a, {b: {...}}]`` or ``{a: {}, b: {...}}`` or ``a`` -> ``{a: {}, b: {...}}``; options None -> {}."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        merged: dict[Any, Any] = {}
        for item in value:
            if isinstance(item, dict) and len(item) == 1:
                merged.update(item)
            elif isinstance(item, str):
                merged[item] = {}
            else:
                return value  # let pydantic report the bad item
        value = merged
    if isinstance(value, dict):
        return {k: ({} if v is None else v) for k, v in value.items()}
    return value


def as_list(value: Any) -> Any:
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else value
