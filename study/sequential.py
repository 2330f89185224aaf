"""A comparison that sizes itself: group-sequential boundaries for the difference test and for TOST.

With a fixed number of seeds most verdicts end "inconclusive". `--seeds auto` runs a first batch of
seeds per side, and then, for each comparison whose verdict is still open, more seeds in batches up
to a cap, stopping that comparison as soon as it is resolved: "better", "worse" or "equivalent"
within ±margin. Looking at the data after every batch and stopping when a p-value is small inflates
the error rates (six looks at an unadjusted two-sided 5% give ≈ 15% false positives, see
tests/test_sequential.py), so the boundaries at each look are set by design so that over all the
looks together:
  * false "better"/"worse" at Δ = 0: at most `alpha` (two-sided, like analysis.stats' test), and
  * false "equivalent" at |Δ| = margin: at most `alpha_equivalence` (each one-sided test of TOST).

Design (`design`). A group-sequential test with Lan–DeMets alpha spending, O'Brien–Fleming type
(Lan & DeMets 1983, Biometrika 70:659): one-sided level a is spent as
    f(t; a) = 2 − 2Φ(Φ⁻¹(1 − a/2) / √t),   t = information fraction = n_k / n_K,
with n_k the cumulative seeds per side (pairs, paired) at look k and n_K the cap. Information is
proportional to n for both tests: 1/SE² = n / (s_a² + s_b²) (Welch, equal n a side) or n / s_d²
(paired). O'Brien–Fleming-type spending asks for overwhelming evidence at the first looks and keeps
the last look's boundary close to the fixed design's (1.96 → 2.06 for six looks), so a comparison
that runs to the cap loses little power against simply running n_K seeds: at Δ = 0.6 pp with seed
sd 0.45 pp (Welch), "better" 99.6% of the time with 16.8 seeds a side on average, against 99.9%
for a fixed 30 (simulated, 40,000 comparisons each).
  * difference test: symmetric two-sided boundaries ±c_k; each side spends f(t; alpha/2), so the
    two together spend `alpha` (gsDesign's "two-sided symmetric" design).
  * TOST: each of the two one-sided tests (H0: Δ ≤ −margin, H0: Δ ≥ +margin) is its own group-
    sequential test with boundaries e_k spending f(t; alpha_equivalence); "equivalent" when both
    cross at the same look. TOST is an intersection–union test, so its false-equivalence rate is at
    most that of the one-sided test whose null is true: at most alpha_equivalence.
  * Together: at each look a comparison is "better"/"worse" if the difference boundary is crossed,
    else "equivalent" if both TOST boundaries are (the order of analysis.stats.verdict), else it
    continues; at the last look it is "inconclusive" (cap reached). Stopping for one verdict only
    removes paths from the other test, so each error rate stays at most its level; the spending
    that the other verdict's stop leaves unused is the price of running both tests.
The boundaries are solved look by look so that the probability of first crossing at look k under
the null is f(t_k) − f(t_{k−1}), for the canonical joint distribution of the sequential statistics
(Z_1..Z_K multivariate normal, corr(Z_i, Z_j) = √(t_i / t_j), Jennison & Turnbull 2000, ch. 3).
That probability is computed by the recursive numerical integration of Armitage, McPherson & Rowe
(1969), Jennison & Turnbull (2000, ch. 19): the sub-density of Z_k on the continuation region,
carried from look to look with the normal transition kernel, integrated with Simpson's rule on a
fine grid. It is deterministic and takes tens of milliseconds for six looks; scipy's
multivariate_normal.cdf gives the same boundaries (the tests check it for three looks), but its
randomised quasi-Monte Carlo took one to two minutes per design at the accuracy root finding needs
(an increment of 1e-6 at an early look), too slow for a design per comparison family.
No maintained Python package computes these boundaries: gsDesign and rpact are R; PyPI's
`gsdesign` (alpha status) ships only the integration grid of gsDesign, no spending functions or
boundary search; spotify-confidence's sequential solver spends with the power family α·t^ρ only
and requires pandas < 3 (this project has pandas 3), chartify and ipywidgets. The boundaries agree
with the published Lan–DeMets O'Brien–Fleming values (gsDesign sfLDOF / rpact "asOF", one-sided
0.025): 2.963, 1.969 for two equally spaced looks and 4.877, 3.357, 2.680, 2.290, 2.031 for five
(tests/test_sequential.py).

Looks (`looks`). The cumulative seeds per side at each look, fixed before any data are seen (e.g.
5, 10, …, 30). The spending function lets looks differ from a plan as long as their timing does not
depend on the data: recompute the design with the looks actually made plus the planned rest, with
the same cap. The known-variance boundaries of looks already made do not change when later looks
move; the t calibration (below) depends on the whole set of looks, so plan them up front.

Unknown variance: t, not z. With a handful of seeds the standardized difference is a t statistic
(Welch–Satterthwaite df, or n − 1 paired), not a z. The boundaries are used on the p-value scale
(the "significance level approach" to group-sequential t-tests, Jennison & Turnbull 2000): at
look k the t statistic's own nominal p-value (its t distribution with that look's df) is compared
with the nominal p of the z boundary, 2·(1 − Φ(c_k)) two-sided for the difference, 1 − Φ(e_k)
for each one-sided TOST test: the z boundary applied to t converted through its p-value,
z = Φ⁻¹(F_t(t)). The error at every single look is then exact whatever the df, but successive t
statistics are less correlated than the z's (each look's variance estimate adds its own noise), so
the chance of crossing at some look is a little larger than the spending promises: with looks at
5, 10, …, 30 seeds, paired (df 4 to 29), 0.0526 two-sided instead of 0.05 over 200,000 simulated
comparisons (tests/test_sequential.py).
So `design` calibrates (t_calibration=True, the default): it runs the spending function at a
slightly lower level, found by root finding so that the exact null law of a paired comparison's
sequential t-tests crosses with probability alpha (and alpha_equivalence one-sided). That law
depends on the looks only (a paired t is scale-free); it is simulated once per set of looks with a
fixed seed (`_t_process`: 400,000 paths, about a second, cached), so a design is reproducible; the
calibration's own Monte-Carlo standard error is about 0.7% of alpha at 0.05 (1.6% at 0.01). For
the study's looks the levels come out at 0.962·alpha two-sided and 0.970·alpha one-sided
(`Design.level`, `level_equivalence`). The paired t has the fewest df a comparison can have
(Welch's df lies between n − 1 and 2n − 2), and the same levels keep Welch comparisons at alpha
within Monte-Carlo error or below it: 0.0486 and 0.0494 at alpha = 0.05 for seed sds 0.45/0.45
and 0.3/0.6 pp, 400,000 simulated comparisons each. t_calibration=False gives the plain
known-variance boundaries (those the published tables list).

Multiplicity (`alpha`). Several methods are compared with one baseline, and analysis.stats adjusts
the "better/worse" p-values with Holm; here the level is a parameter. The Bonferroni level
ALPHA / m (m comparisons in the family) is the one that holds whatever the other comparisons do —
it is Holm's first step, the level analysis.stats plans seed counts at. Holm's step-down can be
carried into a group-sequential family: once a comparison is rejected, the open ones may be
re-designed at the larger level α / (m − r) with the same spending function and their statistics
at the looks already made compared again with the new boundaries (Ye, Li, Liu & Yao 2013, Stat.
Med. 32:1112, "group sequential Holm"; Maurer & Bretz 2013, Stat. Biopharm. Res. 5:311). As in
analysis.stats, equivalence is not Holm-adjusted: `alpha_equivalence` defaults to ALPHA.

Pairs stay paired: a paired comparison adds the same seeds to both sides and tests the per-seed
differences a − b. A failed run is scored chance accuracy (analysis.stats.fill_failed) before a
look, so every look has the planned number of seeds.

API:
  design(looks, alpha, margin, alpha_equivalence) -> Design  the boundaries (z and nominal p) per look
  look(design, a, b, look_index, paired) -> Decision        the verdict at one look
  run(design, a, b, paired) -> (verdicts, seeds)             the whole procedure on complete runs
  simulate(design, delta, sd, ...) -> Operating              operating characteristics by simulation
  expected_seeds(design, delta, sd, ...) -> float            E[seeds per side] at the true Δ
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable

import numpy as np
from scipy import optimize, special


def _norm_sf(x):
    """1 − Φ(x): scipy.stats.norm.sf's own formula (special.ndtr(−x)), without importing
    scipy.stats (a third of a second of every launcher start, for a handful of normal tails)."""
    return special.ndtr(-np.asarray(x, dtype=float))


def _norm_isf(p):
    """Φ⁻¹(1 − p): scipy.stats.norm.isf's own formula (−special.ndtri(p))."""
    return -special.ndtri(np.asarray(p, dtype=float))


