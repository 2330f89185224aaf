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


# ---------------------------------------------------------------------------------------------
# Top-k selection on fresh seeds

SELECT_SEEDS = [11, 12, 13]
# Per method: search trials (optuna number → val_acc, val_loss), and the top-3's selection runs'
# val_acc on seeds 11..13 (None: the run failed, scored chance). sharpening's t1 led the search and
# has the single best selection seed (0.99), but t3 has the best mean: the rule takes t3.
SEARCH = {"sharpening": {0: (0.930, 0.30), 1: (0.950, 0.20), 2: (0.800, 0.60), 3: (0.940, 0.25), 4: (0.700, 0.90)},
          "baseline": {0: (0.910, 0.30), 1: (0.920, 0.28), 2: (0.900, 0.35)},
          "annealing": {0: (0.960, 0.20), 1: (0.950, 0.22)}}
SELECT = {"sharpening": {1: [0.900, 0.990, 0.890], 3: [0.935, 0.930, 0.940], 0: [0.920, 0.930, 0.910]},
          # t1 and t0 tie on mean val_acc; t0's lower mean val_loss decides. t2 ties with both and
          # has t0's loss: the better search rank (t0's) decides between them.
          "baseline": {1: [0.910, 0.920, 0.900], 0: [0.900, 0.920, 0.910], 2: [0.920, 0.900, 0.910]},
          # t0 is the best on the two seeds it completed, but its failed run scores chance.
          "annealing": {0: [0.970, None, 0.960], 1: [0.940, 0.950, 0.945]}}
SELECT_LOSS = {("baseline", 1): 0.30, ("baseline", 0): 0.25, ("baseline", 2): 0.25}
RULE = {"sharpening": 3, "baseline": 0, "annealing": 1}


def selection_rows(replicate: str | None = None, repeats: dict | None = None, config_id: bool = True) -> list[dict]:
    """Search and selection runs of SEARCH/SELECT; `repeats`: method → the trial number its seed
    repeats ran (tagged with its config_id where `config_id`, else identified by their params only)."""
    rows = []
    prefix = f"r{replicate}/" if replicate not in (None, "0") else ""
    lr = lambda method, number: 0.01 * (number + 1) + (0.001 if method == "annealing" else 0)  # noqa: E731
    for method, trials in SEARCH.items():
        for number, (val_acc, val_loss) in trials.items():
            rows.append(run("search", method, 0, val_acc + 0.01, replicate=replicate, val_acc=val_acc,
                            val_loss=val_loss, optuna_trial=str(number), lr=lr(method, number)))
        for number, values in SELECT[method].items():
            for seed, value in zip(SELECT_SEEDS, values):
                rows.append(run("select", method, seed, 0.9, replicate=replicate, val_acc=value,
                                val_loss=SELECT_LOSS.get((method, number), 0.3),
                                outcome="failed" if value is None else "completed",
                                slot=f"select:{method}:t{number}:s{seed}", optuna_trial=str(number),
                                config_id=f"{prefix}{method}-t{number}", lr=lr(method, number)))
        if repeats and method in repeats:
            number = repeats[method]
            for seed in SEEDS:
                rows.append(run("repeat", method, seed, 0.9, replicate=replicate, val_acc=0.91 + 0.001 * seed,
                                val_loss=0.3, slot=f"repeat:{method}:s{seed}", lr=lr(method, number),
                                config_id=f"{prefix}{method}-t{number}" if config_id else None))
    return rows


