"""sharpening: progressive sharpening and its controls against the baseline on MNIST."""

from .common import SpaceSettings, constants, suggest_method, suggest_shared

SETTINGS = SpaceSettings(
    name="sharpening",
    description="progressive sharpening vs anti, random_order, blur_aug and baseline; MNIST small CNN",
    datasets=("mnist",),
    models={"mnist": "small_cnn"},
    methods=("baseline", "sharpening", "anti", "random_order", "blur_aug"),
    epochs=15,
    num_samples=60,
    seed_repeats=5,
    K_range=(2, 8),
    epochs_per_level_range=(1, 2),
)


def define(trial, dataset, settings=SETTINGS):
    suggest_method(trial, settings)
    suggest_shared(trial, settings)
    return constants(dataset, settings)
