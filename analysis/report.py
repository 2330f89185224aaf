"""`python -m analysis.report`: the study's answer as tables, plots and one self-contained HTML page.

With no flags it reports the latest study in ./runs (by the study record's mtime) from the
tracking store the study wrote to. It writes report.html (images embedded), summary.md, the CSVs
and the PNGs to --out (default <output-dir>/reports/<name>/), attaches them to the study's parent
run under report/, and prints the short answer: per dataset, whether the search effort was equal;
per searched method, its seed repeats' test accuracy, Δ to the tuned baseline with its 95% CI, p,
Holm p, the minimum detectable difference, the TOST p and the verdict (better / worse / equivalent
within ±--margin / inconclusive, with the seeds that would detect Δ and those that would show
equivalence, at the family's α/m); each method's tuning curve against the baseline's
(`analysis.tuning`: the search budget the verdict holds at, where the curves cross); where the
spread comes from (`analysis.variance`: split, configuration, seed; over replicates where the study
has them); then each curriculum against its matched baseline, the crossed direction (each curriculum
at the baseline's shared hyperparameters against the baseline, `analysis.sections_design`) and
sharpening against its controls (paired by seed); where the study re-ran each method's top search
configs on fresh seeds before choosing, what the search's validation accuracy was worth. The config
each method's search chose is read from the parent run's record (tags best_trial.<dataset>.<method>),
never decided again here.

The second endpoint, robustness to common corruptions (MNIST-C / CIFAR-10-C style, logged by every
trial as test_acc_corrupt and one accuracy per corrupted copy): the same answer, matched baselines
and controls on the mean corruption accuracy, each its own Holm family; the per-corruption Δ and
ImageNet-C's mCE against the baseline; a method × corruption heatmap. The console prints it after
the controls, as `[<key>] second endpoint, corruptions: ...`.

Regimes: a study that runs its comparison in several regimes (label noise, class imbalance, a short
budget) gets everything above once per study key — (dataset, regime), titled "mnist5k · noise40";
the standard regime keeps the dataset's name, so a single-regime study reads as before — and the
report opens with the regime table (`analysis.tables.regime_table`, regimes.csv): per method and
regime, Δ vs that regime's baseline [95% CI] and the verdict, with the train-time and peak-memory
ratios beside it; the console prints it first, compact.

The report directory is written whole or not at all: everything goes to a hidden sibling
directory first, which then replaces <out> by rename; a killed report leaves the previous report
(or none), never a half set of files under the report's name, and rerunning completes it.

Bad input costs one `error: ...` line and exit status 2: an unknown flag or a value of the wrong
type, an unknown experiment (the known ones are listed), a tracking URI that cannot be used (checked
as `study.run` checks it), a study without finished trials, a report directory that cannot be
written. Missing pieces (no seed repeats, no robustness
metrics, no Optuna storage) give a partial report with a note where the piece would be.
"""

from __future__ import annotations

import argparse
import errno
import html
import os
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from study.record import StudyRecord, TrackingError, check_tracking_uri, default_tracking_uri, latest, runs_page, split_key
from trainer.config import CONTROLS, METHODS, OneLineParser

from . import looks
from . import plots
from . import sections_design as design
from . import tables as T
from . import tuning
from . import variance
from . import words as W
from .load import LoadError, StudyRuns, key_label, key_order, load_study, with_regime
from .render import Section, html_table, render_html, render_markdown, strip_tags
from .stats import ALPHA


# Why a directory cannot take the report: the user's to fix, so one line (any other OSError is a bug).
UNWRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR, errno.EEXIST)


class ReportError(RuntimeError):
    """Bad input: printed as one line, exit status 2."""


# ---------------------------------------------------------------------------------------------
# Command line

def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m analysis.report", description=__doc__.split("\n\n")[0])
    p.add_argument("--name", default=None, help="study name (default: the latest study record in --output-dir)")
    p.add_argument("--output-dir", default="runs", help="the study's --output-dir (study records, default store; default: runs)")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking URI (default: the study record's, else $MLFLOW_TRACKING_URI, "
                        "else sqlite under --output-dir)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--experiment", default=None, help="MLflow experiment name (its latest study parent run)")
    which.add_argument("--parent-run-id", default=None, help="the study's MLflow parent run id")
    p.add_argument("--out", default=None, help="report directory (default: <output-dir>/reports/<name>/)")
    p.add_argument("--margin", type=float, default=0.5,
                   help="equivalence margin in percentage points of accuracy: a difference whose 90%% CI lies "
                        "within ±margin (TOST p < 0.05) is called equivalent (default: 0.5)")
    p.add_argument("--no-log-artifacts", action="store_true", help="do not attach the report to the parent run")
    return p


@dataclass
class Target:
    tracking_uri: str
    experiment: str | None
    parent_run_id: str | None
    record: StudyRecord | None
    output_dir: Path


def resolve(args) -> Target:
    """Which study, in which store: flags first, then the study record, then the environment."""
    output_dir = Path(args.output_dir).expanduser().resolve()
    if output_dir.exists() and not output_dir.is_dir():
        raise ReportError(f"--output-dir: {output_dir} is a file; pass the directory the study wrote to "
                          f"(its --output-dir, default runs)")
    name = args.name
    if name is None and not (args.experiment or args.parent_run_id):
        name = latest(output_dir)
        if name is None:
            raise ReportError(f"no study records in {output_dir / 'studies'}; run `python -m study.run` first, or "
                              f"pass --name/--experiment/--parent-run-id (with --tracking-uri)")
    record = StudyRecord.read(output_dir, name) if name else None
    tracking_uri = (args.tracking_uri or (record.tracking_uri if record else None)
                    or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(output_dir))
    parent_run_id = args.parent_run_id
    if parent_run_id is None and args.experiment is None and record and record.parent_run_id \
            and record.tracking_uri == tracking_uri:
        parent_run_id = record.parent_run_id  # exactly this study, even if its name was reused
    experiment = None if parent_run_id else (args.experiment or name)
    return Target(tracking_uri, experiment, parent_run_id, record, output_dir)


