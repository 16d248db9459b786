"""``harness validate | search | list | new-plugin | leaderboard``: the commands besides ``run``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from harness.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_OK,
    THREADS_HELP,
    choose_device,
    load_plugins,
    positive,
    thread_count,
)
from harness.config import ConfigError, load_config
from harness.options import option_specs
from harness.paths import check_out_folder, under
from harness.registry import AUTOLOAD_ENV


def cmd_validate(args: argparse.Namespace) -> int:
    """Check each benchmark as ``run --dry-run`` does and each search as ``search`` does (plugins, options,
    metrics, data files, weights), each on its own so one missing dataset hides no other problem: a line per
    benchmark and search, ``ok`` on stdout or its error on stderr; exit 2 when any failed."""
    from collections.abc import Callable

    from harness.run.plan import plan_benchmark, resolve_trackers

    config = load_config(args.config)
    source = str(args.config)
    registry = load_plugins()
    errors: list[str] = []

    def check(what: Callable[[str], str], name: str) -> None:
        try:
            line = what(name)
        except ConfigError as exc:
            if exc.render() not in errors:  # a search fails as its benchmark does: say it once
                errors.append(exc.render())
                print(exc.render(), file=sys.stderr, flush=True)
            return
        print(line, flush=True)

    # --config-only is for checking a file meant for another machine (a GPU cluster holding the datasets).
    unchecked = " (config only: data files and weights not checked)" if args.config_only else ""

    def benchmark(name: str) -> str:
        if args.config_only:
            from harness.grid import expand

            cells = expand(name, config.benchmarks[name], registry, source)
        else:
            cells = plan_benchmark(name, config.benchmarks[name], registry, source).cells
        skipped = sum(1 for c in cells if c.skip_reason)
        return f"{name}: ok, {len(cells)} cells ({skipped} skipped){unchecked}"

    def search(name: str) -> str:
        from harness import search as searches

        found = searches.resolve(config, name, registry, source)
        resolve_trackers(found.bench, registry, f"{found.source}: benchmarks.{found.bench_name}")
        if not args.config_only:
            searches.check_available(found, registry)
        space = len(found.config.space)
        return f"search {name}: ok, {space} parameters, objective {found.metric} ({found.direction}){unchecked}"

    for name in config.benchmarks:
        check(benchmark, name)
    for name in config.searches:
        check(search, name)
    return EXIT_BAD_INPUT if errors else EXIT_OK


def cmd_search(args: argparse.Namespace) -> int:
    from harness import search
    from harness.run.plan import resolve_trackers

    device = choose_device(args.device)
    config = load_config(args.config)
    registry = load_plugins()
    found = search.resolve(config, args.search, registry, str(args.config))
    search.check_available(found, registry)
    # The search's benchmark's trackers: and --tracker's, checked before any trial trains.
    trackers = resolve_trackers(found.bench, registry, f"{found.source}: benchmarks.{found.bench_name}",
                                args.tracker or [])
    out = Path(args.out) if args.out else under(Path("leaderboards"), f"search-{found.name}")
    check_out_folder(out, "--out" if args.out else "leaderboards")
    summary = search.run(found, registry, out, storage_spec=args.storage, trials=args.trials, workers=args.workers,
                         device=device, quiet=args.quiet, threads=args.threads, trackers=trackers)
    print(summary.text)
    return EXIT_OK if summary.ok else EXIT_FAILED


def _option_names(cls: type) -> str:
    """The YAML options of a plugin class, in declaration order ("–" for none)."""
    try:
        names = [spec.name for spec in option_specs(cls) if not spec.supplied]
    except Exception:  # noqa: BLE001 - a plugin whose options cannot be read still gets listed
        return "?"
    return ", ".join(names) or "–"


def cmd_list(args: argparse.Namespace) -> int:
    registry = load_plugins(warn=False)  # broken plugins are part of the listing itself
    rows = [
        {"kind": p.kind, "name": p.name, "distribution": p.distribution, "version": p.version, "module": p.module}
        for p in registry
    ]
    broken = [asdict(b) for b in registry.broken]
    if os.environ.get(AUTOLOAD_ENV, "") not in ("", "0"):
        print(f"note: {AUTOLOAD_ENV} is set: only the built-in plugins are loaded", file=sys.stderr)
    if args.json:
        extra = {"modules": [asdict(m) for m in registry.modules]} if args.verbose else {}
        print(json.dumps({"plugins": rows, "broken": broken, **extra}, indent=2))
        return EXIT_OK
    from tabulate import tabulate

    columns = ["kind", "name", "distribution", "version"] + (["module"] if args.verbose else [])
    table = [[r[c] for c in columns] + [_option_names(p.cls)] for r, p in zip(rows, registry)]
    print(tabulate(table, headers=[*columns, "options (harness describe NAME)"]))
    if args.verbose:
        print("\nplugin modules (entry point, distribution, file, hooks implemented):")
        for m in registry.modules:
            print(f"  {m.entry_point} ({m.distribution} {m.version})\n    file:  {m.path or '(no file)'}"
                  f"\n    hooks: {', '.join(m.hooks) or '(none)'}")
    if broken:
        print("\nbroken plugins:")
        for b in broken:
            print(f"  {b['entry_point']} ({b['distribution']} {b['version']}): {b['error']}")
    return EXIT_OK


def cmd_new_plugin(args: argparse.Namespace) -> int:
    from harness.scaffold import write_plugin

    taken = load_plugins(warn=False).names(args.kind)
    folder = write_plugin(args.name, args.kind, args.dir, taken=taken)
    print(f"wrote {folder}/: pyproject.toml, README.md, the {args.kind} module and its contract tests")
    print(f"next: pip install -e {folder} && python -m pytest {folder}")
    return EXIT_OK


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from harness.report.leaderboard import render

    out = Path(args.dir)
    if not (out / "cells").is_dir():
        raise ConfigError(str(out), "no stored results here (expected a cells/ folder written by `harness run`)")
    print(render(out))
    return EXIT_OK


def add_parsers(sub: Any) -> None:
    srch = sub.add_parser("search", help="an Optuna search (β, flow depth, ...) from the config's searches:",
                          description="Run trials of a search until its study holds the total wanted; each trial "
                          "is one cell trained and stored as `harness run` would. Rerun to continue the same study. "
                          "Exit status: 0 the study holds the trials wanted, 1 it does not (or none completed), "
                          "2 bad input.")
    srch.add_argument("config", type=Path, help="benchmarks.yaml")
    srch.add_argument("--search", "-s", metavar="NAME", help="which search (may be left out when there is one)")
    srch.add_argument("--trials", type=positive, metavar="N",
                      help="total trials wanted in the study, counting those already there (default: the search's)")
    srch.add_argument("--workers", type=positive, default=1, metavar="N",
                      help="local worker processes sharing the study (on CPU the cores are split between them)")
    srch.add_argument("--storage", metavar="URL|PATH",
                      help="a journal file path (default: OUT/study.journal) or a database URL such as "
                      "postgresql://user:password@host/db, for workers on several machines")
    srch.add_argument("--out", metavar="DIR", help="results folder (default: leaderboards/search-<name>)")
    srch.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    srch.add_argument("--quiet", "-q", action="store_true", help="no line per trial")
    srch.add_argument("--threads", type=thread_count, default="auto", metavar="N|auto", help=THREADS_HELP)
    srch.add_argument("--tracker", action="append", metavar="NAME",
                      help="also show the trials to this tracker (repeatable; `harness list` shows them), with its "
                           "default options unless the search's benchmark's trackers: sets them")
    srch.set_defaults(func=cmd_search)
    validate = sub.add_parser("validate",
                              help="check a config (plugins, options, metrics, data, weights) without training",
                              description="Check every benchmark as `harness run --dry-run` would (names, plugins, "
                              "options, metrics, data files, weights) and every search as `harness search` would, "
                              "without training. One line per benchmark and search; exit 2 when any failed.")
    validate.add_argument("config", type=Path)
    validate.add_argument("--config-only", action="store_true",
                          help="skip the data-file and weight checks (for a file meant for another machine)")
    validate.set_defaults(func=cmd_validate)

    lst = sub.add_parser("list", help="every installed plugin: kind, name, distribution, version; broken ones")
    lst.add_argument("--json", action="store_true", help="machine-readable output")
    lst.add_argument("--verbose", "-v", action="store_true",
                     help="also each plugin module's file and the hooks it implements")
    lst.set_defaults(func=cmd_list)

    new = sub.add_parser("new-plugin", help="write a plugin package: pyproject, module, contract tests, README",
                         description="Write an installable package with a small working plugin of KIND, its "
                         "entry point, and tests that run the kind's contract suite from harness.testing.")
    new.add_argument("name", metavar="NAME", help="the name users write in benchmarks.yaml (e.g. my-prior)")
    new.add_argument("--kind", required=True, choices=["prior", "regularizer", "evaluator", "dataset"])
    new.add_argument("--dir", type=Path, metavar="DIR",
                     help="the package folder to write (default: ./harness-KIND-NAME)")
    new.set_defaults(func=cmd_new_plugin)

    board = sub.add_parser("leaderboard",
                           help="re-render results.csv, leaderboard.md and index.html from a results folder")
    board.add_argument("dir", help="a folder written by `harness run` (e.g. leaderboards/quick)")
    board.set_defaults(func=cmd_leaderboard)
