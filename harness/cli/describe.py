"""``harness describe NAME``: what a plugin is and every option it takes (type, default, range, description),
read from the same declarations the YAML options are validated against."""

from __future__ import annotations

import argparse
import inspect
import textwrap
import types
import typing
from typing import Any

from harness.cli.common import EXIT_OK, load_plugins
from harness.config import ConfigError, quote, suggest
from harness.options import OptionSpec, option_specs
from harness.registry import KINDS, PluginInfo, Registry


def _type_text(annotation: Any) -> str:
    """``int``, ``int | None``, ``'frozen' | 'retrain'``: the annotation as a user writes the YAML value."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_text(args[0])
    if origin is typing.Literal:
        return " | ".join(repr(a) for a in args)
    if args and origin in (typing.Union, types.UnionType):
        return " | ".join("None" if a is type(None) else _type_text(a) for a in args)
    if args:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(_type_text(a) for a in args)}]"
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def option_line(spec: OptionSpec) -> str:
    """``depth: int = 4 (at least 1): why``: one option, as ``harness describe`` prints it."""
    default = "required" if spec.required else f"= {spec.default!r}"
    bound = f" ({spec.range_text})" if spec.range_text else ""
    why = f": {spec.description}" if spec.description else ""
    return f"  {spec.name}: {_type_text(spec.annotation)} {default}{bound}{why}"


def _find(registry: Registry, name: str, kind: str | None) -> PluginInfo:
    kinds = [kind] if kind else list(KINDS)
    found = [registry.plugins[k][name] for k in kinds if name in registry.plugins[k]]  # type: ignore[index]
    if len(found) == 1:
        return found[0]
    if found:
        both = ", ".join(p.kind for p in found)
        raise ConfigError("describe", f"{quote(name)} is a plugin of several kinds ({both})", "add --kind KIND")
    known = sorted({p.name for p in registry if kind is None or p.kind == kind})
    raise ConfigError("describe", f"unknown {kind or 'plugin'} {quote(name)}{suggest(name, known)}",
                      "see `harness list`")


def describe(info: PluginInfo) -> list[str]:
    summary = (inspect.getdoc(info.cls) or "").split("\n\n")[0]
    lines = [f"{info.name} ({info.kind}; {info.distribution} {info.version}, {info.module})"]
    lines += [textwrap.fill(summary, 110, initial_indent="  ", subsequent_indent="  "), ""] if summary else [""]
    specs = option_specs(info.cls)
    options = [s for s in specs if not s.supplied]
    lines.append("options:" if options else "options: none")
    lines += [option_line(s) for s in options]
    supplied = [s.name for s in specs if s.supplied]
    if supplied:
        lines.append(f"set by the harness, not in YAML: {', '.join(supplied)}")
    return lines


def cmd_describe(args: argparse.Namespace) -> int:
    print("\n".join(describe(_find(load_plugins(), args.name, args.kind))))
    return EXIT_OK


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("describe", help="a plugin's options: type, default, range and what each one does",
                            description="Print what a plugin is and each option it takes in benchmarks.yaml, with "
                            "its type, default, allowed range and description.")
    parser.add_argument("name", metavar="NAME", help="a plugin name as written in benchmarks.yaml (see `harness list`)")
    parser.add_argument("--kind", choices=list(KINDS), help="which kind, when several kinds have a plugin NAME")
    parser.set_defaults(func=cmd_describe)
