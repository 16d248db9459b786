"""``not_worse`` claims (non-inferiority): the ``better`` test run the other way round. Equal within noise holds, a
clearly worse side does not, in either metric direction, with the p-value of the test for "worse"; without a ``b``
side the config is refused with one error line."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from scipy import stats

from harness.cli import main
from harness.report.claims import check, claims_section

NOT_WORSE = {"text": "a is not worse than b", "kind": "not_worse", "metric": "fid",
             "a": {"model": "a"}, "b": {"model": "b"}}  # fmt: skip


def _frame(a_values: list[float], b_values: list[float], b_seeds: list[int] | None = None) -> pd.DataFrame:
    """Per-seed rows of side a (model "a") and side b (model "b") for the metric ``fid``."""
    rows = [{"model": "a", "prior": "p", "regularizer": "kl", "beta": 0.0, "seed": s, "metric": "fid", "value": v}
            for s, v in enumerate(a_values)]  # fmt: skip
    seeds = range(len(b_values)) if b_seeds is None else b_seeds
    rows += [{"model": "b", "prior": "p", "regularizer": "kl", "beta": 1.0, "seed": s, "metric": "fid", "value": v}
             for s, v in zip(seeds, b_values)]  # fmt: skip
    return pd.DataFrame(rows)


def test_sides_equal_within_noise_hold_with_the_paired_p_value_of_the_test_for_worse():
    a, b = [1.0, 1.2, 0.9, 1.1], [1.05, 1.1, 1.0, 1.05]
    _, measured, verdict = check(NOT_WORSE, _frame(a, b), {"fid": "min"})
    # "a worse" for a minimised metric: b is lower.
    p = stats.ttest_rel(b, a, alternative="less").pvalue
    assert p > 0.05
    assert verdict == f"holds: not worse (test for worse: one-sided paired t-test over 4 seeds p = {p:.3g})"
    assert measured.startswith("a fid: 1.05 ± ")


def test_a_clearly_worse_does_not_hold_in_either_metric_direction():
    a, b = [2.0, 2.2, 1.9, 2.1], [1.0, 1.1, 0.9, 1.05]
    _, _, higher_is_worse = check(NOT_WORSE, _frame(a, b), {"fid": "min"})
    p = stats.ttest_rel(b, a, alternative="less").pvalue
    assert p < 0.05
    assert higher_is_worse == f"does not hold: worse (test for worse: one-sided paired t-test over 4 seeds p = {p:.3g})"
    # For a maximised metric the same numbers make b the worse side, so a is not worse.
    _, _, lower_is_worse = check(NOT_WORSE, _frame(a, b), {"fid": "max"})
    assert lower_is_worse.startswith("holds: not worse (test for worse: ")


def test_a_clearly_better_holds_where_the_better_claim_is_supported():
    a, b = [1.0, 1.1, 0.9, 1.05], [2.0, 2.2, 1.9, 2.1]
    better = {**NOT_WORSE, "kind": "better"}
    assert check(better, _frame(a, b), {"fid": "min"})[2].startswith("supported (")
    assert check(NOT_WORSE, _frame(a, b), {"fid": "min"})[2].startswith("holds: not worse (")


def test_sides_with_different_seeds_are_tested_for_worse_by_welch_and_five_pairs_add_wilcoxon():
    a, b = [2.0, 2.2, 1.9], [1.0, 1.1, 0.9]
    _, _, verdict = check(NOT_WORSE, _frame(a, b, b_seeds=[3, 4, 5]), {"fid": "min"})
    p = stats.ttest_ind(b, a, equal_var=False, alternative="less").pvalue
    assert verdict == f"does not hold: worse (test for worse: one-sided Welch p = {p:.3g})"
    a, b = [1.4, 2.3, 3.5, 4.2, 5.6], [1.0, 2.0, 3.0, 4.0, 5.0]
    _, _, verdict = check(NOT_WORSE, _frame(a, b), {"fid": "min"})
    w = stats.wilcoxon(b, a, alternative="less").pvalue
    assert verdict.startswith("does not hold: worse") and verdict.endswith(f"; Wilcoxon signed-rank p = {w:.3g})")


def test_one_seed_a_side_is_untested_and_a_missing_side_not_measured():
    assert check(NOT_WORSE, _frame([2.0], [1.0]), {"fid": "min"})[2] == "untested: worse in mean"
    assert check(NOT_WORSE, _frame([1.0], [2.0]), {"fid": "min"})[2] == "untested: not worse in mean"
    assert check(NOT_WORSE, _frame([1.0, 1.1], []), {"fid": "min"})[2] == "not measured"


def test_claims_section_explains_not_worse_and_lists_its_verdict():
    section = claims_section([NOT_WORSE], _frame([2.0, 2.2, 1.9, 2.1], [1.0, 1.1, 0.9, 1.05]), {"fid": "min"})
    assert "A *not worse* claim runs the test the other way round" in section
    assert "| a is not worse than b " in section and "does not hold: worse" in section


def test_a_not_worse_claim_without_side_b_is_a_config_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    path = tmp_path / "bench.yaml"
    path.write_text(
        "benchmarks:\n  b:\n    datasets: [digits]\n    priors: [gaussian]\n    regularizers: [kl]\n"
        "    evaluators: {reconstruction: {}}\n"
        "    claims: [{text: t, kind: not_worse, metric: reconstruction.mse, a: {beta: 0}}]\n",
        encoding="utf-8",
    )
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines()[0] == f"error: {path}: benchmarks.b.claims[0]: a 'not_worse' claim needs both sides a and b"
