"""analysis.stats: every number checked against an independent computation.

Welch and paired t by their textbook formulas, power by the noncentral t of scipy.stats.nct (not
statsmodels, which the module uses), TOST by writing out the two one-sided t-tests.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

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
    assert moved.seeds_for_equivalence == stats.welch(SHORT, BEFORE, margin=0.02).seeds_for_equivalence


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


def test_verdict_inconclusive_with_both_seed_counts_by_noncentral_t():
    a, b = [0.84, 0.90, 0.78], [0.80, 0.85, 0.78]
    d = stats.welch(a, b)
    assert d.p > 0.4 and d.p_tost > 0.05
    n = int(d.seeds_to_detect)
    # |Δ| = 3 pp lies beyond the ±0.5 pp margin: no number of seeds shows equivalence if Δ is as observed
    assert d.seeds_for_equivalence == math.inf
    assert stats.verdict(d, d.p) == (f"inconclusive (≈ {n} seeds per side would detect +3.00 pp; equivalence "
                                     f"within ±0.5 pp cannot be shown while |Δ| ≥ 0.5 pp)")
    # by hand: the smallest N per side with ≥ 80% power at the observed |Δ| (not the margin), the
    # observed sds and the Welch df for N runs a side
    target = abs(np.mean(a) - np.mean(b))
    va, vb = np.var(a, ddof=1), np.var(b, ddof=1)

    def power(n):
        se = math.sqrt((va + vb) / n)
        df = (va + vb) ** 2 * (n - 1) / (va ** 2 + vb ** 2)
        return nct_power(target / se, df)

    assert power(n) >= 0.8 > power(n - 1)
    assert 3 < n < 1000
    # far too noisy for the margin, and Δ = 0: nothing to detect, equivalence only beyond the cap
    noisy = stats.welch([0.5, 0.9, 0.1], [0.1, 0.9, 0.5])
    assert _is_nan(noisy.seeds_to_detect) and noisy.seeds_for_equivalence == stats.SEEDS_CAP
    assert stats.verdict(noisy, noisy.p) == (
        "inconclusive (≥1000 seeds per side would be needed to show equivalence within ±0.5 pp)")


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


# ---------------------------------------------------------------------------------------------
# Found missing by mutation testing (mutation/run.sh): the mean ± CI, the degenerate comparisons
# field by field, two-run sides, boundaries at exactly α, missing values given as None.

def _is_nan(value) -> bool:
    return isinstance(value, float) and math.isnan(value)


def test_mean_ci_by_hand_ignoring_missing_runs():
    ci = stats.mean_ci([0.91, 0.93, None, 0.92, float("nan"), 0.95])  # None and NaN: runs without a value
    values = np.array([0.91, 0.93, 0.92, 0.95])
    sd = values.std(ddof=1)
    half = scipy_stats.t.ppf(0.975, 3) * sd / 2
    assert (ci.n, ci.mean, ci.sd) == (4, pytest.approx(values.mean(), abs=1e-15), pytest.approx(sd, rel=1e-12))
    assert ci.half_width == pytest.approx(half, rel=1e-12)
    assert (ci.low, ci.high) == (pytest.approx(values.mean() - half, rel=1e-12),
                                 pytest.approx(values.mean() + half, rel=1e-12))
    ninety = stats.mean_ci(values, confidence=0.90)
    assert ninety.half_width == pytest.approx(scipy_stats.t.ppf(0.95, 3) * sd / 2, rel=1e-12)
    two = stats.mean_ci([0.5, 0.7])  # two runs already give an interval
    assert (two.n, two.mean, two.sd) == (2, pytest.approx(0.6), pytest.approx(math.sqrt(0.02)))
    assert two.half_width == pytest.approx(scipy_stats.t.ppf(0.975, 1) * math.sqrt(0.02) / math.sqrt(2), rel=1e-12)
    one = stats.mean_ci([0.5, float("nan")])
    assert one.n == 1 and one.mean == 0.5 and _is_nan(one.sd) and _is_nan(one.half_width) and _is_nan(one.low)
    none = stats.mean_ci([float("nan"), None])
    assert none.n == 0 and all(_is_nan(v) for v in (none.mean, none.sd, none.half_width, none.high))


def test_welch_and_paired_with_two_runs_a_side():
    a, b = [0.91, 0.94], [0.90, 0.905]
    d = stats.welch(a, b)
    diff, low, high, p, se, df = welch_by_hand(a, b)
    assert (d.n_a, d.n_b) == (2, 2) and d.p == pytest.approx(p, rel=1e-9)
    assert (d.sd_a, d.sd_b) == pytest.approx((np.std(a, ddof=1), np.std(b, ddof=1)), rel=1e-12)
    assert math.isfinite(d.mde) and d.mde > 0  # an MDE with 2 runs a side too (its value: see the xfail below)
    pair = stats.paired(a, b)
    diff, low, high, p, se, df = paired_by_hand(a, b)
    assert pair.n_a == 2 and pair.p == pytest.approx(p, rel=1e-9) and df == 1
    assert math.isfinite(pair.mde) and pair.mde > 0


def power_by_integration(noncentrality, df, alpha=0.05):
    """Two-sided power of a t-test by integrating over the chi-square: T = (Z + λ)/√(V/df)."""
    from scipy import integrate

    critical = scipy_stats.t.isf(alpha / 2, df)

    def given(v):
        scale = critical * math.sqrt(v / df)
        return scipy_stats.chi2.pdf(v, df) * (scipy_stats.norm.sf(scale - noncentrality)
                                             + scipy_stats.norm.cdf(-scale - noncentrality))

    return integrate.quad(given, 0, np.inf, limit=200)[0]


def test_paired_mde_with_two_pairs_has_80_percent_power():
    # At df = 1 statsmodels' noncentral t gives nan at ordinary powers (λ ≈ 7–40), where a normal
    # approximation is far off (the critical t is 12.7): the MDE must still have 80% power.
    d = stats.paired([0.91, 0.94], [0.90, 0.905])
    assert power_by_integration(d.mde * math.sqrt(2) / d.sd, 1) == pytest.approx(0.80, abs=1e-6)


def test_t_statistics_sds_and_margin_are_reported():
    margin = 0.02
    d = stats.welch(SHORT, BEFORE, margin=margin)
    diff, _, _, _, se, _ = welch_by_hand(SHORT, BEFORE)
    assert d.statistic == pytest.approx(diff / se, rel=1e-9) and d.margin == margin
    pair = stats.paired(AFTER, BEFORE, margin=margin)
    diff, _, _, _, se, _ = paired_by_hand(AFTER, BEFORE)
    assert pair.statistic == pytest.approx(diff / se, rel=1e-9) and pair.margin == margin
    assert (pair.sd_a, pair.sd_b) == pytest.approx((np.std(AFTER, ddof=1), np.std(BEFORE, ddof=1)), rel=1e-12)


def test_one_side_without_any_spread_is_still_a_welch_test():
    # Every run of one side scored exactly the same (0.5 is exact in binary, so its sd is exactly 0).
    flat = [0.5, 0.5, 0.5]
    for d, (a, b) in ((stats.welch(flat, BEFORE), (flat, BEFORE)), (stats.welch(BEFORE, flat), (BEFORE, flat))):
        diff, low, high, p, se, df = welch_by_hand(a, b)
        assert df == pytest.approx(4.0) and d.df == pytest.approx(4.0)  # all the variance is one side's
        assert d.p == pytest.approx(p, rel=1e-9) and d.note == ""
        assert nct_power(d.mde / se, df) == pytest.approx(0.80, abs=0.005)  # MDE at the Welch df, 4


def test_degenerate_comparisons_field_by_field_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy "mean of empty slice" / "ddof" warnings either
        one = stats.welch([0.9], [0.8, 0.85], margin=0.01)
        empty = stats.welch([], [0.8, 0.85])
        flat = stats.welch([0.9, 0.9, 0.9], [0.9, 0.9], margin=0.01)
        pair = stats.paired([0.9], [0.8], margin=0.01)
        no_pairs = stats.paired([], [])
        same = stats.paired([0.9, 0.8, 0.7], [0.89, 0.79, 0.69], margin=0.01)
    assert (one.n_a, one.n_b, one.kind, one.margin) == (1, 2, "welch", 0.01)
    assert one.diff == pytest.approx(0.075) and one.sd_b == pytest.approx(np.std([0.8, 0.85], ddof=1))
    assert one.note == "needs at least 2 runs on each side"
    for value in (one.low, one.high, one.p, one.df, one.statistic, one.se, one.sd_a, one.mde, one.p_tost,
                  one.seeds_to_detect, one.seeds_for_equivalence):
        assert _is_nan(value)
    assert (empty.n_a, empty.n_b) == (0, 2) and _is_nan(empty.diff)
    assert (flat.n_a, flat.n_b, flat.diff, flat.low, flat.high, flat.kind, flat.margin) == (3, 2, 0.0, 0.0, 0.0,
                                                                                          "welch", 0.01)
    assert flat.sd_a == 0.0 and flat.sd_b == 0.0 and flat.note.startswith("every run of both sides scored the same")
    assert all(_is_nan(v) for v in (flat.p, flat.df, flat.statistic))
    assert (pair.n_a, pair.n_b, pair.diff, pair.kind, pair.margin) == (1, 1, pytest.approx(0.1), "paired", 0.01)
    assert pair.note == "needs at least 2 matched pairs" and _is_nan(pair.sd_a) and _is_nan(pair.sd_b)
    assert all(_is_nan(v) for v in (pair.low, pair.high, pair.p, pair.df, pair.statistic))
    assert (no_pairs.n_a, no_pairs.n_b) == (0, 0) and _is_nan(no_pairs.diff)
    assert (same.n_a, same.n_b, same.kind, same.margin) == (3, 3, "paired", 0.01)
    assert same.diff == pytest.approx(0.01) and (same.low, same.high) == (same.diff, same.diff)
    assert same.sd_a == pytest.approx(0.1) and same.sd_b == pytest.approx(0.1)
    assert same.note.startswith("every paired difference is the same")
    assert all(_is_nan(v) for v in (same.p, same.df, same.statistic))


def test_missing_values_given_as_none_are_dropped_or_failed():
    assert stats.welch(SHORT + [None], BEFORE).p == pytest.approx(stats.welch(SHORT, BEFORE).p, rel=1e-12)
    assert stats.welch(SHORT, [None] + BEFORE).n_b == 5
    assert stats.paired(AFTER + [None], BEFORE + [0.9]).p == pytest.approx(stats.paired(AFTER, BEFORE).p, rel=1e-12)
    assert stats.paired(AFTER + [0.9], BEFORE + [None]).n_a == 5
    assert stats.holm([0.01, None, 0.04]) == pytest.approx([0.02, float("nan"), 0.04], nan_ok=True)
    filled = stats.fill_failed([0.91, None, 0.88], [1, 1, 0], chance=0.1)  # ok as 0/1, as a CSV column holds it
    assert filled == stats.Filled([0.91, 0.1, 0.1], 2, 0.1)
    with pytest.raises(ValueError) as caught:
        stats.fill_failed([0.9], [True, False], 0.1)
    assert str(caught.value) == "values (1,) and ok (2,) differ in shape"
    with pytest.raises(ValueError) as caught:
        stats.paired(AFTER, BEFORE[:4])
    assert str(caught.value) == "paired needs matched runs: (5,) against (4,)"


def test_holm_one_p_value_and_the_cap_at_one():
    assert stats.holm([0.03]) == [0.03]
    assert stats.holm([float("nan"), 0.02]) == pytest.approx([float("nan"), 0.02], nan_ok=True)
    assert stats.holm([]) == []
    assert stats.holm([0.4, 0.5, 0.6]) == [1.0, 1.0, 1.0]  # 3 × 0.4 = 1.2: a probability stays ≤ 1


def test_paired_seeds_to_detect_by_noncentral_t_and_no_floor():
    a, b = [0.84, 0.90, 0.78], [0.80, 0.85, 0.78]
    d = stats.paired(a, b)
    differences = np.subtract(a, b)
    target = abs(differences.mean())
    sd = differences.std(ddof=1)

    def power(n):
        return nct_power(target / sd * math.sqrt(n), n - 1)

    n = int(d.seeds_to_detect)
    assert d.seeds_to_detect == float(n) and n > 3
    assert power(n) >= 0.8 > power(n - 1)
    # No floor at "one more than already run": a clear difference needs fewer seeds than were run.
    clear = stats.paired(AFTER, BEFORE)
    assert clear.seeds_to_detect < 5 and stats.welch(AFTER, BEFORE).seeds_to_detect < 5
    open_but_enough = dataclasses.replace(clear, p_tost=0.5)
    assert stats.verdict(open_but_enough, 0.2) == (
        f"inconclusive (≈ {int(clear.seeds_to_detect)} paired seeds would detect +1.68 pp — already enough if Δ "
        f"is as observed; equivalence within ±0.5 pp cannot be shown while |Δ| ≥ 0.5 pp)")


def test_seeds_to_detect_agree_with_statsmodels_at_the_holm_adjusted_alpha():
    # Welch with equal sds and equal n has the pooled df 2N − 2: exactly statsmodels' TTestIndPower.
    from statsmodels.stats.power import TTestIndPower, TTestPower
    base = np.array([0.961, 0.958, 0.965, 0.955, 0.962, 0.960, 0.957, 0.963, 0.959, 0.964])
    shifted = base[::-1] + 0.0015  # the same sd
    jitter = np.array([0.001, -0.002, 0.0, 0.001, 0.002, -0.001, 0.0, 0.001, -0.002, 0.001])
    for family in (1, 3, 5):
        alpha = 0.05 / family
        d = stats.planned(stats.welch(base, shifted), alpha)
        assert d.alpha_adjusted == alpha
        n = TTestIndPower().solve_power(effect_size=abs(d.diff) / base.std(ddof=1), nobs1=None, alpha=alpha,
                                        power=0.8, ratio=1.0)
        assert d.seeds_to_detect == math.ceil(n)
        pair = stats.planned(stats.paired(base, shifted + jitter), alpha)
        n = TTestPower().solve_power(effect_size=abs(pair.diff) / pair.sd, nobs=None, alpha=alpha, power=0.8)
        assert pair.seeds_to_detect == math.ceil(n)
    # A larger family asks for more seeds, for both counts.
    one = stats.planned(stats.paired(base, shifted + jitter))
    five = stats.planned(stats.paired(base, shifted + jitter), 0.01)
    assert one.seeds_to_detect < five.seeds_to_detect and one.seeds_for_equivalence < five.seeds_for_equivalence


def tost_power_by_simulation(delta, sd_a, sd_b, n, margin, alpha, kind, reps=40_000, seed=0):
    """The fraction of simulated studies in which both one-sided tests reject (Welch: each rep its
    own Welch df, as the test runs it)."""
    rng = np.random.default_rng(seed)
    if kind == "paired":
        x = rng.normal(delta, sd_a, (reps, n))
        diff, se, df = x.mean(1), x.std(1, ddof=1) / math.sqrt(n), n - 1
    else:
        a, b = rng.normal(delta, sd_a, (reps, n)), rng.normal(0.0, sd_b, (reps, n))
        va, vb = a.var(1, ddof=1) / n, b.var(1, ddof=1) / n
        diff, se = a.mean(1) - b.mean(1), np.sqrt(va + vb)
        df = (va + vb) ** 2 / (va ** 2 / (n - 1) + vb ** 2 / (n - 1))
    critical = scipy_stats.t.isf(alpha, df)
    return float(np.mean(((diff + margin) / se > critical) & ((diff - margin) / se < -critical)))


@pytest.mark.parametrize("delta, sd, n, alpha", [(0.001, 0.004, 12, 0.05), (0.001, 0.004, 12, 0.05 / 3),
                                                 (0.0024, 0.005, 20, 0.05 / 5), (0.0, 0.006, 8, 0.05)])
def test_tost_power_of_paired_runs_by_monte_carlo(delta, sd, n, alpha):
    power = stats.tost_power(delta, sd / math.sqrt(n), n - 1, 0.005, alpha)
    simulated = tost_power_by_simulation(delta, sd, sd, n, 0.005, alpha, "paired")
    assert power == pytest.approx(simulated, abs=4 * math.sqrt(0.25 / 40_000))  # exact: within MC error


def test_tost_power_of_welch_by_monte_carlo():
    # Welch: the Satterthwaite df for the planned n stands in for the test's estimated df — an
    # approximation, a little optimistic (the estimated df is smaller); within 0.02 here.
    for delta, sd_a, sd_b, n in ((0.001, 0.004, 0.004, 12), (0.001, 0.002, 0.006, 15), (0.002, 0.003, 0.005, 30)):
        va, vb = sd_a ** 2 / n, sd_b ** 2 / n
        df = (va + vb) ** 2 / (va ** 2 / (n - 1) + vb ** 2 / (n - 1))
        power = stats.tost_power(delta, math.sqrt(va + vb), df, 0.005, 0.01)
        assert power == pytest.approx(tost_power_by_simulation(delta, sd_a, sd_b, n, 0.005, 0.01, "welch"), abs=0.02)


def test_seeds_for_equivalence_by_monte_carlo():
    # Paired runs with Δ = -0.1 pp, sd of differences 0.4 pp, in a family of 3: the count N has 80%
    # TOST power at α/3 in simulation and N − 1 has less.
    rng = np.random.default_rng(3)
    a = 0.96 + rng.normal(0, 0.003, 10)
    differences = rng.normal(0, 1, 10)
    differences = (differences - differences.mean()) / differences.std(ddof=1) * 0.004 - 0.001
    d = stats.planned(stats.paired(a, a - differences), 0.05 / 3)
    assert d.diff == pytest.approx(-0.001) and d.sd == pytest.approx(0.004)
    n = int(d.seeds_for_equivalence)
    assert 10 < n < 100
    error = 4 * math.sqrt(0.16 / 40_000)
    assert tost_power_by_simulation(-0.001, 0.004, 0.004, n, 0.005, 0.05 / 3, "paired") >= 0.8 - error
    assert tost_power_by_simulation(-0.001, 0.004, 0.004, n - 1, 0.005, 0.05 / 3, "paired", seed=1) < 0.8 + error
    assert stats.tost_power(-0.001, 0.004 / math.sqrt(n), n - 1, 0.005, 0.05 / 3) >= 0.8 > stats.tost_power(
        -0.001, 0.004 / math.sqrt(n - 1), n - 2, 0.005, 0.05 / 3)


def test_seeds_to_detect_can_be_fewer_than_run_and_say_so():
    # 10 pairs, a difference this clear needs a handful: below the runs made, said as such.
    d = stats.planned(stats.paired(AFTER * 2, BEFORE * 2), 0.05 / 5)
    assert d.seeds_to_detect < 10
    assert "already enough if Δ is as observed" in stats.seeds_words(d)


def test_seed_counts_are_undefined_without_a_difference_or_margin():
    same = [0.9, 0.91, 0.92]
    d = stats.welch(same, same, margin=0.0)  # Δ = 0 and margin 0: nothing to size a study for
    assert d.diff == 0.0 and d.p == 1.0 and _is_nan(d.seeds_to_detect) and _is_nan(d.seeds_for_equivalence)
    assert stats.verdict(d, d.p) == "inconclusive"
    # A comparison from elsewhere, with p but no standard error or sd: no TOST, no seeds, no error.
    outside = stats.Difference(5, 5, 0.01, 0.0, 0.02, 0.03, 8.0, 2.5, se=0.0, sd=0.0)
    moved = stats.with_margin(outside, 0.01)
    assert moved.margin == 0.01 and _is_nan(moved.p_tost) and _is_nan(moved.seeds_for_equivalence)


def test_with_margin_of_an_untestable_comparison_changes_only_the_margin():
    one = stats.welch([0.9], [0.8, 0.85])
    moved = stats.with_margin(one, 0.02)
    assert moved.margin == 0.02
    assert dataclasses.replace(moved, margin=one.margin).__repr__() == one.__repr__()
    # A testable one gets its equivalence count recomputed for the new margin, at its planning α.
    a, b = [0.84, 0.90, 0.78], [0.80, 0.85, 0.78]  # Δ = 3 pp: out of reach of ±0.5 pp, inside ±5 pp
    d = stats.planned(stats.welch(a, b), 0.01)
    wide = stats.with_margin(d, 0.05)
    assert d.seeds_for_equivalence == math.inf and math.isfinite(wide.seeds_for_equivalence)
    assert wide.seeds_for_equivalence == stats.planned(stats.welch(a, b, margin=0.05), 0.01).seeds_for_equivalence
    assert wide.seeds_to_detect == d.seeds_to_detect  # the detection count has no margin in it


@pytest.mark.parametrize("noncentrality, df, alpha", [(16.0, 1, 0.05), (7.7, 1, 0.05), (39.9, 1, 0.05),
                                                     (1.0, 5, 0.05), (-0.7, 3, 0.1), (3.0, 2.5, 0.05),
                                                     (2.5, 12, 0.01)])
def test_power_where_statsmodels_gives_nan_is_the_noncentral_t_integrated(noncentrality, df, alpha):
    # The code integrates over Z, the reference over V: two ways to the same P(|T| > c).
    assert stats._checked(math.nan, noncentrality, df, alpha) == pytest.approx(
        power_by_integration(noncentrality, df, alpha), abs=1e-7)
    assert stats._checked(0.5, noncentrality, df, alpha) == 0.5  # a finite power is kept


def test_paired_power_where_statsmodels_gives_nan():
    from statsmodels.stats.power import TTestPower
    assert math.isnan(TTestPower().power(10, 3, 0.05))  # Δ/sd = 10 with 3 pairs
    assert stats._paired_power(10, 3, 0.05) == pytest.approx(power_by_integration(10 * math.sqrt(3), 2), abs=1e-7)
    assert math.isnan(TTestPower().power(16.0 / math.sqrt(2), 2, 0.05))  # df = 1 at an ordinary power
    assert stats._paired_power(16.0 / math.sqrt(2), 2, 0.05) == pytest.approx(power_by_integration(16.0, 1), abs=1e-7)


def test_welch_power_where_statsmodels_gives_nan():
    # Welch with 2 and 4 runs at df 1.2: λ = d / √(1/n_a + 1/n_b), whichever side has fewer runs.
    from statsmodels.stats.power import TTestIndPower
    for n_a, n_b in ((2, 4), (4, 2)):
        assert math.isnan(TTestIndPower().power(6.8, n_a, 0.05, ratio=n_b / n_a, df=1.2))
        expected = power_by_integration(6.8 / math.sqrt(1 / n_a + 1 / n_b), 1.2)
        assert 0.5 < expected < 0.95
        assert stats._welch_power(6.8, n_a, n_b, 1.2, 0.05) == pytest.approx(expected, abs=1e-7)


def test_verdicts_at_exactly_alpha_and_without_a_note():
    d = stats.welch(AFTER, BEFORE)
    assert stats.verdict(d, 0.05) != "better" and stats.verdict(d, 0.0499) == "better"  # p < α, strictly
    assert stats.nominal_verdict(d, 0.05) == "no significant difference after Holm correction (nominally better)"
    assert stats.nominal_verdict(d, 0.01) == "significantly better"
    assert stats.nominal_verdict(d, 0.01, better="higher") == "significantly higher"
    equivalent = dataclasses.replace(stats.welch(SHORT, BEFORE), p_tost=0.05, seeds_to_detect=7.0,
                                     seeds_for_equivalence=9.0)
    assert stats.verdict(equivalent, 0.5) == (  # p_tost < α, strictly
        "inconclusive (≈ 7 seeds per side would detect +2.54 pp; ≈ 9 would show equivalence within ±0.5 pp)")
    assert stats.verdict(dataclasses.replace(equivalent, p_tost=0.0499), 0.5).startswith("equivalent")
    one = stats.welch([0.9], [0.8, 0.85])
    assert stats.nominal_verdict(one, math.nan) == "not testable (needs at least 2 runs on each side)"
    bare = stats.Difference(3, 3, 0.01, math.nan, math.nan, math.nan, math.nan, math.nan)
    assert stats.verdict(bare, math.nan) == "not testable" and stats.nominal_verdict(bare, math.nan) == "not testable"
    unsized = stats.Difference(3, 3, 0.01, -0.02, 0.04, 0.4, 4.0, 0.9)  # p_tost and the seed counts unknown
    assert stats.verdict(unsized, 0.4) == "inconclusive"
    nominal = stats.Difference(5, 5, 0.004, -0.01, 0.02, 0.05, 8.0, 1.0)
    assert stats.nominal_verdict(nominal, 0.2) == "no significant difference"  # p = α is not nominally anything
    assert stats.nominal_verdict(dataclasses.replace(nominal, p=0.049), 0.2) == (
        "no significant difference after Holm correction (nominally better)")


def test_the_margin_in_words_is_in_pp_to_a_millionth():
    # Accuracies are fractions: the margin is shown ×100, without float noise (0.005·100 = 0.5000000000000001).
    tight = stats.Difference(10, 10, 0.0, -1e-6, 1e-6, 0.9, 18.0, 0.0, se=1e-7, margin=1.2345e-5, p_tost=1e-9)
    assert stats.verdict(tight, 1.0) == "equivalent within ±0.001234 pp"
    assert stats.verdict(tight, 1.0, margin=0.005).startswith("equivalent within ±0.5 pp")
    assert stats.verdict(tight, 1.0, margin=0.0025).startswith("equivalent within ±0.25 pp")
