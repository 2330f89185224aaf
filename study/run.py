"""`python -m study.run`: the study — an equal Optuna search per method, then matched re-runs — on Ray Tune.

With no flags it runs the `smoke` space on the embedded default: a local Ray, an SQLite MLflow
store and an Optuna SQLite file under ./runs, scikit-learn's digits. The steps, as `main` runs
them: resolve and check every value (space, budget, counts, paths, tracking URI, data; then,
after Ray starts, the resources asked for) before anything is written; open the study's records;
per dataset, the search and the re-runs in one Tune run (`study.search`); summarise. `--resume`
continues a killed study from its Optuna storage and MLflow runs: finished trials are kept, a
trial lost with the driver is trained again under the same Optuna trial, and every trial keeps
exactly one MLflow child run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import json
import math
import os
import re
import socket
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from search_spaces import Regime, SpaceError, SpaceSettings, bind_space, load_space
from study.config import (DATASETS, KERNELS, METHOD_TABLE, METHODS, SEARCHED, ConfigError, TrialConfig,
                          method_order)
from study.data import DataError, load_arrays
from study.search import plan_reruns
from study.train import OneLineParser
from study.tracking import runs_page


class StudyError(RuntimeError):
    """Bad input to the study: printed as one line, exit status 2."""


# ---------------------------------------------------------------------------------------------
# Command line

def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m study.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--space", default=None, help="search space: a module in search_spaces/ or a .py file "
                   "(default: smoke, or the resumed study's space)")
    p.add_argument("--name", default=None, help="study name = MLflow experiment (default: <space>-<time>; "
                   "with --resume: the latest study in --output-dir)")
    p.add_argument("--output-dir", default="runs", help="study records, MLflow SQLite store, Optuna DB, Ray results (default: runs)")
    p.add_argument("--storage-path", default=None, help="Ray results (shared FS path or s3://, gs://; default: <output-dir>/ray)")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite under --output-dir)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    p.add_argument("--num-samples", type=int, default=None, help="search trials per method (default: the space's)")
    p.add_argument("--seed-repeats", type=int, default=None, help="fresh seeds per method's best config, its controls "
                   "and matched baseline (default: the space's)")
    p.add_argument("--epochs", type=int, default=None, help="override the space's epoch budget")
    p.add_argument("--methods", default=None, help=f"comma list restricting the space's methods ({','.join(METHODS)})")
    p.add_argument("--kernels", default=None, help=f"comma list restricting the space's kernels ({','.join(KERNELS)})")
    p.add_argument("--datasets", default=None, help=f"comma list restricting the space's datasets ({','.join(DATASETS)})")
    p.add_argument("--data-dir", default=None, help="torchvision datasets directory (default: data)")
    p.add_argument("--download", action="store_true", help="let torchvision download missing datasets (driver only)")
    for flag, kind, default, text in RECORDED_FLAGS:
        p.add_argument(flag, type=kind, default=None, help=text if default is None else f"{text} (default: {default})")
    p.add_argument("--asha", action="store_true", default=None,
                   help="early-stop with ASHA, judging trials only in their final regime")
    p.add_argument("--seed", type=int, default=None, help="sampler seed and the search trials' seed; re-runs use seed+1.. (default: 0)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted study (--name, else the latest)")
    p.add_argument("--dry-run", action="store_true", help="sample and validate configs, print them, train nothing")
    return p


# Flags a study records and a resumed study keeps: (flag, type, default, help).
RECORDED_FLAGS = (
    ("--cpus-per-trial", float, 1.0, "CPUs per trial"),
    ("--gpus-per-trial", float, "auto", "GPUs per trial, fractional allowed; auto = the space's per-model "
                                        "fraction if the cluster has GPUs, else 0"),
    ("--max-concurrent", int, None, "max concurrent trials (default: as resources allow)"),
    ("--max-failures", int, 1, "retries of a failing trial (from its checkpoint)"),
)


# URI schemes of pyarrow file systems Ray Tune can checkpoint to.
STORAGE_SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "abfs", "abfss", "az")


def _comma(value: str | None) -> tuple[str, ...] | None:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value is not None else None


# ---------------------------------------------------------------------------------------------
# Study records: <output-dir>/studies/<name>.json (written atomically)

def _record_path(output_dir: Path, name: str) -> Path:
    return output_dir / "studies" / f"{name}.json"


def _write_record(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str))
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# Resolve and check (nothing is written until every check has passed)

@dataclasses.dataclass
class Plan:
    """Everything the study resolved, recorded once: a resumed study reads it back, whatever the flags say."""
    name: str
    space: object
    settings: SpaceSettings
    output_dir: Path
    record_path: Path
    record: dict  # the study record: every resolved value below, plus what the study has done
    address: str | None
    datasets: dict

    def __getattr__(self, key):  # plan.seed, plan.tracking_uri, ... read from the record
        record = self.__dict__.get("record") or {}
        if key in record:
            return record[key]
        raise AttributeError(key)

    @property
    def optuna_storage(self) -> str:
        return f"sqlite:///{self.output_dir / 'optuna.db'}"

    @property
    def resume(self) -> bool:
        return bool(self.record.get("attempts"))


def _settings(args, space_settings: SpaceSettings) -> SpaceSettings:
    changes = {}
    for name in ("num_samples", "seed_repeats", "epochs"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    for name in ("methods", "kernels", "datasets"):
        values = _comma(getattr(args, name))
        if values is not None:
            changes[name] = values
    settings = space_settings.replace(**changes)
    try:
        settings.validate()
    except ConfigError as error:  # name the flag that set the value, if one did
        field = str(error).split(":", 1)[0]
        flag = f"--{field.replace('_', '-')}" if field in changes else f"space {settings.name}"
        raise StudyError(f"{flag}: {str(error).split(':', 1)[1].strip()}") from None
    return settings


def _check_flags(args) -> None:
    """Counts and resources that cannot be right, whatever the cluster."""
    checks = [("--num-samples", args.num_samples, 1), ("--epochs", args.epochs, 1), ("--seed-repeats", args.seed_repeats, 0),
              ("--max-concurrent", args.max_concurrent, 1), ("--max-failures", args.max_failures, 0)]
    for flag, value, low in checks:
        if value is not None and value < low:
            raise StudyError(f"{flag}: must be >= {low}, got {value}")
    if args.cpus_per_trial is not None and not (args.cpus_per_trial > 0 and math.isfinite(args.cpus_per_trial)):
        raise StudyError(f"--cpus-per-trial: must be > 0 (a trial needs a CPU to run on), got {args.cpus_per_trial:g}")
    if args.gpus_per_trial is not None and not (args.gpus_per_trial >= 0 and math.isfinite(args.gpus_per_trial)):
        raise StudyError(f"--gpus-per-trial: must be >= 0 (0 = CPU trials; fractions share a GPU), "
                         f"got {args.gpus_per_trial:g}")
    if args.seed is not None and args.seed < 0:
        raise StudyError(f"--seed: must be >= 0 (NumPy and Optuna seeds are unsigned), got {args.seed}")
    if args.name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", args.name):
        raise StudyError(f"--name: {args.name!r} is not allowed; use letters, digits, '.', '_' and '-' "
                         f"(it names files, an MLflow experiment and Optuna studies)")
    if args.storage_path and "://" in args.storage_path and \
            args.storage_path.split("://")[0] not in STORAGE_SCHEMES:
        raise StudyError(f"--storage-path: scheme {args.storage_path.split('://')[0]!r} is not one Ray can "
                         f"write to; use a path, or one of {', '.join(s + '://' for s in STORAGE_SCHEMES)}")
    if args.gpus_per_trial and args.gpus_per_trial > 1 and not float(args.gpus_per_trial).is_integer():
        raise StudyError(f"--gpus-per-trial: above 1 it must be a whole number of GPUs, got {args.gpus_per_trial:g}")


def _check_output_dir(output_dir: Path) -> None:
    """An output directory that cannot be created or written fails before anything is written."""
    existing = output_dir
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise StudyError(f"--output-dir: {existing} is a file, so {output_dir} cannot be created")
    try:  # try it: os.access says yes to root everywhere, also where the file system refuses (/sys)
        tempfile.TemporaryDirectory(dir=existing, prefix=".study-write-check-").cleanup()
    except OSError:
        raise StudyError(f"--output-dir: {existing} is not writable, so {output_dir} cannot be "
                         f"{'written' if existing == output_dir else 'created'}") from None


def _check_address(address: str) -> None:
    """A Ray address that cannot be reached fails in seconds, not after ray.init's retries."""
    if address in ("auto", "local"):
        return
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=5):
            pass
    except (OSError, ValueError) as error:
        raise StudyError(f"--address: Ray address {address} is unreachable ({error}); start the cluster "
                         f"(ray start --head) or pass another --address / RAY_ADDRESS") from None


