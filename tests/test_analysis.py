"""analysis: numbers checked against independent computations on a store filled with known metrics.

The store is written with MlflowClient exactly as study/tracking.py shapes a study (parent run
with role=parent, child runs with the trial tags, TrialConfig params as strings, per-epoch metrics
with step=epoch, final metrics at the last step), so no study has to run.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from scipy import stats as scipy_stats

from analysis import report, stats, tables
from analysis.load import _per_run, _sql_bulk, client_for, load_study
from study.config import TrialConfig

EPOCHS = 3
# test_acc of the seed repeats: sharpening is clearly better; anti and annealing are not.
REPEATS = {
    "baseline": [0.90, 0.91, 0.92, 0.93, 0.94],
    "sharpening": [0.95, 0.96, 0.97, 0.98, 0.99],
    "anti": [0.91, 0.93, 0.90, 0.94, 0.92],
    "annealing": [0.905, 0.925, 0.915, 0.935, 0.93],
}
# val_acc of the search trials, two per method: the best is the one the tables must pick.
SEARCH = {"baseline": [0.80, 0.85], "sharpening": [0.88, 0.83], "anti": [0.70, 0.72], "annealing": [0.84, 0.86]}
CONFIGS = {
    "baseline": {"method": "baseline", "lr": 0.05},
    "sharpening": {"method": "sharpening", "K": 3, "epochs_per_level": 1, "kernel": "gaussian", "lr": 0.02},
    "anti": {"method": "anti", "K": 2, "epochs_per_level": 1, "kernel": "box", "lr": 0.03},
    "annealing": {"method": "annealing", "theta_schedule": "linear", "theta0": 0.5, "anneal_epochs": 2, "lr": 0.04},
}


def blurred_profile(test_acc: float, seed: int) -> dict[str, float]:
    """Robustness metrics as the trainer logs them: L1 == test_acc, lower at higher levels."""
    metrics = {}
    for k, kernel in enumerate(("box", "gaussian", "downsample")):
        for level in range(1, 4):
            metrics[f"test_acc_{kernel}_L{level}"] = test_acc if level == 1 else test_acc - 0.1 * level - 0.01 * k - 0.003 * seed
    return metrics


def add_trial(client, experiment_id, parent_id, study, phase, trial_id, config, seed, val_acc, test_acc,
              outcome="completed", robustness=True):
    trial = TrialConfig.from_dict({**config, "dataset": "digits", "epochs": EPOCHS, "seed": seed})
    params = {k: str(v) for k, v in trial.to_dict().items()}
    params["theta_schedule"] = trial.resolved_theta_schedule
    params["anneal_epochs"] = str(trial.resolved_anneal_epochs)
    tags = {"mlflow.parentRunId": parent_id, "role": "trial", "study": study, "trial_id": trial_id,
            "phase": phase, "method": trial.method, "dataset": "digits", "model": trial.model,
            "seed": str(seed), "code_version": "test", "outcome": outcome,
            "mlflow.runName": f"{phase}-{trial.method}-{trial_id}"}
    run = client.create_run(experiment_id, tags=tags)
    now = int(time.time() * 1000)
    metrics = []
    epochs = EPOCHS if outcome == "completed" else 1
    for epoch in range(1, epochs + 1):
        level = 1 if not trial.blurs or epoch > trial.curriculum_epochs else trial.K - epoch + 1
        theta = trial.theta0 * max(0.0, 1 - epoch / trial.resolved_anneal_epochs) if trial.anneals else 0.0
        values = {"epoch": epoch, "val_acc": val_acc - 0.1 * (EPOCHS - epoch), "train_loss": 1.0 / epoch,
                  "blur_level": level, "theta": theta, "theta_min": theta, "theta_max": theta, "lr": 0.01,
                  "epoch_seconds": 0.5}
        metrics += [Metric(k, float(v), now + epoch, epoch) for k, v in values.items()]
    if outcome == "completed":
        final = {"test_acc": test_acc, "test_loss": 0.3, "train_seconds": 1.5 + seed / 10}
        if robustness:
            final.update(blurred_profile(test_acc, seed))
        metrics += [Metric(k, float(v), now + EPOCHS, EPOCHS) for k, v in final.items()]
    client.log_batch(run.info.run_id, metrics=metrics, params=[Param(k, v) for k, v in params.items()])
    client.set_terminated(run.info.run_id, "FINISHED" if outcome != "failed" else "FAILED")
    return run.info.run_id


def make_study(client, root, name, *, repeats=True, robustness=True, outcome="completed"):
    # An explicit artifact location: the default would be ./mlruns in whatever directory pytest runs.
    experiment_id = client.create_experiment(name, artifact_location=(root / "artifacts" / name).as_uri())
    parent = client.create_run(experiment_id, run_name=name, tags={
        "role": "parent", "study": name, "space": "test", "code_version": "test",
        "optuna_storage": "sqlite:////nonexistent/optuna.db", "optuna_studies": f"{name}-digits"})
    parent_id = parent.info.run_id
    n = 0
    for method, values in SEARCH.items():
        for value in values:
            add_trial(client, experiment_id, parent_id, name, "search", f"s{n:03d}", CONFIGS[method], 0, value,
                      value + 0.05, outcome=outcome, robustness=robustness)
            n += 1
    if repeats:
        for method, values in REPEATS.items():
            for seed, value in enumerate(values, start=1):
                add_trial(client, experiment_id, parent_id, name, "repeat", f"r{n:03d}", CONFIGS[method], seed,
                          0.9, value, robustness=robustness)
                n += 1
    client.set_terminated(parent_id, "FINISHED")
    return experiment_id, parent_id


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("known-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    ids = {"known": make_study(client, root, "known"),
           "no-repeats": make_study(client, root, "no-repeats", repeats=False, robustness=False),
           "all-failed": make_study(client, root, "all-failed", repeats=False, outcome="failed")}
    return uri, root, ids


# ---------------------------------------------------------------------------------------------
# Independent computations (textbook formulas, not analysis.stats)

def t_interval(values):
    values = np.asarray(values)
    n = len(values)
    half = scipy_stats.t.ppf(0.975, n - 1) * values.std(ddof=1) / math.sqrt(n)
    return values.mean(), half


def welch_by_hand(a, b):
    a, b = np.asarray(a), np.asarray(b)
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    diff = a.mean() - b.mean()
    t = diff / se
    p = 2 * scipy_stats.t.sf(abs(t), df)
    half = scipy_stats.t.ppf(0.975, df) * se
    return diff, diff - half, diff + half, p


def holm_by_hand(pvalues: dict[str, float]) -> dict[str, float]:
    ordered = sorted(pvalues.items(), key=lambda kv: kv[1])
    m, running, out = len(ordered), 0.0, {}
    for rank, (name, p) in enumerate(ordered):
        running = max(running, min(1.0, (m - rank) * p))
        out[name] = running
    return out


# ---------------------------------------------------------------------------------------------

def test_trial_frame_and_histories_hold_what_was_logged(store):
    uri, _, _ = store
    runs = load_study(uri, "known")
    assert len(runs.trials) == 8 + 20
    assert runs.history_source == "sql-bulk"
    trials = runs.trials.set_index("trial_id")
    assert trials.loc["s002", "method"] == "sharpening" and trials.loc["s002", "K"] == 3
    assert trials.loc["s002", "lr"] == pytest.approx(0.02) and trials.loc["s002", "last_lr"] == pytest.approx(0.01)
    assert trials.loc["r008", "seed"] == 1 and trials.loc["r008", "test_acc"] == pytest.approx(0.90)
    assert set(runs.histories.columns) >= {"run_id", "epoch", "val_acc", "blur_level", "theta", "method", "phase"}
    assert len(runs.histories) == 28 * EPOCHS
    sharp = runs.histories[runs.histories["run_id"] == trials.loc["s002", "run_id"]].sort_values("epoch")
    assert sharp["blur_level"].tolist() == [3.0, 2.0, 1.0]
    assert sharp["val_acc"].tolist() == pytest.approx([0.68, 0.78, 0.88])
    # The per-run fallback (one request per run and key) returns the same points as the bulk query.
    client = client_for(uri)
    ids = list(runs.trials["run_id"])
    bulk = sorted(_sql_bulk(client._tracking_client.store, ids, "val_acc"))
    assert sorted(_per_run(client, ids, "val_acc")) == bulk


def test_repeat_summary_matches_independent_statistics(store):
    uri, _, _ = store
    summary = tables.repeat_summary(load_study(uri, "known").trials, "test_acc").set_index("method")
    assert list(summary.index) == ["baseline", "sharpening", "annealing", "anti"]  # reference, curricula, controls
    pvalues = {}
    for method, values in REPEATS.items():
        mean, half = t_interval(values)
        row = summary.loc[method]
        assert row["n"] == 5
        assert row["mean"] == pytest.approx(mean, abs=1e-12)
        assert row["ci95"] == pytest.approx(half, rel=1e-9)
        if method == "baseline":
            assert row["verdict"] == "reference" and math.isnan(row["diff"])
            continue
        diff, low, high, p = welch_by_hand(values, REPEATS["baseline"])
        assert row["diff"] == pytest.approx(diff, abs=1e-12)
        assert row["diff_low"] == pytest.approx(low, rel=1e-9)
        assert row["diff_high"] == pytest.approx(high, rel=1e-9)
        assert row["p_welch"] == pytest.approx(p, rel=1e-9)
        pvalues[method] = p
    for method, adjusted in holm_by_hand(pvalues).items():
        assert summary.loc[method, "p_holm"] == pytest.approx(adjusted, rel=1e-9)
    assert summary.loc["sharpening", "verdict"] == "significantly better"
    assert summary.loc["anti", "verdict"] == "no significant difference"
    assert summary.loc["annealing", "verdict"] == "no significant difference"


def test_blurred_accuracy_and_controls(store):
    uri, _, _ = store
    trials = load_study(uri, "known").trials
    blurred = tables.repeat_summary(trials, "test_acc_blurred").set_index("method")
    expected = {m: [np.mean([v - 0.1 * level - 0.01 * k - 0.003 * seed for k in range(3) for level in (2, 3)])
                    for seed, v in enumerate(values, start=1)] for m, values in REPEATS.items()}
    assert blurred.loc["anti", "mean"] == pytest.approx(np.mean(expected["anti"]), abs=1e-12)
    diff, low, high, p = welch_by_hand(expected["sharpening"], expected["baseline"])
    assert blurred.loc["sharpening", "diff"] == pytest.approx(diff, abs=1e-12)
    assert blurred.loc["sharpening", "p_welch"] == pytest.approx(p, rel=1e-9)
    controls = tables.controls_table(trials).set_index("control")
    assert list(controls.index) == ["anti"]  # the only control with repeats here
    diff, low, high, p = welch_by_hand(REPEATS["sharpening"], REPEATS["anti"])
    assert controls.loc["anti", "diff"] == pytest.approx(diff, abs=1e-12)
    assert (controls.loc["anti", "diff_low"], controls.loc["anti", "diff_high"]) == (pytest.approx(low), pytest.approx(high))
    assert controls.loc["anti", "p_holm"] == pytest.approx(p, rel=1e-9)  # a family of one
    assert controls.loc["anti", "verdict"] == "significantly better"


def test_best_config_per_method_is_the_best_validation_trial(store):
    uri, _, _ = store
    best = tables.best_configs(load_study(uri, "known").trials).set_index("method")
    for method, values in SEARCH.items():
        assert best.loc[method, "val_acc"] == pytest.approx(max(values))
        assert best.loc[method, "test_acc"] == pytest.approx(max(values) + 0.05)
        assert best.loc[method, "search_completed"] == 2
    assert best.loc["annealing", "best_run"] == "search-annealing-s007"
    assert best.loc["sharpening", "config"].startswith("K=3 epochs_per_level=1 kernel=gaussian optimizer=sgd lr=0.02")
    assert best.loc["baseline", "config"].startswith("optimizer=sgd")  # K of a baseline means nothing: not shown


def test_stats_edge_cases():
    assert stats.holm([0.01, float("nan"), 0.04, 0.03]) == pytest.approx([0.03, float("nan"), 0.06, 0.06], nan_ok=True)
    one = stats.welch([0.9], [0.8, 0.85])
    assert math.isnan(one.p) and "at least 2" in stats.verdict(one, math.nan)
    flat = stats.welch([0.9, 0.9, 0.9], [0.9, 0.9, 0.9])
    assert flat.diff == 0 and stats.verdict(flat, math.nan).startswith("not testable")
    nominal = stats.Difference(5, 5, -0.01, -0.02, -0.001, 0.03, 8.0, -2.5)
    assert stats.verdict(nominal, 0.09) == "no significant difference after Holm correction (nominally worse)"
    assert stats.mean_ci([0.5]).n == 1 and math.isnan(stats.mean_ci([0.5]).half_width)


def test_report_tables_files_and_answer(store, tmp_path, capsys):
    uri, _, ids = store
    out = tmp_path / "report"
    assert report.main(["--tracking-uri", uri, "--experiment", "known", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"report: {out / 'report.html'}" in printed
    assert "sharpening    Δ +5.00" in printed and "significantly better" in printed
    assert "no significant difference" in printed
    summary = pd.read_csv(out / "summary.csv").set_index("method")
    mean, half = t_interval(REPEATS["sharpening"])
    assert summary.loc["sharpening", "repeat_test_acc_mean"] == pytest.approx(mean)
    assert summary.loc["sharpening", "repeat_test_acc_ci95"] == pytest.approx(half)
    assert summary.loc["anti", "repeat_test_acc_verdict"] == "no significant difference"
    assert summary.loc["anti", "best_val_acc"] == pytest.approx(0.72)
    markdown = (out / "summary.md").read_text()
    assert "| sharpening | curriculum | 5 | 97.00 ± 1.96 | +5.00 [" in markdown
    assert "| anti | control | 5 | 92.00 ± 1.96 |" in markdown and "no significant difference" in markdown
    repeats = pd.read_csv(out / "repeats.csv")
    assert len(repeats) == 20 and len(pd.read_csv(out / "trials.csv")) == 28
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 7
    assert "Optuna" in page and "no Optuna storage" in page  # the parent's storage does not exist: a note
    logged = {a.path for a in MlflowClient(uri).list_artifacts(ids["known"][1], "report")}
    assert {"report/report.html", "report/summary.md", "report/summary.csv"} <= logged


def test_partial_report_without_repeats_or_robustness(store, tmp_path, capsys):
    uri, _, _ = store
    out = tmp_path / "partial"
    assert report.main(["--tracking-uri", uri, "--experiment", "no-repeats", "--out", str(out),
                        "--no-log-artifacts"]) == 0
    assert "no seed repeats" in capsys.readouterr().out
    page = (out / "report.html").read_text()
    assert "no completed seed repeats" in page
    assert "no blur-robustness metrics" in page
    assert "best config (by val acc)" in page  # the search part still stands
    assert "data:image/png;base64," in page


def test_unknown_experiment_names_the_known_ones(store, capsys):
    uri, _, _ = store
    assert report.main(["--tracking-uri", uri, "--experiment", "nope"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: no experiment 'nope' in {uri}") and len(err.splitlines()) == 1
    assert "all-failed, known, no-repeats" in err


def test_study_without_finished_trials(store, capsys):
    uri, _, _ = store
    assert report.main(["--tracking-uri", uri, "--experiment", "all-failed"]) == 2
    err = capsys.readouterr().err
    assert "error: study 'all-failed' has no finished trials (8 trial runs: 8 failed)" in err


def test_no_study_record_and_missing_store(tmp_path, capsys):
    assert report.main(["--output-dir", str(tmp_path)]) == 2
    assert f"error: no study records in {tmp_path / 'studies'}" in capsys.readouterr().err
    assert report.main(["--output-dir", str(tmp_path), "--experiment", "x"]) == 2
    assert "no MLflow store at" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists()  # a report never creates an empty store
