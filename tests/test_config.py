"""TrialConfig: the method table, the fields each method uses, matched configs, the budget rule, and
from_dict's refusals (every one names the field and what is allowed) and coercion of CLI strings."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from trainer.config import (ANNEAL_METHODS, ANNEAL_SCHEDULES, BLUR_METHODS, CONTROLS, DATASET_SIDES,
                          DATASETS, FIELD_NAMES, KERNELS, LEARNED_SCHEDULES, METHOD_FIELDS, METHOD_TABLE,
                          METHODS, MODELS, OPTIMIZERS, POOLS, SEARCHED, THETA_MAX, ConfigError, TrialConfig,
                          field_docs, method_order, role)

SHARED = tuple(name for name in FIELD_NAMES if name not in METHOD_FIELDS)


def test_defaults_are_valid():
    config = TrialConfig.from_dict({})
    assert config == TrialConfig()
    assert config.method == "baseline" and config.resolved_theta_schedule == "constant"
    assert config.pool == "max" and config.K == 4


# ---------------------------------------------------------------------------------------------
# The method table.

def test_method_table_roles_and_what_each_method_does():
    assert METHODS == ("baseline", "sharpening", "annealing", "combined", "cbs", "learned_theta",
                       "anti", "random_order", "blur_aug")
    assert {m: spec.role for m, spec in METHOD_TABLE.items()} == {
        "baseline": "reference", "sharpening": "curriculum", "annealing": "curriculum",
        "combined": "curriculum", "cbs": "curriculum", "learned_theta": "variant",
        "anti": "control", "random_order": "control", "blur_aug": "control"}
    assert {m: role(m) for m in METHODS} == {m: spec.role for m, spec in METHOD_TABLE.items()}
    assert role("nope") == "unknown"
    assert CONTROLS == ("anti", "random_order", "blur_aug")
    assert SEARCHED == ("baseline", "sharpening", "annealing", "combined", "cbs", "learned_theta")
    assert BLUR_METHODS == ("sharpening", "combined", "anti", "random_order", "blur_aug")
    assert ANNEAL_METHODS == ("annealing", "combined")
    assert [m for m, s in METHOD_TABLE.items() if s.learns_theta] == ["learned_theta"]
    assert [m for m, s in METHOD_TABLE.items() if s.smooths] == ["cbs"]
    assert {m: s.matched_to for m, s in METHOD_TABLE.items() if s.matched_to} == {
        "anti": "sharpening", "random_order": "sharpening", "blur_aug": "sharpening"}
    assert all(METHOD_TABLE[m].matched_to is None for m in SEARCHED)
    assert method_order(["blur_aug", "zzz", "cbs", "baseline", "cbs", "aaa"]) == [
        "baseline", "cbs", "blur_aug", "aaa", "zzz"]


OWN_FIELDS = [
    ({"method": "baseline"}, ()),
    ({"method": "sharpening"}, ("K", "epochs_per_level", "kernel")),
    ({"method": "anti"}, ("K", "epochs_per_level", "kernel")),
    ({"method": "random_order"}, ("K", "epochs_per_level", "kernel")),
    ({"method": "blur_aug"}, ("K", "epochs_per_level", "kernel")),
    ({"method": "annealing"}, ("theta_schedule", "anneal_epochs", "theta0")),  # "" = linear
    ({"method": "annealing", "theta_schedule": "linear"}, ("theta_schedule", "anneal_epochs", "theta0")),
    ({"method": "annealing", "theta_schedule": "cosine"}, ("theta_schedule", "anneal_epochs", "theta0")),
    ({"method": "annealing", "theta_schedule": "step"}, ("theta_schedule", "K", "epochs_per_level", "theta0")),
    ({"method": "combined"}, ("theta_schedule", "K", "epochs_per_level", "kernel", "anneal_epochs", "theta0")),
    ({"method": "combined", "theta_schedule": "cosine"},
     ("theta_schedule", "K", "epochs_per_level", "kernel", "anneal_epochs", "theta0")),
    ({"method": "combined", "theta_schedule": "step"}, ("theta_schedule", "K", "epochs_per_level", "kernel", "theta0")),
    ({"method": "cbs"}, ("sigma0", "sigma_decay", "decay_every", "smooth_epochs", "smooth_kernel")),
    ({"method": "learned_theta"}, ("theta_schedule", "theta0", "theta_lr_scale")),  # "" = trainable
    ({"method": "learned_theta", "theta_schedule": "trainable_channel"}, ("theta_schedule", "theta0", "theta_lr_scale")),
]


@pytest.mark.parametrize("values, own", OWN_FIELDS, ids=lambda v: "-".join(v.values()) if isinstance(v, dict) else "")
def test_own_fields_per_method_and_theta_schedule(values, own):
    config = TrialConfig.from_dict(values)
    assert config.own_fields() == own
    # fields_used: the shared fields and the own ones, nothing of another method's.
    assert config.fields_used() == tuple(n for n in FIELD_NAMES if n in SHARED or n in own)
    assert set(config.used_values()) == set(config.fields_used())


def test_method_fields_are_exactly_the_fields_some_method_owns():
    owned = set().union(*(TrialConfig.from_dict(values).own_fields() for values, _ in OWN_FIELDS))
    assert owned == METHOD_FIELDS
    assert {v["method"] for v, _ in OWN_FIELDS} == set(METHODS)  # every method is listed above


def test_fields_used_excludes_other_methods_fields():
    baseline = set(TrialConfig().fields_used())
    assert not baseline & {"K", "epochs_per_level", "kernel", "theta_schedule", "theta0", "anneal_epochs",
                           "theta_lr_scale", "sigma0", "sigma_decay", "decay_every", "smooth_epochs", "smooth_kernel"}
    assert {"method", "dataset", "model", "epochs", "lr", "optimizer", "weight_decay", "batch_size", "seed",
            "pool", "width", "batch_norm"} <= baseline
    sharpening = set(TrialConfig(method="sharpening").fields_used())
    assert {"K", "epochs_per_level", "kernel"} <= sharpening
    assert not sharpening & {"theta0", "theta_schedule", "anneal_epochs", "theta_lr_scale", "sigma0", "smooth_epochs"}
    annealing = set(TrialConfig(method="annealing").fields_used())
    assert {"theta0", "anneal_epochs"} <= annealing and not annealing & {"K", "kernel", "theta_lr_scale", "sigma0"}
    cbs = set(TrialConfig(method="cbs").fields_used())
    assert not cbs & {"K", "kernel", "theta0", "theta_schedule"}


def test_used_values_resolve_the_defaults():
    assert TrialConfig.from_dict({"method": "annealing", "epochs": 5}).used_values()["anneal_epochs"] == 4
    assert TrialConfig.from_dict({"method": "annealing", "epochs": 5}).used_values()["theta_schedule"] == "linear"
    assert TrialConfig.from_dict({"method": "learned_theta"}).used_values()["theta_schedule"] == "trainable"
    cbs = TrialConfig.from_dict({"method": "cbs", "epochs": 7})
    assert cbs.used_values()["smooth_epochs"] == 6 and cbs.resolved_smooth_epochs == 6
    assert TrialConfig.from_dict({"method": "cbs", "epochs": 7, "smooth_epochs": 3}).used_values()["smooth_epochs"] == 3


def test_describe_shows_only_the_methods_own_fields():
    assert TrialConfig().describe() == "baseline" and TrialConfig().describe(compact=True) == "baseline"
    sharpening = TrialConfig.from_dict({"method": "sharpening", "K": 3, "epochs_per_level": 2, "kernel": "gaussian"})
    assert sharpening.describe() == "sharpening K=3 epochs_per_level=2 kernel=gaussian"
    assert sharpening.describe(compact=True) == "sharpening K3 e2 gaussian"
    cbs = TrialConfig.from_dict({"method": "cbs"})
    assert cbs.describe() == "cbs sigma0=1 sigma_decay=0.9 decay_every=5 smooth_epochs=9 smooth_kernel=3"
    assert cbs.describe(compact=True) == "cbs σ1 ×0.9 /5 s9 k3"
    learned = TrialConfig.from_dict({"method": "learned_theta", "theta0": 0.3})
    assert learned.describe(compact=True) == "learned_theta trainable θ0.3 θlr×0.1"


# ---------------------------------------------------------------------------------------------
# with_method: matched controls and matched baselines.

SHARED_CHANGES = {"optimizer": "adamw", "lr": 0.01, "weight_decay": 1e-3, "batch_size": 32, "epochs": 9,
                  "seed": 7, "width": 8, "pool": "avg", "batch_norm": False, "lr_schedule": "step",
                  "label_smoothing": 0.1, "dataset": "mnist5k", "momentum": 0.5, "l2": 1e-4}


@pytest.mark.parametrize("control", CONTROLS)
def test_control_of_sharpening_changes_only_the_method(control):
    sharpening = TrialConfig.from_dict({"method": "sharpening", "K": 3, "epochs_per_level": 2,
                                        "kernel": "gaussian", **SHARED_CHANGES})
    values = sharpening.with_method(control)
    assert values == {**sharpening.to_dict(), "method": control}
    assert TrialConfig.from_dict(values).curriculum_epochs == sharpening.curriculum_epochs


@pytest.mark.parametrize("curriculum", [
    {"method": "sharpening", "K": 3, "epochs_per_level": 2, "kernel": "gaussian"},
    {"method": "annealing", "theta_schedule": "cosine", "anneal_epochs": 3},
    {"method": "combined", "theta_schedule": "step", "K": 5, "epochs_per_level": 2},
    {"method": "cbs", "sigma0": 2.0, "sigma_decay": 0.5, "decay_every": 2, "smooth_epochs": 4, "smooth_kernel": 5},
    {"method": "learned_theta", "theta_schedule": "trainable_channel", "theta0": 0.3, "theta_lr_scale": 0.5},
])
def test_matched_baseline_keeps_shared_values_and_resets_method_fields(curriculum):
    config = TrialConfig.from_dict({**curriculum, **SHARED_CHANGES})
    values = config.with_method("baseline")
    defaults = TrialConfig().to_dict()
    assert set(values) == set(FIELD_NAMES)
    for name in FIELD_NAMES:
        if name == "method":
            assert values[name] == "baseline"
        elif name in METHOD_FIELDS:
            assert values[name] == defaults[name], name
        else:
            assert values[name] == getattr(config, name), name
    baseline = TrialConfig.from_dict(values)
    assert {k: v for k, v in baseline.used_values().items() if k != "method"} == {
        k: v for k, v in config.used_values().items() if k in SHARED and k != "method"}


def test_with_method_keeps_what_both_methods_use():
    sharpening = TrialConfig.from_dict({"method": "sharpening", "K": 3, "epochs_per_level": 2, "kernel": "gaussian",
                                        "epochs": 9, "lr": 0.01})
    combined = sharpening.with_method("combined")
    assert (combined["K"], combined["epochs_per_level"], combined["kernel"]) == (3, 2, "gaussian")
    assert combined["theta_schedule"] == "" and combined["lr"] == 0.01 and combined["epochs"] == 9
    annealing = TrialConfig.from_dict({"method": "annealing", "theta_schedule": "cosine", "anneal_epochs": 3})
    to_combined = annealing.with_method("combined")
    assert to_combined["theta_schedule"] == "cosine" and to_combined["anneal_epochs"] == 3
    assert TrialConfig.from_dict(to_combined).method == "combined"


# ---------------------------------------------------------------------------------------------
# Refusals: each names the field and what is allowed.

def test_unknown_field_is_refused_listing_the_fields():
    with pytest.raises(ConfigError) as caught:
        TrialConfig.from_dict({"method": "baseline", "bogus_field": 1})
    message = str(caught.value)
    assert "bogus_field" in message
    assert "epochs_per_level" in message and "theta_schedule" in message and "sigma0" in message  # the allowed names


@pytest.mark.parametrize("field, allowed, extra", [
    ("method", METHODS, {}),
    ("kernel", KERNELS, {}),
    ("dataset", DATASETS, {}),
    ("model", MODELS, {}),
    ("optimizer", OPTIMIZERS, {}),
    ("pool", POOLS, {}),
    ("theta_schedule", ANNEAL_SCHEDULES, {"method": "annealing"}),
    ("theta_schedule", ANNEAL_SCHEDULES, {"method": "combined"}),
    ("theta_schedule", LEARNED_SCHEDULES, {"method": "learned_theta"}),
])
def test_bad_choice_names_the_field_and_the_allowed_values(field, allowed, extra):
    with pytest.raises(ConfigError) as caught:
        TrialConfig.from_dict({**extra, field: "nope"})
    message = str(caught.value)
    assert message.startswith(f"{field}:")
    assert "'nope'" in message
    for value in allowed:
        assert repr(value) in message


def test_datasets_and_pools():
    assert DATASETS == ("digits", "mnist5k", "mnist", "fashion_mnist", "cifar10")
    assert DATASET_SIDES == {"digits": 8, "mnist5k": 28, "mnist": 28, "fashion_mnist": 28, "cifar10": 32}
    assert POOLS == ("max", "avg", "none")
    for pool in POOLS:
        assert TrialConfig.from_dict({"pool": pool}).pool == pool


def test_theta_schedule_on_a_plain_method_is_refused():
    with pytest.raises(ConfigError, match=r"^theta_schedule:.*baseline"):
        TrialConfig.from_dict({"method": "baseline", "theta_schedule": "linear"})
    with pytest.raises(ConfigError, match=r"^theta_schedule:"):
        TrialConfig.from_dict({"method": "sharpening", "theta_schedule": "step"})
    with pytest.raises(ConfigError, match=r"^theta_schedule:.*'cbs'"):
        TrialConfig.from_dict({"method": "cbs", "theta_schedule": "trainable"})
    # 'constant' (or empty) is what a plain method means.
    assert TrialConfig.from_dict({"method": "baseline", "theta_schedule": "constant"}).resolved_theta_schedule == "constant"


def test_annealing_with_constant_theta_is_refused():
    with pytest.raises(ConfigError, match=r"^theta_schedule:.*annealing"):
        TrialConfig.from_dict({"method": "annealing", "theta_schedule": "constant"})
    with pytest.raises(ConfigError, match=r"^theta_schedule:"):
        TrialConfig.from_dict({"method": "combined", "theta_schedule": "constant"})


@pytest.mark.parametrize("schedule", LEARNED_SCHEDULES)
@pytest.mark.parametrize("method", ["annealing", "combined"])
def test_annealing_refuses_a_learned_theta(method, schedule):
    """Learned θ is its own method now: annealing schedules θ, it never learns it."""
    with pytest.raises(ConfigError) as caught:
        TrialConfig.from_dict({"method": method, "theta_schedule": schedule, "epochs": 5})
    message = str(caught.value)
    assert message.startswith(f"theta_schedule: {schedule!r} is not allowed for method {method!r}")
    assert all(repr(s) in message for s in ANNEAL_SCHEDULES)


@pytest.mark.parametrize("schedule", ["linear", "cosine", "step", "constant"])
def test_learned_theta_refuses_a_scheduled_theta(schedule):
    with pytest.raises(ConfigError) as caught:
        TrialConfig.from_dict({"method": "learned_theta", "theta_schedule": schedule})
    assert str(caught.value) == (f"theta_schedule: {schedule!r} is not allowed for method 'learned_theta'; "
                                 "choose one of ['trainable', 'trainable_channel']")


@pytest.mark.parametrize("method", ANNEAL_METHODS)
@pytest.mark.parametrize("theta0", [0.5, THETA_MAX - 1e-3, 0.01])
def test_annealing_starts_at_exactly_pi_over_4(method, theta0):
    with pytest.raises(ConfigError) as caught:
        TrialConfig.from_dict({"method": method, "theta0": theta0, "epochs": 5})
    message = str(caught.value)
    assert message.startswith(f"theta0: method {method!r} starts at π/4 = 0.785398 (a linear network)")
    assert f"got {theta0}" in message and "another method" in message  # why: below π/4 is not annealing
    assert TrialConfig.from_dict({"method": method, "theta0": math.pi / 4, "epochs": 5}).theta0 == THETA_MAX


def test_learned_theta_may_start_below_pi_over_4():
    config = TrialConfig.from_dict({"method": "learned_theta", "theta0": 0.3, "theta_lr_scale": 0.5})
    assert config.theta0 == 0.3 and config.theta_lr_scale == 0.5
    assert config.curriculum_epochs == 0 and config.in_final_regime(1)


def test_theta0_is_not_checked_against_pi_over_4_for_methods_that_do_not_anneal():
    # A method that does not use θ0 keeps the general range check only.
    assert TrialConfig.from_dict({"method": "sharpening", "theta0": 0.5}).theta0 == 0.5
    with pytest.raises(ConfigError, match=r"^theta0: must be in \(0, π/4"):
        TrialConfig.from_dict({"method": "sharpening", "theta0": 1.0})


# ---------------------------------------------------------------------------------------------
# K against the image, and the budget rule.

@pytest.mark.parametrize("method, extra", [("sharpening", {}), ("anti", {}), ("blur_aug", {}), ("random_order", {}),
                                           ("combined", {}), ("annealing", {"theta_schedule": "step"})])
@pytest.mark.parametrize("dataset, K", [("digits", 50), ("digits", 5), ("digits", 1), ("mnist5k", 15),
                                        ("cifar10", 17)])
def test_K_is_checked_against_the_image_side(method, extra, dataset, K):
    top = DATASET_SIDES[dataset] // 2
    with pytest.raises(ConfigError) as caught:
        # epochs=2 is also too few: K is checked first, so the budget advice uses a valid K.
        TrialConfig.from_dict({"method": method, "dataset": dataset, "K": K, "epochs": 2, **extra})
    side = DATASET_SIDES[dataset]
    assert str(caught.value) == (f"K: method {method!r} on {dataset} ({side}x{side} images) "
                                 f"needs K in 2..{top}, got K={K}")
    assert TrialConfig.from_dict({"method": method, "dataset": dataset, "K": top, "epochs": top, **extra}).K == top


def test_K_on_digits_says_2_to_4():
    with pytest.raises(ConfigError, match=r"^K: .*digits \(8x8 images\) needs K in 2\.\.4, got K=50$"):
        TrialConfig.from_dict({"method": "sharpening", "K": 50})


@pytest.mark.parametrize("values", [
    {"method": "baseline", "K": 50},
    {"method": "annealing", "K": 50, "epochs": 3},  # linear θ does not use K
    {"method": "cbs", "K": 50},
    {"method": "learned_theta", "K": 50},
])
def test_K_is_not_checked_where_it_is_not_used(values):
    assert TrialConfig.from_dict(values).K == 50


def _follow_advice(values: dict, max_steps: int = 4) -> tuple[TrialConfig, list[str]]:
    """Apply what each refusal says (K in 2..N, epochs >= N) until the config is valid."""
    values, steps = dict(values), []
    for _ in range(max_steps):
        try:
            return TrialConfig.from_dict(values), steps
        except ConfigError as error:
            message = str(error)
            if match := re.search(r"needs K in (\d+)\.\.(\d+), got K=(\d+)$", message):
                low, high, K = map(int, match.groups())
                values["K"] = min(max(K, low), high)
                steps.append(f"K={values['K']}")
            elif match := re.search(r"need epochs >= (\d+)$", message):
                values["epochs"] = int(match.group(1))
                steps.append(f"epochs={values['epochs']}")
            else:
                raise AssertionError(f"a refusal without advice to follow: {message}") from None
    raise AssertionError(f"advice did not lead to a valid config: {steps}")


@pytest.mark.parametrize("values, steps, curriculum", [
    ({"method": "sharpening", "K": 50, "epochs_per_level": 3, "epochs": 2}, ["K=4", "epochs=10"], 9),
    ({"method": "sharpening", "K": 1, "epochs": 1}, ["K=2", "epochs=2"], 1),
    ({"method": "blur_aug", "dataset": "mnist5k", "K": 30, "epochs_per_level": 2, "epochs": 5},
     ["K=14", "epochs=27"], 26),
    ({"method": "combined", "K": 50, "theta_schedule": "step", "epochs": 2}, ["K=4", "epochs=4"], 3),
    ({"method": "combined", "dataset": "mnist5k", "K": 9, "anneal_epochs": 3, "epochs": 2}, ["epochs=9"], 8),
    ({"method": "combined", "K": 3, "anneal_epochs": 7, "epochs": 4}, ["epochs=8"], 7),
    ({"method": "annealing", "theta_schedule": "step", "K": 50, "epochs_per_level": 2, "epochs": 3},
     ["K=4", "epochs=7"], 6),
    ({"method": "annealing", "anneal_epochs": 9, "epochs": 3}, ["epochs=10"], 9),
    ({"method": "annealing", "theta_schedule": "cosine", "anneal_epochs": 5, "epochs": 5}, ["epochs=6"], 5),
    ({"method": "cbs", "smooth_epochs": 12, "epochs": 5}, ["epochs=13"], 12),
])
def test_following_the_advice_of_each_refusal_gives_a_valid_config(values, steps, curriculum):
    config, taken = _follow_advice(values)
    assert taken == steps
    assert config.curriculum_epochs == curriculum and config.epochs == curriculum + 1
    assert config.in_final_regime(config.epochs) and not config.in_final_regime(curriculum)


def test_budget_error_for_cbs():
    with pytest.raises(ConfigError) as caught:
        TrialConfig.from_dict({"method": "cbs", "smooth_epochs": 5, "epochs": 5})
    assert str(caught.value) == ("epochs: method 'cbs' spends 5 epochs before its final regime (smooth_epochs = 5), "
                                 "which leaves no epoch of plain training within epochs=5; need epochs >= 6")


@pytest.mark.parametrize("anneal_epochs", [5, 6, 50])
def test_anneal_epochs_must_leave_a_relu_epoch(anneal_epochs):
    with pytest.raises(ConfigError) as caught:
        TrialConfig.from_dict({"method": "annealing", "epochs": 5, "anneal_epochs": anneal_epochs})
    message = str(caught.value)
    assert message.startswith(f"epochs: method 'annealing' spends {anneal_epochs} epochs before its final regime "
                              f"(anneal_epochs = {anneal_epochs})")
    assert message.endswith(f"within epochs=5; need epochs >= {anneal_epochs + 1}")


def test_budget_error_for_combined_names_both_rules():
    with pytest.raises(ConfigError) as caught:
        TrialConfig.from_dict({"method": "combined", "K": 4, "epochs_per_level": 2, "anneal_epochs": 3, "epochs": 6})
    assert str(caught.value) == (
        "epochs: method 'combined' spends 6 epochs before its final regime ((K-1)*epochs_per_level = (4-1)*2; "
        "anneal_epochs = 3), which leaves no epoch of plain training within epochs=6; need epochs >= 7")
    with pytest.raises(ConfigError, match=r"^epochs: method 'combined' spends 9 epochs.*need epochs >= 10$"):
        TrialConfig.from_dict({"method": "combined", "K": 3, "anneal_epochs": 9, "epochs": 6})


def test_anneal_epochs_within_budget_is_accepted():
    config = TrialConfig.from_dict({"method": "annealing", "epochs": 5, "anneal_epochs": 4})
    assert config.resolved_anneal_epochs == 4


@pytest.mark.parametrize("method", ["annealing", "cbs"])
def test_a_curriculum_needs_two_epochs(method):
    try:
        config = TrialConfig.from_dict({"method": method, "epochs": 1})
    except ConfigError as error:
        assert re.search(r"epochs >= 2", str(error))
    else:
        raise AssertionError(f"accepted {config.describe()} with a curriculum of {config.curriculum_epochs} epochs")


CURRICULUM_EPOCHS = [
    ({"method": "baseline"}, 0),
    ({"method": "learned_theta"}, 0),
    ({"method": "sharpening", "K": 4, "epochs_per_level": 2}, 6),
    ({"method": "blur_aug", "K": 3, "epochs_per_level": 2}, 4),
    ({"method": "annealing"}, 9),  # anneal_epochs 0 = epochs - 1
    ({"method": "annealing", "theta_schedule": "cosine", "anneal_epochs": 3}, 3),
    ({"method": "annealing", "theta_schedule": "step", "K": 4, "epochs_per_level": 2}, 6),
    ({"method": "combined", "K": 3, "anneal_epochs": 6}, 6),  # max(2, 6)
    ({"method": "combined", "K": 4, "epochs_per_level": 2, "anneal_epochs": 3}, 6),  # max(6, 3)
    ({"method": "combined", "K": 3, "theta_schedule": "step", "anneal_epochs": 8}, 2),  # step ignores anneal_epochs
    ({"method": "cbs"}, 9),  # smooth_epochs 0 = epochs - 1
    ({"method": "cbs", "smooth_epochs": 4, "decay_every": 1}, 4),
]


@pytest.mark.parametrize("values, curriculum", CURRICULUM_EPOCHS)
def test_curriculum_epochs_and_final_regime(values, curriculum):
    config = TrialConfig.from_dict({"epochs": 10, **values})
    assert config.curriculum_epochs == curriculum
    assert [config.in_final_regime(e) for e in range(1, 11)] == [e > curriculum for e in range(1, 11)]


# ---------------------------------------------------------------------------------------------
# Coercion.

def test_strings_are_coerced():
    config = TrialConfig.from_dict({"K": "3", "epochs": "7", "pool": "avg", "download": "no", "batch_norm": "TRUE",
                                    "lr": "0.1", "theta0": "0.5", "method": "learned_theta"})
    assert config.K == 3 and isinstance(config.K, int)
    assert config.epochs == 7
    assert config.pool == "avg"
    assert config.download is False
    assert config.batch_norm is True
    assert config.lr == 0.1 and isinstance(config.lr, float)
    assert config.theta0 == 0.5
    assert TrialConfig.from_dict({"batch_norm": "False"}).batch_norm is False
    assert TrialConfig.from_dict({"download": " on "}).download is True
    assert TrialConfig.from_dict({"K": 3.0}).K == 3  # a whole float is an int
    cbs = TrialConfig.from_dict({"method": "cbs", "sigma0": "2", "sigma_decay": "0.5", "decay_every": "2",
                                 "smooth_epochs": "4", "smooth_kernel": "5", "epochs": "6"})
    assert (cbs.sigma0, cbs.sigma_decay, cbs.decay_every, cbs.smooth_epochs, cbs.smooth_kernel) == (2.0, 0.5, 2, 4, 5)
    assert isinstance(cbs.sigma0, float) and isinstance(cbs.decay_every, int)


def test_numpy_scalars_are_coerced():
    config = TrialConfig.from_dict({"method": "sharpening", "K": np.int64(3), "lr": np.float32(0.25),
                                    "kernel": np.str_("gaussian"), "download": np.bool_(False)})
    assert type(config.K) is int and config.K == 3
    assert type(config.lr) is float and config.lr == 0.25
    assert config.kernel == "gaussian" and type(config.download) is bool


@pytest.mark.parametrize("value", ["3.5", 3.5, "three", True])
def test_bad_int_is_refused(value):
    with pytest.raises(ConfigError, match=r"^K: expected int"):
        TrialConfig.from_dict({"K": value})


def test_bad_bool_and_str_are_refused():
    with pytest.raises(ConfigError, match=r"^batch_norm: expected bool"):
        TrialConfig.from_dict({"batch_norm": "maybe"})
    with pytest.raises(ConfigError, match=r"^method: expected str"):
        TrialConfig.from_dict({"method": 3})
    # pool was a bool; a bool is no longer a pool.
    with pytest.raises(ConfigError, match=r"^pool: expected str"):
        TrialConfig.from_dict({"pool": True})
    with pytest.raises(ConfigError, match=r"^pool: 'true' is not allowed; choose one of \['max', 'avg', 'none'\]"):
        TrialConfig.from_dict({"pool": "true"})


@pytest.mark.parametrize("values, field", [
    ({"epochs": 0}, "epochs"),
    ({"lr": 0}, "lr"),
    ({"theta0": 0}, "theta0"),
    ({"theta0": math.pi / 2, "method": "annealing"}, "theta0"),
    ({"theta0": math.pi / 2, "method": "learned_theta"}, "theta0"),
    ({"method": "sharpening", "K": 1}, "K"),
    ({"K": 0}, "K"),
    ({"weight_decay": -1}, "weight_decay"),
    ({"device": "tpu"}, "device"),
    ({"theta_lr_scale": 0, "method": "learned_theta"}, "theta_lr_scale"),
    ({"method": "cbs", "sigma0": -1}, "sigma0"),
    ({"method": "cbs", "sigma_decay": 0}, "sigma_decay"),
    ({"method": "cbs", "sigma_decay": 1.5}, "sigma_decay"),
    ({"method": "cbs", "decay_every": 0}, "decay_every"),
    ({"method": "cbs", "smooth_epochs": -1}, "smooth_epochs"),
    ({"method": "cbs", "smooth_kernel": 4}, "smooth_kernel"),
    ({"method": "cbs", "smooth_kernel": 0}, "smooth_kernel"),
])
def test_out_of_range_values_name_the_field(values, field):
    with pytest.raises(ConfigError, match=rf"^{field}:"):
        TrialConfig.from_dict(values)


def test_cbs_edge_values_are_accepted():
    config = TrialConfig.from_dict({"method": "cbs", "sigma0": 0, "sigma_decay": 1, "smooth_kernel": 1})
    assert (config.sigma0, config.sigma_decay, config.smooth_kernel) == (0.0, 1.0, 1)


def test_round_trip_and_field_docs():
    for values in ({"method": "combined", "theta_schedule": "step", "K": 4, "epochs": 6},
                   {"method": "cbs", "sigma_decay": 0.5, "smooth_epochs": 3},
                   {"method": "learned_theta", "theta_schedule": "trainable_channel", "theta0": 0.4}):
        config = TrialConfig.from_dict(values)
        assert TrialConfig.from_dict(config.to_dict()) == config
        assert TrialConfig.of(config) is config and TrialConfig.of(values) == config
    docs = field_docs()
    assert set(docs) == set(FIELD_NAMES)  # every field documented (the CLI's --help)


# ---------------------------------------------------------------------------------------------
# Found missing by mutation testing (mutation/run.sh): every refusal's exact words and bounds.

def _refusal(values: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        TrialConfig.from_dict(values)
    return str(caught.value)


def test_lr_schedule_and_precision_refusals_name_the_field():
    assert _refusal({"lr_schedule": "linear"}) == (
        "lr_schedule: 'linear' is not allowed; choose one of ['constant', 'cosine', 'step']")
    assert _refusal({"precision": "fp8"}) == "precision: 'fp8' is not allowed; choose one of ['auto', 'fp32', 'bf16']"


def test_theta_schedule_refusal_says_to_leave_it_empty_only_where_constant_is_the_one_choice():
    assert _refusal({"method": "baseline", "theta_schedule": "linear"}) == (
        "theta_schedule: 'linear' is not allowed for method 'baseline'; choose one of ['constant'] "
        "(or leave it empty)")
    assert _refusal({"method": "annealing", "theta_schedule": "trainable"}) == (
        "theta_schedule: 'trainable' is not allowed for method 'annealing'; choose one of "
        "['linear', 'cosine', 'step']")


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:0", "cuda:3"])
def test_devices_accepted(device):
    assert TrialConfig.from_dict({"device": device}).device == device


@pytest.mark.parametrize("device", ["tpu", "CPU", "cudax", "gpu", "mps:0"])
def test_devices_refused(device):
    assert _refusal({"device": device}) == f"device: {device!r} is not allowed; use auto, cpu, cuda or cuda:N"


@pytest.mark.parametrize("name", ["lr", "theta_lr_scale"])
@pytest.mark.parametrize("value", [math.inf, 0.0, -0.1])
def test_rates_must_be_positive_and_finite(name, value):
    assert _refusal({"method": "learned_theta", name: value}) == f"{name}: must be > 0, got {value}"


def test_label_noise_below_the_point_where_noise_outnumbers_the_truth():
    # 10 classes: with a fraction (k−1)/k = 0.9 of labels redrawn the true label is no longer the mode.
    assert TrialConfig.from_dict({"label_noise": 0.85}).label_noise == 0.85
    assert TrialConfig.from_dict({"label_noise": 0.0}).label_noise == 0.0
    assert _refusal({"label_noise": 0.9}) == (
        "label_noise: must be in [0, 0.90) (above it the noisy labels outnumber the true ones), got 0.9")
    assert _refusal({"label_noise": -0.1}).startswith("label_noise: must be in [0, 0.90)")


def test_imbalance_from_1_to_1000():
    assert TrialConfig.from_dict({"imbalance": 1000}).imbalance == 1000
    assert TrialConfig.from_dict({"imbalance": 1}).imbalance == 1
    assert _refusal({"imbalance": 1000.5}) == (
        "imbalance: ρ = n_max / n_min must be in [1, 1000] (1 = balanced), got 1000.5")
    assert _refusal({"imbalance": 0.5}).startswith("imbalance: ρ = n_max / n_min must be in [1, 1000]")


def test_theta0_tolerances_for_float_round_trips():
    # Annealing's θ0 must be π/4 to 1e-9 absolute (a value written with 10 digits passes)...
    assert TrialConfig.from_dict({"method": "annealing", "theta0": 0.7853981625}).theta0 == 0.7853981625
    assert _refusal({"method": "annealing", "theta0": 0.785398161}).startswith("theta0: method 'annealing' starts")
    # ...and a learned θ0 may exceed π/4 by 1e-12 at most.
    assert TrialConfig.from_dict({"method": "learned_theta", "theta0": THETA_MAX + 1e-12}).theta0 == THETA_MAX + 1e-12
    assert _refusal({"method": "learned_theta", "theta0": THETA_MAX + 1e-9}).startswith("theta0: must be in (0, π/4")


def test_cbs_on_an_mlp_is_refused_with_the_reason():
    assert _refusal({"method": "cbs", "model": "mlp"}) == (
        "model: method 'cbs' smooths the feature maps after every convolution; 'mlp' has none, so choose "
        "small_cnn or resnet18")
    assert TrialConfig.from_dict({"method": "baseline", "model": "mlp"}).model == "mlp"


@pytest.mark.parametrize("method", ["annealing", "cbs"])
def test_two_epochs_are_enough_for_a_one_epoch_schedule(method):
    config = TrialConfig.from_dict({"method": method, "epochs": 2})
    assert config.curriculum_epochs == 1 and config.in_final_regime(2)


def test_max_level_of_tiny_images_is_1():
    from trainer.config import max_level

    assert [max_level(side, side) for side in (1, 2, 3, 4, 5, 8)] == [1, 1, 1, 2, 2, 4]
    assert max_level(28, 3) == 1


def test_split_config_separates_the_run_tags_without_touching_the_input():
    from trainer.config import TAGS, split_config

    tune_config = {"method": "sharpening", "K": 3, TAGS: {"phase": "search", "slot": 2}}
    config, tags = split_config(tune_config)
    assert config == {"method": "sharpening", "K": 3} and tags == {"phase": "search", "slot": 2}
    assert TAGS in tune_config  # the caller's dict is left as it was
    assert split_config({"lr": 0.1}) == ({"lr": 0.1}, {})


@pytest.mark.parametrize("text, value", [("1", True), ("true", True), ("Yes", True), (" on ", True),
                                         ("0", False), ("FALSE", False), ("no", False), ("off", False)])
def test_every_spelling_of_a_bool(text, value):
    assert TrialConfig.from_dict({"download": text}).download is value


def test_field_docs_are_the_field_comments():
    docs = field_docs()
    assert docs["epochs"] == "total epochs of the trial, curriculum included"
    assert docs["K"] == "number of blur levels; level 1 is the original image, level K the most blurred"
    assert all(isinstance(text, str) and text for text in docs.values())