def resolve(args) -> Plan:
    """Every value the study will use, checked; a resumed study's from its record."""
    from study.tracking import TrackingError, check_tracking_uri, default_tracking_uri, latest_study

    _check_flags(args)
    output_dir = Path(args.output_dir).expanduser().resolve()
    _check_output_dir(output_dir)
    name, record = args.name, None
    if args.resume:
        name = name or latest_study(output_dir)
        if name is None or not _record_path(output_dir, name).exists():
            raise StudyError(f"--resume: no study {'named ' + repr(args.name) + ' ' if args.name else ''}"
                             f"in {output_dir}; start one without --resume")
        record = json.loads(_record_path(output_dir, name).read_text())
        _refuse_changes(args, record)
    space = load_space(args.space or (record["space"] if record else "smoke"))
    if record:
        fields = {f.name for f in dataclasses.fields(SpaceSettings)}
        settings = space.settings.replace(**{k: tuple(v) if isinstance(v, list) else v
                                              for k, v in record["settings"].items() if k in fields})
    else:
        settings = _settings(args, space.settings)
        name = name or f"{settings.name}-{datetime.now():%Y%m%d-%H%M%S}"
        if _record_path(output_dir, name).exists():
            other = json.loads(_record_path(output_dir, name).read_text())
            raise StudyError(f"--name: {output_dir} already holds study {name!r} (space {other['space']!r}); "
                             f"pass --resume to continue it, or choose another --name or --output-dir")
        tracking_uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(output_dir)
        storage_path = args.storage_path or str(output_dir / "ray")
        if "://" not in storage_path:
            storage_path = str(Path(storage_path).expanduser().resolve())
        record = {
            "name": name, "space": args.space or "smoke", "space_source": str(space.source),
            "settings": dataclasses.asdict(settings), "created": datetime.now().isoformat(timespec="seconds"),
            "seed": args.seed or 0, "data_dir": str(Path(args.data_dir or "data").expanduser().resolve()),
            "tracking_uri": tracking_uri, "storage_path": storage_path, "asha": bool(args.asha),
            **{_key(flag): getattr(args, _key(flag)) if getattr(args, _key(flag)) is not None else default
               for flag, _, default, _ in RECORDED_FLAGS},
            "best": {},
        }
    if not args.dry_run:
        try:
            check_tracking_uri(record["tracking_uri"])
        except TrackingError as error:
            raise StudyError(f"--tracking-uri: {error}") from None
    address = args.address or os.environ.get("RAY_ADDRESS") or None
    if address and not args.dry_run:
        _check_address(address)
    datasets = {} if args.dry_run else {d: load_arrays(d, record["data_dir"], args.download)
                                        for d in settings.datasets}
    return Plan(name, space, settings, output_dir, _record_path(output_dir, name), record, address, datasets)


