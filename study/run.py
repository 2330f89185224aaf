"""`python -m study.run`: the study — an equal Optuna search per method, then matched re-runs — on Ray Tune.

With no flags it runs the `smoke` space on the embedded default: a local Ray, an SQLite MLflow
store and an Optuna SQLite file under ./runs, scikit-learn's digits. The steps, as `main` runs
them: resolve and check every value (`study.plan`: space, budget, counts, paths, tracking URI,
data; then, after Ray starts, the resources asked for) before anything is written; open the
study's records (`study.record`, the MLflow parent run); per (dataset, regime), the search and the
re-runs in one Tune run (`study.search`); summarise (`study.summary`). `--resume` continues a
killed study from its Optuna storage and MLflow runs: finished trials are kept, a trial lost with
the driver is trained again under the same Optuna trial, and every trial keeps exactly one MLflow
child run.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import gc
import json
import math
import os
import sys
import threading
import time
from datetime import datetime
from typing import NoReturn

from search_spaces import Regime, SpaceError
from trainer.config import SEARCHED, ConfigError
from trainer.data import DataError

from .cluster_wait import DEFAULT_WAIT_SECONDS, WorkersMissing, wait_for_workers
from .plan import RECORDED_FLAGS, Plan, StudyError, build_parser, check_resources, flag_field, resolve
from .record import TPE_STARTUP, study_key


# What the launcher imports only once the plan is checked (while Ray starts, or for the dry run's
# searcher): a Python without them fails with one line up front, not a traceback half-way.
RUNTIME_PACKAGES = ("torch", "ray", "optuna", "mlflow", "matplotlib", "pandas")


def missing_packages() -> list[str]:
    import importlib.util

    return [name for name in RUNTIME_PACKAGES if importlib.util.find_spec(name) is None]


def main(argv=None) -> int:
    args = build_parser(__doc__.split("\n\n")[0]).parse_args(argv)
    missing = missing_packages()
    if missing:
        print(f"error: {', '.join(missing)} not installed in this Python ({sys.executable}); install the project "
              f"into the environment you run it from: pip install -e .", file=sys.stderr)
        return 2
    try:
        plan = resolve(args)
        if args.dry_run:
            from .summary import print_dry_run

            print_dry_run(plan)
            return 0
        _preload()
        gpus = start_ray(plan, args.wait_for_workers)
    except (StudyError, SpaceError, ConfigError, DataError, WorkersMissing) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    # The libraries imported by now (torch, Ray, MLflow, Optuna: ~600k objects) are never garbage:
    # the collector's full passes over them cost the driver's CPU during the study, and seconds at
    # exit (measured, load ~7: 3.4 s from the last line to the end of the process, 1.4 s frozen).
    gc.freeze()
    return run(plan, gpus)


def _preload() -> None:
    """Import what the driver needs once Ray is up — torch, Optuna, MLflow with its SQL store and
    schema migrations, matplotlib for the kernel grid — in a thread while ray.init waits ~3 s for
    Ray's processes. The plan is checked before with none of them imported (`study.plan` needs
    numpy and scipy; digits are read without scikit-learn), so the 3 s of imports that came first
    and left the second core idle now overlap Ray's start. Ray's own modules are left to the main thread, which
    imports Ray (and protobuf, which MLflow shares) before the thread starts and the rest as
    ray.init goes: two threads importing the same modules at once could deadlock on their import
    locks. Nothing is written; an import that fails here fails again, with its traceback, where it
    is used."""
    import ray  # noqa: F401

    def imports():
        with contextlib.suppress(Exception):
            import torch  # noqa: F401
            import optuna  # noqa: F401
            import alembic.command  # noqa: F401
            import mlflow.store.db.utils  # noqa: F401
            import mlflow.store.tracking.sqlalchemy_store  # noqa: F401

            from . import kernel_grid, tracking  # noqa: F401

    threading.Thread(target=imports, name="preload", daemon=True).start()


def start_ray(plan: Plan, wait: int | None = None) -> dict[str, float]:
    """A local Ray, or the cluster at the address (waiting up to `wait` seconds for a node that can
    hold a trial; by default only for a cluster); then the resources the study asks for are checked."""
    import ray

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if not plan.address:
        # A local Ray starts a worker per CPU for tasks, but trials run in Tune's actors, which need
        # workers of their own (their runtime env differs): the prestarted ones imported Ray for
        # nothing, ~1 s of CPU while Ray and the driver start (measured: ray::IDLE processes).
        os.environ.setdefault("RAY_prestart_worker_first_driver", "0")
    # A local Ray starts without the dashboard (a cluster keeps its own): nothing of the study reads
    # it, and its processes took CPU from the trials, and ~3 s of the start, on a 2-core machine.
    ray.init(address=plan.address, log_to_driver=False, configure_logging=True, logging_level="ERROR",
             include_dashboard=False)
    try:
        wait_for_workers(plan.record.cpus_per_trial, plan.record.gpus_per_trial,
                         wait if wait is not None else DEFAULT_WAIT_SECONDS if plan.address else 0, ray.nodes)
        gpus = check_resources(plan)
    except (StudyError, WorkersMissing):
        stop_ray()
        raise
    print(f"study {plan.name}: space {plan.settings.name}, Ray {ray.__version__} with "
          f"{ray.cluster_resources().get('CPU', 0):g} CPUs / {ray.cluster_resources().get('GPU', 0):g} GPUs; "
          f"MLflow {plan.record.tracking_uri}", flush=True)
    for arrays in plan.datasets.values():
        print(f"data {arrays.describe()}", flush=True)
    for corrupted in plan.corrupted.values():
        print(f"corruptions {corrupted.describe()}", flush=True)
    return gpus


def stop_ray() -> None:
    """`ray.shutdown()` without its idle second at the end of every local study. Ray stops the
    processes it started one kind at a time, the GCS before the autoscaler monitor, whose SIGTERM
    handler then tries to report to the stopped GCS until Ray SIGKILLs it a second later (Ray
    2.60; `ray stop` stops the GCS last since ray-project/ray#30672). The monitor is stopped first
    here with Ray's own SIGKILL, the end that second waited for: 1.15 s → 0.10 s per shutdown,
    measured. A driver attached to a cluster holds no monitor process, and nothing changes there."""
    import ray
    from ray._private import worker

    kill_monitor = getattr(getattr(worker, "_global_node", None), "kill_monitor", None)
    if kill_monitor is not None:  # a Ray without it gets the plain shutdown
        with contextlib.suppress(Exception):
            kill_monitor(check_alive=False)
    ray.shutdown()


class PhaseIncomplete(Exception):
    """The Tune run of a dataset ended before all its trials did (Ctrl-C, a stopped job)."""


def run(plan: Plan, gpus: dict[str, float]) -> int:
    """The study's steps: open the records, then per (dataset, regime) the search and the re-runs,
    then the summary."""
    tracker = open_tracker(plan)
    attempts = plan.record.attempts
    if attempts:
        from .search import unrecorded_runs
        forgotten = tracker.forget_unfinished(lambda runs: unrecorded_runs(plan.optuna_storage, runs))
        print(f"resuming {plan.name} (run {len(attempts) + 1}): {forgotten} unfinished trial run(s) will be "
              f"trained again", flush=True)
    attempts.append({"started": time.time(), "last": time.time()})
    plan.save()
    summary: dict[str, float] = {}
    try:
        for replicate in range(plan.settings.replicates):
            for dataset in plan.settings.datasets:
                for regime in plan.settings.regimes:
                    summary.update(study_dataset(plan, tracker, dataset, regime, gpus[dataset], replicate))
    except (KeyboardInterrupt, PhaseIncomplete) as interrupt:
        heartbeat(plan)
        print(f"\ninterrupted ({interrupt or 'Ctrl-C'}); finished trials are kept. Continue with:\n"
              f"  python -m study.run --resume --name {plan.name} --output-dir {plan.output_dir}", flush=True)
        stop_ray()
        return 130
    heartbeat(plan)
    summary.update({"study_seconds": plan.record.seconds(), "resumes": float(len(attempts) - 1)})
    tracker.finish_parent(summary)
    plan.record.finished = datetime.now().isoformat(timespec="seconds")
    plan.save()
    stop_ray()
    from .summary import print_summary

    print_summary(plan, list(tracker.child_runs().values()), summary)
    return 0


def heartbeat(plan: Plan) -> None:
    """The current run of the study was alive now (a killed run's time counts up to its last beat)."""
    plan.record.attempts[-1]["last"] = time.time()
    plan.save()


# ---------------------------------------------------------------------------------------------
# The study's MLflow parent run

def open_tracker(plan: Plan):
    """The study's MLflow parent run: created once (with the study's tags, params and artifacts),
    re-attached on resume."""
    from .tracking import StudyTracker, code_version

    record = plan.record
    if record.parent_run_id:
        return StudyTracker(record.tracking_uri, record.experiment_id, record.parent_run_id, plan.name)
    import mlflow
    import optuna
    import ray
    import torch

    from .kernel_grid import kernel_grid_png
    from .search import study_prefix

    artifact_root = (plan.output_dir / "mlartifacts").as_uri() if record.tracking_uri.startswith("sqlite:") else None
    settings = dataclasses.asdict(plan.settings)
    keys = [study_key(d, r.name) for d in plan.settings.datasets for r in plan.settings.regimes]
    tracker = StudyTracker.create(
        record.tracking_uri, plan.name, artifact_root,
        tags={"space": record.space, "code_version": code_version(), "ray_version": ray.__version__,
              "torch_version": torch.__version__, "optuna_version": optuna.__version__,
              "mlflow_version": mlflow.__version__, "optuna_storage": plan.optuna_storage,
              "optuna_studies": ",".join(f"{study_prefix(plan.name, key, r)}-{m}"
                                         for r in range(plan.settings.replicates) for key in keys
                                         for m in plan.settings.methods if m in SEARCHED),
              "ray_storage": record.storage_path, "mlflow.note.content": plan.settings.description},
        params={"space": record.space, "seed": record.seed, "asha": record.asha,
                **({"n_startup_trials": TPE_STARTUP} if record.sampler == "tpe" else {}),
                **{flag_field(flag): getattr(record, flag_field(flag)) for flag, _, _, _ in RECORDED_FLAGS},
                **{k: json.dumps(v) if isinstance(v, (dict, list, tuple)) else v for k, v in settings.items()}})
    tracker.log_artifact_file(plan.space.source, "space")
    tracker.log_artifact_text(json.dumps(record.to_dict(), indent=2, default=str), "study.json")
    png = plan.output_dir / "studies" / f"{plan.name}-kernels.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    samples = {name: arrays.train_x[0] * arrays.scale for name, arrays in plan.datasets.items()}
    tracker.log_artifact_file(kernel_grid_png(samples, png), "kernels")
    record.experiment_id, record.parent_run_id = tracker.experiment_id, tracker.parent_run_id
    plan.save()
    return tracker


# ---------------------------------------------------------------------------------------------
# One (dataset, regime): the search and the re-runs in one Tune run

def study_dataset(plan: Plan, tracker, dataset: str, regime: Regime, gpus: float, replicate: int = 0) -> dict[str, float]:
    """One (dataset, regime, replicate): the equal per-method search, the selection of each method's
    top configs, then the matched re-runs, in one Tune run; records the choice and returns the
    parent run's metrics of this key."""
    from .search import build_searcher, most_reruns, planned_totals, slot_prefix
    from .trainable import MlflowTrialCallback, ProgressCallback

    settings, key = plan.settings.for_regime(regime), study_key(dataset, regime.name)
    mlflow_callback = MlflowTrialCallback(tracker)
    prefix = slot_prefix(replicate)
    ended = {slot: value for slot, value in tracker.ended_slots(dataset, regime.name).items()
             if (slot.startswith(prefix) if prefix else "/" not in slot)}
    searcher = build_searcher(plan, dataset, regime, replicate, plan.optuna_storage, ended, mlflow_callback.settle)
    totals = planned_totals(settings, searcher.seeds, searcher.select_seeds)
    if searcher.looks:  # grows look by look: the cap is what is known
        totals["re-runs"] = f"≤{most_reruns(settings)}"
    selected = sum(len(runs) for m in searcher.searched for runs in searcher.selection_results(m).values())
    done = {"search": searcher.finished_search_trials(), "selection": selected,
            "re-runs": len([s for s in ended if not s.split("/")[-1].startswith("select:")])}
    label = f"{key} r{replicate}" if plan.settings.replicates > 1 else key
    callbacks = [mlflow_callback, ProgressCallback(label, totals, done, settings.metric,
                                                   on_progress=lambda: heartbeat(plan))]
    attempt = len(plan.record.attempts) - 1
    tuner = _tuner(plan, settings, dataset, key, searcher, callbacks, gpus, attempt, replicate)
    started = time.time()
    # Tune keeps one trial pending at a time for a custom searcher (TUNE_MAX_PENDING_TRIALS_PG=auto
    # means 1): on 1-second trials the reused actor was free again before a second one had imported
    # torch, so every smoke trial ran in one actor while a second was started and stopped over and
    # over (11 worker start-ups, 1 used; measured). One pending trial per slot fills every slot.
    slots = _concurrency(plan.record.cpus_per_trial, gpus, plan.record.max_concurrent)
    with _tune_environment(TUNE_MAX_PENDING_TRIALS_PG=str(slots), TUNE_DISABLE_AUTO_CALLBACK_LOGGERS="1"):
        results = tuner.fit()
    wall = time.time() - started
    tracker.reconcile(results)
    summary = _record_choice(plan, tracker, searcher, key, settings.metric, replicate)
    if searcher.looks:
        _print_looks(label, searcher, most_reruns(settings))
    if not attempt:
        summary.update(_overhead(plan, key if not replicate else f"{key}_r{replicate}", results, wall, gpus))
    plan.save()
    if not searcher.finished():
        raise PhaseIncomplete(f"{key}: {done['search']}/{totals['search']} search trials had ended before "
                              f"this run; it stopped before the rest did")
    return summary


def _print_looks(label: str, searcher, most: int) -> None:
    """How auto seeds ended for one key: the verdicts, where each comparison stopped, the re-runs trained."""
    rows = searcher.sequential_summary()
    verdicts = collections.Counter(row["verdict"] for row in rows)
    print(f"[{label}] seeds auto: " + ", ".join(f"{n} {v}" for v, n in verdicts.items()) + f" of {len(rows)} "
          f"comparisons; re-runs {len(searcher.planned_slots)} of at most {most}", flush=True)
    for row in rows:
        print(f"  {row['comparison']:<36} {row['verdict']:<12} at look {row['looks']} ({row['seeds']} seeds a side)"
              + (f", crossed the {row['crossed']} boundary" if row["crossed"] else ""), flush=True)


def _tuner(plan: Plan, settings, dataset: str, key: str, searcher, callbacks: list, gpus: float, attempt: int,
           replicate: int = 0):
    """The Tune run of one key and replicate: the searcher's trials on warm actors, ASHA if asked for."""
    from ray import tune
    from ray.tune.logger import JsonLoggerCallback

    from .trainable import CurriculumASHA, make_trainable, trial_dirname

    scheduler = None
    if plan.record.asha:  # rungs start after the longest curriculum: every judged trial is in its final regime
        scheduler = CurriculumASHA(time_attr="epoch", max_t=settings.epochs,
                                   grace_period=min(settings.epochs, settings.longest_curriculum + 1))
    arrays, corrupted = plan.data(dataset, replicate)
    return tune.Tuner(
        make_trainable({dataset: arrays}, plan.record.cpus_per_trial, gpus,
                       {dataset: corrupted} if corrupted is not None else {}),
        tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=-1,
                                    metric=settings.metric, mode="max", reuse_actors=True,
                                    max_concurrent_trials=plan.record.max_concurrent,
                                    trial_dirname_creator=trial_dirname),
        run_config=tune.RunConfig(
            name=key + (f"-r{replicate}" if replicate else "") + (f"-resume{attempt}" if attempt else ""),
            # Tune's JSON logger only (TUNE_DISABLE_AUTO_CALLBACK_LOGGERS drops its CSV and TensorBoard
            # ones, ~6 s of the driver's CPU in a smoke study): reconcile reads a trial's history back
            # from its result.json.
            storage_path=f"{plan.record.storage_path.rstrip('/')}/{plan.name}", callbacks=[*callbacks, JsonLoggerCallback()],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=plan.record.max_failures), verbose=0))


