"""The statistics of the answer: mean ± 95% t interval, and a method against the baseline.

Every comparison of a method with the baseline is a `Difference` of mean(a) − mean(b) that carries,
beside Δ, its 95% CI and two-sided p, what the data could and could not have shown:

Test. `welch(a, b)`: Welch's two-sample t-test (unequal variances) and its Welch CI — seed
repeats of two configs have no reason to share a variance. `paired(a, b)`: the paired t-test of
a − b (scipy.stats.ttest_rel) for runs matched on the same seeds, with the t CI of the mean
difference. Several methods are compared with one baseline, so their p-values are Holm-adjusted
over that family (`holm`); a difference is called better/worse only when the adjusted p < ALPHA,
which keeps the chance of any false "better than baseline" in the table at 5%.

Minimum detectable difference (`mde`): the |Δ| that the same test, with these n and the observed
spread, detects with 80% power at two-sided α = 0.05 — from statsmodels' noncentral-t power
functions, solved for the effect size by root finding (brentq), then multiplied by the sd below:
  * paired: sd = sd of the per-seed differences a − b (ddof=1); TTestPower with nobs = n pairs,
    df = n − 1, noncentrality Δ·√n / sd. Exactly the power of the paired t-test.
  * Welch: sd = the "effective" sd se / √(1/n_a + 1/n_b), where se = √(s_a²/n_a + s_b²/n_b) is the
    Welch standard error (s = sample sd, ddof=1). It is the one sd that makes TTestIndPower's
    noncentrality d·√(n_a·n_b/(n_a+n_b)) equal Δ / se; for n_a = n_b it is √((s_a² + s_b²)/2).
    TTestIndPower(nobs1 = n_a, ratio = n_b/n_a) is evaluated at the Welch–Satterthwaite df of the
    data, not its pooled default n_a + n_b − 2: with 3 seeds and unequal spreads the pooled df
    would promise power the Welch test does not have. With equal n and equal sds the two agree.
  `sd` in the dataclass is the sd used; `mde` = standardized effect × sd, in accuracy fractions.

Equivalence (`p_tost`): two one-sided t-tests against ±margin (default MARGIN = 0.005, i.e.
±0.5 percentage points of accuracy, in the data's unit): statsmodels' ttost_ind(a, b, −m, m,
usevar='unequal') for Welch (Welch df), ttost_paired for paired. p_tost = the larger one-sided p.

Seeds needed (`seeds_needed`, per side, or pairs): the smallest N ≥ 2 for which the MDE as defined
above, with N runs on each side and the observed sds (s_a, s_b, or the sd of differences), is
≤ max(|Δ|, margin). So a real gap the size of the one seen — or, if that is smaller, a gap the
size of the margin — would be detected with 80% power. It is a rough planning number (the sds
are estimates; α is the unadjusted 0.05, a Holm family needs more; showing equivalence when the
true Δ sits close to the margin needs more too). Never less than one more seed than the larger
side has already; capped at SEEDS_CAP, which then means "≥ SEEDS_CAP".

Verdict (`verdict`), four-way, in this order:
  1. "not testable (reason)" — p is undefined: fewer than 2 runs (pairs) on a side, or no spread
     at all (every run of both sides scored the same, or every paired difference is the same).
     Such runs are not called equivalent even when their Δ is 0: identical scores over several
     seeds usually mean the seed did not reach the run, or every run failed and was scored
     chance — something to look at, not a result.
  2. "better" / "worse" — Holm-adjusted p < α; the direction is the sign of Δ. A significant Δ
     that lies inside the margin is still "better"/"worse" (Δ and its CI show how big).
  3. "equivalent within ±0.5 pp" — p_tost < α, *not* adjusted for multiplicity. Equivalence
     claims are a separate family from the "better than baseline" claims Holm protects; TOST
     is already an intersection–union test (both one-sided tests must reject, each at α); and a
     false "equivalent" asserts the null the study starts from ("the curriculum gains nothing
     worth having"), the cheaper error here. The margin in the words is the one used.
  4. "inconclusive (needs ≈ N seeds)" — or "(needs ≥1000 seeds)" at the cap.
`nominal_verdict` keeps the older wording ("significantly better", "no significant difference
after Holm correction (nominally better)", ...).

Failed runs (`fill_failed`): a diverged or failed repeat scores chance accuracy (1/num_classes) in
the comparison rather than being dropped — dropping the seeds a method failed on would flatter it —
and is counted, so the table can flag it. A run marked ok whose value is missing/non-finite is
treated as failed too. welch/paired themselves drop non-finite values, so fill first.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np
from scipy import integrate, optimize, stats
from statsmodels.stats.power import TTestIndPower, TTestPower
from statsmodels.stats.weightstats import ttost_ind, ttost_paired

ALPHA = 0.05
CONFIDENCE = 0.95
POWER = 0.80
MARGIN = 0.005  # ±0.5 percentage points of accuracy (accuracies are fractions)
SEEDS_CAP = 1000


@dataclasses.dataclass
class MeanCI:
    n: int
    mean: float
    sd: float
    half_width: float  # of the two-sided t interval; nan for n < 2

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width


@dataclasses.dataclass
class Difference:
    """mean(a) − mean(b) with Welch's or the paired t-test, its power and equivalence (module doc)."""
    n_a: int  # runs (paired: pairs) used on each side
    n_b: int
    diff: float
    low: float  # CONFIDENCE interval of diff
    high: float
    p: float  # two-sided; nan where the test is undefined (n < 2 or no variance at all)
    df: float
    statistic: float
    note: str = ""  # why p is nan
    kind: str = "welch"  # "welch" or "paired"
    se: float = math.nan  # standard error of diff
    sd_a: float = math.nan  # sample sds (ddof=1) of each side
    sd_b: float = math.nan
    sd: float = math.nan  # the sd the MDE is scaled by: Welch effective sd, or sd of differences
    mde: float = math.nan  # |Δ| detected with POWER at two-sided ALPHA, for these n and sds
    margin: float = MARGIN  # equivalence margin of p_tost and seeds_needed
    p_tost: float = math.nan  # TOST p against ±margin (the larger one-sided p)
    seeds_needed: float = math.nan  # per side (pairs); SEEDS_CAP means ≥ SEEDS_CAP


