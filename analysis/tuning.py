"""Tuning curves: how good a method gets after k search trials, with simultaneous confidence bands.

A method's search trials are draws from its score distribution F (validation accuracy of a random
configuration of its space). The tuning curve is the best score after k draws, as a function of
k = 1..n (n: the trials the search ran for the method):
  * expected best, E[max of k] = Σ y (F(y)^k − F(y⁻)^k) — Dodge et al. 2019, "Show Your Work:
    Improved Reporting of Experimental Results" (EMNLP), evaluated at the empirical distribution
    of the n trials (opda's `average_tuning_curve`). At k = 1 it is the mean of the trials; it
    rises with k.
  * median best, F⁻¹(0.5^(1/k)) — the median of the max of k draws; Lourie, Cho & He 2023, "Show
    Your Work with Confidence: Confidence Bands for Tuning Curves" (arXiv:2311.09480), recommend it
    because it is robust to the tails and its bands are tight (opda's `quantile_tuning_curve`).
Bands: opda's `EmpiricalDistribution.confidence_bands` — a simultaneous band for the CDF F
(Learned-Miller–DeStefano, equal-tailed: "almost the same size" as the highest-density variant,
opda's docs, and ~8× faster to calibrate), with the support of accuracy, [0, 1], as its bounds.
Both tuning curves are monotone in F (a stochastically larger F gives a larger curve at every k),
so the curves of the band's two edges bound the true curve at every k at once whenever the band
holds F: a simultaneous band over k, with at least the band's confidence (Lourie et al. 2023). Not
hand-written: opda computes the bands and the curves.

What the bands assume, and what they cost:
  * independent draws from one distribution — a random search. A TPE search is one only for its
    first `n_startup_trials` (10 in Optuna) trials; after them a trial depends on the earlier
    ones (`sampler_note` says which case a study is).
  * a continuous F for exact coverage. Accuracy on a finite validation split is discrete, and
    every failed trial scores the same chance; with ties the band is conservative (coverage at
    least the nominal; tests/test_tuning.py checks both cases by simulation). opda's warning
    about duplicates is silenced for that reason.
  * nothing about the tails: the expected best depends on the whole upper tail, and with n draws
    the band cannot exclude mass near 100 % — its upper edge reaches the top of the support as k
    approaches n. The lower edge of the expected curve at small k likewise reaches towards 0, the
    lower bound. Where the expected curve's band is wide, the median curve's is the informative one.

Failed or diverged search trials score chance accuracy (1/classes), as the re-runs do (dropping
them would flatter an unstable method); a trial ASHA stopped scores its last validation accuracy
(what the search saw when it stopped it); trials still running are left out.

The calibration of the band (a simulation of 100,000 uniform samples in opda) depends on n and the
confidence only, so it is done once per (n, confidence) with a seeded generator: the same trials
give the same band in every report.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings

import numpy as np
import pandas as pd
from opda.nonparametric import EmpiricalDistribution

from study.record import ENDED
from trainer.config import method_order, role

from .load import key_order
from .stats import CONFIDENCE
from .tables import IDENTITY, _where, chance, study_keys, with_derived

SUPPORT = (0.0, 1.0)  # accuracy: the band's bounds, the only ones that hold without assumptions
BAND_METHOD = "ld_equal_tailed"
BAND_SEED = 20231116  # the seed of opda's calibration simulation (any fixed value: reproducible bands)
TPE_STARTUP = 10  # Optuna's TPESampler n_startup_trials default: its first 10 trials are random
# The launcher's random search draws trial i of every method from the same stream (common random numbers).
RANDOM_LABEL = ("random search with common random numbers (trial i of every method has the same shared "
                "hyperparameters)")
METRIC = "val_acc"  # the search's selection metric


@dataclasses.dataclass
class TuningCurve:
    """One method's tuning curves at k = 1..n, accuracies as fractions; *_low/*_high: the band."""
    n: int
    ks: np.ndarray
    expected: np.ndarray
    expected_low: np.ndarray
    expected_high: np.ndarray
    median: np.ndarray
    median_low: np.ndarray
    median_high: np.ndarray


@functools.cache
def _generator(n: int, confidence: float) -> np.random.Generator:
    """One generator per (n, confidence): opda caches the band's calibration by its arguments, the
    generator object among them, so the same object means one calibration, and a fresh seeded one
    means the same calibration in every process."""
    return np.random.default_rng([BAND_SEED, n, round(confidence * 1e6)])


