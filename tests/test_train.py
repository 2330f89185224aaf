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

import numpy as np
import pytest
import torch

from trainer import corruptions
from trainer.blur import KERNELS
from trainer.config import LEARNED_SCHEDULES, TrialConfig, field_docs
from trainer.data import to_device
from trainer.schedules import sigma_at
from trainer.train import (TrialFailure, make_optimizer, build_network, build_parser, evaluate, format_epoch, main, train,
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
    groups = make_optimizer(config, network.net, thetas).param_groups
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
    groups = make_optimizer(config, network.net, network.activations.thetas()).param_groups
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
    from trainer.config import ConfigError

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
    return subprocess.run([sys.executable, "-m", "trainer.train", *args], cwd=REPO, capture_output=True,
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
    # The second endpoint: MNIST-C's 15 corruptions of the digits, their mean and the worst three.
    corrupted = {k.removeprefix("test_acc_corrupt_"): v for k, v in final.items() if k.startswith("test_acc_corrupt_")}
    assert len(corrupted) == 15 and final["test_acc_corrupt"] == pytest.approx(np.mean(list(corrupted.values())))
    worst = sorted(corrupted.items(), key=lambda kv: (kv[1], kv[0]))[:3]
    assert lines[6] == (f"corruptions (test acc): mean {final['test_acc_corrupt']:.3f} over 15 corruptions; worst: "
                        + ", ".join(f"{name} {value:.3f}" for name, value in worst)
                        + f"  ({final['corruption_seconds']:.2f}s)")
    assert len(lines) == 8


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
    assert "\n\nTrain one trial of the curriculum study (no Ray, Optuna or MLflow needed).\n\n" in out
    assert squeezed("--json print the final metrics as one JSON line") in text
    docs = field_docs()
    for item in dataclasses.fields(TrialConfig):
        assert squeezed(f"{docs[item.name]} (default: {item.default!r})") in text, item.name


def test_main_without_flags_says_it_runs_the_defaults(monkeypatch, capsys):
    import trainer.train as trainer

    seen = {}

    def fake_train(config, report):
        seen["config"] = config
        return {"outcome": "completed", "val_acc": 0.5}

    monkeypatch.setattr(trainer, "train", fake_train)
    assert main([]) == 0
    assert seen["config"] == TrialConfig()
    assert capsys.readouterr().out.splitlines() == ["config: defaults", "final: outcome completed  val_acc 0.5000"]


# ---------------------------------------------------------------------------------------------
# The trainer's helpers, found thin by mutation testing (mutation/run.sh). CUDA is faked where only
# the choice is checked (torch.device("cuda") and torch.autocast("cuda") need no GPU).

def test_resolve_device(monkeypatch):
    import trainer.train as trainer
    from trainer.config import ConfigError

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert trainer.resolve_device("auto") == torch.device("cpu")
    assert trainer.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ConfigError) as caught:
        trainer.resolve_device("cuda:1")
    assert str(caught.value) == "device: 'cuda:1' asked for, but no CUDA device is available; use cpu or auto"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert trainer.resolve_device("auto") == torch.device("cuda")
    assert trainer.resolve_device("cuda:1") == torch.device("cuda:1")


def test_autocast_is_bf16_on_cuda_or_when_asked_for():
    import warnings

    from trainer.train import autocast_for

    config = TrialConfig()
    assert autocast_for(config, torch.device("cpu")) is contextlib.nullcontext
    assert autocast_for(TrialConfig(precision="fp32"), torch.device("cuda")) is contextlib.nullcontext
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "CUDA is not available ... disabling autocast": only its choice is checked
        on_cuda = autocast_for(config, torch.device("cuda"))()
    assert isinstance(on_cuda, torch.autocast) and (on_cuda.device, on_cuda.fast_dtype) == ("cuda", torch.bfloat16)
    asked = autocast_for(TrialConfig(precision="bf16"), torch.device("cpu"))
    with asked():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


def test_peak_memory(monkeypatch):
    import resource

    from trainer.train import peak_memory_mb

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    value = peak_memory_mb(torch.device("cpu"))
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert before <= value <= after  # the process's peak RSS in MiB (Linux reports KiB)
    real = resource.getrusage(resource.RUSAGE_SELF)
    monkeypatch.setattr(resource, "getrusage", lambda who: real if who != resource.RUSAGE_SELF
                        else type("Usage", (), {"ru_maxrss": 3_000_000})())
    assert peak_memory_mb(torch.device("cpu")) == 3_000_000 / 1024  # KiB → MiB, exactly
    asked = []
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: asked.append(device) or 3 * 2**20)
    assert peak_memory_mb(torch.device("cuda:1")) == 3.0 and asked == [torch.device("cuda:1")]