# ---------------------------------------------------------------------------------------------
# The sections of the report: tables, figures and notes

def _figure(section: Section, draw, *args, path: Path, alt: str, written: list[Path], **kwargs) -> None:
    try:
        draw(*args, path, alt, **kwargs)
    except plots.NoData as note:
        section.blocks.append(("note", str(note)))
        return
    written.append(path)
    section.blocks.append(("image", path, alt))


@dataclass
class Computed:
    """Every table of the report, computed once from the study's runs (raw numbers; they go to CSV)."""
    trials: pd.DataFrame
    histories: pd.DataFrame
    effort: pd.DataFrame
    best: pd.DataFrame
    clean: pd.DataFrame
    blurred: pd.DataFrame
    matched: pd.DataFrame
    controls: pd.DataFrame
    seeds: pd.DataFrame
    by_regime: pd.DataFrame
    curves: pd.DataFrame  # tuning curves, long form (analysis.tuning)
    curves_vs: pd.DataFrame  # each method's tuning curve against the baseline's
    sampler: tuning.Sampler
    spread: pd.DataFrame  # variance components per method (analysis.variance)
    over_replicates: pd.DataFrame  # the headline Δ over whole-pipeline replicates (empty: one replicate)
    corrupt: pd.DataFrame  # the second endpoint: the seed repeats on mean corruption accuracy
    corrupt_matched: pd.DataFrame
    corrupt_controls: pd.DataFrame
    by_corruption: pd.DataFrame  # per corruption: Δ and CE against the baseline, and the mCE
    frames: dict  # name → table written as <name>.csv
    crossed: pd.DataFrame  # each curriculum at the baseline's shared hyperparameters vs the baseline (paired)
    selection: pd.DataFrame  # the top-k candidates on fresh seeds and which was chosen
    looks: pd.DataFrame  # auto seeds: how each comparison ended, replayed (analysis.looks); empty: fixed seeds
    look_paths: pd.DataFrame  # and its statistics look by look

    @property
    def keys(self) -> list[str]:
        """One section set per study key: (dataset, regime); the standard regime's key is the dataset."""
        return sorted(self.trials["key"].dropna().unique(), key=key_order)

    def chosen_runs(self, key: str) -> dict[str, str]:
        """method → the MLflow run id of the search trial the study chose for it, in one key."""
        best = self.best
        return {m: r for k, m, r in zip(best["key"], best["method"], best["best_run_id"]) if k == key and pd.notna(r)}


def compute(runs: StudyRuns, margin: float) -> Computed:
    trials = T.with_derived(runs.trials)
    histories = runs.histories
    if len(histories) and "key" not in histories:
        histories = with_regime(histories.copy())
    tags, metrics, params = runs.parent.data.tags, runs.parent.data.metrics, runs.parent.data.params
    effort = T.search_effort(trials, metrics, params)
    matched = T.matched_table(trials, "test_acc", margin)
    crossed = T.crossed_table(trials, "test_acc", margin)
    selection = T.selection_table(trials)
    controls = T.controls_table(trials, "test_acc", margin)
    by_regime = T.regime_table(trials, margin)
    curves = tuning.tuning_table(trials)
    curves_vs = tuning.tuning_comparison(curves)
    spread = variance.variance_table(trials)
    over_replicates = variance.replicate_summary(trials, "test_acc", margin)
    corrupt = T.repeat_summary(trials, "test_acc_corrupt", margin)
    corrupt_matched = T.matched_table(trials, "test_acc_corrupt", margin)
    corrupt_controls = T.controls_table(trials, "test_acc_corrupt", margin)
    by_corruption = T.corruption_table(trials)
    replayed, look_paths = looks.replay(trials, params)
    frames = {"summary": T.summary_table(trials, tags, metrics, params, margin), "search": effort,
              "matched": matched, "crossed": crossed, "controls": controls, "selection": selection,
              "repeats": T.rerun_runs(trials),
              "regimes": W.with_regime_words(by_regime), "tuning_curves": curves, "tuning_vs_baseline": curves_vs,
              "variance": spread, "replicates": over_replicates, "corruption_answer": corrupt,
              "corruption_matched": corrupt_matched, "corruption_controls": corrupt_controls,
              "corruption_by_type": by_corruption, "trials": runs.trials,
              **({"looks": replayed, "looks_paths": look_paths} if len(replayed) else {})}
    return Computed(trials, histories, effort, T.best_configs(trials, tags, metrics, params),
                    T.repeat_summary(trials, "test_acc", margin), T.repeat_summary(trials, "test_acc_blurred", margin),
                    matched, controls, T.control_seeds(trials, "test_acc"), by_regime, curves, curves_vs,
                    tuning.sampler_of(params), spread, over_replicates, corrupt, corrupt_matched,
                    corrupt_controls, by_corruption, frames, crossed, selection, replayed, look_paths)