@dataclasses.dataclass
class Filled:
    """Values with every failed run replaced by chance accuracy."""
    values: list[float]
    n_failed: int
    chance: float


def mean_ci(values, confidence: float = CONFIDENCE) -> MeanCI:
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    n = len(values)
    if n == 0:
        return MeanCI(0, math.nan, math.nan, math.nan)
    mean = float(values.mean())
    if n < 2:
        return MeanCI(1, mean, math.nan, math.nan)
    sd = float(values.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n))
    return MeanCI(n, mean, sd, half)


# --- power --------------------------------------------------------------------------------------

def _welch_df(var_a_n: float, var_b_n: float, n_a: int, n_b: int) -> float:
    """Welch–Satterthwaite df from s²/n of each side."""
    denominator = (var_a_n ** 2 / (n_a - 1) if var_a_n else 0.0) + (var_b_n ** 2 / (n_b - 1) if var_b_n else 0.0)
    return (var_a_n + var_b_n) ** 2 / denominator


def _solve_effect(power_of) -> float:
    """The standardized effect d > 0 at which power_of(d) == POWER (power rises with d)."""
    high = 1.0
    while power_of(high) < POWER:
        high *= 2
        if high > 1e6:
            return math.nan
    return float(optimize.brentq(lambda d: power_of(d) - POWER, 1e-12, high, xtol=1e-12, rtol=1e-10))


def _checked(power: float, noncentrality: float, df: float, alpha: float) -> float:
    """statsmodels' power, or where it is nan (Boost's noncentral t fails to converge: far in the
    tail, and at df ≈ 1 already at ordinary powers, e.g. λ between 7 and 40) the same two-sided
    power from the noncentral t's definition T = (Z + λ)/√(V/df), V ~ χ²(df), integrated over Z:
    P(|T| > c) = E_Z[P(V < df·(Z + λ)²/c²)] (|Z| > 12 holds under 1e-32 of the mass)."""
    if math.isfinite(power):
        return power
    critical = stats.t.isf(alpha / 2, df)

    def given(z: float) -> float:
        return stats.norm.pdf(z) * stats.chi2.cdf(df * (z + noncentrality) ** 2 / critical ** 2, df)

    return float(integrate.quad(given, -12.0, 12.0)[0])


def _welch_power(effect: float, n_a: int, n_b: int, df: float, alpha: float) -> float:
    power = float(TTestIndPower().power(effect, n_a, alpha, ratio=n_b / n_a, df=df))
    return _checked(power, effect / math.sqrt(1 / n_a + 1 / n_b), df, alpha)


def _paired_power(effect: float, n: int, alpha: float) -> float:
    return _checked(float(TTestPower().power(effect, n, alpha)), effect * math.sqrt(n), n - 1, alpha)


