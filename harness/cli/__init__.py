"""The ``harness`` command: run | search | list | describe | validate | leaderboard | report | new-plugin.

Exit status: 0 every cell done (or skipped with a reason), 1 some cell failed, 2 bad input.

Several ``harness run`` processes may share one out folder: each cell is trained by one of them (a per-cell lock);
a run that meets a cell another is running waits for it and takes its outcome, so every run's exit status covers
every cell. ``--fresh`` runs on one folder form one fresh run (``OUT/fresh-run.json``): a cell is redone once,
and a ``--fresh`` rerun after an interruption continues it rather than starting over.

``common`` holds what the commands share, ``run`` the run command, ``describe`` a plugin's options, ``report``
the HTML page, ``commands`` the others.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

from harness import __version__
from harness.cli import commands, describe, report, run
from harness.cli.common import EXIT_BAD_INPUT, EXIT_OK, Parser
from harness.config import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="harness", description="Benchmark priors for deep latent variable models.")
    parser.add_argument("--version", action="version", version=f"prior-harness {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    run.add_parser(sub)
    commands.add_parsers(sub)
    describe.add_parser(sub)
    report.add_parser(sub)
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