@pytest.mark.parametrize("optimizer, kind", [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam),
                                             ("adamw", torch.optim.AdamW)])
def test_optimizer_kinds_and_nesterov(digits, optimizer, kind):
    config = TrialConfig.from_dict({"optimizer": optimizer, "lr": 0.03, "device": "cpu"})
    network = build_network(config, digits.shape, digits.num_classes, torch.device("cpu"))
    built = make_optimizer(config, network.net, network.activations.thetas())
    assert type(built) is kind and built.param_groups[0]["lr"] == 0.03
    if optimizer == "sgd":
        assert built.param_groups[0]["nesterov"] is True and built.param_groups[0]["momentum"] == 0.9
        plain = make_optimizer(TrialConfig(momentum=0.0), network.net, [])
        assert plain.param_groups[0]["nesterov"] is False  # Nesterov needs momentum
        assert make_optimizer(TrialConfig(momentum=0.5), network.net, []).param_groups[0]["nesterov"] is True


def test_evaluate_over_several_batches_is_the_mean_over_the_split():
    # More samples than one evaluation batch (2048): the loss is the mean over all of them.
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x = torch.randn(5000, 1, 2, 2)
    y = torch.randint(0, 3, (5000,))
    loss, accuracy, predicted = evaluate(model, x, y, contextlib.nullcontext)
    with torch.no_grad():
        logits = model(x)
    assert loss == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-5)
    assert torch.equal(predicted, logits.argmax(dim=1))
    assert accuracy == pytest.approx((predicted == y).float().mean().item(), abs=1e-7)
    assert not model.training  # evaluated in eval mode


def test_build_network_passes_every_architecture_field(digits):
    from trainer.models import GaussianSmoothing

    config = TrialConfig.from_dict({"width": 8, "pool": "avg", "batch_norm": False, "device": "cpu"})
    network = build_network(config, digits.shape, digits.num_classes, torch.device("cpu"))
    convs = [m for m in network.net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 8, 8]
    assert any(isinstance(m, torch.nn.AvgPool2d) for m in network.net.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in network.net.modules())
    assert all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)
    assert network.smoothing is None and not any(isinstance(m, GaussianSmoothing) for m in network.net.modules())
    assert network.model is network.net  # not compiled
    cbs = build_network(TrialConfig.from_dict({"method": "cbs"}), digits.shape, 10, torch.device("cpu"))
    assert len(cbs.smoothing.layers) == 3
    mlp = build_network(TrialConfig.from_dict({"model": "mlp"}), digits.shape, 10, torch.device("cpu"))
    assert uses_channels_last(TrialConfig(model="mlp")) is False and uses_channels_last(TrialConfig()) is True
    assert uses_channels_last(TrialConfig(model="resnet18")) is True
    assert all(p.is_contiguous() for p in mlp.net.parameters())
    compiled = build_network(TrialConfig.from_dict({"compile": True}), digits.shape, 10, torch.device("cpu"))
    assert compiled.model is not compiled.net and compiled.model._orig_mod is compiled.net  # compiled lazily


def test_train_passes_download_and_the_regime_to_the_data(digits, monkeypatch):
    import trainer.train as trainer

    calls = {}

    def fake_load(name, data_dir, download, replicate):
        calls["load"] = (name, data_dir, download, replicate)
        return digits

    real_with_regime = trainer.with_regime

    def spy_with_regime(arrays, label_noise, imbalance):
        calls["regime"] = (label_noise, imbalance)
        return real_with_regime(arrays, label_noise, imbalance)

    real_to_device = trainer.to_device

    def spy_to_device(arrays, device, channels_last):
        calls["device"] = (device, channels_last)
        return real_to_device(arrays, device, channels_last)

    monkeypatch.setattr(trainer, "load_arrays", fake_load)
    monkeypatch.setattr(trainer, "with_regime", spy_with_regime)
    monkeypatch.setattr(trainer, "to_device", spy_to_device)
    train({"epochs": 1, "download": True, "data_dir": "somewhere", "label_noise": 0.2, "imbalance": 4,
           "device": "cpu"})
    assert calls == {"load": ("digits", "somewhere", True, 0), "regime": (0.2, 4.0),
                     "device": (torch.device("cpu"), True)}


