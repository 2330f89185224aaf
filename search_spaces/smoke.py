"""smoke: every method and control on digits; the embedded default, about 30 s on a 2-core CPU."""

from .common import SpaceSettings

SETTINGS = SpaceSettings(
    name="smoke",
    description="every method and control on scikit-learn's digits, small CNN, 6 epochs",
    datasets=("digits",),
    models={"digits": "small_cnn"},
    epochs=6,
    num_samples=2,  # per searched method (6 of them); the 3 controls re-run sharpening's best
    seed_repeats=2,  # the crossed runs (5 per seed) made 3 seeds a 69-trial study; the smoke checks the chain
    select_top=1,  # no selection runs: choose on the search trial (mnist5k selects its top 3 on 3 seeds)
    K_range=(4, 4),  # the largest K 8x8 images allow; controls need K >= 4 to differ from sharpening
    epochs_per_level_range=(1, 1),
    lr_range=(1e-2, 0.2),
    optimizers=("sgd",),
    batch_sizes=(32, 64),
)

