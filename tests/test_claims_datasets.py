"""A claim side may name a dataset (of a benchmark with several): it then compares only that dataset's cells, and a
dataset the benchmark does not have is a config error."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from harness.cli import main
from harness.report.claims import check


def _frame() -> pd.DataFrame:
    """Model a beats b on rings, loses on moons (fid, lower is better), 3 seeds each."""
    rows = []
    for dataset, a_value, b_value in (("rings", 1.0, 2.0), ("moons", 3.0, 2.0)):
        for seed in range(3):
            for model, value in (("a", a_value), ("b", b_value)):
                rows.append({"dataset": dataset, "model": model, "prior": "p", "regularizer": "none", "beta": None,
                             "seed": seed, "metric": "fid", "value": value + 0.01 * seed * (model == "a")})
    return pd.DataFrame(rows)


@pytest.mark.parametrize(("dataset", "verdict"), [("rings", "supported"), ("moons", "not supported")])
def test_a_claim_on_one_dataset_compares_only_its_cells(dataset, verdict):
    claim = {"text": "t", "kind": "better", "metric": "fid", "a": {"dataset": dataset, "model": "a"},
             "b": {"dataset": dataset, "model": "b"}}
    _, measured, got = check(claim, _frame(), {"fid": "min"})
    assert got.startswith(verdict) and "(n=3)" in measured and measured.startswith(f"{dataset} a fid")


def test_a_conditional_dataset_is_selected_by_its_name(tmp_path: Path):
    frame = _frame().replace({"dataset": {"rings": "rings (edges)"}})
    claim = {"text": "t", "kind": "better", "metric": "fid", "a": {"dataset": "rings", "model": "a"},
             "b": {"dataset": "rings", "model": "b"}}
    assert check(claim, frame, {"fid": "min"})[2].startswith("supported")


def test_an_unknown_dataset_in_a_claim_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "bench.yaml"
    path.write_text(
        "benchmarks:\n  b:\n    datasets: [digits]\n    priors: [gaussian]\n    regularizers: [kl]\n"
        "    evaluators: {reconstruction: {}}\n"
        "    claims: [{text: t, kind: better, metric: reconstruction.mse, a: {dataset: digit}, b: {beta: 1}}]\n",
        encoding="utf-8",
    )
    assert main(["validate", str(path), "--config-only"]) == 2
    err = capsys.readouterr().err.splitlines()[0]
    assert err.startswith(f"error: {path}: benchmarks.b.claims[0].a.dataset: unknown dataset 'digit' (did you mean 'digits'?)")
