"""sharpening: progressive sharpening and its controls against the baseline on MNIST."""

from .common import SpaceSettings

SETTINGS = SpaceSettings(
    name="sharpening",
    description="progressive sharpening vs anti, random_order, blur_aug and baseline; MNIST small CNN",
    datasets=("mnist",),
    models={"mnist": "small_cnn"},
    methods=("baseline", "sharpening", "anti", "random_order", "blur_aug"),
    epochs=15,
    num_samples=30,  # per searched method
    seed_repeats=5,
    K_range=(4, 8),
    epochs_per_level_range=(1, 2),
)

