"""What the study trains, in order: an equal Optuna search per method, then the matched re-runs.

`StudySearcher` is the one Ray Tune searcher of a dataset's study, so both stages run in one Tune
run and trial actors stay warm between them:

1. **Search.** One Optuna study per (dataset, method), each a seeded multivariate TPE over that
   method's own parameters plus the shared ones, and *the same number of trials for every
   searched method*: the searcher hands out trials round-robin over the methods, so search
   effort never follows the results (a TPE over a `method` categorical spends its trials where
   results look good, and effort itself becomes the effect).
2. **Re-runs**, once every search trial has ended and each method's best config is chosen
   (`choose_best`: validation accuracy, then validation loss, then the earliest trial; never
   test accuracy): the best config of every searched method with fresh seeds (`repeat`); the
   controls (anti, random_order, blur_aug) as sharpening's best config with only `method`
   changed, on sharpening's seeds (`control`, matched_to=sharpening); and for every curriculum a
   matched baseline, the baseline at that method's best shared hyperparameters on its seeds
   (`control`, method baseline, matched_to=<method>). Same seeds on both sides: paired tests.

The Optuna storage is the search's record; resume reads it back: finished trials stay finished,
and a trial the previous driver left RUNNING (lost with it) is run again *under the same Optuna
trial*, so every study ends with exactly `num_samples` finished trials per method and nothing
RUNNING or WAITING. Re-runs already ended (their MLflow runs say so) are not trained again.
Each Tune config is a trial config plus `_tags` (phase, slot, matched_to, Optuna trial), which
the trainable strips and the MLflow callback turns into tags.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher

from trainer.config import METHOD_TABLE, SEARCHED, TAGS, TrialConfig


@dataclass(frozen=True)
class Rerun:
    """One planned re-run: its slot key (unique within a dataset), phase, config and pairing."""
    slot: str
    phase: str  # "repeat" or "control"
    config: dict
    matched_to: str = ""


def choose_best(trials: list[optuna.trial.FrozenTrial]) -> optuna.trial.FrozenTrial | None:
    """The best COMPLETE trial whose training completed: validation accuracy, then validation
    loss (ties on small validation sets are common), then the earliest trial."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs.get("outcome") == "completed"]
    if not done:
        return None
    return min(done, key=lambda t: (-t.value, t.user_attrs.get("val_loss", math.inf), t.number))


def ask(study: optuna.Study, define: Callable, method: str) -> tuple[optuna.trial.Trial, dict]:
    """A new trial of a method's study and its whole config: the define-by-run space suggests the
    method's own fields and the shared ones (filling `trial.params`), and returns the constants."""
    trial = study.ask()
    constants = define(trial, method)  # suggests first: trial.params is filled by it
    return trial, {**trial.params, **constants}


def rerun_seeds(seed: int, repeats: int) -> list[int]:
    """The seeds of the re-runs: the search trials train on `seed`, the re-runs on seed+1..seed+repeats."""
    return list(range(seed + 1, seed + 1 + repeats))


def plan_reruns(best: dict[str, dict], methods: tuple[str, ...], seeds: list[int]) -> list[Rerun]:
    """Every re-run the study owes once the search has chosen `best` (method → config dict)."""
    reruns = []
    for method, config in best.items():
        chosen = TrialConfig.from_dict(config)
        for seed in seeds:
            reruns.append(Rerun(f"repeat:{method}:s{seed}", "repeat", {**config, "seed": seed}))
            if METHOD_TABLE[method].role in ("curriculum", "variant") and "baseline" in methods:
                reruns.append(Rerun(f"control:baseline~{method}:s{seed}", "control",
                                    {**chosen.with_method("baseline"), "seed": seed}, method))
            for control in methods:
                if METHOD_TABLE[control].matched_to == method:
                    reruns.append(Rerun(f"control:{control}~{method}:s{seed}", "control",
                                        {**chosen.with_method(control), "seed": seed}, method))
    return reruns


