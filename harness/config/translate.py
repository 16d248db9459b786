"""pydantic's validation errors → one ConfigError naming the file, the key path, the value and the valid keys."""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from harness.errors import ConfigError, first_error, key_path, quote, suggest

def _unwrap(annotation: Any) -> Any:
    """``Annotated[X, ...]`` and ``X | None`` as ``X`` (pydantic reports an optional section's keys without the
    union's branch in the path)."""
    while True:
        if getattr(annotation, "__metadata__", None) is not None:
            annotation = annotation.__origin__
        elif typing.get_origin(annotation) in (typing.Union, types.UnionType):
            branches = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(branches) != 1:
                return annotation
            annotation = branches[0]
        else:
            return annotation


def _fields_at(model: type[BaseModel], loc: Sequence[str | int]) -> list[str]:
    """The keys allowed at ``loc`` inside ``model`` (for unknown-key suggestions)."""
    current: Any = model
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            current = field.annotation if field else None
        elif getattr(current, "__origin__", None) is dict:
            current = current.__args__[1]
        else:
            return []
        current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def explain(exc: ValidationError, source: str, schema: type[BaseModel]) -> ConfigError:
    """The first of ``exc``'s errors as a ConfigError; unknown keys are matched against ``schema``'s fields."""
    err = first_error(exc)
    loc = list(err["loc"])
    if err["type"] == "extra_forbidden":
        key = str(loc[-1])
        return ConfigError(f"{source}: {key_path(loc)}", f"unknown key {quote(key)}{suggest(key, _fields_at(schema, loc[:-1]))}")
    if err["type"] == "missing":
        return ConfigError(f"{source}: {key_path(loc)}", "required key is missing")
    where = f"{source}: {key_path(loc)}" if loc else source
    if err["type"] == "too_short":  # pydantic's text says "dictionary" for a list the user wrote
        return ConfigError(where, "empty; give at least one entry")
    msg = re.sub(r" or instance of \w+", "", err["msg"].removeprefix("Value error, "))
    msg = msg[0].lower() + msg[1:]
    # Our own validators' messages already quote the offending value.
    return ConfigError(where, msg if err["type"] == "value_error" else f"{quote(err.get('input'))}: {msg}")
