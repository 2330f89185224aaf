"""smoke: every method and control on digits; the embedded default, minutes on a 2-core CPU."""

from .common import SpaceSettings, constants, suggest_method, suggest_shared

SETTINGS = SpaceSettings(
    name="smoke",
    description="every method and control on scikit-learn's digits, small CNN, 6 epochs",
    datasets=("digits",),
    models={"digits": "small_cnn"},
    epochs=6,
    num_samples=14,  # 7 methods: each is tried once first, then TPE picks
    seed_repeats=3,
    K_range=(2, 3),
    epochs_per_level_range=(1, 2),
    lr_range=(1e-2, 0.2),
    optimizers=("sgd",),
    batch_sizes=(32, 64),
)


def define(trial, dataset, settings=SETTINGS):
    suggest_method(trial, settings)
    suggest_shared(trial, settings)
    return constants(dataset, settings)
