"""What `python -m study.run` prints about a study: the dry run's plan, and the closing summary.

The closing summary is a quick look from the launcher's own records (the study record and the
MLflow runs it wrote): search trials per method, the config each search chose, and its re-runs'
test accuracy as mean ± sd of the runs that completed. The comparison itself — failed runs scored
as chance, confidence intervals, paired tests, Holm, equivalence — is the report's
(`python -m analysis.report`), which the summary names; the launcher does not import the analysis.
"""

from __future__ import annotations

import json
import statistics

from trainer.config import METHOD_TABLE, SEARCHED, SHARED, TrialConfig, method_order, role

from .plan import Plan
from .record import runs_page, study_key
from .record import TPE_STARTUP
from .search import build_searcher, most_reruns, planned_totals
from .sequential import ALPHA, MARGIN


def print_dry_run(plan: Plan) -> None:
    """Every (dataset, regime): the search trials each method would train, drawn by the searcher's
    own code on an in-memory storage, validated, and the runs that would follow — per replicate
    and in all."""
    settings = plan.settings
    print(f"space {settings.name}: {settings.description}")
    sampler = ("a random search with common random numbers (trial i of every method: the same optimizer, lr, "
               "weight decay and batch size)" if plan.record.sampler == "random"
               else f"Optuna's multivariate TPE per method (its first {TPE_STARTUP} trials random)")
    top = min(settings.select_top, settings.num_samples)
    selection = (f"each method's top {top} configs re-run on {settings.select_seeds} fresh seeds, chosen by mean "
                 f"val_acc" if top > 1 and settings.select_seeds else "each method's best search trial chosen")
    print(f"search: {sampler}; {selection}; {settings.replicates} whole-pipeline replicate(s)")
    grand = grand_most = 0
    for dataset, regime in ((d, r) for d in settings.datasets for r in settings.regimes):
        regime_settings, key = settings.for_regime(regime), study_key(dataset, regime.name)
        searcher = build_searcher(plan, dataset, regime, 0, None, name_prefix=f"dry-run-{key}")
        sampled = searcher.sample_search()
        for configs in sampled.values():
            for config in configs:
                TrialConfig.from_dict(config)  # raises ConfigError naming the field
        totals = planned_totals(regime_settings, searcher.seeds, searcher.select_seeds)
        grand += sum(totals.values()) * settings.replicates
        capped = most_reruns(regime_settings)
        most = sum(totals.values()) - totals["re-runs"] + capped
        grand_most += most * settings.replicates
        print(f"[{key}] {regime_settings.num_samples} search trials per method, all valid: "
              f"{', '.join(sampled)}; then {totals['selection']} selection runs and {totals['re-runs']} re-runs "
              f"(repeats, controls, matched and crossed runs)"
              + (f" at the first look, at most {capped} at the cap" if searcher.looks else "")
              + f": {sum(totals.values())}" + (f" to {most}" if searcher.looks else "") + " trials per replicate")
        if searcher.looks:
            families = ", ".join(f"{family} {sum(c.family == family for c in searcher.comparisons)} "
                                 f"(difference at α = {design.alpha:.4g})" for family, design in searcher.designs.items())
            print(f"  seeds auto: looks at {', '.join(map(str, searcher.looks))} test seeds per side, each "
                  f"comparison stops when resolved ({next(iter(searcher.designs.values())).spending} "
                  f"boundaries; TOST ±{100 * MARGIN:g} pp at α = {ALPHA:g}); comparisons: {families}")
        for method, configs in sampled.items():
            shown = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in configs[0].items()
                     if k in TrialConfig.from_dict(configs[0]).fields_used() and k != "data_dir"}
            print(f"  {method:<13} " + json.dumps(shown))
    print(f"in all: {grand} trials" + (f" at the first look, at most {grand_most} if every comparison runs to "
                                        f"the cap" if settings.auto_seeds else "") + "; dry run: nothing trained or written")


