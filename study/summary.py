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

from search_spaces import bind_space
from trainer.config import METHOD_TABLE, SEARCHED, SHARED, TrialConfig, method_order, role

from .plan import Plan
from .record import runs_page, study_key
from .search import StudySearcher, plan_reruns, rerun_seeds


def print_dry_run(plan: Plan) -> None:
    """Every (dataset, regime): the search trials each method would train, drawn by the searcher's
    own code on an in-memory storage, validated, and the re-runs that would follow."""
    settings, seed = plan.settings, plan.record.seed
    base = {"data_dir": plan.record.data_dir, "seed": seed}
    print(f"space {settings.name}: {settings.description}")
    seeds = rerun_seeds(seed, settings.seed_repeats)
    for dataset, regime in ((d, r) for d in settings.datasets for r in settings.regimes):
        regime_settings, key = settings.for_regime(regime), study_key(dataset, regime.name)
        searcher = StudySearcher(bind_space(plan.space, dataset, regime_settings, base), regime_settings.methods,
                                 regime_settings.num_samples, None, f"dry-run-{key}", seed, seeds,
                                 regime_settings.metric, set())
        sampled = searcher.sample_search()
        for configs in sampled.values():
            for config in configs:
                TrialConfig.from_dict(config)  # raises ConfigError naming the field
        reruns = plan_reruns({m: c[0] for m, c in sampled.items()}, settings.methods, seeds)
        print(f"[{key}] {regime_settings.num_samples} search trials per method, all valid: "
              f"{', '.join(sampled)}; then {len(reruns)} re-runs (repeats, matched controls and baselines)")
        for method, configs in sampled.items():
            shown = {k: (round(v, 5) if isinstance(v, float) else v) for k, v in configs[0].items()
                     if k in TrialConfig.from_dict(configs[0]).fields_used() and k != "data_dir"}
            print(f"  {method:<13} " + json.dumps(shown))
    print("dry run: nothing trained or written")


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
        print(f"[{key}] best config per method (by {settings.metric}); seed re-runs' test accuracy, clean and "
              f"under corruptions")
        outcomes = rerun_outcomes(runs, key)
        controls = [m for m in settings.methods if METHOD_TABLE[m].matched_to in best]
        for method in method_order([*best, *controls]):
            entry = best.get(method) or best[METHOD_TABLE[method].matched_to]
            config = TrialConfig.from_dict(TrialConfig.from_dict(entry["config"]).with_method(method))
            shared = " ".join(f"{k}={getattr(config, k):.3g}" if isinstance(getattr(config, k), float)
                              else f"{k}={getattr(config, k)}" for k in SHARED)
            chosen = (f"{settings.metric} {entry['value']:.4f}" if method in best
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
