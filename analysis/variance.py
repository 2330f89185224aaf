"""Where the spread of a result comes from — the data split, the configuration chosen, the training
seed — and the headline difference over whole-pipeline replicates (Bouthillier et al. 2021,
"Accounting for Variance in Machine Learning Benchmarks", MLSys).

A replicate (`replicate`, a tag on every run) redraws the data split, the label-noise and imbalance
draws, the search's sampler seed and the training seeds, and runs the whole comparison again. Within
a replicate a method is re-run at one or more configurations (its chosen config; the runners-up of
a top-k selection; for the baseline also the matched runs at each curriculum's shared
hyperparameters, and with crossed runs each curriculum at the baseline's), each on several seeds.

Variance components (`components`), per study key and method, of a score y (test accuracy, a failed
run scored chance as everywhere):
    y = μ + a_replicate + b_configuration(within the replicate) + e_seed,
    a ~ N(0, σ²_split), b ~ N(0, σ²_configuration), e ~ N(0, σ²_seed),
a nested random-effects model: a configuration belongs to one replicate (each replicate's search
draws its own), and a seed to one configuration. The split component holds everything a replicate
redraws (split, noise draw, sampler seed), which is what the headline varies over.

Estimator: REML, statsmodels' MixedLM (groups = replicate, random intercept; a variance component
for the configurations within a replicate; the residual is the seed). Why not the ANOVA method of
moments: the designs are unbalanced (failed runs, the chosen config on 10 seeds beside runners-up
on 3, matched runs on the seeds they share), where the ANOVA estimator has no unique form and can
go negative; REML is non-negative and, for a balanced design, equal to the ANOVA estimator wherever
that is positive (Searle, Casella & McCulloch 1992, *Variance Components*, §6.7) — the tests check
both that and the recovery of known components. Scores are fitted in percentage points, where the
components are of order 1 (the optimizer handles 1e-5-sized fractions poorly).

What one study can measure:
  * one replicate (the current studies): no split component ("not measured"); configuration and
    seed from the configurations the method was re-run at;
  * one configuration per replicate: the configuration is confounded with the split; the
    replicate component is then "split and configuration together";
  * one configuration and one replicate: the seed's variance only (the sample variance).
Each estimate of a component from R groups rests on about R − 1 degrees of freedom: 3 replicates
give the split's variance only roughly.

The headline Δ over replicates (`replicate_summary`): per replicate, the mean of a method's seed
repeats minus the mean of the baseline's, in that replicate; the Δ is the mean of these R
differences with its t interval over replicates (df = R − 1) — the paired t-test of the replicate
means, paired by replicate because the two share its split. Holm over the key's methods; the same
four-way verdict and seed counts (here: replicates) as every other comparison (`analysis.stats`);
and each replicate's own verdict (Welch within the replicate, as the answer), with whether the
verdict held in every replicate.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
import pandas as pd
import statsmodels.formula.api as smf
from statsmodels.tools.sm_exceptions import ConvergenceWarning

from study.record import ENDED
from trainer.config import FIELD_NAMES, method_order, role

from .load import key_order
from .stats import MARGIN, paired
from .tables import (IDENTITY, DIFF_COLUMNS, _adjusted, _difference_columns, _present, _scored, _where,
                     repeat_summary, with_derived)

REPLICATE = "replicate"  # the run tag naming its whole-pipeline replicate
CONFIG_ID = "config_id"  # a run's configuration, if the launcher names it; else its params identify it
ONE_REPLICATE = "one replicate: the split's variance is not measured"


@dataclasses.dataclass
class Components:
    """Variance components of a score in pp² (nan: not measured), how they were estimated, and why
    a component is missing or merged."""
    split: float
    configuration: float
    seed: float
    runs: int
    replicates: int
    configurations: int
    estimator: str  # "REML (MixedLM)" or "sample variance"
    note: str = ""

    @property
    def total(self) -> float:
        return float(np.nansum([self.split, self.configuration, self.seed]))


def _fit(data: pd.DataFrame, groups: str, nested: bool) -> tuple[float, float, float, str]:
    """(group variance, nested configuration variance or nan, residual variance, warnings) by REML."""
    formula = {"configuration": "0 + C(configuration)"} if nested else None
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)  # boundary fits: the estimate is kept, at 0
        model = smf.mixedlm("score ~ 1", data, groups=data[groups], re_formula="1", vc_formula=formula)
        result = model.fit(reml=True)
    troubled = any(issubclass(w.category, ConvergenceWarning) for w in caught)
    note = "REML's optimizer warned (statsmodels ConvergenceWarning): the estimates are approximate" if troubled else ""
    group = max(0.0, float(result.cov_re.iloc[0, 0]))
    configuration = max(0.0, float(result.vcomp[0])) if nested else math.nan
    return group, configuration, float(result.scale), note


def components(runs: pd.DataFrame, score: str = "score") -> Components:
    """Variance components of `score` (in the data's unit; returned in that unit squared) over
    runs with columns replicate, configuration and `score` (one row per run: per seed) — module doc.
    A configuration label is made unique within its replicate (nested), so "top1" in two replicates
    is two configurations."""
    data = runs[[REPLICATE, "configuration", score]].dropna().copy()
    data = data.rename(columns={score: "score"})
    if len(data) < 2:
        raise ValueError("components needs at least 2 runs")
    data[REPLICATE] = data[REPLICATE].astype(str)
    data["configuration"] = data[REPLICATE] + "/" + data["configuration"].astype(str)
    replicates, configurations = data[REPLICATE].nunique(), data["configuration"].nunique()
    scale = 100.0  # fitted in pp: accuracy fractions have variances near 1e-5
    data["score"] = data["score"] * scale
    shape = dict(runs=len(data), replicates=replicates, configurations=configurations)
    notes = []
    if configurations == len(data):  # one run per configuration: its seed cannot be told from it
        data["configuration"] = data.index.astype(str)
        notes.append("one run per configuration: the seed component holds the configuration's variance too")
        nested = False
    else:
        nested = configurations > replicates  # some replicate has ≥ 2 configurations
    if replicates == 1:
        notes.insert(0, ONE_REPLICATE)
        if not nested or data["configuration"].nunique() == 1:
            return Components(math.nan, math.nan, float(data["score"].var(ddof=1)) / scale ** 2, **shape,
                              estimator="sample variance", note="; ".join(notes))
        group, _, seed, note = _fit(data, "configuration", nested=False)
        return Components(math.nan, group / scale ** 2, seed / scale ** 2, **shape, estimator="REML (MixedLM)",
                          note="; ".join(filter(None, [*notes, note])))
    if not nested:
        if configurations < len(data):
            notes.append("one configuration per replicate: the split component holds the configuration's "
                         "variance too")
        group, _, seed, note = _fit(data, REPLICATE, nested=False)
        return Components(group / scale ** 2, math.nan, seed / scale ** 2, **shape, estimator="REML (MixedLM)",
                          note="; ".join(filter(None, [*notes, note])))
    group, configuration, seed, note = _fit(data, REPLICATE, nested=True)
    return Components(group / scale ** 2, configuration / scale ** 2, seed / scale ** 2, **shape,
                      estimator="REML (MixedLM)", note="; ".join(filter(None, [*notes, note])))


# ---------------------------------------------------------------------------------------------
# From the study's runs

def _configuration(row) -> str:
    """A run's configuration: every TrialConfig field the run logged except its seed (exact values:
    two configs never merge by rounding), or the launcher's `config_id` for a run that logged no
    fields. The fields come first because the launcher names only the search and selection runs
    (`<method>-t<n>`): the chosen config's selection runs and its seed repeats are one configuration."""
    fields = " ".join(f"{name}={row[name]!r}" for name in FIELD_NAMES if name != "seed" and _present(row.get(name)))
    if fields:
        return fields
    return f"{row.get('method')}:{row[CONFIG_ID]}" if _present(row.get(CONFIG_ID)) else ""


