"""analysis.tuning: tuning curves and their bands, checked against distributions whose curves are known.

The simulations draw search trials from a known score distribution — a beta (continuous), and the
same beta rounded to a 400-image validation split with 5 % of trials failed and scored chance
(discrete, with ties, as real searches are) — compute the true expected and median best of k
exactly (numerical integration of the max's CDF; the quantile function), and count how often the
band holds the whole true curve. Seeded; the band's own calibration is cached per n, so each
simulation takes about a second.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import integrate
from scipy import stats as scipy_stats

from analysis import tuning, words

N = 20  # search trials per method
REPS = 400  # simulated searches: Monte-Carlo se of a 95% coverage ≈ 1.1 pp, of an 80% one 2 pp
A, B = 45.0, 5.0  # beta(45, 5): mean 0.90, sd 0.042 — validation accuracies of random configurations
KS = np.arange(1, N + 1)


def true_curves_beta():
    expected = np.array([integrate.quad(lambda y: 1 - scipy_stats.beta.cdf(y, A, B) ** k, 0, 1, epsabs=1e-12)[0]
                         for k in KS])  # E[max] = ∫ (1 − F^k) on [0, 1]
    median = scipy_stats.beta.ppf(0.5 ** (1 / KS), A, B)  # F_max(y) = F(y)^k = ½
    return expected, median


def discrete_distribution():
    """Accuracies on 400 images (multiples of 1/400) from the beta, with 5 % failed trials at chance 0.1."""
    values = np.arange(401) / 400
    edges = np.clip((np.arange(402) - 0.5) / 400, 0, 1)
    masses = 0.95 * np.diff(scipy_stats.beta.cdf(edges, A, B))
    masses[40] += 0.05  # 0.1 = 40/400: chance on 10 classes
    return values, masses / masses.sum()


def true_curves_discrete(values, masses):
    cdf = np.cumsum(masses)
    before = cdf - masses
    expected = np.array([np.sum(values * (cdf ** k - before ** k)) for k in KS])
    median = np.array([values[np.argmax(cdf >= 0.5 ** (1 / k))] for k in KS])  # smallest y with F(y) ≥ q
    return expected, median


def coverage(draw, expected, median, confidence, shift=0.0):
    """(how often each band holds the whole true curve + shift, over REPS simulated searches)."""
    rng = np.random.default_rng(7)
    held = np.zeros(2)
    for _ in range(REPS):
        curve = tuning.tuning_curve(draw(rng), confidence)
        held += [np.all((curve.expected_low <= expected + shift) & (expected + shift <= curve.expected_high)),
                 np.all((curve.median_low <= median + shift) & (median + shift <= curve.median_high))]
    return held / REPS


def mc_error(confidence):
    return 3 * math.sqrt(confidence * (1 - confidence) / REPS)


@pytest.mark.parametrize("confidence", [0.80, 0.95])
def test_bands_cover_the_true_curves_at_their_nominal_rate_continuous(confidence):
    expected, median = true_curves_beta()
    held = coverage(lambda rng: rng.beta(A, B, N), expected, median, confidence)
    # Simultaneous over k = 1..20: at least the nominal rate, within Monte-Carlo error. (Conservative:
    # the band holds the CDF exactly at its rate, and a curve can be held without the CDF being held.)
    assert held[0] >= confidence - mc_error(confidence)
    assert held[1] >= confidence - mc_error(confidence)
    if confidence == 0.80:
        # Not trivially wide: the median band is near its nominal rate, far from always holding,
        # and a true median curve 2 pp higher is outside it in a good part of the searches.
        assert held[1] < 0.99
        shifted = coverage(lambda rng: rng.beta(A, B, N), expected, median, confidence, shift=0.02)
        assert shifted[1] < 0.7


def test_bands_cover_the_true_curves_with_ties_and_failed_trials():
    values, masses = discrete_distribution()
    expected, median = true_curves_discrete(values, masses)
    confidence = 0.80
    held = coverage(lambda rng: rng.choice(values, N, p=masses), expected, median, confidence)
    assert held[0] >= confidence - mc_error(confidence) and held[1] >= confidence - mc_error(confidence)
    # the expected band holds the truth but not a curve 3 pp lower, which the tail cannot excuse
    lower = coverage(lambda rng: rng.choice(values, N, p=masses), expected, median, confidence, shift=-0.03)
    assert lower[0] < 0.5


def test_curve_is_the_expected_max_of_the_empirical_distribution_and_monotone():
    scores = np.random.default_rng(0).beta(A, B, N)
    curve = tuning.tuning_curve(scores)
    assert curve.n == N and list(curve.ks) == list(KS)
    assert curve.expected[0] == pytest.approx(scores.mean(), abs=1e-12)  # k = 1: the mean trial
    ordered = np.sort(scores)
    i = np.arange(1, N + 1)
    by_hand = [np.sum(ordered * ((i / N) ** k - ((i - 1) / N) ** k)) for k in KS]  # Dodge et al.'s estimator
    assert curve.expected == pytest.approx(by_hand, abs=1e-12)
    cdf = np.cumsum(np.full(N, 1 / N))
    cdf /= cdf[-1]  # the empirical CDF at the ordered trials, in floating point as opda sums it (k = 1 sits on 0.5)
    assert curve.median == pytest.approx([ordered[np.argmax(cdf >= 0.5 ** (1 / k))] for k in KS], abs=0)
    for name in ("expected", "expected_low", "expected_high", "median", "median_low", "median_high"):
        assert np.all(np.diff(getattr(curve, name)) >= -1e-12), name  # the best of more trials is no worse
    assert np.all(curve.expected_low <= curve.expected) and np.all(curve.expected <= curve.expected_high)
    assert np.all(curve.median_low <= curve.median) and np.all(curve.median <= curve.median_high)
    assert curve.expected_low.min() >= 0 and curve.expected_high.max() <= 1  # accuracy's support
    # The same trials give the same band (the calibration is seeded), in any order of calls.
    again = tuning.tuning_curve(scores)
    assert np.array_equal(again.expected_low, curve.expected_low)
    with pytest.raises(ValueError):
        tuning.tuning_curve([0.9, float("nan")])


# ---------------------------------------------------------------------------------------------
# From the trial frame

def search_frame(rows):
    """A trial frame as analysis.load returns it, with only the columns the tuning curves read."""
    return pd.DataFrame([{"phase": "search", "dataset": "digits", "regime": "standard", **row} for row in rows])


def test_failed_trials_score_chance_stopped_their_last_and_running_are_left_out():
    frame = search_frame([
        {"method": "baseline", "outcome": "completed", "val_acc": 0.95},
        {"method": "baseline", "outcome": "diverged", "val_acc": float("nan")},
        {"method": "baseline", "outcome": "failed", "val_acc": 0.5},  # a failure scores chance, whatever it logged
        {"method": "baseline", "outcome": "stopped", "val_acc": 0.80},
        {"method": "baseline", "outcome": None, "val_acc": 0.99},  # still running
        {"method": "baseline", "outcome": "completed", "val_acc": float("nan")},  # completed without a value
        {"method": "sharpening", "outcome": "completed", "val_acc": 0.90, "phase": "repeat"},  # not a search trial
    ])
    scored = tuning.search_scores(frame)
    assert list(scored["score"]) == [0.95, 0.1, 0.1, 0.80, 0.1]
    assert int(scored["scored_chance"].sum()) == 3
    curves = tuning.tuning_table(frame)
    assert set(curves["method"]) == {"baseline"} and list(curves["k"]) == [1, 2, 3, 4, 5]
    assert curves["n"].iloc[0] == 5 and curves["failed"].iloc[0] == 3
    assert curves["expected"].iloc[0] == pytest.approx(np.mean([0.95, 0.1, 0.1, 0.80, 0.1]))
    assert list(curves["key"].unique()) == ["digits"]


def test_replicates_pool_their_draws_but_keep_one_search_as_the_budget():
    values = [0.90, 0.91, 0.93, 0.95, 0.92, 0.94]
    frame = search_frame([{"method": "baseline", "outcome": "completed", "val_acc": v, "replicate": str(i // 3)}
                          for i, v in enumerate(values)])
    curves = tuning.tuning_table(frame)
    assert list(curves["k"]) == [1, 2, 3] and set(curves["n"]) == {3} and set(curves["draws"]) == {6}
    assert curves["expected"].iloc[0] == pytest.approx(np.mean(values))  # the 6 draws, pooled
    one = tuning.tuning_table(search_frame([{"method": "baseline", "outcome": "completed", "val_acc": v,
                                             "replicate": "0"} for v in values]))
    assert list(one["k"]) == [1, 2, 3, 4, 5, 6]  # a single replicate: the whole search


def test_crossing_curves_and_the_budget_in_words():
    # The baseline is steady (0.95 ± 0.003); sharpening is a gamble: half its configurations at 0.90,
    # half at 0.99. Its mean trial is worse (k = 1), its best of 2 already better: the curves cross at 2.
    baseline = [0.947, 0.950, 0.953, 0.949, 0.951, 0.948, 0.952, 0.950]
    sharpening = [0.90, 0.99, 0.90, 0.99, 0.90, 0.99, 0.90, 0.99]
    annealing = [0.93, 0.931, 0.932, 0.929, 0.928, 0.933, 0.93, 0.931]  # worse everywhere, well apart
    frame = search_frame([{"method": m, "outcome": "completed", "val_acc": v}
                          for m, values in (("baseline", baseline), ("sharpening", sharpening),
                                            ("annealing", annealing)) for v in values])
    curves = tuning.tuning_table(frame)
    vs = tuning.tuning_comparison(curves).set_index("method")
    assert list(vs.index) == ["sharpening", "annealing"] and (vs["budget"] == 8).all()
    row = vs.loc["sharpening"]
    assert (row["order_at_1"], row["order_at_budget"], row["crossings"]) == ("below", "above", "2")
    # by hand: Dodge et al.'s expected max of 2 from the 8 trials
    assert curves[(curves["method"] == "sharpening") & (curves["k"] == 2)]["expected"].iloc[0] == pytest.approx(
        0.99 * 0.75 + 0.90 * 0.25)
    assert bool(row["bands_overlap"]) is True
    assert words.tuning_words(row) == ("8 trials per method: crosses the baseline's expected best at k = 2 "
                                       "(below at k = 1, above at k = 8); bands overlap at k = 8")
    worse = vs.loc["annealing"]
    assert worse["crossings"] == "" and worse["order_at_budget"] == "below"
    assert words.tuning_words(worse).startswith(
        "8 trials per method: below the baseline's expected best at every k ≤ 8; bands ")
    people = words.tuning_for_people(curves, tuning.tuning_comparison(curves))
    assert list(people["method"]) == ["baseline", "sharpening", "annealing"]
    assert people.iloc[0]["against the baseline's curve"] == "reference"
    assert people.iloc[1]["mean trial, k = 1 (%)"] == "94.50"


def test_crossings_ignore_ties_and_spans_read_as_ranges():
    assert tuning._crossings(np.array([-1.0, 0.0, 0.0, -2.0, 1.0, 0.0, -1.0])) == [5, 7]
    assert tuning._crossings(np.array([0.0, 1.0, 2.0])) == []
    assert tuning._span([1, 2, 3, 6, 8, 9]) == "1–3, 6, 8–9" and tuning._span([]) == ""


def test_sampler_recorded_or_assumed_and_its_warning():
    assumed = tuning.sampler_of({})
    assert (assumed.kind, assumed.startup, assumed.label, assumed.recorded) == ("tpe", 10, "TPE (startup 10)", False)
    note = tuning.sampler_note(assumed, 8)
    assert note.startswith("8 search trials per method with TPE (startup 10) (the parent run records no sampler")
    assert "was a random search of 8 draws per method" in note
    assert tuning.sampler_note(tuning.sampler_of({"sampler": "tpe"}), 10).startswith("10 search trials")
    after = tuning.sampler_note(tuning.sampler_of({"sampler": "TPE", "n_startup_trials": "5"}), 20)
    assert after.startswith("TPE (startup 5): after its 5 random startup trials") and "approximate" in after
    random = tuning.sampler_of({"sampler": "random"})
    assert random.label == ("random search with common random numbers (trial i of every method has the same "
                            "shared hyperparameters)") and tuning.sampler_note(random, 8) is None
    assert "approximate" in tuning.sampler_note(tuning.sampler_of({"sampler": "cmaes"}), 30)
    assert tuning.sampler_note(assumed, float("nan")) is None
