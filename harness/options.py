"""Plugin options from YAML, validated against the plugin class before anything trains.

A class either declares a pydantic ``Params`` model or is validated against its constructor's signature
(typed parameters with defaults). The validated, fully resolved options are what a cell records and hashes.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from harness.errors import ConfigError, first_error, key_path, quote, suggest

#: Constructor parameters the harness passes itself, never taken from YAML.
HARNESS_SUPPLIED = frozenset({"latent_dim"})


@lru_cache(maxsize=None)
def options_model(cls: type) -> type[BaseModel]:
    params = getattr(cls, "Params", None)
    if params is not None:
        return params
    init = cls.__init__
    try:
        hints = typing.get_type_hints(init)
    except Exception:  # noqa: BLE001 - unresolvable annotations: fall back to accepting any value
        hints = {}
    fields: dict[str, Any] = {}
    for name, param in inspect.signature(init).parameters.items():
        if name == "self" or name in HARNESS_SUPPLIED or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[name] = (hints.get(name, Any), default)
    config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    return create_model(f"{cls.__name__}Options", __config__=config, **fields)


def validate_options(cls: type, options: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The fully resolved options (defaults filled in) or a ConfigError naming the bad option."""
    model = options_model(cls)
    if not isinstance(options, Mapping):
        raise ConfigError(where, f"{quote(options)}: options must be a mapping of option: value")
    try:
        validated = model.model_validate(dict(options))
    except ValidationError as exc:
        err = first_error(exc)
        loc = list(err["loc"])
        here = f"{where}.{key_path(loc)}" if loc else where
        kind = getattr(cls, "name", cls.__name__)
        if err["type"] == "extra_forbidden":
            key = str(loc[-1])
            return_hint = suggest(key, model.model_fields)
            raise ConfigError(here, f"unknown option {quote(key)} for {kind!r}{return_hint}") from None
        if err["type"] == "missing":
            raise ConfigError(here, f"required option of {kind!r} is missing") from None
        msg = err["msg"].removeprefix("Value error, ")
        raise ConfigError(here, f"{quote(err.get('input'))}: {msg[0].lower() + msg[1:]}") from None
    return validated.model_dump(mode="json")
