"""The answer as tables: best config per method, seed repeats against the baseline, the controls.

Every function takes the trial frame of `analysis.load` and returns a pandas frame with raw
numbers (fractions, as logged; they go to CSV); `markdown` renders any of them for people, with
accuracies in % and differences in percentage points (pp).
"""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pandas as pd

from study.config import ANNEAL_METHODS, BLUR_METHODS, TrialConfig

from .stats import ALPHA, holm, mean_ci, verdict, welch

CURRICULA = ("sharpening", "annealing", "combined")
CONTROLS = ("anti", "random_order", "blur_aug")  # sharpening's levels, in other orders
# Reading order of the tables: the reference, the curricula, then the controls.
METHOD_ORDER = ("baseline", *CURRICULA, *CONTROLS)
ROBUSTNESS = re.compile(r"^test_acc_(?P<kernel>[a-z]+)_L(?P<level>\d+)$")
SHARED = ("optimizer", "lr", "weight_decay", "batch_size")
CONFIG_FIELDS = tuple(field.name for field in dataclasses.fields(TrialConfig))


def role(method: str) -> str:
    return "reference" if method == "baseline" else "curriculum" if method in CURRICULA else "control"


def method_order(methods) -> list[str]:
    methods = list(dict.fromkeys(methods))
    known = [m for m in METHOD_ORDER if m in methods]
    return known + sorted(m for m in methods if m not in METHOD_ORDER)


def robustness_columns(trials: pd.DataFrame) -> dict[str, list[tuple[int, str]]]:
    """kernel → [(level, column)] of the blur-robustness metrics present, by level."""
    found: dict[str, list[tuple[int, str]]] = {}
    for column in trials.columns:
        match = ROBUSTNESS.match(str(column))
        if match:
            found.setdefault(match["kernel"], []).append((int(match["level"]), column))
    return {kernel: sorted(levels) for kernel, levels in sorted(found.items())}


def with_derived(trials: pd.DataFrame) -> pd.DataFrame:
    """Adds test_acc_blurred: the mean test accuracy over every kernel at every level ≥ 2."""
    trials = trials.copy()
    for column in ("val_acc", "test_acc", "train_seconds"):  # missing metrics read as NaN, not KeyError
        if column not in trials:
            trials[column] = math.nan
    blurred = [column for levels in robustness_columns(trials).values() for level, column in levels if level >= 2]
    trials["test_acc_blurred"] = trials[blurred].mean(axis=1, skipna=False) if blurred else math.nan
    return trials


def completed(trials: pd.DataFrame, phase: str | None = None) -> pd.DataFrame:
    """Trials that trained to the end (outcome tag); their metrics may still be missing (NaN)."""
    done = trials[trials["outcome"] == "completed"]
    return done if phase is None else done[done["phase"] == phase]


