"""The Ray Tune wrapper around `train()`: datasets from the object store, checkpoint, restore, report.

The datasets are loaded once by the driver and handed to every trial through
`tune.with_parameters` (one object in Ray's object store, read zero-copy by each worker), so a
worker never needs the dataset files and trials never reload them.
"""

from __future__ import annotations

import os
import tempfile
import time

import ray
import torch
from ray import tune
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search.optuna import OptunaSearch

from .config import TrialConfig
from .data import DatasetArrays
from .train import train

STATE_FILE = "state.pt"
# At most this much of a trial's work is lost to an interruption (override: STUDY_CHECKPOINT_SECONDS).
CHECKPOINT_SECONDS = float(os.environ.get("STUDY_CHECKPOINT_SECONDS", "10"))


def run_trial(config: dict, datasets: dict[str, DatasetArrays]) -> None:
    trial_config = TrialConfig.from_dict(config)
    resume = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            resume = torch.load(os.path.join(directory, STATE_FILE), map_location="cpu", weights_only=False)

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

    train(trial_config, report, data=datasets[trial_config.dataset], resume=resume)


def make_trainable(datasets: dict[str, DatasetArrays], cpus: float, gpus: float):
    """`run_trial` with the datasets bound and the per-trial resources attached."""
    with_data = tune.with_parameters(run_trial, datasets=datasets)
    return tune.with_resources(with_data, {"cpu": cpus, "gpu": gpus})


def trial_dirname(trial) -> str:
    """Trial directories named by trial id alone: short paths, and the id is recoverable from a
    Result's path even for a trial that failed before reporting anything."""
    return trial.trial_id


class ResumableOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna only final values, not every epoch.

    Ray's OptunaSearch reports each epoch's metric to the Optuna trial: one SQLite write per
    result on the driver's event loop, for intermediate values nothing here uses (the pruner is
    Optuna's NopPruner; ASHA does early stopping; the curves are in MLflow). Skipping them also
    makes resume safe: a trial that ended after Tune last saved its state is COMPLETE in the
    Optuna DB but resumed by Tune, and its next intermediate report raised
    UpdateFinishedTrialError and failed the resumed study.
    """

    def on_trial_result(self, trial_id, result):
        pass


class CurriculumASHA(ASHAScheduler):
    """ASHA that never judges a trial before it has trained on original images (θ = 0 for `step`)."""

    def on_trial_result(self, tune_controller, trial, result):
        if not result.get("on_originals", 1):
            return TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)


class ProgressCallback(tune.Callback):
    """One line per finished trial: the study's progress without Ray's status tables."""

    def __init__(self, phase: str, total: int, metric: str):
        self.phase, self.total, self.metric = phase, total, metric
        self.done = 0
        self.best: tuple[float, str] | None = None

    def _line(self, trial, status: str) -> None:
        self.done += 1
        result, config = trial.last_result or {}, trial.config
        value = result.get(self.metric)
        if value is not None and status == "completed" and (self.best is None or value > self.best[0]):
            self.best = (value, config.get("method"))
        detail = TrialConfig.from_dict(config).describe()
        shown = (f"{self.metric} {value:.4f} test_acc {result.get('test_acc', float('nan')):.4f}"
                 if value is not None else "")
        best = f"best {self.best[0]:.4f} ({self.best[1]})" if self.best else ""
        print(f"[{self.phase}] {self.done}/{self.total} {status:<9} {detail:<58} {shown}  "
              f"{result.get('time_total_s', 0):.1f}s  {best}", flush=True)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._line(trial, (trial.last_result or {}).get("outcome", "stopped"))

    def on_trial_error(self, iteration, trials, trial, **info):
        self._line(trial, "failed")
