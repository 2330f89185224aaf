"""The second endpoint in the analysis: robustness to common corruptions, from a store written as a
study writes it (`study.tracking.StudyTracker`), numbers checked against scipy and hand formulas.

Two study keys: digits (MNIST-C-style, one severity per corruption) and cifar10 (CIFAR-10-C-style,
severities 1..5). Known values: on digits, sharpening loses 4 pp under every corruption (worse),
annealing is within a hair of the baseline (equivalent), anti gains 2 pp; the matched baseline of
sharpening is the tuned baseline's profile. Clean accuracy is the same for every method, so the
clean answer and the corruption answer must disagree — they are separate Holm families.
"""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from analysis import plots, report, tables
from analysis.load import load_study
from study.tracking import StudyTracker
from trainer.config import TrialConfig
from trainer.corruptions import CIFAR_C, MNIST_C, SEVERITIES

SEEDS = [1, 2, 3, 4, 5]
NOISE = [0.0010, -0.0020, 0.0015, -0.0010, 0.0005]  # per seed, shared by every method (paired designs see it cancel)
PROFILE = {name: 0.50 + 0.03 * i for i, name in enumerate(MNIST_C)}  # the baseline's accuracy per corruption
# Each method's shift of every corruption's accuracy, and its own seed wobble on top of NOISE.
SHIFT = {"baseline": 0.0, "sharpening": -0.04, "annealing": 0.0003}
WOBBLE = {"baseline": [0, 0, 0, 0, 0], "sharpening": [0.001, -0.001, 0, 0.0005, -0.0005],
          "annealing": [0.0002, -0.0001, 0, 0.0001, -0.0002]}
CONTROL_SHIFT = {"anti": 0.02, "blur_aug": -0.04}
CONFIGS = {"baseline": {"method": "baseline"},
           "sharpening": {"method": "sharpening", "K": 4, "epochs_per_level": 1, "kernel": "box"},
           "annealing": {"method": "annealing"}}
EPOCHS = 4


def profile(dataset: str, shift: float, seed_index: int, wobble: float) -> dict:
    """The corruption metrics a trial logs: one per copy, and their mean."""
    values = {}
    if dataset == "digits":
        for name, base in PROFILE.items():
            values[f"test_acc_corrupt_{name}"] = base + shift + NOISE[seed_index] + wobble
    else:  # severity s costs 5 pp a step
        for i, name in enumerate(CIFAR_C):
            for severity in SEVERITIES:
                values[f"test_acc_corrupt_{name}_s{severity}"] = (0.85 - 0.01 * i - 0.05 * (severity - 1) + shift
                                                                   + NOISE[seed_index] + wobble)
    values["test_acc_corrupt"] = float(np.mean(list(values.values())))
    return values


def add_run(tracker, trial_id, config, tags, dataset, seed, final):
    values = {**config, "dataset": dataset, "epochs": EPOCHS, "seed": seed}
    run_id = tracker.create_child(trial_id, values, tags)
    for epoch in range(1, EPOCHS + 1):
        result = {"epoch": epoch, "val_acc": 0.9, "val_loss": 0.3, "train_loss": 0.2, "in_final_regime": 1}
        if epoch == EPOCHS:
            result.update({"test_acc": 0.95, "train_seconds": 2.0, "trial_seconds": 2.4, "corruption_seconds": 0.1,
                           "outcome": "completed", **final})
        tracker.log_result(run_id, result)
    tracker.finish_child(run_id, "completed")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("corruption-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    tracker = StudyTracker.create(uri, "robust", (root / "artifacts").as_uri(), tags={"space": "test"},
                                  params={"num_samples": 1, "methods": json.dumps([*CONFIGS, *CONTROL_SHIFT])})
    count = iter(range(10_000))
    for dataset in ("digits", "cifar10"):
        for method, config in CONFIGS.items():
            trial_id = f"t{next(count):04d}"
            add_run(tracker, trial_id, config, {"phase": "search"}, dataset, 0, {})
            tracker.set_parent_tag(f"best_trial.{dataset}.{method}", trial_id)
            for i, seed in enumerate(SEEDS):
                add_run(tracker, f"t{next(count):04d}", config, {"phase": "repeat", "slot": f"repeat:{method}:s{seed}"},
                        dataset, seed, profile(dataset, SHIFT[method], i, WOBBLE[method][i]))
        sharpening = TrialConfig.from_dict({**CONFIGS["sharpening"], "dataset": dataset, "epochs": EPOCHS})
        for i, seed in enumerate(SEEDS):
            add_run(tracker, f"t{next(count):04d}", sharpening.with_method("baseline"),
                    {"phase": "control", "slot": f"control:baseline~sharpening:s{seed}", "matched_to": "sharpening"},
                    dataset, seed, profile(dataset, 0.0, i, 0.0003 * (-1) ** i))
            for control, shift in CONTROL_SHIFT.items():
                add_run(tracker, f"t{next(count):04d}", sharpening.with_method(control),
                        {"phase": "control", "slot": f"control:{control}~sharpening:s{seed}",
                         "matched_to": "sharpening"}, dataset, seed, profile(dataset, shift, i, 0.0004 * (-1) ** i))
    tracker.finish_parent({f"search_trials.{d}.{m}": 1.0 for d in ("digits", "cifar10") for m in CONFIGS})
    return uri


