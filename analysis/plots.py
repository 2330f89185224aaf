"""The figures of the report (matplotlib, PNG). One function per figure; each takes the frames of
`analysis.load` for one study key (a dataset in one regime) and a path, and either writes the PNG
or raises `NoData` with the note the report shows instead.

Accuracies are in percent on every axis. Each method has one colour in every figure (`COLORS`,
covering `trainer.config.METHODS`): the baseline black, the curricula and the variant in cool
colours, the controls in warm ones. Nothing else uses a hue: θ schedules are line styles, θ/σ
curves, blur shading and the forest plot's verdicts are greys.
"""

from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from trainer.config import KERNELS, METHOD_TABLE, METHODS, THETA_MAX, method_order  # noqa: E402
from trainer.schedules import RANDOM_LEVEL, level_plan  # noqa: E402

from .stats import MARGIN, mean_ci  # noqa: E402
from .tables import ALL_CORRUPTIONS, completed, config_of, robustness_columns, with_derived  # noqa: E402

COLORS = {"baseline": "#222222", "sharpening": "#1f77b4", "annealing": "#2ca02c", "combined": "#9467bd",
          "cbs": "#17becf", "learned_theta": "#e377c2",
          "anti": "#ff7f0e", "random_order": "#d62728", "blur_aug": "#8c564b"}
assert set(COLORS) == set(METHODS), "every method of trainer.config needs a colour"
# θ schedules are told apart by line style (colour is the method's).
SCHEDULE_STYLES = {"linear": "-", "cosine": "--", "step": ":", "trainable": "-", "trainable_channel": "-."}
# The forest plot marks verdicts without colour (every hue is some method's): a significant
# difference gets a thick black interval, the rest a grey one; the verdict is written beside.
SIGNIFICANT, OTHER = "#111111", "#9a9a9a"
BAND = "#bdbdbd"  # the ±margin equivalence band
CURVE_GREY = "#555555"  # θ and σ on the learning curves' right axis
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


def _percent(values):
    return 100 * np.asarray(values, dtype=float)


def _reruns_of(trials: pd.DataFrame) -> pd.DataFrame:
    """The completed re-runs that stand for their method: seed repeats and the controls' runs (not
    the matched baselines, which are baseline runs at another method's hyperparameters)."""
    done = completed(trials)
    controls = done["method"].map(lambda m: getattr(METHOD_TABLE.get(m), "role", "") == "control")
    return done[(done["phase"] == "repeat") | ((done["phase"] == "control") & controls)]


def _reference_runs(trials: pd.DataFrame, chosen: dict | None) -> dict[str, str]:
    """method → run id of the run whose schedule a figure shows: a completed re-run of the chosen
    config (a seed repeat; for a control, one of its runs), else the search trial the study chose."""
    reruns = _reruns_of(trials)
    runs = {}
    for method in method_order(trials["method"].dropna()):
        mine = reruns[reruns["method"] == method]
        if len(mine):
            runs[method] = mine.sort_values("seed")["run_id"].iloc[0]
        elif chosen and chosen.get(method):
            runs[method] = chosen[method]
    return runs


# ---------------------------------------------------------------------------------------------

