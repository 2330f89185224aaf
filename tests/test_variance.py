"""analysis.variance: variance components recovered from synthetic results with known components, the
REML estimate against the balanced-design ANOVA estimator, and the headline difference over
replicates against scipy's paired t-test of the replicate means."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from analysis import stats, variance, words

SPLIT, CONFIGURATION, SEED = 0.010, 0.006, 0.003  # true sds, accuracy fractions (1.0, 0.6, 0.3 pp)


def nested(replicates, configurations, seeds, rng, sds=(SPLIT, CONFIGURATION, SEED), mean=0.96):
    """Scores from the nested model: split effect per replicate, configuration within it, seed residual."""
    rows = []
    for r in range(replicates):
        split = rng.normal(0, sds[0])
        for c in range(configurations):
            configuration = rng.normal(0, sds[1])
            for s in range(seeds):
                rows.append({"replicate": r, "configuration": f"top{c + 1}", "seed": s,
                             "score": mean + split + configuration + rng.normal(0, sds[2])})
    return pd.DataFrame(rows)


def anova(frame):
    """The balanced nested ANOVA (method of moments): E[MS_seed] = σ²_e, E[MS_config] = σ²_e + S σ²_c,
    E[MS_replicate] = σ²_e + S σ²_c + C S σ²_r."""
    r, c, s = frame["replicate"].nunique(), frame["configuration"].nunique(), frame["seed"].nunique()
    grand = frame["score"].mean()
    by_replicate = frame.groupby("replicate")["score"].mean()
    by_config = frame.groupby(["replicate", "configuration"])["score"].mean()
    ms_replicate = c * s * ((by_replicate - grand) ** 2).sum() / (r - 1)
    ms_config = s * ((by_config - by_replicate.reindex(by_config.index.get_level_values(0)).to_numpy()) ** 2).sum() / (
        r * (c - 1))
    fitted = frame.set_index(["replicate", "configuration"]).index.map(by_config)
    ms_seed = ((frame["score"] - np.asarray(fitted)) ** 2).sum() / (r * c * (s - 1))
    return (ms_replicate - ms_config) / (c * s), (ms_config - ms_seed) / s, ms_seed


def test_components_recover_known_variances():
    # 12 seeded studies of 30 replicates × 4 configurations × 4 seeds: the mean estimate of each
    # variance lies within 3 Monte-Carlo standard errors of the truth (REML is unbiased here up to
    # its truncation at 0, which these sizes do not reach), and those errors are small enough for
    # the check to mean something.
    estimates = []
    for seed in range(12):
        found = variance.components(nested(30, 4, 4, np.random.default_rng(seed)))
        assert found.estimator == "REML (MixedLM)" and (found.replicates, found.configurations, found.runs) == (
            30, 120, 480)
        estimates.append((found.split, found.configuration, found.seed))
    estimates = np.array(estimates)
    truth = np.array([SPLIT, CONFIGURATION, SEED]) ** 2
    error = estimates.std(axis=0, ddof=1) / math.sqrt(len(estimates))
    assert np.all(error < 0.1 * truth)
    assert np.all(np.abs(estimates.mean(axis=0) - truth) < 3 * error), (estimates.mean(axis=0), truth, error)
    # and a design where the configuration does not matter finds (next to) none of it
    flat = nested(30, 4, 4, np.random.default_rng(12), sds=(SPLIT, 0.0, SEED))
    assert math.sqrt(variance.components(flat).configuration) < 0.2 * SEED


def test_reml_equals_the_balanced_anova_estimator_where_it_is_positive():
    frame = nested(10, 4, 5, np.random.default_rng(0))
    by_moments = anova(frame)
    assert min(by_moments) > 0
    found = variance.components(frame)
    assert (found.split, found.configuration, found.seed) == pytest.approx(by_moments, rel=1e-3)


def test_what_one_replicate_or_one_configuration_can_measure():
    rng = np.random.default_rng(5)
    one_replicate = nested(1, 5, 10, rng)
    found = variance.components(one_replicate)
    assert math.isnan(found.split) and found.note.startswith("one replicate: the split's variance is not measured")
    assert found.configuration > 0 and found.seed > 0
    one_config = nested(1, 1, 10, rng)
    found = variance.components(one_config)
    assert found.estimator == "sample variance" and math.isnan(found.configuration)
    assert found.seed == pytest.approx(one_config["score"].var(ddof=1))
    chosen_only = nested(8, 1, 6, rng)  # each replicate re-runs only its chosen config: confounded
    found = variance.components(chosen_only)
    assert math.isnan(found.configuration) and found.split > 0
    assert "one configuration per replicate: the split component holds the configuration's variance too" in found.note
    # "top1" of replicate 0 and "top1" of replicate 1 are different configurations (nested)
    assert variance.components(nested(3, 2, 3, rng)).configurations == 6
    with pytest.raises(ValueError):
        variance.components(one_config.iloc[:1])


# ---------------------------------------------------------------------------------------------
# From a study's runs

def trial_rows(replicate_effects, methods, seeds=5, rng=None, replicate_tag=True):
    """Seed repeats of each method (and the baseline at sharpening's config: a matched run) in
    each replicate, as analysis.load's trial frame holds them (tags as strings)."""
    rng = rng or np.random.default_rng(0)
    rows = []
    for r, effect in enumerate(replicate_effects):
        for method, (offset, lr) in methods.items():
            for s in range(1, seeds + 1):
                row = {"phase": "repeat", "method": method, "dataset": "digits", "regime": "standard", "seed": s,
                       "outcome": "completed", "lr": lr, "slot": f"r{r}:repeat:{method}:s{s}",
                       "test_acc": 0.95 + effect + offset + rng.normal(0, 0.002)}
                if replicate_tag:
                    row["replicate"] = str(r)
                rows.append(row)
            if method == "sharpening":
                for s in range(1, seeds + 1):
                    row = {"phase": "control", "method": "baseline", "matched_to": "sharpening", "dataset": "digits",
                           "regime": "standard", "seed": s, "outcome": "completed", "lr": lr,
                           "slot": f"r{r}:control:baseline~sharpening:s{s}",
                           "test_acc": 0.95 + effect - 0.004 + rng.normal(0, 0.002)}
                    if replicate_tag:
                        row["replicate"] = str(r)
                    rows.append(row)
    return pd.DataFrame(rows)


METHODS = {"baseline": (0.0, 0.05), "sharpening": (0.003, 0.02), "annealing": (0.0, 0.04)}


def test_variance_table_of_a_study_without_replicates():
    frame = trial_rows([0.0], METHODS, seeds=6, replicate_tag=False)
    assert variance.replicates_of(frame) == []
    table = variance.variance_table(frame).set_index("method")
    assert list(table.index) == ["baseline", "sharpening", "annealing", "all methods"]
    # The baseline ran at two configurations (its own, and sharpening's lr as its matched run).
    assert table.loc["baseline", "configurations"] == 2 and table.loc["baseline", "runs"] == 12
    assert table.loc["sharpening", "configurations"] == 1 and table.loc["sharpening", "estimator"] == "sample variance"
    assert table.loc["sharpening", "seed_sd"] == pytest.approx(
        frame[(frame["method"] == "sharpening")]["test_acc"].std(ddof=1))
    assert table["split_sd"].isna().all()
    shares = table[["split_share", "configuration_share", "seed_share"]].sum(axis=1, skipna=True)
    assert shares.to_numpy() == pytest.approx(1.0)
    people = words.variance_for_people(table.reset_index())
    assert people.iloc[0]["split (replicate)"] == "not measured"
    assert people.iloc[1]["seed"].endswith("(100 %)")


def test_one_diverged_run_gets_a_row_of_the_completed_runs_beside_it():
    """A run that did not complete scores chance (10 % on digits): one diverged annealing run holds
    most of annealing's and the pooled spread; the rows over completed runs only show the spread
    without it, and appear only where some run did not complete."""
    frame = trial_rows([0.0, 0.01], METHODS, seeds=4)
    diverged = frame.index[(frame["method"] == "annealing") & (frame["phase"] == "repeat")][0]
    frame.loc[diverged, ["outcome", "test_acc"]] = ["diverged", math.nan]
    table = variance.variance_table(frame)
    every = table[table["scored"] == variance.EVERY_RUN].set_index("method")
    completed = table[table["scored"] == variance.COMPLETED].set_index("method")
    assert list(every.index) == ["baseline", "sharpening", "annealing", "all methods"]
    assert list(completed.index) == ["annealing", "all methods"]  # the methods whose runs all completed: once
    assert completed.loc["annealing", "runs"] == every.loc["annealing", "runs"] - 1
    assert completed.loc["all methods", "runs"] == every.loc["all methods", "runs"] - 1
    sd = lambda row: math.sqrt(np.nansum([row[f"{p}_sd"] ** 2 for p in ("split", "configuration", "seed")]))
    assert sd(every.loc["annealing"]) > 0.1  # chance against ~95 %: tens of points
    assert sd(completed.loc["annealing"]) < 0.02  # the 0.2-pp seeds and a 1-pp split
    assert sd(completed.loc["all methods"]) < 0.02 < sd(every.loc["all methods"])
    people = words.variance_for_people(table)
    assert list(people["scored"]) == list(table["scored"])
    assert "scored" not in words.variance_for_people(table[table["scored"] == variance.EVERY_RUN]).columns


def test_degenerate_spreads_do_not_stop_the_table():
    frame = trial_rows([0.0, 0.01], METHODS, seeds=3)
    frame.loc[frame["method"] == "annealing", "test_acc"] = 0.9  # every annealing run scored the same
    lone = frame[(frame["method"] == "sharpening") & (frame["phase"] == "repeat")].iloc[:1].assign(
        method="cbs", slot="r0:repeat:cbs:s1")
    table = variance.variance_table(pd.concat([frame, lone])).set_index("method")
    assert "cbs" not in table.index  # one run: no spread to split
    assert table.loc["annealing", "estimator"] in ("REML (MixedLM)", "not estimated")
    if table.loc["annealing", "estimator"] == "REML (MixedLM)":
        assert table.loc["annealing", ["split_sd", "seed_sd"]].fillna(0).max() < 1e-6


def test_headline_difference_over_replicates_is_the_paired_t_of_replicate_means():
    effects = [0.0, 0.008, -0.006, 0.004]  # the split moves every method of a replicate together
    frame = trial_rows(effects, METHODS, rng=np.random.default_rng(1))
    assert variance.replicates_of(frame) == ["0", "1", "2", "3"]
    summary = variance.replicate_summary(frame).set_index("method")
    assert list(summary.index) == ["sharpening", "annealing"]
    repeats = frame[frame["phase"] == "repeat"]
    means = repeats.groupby(["method", "replicate"])["test_acc"].mean().unstack()
    pvalues = {}
    for method in ("sharpening", "annealing"):
        test = scipy_stats.ttest_rel(means.loc[method], means.loc["baseline"])
        row = summary.loc[method]
        assert row["replicates"] == 4 and row["test"] == "paired"
        assert row["diff"] == pytest.approx((means.loc[method] - means.loc["baseline"]).mean(), abs=1e-12)
        low, high = test.confidence_interval(0.95)
        assert (row["diff_low"], row["diff_high"]) == (pytest.approx(low), pytest.approx(high))
        assert row["p"] == pytest.approx(test.pvalue, rel=1e-9)
        pvalues[method] = test.pvalue
    first, second = sorted(pvalues, key=pvalues.get)  # Holm over the two, by hand
    assert summary.loc[first, "p_holm"] == pytest.approx(min(1.0, 2 * pvalues[first]), rel=1e-9)
    assert summary.loc[second, "p_holm"] == pytest.approx(max(min(1.0, 2 * pvalues[first]), pvalues[second]),
                                                          rel=1e-9)
    # Per replicate: Welch within each replicate, and whether the verdict held in all four.
    assert summary.loc["sharpening", "per_replicate"].count(" | ") == 3
    assert summary.loc["sharpening", "per_replicate"].startswith("r0: ")
    assert summary.loc["sharpening", "verdict"] == "better"
    held = summary.loc["sharpening", "held_in_every_replicate"]
    kinds = {part.split(": ", 1)[1].split(" ")[0] for part in summary.loc["sharpening", "per_replicate"].split(" | ")}
    assert held == (kinds == {"better"})
    # Open comparisons count replicates, at α/2 (two comparisons in the family).
    annealing = summary.loc["annealing"]
    if annealing["verdict"].startswith("inconclusive"):
        assert "replicates" in annealing["verdict"] and annealing["alpha_adjusted"] == pytest.approx(0.025)
    # Variance: now the split is measured, and it is most of the spread (sd ≈ 0.6 pp against 0.2 pp of seed).
    table = variance.variance_table(frame).set_index("method")
    assert table.loc["all methods", "split_share"] > 0.5 and table.loc["all methods", "replicates"] == 4


def test_no_replicates_no_headline_over_replicates():
    frame = trial_rows([0.0], METHODS, replicate_tag=False)
    assert variance.replicate_summary(frame).empty
    assert list(variance.replicate_summary(frame).columns) == variance.REPLICATE_COLUMNS
    one = trial_rows([0.0], METHODS)  # tagged, but a single replicate
    assert variance.replicate_summary(one).empty


def test_seed_counts_over_replicates_say_replicates():
    d = stats.planned(stats.paired([0.951, 0.957, 0.949], [0.950, 0.952, 0.951]), 0.05)
    d = stats.Difference(**{**d.__dict__, "unit": "replicates"})
    assert stats.seeds_words(d).startswith("≈ ") and " replicates would detect" in stats.seeds_words(d)
