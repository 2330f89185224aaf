"""Which blur level each epoch trains on, and which θ each step uses.

Every blur method spends the same (K−1)·epochs_per_level "curriculum" epochs on the same levels
{2..K} and then trains on the original images until the budget ends; only the order differs:

- sharpening:   K, K−1, …, 2 (blurred → sharp), then originals;
- anti:         2, 3, …, K (sharp → blurred), then originals — the same levels reversed;
- random_order: the K−1 blocks in a seeded random order that is neither of the two above
                (K ≥ 4), then originals;
- blur_aug:     during the curriculum epochs each *batch* draws a random level from 2..K
                (no ordering at all), then originals. Marked by level 0 in the plan.

So every method ends on the originals with the same number of original epochs, and a
comparison between them isolates the ordering.

θ is updated every optimisation step (not per epoch): with T = anneal_epochs·steps_per_epoch,
linear θ_t = θ0·(1 − t/T) and cosine θ_t = θ0·(1 + cos(πt/T))/2 for t < T, and exactly 0 from
step T on. `step` holds θ0·(K−1−b)/(K−1) during curriculum block b and 0 on the originals.

σ (Curriculum by Smoothing) is set per epoch: σ_e = σ0·sigma_decay^⌊(e−1)/decay_every⌋ for
e ≤ smooth_epochs, and exactly 0 (the smoothing layers are skipped) from the next epoch on, so
every cbs trial ends with at least one unsmoothed epoch, as the blur curricula end on originals.
"""

from __future__ import annotations

import math

import numpy as np

from .config import TrialConfig

RANDOM_LEVEL = 0  # plan entry for "a random level per batch" (blur_aug)


def level_plan(config: TrialConfig) -> list[int]:
    """The blur level of every epoch (length == config.epochs); 1 is the original images."""
    K, per_level, epochs = config.K, config.epochs_per_level, config.epochs
    if not config.blurs:
        return [1] * epochs
    curriculum = (K - 1) * per_level
    if curriculum >= epochs:
        raise ValueError(
            f"a curriculum of {curriculum} epochs leaves no epoch on original images in {epochs}"
        )
    blocks = list(range(K, 1, -1))  # K, K-1, ..., 2
    if config.method == "anti":
        blocks.reverse()
    elif config.method == "random_order":
        # Seeded by the trial seed: repeats of a config see different orders, as a control should.
        # Neither sharpening's order nor anti's: a seed that drew one of them would make the
        # control a copy of the run it is compared with (at K = 4 a third of the seeds would).
        rng, ordered = np.random.default_rng(config.seed), (blocks, blocks[::-1])
        shuffled = [int(b) for b in rng.permutation(blocks)]
        while len(blocks) > 2 and shuffled in ordered:
            shuffled = [int(b) for b in rng.permutation(blocks)]
        blocks = shuffled
    elif config.method == "blur_aug":
        return [RANDOM_LEVEL] * curriculum + [1] * (epochs - curriculum)
    plan = [level for level in blocks for _ in range(per_level)]
    return plan + [1] * (epochs - curriculum)


def theta_at(config: TrialConfig, step: int, steps_per_epoch: int) -> float:
    """θ for optimisation step `step` (0-based) of a scheduled (not trainable) θ."""
    schedule = config.resolved_theta_schedule
    if schedule == "constant":
        return 0.0
    if config.spec.learns_theta:
        raise ValueError(f"theta_schedule {schedule!r} is learned, not scheduled")
    if schedule == "step":
        block = step // (steps_per_epoch * config.epochs_per_level)
        blocks = config.K - 1
        return config.theta0 * (blocks - block) / blocks if block < blocks else 0.0
    total = config.resolved_anneal_epochs * steps_per_epoch
    if step >= total:
        return 0.0
    fraction = step / total
    if schedule == "linear":
        return config.theta0 * (1.0 - fraction)
    if schedule == "cosine":
        return config.theta0 * 0.5 * (1.0 + math.cos(math.pi * fraction))
    raise ValueError(f"unknown theta_schedule {schedule!r}")


def sigma_at(config: TrialConfig, epoch: int) -> float:
    """σ of the feature smoothing in 1-based `epoch` (0 = no smoothing; always 0 for other methods)."""
    if not config.spec.smooths or epoch > config.resolved_smooth_epochs:
        return 0.0
    return config.sigma0 * config.sigma_decay ** ((epoch - 1) // config.decay_every)