def forest(panels: dict[str, pd.DataFrame], path, title: str, margin: float = MARGIN):
    """Δ with its 95% CI per comparison, one panel per family (label → a frame of analysis.tables
    with method, diff, diff_low, diff_high, verdict; paired tables also `versus` and `pairs`). The
    band is ±margin, where a difference counts as equivalent (TOST); the verdict is written beside."""
    panels = {label: frame[frame["diff"].notna()] for label, frame in panels.items()
              if len(frame) and "diff" in frame and frame["diff"].notna().any()}
    if not panels:
        raise NoData("no differences to show: needs seed repeats of the baseline and of at least one method")
    fig, axes = plt.subplots(len(panels), 1, figsize=(8.2, sum(0.9 + 0.42 * len(f) for f in panels.values())),
                             squeeze=False, gridspec_kw={"height_ratios": [0.9 + 0.42 * len(f) for f in panels.values()]})
    for axis, (label, frame) in zip(axes[:, 0], panels.items()):
        frame = frame.iloc[::-1]
        y = np.arange(len(frame))
        axis.axvspan(-100 * margin, 100 * margin, color=BAND, alpha=0.45, lw=0)
        for edge in (-100 * margin, 100 * margin):  # visible even when the axis spans tens of pp
            axis.axvline(edge, color="#888888", lw=0.7, linestyle="--")
        for yi, row in zip(y, frame.itertuples(index=False)):
            significant = row.verdict in ("better", "worse")
            shade = SIGNIFICANT if significant else OTHER
            if np.isfinite(row.diff_low):
                axis.plot([100 * row.diff_low, 100 * row.diff_high], [yi, yi], color=shade,
                          lw=2.6 if significant else 1.6, solid_capstyle="butt")
            # The marker is the method's colour; for a control comparison, the control's.
            shown = getattr(row, "versus", None) if label.lower().startswith("controls") else row.method
            axis.plot(100 * row.diff, yi, "o", color=color(shown), markeredgecolor=shade, markersize=8,
                      markeredgewidth=1.5)
            # The verdict's first words only: an open one's seed counts are in the table beside it.
            axis.annotate(str(row.verdict).split(" (")[0], (1.0, yi), xycoords=("axes fraction", "data"), xytext=(6, 0),
                          textcoords="offset points", va="center", fontsize=8, color=shade if significant else "#555555",
                          fontweight="bold" if significant else "normal")
        axis.axvline(0, color="black", lw=1)
        if "versus" in frame:
            names = [f"{m} − {v} (n={n})" for m, v, n in zip(frame["method"], frame["versus"], frame["pairs"])]
        else:
            names = [f"{m} (n={n})" for m, n in zip(frame["method"], frame["n_run"])]
        axis.set_yticks(y, names)
        axis.set_ylim(-0.7, len(frame) - 0.3)
        axis.set_xlabel(f"Δ test accuracy, percentage points (95% CI) — {label}")
        axis.grid(axis="y", alpha=0)
    handles = [plt.Rectangle((0, 0), 1, 1, facecolor=BAND, alpha=0.45, edgecolor="#888888", linestyle="--",
                             label=f"±{100 * margin:g} pp equivalence margin"),
               Line2D([], [], color=SIGNIFICANT, lw=2.6, label="better / worse (Holm p < 0.05)"),
               Line2D([], [], color=OTHER, lw=1.6, label="equivalent / inconclusive"),
               Line2D([], [], color="#777777", marker="o", linestyle="", label="dot: Δ, in the method's colour")]
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, fontsize=8, frameon=False)
    fig.suptitle(title, x=0.02, ha="left")
    fig.tight_layout()
    return _save(fig, path)


def _level_segments(levels: pd.Series) -> list[tuple[int, int, float]]:
    """[(first epoch, last epoch, level)] of consecutive equal blur levels (-1: a random level per batch)."""
    segments = []
    for epoch, level in levels.items():
        level = level if float(level).is_integer() else -1.0  # a mean of random levels
        if segments and segments[-1][2] == level and segments[-1][1] == epoch - 1:
            segments[-1] = (segments[-1][0], epoch, level)
        else:
            segments.append((epoch, epoch, level))
    return segments


