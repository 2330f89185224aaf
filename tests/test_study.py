"""The study end to end: real local Ray, real SQLite MLflow store, real Optuna storage."""

from __future__ import annotations

import os
import json
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import math
from collections import Counter

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from helpers import free_port, run_study
from search_spaces import SharedDraws, load_space
from study.tracking import StudyTracker
from trainer.config import CONTROLS, METHODS, SEARCHED, TrialConfig

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
    assert len({r.data.tags["trial_id"] for r in children}) == len(children)  # one run per trial
    for run in children:
        tags = run.data.tags
        assert tags["mlflow.parentRunId"] == parent.info.run_id
        for key in ("method", "dataset", "model", "seed", "trial_id", "study", "code_version", "phase"):
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
    assert {"space", "kernels", "study.json"} <= artifacts
    assert [a.path for a in client.list_artifacts(parent.info.run_id, "space")] == ["space/smoke.py"]

    # What the user is told at the end.
    out = smoke_study.stdout
    assert f"mlflow ui --backend-store-uri {smoke_study.tracking_uri}" in out
    for method in METHODS:
        assert f"  {method} " in out


@pytest.mark.slow
def test_every_searched_method_gets_the_same_search(smoke_study):
    """Equal search effort: one Optuna study per method, num_samples trials each, all TPE's own picks."""
    settings = smoke_study.record["settings"]
    client, parents, children = _runs(smoke_study.tracking_uri, smoke_study.name)
    search = [r for r in children if r.data.tags["phase"] == "search"]
    per_method = Counter(r.data.tags["method"] for r in search)
    assert per_method == {m: settings["num_samples"] for m in SEARCHED}
    storage = parents[0].data.tags["optuna_storage"]
    for method in SEARCHED:
        study = optuna.load_study(study_name=f"{smoke_study.name}-digits-{method}", storage=storage)
        assert len(study.trials) == settings["num_samples"]
        assert {t.state for t in study.trials} <= {TrialState.COMPLETE, TrialState.PRUNED}
        assert {t.params.get("method") for t in study.trials} == {None}  # the method is the study, not a parameter
        run_ids = {r.info.run_id for r in search if r.data.tags["method"] == method}
        assert {t.user_attrs["mlflow_run_id"] for t in study.trials} == run_ids  # Optuna ↔ MLflow
        # The chosen best is recorded once (record and parent tag agree) and has the best validation accuracy.
        chosen = smoke_study.record["best"]["digits"][method]
        assert parents[0].data.tags[f"best_trial.digits.{method}"] == chosen["tune_trial_id"]
        assert chosen["value"] == study.best_value
    assert "search trials per method: " in smoke_study.stdout and "(equal)" in smoke_study.stdout
    assert parents[0].data.metrics["search_trials.digits.sharpening"] == settings["num_samples"]


@pytest.mark.slow
def test_controls_and_matched_baselines_rerun_the_chosen_config(smoke_study):
    settings = smoke_study.record["settings"]
    client, parents, children = _runs(smoke_study.tracking_uri, smoke_study.name)
    best = smoke_study.record["best"]["digits"]
    seeds = {str(s) for s in range(1, settings["seed_repeats"] + 1)}
    by_phase = {phase: [r for r in children if r.data.tags["phase"] == phase] for phase in ("repeat", "control")}
    for method in SEARCHED:  # every searched method's best config, on fresh seeds
        runs = [r for r in by_phase["repeat"] if r.data.tags["method"] == method]
        assert {r.data.tags["seed"] for r in runs} == seeds
        chosen = TrialConfig.from_dict(best[method]["config"]).used_values()
        for run in runs:
            assert run.data.params == {k: str(v) for k, v in {**chosen, "seed": run.data.tags["seed"]}.items()}
    sharpening = TrialConfig.from_dict(best["sharpening"]["config"])
    for control in CONTROLS:  # sharpening's best, only the method changed, on sharpening's seeds
        runs = [r for r in by_phase["control"] if r.data.tags["method"] == control]
        assert {r.data.tags["seed"] for r in runs} == seeds and {r.data.tags["matched_to"] for r in runs} == {"sharpening"}
        for run in runs:
            expected = TrialConfig.from_dict({**sharpening.with_method(control), "seed": int(run.data.tags["seed"])})
            assert run.data.params == {k: str(v) for k, v in expected.used_values().items()}
    for method in SEARCHED:  # the baseline at each curriculum's shared hyperparameters
        if method == "baseline":
            continue
        runs = [r for r in by_phase["control"] if r.data.tags.get("matched_to") == method
                and r.data.tags["method"] == "baseline"]
        assert sorted(r.data.tags["seed"] for r in runs) == sorted(seeds)
        chosen = TrialConfig.from_dict(best[method]["config"])
        for run in runs:
            for shared in ("optimizer", "lr", "weight_decay", "batch_size", "epochs"):
                assert run.data.params[shared] == str(getattr(chosen, shared))
            assert "K" not in run.data.params and "theta0" not in run.data.params  # only what a baseline uses