def _sections(margin: float, metrics: dict) -> dict[str, Section]:
    """The report's sections in their order, with their intros; their blocks are filled per key."""
    band = f"±{100 * margin:g} pp"
    sections = {}
    sections["regimes"] = regime_section = Section("Regimes", "regimes", markdown=True)
    regime_section.intro = (
        "The same fair comparison run once per regime (label noise, class imbalance, a shorter budget — where "
        "curricula are said to help): each regime has its own searches, chosen configs, seed repeats and "
        "baseline. Per method and regime: Δ = mean(method) − mean(baseline of that regime) in pp of clean test "
        "accuracy, with its 95% Welch interval and the verdict of the answer below (Holm over the regime's "
        f"methods; equivalence margin {band}); beside it the cost: mean train seconds and mean peak memory of "
        "the completed repeats relative to that baseline's (peak memory: CUDA max allocated on a GPU; on a CPU "
        "the process's peak RSS, an upper bound where a Ray actor is reused). The baseline row gives its "
        "accuracy, seconds and MB. Also in regimes.csv.")

    sections["answer"] = answer = Section("Answer", "answer", markdown=True)
    answer.intro = (f"Each searched method's chosen config re-run with fresh seeds, against the baseline's chosen "
                    f"config re-run on the same seeds: tuned against tuned (a failed or diverged re-run stays in, "
                    f"scored as chance accuracy, †). Test accuracy mean ± 95% t interval; "
                    f"Δ = mean(method) − mean(baseline) with its 95% Welch interval; p from Welch's two-sided "
                    f"t-test; p (Holm) adjusts for the family named above each table. MDE: the smallest |Δ| this "
                    f"many seeds detect with 80% power at α = {ALPHA}. TOST p: two one-sided tests against "
                    f"{band}. Verdict: better / worse when the Holm p < {ALPHA}; else equivalent within {band} "
                    f"when the TOST p < {ALPHA}; else inconclusive, with two numbers, each at the family's α/m (m "
                    f"comparisons; the level at which Holm rejects whatever the comparison's rank, so an upper "
                    f"bound): the seeds per side that would detect the observed Δ with 80% power, and those that "
                    f"would show equivalence within {band} with 80% power if Δ and the spread are as observed "
                    f"(none can while |Δ| ≥ the margin). Either may be fewer than the seeds already run. Train "
                    f"time: mean train_seconds of the completed repeats, and its ratio to the baseline's.")
    sections["looks"] = looks.section()
    sections["tuning"] = Section("Tuning curves", "tuning", markdown=True, intro=(
        "How good each method's search gets after k trials, k = 1..n: from the validation accuracies of its n "
        "search trials (the selection metric; a failed or diverged trial scores chance accuracy, as the re-runs "
        "do; one ASHA stopped, its last), the expected best of k random trials of its space (Dodge et al. 2019) "
        "and the median best (Lourie et al. 2023), each with a 95% simultaneous confidence band from opda "
        "(nonparametric: a band for the distribution of a trial's score, carried to the curves; it holds at "
        "every k at once, conservatively where accuracies tie). The bands assume independent draws — a random "
        "search — and assume nothing about the tails: the expected curve's band reaches towards 100 % as k "
        "approaches n (n trials cannot bound the best of n from above) and towards 0 % at small k; the median "
        "curve's band is the tighter one. A tuned-vs-tuned verdict holds at the budget the study searched: "
        "curves that cross say that a larger or smaller search could order the methods differently. Also in "
        "tuning_curves.csv and tuning_vs_baseline.csv."))
    sections["variance"] = Section("Variance: split, configuration, seed", "variance", markdown=True, intro=(
        "How much of the spread of test accuracy comes from the data split (each whole-pipeline replicate "
        "redraws the split, the label-noise and imbalance draws, the search's sampler seed and the training "
        "seeds; Bouthillier et al. 2021), from the configuration chosen (every configuration a method was "
        "re-run at: its own choice, the runners-up of a top-k selection, and for the baseline its matched runs "
        "at each curriculum's shared hyperparameters), and from the training seed: variance components of a "
        "nested random-effects model, estimated by REML (statsmodels MixedLM), as sd in pp and share of the "
        "variance; failed runs score chance. 'all methods': the same with the method as a fixed effect. Where "
        "some runs failed or diverged, the same components over the completed runs only follow (scored: "
        "completed runs): one run at chance can hold most of a pooled variance, and the pair shows whether it does. With "
        "replicates, the headline Δ is also given over them: per replicate, mean(method) − mean(baseline) of "
        "the seed repeats; Δ is their mean, with the paired t interval over replicates (df = replicates − 1), "
        "Holm over the methods, and each replicate's own verdict beside it. Also in variance.csv and "
        "replicates.csv."))
    sections["search"] = Section("Search effort", "search", markdown=True,
                             intro="One Optuna study per dataset and method, the same number of trials for every "
                                   "searched method, handed out round-robin: search effort cannot follow the "
                                   "results. Trials: Optuna's count, recorded on the parent run; the outcome "
                                   "columns count the search runs in MLflow.")
    sections["best"] = Section("Best configuration per method", "best", markdown=True,
                           intro="The search trial each method's config came from, as the study recorded it on "
                                 "the parent run (tags best_trial.<dataset>.<method>, replicate 0 where there are "
                                 "several). Where the study selects (next section), it is the candidate with the "
                                 "best mean validation accuracy over fresh seeds among the search's top configs; "
                                 "otherwise the search's best: validation accuracy, then validation loss, then "
                                 "the earliest trial. Selection never looks at test. Its config is what every "
                                 "re-run used. Its own test accuracy is shown for reference only; the seed "
                                 "repeats are what the comparison rests on.")
    sections["selection"] = design.selection_section()
    sections["matched"] = Section("Matched baselines", "matched", markdown=True,
                              intro="Each curriculum (and variant) against the baseline trained with that method's "
                                    "chosen shared hyperparameters (optimizer, lr, weight decay, batch size) on the "
                                    "same seeds: a paired t-test per seed. It separates what the curriculum does "
                                    "from what its search found for the shared hyperparameters. Verdicts as in the "
                                    "answer; an open one counts paired seeds (pairs), at α/m of this table's "
                                    "family. Train time: ratio to the matched baseline (same batch size).")
    sections["crossed"] = design.crossed_section()
    sections["controls"] = Section("Controls side by side", "controls", markdown=True,
                               intro="Sharpening against its controls — each one sharpening's chosen config with "
                                     "only the method changed, on the same seeds (paired t-test): the same blur levels "
                                     "sharp → blurred (anti), in a random order (random_order) and a random level "
                                     "per batch (blur_aug). Δ = sharpening − control. If sharpening does not beat "
                                     "them, its ordering is not what helps.")
    sections["corruption"] = Section(
        "Robustness to common corruptions (second endpoint)", "corruption", markdown=True,
        intro="The second endpoint: after training, every trial scores the test split under common corruptions "
              "generated offline by trainer/corruptions.py — MNIST-C's 15 at its one severity for 1-channel data, "
              "CIFAR-10-C's 15 at severities 1–5 for colour — the same images for every trial, never seen by "
              "training or selection. test_acc_corrupt is the mean accuracy over every corrupted copy. The three "
              "comparisons of the answer, matched baselines and controls are repeated on it, each its own Holm "
              f"family (never pooled with clean accuracy), with the same verdicts (equivalence margin {band}). Per "
              "corruption: Δ accuracy against the tuned baseline (mean over a corruption's severities and the "
              "runs; the controls from their runs) and ImageNet-C's corruption error normalised per corruption, "
              "CE = error ÷ the baseline's error, averaged into the mCE (baseline = 100; lower is more robust). "
              "Also in corruption_*.csv.")
    sections["curves"] = Section("Learning curves", "curves",
                     "Validation accuracy per epoch, in % (validation images are never blurred). Shaded: epochs "
                     "trained on blurred images (Ln: level n) of a re-run of the chosen config, else the chosen "
                     "search trial; dotted line: first epoch of the final regime (originals, θ = 0, σ = 0). Right "
                     "axis: θ of the annealed activation (π/4 linear, 0 ReLU) and σ of cbs's feature blur.")
    sections["hyperparameters"] = Section("Hyperparameters", "hyperparameters",
                    "Validation accuracy (%) of the search trials against the blur parameters, for the runs that "
                    "use them (K and epochs_per_level: blur methods and the step θ schedule; kernel: blur "
                    "methods). Grey band: the baseline's search trials.")
    sections["theta"] = Section("θ trajectories", "theta",
                    "θ of the annealed activation max(x·tan θ, x): π/4 is a linear network, 0 is ReLU. Colour: the "
                    "method; line style: the θ schedule. Thick lines: re-runs; thin: search trials.")
    sections["robustness"] = Section("Blur robustness", "robustness",
                     "Test accuracy (%) on test images blurred at each level of each kernel (level 1 = originals; "
                     "levels up to 7 where the image allows). Below: the seed repeats on blurred test accuracy "
                     "(mean over kernels, levels ≥ 2) against the baseline, as in the answer.")
    sections["youden"] = Section("Clean vs blurred accuracy", "youden",
                     "A Youden-style plot: each completed trial's clean test accuracy against its mean accuracy on "
                     "blurred test images, in %; crosses are method means, dashed lines the medians.")
    sections["importance"] = Section("Parameter importances", "importance")
    sections["time"] = timing = Section("Time per trial", "time",
                     "Left: seconds per trial by the trainer's own clock (trial_seconds: the whole train() call). "
                     "Right: every trial's MLflow run from start to end, showing how the trials overlapped.")
    timing.blocks.append(("html", _study_time(metrics)))
    sections["trials"] = Section("All trials", "trials")
    sections["provenance"] = Section("Provenance and browsing", "provenance")
    return sections


