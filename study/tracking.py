"""MLflow, written from the driver only: a parent run per study, a child run per trial. MLflow only:
the Tune callback that calls it lives in `study.trainable`, plots in `analysis.plots`.

One writer per store, so a SQLite store never sees concurrent writers, and the same code logs to
a tracking server on a cluster. Child runs are found again by their `trial_id` tag, so a resumed
study re-attaches to them instead of duplicating them, and `reconcile` makes every trial's run
complete from Ray's own records even if the driver died between a result and its logging.
"""

from __future__ import annotations

import functools
import math
import os
from concurrent.futures import Future, ThreadPoolExecutor
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME

from trainer.config import TrialConfig, split_config

from .record import ENDED

# Keys Ray adds to every result: not metrics of the trial.
RAY_KEYS = {"timestamp", "time_this_iter_s", "time_total_s", "pid", "training_iteration",
            "time_since_restore", "iterations_since_restore", "done", "node_ip", "hostname",
            "date", "experiment_tag", "trial_id", "checkpoint_dir_name", "should_checkpoint",
            "config", "epoch"}


@functools.lru_cache(maxsize=None)
def code_version() -> str:
    if os.environ.get("STUDY_CODE_VERSION"):  # set by cluster/submit.sh: a Ray job's working dir has no .git
        return os.environ["STUDY_CODE_VERSION"]
    here = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version
        try:
            return f"curriculum-study=={version('curriculum-study')}"
        except PackageNotFoundError:  # code shipped as a Ray working dir, not installed
            return "unknown"


def numeric_metrics(result: dict) -> dict[str, float]:
    return {key: float(value) for key, value in result.items()
            if key not in RAY_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(float(value))}


def run_name(config: TrialConfig, tags: dict, result: dict | None = None) -> str:
    """What the run is at a glance: `search · sharpening K4 e1 box · s0`, `control · anti … ~sharpening`;
    once it has ended, with what it scored (`… · s0 · val 97.92 test 98.89`). The MLflow UI shows
    no metric column until one is picked, but always the run name: the link the study prints
    lands on a table that already says phase, method and accuracy."""
    matched = f" ~{tags['matched_to']}" if tags.get("matched_to") else ""
    name = f"{tags.get('phase', 'trial')} · {config.describe(compact=True)} · s{config.seed}{matched}"
    scores = [f"{label} {100 * result[key]:.2f}" for key, label in (("val_acc", "val"), ("test_acc", "test"))
              if isinstance((result or {}).get(key), (int, float)) and math.isfinite((result or {})[key])]
    return f"{name} · {' '.join(scores)}" if scores else name


