"""Low-pass kernels and their levels, as batched depthwise operators on the tensor's device.

Level n of every family has the per-axis variance of the paper's box J_n/n², (n²−1)/12, so
"level n" means the same amount of blur whatever the kernel:

- box:        the separable n-tap mean (J_n/n²). For even n the extra tap goes right/below the
              pixel, i.e. the output content is shifted half a pixel towards the top-left.
- gaussian:   the *discrete* Gaussian kernel e^{-t} I_k(t) (Lindeberg) with t = σ² = (n²−1)/12;
              unlike a sampled Gaussian its variance is exactly t, whatever how small.
- downsample: the progressive-resizing family, an honest resize pair with a *real* factor f:
              area-average over cells f pixels wide (exact fractional pixel overlaps; the grid
              starts at the top-left corner and its last cell is clipped at the border), then
              linear interpolation from the cell centroids back to the pixel centres, clamped
              beyond the outermost centroids (bilinear, align_corners=False style). Per axis
              it is one size×size matrix; the 2-D operator applies it along H then W (a matmul).

How the downsample is matched. It is not shift-invariant, so it has no kernel variance;
what is measured is the per-axis impulse response: push an impulse through the operator at
each of the `size` positions, take the variance of the response (normalised to sum 1) and
average over positions (`impulse_variance`). The target is the *box level n measured the
same way on the same size* (`downsample_target`): border replication shortens every
response near the edges, so even the box measures less than (n²−1)/12 on a finite image
(28 px: 0.96× at n=2 … 0.79× at n=14; 8 px: 0.86× at n=2, 0.77× at n=4), and the Gaussian
measures within 5% of the box. Matching the nominal value instead would make the downsample
up to 30% blurrier than the box it stands for. `downsample_factor(level, size)` finds f by a
scan (step 0.05) for the first crossing of the target, then 40 bisection steps, cached per
(level, size). For sizes 8, 28 and 32 and every allowed level the measured variance is within
4% of the target: exact to 1e-6 except the top level on 28 px (n=14: +3.8%) and on 32 px
(n=16: +2.4%), where the variance jumps as the grid drops to three cells. A level whose best
factor misses the target by more than 10% (DOWNSAMPLE_TOLERANCE) is refused with a ValueError
rather than silently mis-matched; no allowed level of any square size 2..64 is.
Note that the matched factors are small at low levels (≈1.01 at n=2 on 28 px, 1.54 at n=3):
matched in variance, the resize family blurs by sub-pixel resampling there, and only the top
levels are coarse grids (3–4 cells). The blur of a real-factor resize depends on the pixel's
phase against the grid, so it varies across the image; the match is of the average.

Level 1 returns the input unchanged. Borders do not darken: box and gaussian pad by replication,
the downsample clips its last cell and clamps its interpolation;
every operator's rows sum to 1, so a constant image stays constant and blurring commutes with
per-channel normalisation.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import ive

from .config import KERNELS, max_level  # the kernel names and the level rule live with the trial config


def check_level(level: int, height: int, width: int) -> None:
    top = max_level(height, width)
    if not 1 <= level <= top:
        raise ValueError(
            f"blur level {level} is not allowed for {height}x{width} images; "
            f"levels must be in 1..{top} (at most half the smaller side)"
        )


def box_variance(level: int) -> float:
    return (level * level - 1) / 12.0


@lru_cache(maxsize=None)
def kernel_1d(kind: str, level: int) -> np.ndarray:
    """The separable 1-D taps of a kernel (float64, sums to 1)."""
    if kind == "box":
        return np.full(level, 1.0 / level)
    if kind == "gaussian":
        t = box_variance(level)
        if t == 0:
            return np.ones(1)
        # Its tails are heavier than a sampled Gaussian's: cut at 4σ+1 it lost up to 2e-3 of
        # its variance; cut at 6σ+4 the variance is within 1e-7 of t for every level up to 16.
        radius = int(math.ceil(6 * math.sqrt(t))) + 4
        taps = ive(np.abs(np.arange(-radius, radius + 1)), t)  # e^{-t} I_k(t), sums to 1 over Z
        return taps / taps.sum()
    raise ValueError(f"kernel {kind!r} has no 1-D taps; choose box or gaussian")


def _separable(images: torch.Tensor, taps: np.ndarray, left: int) -> torch.Tensor:
    """Depthwise convolution with `taps` along W then H, replicate-padded."""
    channels = images.shape[1]
    size = len(taps)
    right = size - 1 - left
    weight = torch.as_tensor(taps, dtype=images.dtype, device=images.device)
    horizontal = weight.view(1, 1, 1, size).expand(channels, 1, 1, size)
    vertical = weight.view(1, 1, size, 1).expand(channels, 1, size, 1)
    out = F.pad(images, (left, right, 0, 0), mode="replicate")
    out = F.conv2d(out, horizontal, groups=channels)
    out = F.pad(out, (0, 0, left, right), mode="replicate")
    return F.conv2d(out, vertical, groups=channels)


# --- the downsample family: a real-factor resize pair, matched in measured variance ------------

DOWNSAMPLE_TOLERANCE = 0.10  # the largest relative variance mismatch a downsample level may have
_SCAN_STEP = 0.05
_BISECTIONS = 40


@lru_cache(maxsize=None)
def resize_operator(size: int, factor: float) -> np.ndarray:
    """Per-axis downsample-then-upsample matrix (size×size, float64, rows sum to 1).

    Area-average over cells `factor` pixels wide starting at the top-left corner (the last cell
    clipped at the border), then linear interpolation from the cell centroids back to the pixel
    centres, clamped beyond the outermost centroids.
    """
    if factor < 1.0:
        raise ValueError(f"downsample factor {factor} is below 1")
    cells = math.ceil(size / factor)
    if (cells - 1) * factor >= size - 1e-9:  # no zero-width last cell from rounding
        cells -= 1
    cells = max(cells, 1)
    edges = np.minimum(factor * np.arange(cells + 1), float(size))
    edges[-1] = float(size)
    lo, hi = edges[:-1], edges[1:]
    pixels = np.arange(size)
    overlap = np.clip(np.minimum(hi[:, None], pixels + 1.0) - np.maximum(lo[:, None], pixels), 0.0, None)
    down = overlap / overlap.sum(axis=1, keepdims=True)  # (cells, size): exact area averages
    up = np.zeros((size, cells))
    if cells == 1:
        up[:, 0] = 1.0
    else:
        centres = (lo + hi) / 2  # centroid of each (clipped) cell
        x = pixels + 0.5
        k = np.clip(np.searchsorted(centres, x, side="right") - 1, 0, cells - 2)
        t = np.clip((x - centres[k]) / (centres[k + 1] - centres[k]), 0.0, 1.0)
        up[pixels, k] = 1.0 - t
        up[pixels, k + 1] += t
    return up @ down


@lru_cache(maxsize=None)
def box_operator(size: int, level: int) -> np.ndarray:
    """Per-axis matrix of `blur(..., "box", level)` on `size` pixels (replicate padding)."""
    left = (level - 1) // 2
    matrix = np.zeros((size, size))
    for i in range(size):
        for k in range(i - left, i - left + level):
            matrix[i, min(max(k, 0), size - 1)] += 1.0 / level
    return matrix


def impulse_variance(operator: np.ndarray) -> float:
    """Variance of the response to an impulse, averaged over the impulse's positions.

    `operator` maps an image axis to an image axis (out = operator @ x): column j is the response
    to an impulse at j; it is normalised to sum 1 before taking its variance.
    """
    responses = np.asarray(operator, dtype=np.float64).T  # row j: response to an impulse at j
    weights = responses / responses.sum(axis=1, keepdims=True)
    positions = np.arange(responses.shape[1])
    mean = weights @ positions
    return float((weights * (positions[None, :] - mean[:, None]) ** 2).sum(axis=1).mean())


@lru_cache(maxsize=None)
def downsample_target(level: int, size: int) -> float:
    """What downsample level n matches: box level n's impulse variance on the same size."""
    return impulse_variance(box_operator(size, level))


