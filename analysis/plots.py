"""The figures of the report (matplotlib, PNG). One function per figure; each takes the frames of
`analysis.load` for one dataset and a path, and either writes the PNG or raises `NoData` with
the note the report shows instead.

Colours are fixed per method across every figure: the baseline black, the curricula in cool
colours, the controls in warm ones.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from study.config import ANNEAL_METHODS, BLUR_METHODS  # noqa: E402

from .stats import mean_ci  # noqa: E402
from .tables import completed, method_order, robustness_columns, with_derived  # noqa: E402

COLORS = {"baseline": "#222222", "sharpening": "#1f77b4", "annealing": "#2ca02c", "combined": "#9467bd",
          "anti": "#ff7f0e", "random_order": "#d62728", "blur_aug": "#8c564b"}
SCHEDULE_COLORS = {"linear": "#1f77b4", "cosine": "#17becf", "step": "#9467bd", "trainable": "#2ca02c",
                   "trainable_channel": "#bcbd22"}
DPI = 110
plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "axes.spines.top": False,
                     "axes.spines.right": False, "axes.grid": True, "grid.alpha": 0.3})


class NoData(Exception):
    """Nothing to draw; the message is the note the report shows in the figure's place."""


def color(method: str) -> str:
    return COLORS.get(method, "#7f7f7f")