@pytest.mark.slow
def test_annealing_runs_start_linear_and_end_at_relu(smoke_study):
    client, _, children = _runs(smoke_study.tracking_uri, smoke_study.name)
    annealing = [r for r in children if r.data.tags["method"] == "annealing"]
    assert annealing
    for run in annealing:
        assert float(run.data.params["theta0"]) == pytest.approx(math.pi / 4)
        theta = [m.value for m in client.get_metric_history(run.info.run_id, "theta")]
        assert theta[-1] == 0.0 and max(theta) > 0.3
    for run in children:  # the logged params are what the method uses, nothing else
        assert set(run.data.params) == set(TrialConfig(method=run.data.tags["method"], theta_schedule=run.data.params.get(
            "theta_schedule", "")).fields_used())


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


def _start_and_kill(args: list[str], pattern: str) -> str:
    """Start `python -m study.run ARGS`, SIGKILL its whole process group once `pattern` is printed."""
    process = subprocess.Popen([sys.executable, "-m", "study.run", *args], cwd=REPO, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        lines = _wait_for_line(process, pattern, timeout=300)
    finally:
        # The driver dies without any cleanup, and so does the local Ray it started (same session).
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait(timeout=60)
    return "".join(lines)


@pytest.mark.slow
def test_killed_twice_and_resumed_the_search_stays_unbiased(tmp_path):
    """SIGKILL mid-search, resume; SIGKILL mid-re-runs, resume: the Optuna storage is as clean as an
    uninterrupted study's, every trial has one MLflow run, and the parent counts all the time."""
    methods, samples = ("baseline", "sharpening", "annealing"), 4
    args = ["--output-dir", str(tmp_path), "--name", "killed", "--methods", ",".join(methods),
            "--num-samples", str(samples), "--seed-repeats", "2"]
    _start_and_kill(args, "[digits search 5/12]")
    second = ["--output-dir", str(tmp_path), "--resume"]
    out = _start_and_kill(second, "[digits re-runs 3/")
    assert "resuming killed (run 2)" in out and "[digits search 6/12]" not in out.split("resuming")[0]
    resumed = run_study(*second)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resuming killed (run 3)" in resumed.stdout and "over 3 runs" in resumed.stdout

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    record = json.loads((tmp_path / "studies" / "killed.json").read_text())
    draws = SharedDraws(load_space("smoke").settings.replace(**{k: tuple(v) if isinstance(v, list) else v
                                                                 for k, v in record["settings"].items()}), 0)
    for method in methods:
        study = optuna.load_study(study_name=f"killed-digits-{method}", storage=storage)
        states = Counter(t.state for t in study.trials)
        assert states == {TrialState.COMPLETE: samples}, (method, states)  # nothing RUNNING, WAITING or FAIL
        # Trial i of every method was given the common draw i of the shared hyperparameters, and only
        # that: the resumes enqueued nothing else (Optuna marks enqueued trials with their fixed params).
        assert [t.system_attrs["fixed_params"] for t in study.trials] == [draws(t.number) for t in study.trials]
        assert all({k: t.params[k] for k in draws(0)} == draws(t.number) for t in study.trials)
    client, parents, children = _runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "killed")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert all(r.info.status == "FINISHED" for r in children)
    search = [r for r in children if r.data.tags["phase"] == "search"]
    reruns = [r for r in children if r.data.tags["phase"] != "search"]
    assert Counter(r.data.tags["method"] for r in search) == {m: samples for m in methods}
    # 3 methods x 2 seeds repeats + 2 curricula x 2 seeds matched baselines + 2 curricula x 2 seeds
    # crossed (at the baseline's shared values), one run per slot.
    assert len(reruns) == 14 and len({r.data.tags["slot"] for r in reruns}) == 14
    for run in children:  # no epoch logged twice, none missing (a diverged trial stops at its last epoch)
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
        last = 6 if run.data.tags["outcome"] == "completed" else max(steps)
        assert steps == list(range(1, last + 1)), (run.info.run_name, run.data.tags["outcome"], steps)
    assert len(record["attempts"]) == 3
    assert parents[0].data.metrics["resumes"] == 2
    assert parents[0].data.metrics["study_seconds"] > max(a["last"] - a["started"] for a in record["attempts"])


