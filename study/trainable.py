"""The Ray Tune side of a trial: the trainable around `train()` (datasets from the object store,
checkpoint, restore, report), the curriculum-aware ASHA, and the driver's callbacks (progress
lines; MLflow child runs through `study.tracking`).

The datasets, and their corrupted test sets, are loaded once by the driver and handed to every
trial through `tune.with_parameters` (one object in Ray's object store, read zero-copy by each
worker), so a worker never needs the dataset files and trials never reload or rebuild them.
"""

from __future__ import annotations

import os
import sys
import tempfile
import threading
import time
from concurrent.futures import Future
from typing import TYPE_CHECKING

import ray
import torch
from ray import tune
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from trainer.config import TrialConfig, split_config
from trainer.data import DatasetArrays
from trainer.train import train

if TYPE_CHECKING:  # MLflow is the driver's alone: a trial's worker never imports it (~1.8 s of every actor start)
    from .tracking import StudyTracker

STATE_FILE = "state.pt"
# At most this much of a trial's work is lost to an interruption (override: STUDY_CHECKPOINT_SECONDS).
CHECKPOINT_SECONDS = float(os.environ.get("STUDY_CHECKPOINT_SECONDS", "10"))


def gpu_warning(gpu_ids: list, device: str, cuda_available: bool) -> str | None:
    """The line a trial logs when Ray gave it GPUs that torch cannot use. With device `auto` it would
    train on the CPU without a word, e.g. when the image's torch CUDA build needs a newer NVIDIA
    driver than the node has (cluster/Dockerfile's TORCH_CUDA); `cuda` fails in `train` instead."""
    if not gpu_ids or cuda_available or device != "auto":
        return None
    return (f"warning: Ray gave this trial GPU {','.join(map(str, gpu_ids))} but torch {torch.__version__} "
            f"(CUDA build {torch.version.cuda or 'none'}) finds no usable CUDA device, so it trains on the CPU; "
            f"check the node's NVIDIA driver against the image's torch CUDA build (cluster/Dockerfile, TORCH_CUDA)")


def run_trial(config: dict, datasets: dict[str, DatasetArrays], corrupted: dict | None = None) -> None:
    trial_config = TrialConfig.from_dict(split_config(config)[0])
    warning = gpu_warning(ray.get_gpu_ids(), trial_config.device, torch.cuda.is_available())
    if warning:  # the trial's log: the dashboard's Actors page, or worker-*.err in the node's Ray logs
        print(warning, file=sys.stderr, flush=True)
    resume = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            resume = torch.load(os.path.join(directory, STATE_FILE), map_location="cpu", weights_only=True)

    node_id = ray.get_runtime_context().get_node_id()  # tagged on the trial's MLflow run

    last_checkpoint = time.monotonic()

    def report(metrics: dict, state) -> None:
        # Checkpoint when CHECKPOINT_SECONDS of work would otherwise be lost, not every epoch:
        # a digits epoch takes ~0.1 s and a checkpoint costs more than that. The last epoch needs
        # none: the trial is over.
        nonlocal last_checkpoint
        metrics = {**metrics, "node_id": node_id}
        if "outcome" in metrics or time.monotonic() - last_checkpoint < CHECKPOINT_SECONDS:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory() as directory:
            torch.save(state(), os.path.join(directory, STATE_FILE))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        last_checkpoint = time.monotonic()

    train(trial_config, report, data=datasets[trial_config.dataset], resume=resume,
          corrupted=(corrupted or {}).get(trial_config.dataset))


def make_trainable(datasets: dict[str, DatasetArrays], cpus: float, gpus: float, corrupted: dict | None = None):
    """`run_trial` with the datasets (and their corrupted test sets) bound and the per-trial
    resources attached."""
    with_data = tune.with_parameters(run_trial, datasets=datasets, corrupted=corrupted or {})
    return tune.with_resources(with_data, {"cpu": cpus, "gpu": gpus})