def describe(row) -> str:
    """The parameters that matter to the row's method (as TrialConfig.describe), then the shared ones."""
    method = row.get("method")
    keys = ["K", "epochs_per_level", "kernel"] if method in BLUR_METHODS else []
    if method in ANNEAL_METHODS:
        schedule = row.get("theta_schedule")
        keys += ["theta_schedule", "theta0"]
        keys += ["anneal_epochs"] if schedule in ("linear", "cosine") else []
        keys += ["K", "epochs_per_level"] if schedule == "step" and method not in BLUR_METHODS else []
    parts = []
    for key in [*keys, *SHARED]:
        value = row.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        parts.append(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------

def best_configs(trials: pd.DataFrame, metric: str = "val_acc") -> pd.DataFrame:
    """Per dataset and method: the search trial with the best validation accuracy. Of tied trials, the
    one whose config the seed repeats ran (the runner breaks ties by Ray's result order), else the earliest."""
    trials = with_derived(trials)
    rows = []
    for dataset, of_dataset in trials.groupby("dataset", sort=True):
        search = of_dataset[of_dataset["phase"] == "search"]
        done = completed(search)
        for method in method_order(search["method"]):
            mine = done[done["method"] == method]
            row = {"dataset": dataset, "method": method, "role": role(method),
                   "search_trials": int((search["method"] == method).sum()), "search_completed": len(mine)}
            if len(mine) and metric in mine and mine[metric].notna().any():
                best = _pick_best(mine, metric, of_dataset[of_dataset["phase"] == "repeat"])
                row.update({"best_run": best["run_name"], "best_run_id": best["run_id"], "config": describe(best),
                            "val_acc": best[metric], "test_acc": best["test_acc"],
                            "test_acc_blurred": best["test_acc_blurred"]})
            rows.append(row)
    columns = ["dataset", "method", "role", "search_trials", "search_completed", "best_run", "best_run_id",
               "config", "val_acc", "test_acc", "test_acc_blurred"]
    return pd.DataFrame(rows, columns=columns)


def _config_key(row) -> tuple:
    return tuple((name, row.get(name)) for name in CONFIG_FIELDS if name != "seed")


def _pick_best(trials: pd.DataFrame, metric: str, repeats: pd.DataFrame):
    tied = trials[trials[metric] == trials[metric].max()]
    repeated = {_config_key(row) for _, row in repeats.iterrows()}
    for _, row in tied.iterrows():
        if _config_key(row) in repeated:
            return row
    return tied.iloc[0]


def repeat_summary(trials: pd.DataFrame, metric: str = "test_acc", reference: str = "baseline") -> pd.DataFrame:
    """Per dataset and method, from the seed repeats: mean ± 95% CI of `metric` and the Welch
    difference to `reference` with Holm-adjusted p-values over the dataset's methods."""
    trials = with_derived(trials)
    repeats = completed(trials, "repeat")
    rows = []
    for dataset, of_dataset in repeats.groupby("dataset", sort=True):
        values = {m: of_dataset.loc[of_dataset["method"] == m, metric].to_numpy(float)
                  for m in method_order(of_dataset["method"])}
        base = values.get(reference)
        differences = {m: welch(v, base) for m, v in values.items() if m != reference and base is not None}
        adjusted = dict(zip(differences, holm([d.p for d in differences.values()])))
        for method, v in values.items():
            summary = mean_ci(v)
            row = {"dataset": dataset, "method": method, "role": role(method), "metric": metric,
                   "n": summary.n, "mean": summary.mean, "sd": summary.sd, "ci95": summary.half_width,
                   "low": summary.low, "high": summary.high}
            if method == reference:
                row["verdict"] = "reference"
            elif method in differences:
                d = differences[method]
                row.update({"diff": d.diff, "diff_low": d.low, "diff_high": d.high, "p_welch": d.p,
                            "p_holm": adjusted[method], "welch_df": d.df,
                            "verdict": verdict(d, adjusted[method])})
            else:
                row["verdict"] = f"no {reference} repeats to compare with"
            rows.append(row)
    columns = ["dataset", "method", "role", "metric", "n", "mean", "sd", "ci95", "low", "high", "diff",
               "diff_low", "diff_high", "p_welch", "p_holm", "welch_df", "verdict"]
    return pd.DataFrame(rows, columns=columns)


def controls_table(trials: pd.DataFrame, metric: str = "test_acc", curriculum: str = "sharpening") -> pd.DataFrame:
    """Sharpening against each of its controls (same levels, other orders), from the repeats."""
    trials = with_derived(trials)
    repeats = completed(trials, "repeat")
    rows = []
    for dataset, of_dataset in repeats.groupby("dataset", sort=True):
        ours = of_dataset.loc[of_dataset["method"] == curriculum, metric].to_numpy(float)
        controls = [m for m in CONTROLS if (of_dataset["method"] == m).any()]
        if not len(ours) or not controls:
            continue
        differences = {m: welch(ours, of_dataset.loc[of_dataset["method"] == m, metric].to_numpy(float))
                       for m in controls}
        adjusted = dict(zip(differences, holm([d.p for d in differences.values()])))
        mine = mean_ci(ours)
        for control, d in differences.items():
            theirs = mean_ci(of_dataset.loc[of_dataset["method"] == control, metric].to_numpy(float))
            rows.append({"dataset": dataset, "curriculum": curriculum, "control": control, "metric": metric,
                         "curriculum_n": mine.n, "curriculum_mean": mine.mean, "curriculum_ci95": mine.half_width,
                         "control_n": theirs.n, "control_mean": theirs.mean, "control_ci95": theirs.half_width,
                         "diff": d.diff, "diff_low": d.low, "diff_high": d.high, "p_welch": d.p,
                         "p_holm": adjusted[control], "verdict": verdict(d, adjusted[control])})
    columns = ["dataset", "curriculum", "control", "metric", "curriculum_n", "curriculum_mean", "curriculum_ci95",
               "control_n", "control_mean", "control_ci95", "diff", "diff_low", "diff_high", "p_welch",
               "p_holm", "verdict"]
    return pd.DataFrame(rows, columns=columns)


def summary_table(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per dataset and method: the best config, then the repeats (clean and blurred test accuracy)."""
    best = best_configs(trials)
    keys = ["dataset", "method"]
    out = best.rename(columns={"val_acc": "best_val_acc", "test_acc": "best_test_acc",
                               "test_acc_blurred": "best_test_acc_blurred"})
    for metric, prefix in (("test_acc", "repeat_test_acc"), ("test_acc_blurred", "repeat_test_acc_blurred")):
        repeats = repeat_summary(trials, metric)
        repeats = repeats.drop(columns=["role", "metric", "sd", "low", "high", "welch_df"])
        repeats = repeats.rename(columns={c: f"{prefix}_{c}" for c in repeats.columns if c not in keys})
        out = out.merge(repeats, on=keys, how="outer")
    out["role"] = out["method"].map(role)
    order = {m: i for i, m in enumerate(method_order(out["method"]))}
    return out.sort_values(["dataset", "method"], key=lambda c: c.map(order) if c.name == "method" else c,
                           kind="stable").reset_index(drop=True)


def repeat_runs(trials: pd.DataFrame) -> pd.DataFrame:
    """The seed-repeat runs, one row each: what the repeat statistics are computed from."""
    repeats = with_derived(trials)
    repeats = repeats[repeats["phase"] == "repeat"]
    columns = [c for c in ("dataset", "method", "seed", "run_name", "run_id", "outcome", "val_acc", "test_acc",
                           "test_acc_blurred", "test_f1_macro", "train_seconds", "trial_seconds") if c in repeats]
    return repeats[columns].sort_values(["dataset", "method", "seed"]).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# For people

def pct(value, digits: int = 2) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{100 * value:.{digits}f}"


def pp(value, digits: int = 2) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    text = f"{100 * value:+.{digits}f}"
    return f"{0:+.{digits}f}" if float(text) == 0 else text  # no "-0.00" for a rounding-level difference


def pvalue(value) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def mean_pm(mean, half) -> str:
    if mean is None or not np.isfinite(mean):
        return "–"
    return pct(mean) + (f" ± {pct(half)}" if half is not None and np.isfinite(half) else " (n=1)")


def interval(diff, low, high) -> str:
    if diff is None or not np.isfinite(diff):
        return "–"
    return pp(diff) + (f" [{pp(low)}, {pp(high)}]" if np.isfinite(low) else "")


def best_for_people(best: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "method": best["method"], "role": best["role"],
        "search trials (completed/run)": [f"{c}/{t}" for c, t in zip(best["search_completed"], best["search_trials"])],
        "best config (by val acc)": best["config"].fillna("–"),
        "val acc %": best["val_acc"].map(pct), "test acc %": best["test_acc"].map(pct),
        "blurred test acc %": best["test_acc_blurred"].map(pct)})


def repeats_for_people(summary: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "method": summary["method"], "role": summary["role"], "seeds": summary["n"],
        "mean ± 95% CI %": [mean_pm(m, h) for m, h in zip(summary["mean"], summary["ci95"])],
        "Δ vs baseline pp [95% CI]": [interval(d, lo, hi) for d, lo, hi in
                                      zip(summary["diff"], summary["diff_low"], summary["diff_high"])],
        "p (Welch)": summary["p_welch"].map(pvalue), "p (Holm)": summary["p_holm"].map(pvalue),
        "verdict": summary["verdict"]})


def controls_for_people(controls: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "control": controls["control"],
        "control mean ± 95% CI %": [mean_pm(m, h) for m, h in zip(controls["control_mean"], controls["control_ci95"])],
        "curriculum mean ± 95% CI %": [mean_pm(m, h) for m, h in
                                       zip(controls["curriculum_mean"], controls["curriculum_ci95"])],
        "Δ curriculum − control pp [95% CI]": [interval(d, lo, hi) for d, lo, hi in
                                               zip(controls["diff"], controls["diff_low"], controls["diff_high"])],
        "p (Welch)": controls["p_welch"].map(pvalue), "p (Holm)": controls["p_holm"].map(pvalue),
        "verdict": controls["verdict"]})


def markdown(frame: pd.DataFrame) -> str:
    def cell(value) -> str:
        text = "–" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def answer_lines(summary: pd.DataFrame, metric: str = "test acc") -> list[str]:
    """One line per method: Δ vs baseline ± CI, p and the verdict (the CLI's short answer)."""
    lines = []
    for row in summary.itertuples(index=False):
        if row.verdict == "reference":
            lines.append(f"{row.method:<13} {metric} {mean_pm(row.mean, row.ci95)} % (n={row.n}) reference")
        else:
            lines.append(f"{row.method:<13} Δ {interval(row.diff, row.diff_low, row.diff_high)} pp  "
                         f"p={pvalue(row.p_welch)} (Holm {pvalue(row.p_holm)})  {row.verdict}")
    return lines


__all__ = ["CURRICULA", "CONTROLS", "METHOD_ORDER", "ALPHA", "role", "method_order", "robustness_columns",
           "with_derived", "completed", "describe", "best_configs", "repeat_summary", "controls_table",
           "summary_table", "repeat_runs", "markdown", "best_for_people", "repeats_for_people",
           "controls_for_people", "answer_lines", "pct", "pp", "pvalue"]