def build(runs: StudyRuns, out: Path, study: str, margin: float = T.MARGIN
          ) -> tuple[list[Section], dict, list[Path], list[str]]:
    """All sections, the tables (→ CSV), the files written and the printed answer."""
    computed = compute(runs, margin)
    sections = _sections(margin, runs.parent.data.metrics)
    written: list[Path] = []
    printed: list[str] = []
    if computed.trials["regime"].dropna().nunique() > 1 and len(computed.by_regime):
        printed += _regimes(sections["regimes"], computed)
    for key in computed.keys:
        printed += _one_key(sections, computed, runs, key, out, study, margin, written)
    sections["trials"].blocks.append(("html", _trial_listing(computed.trials)))
    sections["provenance"].blocks.append(("html", _provenance(runs)))
    if not sections["regimes"].blocks:
        del sections["regimes"]
    if computed.looks.empty:
        del sections["looks"]
    return list(sections.values()), computed.frames, written, printed


def _regimes(section: Section, computed: Computed) -> list[str]:
    """The regimes side by side (only when the study ran more than one)."""
    by_regime = computed.by_regime
    settings = T.regime_settings(computed.trials)
    section.blocks += [("table", W.regimes_for_people(by_regime))]
    described = [f"{W.regime_column(k)}: {settings[k]}" for k in computed.keys if settings.get(k)]
    if described:
        section.blocks.append(("p", "Regimes: " + "; ".join(described) + "."))
    footnote = W.failure_note([by_regime], by_regime["dataset"].iloc[0] if by_regime["dataset"].nunique() == 1 else None)
    if footnote:
        section.blocks.append(("p", footnote))
    return ["regimes: Δ clean test acc vs the baseline of the same regime, pp [95% CI], verdict; cost vs "
            "that baseline (train time, peak memory)"] + ["  " + line for line in W.regime_lines(by_regime)]


def _one_key(sections: dict[str, Section], computed: Computed, runs: StudyRuns, key: str, out: Path, study: str,
             margin: float, written: list[Path]) -> list[str]:
    """Every section's part for one study key; returns the lines the command line prints for it."""
    name = key_label(key)
    of = lambda frame: frame[frame["key"] == key]  # noqa: E731
    heading = [("h3", name)] if len(computed.keys) > 1 else []
    for section in sections.values():
        if section.anchor not in ("regimes", "trials", "provenance"):
            section.blocks += heading
    curves, curves_vs = of(computed.curves), of(computed.curves_vs)
    printed = _effort_and_answer(sections, of(computed.effort), of(computed.clean), curves_vs, key, margin)
    if len(computed.looks):
        printed += looks.fill(sections["looks"], computed.looks, key)
        _figure(sections["looks"], plots.sequential_paths, of(computed.look_paths), path=out / f"looks-{key}.png",
                alt=f"{study} · {name}: sequential statistics against the boundaries, look by look", written=written)
    printed += _tuning(sections["tuning"], curves, curves_vs, of(computed.effort), computed.sampler, out, key,
                       f"{study} · {name}", written)
    printed += _variance(sections["variance"], of(computed.spread), of(computed.over_replicates),
                         variance.replicates_of(of(computed.trials)), key, margin)
    _forest(sections["answer"], of(computed.clean), of(computed.matched), of(computed.crossed),
            of(computed.controls), out, key, f"{study} · {name}", margin, written)
    sections["best"].blocks.append(("table", W.best_for_people(of(computed.best))))
    printed += _paired(sections["matched"], sections["controls"], of(computed.matched), of(computed.controls),
                       of(computed.seeds), of(computed.trials), key, margin)
    printed += design.crossed(sections["crossed"], of(computed.matched), of(computed.crossed), of(computed.trials),
                              key, margin)
    printed += design.selection(sections["selection"], of(computed.selection), runs.parent.data.params, key)
    printed += _corruption(sections["corruption"], of(computed.corrupt), of(computed.corrupt_matched),
                           of(computed.corrupt_controls), of(computed.by_corruption), out, key, f"{study} · {name}",
                           margin, written)
    histories = of(computed.histories) if len(computed.histories) else computed.histories
    _figures(sections, of(computed.trials), histories, of(computed.blurred), computed.chosen_runs(key), out, key,
             f"{study} · {name}", margin, written)
    _importance(sections["importance"], runs, study, key, list(of(computed.effort)["method"]),
                out / f"importance-{key}.png", f"{study} · {name}", written)
    return printed


