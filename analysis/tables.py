"""The answer as tables: search effort, the config each method's search chose, the seed repeats
against the baseline, every curriculum against its matched baseline, sharpening against its controls.

Every function takes the trial frame of `analysis.load` (and the parent run's record, where the
study wrote one) and returns a pandas frame of raw numbers — accuracies as fractions, as logged;
they go to CSV. The `*_for_people` functions render them: accuracies in %, differences in
percentage points (pp). What a method is (its role, its own fields, how it is described) comes
from `trainer.config`; which config the search chose comes from the parent run's `best_trial.*`
tags, the runner's record — never decided again here.

The comparisons (statistics in `analysis.stats`):
- tuned vs tuned: each searched method's seed repeats against the baseline's (Welch's t-test),
  Holm-adjusted over the dataset's family of methods;
- matched baseline: a curriculum's repeats against the baseline run at that curriculum's best
  shared hyperparameters on the same seeds (paired t-test), Holm over the curricula;
- crossed: the other direction — each curriculum run at the baseline's best shared hyperparameters
  against the baseline's repeats on the same seeds (paired t-test), Holm over the curricula;
- controls: sharpening's repeats against anti / random_order / blur_aug run from sharpening's
  best config on the same seeds (paired t-test), Holm over the controls — this isolates ordering.
A re-run that did not complete (diverged, failed, stopped) stays in: it scores chance accuracy
(1/classes) and is counted ("4/5 completed") — dropping the seeds a method failed on would
flatter it.

The second endpoint, robustness to common corruptions (`trainer.corruptions`: MNIST-C-style for
1 channel, CIFAR-10-C-style for 3): the same three comparisons on `test_acc_corrupt`, the mean
accuracy over every corrupted copy of the test split — each call of a table function is its own
Holm family, so the second endpoint never shares one with clean accuracy. `corruption_table` adds
the per-corruption picture against the baseline: Δ accuracy and ImageNet-C's corruption error,
normalised per corruption (CE_c = error_c(method) / error_c(baseline), its mean the mCE).

Regimes: a study runs the whole comparison once per (dataset, regime), and every table is computed
per study key (`study.record.study_key`: the dataset for the standard regime, "<dataset>-<regime>"
otherwise) — a Holm family never mixes regimes, a slot is unique within its (dataset, regime), a
baseline is compared only within its regime. Every row carries `dataset`, `regime` and `key`.
`regime_table` puts the regimes side by side: Δ vs the baseline of the same regime with its verdict,
and the cost (train seconds, peak memory) relative to that baseline.
"""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd

from trainer.config import (CONTROLS, DATASET_CLASSES, FIELD_NAMES, METHOD_TABLE, SEARCHED, SHARED, TrialConfig,
                          method_order, role)
from study.record import ENDED, split_key  # the study record's words
from trainer.corruptions import CIFAR_C, MNIST_C

from .load import key_order, with_regime
from .stats import ALPHA, MARGIN, Difference, fill_failed, holm, mean_ci, paired, planned, verdict, welch

ROBUSTNESS = re.compile(r"^test_acc_(?P<kernel>[a-z]+)_L(?P<level>\d+)$")
# A corruption's accuracy: test_acc_corrupt_<corruption> (MNIST-C) or ..._<corruption>_s<severity> (CIFAR-10-C).
CORRUPTION = re.compile(r"^test_acc_corrupt_(?P<corruption>[a-z_]+?)(?:_s(?P<severity>\d+))?$")
CLASSES = DATASET_CLASSES  # chance accuracy = 1 / classes
METRIC_WORDS = {"test_acc": "clean test accuracy", "test_acc_blurred": "blurred test accuracy",
                "test_acc_corrupt": "mean corruption accuracy"}


def chance(dataset) -> float:
    return 1.0 / CLASSES.get(dataset, 10)


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value)) and value is not pd.NA


# ---------------------------------------------------------------------------------------------
# The trial frame, completed

def robustness_columns(trials: pd.DataFrame) -> dict[str, list[tuple[int, str]]]:
    """kernel → [(level, column)] of the blur-robustness metrics present, by level."""
    found: dict[str, list[tuple[int, str]]] = {}
    for column in trials.columns:
        match = ROBUSTNESS.match(str(column))
        if match and trials[column].notna().any():
            found.setdefault(match["kernel"], []).append((int(match["level"]), column))
    return {kernel: sorted(levels) for kernel, levels in sorted(found.items())}


def corruption_columns(trials: pd.DataFrame) -> dict[str, list[tuple[int | None, str]]]:
    """corruption → [(severity, column)] of the corruption metrics present, in the sets' order
    (severity None: MNIST-C's one)."""
    found: dict[str, list[tuple[int | None, str]]] = {}
    for column in trials.columns:
        match = CORRUPTION.match(str(column))
        if match and trials[column].notna().any():
            severity = int(match["severity"]) if match["severity"] else None
            found.setdefault(match["corruption"], []).append((severity, column))
    severe = any(severity is not None for levels in found.values() for severity, _ in levels)
    order = {name: i for i, name in enumerate(CIFAR_C if severe else MNIST_C)}  # the set's own order
    return {name: sorted(found[name], key=lambda sc: sc[0] or 0)
            for name in sorted(found, key=lambda n: (order.get(n, len(order)), n))}


