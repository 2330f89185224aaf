"""study.sequential: a comparison that adds seeds in batches and stops as soon as its verdict is
resolved keeps its error rates — false "better/worse" at Δ = 0 and false "equivalent" at |Δ| =
margin — at their levels across the looks, where peeking at an unadjusted level does not.

The simulations draw seed accuracies from normal distributions with the study's spreads (seed sd
0.3–0.6 pp), look at 5, 10, …, 30 seeds per side, and use fixed numpy seeds (other than the
design's own calibration seed), so every number here is reproducible. Monte-Carlo error: a rate
estimated from REPS comparisons has standard error √(α(1 − α)/REPS) ≈ 0.0015 at α = 0.05."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats
from statsmodels.stats.weightstats import ttost_ind, ttost_paired

from study import sequential
from analysis import stats as fixed
from analysis.stats import ALPHA, MARGIN

LOOKS = (5, 10, 15, 20, 25, 30)
REPS = 20_000
PP = 0.01  # one percentage point of accuracy (accuracies are fractions)
NO_BOUND = (math.inf,) * len(LOOKS)

# (name, simulate's keywords): Welch with equal and with unequal seed sds, and paired (sd of the
# per-seed differences): the paired t has the fewest df, the hardest case for the t correction.
SPREADS = [("welch 0.45/0.45 pp", dict(sd=0.45 * PP)),
           ("welch 0.3/0.6 pp", dict(sd=0.3 * PP, sd_b=0.6 * PP)),
           ("paired 0.6 pp", dict(sd=0.6 * PP, paired=True))]


@pytest.fixture(scope="module")
def study():
    """The study's design: looks at 5..30 seeds per side, α = 0.05, margin ±0.5 pp."""
    return sequential.design(LOOKS)


def _se(alpha: float, reps: int = REPS) -> float:
    return math.sqrt(alpha * (1 - alpha) / reps)


def _difference_only(design):
    return dataclasses.replace(design, margin=None, equivalence_bounds=())


def _equivalence_only(design):
    return dataclasses.replace(design, difference_bounds=NO_BOUND)


def _naive(design, alpha=ALPHA):
    """Peeking: every look tested at the unadjusted level, as if it were the only one."""
    return dataclasses.replace(design, difference_bounds=(scipy_stats.norm.isf(alpha / 2),) * len(design.looks),
                               equivalence_bounds=(scipy_stats.norm.isf(alpha),) * len(design.looks))


# --- boundaries ---------------------------------------------------------------------------------

def test_boundaries_match_the_published_lan_demets_obrien_fleming_values():
    # gsDesign (sfLDOF) / rpact ("asOF"), equally spaced looks, one-sided α = 0.025. The known-
    # variance boundaries are those without the t calibration; a two-sided 0.05 difference test
    # spends 0.025 a side, so its symmetric boundaries are the same to the published digits.
    two = sequential.design([10, 20], alpha=0.05, alpha_equivalence=0.025, t_calibration=False)
    assert two.equivalence_bounds == pytest.approx([2.963, 1.969], abs=6e-4)
    assert two.difference_bounds == pytest.approx([2.963, 1.969], abs=6e-4)
    five = sequential.design([6, 12, 18, 24, 30], alpha=0.05, alpha_equivalence=0.025, t_calibration=False)
    assert five.equivalence_bounds == pytest.approx([4.877, 3.357, 2.680, 2.290, 2.031], abs=6e-4)
    assert five.difference_bounds == pytest.approx([4.877, 3.357, 2.680, 2.290, 2.031], abs=6e-4)
    # One look is the fixed design: 1.96 two-sided, 1.645 one-sided, nothing to calibrate.
    one = sequential.design([30])
    assert one.difference_bounds == pytest.approx([1.959964]) and one.equivalence_bounds == pytest.approx([1.644854])
    assert one.level == one.level_equivalence == ALPHA


def test_boundaries_spend_alpha_as_scipys_multivariate_normal_integrates_it():
    """An independent check of the recursive integration: the cumulative probability of crossing
    by look k, from scipy's multivariate normal with corr √(t_i/t_j), is the spending f(t_k)."""
    d = sequential.design([5, 10, 15], t_calibration=False)
    t = np.array(d.information)
    cov = np.sqrt(np.minimum.outer(t, t) / np.maximum.outer(t, t))
    c, e = np.array(d.difference_bounds), np.array(d.equivalence_bounds)
    for k in range(3):
        mvn = dict(mean=np.zeros(k + 1), cov=cov[:k + 1, :k + 1], rng=np.random.default_rng(1))
        crossed = 1 - scipy_stats.multivariate_normal.cdf(c[:k + 1], lower_limit=-c[:k + 1], **mvn)
        assert crossed == pytest.approx(2 * sequential.obrien_fleming(t[k], ALPHA / 2), abs=2e-5)
        crossed = 1 - scipy_stats.multivariate_normal.cdf(e[:k + 1], **mvn)
        assert crossed == pytest.approx(sequential.obrien_fleming(t[k], ALPHA), abs=2e-5)