def _mde(kind: str, n_a: int, n_b: int, sd_a: float, sd_b: float, sd_diff: float,
         alpha: float = ALPHA) -> tuple[float, float]:
    """(MDE, the sd it is in units of) for these n and sds; see the module doc."""
    if kind == "paired":
        if n_a < 2 or not sd_diff > 0:
            return math.nan, math.nan
        return _solve_effect(lambda d: _paired_power(d, n_a, alpha)) * sd_diff, sd_diff
    if n_a < 2 or n_b < 2:
        return math.nan, math.nan
    va, vb = sd_a ** 2 / n_a, sd_b ** 2 / n_b
    if not va + vb > 0:
        return math.nan, math.nan
    sd = math.sqrt(va + vb) / math.sqrt(1 / n_a + 1 / n_b)
    df = _welch_df(va, vb, n_a, n_b)
    return _solve_effect(lambda d: _welch_power(d, n_a, n_b, df, alpha)) * sd, sd


def _seeds_needed(d: Difference, margin: float, alpha: float = ALPHA) -> float:
    """Smallest N per side whose MDE (same sds) is ≤ max(|Δ|, margin); see the module doc."""
    target = max(abs(d.diff), margin)
    if not (math.isfinite(target) and target > 0 and math.isfinite(d.sd) and d.sd > 0):
        return math.nan

    def detects(n: int) -> bool:  # power at Δ = target with n per side ≥ POWER  ⇔  MDE(n) ≤ target
        if d.kind == "paired":
            return _paired_power(target / d.sd, n, alpha) >= POWER
        va, vb = d.sd_a ** 2 / n, d.sd_b ** 2 / n
        effective_sd = math.sqrt((d.sd_a ** 2 + d.sd_b ** 2) / 2)
        return _welch_power(target / effective_sd, n, n, _welch_df(va, vb, n, n), alpha) >= POWER

    floor = max(d.n_a, d.n_b) + 1
    if not detects(SEEDS_CAP):
        return float(SEEDS_CAP)
    low, high = 1, SEEDS_CAP  # detects(high) holds; detects(1) is undefined, treated as False
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if detects(middle) else (middle, high)
    return float(min(SEEDS_CAP, max(high, floor)))


def _tost_from_summary(d: Difference, margin: float) -> float:
    """TOST p from Δ, se and df (the same two one-sided t-tests statsmodels runs)."""
    if not (math.isfinite(d.se) and d.se > 0 and math.isfinite(d.df)):
        return math.nan
    p_lower = stats.t.sf((d.diff + margin) / d.se, d.df)  # H0: Δ ≤ −margin
    p_upper = stats.t.cdf((d.diff - margin) / d.se, d.df)  # H0: Δ ≥ +margin
    return float(max(p_lower, p_upper))


def with_margin(difference: Difference, margin: float) -> Difference:
    """The same comparison with p_tost and seeds_needed for another equivalence margin."""
    if not math.isfinite(difference.p):
        return dataclasses.replace(difference, margin=margin)
    return dataclasses.replace(difference, margin=margin, p_tost=_tost_from_summary(difference, margin),
                               seeds_needed=_seeds_needed(difference, margin))


# --- the two tests ------------------------------------------------------------------------------