def _key(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _refuse_changes(args, record: dict) -> None:
    """A resumed study keeps every value it recorded: a flag asking for another one is refused."""
    given = {"--space": args.space, "--seed": args.seed, "--tracking-uri": args.tracking_uri,
             "--storage-path": args.storage_path, "--asha": args.asha,
             **{flag: getattr(args, _key(flag)) for flag, _, _, _ in RECORDED_FLAGS}}
    for name in ("num_samples", "seed_repeats", "epochs", "methods", "kernels", "datasets"):
        if getattr(args, name) is not None:
            raise StudyError(f"--{name.replace('_', '-')}: a resumed study keeps its recorded settings "
                             f"({record.get('settings', {}).get(name)}); start a new study to change them")
    for flag, value in given.items():
        recorded = record.get(_key(flag))
        if value is not None and value != recorded:
            raise StudyError(f"{flag}: study {record['name']!r} was run with {recorded!r}, not {value!r}; "
                             f"a resumed study keeps its recorded values (leave the flag out)")


def _check_resources(plan: Plan) -> dict[str, float]:
    """GPUs per trial for every dataset, after ray.init and before any record: a trial that no
    node can hold would wait forever, so it is refused in seconds instead."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    most_cpus = max((n.get("CPU", 0) for n in nodes), default=0)
    most_gpus = max((n.get("GPU", 0) for n in nodes), default=0)
    if plan.cpus_per_trial > most_cpus:
        raise StudyError(f"--cpus-per-trial: {plan.cpus_per_trial:g} asked for, but the largest node of the "
                         f"cluster has {most_cpus:g} CPUs; a trial runs on one node")
    gpus = {}
    for dataset in plan.settings.datasets:
        wanted = plan.gpus_per_trial
        if wanted == "auto":
            wanted = plan.settings.gpus_per_trial.get(plan.settings.models[dataset], 1.0) if most_gpus else 0.0
        if wanted > most_gpus:
            raise StudyError(f"--gpus-per-trial: {wanted:g} asked for, but the largest node of the cluster has "
                             f"{most_gpus:g} GPUs; use 0 for CPU trials or a smaller fraction")
        gpus[dataset] = float(wanted)
    return gpus


def sample_configs(space, settings: SpaceSettings, dataset: str, seed: int, base: dict) -> dict[str, list[dict]]:
    """num_samples configs per searched method from the define-by-run space (random sampler), validated."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    define = bind_space(space, dataset, settings, base)
    sampled = {}
    for method in settings.methods:
        if method not in SEARCHED:
            continue
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        sampled[method] = []
        for _ in range(settings.num_samples):
            trial = study.ask()
            constants = define(trial, method)  # suggests first: trial.params is filled by it
            config = {**trial.params, **constants}
            TrialConfig.from_dict(config)  # raises ConfigError naming the field
            sampled[method].append(config)
            study.tell(trial, 0.0)
    return sampled


def _print_dry_run(plan: Plan) -> None:
    settings, seed = plan.settings, plan.seed
    base = {"data_dir": plan.data_dir, "seed": seed}
    print(f"space {settings.name}: {settings.description}")
    seeds = list(range(seed + 1, seed + 1 + settings.seed_repeats))
    for dataset, regime in ((d, r) for d in settings.datasets for r in settings.regimes):
        sampled = sample_configs(plan.space, settings.for_regime(regime), dataset, seed, base)
        reruns = plan_reruns({m: c[0] for m, c in sampled.items()}, settings.methods, seeds)
        print(f"[{regime.key(dataset)}] {settings.num_samples} search trials per method, all valid: "
              f"{', '.join(sampled)}; then {len(reruns)} re-runs (repeats, matched controls and baselines)")
        for method, configs in sampled.items():
            shown = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in configs[0].items()
                     if k in TrialConfig.from_dict(configs[0]).fields_used() and k != "data_dir"}
            print(f"  {method:<13} " + json.dumps(shown))
    print("dry run: nothing trained or written")


