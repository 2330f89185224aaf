"""analysis/: the report read from a store written exactly as a study writes it, numbers checked
against independent computations (scipy), no study run.

The `store` fixture writes its runs through `study.tracking.StudyTracker` itself — the parent run
(tags best_trial.<dataset>.<method>, optuna_storage/optuna_studies; params num_samples, methods, ...;
metrics search_trials.*, best_val_acc.*, study_seconds), child runs with the tags, params (only
the fields a method uses) and per-epoch metrics the trainer reports — so the layout cannot drift
from the runner's. Known values: a tie in the search that the parent's record breaks by validation
loss, a diverged seed repeat, a failed control, matched baselines written in shuffled seed order.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from scipy import stats as scipy_stats

from analysis import plots, report, stats, tables, words
from analysis.importance import param_importances
from analysis.load import _per_run, _sql_bulk, client_for, load_study
from trainer.config import FIELD_NAMES, SEARCHED, TrialConfig
from trainer.schedules import level_plan, sigma_at, theta_at
from study.summary import rerun_outcomes
from study.tracking import StudyTracker

EPOCHS = 4
SEEDS = [1, 2, 3, 4, 5]
CHANCE = 0.1  # digits: 10 classes
# One config per method; sharpening's search ties on val_acc between a box and a gaussian trial.
CONFIGS = {
    "baseline": {"method": "baseline", "lr": 0.05},
    "sharpening": {"method": "sharpening", "K": 4, "epochs_per_level": 1, "kernel": "box", "lr": 0.02},
    "annealing": {"method": "annealing", "theta_schedule": "linear", "anneal_epochs": 2, "lr": 0.04},
    "combined": {"method": "combined", "K": 3, "epochs_per_level": 1, "kernel": "box", "theta_schedule": "step"},
    "cbs": {"method": "cbs", "sigma0": 1.5, "sigma_decay": 0.5, "decay_every": 1, "smooth_epochs": 2},
    "learned_theta": {"method": "learned_theta", "theta_schedule": "trainable", "theta0": 0.5},
}
# Search trials per method: (val_acc, val_loss, config changes). The parent records sharpening's
# SECOND trial (same val_acc as the first, lower val_loss); a naive max-val_acc rule takes the first.
SEARCH = {method: [(0.80, 0.50, {}), (0.85, 0.45, {}), (0.83, 0.47, {})] for method in CONFIGS}
SEARCH["sharpening"] = [(0.90, 0.40, {"kernel": "box"}), (0.90, 0.30, {"kernel": "gaussian"}), (0.85, 0.5, {})]
CHOSEN = {method: 1 for method in CONFIGS}  # index of the chosen search trial
# Seed repeats' test_acc, seeds 1..5; None = the run diverged (scored chance).
REPEATS = {
    "baseline": [0.9200, 0.9210, 0.9190, 0.9205, 0.9195],
    "sharpening": [0.9500, 0.9550, 0.9600, 0.9520, 0.9580],  # better
    "annealing": [0.9202, 0.9208, 0.9192, 0.9199, 0.9201],  # equivalent within ±0.5 pp
    "combined": [0.9300, 0.9400, None, 0.9350, 0.9450],  # a diverged repeat: inconclusive
    "cbs": [0.9000, 0.9050, 0.8980, 0.9020, 0.9030],  # worse
    "learned_theta": [0.9150, 0.9250, 0.9200, 0.9300, 0.9100],
}
# Matched baselines (baseline at each method's shared hyperparameters), seeds 1..5.
MATCHED = {
    "sharpening": [0.9300, 0.9320, 0.9350, 0.9310, 0.9330],
    "annealing": [0.9180, 0.9230, 0.9170, 0.9220, 0.9180],
    "combined": [0.9310, 0.9380, 0.9330, 0.9360, 0.9420],
    "cbs": [0.9010, 0.9030, 0.9000, 0.9040, 0.9000],
    "learned_theta": [0.9120, 0.9270, 0.9230, 0.9260, 0.9110],
}
# Controls of sharpening, seeds 1..5; "failed" = the run failed (scored chance).
CONTROL_VALUES = {
    "anti": [0.9400, 0.9420, 0.9460, 0.9430, 0.9470],
    "random_order": [0.9480, "failed", 0.9590, 0.9500, 0.9560],
    "blur_aug": [0.9490, 0.9560, 0.9610, 0.9500, 0.9570],
}
TRAIN_SECONDS = {"baseline": 2.0, "sharpening": 2.08}  # others 2.2


def chosen_config(method: str) -> dict:
    return {**CONFIGS[method], **SEARCH[method][CHOSEN[method]][2]}


def epoch_metrics(config: TrialConfig, epoch: int) -> dict:
    """What the trainer reports for an epoch (trainer/train.py), from the real schedules."""
    level = level_plan(config)[epoch - 1] if config.blurs else 1
    theta = config.theta0 - 0.05 * epoch if config.spec.learns_theta else theta_at(config, epoch, 1)
    return {"epoch": epoch, "blur_level": float(level if level else (config.K + 2) / 2),
            "in_final_regime": int(config.in_final_regime(epoch)),
            "theta": theta, "theta_min": theta, "theta_max": theta, "sigma": sigma_at(config, epoch), "lr": 0.01,
            "train_loss": 1.0 / epoch, "train_acc": 0.5 + 0.1 * epoch, "val_loss": 0.5 / epoch,
            "val_acc": 0.5 + 0.1 * epoch, "epoch_seconds": 0.5, "samples_per_second": 1000.0}


def add_run(tracker: StudyTracker, trial_id: str, config: dict, tags: dict, *, seed: int, val=(0.9, 0.3),
            test_acc=0.9, outcome="completed", seconds=2.2, final: dict | None = None,
            params: dict | None = None) -> str:
    """One child run, written as the runner's MLflow callback writes it (`final`: more final metrics;
    `params`: params of fields this TrialConfig may not have yet, logged beside its own)."""
    values = {**config, "dataset": "digits", "epochs": EPOCHS, "seed": seed}
    extra = {}
    for name, value in (params or {}).items():
        (values if name in FIELD_NAMES else extra)[name] = value
    trial = TrialConfig.from_dict(values)
    run_id = tracker.create_child(trial_id, values, tags)
    for name, value in extra.items():
        tracker.client.log_param(run_id, name, str(value))
    last = EPOCHS if outcome != "failed" else 1
    for epoch in range(1, last + 1):
        result = epoch_metrics(trial, epoch)
        if epoch == EPOCHS and outcome == "completed":
            result.update({"val_acc": val[0], "val_loss": val[1], "test_acc": test_acc, "test_loss": 0.3,
                           "test_f1_macro": test_acc - 0.01, "train_seconds": seconds, "trial_seconds": seconds + 0.5,
                           "outcome": "completed", **(final or {})})
            for k, kernel in enumerate(("box", "gaussian", "downsample")):
                for level in range(1, 5):
                    result[f"test_acc_{kernel}_L{level}"] = test_acc if level == 1 else test_acc - 0.1 * level - 0.01 * k
        if epoch == EPOCHS and outcome == "diverged":
            result.update({"train_loss": float("nan"), "train_seconds": seconds / 2, "outcome": "diverged"})
        tracker.log_result(run_id, result)
    tracker.finish_child(run_id, outcome, "RuntimeError: boom" if outcome == "failed" else None)
    return run_id


def make_study(uri: str, root: Path, name: str, *, optuna_storage: str) -> StudyTracker:
    """The known study: an equal search of every searched method, then every re-run."""
    methods = [*CONFIGS, *CONTROL_VALUES]
    studies = ",".join(f"{name}-digits-{m}" for m in CONFIGS)
    tracker = StudyTracker.create(uri, name, (root / "artifacts" / name).as_uri(),
                                  tags={"space": "test", "code_version": "test", "optuna_storage": optuna_storage,
                                        "optuna_studies": studies},
                                  params={"space": "test", "seed": 0, "num_samples": 3, "seed_repeats": 5,
                                          "epochs": EPOCHS, "methods": json.dumps(methods)})
    count = iter(range(10_000))
    summary = {}
    for method in CONFIGS:
        for number, (val_acc, val_loss, changes) in enumerate(SEARCH[method]):
            trial_id = f"t{next(count):04d}"
            add_run(tracker, trial_id, {**CONFIGS[method], **changes},
                    {"phase": "search", "optuna_study": f"{name}-digits-{method}", "optuna_trial": str(number)},
                    seed=0, val=(val_acc, val_loss), test_acc=val_acc + 0.05)
            if number == CHOSEN[method]:
                tracker.set_parent_tag(f"best_trial.digits.{method}", trial_id)
                summary[f"best_val_acc.digits.{method}"] = val_acc
        summary[f"search_trials.digits.{method}"] = 3
    for method, values in REPEATS.items():
        for seed, value in zip(SEEDS, values):
            add_run(tracker, f"t{next(count):04d}", chosen_config(method),
                    {"phase": "repeat", "slot": f"repeat:{method}:s{seed}"}, seed=seed,
                    test_acc=value or 0.0, outcome="diverged" if value is None else "completed",
                    seconds=TRAIN_SECONDS.get(method, 2.2))
    for method, values in MATCHED.items():
        shared = TrialConfig.from_dict({**chosen_config(method), "dataset": "digits", "epochs": EPOCHS})
        for seed in (5, 3, 1, 4, 2):  # shuffled: the tables must pair by seed, not by order
            add_run(tracker, f"t{next(count):04d}", shared.with_method("baseline"),
                    {"phase": "control", "slot": f"control:baseline~{method}:s{seed}", "matched_to": method},
                    seed=seed, test_acc=values[seed - 1], seconds=2.0)
    sharpening = TrialConfig.from_dict({**chosen_config("sharpening"), "dataset": "digits", "epochs": EPOCHS})
    for control, values in CONTROL_VALUES.items():
        for seed, value in zip(SEEDS, values):
            failed = value == "failed"
            add_run(tracker, f"t{next(count):04d}", sharpening.with_method(control),
                    {"phase": "control", "slot": f"control:{control}~sharpening:s{seed}", "matched_to": "sharpening"},
                    seed=seed, test_acc=0.0 if failed else value, outcome="failed" if failed else "completed")
    tracker.finish_parent({**summary, "study_seconds": 123.0, "resumes": 0.0, "overhead_ratio.digits": 1.3})
    return tracker


def make_partial(uri: str, root: Path, name: str) -> StudyTracker:
    """An interrupted study: unequal search (baseline 2 trials, sharpening 1), no re-runs, no robustness."""
    tracker = StudyTracker.create(uri, name, (root / "artifacts" / name).as_uri(),
                                  tags={"space": "test", "optuna_storage": "sqlite:////nonexistent/optuna.db"},
                                  params={"num_samples": 2, "methods": json.dumps(["baseline", "sharpening"])})
    for n, method in enumerate(["baseline", "baseline", "sharpening"]):
        add_run(tracker, f"p{n}", CONFIGS[method], {"phase": "search"}, seed=0, val=(0.8 + n / 100, 0.4))
    tracker.set_parent_tag("best_trial.digits.baseline", "p1")
    tracker.finish_parent({"search_trials.digits.baseline": 2, "search_trials.digits.sharpening": 1})
    return tracker


def make_optuna(storage: str, name: str) -> None:
    """sharpening's Optuna study with 10 completed trials (importances computed); baseline's with 3 (too few)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    for method, n in (("sharpening", 10), ("baseline", 3)):
        study = optuna.create_study(study_name=f"{name}-digits-{method}", storage=storage, direction="maximize",
                                    sampler=optuna.samplers.RandomSampler(seed=0))
        for _ in range(n):
            trial = study.ask()
            lr = trial.suggest_float("lr", 1e-3, 0.3, log=True)
            kernel = trial.suggest_categorical("kernel", ["box", "gaussian"])
            study.tell(trial, 0.9 - abs(math.log10(lr) + 1.5) / 10 + (0.001 if kernel == "box" else 0))


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    """A directory for the SQLite stores: in memory (tmpfs) where there is one — every MLflow write is a
    transaction, and fsync on a disk made this fixture take 40 s instead of a few."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        yield tmp_path_factory.mktemp("known-store")
        return
    root = Path(tempfile.mkdtemp(prefix="test-analysis-", dir=shm))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def store(store_dir):
    root = store_dir
    uri = f"sqlite:///{root / 'mlflow.db'}"
    storage = f"sqlite:///{root / 'optuna.db'}"
    make_optuna(storage, "known")
    trackers = {"known": make_study(uri, root, "known", optuna_storage=storage),
                "partial": make_partial(uri, root, "partial")}
    failed = StudyTracker.create(uri, "all-failed", (root / "artifacts" / "all-failed").as_uri(), tags={}, params={})
    for n in range(3):
        add_run(failed, f"f{n}", CONFIGS["baseline"], {"phase": "search"}, seed=0, outcome="failed")
    trackers["all-failed"] = failed
    return uri, root, trackers


@pytest.fixture(scope="module")
def known(store):
    return load_study(store[0], "known")


@pytest.fixture(scope="module")
def known_report(store, tmp_path_factory):
    """The report of the known study, as `python -m analysis.report` writes and prints it."""
    import contextlib
    import io

    uri = store[0]
    out = tmp_path_factory.mktemp("reports") / "known"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert report.main(["--tracking-uri", uri, "--experiment", "known", "--out", str(out)]) == 0
    return out, printed.getvalue()


# ---------------------------------------------------------------------------------------------
# Independent computations (scipy and textbook formulas, not analysis.stats)

def scored(values) -> list[float]:
    return [CHANCE if v is None or v == "failed" else v for v in values]


def t_interval(values):
    values = np.asarray(values)
    half = scipy_stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values))
    return values.mean(), half


def holm_by_hand(pvalues: dict) -> dict:
    ordered = sorted(pvalues.items(), key=lambda kv: kv[1])
    m, running, out = len(ordered), 0.0, {}
    for rank, (name, p) in enumerate(ordered):
        running = max(running, min(1.0, (m - rank) * p))
        out[name] = running
    return out


def answer_block(printed: str) -> dict[str, str]:
    """method → its printed answer line (the indented lines after the answer's Holm family)."""
    lines, inside = {}, False
    for line in printed.splitlines():
        if "vs baseline on clean test accuracy:" in line:
            inside = True
        elif inside and line.startswith("  ") and line.split()[0] in SEARCHED:
            lines[line.split()[0]] = line
        elif inside:
            inside = line.startswith("  ")
    return lines


# ---------------------------------------------------------------------------------------------

def test_trial_frame_reads_what_the_tracker_writes(store, known):
    uri, _, _ = store
    trials = known.trials.set_index("trial_id")
    assert len(trials) == 18 + 30 + 25 + 15
    assert known.history_source == "sql-bulk"
    repeat = trials[(trials["slot"] == "repeat:sharpening:s3")].iloc[0]
    assert repeat["phase"] == "repeat" and repeat["method_role"] == "curriculum" and repeat["kernel"] == "gaussian"
    assert repeat["run_name"] == "repeat · sharpening K4 e1 gaussian · s3"
    matched = trials[trials["slot"] == "control:baseline~cbs:s2"].iloc[0]
    assert matched["matched_to"] == "cbs" and matched["method"] == "baseline"
    assert math.isnan(matched["K"]) and math.isnan(matched["sigma0"])  # a baseline run has no K param: NaN
    search = trials.loc["t0000"]
    assert search["optuna_study"] == "known-digits-baseline" and search["optuna_trial"] == "0"
    assert {"sigma", "in_final_regime", "samples_per_second"} <= set(known.histories.columns)
    cbs = known.histories[known.histories["run_id"] == trials.loc["t0013", "run_id"]].sort_values("epoch")
    assert cbs["sigma"].tolist() == pytest.approx([1.5, 0.75, 0.0, 0.0])
    assert cbs["in_final_regime"].tolist() == [0, 0, 1, 1]
    client = client_for(uri)  # the per-run fallback returns the same points as the bulk query
    ids = list(known.trials["run_id"])
    assert sorted(_per_run(client, ids, "val_acc")) == sorted(_sql_bulk(client._tracking_client.store, ids, "val_acc"))


def test_search_effort_is_counted_and_unequal_effort_flagged(store, known):
    metrics, params = known.parent.data.metrics, known.parent.data.params
    effort = tables.search_effort(known.trials, metrics, params)
    assert list(effort["method"]) == list(SEARCHED)
    assert effort["trials"].tolist() == [3] * 6 and effort["completed"].tolist() == [3] * 6
    equal, text = tables.effort_check(effort)
    assert equal and text == "equal search effort: 3 trials for each of 6 searched methods"
    partial = load_study(store[0], "partial")
    effort = tables.search_effort(partial.trials, partial.parent.data.metrics, partial.parent.data.params)
    equal, text = tables.effort_check(effort)
    assert not equal and text.startswith("UNEQUAL SEARCH EFFORT: baseline 2, sharpening 1 (num_samples = 2")


def test_best_config_is_the_parents_record_not_a_rerun_of_the_rule(known):
    trials = known.trials
    best = tables.best_configs(trials, known.parent.data.tags, known.parent.data.metrics,
                               known.parent.data.params).set_index("method")
    sharpening = best.loc["sharpening"]
    assert sharpening["config"] == "sharpening K=4 epochs_per_level=1 kernel=gaussian"
    assert sharpening["shared"] == "optimizer=sgd lr=0.02 weight_decay=0.0005 batch_size=64"
    assert sharpening["val_acc"] == pytest.approx(0.90) and sharpening["val_loss"] == pytest.approx(0.30)
    # A naive "max val_acc, earliest first" rule would have shown the box trial instead.
    search = trials[(trials["phase"] == "search") & (trials["method"] == "sharpening")].sort_values("trial_id")
    naive = search.loc[search["val_acc"].idxmax()]
    assert naive["kernel"] == "box" and naive["run_id"] != sharpening["best_run_id"]
    assert best.loc["baseline", "config"] == "baseline"  # no K, kernel, ... for the baseline
    assert best.loc["cbs", "config"] == ("cbs sigma0=1.5 sigma_decay=0.5 decay_every=1 smooth_epochs=2 "
                                         "smooth_kernel=3")


def test_answer_table_matches_independent_statistics(known):
    summary = tables.repeat_summary(known.trials, "test_acc").set_index("method")
    assert list(summary.index) == list(SEARCHED)
    base = scored(REPEATS["baseline"])
    pvalues = {}
    for method, values in REPEATS.items():
        values, row = scored(values), summary.loc[method]
        mean, half = t_interval(values)
        assert row["mean"] == pytest.approx(mean, abs=1e-12) and row["ci95"] == pytest.approx(half, rel=1e-9)
        if method == "baseline":
            assert row["verdict"] == "reference"
            continue
        test = scipy_stats.ttest_ind(values, base, equal_var=False)
        interval = test.confidence_interval(0.95)
        assert row["diff"] == pytest.approx(np.mean(values) - np.mean(base), abs=1e-12)
        assert (row["diff_low"], row["diff_high"]) == (pytest.approx(interval.low), pytest.approx(interval.high))
        assert row["p"] == pytest.approx(test.pvalue, rel=1e-9)
        pvalues[method] = test.pvalue
    for method, adjusted in holm_by_hand(pvalues).items():
        assert summary.loc[method, "p_holm"] == pytest.approx(adjusted, rel=1e-9)
    # The diverged repeat is counted and scored chance.
    assert (summary.loc["combined", "n_completed"], summary.loc["combined", "n_run"]) == (4, 5)
    assert summary.loc["combined", "failed"] == "1 diverged"
    # The four-way verdict at the default margin, and the margin changes it.
    assert summary.loc["sharpening", "verdict"] == "better"
    assert summary.loc["cbs", "verdict"] == "worse"
    assert summary.loc["annealing", "verdict"] == "equivalent within ±0.5 pp"
    assert summary.loc["combined", "verdict"].startswith("inconclusive (needs ")
    narrow = tables.repeat_summary(known.trials, "test_acc", margin=0.0001).set_index("method")
    assert narrow.loc["annealing", "verdict"].startswith("inconclusive")
    # Cost: mean train_seconds of the completed repeats over the baseline's.
    assert summary.loc["sharpening", "cost_ratio"] == pytest.approx(1.04)
    assert words.family_text(summary.reset_index()) == (
        "Holm over 5 comparisons: sharpening, annealing, combined, cbs, learned_theta vs baseline on clean test "
        "accuracy")


def test_matched_baselines_are_paired_by_seed(known):
    matched = tables.matched_table(known.trials).set_index("method")
    assert list(matched.index) == ["sharpening", "annealing", "combined", "cbs", "learned_theta"]
    pvalues = {}
    for method, baseline in MATCHED.items():
        ours = scored(REPEATS[method])
        test = scipy_stats.ttest_rel(ours, baseline)
        row = matched.loc[method]
        assert row["pairs"] == 5 and row["versus"] == "baseline" and row["seeds"] == "1,2,3,4,5"
        assert row["diff"] == pytest.approx(np.mean(np.subtract(ours, baseline)), abs=1e-12)
        assert row["p"] == pytest.approx(test.pvalue, rel=1e-9)
        interval = test.confidence_interval(0.95)
        assert (row["diff_low"], row["diff_high"]) == (pytest.approx(interval.low), pytest.approx(interval.high))
        pvalues[method] = test.pvalue
    for method, adjusted in holm_by_hand(pvalues).items():
        assert matched.loc[method, "p_holm"] == pytest.approx(adjusted, rel=1e-9)
    assert matched.loc["combined", "method_failed"] == "1 diverged"
    assert matched.loc["sharpening", "versus_shared"] == "optimizer=sgd lr=0.02 weight_decay=0.0005 batch_size=64"
    assert matched.loc["sharpening", "cost_ratio"] == pytest.approx(1.04)
    assert matched.loc["sharpening", "verdict"] == "better"


def test_controls_are_paired_by_seed(known):
    controls = tables.controls_table(known.trials).set_index("versus")
    assert list(controls.index) == ["anti", "random_order", "blur_aug"]
    sharpening = REPEATS["sharpening"]
    pvalues = {}
    for control, values in CONTROL_VALUES.items():
        test = scipy_stats.ttest_rel(sharpening, scored(values))
        row = controls.loc[control]
        assert row["method"] == "sharpening" and row["pairs"] == 5
        assert row["diff"] == pytest.approx(np.mean(np.subtract(sharpening, scored(values))), abs=1e-12)
        assert row["p"] == pytest.approx(test.pvalue, rel=1e-9)
        pvalues[control] = test.pvalue
    for control, adjusted in holm_by_hand(pvalues).items():
        assert controls.loc[control, "p_holm"] == pytest.approx(adjusted, rel=1e-9)
        d = stats.paired(sharpening, scored(CONTROL_VALUES[control]))
        assert controls.loc[control, "verdict"] == stats.verdict(d, adjusted)
    assert controls.loc["anti", "verdict"] == "better"
    assert controls.loc["random_order", "versus_failed"] == "1 failed"
    seeds = tables.control_seeds(known.trials)
    second = seeds[(seeds["control"] == "random_order") & (seeds["seed"] == 2)].iloc[0]
    assert second["control_outcome"] == "failed" and second["control_value"] == CHANCE
    assert second["diff"] == pytest.approx(0.9550 - CHANCE)


def quick_look(values: list) -> str:
    """The launcher's closing cell for re-runs with these test accuracies (None/"failed": not completed)."""
    done = [100 * v for v in values if isinstance(v, float)]
    return (f"test acc {np.mean(done):.2f} ± {np.std(done, ddof=1):.2f} % "
            f"(mean ± sd, {len(done)}/{len(values)} completed)")


def test_the_launchers_quick_look_at_the_reruns(store):
    # The launcher's summary reads its own MLflow runs (it never imports the analysis): the runs
    # that completed, mean ± sd, with the count; scoring failures and intervals are the report's.
    uri, _, trackers = store
    cells = rerun_outcomes(list(trackers["known"].child_runs().values()), "digits")
    assert cells["combined"] == quick_look(REPEATS["combined"])
    assert cells["random_order"] == quick_look(CONTROL_VALUES["random_order"])
    assert cells["baseline"] == quick_look(REPEATS["baseline"])
    assert rerun_outcomes(list(trackers["known"].child_runs().values()), "digits-noise40") == {}


def test_report_prints_and_writes_the_answer(store, known_report):
    uri, _, trackers = store
    out, printed = known_report
    assert f"report: {out / 'report.html'}" in printed
    assert "[digits] search: equal search effort: 3 trials for each of 6 searched methods" in printed
    assert ("Holm over 5 comparisons: sharpening, annealing, combined, cbs, learned_theta vs baseline on clean "
            "test accuracy:") in printed
    lines = answer_block(printed)
    assert "better" in lines["sharpening"] and "time 1.04×" in lines["sharpening"]
    assert "equivalent within ±0.5 pp" in lines["annealing"]
    assert "4/5 †" in lines["combined"] and "inconclusive (needs" in lines["combined"]
    assert lines["cbs"].rstrip().endswith("time 1.10×") and " worse " in lines["cbs"]
    assert "scored as chance accuracy (10.00 %)" in printed
    assert "[digits] matched baselines (paired by seed): Holm over 5 comparisons" in printed
    assert ("[digits] controls (paired by seed): Holm over 3 comparisons: sharpening vs anti, random_order, "
            "blur_aug on clean test accuracy") in printed
    markdown = (out / "summary.md").read_text()
    sharpening = words.mean_pm(*t_interval(REPEATS["sharpening"]))
    assert f"| sharpening | curriculum | {sharpening} | 5/5 | +3.50 [" in markdown
    assert "| combined | curriculum |" in markdown and "| 4/5 † |" in markdown
    assert "sharpening K=4 epochs_per_level=1 kernel=gaussian" in markdown  # the recorded choice
    for name in ("summary", "search", "matched", "controls", "repeats", "trials"):
        assert (out / f"{name}.csv").stat().st_size > 0
    summary = pd.read_csv(out / "summary.csv").set_index("method")
    assert summary.loc["sharpening", "best_config"] == "sharpening K=4 epochs_per_level=1 kernel=gaussian"
    assert summary.loc["combined", "repeat_test_acc_n_completed"] == 4
    assert summary.loc["anti", "vs_curriculum_verdict"] == "better"
    assert len(pd.read_csv(out / "repeats.csv")) == 30 + 25 + 15
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") == 8  # every figure, importances included
    assert "too few for: baseline (3)" in page
    logged = {a.path for a in MlflowClient(uri).list_artifacts(trackers["known"].parent_run_id, "report")}
    assert {"report/report.html", "report/summary.md", "report/summary.csv", "report/forest-digits.png"} <= logged
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".known.")]  # no staging left behind


