"""Browsing a real smoke study: an MLflow server on 127.0.0.1 over its store, checked through the
REST API and in a real headless Chromium (Debian's `chromium`; .ci/run installs it when missing).

The MLflow 3 UI opens an experiment on its GenAI "Overview" tab, and its runs table nests child
runs under their (collapsed) parent while it is sorted by time. So the test opens the experiment's
runs tab in model-training mode, sorted by run name —
`#/experiments/<id>/runs?workflowType=machine_learning&orderByKey=tags.%60mlflow.runName%60&orderByAsc=true`,
the link the report and the README give — where every trial is a row of its own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest

from analysis.load import load_study
from analysis.report import browse_commands
from helpers import free_port
from trainer.config import CONTROLS, SEARCHED

pytestmark = pytest.mark.slow



def get_json(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"},
                                     method="POST" if body is not None else "GET")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


@pytest.fixture(scope="module")
def mlflow_server(smoke_study, tmp_path_factory):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("mlflow-server") / "server.log"
    with open(log, "wb") as sink:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", smoke_study.tracking_uri,
             "--default-artifact-root", (smoke_study.output_dir / "mlartifacts").as_uri(),
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.time() > deadline:
                pytest.fail(f"mlflow server did not come up: {log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        # The server forks its uvicorn workers into its own session: end that group, and only it.
        stop_group(server)


def stop_group(server: subprocess.Popen) -> None:
    """End the server's process group (its uvicorn worker and job runner too), gracefully first."""
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 10)):
        try:
            os.killpg(server.pid, sig)
        except ProcessLookupError:
            break
        try:
            server.wait(timeout=wait)
        except subprocess.TimeoutExpired:  # uvicorn's graceful shutdown can take long on a busy machine
            pass


def expected_trials(record: dict) -> int:
    """Search trials, then per seed: every method's repeat, each curriculum's matched baseline and its
    crossed run (the curriculum at the baseline's values), the controls (the smoke space selects nothing)."""
    settings = record["settings"]
    searched = [m for m in settings["methods"] if m in SEARCHED]
    controls = [m for m in settings["methods"] if m in CONTROLS]
    return settings["num_samples"] * len(searched) + settings["seed_repeats"] * (
        3 * len(searched) - 2 + len(controls))


def test_rest_api_lists_the_study_and_its_trials(mlflow_server, smoke_study):
    experiment = get_json(f"{mlflow_server}/api/2.0/mlflow/experiments/get-by-name?experiment_name={smoke_study.name}")
    experiment_id = experiment["experiment"]["experiment_id"]
    assert experiment_id == smoke_study.record["experiment_id"]
    runs, token = [], None
    while True:
        page = get_json(f"{mlflow_server}/api/2.0/mlflow/runs/search",
                        {"experiment_ids": [experiment_id], "max_results": 1000, **({"page_token": token} if token else {})})
        runs += page.get("runs", [])
        token = page.get("next_page_token")
        if not token:
            break
    tags = {run["info"]["run_id"]: {t["key"]: t["value"] for t in run["data"].get("tags", [])} for run in runs}
    parent_id = smoke_study.record["parent_run_id"]
    assert tags[parent_id]["role"] == "parent" and tags[parent_id]["study"] == smoke_study.name
    assert tags[parent_id]["optuna_studies"] == ",".join(f"{smoke_study.name}-digits-{m}" for m in SEARCHED)
    children = {run_id: t for run_id, t in tags.items() if t.get("mlflow.parentRunId") == parent_id}
    assert len(children) == expected_trials(smoke_study.record) == len(runs) - 1
    for t in children.values():
        assert t["role"] == "trial" and t["study"] == smoke_study.name
        assert t["outcome"] in ("completed", "diverged")  # a smoke-space lr may diverge; never failed
        assert t["phase"] in ("search", "repeat", "control") and t["dataset"] == "digits" and t["trial_id"]
        assert t["mlflow.runName"].startswith(f"{t['phase']} · {t['method']}")  # what the run is, at a glance
        seed_part = f"· s{t['seed']}" + (f" ~{t['matched_to']}" if t.get("matched_to") else "")
        if t["outcome"] == "completed":  # an ended run's name also says what it scored, in %
            assert re.search(re.escape(seed_part) + r" · val \d+\.\d\d test \d+\.\d\d$", t["mlflow.runName"])
        else:
            assert seed_part in t["mlflow.runName"]
    assert {t["method"] for t in children.values()} == set(smoke_study.record["settings"]["methods"])


def test_report_loader_reads_the_same_study_over_http(mlflow_server, smoke_study):
    # Over a server, histories come from the bulk endpoint the UI uses; the frames match the SQL store's.
    remote = load_study(mlflow_server, smoke_study.name)
    local = load_study(smoke_study.tracking_uri, smoke_study.name)
    assert remote.history_source == "rest-bulk" and local.history_source == "sql-bulk"
    order = ["run_id", "epoch"]
    pd.testing.assert_frame_equal(remote.histories.sort_values(order).reset_index(drop=True),
                                  local.histories.sort_values(order).reset_index(drop=True))
    assert sorted(remote.trials["run_id"]) == sorted(local.trials["run_id"])


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


def chromium(binary: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={profile}", "--window-size=1600,3000", *args],
                          capture_output=True, text=True, timeout=180)


def test_mlflow_ui_lists_the_study_runs_in_chromium(mlflow_server, smoke_study, tmp_path):
    binary = find_chromium()
    if binary is None:
        pytest.skip("Debian's chromium is not installed (apt-get install -y chromium; .ci/run installs it)")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(smoke_study.tracking_uri)
    experiment_id = smoke_study.record["experiment_id"]
    # A model-training experiment: MLflow 3 opens it on its runs, not on the GenAI overview.
    assert client.get_experiment(experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"
    names = [run.info.run_name for run in client.search_runs([experiment_id], max_results=1000)]
    assert len(names) == expected_trials(smoke_study.record) + 1
    _, page = browse_commands(load_study(mlflow_server, smoke_study.name))  # the link the report prints
    assert page.startswith(f"{mlflow_server}/#/experiments/{experiment_id}/runs?")
    missing = names
    for budget in (15000, 40000):  # a cold start on a busy 2-core machine may need the longer one
        dom = chromium(binary, tmp_path / f"profile-{budget}", f"--virtual-time-budget={budget}", "--dump-dom", page)
        missing = [name for name in names if name not in dom.stdout]
        if not missing:
            break
    assert not missing, f"not in the UI's runs table: {missing[:5]} (of {len(names)}); {dom.stderr[-1500:]}"
    assert smoke_study.name in dom.stdout and "matching runs" in dom.stdout
    # The UI in its model-training mode (the link's workflowType), not its GenAI overview.
    assert "Model registry" in dom.stdout and "Observability" not in dom.stdout
    shot = tmp_path / "experiment-runs.png"
    chromium(binary, tmp_path / "profile-shot", "--virtual-time-budget=15000", f"--screenshot={shot}", page)
    assert shot.stat().st_size > 20000  # a rendered table, not a blank page
