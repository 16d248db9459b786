"""``harness run``: train and evaluate a benchmark's cells where ``--executor`` says, then write its leaderboard."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    THREADS_HELP,
    choose_device,
    load_plugins,
    pack_choice,
    positive,
    thread_count,
)
from harness.config import ConfigError, choose_benchmarks, load_config
from harness.paths import check_out_folder, under

if TYPE_CHECKING:
    from harness.run.store import Store
    from harness.run.task import Executor


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
    from harness.run.tracking import TrackerSet
    from harness.run.store import Store

    device = choose_device(args.device)
    config = load_config(args.config)
    source = str(args.config)
    registry = load_plugins()
    names = choose_benchmarks(config, args.benchmark or [], source)
    # Every benchmark is checked (plugins, options, data files, weights) before any of them trains.
    extra = args.tracker or []
    plans = [plan_benchmark(name, config.benchmarks[name], registry, source, extra) for name in names]
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
        trackers = TrackerSet(registry, plan.trackers)
        trackers.call("start_run", plan.name, out, plan.config.model_dump(mode="json"))
        counts = run_plan(plan, registry, store, device, fresh=args.fresh, progress=not args.quiet, executor=executor,
                          pack=args.pack)
        board = leaderboard.render(out)
        trackers.call("end_run", plan.name, board)
        tally = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
        print(f"{plan.name}: {tally}; leaderboard: {board}")
        print("\n".join(summary.winners(out, plan.name)))
        failed += counts.get("failed", 0)
    return EXIT_FAILED if failed else EXIT_OK


def add_parser(sub: Any) -> None:
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
    run.add_argument("--workers", type=positive, default=1, metavar="N",
                     help="pool: parallel cells (on CPU the cores are split between them; with GPUs at most "
                     "one cell per GPU, or --cells-per-gpu)")
    run.add_argument("--cells-per-gpu", type=positive, default=1, metavar="K",
                     help="let K small cells share each GPU (pool and ray)")
    run.add_argument("--ray-address", metavar="ADDR", help="join an existing Ray cluster (default: start a local one)")
    run.add_argument("--threads", type=thread_count, default="auto", metavar="N|auto", help=THREADS_HELP)
    run.add_argument("--pack", type=pack_choice, default="off", metavar="K|auto|off",
                     help="train cells that differ only in seed and β as one vectorised model, K at most per pack "
                     "(auto: up to 16), when every plugin of theirs declares it can (the others train alone, and "
                     "the log says why); each is then evaluated and stored as an ordinary cell with its usual id, "
                     "its result noting packed: K. Packed members match lone training to float rounding, not bit "
                     "for bit: off (the default) reproduces stored results exactly")
    run.add_argument("--tracker", action="append", metavar="NAME",
                     help="also show the run to this tracker (repeatable; `harness list` shows them), with its "
                          "default options unless the benchmark's trackers: sets them")
    run.set_defaults(func=cmd_run)