# The error-rate conventions of every verdict, the study's stopping decisions and analysis.stats'
# tests alike (analysis.stats imports them from here: the launcher never imports the analysis).
ALPHA = 0.05  # two-sided level of the difference test before multiplicity adjustment; each TOST test's level
MARGIN = 0.005  # equivalence margin: ±0.5 percentage points of accuracy (accuracies are fractions)

VERDICTS = ("continue", "better", "worse", "equivalent", "inconclusive", "not testable")
CONTINUE, BETTER, WORSE, EQUIVALENT, INCONCLUSIVE, NOT_TESTABLE = range(len(VERDICTS))
RESOLVED = ("better", "worse", "equivalent")

CALIBRATION_PATHS = 400_000  # simulated null paths of the t-process per set of looks (`_t_process`)
CALIBRATION_SEED = 20231
_TAIL = 10.0  # the integration grid stops at |z| = 10: the standard normal mass beyond is < 1e-23


def obrien_fleming(t, alpha: float):
    """Lan–DeMets O'Brien–Fleming-type spending: the one-sided `alpha` spent by information
    fraction t, 2 − 2Φ(Φ⁻¹(1 − α/2)/√t) (written with the survival function for accuracy)."""
    t = np.asarray(t, dtype=float)
    with np.errstate(divide="ignore"):
        return 2.0 * _norm_sf(_norm_isf(alpha / 2.0) / np.sqrt(t))


