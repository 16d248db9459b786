"""``harness report DIR``: the interactive HTML page of a results folder (``index.html``), drawn again from its
stored results without touching leaderboard.md or the figures."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.cli.common import EXIT_OK
from harness.config import ConfigError


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report import html

    out = Path(args.dir)
    if not (out / "cells").is_dir():
        raise ConfigError(str(out), "no stored results here (expected a cells/ folder written by `harness run`)")
    page = html.render(out)
    print(page)
    print(f"open it in a browser (it needs no network): {page.resolve().as_uri()}")
    return EXIT_OK


def add_parser(sub: Any) -> None:
    report = sub.add_parser(
        "report", help="write a results folder's interactive HTML page (index.html)",
        description="Write DIR/index.html from the results stored in DIR: the leaderboard as a table you can sort "
        "by any metric and filter by dataset, prior, regularizer and β; a chart of the chosen metric against β; "
        "the claims with their verdicts; the figures; failed, skipped and pruned cells with their reasons; "
        "provenance; and a drawer per cell with its loss curves, samples and config. `harness run` and `harness "
        "leaderboard` write it too. It works offline, from a file:// URL; keep it in DIR, whose figures it shows.")
    report.add_argument("dir", help="a folder written by `harness run` (e.g. leaderboards/quick)")
    report.set_defaults(func=cmd_report)
