"""Level plans, θ schedules and σ schedules: exact sequences and endpoints."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from trainer.config import THETA_MAX, ConfigError, TrialConfig
from trainer.schedules import RANDOM_LEVEL, level_plan, sigma_at, theta_at


def _config(**values) -> TrialConfig:
    return TrialConfig.from_dict(values)


def test_sharpening_plan_goes_blurred_to_sharp_then_originals():
    config = _config(method="sharpening", K=3, epochs_per_level=2, epochs=7)
    assert level_plan(config) == [3, 3, 2, 2, 1, 1, 1]
    assert config.curriculum_epochs + 1 == 5  # the first epoch on originals
    assert [config.in_final_regime(e) for e in range(1, 8)] == [False] * 4 + [True] * 3
    assert level_plan(_config(method="sharpening", K=4, epochs_per_level=1, epochs=5)) == [4, 3, 2, 1, 1]


def test_anti_plan_is_the_same_levels_reversed():
    assert level_plan(_config(method="anti", K=3, epochs_per_level=2, epochs=7)) == [2, 2, 3, 3, 1, 1, 1]
    assert level_plan(_config(method="anti", K=4, epochs_per_level=1, epochs=5)) == [2, 3, 4, 1, 1]


def test_combined_plan_follows_sharpening():
    config = _config(method="combined", K=3, epochs_per_level=2, epochs=7, theta_schedule="step")
    assert level_plan(config) == [3, 3, 2, 2, 1, 1, 1]


@pytest.mark.parametrize("method, extra", [("sharpening", {}), ("anti", {}), ("random_order", {}), ("blur_aug", {}),
                                           ("combined", {"theta_schedule": "step"})])
def test_final_regime_starts_with_the_originals(method, extra):
    config = _config(method=method, dataset="mnist5k", K=5, epochs_per_level=2, epochs=11, seed=3, **extra)
    plan = level_plan(config)
    assert [config.in_final_regime(e) for e in range(1, 12)] == [level == 1 for level in plan]
    assert plan.count(1) == 3


def test_combined_final_regime_waits_for_the_longer_of_blur_and_annealing():
    # Originals from epoch 3, but θ reaches 0 only after anneal_epochs = 5: the final regime starts at 6.
    config = _config(method="combined", K=3, anneal_epochs=5, epochs=7)
    assert level_plan(config) == [3, 2, 1, 1, 1, 1, 1]
    assert [config.in_final_regime(e) for e in range(1, 8)] == [False] * 5 + [True] * 2
    assert theta_at(config, 5 * 4 - 1, 4) > 0 and theta_at(config, 5 * 4, 4) == 0.0


def _random_order(K: int, seed: int, per_level: int = 1, epochs: int | None = None) -> list[int]:
    epochs = epochs or (K - 1) * per_level + 1
    return level_plan(_config(method="random_order", dataset="mnist5k", K=K, epochs_per_level=per_level,
                              epochs=epochs, seed=seed))


def test_random_order_same_levels_same_originals_seeded():
    K, per_level, epochs = 5, 2, 11
    sharpening = level_plan(_config(method="sharpening", dataset="mnist5k", K=K, epochs_per_level=per_level,
                                    epochs=epochs))
    plans = {}
    for seed in range(10):
        plan = _random_order(K, seed, per_level, epochs)
        assert len(plan) == epochs
        assert Counter(plan) == Counter(sharpening)  # same multiset of levels
        curriculum = (K - 1) * per_level
        assert plan[curriculum:] == [1] * (epochs - curriculum)  # ends with the same originals
        blocks = plan[:curriculum]
        for start in range(0, curriculum, per_level):  # whole blocks of epochs_per_level
            assert len(set(blocks[start : start + per_level])) == 1
        plans[seed] = plan
        assert _random_order(K, seed, per_level, epochs) == plan  # deterministic for a seed
    assert all(plan != sharpening for plan in plans.values())
    assert len({tuple(plan) for plan in plans.values()}) > 1  # the seed matters


@pytest.mark.parametrize("K", [4, 5, 6, 7, 8])
def test_random_order_is_never_sharpening_or_anti(K):
    sharpening = list(range(K, 1, -1)) + [1]
    anti = list(range(2, K + 1)) + [1]
    plans = [_random_order(K, seed) for seed in range(50)]
    for seed, plan in enumerate(plans):
        assert plan not in (sharpening, anti), seed
        assert sorted(plan[:-1]) == list(range(2, K + 1)) and plan[-1] == 1  # same levels, once each
        assert _random_order(K, seed) == plan  # deterministic for a seed
    assert len({tuple(p) for p in plans}) >= min(6, math.factorial(K - 1) - 2)  # still varies with the seed


def test_random_order_at_K3_is_a_seeded_one_of_the_two_orders():
    """Two blocks: every order is sharpening's or anti's, so nothing can be avoided (hence
    CONTROL_MIN_K = 4); the order is still drawn from the seed, both occur."""
    plans = {seed: _random_order(3, seed, per_level=2) for seed in range(40)}
    assert set(map(tuple, plans.values())) == {(3, 3, 2, 2, 1), (2, 2, 3, 3, 1)}
    assert all(_random_order(3, seed, per_level=2) == plan for seed, plan in plans.items())
    assert _random_order(2, 5) == [2, 1]  # one block: the only order


def test_blur_aug_plan_marks_the_curriculum_epochs_random():
    config = _config(method="blur_aug", K=3, epochs_per_level=2, epochs=7)
    assert RANDOM_LEVEL == 0
    assert level_plan(config) == [0, 0, 0, 0, 1, 1, 1]
    assert level_plan(_config(method="blur_aug", K=4, epochs_per_level=1, epochs=4)) == [0, 0, 0, 1]


@pytest.mark.parametrize("values", [
    dict(method="baseline", K=3, epochs_per_level=2, epochs=7),
    dict(method="annealing", K=3, epochs_per_level=2, epochs=7),
    dict(method="annealing", theta_schedule="cosine", epochs=3),
    dict(method="annealing", theta_schedule="step", K=3, epochs=3),
    dict(method="cbs", epochs=4),
    dict(method="learned_theta", epochs=2),
])
def test_methods_without_blur_train_on_originals_only(values):
    config = _config(**values)
    assert level_plan(config) == [1] * config.epochs


def test_infeasible_budget_is_refused_naming_epochs():
    with pytest.raises(ConfigError, match=r"^epochs:") as caught:
        TrialConfig.from_dict({"method": "sharpening", "K": 4, "epochs_per_level": 3, "epochs": 9})
    assert "need epochs >= 10" in str(caught.value)  # says what would fit
    # One more epoch is enough.
    assert level_plan(_config(method="sharpening", K=4, epochs_per_level=3, epochs=10))[-1] == 1


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("method", ["annealing", "combined"])
def test_linear_and_cosine_theta_reach_exactly_zero(schedule, method):
    theta0 = THETA_MAX  # annealing always starts at π/4
    config = _config(method=method, theta_schedule=schedule, epochs=6, anneal_epochs=3)
    steps_per_epoch = 7
    end = 3 * steps_per_epoch
    assert theta_at(config, 0, steps_per_epoch) == theta0
    values = [theta_at(config, step, steps_per_epoch) for step in range(6 * steps_per_epoch)]
    assert all(later <= earlier for earlier, later in zip(values, values[1:]))  # non-increasing
    assert all(value > 0 for value in values[:end])
    assert all(value == 0.0 for value in values[end:])  # exactly 0 from step T on
    assert theta_at(config, end, steps_per_epoch) == 0.0
    assert theta_at(config, 10**6, steps_per_epoch) == 0.0
    for step in (1, end // 2, end - 1):
        fraction = step / end
        expected = theta0 * (1 - fraction) if schedule == "linear" else theta0 * (1 + math.cos(math.pi * fraction)) / 2
        assert theta_at(config, step, steps_per_epoch) == pytest.approx(expected, abs=1e-12)
    # θ is 0 for the whole first epoch of the final regime.
    assert config.curriculum_epochs == 3 and config.in_final_regime(4) and not config.in_final_regime(3)


def test_default_anneal_epochs_is_epochs_minus_one():
    config = _config(method="annealing", epochs=5)
    assert config.resolved_theta_schedule == "linear"
    assert config.resolved_anneal_epochs == 4
    assert theta_at(config, 4 * 10 - 1, 10) > 0
    assert theta_at(config, 4 * 10, 10) == 0.0
    assert theta_at(config, 0, 10) == pytest.approx(math.pi / 4)


@pytest.mark.parametrize("method", ["annealing", "combined"])
def test_step_theta_holds_one_value_per_curriculum_block(method):
    K, per_level, theta0 = 4, 2, THETA_MAX
    config = _config(method=method, theta_schedule="step", K=K, epochs_per_level=per_level, epochs=9)
    steps_per_epoch = 5
    block = per_level * steps_per_epoch
    for step in range(0, block):
        assert theta_at(config, step, steps_per_epoch) == theta0
    for step in range(block, 2 * block):
        assert theta_at(config, step, steps_per_epoch) == pytest.approx(theta0 * (K - 2) / (K - 1), abs=1e-15)
    for step in range(2 * block, 3 * block):
        assert theta_at(config, step, steps_per_epoch) == pytest.approx(theta0 * 1 / (K - 1), abs=1e-15)
    first_original_step = config.curriculum_epochs * steps_per_epoch
    assert first_original_step == 3 * block
    for step in range(first_original_step, 9 * steps_per_epoch):
        assert theta_at(config, step, steps_per_epoch) == 0.0


@pytest.mark.parametrize("method", ["baseline", "sharpening", "anti", "random_order", "blur_aug", "cbs"])
def test_constant_theta_is_always_zero(method):
    config = _config(method=method, K=3, epochs=5)
    assert config.resolved_theta_schedule == "constant"
    assert all(theta_at(config, step, 3) == 0.0 for step in range(20))


@pytest.mark.parametrize("schedule", ["trainable", "trainable_channel"])
def test_learned_theta_is_not_scheduled(schedule):
    config = _config(method="learned_theta", theta_schedule=schedule, epochs=3)
    with pytest.raises(ValueError, match=schedule):
        theta_at(config, 0, 5)


# ---------------------------------------------------------------------------------------------
# σ (Curriculum by Smoothing).

def test_sigma_sequence_is_exact():
    config = _config(method="cbs", sigma0=1.0, sigma_decay=0.5, decay_every=2, smooth_epochs=5, epochs=7)
    assert [sigma_at(config, e) for e in range(1, 8)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.0, 0.0]
    assert [config.in_final_regime(e) for e in range(1, 8)] == [False] * 5 + [True] * 2


def test_sigma_default_schedule():
    # Authors' defaults: σ0 = 1, ×0.9 every 5 epochs; smooth_epochs 0 = epochs - 1.
    config = _config(method="cbs", epochs=12)
    assert [sigma_at(config, e) for e in range(1, 13)] == pytest.approx(
        [1.0] * 5 + [0.9] * 5 + [0.81, 0.0], abs=1e-15)
    other = _config(method="cbs", sigma0=2.0, sigma_decay=0.9, decay_every=1, smooth_epochs=3, epochs=4)
    assert [sigma_at(other, e) for e in range(1, 5)] == pytest.approx([2.0, 1.8, 1.62, 0.0], abs=1e-12)


def test_sigma_reaches_exactly_zero_after_smooth_epochs():
    config = _config(method="cbs", sigma_decay=1.0, smooth_epochs=3, epochs=5)
    assert [sigma_at(config, e) for e in range(1, 6)] == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert sigma_at(config, 10**6) == 0.0


@pytest.mark.parametrize("values", [
    dict(method="baseline"),
    dict(method="sharpening", K=3),
    dict(method="annealing"),
    dict(method="combined", K=3),
    dict(method="learned_theta"),
    dict(method="blur_aug", K=3),
])
def test_sigma_is_zero_for_methods_that_do_not_smooth(values):
    # sigma0 is set but unused: only cbs smooths.
    config = _config(epochs=6, sigma0=2.0, **values)
    assert all(sigma_at(config, e) == 0.0 for e in range(1, 7))


# ---------------------------------------------------------------------------------------------
# The guards of the schedules themselves, for configs that never went through validate()
# (TrialConfig(...) built directly): found by mutation testing (mutation/run.sh).

@pytest.mark.parametrize("K, per_level, epochs", [(4, 1, 3), (3, 2, 4), (4, 2, 5)])
def test_level_plan_refuses_a_curriculum_that_fills_the_budget(K, per_level, epochs):
    # (K−1)·epochs_per_level ≥ epochs: no epoch would train on the originals.
    config = TrialConfig(method="sharpening", K=K, epochs_per_level=per_level, epochs=epochs)
    with pytest.raises(ValueError) as caught:
        level_plan(config)
    curriculum = (K - 1) * per_level
    assert str(caught.value) == (f"a curriculum of {curriculum} epochs leaves no epoch on original "
                                 f"images in {epochs}")
    # One more epoch: exactly one on the originals.
    assert level_plan(TrialConfig(method="sharpening", K=K, epochs_per_level=per_level,
                                  epochs=curriculum + 1))[-2:] == [2, 1]


def test_unknown_theta_schedule_is_refused_by_name():
    config = TrialConfig(method="annealing", theta_schedule="exponential", epochs=4)
    with pytest.raises(ValueError) as caught:
        theta_at(config, 0, 5)
    assert str(caught.value) == "unknown theta_schedule 'exponential'"