def test_weight_penalties_change_the_training(digits):
    plain, _ = _run({"epochs": 2, "device": "cpu"}, digits)
    for penalty in ({"l1": 1e-3}, {"l2": 1e-2}):
        penalized, _ = _run({"epochs": 2, "device": "cpu", **penalty}, digits)
        assert penalized[0]["train_loss"] != plain[0]["train_loss"], penalty


# ---------------------------------------------------------------------------------------------
# What the training loop computes, step by step (mutation testing found these unchecked).

def test_train_loss_and_accuracy_are_over_each_training_sample_once(digits, monkeypatch):
    # lr ≈ 0 and no BatchNorm: the model never changes, so an epoch's train loss and accuracy must be
    # the initial model's mean cross-entropy and accuracy over the training split — every sample
    # once, the last partial batch included, with label smoothing when asked for. The last layer is
    # scaled ×30 so the logits are far from uniform (at a fresh init, smoothing changes the loss by
    # only 4e-6 relative, below the tolerance; scaled, by 5e-4).
    import trainer.train as trainer

    real_build = trainer.build_network

    def confident(*args):
        network = real_build(*args)
        last = [m for m in network.net.modules() if isinstance(m, torch.nn.Linear)][-1]
        with torch.no_grad():
            last.weight.mul_(30.0)
        return network

    monkeypatch.setattr(trainer, "build_network", confident)
    losses = {}
    for smoothing in (0.0, 0.2):
        config = TrialConfig.from_dict({"lr": 1e-30, "batch_norm": False, "batch_size": 100, "epochs": 1,
                                        "label_smoothing": smoothing, "device": "cpu"})
        reports, _ = _run(config, digits)
        cpu = torch.device("cpu")
        tensors = to_device(digits, cpu, uses_channels_last(config))
        assert len(tensors.train_x) % 100 != 0  # a partial last batch
        net = confident(config, digits.shape, digits.num_classes, cpu).net.eval()
        with torch.no_grad():
            logits = net(tensors.train_x)
        expected_loss = torch.nn.functional.cross_entropy(logits, tensors.train_y, label_smoothing=smoothing).item()
        expected_acc = (logits.argmax(dim=1) == tensors.train_y).sum().item() / len(tensors.train_y)
        assert reports[0]["train_loss"] == pytest.approx(expected_loss, rel=1e-5), smoothing
        assert reports[0]["train_acc"] == pytest.approx(expected_acc, abs=1e-9), smoothing
        losses[smoothing] = expected_loss
    assert abs(losses[0.2] - losses[0.0]) > 1e-4 * losses[0.0]  # smoothing's effect, 10x the tolerance


@pytest.mark.parametrize("penalty", [{"l1": 0.01}, {"l2": 0.1}, {"l1": 0.01, "l2": 0.1}])
def test_weight_penalties_act_on_the_weights_only(digits, penalty):
    # One plain SGD step on the whole training set (one batch), with and without the penalty: the
    # difference is exactly −lr·(l1·sign(w) + 2·l2·w) on weights (dim > 1), nothing on biases or BatchNorm.
    lr = 0.5
    values = {"lr": lr, "momentum": 0.0, "weight_decay": 0.0, "lr_schedule": "constant", "epochs": 1,
              "batch_size": 10_000, "device": "cpu"}
    states = {}
    for name, extra in (("plain", {}), ("penalized", penalty)):
        train({**values, **extra}, lambda m, state, name=name: states.__setitem__(name, state()["model"]), data=digits)
    config = TrialConfig.from_dict(values)
    initial = build_network(config, digits.shape, digits.num_classes, torch.device("cpu")).net.state_dict()
    l1, l2 = penalty.get("l1", 0.0), penalty.get("l2", 0.0)
    for key, before in initial.items():
        if not before.is_floating_point() or key.endswith(("running_mean", "running_var")):
            continue
        moved = states["penalized"][key] - states["plain"][key]
        if before.dim() > 1:
            expected = -lr * (l1 * torch.sign(before) + 2 * l2 * before)
            torch.testing.assert_close(moved, expected, rtol=1e-4, atol=1e-6, msg=key)
        else:
            assert torch.equal(moved, torch.zeros_like(moved)), key


