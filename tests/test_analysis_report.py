"""`python -m analysis.report` on a real smoke study (the session's `smoke_study` fixture), as a user runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from trainer.config import CONTROLS, SEARCHED

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("Answer", "Tuning curves", "Variance: split, configuration, seed", "Search effort",
            "Best configuration per method", "Matched baselines", "Controls side by side",
            "Robustness to common corruptions (second endpoint)", "Learning curves",
            "Hyperparameters", "θ trajectories", "Blur robustness", "Clean vs blurred accuracy",
            "Parameter importances", "Time per trial", "All trials", "Provenance and browsing")
# No importance figure: the smoke space's 2 trials per method are below the 10 fANOVA needs (a note instead).
FIGURES = ("forest", "tuning_curves", "corruption", "learning_curves", "hyperparameters", "theta", "robustness", "youden",
           "trial_times")


def run_report(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "analysis.report", *args], capture_output=True, text=True,
                          timeout=300, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.fixture(scope="module")
def smoke_report(smoke_study):
    completed = run_report("--name", smoke_study.name, "--output-dir", str(smoke_study.output_dir))
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    return smoke_study, completed, smoke_study.output_dir / "reports" / smoke_study.name


def test_report_has_every_section_and_image(smoke_report):
    study, completed, out = smoke_report
    assert f"report: {out / 'report.html'}" in completed.stdout
    page = (out / "report.html").read_text()
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in page, title
    assert "src='http" not in page and "src=\"http" not in page  # self-contained
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == len(FIGURES)  # one dataset: every figure drawn, none replaced by a note
    for name in FIGURES:
        assert (out / f"{name}-digits.png").stat().st_size > 5000, name
    for name in ("summary.md", "summary.csv", "trials.csv", "repeats.csv", "corruption_answer.csv",
                 "corruption_by_type.csv"):
        assert (out / name).stat().st_size > 0, name


def test_every_trial_of_a_real_study_answers_the_second_endpoint(smoke_report):
    # The launcher ships each dataset's corrupted test set to its trials; every completed run logs
    # the 15 MNIST-C-style accuracies of the digits, their mean and the time they took.
    study, completed, out = smoke_report
    trials = pd.read_csv(out / "trials.csv")
    done = trials[trials["outcome"] == "completed"]
    copies = [c for c in trials.columns if c.startswith("test_acc_corrupt_")]
    assert len(copies) == 15 and done[[*copies, "test_acc_corrupt", "corruption_seconds"]].notna().all().all()
    assert (done["test_acc_corrupt"] - done[copies].mean(axis=1)).abs().max() < 1e-9
    assert (done["corruption_seconds"] < done["trial_seconds"]).all()
    assert "[digits] second endpoint, corruptions: " in completed.stdout
    assert "vs baseline on mean corruption accuracy:" in completed.stdout
    by_type = pd.read_csv(out / "corruption_by_type.csv")
    assert set(by_type["corruption"]) == {*(c.removeprefix("test_acc_corrupt_") for c in copies), "all"}


def test_report_answers_for_every_method(smoke_report):
    study, completed, out = smoke_report
    settings = study.record["settings"]
    searched = [m for m in settings["methods"] if m in SEARCHED]
    summary = pd.read_csv(out / "summary.csv").set_index("method")
    assert sorted(summary.index) == sorted(settings["methods"])  # the controls have rows too
    assert (summary.loc[searched, "search_trials"] == settings["num_samples"]).all()
    assert f"equal search effort: {settings['num_samples']} trials for each of {len(searched)} searched methods" \
        in completed.stdout
    # The best config is the one the runner chose and re-ran (its record), not re-decided.
    for method, entry in study.record["best"]["digits"].items():
        assert summary.loc[method, "best_trial_id"] == entry["tune_trial_id"]
        assert summary.loc[method, "best_val_acc"] == pytest.approx(entry["value"])
    assert "Holm over 5 comparisons: sharpening, annealing, combined, cbs, learned_theta vs baseline" in completed.stdout
    lines = [line.strip() for line in completed.stdout.splitlines()
             if line.strip().startswith(tuple(searched)) and "%" in line]
    assert {line.split()[0] for line in lines} == set(searched)
    verdicts = ("better", "worse", "equivalent within ±0.5 pp", "inconclusive", "not testable")
    for line in lines:
        assert "reference" in line or ("Δ" in line and "MDE" in line and "TOST p=" in line
                                       and any(v in line for v in verdicts)), line
        assert f"{settings['seed_repeats']}/{settings['seed_repeats']}" in line or "†" in line
    assert "sharpening − anti" in completed.stdout and "cbs − baseline" in completed.stdout
    trials = pd.read_csv(out / "trials.csv")
    controls = len([m for m in settings["methods"] if m in CONTROLS])
    matched = len(searched) - 1
    assert len(trials) == settings["num_samples"] * len(searched) + settings["seed_repeats"] * (
        len(searched) + 2 * matched + controls)  # matched and crossed runs


def test_report_is_attached_to_the_parent_run(smoke_report):
    study, _, out = smoke_report
    client = MlflowClient(study.tracking_uri)
    logged = {Path(a.path).name for a in client.list_artifacts(study.record["parent_run_id"], "report")}
    assert {p.name for p in out.iterdir()} <= logged
    assert "report.html" in logged and "forest-digits.png" in logged


def test_defaults_find_the_latest_study(smoke_report, tmp_path):
    study, _, _ = smoke_report
    # With no --name: the latest record in --output-dir, its own store; --out elsewhere; nothing logged.
    completed = run_report("--output-dir", str(study.output_dir), "--out", str(tmp_path), "--no-log-artifacts")
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert (tmp_path / "report.html").is_file() and "equal search effort" in completed.stdout