def test_the_t_calibration_lowers_the_level_a_little_and_the_level_is_a_parameter(study):
    assert 0.9 * ALPHA < study.level < ALPHA and 0.9 * ALPHA < study.level_equivalence < ALPHA
    z = sequential.design(LOOKS, t_calibration=False)
    assert all(c > cz for c, cz in zip(study.difference_bounds, z.difference_bounds))
    # A Holm/Bonferroni level: stricter boundaries; equivalence keeps its own (unadjusted) level.
    holm = sequential.design(LOOKS, alpha=ALPHA / 3)
    assert all(h > c for h, c in zip(holm.difference_bounds, study.difference_bounds))
    assert holm.equivalence_bounds == study.equivalence_bounds


# --- the statistics at one look -----------------------------------------------------------------

def test_a_look_computes_the_same_t_tests_as_scipy_and_statsmodels(study):
    rng = np.random.default_rng(3)
    a, b = 0.90 + rng.normal(0.002, 0.004, 10), 0.90 + rng.normal(0, 0.006, 10)
    welch = sequential.look(study, a, b, look_index=1)
    reference = scipy_stats.ttest_ind(a, b, equal_var=False)
    assert (welch.t, welch.p, welch.df) == pytest.approx((reference.statistic, reference.pvalue, reference.df))
    assert welch.p_tost == pytest.approx(ttost_ind(a, b, -MARGIN, MARGIN, usevar="unequal")[0])
    assert welch.z == pytest.approx(scipy_stats.norm.isf(welch.p / 2))
    assert welch.z_tost == pytest.approx(scipy_stats.norm.isf(welch.p_tost))
    paired = sequential.look(study, a, b, look_index=1, paired=True)
    reference = scipy_stats.ttest_rel(a, b)
    assert (paired.t, paired.p, paired.df) == pytest.approx((reference.statistic, reference.pvalue, 9))
    assert paired.p_tost == pytest.approx(ttost_paired(a, b, -MARGIN, MARGIN)[0])
    assert sequential.look(study, a - b, look_index=1, paired=True) == paired  # differences alone


def test_a_one_look_design_gives_the_fixed_verdicts_of_analysis_stats():
    one = sequential.design([8])
    words = {"better": "better", "worse": "worse", "equivalent": "equivalent", "inconclusive": "inconclusive"}
    rng = np.random.default_rng(5)
    seen = set()
    for delta in (-0.6, -0.2, 0.0, 0.0, 0.1, 0.3, 0.8, 1.5):
        a, b = 0.9 + rng.normal(delta * PP, 0.4 * PP, 8), 0.9 + rng.normal(0, 0.4 * PP, 8)
        for paired in (False, True):
            decision = sequential.look(one, a, b, look_index=0, paired=paired)
            d = fixed.paired(a, b) if paired else fixed.welch(a, b)
            assert fixed.verdict(d, d.p).startswith(words[decision.verdict])
            seen.add(decision.verdict)
    assert seen == set(words)  # every verdict came up


def test_a_look_continues_until_the_cap_then_says_inconclusive(study):
    rng = np.random.default_rng(9)
    a, b = rng.normal(0.9, 0.02, 30), rng.normal(0.9, 0.02, 30)  # far too noisy to resolve
    middle = sequential.look(study, a[:15], b[:15], look_index=2)
    assert middle.verdict == "continue" and not middle.stop and middle.crossed == ""
    last = sequential.look(study, a, b, look_index=5)
    assert last.verdict == "inconclusive" and last.final and last.stop and not last.resolved
    assert last.note.startswith("cap reached: 30 seeds per side")
    clear = sequential.look(study, a[:10] + 0.05, b[:10], look_index=1)  # 5 pp better: stops at once
    assert clear.verdict == "better" and clear.crossed == "upper difference" and clear.z >= clear.bound


def test_look_and_run_reach_the_same_verdicts_with_the_same_seeds(study):
    rng = np.random.default_rng(11)
    delta = rng.choice([0.0, 0.3, 0.6, -1.0], size=(40, 1)) * PP
    a, b = rng.normal(delta, 0.5 * PP, (40, 30)), rng.normal(0.0, 0.5 * PP, (40, 30))
    for paired in (False, True):
        verdicts, seeds = sequential.run(study, a, b, paired=paired)
        for row in range(40):
            for k, n in enumerate(study.looks):
                decision = sequential.look(study, a[row, :n], b[row, :n], look_index=k, paired=paired)
                if decision.stop:
                    break
            assert (decision.verdict, decision.n) == (verdicts[row], seeds[row])
        assert {"better", "worse", "equivalent"} <= set(verdicts)


