"""The trainer end to end on digits: determinism, exact resume, learning, outcomes, final metrics, CLI."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from study.blur import KERNELS
from study.config import LEARNED_SCHEDULES, TrialConfig, field_docs
from study.data import to_device
from study.schedules import sigma_at
from study.train import (TrialFailure, _optimizer, build_network, build_parser, evaluate, format_epoch, main, train,
                         uses_channels_last)

REPO = Path(__file__).resolve().parents[1]


class Stop(Exception):
    """Raised by a report to interrupt a trial, as a killed worker would."""


def _run(config: dict, data, **kwargs) -> tuple[list[dict], dict]:
    reports = []
    final = train(config, lambda metrics, state: reports.append(metrics), data=data, **kwargs)
    return reports, final


def _checkpoint(state: dict, weights_only: bool = False) -> dict:
    """What the checkpoint store (study.trainable) does to the state: torch.save it and read it
    back with weights_only=False; `test_checkpoint_state_is_plain_data` checks the strict load."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=weights_only)


RESUME_CONFIGS = {
    "sharpening": {"method": "sharpening", "K": 4, "epochs": 4},  # resumes on level 2
    "blur_aug": {"method": "blur_aug", "K": 4, "epochs": 4},  # resumes in the random-level epochs
    "learned_channel": {"method": "learned_theta", "theta_schedule": "trainable_channel", "theta0": 0.5,
                        "epochs": 4, "optimizer": "adam", "lr": 0.01},  # θ in the optimiser state
    "combined_step": {"method": "combined", "theta_schedule": "step", "K": 3, "epochs": 4},
    "annealing_linear": {"method": "annealing", "epochs": 4, "l1": 1e-5, "lr_schedule": "step"},
    # σ is not checkpointed: the resumed epoch 3 must smooth with σ = 0.25 again.
    "cbs": {"method": "cbs", "epochs": 4, "sigma_decay": 0.5, "decay_every": 1},
}


@pytest.mark.parametrize("name", ["blur_aug", "learned_channel"])
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
    assert [m["sigma"] for m in resumed] == [sigma_at(TrialConfig.from_dict(config), e) for e in (3, 4)]
    assert final["outcome"] == "completed" and "test_acc" in final


@pytest.mark.parametrize("name", list(RESUME_CONFIGS))
def test_checkpoint_state_is_plain_data(digits, name):
    """The state loads with torch.load's default weights_only=True: tensors and plain values only."""
    config = {**RESUME_CONFIGS[name], "device": "cpu"}
    captured = {}

    def report(metrics, state):
        captured["state"] = state()
        raise Stop

    with pytest.raises(Stop):
        train(config, report, data=digits)
    loaded = _checkpoint(captured["state"], weights_only=True)
    assert loaded["epoch"] == 1 and set(loaded["model"]) == set(captured["state"]["model"])


def test_trainable_theta_moves_during_training(digits):
    reports, _ = _run({"method": "learned_theta", "theta_schedule": "trainable_channel", "theta0": 0.5,
                       "epochs": 3, "device": "cpu"}, digits)
    assert reports[-1]["theta_min"] < reports[0]["theta_max"] - 1e-3  # θ is really learned
    assert reports[-1]["theta_min"] < 0.5 - 1e-3 < 0.5 + 1e-3 < reports[-1]["theta_max"]  # per channel, both ways
    assert all(0.0 <= m["theta_min"] <= m["theta_max"] <= math.pi / 4 for m in reports)
    assert all(m["in_final_regime"] == 1 and m["sigma"] == 0.0 for m in reports)  # no curriculum


@pytest.mark.parametrize("schedule", LEARNED_SCHEDULES)
@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adamw"])
def test_learned_theta_has_its_own_param_group(digits, schedule, optimizer):
    config = TrialConfig.from_dict({"method": "learned_theta", "theta_schedule": schedule, "lr": 0.02,
                                    "theta_lr_scale": 0.25, "weight_decay": 1e-3, "optimizer": optimizer,
                                    "device": "cpu"})
    network = build_network(config, digits.shape, digits.num_classes, torch.device("cpu"))
    thetas = network.activations.thetas()
    theta_ids = {id(t) for t in thetas}
    assert len(theta_ids) == (1 if schedule == "trainable" else len(thetas)) and len(thetas) >= 3
    groups = _optimizer(config, network.net, thetas).param_groups
    assert len(groups) == 2
    weights, theta = groups
    assert [id(p) for p in theta["params"]] == list(dict.fromkeys(id(t) for t in thetas))  # θ, each once
    assert not theta_ids & {id(p) for p in weights["params"]}
    assert {id(p) for p in weights["params"]} | theta_ids == {id(p) for p in network.net.parameters()}
    assert theta["lr"] == pytest.approx(0.02 * 0.25, rel=1e-15) and theta["weight_decay"] == 0.0
    assert weights["lr"] == 0.02 and weights["weight_decay"] == 1e-3


