"""Regimes: label noise and class imbalance change the training split only, the same way for every
trial of a regime; a space's regimes are checked against the budget before anything runs."""

from __future__ import annotations

import numpy as np
import pytest

from search_spaces.common import Regime, SpaceSettings
from study.record import study_key
from trainer.config import ConfigError, TrialConfig
from trainer.data import with_regime


@pytest.mark.parametrize("noise", [0.1, 0.4])
def test_label_noise_replaces_the_requested_fraction_of_training_labels_only(digits, noise):
    noisy = with_regime(digits, label_noise=noise)
    changed = noisy.train_y != digits.train_y
    assert abs(changed.sum() - noise * len(digits.train_y)) <= 1  # within one label
    assert np.array_equal(noisy.train_x, digits.train_x)  # same images, same order
    for split in ("val_x", "val_y", "test_x", "test_y"):  # validation and test stay clean
        assert np.array_equal(getattr(noisy, split), getattr(digits, split))
    assert noisy.mean is digits.mean and noisy.std is digits.std  # the normalisation is the clean split's


def test_label_noise_is_symmetric_over_the_other_classes(digits):
    noisy = with_regime(digits, label_noise=0.4)
    changed = noisy.train_y != digits.train_y
    offsets = (noisy.train_y[changed] - digits.train_y[changed]) % digits.num_classes
    counts = np.bincount(offsets, minlength=digits.num_classes)
    assert counts[0] == 0  # never the true class
    expected = changed.sum() / (digits.num_classes - 1)
    assert np.all(np.abs(counts[1:] - expected) < 4 * np.sqrt(expected))  # uniform over the 9 others


def test_the_same_regime_gives_the_same_corruption_and_another_level_another(digits):
    first, again = with_regime(digits, label_noise=0.4), with_regime(digits, label_noise=0.4)
    assert np.array_equal(first.train_y, again.train_y)
    other = with_regime(digits, label_noise=0.2)
    assert not np.array_equal((other.train_y != digits.train_y), (first.train_y != digits.train_y))


@pytest.mark.parametrize("rho", [2.0, 10.0, 50.0])
def test_imbalance_follows_the_exponential_profile(digits, rho):
    skewed = with_regime(digits, imbalance=rho)
    counts = np.bincount(skewed.train_y, minlength=digits.num_classes)
    n_max = np.bincount(digits.train_y).min()
    expected = [max(1, round(n_max * rho ** (-c / (digits.num_classes - 1)))) for c in range(digits.num_classes)]
    assert counts.tolist() == expected
    assert counts[0] == n_max and counts[-1] == max(1, round(n_max / rho))
    # The kept images are real training images with their own labels, and val/test are untouched.
    rows = {row.tobytes(): label for row, label in zip(digits.train_x, digits.train_y)}
    assert all(rows[row.tobytes()] == label for row, label in zip(skewed.train_x, skewed.train_y))
    for split in ("val_x", "val_y", "test_x", "test_y"):
        assert np.array_equal(getattr(skewed, split), getattr(digits, split))


def test_the_standard_regime_is_the_dataset_itself(digits):
    assert with_regime(digits) is digits


def test_regime_fields_are_validated():
    with pytest.raises(ConfigError, match=r"^label_noise: must be in \[0, 0.90\)"):
        TrialConfig.from_dict({"label_noise": 0.95})
    with pytest.raises(ConfigError, match=r"^imbalance: ρ = n_max / n_min must be in \[1, 1000\]"):
        TrialConfig.from_dict({"imbalance": 0.5})


def _settings(**changes) -> SpaceSettings:
    return SpaceSettings(name="t", description="", datasets=("digits",), models={"digits": "small_cnn"},
                         epochs=6, num_samples=1, seed_repeats=0, epochs_per_level_range=(1, 1), **changes)


def test_a_regime_that_leaves_a_curriculum_no_final_epoch_is_refused():
    with pytest.raises(ConfigError, match=r"need epochs >= 4 \(regime 'short'\)"):
        _settings(regimes=(Regime(), Regime("short", epochs=3))).validate()
    _settings(regimes=(Regime(), Regime("short", epochs=4))).validate()  # K=4 at one epoch per level fits
    with pytest.raises(ConfigError, match="regimes: need at least one, with distinct names"):
        _settings(regimes=(Regime("a"), Regime("a"))).validate()


def test_a_regime_trains_with_its_own_budget_and_training_split():
    settings = _settings(regimes=(Regime(), Regime("noisy", label_noise=0.4, epochs=5)))
    noisy = settings.for_regime(settings.regimes[1])
    assert noisy.epochs == 5 and noisy.fixed == {"label_noise": 0.4, "imbalance": 1.0}
    assert settings.for_regime(settings.regimes[0]).epochs == 6
    assert [study_key("digits", r.name) for r in settings.regimes] == ["digits", "digits-noisy"]
    # A study record stores regimes as dicts; the settings read them back.
    assert _settings(regimes=({"name": "x", "imbalance": 10.0},)).regimes == (Regime("x", imbalance=10.0),)