@pytest.fixture(scope="module")
def trials(store):
    return load_study(store, "robust").trials


def scores(trials, dataset, group, metric="test_acc_corrupt") -> np.ndarray:
    runs = tables.reruns(trials)
    runs = runs[(runs["key"] == dataset) & (runs["group"] == group)].sort_values("seed")
    return runs[metric].to_numpy(float)


def holm_by_hand(pvalues: dict) -> dict:
    ordered = sorted(pvalues.items(), key=lambda kv: kv[1])
    running, out = 0.0, {}
    for rank, (name, p) in enumerate(ordered):
        running = max(running, min(1.0, (len(ordered) - rank) * p))
        out[name] = running
    return out


def test_corruption_columns_follow_the_sets_order(trials):
    digits = tables.corruption_columns(trials[trials["dataset"] == "digits"])
    assert list(digits) == list(MNIST_C) and all(levels == [(None, f"test_acc_corrupt_{c}")]
                                                 for c, levels in digits.items())
    cifar = tables.corruption_columns(trials[trials["dataset"] == "cifar10"])
    assert list(cifar) == list(CIFAR_C)
    assert cifar["fog"] == [(s, f"test_acc_corrupt_fog_s{s}") for s in SEVERITIES]
    assert "test_acc_corrupt" not in {c for levels in cifar.values() for _, c in levels}  # the mean is not a copy


def test_per_corruption_table_and_mce_by_hand(trials):
    table = tables.corruption_table(trials).set_index(["key", "method", "corruption"])
    for method, shift in {**SHIFT, **CONTROL_SHIFT}.items():
        wobble = np.mean(WOBBLE.get(method, [0.0004 * (-1) ** i for i in range(5)]))
        relative = []
        for name, base in PROFILE.items():
            row = table.loc[("digits", method, name)]
            accuracy = base + shift + np.mean(NOISE) + wobble
            baseline = base + np.mean(NOISE)
            assert row["accuracy"] == pytest.approx(accuracy) and row["severities"] == 1
            assert row["diff"] == pytest.approx(accuracy - baseline)
            assert row["relative_error"] == pytest.approx((1 - accuracy) / (1 - baseline))
            relative.append((1 - accuracy) / (1 - baseline))
        means = table.loc[("digits", method, tables.ALL_CORRUPTIONS)]
        assert means["relative_error"] == pytest.approx(np.mean(relative))  # the mCE
        assert means["diff"] == pytest.approx(shift + wobble)
    assert table.loc[("digits", "baseline", tables.ALL_CORRUPTIONS), "relative_error"] == pytest.approx(1.0)
    # CIFAR-10-C style: a corruption's accuracy is the mean over its five severities.
    fog = table.loc[("cifar10", "sharpening", "fog")]
    i = list(CIFAR_C).index("fog")
    expected = np.mean([0.85 - 0.01 * i - 0.05 * (s - 1) for s in SEVERITIES]) - 0.04 + np.mean(NOISE) + np.mean(
        WOBBLE["sharpening"])
    assert fog["severities"] == 5 and fog["accuracy"] == pytest.approx(expected)
    assert table.loc[("cifar10", "anti", tables.ALL_CORRUPTIONS), "severities"] == 75