@pytest.mark.parametrize("values", [{"method": "baseline"}, {"method": "annealing"}, {"method": "cbs"},
                                    {"method": "sharpening", "K": 3}])
def test_methods_without_learned_theta_have_one_param_group(digits, values):
    config = TrialConfig.from_dict({**values, "device": "cpu"})
    network = build_network(config, digits.shape, digits.num_classes, torch.device("cpu"))
    groups = _optimizer(config, network.net, network.activations.thetas()).param_groups
    assert len(groups) == 1
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in network.net.parameters()}
    assert groups[0]["weight_decay"] == config.weight_decay


def test_baseline_learns_digits(digits):
    _, final = _run({"epochs": 10}, digits)
    assert final["outcome"] == "completed"
    assert final["val_acc"] >= 0.90
    assert final["test_acc"] >= 0.90


def test_sharpening_visits_levels_k_to_2_then_originals(digits):
    reports, final = _run({"method": "sharpening", "K": 4, "epochs": 6, "device": "cpu"}, digits)
    assert [m["blur_level"] for m in reports] == [4, 3, 2, 1, 1, 1]
    assert [m["in_final_regime"] for m in reports] == [0, 0, 0, 1, 1, 1]
    assert final["blur_level"] == 1
    assert all(m["theta"] == 0.0 for m in reports)  # plain ReLU
    assert all(m["sigma"] == 0.0 for m in reports)  # no feature smoothing


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
    assert [m["in_final_regime"] for m in reports] == [0, 0, 0, 1]
    assert all(m["blur_level"] == 1 and m["sigma"] == 0.0 for m in reports)


def test_annealing_final_regime_starts_when_theta_reaches_zero(digits):
    reports, _ = _run({"method": "annealing", "theta_schedule": "cosine", "anneal_epochs": 2, "epochs": 4,
                       "device": "cpu"}, digits)
    assert [m["in_final_regime"] for m in reports] == [0, 0, 1, 1]
    assert [m["theta"] > 0 for m in reports] == [True, True, False, False]


def test_cbs_trains_and_reports_sigma_per_epoch(digits):
    values = {"method": "cbs", "sigma0": 2.0, "sigma_decay": 0.5, "decay_every": 1, "smooth_epochs": 2,
              "epochs": 3, "device": "cpu"}
    config = TrialConfig.from_dict(values)
    reports, final = _run(values, digits)
    assert [m["sigma"] for m in reports] == [sigma_at(config, e) for e in (1, 2, 3)] == [2.0, 1.0, 0.0]
    assert [m["in_final_regime"] for m in reports] == [0, 0, 1]
    assert all(m["blur_level"] == 1 and m["theta"] == 0.0 for m in reports)  # smooths features, not images
    assert final["outcome"] == "completed" and "test_acc" in final
    assert reports[-1]["train_loss"] < reports[0]["train_loss"]
    assert final["val_acc"] >= 0.5
    # The smoothing acts: the same seed without it trains differently from the first batch on.
    baseline, _ = _run({"epochs": 3, "device": "cpu"}, digits)
    assert baseline[0]["train_loss"] != reports[0]["train_loss"]


def test_cbs_learns_digits(digits):
    """Issue requirement: a 10-epoch cbs digits trial reaches >= 90 % validation accuracy.

    Measured (seeds 0-5): with the authors' defaults (σ0 1, ×0.9 every 5 epochs) σ is still 0.9
    in epoch 9 and drops to 0 in epoch 10; val_acc falls from ~0.95 to 0.79-0.90 in that last
    epoch. Decaying σ by half every epoch (σ 1, 0.5, ..., 0.004, then 0) gives 0.965-0.986."""
    values = {"method": "cbs", "sigma_decay": 0.5, "decay_every": 1, "epochs": 10, "device": "cpu"}
    reports, final = _run(values, digits)
    assert final["outcome"] == "completed"
    assert [m["sigma"] for m in reports] == [0.5 ** e for e in range(9)] + [0.0]
    assert final["val_acc"] >= 0.90
    assert final["test_acc"] >= 0.90


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


