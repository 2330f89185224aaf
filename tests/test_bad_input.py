"""Bad input to every Python entry point: one `error:` line that names what was wrong and what is
allowed, exit status 2, and nothing written.

Each entry point — `python -m study.run`, `study.train`, `analysis.report`, `study.bench` — gets the
same families of mistakes where it has such an input: an unknown flag, a value of the wrong type,
a number out of range, an unknown name or choice, a file where a directory is expected, a
directory that cannot be written (`/sys` refuses a new entry even to root), a tracking URI with an
unknown scheme, and a malformed comma list. Each case runs the real command in a subprocess from
an empty working directory of its own, as a user would, and that directory (and the MLflow store
a report case reads) must be exactly as it was. The cluster scripts have their own tests
(tests/test_cluster_files.py); `tests/test_study.py` tries many more `study.run` values.

The selected cases run two at a time: each is mostly interpreter start-up and imports.
"""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from helpers import free_port
from study.tracking import StudyTracker

REPO = Path(__file__).resolve().parent.parent
UNWRITABLE = "/sys/curriculum-study-bad-input"  # sysfs refuses mkdir, to root too

# (entry point, family, arguments, words the error line must contain). In the arguments, FILE is
# an existing file, STORE the URI of a small real MLflow store holding the study "tiny".
CASES = [
    ("study.run", "unknown flag", ["--bogus"], ["unrecognized arguments: --bogus"]),
    ("study.run", "wrong type", ["--num-samples", "x"], ["--num-samples", "invalid int value: 'x'"]),
    ("study.run", "out of range", ["--epochs", "0"], ["--epochs", "must be >= 1"]),
    ("study.run", "unknown name", ["--space", "nope"], ["nope", "known spaces: annealing, full"]),
    ("study.run", "unknown choice", ["--methods", "baseline,nope"],
     ["--methods", "nope is not allowed", "choose from baseline, sharpening"]),
    ("study.run", "out of range", ["--replicates", "0"], ["--replicates", "must be >= 1"]),
    ("study.run", "out of range", ["--seed-repeats", "500"], ["--seed-repeats", "must be in 0..499"]),
    ("study.run", "unknown choice", ["--sampler", "grid"], ["--sampler", "'grid' is not allowed", "random or tpe"]),
    ("study.run", "unknown choice", ["--seeds", "many"], ["--seeds", "invalid choice: 'many'", "'fixed', 'auto'"]),
    ("study.run", "out of range", ["--seeds", "auto", "--seed-repeats", "5", "--max-seeds", "4"],
     ["--max-seeds", "must be above the first batch (5 seeds: seed_repeats)", "at most 499"]),
    ("study.run", "out of range", ["--seeds", "auto", "--seed-repeats", "1"],
     ["--seed-repeats", "first batch of auto seeds needs at least 2"]),
    ("study.run", "out of range", ["--max-seeds", "20"], ["--max-seeds", "caps the seeds of --seeds auto"]),
    ("study.run", "unknown choice", ["--seeds", "auto", "--methods", "baseline"],
     ["--seeds", "auto sizes comparisons", "make none", "add the baseline and a curriculum"]),
    ("study.run", "file for a directory", ["--output-dir", "FILE/out"], ["--output-dir", "is a file"]),
    ("study.run", "unwritable", ["--output-dir", UNWRITABLE], ["--output-dir", "/sys is not writable"]),
    ("study.run", "bad URI", ["--tracking-uri", "ftp://x"],
     ["--tracking-uri", "unknown scheme 'ftp'", "http(s)://HOST:PORT", "sqlite:///"]),
    ("study.run", "malformed list", ["--methods", ","], ["--methods", "an empty list", "choose from baseline"]),
    ("study.run", "malformed list", ["--kernels", "box;gaussian"],
     ["--kernels", "box;gaussian is not allowed", "choose from box, gaussian, downsample"]),

    ("study.train", "unknown flag", ["--bogus"], ["unrecognized arguments: --bogus"]),
    ("study.train", "wrong type", ["--epochs", "x"], ["epochs", "expected int, got 'x'"]),
    ("study.train", "out of range", ["--epochs", "0"], ["epochs", ">= 1, got 0"]),
    ("study.train", "out of range", ["--method", "sharpening", "--K", "9"], ["K", "needs K in 2..4, got K=9"]),
    ("study.train", "unknown choice", ["--method", "nope"], ["method", "'nope' is not allowed", "'baseline'"]),
    ("study.train", "file for a directory", ["--dataset", "mnist", "--data-dir", "FILE"],
     ["data_dir", "is a file", "MNIST/raw"]),
    ("study.train", "missing files", ["--dataset", "mnist", "--data-dir", "."],
     ["dataset mnist", "train-images-idx3-ubyte", "--download"]),

    ("analysis.report", "unknown flag", ["--bogus"], ["unrecognized arguments: --bogus"]),
    ("analysis.report", "wrong type", ["--margin", "x"], ["--margin", "invalid float value: 'x'"]),
    ("analysis.report", "out of range", ["--margin", "-1"], ["--margin", "must be > 0"]),
    ("analysis.report", "unknown name", ["--tracking-uri", "STORE", "--experiment", "nope"],
     ["no experiment 'nope'", "known experiments: tiny"]),
    ("analysis.report", "unknown name", ["--name", "nope"], ["no MLflow store", "runs/mlflow.db"]),
    ("analysis.report", "file for a directory", ["--output-dir", "FILE"], ["--output-dir", "is a file"]),
    ("analysis.report", "file for a directory", ["--tracking-uri", "STORE", "--experiment", "tiny", "--out",
                                                 "FILE/report"], ["--out", "cannot write the report"]),
    ("analysis.report", "unwritable", ["--tracking-uri", "STORE", "--experiment", "tiny", "--out", UNWRITABLE],
     ["--out", "cannot write the report", "writable directory"]),
    ("analysis.report", "bad URI", ["--tracking-uri", "ftp://x"],
     ["--tracking-uri", "unknown scheme 'ftp'", "http(s)://HOST:PORT", "sqlite:///"]),
    ("analysis.report", "bad URI", ["--tracking-uri", f"http://127.0.0.1:{free_port()}"],
     ["--tracking-uri", "unreachable"]),

    ("study.bench", "unknown flag", ["--bogus"], ["unrecognized arguments: --bogus"]),
    ("study.bench", "wrong type", ["--epochs", "x"], ["--epochs", "invalid int value: 'x'"]),
    ("study.bench", "out of range", ["--epochs", "0"], ["--epochs must be >= 1"]),
    ("study.bench", "out of range", ["--threads", "0"], ["--threads must be >= 1"]),
    ("study.bench", "unknown choice", ["--dataset", "nope"], ["--dataset", "invalid choice: 'nope'", "'digits'"]),
    ("study.bench", "unknown choice", ["--kernel", "nope"], ["kernel 'nope' is not allowed", "'box'"]),
    ("study.bench", "unknown choice", ["--device", "nope"], ["device", "'nope' is not allowed", "auto, cpu, cuda"]),
    ("study.bench", "malformed list", ["--pack", "1,x"], ["--pack", "comma-separated trial counts", "1,2,4,8"]),
]
IDS = [f"{entry}:{family}:{' '.join(args)}" for entry, family, args, _ in CASES]


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size if p.is_file() else -1 for p in root.rglob("*")}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[Path, str]:
    """A small real MLflow store: study "tiny", one completed baseline trial."""
    root = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    tracker = StudyTracker.create(uri, "tiny", (root / "artifacts").as_uri(), tags={"space": "test"},
                                  params={"space": "test"})
    run_id = tracker.create_child("t0", {"method": "baseline", "epochs": 1}, {"phase": "search"})
    tracker.log_result(run_id, {"epoch": 1, "val_acc": 0.9, "val_loss": 0.3, "test_acc": 0.9, "outcome": "completed"})
    tracker.finish_child(run_id, "completed")
    tracker.finish_parent({})
    return root, uri


