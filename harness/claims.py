"""Check a benchmark's claims (``claims:`` in benchmarks.yaml) against the measured numbers.

Each claim compares two groups of per-seed values with a one-sided Welch t-test in the metric's better
direction. The verdict says what the data supports, never more: with few seeds a real effect can read
"not significant", and that is what is reported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd
from scipy import stats

ALPHA = 0.05


def _select(frame: pd.DataFrame, side: Mapping[str, Any], metric: str) -> pd.DataFrame:
    rows = frame[frame["metric"] == metric]
    for key, column in (("model", "model"), ("prior", "prior"), ("regularizer", "regularizer")):
        if side.get(key) is not None:
            rows = rows[rows[column] == side[key]]
    if side.get("beta") is not None:
        beta = pd.to_numeric(rows["beta"], errors="coerce")
        rows = rows[(beta - float(side["beta"])).abs() < 1e-12]
    return rows


def _describe(side: Mapping[str, Any], metric: str) -> str:
    parts = [str(side[k]) for k in ("model", "prior", "regularizer") if side.get(k) is not None]
    if side.get("beta") is not None:
        parts.append(f"β={float(side['beta']):g}")
    return f"{' '.join(parts) or 'all'} {metric}"


def _summary(values: pd.Series) -> str:
    if len(values) > 1:
        return f"{values.mean():.4g} ± {values.std():.2g} (n={len(values)})"
    return f"{values.mean():.4g} (n={len(values)})"


def compare(better: pd.Series, worse: pd.Series, direction: str) -> tuple[str, float | None]:
    """Verdict that ``better`` beats ``worse`` (lower is better when ``direction`` is "min"), and the p-value."""
    if better.empty or worse.empty:
        return "not measured", None
    agrees = better.mean() < worse.mean() if direction == "min" else better.mean() > worse.mean()
    if len(better) < 2 or len(worse) < 2 or (better.std() == 0 and worse.std() == 0):
        return ("direction agrees (too few seeds to test)" if agrees else "not supported"), None
    alternative = "less" if direction == "min" else "greater"
    p = float(stats.ttest_ind(better, worse, equal_var=False, alternative=alternative).pvalue)
    if math.isnan(p):
        return ("direction agrees (untestable spread)" if agrees else "not supported"), None
    if p < ALPHA:
        return "supported", p
    return ("direction agrees, not significant" if agrees else "not supported"), p


def check(claim: Mapping[str, Any], frame: pd.DataFrame, directions: Mapping[str, str]) -> list[str]:
    """One table row: the claim, what was measured, the verdict (with p-value)."""
    a = claim["a"]
    metric_a = a.get("metric") or claim["metric"]
    direction = directions.get(metric_a, "min")
    if claim["kind"] == "better":
        b = claim["b"]
        metric_b = b.get("metric") or claim["metric"]
        va = _select(frame, a, metric_a)["value"]
        vb = _select(frame, b, metric_b)["value"]
        verdict, p = compare(va, vb, direction)
        measured = f"{_describe(a, metric_a)}: {_summary(va) if len(va) else '–'}; " \
                   f"{_describe(b, metric_b)}: {_summary(vb) if len(vb) else '–'}"
    else:
        rows = _select(frame, {**a, "beta": None}, metric_a)
        rows = rows.assign(beta=pd.to_numeric(rows["beta"], errors="coerce")).dropna(subset=["beta"])
        betas = sorted(rows["beta"].unique())
        if len(betas) < 2:
            return [claim["text"], "fewer than two β values measured", "not measured"]
        lowest, highest = rows[rows["beta"] == betas[0]]["value"], rows[rows["beta"] == betas[-1]]["value"]
        verdict, p = compare(lowest, highest, direction)
        rho = stats.spearmanr(rows["beta"], rows["value"]).statistic
        means = ", ".join(f"β={b:g}: {rows[rows['beta'] == b]['value'].mean():.4g}" for b in betas)
        measured = f"{_describe(a, metric_a)} by β: {means}; Spearman ρ(β, {metric_a}) = {rho:.2f}"
    if p is not None:
        verdict = f"{verdict} (one-sided Welch p = {p:.3g})"
    return [claim["text"], measured, verdict]


def claims_section(claims: list[Mapping[str, Any]], frame: pd.DataFrame, directions: Mapping[str, str]) -> str:
    if not claims:
        return ""
    from tabulate import tabulate

    rows = [check(claim, frame, directions) for claim in claims]
    intro = (
        "Each claim of the paper, checked against this run's numbers: a one-sided Welch t-test over seeds "
        f"(α = {ALPHA}) in the metric's better direction. The verdict reports the data, whatever the paper says.\n\n"
    )
    return "## Claims\n\n" + intro + tabulate(rows, headers=["claim", "measured", "verdict"], tablefmt="github") + "\n"