def trial_dirname(trial) -> str:
    """Trial directories named by trial id alone: short paths, and the id is recoverable from a
    Result's path even for a trial that failed before reporting anything."""
    return trial.trial_id


class CurriculumASHA(ASHAScheduler):
    """ASHA that judges a trial only in its final regime (originals, θ = 0, σ = 0).

    `run.py` sets the grace period past the space's longest curriculum, so every rung compares
    trials at the same epoch, all in their final regimes; this guard keeps that true for a
    scheduler built with a shorter grace period.
    """

    def on_trial_result(self, tune_controller, trial, result):
        # Only the search is early-stopped: a re-run (repeat, control) is a measurement, always whole.
        if split_config(trial.config)[1].get("phase") != "search" or not result.get("in_final_regime", 1):
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)


class ProgressCallback(tune.Callback):
    """One line per ended trial, counted per stage (k/N continues across resumes)."""

    def __init__(self, dataset: str, totals: dict[str, int], done: dict[str, int], metric: str,
                 on_progress=lambda: None):
        self.dataset, self.totals, self.done, self.metric = dataset, totals, dict(done), metric
        self.on_progress = on_progress  # e.g. the study's heartbeat: how long a killed run had lived
        self.best: tuple[float, str] | None = None

    def _line(self, trial, status: str) -> None:
        config, tags = split_config(trial.config)
        stage = {"search": "search", "select": "selection"}.get(tags.get("phase"), "re-runs")
        self.done[stage] = self.done.get(stage, 0) + 1
        result = trial.last_result or {}
        value = result.get(self.metric)
        if stage == "search" and value is not None and status == "completed" and (
                self.best is None or value > self.best[0]):
            self.best = (value, config.get("method"))
        detail = TrialConfig.from_dict(config).describe(compact=True) + f" · s{config.get('seed')}"
        if tags.get("matched_to"):
            detail += f" ~{tags['matched_to']}"
        shown = (f"{self.metric} {value:.4f} test_acc {result.get('test_acc', float('nan')):.4f}"
                 if value is not None else "")
        best = f"best {self.best[0]:.4f} ({self.best[1]})" if self.best else ""
        print(f"[{self.dataset} {stage} {self.done[stage]}/{self.totals.get(stage, '?')}] {status:<9} "
              f"{detail:<44} {shown}  {result.get('time_total_s', 0):.1f}s  {best}", flush=True)
        self.on_progress()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._line(trial, (trial.last_result or {}).get("outcome", "stopped"))

    def on_trial_error(self, iteration, trials, trial, **info):
        self._line(trial, "failed")


def _tracking():
    """`study.tracking`, imported when the driver's callbacks first write (see the import above)."""
    from . import tracking

    return tracking


def _done(value) -> Future:
    future = Future()
    future.set_result(value)
    return future