class StudyTracker:
    """The study's experiment and parent run; makes child runs for trials."""

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, study: str):
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.study = study
        self._client = None

    def __getstate__(self):  # pickled into Ray's experiment state with the callbacks
        state = self.__dict__.copy()
        state["_client"] = None
        return state

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(self.tracking_uri)
        return self._client

    @classmethod
    def create(cls, tracking_uri: str, study: str, artifact_root: str | None, tags: dict,
               params: dict) -> "StudyTracker":
        client = MlflowClient(tracking_uri)
        experiment = client.get_experiment_by_name(study)
        if experiment is None:
            # Tagged as model training: MLflow 3's UI then opens it on its runs table, not on the
            # GenAI overview (traces, evaluations) it shows an experiment of unknown kind.
            experiment_id = client.create_experiment(study, artifact_location=artifact_root,
                                                     tags={"mlflow.experimentKind": "custom_model_development"})
        else:
            experiment_id = experiment.experiment_id
        run = client.create_run(experiment_id, run_name=study,
                                tags={"role": "parent", "study": study, **tags})
        client.log_batch(run.info.run_id, params=[Param(k, str(v)[:6000]) for k, v in params.items()])
        tracker = cls(tracking_uri, experiment_id, run.info.run_id, study)
        tracker._client = client
        return tracker

    # --- child runs --------------------------------------------------------------------
    def child_runs(self) -> dict[str, object]:
        """trial_id → run, for every child run of this study's parent."""
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{MLFLOW_PARENT_RUN_ID}` = '{self.parent_run_id}'",
            max_results=50000)
        return {run.data.tags["trial_id"]: run for run in runs if "trial_id" in run.data.tags}

    def create_child(self, trial_id: str, config: dict, run_tags: dict) -> str:
        """A child run tagged with what it is; its params are only the fields its method uses."""
        trial_config = TrialConfig.from_dict(config)
        tags = {MLFLOW_PARENT_RUN_ID: self.parent_run_id, "role": "trial", "study": self.study,
                "trial_id": trial_id, "method": trial_config.method, "method_role": trial_config.spec.role,
                "dataset": trial_config.dataset, "model": trial_config.model,
                "seed": str(trial_config.seed), "code_version": code_version(), "outcome": "running",
                **{k: str(v) for k, v in run_tags.items() if v != ""},
                MLFLOW_RUN_NAME: run_name(trial_config, run_tags)}
        run = self.client.create_run(self.experiment_id, tags=tags)
        self.client.log_batch(run.info.run_id, params=[Param(k, str(v))
                                                       for k, v in trial_config.used_values().items()])
        return run.info.run_id

    def forget_unfinished(self, unrecorded: Callable[[dict], set[str]] = lambda runs: set()) -> int:
        """Settle the child runs a dead driver left open. A run whose trial is trained again is
        deleted: one that never logged its outcome, and those `unrecorded` names (of the trial id →
        run map: runs the search's record does not hold, which it trains again under the same
        Optuna trial or slot). Any other run carries its outcome and is closed."""
        stale = 0
        runs = self.child_runs()
        again = unrecorded(runs)
        for trial_id, run in runs.items():
            outcome = run.data.tags.get("outcome")
            if outcome not in ENDED or trial_id in again:
                self.client.delete_run(run.info.run_id)
                stale += 1
            elif run.info.status == "RUNNING":
                self.client.set_terminated(run.info.run_id, "FAILED" if outcome == "failed" else "FINISHED")
        return stale

    def ended_slots(self, dataset: str, regime: str = "standard") -> dict[str, float | None]:
        """Slots of the re-runs (repeats, controls) of `dataset` in `regime` that have ended, each
        with its test accuracy (None where it did not complete: it scores chance), which auto seeds
        replay their looks from."""
        return {run.data.tags["slot"]: run.data.metrics.get("test_acc") if run.data.tags["outcome"] == "completed" else None
                for run in self.child_runs().values()
                if run.data.tags.get("dataset") == dataset and run.data.tags.get("regime", "standard") == regime
                and run.data.tags.get("slot") and run.data.tags.get("outcome") in ENDED}

    def log_result(self, run_id: str, result: dict) -> None:
        self.log_results(run_id, [result])

    def log_results(self, run_id: str, results: list[dict]) -> None:
        """Epoch results of one run in as few writes as MLflow allows: on SQLite each write is a
        commit, and the commits were most of the driver's MLflow time. The tags (the outcome)
        go with the last write, so a run carries its outcome only once all its metrics are in."""
        now = int(time.time() * 1000)
        batches, tags = [[]], {}
        for result in results:
            step = int(result["epoch"])
            # An epoch's "epoch" metric comes last and a batch ends only between epochs (or inside
            # one too big for a batch): a resumed study trusts that metric as "logged up to here".
            metrics = [Metric(key, value, now, step) for key, value in numeric_metrics(result).items()]
            metrics.append(Metric("epoch", float(step), now, step))
            if len(batches[-1]) + len(metrics) > 900:  # MLflow takes at most 1000 metrics per batch
                batches.append([])
            for start in range(0, len(metrics), 900):
                batches[-1] += metrics[start:start + 900]
                if start + 900 < len(metrics):
                    batches.append([])
            tags.update({key: str(result[key]) for key in ("outcome", "node_ip", "hostname", "node_id")
                         if key in result})
        batches = [batch for batch in batches if batch]
        for index, batch in enumerate(batches):
            self.client.log_batch(run_id, metrics=batch,
                                  tags=[RunTag(k, v) for k, v in tags.items()] if index == len(batches) - 1 else [])

    def finish_child(self, run_id: str, outcome: str, error: str | None = None, config: dict | None = None,
                     result: dict | None = None) -> None:
        """End a trial's run with its outcome (and error); with its Tune config and last result, its
        name gains what it scored."""
        if error:
            self.client.set_tag(run_id, "error", error[-5000:])
        if config is not None and result and "outcome" in result:
            trial_config, tags = split_config(config)
            self.client.set_tag(run_id, MLFLOW_RUN_NAME, run_name(TrialConfig.from_dict(trial_config), tags, result))
        self.client.set_tag(run_id, "outcome", outcome)
        self.client.set_terminated(run_id, "FAILED" if outcome == "failed" else "FINISHED")

    def reconcile(self, result_grid) -> None:
        """Make every trial Ray knows of have exactly one child run holding all it reported.

        Per-epoch results the driver never logged (it died between a result and its logging) are
        logged from Ray's own records, and ended trials get their final status.
        """
        flush_writes()  # the callback's queued writes land first
        runs = self.child_runs()
        for result in result_grid:
            trial_id = _trial_id(result)
            run = runs.get(trial_id)
            ended = result.error is not None or "outcome" in (result.metrics or {})
            if run is None and (not result.config or not (result.metrics or ended)):
                continue  # never started: nothing to record yet
            if run is None:
                config, tags = split_config(result.config)
                run_id = self.create_child(trial_id, config, tags)
            else:
                run_id = run.info.run_id
            logged = int(run.data.metrics.get("epoch", 0)) if run else 0
            history = result.metrics_dataframe
            if history is not None and len(history):
                missing = [{k: v for k, v in row.items() if v == v} for row in history.to_dict("records")
                           if "epoch" in row and row["epoch"] == row["epoch"] and int(row["epoch"]) > logged]
                if missing:
                    self.log_results(run_id, missing)
            if ended and (run is None or run.info.status == "RUNNING"):
                if result.error is not None:
                    self.finish_child(run_id, "failed", str(result.error))
                else:
                    self.finish_child(run_id, (result.metrics or {}).get("outcome", "stopped"), None,
                                      result.config, result.metrics)

    def finish_parent(self, metrics: dict[str, float], status: str = "FINISHED") -> None:
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, 0) for k, v in metrics.items() if v == v]
        for start in range(0, len(batch), 900):
            self.client.log_batch(self.parent_run_id, metrics=batch[start:start + 900])
        self.client.set_terminated(self.parent_run_id, status)

    def set_parent_tag(self, key: str, value) -> None:
        self.client.set_tag(self.parent_run_id, key, str(value))

    def log_artifact_text(self, text: str, name: str) -> None:
        self.client.log_text(self.parent_run_id, text, name)

    def log_artifact_file(self, path: Path, folder: str | None = None) -> None:
        self.client.log_artifact(self.parent_run_id, str(path), folder)


def _trial_id(result) -> str:
    # Trial directories are named by trial id (study.trainable.trial_dirname).
    return (result.metrics or {}).get("trial_id") or os.path.basename(str(result.path).rstrip("/"))


# One background writer thread per driver process: MLflow writes (tens of ms each on SQLite)
# leave Tune's event loop, stay in order, and a store still sees a single writer.
_writer: ThreadPoolExecutor | None = None


def in_background(function, *args) -> Future:
    global _writer
    if _writer is None:
        _writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-writer")

    def guarded():
        try:
            return function(*args)
        except Exception as error:  # a lost write is repaired by StudyTracker.reconcile
            print(f"warning: MLflow write failed ({type(error).__name__}: {error})", flush=True)
            raise

    return _writer.submit(guarded)


def flush_writes() -> None:
    """Wait until every queued MLflow write is done."""
    if _writer is not None:
        _writer.submit(lambda: None).result()


__all__ = ["StudyTracker", "code_version", "flush_writes", "in_background",
           "run_name"]
