"""`python -m study.run`: the study — Optuna search per dataset, then seed repeats — on Ray Tune.

With no flags it runs the `smoke` space on the embedded default: a local Ray, an SQLite MLflow
store and an Optuna SQLite file under ./runs, scikit-learn's digits. Everything is checked
before anything is written (space, budget, data, tracking store, Ray address), so bad input
costs one clear line and leaves nothing behind. `--resume` continues a killed study: finished
trials are kept, interrupted ones continue from their checkpoints, and every trial keeps exactly
one MLflow child run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
import sys
import time
import warnings
from datetime import datetime
from pathlib import Path

from search_spaces import SpaceError, SpaceSettings, bind_space, load_space
from study.config import DATASETS, KERNELS, METHODS, ConfigError, TrialConfig
from study.data import DataError, load_arrays


class StudyError(RuntimeError):
    """Bad input to the study: printed as one line, exit status 2."""


# ---------------------------------------------------------------------------------------------
# Command line

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m study.run", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--space", default=None, help="search space: a module in search_spaces/ or a .py file "
                   "(default: smoke, or the resumed study's space)")
    p.add_argument("--name", default=None, help="study name = MLflow experiment (default: <space>-<time>; "
                   "with --resume: the latest study in --output-dir)")
    p.add_argument("--output-dir", default="runs", help="study records, MLflow SQLite store, Optuna DB, Ray results")
    p.add_argument("--storage-path", default=None, help="Ray results (shared FS path or s3://, gs://; default: <output-dir>/ray)")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite under --output-dir)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    p.add_argument("--num-samples", type=int, default=None, help="search trials per dataset (default: the space's)")
    p.add_argument("--seed-repeats", type=int, default=None, help="seeds re-run per method's best config (default: the space's)")
    p.add_argument("--epochs", type=int, default=None, help="override the space's epoch budget")
    p.add_argument("--methods", default=None, help=f"comma list restricting the space's methods ({','.join(METHODS)})")
    p.add_argument("--kernels", default=None, help=f"comma list restricting the space's kernels ({','.join(KERNELS)})")
    p.add_argument("--datasets", default=None, help=f"comma list restricting the space's datasets ({','.join(DATASETS)})")
    p.add_argument("--data-dir", default="data", help="torchvision datasets directory")
    p.add_argument("--download", action="store_true", help="let torchvision download missing datasets (driver only)")
    p.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs per trial")
    p.add_argument("--gpus-per-trial", type=float, default=None,
                   help="GPUs per trial, fractional allowed (default: the space's per-model fraction if the cluster has GPUs, else 0)")
    p.add_argument("--max-concurrent", type=int, default=None, help="max concurrent trials (default: as resources allow)")
    p.add_argument("--asha", action="store_true", help="early-stop with ASHA (never before a curriculum reaches original images)")
    p.add_argument("--max-failures", type=int, default=1, help="retries of a failing trial (from its checkpoint)")
    p.add_argument("--seed", type=int, default=0, help="sampler seed and the search trials' seed; repeats use seed+1..")
    p.add_argument("--resume", action="store_true", help="continue an interrupted study (--name, else the latest)")
    p.add_argument("--dry-run", action="store_true", help="sample and validate configs, print them, train nothing")
    return p


def _comma(value: str | None) -> tuple[str, ...] | None:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else None


# ---------------------------------------------------------------------------------------------
# Study records: <output-dir>/studies/<name>.json (written atomically)

def _record_path(output_dir: Path, name: str) -> Path:
    return output_dir / "studies" / f"{name}.json"


def _write_record(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str))
    os.replace(tmp, path)


def _latest_study(output_dir: Path) -> str | None:
    records = sorted((output_dir / "studies").glob("*.json"), key=lambda p: p.stat().st_mtime)
    return records[-1].stem if records else None


# ---------------------------------------------------------------------------------------------
# Checks (nothing is written until all pass)

def _settings(args, space_settings: SpaceSettings) -> SpaceSettings:
    changes = {}
    if args.num_samples is not None:
        changes["num_samples"] = args.num_samples
    if args.seed_repeats is not None:
        changes["seed_repeats"] = args.seed_repeats
    if args.epochs is not None:
        changes["epochs"] = args.epochs
    for name in ("methods", "kernels", "datasets"):
        values = _comma(getattr(args, name))
        if values is not None:
            changes[name] = values
    settings = space_settings.replace(**changes)
    settings.validate()
    return settings


def sample_configs(space, settings: SpaceSettings, dataset: str, count: int, seed: int,
                   base: dict) -> list[dict]:
    """Draw configs from the define-by-run space (random sampler) and validate every one."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    for method in settings.methods:  # as the real search does: every method first
        study.enqueue_trial({"method": method})
    define = bind_space(space, dataset, settings, base)
    configs = []
    for _ in range(count):
        trial = study.ask()
        constants = define(trial)  # suggests first: trial.params is filled by it
        config = {**trial.params, **constants}
        TrialConfig.from_dict(config)  # raises ConfigError naming the field
        configs.append(config)
        study.tell(trial, 0.0)
    return configs


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
        raise StudyError(f"Ray address {address} is unreachable ({error}); start the cluster "
                         f"(ray start --head) or pass another --address / RAY_ADDRESS") from None