@dataclasses.dataclass(frozen=True)
class Design:
    """Boundaries of a group-sequential difference test and TOST at each look (module doc)."""
    looks: tuple[int, ...]  # cumulative seeds per side (pairs) at each look; the last is the cap
    alpha: float  # two-sided level of the difference test (e.g. Holm/Bonferroni-adjusted)
    difference_bounds: tuple[float, ...]  # c_k: "better" if z ≥ c_k, "worse" if z ≤ −c_k
    margin: float | None = MARGIN  # equivalence margin (accuracy fraction); None: no TOST
    alpha_equivalence: float = ALPHA  # level of each one-sided test of TOST
    equivalence_bounds: tuple[float, ...] = ()  # e_k: "equivalent" if both one-sided z ≥ e_k
    spending: str = "Lan–DeMets O'Brien–Fleming type"
    t_calibration: bool = True  # the spending runs at the levels below, calibrated for t-tests
    level: float = ALPHA  # the two-sided level the difference test's spending ran at (≤ alpha)
    level_equivalence: float = ALPHA  # the one-sided level each TOST test's spending ran at

    @property
    def information(self) -> tuple[float, ...]:
        return tuple(n / self.looks[-1] for n in self.looks)

    @property
    def difference_p(self) -> tuple[float, ...]:
        """The nominal two-sided p a t-test must be below at each look, 2·(1 − Φ(c_k))."""
        return tuple(float(2 * _norm_sf(c)) for c in self.difference_bounds)

    @property
    def equivalence_p(self) -> tuple[float, ...]:
        """The nominal one-sided p each TOST t-test must be below at each look, 1 − Φ(e_k)."""
        return tuple(float(_norm_sf(e)) for e in self.equivalence_bounds)

    @property
    def max_seeds(self) -> int:
        return self.looks[-1]


@dataclasses.dataclass(frozen=True)
class Decision:
    """The verdict at one look, with the statistics and the boundaries it was judged against."""
    verdict: str  # one of VERDICTS
    look_index: int
    n: int  # seeds per side (pairs) at this look
    final: bool  # the last look of the design (the cap)
    kind: str  # "welch" or "paired"
    diff: float  # mean(a) − mean(b)
    se: float
    df: float
    t: float  # the difference t statistic
    p: float  # its nominal two-sided p
    z: float  # t on the z scale through its p-value, sign(t)·Φ⁻¹(1 − p/2)
    bound: float  # c_k, the difference boundary on the z scale
    p_bound: float  # the nominal two-sided p the difference test must be below at this look
    p_tost: float = math.nan  # the larger of TOST's two one-sided p-values
    z_tost: float = math.nan  # the smaller of TOST's two one-sided statistics on the z scale
    tost_bound: float = math.nan  # e_k
    p_tost_bound: float = math.nan
    crossed: str = ""  # "upper difference", "lower difference", "equivalence", or ""
    note: str = ""

    @property
    def resolved(self) -> bool:
        return self.verdict in RESOLVED

    @property
    def stop(self) -> bool:
        """No more seeds for this comparison: resolved, the cap reached, or nothing to test."""
        return self.verdict != "continue"