def _effort_and_answer(sections: dict[str, Section], effort: pd.DataFrame, clean: pd.DataFrame,
                       curves_vs: pd.DataFrame, key: str, margin: float) -> list[str]:
    """Search effort (equal or not), then the answer: each method's tuned re-runs against the baseline's."""
    name, dataset = key_label(key), split_key(key)[0]
    equal, sentence = T.effort_check(effort)
    shown = html.escape(sentence[:1].upper() + sentence[1:])
    sections["search"].blocks.append(("html", f"<p>{shown}.</p>" if equal else f"<p><b>{shown}.</b></p>"))
    if len(effort):
        sections["search"].blocks.append(("table", W.effort_for_people(effort)))
    printed = [f"[{name}] search: {sentence}"]
    answer = sections["answer"]
    if not equal:
        answer.blocks.append(("note", sentence))
    headline, family = _headline(name, clean, f"±{100 * margin:g} pp", _budget(effort))
    answer.blocks.append(("html", headline))
    printed.append(f"[{name}] " + strip_tags(headline).removeprefix(f"{name}: "))
    if family:
        answer.blocks += [("p", family + "."), ("table", W.answer_for_people(clean, margin, tuning=curves_vs))]
        printed += [f"  {family}:"] + ["  " + line for line in W.answer_lines(clean)]
    footnote = W.failure_note([clean], dataset)
    if footnote:
        answer.blocks.append(("p", footnote))
        printed.append("  " + footnote)
    return printed


def _forest(section: Section, clean: pd.DataFrame, matched: pd.DataFrame, crossed: pd.DataFrame,
            controls: pd.DataFrame, out: Path, key: str, label: str, margin: float, written: list[Path]) -> None:
    panels = {"vs the tuned baseline (Welch)": clean[clean["verdict"] != "reference"],
              "vs each method's matched baseline (paired)": matched,
              "crossed: each method at the baseline's hyperparameters (paired)": crossed,
              "controls: sharpening − control (paired)": controls}
    _figure(section, plots.forest, panels, path=out / f"forest-{key}.png",
            alt=f"{label}: Δ test accuracy with 95% CI and the ±margin band", written=written, margin=margin)


def _paired(matched_section: Section, controls_section: Section, matched: pd.DataFrame, controls: pd.DataFrame,
            seeds: pd.DataFrame, trials: pd.DataFrame, key: str, margin: float) -> list[str]:
    """Matched baselines and controls: paired by seed, each with its Holm family."""
    name, dataset, printed = key_label(key), split_key(key)[0], []
    for section, table, left, right, word, family_args in (
            (matched_section, matched, "method", "matched baseline", "matched baselines",
             dict(versus="its own matched baseline")),
            (controls_section, controls, "curriculum", "control", "controls",
             dict(column="versus", left=", ".join(dict.fromkeys(controls["method"])), versus=None))):
        if table.empty:
            section.blocks.append(("note", _no_pairs_note(trials, word)))
            continue
        text = W.family_text(table, **family_args)
        section.blocks += [("p", text + "."), ("table", W.paired_for_people(table, margin, left, right))]
        printed += [f"[{name}] {word} (paired by seed): {text}"] + ["  " + line for line in W.paired_lines(table)]
        footnote = W.failure_note([table], dataset)
        if footnote:
            section.blocks.append(("p", footnote))
            printed.append("  " + footnote)
    if len(seeds):
        controls_section.blocks += [("h4", "Seed by seed (test accuracy %, Δ = sharpening − control in pp)"),
                                    ("table", W.seeds_for_people(seeds))]
    return printed


def _corruption(section: Section, corrupt: pd.DataFrame, matched: pd.DataFrame, controls: pd.DataFrame,
                by_corruption: pd.DataFrame, out: Path, key: str, label: str, margin: float,
                written: list[Path]) -> list[str]:
    """The second endpoint: the answer, matched baselines and controls again on mean corruption
    accuracy, each its own Holm family; then the per-corruption table (mCE) and heatmap."""
    name, dataset = key_label(key), split_key(key)[0]
    if corrupt.empty or not corrupt["mean"].notna().any():
        section.blocks.append(("note", "no corruption metrics on the seed repeats (runs from before the second "
                                       "endpoint, or trained with --no-corruptions): robustness to corruptions "
                                       "cannot be compared"))
        return []
    headline, family = _headline(name, corrupt, f"±{100 * margin:g} pp", metric="test_acc_corrupt")
    section.blocks.append(("html", headline))
    printed = [f"[{name}] second endpoint, corruptions: " + strip_tags(headline).removeprefix(f"{name}: ")]
    if family:
        section.blocks += [("p", family + "."),
                           ("table", W.answer_for_people(corrupt, margin, measure="corruption acc"))]
        printed += [f"  {family}:"] + ["  " + line for line in W.answer_lines(corrupt)]
    for table, left, right, word, family_args in (
            (matched, "method", "matched baseline", "matched baselines", dict(versus="its own matched baseline")),
            (controls, "curriculum", "control", "controls",
             dict(column="versus", left=", ".join(dict.fromkeys(controls["method"])), versus=None))):
        if table.empty or not table["diff"].notna().any():
            continue
        text = W.family_text(table, metric="test_acc_corrupt", **family_args)
        section.blocks += [("h4", f"Corruptions: {word} (paired by seed)"), ("p", text + "."),
                           ("table", W.paired_for_people(table, margin, left, right, measure="corruption acc"))]
        printed += [f"[{name}] corruptions, {word} (paired by seed): {text}"] + [
            "  " + line for line in W.paired_lines(table)]
    footnote = W.failure_note([corrupt, matched, controls], dataset)
    if footnote:
        section.blocks.append(("p", footnote))
    if len(by_corruption):
        section.blocks += [("h4", "Per corruption (seed repeats; controls: their runs)"),
                           ("table", W.corruption_for_people(by_corruption))]
    _figure(section, plots.corruption_heatmap, by_corruption, path=out / f"corruption-{key}.png",
            alt=f"{label}: Δ accuracy vs the baseline under each corruption", written=written)
    return printed


