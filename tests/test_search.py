"""`StudySearcher` on its own: the order it hands trials out in, against a real Optuna SQLite
storage, without Ray running a single trial (the end-to-end runs are in test_study.py)."""

from __future__ import annotations

from ray.tune.search import Searcher

from search_spaces import bind_space, load_space
from study.config import TAGS
from study.search import StudySearcher

METHODS = ("baseline", "sharpening", "anti")


def _searcher(tmp_path, done_slots=()):
    space = load_space("smoke")
    settings = space.settings.replace(methods=METHODS)
    define = bind_space(space, "digits", settings, {"data_dir": "data", "seed": 0})
    return StudySearcher(define, METHODS, 2, f"sqlite:///{tmp_path / 'optuna.db'}", "t-digits", 0, [1, 2],
                         "val_acc", set(done_slots))


def _complete(searcher, trial_id, val_acc):
    searcher.on_trial_complete(trial_id, {"val_acc": val_acc, "val_loss": 1 - val_acc, "outcome": "completed"})


def _what(config):
    tags = config[TAGS]
    return tags.get("slot") or f"search:{config['method']}"


def test_a_methods_reruns_start_once_its_own_search_has_ended(tmp_path):
    searcher = _searcher(tmp_path)
    issued = {f"t{i}": searcher.suggest(f"t{i}") for i in range(4)}
    # Round robin over the searched methods (the control, anti, is never searched).
    assert [_what(c) for c in issued.values()] == ["search:baseline", "search:sharpening"] * 2
    assert searcher.suggest("t4") is None  # every search trial is out and none has ended: wait
    _complete(searcher, "t0", 0.90)
    assert searcher.suggest("t4") is None  # the baseline's second search trial still runs
    _complete(searcher, "t2", 0.95)
    # The baseline's search has ended: its repeats go out while sharpening's search still runs,
    # with its best config (t2's), so no slot waits for the slowest method.
    reruns = [searcher.suggest(f"r{i}") for i in range(2)]
    assert [_what(c) for c in reruns] == ["repeat:baseline:s1", "repeat:baseline:s2"]
    assert all(c["lr"] == issued["t2"]["lr"] for c in reruns)
    assert searcher.suggest("r2") is None and not searcher.search_done()
    _complete(searcher, "t1", 0.97)
    _complete(searcher, "t3", 0.93)
    assert searcher.search_done() and not searcher.finished()  # re-runs are still owed
    sharpening = []
    while (config := searcher.suggest(f"s{len(sharpening)}")) is not Searcher.FINISHED:
        sharpening.append(config)
    assert sorted(_what(c) for c in sharpening) == sorted(
        f"{kind}:s{seed}" for seed in (1, 2) for kind in
        ("repeat:sharpening", "control:baseline~sharpening", "control:anti~sharpening"))
    assert all(c["lr"] == issued["t1"]["lr"] for c in sharpening)  # sharpening's best: t1
    assert not searcher.finished()  # handed out, not yet ended
    for trial_id in ["r0", "r1", *(f"s{i}" for i in range(len(sharpening)))]:
        searcher.on_trial_complete(trial_id, {"val_acc": 0.9, "outcome": "completed"})
    assert searcher.finished()


def test_reruns_that_ended_before_a_resume_are_not_handed_out_again(tmp_path):
    first = _searcher(tmp_path)
    for i in range(4):
        first.suggest(f"t{i}")
        _complete(first, f"t{i}", 0.9 + i / 100)
    resumed = _searcher(tmp_path, done_slots={"repeat:baseline:s1", "control:anti~sharpening:s2"})
    assert resumed.search_done()  # the storage says so: nothing searched again
    slots = []
    while (config := resumed.suggest(f"r{len(slots)}")) is not Searcher.FINISHED:
        slots.append(_what(config))
    assert "repeat:baseline:s1" not in slots and "control:anti~sharpening:s2" not in slots
    assert len(slots) == 2 + 3 * 2 - 2
