"""The study end to end: real local Ray, real SQLite MLflow store, real Optuna storage."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from conftest import run_study
from study.config import METHODS

REPO = Path(__file__).resolve().parent.parent
PER_EPOCH = ("val_acc", "val_loss", "train_loss", "train_acc", "theta", "blur_level", "lr")
FINAL = ("test_acc", "test_f1_macro", "test_precision_macro", "test_recall_macro", "test_acc_box_L2")


def _runs(tracking_uri: str, name: str):
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(name)
    assert experiment is not None, f"no MLflow experiment {name}"
    runs = client.search_runs([experiment.experiment_id], max_results=10000)
    parents = [r for r in runs if r.data.tags.get("role") == "parent"]
    children = [r for r in runs if r.data.tags.get("role") == "trial"]
    return client, parents, children


@pytest.mark.slow
def test_smoke_study_end_to_end(smoke_study):
    settings = smoke_study.record["settings"]
    client, parents, children = _runs(smoke_study.tracking_uri, smoke_study.name)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]

    search = [r for r in children if r.data.tags["phase"] == "search"]
    repeats = [r for r in children if r.data.tags["phase"] == "repeat"]
    assert len(search) == settings["num_samples"]
    assert {r.data.tags["method"] for r in search} == set(METHODS)  # every method and control
    assert len(repeats) == len(METHODS) * settings["seed_repeats"]
    assert len({r.data.tags["trial_id"] for r in children}) == len(children)  # one run per trial
    assert {r.data.tags["seed"] for r in repeats} == {str(s) for s in range(1, settings["seed_repeats"] + 1)}

    for run in children:
        tags = run.data.tags
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        for key in ("method", "dataset", "model", "seed", "trial_id", "study", "code_version"):
            assert tags.get(key), f"tag {key} missing on {run.info.run_name}"
        assert tags["outcome"] in ("completed", "diverged")
        assert run.info.status == "FINISHED"
        assert run.data.params["method"] == tags["method"]
    completed = [r for r in children if r.data.tags["outcome"] == "completed"]
    assert len(completed) >= len(children) - 2
    run = completed[0]
    for key in PER_EPOCH:
        history = client.get_metric_history(run.info.run_id, key)
        assert [m.step for m in history] == list(range(1, settings["epochs"] + 1)), key
    for key in FINAL:
        assert 0.0 <= run.data.metrics[key] <= 1.0 or key.endswith("loss")

    # Curricula really train on blurred images first and end on the originals.
    sharpening = next(r for r in completed if r.data.tags["method"] == "sharpening")
    levels = [m.value for m in client.get_metric_history(sharpening.info.run_id, "blur_level")]
    K = int(sharpening.data.params["K"])
    assert levels[0] == K and levels[-1] == 1

    # The parent: versions, settings, the space's source and the kernel grid.
    assert parent.data.tags["space"] == "smoke" and parent.data.tags["torch_version"]
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"space", "kernels", "settings.json"} <= artifacts
    assert [a.path for a in client.list_artifacts(parent.info.run_id, "space")] == ["space/smoke.py"]
    assert any(k.startswith("repeat_test_acc_mean.digits.") for k in parent.data.metrics)

    # The Optuna study persisted beside the MLflow store opens and holds every search trial.
    study = optuna.load_study(study_name=f"{smoke_study.name}-digits",
                              storage=parent.data.tags["optuna_storage"])
    assert len(study.trials) == settings["num_samples"]
    assert study.best_trial.params["method"] in METHODS

    # What the user is told at the end.
    out = smoke_study.stdout
    assert f"mlflow ui --backend-store-uri {smoke_study.tracking_uri}" in out
    for method in METHODS:
        assert f"  {method} " in out


def _wait_for_line(process, pattern: str, timeout: float) -> list[str]:
    lines, deadline = [], time.time() + timeout
    while time.time() < deadline:
        line = process.stdout.readline()
        if not line:
            if process.poll() is not None:
                break
            continue
        lines.append(line)
        if pattern in line:
            return lines
    raise AssertionError(f"never saw {pattern!r}; output:\n{''.join(lines)[-3000:]}")


@pytest.mark.slow
def test_kill_and_resume_keeps_one_run_per_trial(tmp_path):
    args = ["--output-dir", str(tmp_path), "--name", "killed", "--methods", "baseline,sharpening,annealing",
            "--num-samples", "6", "--seed-repeats", "1"]
    # Checkpoint every epoch (digits epochs are far shorter than the default 10 s), so that the
    # interrupted trials continue from Ray checkpoints.
    every_epoch = {"STUDY_CHECKPOINT_SECONDS": "0"}
    process = subprocess.Popen([sys.executable, "-m", "study.run", *args], cwd=REPO, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1", **every_epoch})
    try:
        _wait_for_line(process, "[search-digits] 3/6", timeout=300)
        process.send_signal(signal.SIGKILL)  # the driver dies mid-study, without any cleanup
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
        time.sleep(2)
        try:  # the local Ray it started (same session) may outlive it: stop only that
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    resumed = run_study("--output-dir", str(tmp_path), "--resume", "--name", "killed", env=every_epoch)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resuming" in resumed.stdout

    client, parents, children = _runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "killed")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    search = [r for r in children if r.data.tags["phase"] == "search"]
    repeats = [r for r in children if r.data.tags["phase"] == "repeat"]
    assert len(search) == 6 and len(repeats) == 3
    assert len({r.data.tags["trial_id"] for r in children}) == len(children)
    assert all(r.info.status == "FINISHED" for r in children)
    for run in search:  # no epoch logged twice, none missing
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
        assert steps == sorted(set(steps)) and steps[-1] == 6, (run.info.run_name, steps)
    study = optuna.load_study(study_name="killed-digits", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials) >= 6


FAULTY_SPACE = textwrap.dedent('''
    """faulty: three baseline trials: one raises, one diverges, one completes."""
    from search_spaces.common import SpaceSettings, constants

    SETTINGS = SpaceSettings(name="faulty", description="failure handling", datasets=("digits",),
                             models={"digits": "small_cnn"}, epochs=3, num_samples=3, seed_repeats=0,
                             methods=("baseline",))

    def define(trial, dataset, settings=SETTINGS):
        trial.suggest_categorical("method", ["baseline"])
        values = constants(dataset, settings)
        if trial.number == 0:
            values["fail_at_epoch"] = 2
        elif trial.number == 1:
            values["lr"] = 1e12
        return values
''')


@pytest.mark.slow
def test_failing_and_diverging_trials_are_recorded(tmp_path):
    space = tmp_path / "faulty.py"
    space.write_text(FAULTY_SPACE)
    completed = run_study("--space", str(space), "--output-dir", str(tmp_path / "out"), "--name", "faulty",
                          "--max-failures", "0", "--max-concurrent", "1")
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    _, parents, children = _runs(f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}", "faulty")
    assert parents[0].info.status == "FINISHED"
    by_outcome = {r.data.tags["outcome"]: r for r in children}
    assert sorted(by_outcome) == ["completed", "diverged", "failed"], [r.data.tags for r in children]
    assert by_outcome["failed"].info.status == "FAILED"
    assert "fail_at_epoch" in by_outcome["failed"].data.tags.get("error", "")
    assert by_outcome["diverged"].info.status == "FINISHED"
    assert by_outcome["diverged"].data.params["lr"] == "1000000000000.0"
    assert "failed" in completed.stdout and "diverged" in completed.stdout


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("args, mentions", [
    (["--space", "nope"], "known spaces: annealing, full, sharpening, smoke"),
    (["--methods", "baseline,nope"], "methods"),
    (["--kernels", "box,nope"], "kernels"),
    (["--epochs", "3"], "need epochs >= 5"),
    (["--num-samples", "0"], "num_samples"),
    (["--tracking-uri", f"http://127.0.0.1:{_closed_port()}"], "unreachable"),
    (["--address", f"127.0.0.1:{_closed_port()}"], "unreachable"),
    (["--space", "full", "--datasets", "mnist", "--data-dir", "EMPTY"], "train-images-idx3-ubyte"),
    (["--resume"], "no study"),
])
def test_bad_input_is_one_clear_line_and_writes_nothing(tmp_path, args, mentions):
    output_dir = tmp_path / "out"
    args = [str(tmp_path / "empty") if a == "EMPTY" else a for a in args]
    completed = run_study("--output-dir", str(output_dir), *args, timeout=120)
    assert completed.returncode == 2, completed.stdout + completed.stderr
    errors = completed.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: "), completed.stderr
    assert mentions in errors[0]
    assert not output_dir.exists()


@pytest.mark.slow
def test_an_output_dir_holding_another_study_is_refused(smoke_study):
    before = sorted(p.name for p in smoke_study.output_dir.rglob("*"))
    for args in (["--name", smoke_study.name, "--space", "sharpening"],
                 ["--name", smoke_study.name, "--resume", "--space", "sharpening"]):
        completed = run_study("--output-dir", str(smoke_study.output_dir), *args, timeout=120)
        assert completed.returncode == 2
        assert completed.stderr.startswith("error: ") and smoke_study.name in completed.stderr
    assert sorted(p.name for p in smoke_study.output_dir.rglob("*")) == before


def test_dry_run_samples_valid_configs_and_writes_nothing(tmp_path):
    completed = run_study("--output-dir", str(tmp_path / "out"), "--space", "full", "--dry-run", timeout=120)
    assert completed.returncode == 0, completed.stderr
    for dataset in ("mnist", "fashion_mnist", "cifar10"):
        assert f"[{dataset}] 200 configs valid" in completed.stdout
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_full_space_launches_on_torchvision_data(tmp_path, mnist_writer):
    """`--space full` as on a GPU machine, restricted to MNIST files in the real on-disk format."""
    mnist_writer(tmp_path / "data", "MNIST", n_train=120, n_test=40)
    completed = run_study("--space", "full", "--datasets", "mnist", "--data-dir", str(tmp_path / "data"),
                          "--num-samples", "2", "--seed-repeats", "0", "--output-dir", str(tmp_path / "out"),
                          "--name", "full-mnist")
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    _, parents, children = _runs(f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}", "full-mnist")
    assert parents[0].data.tags["space"] == "full" and len(children) == 2
    for run in children:
        assert (run.data.tags["dataset"], run.data.tags["model"]) == ("mnist", "small_cnn")
        assert run.data.params["epochs"] == "20"


@pytest.mark.slow
def test_asha_never_stops_a_curriculum_before_the_originals(tmp_path):
    completed = run_study("--output-dir", str(tmp_path), "--name", "asha", "--asha", "--epochs", "12",
                          "--methods", "baseline,sharpening,anti", "--num-samples", "9", "--seed-repeats", "0")
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    client, parents, children = _runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "asha")
    assert parents[0].info.status == "FINISHED" and len(children) == 9
    outcomes = {r.data.tags["outcome"] for r in children}
    assert outcomes <= {"completed", "stopped", "diverged"} and "stopped" in outcomes
    for run in children:
        epochs = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
        on_originals = [m.value for m in client.get_metric_history(run.info.run_id, "on_originals")]
        assert run.info.status == "FINISHED"
        # Whatever ASHA decided, a trial ran at least until it had trained on original images.
        assert on_originals[-1] == 1, (run.data.tags["method"], epochs)
        if run.data.tags["outcome"] == "stopped":
            assert epochs[-1] < 12 and "test_acc" not in run.data.metrics
