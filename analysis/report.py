"""`python -m analysis.report`: the study's answer as tables, plots and one self-contained HTML page.

With no flags it reports the latest study in ./runs (by the study record's mtime) from the
tracking store the study wrote to. It writes report.html (images embedded), summary.md,
summary.csv, trials.csv, repeats.csv and the PNGs to --out (default <output-dir>/reports/<name>/),
attaches them to the study's parent run under report/, and prints the short answer: per method,
the difference in test accuracy to the baseline with its 95% CI, Welch's p and the verdict.

Bad input costs one `error: ...` line and exit status 2: an unknown experiment (the known ones
are listed), a study without finished trials. Missing pieces (no seed repeats, no robustness
metrics, no Optuna storage) give a partial report with a note where the piece would be.
"""

from __future__ import annotations

import argparse
import html
import json
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from . import plots
from . import tables as T
from .load import LoadError, StudyRuns, load_study
from .render import Section, html_table, render_html, render_markdown, strip_tags
from .stats import ALPHA


class ReportError(RuntimeError):
    """Bad input: printed as one line, exit status 2."""


# ---------------------------------------------------------------------------------------------
# Command line

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m analysis.report", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--name", default=None, help="study name (default: the latest study record in --output-dir)")
    p.add_argument("--output-dir", default="runs", help="the study's --output-dir (study records, default store)")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: the study record's, else $MLFLOW_TRACKING_URI, "
                        "else sqlite under --output-dir)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--experiment", default=None, help="MLflow experiment name (its latest study parent run)")
    which.add_argument("--parent-run-id", default=None, help="the study's MLflow parent run id")
    p.add_argument("--out", default=None, help="report directory (default: <output-dir>/reports/<name>/)")
    p.add_argument("--no-log-artifacts", action="store_true", help="do not attach the report to the parent run")
    return p


@dataclass
class Target:
    tracking_uri: str
    experiment: str | None
    parent_run_id: str | None
    record: dict | None
    output_dir: Path