def _record_choice(plan: Plan, tracker, searcher, key: str, metric: str, replicate: int = 0) -> dict[str, float]:
    """The config each method chose (with the selection that chose it), into the study record and
    onto the parent run. Replicate 0 writes the names the analysis reads (best_trial.<key>.<m>,
    search_trials.<key>.<m>); replicate r ≥ 1 the same with "_r<r>" after the first word."""
    best = searcher.best_trials()
    plan.record.best[key if not replicate else f"{key}/r{replicate}"] = {
        m: {"optuna_trial": t.number, "tune_trial_id": t.user_attrs.get("tune_trial_id"), "value": t.value,
            "val_loss": t.user_attrs.get("val_loss"), "config": t.user_attrs["config"],
            "selection": searcher.selection_summary(m)} for m, t in best.items()}
    suffix = f"_r{replicate}" if replicate else ""
    summary = {f"search_trials{suffix}.{key}.{method}": float(len(study.get_trials(deepcopy=False)))
               for method, study in searcher.studies.items()}
    for method, trial in best.items():
        summary[f"best_{metric}{suffix}.{key}.{method}"] = trial.value
        chosen = [row for row in searcher.selection_summary(method) if row["optuna_trial"] == trial.number]
        if chosen and chosen[0]["select_val_acc"] is not None:
            summary[f"selected_{metric}{suffix}.{key}.{method}"] = chosen[0]["select_val_acc"]
        tracker.set_parent_tag(f"best_trial{suffix}.{key}.{method}", trial.user_attrs.get("tune_trial_id"))
    return summary


