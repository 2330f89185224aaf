"""The statistics of the answer: mean ± 95% t interval, and a method against the baseline.

A difference is Welch's two-sample t-test (unequal variances, two-sided) with its 95% Welch
confidence interval of mean(method) − mean(baseline): seed repeats of two configs have no reason
to share a variance. Several methods are compared with one baseline, so p-values are also
Holm-adjusted over that family; a difference is called significant only when the adjusted p is
below ALPHA, which keeps the chance of any false "better than baseline" in the table at 5%.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
from scipy import stats

ALPHA = 0.05
CONFIDENCE = 0.95


@dataclasses.dataclass
class MeanCI:
    n: int
    mean: float
    sd: float
    half_width: float  # of the two-sided t interval; nan for n < 2

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width


@dataclasses.dataclass
class Difference:
    """mean(a) − mean(b) with Welch's t-test."""
    n_a: int
    n_b: int
    diff: float
    low: float
    high: float
    p: float  # two-sided; nan where the test is undefined (n < 2 or no variance at all)
    df: float
    statistic: float
    note: str = ""  # why p is nan


def mean_ci(values, confidence: float = CONFIDENCE) -> MeanCI:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    n = len(values)
    if n == 0:
        return MeanCI(0, math.nan, math.nan, math.nan)
    mean = float(values.mean())
    if n < 2:
        return MeanCI(1, mean, math.nan, math.nan)
    sd = float(values.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n))
    return MeanCI(n, mean, sd, half)


def welch(a, b, confidence: float = CONFIDENCE) -> Difference:
    """Welch's t-test of mean(a) − mean(b) and its confidence interval (scipy.stats.ttest_ind)."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    diff = float(a.mean() - b.mean()) if len(a) and len(b) else math.nan
    nan = math.nan
    if len(a) < 2 or len(b) < 2:
        return Difference(len(a), len(b), diff, nan, nan, nan, nan, nan, "needs at least 2 runs on each side")
    if a.std() == 0 and b.std() == 0:
        return Difference(len(a), len(b), diff, diff, diff, nan, nan, nan,
                          "every run of both sides scored the same: no variance to test against")
    with warnings.catch_warnings():  # near-identical samples: scipy warns, the numbers stand
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_ind(a, b, equal_var=False)
        interval = result.confidence_interval(confidence)
    return Difference(len(a), len(b), diff, float(interval.low), float(interval.high),
                      float(result.pvalue), float(result.df), float(result.statistic))


def holm(pvalues) -> list[float]:
    """Holm–Bonferroni adjusted p-values (nan entries are left out of the family and stay nan)."""
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full(len(p), math.nan)
    index = np.flatnonzero(np.isfinite(p))
    if len(index) == 0:
        return adjusted.tolist()
    order = index[np.argsort(p[index], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def verdict(difference: Difference, p_adjusted: float, alpha: float = ALPHA,
            better: str = "better", worse: str = "worse") -> str:
    """The words of the table's last column."""
    if not math.isfinite(difference.p):
        return f"not testable ({difference.note})" if difference.note else "not testable"
    direction = better if difference.diff > 0 else worse
    if math.isfinite(p_adjusted) and p_adjusted < alpha:
        return f"significantly {direction}"
    if difference.p < alpha:
        return f"no significant difference after Holm correction (nominally {direction})"
    return "no significant difference"


__all__ = ["ALPHA", "CONFIDENCE", "MeanCI", "Difference", "mean_ci", "welch", "holm", "verdict"]