# ---------------------------------------------------------------------------------------------
# The study's steps

def _tracker(plan: Plan):
    """The study's MLflow parent run: created once, re-attached on resume."""
    from analysis.plots import kernel_grid_png
    from study.tracking import StudyTracker, code_version

    record = plan.record
    if record.get("parent_run_id"):
        return StudyTracker(plan.tracking_uri, record["experiment_id"], record["parent_run_id"], plan.name)
    import mlflow
    import optuna
    import ray
    import torch

    artifact_root = (plan.output_dir / "mlartifacts").as_uri() if plan.tracking_uri.startswith("sqlite:") else None
    settings = dataclasses.asdict(plan.settings)
    tracker = StudyTracker.create(
        plan.tracking_uri, plan.name, artifact_root,
        tags={"space": record["space"], "code_version": code_version(), "ray_version": ray.__version__,
              "torch_version": torch.__version__, "optuna_version": optuna.__version__,
              "mlflow_version": mlflow.__version__, "optuna_storage": plan.optuna_storage,
              "optuna_studies": ",".join(f"{plan.name}-{r.key(d)}-{m}" for d in plan.settings.datasets
                                         for r in plan.settings.regimes for m in plan.settings.methods
                                         if m in SEARCHED),
              "ray_storage": plan.storage_path, "mlflow.note.content": plan.settings.description},
        params={"space": record["space"], "seed": plan.seed, "asha": plan.asha,
                **{_key(flag): record[_key(flag)] for flag, _, _, _ in RECORDED_FLAGS},
                **{k: json.dumps(v) if isinstance(v, (dict, list, tuple)) else v for k, v in settings.items()}})
    tracker.log_artifact_file(plan.space.source, "space")
    tracker.log_artifact_text(json.dumps(record, indent=2, default=str), "study.json")
    png = plan.output_dir / "studies" / f"{plan.name}-kernels.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    samples = {name: arrays.train_x[0] * arrays.scale for name, arrays in plan.datasets.items()}
    tracker.log_artifact_file(kernel_grid_png(samples, png), "kernels")
    record["experiment_id"], record["parent_run_id"] = tracker.experiment_id, tracker.parent_run_id
    _write_record(plan.record_path, record)
    return tracker