@lru_cache(maxsize=None)
def _variance_scan(size: int) -> tuple[np.ndarray, np.ndarray]:
    factors = np.arange(1.0, size + 1e-9, _SCAN_STEP)
    return factors, np.array([impulse_variance(resize_operator(size, float(f))) for f in factors])


@lru_cache(maxsize=None)
def downsample_match(level: int, size: int) -> tuple[float, float, float]:
    """(factor, measured variance, target) of downsample `level` on `size` pixels.

    The smallest scanned factor whose variance reaches the target, refined by bisection against
    the previous scan point; of the bracket's ends, the one nearer the target. The variance is
    continuous in the factor almost everywhere but not monotone (it dips where the factor is an
    integer and cells align with pixels), hence the scan before the bisection.
    """
    target = downsample_target(level, size)
    if level == 1:
        return 1.0, 0.0, target
    factors, variances = _variance_scan(size)
    first = int(np.nonzero(variances >= target)[0][0])  # factor = size (one cell) has variance (size²−1)/12 ≥ any allowed target
    lo, hi = float(factors[first - 1]), float(factors[first])
    v_lo, v_hi = float(variances[first - 1]), float(variances[first])
    for _ in range(_BISECTIONS):
        mid = (lo + hi) / 2
        v_mid = impulse_variance(resize_operator(size, mid))
        if v_mid >= target:
            hi, v_hi = mid, v_mid
        else:
            lo, v_lo = mid, v_mid
    return (hi, v_hi, target) if abs(v_hi - target) <= abs(v_lo - target) else (lo, v_lo, target)