def _save(fig, path):
    fig.savefig(path, dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return path


def _method_legend(methods) -> list:
    return [Line2D([], [], color=color(m), marker="o", linestyle="-", label=m) for m in methods]


# ---------------------------------------------------------------------------------------------

def forest(summaries: dict[str, pd.DataFrame], path, title: str):
    """Δ vs baseline with 95% CI per method, one panel per metric (label → repeat_summary frame)."""
    panels = {label: s[s["diff"].notna()] for label, s in summaries.items() if len(s) and s["diff"].notna().any()}
    if not panels:
        raise NoData("no differences to show: needs seed repeats of the baseline and of at least one method")
    fig, axes = plt.subplots(1, len(panels), figsize=(5.6 * len(panels), 0.5 + 0.45 * max(map(len, panels.values()))),
                             squeeze=False)
    for axis, (label, frame) in zip(axes[0], panels.items()):
        frame = frame.iloc[::-1]
        y = np.arange(len(frame))
        for yi, row in zip(y, frame.itertuples(index=False)):
            significant = row.verdict.startswith("significantly")
            shade = ("#2a9d2a" if row.diff > 0 else "#c0392b") if significant else "#555555"
            low, high = row.diff_low, row.diff_high
            if np.isfinite(low):
                axis.plot([100 * low, 100 * high], [yi, yi], color=shade, lw=2.2, solid_capstyle="butt")
            axis.plot(100 * row.diff, yi, "o", color=color(row.method), markeredgecolor=shade, markersize=8,
                      markeredgewidth=1.5)
            axis.annotate(f"p={row.p_welch:.3f}" if np.isfinite(row.p_welch) else "p n/a", (1.0, yi),
                          xycoords=("axes fraction", "data"), xytext=(4, 0), textcoords="offset points",
                          va="center", fontsize=8, color=shade)
        axis.axvline(0, color="black", lw=1)
        axis.set_yticks(y, [f"{m} (n={n})" for m, n in zip(frame["method"], frame["n"])])
        axis.set_xlabel(f"Δ {label} vs baseline (percentage points, 95% Welch CI)")
        axis.grid(axis="y", alpha=0)
    fig.suptitle(title, x=0.02, ha="left")
    fig.tight_layout()
    return _save(fig, path)


def _level_segments(levels: pd.Series) -> list[tuple[int, int, float]]:
    """[(first epoch, last epoch, level)] of consecutive equal blur levels."""
    segments = []
    for epoch, level in levels.items():
        level = level if float(level).is_integer() else -1.0  # blur_aug: a mean of random levels
        if segments and segments[-1][2] == level and segments[-1][1] == epoch - 1:
            segments[-1] = (segments[-1][0], epoch, level)
        else:
            segments.append((epoch, epoch, level))
    return segments


def learning_curves(trials: pd.DataFrame, histories: pd.DataFrame, path, title: str):
    if histories.empty or histories["val_acc"].isna().all():
        raise NoData("no per-epoch val_acc histories in the store")
    methods = method_order(histories["method"].dropna())
    columns = 4 if len(methods) > 3 else len(methods)
    rows = math.ceil(len(methods) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.3 * columns, 2.7 * rows), sharex=True, sharey=True,
                             squeeze=False)
    for axis in axes.flat[len(methods):]:
        axis.axis("off")
    for axis, method in zip(axes.flat, methods):
        mine = histories[histories["method"] == method]
        for run_id, curve in mine.groupby("run_id", sort=False):
            repeat = curve["phase"].iloc[0] == "repeat"
            axis.plot(curve["epoch"], curve["val_acc"], color=color(method), lw=1.6 if repeat else 0.9,
                      alpha=0.9 if repeat else 0.35, linestyle="-" if repeat else "--")
        # Blur levels of one reference run: a repeat of the best config, else the best search trial.
        done = completed(trials[trials["method"] == method])
        reference = done[done["phase"] == "repeat"]
        reference = reference if len(reference) else done.sort_values("val_acc", ascending=False)
        levels = pd.Series(dtype=float)
        if len(reference):
            curve = mine[mine["run_id"] == reference["run_id"].iloc[0]].set_index("epoch")["blur_level"].dropna()
            levels = curve
        for first, last, level in _level_segments(levels):
            if level == 1:
                continue
            axis.axvspan(first - 0.5, last + 0.5, color="#999999", alpha=0.10 + 0.06 * min(abs(level), 6), lw=0)
            label = f"L{level:g}" if level > 0 else "random level per batch"
            axis.text((first + last) / 2, 1.0, label, transform=axis.get_xaxis_transform(), ha="center",
                      va="bottom", fontsize=7, color="#444444")
        if method in BLUR_METHODS and len(levels):
            originals = levels[levels == 1]
            if len(originals):
                axis.axvline(originals.index[0] - 0.5, color="#444444", lw=0.8, linestyle=":")
        axis.set_title(method, color=color(method), pad=11)
        axis.set_xlabel("epoch")
        axis.tick_params(labelbottom=True)
    for row in axes:
        row[0].set_ylabel("validation accuracy")
    fig.legend(handles=[Line2D([], [], color="#555555", lw=1.6, label="seed repeats of the best config"),
                        Line2D([], [], color="#555555", lw=0.9, linestyle="--", alpha=0.5, label="search trials"),
                        plt.Rectangle((0, 0), 1, 1, color="#999999", alpha=0.3,
                                      label="trained on blurred images (Ln: level n)")],
               loc="lower right", fontsize=8, frameon=False)
    fig.suptitle(title, x=0.02, ha="left")
    fig.tight_layout()
    return _save(fig, path)


