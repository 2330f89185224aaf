"""The trainer end to end on digits: determinism, exact resume, learning, outcomes, final metrics, CLI."""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from study.blur import KERNELS
from study.train import TrialFailure, train

REPO = Path(__file__).resolve().parents[1]


class Stop(Exception):
    """Raised by a report to interrupt a trial, as a killed worker would."""


def _run(config: dict, data, **kwargs) -> tuple[list[dict], dict]:
    reports = []
    final = train(config, lambda metrics, state: reports.append(metrics), data=data, **kwargs)
    return reports, final


def _checkpoint(state: dict) -> dict:
    """What a checkpoint store does to the state: serialise it and read it back."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer)


RESUME_CONFIGS = {
    "sharpening": {"method": "sharpening", "K": 4, "epochs": 4},  # resumes on level 2
    "blur_aug": {"method": "blur_aug", "K": 4, "epochs": 4},  # resumes in the random-level epochs
    "combined_trainable": {"method": "combined", "theta_schedule": "trainable_channel", "K": 3,
                           "epochs": 4, "optimizer": "adam", "lr": 0.01},
    "annealing_linear": {"method": "annealing", "epochs": 4, "l1": 1e-5, "lr_schedule": "step"},
}


@pytest.mark.parametrize("name", ["blur_aug", "combined_trainable"])
def test_same_config_and_seed_give_identical_metrics(digits, without_timing, name):
    config = {**RESUME_CONFIGS[name], "device": "cpu", "seed": 3}
    first, _ = _run(config, digits)
    second, _ = _run(config, digits)
    assert len(first) == 4
    assert [without_timing(m) for m in first] == [without_timing(m) for m in second]
    other_seed, _ = _run({**config, "seed": 4}, digits)
    assert [m["train_loss"] for m in other_seed] != [m["train_loss"] for m in first]


@pytest.mark.parametrize("name", list(RESUME_CONFIGS))
def test_resume_equals_uninterrupted(digits, without_timing, name):
    config = {**RESUME_CONFIGS[name], "device": "cpu", "seed": 1}
    uninterrupted, _ = _run(config, digits)
    assert [m["epoch"] for m in uninterrupted] == [1, 2, 3, 4]

    captured = {}

    def report(metrics, state):
        if metrics["epoch"] == 2:
            captured["state"] = _checkpoint(state())
            raise Stop

    with pytest.raises(Stop):
        train(config, report, data=digits)
    assert captured["state"]["epoch"] == 2

    resumed, final = _run(config, digits, resume=captured["state"])
    assert [m["epoch"] for m in resumed] == [3, 4]
    assert [without_timing(m) for m in resumed] == [without_timing(m) for m in uninterrupted[2:]]
    assert final["outcome"] == "completed" and "test_acc" in final


def test_trainable_theta_moves_during_training(digits):
    reports, _ = _run({"method": "annealing", "theta_schedule": "trainable_channel", "epochs": 3,
                       "device": "cpu"}, digits)
    assert reports[-1]["theta_min"] < reports[0]["theta_max"] - 1e-3  # θ is really learned


def test_baseline_learns_digits(digits):
    _, final = _run({"epochs": 10}, digits)
    assert final["outcome"] == "completed"
    assert final["val_acc"] >= 0.90
    assert final["test_acc"] >= 0.90


def test_sharpening_visits_levels_k_to_2_then_originals(digits):
    reports, final = _run({"method": "sharpening", "K": 4, "epochs": 6, "device": "cpu"}, digits)
    assert [m["blur_level"] for m in reports] == [4, 3, 2, 1, 1, 1]
    assert [m["on_originals"] for m in reports] == [0, 0, 0, 1, 1, 1]
    assert final["blur_level"] == 1
    assert all(m["theta"] == 0.0 for m in reports)  # plain ReLU


def test_blur_aug_reports_the_mean_random_level(digits):
    reports, _ = _run({"method": "blur_aug", "K": 4, "epochs_per_level": 1, "epochs": 5, "device": "cpu"}, digits)
    random_epochs = [m["blur_level"] for m in reports[:3]]
    assert all(2 <= level <= 4 for level in random_epochs)
    assert any(level != int(level) for level in random_epochs)  # a mean over batches, not one level
    assert [m["blur_level"] for m in reports[3:]] == [1, 1]


def test_scheduled_theta_is_reported_and_reaches_zero(digits):
    reports, _ = _run({"method": "annealing", "epochs": 4, "device": "cpu"}, digits)
    thetas = [m["theta"] for m in reports]
    assert thetas[0] < math.pi / 4 and all(b <= a for a, b in zip(thetas, thetas[1:]))
    # Each epoch reports the θ its last step trained with: the last annealing step (epoch 3 of
    # anneal_epochs = epochs - 1 = 3) is θ0/T, then epoch 4 trains a plain ReLU network.
    steps = math.ceil(len(digits.train_x) / 64)
    assert thetas[-2] == pytest.approx(math.pi / 4 / (3 * steps))
    assert thetas[-1] == 0.0


def test_diverging_trial_ends_with_outcome_diverged(digits):
    reports, final = _run({"lr": 1e6, "epochs": 5, "device": "cpu"}, digits)
    assert final["outcome"] == "diverged"
    assert not math.isfinite(final["train_loss"])
    assert len(reports) < 5  # stopped early
    assert reports[-1] is final
    assert "test_acc" not in final


def test_fail_at_epoch_raises_after_one_report(digits):
    reports = []
    with pytest.raises(TrialFailure, match="fail_at_epoch=2"):
        train({"fail_at_epoch": 2, "epochs": 4, "device": "cpu"}, lambda m, s: reports.append(m), data=digits)
    assert [m["epoch"] for m in reports] == [1]


def test_final_metrics_include_test_scores_and_robustness_profile(digits):
    reports, final = _run({"epochs": 2, "robustness_levels": 10, "device": "cpu"}, digits)
    assert reports[-1] is final and final["outcome"] == "completed"
    for key in ("test_acc", "test_f1_macro", "test_precision_macro", "test_recall_macro", "test_loss",
                "train_seconds"):
        assert key in final, key
        assert "test_acc" not in reports[0]
    for kernel in KERNELS:
        for level in range(1, 5):  # capped at max_level = 4 for 8×8 digits
            value = final[f"test_acc_{kernel}_L{level}"]
            assert 0.0 <= value <= 1.0
        assert f"test_acc_{kernel}_L5" not in final
        assert final[f"test_acc_{kernel}_L1"] == final["test_acc"]
    for key in ("test_f1_macro", "test_precision_macro", "test_recall_macro"):
        assert 0.0 <= final[key] <= 1.0

    _, few = _run({"epochs": 1, "robustness_levels": 2, "device": "cpu"}, digits)
    assert "test_acc_gaussian_L2" in few and "test_acc_gaussian_L3" not in few


def test_data_of_another_dataset_is_refused(digits):
    from study.config import ConfigError

    with pytest.raises(ConfigError, match="dataset"):
        train({"dataset": "mnist", "epochs": 1, "device": "cpu"}, data=digits)


def _cli(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # as in conftest: one thread for tiny models
    return subprocess.run([sys.executable, "-m", "study.train", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env=env)


def test_cli_runs_one_trial():
    result = _cli("--dataset", "digits", "--method", "sharpening", "--K", "3", "--epochs", "4")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    epoch_lines = [line for line in lines if "val_acc" in line and not line.startswith("final:")]
    assert len(epoch_lines) == 4
    assert [line.split()[1] for line in epoch_lines] == ["1/4", "2/4", "3/4", "4/4"]
    finals = [line for line in lines if line.startswith("final:")]
    assert len(finals) == 1 and "outcome completed" in finals[0] and "test_acc" in finals[0]


def test_cli_refuses_a_bad_value_naming_the_field():
    result = _cli("--dataset", "digits", "--kernel", "nope", "--epochs", "1")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "kernel" in errors[0] and "nope" in errors[0]
    assert "val_acc" not in result.stdout  # it never trained
