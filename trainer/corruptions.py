"""Common corruptions of the test images: the study's second endpoint, offline and deterministic.

Two sets, chosen by the number of channels:

- 1 channel (digits, mnist5k, MNIST, Fashion-MNIST): MNIST-C (Mu & Gilmer 2019), its 15
  corruptions at the one severity the released dataset uses — shot noise, impulse noise, glass
  blur, motion blur, shear, scale, rotate, brightness, translate, stripe, fog, spatter, dotted
  line, zigzag, canny edges. One severity, as in the paper: a per-corruption severity ladder
  would be ours, not theirs, and would multiply the evaluation cost by five.
- 3 channels (CIFAR-10): CIFAR-10-C (Hendrycks & Dietterich 2019), 15 corruptions × severities
  1..5 — gaussian, shot and impulse noise; defocus, glass, motion and zoom blur; snow, frost,
  fog, brightness; contrast, elastic transform, pixelate, JPEG.

The parameters are the reference code's (google-research/mnist-c `corruptions.py`, at each
function's default severity, which is what the released MNIST-C used; hendrycks/robustness
`make_cifar_c.py`). Spatial parameters (blur widths, shifts, line widths, blob sizes) are given
in pixels of a 28-px (MNIST-C) or 32-px (CIFAR-10-C) image and are scaled by side/28 or side/32,
so on the 8×8 digits a corruption covers the same fraction of the image as on MNIST; a shift
or a stroke is never narrower than one pixel. Where the papers used a tool that is not here
(only numpy, scipy and Pillow are), the corruption is rebuilt from its definition:

- motion blur (both sets, and the streaks of snow): ImageMagick's MotionBlurImage re-implemented
  — a one-sided Gaussian trail of 2·⌈radius⌉+1 taps at integer offsets along the angle,
  replicated borders — rather than called. There the radius only truncates the trail, so the
  paper's severities 3 and 4, (radius, σ) = (6, 2) and (8, 2), are one blur (RMS distance 0.048
  both, see below); severity 4 uses σ = 2.25 here (0.051).
- frost: the paper overlays crops of six frost photographs, which are not shipped offline.
  Here the layer is synthetic: a plasma-fractal haze (60 %) under bright random ice needles
  (short anti-aliased segments at random angles, 40 %), tinted blue-white, blended with the
  paper's image weights (its frost weights are re-spaced, below). Frost is therefore the
  corruption furthest from its paper.
- canny edges: Canny re-implemented (Gaussian σ=1 scaled, Sobel gradients, non-maximum
  suppression over four quantised directions where skimage interpolates, hysteresis at 0.1 and
  0.2 as skimage's float defaults, 8-connected, border pixels dropped).
- shear, scale, rotate, translate, zoom, elastic: one bilinear resampling (scipy) with the
  reference's geometry; elastic composes the random affine and the displacement field into one
  resampling where the reference resampled twice; zoom blur zooms about the exact centre.
- glass blur: the reference's sequential local pixel swaps (offsets in [−δ, δ−1], bottom-right
  to top-left, as numpy's randint draws them there), vectorised across images, without the
  intermediate uint8 rounding.
- pixelate: Pillow's BOX resampling, down and back up, as area-weight matrices; JPEG: Pillow.
- fog: the reference's diamond-square plasma per image; MNIST-C crops 28 px out of a 256 map,
  CIFAR-10-C 32 out of 32, and other sides keep those ratios.

Three more CIFAR-10-C ladders are re-spaced so that every severity moves the image further from
the clean one (root-mean-square distance, measured on 30 natural 32-px patches of scikit-learn's
two sample photographs, downscaled 4×, seed 7; the tests check it). The paper's turn two knobs
against each other and are not monotone in that distance:
- glass blur: the paper's (σ, δ, passes) = (0.05,1,1) (0.25,1,1) (0.4,1,1) (0.25,1,2) (0.4,1,2)
  measure 0.069 0.069 0.060 0.083 0.072 (a wider σ smooths the shuffle away). Here σ = 0.4 and
  δ = 1 throughout and severity k shuffles k passes: 0.060 0.072 0.080 0.087 0.092.
- frost: the paper's (image, frost) weights (1,.2) (1,.3) (.9,.4) (.85,.4) (.75,.45) measure
  0.065 0.095 0.098 0.089 0.103 with this frost layer (the image dims while the frost stays).
  Here the image weights are the paper's and the frost weights 0.2 0.3 0.45 0.55 0.7:
  0.065 0.095 0.113 0.131 0.157.
- elastic transform: the paper's affine jitter shrinks (0.08 → 0.03 of the side) while the
  displacement field grows, and the distance falls: 0.077 0.072 0.066 0.063 0.055. Here the
  displacement fields are the paper's and the jitter grows (0.02 0.04 0.06 0.08 0.10 of the
  side): 0.030 0.051 0.066 0.078 0.088.

Everything draws from one numpy Generator per (seed, corruption), the same draws at every
severity, so a set is a pure function of the images and the seed. `corrupted_test_set` builds
the set for a dataset's test split (never training or validation images) with at most
`MAX_CORRUPTED_IMAGES` corrupted images in all (a fixed random subset of the test split when
the sets would exceed it: 2,000 of CIFAR-10's 10,000 × 75 sets; all of MNIST's 10,000 × 15),
stores it as uint8 (value × 255, as the released MNIST-C and CIFAR-10-C are) in an .npz keyed by
dataset, module source, library versions and the images' fingerprint, and loads it after.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import zipfile
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import scipy
from scipy import ndimage

SEVERITIES = (1, 2, 3, 4, 5)  # CIFAR-10-C's; MNIST-C has one (severity None)
CORRUPTION_SEED = 20190605  # fixed: every trial of a dataset sees the same corrupted images
# The most corrupted images one evaluation scores: 15 sets of 10,000 (MNIST) or 75 sets of 2,000
# (CIFAR-10). Keeps the evaluation a small share of a trial (the goal: ≤ 10 %).
MAX_CORRUPTED_IMAGES = 150_000
MNIST_SIDE, CIFAR_SIDE = 28, 32  # the sides the reference parameters are given in


class CorruptionError(ValueError):
    """A corruption asked for with a name, severity or images it cannot take."""


# ---------------------------------------------------------------------------------------------
# Building blocks. Images are float64 arrays (N, C, H, W) in [0, 1]; `s` is side / reference side.

def _gaussian(x: np.ndarray, sigma: float, mode: str = "nearest", truncate: float = 4.0) -> np.ndarray:
    """skimage.filters.gaussian over H and W (its default border: nearest)."""
    if sigma <= 0:
        return x
    return ndimage.gaussian_filter(x, sigma=(0, 0, sigma, sigma), mode=mode, truncate=truncate)


def _sample(x: np.ndarray, rows: np.ndarray, cols: np.ndarray, mode: str) -> np.ndarray:
    """Bilinear samples of every image at its own coordinates: rows, cols are (N, H, W)."""
    n, c, h, w = x.shape
    out = np.empty_like(x)
    chunk = max(1, 2_000_000 // (c * h * w))  # bounds the (3, chunk·C, H, W) coordinate array
    for start in range(0, n, chunk):
        part = x[start:start + chunk]
        m = len(part)
        planes = np.broadcast_to(np.arange(m * c, dtype=np.float64)[:, None, None], (m * c, h, w))
        coords = np.stack([planes,
                           np.repeat(rows[start:start + chunk], c, axis=0),
                           np.repeat(cols[start:start + chunk], c, axis=0)])
        out[start:start + m] = ndimage.map_coordinates(
            part.reshape(m * c, h, w), coords, order=1, mode=mode, cval=0.0).reshape(m, c, h, w)
    return out


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")


def _affine(x: np.ndarray, matrices: np.ndarray, shifts: np.ndarray, mode: str = "grid-constant") -> np.ndarray:
    """skimage.transform.warp with a per-image inverse map about the image centre: an output pixel
    p samples the input at centre + A·(p − centre) + shift, in (col, row) order as skimage's
    AffineTransform; outside the image is 0 (warp's default constant border)."""
    _, _, h, w = x.shape
    rows, cols = _grid(h, w)
    centre = np.array([(w - 1) / 2, (h - 1) / 2])
    offsets = np.stack([cols - centre[0], rows - centre[1]])  # (2, H, W), (x, y)
    source = np.einsum("nij,jhw->nihw", matrices, offsets) + (centre + shifts)[:, :, None, None]
    return _sample(x, source[:, 1], source[:, 0], mode)


def _random_signs(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.choice(np.array([-1.0, 1.0]), size=n)


def _separable(x: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """rows · image · colsᵀ for every image and channel: a separable resampling as two matmuls."""
    return rows @ x @ cols.T


def _zoom_matrix(size: int, factor: float) -> np.ndarray:
    """Linear interpolation that zooms a line by `factor` about its centre (clipped_zoom's intent)."""
    centre = (size - 1) / 2
    source = np.clip(centre + (np.arange(size) - centre) / factor, 0, size - 1)
    low = np.floor(source).astype(int)
    high = np.minimum(low + 1, size - 1)
    weight = source - low
    matrix = np.zeros((size, size))
    matrix[np.arange(size), low] += 1 - weight
    matrix[np.arange(size), high] += weight
    return matrix


def _zoom(x: np.ndarray, factor: float) -> np.ndarray:
    _, _, h, w = x.shape
    return _separable(x, _zoom_matrix(h, factor), _zoom_matrix(w, factor))


@lru_cache(maxsize=None)
def _box_resize_matrix(source: int, target: int) -> np.ndarray:
    """Pillow's BOX resampling along one axis (ImagingResample's coefficients): each output pixel
    averages the input pixels whose centres fall in its footprint (at least one)."""
    scale = source / target
    filterscale = max(scale, 1.0)
    support = 0.5 * filterscale
    matrix = np.zeros((target, source))
    for i in range(target):
        centre = (i + 0.5) * scale
        low, high = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), source)
        taps = np.arange(low, high)
        t = (taps - centre + 0.5) / filterscale
        weights = ((t >= -0.5) & (t < 0.5)).astype(np.float64)
        matrix[i, taps] = weights / weights.sum()
    return matrix


def _motion_blur(x: np.ndarray, radius: float, sigma: float, angles: np.ndarray) -> np.ndarray:
    """ImageMagick's MotionBlurImage: out(p) = Σ_i k_i · in(p + round(i·(cos a, sin a))), with
    k_i ∝ exp(−i²/2σ²) for i = 0..2⌈radius⌉, one-sided (a trail), borders replicated."""
    n, c, h, w = x.shape
    taps = np.arange(2 * math.ceil(radius) + 1)
    weights = np.exp(-taps**2 / (2 * sigma**2))
    weights /= weights.sum()
    radians = np.deg2rad(angles)
    out = np.zeros_like(x)
    image = np.arange(n)[:, None, None]
    row, col = np.arange(h)[None, :, None], np.arange(w)[None, None, :]
    for i, weight in zip(taps, weights):
        dx = np.ceil(i * np.cos(radians) - 0.5).astype(int)[:, None, None]  # ImageMagick's rounding
        dy = np.ceil(i * np.sin(radians) - 0.5).astype(int)[:, None, None]
        rows, cols = np.clip(row + dy, 0, h - 1), np.clip(col + dx, 0, w - 1)
        out += weight * x[image, :, rows, cols].transpose(0, 3, 1, 2)
    return out


def _plasma(rng: np.random.Generator, n: int, mapsize: int, decay: float) -> np.ndarray:
    """The reference's diamond-square heightmap (n maps, mapsize a power of two), each in [0, 1]."""
    maps = np.zeros((n, mapsize, mapsize))
    step, wibble = mapsize, 100.0

    def wibbled_mean(total):
        return total / 4 + wibble * rng.uniform(-wibble, wibble, total.shape)

    while step >= 2:
        half = step // 2
        corners = maps[:, 0:mapsize:step, 0:mapsize:step]
        squares = corners + np.roll(corners, -1, axis=1)
        squares = squares + np.roll(squares, -1, axis=2)
        maps[:, half:mapsize:step, half:mapsize:step] = wibbled_mean(squares)
        centres = maps[:, half:mapsize:step, half:mapsize:step]
        corners = maps[:, 0:mapsize:step, 0:mapsize:step]
        across = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=2)
        maps[:, 0:mapsize:step, half:mapsize:step] = wibbled_mean(across)
        down = centres + np.roll(centres, 1, axis=2) + corners + np.roll(corners, -1, axis=1)
        maps[:, half:mapsize:step, 0:mapsize:step] = wibbled_mean(down)
        step //= 2
        wibble /= decay
    maps -= maps.min(axis=(1, 2), keepdims=True)
    return maps / maps.max(axis=(1, 2), keepdims=True)