def downsample_factor(level: int, size: int) -> float:
    """The resize factor of downsample `level` on an axis of `size` pixels (ValueError if unmatched)."""
    factor, variance, target = downsample_match(level, size)
    if level > 1 and abs(variance / target - 1) > DOWNSAMPLE_TOLERANCE:
        raise ValueError(
            f"downsample level {level} cannot be variance-matched on {size}-pixel images: the best "
            f"factor {factor:.4f} gives impulse variance {variance:.4f} vs box level {level}'s "
            f"{target:.4f} (more than {DOWNSAMPLE_TOLERANCE:.0%} off); use box or gaussian here"
        )
    return factor


@lru_cache(maxsize=None)
def downsample_operator(level: int, size: int) -> np.ndarray:
    """Per-axis matrix of `blur(..., "downsample", level)` on `size` pixels."""
    if level == 1:
        return np.eye(size)
    return resize_operator(size, downsample_factor(level, size))


def _downsample(images: torch.Tensor, level: int) -> torch.Tensor:
    height, width = images.shape[-2:]
    rows = torch.as_tensor(downsample_operator(level, height), dtype=images.dtype, device=images.device)
    cols = torch.as_tensor(downsample_operator(level, width), dtype=images.dtype, device=images.device)
    return torch.matmul(torch.matmul(rows, images), cols.T)


def blur(images: torch.Tensor, kind: str, level: int) -> torch.Tensor:
    """Blur a batch (N, C, H, W) of floating-point images to `level` of kernel family `kind`."""
    if kind not in KERNELS:
        raise ValueError(f"kernel {kind!r} is not allowed; choose one of {list(KERNELS)}")
    height, width = images.shape[-2:]
    check_level(level, height, width)
    if level == 1:
        return images
    if kind == "downsample":
        out = _downsample(images, level)
    elif kind == "box":
        left = (level - 1) // 2
        # The same J_n/n² as a separable mean, through avg-pool: ~4.5x faster than conv2d on CPU
        # (54,000 MNIST images: 0.75 s vs 3.4 s), equal to float rounding.
        right = level - 1 - left
        out = F.avg_pool2d(F.pad(images, (left, right, 0, 0), mode="replicate"), (1, level), stride=1)
        out = F.avg_pool2d(F.pad(out, (0, 0, left, right), mode="replicate"), (level, 1), stride=1)
    else:
        taps = kernel_1d(kind, level)
        out = _separable(images, taps, (len(taps) - 1) // 2)
    # Keep the input's memory format (channels_last stays channels_last).
    if images.is_contiguous(memory_format=torch.channels_last):
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def blur_in_chunks(images: torch.Tensor, kind: str, level: int, chunk: int = 8192) -> torch.Tensor:
    """Blur a whole resident dataset without a dataset-sized temporary per intermediate."""
    if level == 1:
        return images
    return torch.cat([blur(images[i : i + chunk], kind, level) for i in range(0, len(images), chunk)])