def rerun_outcomes(runs, key: str) -> dict[str, str]:
    """method → "test acc 97.00 ± 0.35 %, corruption acc 84.90 ± 1.02 % (mean ± sd, 5/5 completed)"
    for one study key's re-runs among MLflow runs: every searched method's seed repeats and every
    control's runs (the corruption part where the runs logged the second endpoint)."""
    cells = {}
    mine = [r for r in runs if study_key(r.data.tags.get("dataset"), r.data.tags.get("regime")) == key
            and r.data.tags.get("phase") in ("repeat", "control")]
    for method in method_order({r.data.tags.get("method") for r in mine}):
        runs_of = [r for r in mine if r.data.tags.get("method") == method
                   and (r.data.tags.get("phase") == "repeat" or role(method) == "control")]
        if not runs_of:
            continue
        completed = [r for r in runs_of if r.data.tags.get("outcome") == "completed"]
        parts = []
        for metric, words in (("test_acc", "test acc"), ("test_acc_corrupt", "corruption acc")):
            done = [100 * r.data.metrics[metric] for r in completed if metric in r.data.metrics]
            spread = f" ± {statistics.stdev(done):.2f}" if len(done) > 1 else ""
            if done:
                parts.append(f"{words} {statistics.fmean(done):.2f}{spread} %")
        done = [r for r in completed if "test_acc" in r.data.metrics]
        cells[method] = (", ".join(parts) + " " if parts else "") + f"(mean ± sd, {len(done)}/{len(runs_of)} completed)"
    return cells


def print_summary(plan: Plan, runs: list, metrics: dict[str, float]) -> None:
    settings, record = plan.settings, plan.record
    attempts = len(record.attempts)
    print(f"\nstudy {plan.name} finished in {metrics['study_seconds']:.0f} s"
          + (f" over {attempts} runs" if attempts > 1 else ""))
    for dataset, regime in ((d, r) for d in settings.datasets for r in settings.regimes):
        key = study_key(dataset, regime.name)
        best = record.best.get(key, {})
        counts = {m: int(metrics.get(f"search_trials.{key}.{m}", 0)) for m in settings.methods if m in SEARCHED}
        print(f"\n[{key}] search trials per method: " + ", ".join(f"{m} {n}" for m, n in counts.items())
              + (" (equal)" if len(set(counts.values())) == 1 else " (NOT equal)"))
        several = settings.replicates > 1
        selects = any(entry.get("selection") for entry in best.values())
        print(f"[{key}] chosen config per method (by {settings.metric}"
              + (f": the mean over {settings.select_seeds} fresh seeds of the top {settings.select_top}" if selects else "")
              + ")" + (" in replicate 0" if several else "") + "; seed re-runs' test accuracy, clean and under "
              f"corruptions" + (f", over all {settings.replicates} replicates" if several else ""))
        outcomes = rerun_outcomes(runs, key)
        controls = [m for m in settings.methods if METHOD_TABLE[m].matched_to in best]
        for method in method_order([*best, *controls]):
            entry = best.get(method) or best[METHOD_TABLE[method].matched_to]
            config = TrialConfig.from_dict(TrialConfig.from_dict(entry["config"]).with_method(method))
            shared = " ".join(f"{k}={getattr(config, k):.3g}" if isinstance(getattr(config, k), float)
                              else f"{k}={getattr(config, k)}" for k in SHARED)
            picked = [row for row in entry.get("selection") or [] if row["optuna_trial"] == entry["optuna_trial"]]
            value = picked[0]["select_val_acc"] if picked and picked[0]["select_val_acc"] is not None else entry["value"]
            chosen = (f"{settings.metric} {value:.4f}" if method in best
                      else f"matched to {METHOD_TABLE[method].matched_to}")
            print(f"  {method:<13} {chosen:<22} {outcomes.get(method, '')}   "
                  f"{config.describe().removeprefix(method).strip()} {shared}".rstrip())
    uri = record.tracking_uri
    print(f"\nresults: study record {plan.record_path}\n         Ray results {record.storage_path}/{plan.name}\n"
          f"         MLflow {uri} (experiment {plan.name!r})\n"
          f"         Optuna {plan.optuna_storage} (one study per dataset, regime and method)")
    page = runs_page(record.experiment_id)
    if uri.startswith("sqlite:"):
        print(f"browse:  mlflow ui --backend-store-uri {uri} --host 127.0.0.1 --port 5000\n"
              f"         then open http://127.0.0.1:5000/{page}")
    else:
        print(f"browse:  {uri.rstrip('/')}/{page}")
    print(f"report:  python -m analysis.report --name {plan.name} --output-dir {plan.output_dir}"
          f"  (the comparison: CIs, paired tests, Holm, equivalence)")