def hyperparameters(trials: pd.DataFrame, path, title: str):
    search = completed(trials, "search")
    if search.empty or "val_acc" not in search:
        raise NoData("no completed search trials")
    uses_levels = search["method"].isin(BLUR_METHODS) | (search.get("theta_schedule") == "step")
    panels = [("K", search[uses_levels]), ("epochs_per_level", search[uses_levels]),
              ("kernel", search[search["method"].isin(BLUR_METHODS)])]
    panels = [(name, frame) for name, frame in panels if name in frame and len(frame)]
    if not panels:
        raise NoData("no curriculum trials in the search: K, epochs_per_level and kernel were never used")
    baseline = search.loc[search["method"] == "baseline", "val_acc"]
    rng = np.random.default_rng(0)
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), sharey=True, squeeze=False)
    shown = set()
    for axis, (name, frame) in zip(axes[0], panels):
        categories = sorted(frame[name].unique(), key=str)
        where = {c: i for i, c in enumerate(categories)}
        methods = method_order(frame["method"])
        for k, method in enumerate(methods):
            mine = frame[frame["method"] == method]
            offset = (k - (len(methods) - 1) / 2) * 0.5 / max(1, len(methods))
            x = mine[name].map(where) + offset + rng.uniform(-0.03, 0.03, len(mine))
            axis.scatter(x, mine["val_acc"], s=28, color=color(method), alpha=0.85, edgecolor="white", lw=0.5)
            shown.add(method)
        if len(baseline):
            axis.axhspan(baseline.min(), baseline.max(), color="#222222", alpha=0.08, lw=0)
            axis.axhline(baseline.mean(), color="#222222", lw=1, linestyle="--")
        axis.set_xticks(range(len(categories)), [str(c) for c in categories])
        axis.set_xlim(-0.6, len(categories) - 0.4)
        axis.set_xlabel(name)
        axis.grid(axis="x", alpha=0)
    axes[0][0].set_ylabel("validation accuracy (search trials)")
    handles = _method_legend(method_order(shown))
    if len(baseline):
        handles.append(Line2D([], [], color="#222222", linestyle="--", label="baseline search: mean, band = range"))
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, fontsize=8, frameon=False)
    fig.suptitle(title, x=0.02, ha="left")
    fig.tight_layout()
    return _save(fig, path)


def theta_trajectories(trials: pd.DataFrame, histories: pd.DataFrame, path, title: str):
    annealed = trials[trials["method"].isin(ANNEAL_METHODS)]
    if annealed.empty or histories.empty or not {"theta_schedule", "theta0"} <= set(trials.columns):
        raise NoData("no annealing or combined trials: θ stayed 0 (ReLU) everywhere")
    runs = annealed.set_index("run_id")
    learned = runs["theta_schedule"].astype(str).str.startswith("trainable")
    groups = [("scheduled θ", runs[~learned]), ("learned θ (trainable; band = min..max over channels)", runs[learned])]
    groups = [(name, frame) for name, frame in groups if len(frame)]
    fig, axes = plt.subplots(1, len(groups), figsize=(5.4 * len(groups), 3.4), sharey=True, squeeze=False)
    schedules = set()
    for axis, (name, frame) in zip(axes[0], groups):
        for run_id, config in frame.iterrows():
            curve = histories[histories["run_id"] == run_id].sort_values("epoch")
            if curve.empty:
                continue
            epochs = np.concatenate([[0], curve["epoch"].to_numpy()])
            theta = np.concatenate([[config["theta0"]], curve["theta"].to_numpy()])
            shade = SCHEDULE_COLORS.get(config["theta_schedule"], "#7f7f7f")
            style = "-" if config["method"] == "annealing" else "--"
            axis.plot(epochs, theta, color=shade, linestyle=style, lw=1.4 if config["phase"] == "repeat" else 0.9,
                      alpha=0.85, marker=".", markersize=4)
            if config["theta_schedule"] == "trainable_channel":
                low = np.concatenate([[config["theta0"]], curve["theta_min"].to_numpy()])
                high = np.concatenate([[config["theta0"]], curve["theta_max"].to_numpy()])
                axis.fill_between(epochs, low, high, color=shade, alpha=0.15, lw=0)
            schedules.add(config["theta_schedule"])
        axis.set_title(name)
        axis.set_xlabel("epoch (0 = θ0 at the start; then θ after each epoch)")
        axis.set_yticks([0, math.pi / 8, math.pi / 4], ["0 (ReLU)", "π/8", "π/4 (linear)"])
        axis.set_ylim(-0.03, math.pi / 4 + 0.05)
    axes[0][0].set_ylabel("θ")
    handles = [Line2D([], [], color=SCHEDULE_COLORS.get(s, "#7f7f7f"), label=s) for s in sorted(schedules)]
    handles += [Line2D([], [], color="#555555", linestyle="-", label="annealing"),
                Line2D([], [], color="#555555", linestyle="--", label="combined")]
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(handles), fontsize=8,
               frameon=False)
    fig.suptitle(title, x=0.02, ha="left")
    fig.tight_layout()
    return _save(fig, path)


