"""MLflow, written from the driver only: a parent run per study, a child run per trial.

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
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from ray import tune

from .config import TrialConfig

# Keys Ray adds to every result: not metrics of the trial.
RAY_KEYS = {"timestamp", "time_this_iter_s", "time_total_s", "pid", "training_iteration",
            "time_since_restore", "iterations_since_restore", "done", "node_ip", "hostname",
            "date", "experiment_tag", "trial_id", "checkpoint_dir_name", "should_checkpoint",
            "config", "epoch"}


class TrackingError(RuntimeError):
    """The tracking store cannot be reached or used."""


def default_tracking_uri(output_dir: Path) -> str:
    return f"sqlite:///{(output_dir / 'mlflow.db').resolve()}"


def check_tracking_uri(uri: str, timeout: float = 5.0) -> None:
    """Fail fast (seconds, not MLflow's minutes of retries) if the store cannot be reached."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in ("http", "https"):
        # /health alone is not enough: a server that refuses this Host header (MLflow's
        # allowed-hosts check) answers /health but 403 on every API call.
        try:
            for path in ("/health", "/api/2.0/mlflow/experiments/search?max_results=1"):
                with urllib.request.urlopen(uri.rstrip("/") + path, timeout=timeout) as response:
                    if response.status != 200:
                        raise TrackingError(f"tracking URI {uri} answered {response.status} on {path}")
        except urllib.error.HTTPError as error:
            raise TrackingError(f"tracking URI {uri} refused the API ({error.code} {error.reason}); "
                                f"check the server's --allowed-hosts / MLFLOW_ALLOWED_HOSTS") from None
        except (urllib.error.URLError, OSError, socket.timeout) as error:
            raise TrackingError(f"tracking URI {uri} is unreachable ({getattr(error, 'reason', error)}); "
                                f"start the server or pass another --tracking-uri") from None
    elif parsed.scheme == "sqlite":
        path = Path(uri[len("sqlite:///"):])
        if not path.parent.exists() and not path.parent.parent.exists():
            raise TrackingError(f"tracking URI {uri}: directory {path.parent} does not exist")
    elif parsed.scheme in ("", "file"):
        raise TrackingError(f"tracking URI {uri}: MLflow 3 refuses file stores; use sqlite:///<absolute path>.db "
                            f"or an http(s) tracking server")


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


def trial_params(config: dict) -> dict[str, str]:
    trial_config = TrialConfig.from_dict(config)
    params = {key: str(value) for key, value in trial_config.to_dict().items()}
    params["theta_schedule"] = trial_config.resolved_theta_schedule
    params["anneal_epochs"] = str(trial_config.resolved_anneal_epochs)
    return params


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
            experiment_id = client.create_experiment(study, artifact_location=artifact_root)
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

    def create_child(self, trial_id: str, config: dict, phase: str) -> str:
        trial_config = TrialConfig.from_dict(config)
        tags = {MLFLOW_PARENT_RUN_ID: self.parent_run_id, "role": "trial", "study": self.study,
                "trial_id": trial_id, "phase": phase, "method": trial_config.method,
                "dataset": trial_config.dataset, "model": trial_config.model,
                "seed": str(trial_config.seed), "code_version": code_version(), "outcome": "running",
                MLFLOW_RUN_NAME: f"{phase}-{trial_config.method}-{trial_id}"}
        run = self.client.create_run(self.experiment_id, tags=tags)
        self.client.log_batch(run.info.run_id,
                              params=[Param(k, v) for k, v in trial_params(config).items()])
        return run.info.run_id

    def log_result(self, run_id: str, result: dict) -> None:
        step = int(result["epoch"])
        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, step) for key, value in numeric_metrics(result).items()]
        metrics.append(Metric("epoch", float(step), now, step))
        tags = [RunTag("outcome", result["outcome"])] if "outcome" in result else []
        for key in ("node_ip", "hostname", "node_id"):
            if key in result:
                tags.append(RunTag(key, str(result[key])))
        for start in range(0, len(metrics), 900):  # MLflow takes at most 1000 metrics per batch
            self.client.log_batch(run_id, metrics=metrics[start:start + 900],
                                  tags=tags if start == 0 else [])

    def finish_child(self, run_id: str, outcome: str, error: str | None = None) -> None:
        if error:
            self.client.set_tag(run_id, "error", error[-5000:])
        self.client.set_tag(run_id, "outcome", outcome)
        self.client.set_terminated(run_id, "FAILED" if outcome == "failed" else "FINISHED")

    def reconcile(self, result_grid, phase: str, dataset: str, complete: bool) -> None:
        """Make every trial Ray knows of have exactly one child run holding all it reported.

        Per-epoch results the driver never logged (it died between a result and its logging) are
        logged from Ray's own records, and ended trials get their final status. Only when the
        phase is `complete`: runs of this phase whose trial is not in Ray's results belong to
        trials Ray lost with an interrupted driver before its experiment state was saved (Ray
        started them afresh under new ids), and are deleted.
        """
        flush_writes()  # the callback's queued writes land first
        runs = self.child_runs()
        if complete:
            trial_ids = {_trial_id(r) for r in result_grid}
            for trial_id, run in runs.items():
                tags = run.data.tags
                if tags.get("phase") == phase and tags.get("dataset") == dataset and trial_id not in trial_ids:
                    self.client.delete_run(run.info.run_id)
        for result in result_grid:
            trial_id = _trial_id(result)
            run = runs.get(trial_id)
            ended = complete or result.error is not None or "outcome" in (result.metrics or {})
            if run is None and (not result.config or not (result.metrics or ended)):
                continue  # never started: nothing to record yet
            run_id = run.info.run_id if run else self.create_child(trial_id, result.config, phase)
            logged = int(run.data.metrics.get("epoch", 0)) if run else 0
            history = result.metrics_dataframe
            if history is not None and len(history):
                for row in history.to_dict("records"):
                    if "epoch" in row and row["epoch"] == row["epoch"] and int(row["epoch"]) > logged:
                        self.log_result(run_id, {k: v for k, v in row.items() if v == v})
            if ended and (run is None or run.info.status == "RUNNING"):
                if result.error is not None:
                    self.finish_child(run_id, "failed", str(result.error))
                else:  # no outcome: ASHA stopped it before its last epoch
                    self.finish_child(run_id, (result.metrics or {}).get("outcome", "stopped"))

    def finish_parent(self, metrics: dict[str, float], status: str = "FINISHED") -> None:
        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, 0) for k, v in metrics.items() if v == v]
        for start in range(0, len(batch), 900):
            self.client.log_batch(self.parent_run_id, metrics=batch[start:start + 900])
        self.client.set_terminated(self.parent_run_id, status)

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