def test_importances_within_each_method(store):
    _, root, _ = store
    result, notes = param_importances(f"sqlite:///{root / 'optuna.db'}",
                                      {"sharpening": "known-digits-sharpening", "baseline": "known-digits-baseline"})
    assert list(result) == ["sharpening (10 trials)"] and set(result["sharpening (10 trials)"]) == {"lr", "kernel"}
    assert any("too few for: baseline (3)" in note for note in notes)


def test_unequal_search_and_no_reruns_make_a_flagged_partial_report(store, tmp_path, capsys):
    uri, _, _ = store
    out = tmp_path / "partial"
    assert report.main(["--tracking-uri", uri, "--experiment", "partial", "--out", str(out),
                        "--no-log-artifacts"]) == 0
    printed = capsys.readouterr().out
    assert "[digits] search: UNEQUAL SEARCH EFFORT: baseline 2, sharpening 1" in printed
    assert "no seed repeats" in printed
    page = (out / "report.html").read_text()
    assert "UNEQUAL SEARCH EFFORT" in page and "no matched baselines to compare" in page
    assert "no choice recorded in the parent run" in page  # sharpening: the search never chose
    assert "no blur-robustness metrics on the seed repeats" in page


def test_a_failed_report_leaves_the_previous_one_whole(store, known_report, monkeypatch):
    uri, _, _ = store
    out, _ = known_report
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    argv = ["--tracking-uri", uri, "--experiment", "known", "--out", str(out), "--no-log-artifacts"]

    def broken(*args, **kwargs):
        raise RuntimeError("disk full while drawing")

    # Fails after the forest plot and the learning curves are written (into the staging directory).
    monkeypatch.setattr(plots, "hyperparameters", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        report.main(argv)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".known.")]
    # A report killed mid-write leaves its staging directory; one killed between the two renames of
    # the swap leaves the previous report set aside. The next report removes the first and puts the
    # second back before it starts — so even if it fails too, the previous report is there.
    (out.parent / ".known.partial-1-1").mkdir()
    (out.parent / ".known.partial-1-1" / "report.html").write_text("half")
    os.replace(out, out.parent / ".known.old-1-1")
    monkeypatch.setattr(report, "build", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        report.main(argv)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".known.")]


