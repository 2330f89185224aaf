"""Shared fixtures: the digits arrays (loaded once) and tiny datasets in torchvision's on-disk formats."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from study.data import load_arrays

# The test models are tiny: a second intra-op thread only adds synchronisation, and on a shared
# 2-core machine it makes every step wait for a busy core (10x slower measured under load).
torch.set_num_threads(1)

# Metrics that measure wall time or memory, so they differ between otherwise identical runs.
TIMING_KEYS = ("epoch_seconds", "samples_per_second", "train_seconds", "trial_seconds", "peak_memory_mb")


def _write_idx(path: Path, magic: int, array: np.ndarray) -> None:
    """One file of the MNIST idx format: big-endian magic, big-endian dims, then uint8 data."""
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_mnist_like(root: Path, folder: str, n_train: int = 60, n_test: int = 20, seed: int = 0) -> dict:
    """Write an MNIST-format dataset under root/folder/raw; return the arrays written.

    Pixel [0, 0] of train image i is i (and of test image i is 200 + i), so a loaded image can be
    matched to the one written whatever the train/val split did to the order.
    """
    rng = np.random.default_rng(seed)
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, count, offset in (("train", n_train, 0), ("t10k", n_test, 200)):
        images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        images[:, 0, 0] = offset + np.arange(count)
        labels = (np.arange(count) % 10).astype(np.uint8)  # every class present
        rng.shuffle(labels)
        _write_idx(raw / f"{split}-images-idx3-ubyte", 2051, images)
        _write_idx(raw / f"{split}-labels-idx1-ubyte", 2049, labels)
        arrays[split] = (images, labels)
    return arrays


@pytest.fixture(scope="session")
def digits():
    return load_arrays("digits")


@pytest.fixture(scope="session")
def tiny_mnist(tmp_path_factory):
    """(data_dir, written arrays) of a 60-train / 20-test MNIST in the real idx format."""
    root = tmp_path_factory.mktemp("mnist")
    return root, write_mnist_like(root, "MNIST")


def strip_timing(metrics: dict) -> dict:
    return {key: value for key, value in metrics.items() if key not in TIMING_KEYS}


@pytest.fixture
def mnist_writer():
    return write_mnist_like


@pytest.fixture
def without_timing():
    return strip_timing


# ---------------------------------------------------------------------------------------------
# One real smoke study per test session (local Ray, SQLite MLflow store), shared by the study,
# analysis and browsing tests: it is the expensive part (about a minute on 2 cores).

@dataclass
class SmokeStudy:
    output_dir: Path
    name: str
    stdout: str
    record: dict

    @property
    def tracking_uri(self) -> str:
        return self.record["tracking_uri"]


def run_study(*args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m study.run ARGS` in a subprocess, as a user would run it."""
    return subprocess.run([sys.executable, "-m", "study.run", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                          cwd=Path(__file__).resolve().parent.parent)


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory) -> SmokeStudy:
    output_dir = tmp_path_factory.mktemp("smoke-study")
    name = "smoke-fixture"
    completed = run_study("--output-dir", str(output_dir), "--name", name)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    record = json.loads((output_dir / "studies" / f"{name}.json").read_text())
    return SmokeStudy(output_dir, name, completed.stdout, record)