def test_selection_takes_the_best_mean_not_the_luckiest_seed():
    table = tables.selection_table(pd.DataFrame(selection_rows()))
    assert list(table.columns) == tables.SELECTION_COLUMNS
    assert list(dict.fromkeys(table["method"])) == ["baseline", "sharpening", "annealing"]
    sharpening = table[table["method"] == "sharpening"].set_index("optuna_trial")
    assert list(sharpening.index) == [1, 3, 0]  # by search rank
    assert sharpening["search_rank"].tolist() == [1, 2, 3] and sharpening["config_id"].tolist() == [
        "sharpening-t1", "sharpening-t3", "sharpening-t0"]
    for number, values in SELECT["sharpening"].items():
        row = sharpening.loc[number]
        assert row["search_val_acc"] == pytest.approx(SEARCH["sharpening"][number][0])  # the search trial's
        assert row["select_mean"] == pytest.approx(np.mean(values)) and row["n_run"] == 3
        assert row["select_sd"] == pytest.approx(np.std(values, ddof=1))
        assert row["overstated"] == pytest.approx(SEARCH["sharpening"][number][0] - np.mean(values))
        assert row["seeds"] == "11,12,13"
    # t1 has the best search val_acc and the best single selection seed; t3 the best mean.
    assert sharpening["rule_pick"].tolist() == [False, True, False]
    assert sharpening["chosen"].tolist() == [False, True, False]
    assert sharpening.loc[3, "chosen_by"].startswith("the rule (no seed repeats")
    for method, number in RULE.items():
        mine = table[table["method"] == method].set_index("optuna_trial")
        assert mine.index[mine["chosen"]].tolist() == [number], method
    # The failed selection run is counted and scored chance (digits: 0.1), as every re-run is.
    annealing = table[table["method"] == "annealing"].set_index("optuna_trial").loc[0]
    assert (annealing["n_completed"], annealing["n_run"], annealing["failed"]) == (2, 3, "1 failed")
    assert annealing["select_mean"] == pytest.approx(np.mean([0.970, 0.1, 0.960]))


def test_the_chosen_config_is_the_one_the_seed_repeats_ran():
    # The launcher re-ran sharpening's t0 (its choice, not the rule's): the table says so, and marks both.
    table = tables.selection_table(pd.DataFrame(selection_rows(repeats={"sharpening": 0, "baseline": 0})))
    sharpening = table[table["method"] == "sharpening"].set_index("optuna_trial")
    assert sharpening["chosen"].tolist() == [False, False, True] and sharpening.loc[3, "rule_pick"]
    assert sharpening.loc[0, "chosen_by"] == "its seed repeats' config_id"
    assert sharpening.loc[0, "repeat_n"] == 5
    assert sharpening.loc[0, "repeat_val_acc"] == pytest.approx(np.mean([0.91 + 0.001 * s for s in SEEDS]))
    assert np.isnan(sharpening.loc[3, "repeat_val_acc"]) and sharpening.loc[3, "repeat_n"] == 0
    # Repeats without a config_id tag are matched by their params.
    table = tables.selection_table(pd.DataFrame(selection_rows(repeats={"sharpening": 3}, config_id=False)))
    sharpening = table[table["method"] == "sharpening"].set_index("optuna_trial")
    assert sharpening.index[sharpening["chosen"]].tolist() == [3]
    assert sharpening.loc[3, "chosen_by"] == "its seed repeats' params"
    # annealing has no repeats: the rule's pick.
    annealing = table[table["method"] == "annealing"]
    assert annealing.loc[annealing["chosen"], "chosen_by"].iloc[0].startswith("the rule")


def test_selection_per_replicate_and_absent_without_selection_runs():
    rows = selection_rows("0") + selection_rows("1", repeats={"sharpening": 1})
    table = tables.selection_table(pd.DataFrame(rows))
    assert table["replicate"].tolist() == ["0"] * 8 + ["1"] * 8
    again = table[(table["replicate"] == "1") & (table["method"] == "sharpening")].set_index("optuna_trial")
    assert again.loc[1, "config_id"] == "r1/sharpening-t1" and again.index[again["chosen"]].tolist() == [1]
    first = table[(table["replicate"] == "0") & (table["method"] == "sharpening")].set_index("optuna_trial")
    assert first.index[first["chosen"]].tolist() == [3]  # replicate 0 has no repeats: the rule
    without = [row for row in selection_rows() if row["phase"] != "select"]
    empty = tables.selection_table(pd.DataFrame(without))
    assert empty.empty and list(empty.columns) == tables.SELECTION_COLUMNS