def learning_curves(trials: pd.DataFrame, histories: pd.DataFrame, path, title: str, chosen: dict | None = None):
    """Validation accuracy per epoch, one panel per method; blur levels shaded, and on a right axis θ
    (annealing, combined, learned_theta) and σ (cbs) of a reference run (see _reference_runs)."""
    if histories.empty or histories["val_acc"].isna().all():
        raise NoData("no per-epoch val_acc histories in the store")
    methods = method_order(histories["method"].dropna())
    columns = 4 if len(methods) > 3 else len(methods)
    rows = math.ceil(len(methods) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.5 * columns, 2.8 * rows), sharex=True, sharey=True,
                             squeeze=False)
    for axis in axes.flat[len(methods):]:
        axis.axis("off")
    references = _reference_runs(trials, chosen)
    right_axes = []
    for axis, method in zip(axes.flat, methods):
        mine = histories[histories["method"] == method]
        for run_id, curve in mine.groupby("run_id", sort=False):
            rerun = curve["phase"].iloc[0] in ("repeat", "control")
            axis.plot(curve["epoch"], _percent(curve["val_acc"]), color=color(method), lw=1.5 if rerun else 0.9,
                      alpha=0.9 if rerun else 0.35, linestyle="-" if rerun else "--")
        reference = mine[mine["run_id"] == references.get(method)].set_index("epoch").sort_index()
        levels = reference["blur_level"].dropna() if "blur_level" in reference else pd.Series(dtype=float)
        config = config_of(trials[trials["run_id"] == references.get(method)].iloc[0]) \
            if references.get(method) in set(trials["run_id"]) else None
        if config is not None and config.blurs and len(levels):  # blur_aug logs a mean of random levels
            plan = level_plan(config)
            levels = levels.where([plan[int(e) - 1] != RANDOM_LEVEL if 0 < e <= len(plan) else True
                                   for e in levels.index], -1.0)
        for first, last, level in _level_segments(levels):
            if level == 1:
                continue
            axis.axvspan(first - 0.5, last + 0.5, color="#999999", alpha=0.10 + 0.06 * min(abs(level), 6), lw=0)
            label = f"L{level:g}" if level > 0 else "random level per batch"
            axis.text((first + last) / 2, 1.0, label, transform=axis.get_xaxis_transform(), ha="center",
                      va="bottom", fontsize=7, color="#444444")
        if "in_final_regime" in reference and reference["in_final_regime"].notna().any():
            final = reference.index[reference["in_final_regime"] > 0]
            if len(final) and final[0] > reference.index.min():
                axis.axvline(final[0] - 0.5, color="#444444", lw=0.8, linestyle=":")
        spec = METHOD_TABLE.get(method)
        schedules = []
        if spec is not None and (spec.anneals or spec.learns_theta) and reference["theta"].notna().any():
            schedules.append(("theta", "-.", "θ"))
        if spec is not None and spec.smooths and reference["sigma"].notna().any():
            schedules.append(("sigma", (0, (1, 1)), "σ"))
        if schedules:
            twin = axis.twinx()
            twin.spines["right"].set_visible(True)
            twin.grid(False)
            top = THETA_MAX if any(k == "theta" for k, _, _ in schedules) else 0.0
            for key, style, _ in schedules:
                values = reference[key].dropna()
                twin.plot(values.index, values, color=CURVE_GREY, linestyle=style, lw=1.2, marker=".", markersize=3)
                top = max(top, float(values.max()))
            twin.set_ylim(-0.03, max(top, 0.1) * 1.08)
            twin.set_ylabel(" / ".join(name for _, _, name in schedules), color=CURVE_GREY)
            twin.tick_params(axis="y", colors=CURVE_GREY, labelsize=7)
            right_axes.append(tuple(k for k, _, _ in schedules))
        axis.set_title(method, color=color(method), pad=11)
        axis.set_xlabel("epoch")
        axis.tick_params(labelbottom=True)
    for row in axes:
        row[0].set_ylabel("validation accuracy (%)")
    handles = [Line2D([], [], color="#555555", lw=1.5, label="re-runs of the chosen config"),
               Line2D([], [], color="#555555", lw=0.9, linestyle="--", alpha=0.5, label="search trials"),
               plt.Rectangle((0, 0), 1, 1, color="#999999", alpha=0.3, label="trained on blurred images (Ln: level n)"),
               Line2D([], [], color="#444444", lw=0.8, linestyle=":", label="first epoch of the final regime")]
    if any("theta" in keys for keys in right_axes):
        handles.append(Line2D([], [], color=CURVE_GREY, linestyle="-.", label="θ (right axis; π/4 linear, 0 ReLU)"))
    if any("sigma" in keys for keys in right_axes):
        handles.append(Line2D([], [], color=CURVE_GREY, linestyle=(0, (1, 1)), label="σ of the feature blur (right axis)"))
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=8, frameon=False)
    fig.suptitle(title, x=0.02, ha="left")
    fig.tight_layout()
    return _save(fig, path)