def _concurrency(cpus: float, gpus: float, max_concurrent: int | None) -> int:
    """How many trials the cluster's resources (and --max-concurrent) let run at once."""
    import ray

    resources = ray.cluster_resources()
    slots = math.floor(resources.get("CPU", 1) / cpus)
    if gpus:
        slots = min(slots, math.floor(resources.get("GPU", 0) / gpus))
    return max(1, min(slots, max_concurrent) if max_concurrent else slots)


@contextlib.contextmanager
def _tune_environment(**values: str):
    """Settings Tune reads only from the environment, set for one Tuner.fit; a value the user
    exported wins."""
    added = {key: value for key, value in values.items() if key not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


class PhaseIncomplete(Exception):
    """The Tune run of a dataset ended before all its trials did (Ctrl-C, a stopped job)."""


def study_dataset(plan: Plan, tracker, dataset: str, regime: Regime, gpus: float) -> dict[str, float]:
    """One (dataset, regime): the equal per-method search, then the matched re-runs, in one Tune run."""
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    from study.search import StudySearcher, plan_reruns
    from study.trainable import CurriculumASHA, MlflowTrialCallback, ProgressCallback, make_trainable, trial_dirname

    settings, seed, key = plan.settings.for_regime(regime), plan.seed, regime.key(dataset)
    seeds = list(range(seed + 1, seed + 1 + settings.seed_repeats))
    mlflow_callback = MlflowTrialCallback(tracker)
    searcher = StudySearcher(
        bind_space(plan.space, dataset, settings, {"data_dir": plan.data_dir, "seed": seed}),
        settings.methods, settings.num_samples, plan.optuna_storage, f"{plan.name}-{key}", seed, seeds,
        settings.metric, tracker.ended_slots(dataset, regime.name), mlflow_callback.run_id,
        tags={"regime": regime.name})
    searched = [m for m in settings.methods if m in SEARCHED]
    totals = {"search": settings.num_samples * len(searched),
              "re-runs": len(plan_reruns({m: TrialConfig(method=m).to_dict() for m in searched},
                                         settings.methods, seeds))}
    done = {"search": searcher.finished_search_trials(), "re-runs": len(searcher.done_slots)}
    scheduler = None
    if plan.asha:  # rungs start after the longest curriculum: every judged trial is in its final regime
        scheduler = CurriculumASHA(time_attr="epoch", max_t=settings.epochs,
                                   grace_period=min(settings.epochs, settings.longest_curriculum + 1))
    attempt = len(plan.record["attempts"]) - 1
    experiment = key + (f"-resume{attempt}" if attempt else "")
    tuner = tune.Tuner(
        make_trainable({dataset: plan.datasets[dataset]}, plan.cpus_per_trial, gpus),
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=-1,
                                    metric=settings.metric, mode="max", reuse_actors=True,
                                    max_concurrent_trials=plan.max_concurrent, trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(
            name=experiment, storage_path=f"{plan.storage_path.rstrip('/')}/{plan.name}",
            # Tune's JSON logger only (TUNE_DISABLE_AUTO_CALLBACK_LOGGERS below drops its CSV and
            # TensorBoard ones, ~6 s of the driver's CPU in a smoke study): reconcile reads a trial's
            # history back from its result.json.
            callbacks=[mlflow_callback, ProgressCallback(key, totals, done, settings.metric,
                                                         on_progress=lambda: heartbeat(plan)),
                       JsonLoggerCallback()],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=plan.max_failures), verbose=0))
    started = time.time()
    # Tune keeps one trial pending at a time for a custom searcher (TUNE_MAX_PENDING_TRIALS_PG=auto
    # means 1): on 1-second trials the reused actor was free again before a second one had imported
    # torch, so every smoke trial ran in one actor while a second was started and stopped over and
    # over (11 worker start-ups, 1 used; measured). One pending trial per slot fills every slot.
    with _tune_environment(TUNE_MAX_PENDING_TRIALS_PG=str(_concurrency(plan.cpus_per_trial, gpus,
                                                                        plan.max_concurrent)),
                           TUNE_DISABLE_AUTO_CALLBACK_LOGGERS="1"):
        results = tuner.fit()
    wall = time.time() - started
    tracker.reconcile(results)
    summary = {}
    best = searcher.best_trials()
    plan.record["best"][key] = {
        m: {"optuna_trial": t.number, "tune_trial_id": t.user_attrs.get("tune_trial_id"), "value": t.value,
            "val_loss": t.user_attrs.get("val_loss"), "config": t.user_attrs["config"]} for m, t in best.items()}
    for method, study in searcher.studies.items():
        summary[f"search_trials.{key}.{method}"] = float(len(study.get_trials(deepcopy=False)))
    for method, entry in plan.record["best"][key].items():
        summary[f"best_{settings.metric}.{key}.{method}"] = entry["value"]
        tracker.set_parent_tag(f"best_trial.{key}.{method}", entry["tune_trial_id"])
    trial_seconds = sum((r.metrics or {}).get("trial_seconds", (r.metrics or {}).get("time_total_s", 0.0))
                        for r in results)
    if trial_seconds and not attempt:
        # Study overhead: the run's wall time against its trials' own train() time spread over
        # the slots that could run them at once (1.0 = no overhead at all).
        slots = min(_concurrency(plan.cpus_per_trial, gpus, plan.max_concurrent), len(results))
        ratio = wall / (trial_seconds / slots)
        summary[f"overhead_ratio.{key}"] = ratio
        print(f"[{key}] {wall:.1f} s wall for {trial_seconds:.1f} s of train() in {slots} slots: "
              f"overhead ratio {ratio:.2f}", flush=True)
    _write_record(plan.record_path, plan.record)
    if not searcher.finished():
        raise PhaseIncomplete(f"{key}: {done['search']}/{totals['search']} search trials had ended before "
                              f"this run; it stopped before the rest did")
    return summary