def trained_runs(trials: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """Every ended re-run (any phase but the search: seed repeats, matched and crossed runs, controls,
    top-k selection runs), one row per slot, with `replicate` ("0" where the study has none),
    `configuration` and `score` (`metric`, chance where the run did not complete)."""
    trials = with_derived(trials)
    if REPLICATE not in trials:
        trials[REPLICATE] = math.nan
    runs = trials[(trials["phase"] != "search") & trials["phase"].notna() & trials["outcome"].isin(ENDED)
                  & trials["seed"].notna()].copy()
    if "slot" in runs and runs["slot"].notna().any():  # a slot run twice (a resumed study): the last run counts
        order = "start_time" if "start_time" in runs else "slot"
        slotted = runs[runs["slot"].notna()].sort_values(order, kind="stable")
        runs = pd.concat([slotted.drop_duplicates(["key", "slot"], keep="last"), runs[runs["slot"].isna()]])
    runs[REPLICATE] = runs[REPLICATE].where(runs[REPLICATE].notna(), "0").astype(str)
    runs["configuration"] = [_configuration(row) for _, row in runs.iterrows()]
    runs["score"] = _scored(runs, metric) if len(runs) else pd.Series(dtype=float)
    return runs.reset_index(drop=True)


def replicates_of(trials: pd.DataFrame) -> list[str]:
    """The replicates the study's runs name (empty: none tagged, one replicate)."""
    if REPLICATE not in trials:
        return []
    return sorted(trials[REPLICATE].dropna().astype(str).unique(), key=lambda r: (len(r), r))


EVERY_RUN = "every run"  # failed and diverged runs at chance, as in every other table
COMPLETED = "completed runs"  # the same components without them: what one diverged run does to the spread
VARIANCE_COLUMNS = [*IDENTITY, "method", "role", "scored", "runs", "replicates", "configurations", "split_sd",
                    "configuration_sd", "seed_sd", "split_share", "configuration_share", "seed_share", "estimator",
                    "note"]


def _centred(runs: pd.DataFrame) -> pd.DataFrame:
    """Scores centred on their method's mean: the methods pooled with the method as a fixed effect."""
    return runs.assign(score=runs["score"] - runs.groupby("method")["score"].transform("mean"))


def variance_table(trials: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """Per study key and method (and "all methods", the method a fixed effect), the variance
    components of `metric` over the re-runs: sd of each component (accuracy fraction) and its share
    of the total variance (nan: not measured). `scored`: EVERY_RUN (a run that did not complete at
    chance); where some did not, a second row, COMPLETED, over the completed runs only — one
    diverged run at chance can hold most of a pooled variance, and the two rows side by side show
    whether it does."""
    runs = trained_runs(trials, metric)
    rows = []
    for key in sorted(runs["key"].dropna().unique(), key=key_order):
        of_key = runs[runs["key"] == key]
        groups = [(m, of_key[of_key["method"] == m], EVERY_RUN) for m in method_order(of_key["method"])]
        groups.append(("all methods", _centred(of_key), EVERY_RUN))
        completed = of_key[of_key["outcome"] == "completed"]
        if len(completed) < len(of_key):
            groups += [(m, completed[completed["method"] == m], COMPLETED) for m in method_order(completed["method"])
                       if (completed["method"] == m).sum() < (of_key["method"] == m).sum()]
            groups.append(("all methods", _centred(completed), COMPLETED))
        for method, mine, scored in groups:
            row = {**_where(key), "method": method, "role": role(method) if method != "all methods" else "",
                   "scored": scored}
            if mine["score"].notna().sum() < 2:  # a spread needs two runs
                continue
            try:
                found = components(mine)
            except (np.linalg.LinAlgError, ValueError) as error:  # a degenerate fit: said, not fatal to the report
                rows.append({**row, "runs": int(mine["score"].notna().sum()), "estimator": "not estimated",
                             "note": f"the mixed model could not be fitted: {type(error).__name__}: {error}"})
                continue
            total = found.total
            row.update({"runs": found.runs, "replicates": found.replicates, "configurations": found.configurations,
                        "estimator": found.estimator, "note": found.note})
            for part in ("split", "configuration", "seed"):
                value = getattr(found, part)
                row[f"{part}_sd"] = math.sqrt(value) if math.isfinite(value) else math.nan
                row[f"{part}_share"] = value / total if math.isfinite(value) and total > 0 else math.nan
            rows.append(row)
    return pd.DataFrame(rows, columns=VARIANCE_COLUMNS)


REPLICATE_COLUMNS = [*IDENTITY, "method", "role", "versus", "replicates", "method_mean", "versus_mean", *DIFF_COLUMNS,
                     "per_replicate", "held_in_every_replicate"]


def replicate_summary(trials: pd.DataFrame, metric: str = "test_acc", margin: float = MARGIN,
                      reference: str = "baseline") -> pd.DataFrame:
    """Per study key and searched method: Δ = mean over replicates of (method − reference) replicate
    means of the seed repeats, the paired t over replicates (module doc), Holm over the key's
    methods, the verdict and the seed counts (counting replicates); `per_replicate`: each
    replicate's own verdict ("r0: better | r1: inconclusive (…) | ..."), and whether they all agree.
    Empty without ≥ 2 replicates."""
    trials = with_derived(trials)
    replicates = replicates_of(trials)
    columns = REPLICATE_COLUMNS
    if len(replicates) < 2:
        return pd.DataFrame(columns=columns)
    runs = trained_runs(trials, metric)
    repeats = runs[runs["phase"] == "repeat"]
    per = {r: repeat_summary(trials[trials[REPLICATE].astype(str) == r], metric, margin, reference)
           for r in replicates}
    rows = []
    for key in sorted(repeats["key"].dropna().unique(), key=key_order):
        means = (repeats[repeats["key"] == key].groupby(["method", REPLICATE])["score"].mean().unstack(REPLICATE))
        if reference not in means.index:
            continue
        base = means.loc[reference]
        differences = {}
        for method in method_order(means.index):
            if method == reference:
                continue
            shared = [r for r in replicates if r in means.columns and pd.notna(means.loc[method].get(r))
                      and pd.notna(base.get(r))]
            differences[method] = (shared, paired(means.loc[method, shared].to_numpy(float),
                                                  base[shared].to_numpy(float), margin=margin))
        adjusted, planned_differences = _adjusted({m: d for m, (_, d) in differences.items()})
        for method, (shared, _) in differences.items():
            d = dataclasses.replace(planned_differences[method], unit="replicates")
            kinds = {}
            for r in shared:
                row = per[r][(per[r]["key"] == key) & (per[r]["method"] == method)]
                kinds[r] = row["verdict"].iloc[0] if len(row) else "–"
            first_words = {str(v).split(" ")[0] for v in kinds.values()}
            rows.append({**_where(key), "method": method, "role": role(method), "versus": reference,
                         "replicates": len(shared), "method_mean": float(means.loc[method, shared].mean()),
                         "versus_mean": float(base[shared].mean()), **_difference_columns(d, adjusted[method]),
                         "per_replicate": " | ".join(f"r{r}: {v}" for r, v in kinds.items()),
                         "held_in_every_replicate": len(first_words) == 1 and "–" not in first_words})
    return pd.DataFrame(rows, columns=columns)


__all__ = ["REPLICATE", "CONFIG_ID", "EVERY_RUN", "COMPLETED", "ONE_REPLICATE", "Components", "components", "trained_runs", "replicates_of",
           "variance_table", "replicate_summary", "VARIANCE_COLUMNS", "REPLICATE_COLUMNS"]