def hyperparameters(trials: pd.DataFrame, path, title: str):
    """Validation accuracy of the search trials against the blur parameters, where a method uses them."""
    search = completed(trials, "search")
    if search.empty or "val_acc" not in search:
        raise NoData("no completed search trials")
    panels = [(name, search[search[name].notna()]) for name in ("K", "epochs_per_level", "kernel") if name in search]
    panels = [(name, frame) for name, frame in panels if len(frame)]
    if not panels:
        raise NoData("no search trial used K, epochs_per_level or kernel (no blur method and no step θ schedule)")
    baseline = search.loc[search["method"] == "baseline", "val_acc"] * 100
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
            axis.scatter(x, _percent(mine["val_acc"]), s=28, color=color(method), alpha=0.85, edgecolor="white", lw=0.5)
            shown.add(method)
        if len(baseline):
            axis.axhspan(baseline.min(), baseline.max(), color="#222222", alpha=0.08, lw=0)
            axis.axhline(baseline.mean(), color="#222222", lw=1, linestyle="--")
        axis.set_xticks(range(len(categories)), [f"{c:g}" if isinstance(c, float) else str(c) for c in categories])
        axis.set_xlim(-0.6, len(categories) - 0.4)
        axis.set_xlabel(name)
        axis.grid(axis="x", alpha=0)
    axes[0][0].set_ylabel("validation accuracy (%, search trials)")
    handles = _method_legend(method_order(shown))
    if len(baseline):
        handles.append(Line2D([], [], color="#222222", linestyle="--", label="baseline search: mean, band = range"))
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, fontsize=8, frameon=False)
    fig.suptitle(title, x=0.02, ha="left")
    fig.tight_layout()
    return _save(fig, path)


def theta_trajectories(trials: pd.DataFrame, histories: pd.DataFrame, path, title: str):
    """θ per epoch of every run whose method schedules or learns θ: colour = method, style = schedule."""
    uses_theta = [m for m, spec in METHOD_TABLE.items() if spec.anneals or spec.learns_theta]
    runs = trials[trials["method"].isin(uses_theta)]
    if runs.empty or histories.empty or "theta_schedule" not in runs or "theta" not in histories:
        raise NoData("no run of a method that schedules or learns θ (annealing, combined, learned_theta)")
    runs = runs.set_index("run_id")
    learned = runs["method"].map(lambda m: METHOD_TABLE[m].learns_theta)
    groups = [("scheduled θ (π/4 → 0)", runs[~learned]),
              ("learned θ (band: min..max over channels)", runs[learned])]
    groups = [(name, frame) for name, frame in groups if len(frame)]
    fig, axes = plt.subplots(1, len(groups), figsize=(5.4 * len(groups), 3.4), sharey=True, squeeze=False)
    schedules, methods = set(), set()
    for axis, (name, frame) in zip(axes[0], groups):
        for run_id, config in frame.iterrows():
            curve = histories[histories["run_id"] == run_id].sort_values("epoch")
            if curve.empty or curve["theta"].isna().all():
                continue
            start = config["theta0"] if pd.notna(config.get("theta0")) else THETA_MAX
            epochs = np.concatenate([[0], curve["epoch"].to_numpy()])
            theta = np.concatenate([[start], curve["theta"].to_numpy()])
            schedule = str(config["theta_schedule"])
            rerun = config["phase"] in ("repeat", "control")
            axis.plot(epochs, theta, color=color(config["method"]), linestyle=SCHEDULE_STYLES.get(schedule, "-"),
                      lw=1.6 if rerun else 0.9, alpha=0.9 if rerun else 0.5, marker=".", markersize=4)
            if schedule == "trainable_channel" and {"theta_min", "theta_max"} <= set(curve):
                low = np.concatenate([[start], curve["theta_min"].to_numpy()])
                high = np.concatenate([[start], curve["theta_max"].to_numpy()])
                axis.fill_between(epochs, low, high, color=color(config["method"]), alpha=0.12, lw=0)
            schedules.add(schedule)
            methods.add(config["method"])
        axis.set_title(name)
        axis.set_xlabel("epoch (0 = θ0 at the start; then θ after each epoch)")
        axis.set_yticks([0, math.pi / 8, math.pi / 4], ["0 (ReLU)", "π/8", "π/4 (linear)"])
        axis.set_ylim(-0.03, math.pi / 4 + 0.05)
    axes[0][0].set_ylabel("θ")
    handles = _method_legend(method_order(methods))
    handles += [Line2D([], [], color="#555555", linestyle=SCHEDULE_STYLES.get(s, "-"), label=f"schedule {s}")
                for s in sorted(schedules)]
    handles.append(Line2D([], [], color="#555555", lw=1.6, label="thick: re-runs; thin: search trials"))
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, fontsize=8, frameon=False)
    fig.suptitle(title, x=0.02, ha="left")
    fig.tight_layout()
    return _save(fig, path)


