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

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = ("Answer", "Best configuration per method", "Seed repeats against the baseline", "Controls side by side",
            "Learning curves", "Hyperparameters", "θ trajectories", "Blur robustness", "Clean vs blurred accuracy",
            "Parameter importances", "Time per trial", "All trials", "Provenance and browsing")
FIGURES = ("forest", "learning_curves", "hyperparameters", "theta", "robustness", "youden", "importance",
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
    for name in ("summary.md", "summary.csv", "trials.csv", "repeats.csv"):
        assert (out / name).stat().st_size > 0, name


def test_report_answers_for_every_method(smoke_report):
    study, completed, out = smoke_report
    settings = study.record["settings"]
    methods = sorted(study.record["best"]["digits"])  # every method with a completed search trial
    summary = pd.read_csv(out / "summary.csv").set_index("method")
    assert sorted(summary.index) == sorted(settings["methods"])
    # The runner's own repeat summary (parent-run metrics) agrees with the report's. (A diverged
    # repeat is possible at the smoke space's learning rates: both leave it out.)
    parent = MlflowClient(study.tracking_uri).get_run(study.record["parent_run_id"]).data.metrics
    for method in methods:
        assert summary.loc[method, "repeat_test_acc_n"] == parent[f"repeat_n.digits.{method}"]
        assert summary.loc[method, "repeat_test_acc_mean"] == pytest.approx(
            parent[f"repeat_test_acc_mean.digits.{method}"], abs=1e-9)
        assert summary.loc[method, "repeat_test_acc_ci95"] == pytest.approx(
            parent.get(f"repeat_test_acc_ci95.digits.{method}", float("nan")), abs=1e-9, nan_ok=True)
        assert summary.loc[method, "best_val_acc"] == pytest.approx(parent[f"best_val_acc.digits.{method}"])
    lines = [line for line in completed.stdout.splitlines() if line.strip().startswith(tuple(methods))]
    assert len(lines) == len(methods)
    for line in lines:
        assert "reference" in line or ("Δ" in line and "p=" in line and
                                       ("significant" in line or "not testable" in line)), line
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == settings["num_samples"] + settings["seed_repeats"] * len(methods)
    # The best config is the one the runner chose and repeated, ties in val_acc included.
    by_name = trials.set_index("run_name")
    for method, entry in study.record["best"]["digits"].items():
        chosen = by_name.loc[summary.loc[method, "best_run"]]
        for key in ("lr", "weight_decay", "batch_size"):
            assert chosen[key] == pytest.approx(entry["config"][key]), (method, key)


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
    assert (tmp_path / "report.html").is_file() and "significant" in completed.stdout
