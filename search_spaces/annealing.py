"""annealing: convexity annealing (every θ schedule) against the baseline on Fashion-MNIST."""

from .common import SpaceSettings

SETTINGS = SpaceSettings(
    name="annealing",
    description="convexity annealing, all θ schedules, vs baseline; Fashion-MNIST small CNN",
    datasets=("fashion_mnist",),
    models={"fashion_mnist": "small_cnn"},
    methods=("baseline", "annealing", "learned_theta"),
    epochs=15,
    num_samples=20,  # per searched method
    seed_repeats=5,
    K_range=(2, 6),  # K and epochs_per_level pace the `step` θ schedule
    epochs_per_level_range=(1, 2),
    fixed={"pool": "avg"},  # no max-pool: at θ = π/4 the eval-mode network is affine, as annealing assumes
)