def robustness_profiles(trials: pd.DataFrame, path, title: str, chosen: dict | None = None):
    """Test accuracy on test images blurred at each level of each kernel, per method: mean ± 95% CI
    over the completed seed repeats, else the search trial the study chose."""
    profile = robustness_columns(trials)
    profile = {k: profile[k] for k in sorted(profile, key=lambda k: (KERNELS.index(k) if k in KERNELS else 99, k))}
    done = completed(trials)
    if not profile or done.empty:
        raise NoData("no blur-robustness metrics (test_acc_<kernel>_L<n>) on any completed trial")
    repeats = _reruns_of(trials)
    if len(repeats):
        source, done = "mean ± 95% CI over the completed seed repeats (controls: their runs)", repeats
    else:
        source = "the search trial each method's search chose (no repeats)"
        done = done[done["run_id"].isin((chosen or {}).values())]
        if done.empty:
            raise NoData("no completed seed repeats and no recorded choice of the search: nothing to profile")
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
                    y.append(100 * summary.mean)
                    err.append(100 * summary.half_width if np.isfinite(summary.half_width) else 0.0)
            axis.errorbar(x, y, yerr=err, color=color(method), marker="o", markersize=3.5, lw=1.3, capsize=2,
                          elinewidth=0.8, label=method)
        axis.set_title(f"{kernel} kernel")
        axis.set_xlabel("test-time blur level (1 = original images)")
        axis.set_xticks([level for level, _ in levels])
        axis.set_ylim(0, 102)  # n=3 t-intervals can reach past the possible range
    axes[0][0].set_ylabel("test accuracy (%)")
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
        for phases, marker in ((("search",), "o"), (("repeat", "control"), "^")):
            part = mine[mine["phase"].isin(phases)]
            axis.scatter(_percent(part[x]), _percent(part[y]), s=30, marker=marker, color=color(method), alpha=0.75,
                         edgecolor="white", lw=0.5)
        axis.scatter(100 * mine[x].mean(), 100 * mine[y].mean(), s=150, marker="X", color=color(method),
                     edgecolor="black", lw=0.8, zorder=5)
    axis.axvline(100 * done[x].median(), color="#888888", lw=0.8, linestyle="--")
    axis.axhline(100 * done[y].median(), color="#888888", lw=0.8, linestyle="--")
    axis.set_xlabel("clean test accuracy (%)" if x == "test_acc" else x)
    axis.set_ylabel("blurred test accuracy (%, mean over kernels, levels ≥ 2)" if y == "test_acc_blurred" else y)
    handles = _method_legend(method_order(done["method"]))
    handles += [Line2D([], [], marker="o", color="#555555", linestyle="", label="search trial"),
                Line2D([], [], marker="^", color="#555555", linestyle="", label="re-run"),
                Line2D([], [], marker="X", color="#555555", markeredgecolor="black", linestyle="", markersize=9,
                       label="method mean"),
                Line2D([], [], color="#888888", linestyle="--", label="medians")]
    axis.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8, frameon=False)
    axis.set_title(title, loc="left")
    fig.tight_layout()
    return _save(fig, path)


def importances(result: dict[str, dict[str, float]], path, title: str):
    """Bars of Optuna parameter importances, one panel per method ("<method> (<n> trials)" → {param:
    importance}), in the method's colour."""
    result = {label: values for label, values in result.items() if values}
    if not result:
        raise NoData("no parameter importances could be computed")
    fig, axes = plt.subplots(1, len(result), figsize=(4.4 * len(result), 0.8 + 0.32 * max(map(len, result.values()))),
                             squeeze=False)
    for axis, (label, values) in zip(axes[0], result.items()):
        names = sorted(values, key=values.get)
        axis.barh(names, [values[n] for n in names], color=color(label.split(" (")[0]))
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
            right.text(b + w, i, f" {outcome}", va="center", fontsize=7, color="#111111")
    right.invert_yaxis()
    right.set_xlabel("seconds since the first trial started (bar: MLflow run start → end)")
    right.set_ylabel("trial (by start)")
    right.grid(axis="y", alpha=0)
    fig.legend(handles=_method_legend(methods), loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(methods),
               fontsize=8, frameon=False)
    fig.suptitle(title, x=0.02, ha="left")
    fig.tight_layout()
    return _save(fig, path)


