"""regimes: where curricula are said to help — the mnist5k comparison in the standard setting, with
40% symmetric label noise, at a short budget, and on a long-tailed training split with class
imbalance ρ = n_max / n_min = 10 (Wu, Dyer & Neyshabur, ICLR 2021; CurBench)."""

from .common import Regime
from .mnist5k import SETTINGS as MNIST5K

SETTINGS = MNIST5K.replace(
    name="regimes",
    description="every method and control on mnist5k in four regimes: standard, 40% label noise, short budget, "
                "class imbalance ρ = 10",
    regimes=(Regime("standard"), Regime("noise40", label_noise=0.4), Regime("short", epochs=8),
             Regime("imbalance10", imbalance=10.0)),
    num_samples=6,
    seed_repeats=5,
    replicates=1,  # four regimes already make it a long study; --replicates 3 measures the split here too
    select_top=2,
    select_seeds=2,
    K_range=(4, 6),  # the short budget still leaves 3 epochs on originals at K=6
)
