"""analysis.stats: every number checked against an independent computation.

Welch and paired t by their textbook formulas, power by the noncentral t of scipy.stats.nct (not
statsmodels, which the module uses), TOST by writing out the two one-sided t-tests.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from analysis import stats

# Seed repeats in accuracy fractions; `after` is `before` run with a method on the same 5 seeds.
BEFORE = [0.912, 0.905, 0.918, 0.909, 0.915]
AFTER = [0.931, 0.921, 0.930, 0.925, 0.936]
SHORT = [0.940, 0.925, 0.951, 0.933]  # 4 runs, other spread: Welch with n_a ≠ n_b


# ---------------------------------------------------------------------------------------------
# Independent computations

def welch_by_hand(a, b):
    a, b = np.asarray(a), np.asarray(b)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    diff = a.mean() - b.mean()
    p = 2 * scipy_stats.t.sf(abs(diff / se), df)
    half = scipy_stats.t.ppf(0.975, df) * se
    return diff, diff - half, diff + half, p, se, df


def paired_by_hand(a, b):
    d = np.asarray(a) - np.asarray(b)
    n = len(d)
    se = d.std(ddof=1) / math.sqrt(n)
    p = 2 * scipy_stats.t.sf(abs(d.mean() / se), n - 1)
    half = scipy_stats.t.ppf(0.975, n - 1) * se
    return d.mean(), d.mean() - half, d.mean() + half, p, se, n - 1


def nct_power(noncentrality, df, alpha=0.05):
    """Two-sided power of a t-test: P(|T| > t_crit) with T ~ noncentral t(df, nc)."""
    critical = scipy_stats.t.ppf(1 - alpha / 2, df)
    return (scipy_stats.nct.sf(critical, df, noncentrality)
            + scipy_stats.nct.cdf(-critical, df, noncentrality))


def tost_by_hand(diff, se, df, margin):
    p_above_lower = scipy_stats.t.sf((diff + margin) / se, df)  # H0: Δ ≤ −margin
    p_below_upper = scipy_stats.t.cdf((diff - margin) / se, df)  # H0: Δ ≥ +margin
    return max(p_above_lower, p_below_upper)


# ---------------------------------------------------------------------------------------------

def test_welch_difference_interval_and_p_by_hand():
    d = stats.welch(SHORT, BEFORE)
    diff, low, high, p, se, df = welch_by_hand(SHORT, BEFORE)
    assert (d.kind, d.n_a, d.n_b) == ("welch", 4, 5)
    assert d.diff == pytest.approx(diff, abs=1e-12)
    assert (d.low, d.high) == pytest.approx((low, high), rel=1e-9)
    assert d.p == pytest.approx(p, rel=1e-9)
    assert (d.se, d.df) == pytest.approx((se, df), rel=1e-9)
    assert (d.sd_a, d.sd_b) == pytest.approx((np.std(SHORT, ddof=1), np.std(BEFORE, ddof=1)), rel=1e-12)


def test_paired_difference_interval_and_p_by_hand():
    d = stats.paired(AFTER, BEFORE)
    diff, low, high, p, se, df = paired_by_hand(AFTER, BEFORE)
    assert (d.kind, d.n_a, d.n_b, d.df) == ("paired", 5, 5, 4)
    assert d.diff == pytest.approx(diff, abs=1e-12)
    assert (d.low, d.high) == pytest.approx((low, high), rel=1e-9)
    assert d.p == pytest.approx(p, rel=1e-9)
    assert d.se == pytest.approx(se, rel=1e-9)
    assert d.sd == pytest.approx(np.std(np.subtract(AFTER, BEFORE), ddof=1), rel=1e-12)
    # pairing removes the seed-to-seed spread the two share: a tighter interval than Welch's
    assert d.high - d.low < stats.welch(AFTER, BEFORE).high - stats.welch(AFTER, BEFORE).low
    # a pair with a missing value is dropped as a pair
    dropped = stats.paired(AFTER + [float("nan")], BEFORE + [0.9])
    assert dropped.n_a == 5 and dropped.p == pytest.approx(p, rel=1e-12)
    with pytest.raises(ValueError):
        stats.paired(AFTER, BEFORE[:4])


def test_welch_mde_has_80_percent_power_by_noncentral_t():
    d = stats.welch(SHORT, BEFORE)
    _, _, _, _, se, df = welch_by_hand(SHORT, BEFORE)
    assert d.sd == pytest.approx(se / math.sqrt(1 / 4 + 1 / 5), rel=1e-12)  # the documented effective sd
    assert nct_power(d.mde / se, df) == pytest.approx(0.80, abs=0.005)
    assert nct_power(0.9 * d.mde / se, df) < 0.78  # and not trivially: a smaller Δ has less power
    # equal n, equal sds: the Welch df is the pooled 2n − 2, so this is statsmodels' textbook answer
    a, b = [0.90, 0.91, 0.92, 0.93], [0.80, 0.82, 0.81, 0.83]
    equal = stats.welch(a, b)
    assert equal.df == pytest.approx(6)
    from statsmodels.stats.power import TTestIndPower
    effect = TTestIndPower().solve_power(effect_size=None, nobs1=4, ratio=1.0, alpha=0.05, power=0.8)
    assert equal.mde == pytest.approx(effect * np.std(a, ddof=1), rel=1e-6)


def test_paired_mde_has_80_percent_power_by_noncentral_t():
    d = stats.paired(AFTER, BEFORE)
    sd = np.std(np.subtract(AFTER, BEFORE), ddof=1)
    assert nct_power(d.mde * math.sqrt(5) / sd, 4) == pytest.approx(0.80, abs=0.005)


def test_tost_p_is_the_larger_of_two_one_sided_t_tests():
    for margin in (0.005, 0.02):
        welch = stats.welch(SHORT, BEFORE, margin=margin)
        diff, _, _, _, se, df = welch_by_hand(SHORT, BEFORE)
        assert welch.p_tost == pytest.approx(tost_by_hand(diff, se, df, margin), rel=1e-9)
        pair = stats.paired(AFTER, BEFORE, margin=margin)
        diff, _, _, _, se, df = paired_by_hand(AFTER, BEFORE)
        assert pair.p_tost == pytest.approx(tost_by_hand(diff, se, df, margin), rel=1e-9)
    # another margin after the fact gives what computing with it from the start gives
    moved = stats.with_margin(stats.welch(SHORT, BEFORE), 0.02)
    assert moved.p_tost == pytest.approx(stats.welch(SHORT, BEFORE, margin=0.02).p_tost, rel=1e-9)
    assert moved.seeds_needed == stats.welch(SHORT, BEFORE, margin=0.02).seeds_needed


def test_verdict_clearly_better_and_worse():
    better = stats.welch(AFTER, BEFORE)
    assert better.p < 0.01 and stats.verdict(better, better.p) == "better"
    worse = stats.welch(BEFORE, AFTER)
    assert stats.verdict(worse, worse.p) == "worse"
    # Holm decides: a nominal p < α that does not survive adjustment is not "better"
    assert not stats.verdict(better, 0.2).startswith("better")


def test_verdict_clearly_equivalent():
    offsets = np.array([-0.0004, 0.0003, -0.0001, 0.0002, 0.0, 0.0004, -0.0003, 0.0001, -0.0002, 0.0])
    a, b = 0.8 + offsets, 0.8001 + offsets[::-1]
    d = stats.welch(a, b)
    diff, _, _, _, se, df = welch_by_hand(a, b)
    assert d.p > 0.05 and d.p_tost < 1e-10
    assert stats.verdict(d, d.p) == "equivalent within ±0.5 pp"
    assert stats.verdict(d, d.p, margin=0.01) == "equivalent within ±1 pp"
    assert stats.verdict(stats.paired(a, b), 1.0) == "equivalent within ±0.5 pp"


def test_verdict_inconclusive_with_seeds_needed_by_noncentral_t():
    a, b = [0.84, 0.90, 0.78], [0.80, 0.85, 0.78]
    d = stats.welch(a, b)
    assert d.p > 0.4 and d.p_tost > 0.05
    n = int(d.seeds_needed)
    assert stats.verdict(d, d.p) == f"inconclusive (needs ≈ {n} seeds)"
    # by hand: the smallest N per side with ≥ 80% power at Δ = max(|Δ|, margin), the observed sds
    # and the Welch df for N runs a side
    target = max(abs(np.mean(a) - np.mean(b)), 0.005)
    va, vb = np.var(a, ddof=1), np.var(b, ddof=1)

    def power(n):
        se = math.sqrt((va + vb) / n)
        df = (va + vb) ** 2 * (n - 1) / (va ** 2 + vb ** 2)
        return nct_power(target / se, df)

    assert power(n) >= 0.8 > power(n - 1)
    assert 3 < n < 1000
    # far too noisy for the margin: capped
    noisy = stats.welch([0.5, 0.9, 0.1], [0.1, 0.9, 0.5])
    assert noisy.seeds_needed == stats.SEEDS_CAP
    assert stats.verdict(noisy, noisy.p) == "inconclusive (needs ≥1000 seeds)"


def test_degenerate_comparisons_are_not_testable():
    one = stats.welch([0.9], [0.8, 0.85])
    assert math.isnan(one.p) and math.isnan(one.mde) and math.isnan(one.p_tost)
    assert stats.verdict(one, math.nan) == "not testable (needs at least 2 runs on each side)"
    flat = stats.welch([0.9, 0.9, 0.9], [0.9, 0.9, 0.9])  # Δ = 0 but no spread: not called equivalent
    assert flat.diff == 0 and (flat.low, flat.high) == (0, 0)
    assert stats.verdict(flat, math.nan).startswith("not testable (every run of both sides scored the same")
    same = stats.paired([0.9, 0.8, 0.7], [0.89, 0.79, 0.69])
    assert stats.verdict(same, math.nan).startswith("not testable (every paired difference is the same")
    assert stats.verdict(stats.paired([0.9], [0.8]), math.nan) == "not testable (needs at least 2 matched pairs)"
    # one side without spread (e.g. every run diverged and scored chance) is still a Welch test
    failed = stats.welch([0.1, 0.1, 0.1], BEFORE)
    diff, low, high, p, se, df = welch_by_hand([0.1, 0.1, 0.1], BEFORE)
    assert failed.p == pytest.approx(p, rel=1e-9) and stats.verdict(failed, failed.p) == "worse"
    assert nct_power(failed.mde / se, df) == pytest.approx(0.80, abs=0.005)


def test_holm_mean_ci_and_nominal_words():
    assert stats.holm([0.01, float("nan"), 0.04, 0.03]) == pytest.approx([0.03, float("nan"), 0.06, 0.06], nan_ok=True)
    assert stats.mean_ci([0.5]).n == 1 and math.isnan(stats.mean_ci([0.5]).half_width)
    nominal = stats.Difference(5, 5, -0.01, -0.02, -0.001, 0.03, 8.0, -2.5)
    assert stats.nominal_verdict(nominal, 0.09) == "no significant difference after Holm correction (nominally worse)"
    assert stats.nominal_verdict(nominal, 0.01) == "significantly worse"


def test_fill_failed_scores_chance_and_counts():
    filled = stats.fill_failed([0.91, float("nan"), 0.88, 0.2], [True, False, True, False], chance=0.1)
    assert filled == stats.Filled([0.91, 0.1, 0.88, 0.1], 2, 0.1)
    # a run marked ok without a value counts as failed too
    assert stats.fill_failed([0.9, float("nan")], [True, True], 0.1).n_failed == 1
    with pytest.raises(ValueError):
        stats.fill_failed([0.9], [True, False], 0.1)
