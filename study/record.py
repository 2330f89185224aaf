"""The study record: the one contract between the launcher (`study.run`) and the analysis.

A study writes `<output-dir>/studies/<name>.json` — every value it resolved (space, settings,
seed, store URIs, resources), what it has done (its runs' start and last heartbeat, the config
each method's search chose) and where its MLflow parent run is. A resumed study reads it back
whatever the flags say; `python -m analysis.report` reads it to find the study's store and run.
This module knows the output directory's layout, the record's fields, the study key, the
outcome words a trial's run ends with, and whether a tracking URI can be used; it imports nothing else of the project, so both sides can
import it and neither imports the other.

Layout of an output directory:

    studies/<name>.json      this record (written atomically: a killed study leaves the last whole one)
    studies/<name>-*.png     figures the study logs as artifacts
    mlflow.db                the default MLflow store (sqlite), unless --tracking-uri says otherwise
    mlartifacts/             that store's artifacts
    optuna.db                the Optuna storage of every search of every study in the directory
    ray/<name>/              Ray Tune's results, unless --storage-path says otherwise
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import socket
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

STANDARD = "standard"  # the default regime; a run or key without a regime is in it
ENDED = ("completed", "diverged", "failed", "stopped")  # outcome tags of a trial that will not train again
SAMPLERS = ("random", "tpe")  # the search's samplers (the parent run's param `sampler`)
TPE_STARTUP = 10  # Optuna's TPESampler n_startup_trials: its first 10 trials of a study are random draws


def study_key(dataset: str, regime: Optional[str] = None) -> str:
    """What a (dataset, regime) comparison is called in records, metrics, tags and Optuna study
    names: the dataset for the standard regime (or none), else "<dataset>-<regime>". Dataset names
    never contain '-' (checked in the trial config's table), so `split_key` needs no guessing."""
    if not isinstance(regime, str) or regime in ("", STANDARD):
        return str(dataset)
    return f"{dataset}-{regime}"


def split_key(key: str) -> tuple[str, str]:
    """(dataset, regime) of a study key: the inverse of `study_key`."""
    dataset, _, regime = key.partition("-")
    return dataset, regime or STANDARD


# Database backends MLflow's SQLAlchemy store accepts (besides sqlite), e.g. postgresql+psycopg2://.
DATABASE_SCHEMES = ("postgresql", "mysql", "mssql", "databricks")


class TrackingError(RuntimeError):
    """The tracking store cannot be reached or used."""


def check_tracking_uri(uri: str, timeout: float = 5.0) -> None:
    """Fail fast (seconds, not MLflow's minutes of retries) if the store cannot be reached."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme in ("http", "https"):
        # /health alone is not enough: a server that refuses this Host header (MLflow's
        # allowed-hosts check) answers /health but 403 on every API call.
        headers = {}
        from mlflow.utils.credentials import read_mlflow_creds

        username, password = read_mlflow_creds()  # MLFLOW_TRACKING_USERNAME/PASSWORD or ~/.mlflow/credentials
        if username and password:  # a server with basic auth (cluster/mlflow-server.sh off loopback)
            headers["Authorization"] = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        try:
            for path in ("/health", "/api/2.0/mlflow/experiments/search?max_results=1"):
                request = urllib.request.Request(uri.rstrip("/") + path, headers=headers)
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    if response.status != 200:
                        raise TrackingError(f"tracking URI {uri} answered {response.status} on {path}")
        except urllib.error.HTTPError as error:
            if error.code == 401:
                raise TrackingError(f"tracking URI {uri} needs credentials ({'refused' if headers else 'none given'}); "
                                    f"set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD") from None
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
    elif parsed.scheme.split("+")[0] not in DATABASE_SCHEMES:
        raise TrackingError(f"tracking URI {uri}: unknown scheme {parsed.scheme!r}; use http(s)://HOST:PORT, "
                            f"sqlite:///<absolute path>.db or a database URI ({', '.join(DATABASE_SCHEMES)})")


def records_dir(output_dir: Path) -> Path:
    return Path(output_dir) / "studies"


def record_path(output_dir: Path, name: str) -> Path:
    return records_dir(output_dir) / f"{name}.json"


def default_tracking_uri(output_dir: Path) -> str:
    """The MLflow store of a study that names none: SQLite, by absolute path (Ray trials change
    their working directory)."""
    return f"sqlite:///{(Path(output_dir) / 'mlflow.db').resolve()}"


def optuna_storage(output_dir: Path) -> str:
    return f"sqlite:///{Path(output_dir) / 'optuna.db'}"


def latest(output_dir: Path) -> Optional[str]:
    """The name of the most recently written study record in an output directory, or None."""
    records = sorted(records_dir(output_dir).glob("*.json"), key=lambda p: p.stat().st_mtime)
    return records[-1].stem if records else None


def runs_page(experiment_id: str) -> str:
    """The MLflow UI page of a study's runs, sorted by run name (the UI's own key for it): every trial is
    a row of its own, grouped by phase and method (`repeat · sharpening K4 e1 box · s3 · val … test …`).
    `workflowType=machine_learning` opens MLflow 3's UI in its model-training mode (runs, models)
    instead of its default GenAI mode (traces, an overview of token usage)."""
    return (f"#/experiments/{experiment_id}/runs?workflowType=machine_learning"
            f"&orderByKey=tags.%60mlflow.runName%60&orderByAsc=true")


class RecordError(ValueError):
    """A study record that cannot be read back; the message names the file and what is wrong."""


@dataclass
class StudyRecord:
    """Everything a study resolved, recorded once, and what it has done so far."""
    name: str  # the study's name: its MLflow experiment, its Optuna studies' prefix, this file's name
    space: str  # the space as given (`smoke`, or a path to a .py file)
    space_source: str  # the space module's file, logged as an artifact
    settings: dict  # the space's SpaceSettings, as resolved with the flags (search_spaces.common)
    created: str  # ISO time the study was created
    seed: int  # sampler seed and the search trials' seed; re-runs use seed+1..
    data_dir: str  # torchvision datasets directory (absolute)
    tracking_uri: str  # the MLflow store
    storage_path: str  # Ray Tune's results (a path or a URI)
    asha: bool  # early stopping with ASHA
    cpus_per_trial: float
    gpus_per_trial: Union[float, str]  # a number, or "auto" (the space's per-model fraction where there are GPUs)
    max_concurrent: Optional[int]
    max_failures: int
    sampler: str = "tpe"  # the search's sampler: "random" (common random numbers) or "tpe"; records written before it existed ran TPE
    best: dict = field(default_factory=dict)  # study key (+ "/r<R>" for replicate R ≥ 1) → method → the chosen search trial, its config, the selection
    experiment_id: Optional[str] = None  # the MLflow experiment, once created
    parent_run_id: Optional[str] = None  # the study's MLflow parent run, once created
    attempts: list = field(default_factory=list)  # one {"started", "last"} (epoch seconds) per run of the study
    finished: Optional[str] = None  # ISO time the study finished

    # --- the file ---------------------------------------------------------------------------
    @classmethod
    def load(cls, path: Path) -> "StudyRecord":
        """A record read back. A file that is not a whole record — not JSON, a field missing, a
        field this version does not know (a record of newer code would be silently misread) — is
        a `RecordError` naming the file and what is wrong."""
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise RecordError(f"study record {path} cannot be read ({error})") from None
        if not isinstance(data, dict):
            raise RecordError(f"study record {path} is not a JSON object")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(fields))
        missing = [n for n, f in fields.items() if n not in data and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        if unknown or missing:
            what = "; ".join(part for part in (f"unknown field(s) {', '.join(unknown)}" if unknown else "",
                                                f"missing field(s) {', '.join(missing)}" if missing else "") if part)
            raise RecordError(f"study record {path}: {what}; it was not written by this version of study.run")
        return cls(**data)

    @classmethod
    def read(cls, output_dir: Path, name: str) -> Optional["StudyRecord"]:
        """The record of study `name` in `output_dir`, or None if there is none."""
        path = record_path(output_dir, name)
        return cls.load(path) if path.is_file() else None

    def save(self, output_dir: Path) -> Path:
        """Write the record atomically (a temporary file renamed over the old one)."""
        path = record_path(output_dir, self.name)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2, default=str))
        os.replace(tmp, path)
        return path

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    # --- what the record says ----------------------------------------------------------------
    @property
    def resumed(self) -> bool:
        """The study has run before (a resume)."""
        return bool(self.attempts)

    def seconds(self) -> float:
        """Total study time over every run of the study (a killed run counts up to its last heartbeat)."""
        return sum(a["last"] - a["started"] for a in self.attempts)


__all__ = ["ENDED", "STANDARD", "RecordError", "StudyRecord", "TrackingError", "check_tracking_uri", "default_tracking_uri", "latest", "optuna_storage",
           "record_path", "records_dir", "runs_page", "split_key", "study_key"]