@dataclasses.dataclass(frozen=True)
class Operating:
    """Operating characteristics of a design at one true Δ, by simulation (`simulate`)."""
    delta: float
    reps: int
    expected_seeds: float  # mean seeds per side (pairs) used
    expected_seeds_se: float  # its Monte-Carlo standard error
    max_seeds: int
    rates: dict  # verdict -> fraction of the simulated comparisons
    stopped_at: tuple[float, ...]  # fraction stopping at each look

    def rate(self, verdict: str) -> float:
        return self.rates.get(verdict, 0.0)

    def rate_se(self, verdict: str) -> float:
        """Monte-Carlo (binomial) standard error of `rate(verdict)`."""
        p = self.rate(verdict)
        return math.sqrt(p * (1 - p) / self.reps)


# --- boundaries ---------------------------------------------------------------------------------

def _pdf(z: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def _grid(low: float, high: float, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Points and Simpson weights on [low, high] (an odd number of points, at most `step` apart)."""
    intervals = max(2, 2 * math.ceil((high - low) / (2 * step)))
    z = np.linspace(low, high, intervals + 1)
    h = (high - low) / intervals
    w = np.full(intervals + 1, 2.0)
    w[1::2] = 4.0
    w[0] = w[-1] = 1.0
    return z, w * h / 3.0


def _boundaries(information: np.ndarray, spent: np.ndarray, two_sided: bool) -> tuple[float, ...]:
    """Boundaries b_k on the z scale with P0(first crossing at look k) = spent[k] − spent[k−1] for
    the canonical process (module doc): upper only (Z_k ≥ b_k), or symmetric (|Z_k| ≥ b_k).
    `spent` is cumulative and counts both sides where two_sided."""
    increments = np.diff(np.concatenate([[0.0], spent]))
    sides = 2.0 if two_sided else 1.0
    bounds: list[float] = []
    points = weights = density = None  # the sub-density of Z_{k−1} on its continuation region
    for k, (t, increment) in enumerate(zip(information, increments)):
        if k == 0:
            bound = float(_norm_isf(increment / sides)) if increment > 0 else math.inf
        else:
            r = math.sqrt(information[k - 1] / t)  # Z_k | Z_{k−1} = z ~ N(r·z, 1 − r²)
            s = math.sqrt(1.0 - r * r)
            mass = weights * density

            def crossing(b: float) -> float:  # special.ndtr is Φ without scipy.stats' per-call overhead
                upper = special.ndtr((r * points - b) / s)
                lower = special.ndtr((-b - r * points) / s) if two_sided else 0.0
                return float(np.sum(mass * (upper + lower)))

            if not increment > 0:
                bound = math.inf
            elif crossing(0.0) <= increment:  # never for alpha < 0.5; spend what there is at 0
                bound = 0.0
            else:
                bound = float(optimize.brentq(lambda b: crossing(b) - increment, 0.0, 40.0, xtol=1e-10))
        bounds.append(bound)
        if k == len(information) - 1:
            break
        # Carry the sub-density of continuing to the next look: a grid over this look's
        # continuation region, fine against the next transition's spread.
        r_next = math.sqrt(t / information[k + 1])
        step = min(0.025, math.sqrt(1.0 - r_next ** 2) / 10.0)  # boundaries agree to 1e-6 with a 2.5× finer grid
        low = -min(bound, _TAIL) if two_sided else -_TAIL
        new_points, new_weights = _grid(low, min(bound, _TAIL), step)
        if k == 0:
            new_density = _pdf(new_points)
        else:
            new_density = (_pdf((new_points[:, None] - r * points[None, :]) / s) / s) @ mass
        points, weights, density = new_points, new_weights, new_density
    return tuple(bounds)


@functools.lru_cache(maxsize=2)  # 19 MB each for six looks
def _t_process(looks: tuple[int, ...], paths: int = CALIBRATION_PATHS, seed: int = CALIBRATION_SEED) -> np.ndarray:
    """Upper-tail p-values (paths × looks) of the one-sample t statistic of standard normal seeds at
    each look, df = n_k − 1: the exact null law of a paired comparison's sequential t-tests (it
    depends on the looks only), drawn with a fixed seed so that a design is reproducible."""
    rng = np.random.default_rng(seed)
    n = np.asarray(looks)
    p = np.empty((paths, len(looks)))
    for start in range(0, paths, 50_000):  # in chunks: 50,000 × 30 seeds is 12 MB
        x = rng.standard_normal((min(50_000, paths - start), looks[-1]))
        mean = np.cumsum(x, axis=1)[:, n - 1] / n
        var = (np.cumsum(x * x, axis=1)[:, n - 1] - n * mean ** 2) / (n - 1)
        p[start:start + len(x)] = special.stdtr(n - 1, -mean / np.sqrt(var / n))
    return p


def _calibrated(looks: tuple[int, ...], information: np.ndarray, level: float, two_sided: bool,
                spending: Callable) -> float:
    """The level (≤ `level`) to run the spending function at so that the sequential t-tests of a
    paired comparison, judged by p-value against the z design's nominal levels, err with
    probability `level` under their exact null law (`_t_process`; module doc)."""
    if len(looks) == 1:  # one look: the t-test's own p-value is exact
        return level
    upper = _t_process(looks)

    def rate(a: float) -> float:
        if two_sided:
            nominal = 2 * _norm_sf(_boundaries(information, 2 * spending(information, a / 2), True))
            return float(np.mean(np.any(2 * np.minimum(upper, 1 - upper) < nominal, axis=1)))
        nominal = _norm_sf(_boundaries(information, spending(information, a), False))
        # one tail; both tails have the same law, so their mean lowers the Monte-Carlo error
        return float(np.mean(np.any(upper < nominal, axis=1)) + np.mean(np.any(1 - upper < nominal, axis=1))) / 2

    if rate(level) <= level:
        return level
    return float(optimize.brentq(lambda a: rate(a) - level, level / 4, level, xtol=level * 1e-4))


def design(looks, alpha: float = ALPHA, margin: float | None = MARGIN, alpha_equivalence: float | None = None, *,
           t_calibration: bool = True, spending: Callable = obrien_fleming) -> Design:
    """Boundaries for the looks (cumulative seeds per side, strictly increasing, ≥ 2): the two-sided
    difference test at `alpha` (the comparison's Holm/Bonferroni level) and, unless margin is None,
    TOST against ±margin with each one-sided test at `alpha_equivalence` (default ALPHA, unadjusted
    as in analysis.stats). `spending(t, a)` is the one-sided spending function (module doc).
    t_calibration False: the known-variance (z) boundaries at alpha itself, applied to the t-tests
    through their p-values (slightly liberal with few seeds; module doc)."""
    return _design(tuple(int(n) for n in looks), float(alpha), None if margin is None else float(margin),
                   alpha_equivalence, t_calibration, spending)


@functools.lru_cache(maxsize=64)  # a study's families share designs (frozen: safe to share)
def _design(looks: tuple[int, ...], alpha: float, margin: float | None, alpha_equivalence: float | None,
            t_calibration: bool, spending: Callable) -> Design:
    if not looks or any(n < 2 for n in looks) or any(b <= a for a, b in zip(looks, looks[1:])):
        raise ValueError(f"looks: need strictly increasing cumulative seeds per side, each >= 2, got {looks}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha: must be in (0, 1), got {alpha}")
    alpha_equivalence = ALPHA if alpha_equivalence is None else alpha_equivalence
    if margin is not None and not (margin > 0 and 0 < alpha_equivalence < 0.5):
        raise ValueError(f"margin must be > 0 and alpha_equivalence in (0, 0.5), got {margin}, {alpha_equivalence}")
    information = np.asarray(looks, dtype=float) / looks[-1]
    level = _calibrated(looks, information, alpha, True, spending) if t_calibration else alpha
    difference = _boundaries(information, 2.0 * spending(information, level / 2.0), two_sided=True)
    level_equivalence, equivalence = alpha_equivalence, ()
    if margin is not None:
        if t_calibration:
            level_equivalence = _calibrated(looks, information, alpha_equivalence, False, spending)
        equivalence = _boundaries(information, spending(information, level_equivalence), two_sided=False)
    name = "Lan–DeMets O'Brien–Fleming type" if spending is obrien_fleming else getattr(spending, "__name__", "")
    return Design(looks, alpha, difference, margin, alpha_equivalence, equivalence, name, t_calibration,
                  level, level_equivalence)


# --- the statistics and the decision, vectorised over comparisons --------------------------------

def _summaries(a: np.ndarray, b: np.ndarray | None, paired: bool):
    """(diff, se, df) of each row of a (and b): Welch (Welch–Satterthwaite df) or paired t."""
    if paired:
        d = a if b is None else a - b
        n = d.shape[-1]
        sd = d.std(axis=-1, ddof=1)
        return d.mean(axis=-1), sd / math.sqrt(n), np.full(d.shape[:-1], n - 1.0)
    n_a, n_b = a.shape[-1], b.shape[-1]
    va, vb = a.var(axis=-1, ddof=1) / n_a, b.var(axis=-1, ddof=1) / n_b
    with np.errstate(invalid="ignore", divide="ignore"):
        df = (va + vb) ** 2 / (va ** 2 / (n_a - 1) + vb ** 2 / (n_b - 1))
    return a.mean(axis=-1) - b.mean(axis=-1), np.sqrt(va + vb), df


def _tests(diff, se, df, margin: float | None):
    """(t, two-sided p, TOST p) with t distributions of the given df; nan where se is 0. (scipy's
    special.stdtr is the t cdf that scipy.stats.t wraps, without its per-call overhead.)"""
    with np.errstate(invalid="ignore", divide="ignore"):
        ok = se > 0
        safe_se = np.where(ok, se, 1.0)
        t = np.where(ok, diff / safe_se, np.nan)
        p = 2.0 * special.stdtr(df, -np.abs(t))
        if margin is None:
            p_tost = np.full(np.shape(t), np.nan)
        else:
            p_lower = special.stdtr(df, -(diff + margin) / safe_se)  # H0: Δ ≤ −margin
            p_upper = special.stdtr(df, (diff - margin) / safe_se)  # H0: Δ ≥ +margin
            p_tost = np.where(ok, np.maximum(p_lower, p_upper), np.nan)
    return t, p, p_tost


def _codes(design: Design, k: int, t, p, p_tost) -> np.ndarray:
    """Verdict codes at look k (module doc's order: difference, then equivalence, then the cap)."""
    final = k == len(design.looks) - 1
    code = np.full(np.shape(t), INCONCLUSIVE if final else CONTINUE)
    if design.margin is not None:
        code = np.where(p_tost < design.equivalence_p[k], EQUIVALENT, code)
    significant = p < design.difference_p[k]
    code = np.where(significant & (t > 0), BETTER, code)
    code = np.where(significant & (t < 0), WORSE, code)
    return np.where(np.isfinite(t), code, NOT_TESTABLE)


def _z(p_one_sided):
    """A one-sided p-value on the z scale, Φ⁻¹(1 − p)."""
    return _norm_isf(p_one_sided)


def look(design: Design, a, b=None, *, look_index: int, paired: bool = False) -> Decision:
    """The verdict at look `look_index`: a and b are the runs so far (the first looks[look_index]
    seeds of each side, failed runs already scored chance), or a alone the per-seed paired
    differences. Paired: a − b per seed (same seeds both sides). Welch otherwise."""
    if not 0 <= look_index < len(design.looks):
        raise ValueError(f"look_index: the design has looks 0..{len(design.looks) - 1}, got {look_index}")
    if b is None and not paired:
        raise ValueError("look: a Welch comparison needs both sides (b); pass paired=True for differences")
    a = np.asarray(a, dtype=float)
    b = None if b is None else np.asarray(b, dtype=float)
    n = design.looks[look_index]
    sizes = {len(a)} | ({len(b)} if b is not None else set())
    if sizes != {n}:
        raise ValueError(f"look {look_index} is planned at {n} seeds per side, got {sorted(sizes)}; redesign "
                         f"with the looks actually made (study.sequential.design) if they moved")
    if not np.all(np.isfinite(a)) or (b is not None and not np.all(np.isfinite(b))):
        raise ValueError("look: non-finite values; score failed runs first (analysis.stats.fill_failed)")
    diff, se, df = (float(x) for x in _summaries(a, b, paired))
    t, p, p_tost = (float(x) for x in _tests(diff, se, df, design.margin))
    verdict = VERDICTS[int(_codes(design, look_index, t, p, p_tost))]
    final = look_index == len(design.looks) - 1
    bound = design.difference_bounds[look_index]
    common = dict(look_index=look_index, n=n, final=final, kind="paired" if paired else "welch", diff=diff,
                  se=se, df=df, t=t, p=p, bound=bound, p_bound=design.difference_p[look_index])
    if design.margin is not None:
        common.update(tost_bound=design.equivalence_bounds[look_index],
                      p_tost_bound=design.equivalence_p[look_index], p_tost=p_tost,
                      z_tost=float(_z(p_tost)) if math.isfinite(p_tost) else math.nan)
    if verdict == "not testable":
        return Decision(verdict, z=math.nan, note="no spread: every run (paired difference) scored the same",
                        **common)
    z = math.copysign(float(_z(p / 2)), t)
    crossed = {"better": "upper difference", "worse": "lower difference", "equivalent": "equivalence"}.get(verdict, "")
    note = f"cap reached: {n} seeds per side, no boundary crossed" if verdict == "inconclusive" else ""
    return Decision(verdict, z=z, crossed=crossed, note=note, **common)


def run(design: Design, a, b=None, *, paired: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The whole procedure on complete runs, one comparison per row: a, b of shape (R, ≥ cap)
    (seed order = the order seeds are added; b None with paired: a holds the differences). Returns
    (verdicts, seeds): the verdict each comparison stops with (strings of VERDICTS) and the seeds
    per side it used — what `look` gives look after look, vectorised."""
    a = np.atleast_2d(np.asarray(a, dtype=float))
    b = None if b is None else np.atleast_2d(np.asarray(b, dtype=float))
    if b is None and not paired:
        raise ValueError("run: a Welch comparison needs both sides (b)")
    if a.shape[-1] < design.max_seeds or (b is not None and b.shape[-1] < design.max_seeds):
        raise ValueError(f"run: needs {design.max_seeds} seeds per side (the cap), got {a.shape[-1]}")
    codes = np.empty((a.shape[0], len(design.looks)), dtype=int)
    for k, n in enumerate(design.looks):
        diff, se, df = _summaries(a[:, :n], None if b is None else b[:, :n], paired)
        codes[:, k] = _codes(design, k, *_tests(diff, se, df, design.margin))
    first = np.argmax(codes != CONTINUE, axis=1)  # the last look never continues
    verdicts = np.asarray(VERDICTS, dtype=object)[codes[np.arange(len(first)), first]]
    return verdicts, np.asarray(design.looks)[first]


def simulate(design: Design, delta: float, sd: float, *, sd_b: float | None = None, paired: bool = False,
             reps: int = 20_000, seed: int = 0) -> Operating:
    """Operating characteristics at a true difference `delta` (accuracy fraction): Welch draws
    a ~ N(delta, sd²) and b ~ N(0, sd_b²) (sd_b default sd) seed by seed; paired draws the per-seed
    differences ~ N(delta, sd²) (sd = sd of a − b). Monte Carlo with numpy's default_rng(seed)."""
    rng = np.random.default_rng(seed)
    shape = (reps, design.max_seeds)
    if paired:
        verdicts, seeds = run(design, rng.normal(delta, sd, shape), paired=True)
    else:
        a = rng.normal(delta, sd, shape)
        verdicts, seeds = run(design, a, rng.normal(0.0, sd if sd_b is None else sd_b, shape))
    names, counts = np.unique(verdicts.astype(str), return_counts=True)
    stopped = np.searchsorted(design.looks, seeds)
    return Operating(delta, reps, float(seeds.mean()), float(seeds.std(ddof=1) / math.sqrt(reps)),
                     design.max_seeds, {str(v): float(c) / reps for v, c in zip(names, counts)},
                     tuple(float(x) for x in np.bincount(stopped, minlength=len(design.looks)) / reps))


def expected_seeds(design: Design, delta: float, sd: float, **options) -> float:
    """Expected seeds per side (pairs) a comparison uses when the true difference is `delta` and
    the seed sd is `sd` (options as `simulate`); the fixed design uses design.max_seeds."""
    return simulate(design, delta, sd, **options).expected_seeds


# --- the study's comparisons, looked at as their seeds arrive ------------------------------------
#
# What `--seeds auto` sizes (study.search runs it, analysis.report replays it from the runs): the
# comparisons of one (dataset, regime, replicate), in the four Holm families of analysis.tables,
# each side a group of re-run slots ("<group>:s<seed>"), judged on the clean test accuracy.

ENDPOINT = "test_acc"  # the primary endpoint: what a look judges (failed runs score chance)
FAMILIES = ("tuned", "matched", "crossed", "controls")


@dataclasses.dataclass(frozen=True)
class Comparison:
    """One comparison of the study: method − versus, each side a group of re-run slots (the slot
    without ":s<seed>"); paired comparisons run both sides on the same seeds."""
    family: str  # one of FAMILIES: its Holm/Bonferroni family
    method: str
    versus: str
    left: str  # the method's side, e.g. "repeat:sharpening"
    right: str  # the other side, e.g. "repeat:baseline"
    paired: bool

    @property
    def name(self) -> str:
        return f"{self.family}:{self.method}~{self.versus}"


def planned_comparisons(methods, crossed: bool) -> list[Comparison]:
    """The comparisons a study of these methods makes (analysis.tables' tables, in their order):
    tuned vs tuned (Welch: each method at its own choice), matched and crossed (paired, a curriculum
    against the baseline at one method's shared hyperparameters), controls (paired)."""
    from trainer.config import METHOD_TABLE, SEARCHED

    methods = tuple(methods)
    tested = [m for m in methods if METHOD_TABLE[m].role in ("curriculum", "variant")]
    found = []
    if "baseline" in methods:
        found += [Comparison("tuned", m, "baseline", f"repeat:{m}", "repeat:baseline", False)
                  for m in methods if m in SEARCHED and m != "baseline"]
        found += [Comparison("matched", m, "baseline", f"repeat:{m}", f"control:baseline~{m}", True) for m in tested]
        if crossed:
            found += [Comparison("crossed", m, "baseline", f"control:{m}~baseline", "repeat:baseline", True)
                      for m in tested]
    found += [Comparison("controls", METHOD_TABLE[c].matched_to, c, f"repeat:{METHOD_TABLE[c].matched_to}",
                         f"control:{c}~{METHOD_TABLE[c].matched_to}", True)
              for c in methods if METHOD_TABLE[c].matched_to in methods]
    return found


def sequential_looks(first: int, cap: int) -> tuple[int, ...]:
    """The looks of `--seeds auto`: `first` seeds per side, then batches of `first` more, the last
    look at the cap (5, 30 → 5, 10, 15, 20, 25, 30; 4, 10 → 4, 8, 10)."""
    if not 2 <= first < cap:
        raise ValueError(f"looks: need 2 <= first batch < cap, got {first} and {cap}")
    return tuple(range(first, cap, first)) + (cap,)


def family_designs(comparisons: list[Comparison], looks: tuple[int, ...]) -> dict[str, Design]:
    """One design per family present: the difference test at ALPHA / m (m comparisons in the
    family: the Bonferroni level, Holm's first step, holds whatever the others do), TOST at ALPHA
    each side (unadjusted, as analysis.stats)."""
    sizes: dict[str, int] = {}
    for comparison in comparisons:
        sizes[comparison.family] = sizes.get(comparison.family, 0) + 1
    return {family: design(looks, alpha=ALPHA / m) for family, m in sizes.items()}


def path(design_: Design, a, b, *, paired: bool) -> list[Decision]:
    """The decisions of one comparison look by look, as far as the runs go: a and b are each side's
    scores in seed order (as many as have ended; a seed without both sides ends the list there).
    It ends at the first look that stops (resolved, cap, not testable); a last "continue" means the
    comparison waits for the next look's seeds."""
    decisions: list[Decision] = []
    have = min(len(a), len(b))
    for k, n in enumerate(design_.looks):
        if have < n:
            break
        decision = look(design_, a[:n], b[:n], look_index=k, paired=paired)
        decisions.append(decision)
        if decision.stop:
            break
    return decisions


def look_of(position: int, looks: tuple[int, ...]) -> int:
    """The look (1-based) at which the seed at `position` (1-based, within the side) was added."""
    for k, n in enumerate(looks):
        if position <= n:
            return k + 1
    raise ValueError(f"seed {position} is beyond the cap {looks[-1]}")


__all__ = ["ALPHA", "MARGIN", "ENDPOINT", "FAMILIES", "VERDICTS", "RESOLVED", "Design", "Decision", "Operating",
           "Comparison", "obrien_fleming", "design", "look", "run", "simulate", "expected_seeds",
           "planned_comparisons", "sequential_looks", "family_designs", "path", "look_of"]
