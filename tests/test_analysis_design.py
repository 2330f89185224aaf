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
