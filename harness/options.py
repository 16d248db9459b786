"""Plugin options from YAML, validated against the plugin class before anything trains.

A class either declares a pydantic ``Params`` model or is validated against its constructor's signature
(typed parameters with defaults). ``Annotated[int, Field(ge=1, description=...)]`` in the signature is honoured:
the bound is checked here, before the plugin is built, and ``harness describe`` shows it. The validated, fully
resolved options are what a cell records and hashes.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model
from pydantic.fields import FieldInfo

# One wording for a range ("at least 1", "between 0 and 1, exclusive"), shared with ``checked_options``, so an
# option out of range reads the same from YAML as from Python.
from harness.bounds import declared_limits, range_text
from harness.errors import ConfigError, first_error, key_path, quote, suggest

#: Constructor parameters the harness passes itself, never taken from YAML.
HARNESS_SUPPLIED = frozenset({"latent_dim", "condition_shape"})
#: pydantic's error types for a value outside a declared bound.
_OUT_OF_RANGE = frozenset({"greater_than", "greater_than_equal", "less_than", "less_than_equal"})


@dataclass(frozen=True)
class OptionSpec:
    """One option as the validation sees it: type, default, declared bounds and description."""

    name: str
    #: The annotation with its ``Annotated`` metadata moved into ``limits`` and ``description``.
    annotation: Any
    required: bool
    default: Any
    #: (bound, value) pairs such as ("ge", 1); empty when the option declares no range.
    limits: tuple[tuple[str, float], ...]
    #: The option also takes null (``Annotated[int, Field(ge=1)] | None``).
    nullable: bool
    description: str | None
    #: Passed by the harness itself (a prior's ``latent_dim``), never written in YAML.
    supplied: bool = False

    @property
    def range_text(self) -> str | None:
        """``at least 1``, ``at least 2 or null``; None when no range is declared."""
        if not self.limits:
            return None
        return range_text(dict(self.limits)) + (" or null" if self.nullable else "")


def _signature_hints(init: Any, extras: bool = True) -> dict[str, Any]:
    try:
        return typing.get_type_hints(init, include_extras=extras)
    except Exception:  # noqa: BLE001 - unresolvable annotations: fall back to accepting any value
        return {}


def _signature_fields(cls: type, hints: Mapping[str, Any], supplied: bool) -> dict[str, tuple[Any, Any]]:
    """name -> (annotation, default or ...) of the constructor's keyword options (or of the supplied ones)."""
    fields: dict[str, tuple[Any, Any]] = {}
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or (name in HARNESS_SUPPLIED) != supplied:
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[name] = (hints.get(name, Any), default)
    return fields


def _signature_model(cls: type, extras: bool) -> type[BaseModel]:
    hints = _signature_hints(cls.__init__, extras)
    config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)
    return create_model(f"{cls.__name__}Options", __config__=config, **_signature_fields(cls, hints, supplied=False))


@lru_cache(maxsize=None)
def _plain_model(cls: type) -> type[BaseModel]:
    """The signature's types without their ``Annotated`` bounds: how options resolve when a bound is broken."""
    return _signature_model(cls, extras=False)


@lru_cache(maxsize=None)
def options_model(cls: type) -> type[BaseModel]:
    params = getattr(cls, "Params", None)
    if params is not None:
        return params
    try:
        return _signature_model(cls, extras=True)
    except Exception:  # noqa: BLE001 - metadata pydantic rejects: validate the plain types, as before extras counted
        return _plain_model(cls)


def _spec(name: str, field: FieldInfo, supplied: bool = False) -> OptionSpec:
    """An option's spec; bounds come from the field itself or from the ``Annotated`` inside ``T | None``."""
    args = typing.get_args(field.annotation)
    inner = [meta for arg in args if typing.get_origin(arg) is typing.Annotated for meta in arg.__metadata__]
    limits, inner_description = declared_limits([*field.metadata, *inner])
    description = field.description or inner_description
    required = field.is_required()
    default = None if required else field.get_default(call_default_factory=True)
    return OptionSpec(name, field.annotation, required, default, limits, type(None) in args, description, supplied)


def option_specs(cls: type) -> list[OptionSpec]:
    """The options of ``cls`` in declaration order, then the constructor arguments the harness supplies."""
    specs = [_spec(name, field) for name, field in options_model(cls).model_fields.items()]
    supplied = _signature_fields(cls, _signature_hints(cls.__init__), supplied=True)
    for name, (hint, default) in supplied.items():
        field = FieldInfo.from_annotation(hint) if default is ... else FieldInfo.from_annotated_attribute(hint, default)
        specs.append(_spec(name, field, supplied=True))
    return specs


def _out_of_range(cls: type, options: Mapping[str, Any], loc: list[Any], value: Any) -> str | None:
    """``{options}: depth must be at least 1, got 0``, worded as ``checked_options`` words it on direct
    construction (which is where this error came from before the bounds were checked here); None for a ``Params``
    model or a bound deeper inside an option, which keep pydantic's own message."""
    if getattr(cls, "Params", None) is not None or len(loc) != 1:
        return None
    field = options_model(cls).model_fields.get(str(loc[0]))
    spec = None if field is None else _spec(str(loc[0]), field)
    if spec is None or spec.range_text is None:
        return None
    try:  # the options resolved as a cell would record them, had the bound held
        shown = _plain_model(cls).model_validate(dict(options)).model_dump(mode="json")
    except ValidationError:
        shown = dict(options)
    why = f" ({spec.description})" if spec.description else ""
    return f"{quote(shown)}: {spec.name} must be {spec.range_text}{why}, got {shown.get(spec.name, value)!r}"


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
        if err["type"] in _OUT_OF_RANGE and (text := _out_of_range(cls, options, loc, err.get("input"))):
            raise ConfigError(where, text) from None
        msg = err["msg"].removeprefix("Value error, ")
        raise ConfigError(here, f"{quote(err.get('input'))}: {msg[0].lower() + msg[1:]}") from None
    return validated.model_dump(mode="json")
