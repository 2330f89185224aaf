"""analysis/ on the study's design runs (issue 28): the crossed matched runs (each curriculum at the
baseline's shared hyperparameters, on the baseline's seeds) and the top-k selection runs (each
method's best search configs re-run on fresh seeds, the one with the best mean chosen).

Trial frames are built here as `analysis.load` returns them (tags as strings, one row per run), with
known values; the statistics are checked against scipy. The last tests render the whole report from
a store written as a study writes it (`study.tracking.StudyTracker`), with and without these runs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from analysis import tables

SEEDS = [1, 2, 3, 4, 5]


def run(phase: str, method: str, seed: int, test_acc: float, *, replicate: str | None = None,
        matched_to: str | None = None, slot: str | None = None, outcome: str = "completed", **extra) -> dict:
    """One row of the trial frame."""
    row = {"phase": phase, "method": method, "dataset": "digits", "regime": "standard", "seed": seed,
           "outcome": outcome, "matched_to": matched_to, "slot": slot, "test_acc": test_acc, **extra}
    if replicate is not None:
        row["replicate"] = replicate
        if row["slot"] and replicate != "0":
            row["slot"] = f"r{replicate}/{row['slot']}"
    return row


# ---------------------------------------------------------------------------------------------
# Pairing by seed within a replicate

def test_paired_comparisons_pair_seeds_within_their_replicate():
    # Two replicates reuse seeds 1, 2. The split moves a replicate's runs together (r1 is 5 pp lower),
    # and the seeds differ within it: pairing seed 1 of r0 with seed 1 of r1 would be wrong.
    repeat = {"0": [0.950, 0.962], "1": [0.905, 0.903]}
    matched = {"0": [0.940, 0.960], "1": [0.900, 0.899]}
    rows = []
    for replicate in ("1", "0"):  # written out of order: the pairing must not depend on it
        for i, seed in enumerate((1, 2)):
            rows.append(run("repeat", "sharpening", seed, repeat[replicate][i], replicate=replicate,
                            slot=f"repeat:sharpening:s{seed}"))
            rows.append(run("control", "baseline", seed, matched[replicate][i], replicate=replicate,
                            matched_to="sharpening", slot=f"control:baseline~sharpening:s{seed}"))
    table = tables.matched_table(pd.DataFrame(rows)).set_index("method")
    row = table.loc["sharpening"]
    ours = repeat["0"] + repeat["1"]
    theirs = matched["0"] + matched["1"]
    assert row["pairs"] == 4 and row["unpaired"] == 0 and row["seeds"] == "r0/1,r0/2,r1/1,r1/2"
    assert row["diff"] == pytest.approx(np.mean(np.subtract(ours, theirs)), abs=1e-12)
    assert row["p"] == pytest.approx(scipy_stats.ttest_rel(ours, theirs).pvalue, rel=1e-9)
    # One replicate: the seeds as before.
    one = tables.matched_table(pd.DataFrame([r for r in rows if r["replicate"] == "0"]))
    assert one["seeds"].tolist() == ["1,2"]


# ---------------------------------------------------------------------------------------------
# Crossed matched runs

BASELINE = [0.9200, 0.9260, 0.9150, 0.9230, 0.9180]  # the baseline's seed repeats, seeds 1..5
# Each method at the baseline's shared hyperparameters, seeds 1..5: sharpening gains ≈ 1 pp on every
# seed, annealing loses ≈ 1 pp, combined is a hair from the baseline.
CROSSED = {"sharpening": [0.9310, 0.9355, 0.9262, 0.9330, 0.9290],
           "annealing": [0.9100, 0.9170, 0.9040, 0.9125, 0.9085],
           "combined": [0.9201, 0.9259, 0.9152, 0.9229, 0.9181]}
OWN = {"sharpening": 0.96, "annealing": 0.90, "combined": 0.93}  # each method's own repeats (every seed)
MATCHED_BASELINE = 0.80  # the baseline at a method's hyperparameters: far off, so a mix-up shows


def crossed_frame() -> pd.DataFrame:
    rows = [run("repeat", "baseline", seed, value, slot=f"repeat:baseline:s{seed}")
            for seed, value in zip(SEEDS, BASELINE)]
    for method, values in CROSSED.items():
        rows += [run("repeat", method, seed, OWN[method] + 0.001 * seed, slot=f"repeat:{method}:s{seed}")
                 for seed in SEEDS]
        rows += [run("control", "baseline", seed, MATCHED_BASELINE, matched_to=method,
                     slot=f"control:baseline~{method}:s{seed}") for seed in SEEDS]
        order = [4, 2, 0, 3, 1]  # written in shuffled seed order: pairing is by seed, not by row
        rows += [run("control", method, SEEDS[i], values[i], matched_to="baseline",
                     slot=f"control:{method}~baseline:s{SEEDS[i]}") for i in order]
    # sharpening's crossed run on a seed the baseline has no repeat of: unpaired, left out of the test.
    rows.append(run("control", "sharpening", 6, 0.99, matched_to="baseline", slot="control:sharpening~baseline:s6"))
    # A control of sharpening (matched_to sharpening) is not a crossed run.
    rows += [run("control", "anti", seed, 0.95, matched_to="sharpening", slot=f"control:anti~sharpening:s{seed}")
             for seed in SEEDS]
    return pd.DataFrame(rows)


def test_crossed_runs_are_paired_by_seed_against_the_baselines_repeats():
    table = tables.crossed_table(crossed_frame()).set_index("method")
    assert list(table.index) == ["sharpening", "annealing", "combined"]  # the table's reading order
    pvalues = {}
    for method, values in CROSSED.items():
        row = table.loc[method]
        test = scipy_stats.ttest_rel(values, BASELINE)
        assert row["versus"] == "baseline" and row["pairs"] == 5 and row["seeds"] == "1,2,3,4,5"
        # Δ = method − baseline, from the crossed runs (not the method's own repeats, not the matched runs).
        assert row["diff"] == pytest.approx(np.mean(np.subtract(values, BASELINE)), abs=1e-12)
        assert row["method_mean"] == pytest.approx(np.mean(values)) and row["versus_mean"] == pytest.approx(
            np.mean(BASELINE))
        assert (row["diff_low"], row["diff_high"]) == tuple(pytest.approx(v) for v in test.confidence_interval(0.95))
        assert row["p"] == pytest.approx(test.pvalue, rel=1e-9)
        pvalues[method] = test.pvalue
    assert table.loc["sharpening", "unpaired"] == 1 and table.loc["annealing", "unpaired"] == 0
    assert table.loc["sharpening", "diff"] > 0 and table.loc["sharpening", "verdict"] == "better"
    assert table.loc["annealing", "diff"] < 0 and table.loc["annealing", "verdict"] == "worse"
    assert table.loc["combined", "verdict"] == "equivalent within ±0.5 pp"
    # Holm over the crossed family only (three comparisons), by hand.
    ordered = sorted(pvalues, key=pvalues.get)
    running = 0.0
    for rank, method in enumerate(ordered):
        running = max(running, min(1.0, (3 - rank) * pvalues[method]))
        assert table.loc[method, "p_holm"] == pytest.approx(running, rel=1e-9)
    # The matched table is untouched by the crossed runs: still the baseline at each method's hyperparameters.
    matched = tables.matched_table(crossed_frame()).set_index("method")
    assert matched.loc["sharpening", "versus_mean"] == pytest.approx(MATCHED_BASELINE)


def test_crossed_comparison_in_the_summary_and_absent_without_crossed_runs():
    summary = tables.summary_table(crossed_frame()).set_index("method")
    assert summary.loc["annealing", "crossed_verdict"] == "worse"
    assert summary.loc["annealing", "crossed_diff"] == pytest.approx(np.mean(np.subtract(CROSSED["annealing"],
                                                                                       BASELINE)))
    # annealing beats the baseline at its own hyperparameters (the matched runs) and loses at the baseline's.
    assert summary.loc["annealing", "crossed_pairs"] == 5 and summary.loc["annealing", "matched_verdict"] == "better"
    older = crossed_frame()
    older = older[~((older["phase"] == "control") & (older["matched_to"] == "baseline"))]
    assert tables.crossed_table(older).empty
    assert summary.columns.equals(tables.summary_table(older).set_index("method").columns)