def tuning_curves(curves: pd.DataFrame, path, title: str, confidence: float = 0.95):
    """The tuning curves of one study key (analysis.tuning.tuning_table's rows): left, the expected
    best validation accuracy after k search trials (Dodge et al.); right, the median best (Lourie
    et al.); each method in its colour with its simultaneous band shaded. The y axis starts a little
    below the lowest point estimate: a band edge beyond it (the expected curve's lower edge at
    small k reaches towards 0 %, the support's bound) runs off the axis, shaded to its edge."""
    if curves.empty:
        raise NoData("no ended search trials: no tuning curves")
    methods = method_order(curves["method"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    lowest = 100 * min(curves["expected"].min(), curves["median"].min())
    for axis, (name, words) in zip(axes, (("expected", "expected best (Dodge et al. 2019)"),
                                          ("median", "median best (Lourie et al. 2023)"))):
        for method in methods:
            mine = curves[curves["method"] == method].sort_values("k")
            low, high = _percent(mine[f"{name}_low"]), _percent(mine[f"{name}_high"])
            axis.fill_between(mine["k"], low, high, color=color(method), alpha=0.07, lw=0)
            for edge in (low, high):  # the edges, so that overlapping bands stay apart
                axis.plot(mine["k"], edge, color=color(method), lw=0.7, linestyle="--", alpha=0.8)
            axis.plot(mine["k"], _percent(mine[name]), color=color(method), lw=1.6, marker="o", markersize=2.5)
        axis.set_xlabel("k: search trials (random configurations of the method's space)")
        axis.set_title(f"{words}, {100 * confidence:g}% simultaneous band", loc="left")
        axis.set_xlim(0.8, curves["k"].max() + 0.2)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel("validation accuracy (%), best of k")
    axes[0].set_ylim(max(0.0, lowest - 2.0), 100.5)
    handles = _method_legend(methods) + [Line2D([], [], color="#555555", lw=0.7, linestyle="--",
                                                 label="band edges (shaded between)")]
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=len(handles), fontsize=8,
               frameon=False)
    fig.suptitle(title, x=0.02, ha="left")
    fig.tight_layout()
    return _save(fig, path)


def sequential_paths(paths: pd.DataFrame, path, title: str):
    """The looks of a study with auto seeds (analysis.looks' path rows of one study key): per
    comparison, the difference statistic z (t through its p-value) by seeds a side against the
    boundaries ±c_k, and TOST's smaller one-sided statistic against e_k; one line per replicate.
    A path ends where the comparison stopped."""
    if paths.empty:
        raise NoData("no looks: the study ran a fixed number of seeds (--seeds auto sizes them)")
    names = list(dict.fromkeys(paths["comparison"]))
    columns = min(4, len(names))
    rows = math.ceil(len(names) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.1 * columns, 2.5 * rows), squeeze=False)
    replicates = sorted(paths["replicate"].unique(), key=lambda r: (len(str(r)), str(r)))
    for axis, name in zip(axes.flat, names):
        mine = paths[paths["comparison"] == name]
        bounds = mine.drop_duplicates("look").sort_values("look")
        values = mine[["z", "bound", "z_tost", "tost_bound"]].to_numpy(float)
        values = np.abs(values[np.isfinite(values)])
        top = max(3.0, float(values.max())) if values.size else 3.0
        axis.plot(bounds["seeds"], bounds["bound"], color="#d62728", lw=1, linestyle="--")
        axis.plot(bounds["seeds"], -bounds["bound"], color="#d62728", lw=1, linestyle="--")
        if bounds["tost_bound"].notna().any():
            axis.plot(bounds["seeds"], bounds["tost_bound"], color="#2ca02c", lw=1, linestyle=":")
        for index, replicate in enumerate(replicates):
            run = mine[(mine["replicate"] == replicate) & mine["z"].notna()].sort_values("look")
            if run.empty:
                continue
            alpha = 1.0 if len(replicates) == 1 else 0.55 + 0.45 * (index == 0)
            axis.plot(run["seeds"], run["z"], color="#1f77b4", marker="o", markersize=3, lw=1.2, alpha=alpha)
            if run["z_tost"].notna().any():
                axis.plot(run["seeds"], run["z_tost"], color="#2ca02c", marker="s", markersize=3, lw=1.0, alpha=alpha)
            last = run.iloc[-1]
            axis.annotate(last["verdict"], (last["seeds"], last["z"]), fontsize=7, xytext=(3, 3),
                          textcoords="offset points")
        axis.set_title(name, fontsize=8, loc="left")
        axis.set_ylim(-min(top, 12) - 0.5, min(top, 12) + 0.5)
        axis.set_xlim(bounds["seeds"].min() - 1, bounds["seeds"].max() + 1)
        axis.set_xticks(bounds["seeds"])
    for axis in list(axes.flat)[len(names):]:
        axis.set_visible(False)
    for axis in axes[-1]:
        axis.set_xlabel("test seeds a side")
    handles = [Line2D([], [], color="#1f77b4", marker="o", label="difference z"),
               Line2D([], [], color="#d62728", linestyle="--", label="difference boundaries ±c_k"),
               Line2D([], [], color="#2ca02c", marker="s", label="TOST z (smaller one-sided)"),
               Line2D([], [], color="#2ca02c", linestyle=":", label="equivalence boundary e_k")]
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=4, fontsize=8, frameon=False)
    fig.suptitle(title, x=0.02, ha="left")
    fig.tight_layout()
    return _save(fig, path)