def with_derived(trials: pd.DataFrame) -> pd.DataFrame:
    """Missing tags and metrics as NaN columns (never a KeyError), and test_acc_blurred: the mean test
    accuracy over every kernel at every level ≥ 2 the dataset has (digits 2..4, 28-px data 2..7)."""
    trials = trials.copy()
    for column in ("phase", "method", "dataset", "seed", "outcome", "slot", "matched_to", "trial_id", "run_name",
                   "run_id", "val_acc", "val_loss", "test_acc", "test_acc_corrupt", "train_seconds", "trial_seconds",
                   "peak_memory_mb"):
        if column not in trials:
            trials[column] = math.nan
    with_regime(trials)
    trials["test_acc_blurred"] = math.nan
    for dataset, rows in trials.groupby("dataset", sort=False):
        blurred = [column for levels in robustness_columns(rows).values() for level, column in levels if level >= 2]
        if blurred:
            trials.loc[rows.index, "test_acc_blurred"] = rows[blurred].mean(axis=1, skipna=False)
    return trials


def completed(trials: pd.DataFrame, phase: str | None = None) -> pd.DataFrame:
    """Trials that trained to the end (outcome tag); their metrics may still be missing (NaN)."""
    done = trials[trials["outcome"] == "completed"]
    return done if phase is None else done[done["phase"] == phase]


def config_of(row) -> TrialConfig | None:
    """The TrialConfig a run trained with, from its params (a method's own fields and the shared
    ones; anything absent takes the default, which the method does not use anyway)."""
    values = {name: row.get(name) for name in FIELD_NAMES if _present(row.get(name))}
    try:
        return TrialConfig.from_dict(values)
    except Exception:  # a run from another code version: described from its raw params instead
        return None


def describe(row) -> str:
    """`sharpening K=4 epochs_per_level=1 kernel=box`: the method and the fields it uses (TrialConfig.describe)."""
    config = config_of(row)
    return config.describe() if config is not None else str(row.get("method"))