@pytest.mark.slow
def test_replicates_selection_and_crossed_runs_survive_a_kill_with_every_slot_run_once(tmp_path):
    """Two whole-pipeline replicates, a top-2 x 1-seed selection and crossed runs; SIGKILL in the
    second replicate's search, resume: every slot of both replicates ran exactly once, each
    replicate on its own split, seeds and Optuna studies, and the choice is the selection's."""
    args = ["--output-dir", str(tmp_path), "--name", "rep", "--methods", "baseline,sharpening",
            "--num-samples", "3", "--seed-repeats", "1", "--replicates", "2", "--select-top", "2",
            "--select-seeds", "1"]
    _start_and_kill(args, "[digits r1 search 2/6]")
    resumed = run_study("--output-dir", str(tmp_path), "--resume")
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    _, parents, children = _runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "rep")
    assert all(r.info.status == "FINISHED" for r in children)
    by_replicate = {r: [c for c in children if c.data.tags["replicate"] == r] for r in ("0", "1")}
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    record = json.loads((tmp_path / "studies" / "rep.json").read_text())
    for replicate, runs in by_replicate.items():
        phases = Counter(r.data.tags["phase"] for r in runs)
        # 2 methods x 3 search; 2 methods x top 2 x 1 selection seed; repeats 2, matched 1, crossed 1.
        assert phases == {"search": 6, "select": 4, "repeat": 2, "control": 2}, (replicate, phases)
        slots = [r.data.tags["slot"] for r in runs if r.data.tags["phase"] != "search"]
        assert len(slots) == len(set(slots)) == 8  # no slot trained twice across the kill
        prefix = "r1/" if replicate == "1" else ""
        assert all(slot.startswith(prefix) for slot in slots) and (replicate == "1" or "/" not in "".join(slots))
        base = 1000 * int(replicate)
        assert {int(r.data.tags["seed"]) for r in runs if r.data.tags["phase"] == "search"} == {base}
        assert {int(r.data.tags["seed"]) for r in runs if r.data.tags["phase"] == "select"} == {base + 501}
        assert {int(r.data.tags["seed"]) for r in runs if r.data.tags["phase"] in ("repeat", "control")} == {base + 1}
        crossed = [r for r in runs if r.data.tags.get("slot", "").endswith("control:sharpening~baseline:s%d" % (base + 1))]
        assert len(crossed) == 1 and crossed[0].data.tags["matched_to"] == "baseline"
        assert all(r.data.params.get("replicate") == replicate for r in runs)
        for method in ("baseline", "sharpening"):
            name = f"rep-digits{'-r1' if replicate == '1' else ''}-{method}"
            study = optuna.load_study(study_name=name, storage=storage)
            assert Counter(t.state for t in study.trials) == {TrialState.COMPLETE: 3}
            chosen = record["best"]["digits" if replicate == "0" else "digits/r1"][method]
            rows = {row["optuna_trial"]: row for row in chosen["selection"]}
            assert len(rows) == 2 and all(row["select_runs"] == 1 for row in rows.values())
            best = max(rows.values(), key=lambda row: (row["select_val_acc"], -row["select_val_loss"],
                                                       -row["search_rank"]))
            assert chosen["optuna_trial"] == best["optuna_trial"]  # chosen by the selection, not the search
    # Trial i of both methods shared its draws within a replicate, and the replicates drew apart.
    def shared(runs, number):
        return {tuple(sorted((k, r.data.params[k]) for k in ("lr", "weight_decay", "batch_size")))
                for r in runs if r.data.tags["phase"] == "search" and r.data.tags["optuna_trial"] == str(number)}
    assert all(len(shared(runs, n)) == 1 for runs in by_replicate.values() for n in range(3))
    assert shared(by_replicate["0"], 0) != shared(by_replicate["1"], 0)