@pytest.fixture(scope="module")
def outcomes(request, store, tmp_path_factory) -> dict[str, tuple]:
    """Every selected case, run: id → (completed process, files before, files after)."""
    selected = {item.callspec.params["case"] for item in request.session.items
                if item.module is request.module and hasattr(item, "callspec")}
    store_root, uri = store
    file = tmp_path_factory.mktemp("file") / "FILE"
    file.write_text("")

    def run(case_id: str):
        entry, _, args, _ = CASES[IDS.index(case_id)]
        cwd = tmp_path_factory.mktemp("case")
        args = [{"STORE": uri, "FILE": str(file)}.get(a, a.replace("FILE/", f"{file}/")) for a in args]
        before = {"cwd": _tree(cwd), "store": _tree(store_root)}
        completed = subprocess.run([sys.executable, "-m", entry, *args], cwd=cwd, capture_output=True, text=True,
                                   timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
        return completed, before, {"cwd": _tree(cwd), "store": _tree(store_root)}

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(sorted(selected), pool.map(run, sorted(selected))))


@pytest.mark.parametrize("case", IDS)
def test_bad_input_is_one_line_naming_the_mistake_and_writes_nothing(outcomes, case):
    completed, before, after = outcomes[case]
    words = CASES[IDS.index(case)][3]
    assert completed.returncode == 2, completed.stdout[-2000:] + completed.stderr[-3000:]
    lines = completed.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), completed.stderr[-3000:]
    missing = [w for w in words if w not in lines[0]]
    assert not missing, f"{missing} not in {lines[0]!r}"
    assert after == before  # nothing written: not in the working directory, not in the store