def test_timings_of_each_epoch_and_of_the_trial(digits):
    import time

    started = time.perf_counter()
    reports, final = _run({"epochs": 3, "device": "cpu"}, digits)
    wall = time.perf_counter() - started
    n_train = len(digits.train_x)
    for m in reports:
        assert 0 < m["epoch_seconds"] < wall
        assert m["samples_per_second"] == pytest.approx(n_train / m["epoch_seconds"], rel=1e-9)
    assert final["train_seconds"] == pytest.approx(sum(m["epoch_seconds"] for m in reports), rel=1e-9)
    assert final["train_seconds"] <= final["trial_seconds"] < wall
    assert isinstance(final["peak_memory_mb"], float) and final["peak_memory_mb"] > 0
    assert all("trial_seconds" not in m and "peak_memory_mb" not in m for m in reports[:-1])


def test_checkpoint_records_the_config_and_a_finished_trial_resumes_to_nothing(digits):
    config = {"epochs": 2, "device": "cpu", "seed": 5}
    captured = {}
    train(config, lambda metrics, state: captured.__setitem__("state", state()), data=digits)
    assert captured["state"]["config"] == TrialConfig.from_dict(config).to_dict()
    assert captured["state"]["epoch"] == 2
    reports = []
    assert train(config, lambda m, s: reports.append(m), data=digits, resume=_checkpoint(captured["state"])) == {}
    assert reports == []


def test_data_order_and_random_levels_come_from_the_trial_seed_alone(digits, monkeypatch):
    # The batch order and blur_aug's levels are drawn from the trial's own generator, so the same seed
    # gives the same batches whatever the model (its initialisation draws from the global RNG).
    orders = {}
    real_randperm = torch.randperm

    def recording(n, *args, **kwargs):
        out = real_randperm(n, *args, **kwargs)
        orders.setdefault(current["width"], []).append(out.clone())
        return out

    current = {}
    monkeypatch.setattr(torch, "randperm", recording)
    levels = {}
    for width in (8, 16):
        current["width"] = width
        reports, _ = _run({"method": "blur_aug", "K": 3, "epochs": 3, "width": width, "seed": 2, "device": "cpu"},
                          digits)
        levels[width] = [m["blur_level"] for m in reports]
    assert len(orders[8]) == 3 and all(torch.equal(a, b) for a, b in zip(orders[8], orders[16]))
    assert levels[8] == levels[16]


def test_blur_aug_draws_every_level_from_2_to_K(digits):
    # K = 3: each batch is at level 2 or 3, so an epoch's mean level lies strictly between them.
    reports, _ = _run({"method": "blur_aug", "K": 3, "epochs": 3, "device": "cpu"}, digits)
    assert all(2.0 < m["blur_level"] < 3.0 for m in reports[:2]) and reports[2]["blur_level"] == 1


def test_learned_theta_is_clamped_into_its_range_after_every_step(digits):
    # A θ learning rate 400x the weights' throws θ out of [0, π/4] within a step; the checkpoint
    # (what the optimiser and the next step see) must hold it at the bounds.
    config = {"method": "learned_theta", "theta_schedule": "trainable_channel", "theta0": 0.4,
              "theta_lr_scale": 400.0, "epochs": 2, "device": "cpu"}
    states = []
    train(config, lambda m, state: states.append(state()["model"]), data=digits)
    thetas = torch.cat([v.reshape(-1) for k, v in states[-1].items() if k.endswith("theta")])
    assert len(thetas) >= 3 * 16
    assert thetas.min().item() >= 0.0 and thetas.max().item() <= math.pi / 4 + 1e-7
    assert ((thetas == 0.0) | (thetas >= math.pi / 4 - 1e-7)).float().mean().item() > 0.1  # the clamp acted