def test_the_second_endpoint_has_its_own_holm_family_and_the_same_verdicts(trials):
    corrupt = tables.repeat_summary(trials, "test_acc_corrupt").set_index(["key", "method"])
    clean = tables.repeat_summary(trials, "test_acc").set_index(["key", "method"])
    base = scores(trials, "digits", "repeat:baseline")
    pvalues = {m: scipy_stats.ttest_ind(scores(trials, "digits", f"repeat:{m}"), base, equal_var=False).pvalue
               for m in ("sharpening", "annealing")}
    adjusted = holm_by_hand(pvalues)
    for method in ("sharpening", "annealing"):
        row = corrupt.loc[("digits", method)]
        assert row["p"] == pytest.approx(pvalues[method]) and row["p_holm"] == pytest.approx(adjusted[method])
        assert row["metric"] == "test_acc_corrupt"
    assert corrupt.loc[("digits", "sharpening"), "verdict"] == "worse"
    assert corrupt.loc[("digits", "annealing"), "verdict"] == "equivalent within ±0.5 pp"
    # Clean accuracy is identical for every method: its family says nothing the corruption one says.
    assert not clean.loc[("digits", "sharpening"), "verdict"] in ("worse", "better")
    # Matched baseline and controls, paired by seed, on the same endpoint.
    matched = tables.matched_table(trials, "test_acc_corrupt").set_index(["key", "method"])
    a, b = scores(trials, "digits", "repeat:sharpening"), scores(trials, "digits", "control:baseline~sharpening")
    assert matched.loc[("digits", "sharpening"), "p"] == pytest.approx(scipy_stats.ttest_rel(a, b).pvalue)
    assert matched.loc[("digits", "sharpening"), "verdict"] == "worse"
    controls = tables.controls_table(trials, "test_acc_corrupt").set_index(["key", "versus"])
    pvalues = {c: scipy_stats.ttest_rel(a, scores(trials, "digits", f"control:{c}~sharpening")).pvalue
               for c in CONTROL_SHIFT}
    adjusted = holm_by_hand(pvalues)
    for control in CONTROL_SHIFT:
        assert controls.loc[("digits", control), "p_holm"] == pytest.approx(adjusted[control])
    assert controls.loc[("digits", "anti"), "verdict"] == "worse"  # sharpening − anti: −6 pp
    assert controls.loc[("digits", "anti"), "diff"] == pytest.approx(-0.06, abs=0.002)


def test_the_heatmap_is_drawn_or_says_why_not(trials, tmp_path):
    table = tables.corruption_table(trials)
    path = plots.corruption_heatmap(table[table["key"] == "digits"], tmp_path / "heat.png", "robust · digits")
    assert path.stat().st_size > 10_000
    with pytest.raises(plots.NoData, match="no corruption metrics"):
        plots.corruption_heatmap(table.iloc[0:0], tmp_path / "none.png", "none")
    with pytest.raises(plots.NoData, match="only the baseline"):
        plots.corruption_heatmap(table[table["method"] == "baseline"], tmp_path / "one.png", "one")


def test_the_report_answers_both_endpoints(store, tmp_path):
    out = tmp_path / "report"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert report.main(["--tracking-uri", store, "--experiment", "robust", "--out", str(out),
                            "--no-log-artifacts"]) == 0
    lines = printed.getvalue().splitlines()
    answer = next(line for line in lines if line.startswith("[digits] second endpoint, corruptions:"))
    assert "worse: sharpening" in answer and "equivalent within ±0.5 pp: annealing" in answer
    assert "(mean corruption accuracy, 5 seeds per method)" in answer
    family = lines[lines.index(answer) + 1]
    assert family == "  Holm over 2 comparisons: sharpening, annealing vs baseline on mean corruption accuracy:"
    assert any(line.startswith("[digits] corruptions, controls (paired by seed): Holm over 2 comparisons")
               for line in lines)
    page = (out / "report.html").read_text()
    assert "Robustness to common corruptions (second endpoint)" in page and "mCE" in page
    for key in ("digits", "cifar10"):
        assert (out / f"corruption-{key}.png").stat().st_size > 10_000
    by_type = pd.read_csv(out / "corruption_by_type.csv")
    assert set(by_type["key"]) == {"digits", "cifar10"} and len(by_type) == 5 * (15 + 1) * 2
    summary = pd.read_csv(out / "summary.csv")
    row = summary[(summary["key"] == "digits") & (summary["method"] == "sharpening")].iloc[0]
    assert row["repeat_test_acc_corrupt_verdict"] == "worse"
    assert math.isfinite(row["repeat_test_acc_corrupt_diff"])
