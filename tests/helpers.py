"""Helpers the test modules share (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent

# Metrics that measure wall time or memory, so they differ between otherwise identical runs.
TIMING_KEYS = ("epoch_seconds", "samples_per_second", "train_seconds", "trial_seconds", "peak_memory_mb",
               "corruption_seconds")


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


def strip_timing(metrics: dict) -> dict:
    return {key: value for key, value in metrics.items() if key not in TIMING_KEYS}


def run_study(*args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m study.run ARGS` in a subprocess, as a user would run it."""
    return subprocess.run([sys.executable, "-m", "study.run", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                          cwd=REPO)



def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes() -> list[tuple[int, int, str, str]]:
    """(pid, session id, state, command line) of every process, from /proc."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        found.append((int(entry), int(fields[3]), fields[0], cmdline))
    return found
