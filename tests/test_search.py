"""The searcher's rules, on their own (study/search.py): equal effort by construction, the choice of
each method's config, and the re-runs the choice implies. No training: Optuna in memory."""

from __future__ import annotations

import math

import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from ray.tune.search import Searcher

from search_spaces import bind_space, load_space
from study.search import StudySearcher, choose_best, plan_reruns, rerun_seeds
from trainer.config import CONTROLS, METHODS, SEARCHED, SHARED, TAGS, TrialConfig


def frozen(number: int, value: float | None, state=TrialState.COMPLETE, outcome="completed", val_loss=None):
    attrs = {"outcome": outcome, **({"val_loss": val_loss} if val_loss is not None else {})}
    trial = create_trial(state=state, value=value if state == TrialState.COMPLETE else None,
                         params={"lr": 0.1}, distributions={"lr": FloatDistribution(1e-3, 1.0)}, user_attrs=attrs)
    trial.number = number
    return trial


def test_choose_best_by_validation_accuracy_then_loss_then_the_earliest():
    assert choose_best([]) is None
    trials = [frozen(0, 0.90), frozen(1, 0.95, val_loss=0.30), frozen(2, 0.95, val_loss=0.20), frozen(3, 0.95, val_loss=0.20)]
    assert choose_best(trials).number == 2  # tie on accuracy: lower loss; tie on both: the earlier trial
    # Never a trial whose training did not complete, whatever its value; never a pruned or failed one.
    others = [frozen(4, 0.99, outcome="diverged"), frozen(5, None, state=TrialState.PRUNED),
              frozen(6, None, state=TrialState.FAIL, outcome="failed")]
    assert choose_best(trials + others).number == 2
    assert choose_best(others) is None


def configs(*methods: str) -> dict[str, dict]:
    """A chosen config per method, each with its own shared hyperparameters."""
    return {m: TrialConfig(method=m, lr=0.01 * (i + 1), batch_size=32 * (i + 1)).to_dict() for i, m in enumerate(methods)}


def test_plan_reruns_repeats_every_chosen_config_and_matches_controls_and_baselines():
    best = configs("baseline", "sharpening", "cbs", "learned_theta")
    reruns = plan_reruns(best, METHODS, [1, 2])
    slots = {r.slot: r for r in reruns}
    assert len(slots) == len(reruns)  # every slot unique
    for seed in (1, 2):
        for method in best:  # each chosen config re-run on every seed, unchanged but for the seed
            repeat = slots[f"repeat:{method}:s{seed}"]
            assert repeat.phase == "repeat" and repeat.config == {**best[method], "seed": seed}
        for control in CONTROLS:  # sharpening's config, only the method changed, on the same seeds
            rerun = slots[f"control:{control}~sharpening:s{seed}"]
            assert rerun.matched_to == "sharpening" and rerun.config["method"] == control
            assert {k: rerun.config[k] for k in SHARED} == {k: best["sharpening"][k] for k in SHARED}
        for method in ("sharpening", "cbs", "learned_theta"):  # the baseline at each method's shared values
            rerun = slots[f"control:baseline~{method}:s{seed}"]
            assert rerun.config["method"] == "baseline" and rerun.config["seed"] == seed
            assert {k: rerun.config[k] for k in SHARED} == {k: best[method][k] for k in SHARED}
    assert "control:baseline~baseline:s1" not in slots
    assert len(reruns) == 2 * (4 + len(CONTROLS) + 3)
    # Without the controls or the baseline among the methods, nothing is matched to them.
    only = plan_reruns(best, ("baseline", "sharpening", "cbs", "learned_theta"), [1])
    assert {r.slot.split(":")[1].split("~")[0] for r in only if r.phase == "control"} == {"baseline"}
    assert not [r for r in plan_reruns(best, ("sharpening", "cbs"), [1]) if r.phase == "control"]
    assert rerun_seeds(0, 3) == [1, 2, 3] and rerun_seeds(5, 0) == []


@pytest.fixture
def searcher():
    space = load_space("smoke")
    settings = space.settings.replace(num_samples=3)
    define = bind_space(space, "digits", settings, {"seed": 0, "data_dir": "data"})
    return StudySearcher(define, settings.methods, 3, None, "unit", 0, [1, 2], "val_acc", set())


def test_equal_effort_by_construction_round_robin_then_wait_then_reruns(searcher):
    issued = []
    for index in range(3 * len(SEARCHED)):
        config = searcher.suggest(f"t{index}")
        assert config[TAGS]["phase"] == "search"
        TrialConfig.from_dict({k: v for k, v in config.items() if k != TAGS})  # a valid trial config
        issued.append(config["method"])
    # Round robin in the table's order: after every round each method has had the same number of trials.
    assert issued == list(SEARCHED) * 3
    assert {m: searcher.created(m) for m in SEARCHED} == {m: 3 for m in SEARCHED}
    assert searcher.suggest("early") is None  # the re-runs wait for every search result
    for index, method in enumerate(issued):
        value = 0.5 + 0.01 * index if method != "cbs" else math.nan  # cbs: every trial fails
        searcher.on_trial_complete(f"t{index}", {"val_acc": value, "val_loss": 1.0, "outcome": "completed"})
    assert searcher.search_done()
    best = searcher.best_trials()
    assert "cbs" not in best  # no completed trial: nothing to re-run for it
    assert all(t.number == 2 for t in best.values())  # the last trial of each method scored highest here
    slots = []
    while True:
        config = searcher.suggest(f"r{len(slots)}")
        if config == Searcher.FINISHED:
            break
        slots.append(config[TAGS]["slot"])
    assert slots == [r.slot for r in plan_reruns(searcher.best_configs(), searcher.methods, [1, 2])]
    assert all(s.state == TrialState.FAIL for s in searcher.studies["cbs"].get_trials(deepcopy=False))


def test_the_dry_run_draws_exactly_what_the_search_draws(searcher):
    space = load_space("smoke")
    settings = space.settings.replace(num_samples=3)
    define = bind_space(space, "digits", settings, {"seed": 0, "data_dir": "data"})
    again = StudySearcher(define, settings.methods, 3, None, "unit", 0, [1, 2], "val_acc", set())
    sampled = again.sample_search()
    suggested = {m: [] for m in SEARCHED}
    for index in range(3 * len(SEARCHED)):
        config = searcher.suggest(f"t{index}")
        suggested[config["method"]].append({k: v for k, v in config.items() if k != TAGS})
    assert sampled == suggested