def run(plan: Plan, gpus: dict[str, float]) -> int:
    """The study's steps: open the records, then per dataset the search and the re-runs, then the summary."""
    import ray

    tracker = _tracker(plan)
    attempts = plan.record.setdefault("attempts", [])
    if attempts:
        forgotten = tracker.forget_unfinished()
        print(f"resuming {plan.name} (run {len(attempts) + 1}): {forgotten} unfinished trial run(s) will be "
              f"trained again", flush=True)
    attempts.append({"started": time.time(), "last": time.time()})
    _write_record(plan.record_path, plan.record)
    summary: dict[str, float] = {}
    try:
        for dataset in plan.settings.datasets:
            for regime in plan.settings.regimes:
                summary.update(study_dataset(plan, tracker, dataset, regime, gpus[dataset]))
    except (KeyboardInterrupt, PhaseIncomplete) as interrupt:
        heartbeat(plan)
        print(f"\ninterrupted ({interrupt or 'Ctrl-C'}); finished trials are kept. Continue with:\n"
              f"  python -m study.run --resume --name {plan.name} --output-dir {plan.output_dir}", flush=True)
        ray.shutdown()
        return 130
    heartbeat(plan)
    summary.update({"study_seconds": study_seconds(plan), "resumes": float(len(attempts) - 1)})
    tracker.finish_parent(summary)
    plan.record["finished"] = datetime.now().isoformat(timespec="seconds")
    _write_record(plan.record_path, plan.record)
    ray.shutdown()
    _print_summary(plan, tracker, summary)
    return 0


def heartbeat(plan: Plan) -> None:
    """The current run of the study was alive now (a killed run's time counts up to its last beat)."""
    plan.record["attempts"][-1]["last"] = time.time()
    _write_record(plan.record_path, plan.record)


def study_seconds(plan: Plan) -> float:
    """Total study time over every run of the study (a resumed study adds its runs up)."""
    return sum(a["last"] - a["started"] for a in plan.record.get("attempts", []))


