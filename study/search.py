"""What the study trains, in order: an equal search per method, the selection of each method's
top configs on fresh seeds, then the matched re-runs.

`StudySearcher` is the one Ray Tune searcher of a (dataset, regime, replicate), so every stage
runs in one Tune run and trial actors stay warm between them:

1. **Search.** One Optuna study per method, and *the same number of trials for every searched
   method*: the searcher hands out trials round-robin over the methods, so search effort never
   follows the results. By default (`sampler="random"`) it is a random search with **common
   random numbers**: trial i of every method gets the same draw of the shared hyperparameters
   (optimizer, lr, weight decay, batch size: `search_spaces.SharedDraws`, one seeded stream,
   fixed on the trial through Optuna's enqueue) and its own fields (K, kernel, θ schedule, σ...)
   from the method's own seeded random sampler. A difference between methods is then not a
   difference in the learning rates they happened to draw, and the draws stay independent, as
   the tuning curves' bands (`opda`) assume. `sampler="tpe"` runs Optuna's multivariate TPE per
   method instead (its first `TPE_STARTUP` trials are random: with fewer trials per method it
   *is* a random search, without common draws), for a user who wants the best config.
2. **Selection.** Once a method's search has ended, its top `select_top` trials (validation
   accuracy, then loss, then the earliest) are re-run on `select_seeds` fresh seeds, and the
   method's config is the one with the best *mean* validation accuracy over them — not the best
   single search trial, whose value on one seed is inflated by the maximum over the search
   (the winner's curse). Selection runs are phase `select`; their numbers are kept in the method's
   Optuna study (user attributes), which resume reads back.
3. **Re-runs** of a method, once it is chosen — while other methods still search or select, so no
   slot idles between the stages (on 1-second trials an idle slot lost its Ray actor): the chosen
   config with fresh test seeds (`repeat`); the controls (anti, random_order, blur_aug) as
   sharpening's config with only `method` changed, on sharpening's seeds (`control`,
   matched_to=sharpening); for every curriculum a matched baseline, the baseline at that
   method's chosen shared hyperparameters on its seeds (`control`, method baseline,
   matched_to=<method>); and, crossed (`crossed`), the curriculum at the *baseline's* chosen
   shared hyperparameters on the same seeds (`control`, matched_to=baseline). Same seeds on both
   sides: paired tests.

4. **Looks** (`looks`, `--seeds auto`): the re-runs start with the first look's seeds; each
   comparison of `study.sequential.planned_comparisons` is judged by its family's group-sequential
   design once both sides have ended on that look's seeds, and one still open adds the next
   batch of seeds *to both of its sides* (the same seeds: pairs stay paired), up to the cap. A
   side (a group of slots, e.g. "repeat:baseline") gets more seeds only while a comparison that
   uses it is open. The decisions are replayed from the ended runs' test accuracies (failed:
   chance), so a resumed driver re-derives every look from the runs and trains only slots not yet
   ended: no seed twice, no look skipped. Re-runs carry the look that added their seed (`look`).

A whole-pipeline replicate r has its own searcher: its seeds are `replicate_seed(seed, r)` and
above (search trials on it, test seeds +1.., selection seeds +501..), its slots are prefixed
"r<r>/", its Optuna studies end in "-r<r>" and its data split is redrawn (`trainer.data`).

The Optuna storage is the search's record; resume reads it back: finished trials stay finished,
and a trial the previous driver left RUNNING (lost with it) is run again *under the same Optuna
trial*, so every study ends with exactly `num_samples` finished trials per method and nothing
RUNNING or WAITING; selection runs recorded in the study are not run again; re-runs already ended
(their MLflow runs say so) are not trained again. The two records agree across a kill: the
searcher records a trial's end in Optuna only once its MLflow run holds all it reported
(`settle`), and a resume deletes the runs of the trials it trains again (`unrecorded_runs`), so
every recorded trial has its whole run and none has two. Each Tune config is a trial config plus `_tags`
(phase, slot, matched_to, Optuna trial, config id, replicate), which the trainable strips and
the MLflow callback turns into tags.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from trainer.config import DATASET_CLASSES, METHOD_TABLE, SEARCHED, SHARED, TAGS, TrialConfig

from . import sequential
from .record import SAMPLERS, TPE_STARTUP


REPLICATE_STRIDE = 1000  # replicate r's seeds live in seed + 1000·r + (0 search, 1..499 test, 501..999 selection)
SELECT_OFFSET = 500


def replicate_seed(seed: int, replicate: int) -> int:
    """The base seed of a whole-pipeline replicate: its search trials train on it, its sampler and
    shared draws are seeded from it (replicate 0: the study's seed)."""
    return seed + REPLICATE_STRIDE * replicate


def study_prefix(name: str, key: str, replicate: int) -> str:
    """The Optuna study names of a (study, key, replicate) start with this; "-<method>" ends them."""
    return f"{name}-{key}{f'-r{replicate}' if replicate else ''}"


def slot_prefix(replicate: int) -> str:
    """Slots are unique within a study key: replicate r ≥ 1 prefixes its own with "r<r>/"."""
    return f"r{replicate}/" if replicate else ""


@dataclass(frozen=True)
class Rerun:
    """One planned re-run: its slot key (unique within a study key), phase, config and pairing; a
    selection run also names the search trial (`candidate`, its Optuna number) it re-runs."""
    slot: str
    phase: str  # "select", "repeat" or "control"
    config: dict
    matched_to: str = ""
    candidate: int | None = None


def _rank(trial: optuna.trial.FrozenTrial) -> tuple:
    """The search's order: validation accuracy, then validation loss (ties on small validation sets
    are common), then the earliest trial."""
    return -trial.value, trial.user_attrs.get("val_loss", math.inf), trial.number


def top_trials(trials: list[optuna.trial.FrozenTrial], k: int) -> list[optuna.trial.FrozenTrial]:
    """The k best COMPLETE trials whose training completed, best first (`_rank`)."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("outcome") == "completed"]
    return sorted(done, key=_rank)[:k]


def choose_best(trials: list[optuna.trial.FrozenTrial]) -> optuna.trial.FrozenTrial | None:
    """The best COMPLETE trial whose training completed, by the search's own numbers (`_rank`)."""
    top = top_trials(trials, 1)
    return top[0] if top else None


def selection_scores(results: list[dict], chance: float = 0.0) -> tuple[float, float]:
    """(mean validation accuracy, mean validation loss) of a candidate's selection runs; a run that
    failed or diverged without a finite value scores `chance` accuracy (as the report scores every
    failed run) and loss +inf: a config that breaks is a poor choice."""
    def finite(value, default):
        return float(value) if value is not None and math.isfinite(float(value)) else default
    accuracy = [finite(r.get("val_acc"), chance) for r in results]
    loss = [finite(r.get("val_loss"), math.inf) for r in results]
    return sum(accuracy) / len(accuracy), sum(loss) / len(loss)


def choose_selected(candidates: list[optuna.trial.FrozenTrial], results: dict[int, list[dict]], chance: float = 0.0):
    """The candidate with the highest *mean* validation accuracy over its fresh selection seeds
    (`results`: Optuna trial number → its runs' {"val_acc", "val_loss"}), then the lower mean
    validation loss, then the better search rank. Never the single luckiest seed: the search's own
    value (one seed) is what the re-runs correct, so it is not averaged in."""
    def key(item):
        accuracy, loss = selection_scores(results[item[1].number], chance)
        return -accuracy, loss, item[0]
    return min(enumerate(candidates), key=key)[1]


def ask(study: optuna.Study, define: Callable, method: str, shared: dict | None = None) -> tuple[optuna.trial.Trial, dict]:
    """A new trial of a method's study and its whole config: the define-by-run space suggests the
    method's own fields and the shared ones (filling `trial.params`), and returns the constants.
    `shared`: the common random numbers of this trial index, fixed on the trial before it is asked
    (Optuna's enqueue: the sampler draws only the method's own fields)."""
    if shared is not None:
        study.enqueue_trial(shared, skip_if_exists=False)
    trial = study.ask()
    constants = define(trial, method)  # suggests first: trial.params is filled by it
    return trial, {**trial.params, **constants}


def rerun_seeds(seed: int, repeats: int, replicate: int = 0) -> list[int]:
    """The test seeds of a replicate's re-runs: its search trials train on its base seed, the
    re-runs on base+1..base+repeats (unique across replicates, so pairing by seed stays within one)."""
    base = replicate_seed(seed, replicate)
    return list(range(base + 1, base + 1 + repeats))


def selection_seeds(seed: int, count: int, replicate: int = 0) -> list[int]:
    """The seeds the top configs are re-run on before the choice: apart from the test seeds, so the
    choice and the measurement never share a training run."""
    base = replicate_seed(seed, replicate) + SELECT_OFFSET
    return list(range(base + 1, base + 1 + count))


def with_shared(config: dict, shared_from: dict) -> dict:
    """`config` with the shared hyperparameters (optimizer, lr, weight decay, batch size) of another."""
    return {**config, **{name: shared_from[name] for name in SHARED}}


def plan_reruns(best: dict[str, dict], methods: tuple[str, ...], seeds: list[int], crossed: bool = False,
                prefix: str = "") -> list[Rerun]:
    """Every re-run the study owes once the search has chosen `best` (method → config dict)."""
    reruns = []
    for method, config in best.items():
        chosen = TrialConfig.from_dict(config)
        tested = METHOD_TABLE[method].role in ("curriculum", "variant")
        for seed in seeds:
            reruns.append(Rerun(f"{prefix}repeat:{method}:s{seed}", "repeat", {**config, "seed": seed}))
            if tested and "baseline" in methods:
                reruns.append(Rerun(f"{prefix}control:baseline~{method}:s{seed}", "control",
                                    {**chosen.with_method("baseline"), "seed": seed}, method))
            if tested and crossed and "baseline" in best:  # crossed: the curriculum at the baseline's choice
                reruns.append(Rerun(f"{prefix}control:{method}~baseline:s{seed}", "control",
                                    {**with_shared(config, best["baseline"]), "seed": seed}, "baseline"))
            for control in methods:
                if METHOD_TABLE[control].matched_to == method:
                    reruns.append(Rerun(f"{prefix}control:{control}~{method}:s{seed}", "control",
                                        {**chosen.with_method(control), "seed": seed}, method))
    return reruns


def plan_selection(method: str, candidates: list[optuna.trial.FrozenTrial], seeds: list[int],
                   prefix: str = "") -> list[Rerun]:
    """The selection runs of a method: each candidate's config on each selection seed."""
    return [Rerun(f"{prefix}select:{method}:t{t.number}:s{seed}", "select", {**t.user_attrs["config"], "seed": seed},
                  candidate=t.number) for t in candidates for seed in seeds]


def _selection_attr(number: int, seed: int) -> str:
    return f"select:t{number}:s{seed}"


def planned_totals(settings, seeds: list[int], select: list[int]) -> dict[str, int]:
    """How many runs a (dataset, regime, replicate) trains per stage: the search, the selection of
    the top configs, the re-runs (repeats, controls, matched and crossed runs)."""
    searched = [m for m in settings.methods if m in SEARCHED]
    top = min(settings.select_top, settings.num_samples)
    placeholder = {m: TrialConfig(method=m).to_dict() for m in searched}
    return {"search": settings.num_samples * len(searched),
            "selection": len(searched) * top * len(select) if top > 1 else 0,
            "re-runs": len(plan_reruns(placeholder, settings.methods, seeds, settings.crossed))}


def most_reruns(settings) -> int:
    """The re-runs of a (dataset, regime, replicate) with auto seeds when every comparison runs to the
    cap: the most they can train (with fixed seeds, the re-runs)."""
    count = settings.max_seeds if settings.auto_seeds else settings.seed_repeats
    return planned_totals(settings, list(range(count)), [])["re-runs"]


def build_searcher(plan, dataset: str, regime, replicate: int, storage: str | None, done_slots=frozenset(),
                   settle: Callable[[str, bool], str | None] = lambda trial_id, failed: None,
                   name_prefix: str | None = None):
    """The searcher of one (dataset, regime, replicate) of a study plan (`study.plan.Plan`): its
    space bound to the dataset, the replicate's seeds, the recorded sampler and the space's
    selection, crossed runs and looks. `done_slots`: the re-run slots that have ended (a set), or
    slot → its test accuracy (None: failed), which auto seeds replay their looks from. Used by the
    study and by its dry run alike."""
    from search_spaces import SharedDraws, bind_space
    from .record import study_key

    settings, key = plan.settings.for_regime(regime), study_key(dataset, regime.name)
    seed = plan.record.seed
    base = replicate_seed(seed, replicate)
    prefix = name_prefix or study_prefix(plan.name, key, replicate)
    define = bind_space(plan.space, dataset, settings,
                        {"data_dir": plan.record.data_dir, "seed": base, "replicate": replicate})
    looks = auto_looks(settings)
    return StudySearcher(
        define, settings.methods, settings.num_samples, storage, prefix, base,
        rerun_seeds(seed, looks[-1] if looks else settings.seed_repeats, replicate), settings.metric, done_slots,
        settle, tags={"regime": regime.name, "replicate": str(replicate)}, sampler=plan.record.sampler,
        shared=SharedDraws(settings, base), select_top=settings.select_top,
        select_seeds=selection_seeds(seed, settings.select_seeds, replicate), crossed=settings.crossed,
        prefix=slot_prefix(replicate), looks=looks, chance=1.0 / DATASET_CLASSES[dataset])


def unrecorded_runs(storage: str, runs: dict) -> set[str]:
    """Of a study's MLflow runs (Tune trial id → run), the search and selection runs whose ending
    the Optuna storage does not hold. A resumed study trains those again (a search trial under its
    Optuna trial, a selection run in its slot), so their runs go, whatever they had logged; the
    searcher records a trial only once its run holds what it reported (`StudySearcher.settle`), so
    a run the storage holds is whole."""
    studies: dict[str, tuple[list, dict] | None] = {}  # name → (its trials, its user attributes), read once
    unrecorded = set()
    for trial_id, run in runs.items():
        tags = run.data.tags
        if tags.get("phase") not in ("search", "select") or "optuna_study" not in tags:
            continue
        name, number = tags["optuna_study"], int(tags["optuna_trial"])
        if name not in studies:
            try:
                study = optuna.load_study(study_name=name, storage=storage)
                studies[name] = (study.get_trials(deepcopy=False), study.user_attrs)
            except KeyError:  # the driver died before the study was made
                studies[name] = None
        if studies[name] is None:
            recorded = False
        elif tags["phase"] == "search":
            trials = studies[name][0]
            recorded = number < len(trials) and trials[number].state.is_finished()
        else:
            recorded = _selection_attr(number, int(tags["seed"])) in studies[name][1]
        if not recorded:
            unrecorded.add(trial_id)
    return unrecorded


def auto_looks(settings) -> tuple[int, ...]:
    """The looks of a space's auto seeds (study.sequential), or () for a fixed number of seeds."""
    return sequential.sequential_looks(settings.seed_repeats, settings.max_seeds) if settings.auto_seeds else ()


def slot_group(slot: str, prefix: str = "") -> str:
    """A re-run slot's group, the side of a comparison it belongs to: "r1/repeat:cbs:s1003" → "repeat:cbs"."""
    return slot[len(prefix):].rsplit(":s", 1)[0]


class StudySearcher(Searcher):
    """Per-method searches in lockstep, the top-k selection, then the planned re-runs (module doc)."""

    def __init__(self, define: Callable, methods: tuple[str, ...], num_samples: int, storage: str | None,
                 study_prefix: str, seed: int, seeds: list[int], metric: str, done_slots: set[str] | dict,
                 settle: Callable[[str, bool], str | None] = lambda trial_id, failed: None,
                 tags: dict | None = None, *,
                 sampler: str = "random", shared: Callable[[int], dict] | None = None, select_top: int = 1,
                 select_seeds: list[int] | None = None, crossed: bool = False, prefix: str = "",
                 looks: tuple[int, ...] = (), chance: float = 0.0):
        super().__init__(metric=metric, mode="max")
        if sampler not in SAMPLERS:
            raise ValueError(f"sampler: {sampler!r} is not one of {', '.join(SAMPLERS)}")
        if looks and len(seeds) < looks[-1]:
            raise ValueError(f"seeds: the looks {looks} need {looks[-1]} test seeds, got {len(seeds)}")
        self.define, self.num_samples = define, num_samples
        self.all_seeds = list(seeds)  # every test seed a side may get: the cap's, with looks
        self.seeds = self.all_seeds[:looks[0]] if looks else self.all_seeds  # the first look's
        self.methods = methods
        self.searched = tuple(m for m in methods if m in SEARCHED)
        self.done_slots = set(done_slots)
        # Auto seeds (`looks`): each comparison judged by its family's design as its seeds end.
        self.looks, self.chance = tuple(looks), chance
        self.comparisons = sequential.planned_comparisons(methods, crossed) if looks else []
        self.designs = sequential.family_designs(self.comparisons, self.looks) if looks else {}
        self.scores: dict[str, float] = {}  # re-run slot → its test accuracy, failed runs at chance
        for slot, value in (done_slots.items() if isinstance(done_slots, dict) else ()):
            self._score(slot, value)
        self.group_seeds: dict[str, int] = {}  # a side's seeds planned so far (beyond the first look's)
        self.decisions: dict[str, list[sequential.Decision]] = {c.name: [] for c in self.comparisons}
        # Tune trial id, failed? → its MLflow run id, once that run holds all the trial reported and,
        # failed, its outcome (the tracking callback's `settle`). MLflow first, the Optuna record
        # second: a driver killed between the two leaves an unrecorded run, which a resume deletes
        # (`unrecorded_runs`) and trains again, never a recorded trial without its run.
        self.settle = settle
        self.tags = dict(tags or {})  # on every trial's run, e.g. its regime and replicate
        self.shared = shared if sampler == "random" else None
        self.select_top, self.select_seeds = select_top, list(select_seeds or [])
        self.crossed, self.prefix = crossed, prefix
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        self.studies = {}
        for index, method in enumerate(self.searched):
            if sampler == "tpe":
                chosen_sampler = optuna.samplers.TPESampler(seed=seed + index, multivariate=True, group=True,
                                                            constant_liar=True, n_startup_trials=TPE_STARTUP)
            else:  # the method's own fields; the shared ones are the common draws (`shared`)
                chosen_sampler = optuna.samplers.RandomSampler(seed=seed + 1 + index)
            self.studies[method] = optuna.create_study(
                study_name=f"{study_prefix}-{method}", storage=storage, direction="maximize",
                sampler=chosen_sampler, load_if_exists=True)
        # Trials a dead driver left RUNNING: no Tune trial trains them any more.
        self.orphans = {m: [t for t in s.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
                        for m, s in self.studies.items()}
        self.live: dict[str, tuple[str, optuna.trial.Trial | None, Rerun | None]] = {}
        self.reruns: list[Rerun] = []  # planned, not yet handed out
        self.planned: set[str] = set()  # methods whose search has ended (selection or re-runs planned)
        self.chosen: dict[str, dict] = {}  # method → its chosen config, once chosen
        self.settled: set[str] = set()  # methods chosen, or with no completed trial to choose
        self.planned_slots: set[str] = set()
        self.selecting: dict[str, set[str]] = {}  # method → selection slots not yet ended
        # Trials asked per method: the storage's count at the start plus this searcher's asks
        # (a query per method per suggest cost the driver ~4 s of CPU in a smoke study).
        self.asked = {m: len(s.get_trials(deepcopy=False)) for m, s in self.studies.items()}

    @property
    def selects(self) -> bool:
        return self.select_top > 1 and bool(self.select_seeds)

    def sample_search(self) -> dict[str, list[dict]]:
        """Every search trial's config, drawn exactly as `suggest` draws them, without training:
        the dry run (on an in-memory storage). Trials stay open; nothing is told to Optuna."""
        sampled: dict[str, list[dict]] = {m: [] for m in self.searched}
        for index in range(self.num_samples * len(self.searched)):
            config = self.suggest(f"dry-run-{index}")
            if not isinstance(config, dict):
                break
            config = dict(config)
            config.pop(TAGS)
            sampled[config["method"]].append(config)
        return sampled

    # --- counts ---------------------------------------------------------------------------
    def created(self, method: str) -> int:
        return self.asked[method]

    def method_search_done(self, method: str) -> bool:
        """The method has its num_samples trials and none is running or waiting to re-run."""
        study = self.studies[method].study_name
        return self.created(method) >= self.num_samples and not self.orphans[method] and not any(
            kind == "search" and trial.study.study_name == study for kind, trial, _ in self.live.values())

    def search_done(self) -> bool:
        """Every method has its num_samples trials and none is running or waiting to re-run."""
        return all(self.method_search_done(m) for m in self.searched)

    def exhausted(self) -> bool:
        """Nothing more will be handed out: the search has ended, every method is chosen (or has
        nothing to choose) and every run the choices owe has been handed out — with auto seeds, also
        no run still training whose end could open another look."""
        return self.search_done() and self.settled == set(self.searched) and not self.reruns and (
            not self.looks or not self.live or all(self.closed(c) for c in self.comparisons))

    def finished(self) -> bool:
        """Exhausted, and every run handed out has ended."""
        return self.exhausted() and not self.live

    def finished_search_trials(self) -> int:
        return sum(1 for s in self.studies.values() for t in s.get_trials(deepcopy=False)
                   if t.state.is_finished())

    # --- the choice -----------------------------------------------------------------------------
    def candidates(self, method: str) -> list[optuna.trial.FrozenTrial]:
        """The method's top configs by the search (one when it does not select)."""
        return top_trials(self.studies[method].get_trials(deepcopy=False), self.select_top if self.selects else 1)

    def selection_results(self, method: str) -> dict[int, list[dict]]:
        """Optuna trial number → the ended selection runs of that candidate (the method study's
        user attributes: the Optuna storage is the search's record, read back on resume)."""
        attrs = self.studies[method].user_attrs
        return {t.number: [attrs[_selection_attr(t.number, seed)] for seed in self.select_seeds
                           if _selection_attr(t.number, seed) in attrs] for t in self.candidates(method)}

    def choice(self, method: str) -> optuna.trial.FrozenTrial | None:
        """The method's chosen search trial: by mean validation accuracy over the selection seeds
        when it selects among several candidates (None until every selection run has ended), else
        the search's best."""
        candidates = self.candidates(method)
        if len(candidates) <= 1 or not self.selects:
            return candidates[0] if candidates else None
        results = self.selection_results(method)
        if any(len(runs) < len(self.select_seeds) for runs in results.values()):
            return None
        return choose_selected(candidates, results, self._chance(candidates[0]))

    @staticmethod
    def _chance(trial: optuna.trial.FrozenTrial) -> float:
        return 1.0 / DATASET_CLASSES[trial.user_attrs["config"]["dataset"]]

    def _plan(self, method: str) -> None:
        """The method's search has ended: its selection runs, or (nothing to select) its choice."""
        self.planned.add(method)
        candidates = self.candidates(method)
        if len(candidates) > 1 and self.selects:
            attrs = self.studies[method].user_attrs
            runs = [r for r in plan_selection(method, candidates, self.select_seeds, self.prefix)
                    if _selection_attr(r.candidate, r.config["seed"]) not in attrs]
            self.selecting[method] = {r.slot for r in runs}
            self.reruns += runs
        self._settle_if_selected(method)

    def _settle_if_selected(self, method: str) -> None:
        if self.selecting.get(method):
            return
        chosen = self.choice(method)
        self.settled.add(method)
        if chosen is None:
            return
        self.chosen[method] = chosen.user_attrs["config"]
        self._owe(plan_reruns(self.chosen, self.methods, self.seeds, self.crossed, self.prefix))
        self._advance()

    def _owe(self, reruns: list[Rerun]) -> None:
        """Plan re-runs once each; those a previous driver ended are not handed out again."""
        fresh = [r for r in reruns if r.slot not in self.planned_slots]
        self.planned_slots.update(r.slot for r in fresh)
        self.reruns += [r for r in fresh if r.slot not in self.done_slots]

    # --- auto seeds: the looks --------------------------------------------------------------------
    def _score(self, slot: str, value) -> None:
        ok = value is not None and math.isfinite(float(value))
        self.scores[slot] = float(value) if ok else self.chance

    def closed(self, comparison: sequential.Comparison) -> bool:
        decisions = self.decisions[comparison.name]
        return bool(decisions) and decisions[-1].stop

    def _side(self, group: str, count: int) -> list[float] | None:
        """A side's scores on the first `count` seeds, or None while one of them has not ended."""
        slots = [f"{self.prefix}{group}:s{seed}" for seed in self.all_seeds[:count]]
        return [self.scores[s] for s in slots] if all(s in self.scores for s in slots) else None

    def _advance(self) -> None:
        """Judge every open comparison whose next look's runs have all ended; one that continues
        owes the next batch of seeds on both its sides. Repeats until nothing changes, so a resumed
        driver replays every look its ended runs allow."""
        changed = bool(self.looks)
        while changed:
            changed = False
            for comparison in self.comparisons:
                decisions = self.decisions[comparison.name]
                if self.closed(comparison) or not self._configs_known(comparison):
                    continue
                k = len(decisions)
                n = self.looks[k]
                a, b = self._side(comparison.left, n), self._side(comparison.right, n)
                if a is None or b is None:
                    continue
                decision = sequential.look(self.designs[comparison.family], a, b, look_index=k,
                                           paired=comparison.paired)
                decisions.append(decision)
                changed = True
                if not decision.stop:
                    for group in (comparison.left, comparison.right):
                        self._more_seeds(group, self.looks[k + 1])

    def _configs_known(self, comparison: sequential.Comparison) -> bool:
        """Both sides' configs follow from the choices made so far (a resumed driver has the runs
        of a comparison before it has chosen again)."""
        return all(m in self.chosen for m in (comparison.method, comparison.versus) if m in SEARCHED)

    def _more_seeds(self, group: str, count: int) -> None:
        """Plan a side's runs on its seeds up to `count` (its config from the choices made)."""
        planned = self.group_seeds.get(group, self.looks[0])
        if count <= planned:
            return
        self.group_seeds[group] = count
        seeds = self.all_seeds[planned:count]
        self._owe([r for r in plan_reruns(self.chosen, self.methods, seeds, self.crossed, self.prefix)
                   if slot_group(r.slot, self.prefix) == group])

    def look_tag(self, seed: int) -> str:
        """The look (1-based) that added a test seed."""
        return str(sequential.look_of(self.all_seeds.index(seed) + 1, self.looks))

    def sequential_summary(self) -> list[dict]:
        """How each comparison ended (or stands): its family, the looks made, the seeds per side,
        the verdict and the boundary it crossed."""
        rows = []
        for comparison in self.comparisons:
            decisions = self.decisions[comparison.name]
            last = decisions[-1] if decisions else None
            rows.append({"comparison": comparison.name, "family": comparison.family, "method": comparison.method,
                         "versus": comparison.versus, "looks": len(decisions), "seeds": last.n if last else 0,
                         "verdict": last.verdict if last else "open", "crossed": last.crossed if last else "",
                         "diff": last.diff if last else math.nan})
        return rows

    # --- Ray's Searcher interface -------------------------------------------------------------
    def suggest(self, trial_id: str):
        for method in self.searched:  # a trial lost with the previous driver goes first
            if self.orphans[method]:
                frozen = self.orphans[method].pop(0)
                trial = optuna.trial.Trial(self.studies[method], frozen._trial_id)
                return self._issue(trial_id, method, trial, frozen.user_attrs["config"])
        open_methods = [m for m in self.searched if self.created(m) < self.num_samples]
        if open_methods:
            method = min(open_methods, key=self.created)  # round robin, in the table's order
            index = self.created(method)  # trial i of every method: the same shared draws
            trial, config = ask(self.studies[method], self.define, method,
                                self.shared(index) if self.shared is not None else None)
            self.asked[method] += 1
            trial.set_user_attr("config", config)
            return self._issue(trial_id, method, trial, config)
        for method in self.searched:  # selection and re-runs need only their own method's search
            if method not in self.planned and self.method_search_done(method):
                self._plan(method)
        if not self.reruns:
            return Searcher.FINISHED if self.exhausted() else None  # None: wait for a run to end
        rerun = self.reruns.pop(0)
        self.live[trial_id] = ("select" if rerun.phase == "select" else "rerun", None, rerun)
        tags = {**self.tags, "phase": rerun.phase, "slot": rerun.slot, "matched_to": rerun.matched_to}
        if self.looks and rerun.phase != "select":
            tags["look"] = self.look_tag(rerun.config["seed"])
        if rerun.candidate is not None:
            method = rerun.config["method"]
            tags.update(optuna_study=self.studies[method].study_name, optuna_trial=str(rerun.candidate),
                        config_id=f"{self.prefix}{method}-t{rerun.candidate}")
        return {**rerun.config, TAGS: tags}

    def _issue(self, trial_id: str, method: str, trial: optuna.trial.Trial, config: dict) -> dict:
        trial.set_user_attr("tune_trial_id", trial_id)
        self.live[trial_id] = ("search", trial, None)
        return {**config, TAGS: {**self.tags, "phase": "search", "optuna_study": self.studies[method].study_name,
                                 "optuna_trial": str(trial.number),
                                 "config_id": f"{self.prefix}{method}-t{trial.number}"}}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        kind, trial, rerun = self.live.pop(trial_id, (None, None, None))
        result = result or {}
        if kind == "select":
            self.settle(trial_id, error)
            self._selection_ended(rerun, result, error)
            return
        if kind == "rerun" and self.looks:  # a run that did not complete scores chance, as in the report
            completed = not error and result.get("outcome") == "completed"
            self._score(rerun.slot, result.get(sequential.ENDPOINT) if completed else None)
            self._advance()
            return
        if kind != "search":
            return
        run_id = self.settle(trial_id, error)
        if run_id:  # optuna-dashboard and MLflow point at each other
            trial.set_user_attr("mlflow_run_id", run_id)
        outcome = result.get("outcome")
        value = result.get(self.metric)
        if error or value is None or not math.isfinite(value):
            trial.set_user_attr("outcome", "failed")
            trial.study.tell(trial, state=TrialState.FAIL)
            return
        trial.set_user_attr("outcome", outcome or "stopped")
        if "val_loss" in result and math.isfinite(result["val_loss"]):
            trial.set_user_attr("val_loss", float(result["val_loss"]))
        if outcome is None:  # stopped early by ASHA: pruned, with the value it was judged on
            trial.report(float(value), int(result.get("epoch", 0)))
            trial.study.tell(trial, state=TrialState.PRUNED)
        else:  # completed, or diverged (scored by the validation accuracy it ended with)
            trial.study.tell(trial, float(value))

    def _selection_ended(self, rerun: Rerun, result: dict, error: bool) -> None:
        """A selection run ended: its validation numbers into the method study's record; the method
        is chosen once its last selection run has ended."""
        method = rerun.config["method"]
        value, loss = result.get(self.metric), result.get("val_loss")
        record = {"val_acc": None if error or value is None or not math.isfinite(value) else float(value),
                  "val_loss": None if error or loss is None or not math.isfinite(loss) else float(loss),
                  "outcome": "failed" if error else result.get("outcome") or "stopped"}
        self.studies[method].set_user_attr(_selection_attr(rerun.candidate, rerun.config["seed"]), record)
        self.selecting.get(method, set()).discard(rerun.slot)
        self._settle_if_selected(method)

    # --- the choice, read back ----------------------------------------------------------------
    def best_trials(self) -> dict[str, optuna.trial.FrozenTrial]:
        chosen = {m: self.choice(m) for m in self.studies}
        return {m: t for m, t in chosen.items() if t is not None}

    def best_configs(self) -> dict[str, dict]:
        return {m: t.user_attrs["config"] for m, t in self.best_trials().items()}

    def selection_summary(self, method: str) -> list[dict]:
        """Each candidate of a method that selects: its search value and its selection runs' means."""
        if not self.selects:
            return []
        results = self.selection_results(method)
        rows = []
        for rank, trial in enumerate(self.candidates(method)):
            accuracy, loss = (selection_scores(results[trial.number], self._chance(trial)) if results.get(trial.number)
                              else (None, None))
            rows.append({"optuna_trial": trial.number, "search_rank": rank + 1, "search_val_acc": trial.value,
                         "select_val_acc": accuracy, "select_val_loss": loss,
                         "select_runs": len(results.get(trial.number, []))})
        return rows

    # Tune snapshots its searcher; this one's state lives in the Optuna storage and MLflow.
    def save(self, checkpoint_path: str):
        raise NotImplementedError

    def restore(self, checkpoint_path: str):
        raise NotImplementedError
