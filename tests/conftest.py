"""Shared fixtures: the digits arrays (loaded once) and tiny datasets in torchvision's on-disk formats."""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from helpers import run_study, strip_timing, write_mnist_like
from trainer.data import load_arrays

# The test models are tiny: a second intra-op thread only adds synchronisation, and on a shared
# 2-core machine it makes every step wait for a busy core (10x slower measured under load).
torch.set_num_threads(1)

# Every trial scores the corrupted test split, read from (or built into) the corruption cache: the
# tests keep theirs out of the user's ~/.cache, in a directory of the session (subprocesses, the
# smoke study's Ray workers included, inherit it). A CURRICULUM_CACHE already set is kept.
if "CURRICULUM_CACHE" not in os.environ:
    os.environ["CURRICULUM_CACHE"] = tempfile.mkdtemp(prefix="curriculum-cache-")
    atexit.register(shutil.rmtree, os.environ["CURRICULUM_CACHE"], True)


@pytest.fixture(scope="session")
def digits():
    return load_arrays("digits")


@pytest.fixture(scope="session")
def tiny_mnist(tmp_path_factory):
    """(data_dir, written arrays) of a 60-train / 20-test MNIST in the real idx format."""
    root = tmp_path_factory.mktemp("mnist")
    return root, write_mnist_like(root, "MNIST")


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


@pytest.fixture(scope="session")
def smoke_study(tmp_path_factory) -> SmokeStudy:
    output_dir = tmp_path_factory.mktemp("smoke-study")
    name = "smoke-fixture"
    completed = run_study("--output-dir", str(output_dir), "--name", name)
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    record = json.loads((output_dir / "studies" / f"{name}.json").read_text())
    return SmokeStudy(output_dir, name, completed.stdout, record)