# ---------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Plan:
    name: str
    space: object
    settings: SpaceSettings
    output_dir: Path
    storage_path: str
    tracking_uri: str
    address: str | None
    record_path: Path
    record: dict
    resume: bool
    datasets: dict
    overheads: dict = dataclasses.field(default_factory=dict)

    @property
    def optuna_storage(self) -> str:
        return f"sqlite:///{self.output_dir / 'optuna.db'}"


def prepare(args) -> Plan | None:
    from study.tracking import TrackingError, check_tracking_uri, default_tracking_uri

    output_dir = Path(args.output_dir).expanduser().resolve()
    name = args.name
    record = None
    if args.resume:
        name = name or _latest_study(output_dir)
        if name is None or not _record_path(output_dir, name).exists():
            raise StudyError(f"--resume: no study {'named ' + repr(args.name) + ' ' if args.name else ''}"
                             f"in {output_dir}; start one without --resume")
        record = json.loads(_record_path(output_dir, name).read_text())
        if args.space and args.space != record["space"]:
            raise StudyError(f"--space: study {name!r} in {output_dir} was run with space "
                             f"{record['space']!r}, not {args.space!r}")
    space_name = args.space or (record["space"] if record else "smoke")
    space = load_space(space_name)
    if record:  # the resumed study keeps its own settings, whatever the flags say now
        settings = space.settings.replace(**{k: tuple(v) if isinstance(v, list) else v
                                              for k, v in record["settings"].items()
                                              if k in {f.name for f in dataclasses.fields(SpaceSettings)}})
    else:
        settings = _settings(args, space.settings)
        name = name or f"{settings.name}-{datetime.now():%Y%m%d-%H%M%S}"
        existing = _record_path(output_dir, name)
        if existing.exists():
            other = json.loads(existing.read_text())
            raise StudyError(f"--name: {output_dir} already holds study {name!r} (space {other['space']!r}); "
                             f"pass --resume to continue it, or choose another --name or --output-dir")
    # A resumed study keeps its seed and data directory too (it may be resumed from elsewhere).
    data_dir = record["data_dir"] if record else str(Path(args.data_dir).expanduser().resolve())
    seed = record["seed"] if record else args.seed
    base = {"data_dir": data_dir, "seed": seed}
    sampled = {dataset: sample_configs(space, settings, dataset, max(settings.num_samples, len(settings.methods)),
                                       seed, base)
               for dataset in settings.datasets}
    if args.dry_run:
        _print_dry_run(settings, sampled)
        return None

    tracking_uri = (args.tracking_uri or (record or {}).get("tracking_uri")
                    or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(output_dir))
    try:
        check_tracking_uri(tracking_uri)
    except TrackingError as error:
        raise StudyError(str(error)) from None
    address = args.address or os.environ.get("RAY_ADDRESS") or None
    if address:
        _check_address(address)
    datasets = {}
    for dataset in settings.datasets:
        datasets[dataset] = load_arrays(dataset, data_dir, args.download)
    storage_path = args.storage_path or (record or {}).get("storage_path") or str(output_dir / "ray")
    if "://" not in storage_path:
        storage_path = str(Path(storage_path).expanduser().resolve())
    record = record or {
        "name": name, "space": space_name, "space_source": str(space.source),
        "settings": dataclasses.asdict(settings), "created": datetime.now().isoformat(timespec="seconds"),
        "tracking_uri": tracking_uri, "storage_path": storage_path, "seed": seed,
        "data_dir": data_dir, "max_failures": args.max_failures, "phases": {}, "best": {},
    }
    return Plan(name, space, settings, output_dir, storage_path, tracking_uri, address,
                _record_path(output_dir, name), record, args.resume, datasets)