def tuning_curve(scores, confidence: float = CONFIDENCE, support: tuple[float, float] = SUPPORT,
                 budget: int | None = None) -> TuningCurve:
    """Expected and median best of k = 1..budget draws (default: all n scores) from the empirical
    distribution of `scores`, each with opda's simultaneous band at `confidence` (module doc)."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 1 or not len(scores) or not np.isfinite(scores).all():
        raise ValueError("tuning_curve needs a non-empty 1-D array of finite scores")
    low, high = support
    n = len(scores)
    with warnings.catch_warnings():  # ties (discrete accuracy, chance-scored failures): conservative band
        warnings.filterwarnings("ignore", "Duplicates detected", RuntimeWarning)
        lower_cdf, point, upper_cdf = EmpiricalDistribution.confidence_bands(
            scores, confidence, a=low, b=high, generator=_generator(n, confidence), method=BAND_METHOD, n_jobs=1)
    ks = np.arange(1, min(n, budget or n) + 1)
    # The upper edge of the CDF band is the stochastically smallest distribution: the lower curve.
    return TuningCurve(n, ks, point.average_tuning_curve(ks), upper_cdf.average_tuning_curve(ks),
                       lower_cdf.average_tuning_curve(ks), point.quantile_tuning_curve(ks),
                       upper_cdf.quantile_tuning_curve(ks), lower_cdf.quantile_tuning_curve(ks))


# ---------------------------------------------------------------------------------------------
# From the study's search trials

def search_scores(trials: pd.DataFrame) -> pd.DataFrame:
    """Every ended search trial with `score`: its validation accuracy; chance where it failed or
    diverged (or completed without a value); its last validation accuracy where ASHA stopped it."""
    trials = with_derived(trials)
    search = trials[(trials["phase"] == "search") & trials["outcome"].isin(ENDED)].copy()
    values = pd.to_numeric(search[METRIC], errors="coerce")
    scored_as_is = search["outcome"].isin(["completed", "stopped"]) & values.notna()
    search["score"] = values.where(scored_as_is, search["dataset"].map(chance))
    search["scored_chance"] = ~scored_as_is
    return search


CURVE_COLUMNS = [*IDENTITY, "method", "role", "n", "draws", "failed", "k", "expected", "expected_low",
                 "expected_high", "median", "median_low", "median_high"]


def tuning_table(trials: pd.DataFrame, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Long form, one row per study key (dataset, regime), searched method and k = 1..n: the tuning
    curves of the method's search trials and their bands (tuning_curves.csv). `n`: the trials one
    search of the method ran — with whole-pipeline replicates (a `replicate` tag), the most in one
    replicate; `draws`: the trials the curve is estimated from (every replicate's, pooled: each a
    draw of a configuration on a random split, so the curve averages over splits as the headline
    does — close to, not equal to, the mean of per-split curves); `failed`: how many scored chance."""
    search = search_scores(trials)
    rows = []
    for key in study_keys(search):
        of_key = search[search["key"] == key]
        for method in method_order(of_key["method"].dropna()):
            mine = of_key[of_key["method"] == method]
            replicates = mine["replicate"].dropna() if "replicate" in mine else pd.Series(dtype=object)
            budget = int(replicates.value_counts().max()) if replicates.nunique() > 1 else len(mine)
            result = tuning_curve(mine["score"].to_numpy(float), confidence, budget=budget)
            for i, k in enumerate(result.ks):
                rows.append({**_where(key), "method": method, "role": role(method), "n": budget, "draws": result.n,
                             "failed": int(mine["scored_chance"].sum()), "k": int(k),
                             **{name: float(getattr(result, name)[i]) for name in CURVE_COLUMNS[-6:]}})
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def _crossings(difference: np.ndarray) -> list[int]:
    """The k (1-based) at which the sign of difference[k-1] changes from the last non-zero sign:
    where two curves change order. Ties (0) change nothing."""
    crossings, last = [], 0.0
    for k, value in enumerate(difference, start=1):
        sign = float(np.sign(value))
        if sign and last and sign != last:
            crossings.append(k)
        last = sign or last
    return crossings


def _span(ks: list[int]) -> str:
    """[1, 2, 3, 6] → "1–3, 6"."""
    parts, start = [], None
    for i, k in enumerate(ks):
        if start is None:
            start = k
        if i + 1 == len(ks) or ks[i + 1] != k + 1:
            parts.append(f"{start}" if start == k else f"{start}–{k}")
            start = None
    return ", ".join(parts)


COMPARISON_COLUMNS = [*IDENTITY, "method", "role", "versus", "n", "versus_n", "budget", "expected_at_budget",
                      "versus_expected_at_budget", "order_at_budget", "order_at_1", "crossings", "bands_overlap",
                      "bands_separate", "median_bands_separate"]