def robustness_profiles(trials: pd.DataFrame, path, title: str):
    profile = robustness_columns(trials)
    done = completed(trials)
    if not profile or done.empty:
        raise NoData("no blur-robustness metrics (test_acc_<kernel>_L<n>) on any completed trial")
    repeats = done[done["phase"] == "repeat"]
    source = "mean ± 95% CI over seed repeats" if len(repeats) else "best search trial per method (no repeats)"
    if repeats.empty:
        ranked = done.dropna(subset=["val_acc"])
        done = ranked.loc[ranked.groupby("method")["val_acc"].idxmax()] if len(ranked) else done
    else:
        done = repeats
    methods = method_order(done["method"])
    fig, axes = plt.subplots(1, len(profile), figsize=(4.0 * len(profile), 3.4), sharey=True, squeeze=False)
    for axis, (kernel, levels) in zip(axes[0], profile.items()):
        for k, method in enumerate(methods):
            mine = done[done["method"] == method]
            x, y, err = [], [], []
            for level, column in levels:
                summary = mean_ci(mine[column])
                if summary.n:
                    x.append(level + (k - (len(methods) - 1) / 2) * 0.04)
                    y.append(summary.mean)
                    err.append(summary.half_width if np.isfinite(summary.half_width) else 0.0)
            axis.errorbar(x, y, yerr=err, color=color(method), marker="o", markersize=3.5, lw=1.3, capsize=2,
                          elinewidth=0.8, label=method)
        axis.set_title(f"{kernel} kernel")
        axis.set_xlabel("test-time blur level (1 = original images)")
        axis.set_xticks([level for level, _ in levels])
        axis.set_ylim(0, 1.02)  # n=3 t-intervals can reach past the possible range
    axes[0][0].set_ylabel("test accuracy")
    fig.legend(handles=_method_legend(methods), loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(methods),
               fontsize=8, frameon=False)
    fig.suptitle(f"{title} — {source}", x=0.02, ha="left")
    fig.tight_layout()
    return _save(fig, path)


def youden(trials: pd.DataFrame, path, title: str, x: str = "test_acc", y: str = "test_acc_blurred"):
    """Youden-style plot: two summary metrics of every trial against each other, by method."""
    done = with_derived(completed(trials))
    done = done[done[x].notna() & done[y].notna()] if x in done and y in done else done.iloc[0:0]
    if done.empty:
        raise NoData(f"no completed trial has both {x} and {y}")
    fig, axis = plt.subplots(figsize=(6.2, 4.6))
    for method in method_order(done["method"]):
        mine = done[done["method"] == method]
        for phase, marker in (("search", "o"), ("repeat", "^")):
            part = mine[mine["phase"] == phase]
            axis.scatter(part[x], part[y], s=30, marker=marker, color=color(method), alpha=0.75,
                         edgecolor="white", lw=0.5)
        axis.scatter(mine[x].mean(), mine[y].mean(), s=150, marker="X", color=color(method), edgecolor="black",
                     lw=0.8, zorder=5)
    axis.axvline(done[x].median(), color="#888888", lw=0.8, linestyle="--")
    axis.axhline(done[y].median(), color="#888888", lw=0.8, linestyle="--")
    axis.set_xlabel(f"{x} (clean test accuracy)" if x == "test_acc" else x)
    axis.set_ylabel(f"{y} (mean over kernels, levels ≥ 2)" if y == "test_acc_blurred" else y)
    handles = _method_legend(method_order(done["method"]))
    handles += [Line2D([], [], marker="o", color="#555555", linestyle="", label="search trial"),
                Line2D([], [], marker="^", color="#555555", linestyle="", label="seed repeat"),
                Line2D([], [], marker="X", color="#555555", markeredgecolor="black", linestyle="", markersize=9,
                       label="method mean"),
                Line2D([], [], color="#888888", linestyle="--", label="medians")]
    axis.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    axis.set_title(title, loc="left")
    fig.tight_layout()
    return _save(fig, path)