def corruption_heatmap(table: pd.DataFrame, path, title: str, reference: str = "baseline"):
    """Method × corruption: Δ accuracy against the baseline in pp (`tables.corruption_table`: the
    mean over a corruption's severities and the runs), the last column the mean over corruptions.
    Grey levels, not hues (every hue is some method's): lighter is better than the baseline,
    darker worse, mid-grey equal; every cell is written."""
    if table.empty or not (table["method"] == reference).any():
        raise NoData(f"no corruption metrics (test_acc_corrupt_<corruption>) on the {reference}'s seed repeats "
                     "and another method's re-runs: nothing to compare")
    shown = table[table["method"] != reference]
    if shown.empty:
        raise NoData(f"only the {reference} has corruption metrics: nothing to compare")
    methods = method_order(shown["method"])
    corruptions = [c for c in dict.fromkeys(shown["corruption"]) if c != ALL_CORRUPTIONS] + [ALL_CORRUPTIONS]
    cells = shown.set_index(["method", "corruption"])["diff"]
    matrix = np.array([[100 * cells.get((m, c), np.nan) for c in corruptions] for m in methods])
    limit = max(float(np.nanmax(np.abs(matrix))) if np.isfinite(matrix).any() else 0.0, 0.5)
    fig, axis = plt.subplots(figsize=(1.0 + 0.62 * len(corruptions), 1.4 + 0.42 * len(methods)))
    image = axis.imshow(matrix, cmap="Greys_r", vmin=-limit, vmax=limit, aspect="auto")
    for (i, j), value in np.ndenumerate(matrix):
        if np.isfinite(value):
            axis.text(j, i, f"{value:+.1f}", ha="center", va="center", fontsize=7,
                      color="white" if value < 0 else "black")
    axis.set_xticks(range(len(corruptions)),
                    [c.replace("_", " ") if c != ALL_CORRUPTIONS else "MEAN" for c in corruptions],
                    rotation=45, ha="right")
    axis.set_yticks(range(len(methods)), methods)
    axis.axvline(len(corruptions) - 1.5, color="black", lw=1.2)  # the mean apart from the corruptions
    axis.grid(False)
    bar = fig.colorbar(image, ax=axis, fraction=0.04, pad=0.02)
    bar.set_label(f"Δ accuracy vs {reference} (pp)")
    axis.set_title(title, loc="left")
    fig.tight_layout()
    return _save(fig, path)


__all__ = ["NoData", "COLORS", "SCHEDULE_STYLES", "color", "forest", "learning_curves",
           "hyperparameters", "theta_trajectories", "robustness_profiles", "youden", "importances", "trial_times",
           "tuning_curves", "corruption_heatmap"]
