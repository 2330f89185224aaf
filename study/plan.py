"""What `python -m study.run` will do, resolved and checked before anything is written.

Its flags (`build_parser`), then `resolve`: every value the study uses — space, budget, counts,
paths, tracking URI, data — checked, and the study record made (or, with `--resume`, read back:
a resumed study keeps every value it recorded, and a flag asking for another is refused). After
Ray has started, `check_resources` refuses a trial no node of the cluster can hold. Bad input is a
`StudyError`: one line, exit status 2, nothing written.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
import socket
import tempfile
from datetime import datetime
from pathlib import Path

from search_spaces import Space, SpaceSettings, load_space
from trainer import corruptions
from trainer.config import DATASETS, KERNELS, METHODS, ConfigError, OneLineParser
from trainer.data import load_arrays

from .cluster_wait import DEFAULT_WAIT_SECONDS, wait_seconds
from .record import SAMPLERS, TPE_STARTUP, RecordError, StudyRecord, TrackingError, check_tracking_uri, default_tracking_uri, latest, optuna_storage, record_path
from .sequential import planned_comparisons


class StudyError(RuntimeError):
    """Bad input to the study: printed as one line, exit status 2."""


# ---------------------------------------------------------------------------------------------
# Command line

def build_parser(description: str = "") -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m study.run", description=description)
    p.add_argument("--space", default=None, help="search space: a module in search_spaces/ or a .py file "
                   "(default: smoke, or the resumed study's space)")
    p.add_argument("--name", default=None, help="study name = MLflow experiment (default: <space>-<time>; "
                   "with --resume: the latest study in --output-dir)")
    p.add_argument("--output-dir", default="runs", help="study records, MLflow SQLite store, Optuna DB, Ray results (default: runs)")
    p.add_argument("--storage-path", default=None, help="Ray results (shared FS path or s3://, gs://; default: <output-dir>/ray)")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite under --output-dir)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: $RAY_ADDRESS, else a local Ray)")
    p.add_argument("--wait-for-workers", type=wait_seconds, default=None, metavar="SECONDS",
                   help="after Ray starts, wait up to SECONDS for a node that can hold one trial (an autoscaling "
                        f"cluster's first worker); 0 = do not wait (default: {DEFAULT_WAIT_SECONDS} with --address "
                        "or $RAY_ADDRESS, else 0). Not recorded: a resumed study may wait differently")
    p.add_argument("--num-samples", type=int, default=None, help="search trials per method (default: the space's)")
    p.add_argument("--seed-repeats", type=int, default=None, help="fresh seeds per method's best config, its controls "
                   "and matched baseline (default: the space's)")
    p.add_argument("--seeds", choices=SEED_MODES, default=None,
                   help="fixed: --seed-repeats test seeds per side; auto: --seed-repeats seeds first, then batches "
                        "of as many more for every comparison whose verdict is still open, up to --max-seeds, with "
                        "group-sequential boundaries that keep the error rates (default: the space's)")
    p.add_argument("--max-seeds", type=int, default=None, help="the cap of --seeds auto: test seeds per side at the "
                   "last look (default: the space's, 30)")
    p.add_argument("--epochs", type=int, default=None, help="override the space's epoch budget")
    p.add_argument("--select-top", type=int, default=None, help="each method's top configs re-run before the "
                   "choice; 1 = choose on the search trial alone (default: the space's)")
    p.add_argument("--select-seeds", type=int, default=None, help="fresh seeds per top config; the choice is by "
                   "their mean val_acc (default: the space's)")
    p.add_argument("--replicates", type=int, default=None, help="whole-pipeline replicates: each redraws the data "
                   "split, the noise and imbalance draws, the sampler seed and the training seeds (default: the space's)")
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


SEED_MODES = ("fixed", "auto")

# Flags a study records and a resumed study keeps: (flag, type, default, help).
RECORDED_FLAGS = (
    ("--cpus-per-trial", float, 1.0, "CPUs per trial"),
    ("--gpus-per-trial", float, "auto", "GPUs per trial, fractional allowed; auto = the space's per-model "
                                        "fraction if the cluster has GPUs, else 0"),
    ("--max-concurrent", int, None, "max concurrent trials (default: as resources allow)"),
    ("--max-failures", int, 1, "retries of a failing trial (from its checkpoint)"),
    ("--sampler", str, "random", "the search: random (a random search with common random numbers: trial i of every "
                                 "method has the same shared hyperparameters) or tpe (Optuna's multivariate TPE per "
                                 f"method; its first {TPE_STARTUP} trials are random)"),
)


# URI schemes of pyarrow file systems Ray Tune can checkpoint to.
STORAGE_SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "abfs", "abfss", "az")


def _comma(value: str | None) -> tuple[str, ...] | None:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value is not None else None


# ---------------------------------------------------------------------------------------------
# The plan: the study record and what the launcher holds beside it while it runs

@dataclasses.dataclass
class Plan:
    """Everything the study resolved: the record (what a resumed study reads back, whatever the
    flags say), the space and its settings, and what exists only while this driver runs."""
    record: StudyRecord
    space: Space
    settings: SpaceSettings
    output_dir: Path
    address: str | None  # Ray cluster address; None = a local Ray
    datasets: dict  # dataset → DatasetArrays (empty in a dry run)
    corrupted: dict = dataclasses.field(default_factory=dict)  # dataset → its CorruptedTestSet (the second endpoint)
    replicas: dict = dataclasses.field(default_factory=dict)  # (dataset, replicate ≥ 1) → (arrays, corrupted), loaded when first asked

    def data(self, dataset: str, replicate: int = 0):
        """(arrays, corrupted test set) of a dataset as whole-pipeline replicate `replicate` splits it."""
        if not replicate:
            return self.datasets[dataset], self.corrupted.get(dataset)
        if (dataset, replicate) not in self.replicas:
            arrays = load_arrays(dataset, self.record.data_dir, False, replicate)
            self.replicas[dataset, replicate] = (arrays, corruptions.for_dataset(arrays))
        return self.replicas[dataset, replicate]

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def record_path(self) -> Path:
        return record_path(self.output_dir, self.name)

    @property
    def optuna_storage(self) -> str:
        return optuna_storage(self.output_dir)

    def save(self) -> None:
        self.record.save(self.output_dir)


def _settings(args, space_settings: SpaceSettings) -> SpaceSettings:
    changes = {}
    for name in ("num_samples", "seed_repeats", "epochs", "replicates", "select_top", "select_seeds", "max_seeds"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.seeds is not None:
        changes["auto_seeds"] = args.seeds == "auto"
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
    if "max_seeds" in changes and not settings.auto_seeds:
        raise StudyError(f"--max-seeds: caps the seeds of --seeds auto, and space {settings.name} runs a fixed "
                         f"number ({settings.seed_repeats}, --seed-repeats); add --seeds auto or leave it out")
    if settings.auto_seeds and not planned_comparisons(settings.methods, settings.crossed):
        flag = "--seeds" if "auto_seeds" in changes else f"space {settings.name}"
        raise StudyError(f"{flag}: auto sizes comparisons, and the methods {','.join(settings.methods)} make none; "
                         f"add the baseline and a curriculum, or a curriculum and its control")
    return settings


def _check_flags(args) -> None:
    """Counts and resources that cannot be right, whatever the cluster."""
    checks = [("--num-samples", args.num_samples, 1), ("--epochs", args.epochs, 1), ("--seed-repeats", args.seed_repeats, 0),
              ("--replicates", args.replicates, 1), ("--select-top", args.select_top, 1),
              ("--select-seeds", args.select_seeds, 0),
              ("--max-concurrent", args.max_concurrent, 1), ("--max-failures", args.max_failures, 0)]
    for flag, value, low in checks:
        if value is not None and value < low:
            raise StudyError(f"{flag}: must be >= {low}, got {value}")
    if args.cpus_per_trial is not None and not (args.cpus_per_trial > 0 and math.isfinite(args.cpus_per_trial)):
        raise StudyError(f"--cpus-per-trial: must be > 0 (a trial needs a CPU to run on), got {args.cpus_per_trial:g}")
    if args.gpus_per_trial is not None and not (args.gpus_per_trial >= 0 and math.isfinite(args.gpus_per_trial)):
        raise StudyError(f"--gpus-per-trial: must be >= 0 (0 = CPU trials; fractions share a GPU), "
                         f"got {args.gpus_per_trial:g}")
    if args.sampler is not None and args.sampler not in SAMPLERS:
        raise StudyError(f"--sampler: {args.sampler!r} is not allowed; choose {' or '.join(SAMPLERS)}")
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
    try:
        return _resolve(args)
    except RecordError as error:
        raise StudyError(f"--output-dir: {error}") from None


def _resolve(args) -> Plan:
    _check_flags(args)
    output_dir = Path(args.output_dir).expanduser().resolve()
    _check_output_dir(output_dir)
    name = args.name
    if args.resume:
        name = name or latest(output_dir)
        record = StudyRecord.read(output_dir, name) if name else None
        if record is None:
            raise StudyError(f"--resume: no study {'named ' + repr(args.name) + ' ' if args.name else ''}"
                             f"in {output_dir}; start one without --resume")
        _refuse_changes(args, record)
        space = load_space(args.space or record.space)
        fields = {f.name for f in dataclasses.fields(SpaceSettings)}
        settings = space.settings.replace(**{k: tuple(v) if isinstance(v, list) else v
                                              for k, v in record.settings.items() if k in fields})
    else:
        space = load_space(args.space or "smoke")
        settings = _settings(args, space.settings)
        name = name or f"{settings.name}-{datetime.now():%Y%m%d-%H%M%S}"
        other = StudyRecord.read(output_dir, name)
        if other is not None:
            raise StudyError(f"--name: {output_dir} already holds study {name!r} (space {other.space!r}); "
                             f"pass --resume to continue it, or choose another --name or --output-dir")
        storage_path = args.storage_path or str(output_dir / "ray")
        if "://" not in storage_path:
            storage_path = str(Path(storage_path).expanduser().resolve())
        record = StudyRecord(
            name=name, space=args.space or "smoke", space_source=str(space.source),
            settings=dataclasses.asdict(settings), created=datetime.now().isoformat(timespec="seconds"),
            seed=args.seed or 0, data_dir=str(Path(args.data_dir or "data").expanduser().resolve()),
            tracking_uri=args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(output_dir),
            storage_path=storage_path, asha=bool(args.asha),
            **{flag_field(flag): getattr(args, flag_field(flag)) if getattr(args, flag_field(flag)) is not None else default
               for flag, _, default, _ in RECORDED_FLAGS})
    if not args.dry_run:
        try:
            check_tracking_uri(record.tracking_uri)
        except TrackingError as error:
            raise StudyError(f"--tracking-uri: {error}") from None
    address = args.address or os.environ.get("RAY_ADDRESS") or None
    if address and not args.dry_run:
        _check_address(address)
    datasets = {} if args.dry_run else {d: load_arrays(d, record.data_dir, args.download)
                                        for d in settings.datasets}
    # Built once here (cached on disk after the first study) and shipped with the data: a trial
    # only evaluates, so its corruption_seconds never include building the set.
    corrupted = {d: corruptions.for_dataset(arrays) for d, arrays in datasets.items()}
    return Plan(record, space, settings, output_dir, address, datasets, corrupted)


def flag_field(flag: str) -> str:
    """The record field a flag is stored in: --cpus-per-trial → cpus_per_trial."""
    return flag.lstrip("-").replace("-", "_")


def _refuse_changes(args, record: StudyRecord) -> None:
    """A resumed study keeps every value it recorded: a flag asking for another one is refused."""
    given = {"--space": args.space, "--seed": args.seed, "--tracking-uri": args.tracking_uri,
             "--storage-path": args.storage_path, "--asha": args.asha,
             **{flag: getattr(args, flag_field(flag)) for flag, _, _, _ in RECORDED_FLAGS}}
    for name in ("num_samples", "seed_repeats", "epochs", "replicates", "select_top", "select_seeds", "seeds",
                 "max_seeds", "methods", "kernels", "datasets"):
        if getattr(args, name) is not None:
            recorded = record.settings.get(name)
            if name == "seeds":
                recorded = "auto" if record.settings.get("auto_seeds") else "fixed"
            raise StudyError(f"--{name.replace('_', '-')}: a resumed study keeps its recorded settings "
                             f"({recorded}); start a new study to change them")
    for flag, value in given.items():
        recorded = getattr(record, flag_field(flag))
        if value is not None and value != recorded:
            raise StudyError(f"{flag}: study {record.name!r} was run with {recorded!r}, not {value!r}; "
                             f"a resumed study keeps its recorded values (leave the flag out)")


def check_resources(plan: Plan) -> dict[str, float]:
    """GPUs per trial for every dataset, after ray.init and before any record: a trial that no
    node can hold would wait forever, so it is refused in seconds instead."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    most_cpus = max((n.get("CPU", 0) for n in nodes), default=0)
    most_gpus = max((n.get("GPU", 0) for n in nodes), default=0)
    if plan.record.cpus_per_trial > most_cpus:
        raise StudyError(f"--cpus-per-trial: {plan.record.cpus_per_trial:g} asked for, but the largest node of the "
                         f"cluster has {most_cpus:g} CPUs; a trial runs on one node")
    gpus = {}
    for dataset in plan.settings.datasets:
        wanted = plan.record.gpus_per_trial
        if wanted == "auto":
            wanted = plan.settings.gpus_per_trial.get(plan.settings.models[dataset], 1.0) if most_gpus else 0.0
        if wanted > most_gpus:
            raise StudyError(f"--gpus-per-trial: {wanted:g} asked for, but the largest node of the cluster has "
                             f"{most_gpus:g} GPUs; use 0 for CPU trials or a smaller fraction")
        gpus[dataset] = float(wanted)
    return gpus


