"""annealing: convexity annealing (every θ schedule) against the baseline on Fashion-MNIST."""

from .common import SpaceSettings, constants, suggest_method, suggest_shared

SETTINGS = SpaceSettings(
    name="annealing",
    description="convexity annealing, all θ schedules, vs baseline; Fashion-MNIST small CNN",
    datasets=("fashion_mnist",),
    models={"fashion_mnist": "small_cnn"},
    methods=("baseline", "annealing"),
    epochs=15,
    num_samples=40,
    seed_repeats=5,
    K_range=(2, 6),
    epochs_per_level_range=(1, 2),
)


def define(trial, dataset, settings=SETTINGS):
    suggest_method(trial, settings)
    suggest_shared(trial, settings)
    return constants(dataset, settings)