def _figures(sections: dict[str, Section], trials: pd.DataFrame, histories: pd.DataFrame, blurred: pd.DataFrame,
             chosen: dict[str, str], out: Path, key: str, label: str, margin: float, written: list[Path]) -> None:
    both = (trials, histories)
    for anchor, draw, name, args, alt, extra in (
            ("curves", plots.learning_curves, "learning_curves", both, "validation accuracy per epoch",
             {"chosen": chosen}),
            ("hyperparameters", plots.hyperparameters, "hyperparameters", (trials,),
             "validation accuracy against K, epochs_per_level and kernel", {}),
            ("theta", plots.theta_trajectories, "theta", both, "θ per epoch", {}),
            ("robustness", plots.robustness_profiles, "robustness", (trials,),
             "test accuracy against test-time blur level", {"chosen": chosen}),
            ("youden", plots.youden, "youden", (trials,), "clean against blurred test accuracy per trial", {}),
            ("time", plots.trial_times, "trial_times", (trials,), "time per trial", {})):
        _figure(sections[anchor], draw, *args, path=out / f"{name}-{key}.png", alt=f"{label}: {alt}",
                written=written, **extra)
    robust = sections["robustness"]
    if blurred["mean"].notna().any():
        robust.blocks += [("p", W.family_text(blurred, metric="test_acc_blurred") + "."),
                          ("table", W.answer_for_people(blurred, margin))]
    else:
        robust.blocks.append(("note", "no blur-robustness metrics on the seed repeats: blurred test "
                                      "accuracy cannot be compared"))


def _budget(effort: pd.DataFrame) -> str:
    """The search budget the verdicts hold at: "8 trials per method" (a range if unequal)."""
    counts = effort["trials"].dropna().astype(int) if len(effort) else pd.Series(dtype=int)
    if counts.empty:
        return ""
    low, high = counts.min(), counts.max()
    return f"{low} trials per method" if low == high else f"{low}–{high} trials per method (unequal)"


def _tuning(section: Section, curves: pd.DataFrame, curves_vs: pd.DataFrame, effort: pd.DataFrame,
            sampler: "tuning.Sampler", out: Path, key: str, label: str, written: list[Path]) -> list[str]:
    """The tuning curves of one study key: the sampler's warning, the figure, the table; the CLI lines."""
    trials = effort["trials"].min() if len(effort) else (curves["n"].min() if len(curves) else float("nan"))
    note = tuning.sampler_note(sampler, trials)
    if note:
        section.blocks.append(("note", note))
    _figure(section, plots.tuning_curves, curves, path=out / f"tuning_curves-{key}.png",
            alt=f"{label}: best validation accuracy after k search trials, with 95% simultaneous bands",
            written=written)
    if curves.empty:
        return []
    section.blocks.append(("table", W.tuning_for_people(curves, curves_vs)))
    printed = [f"[{key_label(key)}] tuning curves ({sampler.label}; expected best validation accuracy of k "
               f"trials vs the baseline's, 95% simultaneous bands):"]
    printed += ["  " + line for line in W.tuning_lines(curves_vs)]
    return printed + ([f"  note: {note}"] if note else [])


def _variance(section: Section, spread: pd.DataFrame, over_replicates: pd.DataFrame, replicates: list[str],
              key: str, margin: float) -> list[str]:
    """The variance table, and the headline over replicates where there are several; the CLI lines."""
    name, printed = key_label(key), []
    if len(replicates) < 2:
        one = (f"one replicate{f' ({replicates[0]})' if replicates else ''}: the split's variance is not measured — "
               f"every run used the same data split, test set and label-noise draw, so no interval in this report "
               f"contains the variance of a redrawn split (run the study with replicates to measure it)")
        section.blocks.append(("note", one))
        printed.append(f"[{name}] variance: {one}")
    elif len(over_replicates):
        family = W.family_text(over_replicates)
        section.blocks += [("h4", f"The answer over {len(replicates)} replicates"),
                           ("p", family + " (one replicate mean per method and replicate)."),
                           ("table", W.replicates_for_people(over_replicates, margin))]
        held = [m for m, h in zip(over_replicates["method"], over_replicates["held_in_every_replicate"]) if h]
        printed.append(f"[{name}] over {len(replicates)} replicates: {family}")
        printed += [f"  {row.method:<14} Δ {W.interval(row.diff, row.diff_low, row.diff_high)} pp  "
                    f"{W.p_equals(row.p)} (Holm {W.pvalue(row.p_holm)})  {row.verdict}"
                    for row in over_replicates.itertuples(index=False)]
        printed.append(f"  verdict held in every replicate: {', '.join(held) if held else 'none'}")
    if len(spread):
        section.blocks += [("h4", "Where the spread comes from (test accuracy)"),
                           ("table", W.variance_for_people(spread))]
        # The line scores every run, as the answer does; the table has the completed runs' row beside it.
        pooled = spread[(spread["method"] == "all methods") & (spread["scored"] == variance.EVERY_RUN)]
        if len(pooled):
            row = pooled.iloc[0]
            parts = [f"{part} {W.component(row[f'{part}_sd'], row[f'{part}_share'])}"
                     for part in ("split", "configuration", "seed")]
            printed.append(f"[{name}] spread of test accuracy (all methods): " + ", ".join(parts))
    else:
        section.blocks.append(("note", "no ended re-runs: no spread to decompose"))
    return printed


