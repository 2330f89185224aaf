"""`python -m study.train`: every flag refuses a bad value with one `error:` line naming it, exit 2."""

from __future__ import annotations

import dataclasses

import pytest

from trainer.config import FIELD_NAMES, TrialConfig
from trainer.train import main

# A bad value for every field of the trial config (each flag of the CLI is one field), and the extra
# flags it needs to be judged (e.g. a K beyond the image only matters to a method that blurs).
BAD = {
    "method": (["--method", "curriculum"], []),
    "dataset": (["--dataset", "imagenet"], []),
    "data_dir": (["--data-dir", "/nonexistent/dir"], ["--dataset", "mnist"]),
    "download": (["--download=maybe"], []),
    "model": (["--model", "vit"], []),
    "width": (["--width", "0"], []),
    "pool": (["--pool", "median"], []),
    "batch_norm": (["--batch-norm=perhaps"], []),
    "K": (["--K", "50"], ["--method", "sharpening"]),
    "epochs_per_level": (["--epochs-per-level", "0"], ["--method", "sharpening"]),
    "kernel": (["--kernel", "median"], ["--method", "sharpening"]),
    "theta_schedule": (["--theta-schedule", "trainable"], ["--method", "annealing"]),
    "theta0": (["--theta0", "0.5"], ["--method", "annealing"]),
    "anneal_epochs": (["--anneal-epochs", "10"], ["--method", "annealing", "--epochs", "10"]),
    "theta_lr_scale": (["--theta-lr-scale", "0"], ["--method", "learned_theta"]),
    "sigma0": (["--sigma0", "-1"], ["--method", "cbs"]),
    "sigma_decay": (["--sigma-decay", "1.5"], ["--method", "cbs"]),
    "decay_every": (["--decay-every", "0"], ["--method", "cbs"]),
    "smooth_epochs": (["--smooth-epochs", "10"], ["--method", "cbs", "--epochs", "10"]),
    "smooth_kernel": (["--smooth-kernel", "4"], ["--method", "cbs"]),
    "epochs": (["--epochs", "0"], []),
    "batch_size": (["--batch-size", "x"], []),
    "optimizer": (["--optimizer", "lbfgs"], []),
    "lr": (["--lr", "nan"], []),
    "momentum": (["--momentum", "nan"], []),
    "lr_schedule": (["--lr-schedule", "linear"], []),
    "weight_decay": (["--weight-decay=-1e-4"], []),
    "l1": (["--l1", "-1"], []),
    "l2": (["--l2", "inf"], []),
    "label_smoothing": (["--label-smoothing", "-0.1"], []),
    "label_noise": (["--label-noise", "0.95"], []),
    "imbalance": (["--imbalance", "0.5"], []),
    "replicate": (["--replicate", "-1"], []),
    "robustness_levels": (["--robustness-levels", "0"], []),
    "corruptions": (["--corruptions=often"], []),
    "seed": (["--seed", "-3"], []),
    "device": (["--device", "tpu"], []),
    "precision": (["--precision", "fp8"], []),
    "compile": (["--compile=sometimes"], []),
    "fail_at_epoch": (["--fail-at-epoch", "-1"], []),
}


def test_every_field_has_a_bad_value_here():
    assert set(BAD) == set(FIELD_NAMES)


@pytest.mark.parametrize("field", sorted(BAD))
def test_a_bad_value_is_one_line_naming_the_field(field, capsys):
    bad, context = BAD[field]
    try:
        status = main([*context, *bad])
    except SystemExit as exit_:  # argparse's own refusals (a value a boolean flag cannot take)
        status = exit_.code
    assert status == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    flag = "--" + field.replace("_", "-")
    named = {field, "epochs"} if field in ("anneal_epochs", "smooth_epochs") else {field}
    assert any(lines[0].startswith(f"error: {name}:") for name in named) or f"argument {flag}" in lines[0] \
        or field == "data_dir", lines[0]
    if field == "data_dir":  # a torchvision dataset whose files are missing: the directory and files named
        assert "/nonexistent/dir" in lines[0] and "train-images-idx3-ubyte" in lines[0]
    assert "epoch " not in captured.out  # nothing trained


def test_following_the_advice_leads_to_a_valid_config():
    """`need epochs >= N` is advice a user follows; it must lead to a config that runs."""
    with pytest.raises(Exception) as refused:
        TrialConfig.from_dict({"method": "sharpening", "K": 4, "epochs_per_level": 3, "epochs": 5})
    needed = int(str(refused.value).rsplit(">= ", 1)[1])
    config = TrialConfig.from_dict({"method": "sharpening", "K": 4, "epochs_per_level": 3, "epochs": needed})
    assert dataclasses.asdict(config)["epochs"] == needed