def importances(result: dict[str, dict[str, float]], path, title: str):
    """Bars of Optuna parameter importances, one panel per group (label → {param: importance})."""
    result = {label: values for label, values in result.items() if values}
    if not result:
        raise NoData("no parameter importances could be computed")
    fig, axes = plt.subplots(1, len(result), figsize=(4.4 * len(result), 0.8 + 0.32 * max(map(len, result.values()))),
                             squeeze=False)
    for axis, (label, values) in zip(axes[0], result.items()):
        names = sorted(values, key=values.get)
        axis.barh(names, [values[n] for n in names], color="#4c72b0")
        for i, name in enumerate(names):
            axis.text(values[name], i, f" {values[name]:.2f}", va="center", fontsize=8)
        axis.set_xlim(0, max(1.0, max(values.values()) * 1.15))
        axis.set_title(label)
        axis.set_xlabel("importance (fANOVA, normalised)")
        axis.grid(axis="y", alpha=0)
    fig.suptitle(title, x=0.02, ha="left")
    fig.tight_layout()
    return _save(fig, path)


def trial_times(trials: pd.DataFrame, path, title: str):
    timed = trials[trials["start_time"].notna()].copy()
    if timed.empty:
        raise NoData("no trial has a start time")
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6), gridspec_kw={"width_ratios": [1, 1.4]})
    methods = method_order(timed["method"])
    rng = np.random.default_rng(0)
    # The trainer's own clock: the whole train() call where logged, else its epochs, else the MLflow run.
    seconds = next(c for c in ("trial_seconds", "train_seconds", "wall_seconds")
                   if c in timed and timed[c].notna().any())
    for i, method in enumerate(methods):
        values = timed.loc[timed["method"] == method, seconds].dropna()
        left.scatter(i + rng.uniform(-0.15, 0.15, len(values)), values, s=22, color=color(method), alpha=0.8)
        if len(values):
            left.hlines(values.mean(), i - 0.3, i + 0.3, color=color(method), lw=2)
    left.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
    left.set_ylabel(f"{seconds} per trial (bar: mean)")
    left.set_ylim(bottom=0)
    left.grid(axis="x", alpha=0)
    start = timed["start_time"].min()
    timed = timed.sort_values("start_time").reset_index(drop=True)
    end = timed["end_time"].fillna(timed["start_time"])
    begin = (timed["start_time"] - start).dt.total_seconds()
    width = (end - timed["start_time"]).dt.total_seconds().clip(lower=0.05)
    right.barh(np.arange(len(timed)), width, left=begin, color=[color(m) for m in timed["method"]], height=0.8)
    for i, (outcome, b, w) in enumerate(zip(timed["outcome"], begin, width)):
        if outcome not in ("completed", None):
            right.text(b + w, i, f" {outcome}", va="center", fontsize=7, color="#c0392b")
    right.invert_yaxis()
    right.set_xlabel("seconds since the first trial started (bar: MLflow run start → end)")
    right.set_ylabel("trial (by start)")
    right.grid(axis="y", alpha=0)
    fig.legend(handles=_method_legend(methods), loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(methods),
               fontsize=8, frameon=False)
    fig.suptitle(title, x=0.02, ha="left")
    fig.tight_layout()
    return _save(fig, path)


__all__ = ["NoData", "COLORS", "forest", "learning_curves", "hyperparameters", "theta_trajectories",
           "robustness_profiles", "youden", "importances", "trial_times"]