def _headline(dataset: str, clean: pd.DataFrame, band: str, budget: str = "",
              metric: str = "test_acc") -> tuple[str, str | None]:
    """(one paragraph answering the question for a dataset — or a regime of one, titled
    "mnist5k · noise40" — on `metric`, the Holm family sentence or None)."""
    if clean.empty or not (clean["method"] == "baseline").any():
        why = "no seed repeats" if clean.empty else "no baseline repeats"
        return (f"<b>{html.escape(dataset)}</b>: {why}, so no method can be compared with plain training with confidence; "
                f"see the chosen search trial per method below.", None)
    tested = clean[clean["verdict"] != "reference"]
    groups: dict[str, list[str]] = {}
    for method, verdict in zip(tested["method"], tested["verdict"]):
        kind = verdict.split(" ")[0]
        shown = method + (f" ({verdict.split('(', 1)[1]}" if kind in ("inconclusive", "not") and "(" in verdict else "")
        groups.setdefault(kind, []).append(shown)
    n = clean["n_run"]
    seeds = f"{int(n.min())}" if n.min() == n.max() else f"{int(n.min())}–{int(n.max())}"
    parts = [f"better than the tuned baseline: {', '.join(groups['better'])}" if groups.get("better")
             else "no method is better than the tuned baseline"]
    if groups.get("worse"):
        parts.append(f"worse: {', '.join(groups['worse'])}")
    if groups.get("equivalent"):
        parts.append(f"equivalent within {band}: {', '.join(groups['equivalent'])}")
    if groups.get("inconclusive"):
        parts.append(f"inconclusive: {', '.join(groups['inconclusive'])}")
    if groups.get("not"):
        parts.append(f"not testable: {', '.join(groups['not'])}")
    chosen = f"; configurations chosen by a search of {budget}" if budget else ""
    text = (f"<b>{html.escape(dataset)}</b>: {html.escape('; '.join(parts))} ({T.METRIC_WORDS[metric]}, {seeds} "
            f"seeds per method{html.escape(chosen)}).")
    return text, W.family_text(clean, metric=metric)


def _study_time(metrics: dict) -> str:
    parts = [f"the study took {metrics['study_seconds']:.0f} s"] if "study_seconds" in metrics else []
    ratios = {k.removeprefix("overhead_ratio."): v for k, v in sorted(metrics.items()) if k.startswith("overhead_ratio.")}
    if ratios:
        parts.append("overhead ratio (phase wall time ÷ its trials' train() time spread over the concurrent "
                     "slots; 1.0 = none): " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
    text = "; ".join(parts)
    return f"<p>{html.escape(text[:1].upper() + text[1:])}.</p>" if parts else ""


def _no_pairs_note(trials: pd.DataFrame, word: str) -> str:
    phases = ", ".join(sorted(trials["phase"].dropna().unique())) or "none"
    need = ("seed repeats of a curriculum or variant and the baseline re-run at its shared hyperparameters"
            if word == "matched baselines" else
            f"seed repeats of sharpening and at least one control ({', '.join(CONTROLS)}) on the same seeds")
    return (f"no {word} to compare (phases present: {phases}): needs {need}. Re-runs start when every search "
            f"trial has ended; a study with --seed-repeats 0 has none.")


def _importance(section: Section, runs: StudyRuns, study: str, key: str, methods: list[str], path: Path,
                label: str, written: list) -> None:
    from .importance import MIN_TRIALS, param_importances

    section.intro = (f"Optuna fANOVA importances (seeded), within each method, from its own Optuna study (one per "
                     f"dataset and method): how much each of the method's parameters and the shared ones mattered "
                     f"to its validation accuracy. A method gets a panel once its study has ≥ {MIN_TRIALS} "
                     f"completed trials.")
    tags = runs.parent.data.tags
    storage = tags.get("optuna_storage")
    if not storage:
        section.blocks.append(("note", "the parent run has no optuna_storage tag: importances unavailable"))
        return
    # Optuna studies are named <study>-<key>-<method>; the standard key (the dataset) is a prefix of the
    # other regimes' keys, so only a method name may follow it.
    prefix = f"{study}-{key}-"
    names = [n for n in tags.get("optuna_studies", "").split(",")
             if n.startswith(prefix) and n.removeprefix(prefix) in METHODS]
    studies = {n.removeprefix(prefix): n for n in names} or {m: prefix + m for m in methods}
    result, notes = param_importances(storage, studies)
    _figure(section, plots.importances, result, path=path, alt=f"{label}: parameter importances per method",
            written=written)
    section.blocks += [("note", note) for note in notes]


def _trial_listing(trials: pd.DataFrame) -> str:
    several = "regime" in trials and trials["regime"].nunique() > 1
    columns = [c for c in ("run_name", *(["regime"] if several else []), "phase", "method", "matched_to", "seed",
                           "outcome", "val_acc", "test_acc", "test_acc_blurred", "test_acc_corrupt", "train_seconds",
                           "peak_memory_mb")
               if c in trials]
    frame = trials[columns].copy()
    frame["config"] = [f"{T.describe(row)} {T.shared(row)}" for _, row in trials.iterrows()]
    for column in ("val_acc", "test_acc", "test_acc_blurred", "test_acc_corrupt"):
        if column in frame:
            frame[column] = frame[column].map(W.pct)
    if "train_seconds" in frame:
        frame["train_seconds"] = frame["train_seconds"].map(lambda v: "–" if pd.isna(v) else f"{v:.1f}")
    if "peak_memory_mb" in frame:
        frame["peak_memory_mb"] = frame["peak_memory_mb"].map(lambda v: "–" if pd.isna(v) else f"{v:.0f}")
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
    page = f"{(uri if remote else 'http://127.0.0.1:5000').rstrip('/')}/{runs_page(runs.experiment_id)}"
    return command, page


def _provenance(runs: StudyRuns) -> str:
    tags, params = runs.parent.data.tags, runs.parent.data.params
    uri = runs.tracking_uri
    browse, page = browse_commands(runs)
    settings = [f"{k}={params[k]}" + (" (search trials per method)" if k == "num_samples" else "")
                for k in ("epochs", "num_samples", "seed_repeats", "seed", "select_top", "select_seeds", "replicates")
                if k in params]
    sampler = tuning.sampler_of(params)
    items = [("tracking URI", uri), ("experiment", f"{runs.experiment_name} (id {runs.experiment_id})"),
             ("parent run", f"{runs.parent_run_id} ({runs.parent.info.status})"),
             ("space", tags.get("space", "?")), ("code version", tags.get("code_version", "?")),
             ("versions", ", ".join(f"{k.removesuffix('_version')} {v}" for k, v in sorted(tags.items())
                                    if k.endswith("_version") and k != "code_version")),
             ("Optuna storage", tags.get("optuna_storage", "–")),
             ("Optuna studies", tags.get("optuna_studies", "–").replace(",", ", ")),
             ("sampler", sampler.label + ("" if sampler.recorded else " (not recorded on the parent run: assumed)")),
             ("settings", ", ".join(settings)),
             ("loaded", f"{len(runs.trials)} trial runs and {len(runs.histories)} epoch rows in "
                        f"{runs.load_seconds:.2f} s (histories via {runs.history_source})")]
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in items)
    return (f"<table class='kv'>{rows}</table><p>Browse the trials and their curves in the MLflow UI:</p>"
            f"<pre>{html.escape(browse)}</pre><p>then open <a href='{html.escape(page)}'>{html.escape(page)}</a> "
            f"(every trial as a flat list sorted by name; open a run and its <i>Model metrics</i> tab for the "
            f"per-epoch curves; tick several runs and choose <i>Chart view</i> to overlay them).</p>")


