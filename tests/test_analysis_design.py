"""analysis/ on the study's design runs (issue 28): the crossed matched runs (each curriculum at the
baseline's shared hyperparameters, on the baseline's seeds) and the top-k selection runs (each
method's best search configs re-run on fresh seeds, the one with the best mean chosen).

Trial frames are built here as `analysis.load` returns them (one row per run; replicate and
optuna_trial as strings), with known values; statistics are checked against scipy. The last tests
render the report from a store written as a study writes it (`study.tracking.StudyTracker`), with
and without these runs.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from analysis import report, tables, words
from study.tracking import StudyTracker

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


# ---------------------------------------------------------------------------------------------
# The report, from a store written as a study writes it: with the design runs, and without (an
# older study)

STORE_EPOCHS = 2
REPORT_SEEDS = [1, 2, 3, 4]
STORE_CONFIGS = {"baseline": {"method": "baseline"},
                 "sharpening": {"method": "sharpening", "K": 2, "epochs_per_level": 1, "kernel": "box"},
                 "annealing": {"method": "annealing", "theta_schedule": "linear", "anneal_epochs": 1}}
# Search trials: optuna number → (val_acc, lr); each method's top 2 go to the selection.
STORE_SEARCH = {"baseline": {0: (0.920, 0.05), 1: (0.910, 0.03), 2: (0.850, 0.2)},
                "sharpening": {0: (0.800, 0.2), 1: (0.950, 0.02), 2: (0.940, 0.04)},
                "annealing": {0: (0.925, 0.06), 1: (0.930, 0.01), 2: (0.900, 0.1)}}
# Selection runs' val_acc on seeds 11..13: sharpening's search favourite t1 loses to t2 on the mean.
STORE_SELECT = {"baseline": {0: [0.915, 0.914, 0.916], 1: [0.905, 0.904, 0.906]},
                "sharpening": {1: [0.930, 0.970, 0.920], 2: [0.942, 0.945, 0.944]},
                "annealing": {1: [0.925, 0.924, 0.926], 0: [0.920, 0.919, 0.921]}}
STORE_CHOSEN = {"baseline": 0, "sharpening": 2, "annealing": 1}
# test_acc of the repeats, and of the matched (baseline at m's hyperparameters) and crossed (m at the
# baseline's) runs, seeds 1..4: sharpening better in both directions; annealing equivalent to its
# matched baseline and 1 pp worse at the baseline's hyperparameters.
STORE_REPEATS = {"baseline": [0.920, 0.925, 0.918, 0.922], "sharpening": [0.950, 0.954, 0.949, 0.953],
                 "annealing": [0.9302, 0.9299, 0.9311, 0.9288]}
STORE_MATCHED = {"sharpening": [0.930, 0.935, 0.929, 0.931], "annealing": [0.9300, 0.9300, 0.9310, 0.9290]}
STORE_CROSSED = {"sharpening": [0.940, 0.946, 0.937, 0.941], "annealing": [0.9101, 0.9152, 0.9079, 0.9118]}


def store_run(tracker, trial_id: str, method: str, lr: float, tags: dict, seed: int, val_acc: float,
              test_acc: float, outcome: str = "completed") -> None:
    config = {**STORE_CONFIGS[method], "lr": lr, "dataset": "digits", "epochs": STORE_EPOCHS, "seed": seed}
    run_id = tracker.create_child(trial_id, config, tags)
    for epoch in range(1, STORE_EPOCHS + 1):
        result = {"epoch": epoch, "val_acc": val_acc - 0.01 * (STORE_EPOCHS - epoch), "val_loss": 0.3,
                  "train_loss": 0.2, "in_final_regime": 1}
        if epoch == STORE_EPOCHS:
            result.update({"test_acc": test_acc, "train_seconds": 2.0, "trial_seconds": 2.4, "outcome": outcome})
        tracker.log_result(run_id, result)
    tracker.finish_child(run_id, outcome)


def make_design_study(uri: str, root, name: str, design: bool) -> None:
    """Search, repeats and matched runs; with `design` also the selection and the crossed runs, and the
    parent params of the launcher that runs them."""
    params = {"num_samples": 3, "seed_repeats": len(REPORT_SEEDS), "epochs": STORE_EPOCHS,
              "methods": json.dumps(list(STORE_CONFIGS))}
    if design:
        params.update({"sampler": "random", "select_top": 2, "select_seeds": 3, "replicates": 1})
    tracker = StudyTracker.create(uri, name, (root / "artifacts" / name).as_uri(), tags={"space": "test"},
                                  params=params)
    count = iter(range(10_000))
    summary = {}
    chosen_lr = {}
    for method, trials in STORE_SEARCH.items():
        for number, (val_acc, lr) in trials.items():
            trial_id = f"t{next(count):04d}"
            store_run(tracker, trial_id, method, lr, {"phase": "search", "optuna_trial": str(number)}, 0, val_acc,
                      val_acc)
            # With the selection the launcher chose STORE_CHOSEN; without it, the search's best.
            best = STORE_CHOSEN[method] if design else max(trials, key=lambda n: trials[n][0])
            if number == best:
                tracker.set_parent_tag(f"best_trial.digits.{method}", trial_id)
                chosen_lr[method] = (lr, number)
        summary[f"search_trials.digits.{method}"] = 3
        if design:
            for number, values in STORE_SELECT[method].items():
                for seed, value in zip((11, 12, 13), values):
                    store_run(tracker, f"t{next(count):04d}", method, trials[number][1],
                              {"phase": "select", "slot": f"select:{method}:t{number}:s{seed}",
                               "optuna_trial": str(number), "config_id": f"{method}-t{number}"}, seed, value, 0.9)
    for method, values in STORE_REPEATS.items():
        lr, number = chosen_lr[method]
        for seed, value in zip(REPORT_SEEDS, values):
            store_run(tracker, f"t{next(count):04d}", method, lr,
                      {"phase": "repeat", "slot": f"repeat:{method}:s{seed}",
                       **({"config_id": f"{method}-t{number}"} if design else {})}, seed, 0.9, value)
    base_lr = chosen_lr["baseline"][0]
    for method in ("sharpening", "annealing"):
        for seed, value in zip(REPORT_SEEDS, STORE_MATCHED[method]):
            store_run(tracker, f"t{next(count):04d}", "baseline", chosen_lr[method][0],
                      {"phase": "control", "slot": f"control:baseline~{method}:s{seed}", "matched_to": method},
                      seed, 0.9, value)
        if design:
            for seed, value in zip(REPORT_SEEDS, STORE_CROSSED[method]):
                store_run(tracker, f"t{next(count):04d}", method, base_lr,
                          {"phase": "control", "slot": f"control:{method}~baseline:s{seed}", "matched_to": "baseline"},
                          seed, 0.9, value)
    tracker.finish_parent(summary)


@pytest.fixture(scope="module")
def design_reports(tmp_path_factory):
    """(out, printed) of the report of a study with the design runs, and of one without."""
    # In memory (tmpfs) where there is one: every MLflow write is a transaction (see test_analysis.store_dir).
    shm = Path("/dev/shm")
    in_memory = shm.is_dir() and os.access(shm, os.W_OK)
    root = Path(tempfile.mkdtemp(prefix="test-design-", dir=shm)) if in_memory else tmp_path_factory.mktemp("design")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    found = {}
    for name, design in (("design", True), ("older", False)):
        make_design_study(uri, root, name, design)
        out = root / "reports" / name
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert report.main(["--tracking-uri", uri, "--experiment", name, "--out", str(out),
                                "--no-log-artifacts"]) == 0
        found[name] = (out, printed.getvalue())
    yield found
    if in_memory:
        shutil.rmtree(root, ignore_errors=True)


def test_report_shows_the_crossed_comparison_beside_the_matched_one(design_reports):
    out, printed = design_reports["design"]
    lines = printed.splitlines()
    head = next(i for i, line in enumerate(lines) if line.startswith("[digits] crossed"))
    assert lines[head] == ("[digits] crossed, each method at the baseline's shared hyperparameters (paired by seed): "
                           "Holm over 2 comparisons: sharpening, annealing vs baseline on clean test accuracy")
    assert lines[head + 1].startswith("  sharpening − baseline  4 seeds  Δ +") and "  better" in lines[head + 1]
    assert lines[head + 2].startswith("  annealing − baseline   4 seeds  Δ -") and " worse" in lines[head + 2]
    assert lines[head + 3] == "  both directions: sharpening  better in both directions"
    assert lines[head + 4] == ("  both directions: annealing   equivalent at its own hyperparameters, worse at the "
                               "baseline's: the difference depends on the hyperparameters")
    crossed = pd.read_csv(out / "crossed.csv").set_index("method")
    for method, values in STORE_CROSSED.items():
        test = scipy_stats.ttest_rel(values, STORE_REPEATS["baseline"])
        assert crossed.loc[method, "diff"] == pytest.approx(np.mean(np.subtract(values, STORE_REPEATS["baseline"])))
        assert crossed.loc[method, "p"] == pytest.approx(test.pvalue, rel=1e-9)
    matched = pd.read_csv(out / "matched.csv").set_index("method")
    assert matched.loc["annealing", "verdict"] == "equivalent within ±0.5 pp"
    summary = pd.read_csv(out / "summary.csv").set_index("method")
    assert summary.loc["sharpening", "crossed_verdict"] == "better" and summary.loc["annealing", "crossed_pairs"] == 4
    page = (out / "report.html").read_text()
    assert page.index("<h2>Matched baselines</h2>") < page.index(
        "<h2>Crossed: each method at the baseline&#x27;s hyperparameters</h2>") < page.index(
        "<h2>Controls side by side</h2>")
    assert "both directions" in page and "Δ method − baseline pp [95% CI]" in page
    markdown = (out / "summary.md").read_text()
    assert "| sharpening | better in both directions |" not in markdown  # the table has the Δ columns too
    assert "better in both directions" in markdown


def test_report_says_how_the_config_was_chosen_and_what_the_search_overstated(design_reports):
    out, printed = design_reports["design"]
    overstated = [STORE_SEARCH[m][n][0] - np.mean(STORE_SELECT[m][n]) for m, n in STORE_CHOSEN.items()]
    line = next(line for line in printed.splitlines() if line.startswith("[digits] selection: "))
    assert line.startswith("[digits] selection: Each searched method's top 2 search configurations by validation "
                           "accuracy were re-run on 3 fresh seeds each, and the one with the highest mean validation "
                           "accuracy over the selection seeds (ties: the lower mean validation loss, then the better "
                           "search rank) was chosen and re-run as the seed repeats.")
    assert (f"The search's validation accuracy of the chosen configuration overstated its mean on the fresh seeds by "
            f"{100 * np.mean(overstated):.2f} pp, on average over 3 methods (per method from "
            f"{100 * min(overstated):+.2f} to {100 * max(overstated):+.2f} pp).") in line
    assert "The selection chose another than the search's best trial for: sharpening (search rank 2)." in line
    assert "another candidate than this rule picks" not in line  # the repeats ran the rule's picks
    selection = pd.read_csv(out / "selection.csv")
    assert len(selection) == 6 and selection["chosen"].sum() == 3
    chosen = selection[selection["chosen"]].set_index("method")
    assert {m: int(chosen.loc[m, "optuna_trial"]) for m in STORE_CHOSEN} == STORE_CHOSEN
    assert (chosen["chosen_by"] == "its seed repeats' config_id").all() and (chosen["repeat_n"] == 4).all()
    page = (out / "report.html").read_text()
    assert page.index("<h2>Best configuration per method</h2>") < page.index("<h2>Selection on fresh seeds</h2>")
    assert "sharpening-t2 (2)" in page  # the candidate and its search rank
    # The sampler, named as the launcher ran it.
    sampler = ("random search with common random numbers (trial i of every method has the same shared "
               "hyperparameters)")
    assert f"[digits] tuning curves ({sampler}; expected best" in printed
    assert sampler in page and "select_top=2, select_seeds=3, replicates=1" in page


def test_a_report_without_crossed_or_selection_runs_says_so_in_one_line(design_reports):
    out, printed = design_reports["older"]
    assert "[digits] crossed" not in printed and "[digits] selection" not in printed
    assert "[digits] matched baselines (paired by seed): Holm over 2 comparisons" in printed
    page = (out / "report.html").read_text()
    assert page.count("no crossed comparison: needs each curriculum or variant re-run at the baseline") == 1
    assert "this study has none (launchers before the crossed design wrote none)" in page
    assert page.count("no selection runs (phase select): each method&#x27;s configuration is its single best") == 1
    for name in ("crossed", "selection"):
        assert pd.read_csv(out / f"{name}.csv").empty
    assert "TPE (startup 10) (not recorded on the parent run: assumed)" in page


def test_selection_in_words_names_a_launcher_that_did_not_follow_the_rule():
    table = tables.selection_table(pd.DataFrame(selection_rows(repeats={"sharpening": 0, "baseline": 0,
                                                                        "annealing": 1})))
    text = words.selection_text(table, tables.SELECT_RULE)
    assert text.startswith("Each searched method's top 3 search configurations by validation accuracy were re-run on "
                           "3 fresh seeds each")  # from the runs: no select_top / select_seeds given
    chosen = {"sharpening": 0, "baseline": 0, "annealing": 1}
    over = [SEARCH[m][n][0] - np.mean([v if v is not None else 0.1 for v in SELECT[m][n]]) for m, n in chosen.items()]
    assert f"overstated its mean on the fresh seeds by {100 * np.mean(over):.2f} pp, on average over 3 methods" in text
    assert "another candidate than this rule picks for: sharpening (both marked in the table)" in text
    # No method kept its search's best trial.
    assert "another than the search's best trial for: baseline (search rank 2), sharpening (search rank 3), " \
           "annealing (search rank 2)." in text
    people = words.selection_for_people(table)
    sharpening = people[people["method"] == "sharpening"].set_index("candidate (search rank)")
    assert sharpening.loc["sharpening-t0 (3)", "chosen"] == "chosen (its seed repeats' config_id)"
    assert sharpening.loc["sharpening-t3 (2)", "chosen"] == "the rule's pick (not what the seed repeats ran)"
    assert sharpening.loc["sharpening-t1 (1)", "chosen"] == ""
    assert "replicate" not in people  # one replicate: no column for it


@pytest.mark.parametrize("own, crossed, expected", [
    ("better", "better", "better in both directions"),
    ("equivalent within ±0.5 pp", "equivalent within ±0.5 pp", "equivalent in both directions"),
    ("better", "worse", "better at its own hyperparameters, worse at the baseline's: the difference depends on the "
                        "hyperparameters"),
    ("better", "inconclusive (≈ 12 seeds per side would detect it)", "better at its own hyperparameters; open at the "
                                                                     "baseline's"),
    ("inconclusive (…)", "worse", "worse at the baseline's hyperparameters; open at its own"),
    ("inconclusive (…)", "not testable (no pairs)", "open in both directions"),
    ("better", None, "one direction only")])
def test_both_directions_in_words(own, crossed, expected):
    assert words.direction_words(own, crossed) == expected
