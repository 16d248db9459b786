"""Check a benchmark's claims (``claims:`` in benchmarks.yaml) against the measured numbers.

Each claim compares two groups of per-seed values with a one-sided test in the metric's better direction. Where
both sides hold one value per seed for the same seeds, the cells are paired by seed (each seed has its own data
order, initialisation and FID classifier), so the test is a paired t-test, with Wilcoxon's signed-rank test beside
it when there are at least ``WILCOXON_MIN`` pairs; otherwise it is Welch's unpaired t-test. The verdict says what
the data supports, never more: with few seeds a real effect can read "not significant", and that is what is
reported, with the test that ran.

A ``not_worse`` claim (non-inferiority: "a is not worse than b") runs the same test the other way round, asking
whether b beats a. It holds when that test is not significant and fails when it is. "Not worse" means "not shown
worse at this many seeds": the test has no margin, so a small loss can go unseen.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
from scipy import stats

ALPHA = 0.05
#: Below 5 pairs the one-sided signed-rank test cannot reach p < 0.05 (its smallest p is 2^-n), so it is not shown.
WILCOXON_MIN = 5


def _select(frame: pd.DataFrame, side: Mapping[str, Any], metric: str) -> pd.DataFrame:
    rows = frame[frame["metric"] == metric]
    if side.get("dataset") is not None:
        # The frame names data by their label: ``fashion-mnist (edges)`` for a conditional dataset.
        label = rows["dataset"].astype(str)
        rows = rows[(label == side["dataset"]) | label.str.startswith(f"{side['dataset']} (")]
    for key, column in (("model", "model"), ("prior", "prior"), ("regularizer", "regularizer")):
        if side.get(key) is not None:
            rows = rows[rows[column] == side[key]]
    if side.get("beta") is not None:
        beta = pd.to_numeric(rows["beta"], errors="coerce")
        rows = rows[(beta - float(side["beta"])).abs() < 1e-12]
    return rows


def _describe(side: Mapping[str, Any], metric: str) -> str:
    parts = [str(side[k]) for k in ("dataset", "model", "prior", "regularizer") if side.get(k) is not None]
    if side.get("beta") is not None:
        parts.append(f"β={float(side['beta']):g}")
    return f"{' '.join(parts) or 'all'} {metric}"


def _summary(values: pd.Series) -> str:
    if len(values) > 1:
        return f"{values.mean():.4g} ± {values.std():.2g} (n={len(values)})"
    return f"{values.mean():.4g} (n={len(values)})"


def paired_by_seed(a_rows: pd.DataFrame, b_rows: pd.DataFrame) -> tuple[pd.Series, pd.Series] | None:
    """Both sides' values indexed and aligned by seed, when each side holds exactly one value per seed and the
    same seeds; None when the sides cannot be paired (a seed missing on one side, or a side pooling several
    configurations)."""
    if "seed" not in a_rows or "seed" not in b_rows or a_rows.empty:
        return None
    a, b = a_rows.set_index("seed")["value"], b_rows.set_index("seed")["value"]
    if a.index.has_duplicates or b.index.has_duplicates or set(a.index) != set(b.index):
        return None
    return a.sort_index(), b.sort_index()


def compare(better: pd.Series, worse: pd.Series, direction: str, paired: bool = False) -> tuple[str, float | None]:
    """Verdict that ``better`` beats ``worse`` (lower is better when ``direction`` is "min"), and the p-value.

    ``paired``: the two series are aligned pairs (``paired_by_seed``) and a paired t-test runs; else Welch's.
    """
    if better.empty or worse.empty:
        return "not measured", None
    agrees = better.mean() < worse.mean() if direction == "min" else better.mean() > worse.mean()
    spread = (better.values - worse.values).std() if paired else max(better.std(), worse.std())
    if len(better) < 2 or len(worse) < 2 or spread == 0:
        return ("direction agrees (too few seeds to test)" if agrees else "not supported"), None
    alternative = "less" if direction == "min" else "greater"
    if paired:
        p = float(stats.ttest_rel(better.values, worse.values, alternative=alternative).pvalue)
    else:
        p = float(stats.ttest_ind(better, worse, equal_var=False, alternative=alternative).pvalue)
    if math.isnan(p):
        return ("direction agrees (untestable spread)" if agrees else "not supported"), None
    if p < ALPHA:
        return "supported", p
    return ("direction agrees, not significant" if agrees else "not supported"), p


def _wilcoxon(better: pd.Series, worse: pd.Series, direction: str) -> float | None:
    """One-sided signed-rank p-value of paired series, or None below WILCOXON_MIN pairs or with no differences."""
    if len(better) < WILCOXON_MIN or bool((better.values == worse.values).all()):
        return None
    alternative = "less" if direction == "min" else "greater"
    return float(stats.wilcoxon(better.values, worse.values, alternative=alternative).pvalue)


@dataclass(frozen=True)
class Outcome:
    """What ``compare`` concluded, its p-value (None when no test ran), and the test(s) that ran, for the table."""

    verdict: str
    p: float | None
    test: str


def _tested(better_rows: pd.DataFrame, worse_rows: pd.DataFrame, direction: str) -> Outcome:
    """Whether the rows ``better_rows`` beat ``worse_rows``, paired by seed when they can be."""
    pairs = paired_by_seed(better_rows, worse_rows)
    if pairs is None:
        verdict, p = compare(better_rows["value"], worse_rows["value"], direction)
        return Outcome(verdict, p, "" if p is None else f"one-sided Welch p = {p:.3g}")
    verdict, p = compare(*pairs, direction, paired=True)
    if p is None:
        return Outcome(verdict, p, "")
    test = f"one-sided paired t-test over {len(pairs[0])} seeds p = {p:.3g}"
    w = _wilcoxon(*pairs, direction)
    return Outcome(verdict, p, test if w is None else f"{test}; Wilcoxon signed-rank p = {w:.3g}")


def _not_worse(b_beats_a: Outcome) -> tuple[str, str]:
    """(verdict, test) of "a is not worse than b" from the test that b beats a: it holds unless that is significant."""
    if b_beats_a.verdict == "not measured":
        return b_beats_a.verdict, ""
    test = f"test for worse: {b_beats_a.test}" if b_beats_a.test else ""
    if b_beats_a.verdict == "supported":
        return "does not hold: worse", test
    if b_beats_a.p is not None:
        return "holds: not worse", test
    # No test ran (too few seeds, or no spread): report only which way the means point.
    b_better_in_mean = b_beats_a.verdict.startswith("direction agrees")
    return ("untested: worse in mean" if b_better_in_mean else "untested: not worse in mean"), test


def _compared_sides(
    claim: Mapping[str, Any], frame: pd.DataFrame, direction: str, metric_a: str
) -> tuple[str, str, str]:
    """(measured, verdict, test) of a two-sided claim: ``better``, or ``not_worse`` tested the other way round."""
    a, b = claim["a"], claim["b"]
    metric_b = b.get("metric") or claim["metric"]
    rows_a, rows_b = _select(frame, a, metric_a), _select(frame, b, metric_b)
    va, vb = rows_a["value"], rows_b["value"]
    if claim["kind"] == "better":
        outcome = _tested(rows_a, rows_b, direction)
        verdict, test = outcome.verdict, outcome.test
    else:
        verdict, test = _not_worse(_tested(rows_b, rows_a, direction))
    measured = f"{_describe(a, metric_a)}: {_summary(va) if len(va) else '–'}; " \
               f"{_describe(b, metric_b)}: {_summary(vb) if len(vb) else '–'}"
    return measured, verdict, test


def check(claim: Mapping[str, Any], frame: pd.DataFrame, directions: Mapping[str, str]) -> list[str]:
    """One table row: the claim, what was measured, the verdict (with p-value)."""
    a = claim["a"]
    metric_a = a.get("metric") or claim["metric"]
    direction = directions.get(metric_a, "min")
    if claim["kind"] in ("better", "not_worse"):
        measured, verdict, test = _compared_sides(claim, frame, direction, metric_a)
    else:
        rows = _select(frame, {**a, "beta": None}, metric_a)
        rows = rows.assign(beta=pd.to_numeric(rows["beta"], errors="coerce")).dropna(subset=["beta"])
        betas = sorted(rows["beta"].unique())
        if len(betas) < 2:
            return [claim["text"], "fewer than two β values measured", "not measured"]
        outcome = _tested(rows[rows["beta"] == betas[0]], rows[rows["beta"] == betas[-1]], direction)
        verdict, test = outcome.verdict, outcome.test
        rho = stats.spearmanr(rows["beta"], rows["value"]).statistic
        means = ", ".join(f"β={b:g}: {rows[rows['beta'] == b]['value'].mean():.4g}" for b in betas)
        measured = f"{_describe(a, metric_a)} by β: {means}; Spearman ρ(β, {metric_a}) = {rho:.2f}"
    if test:
        verdict = f"{verdict} ({test})"
    return [claim["text"], measured, verdict]


def claims_section(claims: list[Mapping[str, Any]], frame: pd.DataFrame, directions: Mapping[str, str]) -> str:
    if not claims:
        return ""
    from tabulate import tabulate

    rows = [check(claim, frame, directions) for claim in claims]
    # Said only where such a claim is made, so leaderboards without one read as they did.
    not_worse = (
        "A *not worse* claim runs the test the other way round (does the second side beat the first?) and holds "
        "unless that test is significant: not shown worse at this many seeds, with no margin. "
        if any(claim.get("kind") == "not_worse" for claim in claims) else ""
    )
    intro = (
        "Each claim of the paper, checked against this run's numbers by a one-sided test over seeds "
        f"(α = {ALPHA}) in the metric's better direction: a paired t-test where both sides share their seeds "
        f"(cells of one seed share data order and FID classifier), with Wilcoxon's signed-rank test beside it from "
        f"{WILCOXON_MIN} pairs, and Welch's t-test where they do not. Each verdict names the test that ran. "
        f"{not_worse}The verdict reports the data, whatever the paper says.\n\n"
    )
    return "## Claims\n\n" + intro + tabulate(rows, headers=["claim", "measured", "verdict"], tablefmt="github") + "\n"