def test_each_split_is_evaluated_on_its_own_data(digits):
    """val metrics every epoch on the validation split, test metrics once, at the end, on the test
    split. The validation labels are shifted by one class, so a model that learned digits scores
    ~0 on them and ~1 on the test split: evaluating the wrong split would show."""
    shifted = dataclasses.replace(digits, val_y=(digits.val_y + 1) % 10)
    config = TrialConfig.from_dict({"epochs": 3, "device": "cpu"})
    reports, states = [], []
    final = train(config, lambda m, state: (reports.append(m), states.append(_checkpoint(state()))), data=shifted)
    assert all(m["val_acc"] <= 0.1 for m in reports[1:])
    assert reports[-1]["train_acc"] >= 0.9 and final["test_acc"] >= 0.9
    assert all(not any(key.startswith("test_") for key in m) for m in reports[:-1])  # test only at the end

    # Exactly the numbers of the checkpointed model evaluated on each split.
    cpu = torch.device("cpu")
    tensors = to_device(shifted, cpu, uses_channels_last(config))
    for metrics, state in zip(reports, states):
        network = build_network(config, shifted.shape, shifted.num_classes, cpu)
        network.net.load_state_dict(state["model"])
        val_loss, val_acc, _ = evaluate(network.net, tensors.val_x, tensors.val_y, contextlib.nullcontext)
        assert metrics["val_acc"] == val_acc and metrics["val_loss"] == pytest.approx(val_loss, rel=1e-6)
    test_loss, test_acc, _ = evaluate(network.net, tensors.test_x, tensors.test_y, contextlib.nullcontext)
    assert final["test_acc"] == test_acc and final["test_loss"] == pytest.approx(test_loss, rel=1e-6)
    assert final["test_acc_box_L1"] == test_acc


@pytest.mark.parametrize("lr_schedule", ["cosine", "step", "constant"])
def test_reported_lr_is_the_schedules_value_after_the_epoch(digits, lr_schedule):
    lr, epochs, scale = 0.04, 4, 0.25
    config = {"method": "learned_theta", "theta_schedule": "trainable_channel", "theta_lr_scale": scale,
              "lr": lr, "lr_schedule": lr_schedule, "epochs": epochs, "device": "cpu"}
    steps = math.ceil(len(digits.train_x) / 64)  # batch_size 64, stepped every batch
    total = epochs * steps
    reports, groups = [], []
    train(config, lambda m, state: (reports.append(m), groups.append(state()["optimizer"]["param_groups"])),
          data=digits)
    for epoch, (metrics, (weights, theta)) in enumerate(zip(reports, groups), start=1):
        t = epoch * steps  # scheduler steps taken by the end of the epoch
        if lr_schedule == "cosine":
            expected = lr * (1 + math.cos(math.pi * t / total)) / 2
        elif lr_schedule == "step":
            expected = lr * 0.1 ** sum(t >= milestone for milestone in (int(total * 0.5), int(total * 0.75)))
        else:
            expected = lr
        assert metrics["lr"] == pytest.approx(expected, rel=1e-9, abs=1e-15), epoch
        assert weights["lr"] == metrics["lr"]
        assert theta["lr"] == pytest.approx(scale * expected, rel=1e-9, abs=1e-15)  # θ follows the same schedule
        assert theta["weight_decay"] == 0.0
    if lr_schedule == "step":
        assert [m["lr"] for m in reports] == pytest.approx([lr, lr * 0.1, lr * 0.01, lr * 0.01], rel=1e-9)


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


# ---------------------------------------------------------------------------------------------
# The command line in-process (the subprocess tests above cannot tell mutmut what they ran).