def _print_dry_run(settings: SpaceSettings, sampled: dict[str, list[dict]]) -> None:
    from collections import Counter

    print(f"space {settings.name}: {settings.description}")
    for dataset, configs in sampled.items():
        configs = configs[: settings.num_samples]
        counts = Counter(c["method"] for c in configs)
        print(f"[{dataset}] {len(configs)} configs valid; by method: {dict(sorted(counts.items()))}")
        for config in configs[:10]:
            shown = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in config.items()
                     if k not in ("data_dir",)}
            print("  " + json.dumps(shown))
    print(f"dry run: nothing trained or written; seed repeats per method: {settings.seed_repeats}")


# ---------------------------------------------------------------------------------------------
# Running

def _tracker(plan: Plan):
    from study.tracking import StudyTracker, code_version, kernel_grid_png

    record = plan.record
    if record.get("parent_run_id"):
        return StudyTracker(plan.tracking_uri, record["experiment_id"], record["parent_run_id"], plan.name)
    import mlflow
    import optuna
    import ray
    import torch

    artifact_root = None
    if plan.tracking_uri.startswith("sqlite:"):
        artifact_root = (plan.output_dir / "mlartifacts").as_uri()
    settings = dataclasses.asdict(plan.settings)
    tracker = StudyTracker.create(
        plan.tracking_uri, plan.name, artifact_root,
        tags={"space": record["space"], "code_version": code_version(), "ray_version": ray.__version__,
              "torch_version": torch.__version__, "optuna_version": optuna.__version__,
              "mlflow_version": mlflow.__version__,
              "optuna_storage": plan.optuna_storage,
              "optuna_studies": ",".join(f"{plan.name}-{d}" for d in plan.settings.datasets),
              "ray_storage": plan.storage_path, "mlflow.note.content": plan.settings.description},
        params={"space": record["space"], "seed": record["seed"],
                **{k: json.dumps(v) if isinstance(v, (dict, list, tuple)) else v for k, v in settings.items()}})
    tracker.log_artifact_file(plan.space.source, "space")
    tracker.log_artifact_text(json.dumps(settings, indent=2), "settings.json")
    png = plan.output_dir / "studies" / f"{plan.name}-kernels.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    samples = {name: arrays.train_x[0] * arrays.scale for name, arrays in plan.datasets.items()}
    tracker.log_artifact_file(kernel_grid_png(samples, png), "kernels")
    record["experiment_id"], record["parent_run_id"] = tracker.experiment_id, tracker.parent_run_id
    _write_record(plan.record_path, record)
    return tracker


def _run_phase(plan: Plan, tracker, phase: str, dataset: str, trainable, tune_config, total: int,
               slots: int, param_space: dict | None = None):
    from ray import tune

    from study.tracking import MlflowTrialCallback
    from study.trainable import ProgressCallback

    experiment = f"{phase}-{dataset}"
    path = f"{plan.storage_path.rstrip('/')}/{plan.name}/{experiment}"
    if plan.resume and tune.Tuner.can_restore(path):
        print(f"[{experiment}] resuming from {path}", flush=True)
        tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=True,
                                   param_space=param_space)
    else:
        run_config = tune.RunConfig(
            name=experiment, storage_path=f"{plan.storage_path.rstrip('/')}/{plan.name}",
            callbacks=[MlflowTrialCallback(tracker, phase), ProgressCallback(experiment, total, plan.settings.metric)],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=plan.record["max_failures"]),
            verbose=0)
        tuner = tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config)
    started = time.time()
    results = tuner.fit()
    wall = time.time() - started
    # Ended = terminated (completed, diverged, or stopped early by ASHA) or errored; after a
    # Ctrl-C the rest are still pending or running.
    ended = results.num_terminated + results.num_errors
    complete = ended == len(results) and len(results) >= total
    tracker.reconcile(results, phase, dataset, complete)
    # A trial stopped early by ASHA never reports trial_seconds: Ray's own timing stands in.
    trial_seconds = sum((r.metrics or {}).get("trial_seconds", (r.metrics or {}).get("time_total_s", 0.0))
                        for r in results)
    if trial_seconds and not plan.resume:
        # Study overhead: the phase's wall time against its trials' own train() time spread over
        # the slots that could run them at once (1.0 = no overhead at all).
        ratio = wall / (trial_seconds / min(slots, len(results)))
        plan.overheads[experiment] = ratio
        print(f"[{experiment}] {wall:.1f} s wall for {trial_seconds:.1f} s of train() in "
              f"{min(slots, len(results))} slots: overhead ratio {ratio:.2f}", flush=True)
    if not complete:
        raise KeyboardInterrupt(f"{experiment}: {ended} of {total} trials ended")
    return results


