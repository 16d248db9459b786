"""Option bounds declared once, in a plugin constructor's signature (``Annotated[int, Field(ge=1)]``), and enforced
on every construction by ``checked_options`` (exported by ``harness``); ``range_text`` is the one wording of a
range, shared with the YAML validation (``harness.options``) so a bad value reads the same from YAML and Python."""

from __future__ import annotations

import functools
import inspect
import operator
import typing
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

_Init = TypeVar("_Init", bound=Callable[..., None])

#: annotated-types' constraint attribute -> how an error message writes it.
_BOUND_TEXT = {"ge": "at least", "gt": "greater than", "le": "at most", "lt": "less than"}
_COMPARE = {"ge": operator.ge, "gt": operator.gt, "le": operator.le, "lt": operator.lt}


def checked_options(init: _Init) -> _Init:
    """Enforce the bounds a plugin constructor declares on its options, e.g. ``Annotated[int, Field(ge=1)]``.

    Declared once in the signature, checked on every construction (from YAML or from Python): an out-of-range value
    raises one ValueError naming the option and its valid range, which the harness reports as a config error before
    anything trains. ``Field(description=...)`` is quoted as the reason. Types are not checked here (the YAML
    options are validated against the signature already); ``None`` passes where the annotation allows it.
    """
    signature = inspect.signature(init)
    bounds: dict[str, _Bound] | None = None

    @functools.wraps(init)
    def checked(*args: Any, **kwargs: Any) -> None:
        nonlocal bounds
        if bounds is None:  # on first use: the annotations may name things defined after the class
            bounds = _declared_bounds(init)
        given = signature.bind(*args, **kwargs)
        given.apply_defaults()
        for name, bound in bounds.items():
            bound.check(name, given.arguments[name])
        init(*args, **kwargs)

    return typing.cast(_Init, checked)


@dataclass(frozen=True)
class _Bound:
    """The range one option declares: (constraint, value) pairs such as ("ge", 1), why, and whether None is allowed."""

    limits: tuple[tuple[str, float], ...]
    reason: str | None
    nullable: bool

    def check(self, name: str, value: Any) -> None:
        if value is None and self.nullable:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return  # a type error, not a range error: reported by the options' type validation
        # Comparisons that must hold, so NaN (false against everything) is out of range.
        if all(_COMPARE[op](value, b) for op, b in self.limits):
            return
        allowed = range_text(dict(self.limits)) + (" or null" if self.nullable else "")
        why = f" ({self.reason})" if self.reason else ""
        raise ValueError(f"{name} must be {allowed}{why}, got {value!r}")


def _declared_bounds(init: Callable[..., None]) -> dict[str, _Bound]:
    """The declared range of each bounded parameter of ``init``: ``Annotated[T, Field(...)]``, optionally ``| None``."""
    out: dict[str, _Bound] = {}
    for name, hint in typing.get_type_hints(init, include_extras=True).items():
        args = typing.get_args(hint)
        nullable = type(None) in args and typing.get_origin(hint) is not typing.Annotated
        annotated = [a for a in (args if nullable else ()) if typing.get_origin(a) is typing.Annotated] or [hint]
        if typing.get_origin(annotated[0]) is not typing.Annotated:
            continue
        limits, reason = declared_limits(annotated[0].__metadata__)
        if limits:
            out[name] = _Bound(limits, reason, nullable)
    return out


def declared_limits(metadata: Iterable[Any]) -> tuple[tuple[tuple[str, float], ...], str | None]:
    """The (bound, value) pairs such as ("ge", 1) and the description in an option's ``Annotated`` metadata
    (pydantic ``Field``s or annotated-types constraints): what both the construction check and the YAML
    validation's ``harness describe`` read, so they cannot disagree on an option's range."""
    limits: list[tuple[str, float]] = []
    reason: str | None = None
    for meta in metadata:
        reason = getattr(meta, "description", None) or reason
        for constraint in _constraints(meta):
            limits += [(op, getattr(constraint, op)) for op in _BOUND_TEXT if hasattr(constraint, op)]
    return tuple(limits), reason


def _constraints(meta: Any) -> Iterator[Any]:
    # pydantic's Field(ge=1) keeps its constraints in .metadata; annotated_types.Interval iterates over its parts.
    inner = getattr(meta, "metadata", None)
    if isinstance(inner, list):
        yield from inner
    elif isinstance(meta, Iterable):
        yield from meta
    else:
        yield meta


def range_text(limits: dict[str, float]) -> str:
    """``at least 1``, ``between 0 and 1, exclusive``: the valid range as an error message says it."""
    if limits.keys() == {"ge", "le"}:
        return f"between {limits['ge']:g} and {limits['le']:g}"
    if limits.keys() == {"gt", "lt"}:
        return f"between {limits['gt']:g} and {limits['lt']:g}, exclusive"
    return " and ".join(f"{_BOUND_TEXT[op]} {b:g}" for op, b in limits.items())
