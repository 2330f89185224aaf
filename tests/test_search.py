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


# ---------------------------------------------------------------------------------------------
# Against a real Optuna SQLite storage: the order trials are handed out in, without Ray training any

FEW = ("baseline", "sharpening", "anti")


def _searcher(tmp_path, done_slots=()):
    space = load_space("smoke")
    settings = space.settings.replace(methods=FEW)
    define = bind_space(space, "digits", settings, {"data_dir": "data", "seed": 0})
    return StudySearcher(define, FEW, 2, f"sqlite:///{tmp_path / 'optuna.db'}", "t-digits", 0, [1, 2],
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


# ---------------------------------------------------------------------------------------------
# The design of issue 28: common random numbers, top-k selection, crossed runs, replicates

from search_spaces import SharedDraws  # noqa: E402
from study.search import (choose_selected, replicate_seed, selection_seeds, slot_prefix,  # noqa: E402
                          with_shared)


def _crn_searcher(sampler="random", storage=None, methods=None, num_samples=4, select_top=1, select=(),
                  crossed=False, done_slots=(), seed=0):
    space = load_space("smoke")
    settings = space.settings.replace(num_samples=num_samples, methods=methods or space.settings.methods,
                                      optimizers=("sgd", "adamw"), batch_sizes=(32, 64, 128))
    define = bind_space(space, "digits", settings, {"seed": seed, "data_dir": "data"})
    return StudySearcher(define, settings.methods, num_samples, storage, "crn", seed, [1, 2], "val_acc",
                         set(done_slots), sampler=sampler, shared=SharedDraws(settings, seed),
                         select_top=select_top, select_seeds=list(select), crossed=crossed)


def _search_round(searcher, count):
    issued = {}
    for index in range(count):
        config = searcher.suggest(f"t{index}")
        issued[f"t{index}"] = config
    return issued


def test_trial_i_of_every_method_has_the_same_shared_hyperparameters():
    searcher = _crn_searcher()
    issued = _search_round(searcher, 4 * len(SEARCHED))
    by_index = {}
    for config in issued.values():
        index = int(config[TAGS]["optuna_trial"])
        by_index.setdefault(index, []).append({k: config[k] for k in SHARED})
    assert sorted(by_index) == [0, 1, 2, 3]
    for index, shared in by_index.items():
        assert len(shared) == len(SEARCHED) and all(s == shared[0] for s in shared), index  # common draws
    assert len({tuple(v[0].values()) for v in by_index.values()}) == 4  # independent draws across indices
    # The method's own fields are its own sampler's: two curricula do not share their draws.
    sharpening = [c for c in issued.values() if c["method"] == "sharpening"]
    assert len({(c["kernel"], c["K"]) for c in sharpening}) >= 1
    # The stream is the seed's: a searcher made again (a resumed study) draws the same values.
    again = _search_round(_crn_searcher(), 4 * len(SEARCHED))
    assert [{k: c[k] for k in SHARED} for c in again.values()] == [{k: c[k] for k in SHARED} for c in issued.values()]
    # Another seed (another replicate) draws other values.
    other = _search_round(_crn_searcher(seed=1000), len(SEARCHED))
    assert {k: other["t0"][k] for k in SHARED} != {k: issued["t0"][k] for k in SHARED}


def test_tpe_does_not_share_the_draws_between_methods():
    issued = _search_round(_crn_searcher(sampler="tpe"), 2 * len(SEARCHED))
    first = [{k: c[k] for k in SHARED} for c in issued.values() if c[TAGS]["optuna_trial"] == "0"]
    assert len({tuple(sorted(s.items())) for s in first}) > 1  # each method's TPE draws its own


def test_the_choice_is_by_the_mean_of_the_selection_seeds_not_the_best_single_seed():
    top = [frozen(4, 0.99), frozen(7, 0.97), frozen(1, 0.96)]
    results = {4: [{"val_acc": 0.90, "val_loss": 0.3}, {"val_acc": 0.99, "val_loss": 0.1}, {"val_acc": 0.90, "val_loss": 0.3}],
               7: [{"val_acc": 0.95, "val_loss": 0.2}, {"val_acc": 0.95, "val_loss": 0.2}, {"val_acc": 0.95, "val_loss": 0.2}],
               1: [{"val_acc": 0.93, "val_loss": 0.2}, {"val_acc": 0.94, "val_loss": 0.2}, {"val_acc": 0.94, "val_loss": 0.2}]}
    assert choose_selected(top, results).number == 7  # 4 has the single best seed (0.99), 7 the best mean
    # A failed selection run scores chance accuracy: a config that breaks loses to one that does not.
    results[7][0] = {"val_acc": None, "val_loss": None}
    assert choose_selected(top, results, chance=0.1).number == 1
    # Ties on the mean: the lower mean loss, then the better search rank.
    tie = {4: [{"val_acc": 0.95, "val_loss": 0.2}], 7: [{"val_acc": 0.95, "val_loss": 0.1}], 1: [{"val_acc": 0.95, "val_loss": 0.1}]}
    assert choose_selected(top, tie).number == 7


def test_selection_runs_then_the_mean_choice_then_reruns_and_a_resume_keeps_every_slot(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    methods = ("baseline", "sharpening", "anti")

    def make(done=()):
        return _crn_searcher(storage=storage, methods=methods, num_samples=3, select_top=2, select=(501, 502),
                             crossed=True, done_slots=done)

    searcher = make()
    issued = _search_round(searcher, 6)
    values = {"baseline": [0.90, 0.95, 0.94], "sharpening": [0.96, 0.91, 0.97]}
    for trial_id, config in issued.items():
        number = int(config[TAGS]["optuna_trial"])
        _complete(searcher, trial_id, values[config["method"]][number])
    # The top 2 of each method by the search (baseline: t1, t2; sharpening: t2, t0), each on 2 selection seeds.
    selection = []
    while isinstance(config := searcher.suggest(f"sel{len(selection)}"), dict) and config[TAGS]["phase"] == "select":
        selection.append((f"sel{len(selection)}", config))
    assert config is None  # nothing else until the choice: the re-runs wait for it
    assert sorted(c[TAGS]["slot"] for _, c in selection) == sorted(
        f"select:{m}:t{t}:s{s}" for m, ts in (("baseline", (1, 2)), ("sharpening", (2, 0))) for t in ts for s in (501, 502))
    assert all(c[TAGS]["config_id"] == f"{c['method']}-t{c[TAGS]['optuna_trial']}" for _, c in selection)
    # Fresh seeds: the runner-up of each method is better on average; the search's best had one lucky seed.
    fresh = {("baseline", 1): 0.91, ("baseline", 2): 0.93, ("sharpening", 2): 0.92, ("sharpening", 0): 0.95}
    # A kill after half of the selection runs: a new driver hands out only the other half.
    half = selection[: len(selection) // 2]
    for trial_id, config in half:
        _complete(searcher, trial_id, fresh[config["method"], int(config[TAGS]["optuna_trial"])])
    resumed = make()
    handed = []  # the baseline's selection has ended: its re-runs go out beside sharpening's selection
    while isinstance(config := resumed.suggest(f"again{len(handed)}"), dict):
        handed.append((f"again{len(handed)}", config))
    again = [(t, c) for t, c in handed if c[TAGS]["phase"] == "select"]
    assert sorted(c[TAGS]["slot"] for _, c in again) == sorted(c[TAGS]["slot"] for _, c in selection[len(half):])
    assert {c["method"] for t, c in handed if c[TAGS]["phase"] != "select"} == {"baseline"}
    for trial_id, config in again:
        _complete(resumed, trial_id, fresh[config["method"], int(config[TAGS]["optuna_trial"])])
    chosen = resumed.best_trials()
    assert {m: t.number for m, t in chosen.items()} == {"baseline": 2, "sharpening": 0}
    rows = resumed.selection_summary("sharpening")
    assert [(r["optuna_trial"], r["search_rank"], r["select_runs"]) for r in rows] == [(2, 1, 2), (0, 2, 2)]
    assert rows[1]["select_val_acc"] == pytest.approx(0.95)
    # The re-runs follow from the mean choice, crossed runs included, and nothing twice.
    reruns = [c for _, c in handed if c[TAGS]["phase"] != "select"]
    while (config := resumed.suggest(f"r{len(reruns)}")) is not Searcher.FINISHED:
        assert config is not None  # every choice is made: nothing to wait for
        reruns.append(config)
    slots = [c[TAGS]["slot"] for c in reruns]
    assert len(slots) == len(set(slots))
    expected = plan_reruns({m: t.user_attrs["config"] for m, t in chosen.items()}, methods, [1, 2], crossed=True)
    assert sorted(slots) == sorted(r.slot for r in expected)
    crossed = [c for c in reruns if c[TAGS]["slot"].startswith("control:sharpening~baseline")]
    assert len(crossed) == 2 and all(c[TAGS]["matched_to"] == "baseline" for c in crossed)
    baseline_config = chosen["baseline"].user_attrs["config"]
    assert all({k: c[k] for k in SHARED} == {k: baseline_config[k] for k in SHARED} for c in crossed)
    assert all(c["kernel"] == chosen["sharpening"].user_attrs["config"]["kernel"] for c in crossed)
    assert not resumed.finished()
    for trial_id in [t for t, c in handed if c[TAGS]["phase"] != "select"] + [f"r{i}" for i in range(len(reruns))]:
        resumed.on_trial_complete(trial_id, {"val_acc": 0.9, "outcome": "completed"})
    assert resumed.finished()


def test_crossed_runs_pair_each_curriculum_at_the_baselines_shared_values_on_its_seeds():
    best = configs("baseline", "sharpening", "cbs")
    reruns = {r.slot: r for r in plan_reruns(best, METHODS, [1, 2], crossed=True)}
    for method in ("sharpening", "cbs"):
        for seed in (1, 2):
            run = reruns[f"control:{method}~baseline:s{seed}"]
            assert run.config == {**with_shared(best[method], best["baseline"]), "seed": seed}
            assert run.matched_to == "baseline" and f"repeat:baseline:s{seed}" in reruns
    assert "control:baseline~baseline:s1" not in reruns
    assert len(reruns) == len(plan_reruns(best, METHODS, [1, 2])) + 2 * 2
    assert not [s for s in plan_reruns({k: best[k] for k in ("sharpening", "cbs")}, METHODS, [1], crossed=True)
                if s.matched_to == "baseline" and s.phase == "control" and s.config["method"] != "baseline"]


def test_replicates_have_their_own_seeds_and_slots():
    assert rerun_seeds(0, 3, replicate=1) == [1001, 1002, 1003] and replicate_seed(7, 2) == 2007
    assert selection_seeds(0, 3) == [501, 502, 503] and selection_seeds(0, 2, replicate=2) == [2501, 2502]
    seeds = {s for r in range(3) for s in rerun_seeds(0, 499, r) + selection_seeds(0, 499, r) + [replicate_seed(0, r)]}
    assert len(seeds) == 3 * (499 + 499 + 1)  # no seed shared between replicates, kinds or the search
    assert slot_prefix(0) == "" and slot_prefix(2) == "r2/"
    assert plan_reruns(configs("baseline"), ("baseline",), [1001], prefix="r1/")[0].slot == "r1/repeat:baseline:s1001"



# ---------------------------------------------------------------------------------------------
# Issue 23: auto seeds — more seeds only where a comparison is still open, looks replayed on resume

from study import sequential  # noqa: E402
from study.search import slot_group  # noqa: E402

LOOKS = (3, 6, 9)
NOISE = {  # per seed: small at the first look's seeds, where the clear comparisons must resolve
    "sharpening": [0.0001, -0.0001, 0.0002, 0.02, -0.02, 0.005, -0.005, 0.01, -0.01],
    "matched": [-0.01, 0.012, -0.02, 0.018, 0.0, 0.01, -0.015, 0.02, 0.003],
}


def _test_acc(slot: str) -> float:
    """What each side scores: sharpening far above the baseline (tuned: better), far above anti
    (controls: better), the crossed run within a hair of the baseline (crossed: equivalent), and
    the matched baseline as noisy as sharpening around the same mean (matched: stays open)."""
    group, seed = slot_group(slot), int(slot.rsplit(":s", 1)[1])
    sharpening = 0.95 + NOISE["sharpening"][seed - 1]
    return {"repeat:sharpening": sharpening,
            "control:anti~sharpening": sharpening - 0.10 - 0.0001 * seed,
            "repeat:baseline": 0.50 + 0.0001 * seed,
            "control:sharpening~baseline": 0.50 + 0.0001 * seed + 0.0001 * (seed % 2),
            "control:baseline~sharpening": 0.95 + NOISE["matched"][seed - 1]}[group]


def _auto_searcher(storage, done=None):
    space = load_space("smoke")
    methods = ("baseline", "sharpening", "anti")
    settings = space.settings.replace(methods=methods)
    define = bind_space(space, "digits", settings, {"seed": 0, "data_dir": "data"})
    return StudySearcher(define, methods, 2, storage, "auto", 0, rerun_seeds(0, LOOKS[-1]), "val_acc",
                         done if done is not None else {}, shared=SharedDraws(settings, 0), crossed=True,
                         looks=LOOKS, chance=0.1)


def _drive(searcher, stop_after=None):
    """Run the searcher as Tune would, every trial ending at once; returns the re-runs' configs by
    slot (and stops handing out after `stop_after` re-runs have ended: a kill)."""
    ended, index = {}, 0
    while (config := searcher.suggest(f"x{index}")) is not Searcher.FINISHED:
        assert config is not None  # every trial ends at once: there is never anything to wait for
        tags, trial_id = config[TAGS], f"x{index}"
        index += 1
        if tags["phase"] == "search":
            _complete(searcher, trial_id, 0.9 + 0.01 * int(tags["optuna_trial"]))
            continue
        searcher.on_trial_complete(trial_id, {"val_acc": 0.9, "test_acc": _test_acc(tags["slot"]),
                                              "outcome": "completed"})
        ended[tags["slot"]] = config
        if stop_after is not None and len(ended) >= stop_after:
            break
    return ended


def test_auto_seeds_add_seeds_only_where_a_comparison_is_open_and_on_both_of_its_sides(tmp_path):
    searcher = _auto_searcher(f"sqlite:///{tmp_path / 'optuna.db'}")
    ended = _drive(searcher)
    assert searcher.finished()
    verdicts = {row["comparison"]: (row["verdict"], row["seeds"]) for row in searcher.sequential_summary()}
    assert verdicts == {"tuned:sharpening~baseline": ("better", 3), "matched:sharpening~baseline": ("inconclusive", 9),
                        "crossed:sharpening~baseline": ("equivalent", 3), "controls:sharpening~anti": ("better", 3)}
    seeds = {}
    for slot in ended:
        seeds.setdefault(slot_group(slot), []).append(int(slot.rsplit(":s", 1)[1]))
    # The open comparison's two sides got every look's seeds (the same ones: still paired); a side
    # that only closed comparisons use stopped at the first look, although sharpening went on.
    assert {g: sorted(s) for g, s in seeds.items()} == {
        "repeat:sharpening": list(range(1, 10)), "control:baseline~sharpening": list(range(1, 10)),
        "repeat:baseline": [1, 2, 3], "control:sharpening~baseline": [1, 2, 3], "control:anti~sharpening": [1, 2, 3]}
    assert {slot: c[TAGS]["look"] for slot, c in ended.items() if slot_group(slot) == "repeat:sharpening"} == {
        f"repeat:sharpening:s{s}": str((s - 1) // 3 + 1) for s in range(1, 10)}
    # The decisions are the design's, look by look, on the runs' own numbers.
    matched = searcher.decisions["matched:sharpening~baseline"]
    design = sequential.design(LOOKS, alpha=0.05)
    a = [_test_acc(f"repeat:sharpening:s{s}") for s in range(1, 10)]
    b = [_test_acc(f"control:baseline~sharpening:s{s}") for s in range(1, 10)]
    assert [d.verdict for d in matched] == [d.verdict for d in sequential.path(design, a, b, paired=True)]
    assert [d.verdict for d in matched] == ["continue", "continue", "inconclusive"]


def test_a_resumed_auto_study_replays_its_looks_and_trains_only_what_is_missing(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    whole = _drive(_auto_searcher(f"sqlite:///{tmp_path / 'whole.db'}"))
    first = _auto_searcher(storage)
    before = _drive(first, stop_after=17)  # killed after the first look (15 runs) and two of the second's
    assert len(before) == 17 and any(c[TAGS]["look"] == "2" for c in before.values())
    done = {slot: _test_acc(slot) for slot in before}
    resumed = _auto_searcher(storage, done)
    after = _drive(resumed)
    assert not set(after) & set(before)  # no seed trained twice
    assert set(before) | set(after) == set(whole)  # no look skipped, nothing more
    assert [(r["comparison"], r["verdict"], r["seeds"]) for r in resumed.sequential_summary()] == [
        ("tuned:sharpening~baseline", "better", 3), ("matched:sharpening~baseline", "inconclusive", 9),
        ("crossed:sharpening~baseline", "equivalent", 3), ("controls:sharpening~anti", "better", 3)]


def test_a_failed_or_diverged_rerun_scores_chance_in_the_looks(tmp_path):
    searcher = _auto_searcher(f"sqlite:///{tmp_path / 'optuna.db'}")
    index = 0
    while (config := searcher.suggest(f"x{index}")) is not Searcher.FINISHED:
        tags, trial_id = config[TAGS], f"x{index}"
        index += 1
        if tags["phase"] == "search":
            _complete(searcher, trial_id, 0.9)
        elif tags["slot"].startswith("control:anti~sharpening"):  # every anti run fails or diverges
            if tags["slot"].endswith(":s1"):
                searcher.on_trial_complete(trial_id, error=True)
            else:  # a diverged run's last test accuracy is whatever the blow-up left: chance, as the report
                searcher.on_trial_complete(trial_id, {"test_acc": 0.5, "outcome": "diverged"})
        else:
            searcher.on_trial_complete(trial_id, {"test_acc": _test_acc(tags["slot"]), "outcome": "completed"})
    assert searcher.scores["control:anti~sharpening:s1"] == searcher.scores["control:anti~sharpening:s2"] == 0.1
    assert {r["comparison"]: r["verdict"] for r in searcher.sequential_summary()}["controls:sharpening~anti"] == "better"


def test_the_reports_replay_of_the_looks_is_what_the_searcher_decided(tmp_path):
    """analysis.looks replays the looks from the runs alone (the report's side of the wall): the
    verdicts, seeds and looks are the searcher's, and a cap-reached comparison gets its seed counts."""
    import pandas as pd

    from analysis import looks

    searcher = _auto_searcher(f"sqlite:///{tmp_path / 'optuna.db'}")
    ended = _drive(searcher)
    trials = pd.DataFrame([{"phase": c[TAGS]["phase"], "method": c["method"], "dataset": "digits", "seed": c["seed"],
                            "outcome": "completed", "slot": slot, "matched_to": c[TAGS]["matched_to"] or math.nan,
                            "test_acc": _test_acc(slot), "train_seconds": 2.0, "look": c[TAGS]["look"]}
                           for slot, c in ended.items()])
    params = {"auto_seeds": "True", "seed_repeats": "3", "max_seeds": "9", "crossed": "True",
              "methods": '["baseline", "sharpening", "anti"]'}
    table, paths = looks.replay(trials, params)
    assert [(r.comparison, r.verdict, r.seeds, r.looks_made) for r in table.itertuples()] == [
        (row["comparison"], row["verdict"], row["seeds"], row["looks"]) for row in searcher.sequential_summary()]
    matched = table[table["comparison"] == "matched:sharpening~baseline"].iloc[0]
    assert matched["train_seconds"] == 2.0 * 2 * 9 and matched["more_to_detect"] > 0
    assert list(paths[paths["comparison"] == "matched:sharpening~baseline"]["seeds"]) == [3, 6, 9]
    tuned = paths[paths["comparison"] == "tuned:sharpening~baseline"]  # stopped at look 1: bounds only after
    assert list(tuned["verdict"]) == ["better", "", ""] and tuned["z"].isna().tolist() == [False, True, True]
    assert looks.summary_line(table).startswith("3 of 4 comparisons resolved (better 2, equivalent 1), 1 reached")
    assert looks.replay(trials, {**params, "auto_seeds": "False"})[0].empty  # a fixed-seed study: nothing to replay
