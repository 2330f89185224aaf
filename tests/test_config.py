"""TrialConfig.from_dict: every refusal names the field and what is allowed; coercion of CLI strings."""

from __future__ import annotations

import math

import pytest

from study.config import (DATASETS, KERNELS, METHODS, THETA_SCHEDULES, ConfigError, TrialConfig,
                          field_docs)


def test_defaults_are_valid():
    config = TrialConfig.from_dict({})
    assert config == TrialConfig()
    assert config.method == "baseline" and config.resolved_theta_schedule == "constant"


def test_unknown_field_is_refused_listing_the_fields():
    with pytest.raises(ConfigError) as caught:
        TrialConfig.from_dict({"method": "baseline", "bogus_field": 1})
    message = str(caught.value)
    assert "bogus_field" in message
    assert "epochs_per_level" in message and "theta_schedule" in message  # the allowed names


@pytest.mark.parametrize("field, allowed, extra", [
    ("method", METHODS, {}),
    ("kernel", KERNELS, {}),
    ("dataset", DATASETS, {}),
    ("theta_schedule", THETA_SCHEDULES, {"method": "annealing"}),
])
def test_bad_choice_names_the_field_and_the_allowed_values(field, allowed, extra):
    with pytest.raises(ConfigError) as caught:
        TrialConfig.from_dict({**extra, field: "nope"})
    message = str(caught.value)
    assert message.startswith(f"{field}:")
    assert "'nope'" in message
    for value in allowed:
        assert repr(value) in message


def test_theta_schedule_on_a_plain_method_is_refused():
    with pytest.raises(ConfigError, match=r"^theta_schedule:.*baseline"):
        TrialConfig.from_dict({"method": "baseline", "theta_schedule": "linear"})
    with pytest.raises(ConfigError, match=r"^theta_schedule:"):
        TrialConfig.from_dict({"method": "sharpening", "theta_schedule": "step"})
    # 'constant' (or empty) is what a plain method means.
    assert TrialConfig.from_dict({"method": "baseline", "theta_schedule": "constant"}).resolved_theta_schedule == "constant"


def test_annealing_with_constant_theta_is_refused():
    with pytest.raises(ConfigError, match=r"^theta_schedule:.*annealing"):
        TrialConfig.from_dict({"method": "annealing", "theta_schedule": "constant"})
    with pytest.raises(ConfigError, match=r"^theta_schedule:"):
        TrialConfig.from_dict({"method": "combined", "theta_schedule": "constant"})


@pytest.mark.parametrize("anneal_epochs", [5, 6, 50])
def test_anneal_epochs_must_leave_a_relu_epoch(anneal_epochs):
    with pytest.raises(ConfigError, match=r"^anneal_epochs:.*1\.\.4"):
        TrialConfig.from_dict({"method": "annealing", "epochs": 5, "anneal_epochs": anneal_epochs})


def test_anneal_epochs_within_budget_is_accepted():
    config = TrialConfig.from_dict({"method": "annealing", "epochs": 5, "anneal_epochs": 4})
    assert config.resolved_anneal_epochs == 4


def test_annealing_needs_two_epochs():
    with pytest.raises(ConfigError, match="anneal_epochs"):
        TrialConfig.from_dict({"method": "annealing", "epochs": 1})


def test_strings_are_coerced():
    config = TrialConfig.from_dict({"K": "3", "epochs": "7", "pool": "true", "download": "no",
                                    "lr": "0.1", "theta0": "0.5", "method": "sharpening"})
    assert config.K == 3 and isinstance(config.K, int)
    assert config.epochs == 7
    assert config.pool is True
    assert config.download is False
    assert config.lr == 0.1 and isinstance(config.lr, float)
    assert config.theta0 == 0.5
    assert TrialConfig.from_dict({"pool": "False"}).pool is False
    assert TrialConfig.from_dict({"K": 3.0}).K == 3  # a whole float is an int


@pytest.mark.parametrize("value", ["3.5", 3.5, "three", True])
def test_bad_int_is_refused(value):
    with pytest.raises(ConfigError, match=r"^K: expected int"):
        TrialConfig.from_dict({"K": value})


def test_bad_bool_and_str_are_refused():
    with pytest.raises(ConfigError, match=r"^pool: expected bool"):
        TrialConfig.from_dict({"pool": "maybe"})
    with pytest.raises(ConfigError, match=r"^method: expected str"):
        TrialConfig.from_dict({"method": 3})


@pytest.mark.parametrize("values, field", [
    ({"epochs": 0}, "epochs"),
    ({"lr": 0}, "lr"),
    ({"theta0": 0}, "theta0"),
    ({"theta0": math.pi / 2, "method": "annealing"}, "theta0"),
    ({"method": "sharpening", "K": 1}, "K"),
    ({"weight_decay": -1}, "weight_decay"),
    ({"device": "tpu"}, "device"),
])
def test_out_of_range_values_name_the_field(values, field):
    with pytest.raises(ConfigError, match=rf"^{field}:"):
        TrialConfig.from_dict(values)


def test_round_trip_and_field_docs():
    config = TrialConfig.from_dict({"method": "combined", "theta_schedule": "step", "K": 4, "epochs": 6})
    assert TrialConfig.from_dict(config.to_dict()) == config
    docs = field_docs()
    assert set(docs) == set(config.to_dict())  # every field documented (the CLI's --help)
