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

Seeds needed, two numbers (`planned`, at the α of the comparison's Holm family). Where a verdict is
inconclusive the data can be short of two different things, and they need different numbers:
  * `seeds_to_detect`: the smallest N (per side; pairs for paired) at which the same test (Welch
    with the Welch–Satterthwaite df for N runs a side and the observed s_a, s_b; or the paired t
    with the observed sd of differences) has POWER (80%) to detect the observed |Δ| at the
    planning α — statsmodels' TTestIndPower / TTestPower, as for the MDE. Δ = 0 has nothing to
    detect: nan.
  * `seeds_for_equivalence`: the smallest N at which TOST against ±margin has 80% power if the true
    Δ and sd are the observed ones. statsmodels has no TOST power for t-tests (its
    `power_equivalence_oneway` is Wellek's F-test for k groups, another hypothesis), so it is
    computed by its definition (Phillips 1990, "Power of the two one-sided tests procedure in
    bioequivalence", J. Pharmacokinet. Biopharm. 18:137; Owen 1965's bivariate noncentral t): with
    τ the true sd of Δ̂ and SE = τ·√(V/df), V ~ χ²(df), both one-sided tests reject iff
    −m + t_c·SE < Δ̂ < m − t_c·SE, so power = E_V[Φ((m − t_c·SE − Δ)/τ) − Φ((−m + t_c·SE − Δ)/τ)]
    over V < df·(m / (t_c·τ))², integrated numerically (`tost_power`). Paired: τ = sd/√N, df = N − 1
    (exact). Welch: τ = √((s_a² + s_b²)/N) and df = the Welch–Satterthwaite df for N a side — the
    Satterthwaite approximation the Welch test itself makes (exact when s_a = s_b, up to the
    test's own estimated df). Where |Δ| ≥ margin, equivalence cannot be shown if Δ is as observed
    (the power falls to 0 as N grows): inf.
  Both are counts, not floors: they can be below the runs already made ("already enough if Δ is
  as observed"). SEEDS_CAP means "≥ SEEDS_CAP". Both are planning numbers from estimated sds.

  The α of both (`alpha_adjusted`): ALPHA / m, m = the comparisons tested in the Holm family (the
  Bonferroni level). Holm rejects a comparison whose p ≤ α/m whatever the other p-values are —
  it is the first step of the sequence — while a comparison ranked r-th needs only α/(m − r + 1),
  and only once the r − 1 before it are rejected. Seeds added to an open comparison change its p
  and so its rank; α/m is the one level that holds at every rank: conservative (the count is an
  upper bound for any rank), never optimistic. The equivalence verdict itself uses the unadjusted
  α (below), so `seeds_for_equivalence` is the count at which equivalence would also survive a
  Holm adjustment over the family: conservative for the verdict as made. `welch`/`paired` alone
  plan at ALPHA (a family of one); `analysis.tables` re-plans at ALPHA/m.

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
  4. "inconclusive (≈ 31 seeds per side would detect −0.24 pp; ≈ 21 would show equivalence within
     ±0.5 pp)" — the two counts above, at alpha_adjusted, in words (paired: "paired seeds"; "≥1000"
     at the cap; "already enough if Δ is as observed" where a count is ≤ the runs made; "cannot be
     shown while |Δ| ≥ 0.5 pp" where equivalence is out of reach).
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
from scipy import integrate, optimize, special, stats
from statsmodels.stats.power import TTestIndPower, TTestPower
from statsmodels.stats.weightstats import ttost_ind, ttost_paired

from study.sequential import ALPHA, MARGIN  # the study's stopping decisions use the same conventions

CONFIDENCE = 0.95
POWER = 0.80
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
    margin: float = MARGIN  # equivalence margin of p_tost and seeds_for_equivalence
    p_tost: float = math.nan  # TOST p against ±margin (the larger one-sided p)
    alpha_adjusted: float = ALPHA  # the α both seed counts are planned at: ALPHA / (Holm family size)
    seeds_to_detect: float = math.nan  # per side (pairs): 80% power for the observed |Δ|; SEEDS_CAP = ≥
    seeds_for_equivalence: float = math.nan  # per side (pairs): 80% TOST power at the observed Δ, sd; inf = never
    unit: str = ""  # what the counts count, in words; "" = "seeds per side" (Welch) or "paired seeds"


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


def _smallest_n(enough) -> float:
    """The smallest N in 2..SEEDS_CAP with enough(N) (which must be monotone in N), or SEEDS_CAP
    ("≥ SEEDS_CAP") when even that is not enough. 2 is the least a t-test can run on."""
    if not enough(SEEDS_CAP):
        return float(SEEDS_CAP)
    if enough(2):
        return 2.0
    low, high = 2, SEEDS_CAP  # enough(high) holds, enough(low) does not
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (low, middle) if enough(middle) else (middle, high)
    return float(high)


def _sd_of_difference(d: Difference, n: int) -> tuple[float, float]:
    """(τ, df): the true sd of Δ̂ and the test's df with n runs a side (pairs), the sds as observed."""
    if d.kind == "paired":
        return d.sd / math.sqrt(n), n - 1
    va, vb = d.sd_a ** 2 / n, d.sd_b ** 2 / n
    return math.sqrt(va + vb), _welch_df(va, vb, n, n)


def _plannable(d: Difference) -> bool:
    if d.kind == "paired":
        return math.isfinite(d.sd) and d.sd > 0
    return (math.isfinite(d.sd_a) and math.isfinite(d.sd_b) and d.sd_a ** 2 + d.sd_b ** 2 > 0)


def seeds_to_detect(d: Difference, alpha: float = ALPHA) -> float:
    """Smallest N per side (pairs) with POWER to detect the observed |Δ| at two-sided `alpha`, the
    observed sds (module doc); nan when there is no Δ or no spread."""
    target = abs(d.diff)
    if not (math.isfinite(target) and target > 0 and _plannable(d)):
        return math.nan

    def detects(n: int) -> bool:
        if d.kind == "paired":
            return _paired_power(target / d.sd, n, alpha) >= POWER
        effective_sd = math.sqrt((d.sd_a ** 2 + d.sd_b ** 2) / 2)
        tau, df = _sd_of_difference(d, n)
        return _welch_power(target / effective_sd, n, n, df, alpha) >= POWER

    return _smallest_n(detects)


def tost_power(diff: float, tau: float, df: float, margin: float, alpha: float = ALPHA) -> float:
    """Power of TOST against ±margin (each one-sided test at `alpha`) when Δ̂ ~ N(diff, τ²) and its
    standard error is τ·√(V/df), V ~ χ²(df) independent of Δ̂ (Phillips 1990; module doc). The
    integral runs over u = F_χ²(V) ∈ (0, F_χ²(v*)), where the integrand is smooth and bounded."""
    if not (margin > 0 and tau > 0 and df > 0 and math.isfinite(diff)):
        return math.nan
    critical = stats.t.isf(alpha, df)
    cutoff = stats.chi2.cdf(df * (margin / (critical * tau)) ** 2, df)  # above it, no SE lets both reject
    if cutoff <= 0:
        return 0.0

    def given(u: float) -> float:
        # scipy.special's χ² quantile (2·gammaincinv(df/2, u)) and Φ (ndtr): the same functions
        # scipy.stats wraps, without its per-call overhead (~1 ms), which the integral pays ~300 times.
        se = tau * math.sqrt(2.0 * special.gammaincinv(df / 2.0, u) / df)
        upper, lower = (margin - critical * se - diff) / tau, (-margin + critical * se - diff) / tau
        return max(0.0, float(special.ndtr(upper) - special.ndtr(lower)))  # > 0 below the cutoff anyway

    return float(integrate.quad(given, 0.0, float(cutoff), limit=200)[0])


def seeds_for_equivalence(d: Difference, margin: float, alpha: float = ALPHA) -> float:
    """Smallest N per side (pairs) at which TOST against ±margin has POWER if Δ and the sds are as
    observed; inf where |Δ| ≥ margin (never, if Δ is as observed); nan without a spread."""
    if not (math.isfinite(d.diff) and margin > 0 and _plannable(d)):
        return math.nan
    if abs(d.diff) >= margin:
        return math.inf

    def shows(n: int) -> bool:
        tau, df = _sd_of_difference(d, n)
        return tost_power(d.diff, tau, df, margin, alpha) >= POWER

    return _smallest_n(shows)


def planned(difference: Difference, alpha: float = ALPHA) -> Difference:
    """The comparison with both seed counts planned at `alpha` (analysis.tables: ALPHA / family size)."""
    if not math.isfinite(difference.p):
        return dataclasses.replace(difference, alpha_adjusted=alpha)
    return dataclasses.replace(difference, alpha_adjusted=alpha, seeds_to_detect=seeds_to_detect(difference, alpha),
                               seeds_for_equivalence=seeds_for_equivalence(difference, difference.margin, alpha))


def _tost_from_summary(d: Difference, margin: float) -> float:
    """TOST p from Δ, se and df (the same two one-sided t-tests statsmodels runs)."""
    if not (math.isfinite(d.se) and d.se > 0 and math.isfinite(d.df)):
        return math.nan
    p_lower = stats.t.sf((d.diff + margin) / d.se, d.df)  # H0: Δ ≤ −margin
    p_upper = stats.t.cdf((d.diff - margin) / d.se, d.df)  # H0: Δ ≥ +margin
    return float(max(p_lower, p_upper))


def with_margin(difference: Difference, margin: float) -> Difference:
    """The same comparison with p_tost and seeds_for_equivalence for another equivalence margin (at
    the same planning α)."""
    if not math.isfinite(difference.p):
        return dataclasses.replace(difference, margin=margin)
    return dataclasses.replace(difference, margin=margin, p_tost=_tost_from_summary(difference, margin),
                               seeds_for_equivalence=seeds_for_equivalence(difference, margin,
                                                                           difference.alpha_adjusted))


# --- the two tests ------------------------------------------------------------------------------

def _finite_sd(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if len(values) >= 2 else math.nan


def welch(a, b, confidence: float = CONFIDENCE, margin: float = MARGIN) -> Difference:
    """Welch's t-test of mean(a) − mean(b) and its confidence interval (scipy.stats.ttest_ind),
    with MDE, TOST p against ±margin (statsmodels ttost_ind, usevar='unequal') and the two seed
    counts at ALPHA (`planned` re-plans them at a family's α)."""
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
    return planned(d)


def paired(a, b, confidence: float = CONFIDENCE, margin: float = MARGIN) -> Difference:
    """Paired t-test of a − b for runs matched by position (the same seed), scipy.stats.ttest_rel,
    with the t CI of the mean difference, MDE, TOST p (statsmodels ttost_paired) and the seed counts.
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
    return planned(d)


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


def _signed_pp(value: float) -> str:
    text = f"{100 * value:+.2f}"
    return "+0.00" if float(text) == 0 else text  # no "-0.00" for a rounding-level difference


def _count(n: float, made: int, unit: str, what: str) -> str:
    """"≈ 31 seeds per side would detect -0.24 pp", "≥1000 …", and "already enough" where n ≤ made.
    No commas or parentheses: the words sit inside a verdict's parentheses and a regime cell
    ("Δ pp, verdict") is split at its last comma."""
    if n >= SEEDS_CAP:
        return f"≥{SEEDS_CAP} {unit} would be needed to {what}"
    text = f"≈ {int(n)} {unit} would {what}"
    return text + (" — already enough if Δ is as observed" if n <= made else "")


def seeds_words(difference: Difference) -> str:
    """The two seed counts of an open comparison in words, e.g. "≈ 31 seeds per side would detect
    -0.24 pp; ≈ 21 would show equivalence within ±0.5 pp" ("" when neither is known)."""
    unit = difference.unit or ("paired seeds" if difference.kind == "paired" else "seeds per side")
    made = min(difference.n_a, difference.n_b)
    band = f"±{_pp(difference.margin)} pp"
    parts = []
    detect = difference.seeds_to_detect
    if math.isfinite(detect):
        parts.append(_count(detect, made, unit, f"detect {_signed_pp(difference.diff)} pp"))
    equivalence = difference.seeds_for_equivalence
    if math.isinf(equivalence):
        parts.append(f"equivalence within {band} cannot be shown while |Δ| ≥ {_pp(difference.margin)} pp")
    elif math.isfinite(equivalence):
        parts.append(_count(equivalence, made, unit if not parts else "", f"show equivalence within {band}")
                     .replace("  ", " "))
    return "; ".join(parts)


def verdict(difference: Difference, p_adjusted: float, margin: float | None = None,
            alpha: float = ALPHA) -> str:
    """"better", "worse", "equivalent within ±0.5 pp", "inconclusive (≈ 31 seeds per side would
    detect -0.24 pp; ≈ 21 would show equivalence within ±0.5 pp)" or "not testable (reason)" —
    rules in the module doc. margin None: the difference's own."""
    if margin is not None and margin != difference.margin:
        difference = with_margin(difference, margin)
    if not math.isfinite(difference.p):
        return f"not testable ({difference.note})" if difference.note else "not testable"
    if math.isfinite(p_adjusted) and p_adjusted < alpha:
        return "better" if difference.diff > 0 else "worse"
    if math.isfinite(difference.p_tost) and difference.p_tost < alpha:
        return f"equivalent within ±{_pp(difference.margin)} pp"
    counts = seeds_words(difference)
    return f"inconclusive ({counts})" if counts else "inconclusive"


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
           "mean_ci", "welch", "paired", "holm", "with_margin", "fill_failed", "verdict", "nominal_verdict",
           "planned", "seeds_to_detect", "seeds_for_equivalence", "tost_power", "seeds_words"]
