"""Optuna parameter importances from the study's persisted Optuna storage.

The space is conditional (`method` first, then only that method's parameters), and fANOVA needs
every trial it sees to have the same parameters. So importances are computed twice over:
- across methods: on every completed trial, for the parameters all of them share (`method` and
  the shared optimisation parameters) — "how much does the choice of method matter, next to the
  learning rate?";
- within a method: on that method's completed trials, for the parameters they all share
  (e.g. K, epochs_per_level, kernel), only where the method has at least MIN_TRIALS of them.
Parameters with a single choice in the space (nothing varied) are left out. fANOVA is seeded,
so the report is reproducible. (Optuna 5's default, PED-ANOVA, scores a conditional parameter on
whichever trials happen to have it: with a handful of trials per method that is noise.)
"""

from __future__ import annotations

import warnings
from pathlib import Path

MIN_TRIALS = 10  # completed trials a group needs before its importances are computed


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


def param_importances(storage: str, study_name: str) -> tuple[dict[str, dict[str, float]], list[str]]:
    """({group label: {param: importance}}, notes) for one persisted Optuna study."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    notes: list[str] = []
    if storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///"):]).is_file():
        return {}, [f"no Optuna storage at {storage} (Optuna would create an empty one: not opened)"]
    try:
        study = optuna.load_study(study_name=study_name, storage=storage)
    except Exception as error:  # missing file, unknown study name, unreadable storage
        return {}, [f"Optuna study {study_name!r} could not be loaded from {storage}: {error}"]
    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            if t.value is not None]
    results: dict[str, dict[str, float]] = {}
    if len(done) < 2:
        return {}, [f"Optuna study {study_name!r} has {len(done)} completed trial(s); importances need several"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        shared = set.intersection(*(set(t.params) for t in done))
        names = _varied(done, shared)
        if names:
            results[f"all methods ({len(done)} trials)"] = _importances(study, done, names)
        fixed = sorted(shared - set(names))
        if fixed:
            notes.append(f"not varied in this space, so left out: {', '.join(fixed)}")
        by_method: dict[str, list] = {}
        for trial in done:
            by_method.setdefault(trial.params.get("method"), []).append(trial)
        skipped = []
        for method, trials in sorted(by_method.items(), key=lambda kv: str(kv[0])):
            own = _varied(trials, set.intersection(*(set(t.params) for t in trials)) - {"method"})
            if len(trials) < MIN_TRIALS:
                skipped.append(f"{method} ({len(trials)})")
            elif own:
                results[f"{method} ({len(trials)} trials)"] = _importances(study, trials, own)
        if skipped:
            notes.append(f"within-method importances need ≥ {MIN_TRIALS} completed trials of a method; "
                         f"too few for: {', '.join(skipped)}")
    return results, notes


__all__ = ["param_importances", "MIN_TRIALS"]