def resolve(args) -> Target:
    """Which study, in which store: flags first, then the study record, then the environment."""
    output_dir = Path(args.output_dir).expanduser().resolve()
    studies = output_dir / "studies"
    name = args.name
    if name is None and not (args.experiment or args.parent_run_id):
        records = sorted(studies.glob("*.json"), key=lambda p: p.stat().st_mtime)
        if not records:
            raise ReportError(f"no study records in {studies}; run `python -m study.run` first, or pass "
                              f"--name/--experiment/--parent-run-id (with --tracking-uri)")
        name = records[-1].stem
    path = studies / f"{name}.json" if name else None
    record = json.loads(path.read_text()) if path and path.is_file() else None
    tracking_uri = (args.tracking_uri or (record or {}).get("tracking_uri")
                    or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{output_dir / 'mlflow.db'}")
    # (the runner's default, study.tracking.default_tracking_uri, without importing Ray and torch)
    parent_run_id = args.parent_run_id
    if parent_run_id is None and args.experiment is None and record and record.get("parent_run_id") \
            and record.get("tracking_uri") == tracking_uri:
        parent_run_id = record["parent_run_id"]  # exactly this study, even if its name was reused
    experiment = None if parent_run_id else (args.experiment or name)
    return Target(tracking_uri, experiment, parent_run_id, record, output_dir)


# ---------------------------------------------------------------------------------------------
# The sections of the report: tables, figures and notes

def _figure(section: Section, draw, *args, path: Path, alt: str, written: list[Path]) -> None:
    try:
        draw(*args, path, alt)
    except plots.NoData as note:
        section.blocks.append(("note", str(note)))
        return
    written.append(path)
    section.blocks.append(("image", path, alt))


def build(runs: StudyRuns, out: Path, study: str) -> tuple[list[Section], dict, list[Path], list[str]]:
    """All sections, the tables, the files written and the printed answer."""
    trials = T.with_derived(runs.trials)
    histories = runs.histories
    datasets = sorted(trials["dataset"].dropna().unique())
    written: list[Path] = []
    many = len(datasets) > 1

    summary = T.summary_table(trials)
    best = T.best_configs(trials)
    clean = T.repeat_summary(trials, "test_acc")
    blurred = T.repeat_summary(trials, "test_acc_blurred")
    controls = T.controls_table(trials, "test_acc")
    repeat_runs = T.repeat_runs(trials)
    frames = {"summary": summary, "trials": runs.trials, "repeats": repeat_runs}

    answer = Section("Answer", "answer")
    best_section = Section("Best configuration per method", "best",
                           "From the search: per method, the completed trial with the best validation accuracy "
                           "(selection never looks at test). Test accuracy of that single trial is shown for "
                           "reference; the seed repeats below are what the comparison rests on.")
    repeat_section = Section("Seed repeats against the baseline", "repeats",
                             f"The best configuration of every method re-run with fresh seeds. Mean ± 95% t "
                             f"interval; Δ = mean(method) − mean(baseline) with the 95% Welch interval; p from "
                             f"Welch's two-sided t-test (unequal variances); p (Holm) adjusts for comparing "
                             f"several methods with one baseline. A verdict says \"significantly\" only when the "
                             f"Holm-adjusted p < {ALPHA}.")
    controls_section = Section("Controls side by side", "controls",
                               "Sharpening against its controls: the same blur levels sharp → blurred (anti), in "
                               "a random order (random_order) and a random level per batch (blur_aug). If "
                               "sharpening does not beat them, its ordering is not what helps.")
    curves = Section("Learning curves", "curves",
                     "Validation accuracy per epoch (validation images are never blurred). Shaded: epochs trained on "
                     "blurred images, labelled with the level (Ln) of a repeat of the best config, or the best "
                     "search trial; dotted line: first epoch on the original images.")
    hyper = Section("Hyperparameters", "hyperparameters",
                    "Validation accuracy of the search trials against the curriculum's parameters, where the "
                    "parameter is used (K and epochs_per_level: blur methods and the step θ schedule; kernel: "
                    "blur methods). Grey band: the baseline's search trials.")
    theta = Section("θ trajectories", "theta",
                    "θ of the annealed activation max(x·tan θ, x): π/4 is a linear network, 0 is ReLU. "
                    "Thick lines: seed repeats; thin: search trials.")
    robust = Section("Blur robustness", "robustness",
                     "Test accuracy on test images blurred at each level of each kernel (level 1 = originals).")
    youden = Section("Clean vs blurred accuracy", "youden",
                     "A Youden-style plot: each completed trial's clean test accuracy against its mean accuracy on "
                     "blurred test images; crosses are method means, dashed lines the medians.")
    importance = Section("Parameter importances", "importance")
    timing = Section("Time per trial", "time",
                     "Left: seconds per trial by the trainer's own clock (trial_seconds: the whole train() call; "
                     "older studies: train_seconds, its epochs). Right: every trial's MLflow run from start to "
                     "end, showing how the trials overlapped on the machine.")
    timing.blocks.append(("html", _study_time(runs.parent.data.metrics)))
    listing = Section("All trials", "trials")
    provenance = Section("Provenance and browsing", "provenance")

    printed: list[str] = []
    for dataset in datasets:
        suffix = f"-{dataset}"
        label = f"{study} · {dataset}"
        of_trials = trials[trials["dataset"] == dataset]
        of_histories = histories[histories["dataset"] == dataset] if len(histories) else histories
        of_clean = clean[clean["dataset"] == dataset]
        of_blurred = blurred[blurred["dataset"] == dataset]
        of_controls = controls[controls["dataset"] == dataset]
        heading = [("h3", dataset)] if many else []

        # --- answer ---
        answer.blocks += heading
        headline, lines = _headline(dataset, of_clean, of_blurred)
        answer.blocks.append(("html", headline))
        printed.append(strip_tags(headline))
        printed += ["  " + line for line in lines]
        if lines:
            compact = T.repeats_for_people(of_clean).drop(columns=["role"])
            answer.blocks.append(("table", compact))
        _figure(answer, plots.forest, {"clean test accuracy": of_clean, "blurred test accuracy": of_blurred},
                path=out / f"forest{suffix}.png", alt=f"{label}: difference to the baseline (seed repeats)",
                written=written)

        # --- tables ---
        best_section.blocks += heading + [("table", T.best_for_people(best[best["dataset"] == dataset]))]
        repeat_section.blocks += heading
        if of_clean.empty:
            repeat_section.blocks.append(("note", _no_repeats_note(of_trials)))
        else:
            repeat_section.blocks += [("h4", "Clean test accuracy"), ("table", T.repeats_for_people(of_clean))]
            if of_blurred["mean"].notna().any():
                repeat_section.blocks += [("h4", "Blurred test accuracy (mean over kernels, levels ≥ 2)"),
                                          ("table", T.repeats_for_people(of_blurred))]
            else:
                repeat_section.blocks.append(("note", "no blur-robustness metrics on the repeats: blurred test "
                                                      "accuracy cannot be compared"))
        controls_section.blocks += heading
        if of_controls.empty:
            controls_section.blocks.append(("note", "needs seed repeats of sharpening and of at least one control "
                                                    "(anti, random_order, blur_aug)"))
        else:
            controls_section.blocks.append(("table", T.controls_for_people(of_controls)))

        # --- figures ---
        both = (of_trials, of_histories)
        for section, draw, name, args, alt in (
                (curves, plots.learning_curves, "learning_curves", both, "validation accuracy per epoch"),
                (hyper, plots.hyperparameters, "hyperparameters", (of_trials,),
                 "validation accuracy against K, epochs_per_level and kernel"),
                (theta, plots.theta_trajectories, "theta", both, "θ per epoch"),
                (robust, plots.robustness_profiles, "robustness", (of_trials,),
                 "test accuracy against test-time blur level"),
                (youden, plots.youden, "youden", (of_trials,), "clean against blurred test accuracy per trial"),
                (timing, plots.trial_times, "trial_times", (of_trials,), "time per trial")):
            section.blocks += heading
            _figure(section, draw, *args, path=out / f"{name}{suffix}.png", alt=f"{label}: {alt}", written=written)

        importance.blocks += heading
        _importance(importance, runs, study, dataset, out / f"importance{suffix}.png", label, written)

    listing.blocks.append(("html", _trial_listing(trials)))
    provenance.blocks.append(("html", _provenance(runs)))
    sections = [answer, best_section, repeat_section, controls_section, curves, hyper, theta, robust, youden,
                importance, timing, listing, provenance]
    return sections, frames, written, printed


def _headline(dataset: str, clean: pd.DataFrame, blurred: pd.DataFrame) -> tuple[str, list[str]]:
    """One paragraph that answers the question for a dataset, and one line per method."""
    if clean.empty or not (clean["method"] == "baseline").any():
        why = ("no seed repeats" if clean.empty else "no baseline repeats")
        return (f"<b>{dataset}</b>: {why}, so no method can be compared with plain training with confidence; "
                f"see the best search trial per method below.", [])
    tested = clean[clean["diff"].notna()]
    n = clean["n"]
    seeds = f"{int(n.min())}" if n.min() == n.max() else f"{int(n.min())}–{int(n.max())}"
    basis = (f"(clean test accuracy, {seeds} seeds per method; Welch's t-test, Holm-adjusted over "
             f"{len(tested)} comparisons, α = {ALPHA})")
    better = _with_verdict(tested, "significantly better")
    curricula = [m for m in better if m in T.CURRICULA]
    if curricula:
        text = (f"<b>{dataset}</b>: {', '.join(curricula)} beat{'s' if len(curricula) == 1 else ''} plain training "
                f"significantly {basis}.")
    else:
        text = f"<b>{dataset}</b>: no curriculum beats plain training significantly {basis}."
    controls = [m for m in better if m not in curricula]
    if controls:
        text += f" Significantly better than the baseline as well: {', '.join(controls)}."
    worse = _with_verdict(tested, "significantly worse")
    if worse:
        text += f" Significantly worse than the baseline: {', '.join(worse)}."
    if blurred["diff"].notna().any():
        up, down = _with_verdict(blurred, "significantly better"), _with_verdict(blurred, "significantly worse")
        parts = ([f"{', '.join(up)} significantly better"] if up else []) + \
                ([f"{', '.join(down)} significantly worse"] if down else [])
        text += (f" On blurred test images: {'; '.join(parts)} than the baseline." if parts else
                 " On blurred test images no method differs significantly from the baseline.")
    return text, T.answer_lines(clean)


def _with_verdict(summary: pd.DataFrame, verdict: str) -> list[str]:
    return summary.loc[summary["verdict"] == verdict, "method"].tolist()


def _study_time(metrics: dict) -> str:
    parts = [f"the study took {metrics['study_seconds']:.0f} s"] if "study_seconds" in metrics else []
    ratios = {k.removeprefix("overhead_ratio."): v for k, v in sorted(metrics.items()) if k.startswith("overhead_ratio.")}
    if ratios:
        parts.append("overhead ratio (phase wall time ÷ its trials' train() time spread over the concurrent "
                     "slots; 1.0 = none): " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
    text = "; ".join(parts)
    return f"<p>{html.escape(text[:1].upper() + text[1:])}.</p>" if parts else ""


def _no_repeats_note(trials: pd.DataFrame) -> str:
    phases = sorted(trials["phase"].dropna().unique())
    return (f"no completed seed repeats (phases present: {', '.join(phases) or 'none'}): the differences to the "
            f"baseline cannot be tested. Run the study with --seed-repeats 3 or more (study.run).")


def _importance(section: Section, runs: StudyRuns, study: str, dataset: str, path: Path, label: str,
                written: list) -> None:
    from .importance import MIN_TRIALS, param_importances

    section.intro = (f"Optuna fANOVA importances (seeded) from the persisted search. The space is conditional, so "
                     f"\"all methods\" uses every completed trial and only the parameters all of them have (method "
                     f"and the shared optimisation ones); a method's own parameters get a panel once it has ≥ "
                     f"{MIN_TRIALS} completed trials.")
    tags = runs.parent.data.tags
    storage = tags.get("optuna_storage")
    names = [n for n in tags.get("optuna_studies", "").split(",") if n]
    wanted = [n for n in names if n.endswith(f"-{dataset}")] or [f"{study}-{dataset}"]
    if not storage:
        section.blocks.append(("note", "the parent run has no optuna_storage tag: importances unavailable"))
        return
    result, notes = param_importances(storage, wanted[0])
    _figure(section, plots.importances, result, path=path,
            alt=f"{label}: parameter importances ({wanted[0]})", written=written)
    section.blocks += [("note", note) for note in notes]


def _trial_listing(trials: pd.DataFrame) -> str:
    columns = [c for c in ("run_name", "phase", "method", "seed", "outcome", "val_acc", "test_acc",
                           "test_acc_blurred", "train_seconds") if c in trials]
    frame = trials[columns].copy()
    frame["config"] = [T.describe(row) for _, row in trials.iterrows()]
    for column in ("val_acc", "test_acc", "test_acc_blurred"):
        if column in frame:
            frame[column] = frame[column].map(T.pct)
    if "train_seconds" in frame:
        frame["train_seconds"] = frame["train_seconds"].map(lambda v: "–" if pd.isna(v) else f"{v:.1f}")
    counts = trials["outcome"].value_counts().to_dict()
    summary = ", ".join(f"{v} {k}" for k, v in counts.items())
    return (f"<details><summary>{len(trials)} trial runs ({html.escape(summary)}); accuracies in %. Also in "
            f"trials.csv.</summary>{html_table(frame)}</details>")


def browse_commands(runs: StudyRuns) -> tuple[str, str]:
    """(how to start the MLflow UI on the store, the page listing every trial of the study)."""
    uri = runs.tracking_uri
    remote = uri.startswith(("http://", "https://"))
    command = (f"mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000" if not remote
               else f"# the tracking server is up: {uri}")
    # Sorted by name, the UI lists every trial as a row (sorted by time it folds them under the parent).
    page = (f"{(uri if remote else 'http://127.0.0.1:5000').rstrip('/')}/#/experiments/{runs.experiment_id}"
            f"/runs?orderByKey=attributes.run_name&orderByAsc=true")
    return command, page


def _provenance(runs: StudyRuns) -> str:
    tags, params = runs.parent.data.tags, runs.parent.data.params
    uri = runs.tracking_uri
    browse, page = browse_commands(runs)
    items = [("tracking URI", uri), ("experiment", f"{runs.experiment_name} (id {runs.experiment_id})"),
             ("parent run", f"{runs.parent_run_id} ({runs.parent.info.status})"),
             ("space", tags.get("space", "?")), ("code version", tags.get("code_version", "?")),
             ("versions", ", ".join(f"{k.removesuffix('_version')} {v}" for k, v in sorted(tags.items())
                                    if k.endswith("_version") and k != "code_version")),
             ("Optuna storage", tags.get("optuna_storage", "–")),
             ("settings", ", ".join(f"{k}={params[k]}" for k in ("epochs", "num_samples", "seed_repeats", "seed")
                                    if k in params)),
             ("loaded", f"{len(runs.trials)} trial runs and {len(runs.histories)} epoch rows in "
                        f"{runs.load_seconds:.2f} s (histories via {runs.history_source})")]
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in items)
    return (f"<table class='kv'>{rows}</table><p>Browse the trials and their curves in the MLflow UI:</p>"
            f"<pre>{html.escape(browse)}</pre><p>then open <a href='{html.escape(page)}'>{html.escape(page)}</a> "
            f"(every trial as a flat list sorted by name; open a run and its <i>Model metrics</i> tab for the "
            f"per-epoch curves; tick several runs and choose <i>Chart view</i> to overlay them).</p>")


# ---------------------------------------------------------------------------------------------

def write_report(runs: StudyRuns, out: Path, study: str, note: str | None = None) -> tuple[Path, list[Path], list[str]]:
    out.mkdir(parents=True, exist_ok=True)
    sections, frames, written, printed = build(runs, out, study)
    if note:
        sections[0].blocks.insert(0, ("note", note))
    for name, frame in frames.items():
        path = out / f"{name}.csv"
        frame.to_csv(path, index=False)
        written.append(path)
    title = f"Curriculum study {study}: does a curriculum beat plain training?"
    subtitle = (f"{len(runs.trials)} trial runs · experiment {runs.experiment_name} · parent run "
                f"{runs.parent_run_id} · report {datetime.now():%Y-%m-%d %H:%M}")
    summary = out / "summary.md"
    summary.write_text(render_markdown(sections, title, subtitle))
    page = out / "report.html"
    page.write_text(render_html(sections, title, subtitle))
    return page, [page, summary, *written], printed


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    try:
        target = resolve(args)
        runs = load_study(target.tracking_uri, target.experiment, target.parent_run_id)
        study = (runs.parent.data.tags.get("study") or (target.record or {}).get("name") or runs.experiment_name)
        if runs.trials.empty:
            raise ReportError(f"study {study!r} (parent run {runs.parent_run_id}) has no trial runs yet")
        outcomes = runs.trials["outcome"].fillna("unknown").value_counts().to_dict()
        if not outcomes.get("completed"):
            raise ReportError(f"study {study!r} has no finished trials ({len(runs.trials)} trial runs: "
                              f"{', '.join(f'{v} {k}' for k, v in outcomes.items())}); nothing to report")
    except (ReportError, LoadError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    note = None
    if target.record is not None and not target.record.get("finished"):
        note = ("the study record has no 'finished' time: the study is still running or was interrupted, so this "
                "report is partial (resume it with python -m study.run --resume)")
    out = Path(args.out).expanduser().resolve() if args.out else target.output_dir / "reports" / study
    page, files, printed = write_report(runs, out, study, note)
    attached = False
    if not args.no_log_artifacts:
        try:
            client = MlflowClient(runs.tracking_uri)
            for path in files:
                client.log_artifact(runs.parent_run_id, str(path), "report")
            attached = True
        except Exception as error:  # a read-only store or an artifact server that is down
            print(f"warning: report not attached to parent run {runs.parent_run_id}: {error}", file=sys.stderr)
    print(f"report: {page}")
    print("\n".join(printed))
    browse, link = browse_commands(runs)
    print(f"browse: {browse}\n        then open {link}")
    print(f"({len(runs.trials)} trial runs loaded in {runs.load_seconds:.2f} s via {runs.history_source}; "
          f"report written in {time.perf_counter() - started:.1f} s"
          f"{f'; attached to parent run {runs.parent_run_id} under report/' if attached else ''})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