def test_unknown_experiment_names_the_known_ones(store, capsys):
    uri, _, _ = store
    assert report.main(["--tracking-uri", uri, "--experiment", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: no experiment 'nope' in {uri}") and len(err.splitlines()) == 1
    assert "all-failed, known, partial" in err


def test_study_without_finished_trials(store, capsys):
    uri, _, _ = store
    assert report.main(["--tracking-uri", uri, "--experiment", "all-failed"]) == 2
    assert "error: study 'all-failed' has no finished trials (3 trial runs: 3 failed)" in capsys.readouterr().err


def test_no_study_record_and_missing_store(tmp_path, capsys):
    assert report.main(["--output-dir", str(tmp_path)]) == 2
    assert f"error: no study records in {tmp_path / 'studies'}" in capsys.readouterr().err
    assert report.main(["--output-dir", str(tmp_path), "--experiment", "x"]) == 2
    assert "no MLflow store at" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists()  # a report never creates an empty store
    assert report.main(["--output-dir", str(tmp_path), "--experiment", "x", "--margin", "0"]) == 2
    assert "--margin: must be > 0" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Regimes: the whole comparison once per (dataset, regime), everything keyed by the study key

# Seed repeats per regime (test_acc, seeds 1..5). standard: sharpening equivalent to the baseline;
# noise40 (40 % label noise): sharpening clearly better. annealing: equivalent in noise40,
# inconclusive in standard.
REGIME_REPEATS = {
    "standard": {"baseline": [0.9200, 0.9210, 0.9190, 0.9205, 0.9195],
                 "sharpening": [0.9202, 0.9208, 0.9192, 0.9199, 0.9201],
                 "annealing": [0.9000, 0.9400, 0.9100, 0.9300, 0.9200]},
    "noise40": {"baseline": [0.8000, 0.8050, 0.7950, 0.8020, 0.7980],
                "sharpening": [0.8500, 0.8550, 0.8600, 0.8520, 0.8580],
                "annealing": [0.8010, 0.8045, 0.7960, 0.8000, 0.7990]},
}
REGIME_NOISE = {"standard": 0.0, "noise40": 0.4}
REGIME_KEYS = {"standard": "digits", "noise40": "digits-noise40"}
# Mean train seconds and peak memory (MB) of each method's repeats, per regime.
REGIME_COST = {"standard": {"baseline": (2.0, 500.0), "sharpening": (2.08, 500.0), "annealing": (2.2, 510.0)},
               "noise40": {"baseline": (4.0, 500.0), "sharpening": (4.4, 520.0), "annealing": (4.0, 505.0)}}
# Search trials per method: (val_acc, val_loss, kernel). The parent records a different choice per
# regime: trial 1 (gaussian) in standard, trial 0 (box) in noise40.
REGIME_SEARCH = [(0.85, 0.40, "box"), (0.86, 0.30, "gaussian")]
REGIME_CHOSEN = {"standard": 1, "noise40": 0}
REGIME_METHODS = ("baseline", "sharpening", "annealing")


def make_regime_study(uri: str, root: Path, name: str) -> StudyTracker:
    """Two regimes of digits (standard, noise40), three searched methods, 2 search trials and 5 seed
    repeats each per regime; the standard regime's key is the dataset, the other's digits-noise40."""
    studies = ",".join(f"{name}-{key}-{m}" for key in REGIME_KEYS.values() for m in REGIME_METHODS)
    tracker = StudyTracker.create(uri, name, (root / "artifacts" / name).as_uri(),
                                  tags={"space": "regimes", "code_version": "test", "optuna_studies": studies,
                                        "optuna_storage": f"sqlite:///{root / 'regimes-optuna.db'}"},
                                  params={"space": "regimes", "seed": 0, "num_samples": 2, "seed_repeats": 5,
                                          "epochs": EPOCHS, "methods": json.dumps(list(REGIME_METHODS))})
    count = iter(range(10_000))
    summary = {}
    for regime, key in REGIME_KEYS.items():
        params = {"label_noise": REGIME_NOISE[regime], "imbalance": 1.0}
        for method in REGIME_METHODS:
            for number, (val_acc, val_loss, kernel) in enumerate(REGIME_SEARCH):
                trial_id = f"r{next(count):04d}"
                config = {**CONFIGS[method], **({"kernel": kernel} if method == "sharpening" else {})}
                add_run(tracker, trial_id, config, {"phase": "search", "regime": regime,
                                                    "optuna_study": f"{name}-{key}-{method}"},
                        seed=0, val=(val_acc, val_loss), params=params)
                if number == REGIME_CHOSEN[regime]:
                    tracker.set_parent_tag(f"best_trial.{key}.{method}", trial_id)
                    summary[f"best_val_acc.{key}.{method}"] = val_acc
            summary[f"search_trials.{key}.{method}"] = 2
            chosen = {**CONFIGS[method], **({"kernel": REGIME_SEARCH[REGIME_CHOSEN[regime]][2]}
                                             if method == "sharpening" else {})}
            seconds, memory = REGIME_COST[regime][method]
            for seed, value in zip(SEEDS, REGIME_REPEATS[regime][method]):
                # Slots are unique within (dataset, regime): the same slot name in both regimes.
                add_run(tracker, f"r{next(count):04d}", chosen,
                        {"phase": "repeat", "regime": regime, "slot": f"repeat:{method}:s{seed}"}, seed=seed,
                        test_acc=value, seconds=seconds, final={"peak_memory_mb": memory}, params=params)
    tracker.finish_parent({**summary, "study_seconds": 60.0, "overhead_ratio.digits": 1.2,
                           "overhead_ratio.digits-noise40": 1.3})
    return tracker


@pytest.fixture(scope="module")
def regime_store(store_dir):
    uri = f"sqlite:///{store_dir / 'regimes.db'}"
    tracker = make_regime_study(uri, store_dir, "regimes")
    return uri, tracker, load_study(uri, "regimes")


def test_a_store_without_regime_tags_reads_as_the_standard_regime(known):
    assert set(known.trials["regime"]) == {"standard"} and set(known.trials["key"]) == {"digits"}
    assert set(known.histories["key"]) == {"digits"}
    table = words.with_regime_words(tables.regime_table(known.trials)).set_index("method")
    assert set(table["key"]) == {"digits"} and table.loc["sharpening", "verdict"] == "better"
    assert math.isnan(table.loc["sharpening", "memory_ratio"])  # no peak_memory_mb in an older store
    assert table.loc["sharpening", "cost"] == "1.04× time"


def test_every_table_is_computed_per_regime(regime_store):
    _, _, runs = regime_store
    trials, parent = runs.trials, runs.parent.data
    assert set(zip(trials["regime"], trials["key"])) == {("standard", "digits"), ("noise40", "digits-noise40")}
    # Slots repeat across regimes: both regimes keep all their repeats.
    assert len(tables.reruns(trials)) == 2 * 3 * 5
    effort = tables.search_effort(trials, parent.metrics, parent.params)
    assert list(effort["key"]) == ["digits"] * 3 + ["digits-noise40"] * 3
    assert effort["recorded"].all() and effort["trials"].tolist() == [2] * 6
    # The parent's best_trial.<key>.<method> tags: a different choice per regime.
    best = tables.best_configs(trials, parent.tags, parent.metrics, parent.params).set_index(["key", "method"])
    assert best.loc[("digits", "sharpening"), "config"] == "sharpening K=4 epochs_per_level=1 kernel=gaussian"
    assert best.loc[("digits-noise40", "sharpening"), "config"] == "sharpening K=4 epochs_per_level=1 kernel=box"
    noisy = best.loc[("digits-noise40", "sharpening")]
    assert noisy["best_trial_id"] == parent.tags["best_trial.digits-noise40.sharpening"]
    assert best.loc[("digits-noise40", "sharpening"), "recorded_val_acc"] == pytest.approx(0.85)
    assert best.loc[("digits-noise40", "baseline"), "regime"] == "noise40"
    assert tables.regime_settings(trials) == {"digits": "clean labels, balanced classes, 4 epochs",
                                              "digits-noise40": "40 % label noise, balanced classes, 4 epochs"}


def test_regime_table_against_scipy(regime_store):
    _, _, runs = regime_store
    table = tables.regime_table(runs.trials)
    assert list(table.columns) == tables.REGIME_COLUMNS  # numbers only; the words are added for people
    table = words.with_regime_words(table)
    assert list(table.columns) == [*tables.REGIME_COLUMNS, "cell", "cost"]
    table = table.set_index(["regime", "method"])
    for regime, repeats in REGIME_REPEATS.items():
        base = repeats["baseline"]
        pvalues = {}
        for method in ("sharpening", "annealing"):
            row = table.loc[(regime, method)]
            test = scipy_stats.ttest_ind(repeats[method], base, equal_var=False)
            low, high = test.confidence_interval(0.95)
            diff = np.mean(repeats[method]) - np.mean(base)
            assert row["key"] == REGIME_KEYS[regime]
            assert row["diff"] == pytest.approx(diff, abs=1e-12) and row["p"] == pytest.approx(test.pvalue, rel=1e-9)
            assert (row["diff_low"], row["diff_high"]) == (pytest.approx(low), pytest.approx(high))
            assert row["cell"] == f"{100 * diff:+.2f} [{100 * low:+.2f}, {100 * high:+.2f}] pp, {row['verdict']}"
            pvalues[method] = test.pvalue
        # Holm over the regime's own methods: the regimes are separate families.
        for method, adjusted in holm_by_hand(pvalues).items():
            assert table.loc[(regime, method), "p_holm"] == pytest.approx(adjusted, rel=1e-9)
        assert table.loc[(regime, "baseline"), "verdict"] == "reference"
    assert table.loc[("noise40", "sharpening"), "verdict"] == "better"
    assert table.loc[("standard", "sharpening"), "verdict"] == "equivalent within ±0.5 pp"
    assert table.loc[("noise40", "annealing"), "verdict"] == "equivalent within ±0.5 pp"
    assert table.loc[("standard", "annealing"), "verdict"].startswith("inconclusive (needs ≈ ")
    # Cost relative to the baseline of the same regime: time and peak memory.
    assert table.loc[("standard", "sharpening"), "cost"] == "1.04× time, 1.00× memory"
    assert table.loc[("noise40", "sharpening"), "cost"] == "1.10× time, 1.04× memory"
    assert table.loc[("noise40", "sharpening"), "memory_ratio"] == pytest.approx(520 / 500)
    assert table.loc[("noise40", "baseline"), "cost"] == "4.0 s, 500 MB"
    people = words.regimes_for_people(table.reset_index())
    assert list(people["method"]) == list(REGIME_METHODS)
    assert list(people.columns) == ["method", "digits · standard: Δ vs baseline [95% CI], verdict",
                                    "digits · standard: cost vs baseline",
                                    "digits · noise40: Δ vs baseline [95% CI], verdict",
                                    "digits · noise40: cost vs baseline"]
    assert people.iloc[1, 3].endswith("pp, better") and people.iloc[1, 4] == "1.10× time, 1.04× memory"


def test_the_launchers_quick_look_per_regime(regime_store):
    _, tracker, _ = regime_store
    children = list(tracker.child_runs().values())
    noisy = rerun_outcomes(children, "digits-noise40")
    assert noisy["sharpening"] == quick_look(REGIME_REPEATS["noise40"]["sharpening"])
    standard = rerun_outcomes(children, "digits")  # the dataset's own name is its standard regime's key
    assert standard["baseline"] == quick_look(REGIME_REPEATS["standard"]["baseline"])
    assert standard["sharpening"] != noisy["sharpening"]


def test_report_opens_with_the_regime_table_and_has_a_section_set_per_regime(regime_store, tmp_path, capsys,
                                                                            monkeypatch):
    import analysis.importance

    uri, _, _ = regime_store
    asked = []
    monkeypatch.setattr(analysis.importance, "param_importances",
                        lambda storage, studies: (asked.append(dict(studies)), ({}, []))[1])
    out = tmp_path / "regimes"
    assert report.main(["--tracking-uri", uri, "--experiment", "regimes", "--out", str(out),
                        "--no-log-artifacts"]) == 0
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    # The compact regime table comes first, before any per-regime line.
    start = next(i for i, line in enumerate(lines) if line.startswith("regimes: Δ"))
    assert start < next(i for i, line in enumerate(lines) if line.startswith("[digits]"))
    block = lines[start + 1:start + 7]
    assert block[2].split()[0] == "sharpening" and "digits · standard" in block[2]
    assert "equivalent within ±0.5 pp" in block[2] and block[2].endswith("1.04× time, 1.00× memory")
    assert block[3].startswith("  " + " " * len("sharpening")) and "digits · noise40" in block[3]
    assert "pp, better" in block[3] and block[3].endswith("1.10× time, 1.04× memory")
    # One section set per study key, titled with it.
    assert "[digits] search: equal search effort: 2 trials for each of 3 searched methods" in printed
    assert "[digits · noise40] search: equal search effort: 2 trials for each of 3 searched methods" in printed
    assert "[digits · noise40] better than the tuned baseline: sharpening" in printed
    assert "[digits] no method is better than the tuned baseline" in printed
    page = (out / "report.html").read_text()
    assert page.index("<h2>Regimes</h2>") < page.index("<h2>Answer</h2>")
    assert page.count("<h3>digits · noise40</h3>") >= 5 and page.count("<h3>digits</h3>") >= 5
    assert "<td class='good'>" in page and "<td class='same'>" in page  # verdict cells coloured
    for name in ("forest", "learning_curves", "trial_times"):
        assert (out / f"{name}-digits.png").is_file() and (out / f"{name}-digits-noise40.png").is_file()
    markdown = (out / "summary.md").read_text()
    assert markdown.index("## Regimes") < markdown.index("## Answer")
    assert "| sharpening |" in markdown and "1.10× time, 1.04× memory" in markdown
    regimes = pd.read_csv(out / "regimes.csv")
    assert len(regimes) == 6 and set(regimes["key"]) == {"digits", "digits-noise40"}
    summary = pd.read_csv(out / "summary.csv").set_index(["key", "method"])
    assert summary.loc[("digits-noise40", "sharpening"), "best_config"].endswith("kernel=box")
    # Each regime's own Optuna studies: the standard key (digits) is a prefix of digits-noise40's names.
    assert asked == [{m: f"regimes-digits-{m}" for m in REGIME_METHODS},
                     {m: f"regimes-digits-noise40-{m}" for m in REGIME_METHODS}]


def test_a_single_regime_report_has_no_regime_table(known_report):
    out, printed = known_report
    assert "regimes: Δ" not in printed and "<h2>Regimes</h2>" not in (out / "report.html").read_text()
    regimes = pd.read_csv(out / "regimes.csv")  # still written: one column of the table
    assert set(regimes["key"]) == {"digits"} and len(regimes) == len(SEARCHED)