# ---------------------------------------------------------------------------------------------
# Writing: whole or not at all

def _write(runs: StudyRuns, out: Path, study: str, note: str | None, margin: float) -> tuple[list[Path], list[str]]:
    sections, frames, written, printed = build(runs, out, study, margin)
    if note:
        sections[0].blocks.insert(0, ("note", note))
    for name, frame in frames.items():
        path = out / f"{name}.csv"
        frame.to_csv(path, index=False)
        written.append(path)
    title = f"Curriculum study {study}: does a curriculum beat plain training?"
    subtitle = (f"{len(runs.trials)} trial runs · experiment {runs.experiment_name} · parent run "
                f"{runs.parent_run_id} · equivalence margin ±{100 * margin:g} pp · report "
                f"{datetime.now():%Y-%m-%d %H:%M}")
    (out / "summary.md").write_text(render_markdown(sections, title, subtitle))
    (out / "report.html").write_text(render_html(sections, title, subtitle))
    return [out / "report.html", out / "summary.md", *written], printed


def write_report(runs: StudyRuns, out: Path, study: str, note: str | None = None, margin: float = T.MARGIN
                 ) -> tuple[Path, list[Path], list[str]]:
    """Write the report into a hidden sibling of `out`, then rename it onto `out`: (page, files, printed).

    A report killed before the rename leaves `.<name>.partial-*` (removed by the next report) and the
    previous `out` untouched. Between the two renames of the swap `out` is briefly absent; a report
    killed exactly there leaves the previous one as `.<name>.old-*`, which the next report puts back
    before it starts."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in sorted(out.parent.glob(f".{out.name}.partial-*")):
        shutil.rmtree(stale, ignore_errors=True)
    for old in sorted(out.parent.glob(f".{out.name}.old-*")):
        if out.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, out)
    staging = out.parent / f".{out.name}.partial-{os.getpid()}-{time.time_ns()}"
    staging.mkdir()
    try:
        files, printed = _write(runs, staging, study, note, margin)
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{os.getpid()}-{time.time_ns()}"
            os.replace(out, old)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    files = [out / path.relative_to(staging) for path in files]
    return out / "report.html", files, printed


def _check_store(uri: str, where: str) -> None:
    """The study runner's own check: seconds, not MLflow's retries or its traceback."""
    try:
        check_tracking_uri(uri)
    except TrackingError as error:
        raise ReportError(f"{where}: {error}") from None


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    try:
        if not args.margin > 0:
            raise ReportError(f"--margin: must be > 0 percentage points, got {args.margin:g}")
        if args.tracking_uri:  # a flag's value is checked before anything is looked up with it
            _check_store(args.tracking_uri, "--tracking-uri")
        target = resolve(args)
        if not args.tracking_uri:
            _check_store(target.tracking_uri, "the study's tracking URI")
        runs = load_study(target.tracking_uri, target.experiment, target.parent_run_id)
        study = (runs.parent.data.tags.get("study") or (target.record.name if target.record else None) or runs.experiment_name)
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
    if target.record is not None and not target.record.finished:
        note = ("the study record has no 'finished' time: the study is still running or was interrupted, so this "
                "report is partial (resume it with python -m study.run --resume)")
    out = Path(args.out).expanduser().resolve() if args.out else target.output_dir / "reports" / study
    try:
        page, files, printed = write_report(runs, out, study, note, args.margin / 100)
    except OSError as error:  # write_report leaves nothing behind when it fails
        if error.errno not in UNWRITABLE:  # anything else is a bug, not the user's directory: its traceback
            raise
        flag = "--out" if args.out else "--output-dir"
        print(f"error: {flag}: cannot write the report to {out} ({error.strerror or error}); choose a "
              f"writable directory", file=sys.stderr)
        return 2
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