class MlflowTrialCallback(tune.Callback):
    """Logs every trial as a child run of the study's parent, from the driver (one writer).

    Writes go through `tracking`'s background writer, off Tune's event loop. A trial's epochs go
    out together: at most one write per WRITE_SECONDS while it trains (an epoch longer than that is
    written as it arrives), and whatever is queued at its end, with its last result (the outcome).
    Each write is an SQLite commit, and on 1-second smoke trials writing every epoch kept the
    driver's writer busy for seconds beside trials that shared its 2 cores. A trial keeps one run:
    runs already in the store (a resumed study) are found by trial id, and epochs already logged
    are not logged again.
    """

    WRITE_SECONDS = 2.0

    def __init__(self, tracker: StudyTracker):
        self.tracker = tracker
        self._runs: dict[str, Future] = {}  # trial id → future run id
        self._logged: dict[str, int] = {}
        self._unwritten: dict[str, list[dict]] = {}  # trial id → results queued for its next write
        self._pending: set[str] = set()  # trial ids with a write submitted that has not yet taken its queue
        self._written_at: dict[str, float] = {}  # trial id → when its run was made or last written

    def setup(self, **info):
        # Made here, not in __init__: the Tuner pickles its callbacks when it is built, and a lock
        # does not pickle.
        self._lock = threading.Lock()
        for trial_id, run in self.tracker.child_runs().items():
            self._runs[trial_id] = _done(run.info.run_id)
            self._logged[trial_id] = int(run.data.metrics.get("epoch", 0))

    def _run(self, trial) -> Future:
        if trial.trial_id not in self._runs:
            config, tags = split_config(trial.config)
            self._runs[trial.trial_id] = _tracking().in_background(self.tracker.create_child, trial.trial_id,
                                                                   config, tags)
            self._logged[trial.trial_id] = 0
            self._written_at[trial.trial_id] = time.monotonic()
        return self._runs[trial.trial_id]

    def on_trial_start(self, iteration, trials, trial, **info):
        self._run(trial)

    def run_id(self, trial_id: str) -> str | None:
        """The MLflow run id of a trial this callback has seen (waits for its creation)."""
        future = self._runs.get(trial_id)
        try:
            return future.result() if future is not None else None
        except Exception:  # its creation failed; reconcile makes the run later
            return None

    def settle(self, trial_id: str, failed: bool = False) -> str | None:
        """Called by the searcher before it records a trial as ended: returns once the trial's run
        holds every result queued so far (its last one carries its outcome) and, where the trial
        failed, the outcome "failed" (Tune tells the searcher of an error before the callbacks).
        Returns the run's id (None where its creation failed; reconcile makes it later)."""
        self._write_queued(trial_id)
        run_id = self.run_id(trial_id)
        if failed and run_id:
            _tracking().in_background(self.tracker.client.set_tag, run_id, "outcome", "failed")
        _tracking().flush_writes()
        return run_id

    def on_trial_result(self, iteration, trials, trial, result, **info):
        run = self._run(trial)
        epoch = int(result.get("epoch", 0))
        if epoch <= self._logged.get(trial.trial_id, 0):
            return  # already logged before an interruption: nothing is logged twice
        self._logged[trial.trial_id] = epoch
        with self._lock:
            self._unwritten.setdefault(trial.trial_id, []).append(result)
        due = time.monotonic() - self._written_at.get(trial.trial_id, 0.0) >= self.WRITE_SECONDS
        if due or "outcome" in result:
            self._write_queued(trial.trial_id, run)

    def _write_queued(self, trial_id: str, run: Future | None = None) -> None:
        """Submit a write of the trial's queued results, unless one already waits to take them."""
        with self._lock:
            submit = bool(self._unwritten.get(trial_id)) and trial_id not in self._pending
            if submit:
                self._pending.add(trial_id)
        if submit:
            _tracking().in_background(self._write_results, trial_id, run or self._runs[trial_id])

    def _write_results(self, trial_id: str, run: Future) -> None:
        with self._lock:
            results = self._unwritten.pop(trial_id, [])
            self._pending.discard(trial_id)
            self._written_at[trial_id] = time.monotonic()
        if results:
            self.tracker.log_results(run.result(), results)

    def on_trial_complete(self, iteration, trials, trial, **info):
        run = self._run(trial)
        self._write_queued(trial.trial_id, run)  # an ASHA-stopped trial's last epochs
        # Errors go to on_trial_error; a trial that ends without an outcome was stopped by ASHA.
        outcome = (trial.last_result or {}).get("outcome", "stopped")
        _tracking().in_background(lambda: self.tracker.finish_child(run.result(), outcome, None, trial.config,
                                                                   trial.last_result))

    def on_trial_error(self, iteration, trials, trial, **info):
        run = self._run(trial)
        self._write_queued(trial.trial_id, run)
        error = None
        path = trial.error_file  # written on the driver just before this call
        if path and os.path.exists(path):
            with open(path) as handle:
                error = handle.read()
        _tracking().in_background(lambda: self.tracker.finish_child(run.result(), "failed", error))

    def on_experiment_end(self, trials, **info):
        for trial_id in list(self._unwritten):
            self._write_queued(trial_id)
        _tracking().flush_writes()