def shared(row) -> str:
    """The shared hyperparameters of a run: `optimizer=sgd lr=0.02 weight_decay=0.0005 batch_size=64`."""
    parts = []
    for key in SHARED:
        value = row.get(key)
        if _present(value):
            parts.append(f"{key}={value:.3g}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------
# What the parent run recorded

def recorded_choices(parent_tags: dict) -> dict[tuple[str, str], str]:
    """(study key, method) → Tune trial id of the search trial the study chose (tags
    best_trial.<key>.<method>; the key is the dataset for the standard regime)."""
    chosen = {}
    for tag, value in parent_tags.items():
        if tag.startswith("best_trial.") and tag.count(".") >= 2:
            _, key, method = tag.split(".", 2)
            chosen[(key, method)] = value
    return chosen


def searched_methods(trials: pd.DataFrame, parent_params: dict | None = None) -> list[str]:
    """The study's searched methods: its `methods` param (a JSON list), else those with search runs."""
    methods = []
    try:
        methods = [m for m in json.loads((parent_params or {}).get("methods", "[]")) if m in SEARCHED]
    except (TypeError, ValueError):
        pass
    if "phase" in trials:
        methods += [m for m in trials.loc[trials["phase"] == "search", "method"].dropna() if m not in CONTROLS]
    return method_order(methods)


def study_keys(trials: pd.DataFrame, metrics: dict | None = None) -> list[str]:
    """The study keys (dataset, or dataset-regime) with runs or a recorded search, by dataset, the
    standard regime first."""
    found = set(with_regime(trials.copy())["key"].dropna()) if "dataset" in trials else set()
    found |= {name.split(".")[1] for name in (metrics or {}) if name.startswith("search_trials.")}
    return sorted(found, key=key_order)


def _where(key: str) -> dict:
    """The identity columns of a study key's rows."""
    dataset, regime = split_key(key)
    return {"dataset": dataset, "regime": regime, "key": key}


IDENTITY = ["dataset", "regime", "key"]


def search_effort(trials: pd.DataFrame, parent_metrics: dict | None = None,
                  parent_params: dict | None = None) -> pd.DataFrame:
    """Per study key (dataset, regime) and searched method: the search trials the study recorded
    (Optuna's count, parent metric search_trials.<key>.<m>), the search runs in the store by outcome,
    and the target num_samples."""
    parent_metrics, parent_params = parent_metrics or {}, parent_params or {}
    trials = with_derived(trials)
    target = parent_params.get("num_samples")
    target = int(float(target)) if _present(target) else math.nan
    rows = []
    for key in study_keys(trials, parent_metrics):
        search = trials[(trials["key"] == key) & (trials["phase"] == "search")]
        for method in searched_methods(trials, parent_params):
            mine = search[search["method"] == method]
            outcomes = mine["outcome"].value_counts()
            recorded = parent_metrics.get(f"search_trials.{key}.{method}")
            rows.append({**_where(key), "method": method, "role": role(method), "num_samples": target,
                         "trials": int(recorded) if recorded is not None else len(mine),
                         "recorded": recorded is not None, "runs": len(mine),
                         **{outcome: int(outcomes.get(outcome, 0)) for outcome in ENDED},
                         "running": int(len(mine) - sum(outcomes.get(o, 0) for o in ENDED))})
    columns = [*IDENTITY, "method", "role", "num_samples", "trials", "recorded", "runs", *ENDED, "running"]
    return pd.DataFrame(rows, columns=columns)


def effort_check(effort: pd.DataFrame) -> tuple[bool, str]:
    """(equal, one sentence): whether every searched method of one study key had the same number of
    search trials, and the space's num_samples."""
    if effort.empty:
        return False, "no search trials recorded"
    counts = dict(zip(effort["method"], effort["trials"]))
    target = effort["num_samples"].iloc[0]
    equal = len(set(counts.values())) == 1
    if equal and (not _present(target) or next(iter(counts.values())) == target):
        return True, (f"equal search effort: {next(iter(counts.values()))} trials for each of {len(counts)} "
                      f"searched methods")
    listed = ", ".join(f"{m} {n}" for m, n in counts.items())
    wanted = f" (num_samples = {int(target)} per method)" if _present(target) else ""
    return False, (f"UNEQUAL SEARCH EFFORT: {listed}{wanted}. Differences between methods may reflect search "
                   f"effort, not the methods; finish the study (python -m study.run --resume) before reading "
                   f"the comparison")


def best_configs(trials: pd.DataFrame, parent_tags: dict | None = None, parent_metrics: dict | None = None,
                 parent_params: dict | None = None) -> pd.DataFrame:
    """Per study key and searched method: the search trial the study chose (parent tag
    best_trial.<key>.<m>: validation accuracy, then validation loss, then the earliest — the runner's
    rule), with its config, its validation scores and, for reference only, its own test accuracy."""
    trials = with_derived(trials)
    choices = recorded_choices(parent_tags or {})
    metrics = parent_metrics or {}
    rows = []
    for key in study_keys(trials, metrics):
        of_dataset = trials[trials["key"] == key]
        for method in searched_methods(trials, parent_params):
            row = {**_where(key), "method": method, "role": role(method),
                   "best_trial_id": choices.get((key, method)),
                   "recorded_val_acc": metrics.get(f"best_val_acc.{key}.{method}", math.nan)}
            trial_id = row["best_trial_id"]
            found = of_dataset[of_dataset["trial_id"] == trial_id] if trial_id else of_dataset.iloc[0:0]
            if trial_id is None:
                row["note"] = "no choice recorded in the parent run (the search has not finished)"
            elif found.empty:
                row["note"] = f"the chosen trial {trial_id} has no run in the store"
            else:
                best = found.iloc[-1]
                row.update({"best_run": best["run_name"], "best_run_id": best["run_id"],
                            "optuna_trial": best.get("optuna_trial"), "config": describe(best),
                            "shared": shared(best), "val_acc": best["val_acc"], "val_loss": best["val_loss"],
                            "test_acc": best["test_acc"], "test_acc_blurred": best["test_acc_blurred"]})
            rows.append(row)
    columns = [*IDENTITY, "method", "role", "best_trial_id", "best_run", "best_run_id", "optuna_trial", "config",
               "shared", "val_acc", "val_loss", "recorded_val_acc", "test_acc", "test_acc_blurred", "note"]
    return pd.DataFrame(rows, columns=columns)


# ---------------------------------------------------------------------------------------------
# Re-runs: seed repeats, matched baselines, controls

def reruns(trials: pd.DataFrame) -> pd.DataFrame:
    """Every re-run that has ended (phases repeat and control), one row per slot (the last run of a
    slot, should a slot have been run twice), with `group`: what the run is compared as —
    "repeat:<method>", "control:<control>~<curriculum>", "control:baseline~<method>" (the baseline at
    a method's shared hyperparameters) or "control:<method>~baseline" (a method at the baseline's)."""
    trials = with_derived(trials)
    runs = trials[trials["phase"].isin(["repeat", "control"]) & trials["outcome"].isin(ENDED)
                  & trials["seed"].notna()].copy()
    if runs.empty:
        runs["group"] = pd.Series(dtype=object)
        return runs
    matched = runs["matched_to"].where(runs["matched_to"].notna(), "").astype(str)
    runs["group"] = np.where(runs["phase"] == "repeat", "repeat:" + runs["method"].astype(str),
                             "control:" + runs["method"].astype(str) + "~" + matched)
    key = runs["slot"].where(runs["slot"].notna(), runs["group"] + ":s" + runs["seed"].astype(str))
    runs = runs.assign(_key=key).sort_values("start_time" if "start_time" in runs else "_key", kind="stable")
    runs = runs.drop_duplicates(["key", "_key"], keep="last").drop(columns="_key")  # slots: unique per key
    return runs.sort_values(["key", "group", "seed"], key=lambda c: c.map(key_order) if c.name == "key" else c,
                            kind="stable").reset_index(drop=True)


def _scored(runs: pd.DataFrame, metric: str) -> pd.Series:
    """`metric` of each run, chance accuracy where the run did not complete (or lacks the metric).
    A metric no completed run has (no robustness profile logged) is missing, not chance: all NaN."""
    if runs.empty:
        return pd.Series(dtype=float)
    values = pd.to_numeric(runs[metric], errors="coerce").to_numpy(float) if metric in runs else np.full(len(runs), np.nan)
    ok = (runs["outcome"] == "completed").to_numpy()
    if not np.isfinite(values[ok]).any():
        return pd.Series(np.nan, index=runs.index)
    scores = np.empty(len(runs))
    for dataset in runs["dataset"].unique():
        where = (runs["dataset"] == dataset).to_numpy()
        scores[where] = fill_failed(values[where], ok[where], chance(dataset)).values
    return pd.Series(scores, index=runs.index)


def _outcome_words(runs: pd.DataFrame) -> str:
    """"1 diverged, 1 failed" for the runs that did not complete; "" if all did."""
    counts = runs.loc[runs["outcome"] != "completed", "outcome"].value_counts()
    return ", ".join(f"{n} {outcome}" for outcome, n in counts.items())


def _seconds(runs: pd.DataFrame, metric: str = "train_seconds") -> float:
    """Mean `metric` (train_seconds, peak_memory_mb) of the runs that completed (a diverged run stops
    early: its time would flatter)."""
    if metric not in runs:
        return math.nan
    values = pd.to_numeric(completed(runs)[metric], errors="coerce").dropna()
    return float(values.mean()) if len(values) else math.nan


def _stats_columns(prefix: str, runs: pd.DataFrame, scores) -> dict:
    summary = mean_ci(np.asarray(scores, dtype=float))
    return {f"{prefix}n_run": len(runs), f"{prefix}n_completed": int((runs["outcome"] == "completed").sum()),
            f"{prefix}failed": _outcome_words(runs), f"{prefix}mean": summary.mean, f"{prefix}sd": summary.sd,
            f"{prefix}ci95": summary.half_width, f"{prefix}train_seconds": _seconds(runs),
            f"{prefix}peak_memory_mb": _seconds(runs, "peak_memory_mb")}


def _difference_columns(d: Difference, p_holm: float) -> dict:
    return {"test": d.kind, "diff": d.diff, "diff_low": d.low, "diff_high": d.high, "p": d.p, "p_holm": p_holm,
            "mde": d.mde, "margin": d.margin, "p_tost": d.p_tost, "alpha_adjusted": d.alpha_adjusted,
            "seeds_to_detect": d.seeds_to_detect, "seeds_for_equivalence": d.seeds_for_equivalence,
            "verdict": verdict(d, p_holm)}


def _adjusted(differences: dict) -> tuple[dict, dict]:
    """(key → Holm-adjusted p over the family, key → the difference with its seed counts re-planned
    at ALPHA / m), m = the comparisons tested in the family (`analysis.stats`: the Bonferroni level,
    at which Holm rejects whatever the rank)."""
    family = max(1, sum(math.isfinite(d.p) for d in differences.values()))
    return (dict(zip(differences, holm([d.p for d in differences.values()]))),
            {key: planned(d, ALPHA / family) for key, d in differences.items()})


def _ratio(a: float, b: float) -> float:
    return a / b if math.isfinite(a) and math.isfinite(b) and b > 0 else math.nan


STAT_COLUMNS = ["n_run", "n_completed", "failed", "mean", "sd", "ci95", "train_seconds", "peak_memory_mb"]
DIFF_COLUMNS = ["test", "diff", "diff_low", "diff_high", "p", "p_holm", "mde", "margin", "p_tost", "alpha_adjusted",
                "seeds_to_detect", "seeds_for_equivalence", "verdict"]


def repeat_summary(trials: pd.DataFrame, metric: str = "test_acc", margin: float = MARGIN,
                   reference: str = "baseline") -> pd.DataFrame:
    """Per study key (dataset, regime) and searched method, from its seed repeats: mean ± 95% CI of
    `metric` (failed runs scored chance), and mean(method) − mean(reference) by Welch's t-test (tuned
    against tuned) with Holm-adjusted p over the key's methods, MDE, TOST p against ±margin and the
    verdict; the mean train_seconds and peak_memory_mb of the completed repeats and their ratios to
    the reference's of the same key (cost_ratio, memory_ratio)."""
    runs = reruns(trials)
    repeats = runs[runs["phase"] == "repeat"]
    rows = []
    for key in sorted(repeats["key"].dropna().unique(), key=key_order):
        of_dataset = repeats[repeats["key"] == key]
        groups = {m: of_dataset[of_dataset["method"] == m] for m in method_order(of_dataset["method"])}
        scores = {m: _scored(g, metric) for m, g in groups.items()}
        base = scores.get(reference)
        differences = {m: welch(s, base, margin=margin) for m, s in scores.items()
                       if m != reference and base is not None}
        adjusted, differences = _adjusted(differences)
        base_seconds = _seconds(groups[reference]) if reference in groups else math.nan
        base_memory = _seconds(groups[reference], "peak_memory_mb") if reference in groups else math.nan
        for method, group in groups.items():
            row = {**_where(key), "method": method, "role": role(method), "metric": metric,
                   **_stats_columns("", group, scores[method])}
            row["cost_ratio"] = _ratio(row["train_seconds"], base_seconds)
            row["memory_ratio"] = _ratio(row["peak_memory_mb"], base_memory)
            if method == reference:
                row["verdict"] = "reference"
            elif method in differences:
                row.update(_difference_columns(differences[method], adjusted[method]))
            else:
                row["verdict"] = f"not testable (no {reference} repeats)"
            rows.append(row)
    columns = [*IDENTITY, "method", "role", "metric", *STAT_COLUMNS, "cost_ratio", "memory_ratio", *DIFF_COLUMNS]
    return pd.DataFrame(rows, columns=columns)


def _replicates(runs: pd.DataFrame) -> pd.Series:
    """Each run's whole-pipeline replicate as a string ("0" where the store has none)."""
    if "replicate" not in runs:
        return pd.Series("0", index=runs.index, dtype=object)
    return runs["replicate"].where(runs["replicate"].notna(), "0").astype(str)


def _replicate_order(replicate: str) -> tuple:
    return len(replicate), replicate  # "2" before "10"


def _pairs(of_dataset: pd.DataFrame, left: str, right: str) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """The runs of groups `left` and `right` on the (replicate, seed) both have, aligned; and how many
    runs of either group had no partner. Seeds pair within a replicate only: every replicate may
    reuse the seeds, and a seed of one replicate shares nothing with the same seed of another."""
    a, b = (of_dataset[of_dataset["group"] == group] for group in (left, right))
    a, b = (runs.set_axis(pd.MultiIndex.from_arrays([_replicates(runs), runs["seed"]])) for runs in (a, b))
    pairs = sorted(set(a.index) & set(b.index), key=lambda rs: (_replicate_order(rs[0]), rs[1]))
    unpaired = len(set(a.index) ^ set(b.index))
    return a.loc[pairs].reset_index(drop=True), b.loc[pairs].reset_index(drop=True), unpaired


def _seed_list(runs: pd.DataFrame) -> str:
    """"1,2,3"; with several replicates "r0/1,r0/2,r1/1" (a seed names a run only within its replicate)."""
    replicates = _replicates(runs)
    if replicates.nunique() > 1:
        return ",".join(f"r{r}/{int(s)}" for r, s in zip(replicates, runs["seed"]))
    return ",".join(str(int(s)) for s in runs["seed"])


def _paired_table(trials: pd.DataFrame, metric: str, margin: float, plan) -> pd.DataFrame:
    """Rows of paired comparisons: plan(methods present) yields (left method, right method, left
    group, right group) per study key; Holm over the key's rows."""
    runs = reruns(trials)
    rows = []
    for key in sorted(runs["key"].dropna().unique(), key=key_order):
        of_dataset = runs[runs["key"] == key]
        compared = {}
        for left, right, left_group, right_group in plan(set(of_dataset["group"])):
            a, b, unpaired = _pairs(of_dataset, left_group, right_group)
            if a.empty:
                continue
            sa, sb = _scored(a, metric), _scored(b, metric)
            compared[(left, right)] = (a, b, unpaired, sa, sb, paired(sa.to_numpy(), sb.to_numpy(), margin=margin))
        adjusted, planned_differences = _adjusted({key: value[-1] for key, value in compared.items()})
        for (left, right), (a, b, unpaired, sa, sb, _) in compared.items():
            d = planned_differences[(left, right)]
            row = {**_where(key), "method": left, "versus": right, "role": role(left), "metric": metric,
                   "pairs": len(a), "unpaired": unpaired, "seeds": _seed_list(a)}
            row.update(_stats_columns("method_", a, sa))
            row.update(_stats_columns("versus_", b, sb))
            row["versus_shared"] = shared(b.iloc[0])
            row["cost_ratio"] = _ratio(row["method_train_seconds"], row["versus_train_seconds"])
            row["memory_ratio"] = _ratio(row["method_peak_memory_mb"], row["versus_peak_memory_mb"])
            row.update(_difference_columns(d, adjusted[(left, right)]))
            rows.append(row)
    sides = [f"{side}{c}" for side in ("method_", "versus_") for c in STAT_COLUMNS]
    columns = [*IDENTITY, "method", "versus", "role", "metric", "pairs", "unpaired", "seeds", *sides,
               "versus_shared", "cost_ratio", "memory_ratio", *DIFF_COLUMNS]
    return pd.DataFrame(rows, columns=columns)


def matched_table(trials: pd.DataFrame, metric: str = "test_acc", margin: float = MARGIN) -> pd.DataFrame:
    """Each curriculum and variant against its matched baseline — the baseline at the method's best
    shared hyperparameters, on the same seeds — by the paired t-test; Holm over the dataset's methods.
    Isolates the curriculum from the hyperparameters its search found."""
    def plan(groups):
        for method in method_order(g.split(":", 1)[1] for g in groups if g.startswith("repeat:")):
            if role(method) in ("curriculum", "variant") and f"control:baseline~{method}" in groups:
                yield method, "baseline", f"repeat:{method}", f"control:baseline~{method}"
    return _paired_table(trials, metric, margin, plan)


def crossed_table(trials: pd.DataFrame, metric: str = "test_acc", margin: float = MARGIN) -> pd.DataFrame:
    """The crossed direction of matched_table: each curriculum and variant re-run at the baseline's
    chosen shared hyperparameters (group "control:<method>~baseline") against the baseline's seed
    repeats on the same seeds, by the paired t-test: Δ = method − baseline; Holm over the key's
    methods. With matched_table it says whether a curriculum's difference holds at either method's
    hyperparameters, or only at those its own search found."""
    def plan(groups):
        crossed = [g.split(":", 1)[1].rsplit("~", 1)[0] for g in groups
                   if g.startswith("control:") and g.endswith("~baseline")]
        for method in method_order(crossed):
            if role(method) in ("curriculum", "variant") and "repeat:baseline" in groups:
                yield method, "baseline", f"control:{method}~baseline", "repeat:baseline"
    return _paired_table(trials, metric, margin, plan)


def controls_table(trials: pd.DataFrame, metric: str = "test_acc", margin: float = MARGIN) -> pd.DataFrame:
    """Each curriculum against its controls — its best config with only the method changed (same
    levels in other orders), on the same seeds — by the paired t-test: Δ = curriculum − control.
    Holm over the dataset's controls. Isolates the ordering of the curriculum."""
    def plan(groups):
        for control in CONTROLS:
            curriculum = METHOD_TABLE[control].matched_to
            if f"control:{control}~{curriculum}" in groups and f"repeat:{curriculum}" in groups:
                yield curriculum, control, f"repeat:{curriculum}", f"control:{control}~{curriculum}"
    return _paired_table(trials, metric, margin, plan)


def control_seeds(trials: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """Seed by seed: each curriculum's repeat and its controls on that seed (scored; outcome kept)."""
    runs = reruns(trials)
    rows = []
    for control in CONTROLS:
        curriculum = METHOD_TABLE[control].matched_to
        for key in sorted(runs["key"].dropna().unique(), key=key_order):
            a, b, _ = _pairs(runs[runs["key"] == key], f"repeat:{curriculum}", f"control:{control}~{curriculum}")
            for (_, left), (_, right), sa, sb in zip(a.iterrows(), b.iterrows(), _scored(a, metric), _scored(b, metric)):
                rows.append({**_where(key), "curriculum": curriculum, "control": control, "seed": int(left["seed"]),
                             "curriculum_value": sa, "curriculum_outcome": left["outcome"],
                             "control_value": sb, "control_outcome": right["outcome"], "diff": sa - sb})
    columns = [*IDENTITY, "curriculum", "control", "seed", "curriculum_value", "curriculum_outcome",
               "control_value", "control_outcome", "diff"]
    return pd.DataFrame(rows, columns=columns)


CORRUPTION_COLUMNS = [*IDENTITY, "method", "role", "corruption", "severities", "n_run", "n_completed", "accuracy",
                      "diff", "error", "relative_error"]
ALL_CORRUPTIONS = "all"  # the row of a method's means over its corruptions: accuracy, Δ and mCE


def corruption_table(trials: pd.DataFrame, reference: str = "baseline") -> pd.DataFrame:
    """Per study key, method and corruption, from the seed repeats (the controls: their runs; a run
    that did not complete scores chance): the accuracy (mean over the corruption's severities and
    the runs), Δ = accuracy − the reference's (from its seed repeats), the error 1 − accuracy and
    the corruption error normalised per corruption as ImageNet-C's CE, error / the reference's
    error. One more row per method, corruption "all": the means over its corruptions — accuracy,
    Δ, and relative_error = the mCE. Descriptive: the tests and verdicts of the second endpoint are
    repeat_summary / matched_table / controls_table on test_acc_corrupt."""
    runs = reruns(trials)
    rows = []
    for key in sorted(runs["key"].dropna().unique(), key=key_order) if len(runs) else []:
        of_key = runs[runs["key"] == key]
        of_key = of_key[(of_key["phase"] == "repeat") | of_key["method"].map(lambda m: role(m) == "control")]
        columns = corruption_columns(of_key)  # per key: a study's datasets may use different sets
        if not columns:
            continue
        groups = {m: of_key[of_key["method"] == m] for m in method_order(of_key["method"])}
        accuracy = {m: {c: float(np.mean([_scored(g, column).mean() for _, column in levels]))
                        for c, levels in columns.items()} for m, g in groups.items()}
        base = accuracy.get(reference)
        for method, group in groups.items():
            mine = []
            for corruption, levels in columns.items():
                value = accuracy[method][corruption]
                row = {**_where(key), "method": method, "role": role(method), "corruption": corruption,
                       "severities": len(levels), "n_run": len(group),
                       "n_completed": int((group["outcome"] == "completed").sum()), "accuracy": value,
                       "diff": value - base[corruption] if base else math.nan, "error": 1 - value,
                       "relative_error": _ratio(1 - value, 1 - base[corruption]) if base else math.nan}
                mine.append(row)
            rows += mine
            finite = lambda name: [r[name] for r in mine if np.isfinite(r[name])]  # noqa: E731
            rows.append({**mine[0], "corruption": ALL_CORRUPTIONS, "severities": sum(r["severities"] for r in mine),
                         "accuracy": float(np.mean(finite("accuracy"))) if finite("accuracy") else math.nan,
                         "diff": float(np.mean(finite("diff"))) if finite("diff") else math.nan,
                         "error": float(np.mean(finite("error"))) if finite("error") else math.nan,
                         "relative_error": float(np.mean(finite("relative_error"))) if finite("relative_error")
                         else math.nan})
    return pd.DataFrame(rows, columns=CORRUPTION_COLUMNS)


def rerun_runs(trials: pd.DataFrame) -> pd.DataFrame:
    """Every re-run, one row each: what the comparisons are computed from (scored = as compared)."""
    runs = reruns(trials)
    runs["test_acc_scored"] = _scored(runs, "test_acc") if len(runs) else []
    columns = [c for c in (*IDENTITY, "group", "phase", "method", "matched_to", "seed", "slot", "run_name", "run_id",
                           "outcome", "val_acc", "test_acc", "test_acc_scored", "test_acc_blurred", "test_acc_corrupt",
                           "test_f1_macro",
                           "train_seconds", "trial_seconds", "peak_memory_mb") if c in runs]
    return runs[columns].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Selection: each method's top-k search configs re-run on fresh seeds, the best mean chosen

SELECT_RULE = ("the highest mean validation accuracy over the selection seeds (ties: the lower mean validation "
               "loss, then the better search rank)")
SELECTION_COLUMNS = [*IDENTITY, "replicate", "method", "role", "config_id", "optuna_trial", "search_rank",
                     "search_val_acc", "search_val_loss", "config", "shared", "seeds", "n_run", "n_completed",
                     "failed", "select_mean", "select_sd", "select_val_loss", "overstated", "rule_pick", "chosen",
                     "chosen_by", "repeat_n", "repeat_val_acc"]
_TRIAL_NUMBER = re.compile(r"(?:^|[-:/])t(\d+)(?:$|:)")


def _trial_number(row) -> float:
    """The Optuna trial number a selection run re-ran: its `optuna_trial` tag, else the t<number> of
    its config_id ("sharpening-t3") or slot ("select:sharpening:t3:s7")."""
    number = pd.to_numeric(pd.Series([row.get("optuna_trial")]), errors="coerce").iloc[0]
    if math.isfinite(number):
        return float(number)
    for name in ("config_id", "slot"):
        match = _TRIAL_NUMBER.search(str(row.get(name))) if _present(row.get(name)) else None
        if match:
            return float(match[1])
    return math.nan


def _fields(row) -> tuple:
    """The configuration a run trained with: every TrialConfig field it logged but its seed."""
    return tuple((name, row[name]) for name in FIELD_NAMES if name != "seed" and _present(row.get(name)))


def _last_per_slot(runs: pd.DataFrame) -> pd.DataFrame:
    """One run per slot within a study key (the last, should a resumed study have run a slot twice)."""
    if runs.empty or not runs["slot"].notna().any():
        return runs
    slotted = runs[runs["slot"].notna()].sort_values("start_time" if "start_time" in runs else "slot", kind="stable")
    return pd.concat([slotted.drop_duplicates(["key", "slot"], keep="last"), runs[runs["slot"].isna()]])


def selection_table(trials: pd.DataFrame) -> pd.DataFrame:
    """Per study key, replicate and searched method, one row per candidate of the top-k selection
    (phase "select": a search config re-run on fresh seeds): its search trial (optuna_trial, rank in
    the search by validation accuracy, then loss, then trial number; its val_acc and val_loss), its
    selection runs' validation accuracy (mean, sd, n; a run that did not complete scores chance, as
    every re-run does) and mean validation loss, `overstated` = search val_acc − selection mean
    (what the single search number claimed beyond what fresh seeds give: the winner's curse);
    `rule_pick`: the candidate SELECT_RULE picks; `chosen`: the config the method's seed repeats
    were run at (their config_id, else their params) — the launcher's choice — or, without
    repeats to tell, the rule's pick (`chosen_by` says which); `repeat_val_acc`: the chosen config's
    mean validation accuracy over its seed repeats, seeds chosen by neither the search nor the
    selection. Empty (with the columns) for a study without selection runs."""
    trials = with_derived(trials)
    for column in ("replicate", "optuna_trial", "config_id"):
        if column not in trials:
            trials[column] = math.nan
    trials["replicate"] = _replicates(trials)
    ended = trials[trials["outcome"].isin(ENDED) & trials["seed"].notna()]
    select = _last_per_slot(ended[ended["phase"] == "select"].copy())
    if select.empty:
        return pd.DataFrame(columns=SELECTION_COLUMNS)
    select["number"] = [_trial_number(row) for _, row in select.iterrows()]
    select["candidate"] = [str(c) if _present(c) else f"{m}-t{int(n)}" if math.isfinite(n) else f"{m}-?"
                           for c, m, n in zip(select["config_id"], select["method"], select["number"])]
    select["score"] = _scored(select, "val_acc")
    search = trials[trials["phase"] == "search"].copy()
    search["number"] = pd.to_numeric(search["optuna_trial"], errors="coerce")
    repeats = _last_per_slot(ended[ended["phase"] == "repeat"].copy())
    repeats["score"] = _scored(repeats, "val_acc") if len(repeats) else pd.Series(dtype=float)
    rows = []
    for key in sorted(select["key"].dropna().unique(), key=key_order):
        of_key = select[select["key"] == key]
        for replicate in sorted(of_key["replicate"].unique(), key=_replicate_order):
            in_replicate = of_key[of_key["replicate"] == replicate]
            for method in method_order(in_replicate["method"].dropna()):
                where = lambda frame: frame[(frame["key"] == key) & (frame["replicate"] == replicate)  # noqa: E731
                                            & (frame["method"] == method)]
                rows += _candidates(where(in_replicate), where(search), where(repeats), key, replicate, method)
    return pd.DataFrame(rows, columns=SELECTION_COLUMNS)


def _candidates(select: pd.DataFrame, search: pd.DataFrame, repeats: pd.DataFrame, key: str, replicate: str,
                method: str) -> list[dict]:
    """The selection table's rows of one method in one key and replicate (selection_table)."""
    searched = search.assign(_acc=pd.to_numeric(search["val_acc"], errors="coerce").fillna(-math.inf),
                             _loss=pd.to_numeric(search["val_loss"], errors="coerce").fillna(math.inf))
    searched = searched.sort_values(["_acc", "_loss", "number"], ascending=[False, True, True], kind="stable")
    rank = {n: i + 1 for i, n in enumerate(searched["number"].dropna().drop_duplicates())}
    rows = []
    for candidate, runs in select.groupby("candidate", sort=False):
        number = runs["number"].dropna().iloc[0] if runs["number"].notna().any() else math.nan
        trial = search[search["number"] == number].tail(1)
        summary = mean_ci(runs["score"].to_numpy(float))
        losses = pd.to_numeric(completed(runs)["val_loss"], errors="coerce").dropna()
        search_acc = float(trial["val_acc"].iloc[0]) if len(trial) else math.nan
        rows.append({**_where(key), "replicate": replicate, "method": method, "role": role(method),
                     "config_id": candidate, "optuna_trial": number, "search_rank": rank.get(number, math.nan),
                     "search_val_acc": search_acc,
                     "search_val_loss": float(trial["val_loss"].iloc[0]) if len(trial) else math.nan,
                     "config": describe(runs.iloc[0]), "shared": shared(runs.iloc[0]),
                     "seeds": ",".join(str(int(s)) for s in sorted(runs["seed"])), "n_run": len(runs),
                     "n_completed": int((runs["outcome"] == "completed").sum()), "failed": _outcome_words(runs),
                     "select_mean": summary.mean, "select_sd": summary.sd,
                     "select_val_loss": float(losses.mean()) if len(losses) else math.nan,
                     "overstated": search_acc - summary.mean, "_fields": _fields(runs.iloc[0])})

    def by_rule(row):  # SELECT_RULE, as a sort key; unknown values sort last
        finite = lambda v, default: v if _present(v) and math.isfinite(v) else default  # noqa: E731
        # Means equal but for float rounding (the same accuracies summed in another order) are a tie.
        return (-round(finite(row["select_mean"], -math.inf), 12),
                round(finite(row["select_val_loss"], math.inf), 12),
                finite(row["search_rank"], math.inf), finite(row["optuna_trial"], math.inf))

    pick = min(rows, key=by_rule)
    chosen, chosen_by = None, "the rule (no seed repeats to tell the launcher's choice)"
    if len(repeats):
        ids = {str(c) for c in repeats["config_id"] if _present(c)}
        matches = [r for r in rows if r["config_id"] in ids]
        how = "its seed repeats' config_id"
        if not matches:
            configured = {_fields(row) for _, row in repeats.iterrows()}
            matches, how = [r for r in rows if r["_fields"] in configured], "its seed repeats' params"
        if matches:
            chosen, chosen_by = min(matches, key=by_rule), how
        else:
            chosen_by = "the rule (the seed repeats match no candidate)"
    if chosen is None:
        chosen = pick
    told = chosen_by.startswith("its seed repeats")
    for row in rows:
        row["rule_pick"], row["chosen"] = row is pick, row is chosen
        row["chosen_by"] = chosen_by if row is chosen else ""
        mine = row is chosen and told
        row["repeat_n"] = len(repeats) if mine else 0
        row["repeat_val_acc"] = mean_ci(repeats["score"].to_numpy(float)).mean if mine else math.nan
        del row["_fields"]
    return sorted(rows, key=lambda r: (r["search_rank"] if math.isfinite(r["search_rank"]) else math.inf,
                                       r["config_id"]))


def summary_table(trials: pd.DataFrame, parent_tags: dict | None = None, parent_metrics: dict | None = None,
                  parent_params: dict | None = None, margin: float = MARGIN) -> pd.DataFrame:
    """One row per study key (dataset, regime) and method: search effort, the chosen config, the seed
    repeats against the baseline (clean and blurred test accuracy), the matched-baseline, crossed and
    control comparisons."""
    keys = [*IDENTITY, "method"]
    effort = search_effort(trials, parent_metrics, parent_params)[keys + ["trials"]].rename(
        columns={"trials": "search_trials"})
    best = best_configs(trials, parent_tags, parent_metrics, parent_params).drop(columns=["role"])
    best = best.rename(columns={c: f"best_{c}" for c in best.columns if c not in keys and not c.startswith("best_")})
    out = effort.merge(best, on=keys, how="outer")
    for metric, prefix in (("test_acc", "repeat_test_acc_"), ("test_acc_blurred", "repeat_test_acc_blurred_"),
                           ("test_acc_corrupt", "repeat_test_acc_corrupt_")):
        repeats = repeat_summary(trials, metric, margin).drop(columns=["role", "metric", "margin"])
        out = out.merge(repeats.rename(columns={c: prefix + c for c in repeats.columns if c not in keys}),
                        on=keys, how="outer")
    for table, prefix in ((matched_table(trials, margin=margin), "matched_"),
                          (crossed_table(trials, margin=margin), "crossed_"),
                          (controls_table(trials, margin=margin), "vs_curriculum_")):
        if prefix == "vs_curriculum_":  # a control's row: curriculum − control, the control on the row
            table = table.assign(method=table["versus"], versus=table["method"])
        table = table[keys + ["versus", "pairs", "diff", "diff_low", "diff_high", "p", "p_holm", "verdict", "cost_ratio"]]
        out = out.merge(table.rename(columns={c: prefix + c for c in table.columns if c not in keys}), on=keys,
                        how="outer")
    out["role"] = out["method"].map(role)
    order = {m: i for i, m in enumerate(method_order(out["method"]))}
    out = out.sort_values(["key", "method"], key=lambda c: c.map(order if c.name == "method" else key_order),
                          kind="stable").reset_index(drop=True)
    return out[[*keys, "role", *[c for c in out.columns if c not in (*keys, "role")]]]


def regime_settings(trials: pd.DataFrame) -> dict[str, str]:
    """study key → what its regime is, from its runs' params: "40 % label noise, balanced classes,
    8 epochs" (a param an older store lacks is left out)."""
    trials = with_derived(trials)
    settings = {}
    for key in sorted(trials["key"].dropna().unique(), key=key_order):
        rows = trials[trials["key"] == key]

        def common(name):
            values = pd.to_numeric(rows[name], errors="coerce").dropna() if name in rows else pd.Series(dtype=float)
            return float(values.mode().iloc[0]) if len(values) else math.nan

        noise, rho, epochs = common("label_noise"), common("imbalance"), common("epochs")
        parts = []
        if math.isfinite(noise):
            parts.append(f"{100 * noise:g} % label noise" if noise > 0 else "clean labels")
        if math.isfinite(rho):
            parts.append(f"imbalance ρ = {rho:g}" if rho > 1 else "balanced classes")
        if math.isfinite(epochs):
            parts.append(f"{int(epochs)} epochs")
        settings[key] = ", ".join(parts)
    return settings


REGIME_COLUMNS = [*IDENTITY, "setting", "method", "role", "n_run", "n_completed", "failed", "mean", "ci95", "diff",
                  "diff_low", "diff_high", "p", "p_holm", "mde", "p_tost", "alpha_adjusted", "seeds_to_detect",
                  "seeds_for_equivalence", "verdict", "train_seconds",
                  "time_ratio", "peak_memory_mb", "memory_ratio"]


def regime_table(trials: pd.DataFrame, margin: float = MARGIN, reference: str = "baseline") -> pd.DataFrame:
    """The regimes side by side (long form, one row per study key and searched method; regimes.csv):
    the seed repeats' clean test accuracy against the baseline of the same regime — Δ with its 95%
    Welch CI, p, Holm p (over the key's methods), the four-way verdict — and the cost: mean
    train_seconds and peak_memory_mb of the completed repeats and their ratios to that baseline's
    (`analysis.words.with_regime_words` adds the people's cells)."""
    summary = repeat_summary(trials, "test_acc", margin, reference).rename(columns={"cost_ratio": "time_ratio"})
    settings = regime_settings(trials)
    summary["setting"] = summary["key"].map(settings).fillna("")
    return summary[REGIME_COLUMNS].reset_index(drop=True)


__all__ = ["ALPHA", "SHARED", "ENDED", "CLASSES", "METRIC_WORDS", "chance", "robustness_columns", "with_derived",
           "ALL_CORRUPTIONS", "corruption_columns", "corruption_table",
           "completed", "config_of", "describe", "shared", "recorded_choices", "searched_methods", "search_effort",
           "effort_check", "best_configs", "reruns", "repeat_summary", "matched_table", "crossed_table",
           "controls_table", "control_seeds", "rerun_runs", "summary_table", "SELECT_RULE", "SELECTION_COLUMNS",
           "selection_table", "study_keys", "regime_settings", "regime_table", "REGIME_COLUMNS"]