class StudySearcher(Searcher):
    """Round-robin per-method Optuna search, then the planned re-runs (see the module doc)."""

    def __init__(self, define: Callable, methods: tuple[str, ...], num_samples: int, storage: str | None,
                 study_prefix: str, seed: int, seeds: list[int], metric: str, done_slots: set[str],
                 run_id_of: Callable[[str], str | None] = lambda trial_id: None, tags: dict | None = None):
        super().__init__(metric=metric, mode="max")
        self.define, self.num_samples, self.seeds = define, num_samples, seeds
        self.methods = methods
        self.searched = tuple(m for m in methods if m in SEARCHED)
        self.done_slots = set(done_slots)
        self.run_id_of = run_id_of  # Tune trial id → its MLflow run id (the tracking callback knows it)
        self.tags = dict(tags or {})  # on every trial's run, e.g. its regime
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        self.studies = {}
        for index, method in enumerate(self.searched):
            sampler = optuna.samplers.TPESampler(seed=seed + index, multivariate=True, group=True,
                                                 constant_liar=True)
            self.studies[method] = optuna.create_study(
                study_name=f"{study_prefix}-{method}", storage=storage, direction="maximize",
                sampler=sampler, load_if_exists=True)
        # Trials a dead driver left RUNNING: no Tune trial trains them any more.
        self.orphans = {m: [t for t in s.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
                        for m, s in self.studies.items()}
        self.live: dict[str, tuple[str, optuna.trial.Trial | None, Rerun | None]] = {}
        self.reruns: list[Rerun] | None = None  # planned once the search has ended
        self.best: dict[str, optuna.trial.FrozenTrial] = {}

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
        return len(self.studies[method].get_trials(deepcopy=False))

    def search_done(self) -> bool:
        """Every method has its num_samples trials and none is running or waiting to re-run."""
        return all(self.created(m) >= self.num_samples and not self.orphans[m] for m in self.searched) \
            and not any(kind == "search" for kind, _, _ in self.live.values())

    def finished_search_trials(self) -> int:
        return sum(1 for s in self.studies.values() for t in s.get_trials(deepcopy=False)
                   if t.state.is_finished())

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
            trial, config = ask(self.studies[method], self.define, method)
            trial.set_user_attr("config", config)
            return self._issue(trial_id, method, trial, config)
        if not self.search_done():
            return None  # the re-runs need every search trial's result: wait
        if self.reruns is None:
            self.reruns = [r for r in plan_reruns(self.best_configs(), self.methods, self.seeds)
                           if r.slot not in self.done_slots]
        if not self.reruns:
            return Searcher.FINISHED
        rerun = self.reruns.pop(0)
        self.live[trial_id] = ("rerun", None, rerun)
        return {**rerun.config, TAGS: {**self.tags, "phase": rerun.phase, "slot": rerun.slot,
                                       "matched_to": rerun.matched_to}}

    def _issue(self, trial_id: str, method: str, trial: optuna.trial.Trial, config: dict) -> dict:
        trial.set_user_attr("tune_trial_id", trial_id)
        self.live[trial_id] = ("search", trial, None)
        return {**config, TAGS: {**self.tags, "phase": "search", "optuna_study": self.studies[method].study_name,
                                 "optuna_trial": str(trial.number)}}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        kind, trial, _ = self.live.pop(trial_id, (None, None, None))
        if kind != "search":
            return
        result = result or {}
        run_id = self.run_id_of(trial_id)
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

    # --- the choice, made once ----------------------------------------------------------------
    def best_trials(self) -> dict[str, optuna.trial.FrozenTrial]:
        chosen = {m: choose_best(s.get_trials(deepcopy=False)) for m, s in self.studies.items()}
        return {m: t for m, t in chosen.items() if t is not None}

    def best_configs(self) -> dict[str, dict]:
        return {m: t.user_attrs["config"] for m, t in self.best_trials().items()}

    # Tune snapshots its searcher; this one's state lives in the Optuna storage and MLflow.
    def save(self, checkpoint_path: str):
        raise NotImplementedError

    def restore(self, checkpoint_path: str):
        raise NotImplementedError