FAULTY_SPACE = textwrap.dedent('''
    """faulty: three baseline trials: one raises, one diverges, one completes."""
    from search_spaces.common import SpaceSettings, define as common_define

    SETTINGS = SpaceSettings(name="faulty", description="failure handling", datasets=("digits",),
                             models={"digits": "small_cnn"}, epochs=3, num_samples=3, seed_repeats=0,
                             methods=("baseline",))

    def define(trial, dataset, method, settings):
        values = common_define(trial, dataset, method, settings)
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



BROKEN_SPACE = "from search_spaces.common import SpaceSettings\nSETTINGS = SpaceSettings(\n"


@pytest.mark.parametrize("args, mentions", [
    (["--space", "nope"], "known spaces: annealing, full, mnist5k, regimes, sharpening, smoke"),
    (["--space", "BROKEN"], "does not import (line"),
    (["--methods", "baseline,nope"], "--methods: nope is not allowed"),
    (["--methods", "anti"], "needs 'sharpening' in the methods"),
    (["--methods", ""], "--methods: an empty list"),
    (["--kernels", "box,nope"], "--kernels: nope"),
    (["--datasets", "cifar10"], "no model for cifar10"),
    (["--epochs", "3"], "need epochs >= 4"),
    (["--epochs", "0"], "--epochs: must be >= 1"),
    (["--num-samples", "0"], "--num-samples: must be >= 1"),
    (["--seed-repeats", "-1"], "--seed-repeats: must be >= 0"),
    (["--max-concurrent", "0"], "--max-concurrent: must be >= 1"),
    (["--max-failures", "-2"], "--max-failures: must be >= 0"),
    (["--cpus-per-trial", "0"], "--cpus-per-trial: must be > 0"),
    (["--cpus-per-trial", "nan"], "--cpus-per-trial: must be > 0"),
    (["--gpus-per-trial", "-1"], "--gpus-per-trial: must be >= 0"),
    (["--gpus-per-trial", "1.5"], "whole number"),
    (["--cpus-per-trial", "64"], "the largest node of the cluster has"),
    (["--gpus-per-trial", "4"], "the largest node of the cluster has 0 GPUs"),
    (["--tracking-uri", f"http://127.0.0.1:{free_port()}"], "unreachable"),
    (["--tracking-uri", "ftp://example/x"], "--tracking-uri"),
    (["--tracking-uri", "./mlruns"], "file stores"),
    (["--address", f"127.0.0.1:{free_port()}"], "unreachable"),
    (["--address", "not-an-address"], "--address"),
    (["--space", "full", "--datasets", "mnist", "--data-dir", "EMPTY"], "train-images-idx3-ubyte"),
    (["--output-dir", "/dev/null/out"], "--output-dir: /dev/null is a file"),
    (["--output-dir", "FILE/out"], "is a file"),
    (["--resume"], "no study"),
    (["--seed", "-1"], "--seed: must be >= 0"),
    (["--num-samples", "x"], "argument --num-samples: invalid int value: 'x'"),
    (["--bogus-flag"], "unrecognized arguments: --bogus-flag"),
    (["--name", "../escape"], "--name: '../escape' is not allowed"),
    (["--storage-path", "ftp://host/x"], "--storage-path: scheme 'ftp'"),
    (["--space", "smoke", "--datasets", "digits,nope"], "--datasets: nope is not allowed"),
])
def test_bad_input_is_one_clear_line_and_writes_nothing(tmp_path, args, mentions):
    output_dir = tmp_path / "out"
    (tmp_path / "broken.py").write_text(BROKEN_SPACE)
    (tmp_path / "file").write_text("")
    replace = {"EMPTY": str(tmp_path / "empty"), "BROKEN": str(tmp_path / "broken.py"),
               "FILE/out": str(tmp_path / "file" / "out")}
    args = [replace.get(a, a) for a in args]
    if "--output-dir" not in args:
        args = ["--output-dir", str(output_dir), *args]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    completed = run_study(*args, timeout=120)
    assert completed.returncode == 2, completed.stdout + completed.stderr
    errors = completed.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error: "), completed.stderr
    assert mentions in errors[0]
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written anywhere


def test_a_resumed_study_keeps_its_recorded_flags(tmp_path):
    record = {"name": "old", "space": "smoke", "space_source": "smoke.py", "created": "2026-01-01T00:00:00",
              "settings": {}, "seed": 0, "asha": False, "cpus_per_trial": 1.0,
              "gpus_per_trial": "auto", "max_concurrent": None, "max_failures": 1, "tracking_uri": "x",
              "storage_path": "y", "data_dir": "z"}
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "old.json").write_text(json.dumps(record))
    for args, mentions in ((["--asha"], "--asha: study 'old' was run with False"),
                           (["--max-concurrent", "4"], "--max-concurrent: study 'old' was run with None"),
                           (["--num-samples", "9"], "keeps its recorded settings")):
        completed = run_study("--output-dir", str(tmp_path), "--resume", *args, timeout=120)
        assert completed.returncode == 2 and mentions in completed.stderr, completed.stderr


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
        assert f"[{dataset}] 30 search trials per method, all valid" in completed.stdout
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_the_full_space_launches_on_torchvision_data(tmp_path, mnist_writer):
    """`--space full` as on a GPU machine, restricted to MNIST files in the real on-disk format."""
    mnist_writer(tmp_path / "data", "MNIST", n_train=120, n_test=40)
    completed = run_study("--space", "full", "--datasets", "mnist", "--data-dir", str(tmp_path / "data"),
                          "--num-samples", "2", "--seed-repeats", "0", "--select-top", "1",
                          "--output-dir", str(tmp_path / "out"), "--name", "full-mnist")
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    _, parents, children = _runs(f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}", "full-mnist")
    assert parents[0].data.tags["space"] == "full" and len(children) == 2 * len(SEARCHED)
    for run in children:
        assert (run.data.tags["dataset"], run.data.tags["model"]) == ("mnist", "small_cnn")
        assert run.data.params["epochs"] == "20"


@pytest.mark.slow
def test_asha_judges_trials_only_in_their_final_regime(tmp_path):
    completed = run_study("--output-dir", str(tmp_path), "--name", "asha", "--asha", "--epochs", "12",
                          "--methods", "baseline,sharpening", "--num-samples", "6", "--seed-repeats", "0")
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    client, parents, children = _runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "asha")
    assert parents[0].info.status == "FINISHED" and len(children) == 12
    outcomes = {r.data.tags["outcome"] for r in children}
    assert outcomes <= {"completed", "stopped", "diverged"} and "stopped" in outcomes
    stopped_at = set()
    for run in children:
        epochs = [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")]
        final = [m.value for m in client.get_metric_history(run.info.run_id, "in_final_regime")]
        assert run.info.status == "FINISHED"
        # Whatever ASHA decided, a trial ran until it trained as plain training does.
        assert final[-1] == 1, (run.data.tags["method"], epochs)
        if run.data.tags["outcome"] == "stopped":
            assert epochs[-1] < 12 and "test_acc" not in run.data.metrics
            stopped_at.add(epochs[-1])
    # Rungs start after the space's longest curriculum, (K-1)*epochs_per_level = 3 epochs here,
    # so every rung compares trials at the same epoch, all in their final regime ...
    assert stopped_at and min(stopped_at) >= 4
    # ... and a stopped trial is PRUNED in Optuna, never COMPLETE with a partial value.
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    pruned = sum(t.state == TrialState.PRUNED for m in ("baseline", "sharpening")
                 for t in optuna.load_study(study_name=f"asha-digits-{m}", storage=storage).trials)
    assert pruned == sum(r.data.tags["outcome"] == "stopped" for r in children)


def test_epochs_written_together_arrive_whole_with_the_outcome(tmp_path):
    """The MLflow callback writes a trial's queued epochs in one go (split between epochs when they
    exceed MLflow's 1000 metrics a batch): every epoch's metrics land, at their own steps."""
    tracker = StudyTracker.create(f"sqlite:///{tmp_path / 'mlflow.db'}", "batch", (tmp_path / "a").as_uri(),
                                  tags={}, params={})
    run_id = tracker.create_child("t0", {"method": "baseline", "epochs": 3}, {"phase": "search"})
    wide = {f"m{i}": float(i) for i in range(400)}  # 3 epochs x 401 metrics: two batches
    tracker.log_results(run_id, [{"epoch": e, "val_acc": e / 10, **wide} for e in (1, 2)]
                        + [{"epoch": 3, "val_acc": 0.3, **wide, "outcome": "completed", "node_id": "n1"}])
    run = tracker.client.get_run(run_id)
    assert [(m.step, m.value) for m in tracker.client.get_metric_history(run_id, "val_acc")] == [
        (1, 0.1), (2, 0.2), (3, 0.3)]
    assert [m.step for m in tracker.client.get_metric_history(run_id, "m399")] == [1, 2, 3]
    assert run.data.metrics["epoch"] == 3 and run.data.tags["outcome"] == "completed"
    assert run.data.tags["node_id"] == "n1"


def test_the_searcher_records_a_trial_only_once_its_run_holds_its_outcome(tmp_path):
    """The kill window of the resume race: Tune tells the searcher a trial ended (which it records in
    Optuna) before MLflow's queued writes of its last result have landed. `settle`, called by the
    searcher before it records, returns only once they have: with the writer held busy, the run
    already carries its outcome (and, for a failed trial, "failed") when settle returns."""
    import threading
    from types import SimpleNamespace

    from study.tracking import in_background
    from study.trainable import MlflowTrialCallback
    from trainer.config import TAGS

    tracker = StudyTracker.create(f"sqlite:///{tmp_path / 'mlflow.db'}", "settle", (tmp_path / "a").as_uri(),
                                  tags={}, params={})
    callback = MlflowTrialCallback(tracker)
    callback.setup()
    for trial_id, failed in (("t0", False), ("t1", True)):
        trial = SimpleNamespace(trial_id=trial_id, config={"method": "baseline", "epochs": 2, TAGS: {"phase": "search"}},
                                last_result={})
        callback.on_trial_start(0, [], trial)
        callback.run_id(trial_id)  # the run exists
        gate = threading.Event()
        in_background(gate.wait, 30)  # the writer is busy: what follows queues behind it
        last = {"epoch": 2, "val_acc": 0.5} if failed else {"epoch": 2, "val_acc": 0.9, "outcome": "completed"}
        callback.on_trial_result(0, [], trial, {"epoch": 1, "val_acc": 0.4})
        callback.on_trial_result(0, [], trial, last)
        threading.Timer(0.5, gate.set).start()
        run_id = callback.settle(trial_id, failed)
        run = tracker.client.get_run(run_id)
        assert run.data.tags["outcome"] == ("failed" if failed else "completed")
        assert run.data.metrics["epoch"] == 2 and run.data.metrics["val_acc"] == last["val_acc"]


def test_a_trials_epochs_are_written_together_and_none_is_left_behind(tmp_path):
    """While a trial trains, its epochs go out at most once per WRITE_SECONDS; whatever is queued
    when it ends goes out then — with the outcome, or, for a trial ASHA stopped (no outcome in its
    last result), at on_trial_complete — so the run holds every epoch however the trial ended."""
    from types import SimpleNamespace

    from study.tracking import flush_writes
    from study.trainable import MlflowTrialCallback
    from trainer.config import TAGS

    tracker = StudyTracker.create(f"sqlite:///{tmp_path / 'mlflow.db'}", "coalesce", (tmp_path / "a").as_uri(),
                                  tags={}, params={})
    callback = MlflowTrialCallback(tracker)
    callback.setup()

    def trial(trial_id):
        made = SimpleNamespace(trial_id=trial_id, config={"method": "baseline", "epochs": 3, TAGS: {"phase": "search"}},
                               last_result={})
        callback.on_trial_start(0, [], made)
        return made

    def epochs(trial_id):
        flush_writes()
        run_id = callback.run_id(trial_id)
        return [m.step for m in tracker.client.get_metric_history(run_id, "val_acc")]

    callback.WRITE_SECONDS = 3600.0  # nothing is due while the trial trains
    stopped = trial("stopped")
    for epoch in (1, 2, 3):
        stopped.last_result = {"epoch": epoch, "val_acc": epoch / 10}
        callback.on_trial_result(0, [], stopped, stopped.last_result)
    assert epochs("stopped") == []  # queued, not yet written
    callback.on_trial_complete(0, [], stopped)
    assert epochs("stopped") == [1, 2, 3]
    assert tracker.client.get_run(callback.run_id("stopped")).data.tags["outcome"] == "stopped"
    completed = trial("completed")
    callback.on_trial_result(0, [], completed, {"epoch": 1, "val_acc": 0.5})
    callback.on_trial_result(0, [], completed, {"epoch": 2, "val_acc": 0.6, "outcome": "completed"})
    assert epochs("completed") == [1, 2]  # the last result takes the queue with it
    callback.WRITE_SECONDS = 0.0  # an epoch longer than WRITE_SECONDS: written as it arrives
    live = trial("live")
    callback.on_trial_result(0, [], live, {"epoch": 1, "val_acc": 0.5})
    assert epochs("live") == [1]
    callback.on_trial_result(0, [], live, {"epoch": 2, "val_acc": 0.6})
    assert epochs("live") == [1, 2]


def test_a_resume_deletes_exactly_the_runs_whose_trials_it_trains_again(tmp_path):
    """After a kill, a run is kept only if the study will not train its trial again: a search run
    only if its Optuna trial ended, a selection run only if the study recorded it, a re-run only if
    it logged its outcome. A run that holds its outcome but whose Optuna trial is still RUNNING
    (killed between MLflow's write and Optuna's tell) goes, or the re-trained trial would have two."""
    from study.search import unrecorded_runs

    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    study = optuna.create_study(study_name="k-digits-baseline", storage=storage, direction="maximize")
    ended, running = study.ask(), study.ask()
    study.tell(ended, 0.9)
    study.set_user_attr("select:t0:s101", {"val_acc": 0.9, "val_loss": 0.3, "outcome": "completed"})
    tracker = StudyTracker.create(f"sqlite:///{tmp_path / 'mlflow.db'}", "k", (tmp_path / "a").as_uri(),
                                  tags={}, params={})
    search = {"phase": "search", "optuna_study": study.study_name}
    runs = {  # trial id → (its tags, the outcome it logged, kept after the resume?)
        "search-ended": ({**search, "optuna_trial": "0"}, "completed", True),
        "search-told-late": ({**search, "optuna_trial": "1"}, "completed", False),
        "search-unfinished": ({**search, "optuna_trial": "1"}, None, False),
        "select-recorded": ({"phase": "select", "optuna_study": study.study_name, "optuna_trial": "0",
                             "slot": "select:baseline:t0:s101"}, "completed", True),
        "select-unrecorded": ({"phase": "select", "optuna_study": study.study_name, "optuna_trial": "0",
                               "slot": "select:baseline:t0:s102"}, "completed", False),
        "select-no-study": ({"phase": "select", "optuna_study": "k-digits-cbs", "optuna_trial": "0",
                             "slot": "select:cbs:t0:s101"}, "diverged", False),
        "repeat-ended": ({"phase": "repeat", "slot": "repeat:baseline:s1"}, "failed", True),
        "repeat-unfinished": ({"phase": "repeat", "slot": "repeat:baseline:s2"}, None, False),
    }
    for trial_id, (tags, outcome, _) in runs.items():
        seed = int(tags["slot"].rsplit(":s", 1)[1]) if "slot" in tags else 0
        run_id = tracker.create_child(trial_id, {"method": "cbs" if "cbs" in tags.get("slot", "") else "baseline",
                                                 "seed": seed}, tags)
        tracker.log_result(run_id, {"epoch": 1, "val_acc": 0.5, **({"outcome": outcome} if outcome else {})})
    assert tracker.forget_unfinished(lambda children: unrecorded_runs(storage, children)) == 5
    left = tracker.child_runs()
    assert set(left) == {trial_id for trial_id, (_, _, kept) in runs.items() if kept}
    assert {r.info.status for r in left.values()} == {"FINISHED", "FAILED"}
    assert left["repeat-ended"].info.status == "FAILED"


@pytest.mark.slow
def test_auto_seeds_add_seeds_only_while_a_comparison_is_open_and_the_report_replays_them(tmp_path):
    """`--seeds auto` end to end (issue 23), killed (SIGKILL) once the second look's runs are going
    and resumed: no slot trained twice, re-runs carry the look that added their seed, a side has
    exactly the seeds its longest-running comparison used, and the report's replay of the looks
    says what the resumed launcher decided."""
    _start_and_kill(["--output-dir", str(tmp_path), "--name", "auto", "--methods", "baseline,sharpening",
                     "--num-samples", "2", "--select-top", "1", "--seed-repeats", "2", "--seeds", "auto",
                     "--max-seeds", "6"], "[digits re-runs 10/")  # the first look is 8 runs (4 sides x 2 seeds)
    completed = run_study("--output-dir", str(tmp_path), "--resume")
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "resuming auto (run 2)" in completed.stdout
    decided = {}
    for line in completed.stdout.splitlines():
        words = line.split()
        if len(words) > 4 and words[0].split(":")[0] in ("tuned", "matched", "crossed", "controls") and words[2] == "at":
            decided[words[0]] = (words[1], int(words[5].strip("(")))
    assert set(decided) == {"tuned:sharpening~baseline", "matched:sharpening~baseline", "crossed:sharpening~baseline"}
    _, _, children = _runs(f"sqlite:///{tmp_path / 'mlflow.db'}", "auto")
    sides: dict[str, list[int]] = {}
    for run in children:
        tags = run.data.tags
        if tags["phase"] in ("repeat", "control"):
            group = tags["slot"].rsplit(":s", 1)[0]
            sides.setdefault(group, []).append(int(tags["seed"]))
            assert tags["look"] == str((int(tags["seed"]) - 1) // 2 + 1)  # seeds 1-2: look 1, 3-4: look 2 ...
    slots = [r.data.tags["slot"] for r in children if r.data.tags["phase"] in ("repeat", "control")]
    assert len(slots) == len(set(slots))  # across the kill, no seed trained twice
    sides = {group: sorted(seeds) for group, seeds in sides.items()}
    uses = {"repeat:sharpening": ("tuned", "matched"), "repeat:baseline": ("tuned", "crossed"),
            "control:baseline~sharpening": ("matched",), "control:sharpening~baseline": ("crossed",)}
    for group, families in uses.items():
        used = max(decided[f"{family}:sharpening~baseline"][1] for family in families)
        assert sides[group] == list(range(1, used + 1)), group  # both sides, the same seeds, no more
    assert all(verdict != "continue" for verdict, _ in decided.values())

    report = subprocess.run([sys.executable, "-m", "analysis.report", "--name", "auto", "--output-dir", str(tmp_path)],
                            capture_output=True, text=True, cwd=REPO, timeout=600)
    assert report.returncode == 0, report.stderr[-3000:]
    out = next(p for p in tmp_path.rglob("looks.csv")).parent
    import pandas as pd
    looks = pd.read_csv(out / "looks.csv")
    assert {row.comparison: (row.verdict, row.seeds) for row in looks.itertuples()} == decided
    assert (out / "looks-digits.png").stat().st_size > 10_000
    assert "Seeds sized by the study" in (out / "report.html").read_text()
    assert "seeds auto:" in report.stdout


def test_the_launcher_checks_its_plan_and_a_trial_trains_without_the_heavy_imports(tmp_path):
    """What keeps the smoke study's start short: the plan is checked (and a bad one refused)
    before torch, Optuna, MLflow, Ray or scikit-learn are imported — the launcher imports them
    while Ray starts — and a trial worker never imports scikit-learn or MLflow."""
    heavy = ("torch", "optuna", "mlflow", "ray", "sklearn", "scipy.stats", "pandas")
    check = textwrap.dedent(f"""
        import sys
        from study.plan import build_parser, resolve
        import study.run
        resolve(build_parser("x").parse_args(["--output-dir", {str(tmp_path / "out")!r}]))
        print(",".join(m for m in {heavy!r} if m in sys.modules))
    """)
    done = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
    assert not (tmp_path / "out").exists()  # checking writes nothing
    trial = textwrap.dedent("""
        import sys
        from trainer.data import load_arrays
        from trainer.train import train
        final = train({"epochs": 1, "device": "cpu", "corruptions": False}, data=load_arrays("digits"))
        assert final["outcome"] == "completed" and 0 <= final["test_f1_macro"] <= 1
        print(",".join(m for m in ("sklearn", "mlflow", "optuna") if m in sys.modules))
    """)
    done = subprocess.run([sys.executable, "-c", trial], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_stopping_a_local_ray_leaves_none_of_its_processes():
    """`stop_ray` stops the autoscaler monitor before `ray.shutdown()` (which otherwise waits a
    second on it): every process the local Ray started is gone after it, the monitor included."""
    script = textwrap.dedent("""
        import json, ray
        from study.run import stop_ray

        def running(pid):  # a zombie (exited, not yet reaped) is not running
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
            except FileNotFoundError:
                return False

        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        pids = {kind: [info.process.pid for info in infos]
                for kind, infos in ray._private.worker._global_node.all_processes.items()}
        stop_ray()
        alive = [pid for kind in pids.values() for pid in kind if running(pid)]
        print(json.dumps({"pids": pids, "alive": alive, "initialized": ray.is_initialized()}))
    """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    stopped = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"monitor", "gcs_server", "raylet"} <= set(stopped["pids"])
    assert stopped["alive"] == [] and stopped["initialized"] is False


def test_a_python_without_the_runtime_packages_gets_one_line_and_nothing_written(tmp_path):
    """The launcher checks its plan before it imports Optuna, torch or Ray, so a Python that lacks
    them (not the project's environment) would otherwise fail half-way with a traceback."""
    hide = textwrap.dedent(f"""
        import runpy, sys
        sys.modules["optuna"] = None  # as if not installed: find_spec and import both fail
        sys.argv = ["study.run", "--dry-run", "--output-dir", {str(tmp_path / "out")!r}]
        runpy.run_module("study.run", run_name="__main__")
    """)
    done = subprocess.run([sys.executable, "-c", hide], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: optuna not installed in this Python"), done.stderr
    assert "pip install -e ." in lines[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()
