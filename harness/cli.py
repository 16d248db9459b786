"""The ``harness`` command: run | search | list | validate | leaderboard | new-plugin.

Exit status: 0 every cell done (or skipped with a reason), 1 some cell failed, 2 bad input.

Several ``harness run`` processes may share one out folder: each cell is trained by one of them (a per-cell lock);
a run that meets a cell another is running waits for it and takes its outcome, so every run's exit status covers
every cell. ``--fresh`` runs on one folder form one fresh run (``OUT/fresh-run.json``): a cell is redone once,
and a ``--fresh`` rerun after an interruption continues it rather than starting over.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from harness import __version__
from harness.config import ConfigError, choose_benchmarks, load_config
from harness.paths import check_out_folder, under
from harness.registry import AUTOLOAD_ENV, PluginConflict, Registry, load_registry

if TYPE_CHECKING:
    from harness.run.store import Store
    from harness.run.task import Executor

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad arguments as one ``error:`` line (exit 2) instead of a usage dump."""

    def error(self, message: str) -> NoReturn:
        raise ConfigError(self.prog, message, f"see `{self.prog} --help`")


def _device(spec: str) -> Any:
    import torch

    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise ConfigError("--device", f"{spec!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError("--device", f"{spec!r}: only auto, cpu, cuda and cuda:N are supported")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("--device", f"{spec!r}: CUDA is not available on this machine", "use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError("--device", f"{spec!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    return device


def _registry(warn: bool = True) -> Registry:
    try:
        registry = load_registry()
    except PluginConflict as exc:
        raise ConfigError("plugins", str(exc), "uninstall one of the two distributions") from None
    for broken in registry.broken if warn else []:
        print(f"warning: plugin {broken.entry_point} ({broken.distribution}) failed to load: {broken.error}", file=sys.stderr)
    return registry


def _gpu_slots(args: argparse.Namespace, device: Any) -> list[str]:
    import torch

    gpus = [device.index] if device.index is not None else list(range(torch.cuda.device_count()))
    slots = [f"cuda:{g}" for g in gpus for _ in range(args.cells_per_gpu)]
    return slots[: args.workers] if args.workers > 1 else slots


def _executor_kind(args: argparse.Namespace) -> str:
    """local, pool or ray, checked against the other options (before anything prints or trains)."""
    kind = args.executor or ("pool" if args.workers > 1 else "local")
    if kind == "local" and args.workers > 1:
        raise ConfigError("--workers", f"{args.workers}: the local executor runs one cell at a time",
                          "use --executor pool (or ray) for several workers")
    if kind == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError("--executor", "'ray': Ray is not installed", "pip install 'prior-harness[ray]'") from None
        if args.threads != "auto":
            raise ConfigError("--threads", f"{args.threads}: Ray tasks take their threads from Ray "
                              "(OMP_NUM_THREADS is each task's num_cpus)", "leave --threads out with --executor ray")
    return kind


def _threads(args: argparse.Namespace, device: Any) -> int | None:
    """Choose the torch threads per worker of ``harness run`` (``--threads``), set them here, say so on stderr.

    Called once, before anything trains. None with Ray: its tasks take their threads from Ray.
    """
    from harness.threads import apply, choose_threads

    kind = _executor_kind(args)
    if kind == "ray":
        return None
    workers = len(_gpu_slots(args, device)) if kind == "pool" and device.type == "cuda" else args.workers
    choice = choose_threads(workers, args.threads)
    print(choice.describe(), file=sys.stderr)
    apply(choice)  # this process: the local executor's cells run here
    return choice.threads


def _executor(args: argparse.Namespace, device: Any, threads: int | None = None) -> Executor:
    """The executor of ``--executor``; ``threads``: torch threads per worker (from ``_threads``)."""
    from harness.run.executors import LocalExecutor, PoolExecutor, RayExecutor

    kind = _executor_kind(args)
    if kind == "local":
        return LocalExecutor(threads=threads)
    if kind == "pool":
        if device.type == "cuda":
            return PoolExecutor(_gpu_slots(args, device), threads=threads)
        return PoolExecutor(["cpu"] * args.workers, threads=threads)
    return RayExecutor(args.ray_address, gpus_per_cell=1.0 / args.cells_per_gpu if device.type == "cuda" else 0.0)


def _run_outs(out: str | None, names: list[str]) -> dict[str, Path]:
    """Each benchmark's results folder, checked (exit 2) before anything trains: inside ``--out`` (or
    ``leaderboards/``) whatever the benchmark's name, and neither a file nor under one."""
    if out and len(names) == 1:
        outs = {names[0]: Path(out)}
    else:
        outs = {name: under(Path(out) if out else Path("leaderboards"), name) for name in names}
    for path in outs.values():
        check_out_folder(path, "--out" if out else "leaderboards")
    return outs


def _note_unfinished_fresh_run(store: Store, fresh: bool) -> None:
    """Without --fresh, say so when an interrupted --fresh run is still recorded: its cells are a mix of old and new."""
    run = store.fresh_run()
    if run is not None and not fresh:
        print(f"note: {store.root}: the --fresh run started at {run.started} did not finish; cells it has not "
              "redone keep their older results (add --fresh to continue it)", file=sys.stderr)


def cmd_run(args: argparse.Namespace) -> int:
    from harness.report import leaderboard, summary
    from harness.run import provenance
    from harness.run.plan import plan_benchmark, run_plan
    from harness.run.store import Store

    device = _device(args.device)
    config = load_config(args.config)
    source = str(args.config)
    registry = _registry()
    names = choose_benchmarks(config, args.benchmark or [], source)
    # Every benchmark is checked (plugins, options, data files, weights) before any of them trains.
    plans = [plan_benchmark(name, config.benchmarks[name], registry, source) for name in names]
    outs = _run_outs(args.out, [p.name for p in plans])
    if args.dry_run:
        for plan in plans:
            print("\n".join(summary.dry_run_lines(plan, outs[plan.name], args.workers)))
        return EXIT_OK

    threads = _threads(args, device)  # before any cell trains, and before provenance records the count
    failed = 0
    for plan in plans:
        out = outs[plan.name]
        out.mkdir(parents=True, exist_ok=True)
        store = Store(out)
        _note_unfinished_fresh_run(store, args.fresh)
        # A run that trains nothing (every cell already done) must not claim the stored results as its own.
        # Cells skipped by the grid (gan × kl, say) train nothing either.
        trains = [c for c in plan.cells if not c.skip_reason and not store.is_done(c)]
        if args.fresh or not (out / "provenance.json").exists() or trains:
            provenance.write(
                under(out, "provenance.json"), Path(args.config), device, registry,
                descriptions={plan.name: plan.config.description},
                benchmarks={plan.name: plan.config.model_dump(mode="json")},
                planned_cells={plan.name: [c.cell_id for c in plan.cells]},  # for the leaderboard's missing note
            )
        executor = _executor(args, device, threads)
        counts = run_plan(plan, registry, store, device, fresh=args.fresh, progress=not args.quiet, executor=executor)
        board = leaderboard.render(out)
        tally = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        print(f"{plan.name}: {tally}; leaderboard: {board}")
        print("\n".join(summary.winners(out, plan.name)))
        failed += counts.get("failed", 0)
    return EXIT_FAILED if failed else EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    """Check each benchmark as ``run --dry-run`` does and each search as ``search`` does (plugins, options,
    metrics, data files, weights), each on its own so one missing dataset hides no other problem: a line per
    benchmark and search, ``ok`` on stdout or its error on stderr; exit 2 when any failed."""
    from collections.abc import Callable

    from harness.run.plan import plan_benchmark

    config = load_config(args.config)
    source = str(args.config)
    registry = _registry()
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

    device = _device(args.device)
    config = load_config(args.config)
    registry = _registry()
    found = search.resolve(config, args.search, registry, str(args.config))
    search.check_available(found, registry)
    out = Path(args.out) if args.out else under(Path("leaderboards"), f"search-{found.name}")
    check_out_folder(out, "--out" if args.out else "leaderboards")
    summary = search.run(found, registry, out, storage_spec=args.storage, trials=args.trials, workers=args.workers,
                         device=device, quiet=args.quiet, threads=args.threads)
    print(summary.text)
    return EXIT_OK if summary.ok else EXIT_FAILED


def cmd_list(args: argparse.Namespace) -> int:
    registry = _registry(warn=False)  # broken plugins are part of the listing itself
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
    print(tabulate([[r[c] for c in columns] for r in rows], headers=columns))
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

    taken = _registry(warn=False).names(args.kind)
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


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be >= 1")
    return value


def _thread_count(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return _positive(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; use a positive integer or auto") from None


THREADS_HELP = ("torch threads per worker process (default: auto: the free cores, those this process may use "
                "less the load, split between the workers; at least 1)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="harness", description="Benchmark priors for deep latent variable models.")
    parser.add_argument("--version", action="version", version=f"prior-harness {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="train and evaluate a benchmark's cells, then write its leaderboard",
                         description="Train and evaluate every cell of the chosen benchmarks (the default one "
                         "when none is named). Finished cells are skipped, interrupted cells resume from their "
                         "last checkpoint (a corrupt checkpoint is set aside and the cell retrained). Several runs "
                         "may share one --out: each cell trains once, and a run waits for the cells another is "
                         "running, so its exit status covers every cell. Exit status: 0 all done, 1 some cell "
                         "failed, 2 bad input.")
    run.add_argument("config", type=Path, help="benchmarks.yaml")
    run.add_argument("--benchmark", "-b", action="append", metavar="NAME", help="benchmark to run (repeatable)")
    run.add_argument("--out", metavar="DIR",
                     help="results folder (default: leaderboards/<benchmark>; DIR/<benchmark> for several)")
    run.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    run.add_argument("--fresh", action="store_true",
                     help="redo finished cells instead of skipping them, each once: an interrupted --fresh run "
                     "is continued by the same command (OUT/fresh-run.json), and --fresh runs started together "
                     "on one --out share the work")
    run.add_argument("--dry-run", action="store_true", help="check everything and list the cells; train nothing")
    run.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    run.add_argument("--executor", choices=["local", "pool", "ray"],
                     help="where cells run: local (in-process, sequential; the default for one worker), pool "
                     "(spawned processes, one fresh process per cell; the default for --workers > 1), ray")
    run.add_argument("--workers", type=_positive, default=1, metavar="N",
                     help="pool: parallel cells (on CPU the cores are split between them; with GPUs at most "
                     "one cell per GPU, or --cells-per-gpu)")
    run.add_argument("--cells-per-gpu", type=_positive, default=1, metavar="K",
                     help="let K small cells share each GPU (pool and ray)")
    run.add_argument("--ray-address", metavar="ADDR", help="join an existing Ray cluster (default: start a local one)")
    run.add_argument("--threads", type=_thread_count, default="auto", metavar="N|auto", help=THREADS_HELP)
    run.set_defaults(func=cmd_run)

    srch = sub.add_parser("search", help="an Optuna search (β, flow depth, ...) from the config's searches:",
                          description="Run trials of a search until its study holds the total wanted; each trial "
                          "is one cell trained and stored as `harness run` would. Rerun to continue the same study. "
                          "Exit status: 0 the study holds the trials wanted, 1 it does not (or none completed), "
                          "2 bad input.")
    srch.add_argument("config", type=Path, help="benchmarks.yaml")
    srch.add_argument("--search", "-s", metavar="NAME", help="which search (may be left out when there is one)")
    srch.add_argument("--trials", type=_positive, metavar="N",
                      help="total trials wanted in the study, counting those already there (default: the search's)")
    srch.add_argument("--workers", type=_positive, default=1, metavar="N",
                      help="local worker processes sharing the study (on CPU the cores are split between them)")
    srch.add_argument("--storage", metavar="URL|PATH",
                      help="a journal file path (default: OUT/study.journal) or a database URL such as "
                      "postgresql://user:password@host/db, for workers on several machines")
    srch.add_argument("--out", metavar="DIR", help="results folder (default: leaderboards/search-<name>)")
    srch.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default: auto)")
    srch.add_argument("--quiet", "-q", action="store_true", help="no line per trial")
    srch.add_argument("--threads", type=_thread_count, default="auto", metavar="N|auto", help=THREADS_HELP)
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

    board = sub.add_parser("leaderboard", help="re-render results.csv and leaderboard.md from a results folder")
    board.add_argument("dir", help="a folder written by `harness run` (e.g. leaderboards/quick)")
    board.set_defaults(func=cmd_leaderboard)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except ConfigError as exc:
        print(exc.render(), file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # `harness run --dry-run | head`: the reader left, nothing is wrong
        sys.stderr.close()
        return EXIT_OK
    except KeyboardInterrupt:
        print(_interrupted(sys.argv[1:] if argv is None else list(argv)), file=sys.stderr)
        return 130


def _interrupted(argv: list[str]) -> str:
    """What Ctrl-C leaves behind, and the exact command that picks up from there."""
    command = shlex.join(["harness", *argv])
    text = f"interrupted: finished cells are stored; to resume, run the same command again:\n  {command}"
    if argv[:1] == ["run"] and "--fresh" in argv:
        text += ("\n  keep --fresh: it continues this fresh run and keeps the cells it already redid "
                 "(without --fresh, the cells it has not redone yet would keep their older results)")
    return text


if __name__ == "__main__":
    raise SystemExit(main())