def _concurrency(cpus: float, gpus: float, max_concurrent: int | None) -> int:
    """How many trials the cluster's resources (and --max-concurrent) let run at once."""
    import math

    import ray

    resources = ray.cluster_resources()
    slots = math.floor(resources.get("CPU", 1) / max(cpus, 1e-9))
    if gpus:
        slots = min(slots, math.floor(resources.get("GPU", 0) / gpus))
    return max(1, min(slots, max_concurrent) if max_concurrent else slots)


def _best_per_method(results, metric: str) -> dict[str, dict]:
    best: dict[str, tuple[float, dict]] = {}
    for result in results:
        metrics = result.metrics or {}
        if result.error is not None or metrics.get("outcome") != "completed":
            continue
        method = result.config["method"]
        # Validation accuracy ties often on small sets: the lower validation loss breaks them,
        # so the choice does not depend on the order Ray returns results in.
        key = (metrics[metric], -metrics.get("val_loss", 0.0))
        if method not in best or key > best[method][0]:
            best[method] = (key, metrics[metric], dict(result.config))
    return {method: {"value": value, "config": config}
            for method, (_, value, config) in sorted(best.items())}


def _gpus_per_trial(args, settings: SpaceSettings, dataset: str) -> float:
    import ray

    if args.gpus_per_trial is not None:
        return args.gpus_per_trial
    if ray.cluster_resources().get("GPU", 0) > 0:
        return settings.gpus_per_trial.get(settings.models[dataset], 1.0)
    return 0.0