def test_main_prints_the_config_each_epoch_the_final_lines_and_json(capsys):
    status = main(["--dataset", "digits", "--method", "sharpening", "--K", "3", "--epochs", "3",
                   "--device", "cpu", "--json"])
    assert status == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == 'config: {"method": "sharpening", "dataset": "digits", "K": 3, "epochs": 3, "device": "cpu"}'
    final = json.loads(lines[-1])
    assert final["outcome"] == "completed" and final["epoch"] == 3
    assert [line.split()[:2] for line in lines[1:4]] == [["epoch", "1/3"], ["epoch", "2/3"], ["epoch", "3/3"]]
    assert [line.split()[3] for line in lines[1:4]] == ["3", "2", "1"]  # the blur level of each epoch
    assert lines[3] == format_epoch(final, 3)
    assert lines[4] == (f"final: outcome completed  val_acc {final['val_acc']:.4f}  test_acc {final['test_acc']:.4f}  "
                        f"test_f1_macro {final['test_f1_macro']:.4f}  train_seconds {final['train_seconds']:.2f}")
    profile = "  ".join(f"{k}:" + ",".join(f"{final[f'test_acc_{k}_L{n}']:.3f}" for n in range(1, 5)) for k in KERNELS)
    assert lines[5] == f"blur robustness (test acc at levels 1..L): {profile}"
    assert len(lines) == 7


def test_main_reports_a_diverged_trial_without_test_scores(capsys):
    assert main(["--lr", "1e6", "--epochs", "3", "--device", "cpu"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1].startswith("final: outcome diverged  val_acc ")
    assert "test_acc" not in lines[-1] and not lines[-1].endswith("blur robustness")


def test_main_streams_each_epoch_line_as_it_is_trained(monkeypatch):
    class Recorder(io.StringIO):
        def flush(self):
            self.write("<flush>")

    out = Recorder()
    monkeypatch.setattr(sys, "stdout", out)
    assert main(["--epochs", "2", "--device", "cpu"]) == 0
    text = out.getvalue()
    assert text.startswith('config: {"epochs": 2, "device": "cpu"}\n<flush>')
    epochs = [part for part in text.split("\n") if part.startswith("<flush>epoch") or part.startswith("epoch")]
    assert len(epochs) == 2
    assert text.count("epoch   1/2") == 1 and "epoch   1/2" in text.split("<flush>")[1]  # flushed before epoch 2
    assert "epoch   2/2" in text.split("<flush>")[2]


def test_format_epoch_is_one_fixed_width_line():
    metrics = {"epoch": 7, "blur_level": 2.5, "theta": 0.39269908, "lr": 0.0123456, "train_loss": 0.123456,
               "train_acc": 0.98765, "val_loss": 0.25, "val_acc": 0.9, "epoch_seconds": 1.234,
               "samples_per_second": 12345.6}
    assert format_epoch(metrics, 20) == (
        "epoch   7/20  level 2.5  theta 0.393  lr 0.0123  train_loss 0.1235 train_acc 0.9877  "
        "val_loss 0.2500 val_acc 0.9000  1.23s 12,346 samples/s")


def test_parser_flags_take_the_fields_and_only_the_flags_given(capsys):
    parser = build_parser()
    assert vars(parser.parse_args([])) == {"json": False}  # unset flags are absent: the config's defaults
    parsed = vars(parser.parse_args(["--download", "--no-batch-norm", "--compile", "--json", "--epochs-per-level", "2",
                                     "--theta_lr_scale", "0.5", "--kernel", "gaussian"]))
    assert parsed == {"download": True, "batch_norm": False, "compile": True, "json": True,
                      "epochs_per_level": "2", "theta_lr_scale": "0.5", "kernel": "gaussian"}
    with pytest.raises(SystemExit) as caught:
        parser.parse_args(["--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m study.train ")

    def squeezed(text):  # argparse wraps lines (even at hyphens): compare without whitespace
        return "".join(text.split())

    text = squeezed(out)
    assert squeezed("Train one trial of the curriculum study (no Ray, Optuna or MLflow needed).") in text
    assert squeezed("--json print the final metrics as one JSON line") in text
    docs = field_docs()
    for item in dataclasses.fields(TrialConfig):
        assert squeezed(f"{docs[item.name]} (default: {item.default!r})") in text, item.name


def test_main_without_flags_says_it_runs_the_defaults(monkeypatch, capsys):
    import study.train as trainer

    seen = {}

    def fake_train(config, report):
        seen["config"] = config
        return {"outcome": "completed", "val_acc": 0.5}

    monkeypatch.setattr(trainer, "train", fake_train)
    assert main([]) == 0
    assert seen["config"] == TrialConfig()
    assert capsys.readouterr().out.splitlines() == ["config: defaults", "final: outcome completed  val_acc 0.5000"]