def test_bad_input_is_refused(study):
    with pytest.raises(ValueError, match="strictly increasing"):
        sequential.design([10, 5])
    with pytest.raises(ValueError, match="each >= 2"):
        sequential.design([1, 5])
    with pytest.raises(ValueError, match="planned at 10 seeds per side, got \\[9\\]"):
        sequential.look(study, np.ones(9), np.zeros(9), look_index=1)
    with pytest.raises(ValueError, match="fill_failed"):
        sequential.look(study, [0.9, math.nan, 0.9, 0.9, 0.9], np.zeros(5), look_index=0)
    with pytest.raises(ValueError, match="needs both sides"):
        sequential.look(study, np.zeros(5), look_index=0)
    flat = sequential.look(study, np.full(5, 0.9), np.full(5, 0.9), look_index=0)
    assert flat.verdict == "not testable" and flat.stop and not flat.resolved


# --- error rates and seeds, by simulation --------------------------------------------------------

@pytest.mark.parametrize("name, spread", SPREADS, ids=[name for name, _ in SPREADS])
def test_error_rates_stay_at_their_levels_across_the_looks(study, name, spread):
    # Each test alone spends exactly its level (within Monte-Carlo error) ...
    alone = sequential.simulate(_difference_only(study), 0.0, reps=REPS, seed=101, **spread)
    false_positive = alone.rate("better") + alone.rate("worse")
    assert abs(false_positive - ALPHA) < 3 * _se(ALPHA), (name, false_positive)
    for delta in (MARGIN, -MARGIN):
        alone = sequential.simulate(_equivalence_only(study), delta, reps=REPS, seed=102, **spread)
        assert abs(alone.rate("equivalent") - ALPHA) < 3 * _se(ALPHA), (name, delta, alone.rate("equivalent"))
    # ... and together, where a stop for one verdict takes paths from the other, at most that.
    both = sequential.simulate(study, 0.0, reps=REPS, seed=103, **spread)
    assert both.rate("better") + both.rate("worse") < ALPHA + 3 * _se(ALPHA), name
    for delta in (MARGIN, -MARGIN):
        both = sequential.simulate(study, delta, reps=REPS, seed=104, **spread)
        assert both.rate("equivalent") < ALPHA + 3 * _se(ALPHA), (name, delta)


@pytest.mark.parametrize("name, spread", SPREADS, ids=[name for name, _ in SPREADS])
def test_peeking_at_an_unadjusted_level_would_exceed_it(study, name, spread):
    naive = _naive(study)
    peeked = sequential.simulate(_difference_only(naive), 0.0, reps=REPS, seed=101, **spread)
    assert peeked.rate("better") + peeked.rate("worse") > ALPHA + 20 * _se(ALPHA), name  # ≈ 0.15
    peeked = sequential.simulate(_equivalence_only(naive), MARGIN, reps=REPS, seed=102, **spread)
    assert peeked.rate("equivalent") > ALPHA + 20 * _se(ALPHA), name  # ≈ 0.13


def test_without_the_t_calibration_few_seeds_would_err_a_little_too_often(study):
    """The paired t-tests (df 4..29) judged against the known-variance boundaries: the same draws
    err more often than α (≈ 0.052), the calibrated design does not."""
    reps = 200_000
    rng = np.random.default_rng(105)
    differences = rng.normal(0.0, 0.5 * PP, (reps, 30))
    rates = {}
    for label, d in (("z", sequential.design(LOOKS, t_calibration=False)), ("t", study)):
        verdicts, _ = sequential.run(_difference_only(d), differences, paired=True)
        rates[label] = float(np.isin(verdicts, ("better", "worse")).mean())
    se = _se(ALPHA, reps)
    assert rates["z"] > ALPHA + 3 * se and abs(rates["t"] - ALPHA) < 3 * se, rates


def test_the_holm_level_is_kept_too():
    holm = sequential.design(LOOKS, alpha=ALPHA / 3, margin=None)
    alone = sequential.simulate(holm, 0.0, 0.45 * PP, reps=REPS, seed=106)
    assert abs(alone.rate("better") + alone.rate("worse") - ALPHA / 3) < 3 * _se(ALPHA / 3)


@pytest.mark.parametrize("name, spread", SPREADS, ids=[name for name, _ in SPREADS])
def test_a_comparison_uses_fewer_seeds_than_the_fixed_design_on_average(study, name, spread):
    # Δ = 0.3 pp (inside the margin: "better" and "equivalent" are both true), and Δ = 0.
    for delta in (0.3 * PP, 0.0):
        used = sequential.simulate(study, delta, reps=REPS, seed=107, **spread)
        assert used.expected_seeds + 3 * used.expected_seeds_se < 0.85 * study.max_seeds, (name, delta, used)
        assert used.rate("inconclusive") < 0.05 and used.rate("worse") < ALPHA, (name, delta, used.rates)
    # A large difference is resolved after one or two batches.
    assert sequential.expected_seeds(study, 1.5 * PP, reps=REPS, seed=108, **spread) < 12