def run(plan: Plan, args) -> int:
    import ray
    from ray import tune
    from ray.tune.search import BasicVariantGenerator
    import optuna

    from study.trainable import CurriculumASHA, ResumableOptunaSearch, make_trainable, trial_dirname

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    tracker = _tracker(plan)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    ray.init(address=plan.address, log_to_driver=False, configure_logging=True, logging_level="ERROR")
    print(f"study {plan.name}: space {plan.settings.name}, Ray {ray.__version__} with "
          f"{ray.cluster_resources().get('CPU', 0):g} CPUs / {ray.cluster_resources().get('GPU', 0):g} GPUs; "
          f"MLflow {plan.tracking_uri}", flush=True)
    started = time.time()
    settings = plan.settings
    seed = plan.record["seed"]
    base = {"data_dir": plan.record["data_dir"], "seed": seed}
    summary_metrics: dict[str, float] = {}
    try:
        for dataset in settings.datasets:
            gpus = _gpus_per_trial(args, settings, dataset)
            trainable = make_trainable({dataset: plan.datasets[dataset]}, args.cpus_per_trial, gpus)
            # --- search ---
            sampler = optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True, constant_liar=True)
            searcher = ResumableOptunaSearch(
                space=bind_space(plan.space, dataset, settings, base),
                metric=settings.metric, mode=settings.mode, sampler=sampler,
                points_to_evaluate=[{"method": m} for m in settings.methods],
                study_name=f"{plan.name}-{dataset}",
                storage=optuna.storages.RDBStorage(plan.optuna_storage))
            scheduler = None
            if args.asha:
                scheduler = CurriculumASHA(time_attr="epoch", max_t=settings.epochs,
                                           grace_period=max(1, settings.epochs // 4))
            tune_config = tune.TuneConfig(
                search_alg=searcher, scheduler=scheduler, num_samples=settings.num_samples,
                metric=settings.metric, mode=settings.mode, max_concurrent_trials=args.max_concurrent,
                reuse_actors=True, trial_dirname_creator=trial_dirname)
            slots = _concurrency(args.cpus_per_trial, gpus, args.max_concurrent)
            results = _run_phase(plan, tracker, "search", dataset, trainable, tune_config, settings.num_samples,
                                 slots)
            best = _best_per_method(results, settings.metric)
            plan.record["best"][dataset] = best
            plan.record["phases"][f"search-{dataset}"] = "done"
            _write_record(plan.record_path, plan.record)
            for method, entry in best.items():
                summary_metrics[f"best_{settings.metric}.{dataset}.{method}"] = entry["value"]
            # --- seed repeats ---
            if settings.seed_repeats:
                # Complete configs (every field), so each point overrides the same keys of the
                # param space that Tune requires the points to match.
                repeats = [TrialConfig.from_dict({**entry["config"], "seed": seed + s}).to_dict()
                           for entry in best.values() for s in range(1, settings.seed_repeats + 1)]
                tune_config = tune.TuneConfig(
                    search_alg=BasicVariantGenerator(points_to_evaluate=repeats, max_concurrent=args.max_concurrent or 0),
                    num_samples=len(repeats), metric=settings.metric, mode=settings.mode, reuse_actors=True,
                    trial_dirname_creator=trial_dirname)
                results = _run_phase(plan, tracker, "repeat", dataset, trainable, tune_config, len(repeats),
                                     slots, param_space=repeats[0])
                plan.record["phases"][f"repeat-{dataset}"] = "done"
                _write_record(plan.record_path, plan.record)
                summary_metrics.update(_repeat_summary(results, dataset))
    except KeyboardInterrupt as interrupt:
        print(f"\ninterrupted ({interrupt or 'Ctrl-C'}); finished trials are kept. Continue with:\n"
              f"  python -m study.run --resume --name {plan.name} --output-dir {plan.output_dir}", flush=True)
        ray.shutdown()
        return 130
    summary_metrics["study_seconds"] = time.time() - started
    summary_metrics.update({f"overhead_ratio.{k}": v for k, v in plan.overheads.items()})
    tracker.finish_parent(summary_metrics)
    plan.record["finished"] = datetime.now().isoformat(timespec="seconds")
    _write_record(plan.record_path, plan.record)
    ray.shutdown()
    _print_summary(plan, summary_metrics)
    return 0


def _repeat_summary(results, dataset: str) -> dict[str, float]:
    import numpy as np
    from scipy import stats

    by_method: dict[str, list[float]] = {}
    for result in results:
        metrics = result.metrics or {}
        if metrics.get("outcome") == "completed":
            by_method.setdefault(result.config["method"], []).append(metrics["test_acc"])
    summary = {}
    for method, values in by_method.items():
        values = np.asarray(values)
        half = (stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
                if len(values) > 1 else float("nan"))
        summary[f"repeat_test_acc_mean.{dataset}.{method}"] = float(values.mean())
        summary[f"repeat_test_acc_ci95.{dataset}.{method}"] = float(half)
        summary[f"repeat_n.{dataset}.{method}"] = float(len(values))
    return summary


def _print_summary(plan: Plan, metrics: dict[str, float]) -> None:
    settings = plan.settings
    print(f"\nstudy {plan.name} finished in {metrics['study_seconds']:.0f} s")
    for dataset in settings.datasets:
        print(f"\n[{dataset}] best config per method (by {settings.metric}; repeats: test_acc mean ± 95% CI)")
        for method, entry in plan.record["best"].get(dataset, {}).items():
            config = TrialConfig.from_dict(entry["config"])
            shared = " ".join(f"{k}={getattr(config, k):.3g}" if isinstance(getattr(config, k), float)
                              else f"{k}={getattr(config, k)}"
                              for k in ("optimizer", "lr", "weight_decay", "batch_size"))
            shown = f"{config.describe().removeprefix(method).strip()} {shared}".strip()
            mean = metrics.get(f"repeat_test_acc_mean.{dataset}.{method}")
            ci = metrics.get(f"repeat_test_acc_ci95.{dataset}.{method}")
            repeat = f"  test {mean:.4f} ± {ci:.4f}" if mean is not None else ""
            print(f"  {method:<13} {settings.metric} {entry['value']:.4f}{repeat}   {shown}")
    uri = plan.tracking_uri
    print(f"\nresults: study record {plan.record_path}\n         Ray results {plan.storage_path}/{plan.name}\n"
          f"         MLflow {uri} (experiment {plan.name!r})\n"
          f"         Optuna {plan.optuna_storage}")
    runs_page = (f"#/experiments/{plan.record['experiment_id']}/runs"
                 f"?orderByKey=attributes.run_name&orderByAsc=true")
    if uri.startswith("sqlite:"):
        print(f"browse:  mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000\n"
              f"         then open http://127.0.0.1:5000/{runs_page}")
    else:
        print(f"browse:  {uri.rstrip('/')}/{runs_page}")
    print(f"report:  python -m analysis.report --name {plan.name} --output-dir {plan.output_dir}")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        plan = prepare(args)
    except (StudyError, SpaceError, ConfigError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if plan is None:
        return 0
    return run(plan, args)


if __name__ == "__main__":
    sys.exit(main())