def _print_summary(plan: Plan, tracker, metrics: dict[str, float]) -> None:
    from analysis.load import repeat_outcomes

    settings = plan.settings
    attempts = len(plan.record["attempts"])
    print(f"\nstudy {plan.name} finished in {metrics['study_seconds']:.0f} s"
          + (f" over {attempts} runs" if attempts > 1 else ""))
    runs = list(tracker.child_runs().values())
    for dataset, regime in ((d, r) for d in settings.datasets for r in settings.regimes):
        key, best = regime.key(dataset), plan.record["best"].get(regime.key(dataset), {})
        counts = {m: int(metrics.get(f"search_trials.{key}.{m}", 0)) for m in settings.methods if m in SEARCHED}
        print(f"\n[{key}] search trials per method: " + ", ".join(f"{m} {n}" for m, n in counts.items())
              + (" (equal)" if len(set(counts.values())) == 1 else " (NOT equal)"))
        print(f"[{key}] best config per method (by {settings.metric}); seed re-runs: test_acc mean ± 95% CI")
        outcomes = repeat_outcomes([r for r in runs if r.data.tags.get("regime", "standard") == regime.name], dataset)
        controls = [m for m in settings.methods if METHOD_TABLE[m].matched_to in best]
        for method in method_order([*best, *controls]):
            entry = best.get(method) or best[METHOD_TABLE[method].matched_to]
            config = TrialConfig.from_dict(TrialConfig.from_dict(entry["config"]).with_method(method))
            shared = " ".join(f"{k}={getattr(config, k):.3g}" if isinstance(getattr(config, k), float)
                              else f"{k}={getattr(config, k)}" for k in ("optimizer", "lr", "weight_decay", "batch_size"))
            chosen = (f"{settings.metric} {entry['value']:.4f}" if method in best
                      else f"matched to {METHOD_TABLE[method].matched_to}")
            print(f"  {method:<13} {chosen:<22} {outcomes.get(method, '')}   "
                  f"{config.describe().removeprefix(method).strip()} {shared}".rstrip())
    uri = plan.tracking_uri
    print(f"\nresults: study record {plan.record_path}\n         Ray results {plan.storage_path}/{plan.name}\n"
          f"         MLflow {uri} (experiment {plan.name!r})\n"
          f"         Optuna {plan.optuna_storage} (one study per dataset, regime and method)")
    page = runs_page(plan.record["experiment_id"])
    if uri.startswith("sqlite:"):
        print(f"browse:  mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000\n"
              f"         then open http://127.0.0.1:5000/{page}")
    else:
        print(f"browse:  {uri.rstrip('/')}/{page}")
    print(f"report:  python -m analysis.report --name {plan.name} --output-dir {plan.output_dir}")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        plan = resolve(args)
        if args.dry_run:
            _print_dry_run(plan)
            return 0
        gpus = start_ray(plan)
    except (StudyError, SpaceError, ConfigError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    # The libraries imported by now (torch, Ray, MLflow, Optuna: ~600k objects) are never garbage:
    # the collector's full passes over them cost the driver's CPU during the study, and seconds at
    # exit (measured, load ~7: 3.4 s from the last line to the end of the process, 1.4 s frozen).
    gc.freeze()
    return run(plan, gpus)


def start_ray(plan: Plan) -> dict[str, float]:
    """A local Ray, or the cluster at the address; then the resources the study asks for are checked."""
    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # A local Ray starts without the dashboard (a cluster keeps its own): nothing of the study reads
    # it, and its processes took CPU from the trials, and ~3 s of the start, on a 2-core machine.
    ray.init(address=plan.address, log_to_driver=False, configure_logging=True, logging_level="ERROR",
             include_dashboard=False)
    try:
        gpus = _check_resources(plan)
    except StudyError:
        ray.shutdown()
        raise
    print(f"study {plan.name}: space {plan.settings.name}, Ray {ray.__version__} with "
          f"{ray.cluster_resources().get('CPU', 0):g} CPUs / {ray.cluster_resources().get('GPU', 0):g} GPUs; "
          f"MLflow {plan.tracking_uri}", flush=True)
    for arrays in plan.datasets.values():
        print(f"data {arrays.describe()}", flush=True)
    return gpus


if __name__ == "__main__":
    code = main()
    gc.freeze()  # what the study made, too: the process ends now (see main)
    sys.exit(code)