def _plasma_crops(rng, n: int, h: int, w: int, map_per_side: float, decay: float) -> np.ndarray:
    """Top-left (h, w) crops of plasma maps whose side is map_per_side × the image's (a power of
    two at least the image's side), in chunks so that 10,000 maps of 256² never sit in memory."""
    mapsize = max(2 ** math.ceil(math.log2(max(h, w))), 2 ** round(math.log2(max(h, w) * map_per_side)))
    chunk = max(1, 2**22 // mapsize**2)
    return np.concatenate([_plasma(rng, min(chunk, n - start), mapsize, decay)[:, :h, :w]
                           for start in range(0, n, chunk)])


def _lines(c0, r0, c1, r1, h: int, w: int, width: float) -> np.ndarray:
    """MNIST-C's line_from_points, one line per image: brightness log(1 − d/width) + 1 (clipped)
    at vertical distance d from the line through (c0, r0), (c1, r1), between columns ⌊c0⌋ and
    ⌈c1⌉; nothing where c0 == c1."""
    rows, cols = _grid(h, w)
    c0, r0, c1, r1 = (np.asarray(v, dtype=np.float64)[:, None, None] for v in (c0, r0, c1, r1))
    flat = c1 == c0
    slope = (r1 - r0) / np.where(flat, 1.0, c1 - c0)
    distance = np.clip(np.abs(rows - (slope * (cols - c0) + r0)), 0, width - 1e-10)
    line = np.clip(np.log1p(-distance / width) + 1, 0, 1)
    inside = (cols >= np.floor(c0)) & (cols < np.ceil(c1)) & ~flat
    return np.where(inside, line, 0.0)


def _segments(r0, c0, r1, c1, h: int, w: int, width: float) -> np.ndarray:
    """Anti-aliased segments, one per image: 1 − (Euclidean distance to the segment)/width."""
    rows, cols = _grid(h, w)
    r0, c0, r1, c1 = (np.asarray(v, dtype=np.float64)[:, None, None] for v in (r0, c0, r1, c1))
    dr, dc = r1 - r0, c1 - c0
    t = np.clip(((rows - r0) * dr + (cols - c0) * dc) / np.maximum(dr**2 + dc**2, 1e-12), 0, 1)
    distance = np.hypot(rows - (r0 + t * dr), cols - (c0 + t * dc))
    return np.clip(1 - distance / width, 0, 1)


def _canny(x: np.ndarray, sigma: float, low: float = 0.1, high: float = 0.2) -> np.ndarray:
    """Canny edges of grey images (N, 1, H, W) as 0/1 floats."""
    smoothed = _gaussian(x, sigma)[:, 0]
    gy, gx = ndimage.sobel(smoothed, axis=1), ndimage.sobel(smoothed, axis=2)
    magnitude = np.hypot(gx, gy)
    magnitude[:, [0, -1], :] = 0
    magnitude[:, :, [0, -1]] = 0
    # Non-maximum suppression: keep a pixel not smaller than both neighbours across the edge.
    direction = np.round(np.arctan2(gy, gx) / (np.pi / 4)).astype(int) % 4  # 0: −, 1: \, 2: |, 3: /
    padded = np.pad(magnitude, ((0, 0), (1, 1), (1, 1)))
    h, w = magnitude.shape[1:]
    neighbour = lambda dr, dc: padded[:, 1 + dr:1 + dr + h, 1 + dc:1 + dc + w]
    steps = {0: (0, 1), 1: (1, 1), 2: (1, 0), 3: (1, -1)}
    local_max = np.zeros_like(magnitude, dtype=bool)
    for code, (dr, dc) in steps.items():
        peak = (magnitude >= neighbour(dr, dc)) & (magnitude >= neighbour(-dr, -dc))
        local_max |= (direction == code) & peak
    weak = local_max & (magnitude >= low)
    strong = local_max & (magnitude >= high)
    # Hysteresis: keep the weak pixels 8-connected (within an image) to a strong one.
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True
    labels, _ = ndimage.label(weak, structure=structure)
    keep = np.zeros(labels.max() + 1, dtype=bool)
    keep[np.unique(labels[strong])] = True
    keep[0] = False
    return keep[labels][:, None].astype(np.float64)


def _grey(x: np.ndarray) -> np.ndarray:
    """OpenCV's RGB2GRAY (the reference's snow uses it); a grey image is itself."""
    if x.shape[1] == 1:
        return x
    return np.tensordot(np.array([0.299, 0.587, 0.114]), x, axes=([0], [1]))[:, None]


# ---------------------------------------------------------------------------------------------
# The corruptions: f(x, parameter, rng, s) → x'. Parameters are the reference code's.

def _gaussian_noise(x, sigma, rng, s):
    return x + rng.normal(scale=sigma, size=x.shape)


def _shot_noise(x, photons, rng, s):
    return rng.poisson(x * photons) / photons


def _impulse_noise(x, amount, rng, s):
    """skimage's random_noise(mode='s&p'): each value, with probability `amount`, set to 0 or 1."""
    hit = rng.random(x.shape) < amount
    salt = rng.random(x.shape) < 0.5
    return np.where(hit, salt.astype(np.float64), x)


def _glass_blur(x, parameter, rng, s):
    sigma, delta, passes, coin = parameter  # coin: MNIST-C swaps each position with probability 1/2
    sigma, delta = sigma * s, max(1, round(delta * s))
    n, _, h, w = x.shape
    x = _gaussian(x, sigma).copy()
    images = np.arange(n)
    positions = [(row, col) for row in range(h - delta, delta, -1) for col in range(w - delta, delta, -1)]
    for _ in range(passes):
        # One draw per pass (not per position): the swaps themselves must stay sequential.
        offsets = rng.integers(-delta, delta, size=(len(positions), 2, n))
        swaps = rng.random((len(positions), n)) < 0.5 if coin else np.ones((len(positions), n), dtype=bool)
        for (row, col), (dy, dx), swap in zip(positions, offsets, swaps):
            chosen, other_row, other_col = images[swap], row + dy[swap], col + dx[swap]
            here = x[chosen, :, row, col]
            x[chosen, :, row, col] = x[chosen, :, other_row, other_col]
            x[chosen, :, other_row, other_col] = here
    return _gaussian(x, sigma)


def _defocus_blur(x, parameter, rng, s):
    """The reference's disk(): an aliased disk of the radius, smoothed by a 3-tap Gaussian
    (cv2.GaussianBlur, ksize 3), correlated with reflect-101 borders (cv2.filter2D's)."""
    radius, alias = parameter[0] * s, parameter[1] * s
    span = max(8, math.ceil(radius))
    grid = np.arange(-span, span + 1)
    disk = ((grid[:, None] ** 2 + grid[None, :] ** 2) <= radius**2).astype(np.float64)
    disk /= disk.sum()
    taps = np.exp(-np.arange(-1, 2) ** 2 / (2 * alias**2))
    kernel = ndimage.correlate(disk, np.outer(taps, taps) / taps.sum() ** 2, mode="mirror")
    used = np.flatnonzero(kernel.sum(axis=1) > 1e-12)
    kernel = kernel[used[0]:used[-1] + 1, used[0]:used[-1] + 1]
    return ndimage.correlate(x, kernel[None, None], mode="mirror")


def _motion(x, parameter, rng, s):
    radius, sigma = parameter
    return _motion_blur(x, radius * s, sigma * s, rng.uniform(-45, 45, size=len(x)))


def _zoom_blur(x, factors, rng, s):
    return (x + sum(_zoom(x, factor) for factor in factors)) / (len(factors) + 1)


def _snow(x, parameter, rng, s):
    loc, scale, zoom, threshold, radius, sigma, keep = parameter
    n, _, h, w = x.shape
    flakes = _zoom(rng.normal(loc=loc, scale=scale, size=(n, 1, h, w)), zoom)
    flakes[flakes < threshold] = 0
    flakes = _motion_blur(np.clip(flakes, 0, 1), radius * s, sigma * s, rng.uniform(-135, -45, size=n))
    x = keep * x + (1 - keep) * np.maximum(x, _grey(x) * 1.5 + 0.5)
    return x + flakes + flakes[:, :, ::-1, ::-1]


FROST_TINT = np.array([0.85, 0.93, 1.0])  # frost photographs are blue-white (R, G, B)


def _frost(x, parameter, rng, s):
    keep, frost_weight = parameter
    n, c, h, w = x.shape
    haze = _plasma_crops(rng, n, h, w, 1.0, 2.0)
    needles = np.zeros((n, h, w))
    for _ in range(max(4, h * w // 32)):  # 32 needles on 32×32
        row, col = rng.uniform(0, h, n), rng.uniform(0, w, n)
        angle = rng.uniform(0, np.pi, n)
        half = rng.uniform(0.05, 0.18, n) * max(h, w)
        dr, dc = half * np.sin(angle), half * np.cos(angle)
        brightness = rng.uniform(0.5, 1.0, n)[:, None, None]
        needle = _segments(row - dr, col - dc, row + dr, col + dc, h, w, max(0.75 * s, 0.5))
        needles = np.maximum(needles, brightness * needle)
    layer = (0.6 * haze + 0.4 * needles)[:, None]
    tint = FROST_TINT[:, None, None] if c == 3 else np.ones((1, 1, 1))
    return keep * x + frost_weight * layer * tint


def _fog(x, parameter, rng, s, map_per_side):
    thickness, decay = parameter
    n, _, h, w = x.shape
    peak = x.max(axis=(1, 2, 3), keepdims=True)
    fogged = x + thickness * _plasma_crops(rng, n, h, w, map_per_side, decay)[:, None]
    return fogged * peak / (peak + thickness)


def _fog_mnist(x, parameter, rng, s):
    return _fog(x, parameter, rng, s, 256 / MNIST_SIDE)


def _fog_cifar(x, parameter, rng, s):
    return _fog(x, parameter, rng, s, 1.0)


def _brightness(x, amount, rng, s):
    """V += amount in HSV, hue and saturation kept: RGB scales by V'/V (a grey image: x + amount)."""
    value = x.max(axis=1, keepdims=True)
    brighter = np.minimum(value + amount, 1.0)
    return np.where(value > 0, x * brighter / np.where(value > 0, value, 1.0), brighter)


def _contrast(x, factor, rng, s):
    means = x.mean(axis=(2, 3), keepdims=True)
    return (x - means) * factor + means


def _elastic(x, parameter, rng, s):
    """A random affine of three points around the centre (cv2.warpAffine), then a smoothed random
    displacement field; both as one resampling, reflect-101 borders."""
    n, _, h, w = x.shape
    alpha, sigma, jitter = (value * h for value in parameter)  # the reference's IMSIZE multiples
    centre, square = np.array([w // 2, h // 2], dtype=np.float64), min(h, w) // 3
    points = np.array([centre + square, [centre[0] + square, centre[1] - square], centre - square])
    moved = points + rng.uniform(-jitter, jitter, size=(n, 3, 2))
    # The inverse map takes destination points back to source points: solve it on the 3 pairs.
    design = np.concatenate([moved, np.ones((n, 3, 1))], axis=2)
    inverse = np.linalg.solve(design, np.broadcast_to(points, (n, 3, 2)))  # (n, 3, 2): [A; b]
    field = lambda: np.stack([ndimage.gaussian_filter(rng.uniform(-1, 1, (h, w)), sigma, mode="mirror",
                                                      truncate=3) * alpha for _ in range(n)])
    dx, dy = field(), field()
    rows, cols = _grid(h, w)
    px, py = cols + dx, rows + dy  # where the displaced pixel reads from the affine image
    source_x = inverse[:, 0, 0, None, None] * px + inverse[:, 1, 0, None, None] * py + inverse[:, 2, 0, None, None]
    source_y = inverse[:, 0, 1, None, None] * px + inverse[:, 1, 1, None, None] * py + inverse[:, 2, 1, None, None]
    return _sample(x, source_y, source_x, "mirror")


def _pixelate(x, factor, rng, s):
    _, _, h, w = x.shape
    small_h, small_w = int(h * factor), int(w * factor)
    down_h, down_w = _box_resize_matrix(h, small_h), _box_resize_matrix(w, small_w)
    up_h, up_w = _box_resize_matrix(small_h, h), _box_resize_matrix(small_w, w)
    return _separable(_separable(x, down_h, down_w), up_h, up_w)


def _jpeg(x, quality, rng, s):
    from PIL import Image

    pixels = np.round(np.clip(x, 0, 1) * 255).astype(np.uint8).transpose(0, 2, 3, 1)
    out = np.empty_like(pixels)
    for i, image in enumerate(pixels):
        buffer = io.BytesIO()
        Image.fromarray(image if image.shape[2] == 3 else image[:, :, 0]).save(buffer, "JPEG", quality=quality)
        decoded = np.asarray(Image.open(io.BytesIO(buffer.getvalue())))
        out[i] = decoded.reshape(out[i].shape)
    return out.transpose(0, 3, 1, 2) / 255.0


def _about_centre(x, matrices):
    return _affine(x, matrices, np.zeros((len(x), 2)))


def _shear(x, amount, rng, s):
    """skimage AffineTransform(shear=±amount): [[1, −sin], [0, cos]], centre fixed."""
    shear = amount * _random_signs(rng, len(x))
    zeros, ones = np.zeros_like(shear), np.ones_like(shear)
    return _about_centre(x, np.stack([np.stack([ones, -np.sin(shear)], 1), np.stack([zeros, np.cos(shear)], 1)], 1))


def _rotate(x, radians, rng, s):
    angle = radians * _random_signs(rng, len(x))
    cos, sin = np.cos(angle), np.sin(angle)
    return _about_centre(x, np.stack([np.stack([cos, -sin], 1), np.stack([sin, cos], 1)], 1))


def _scale(x, factor, rng, s):
    """The inverse map scales by 1/factor: the content shrinks to `factor` of its size."""
    return _about_centre(x, np.broadcast_to(np.eye(2) / factor, (len(x), 2, 2)))


def _translate(x, pixels, rng, s):
    n = len(x)
    shift = max(1, round(pixels * s)) * np.stack([_random_signs(rng, n), _random_signs(rng, n)], 1)
    return _affine(x, np.broadcast_to(np.eye(2), (n, 2, 2)), shift)


def _stripe(x, parameter, rng, s):
    """Invert the left and right quarters (columns 0–6 and 21–27 on MNIST)."""
    x = x.copy()
    quarter = max(1, x.shape[3] // 4)
    x[..., :quarter] = 1 - x[..., :quarter]
    x[..., -quarter:] = 1 - x[..., -quarter:]
    return x


def _spatter(x, parameter, rng, s):
    """MNIST-C's mud branch: thresholded smoothed noise as blobs of grey 63/255."""
    loc, scale, sigma, threshold, mask_sigma = parameter
    liquid = _gaussian(rng.normal(loc=loc, scale=scale, size=x.shape), sigma * s)
    mask = _gaussian((liquid > threshold).astype(np.float64), mask_sigma * s)
    mask[mask < 0.8] = 0
    return x * (1 - mask) + 63 / 255 * mask


def _line_width(s):
    return max(2.3 * s, 1.0)  # the reference's 2.3 px fall-off; at least a pixel's stroke


def _dotted_line(x, parameter, rng, s):
    n, _, h, w = x.shape
    r0, r1 = rng.integers(0, h - 1, size=(2, n))
    line = _lines(np.zeros(n), r0, np.full(n, w - 1), r1, h, w, _line_width(s))
    dash = max(1, round(2 * s))
    off = (np.arange(w) // dash) % 2 == 0  # dashes of 2 px, the first one off
    line[:, :, off] = 0
    return x + line[:, None]


def _zigzag(x, parameter, rng, s):
    """A zigzag of half-period a and amplitude b (2 px each) along a random line from column 2 to
    25, its slope at most 5 px over that span: vertices at 0, a, 3a, 5a, … along the line."""
    n, _, h, w = x.shape
    a = b = 2 * s
    c0, c1 = 2 * s, 25 * s
    rise = max(1, round(5 * s))
    r0 = rng.integers(0, h - 1, size=n).astype(np.float64)
    r1 = r0 + rng.integers(-rise, rise, size=n)
    theta = np.arctan((r1 - r0) / (c1 - c0))
    length = (c1 - c0) / np.cos(theta)
    count = int(math.ceil(float(length.max()) / (2 * a))) + 2
    along = np.concatenate([[0.0], (2 * np.arange(count) + 1) * a])  # 0, a, 3a, 5a, …
    across = np.concatenate([[0.0], b * (-1.0) ** np.arange(count)])
    # Vertices past the end of the line collapse onto its end: zero-length segments draw nothing.
    clipped = np.minimum(along[None, :], length[:, None])
    offset = np.interp(clipped, along, across)
    cos, sin = np.cos(theta)[:, None], np.sin(theta)[:, None]
    cols, rows = c0 + clipped * cos - offset * sin, r0[:, None] + clipped * sin + offset * cos
    drawn = np.zeros((n, h, w))
    for k in range(1, len(along)):
        drawn += _lines(cols[:, k - 1], rows[:, k - 1], cols[:, k], rows[:, k], h, w, _line_width(s))
    return x + drawn[:, None]


def _canny_edges(x, parameter, rng, s):
    return _canny(x, 1.0 * s)


@dataclass(frozen=True)
class Corruption:
    function: object
    parameters: tuple  # one per severity (CIFAR-10-C) or a single one (MNIST-C)


# MNIST-C: the parameter each reference function uses at its default severity (the released set).
MNIST_C: dict[str, Corruption] = {
    "shot_noise": Corruption(_shot_noise, (3,)),
    "impulse_noise": Corruption(_impulse_noise, (0.17,)),
    "glass_blur": Corruption(_glass_blur, ((0.7, 1, 2, True),)),
    "motion_blur": Corruption(_motion, ((10, 3),)),
    "shear": Corruption(_shear, (0.4,)),
    "scale": Corruption(_scale, (0.7,)),
    "rotate": Corruption(_rotate, (0.4,)),
    "brightness": Corruption(_brightness, (0.5,)),
    "translate": Corruption(_translate, (3,)),
    "stripe": Corruption(_stripe, (None,)),
    "fog": Corruption(_fog_mnist, ((3.0, 1.4),)),
    "spatter": Corruption(_spatter, ((0.65, 0.3, 1, 0.65, 1.5),)),
    "dotted_line": Corruption(_dotted_line, (None,)),
    "zigzag": Corruption(_zigzag, (None,)),
    "canny_edges": Corruption(_canny_edges, (None,)),
}

CIFAR_C: dict[str, Corruption] = {
    "gaussian_noise": Corruption(_gaussian_noise, (0.04, 0.06, 0.08, 0.09, 0.10)),
    "shot_noise": Corruption(_shot_noise, (500, 250, 100, 75, 50)),
    "impulse_noise": Corruption(_impulse_noise, (0.01, 0.02, 0.03, 0.05, 0.07)),
    "defocus_blur": Corruption(_defocus_blur, ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1))),
    # Re-spaced (module docstring): the paper's (σ, δ, passes) ladder is not monotone in distance.
    "glass_blur": Corruption(_glass_blur, tuple((0.4, 1, passes, False) for passes in (1, 2, 3, 4, 5))),
    "motion_blur": Corruption(_motion, ((6, 1), (6, 1.5), (6, 2), (8, 2.25), (9, 2.5))),  # σ 2.25 at 4: docstring
    "zoom_blur": Corruption(_zoom_blur, tuple(tuple(np.arange(1, top, 0.01)) for top in (1.06, 1.11, 1.16, 1.21, 1.26))),
    "snow": Corruption(_snow, ((0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
                               (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
                               (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8))),
    "frost": Corruption(_frost, ((1, 0.2), (1, 0.3), (0.9, 0.45), (0.85, 0.55), (0.75, 0.7))),  # re-spaced
    "fog": Corruption(_fog_cifar, ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75))),
    "brightness": Corruption(_brightness, (0.05, 0.1, 0.15, 0.2, 0.3)),
    "contrast": Corruption(_contrast, (0.75, 0.5, 0.4, 0.3, 0.15)),
    "elastic_transform": Corruption(_elastic, ((0, 0, 0.02), (0.05, 0.2, 0.04), (0.08, 0.06, 0.06),  # re-spaced
                                               (0.1, 0.04, 0.08), (0.1, 0.03, 0.1))),
    "pixelate": Corruption(_pixelate, (0.95, 0.9, 0.85, 0.75, 0.65)),
    "jpeg_compression": Corruption(_jpeg, (80, 65, 58, 50, 40)),
}

SETS = {1: ("MNIST-C", MNIST_C, MNIST_SIDE), 3: ("CIFAR-10-C", CIFAR_C, CIFAR_SIDE)}


# ---------------------------------------------------------------------------------------------
# The public interface.

@dataclass(frozen=True)
class Variant:
    """One corrupted copy of the test set: a corruption at a severity (None: MNIST-C's single one)."""

    corruption: str
    severity: int | None

    @property
    def key(self) -> str:
        """Its name in metric names and in the cache: `fog` or `fog_s3`."""
        return self.corruption if self.severity is None else f"{self.corruption}_s{self.severity}"


def corruption_set(channels: int) -> tuple[str, dict[str, Corruption], int]:
    """(name, corruptions, reference side) of the set for images with this many channels."""
    if channels not in SETS:
        raise CorruptionError(f"images have {channels} channels; corruptions exist for 1 channel (MNIST-C) "
                              "or 3 channels (CIFAR-10-C)")
    return SETS[channels]


def corruption_names(channels: int) -> tuple[str, ...]:
    return tuple(corruption_set(channels)[1])


def severities(channels: int) -> tuple[int | None, ...]:
    """(None,) for MNIST-C's one severity, (1, …, 5) for CIFAR-10-C."""
    return (None,) if channels == 1 else SEVERITIES


def variants(channels: int) -> list[Variant]:
    """Every corrupted copy an evaluation scores, in the set's order (corruption, then severity)."""
    return [Variant(name, severity) for name in corruption_names(channels) for severity in severities(channels)]


def _check_images(images: np.ndarray) -> None:
    if not isinstance(images, np.ndarray) or images.ndim != 4:
        raise CorruptionError(f"images: expected a numpy array (N, C, H, W), got "
                              f"{getattr(images, 'shape', type(images).__name__)}")
    if not np.issubdtype(images.dtype, np.floating):
        raise CorruptionError(f"images: expected floats in [0, 1] (uint8 × the dataset's scale), got dtype {images.dtype}")
    if images.size and (images.min() < 0 or images.max() > 1):
        raise CorruptionError(f"images: values must lie in [0, 1] (uint8 × the dataset's scale); "
                              f"got [{images.min():.3g}, {images.max():.3g}]")
    corruption_set(images.shape[1])


def _check_variant(channels: int, corruption: str, severity) -> Corruption:
    set_name, table, _ = corruption_set(channels)
    if corruption not in table:
        raise CorruptionError(f"corruption {corruption!r} is not in {set_name} ({channels} channel"
                              f"{'s' if channels > 1 else ''}); choose one of {', '.join(table)}")
    allowed = severities(channels)
    if severity not in allowed:
        what = "None (MNIST-C has one severity per corruption)" if allowed == (None,) else "one of 1, 2, 3, 4, 5"
        raise CorruptionError(f"severity {severity!r} for {corruption} in {set_name}: must be {what}")
    return table[corruption]


def corrupt(images: np.ndarray, corruption: str, severity: int | None = None, seed: int = 0) -> np.ndarray:
    """`images` (N, C, H, W floats in [0, 1]) with one corruption: same shape, dtype and range.

    The set follows the channels (1: MNIST-C, severity None; 3: CIFAR-10-C, severity 1..5). The
    random draws come from one Generator seeded by (seed, corruption), the same at every severity
    (an image gets the same angle or noise pattern, more strongly), and are made for the whole
    batch, so the result is a function of the batch and the seed (not of each image alone:
    corrupting a subset draws differently)."""
    _check_images(images)
    spec = _check_variant(images.shape[1], corruption, severity)
    _, _, side = corruption_set(images.shape[1])
    # Common random numbers across severities: the same draws, stronger parameters.
    rng = np.random.default_rng([seed, zlib.crc32(corruption.encode())])
    parameter = spec.parameters[0 if severity is None else severity - 1]
    scale = min(images.shape[2:]) / side
    out = spec.function(images.astype(np.float64), parameter, rng, scale)
    return np.clip(out, 0, 1).astype(images.dtype)


def to_uint8(images: np.ndarray) -> np.ndarray:
    """The stored form of a corrupted set (value × 255, rounded), as MNIST-C and CIFAR-10-C ship."""
    return np.round(images * 255).astype(np.uint8)


def dataset_seed(dataset: str) -> int:
    return (CORRUPTION_SEED * 2**32 + zlib.crc32(dataset.encode())) % 2**63


@dataclass
class CorruptedTestSet:
    """The corrupted copies of (a fixed subset of) one dataset's test split.

    `index` are the positions of the images in the test split, `labels` their labels; `images`
    maps a variant's key to uint8 images (N, C, H, W) holding value × 255; `source` is the
    fingerprint of the clean images and labels it was built from (a trainer checks it)."""

    dataset: str
    version: str
    source: str
    index: np.ndarray
    labels: np.ndarray
    images: dict[str, np.ndarray]

    @property
    def variants(self) -> list[Variant]:
        return variants(next(iter(self.images.values())).shape[1])

    def describe(self) -> str:
        channels = next(iter(self.images.values())).shape[1]
        set_name, table, _ = corruption_set(channels)
        return (f"{self.dataset}: {set_name}-style, {len(table)} corruptions × {len(severities(channels))} "
                f"severit{'ies' if channels == 3 else 'y'} × {len(self.index)} test images")

    def floats(self, key: str, dtype=np.float32) -> np.ndarray:
        return self.images[key].astype(dtype) / 255


@lru_cache(maxsize=None)
def module_version() -> str:
    """This file's source and the libraries that shape its numbers: a new one means a new cache."""
    import PIL

    digest = hashlib.sha256(open(__file__, "rb").read())
    digest.update(f"numpy {np.__version__} scipy {scipy.__version__} pillow {PIL.__version__}".encode())
    return digest.hexdigest()[:12]


def fingerprint(images: np.ndarray, labels: np.ndarray) -> str:
    digest = hashlib.sha256(np.ascontiguousarray(images).tobytes())
    digest.update(str((images.shape, str(images.dtype))).encode())
    digest.update(np.ascontiguousarray(labels, dtype=np.int64).tobytes())
    return digest.hexdigest()[:12]


def build(dataset: str, images: np.ndarray, labels: np.ndarray,
          max_images: int = MAX_CORRUPTED_IMAGES) -> CorruptedTestSet:
    """Every variant of the set for these test images, without touching the cache; at most
    `max_images` corrupted images in all (a fixed subset of the test images when more)."""
    _check_images(images)
    if len(labels) != len(images):
        raise CorruptionError(f"labels: {len(labels)} for {len(images)} images")
    seed = dataset_seed(dataset)
    chosen = variants(images.shape[1])
    per_variant = max_images // len(chosen)
    index = np.arange(len(images))
    if len(images) > per_variant:  # a fixed subset, the same for every variant and every trial
        index = np.sort(np.random.default_rng([seed, 0]).choice(len(images), per_variant, replace=False))
    subset = images[index]
    corrupted = {v.key: to_uint8(corrupt(subset, v.corruption, v.severity, seed)) for v in chosen}
    return CorruptedTestSet(dataset, module_version(), fingerprint(images, labels), index,
                            np.asarray(labels)[index].astype(np.int64), corrupted)


def default_cache_dir() -> str:
    """$CURRICULUM_CACHE, else $XDG_CACHE_HOME/curriculum-study, else ~/.cache/curriculum-study:
    an absolute path, since Ray trials change their working directory."""
    root = os.environ.get("CURRICULUM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "curriculum-study")
    return os.path.abspath(os.path.join(root, "corruptions"))


def cache_path(dataset: str, images: np.ndarray, labels: np.ndarray, cache_dir: str | None = None) -> str:
    return os.path.join(cache_dir or default_cache_dir(),
                        f"{dataset}-{module_version()}-{fingerprint(images, labels)}.npz")


def _load(path: str, dataset: str, expected: list[Variant]) -> CorruptedTestSet | None:
    """The stored set, or None when the file is missing, unreadable or incomplete (then rebuilt)."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            images = {v.key: stored[f"images/{v.key}"] for v in expected}
            return CorruptedTestSet(dataset, str(stored["version"]), str(stored["source"]), stored["index"],
                                    stored["labels"], images)
    except (OSError, KeyError, ValueError, EOFError, zlib.error, zipfile.BadZipFile):
        return None


def for_dataset(arrays, cache_dir: str | None = None) -> CorruptedTestSet:
    """The corrupted test set of a dataset's arrays (trainer.data.DatasetArrays, read by attribute:
    name, test_x, test_y, scale): its test split only, as the trainer scales it."""
    return corrupted_test_set(arrays.name, arrays.test_x.astype(np.float32) * arrays.scale, arrays.test_y, cache_dir)


def corrupted_test_set(dataset: str, images: np.ndarray, labels: np.ndarray,
                       cache_dir: str | None = None) -> CorruptedTestSet:
    """The corrupted test set of `dataset`, built once and loaded from the cache after.

    Pass the test split only (`arrays.test_x * arrays.scale`, `arrays.test_y`): the file is keyed
    by the images' fingerprint, so other images get their own file, never this one's."""
    _check_images(images)
    path = cache_path(dataset, images, labels, cache_dir)
    expected = variants(images.shape[1])
    if (stored := _load(path, dataset, expected)) is not None:
        return stored
    built = build(dataset, images, labels)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    partial = f"{path}.{os.getpid()}.partial"
    with open(partial, "wb") as handle:  # a file object: savez would append .npz to a name
        np.savez_compressed(handle, version=np.array(built.version), source=np.array(built.source),
                            index=built.index, labels=built.labels,
                            **{f"images/{key}": value for key, value in built.images.items()})
    os.replace(partial, path)  # atomic: concurrent trials never read a half-written file
    return built
