"""The study record: the one contract between the launcher and the analysis (study/record.py)."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time

import pytest

from study.record import (ENDED, STANDARD, RecordError, StudyRecord, default_tracking_uri, latest, optuna_storage,
                          record_path, split_key, study_key)
from trainer.config import DATASETS


def a_record(name: str = "s1", **changes) -> StudyRecord:
    values = dict(name=name, space="smoke", space_source="/x/smoke.py", settings={"epochs": 6}, created="2026-12-07T00:00:00",
                  seed=0, data_dir="/x/data", tracking_uri="sqlite:////x/mlflow.db", storage_path="/x/ray", asha=False,
                  cpus_per_trial=1.0, gpus_per_trial="auto", max_concurrent=None, max_failures=1)
    values.update(changes)
    return StudyRecord(**values)


def test_study_key_and_its_inverse_without_guessing():
    assert all("-" not in dataset for dataset in DATASETS)  # what makes split_key exact
    for dataset in DATASETS:
        assert study_key(dataset) == study_key(dataset, STANDARD) == study_key(dataset, "") == dataset
        assert split_key(dataset) == (dataset, STANDARD)
        for regime in ("noise40", "short-8", "imbalance_10"):
            assert study_key(dataset, regime) == f"{dataset}-{regime}"
            assert split_key(study_key(dataset, regime)) == (dataset, regime)


def test_save_is_atomic_and_load_gives_the_same_record(tmp_path):
    record = a_record(best={"digits": {"baseline": {"value": 0.9}}}, attempts=[{"started": 1.0, "last": 3.5}])
    path = record.save(tmp_path)
    assert path == record_path(tmp_path, "s1") == tmp_path / "studies" / "s1.json"
    assert not list(path.parent.glob("*.tmp"))
    assert StudyRecord.load(path) == record == StudyRecord.read(tmp_path, "s1")
    assert json.loads(path.read_text())["best"] == {"digits": {"baseline": {"value": 0.9}}}
    assert StudyRecord.read(tmp_path, "other") is None
    assert record.resumed and record.seconds() == 2.5 and not a_record().resumed


def test_a_record_that_is_not_whole_is_one_clear_error(tmp_path):
    (tmp_path / "studies").mkdir()
    broken = {"torn.json": "{\"name\": ", "list.json": "[]",
              "old.json": json.dumps({k: v for k, v in a_record().to_dict().items() if k != "created"}),
              "new.json": json.dumps({**a_record().to_dict(), "replicates": 3})}
    for file, text in broken.items():
        (tmp_path / "studies" / file).write_text(text)
    words = {"torn": "cannot be read", "list": "not a JSON object", "old": "missing field(s) created",
             "new": "unknown field(s) replicates"}
    for name, expected in words.items():
        with pytest.raises(RecordError, match=re.escape(expected)):
            StudyRecord.read(tmp_path, name)


def test_latest_is_the_most_recently_written_record(tmp_path):
    assert latest(tmp_path) is None
    a_record("first").save(tmp_path)
    a_record("second").save(tmp_path)
    past = time.time() - 100
    os.utime(record_path(tmp_path, "second"), (past, past))
    assert latest(tmp_path) == "first"


def test_the_layout_of_an_output_directory(tmp_path):
    assert default_tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"
    assert optuna_storage(tmp_path) == f"sqlite:///{tmp_path / 'optuna.db'}"
    assert set(ENDED) == {"completed", "diverged", "failed", "stopped"}


def test_every_field_has_a_comment_saying_what_it_is():
    import inspect

    import study.record

    source = inspect.getsource(study.record.StudyRecord)
    for field in dataclasses.fields(StudyRecord):
        line = next(line for line in source.splitlines() if line.strip().startswith(f"{field.name}:"))
        assert "#" in line or field.name in ("cpus_per_trial", "max_concurrent", "max_failures"), line
