"""Blur kernels: exact properties of every family at several levels."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import trainer.blur as blurring
from trainer.blur import KERNELS, blur, blur_in_chunks, box_variance, kernel_1d, max_level

LEVELS = (1, 2, 3, 4, 5)


def _image(shape=(2, 3, 16, 12), seed=0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", KERNELS)
def test_level_1_returns_the_input_exactly(kind):
    x = _image()
    out = blur(x, kind, 1)
    assert out.shape == x.shape
    assert torch.equal(out, x)


@pytest.mark.parametrize("kind", KERNELS)
@pytest.mark.parametrize("level", LEVELS[1:])
def test_output_shape_equals_input_shape_and_changes_the_image(kind, level):
    x = _image(shape=(2, 3, 16, 11))  # odd width: sizes need not divide by the level
    out = blur(x, kind, level)
    assert out.shape == x.shape
    assert out.dtype == x.dtype
    assert not torch.allclose(out, x)  # it did blur


@pytest.mark.parametrize("kind", ("box", "gaussian"))
@pytest.mark.parametrize("level", range(1, 9))
def test_1d_taps_sum_to_one(kind, level):
    taps = kernel_1d(kind, level)
    assert taps.dtype == np.float64
    assert np.all(taps >= 0)
    assert taps.sum() == pytest.approx(1.0, abs=1e-12)


def test_1d_taps_of_unknown_family_raise():
    with pytest.raises(ValueError, match="downsample"):
        kernel_1d("downsample", 2)


@pytest.mark.parametrize("kind", KERNELS)
@pytest.mark.parametrize("level", range(2, 7))
@pytest.mark.parametrize("value", (1.0, 0.3, -2.7))
def test_constant_image_stays_constant_including_borders(kind, level, value):
    x = torch.full((1, 2, 13, 12), value)
    out = blur(x, kind, level)
    # Every kernel sums to 1 and borders are replicated, so a constant stays that constant
    # everywhere, up to float32 rounding (a few ulps); zero padding would lose up to half of it
    # at the borders, which this bound rejects by orders of magnitude.
    tolerance = 8 * np.finfo(np.float32).eps * abs(value)
    assert (out - value).abs().max().item() <= tolerance
    border = torch.cat([out[..., 0, :], out[..., -1, :], out[..., :, 0], out[..., :, -1]], dim=-1)
    assert (border - value).abs().max().item() <= tolerance


@pytest.mark.parametrize("level", range(2, 9))
def test_gaussian_variance_matches_box_variance(level):
    taps = kernel_1d("gaussian", level)
    radius = (len(taps) - 1) // 2
    k = np.arange(-radius, radius + 1)
    assert (k * taps).sum() == pytest.approx(0.0, abs=1e-12)  # centred
    assert abs((k**2 * taps).sum() - (level**2 - 1) / 12) < 1e-6
    assert box_variance(level) == (level**2 - 1) / 12


@pytest.mark.parametrize("level", range(2, 9))
def test_box_taps_have_the_box_variance(level):
    taps = kernel_1d("box", level)
    k = np.arange(level)
    mean = (k * taps).sum()
    assert ((k - mean) ** 2 * taps).sum() == pytest.approx((level**2 - 1) / 12, abs=1e-12)


@pytest.mark.parametrize("level", (2, 3, 4, 5))
def test_box_level_n_is_the_n_by_n_mean_at_an_interior_pixel(level):
    x = _image(shape=(1, 1, 16, 16), seed=level).double()
    out = blur(x, "box", level)
    # J_n/n²; for even n the extra tap lies right/below the pixel (the documented half-pixel shift).
    left = (level - 1) // 2
    for i, j in ((7, 8), (8, 7), (6, 6)):
        window = x[0, 0, i - left : i - left + level, j - left : j - left + level]
        assert window.shape == (level, level)
        expected = (window * torch.full((level, level), 1.0 / level**2, dtype=x.dtype)).sum()
        assert out[0, 0, i, j].item() == pytest.approx(expected.item(), abs=1e-12)


@pytest.mark.parametrize("kind", KERNELS)
@pytest.mark.parametrize("level", (2, 3, 4))
def test_mean_of_a_random_image_is_approximately_preserved(kind, level):
    x = _image(shape=(4, 3, 32, 32), seed=1)
    out = blur(x, kind, level)
    assert out.mean().item() == pytest.approx(x.mean().item(), abs=5e-3)
    per_channel = out.mean(dim=(0, 2, 3)) - x.mean(dim=(0, 2, 3))
    assert per_channel.abs().max().item() < 1e-2


@pytest.mark.parametrize("kind", KERNELS)
def test_level_above_max_level_raises_naming_the_range(kind):
    x = _image(shape=(1, 1, 16, 12))
    assert max_level(16, 12) == 6
    blur(x, kind, 6)  # the largest allowed level works
    with pytest.raises(ValueError, match=r"1\.\.6"):
        blur(x, kind, 7)
    with pytest.raises(ValueError, match=r"1\.\.6"):
        blur(x, kind, 0)


def test_max_level_is_half_the_smaller_side():
    assert max_level(8, 8) == 4
    assert max_level(28, 28) == 14
    assert max_level(32, 20) == 10
    assert max_level(3, 3) == 1


def test_unknown_kernel_raises():
    with pytest.raises(ValueError, match="nope"):
        blur(_image(), "nope", 2)
    with pytest.raises(ValueError, match="nope"):
        blur(_image(), "nope", 1)  # refused even where level 1 would be a no-op


@pytest.mark.parametrize("kind", KERNELS)
@pytest.mark.parametrize("level", (2, 3))
def test_channels_last_input_gives_the_same_values(kind, level):
    x = _image(shape=(2, 3, 16, 16))
    x_last = x.contiguous(memory_format=torch.channels_last)
    out = blur(x_last, kind, level)
    assert out.shape == x.shape
    torch.testing.assert_close(out, blur(x, kind, level), rtol=1e-6, atol=1e-6)
    assert out.is_contiguous(memory_format=torch.channels_last)  # every family keeps the format


@pytest.mark.parametrize("kind", KERNELS)
@pytest.mark.parametrize("level", (2, 4))
def test_batched_blur_is_depthwise(kind, level):
    x = _image(shape=(3, 3, 16, 16))
    x[:, 1] = 0.0
    out = blur(x, kind, level)
    assert torch.equal(out[:, 1], torch.zeros_like(out[:, 1]))  # channels don't mix
    for channel in (0, 2):  # and each channel is blurred on its own
        alone = blur(x[:, channel : channel + 1].contiguous(), kind, level)
        torch.testing.assert_close(out[:, channel : channel + 1], alone, rtol=1e-6, atol=1e-6)
    for index in range(3):  # nor do images of the batch
        single = blur(x[index : index + 1], kind, level)
        torch.testing.assert_close(out[index : index + 1], single, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", KERNELS)
def test_blur_in_chunks_equals_one_blur(kind):
    x = _image(shape=(10, 1, 8, 8))
    torch.testing.assert_close(blur_in_chunks(x, kind, 3, chunk=3), blur(x, kind, 3))
    assert blur_in_chunks(x, kind, 1) is x


# --- downsample: variance-matched to the box, measured on impulses through blur() itself -------

STUDY_SIZES = (8, 28, 32)  # digits, MNIST-family, CIFAR-10


def _measured_impulse_variance(kind: str, level: int, size: int) -> float:
    """Per-axis variance of blur()'s response to an impulse, averaged over the impulse's positions.

    Impulse j sits in row j of image j (float64, size×size); the response is read down column 0.
    Each response is normalised to sum 1 before its variance is taken.
    """
    images = torch.zeros(size, 1, size, size, dtype=torch.float64)
    images[torch.arange(size), 0, torch.arange(size), :] = 1.0  # a horizontal line: 1-D impulse along H
    responses = blur(images, kind, level)[:, 0, :, 0].numpy()  # (impulse position, output row)
    positions = np.arange(size)
    variances = []
    for response in responses:
        weights = response / response.sum()
        mean = (weights * positions).sum()
        variances.append((weights * (positions - mean) ** 2).sum())
    return float(np.mean(variances))


@pytest.mark.parametrize("size", STUDY_SIZES)
def test_downsample_impulse_variance_matches_box_level_within_10_percent(size):
    for level in range(2, max_level(size, size) + 1):
        box = _measured_impulse_variance("box", level, size)
        down = _measured_impulse_variance("downsample", level, size)
        assert abs(down / box - 1) <= 0.10, (size, level, down, box)
        # The achieved match is much tighter than the 10 % contract: exact except where the
        # variance jumps as the grid drops to 3 cells (the top level on 28 and 32 pixels).
        slack = {(28, 14): 0.04, (32, 16): 0.03}.get((size, level), 1e-6)
        assert abs(down / box - 1) <= slack, (size, level, down, box)


def test_downsample_is_matched_to_the_box_as_measured_not_to_the_nominal_variance():
    # The documented exception: border replication shortens every response near the edges, so on
    # a finite image even the box measures less than (n²−1)/12 — 0.79x at the top level on 28 px,
    # 0.77x on 8 px — and the downsample, matched to the box, measures the same shortfall.
    # In the interior the box's response is the full n-tap mean: exactly (n²−1)/12.
    for size, level, ratio in ((8, 2, 0.861), (8, 4, 0.769), (28, 2, 0.960), (28, 14, 0.786),
                               (32, 16, 0.787)):
        box = _measured_impulse_variance("box", level, size)
        assert box / box_variance(level) == pytest.approx(ratio, abs=1e-3)
        down = _measured_impulse_variance("downsample", level, size)
        assert down / box_variance(level) == pytest.approx(ratio, rel=0.04)
    operator = blurring.box_operator(28, 5)
    interior = operator[:, 10:18]  # impulses 10..17: their responses stay away from the borders
    k = np.arange(28)
    for column in interior.T:
        mean = (column * k).sum() / column.sum()
        assert ((k - mean) ** 2 * column).sum() / column.sum() == pytest.approx(box_variance(5), abs=1e-12)


def test_impulse_variance_helper_agrees_with_blur():
    for size, level in ((8, 3), (28, 7), (32, 12)):
        assert blurring.impulse_variance(blurring.downsample_operator(level, size)) == pytest.approx(
            _measured_impulse_variance("downsample", level, size), rel=1e-9)
        assert blurring.downsample_target(level, size) == pytest.approx(
            _measured_impulse_variance("box", level, size), rel=1e-9)


@pytest.mark.parametrize("size", STUDY_SIZES)
def test_downsample_factor_grows_with_level_and_is_a_real_resize(size):
    factors = [blurring.downsample_factor(level, size) for level in range(2, max_level(size, size) + 1)]
    assert all(1.0 < f < size for f in factors)
    assert factors == sorted(factors)
    assert blurring.downsample_factor(2, 28) == pytest.approx(1.0113, abs=1e-3)  # barely a resize
    assert blurring.downsample_factor(14, 28) == pytest.approx(28 / 3, abs=1e-3)  # three cells


def test_resize_operator_is_area_average_then_linear_interpolation():
    # Factor 2 on 8 pixels: cells {0,1}, {2,3}, …, centroids at 1, 3, 5, 7 (in pixel-edge units);
    # pixel centres 0.5 and 7.5 lie beyond the outer centroids (clamped), 1.5 is 1/4 of the way.
    operator = blurring.resize_operator(8, 2.0)
    x = np.arange(8.0) ** 2
    cells = np.array([0.5, 6.5, 20.5, 42.5])  # area averages of x² over pixel pairs
    expected = np.interp(np.arange(8) + 0.5, [1, 3, 5, 7], cells)
    np.testing.assert_allclose(operator @ x, expected, atol=1e-12)
    # A fractional factor weights the straddling pixel by its overlap: 8 px at 2.5 → cells
    # [0,2.5), [2.5,5), [5,7.5), [7.5,8) (the last clipped).
    down_first = blurring.resize_operator(8, 2.5)
    assert np.allclose(down_first.sum(axis=1), 1.0)
    assert np.all(down_first >= -1e-15)


def test_unmatchable_downsample_level_is_refused(monkeypatch):
    # With a tighter tolerance, 28 px level 14 (+3.8 %) could not be matched: refused, not faked.
    monkeypatch.setattr(blurring, "DOWNSAMPLE_TOLERANCE", 0.01)
    blurring.downsample_operator.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"downsample level 14 cannot be variance-matched on 28-pixel"):
            blur(torch.zeros(1, 1, 28, 28), "downsample", 14)
        blur(torch.zeros(1, 1, 28, 28), "downsample", 13)  # the exact matches still pass
    finally:
        blurring.downsample_operator.cache_clear()


def test_downsample_matches_within_10_percent_on_every_small_size():
    # The refusal above never triggers at the study's tolerance on any square size up to 64.
    for size in range(2, 65):
        for level in range(2, max_level(size, size) + 1):
            factor, variance, target = blurring.downsample_match(level, size)
            assert abs(variance / target - 1) <= blurring.DOWNSAMPLE_TOLERANCE, (size, level)


# --- every pixel, borders included, against references computed another way ---------------------
# Found missing by mutation testing (mutation/run.sh): blurring with the Gaussian family through
# the box's code path, or off-centre by a pixel, passed every test above.

def _replicate_correlate(x: np.ndarray, taps: np.ndarray, left: int, axis: int) -> np.ndarray:
    """out[i] = Σ_j taps[j]·x[clamp(i − left + j)] along `axis`: replicate padding written out."""
    x = np.moveaxis(x, axis, -1)
    size = x.shape[-1]
    index = np.clip(np.arange(size)[:, None] - left + np.arange(len(taps))[None, :], 0, size - 1)
    return np.moveaxis((x[..., index] * taps).sum(axis=-1), -1, axis)


def _reference_box(x: np.ndarray, level: int) -> np.ndarray:
    """The n×n window mean J_n/n², the extra tap of even n right/below, borders replicated."""
    taps = np.full(level, 1.0 / level)
    left = (level - 1) // 2
    return _replicate_correlate(_replicate_correlate(x, taps, left, -1), taps, left, -2)


def _reference_gaussian(x: np.ndarray, level: int) -> np.ndarray:
    """The discrete Gaussian e^{-t}I_k(t), t = (n²−1)/12, from scipy.special.iv (not the module's
    ive) on a far wider support (10σ + 10), centred, borders replicated."""
    from scipy.special import iv

    t = (level * level - 1) / 12
    radius = int(np.ceil(10 * np.sqrt(t))) + 10
    k = np.arange(-radius, radius + 1)
    taps = np.exp(-t) * iv(k, t)
    assert abs(taps.sum() - 1) < 1e-12 and abs((k**2 * taps).sum() - t) < 1e-9  # the definition holds
    return _replicate_correlate(_replicate_correlate(x, taps, radius, -1), taps, radius, -2)


def _reference_resize_axis(x: np.ndarray, factor: float, axis: int) -> np.ndarray:
    """Area average over cells [c·f, (c+1)·f) clipped at the border, then linear interpolation from
    the cell centroids to the pixel centres, clamped beyond the outer ones — as integrals of the
    piecewise-constant row (np.interp on its running sum) and np.interp, not a matrix."""
    x = np.moveaxis(x, axis, -1)
    size = x.shape[-1]
    cells = max(1, int(np.ceil(size / factor - 1e-9)))
    edges = np.minimum(factor * np.arange(cells + 1), size)
    edges[-1] = size
    running = np.concatenate([np.zeros(x.shape[:-1] + (1,)), np.cumsum(x, axis=-1)], axis=-1)
    integral = np.apply_along_axis(lambda row: np.interp(edges, np.arange(size + 1), row), -1, running)
    means = np.diff(integral, axis=-1) / np.diff(edges)
    centroids = (edges[:-1] + edges[1:]) / 2
    out = np.apply_along_axis(lambda row: np.interp(np.arange(size) + 0.5, centroids, row), -1, means)
    return np.moveaxis(out, -1, axis)


def _reference_downsample(x: np.ndarray, level: int) -> np.ndarray:
    height, width = x.shape[-2:]
    out = _reference_resize_axis(x, blurring.downsample_factor(level, height), -2)
    return _reference_resize_axis(out, blurring.downsample_factor(level, width), -1)


REFERENCES = {"box": _reference_box, "gaussian": _reference_gaussian, "downsample": _reference_downsample}


@pytest.mark.parametrize("kind", KERNELS)
@pytest.mark.parametrize("shape", [(2, 3, 13, 12), (1, 1, 8, 8), (1, 2, 28, 28)])
def test_every_pixel_matches_an_independent_reference(kind, shape):
    x = _image(shape, seed=sum(shape)).double()
    for level in range(2, max_level(*shape[-2:]) + 1):
        out = blur(x, kind, level).numpy()
        expected = REFERENCES[kind](x.numpy(), level)
        np.testing.assert_allclose(out, expected, rtol=0, atol=1e-10, err_msg=f"{kind} level {level}")
        # The borders on their own (first and last two rows and columns): where padding decides.
        for edge in (np.s_[..., :2, :], np.s_[..., -2:, :], np.s_[..., :, :2], np.s_[..., :, -2:]):
            np.testing.assert_allclose(out[edge], expected[edge], rtol=0, atol=1e-10)


@pytest.mark.parametrize("kind", ("box", "gaussian"))
def test_a_corner_impulse_spreads_as_the_replicated_kernel(kind):
    # An impulse in the top-left corner, by hand: with replication the corner pixel sees itself
    # through every tap that falls off the image.
    level = 3
    x = torch.zeros(1, 1, 8, 8, dtype=torch.float64)
    x[0, 0, 0, 0] = 1.0
    taps = kernel_1d(kind, level)
    radius = (len(taps) - 1) // 2
    corner_weight = taps[: radius + 1].sum()  # the centre tap and every tap left of it land on pixel 0
    out = blur(x, kind, level)
    assert out[0, 0, 0, 0].item() == pytest.approx(corner_weight**2, abs=1e-15)
    assert out[0, 0, 0, 1].item() == pytest.approx(corner_weight * taps[: radius].sum(), abs=1e-15)
    if kind == "box":
        assert corner_weight == pytest.approx(2 / 3) and out[0, 0, 2, 2].item() == 0.0


@pytest.mark.parametrize("size, level", [(8, 2), (8, 3), (13, 4), (28, 6)])
def test_box_operator_is_the_matrix_of_the_box_blur(size, level):
    x = _image((1, 1, size, size), seed=size).double()
    operator = torch.from_numpy(blurring.box_operator(size, level))
    torch.testing.assert_close(operator @ x[0, 0] @ operator.T, blur(x, "box", level)[0, 0],
                               rtol=0, atol=1e-12)
    assert np.allclose(blurring.box_operator(size, level).sum(axis=1), 1.0)


@pytest.mark.parametrize("size, level", [(8, 2), (8, 4), (28, 7), (32, 16)])
def test_downsample_operator_is_the_matrix_of_the_downsample_blur(size, level):
    x = _image((1, 1, size, size), seed=size).double()
    operator = blurring.downsample_operator(level, size)
    assert np.allclose(operator.sum(axis=1), 1.0) and operator.min() >= -1e-15
    torch.testing.assert_close(torch.from_numpy(operator) @ x[0, 0] @ torch.from_numpy(operator).T,
                               blur(x, "downsample", level)[0, 0], rtol=0, atol=1e-12)


@pytest.mark.parametrize("size", (2, 8, 28))
def test_level_1_of_every_operator_is_the_identity(size):
    assert kernel_1d("box", 1).tolist() == [1.0]
    assert kernel_1d("gaussian", 1).tolist() == [1.0]
    assert np.array_equal(blurring.box_operator(size, 1), np.eye(size))
    assert np.array_equal(blurring.downsample_operator(1, size), np.eye(size))
    assert blurring.downsample_match(1, size) == (1.0, 0.0, 0.0)  # factor 1: no resize, no variance
    assert blurring.downsample_factor(1, size) == 1.0


@pytest.mark.parametrize("level", range(2, 17))
def test_gaussian_taps_are_cut_at_6_sigma_plus_4(level):
    # The documented support: radius ⌈6σ⌉ + 4, σ² = (n²−1)/12, centred on the pixel.
    taps = kernel_1d("gaussian", level)
    radius = int(np.ceil(6 * np.sqrt((level**2 - 1) / 12))) + 4
    assert len(taps) == 2 * radius + 1
    assert np.array_equal(taps, taps[::-1]) and taps.argmax() == radius


@pytest.mark.parametrize("size", (5, 8, 13))
def test_one_cell_resize_is_the_mean_of_the_axis(size):
    # A factor of the whole axis (or more) leaves one cell: every pixel becomes the axis mean.
    for factor in (float(size), size + 0.5, 4.0 * size):
        np.testing.assert_allclose(blurring.resize_operator(size, factor), np.full((size, size), 1 / size),
                                   rtol=0, atol=1e-15)


@pytest.mark.parametrize("size, cells", [(28, 3), (10, 3), (8, 3), (12, 5), (20, 7)])
def test_a_factor_a_rounding_error_below_size_over_cells_keeps_that_many_cells(size, cells):
    # size / nextafter(size/cells, 0) rounds just above `cells`: ceil would add a last cell one
    # rounding error wide; the operator must be the `cells`-cell one, continuous in the factor.
    exact = size / cells
    below = float(np.nextafter(exact, 0))
    assert math.ceil(size / below) == cells + 1  # the rounding the guard is for
    np.testing.assert_allclose(blurring.resize_operator(size, below), blurring.resize_operator(size, exact),
                               rtol=0, atol=1e-12)


def test_a_resize_factor_below_one_is_refused():
    with pytest.raises(ValueError) as caught:
        blurring.resize_operator(8, 0.5)
    assert str(caught.value) == "downsample factor 0.5 is below 1"


def test_downsample_match_keeps_the_nearer_end_of_a_variance_jump():
    # On 18 px, level 7's target falls inside a jump of the variance (the grid loses a cell):
    # just below the jump the variance is 1.39 % short, just above it 3.61 % over. The match is
    # the nearer end, the short one, and the variance returned is the factor's own.
    factor, variance, target = blurring.downsample_match(7, 18)
    assert variance / target - 1 == pytest.approx(-0.013948, abs=1e-6)
    assert variance == blurring.impulse_variance(blurring.resize_operator(18, factor))
    over = blurring.impulse_variance(blurring.resize_operator(18, factor + 1e-9))
    assert over / target - 1 == pytest.approx(0.036074, abs=1e-6)
    assert blurring.downsample_factor(7, 18) == factor


def test_downsample_refusal_applies_from_level_2_and_only_above_the_tolerance(monkeypatch):
    factor, variance, target = blurring.downsample_match(2, 28)
    assert variance != target  # matched to ~1e-13, not exactly
    monkeypatch.setattr(blurring, "DOWNSAMPLE_TOLERANCE", 0.0)
    with pytest.raises(ValueError, match=r"downsample level 2 cannot be variance-matched on 28-pixel"):
        blurring.downsample_factor(2, 28)
    assert blurring.downsample_factor(1, 28) == 1.0  # level 1 is never refused
    # A mismatch exactly at the tolerance is accepted ("more than" the tolerance is refused).
    factor, variance, target = blurring.downsample_match(14, 28)
    monkeypatch.setattr(blurring, "DOWNSAMPLE_TOLERANCE", abs(variance / target - 1))
    assert blurring.downsample_factor(14, 28) == factor
    monkeypatch.setattr(blurring, "DOWNSAMPLE_TOLERANCE", float(np.nextafter(abs(variance / target - 1), 0)))
    with pytest.raises(ValueError, match="level 14"):
        blurring.downsample_factor(14, 28)


def test_impulse_variance_is_computed_in_float64_whatever_the_operator_dtype():
    operator = blurring.downsample_operator(3, 28).astype(np.float32)
    assert blurring.impulse_variance(operator) == pytest.approx(
        blurring.impulse_variance(operator.astype(np.float64)), rel=1e-13)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("kind", KERNELS)
def test_blur_on_cuda_stays_on_the_device_and_matches_cpu(kind):
    x = _image((2, 3, 28, 28))
    out = blur(x.cuda(), kind, 3)
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), blur(x, kind, 3), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", KERNELS)
def test_every_tensor_of_a_blur_is_on_the_images_device(kind):
    # The kernels and resize operators are built on the images' device: a CPU weight against CUDA
    # images fails there (conv2d/matmul refuse mixed devices). With no GPU here, the images live on
    # the meta device and every tensor any torch function sees or returns must be there too.
    from torch.overrides import TorchFunctionMode

    class Devices(TorchFunctionMode):
        def __init__(self):
            super().__init__()
            self.seen = set()

        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for value in (*args, *(kwargs or {}).values(), out):
                if isinstance(value, torch.Tensor):
                    self.seen.add((getattr(func, "__name__", str(func)), value.device.type))
            return out

    images = torch.zeros(2, 3, 16, 16, device="meta")
    with Devices() as devices:
        out = blur(images, kind, 3)
    assert out.shape == images.shape and out.device.type == "meta"
    assert {device for _, device in devices.seen} == {"meta"}, sorted(devices.seen)
    assert len(devices.seen) >= 3  # the mode saw the work (pad/conv, pool or matmul)