def _finite_sd(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if len(values) >= 2 else math.nan


def welch(a, b, confidence: float = CONFIDENCE, margin: float = MARGIN) -> Difference:
    """Welch's t-test of mean(a) − mean(b) and its confidence interval (scipy.stats.ttest_ind),
    with MDE, TOST p against ±margin (statsmodels ttost_ind, usevar='unequal') and seeds needed."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    diff = float(a.mean() - b.mean()) if len(a) and len(b) else math.nan
    nan = math.nan
    common = dict(kind="welch", sd_a=_finite_sd(a), sd_b=_finite_sd(b), margin=margin)
    if len(a) < 2 or len(b) < 2:
        return Difference(len(a), len(b), diff, nan, nan, nan, nan, nan,
                          "needs at least 2 runs on each side", **common)
    if a.std() == 0 and b.std() == 0:
        return Difference(len(a), len(b), diff, diff, diff, nan, nan, nan,
                          "every run of both sides scored the same: no variance to test against", **common)
    with warnings.catch_warnings():  # near-identical samples: scipy warns, the numbers stand
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_ind(a, b, equal_var=False)
        interval = result.confidence_interval(confidence)
        p_tost = float(ttost_ind(a, b, -margin, margin, usevar="unequal")[0])
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    mde, sd = _mde("welch", len(a), len(b), common["sd_a"], common["sd_b"], nan)
    d = Difference(len(a), len(b), diff, float(interval.low), float(interval.high), float(result.pvalue),
                   float(result.df), float(result.statistic), se=se, sd=sd, mde=mde, p_tost=p_tost, **common)
    d.seeds_needed = _seeds_needed(d, margin)
    return d


def paired(a, b, confidence: float = CONFIDENCE, margin: float = MARGIN) -> Difference:
    """Paired t-test of a − b for runs matched by position (the same seed), scipy.stats.ttest_rel,
    with the t CI of the mean difference, MDE, TOST p (statsmodels ttost_paired) and seeds needed.
    A pair with a non-finite value on either side is dropped."""
    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired needs matched runs: {a.shape} against {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    n = len(a)
    differences = a - b
    diff = float(differences.mean()) if n else math.nan
    nan = math.nan
    common = dict(kind="paired", sd_a=_finite_sd(a), sd_b=_finite_sd(b), margin=margin)
    if n < 2:
        return Difference(n, n, diff, nan, nan, nan, nan, nan, "needs at least 2 matched pairs", **common)
    if differences.std() == 0:
        return Difference(n, n, diff, diff, diff, nan, nan, nan,
                          "every paired difference is the same: no variance to test against", **common)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = stats.ttest_rel(a, b)
        interval = result.confidence_interval(confidence)
        p_tost = float(ttost_paired(a, b, -margin, margin)[0])
    sd_diff = float(differences.std(ddof=1))
    mde, sd = _mde("paired", n, n, nan, nan, sd_diff)
    d = Difference(n, n, diff, float(interval.low), float(interval.high), float(result.pvalue),
                   float(result.df), float(result.statistic), se=sd_diff / math.sqrt(n), sd=sd, mde=mde,
                   p_tost=p_tost, **common)
    d.seeds_needed = _seeds_needed(d, margin)
    return d


def holm(pvalues) -> list[float]:
    """Holm–Bonferroni adjusted p-values (nan entries are left out of the family and stay nan)."""
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full(len(p), math.nan)
    index = np.flatnonzero(np.isfinite(p))
    if len(index) == 0:
        return adjusted.tolist()
    order = index[np.argsort(p[index], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


def fill_failed(values, ok, chance: float) -> Filled:
    """Score every failed/diverged run (ok False, or a non-finite value) as chance accuracy."""
    values = np.asarray(values, dtype=float)
    ok = np.asarray(ok, dtype=bool)
    if values.shape != ok.shape:
        raise ValueError(f"values {values.shape} and ok {ok.shape} differ in shape")
    failed = ~ok | ~np.isfinite(values)
    return Filled(np.where(failed, chance, values).tolist(), int(failed.sum()), float(chance))


# --- words --------------------------------------------------------------------------------------

def _pp(margin: float) -> str:
    return f"{round(margin * 100, 6):g}"


def verdict(difference: Difference, p_adjusted: float, margin: float | None = None,
            alpha: float = ALPHA) -> str:
    """"better", "worse", "equivalent within ±0.5 pp", "inconclusive (needs ≈ N seeds)" or
    "not testable (reason)" — rules in the module doc. margin None: the difference's own."""
    if margin is not None and margin != difference.margin:
        difference = with_margin(difference, margin)
    if not math.isfinite(difference.p):
        return f"not testable ({difference.note})" if difference.note else "not testable"
    if math.isfinite(p_adjusted) and p_adjusted < alpha:
        return "better" if difference.diff > 0 else "worse"
    if math.isfinite(difference.p_tost) and difference.p_tost < alpha:
        return f"equivalent within ±{_pp(difference.margin)} pp"
    n = difference.seeds_needed
    if not math.isfinite(n):
        return "inconclusive"
    if n >= SEEDS_CAP:
        return f"inconclusive (needs ≥{SEEDS_CAP} seeds)"
    return f"inconclusive (needs ≈ {int(n)} seeds)"


def nominal_verdict(difference: Difference, p_adjusted: float, alpha: float = ALPHA,
                    better: str = "better", worse: str = "worse") -> str:
    """The older plain words: significance only, with the "nominally better" nuance."""
    if not math.isfinite(difference.p):
        return f"not testable ({difference.note})" if difference.note else "not testable"
    direction = better if difference.diff > 0 else worse
    if math.isfinite(p_adjusted) and p_adjusted < alpha:
        return f"significantly {direction}"
    if difference.p < alpha:
        return f"no significant difference after Holm correction (nominally {direction})"
    return "no significant difference"


__all__ = ["ALPHA", "CONFIDENCE", "POWER", "MARGIN", "SEEDS_CAP", "MeanCI", "Difference", "Filled",
           "mean_ci", "welch", "paired", "holm", "with_margin", "fill_failed", "verdict", "nominal_verdict"]
