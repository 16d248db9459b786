"""The error every piece of bad input becomes, and the helpers that keep its one line short and helpful.

Low in the layers on purpose: the config schema, the plugin option checks, the path guards and the scaffold all
raise the same ``ConfigError``, which the command line prints as one ``error:`` line with exit status 2.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

#: Longest value an error message quotes whole. A value pasted by mistake (a long list, a blob) is shown by its
#: start and its length, so the error stays one readable line and costs nothing to print.
QUOTE_LIMIT = 80
#: The most characters of a location or message an error line carries: the last guard for text quoted without
#: ``quote`` (a plugin's exception message, a name inside a key path).
_WHERE_LIMIT, _MESSAGE_LIMIT, _KNOWN_SHOWN = 300, 1500, 30


def capped(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text):,} chars)"


def quote(value: Any, limit: int = QUOTE_LIMIT) -> str:
    """``repr(value)``, cut to its first ``limit`` characters plus its length when longer."""
    return capped(repr(value), limit)


class ConfigError(Exception):
    """Bad input. Printed as ``error: <where>: <message>`` (plus an indented fix line), exit status 2."""

    def __init__(self, where: str, message: str, fix: str | None = None) -> None:
        where, message = capped(where, _WHERE_LIMIT), capped(message, _MESSAGE_LIMIT)
        fix = None if fix is None else capped(fix, _MESSAGE_LIMIT)
        super().__init__(f"{where}: {message}" if where else message)
        self.where = where
        self.message = message
        self.fix = fix

    def render(self) -> str:
        text = f"error: {self}"
        return f"{text}\n  {self.fix}" if self.fix else text


def suggest(value: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'x'?); known: a, b, c`` — the tail every unknown-name error ends with."""
    choices = sorted(str(c) for c in choices)
    close = difflib.get_close_matches(value, choices, n=1, cutoff=0.6)
    hint = f" (did you mean {quote(close[0])}?)" if close else ""
    shown = [capped(c, QUOTE_LIMIT) for c in choices[:_KNOWN_SHOWN]]
    more = f", … ({len(choices) - _KNOWN_SHOWN} more)" if len(choices) > _KNOWN_SHOWN else ""
    return f"{hint}; known: {', '.join(shown) + more if choices else '(none)'}"


def key_path(parts: Sequence[str | int]) -> str:
    out = ""
    for part in parts:
        text = capped(str(part), QUOTE_LIMIT)
        out += f"[{text}]" if isinstance(part, int) else (f".{text}" if out else text)
    return out


def first_error(exc: ValidationError) -> ErrorDetails:
    """The error to report: an unknown key first, since a misspelt key also makes the real one "missing"."""
    errors = exc.errors(include_url=False)
    return next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