def test_macro_scores_count_every_class_even_one_missing_from_the_test_split(digits):
    # A model that always answers 0, on a test split without any 9: macro averages are over all 10
    # classes, and a class never predicted scores precision 0 (not 1, not left out).
    from trainer.train import _final_metrics

    keep = digits.test_y != 9
    arrays = dataclasses.replace(digits, test_x=digits.test_x[keep], test_y=digits.test_y[keep])
    tensors = to_device(arrays, torch.device("cpu"), False)

    class AlwaysZero(torch.nn.Module):
        def forward(self, x):
            logits = torch.zeros(len(x), 10)
            logits[:, 0] = 1.0
            return logits

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # precision of a never-predicted class is 0 by choice: no sklearn warning
        final = _final_metrics(AlwaysZero(), tensors, TrialConfig(robustness_levels=2), contextlib.nullcontext)
    share = (tensors.test_y == 0).float().mean().item()
    assert final["test_acc"] == pytest.approx(share)
    assert final["test_recall_macro"] == pytest.approx(1 / 10)
    assert final["test_precision_macro"] == pytest.approx(share / 10)
    assert final["test_f1_macro"] == pytest.approx(2 * share / (share + 1) / 10)


@pytest.mark.parametrize("case", ["random", "classes_missing", "perfect", "one_class_predicted"])
def test_macro_scores_are_sklearns(case):
    from sklearn.metrics import precision_recall_fscore_support

    from trainer.train import macro_scores

    rng = np.random.default_rng(7)
    labels = rng.integers(0, 10, 500)
    predicted = {"random": rng.integers(0, 10, 500),
                 "classes_missing": np.where(rng.random(500) < 0.6, labels, rng.integers(0, 4, 500)) % 7,
                 "perfect": labels, "one_class_predicted": np.full(500, 3)}[case]
    if case == "classes_missing":
        labels = labels % 8  # classes 8 and 9 never occur, 7..9 never predicted
    expected = precision_recall_fscore_support(labels, predicted, average="macro", labels=list(range(10)),
                                               zero_division=0)[:3]
    got = macro_scores(torch.from_numpy(labels), torch.from_numpy(predicted), 10)
    assert got == pytest.approx(expected, abs=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_trial_trains_on_cuda(digits):
    reports, final = _run({"method": "blur_aug", "K": 3, "epochs": 3, "device": "cuda"}, digits)
    assert final["outcome"] == "completed" and final["val_acc"] > 0.5
    assert 0 < final["peak_memory_mb"] < 2048  # CUDA memory of this trial, reset when it started


def test_the_network_is_built_on_the_trials_device(digits, monkeypatch):
    import trainer.train as trainer

    meta = build_network(TrialConfig(), digits.shape, digits.num_classes, torch.device("meta"))
    assert {p.device.type for p in meta.net.parameters()} | {b.device.type for b in meta.net.buffers()} == {"meta"}
    seen = []
    real = trainer.build_network
    monkeypatch.setattr(trainer, "build_network", lambda *args: seen.append(args[3]) or real(*args))
    train({"epochs": 1, "device": "cpu"}, data=digits)
    assert seen == [torch.device("cpu")]


def test_evaluate_keeps_its_sums_on_the_datas_device_whatever_torchs_default():
    # A user's torch.set_default_device("cuda") must not move evaluate's sums off the data's device
    # (a CUDA sum against CPU data fails): here the default is the meta device, the data on the CPU.
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    x, y = torch.randn(50, 1, 2, 2), torch.randint(0, 3, (50,))
    expected = evaluate(model, x, y, contextlib.nullcontext)
    with torch.device("meta"):
        loss, accuracy, predicted = evaluate(model, x, y, contextlib.nullcontext)
    assert (loss, accuracy) == expected[:2] and torch.equal(predicted, expected[2])


# ---------------------------------------------------------------------------------------------
# The second endpoint: accuracy on the common corruptions of the test split, after training.

@pytest.fixture(scope="module")
def corrupted_digits(digits, tmp_path_factory):
    return corruptions.for_dataset(digits, cache_dir=str(tmp_path_factory.mktemp("corruptions")))


def test_a_trial_reports_every_corruption_after_training_and_trains_the_same_without(digits, corrupted_digits,
                                                                                      without_timing):
    config = {"method": "sharpening", "K": 3, "epochs": 3, "device": "cpu", "seed": 2}
    reports, final = _run(config, digits, corrupted=corrupted_digits)
    keys = [f"test_acc_corrupt_{v.key}" for v in corruptions.variants(1)]
    assert all(key in final for key in keys) and len(keys) == 15
    assert all(0 <= final[key] <= 1 for key in keys)
    assert final["test_acc_corrupt"] == pytest.approx(np.mean([final[key] for key in keys]))
    assert 0 < final["corruption_seconds"] < final["trial_seconds"]
    assert not any(k.startswith("test_acc_corrupt") for m in reports[:-1] for k in m)  # the last report only
    # Switched off: no corruption metric, and every other number identical — training did not change.
    off_reports, off = _run({**config, "corruptions": False}, digits)
    assert not any(k.startswith("test_acc_corrupt") or k == "corruption_seconds" for k in off)
    assert [without_timing(m) for m in off_reports[:-1]] == [without_timing(m) for m in reports[:-1]]
    assert without_timing(off) == {k: v for k, v in without_timing(final).items() if not k.startswith("test_acc_corrupt")}


def test_corruption_accuracies_match_an_independent_evaluation(digits, corrupted_digits):
    from trainer.train import corruption_metrics

    config = TrialConfig(dataset="digits", device="cpu", seed=5)
    network = build_network(config, digits.shape, digits.num_classes, torch.device("cpu"))
    got = corruption_metrics(network.net, corrupted_digits, digits, torch.device("cpu"), uses_channels_last(config),
                             contextlib.nullcontext)
    network.net.eval()
    expected = {}
    for key, images in corrupted_digits.images.items():  # one copy at a time, normalised here by hand
        x = (images.astype(np.float32) / 255 - digits.mean[None, :, None, None]) / digits.std[None, :, None, None]
        with torch.no_grad():
            predicted = network.net(torch.from_numpy(x)).argmax(dim=1).numpy()
        expected[f"test_acc_corrupt_{key}"] = float((predicted == corrupted_digits.labels).mean())
    assert {k: got[k] for k in expected} == pytest.approx(expected, abs=1e-6)
    assert len(set(expected.values())) > 3  # an untrained net still answers differently on different copies


def test_a_corrupted_set_from_another_split_is_refused(digits, tmp_path):
    from_train = corruptions.corrupted_test_set("digits", digits.train_x.astype(np.float32) * digits.scale,
                                                digits.train_y, cache_dir=str(tmp_path))
    with pytest.raises(Exception, match=r"corrupted test set: built for 'digits', not from the test split"):
        train({"epochs": 1, "device": "cpu"}, data=digits, corrupted=from_train)


def test_a_colour_trial_scores_every_corruption_at_every_severity(tmp_path):
    # CIFAR-10's files are not here: 3-channel arrays cut from scikit-learn's two sample photographs
    # stand in, named cifar10, so the trial takes the CIFAR-10-C-style set (15 corruptions × 5).
    from sklearn.datasets import load_sample_images

    from trainer.data import DatasetArrays

    patches = np.stack([photo[r:r + 32, c:c + 32] for photo in load_sample_images().images
                        for r in range(0, 400, 40) for c in range(0, 200, 40)]).transpose(0, 3, 1, 2)
    labels = np.arange(len(patches)) % 10
    scaled = patches.astype(np.float64) / 255
    arrays = DatasetArrays("cifar10", patches[:60], labels[:60], patches[60:80], labels[60:80], patches[80:100],
                           labels[80:100], 10, 1 / 255, scaled[:60].mean(axis=(0, 2, 3)).astype(np.float32),
                           scaled[:60].std(axis=(0, 2, 3)).astype(np.float32))
    corrupted = corruptions.for_dataset(arrays, cache_dir=str(tmp_path))
    final = train({"dataset": "cifar10", "epochs": 1, "device": "cpu", "batch_size": 20}, data=arrays,
                  corrupted=corrupted)
    keys = [k for k in final if k.startswith("test_acc_corrupt_")]
    assert len(keys) == 75 and {"test_acc_corrupt_fog_s1", "test_acc_corrupt_jpeg_compression_s5"} <= set(keys)
    assert final["test_acc_corrupt"] == pytest.approx(np.mean([final[k] for k in keys]))
    assert all(abs(20 * final[k] - round(20 * final[k])) < 1e-5 for k in keys)  # 20 test images each
