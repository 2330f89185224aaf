"""Low-pass kernels and their levels, as batched depthwise convolutions on the tensor's device.

Level n of every family has the same per-axis variance as the paper's box J_n/n², (n²−1)/12, so
"level n" means the same amount of blur whatever the kernel:

- box:        the separable n-tap mean (J_n/n²). For even n the extra tap goes right/below the
              pixel, i.e. the output content is shifted half a pixel towards the top-left.
- gaussian:   the *discrete* Gaussian kernel e^{-t} I_k(t) (Lindeberg) with t = σ² = (n²−1)/12;
              unlike a sampled Gaussian its variance is exactly t, whatever how small.
- downsample: area-average over n×n cells (adaptive pooling, so sizes need not divide),
              then bilinear resize back: the progressive-resizing family.

Level 1 returns the input unchanged. Borders are padded by replication so they do not darken;
every kernel sums to 1, so blurring commutes with per-channel normalisation.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from scipy.special import ive

KERNELS = ("box", "gaussian", "downsample")


def max_level(height: int, width: int) -> int:
    """The largest level allowed for an image: a blur wider than half the image erases it."""
    return max(1, min(height, width) // 2)


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


def blur(images: torch.Tensor, kind: str, level: int) -> torch.Tensor:
    """Blur a batch (N, C, H, W) of floating-point images to `level` of kernel family `kind`."""
    if kind not in KERNELS:
        raise ValueError(f"kernel {kind!r} is not allowed; choose one of {list(KERNELS)}")
    height, width = images.shape[-2:]
    check_level(level, height, width)
    if level == 1:
        return images
    if kind == "downsample":
        small = F.adaptive_avg_pool2d(images, (math.ceil(height / level), math.ceil(width / level)))
        return F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)
    taps = kernel_1d(kind, level)
    left = (len(taps) - 1) // 2
    if kind == "box":
        # The same J_n/n² as a separable mean, through avg-pool: ~4.5x faster than conv2d on CPU
        # (54,000 MNIST images: 0.75 s vs 3.4 s), equal to float rounding.
        right = level - 1 - left
        out = F.avg_pool2d(F.pad(images, (left, right, 0, 0), mode="replicate"), (1, level), stride=1)
        out = F.avg_pool2d(F.pad(out, (0, 0, left, right), mode="replicate"), (level, 1), stride=1)
    else:
        out = _separable(images, taps, left)
    # Keep the input's memory format (channels_last stays channels_last).
    if images.is_contiguous(memory_format=torch.channels_last):
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def blur_in_chunks(images: torch.Tensor, kind: str, level: int, chunk: int = 8192) -> torch.Tensor:
    """Blur a whole resident dataset without a dataset-sized temporary per intermediate."""
    if level == 1:
        return images
    return torch.cat([blur(images[i : i + chunk], kind, level) for i in range(0, len(images), chunk)])