def _overhead(plan: Plan, key: str, results, wall: float, gpus: float) -> dict[str, float]:
    """Study overhead: the run's wall time against its trials' own train() time spread over the
    slots that could run them at once (1.0 = no overhead at all)."""
    trial_seconds = sum((r.metrics or {}).get("trial_seconds", (r.metrics or {}).get("time_total_s", 0.0))
                        for r in results)
    if not trial_seconds:
        return {}
    slots = min(_concurrency(plan.record.cpus_per_trial, gpus, plan.record.max_concurrent), len(results))
    ratio = wall / (trial_seconds / slots)
    print(f"[{key}] {wall:.1f} s wall for {trial_seconds:.1f} s of train() in {slots} slots: "
          f"overhead ratio {ratio:.2f}", flush=True)
    return {f"overhead_ratio.{key}": ratio}


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


def _concurrency(cpus: float, gpus: float, max_concurrent: int | None) -> int:
    """How many trials the cluster's resources (and --max-concurrent) let run at once."""
    import ray

    resources = ray.cluster_resources()
    slots = math.floor(resources.get("CPU", 1) / cpus)
    if gpus:
        slots = min(slots, math.floor(resources.get("GPU", 0) / gpus))
    return max(1, min(slots, max_concurrent) if max_concurrent else slots)


def exit_now(code: int) -> NoReturn:
    """End the launcher's process without the interpreter's teardown: freeing the ~10⁶ objects of
    torch, Ray, MLflow, Optuna and pandas one by one took 0.5–1.3 s after the study's last line
    (measured on the 2-core machine, the study already over). What that teardown does that counts
    is done first: the queued MLflow writes land, the exit handlers run (Ray's, MLflow's,
    logging's), and the output is flushed."""
    import atexit

    tracking = sys.modules.get(f"{__package__}.tracking")
    if tracking is not None:
        tracking.flush_writes()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
