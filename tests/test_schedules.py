"""Level plans and θ schedules: exact sequences and endpoints."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from study.config import ConfigError, TrialConfig
from study.schedules import RANDOM_LEVEL, first_original_epoch, level_plan, theta_at


def _config(**values) -> TrialConfig:
    return TrialConfig.from_dict(values)


def test_sharpening_plan_goes_blurred_to_sharp_then_originals():
    config = _config(method="sharpening", K=3, epochs_per_level=2, epochs=7)
    assert level_plan(config) == [3, 3, 2, 2, 1, 1, 1]
    assert first_original_epoch(config) == 5
    assert level_plan(_config(method="sharpening", K=4, epochs_per_level=1, epochs=5)) == [4, 3, 2, 1, 1]


def test_anti_plan_is_the_same_levels_reversed():
    assert level_plan(_config(method="anti", K=3, epochs_per_level=2, epochs=7)) == [2, 2, 3, 3, 1, 1, 1]
    assert level_plan(_config(method="anti", K=4, epochs_per_level=1, epochs=5)) == [2, 3, 4, 1, 1]


def test_combined_plan_follows_sharpening():
    config = _config(method="combined", K=3, epochs_per_level=2, epochs=7, theta_schedule="step")
    assert level_plan(config) == [3, 3, 2, 2, 1, 1, 1]


def test_random_order_same_levels_same_originals_seeded():
    K, per_level, epochs = 5, 2, 11
    sharpening = level_plan(_config(method="sharpening", K=K, epochs_per_level=per_level, epochs=epochs))
    plans = {}
    for seed in range(10):
        plan = level_plan(_config(method="random_order", K=K, epochs_per_level=per_level, epochs=epochs, seed=seed))
        assert len(plan) == epochs
        assert Counter(plan) == Counter(sharpening)  # same multiset of levels
        curriculum = (K - 1) * per_level
        assert plan[curriculum:] == [1] * (epochs - curriculum)  # ends with the same originals
        blocks = plan[:curriculum]
        for start in range(0, curriculum, per_level):  # whole blocks of epochs_per_level
            assert len(set(blocks[start : start + per_level])) == 1
        plans[seed] = plan
        again = level_plan(_config(method="random_order", K=K, epochs_per_level=per_level, epochs=epochs, seed=seed))
        assert again == plan  # deterministic for a seed
    assert any(plan != sharpening for plan in plans.values())
    assert len({tuple(plan) for plan in plans.values()}) > 1  # the seed matters


def test_blur_aug_plan_marks_the_curriculum_epochs_random():
    config = _config(method="blur_aug", K=3, epochs_per_level=2, epochs=7)
    assert RANDOM_LEVEL == 0
    assert level_plan(config) == [0, 0, 0, 0, 1, 1, 1]
    assert level_plan(_config(method="blur_aug", K=4, epochs_per_level=1, epochs=4)) == [0, 0, 0, 1]


@pytest.mark.parametrize("values", [
    dict(method="baseline", K=3, epochs_per_level=2, epochs=7),
    dict(method="annealing", K=3, epochs_per_level=2, epochs=7),
    dict(method="annealing", theta_schedule="cosine", epochs=3),
])
def test_methods_without_blur_train_on_originals_only(values):
    config = _config(**values)
    assert level_plan(config) == [1] * config.epochs


def test_infeasible_budget_is_refused_naming_epochs():
    with pytest.raises(ConfigError, match=r"^epochs:") as caught:
        TrialConfig.from_dict({"method": "sharpening", "K": 4, "epochs_per_level": 3, "epochs": 9})
    assert "10" in str(caught.value)  # says what would fit
    # One more epoch is enough.
    assert level_plan(_config(method="sharpening", K=4, epochs_per_level=3, epochs=10))[-1] == 1


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("method", ["annealing", "combined"])
def test_linear_and_cosine_theta_reach_exactly_zero(schedule, method):
    theta0 = 0.7
    config = _config(method=method, theta_schedule=schedule, theta0=theta0, epochs=6, anneal_epochs=3)
    steps_per_epoch = 7
    end = 3 * steps_per_epoch
    assert theta_at(config, 0, steps_per_epoch) == theta0
    values = [theta_at(config, step, steps_per_epoch) for step in range(6 * steps_per_epoch)]
    assert all(later <= earlier for earlier, later in zip(values, values[1:]))  # non-increasing
    assert all(value > 0 for value in values[:end])
    assert all(value == 0.0 for value in values[end:])  # exactly 0 from step T on
    assert theta_at(config, end, steps_per_epoch) == 0.0
    assert theta_at(config, 10**6, steps_per_epoch) == 0.0
    halfway = theta_at(config, end // 2 + 0, steps_per_epoch)
    fraction = (end // 2) / end
    expected = theta0 * (1 - fraction) if schedule == "linear" else theta0 * (1 + math.cos(math.pi * fraction)) / 2
    assert halfway == pytest.approx(expected, abs=1e-12)


def test_default_anneal_epochs_is_epochs_minus_one():
    config = _config(method="annealing", epochs=5)
    assert config.resolved_theta_schedule == "linear"
    assert config.resolved_anneal_epochs == 4
    assert theta_at(config, 4 * 10 - 1, 10) > 0
    assert theta_at(config, 4 * 10, 10) == 0.0
    assert theta_at(config, 0, 10) == pytest.approx(math.pi / 4)


@pytest.mark.parametrize("method", ["annealing", "combined"])
def test_step_theta_holds_one_value_per_curriculum_block(method):
    K, per_level, theta0 = 4, 2, 0.6
    config = _config(method=method, theta_schedule="step", K=K, epochs_per_level=per_level, epochs=9, theta0=theta0)
    steps_per_epoch = 5
    block = per_level * steps_per_epoch
    for step in range(0, block):
        assert theta_at(config, step, steps_per_epoch) == theta0
    for step in range(block, 2 * block):
        assert theta_at(config, step, steps_per_epoch) == pytest.approx(theta0 * (K - 2) / (K - 1), abs=1e-15)
    for step in range(2 * block, 3 * block):
        assert theta_at(config, step, steps_per_epoch) == pytest.approx(theta0 * 1 / (K - 1), abs=1e-15)
    first_original_step = (first_original_epoch(config) - 1) * steps_per_epoch
    assert first_original_step == 3 * block
    for step in range(first_original_step, 9 * steps_per_epoch):
        assert theta_at(config, step, steps_per_epoch) == 0.0


@pytest.mark.parametrize("method", ["baseline", "sharpening", "anti", "random_order", "blur_aug"])
def test_constant_theta_is_always_zero(method):
    config = _config(method=method, K=3, epochs=5)
    assert config.resolved_theta_schedule == "constant"
    assert all(theta_at(config, step, 3) == 0.0 for step in range(20))


def test_trainable_theta_is_not_scheduled():
    config = _config(method="annealing", theta_schedule="trainable", epochs=3)
    with pytest.raises(ValueError, match="trainable"):
        theta_at(config, 0, 5)