def tuning_comparison(curves: pd.DataFrame, reference: str = "baseline") -> pd.DataFrame:
    """Per study key and method: its expected-best curve against the reference's, on the k both
    reached (1..budget, budget = the smaller n): the order at k = 1 and at the budget ("above",
    "below", "tied"), `crossings` (the k at which the point estimates change order, e.g. "3, 7"),
    whether the two bands overlap at the budget, and the k at which the bands — of the expected
    curve, and of the median curve — are disjoint (`bands_separate`, e.g. "1–4"; "" for none)."""
    rows = []
    for key in sorted(curves["key"].dropna().unique(), key=key_order):
        of_key = curves[curves["key"] == key]
        base = of_key[of_key["method"] == reference].set_index("k")
        for method in method_order(of_key["method"]):
            if method == reference or base.empty:
                continue
            mine = of_key[of_key["method"] == method].set_index("k")
            budget = int(min(mine["n"].iloc[0], base["n"].iloc[0]))
            ks = list(range(1, budget + 1))
            a, b = mine.loc[ks], base.loc[ks]
            difference = (a["expected"] - b["expected"]).to_numpy()

            def order(value: float) -> str:
                return "above" if value > 0 else "below" if value < 0 else "tied"

            def separate(low: str, high: str) -> list[int]:
                return [k for k in ks if a.loc[k, low] > b.loc[k, high] or b.loc[k, low] > a.loc[k, high]]

            last = ks[-1]
            rows.append({**_where(key), "method": method, "role": role(method), "versus": reference,
                         "n": int(mine["n"].iloc[0]), "versus_n": int(base["n"].iloc[0]), "budget": budget,
                         "expected_at_budget": a.loc[last, "expected"],
                         "versus_expected_at_budget": b.loc[last, "expected"],
                         "order_at_budget": order(difference[-1]), "order_at_1": order(difference[0]),
                         "crossings": ", ".join(map(str, _crossings(difference))),
                         "bands_overlap": not (a.loc[last, "expected_low"] > b.loc[last, "expected_high"]
                                               or b.loc[last, "expected_low"] > a.loc[last, "expected_high"]),
                         "bands_separate": _span(separate("expected_low", "expected_high")),
                         "median_bands_separate": _span(separate("median_low", "median_high"))})
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


# ---------------------------------------------------------------------------------------------
# Which search it was

@dataclasses.dataclass
class Sampler:
    kind: str  # "random", "tpe" or what the parent run recorded
    startup: int | None  # TPE's random startup trials
    label: str  # how the report names it: "random search", "TPE (startup 10)"
    recorded: bool  # False: not on the parent run; assumed from the code that wrote the study


def sampler_of(parent_params: dict | None) -> Sampler:
    """The search's sampler from the parent run's params `sampler` ("random": the launcher's random
    search with common random numbers, "tpe", ...) and `n_startup_trials`; without them, the TPE with
    Optuna's 10 startup trials that the launcher ran before it recorded its sampler."""
    params = parent_params or {}
    name = str(params.get("sampler") or "").strip().lower()
    startup = params.get("n_startup_trials")
    try:
        startup = int(float(startup)) if startup not in (None, "") else None
    except (TypeError, ValueError):
        startup = None
    if not name:
        return Sampler("tpe", TPE_STARTUP, f"TPE (startup {TPE_STARTUP})", False)
    if name.startswith("random"):
        return Sampler("random", None, RANDOM_LABEL, True)
    if name.startswith("tpe"):
        startup = TPE_STARTUP if startup is None else startup
        return Sampler("tpe", startup, f"TPE (startup {startup})", True)
    return Sampler(name, startup, name, True)


def sampler_note(sampler: Sampler, trials_per_method: int | float) -> str | None:
    """A warning where the search is not what the bands assume, or not what its name says."""
    try:
        n = int(trials_per_method)  # numpy's integers too, as a frame hands them out
    except (TypeError, ValueError, OverflowError):  # nan, None: no count, no warning
        return None
    where = "" if sampler.recorded else " (the parent run records no sampler: the launcher's TPE assumed)"
    if sampler.kind == "tpe" and sampler.startup is not None and n <= sampler.startup:
        return (f"{n} search trials per method with {sampler.label}{where}: TPE draws its first {sampler.startup} "
                f"trials at random, so this search was a random search of {n} draws per method, and each method's "
                f"sampler had its own seed — the methods saw different configurations. The tuning curves read "
                f"as a random search's; a TPE search needs more than {sampler.startup} trials per method.")
    if sampler.kind == "tpe":
        return (f"{sampler.label}{where}: after its {sampler.startup} random startup trials TPE chooses each trial "
                f"from the earlier ones, so the {n} trials per method are not independent draws; the bands, which "
                f"assume independent draws (a random search), are approximate.")
    if sampler.kind != "random":
        return (f"sampler {sampler.label!r}: the bands assume independent draws (a random search); for this "
                f"sampler they are approximate.")
    return None


__all__ = ["SUPPORT", "BAND_METHOD", "TPE_STARTUP", "RANDOM_LABEL", "METRIC", "TuningCurve", "tuning_curve",
           "search_scores", "tuning_table", "tuning_comparison", "CURVE_COLUMNS", "COMPARISON_COLUMNS", "Sampler",
           "sampler_of", "sampler_note"]
