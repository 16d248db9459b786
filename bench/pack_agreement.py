"""How far a packed run's results are from an unpacked run's of the same benchmark, in units of the seed spread.

    harness run benchmarks.yaml --out runs/packed --pack auto
    python bench/pack_agreement.py runs/packed leaderboards/quick

For each cell trained packed (its result says ``packed: K``) and each metric: |packed − unpacked| divided by the
standard deviation over seeds of that configuration's unpacked values. Prints the largest ratio per metric and
whether every one is within the seed spread (ratio ≤ 1); the cells that trained alone in both must match exactly.
Exit status 1 when they do not.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd


def _results(out: Path) -> dict[str, dict[str, Any]]:
    found = (json.loads(p.read_text(encoding="utf-8")) for p in sorted(out.glob("cells/*/result.json")))
    return {r["cell"]["cell_id"]: r for r in found if r["status"] == "done"}


def _config(cell: dict[str, Any]) -> str:
    """The configuration a cell belongs to: its config less seed and id."""
    return json.dumps({k: v for k, v in cell.items() if k not in ("seed", "cell_id")}, sort_keys=True, default=str)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("packed", type=Path, help="results folder of the run with --pack")
    parser.add_argument("unpacked", type=Path, help="results folder of the same benchmark trained with --pack off")
    args = parser.parse_args()
    packed, unpacked = _results(args.packed), _results(args.unpacked)
    shared = sorted(set(packed) & set(unpacked))
    if not shared:
        print("error: the two folders share no finished cell", file=sys.stderr)
        return 2
    spread: dict[tuple[str, str], float] = {}
    by_config: dict[tuple[str, str], list[float]] = defaultdict(list)
    for result in unpacked.values():
        for metric, value in result["metrics"].items():
            by_config[(_config(result["cell"]), metric)].append(float(value))
    for key, values in by_config.items():
        spread[key] = float(pd.Series(values).std()) if len(values) > 1 else float("nan")

    worst: dict[str, float] = defaultdict(float)
    packed_cells = alone_cells = alone_mismatches = 0
    for cell_id in shared:
        a, b = packed[cell_id], unpacked[cell_id]
        if not a.get("packed"):
            alone_cells += 1
            alone_mismatches += a["metrics"] != b["metrics"]
            continue
        packed_cells += 1
        for metric, value in b["metrics"].items():
            std = spread[(_config(b["cell"]), metric)]
            delta = abs(float(a["metrics"][metric]) - float(value))
            worst[metric] = max(worst[metric], delta / std if std > 0 else (0.0 if delta == 0 else float("inf")))
    print(f"{len(shared)} cells in both: {packed_cells} trained packed, {alone_cells} alone in both")
    for metric in sorted(worst):
        print(f"  {metric:28s} largest |packed - unpacked| / seed std = {worst[metric]:.3g}")
    within = all(ratio <= 1.0 for ratio in worst.values())
    print(f"packed cells within the seed spread: {'yes' if within else 'NO'}; "
          f"cells trained alone identical: {'yes' if not alone_mismatches else f'NO ({alone_mismatches} differ)'}")
    return 0 if within and not alone_mismatches else 1


if __name__ == "__main__":
    raise SystemExit(main())