def _in_background(function, *args) -> Future:
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


def _done(value) -> Future:
    future = Future()
    future.set_result(value)
    return future


class MlflowTrialCallback(tune.Callback):
    """Logs every trial of one phase as a child run of the study's parent, from the driver."""

    def __init__(self, tracker: StudyTracker, phase: str):
        self.tracker = tracker
        self.phase = phase
        self._runs: dict[str, Future] = {}  # trial id → future run id
        self._logged: dict[str, int] = {}

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_runs"], state["_logged"] = {}, {}
        return state

    def setup(self, **info):
        for trial_id, run in self.tracker.child_runs().items():
            self._runs[trial_id] = _done(run.info.run_id)
            self._logged[trial_id] = int(run.data.metrics.get("epoch", 0))

    def _run(self, trial) -> Future:
        if trial.trial_id not in self._runs:
            self._runs[trial.trial_id] = _in_background(
                self.tracker.create_child, trial.trial_id, dict(trial.config), self.phase)
            self._logged[trial.trial_id] = 0
        return self._runs[trial.trial_id]

    def on_trial_start(self, iteration, trials, trial, **info):
        self._run(trial)

    def on_trial_result(self, iteration, trials, trial, result, **info):
        run = self._run(trial)
        epoch = int(result.get("epoch", 0))
        if epoch <= self._logged.get(trial.trial_id, 0):
            return  # already logged before an interruption; a resumed trial repeats nothing twice
        _in_background(lambda: self.tracker.log_result(run.result(), result))
        self._logged[trial.trial_id] = epoch

    def on_trial_complete(self, iteration, trials, trial, **info):
        run = self._run(trial)
        # Errors go to on_trial_error; a trial that ends without an outcome was stopped by ASHA.
        outcome = (trial.last_result or {}).get("outcome", "stopped")
        _in_background(lambda: self.tracker.finish_child(run.result(), outcome))

    def on_trial_error(self, iteration, trials, trial, **info):
        run = self._run(trial)
        error = None
        path = trial.error_file  # written on the driver just before this call
        if path and os.path.exists(path):
            with open(path) as handle:
                error = handle.read()
        _in_background(lambda: self.tracker.finish_child(run.result(), "failed", error))

    def on_experiment_end(self, trials, **info):
        flush_writes()


def kernel_grid_png(images_by_dataset: dict, path: Path, levels: int = 4) -> Path:
    """A PNG grid: one row per kernel, one column per level, for one sample image per dataset."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    from .blur import KERNELS, blur, max_level

    rows = [(name, kernel) for name in images_by_dataset for kernel in KERNELS]
    fig, axes = plt.subplots(len(rows), levels, figsize=(1.6 * levels, 1.6 * len(rows)), squeeze=False)
    for row, (name, kernel) in enumerate(rows):
        image = torch.as_tensor(images_by_dataset[name], dtype=torch.float32)[None]
        top = max_level(*image.shape[-2:])
        for column in range(levels):
            axis = axes[row][column]
            axis.axis("off")
            level = column + 1
            if level > top:
                continue
            shown = blur(image, kernel, level)[0].permute(1, 2, 0).numpy()
            shown = (shown - shown.min()) / max(1e-8, shown.max() - shown.min())
            axis.imshow(shown.squeeze(), cmap="gray" if shown.shape[-1] == 1 else None)
            axis.set_title(f"{name} {kernel} L{level}", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


__all__ = ["StudyTracker", "MlflowTrialCallback", "TrackingError", "check_tracking_uri",
           "default_tracking_uri", "code_version", "kernel_grid_png", "flush_writes"]
