"""Common corruptions (trainer/corruptions.py): MNIST-C-style on 1 channel at 8 and 28 px,
CIFAR-10-C-style on natural 32-px colour patches; determinism, kept shape/dtype/range, change,
growth with severity, pairwise difference, test-split-only construction and the cache."""

from __future__ import annotations

import itertools
import os

import numpy as np
import pytest
from scipy import ndimage

from trainer import corruptions as C


@pytest.fixture(scope="module")
def digits8(digits):
    """The digits test split as the trainer sees it: floats in [0, 1] (uint8 × scale)."""
    return digits.test_x[:48].astype(np.float32) * digits.scale


@pytest.fixture(scope="module")
def digits28(digits8):
    """Digit strokes at MNIST's side, for the parameters given in 28-px pixels."""
    return np.clip(ndimage.zoom(digits8, (1, 1, 3.5, 3.5), order=1), 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def colour32():
    """30 natural colour patches, 32 px: scikit-learn's two sample photographs downscaled 4×."""
    from sklearn.datasets import load_sample_images

    tiles = []
    for photo in load_sample_images().images:
        h, w, _ = photo.shape
        small = photo[: h // 4 * 4, : w // 4 * 4].reshape(h // 4, 4, w // 4, 4, 3).mean(axis=(1, 3))
        tiles += [small[r:r + 32, c:c + 32] for r in range(0, small.shape[0] - 31, 32)
                  for c in range(0, small.shape[1] - 31, 32)]
    return (np.stack(tiles).transpose(0, 3, 1, 2) / 255).astype(np.float32)


def rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(((a.astype(np.float64) - b) ** 2).mean(axis=(1, 2, 3))).mean())


def all_variants(images):
    return {v.key: C.corrupt(images, v.corruption, v.severity, seed=7) for v in C.variants(images.shape[1])}


@pytest.fixture(scope="module")
def corrupted(digits8, digits28, colour32):
    """Every variant of every image set, computed once for the tests that read them."""
    return {name: (images, all_variants(images))
            for name, images in (("digits8", digits8), ("digits28", digits28), ("colour32", colour32))}


def test_the_sets_are_the_papers_fifteen():
    assert C.corruption_names(1) == (
        "shot_noise", "impulse_noise", "glass_blur", "motion_blur", "shear", "scale", "rotate", "brightness",
        "translate", "stripe", "fog", "spatter", "dotted_line", "zigzag", "canny_edges")
    assert C.corruption_names(3) == (
        "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
        "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate", "jpeg_compression")
    assert [v.key for v in C.variants(1)][:2] == ["shot_noise", "impulse_noise"]
    assert len(C.variants(3)) == 75 and C.variants(3)[2].key == "gaussian_noise_s3"
    assert all(len(spec.parameters) == 5 for spec in C.CIFAR_C.values())


@pytest.mark.parametrize("name", ["digits8", "digits28", "colour32"])
def test_every_variant_keeps_shape_dtype_range_and_is_deterministic(name, corrupted):
    images, first = corrupted[name]
    again = all_variants(images[:6])  # the draws are per batch: compare a batch with itself
    once_more = all_variants(images[:6])
    for key, out in first.items():
        assert out.shape == images.shape and out.dtype == images.dtype, key
        assert out.min() >= 0 and out.max() <= 1, key
        assert np.array_equal(again[key], once_more[key]), f"{key} differs between two calls with one seed"
    variant = C.variants(images.shape[1])[-1]
    as_double = C.corrupt(images[:6].astype(np.float64), variant.corruption, variant.severity, seed=7)
    assert as_double.dtype == np.float64
    np.testing.assert_allclose(as_double, again[variant.key], atol=1e-6)


@pytest.mark.parametrize("name", ["digits8", "digits28", "colour32"])
def test_every_variant_changes_the_images_and_differs_from_the_others(name, corrupted):
    images, out = corrupted[name]
    if images.shape[1] == 3:  # the severities of one corruption are compared by the growth test
        out = {k: v for k, v in out.items() if k.endswith("_s3")}
    for key, changed in out.items():
        moved = np.abs(changed - images).max(axis=(1, 2, 3)) > 1 / 255  # at least one uint8 step
        assert rms(changed, images) > 0.005 and moved.mean() >= 0.9, f"{key} hardly changes the images"
    for (a, x), (b, y) in itertools.combinations(out.items(), 2):
        assert rms(x, y) > 0.005, f"{a} and {b} give (nearly) the same images"


def test_distance_to_the_clean_images_grows_with_severity(corrupted):
    images, out = corrupted["colour32"]
    for name in C.corruption_names(3):
        distances = [0.0] + [rms(out[f"{name}_s{severity}"], images) for severity in C.SEVERITIES]
        # 2 % a step at least: a tie (the paper's motion blur at 3 and 4) is not growth.
        assert all(np.diff(distances) > 0.02 * np.array(distances[1:])), f"{name}: {np.round(distances, 4)}"


def test_a_different_seed_draws_different_noise(digits8, colour32):
    assert not np.array_equal(C.corrupt(digits8, "shot_noise", seed=1), C.corrupt(digits8, "shot_noise", seed=2))
    assert not np.array_equal(C.corrupt(colour32, "snow", 3, seed=1), C.corrupt(colour32, "snow", 3, seed=2))


def test_known_values_of_the_deterministic_corruptions(digits8, colour32):
    stripe = C.corrupt(digits8, "stripe")
    np.testing.assert_allclose(stripe[..., :2], 1 - digits8[..., :2])  # a quarter of 8 columns each side
    np.testing.assert_allclose(stripe[..., 2:6], digits8[..., 2:6])
    np.testing.assert_allclose(C.corrupt(digits8, "brightness"), np.minimum(digits8 + 0.5, 1), atol=1e-6)
    contrast = C.corrupt(colour32, "contrast", 5).astype(np.float64)
    means = colour32.mean(axis=(2, 3), keepdims=True)
    np.testing.assert_allclose(contrast, (colour32 - means) * 0.15 + means, atol=1e-5)
    edges = C.corrupt(digits8, "canny_edges")
    assert set(np.unique(edges)) == {0.0, 1.0}
    assert edges[:, :, [0, -1], :].max() == 0 and edges[:, :, :, [0, -1]].max() == 0


def test_bad_requests_say_what_is_wrong_and_what_is_allowed(digits8, colour32):
    with pytest.raises(C.CorruptionError, match=r"'snow' is not in MNIST-C .*choose one of shot_noise"):
        C.corrupt(digits8, "snow")
    with pytest.raises(C.CorruptionError, match=r"severity 3 for fog in MNIST-C: must be None"):
        C.corrupt(digits8, "fog", 3)
    with pytest.raises(C.CorruptionError, match=r"severity 6 for fog in CIFAR-10-C: must be one of 1, 2, 3, 4, 5"):
        C.corrupt(colour32, "fog", 6)
    with pytest.raises(C.CorruptionError, match=r"severity None .* must be one of 1, 2"):
        C.corrupt(colour32, "fog")
    with pytest.raises(C.CorruptionError, match=r"2 channels; corruptions exist for 1 channel .* or 3"):
        C.corrupt(np.zeros((2, 2, 8, 8), np.float32), "fog")
    with pytest.raises(C.CorruptionError, match=r"values must lie in \[0, 1\] .*got \[0, 16\]"):
        C.corrupt(digits8 * 16, "fog")
    with pytest.raises(C.CorruptionError, match=r"expected floats .*got dtype uint8"):
        C.corrupt(np.zeros((2, 1, 8, 8), np.uint8), "fog")


def test_the_set_is_built_from_the_test_split_it_is_given(digits, tmp_path):
    test = digits.test_x.astype(np.float32) * digits.scale
    built = C.corrupted_test_set("digits", test, digits.test_y, cache_dir=str(tmp_path))
    assert np.array_equal(built.index, np.arange(len(test)))  # 15 × 359 images: no subset needed
    assert np.array_equal(built.labels, digits.test_y)
    assert [v.key for v in built.variants] == [v.key for v in C.variants(1)]
    # Stripe inverts two quarters: inverting them back gives the test images (to the uint8 step).
    unstriped = built.images["stripe"].astype(int)
    unstriped[..., :2] = 255 - unstriped[..., :2]
    unstriped[..., -2:] = 255 - unstriped[..., -2:]
    assert np.abs(unstriped - np.round(test * 255)).max() <= 1
    # Keyed by the images: the training split would get another file, never this one.
    train = digits.train_x.astype(np.float32) * digits.scale
    assert C.cache_path("digits", train, digits.train_y, str(tmp_path)) != C.cache_path(
        "digits", test, digits.test_y, str(tmp_path))
    assert os.listdir(tmp_path) == [os.path.basename(C.cache_path("digits", test, digits.test_y, str(tmp_path)))]
    # What the trainer and the launcher call: the same file, the same images.
    from_arrays = C.for_dataset(digits, cache_dir=str(tmp_path))
    assert from_arrays.source == built.source and os.listdir(tmp_path) == [os.path.basename(
        C.cache_path("digits", test, digits.test_y, str(tmp_path)))]
    assert all(np.array_equal(from_arrays.images[k], built.images[k]) for k in built.images)


def test_the_cache_returns_the_stored_arrays_and_rebuilds_a_broken_file(digits, tmp_path):
    test = digits.test_x.astype(np.float32) * digits.scale
    built = C.corrupted_test_set("digits", test, digits.test_y, cache_dir=str(tmp_path))
    path = C.cache_path("digits", test, digits.test_y, str(tmp_path))
    written = os.stat(path).st_mtime_ns
    loaded = C.corrupted_test_set("digits", test, digits.test_y, cache_dir=str(tmp_path))
    assert os.stat(path).st_mtime_ns == written  # read, not rewritten
    assert loaded.version == built.version == C.module_version()
    assert loaded.source == built.source == C.fingerprint(test, digits.test_y)
    assert np.array_equal(loaded.index, built.index) and np.array_equal(loaded.labels, built.labels)
    assert loaded.images.keys() == built.images.keys()
    for key in built.images:
        assert loaded.images[key].dtype == np.uint8 and np.array_equal(loaded.images[key], built.images[key]), key
    np.testing.assert_array_equal(loaded.floats("fog"), built.images["fog"] / np.float32(255))
    with open(path, "wb") as handle:
        handle.write(b"not a zip file")
    rebuilt = C.corrupted_test_set("digits", test, digits.test_y, cache_dir=str(tmp_path))
    assert np.array_equal(rebuilt.images["zigzag"], built.images["zigzag"])
    assert C.corrupted_test_set("digits", test, digits.test_y, cache_dir=str(tmp_path)).images.keys() == built.images.keys()


def test_a_large_test_split_is_scored_on_a_fixed_subset(digits8):
    labels = np.arange(len(digits8)) % 10
    built = C.build("digits", digits8, labels, max_images=15 * 12)
    again = C.build("digits", digits8, labels, max_images=15 * 12)
    assert len(built.index) == 12 and np.all(np.diff(built.index) > 0)
    assert np.array_equal(built.index, again.index) and np.array_equal(built.labels, labels[built.index])
    assert built.images["fog"].shape == (12, 1, 8, 8)
    np.testing.assert_array_equal(built.images["rotate"],
                                  C.to_uint8(C.corrupt(digits8[built.index], "rotate", seed=C.dataset_seed("digits"))))
