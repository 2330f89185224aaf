"""Optuna parameter importances from the study's persisted Optuna storage: one Optuna study per
(dataset, method), so importance is always *within* a method — how much each of its own
parameters and the shared ones (lr, weight decay, batch size, optimizer) mattered to its
validation accuracy. There is no "across methods" importance: the search never chose between
methods (every method gets the same number of trials; comparing methods is the seed repeats' job).

fANOVA needs every trial it sees to have the same parameters, and a method's space can be
conditional (annealing: `anneal_epochs` only for linear/cosine θ, `K` only for step), so it is
computed over the parameters all the method's completed trials share; a parameter with a single
value (nothing varied) is left out. Only a method with at least MIN_TRIALS completed trials gets
importances: with fewer, fANOVA's forest fits noise. fANOVA is seeded, so the report is
reproducible. (Optuna's default, PED-ANOVA, scores a conditional parameter on whichever trials
happen to have it: with a handful of trials that is noise too.)
"""

from __future__ import annotations

import warnings
from pathlib import Path

MIN_TRIALS = 10  # completed trials a method's study needs before its importances are computed


def _varied(trials, names) -> list[str]:
    return sorted(n for n in names if len({repr(t.params[n]) for t in trials}) > 1
                  and len(getattr(trials[0].distributions[n], "choices", (0, 1))) > 1)


def _importances(study, trials, names) -> dict[str, float]:
    import optuna

    # Evaluate on a copy holding only the chosen trials and parameters: the evaluator itself
    # filters trials by the parameters asked for, which is exactly the subsetting wanted here.
    view = optuna.create_study(direction=study.direction)
    view.add_trials([optuna.trial.create_trial(
        params={n: t.params[n] for n in names}, distributions={n: t.distributions[n] for n in names},
        value=t.value) for t in trials])
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    return {k: float(v) for k, v in optuna.importance.get_param_importances(view, evaluator=evaluator).items()}


def param_importances(storage: str, study_names: dict[str, str]) -> tuple[dict[str, dict[str, float]], list[str]]:
    """({"<method> (<n> trials)": {param: importance}}, notes) for the Optuna studies of one dataset
    (method → study name, e.g. {"sharpening": "smoke-20250101-000000-digits-sharpening"})."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///"):]).is_file():
        return {}, [f"no Optuna storage at {storage} (Optuna would create an empty one: not opened)"]
    results: dict[str, dict[str, float]] = {}
    notes, too_few, unloadable, fixed_all = [], [], [], set()
    for method, name in study_names.items():
        try:
            study = optuna.load_study(study_name=name, storage=storage)
        except Exception as error:  # unknown study name, unreadable storage
            unloadable.append(f"{name} ({type(error).__name__}: {str(error)[:120]})")
            continue
        done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                if t.value is not None]
        if len(done) < MIN_TRIALS:
            too_few.append(f"{method} ({len(done)})")
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            common = set.intersection(*(set(t.params) for t in done))
            names = _varied(done, common)
            fixed_all |= common - set(names)
            if names:
                results[f"{method} ({len(done)} trials)"] = _importances(study, done, names)
    if too_few:
        notes.append(f"importances need ≥ {MIN_TRIALS} completed trials in a method's Optuna study; too few for: "
                     f"{', '.join(too_few)}")
    if fixed_all:
        notes.append(f"not varied within a method, so left out: {', '.join(sorted(fixed_all))}")
    if unloadable:
        notes.append(f"Optuna studies not found in {storage}: {'; '.join(unloadable)}")
    return results, notes


__all__ = ["param_importances", "MIN_TRIALS"]
