"""How a study with auto seeds (`python -m study.run --seeds auto`) sized itself: each comparison's
looks replayed from its runs, and the report's section and figure for them.

The launcher decided look by look (study.search, study.sequential): a comparison whose verdict was
still open after a look added the next batch of seeds to both of its sides; one that crossed a
boundary stopped. The runs hold everything needed to retrace it — each side's test accuracy per
seed (failed runs score chance), the looks (the study's seed_repeats and max_seeds) and the
families (its methods) — so the report replays the same decisions with the same code
(`study.sequential.path`) rather than trusting a second record. Per comparison and whole-pipeline
replicate: the look it stopped at, the seeds per side, the verdict and the boundary it crossed (or
"cap reached", with the seeds per side a fixed design would need to detect the observed Δ or to
show equivalence, at the family's α), and the train time of the runs the comparison used.

The error rates hold for these sequential verdicts (study.sequential's design). The fixed-seed
tables elsewhere in the report test whatever seeds a side has: a side that an open comparison kept
going has more seeds there than the comparison that stopped early, and their p-values are not
those of a pre-planned test — the verdicts of record are this section's.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd

from study import sequential as S

from . import stats
from . import tables as T
from .load import key_label, key_order
from .render import Section

COLUMNS = ["dataset", "regime", "key", "replicate", "comparison", "family", "method", "versus", "test", "alpha",
           "looks_made", "looks_planned", "seeds", "cap", "verdict", "crossed", "diff", "p", "p_bound", "p_tost",
           "p_tost_bound", "more_to_detect", "more_for_equivalence", "train_seconds", "note"]
# One row per planned look of each comparison: the design's boundaries, and the statistics and
# verdict where the look was made (NaN and "" after the comparison stopped).
PATH_COLUMNS = ["key", "replicate", "comparison", "look", "seeds", "z", "bound", "z_tost", "tost_bound", "verdict"]


def settings_of(params: dict) -> tuple[tuple[int, ...], tuple[str, ...], bool] | None:
    """(looks, methods, crossed) of a study run with auto seeds, from its parent run's params; None
    for a study with a fixed number of seeds (or one from before auto seeds)."""
    if str(params.get("auto_seeds", "False")) != "True":
        return None
    looks = S.sequential_looks(int(params["seed_repeats"]), int(params["max_seeds"]))
    methods = tuple(json.loads(params["methods"]))
    return looks, methods, str(params.get("crossed", "True")) == "True"


def _side(runs: pd.DataFrame, group: str) -> dict[int, tuple[float, float]]:
    """seed → (score, train seconds) of one side's runs (failed: chance, as the launcher scored them)."""
    of = runs[runs["group"] == group]
    scores = T._scored(of, S.ENDPOINT)
    seconds = pd.to_numeric(of["train_seconds"], errors="coerce") if "train_seconds" in of else pd.Series(np.nan, index=of.index)
    return {int(s): (float(v), float(t) if np.isfinite(t) else 0.0) for s, v, t in zip(of["seed"], scores, seconds)}


def replay(trials: pd.DataFrame, params: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per comparison and replicate, one row per look made) for a study with auto seeds;
    two empty frames otherwise."""
    found = settings_of(params)
    if found is None:
        return pd.DataFrame(columns=COLUMNS), pd.DataFrame(columns=PATH_COLUMNS)
    looks, methods, crossed = found
    comparisons = S.planned_comparisons(methods, crossed)
    designs = S.family_designs(comparisons, looks)
    runs = T.reruns(trials)
    runs = runs.assign(replicate=T._replicates(runs))
    rows, path_rows = [], []
    for key in sorted(runs["key"].dropna().unique(), key=key_order):
        for replicate in sorted(runs.loc[runs["key"] == key, "replicate"].unique(), key=T._replicate_order):
            of = runs[(runs["key"] == key) & (runs["replicate"] == replicate)]
            dataset, regime = of["dataset"].iloc[0], of["regime"].iloc[0] if "regime" in of else "standard"
            for comparison in comparisons:
                left, right = _side(of, comparison.left), _side(of, comparison.right)
                seeds = []  # the seeds both sides have, in order, up to the first one missing
                for seed in sorted(set(left) | set(right)):
                    if seed not in left or seed not in right:
                        break
                    seeds.append(seed)
                if not seeds:
                    continue
                design = designs[comparison.family]
                a, b = [left[s][0] for s in seeds], [right[s][0] for s in seeds]
                decisions = S.path(design, a, b, paired=comparison.paired)
                last = decisions[-1] if decisions else None
                used = last.n if last else 0
                seconds = sum(left[s][1] + right[s][1] for s in seeds[:used])
                more_detect = more_equivalence = math.nan
                if last is not None and last.verdict == "inconclusive":
                    d = (stats.paired if comparison.paired else stats.welch)(np.array(a[:used]), np.array(b[:used]))
                    d = stats.planned(d, design.alpha)
                    more_detect = d.seeds_to_detect - used
                    more_equivalence = d.seeds_for_equivalence - used
                rows.append({
                    "dataset": dataset, "regime": regime, "key": key, "replicate": replicate,
                    "comparison": comparison.name, "family": comparison.family, "method": comparison.method,
                    "versus": comparison.versus, "test": "paired" if comparison.paired else "welch",
                    "alpha": design.alpha, "looks_made": len(decisions), "looks_planned": len(looks),
                    "seeds": used, "cap": looks[-1], "verdict": last.verdict if last else "open",
                    "crossed": last.crossed if last else "", "diff": last.diff if last else math.nan,
                    "p": last.p if last else math.nan, "p_bound": last.p_bound if last else math.nan,
                    "p_tost": last.p_tost if last else math.nan,
                    "p_tost_bound": last.p_tost_bound if last else math.nan,
                    "more_to_detect": more_detect, "more_for_equivalence": more_equivalence,
                    "train_seconds": seconds,
                    "note": "" if last else f"waiting: {len(seeds)} of the first look's {looks[0]} seeds ended"})
                for k, n in enumerate(looks):  # every planned look: the boundaries, and the statistics where made
                    made = decisions[k] if k < len(decisions) else None
                    path_rows.append({"key": key, "replicate": replicate, "comparison": comparison.name,
                                      "look": k + 1, "seeds": n, "z": made.z if made else math.nan,
                                      "bound": design.difference_bounds[k], "z_tost": made.z_tost if made else math.nan,
                                      "tost_bound": design.equivalence_bounds[k] if design.equivalence_bounds else math.nan,
                                      "verdict": made.verdict if made else ""})
    return pd.DataFrame(rows, columns=COLUMNS), pd.DataFrame(path_rows, columns=PATH_COLUMNS)


def _more(value: float) -> str:
    if not np.isfinite(value):
        return "never at this Δ" if value == math.inf else "–"
    return f"≈ {max(0, int(math.ceil(value)))} more"


def for_people(table: pd.DataFrame) -> pd.DataFrame:
    """The replay as the report shows it: one row per comparison."""
    several = table["replicate"].nunique() > 1
    ended = []
    for _, row in table.iterrows():
        if row["verdict"] == "inconclusive":
            ended.append(f"cap reached: inconclusive; to detect Δ {_more(row['more_to_detect'])}, "
                         f"to show equivalence {_more(row['more_for_equivalence'])} a side")
        elif row["crossed"]:
            ended.append(f"crossed the {row['crossed']} boundary")
        else:
            ended.append(row["note"] or row["verdict"])
    return pd.DataFrame({
        **({"replicate": table["replicate"]} if several else {}),
        "comparison": table["comparison"], "test (α)": [f"{t} ({a:.3g})" for t, a in zip(table["test"], table["alpha"])],
        "stopped at look": [f"{m} of {p}" for m, p in zip(table["looks_made"], table["looks_planned"])],
        "seeds a side": table["seeds"], "Δ pp": table["diff"].map(lambda v: f"{100 * v:+.2f}" if np.isfinite(v) else "–"),
        "verdict": table["verdict"], "how it ended": ended,
        "train time (both sides)": table["train_seconds"].map(lambda s: f"{s / 60:.1f} min")})


def summary_line(table: pd.DataFrame) -> str:
    """"11 of 18 comparisons resolved (better 1, worse 2, equivalent 8), 7 at the cap; 21.0 core-min"."""
    counts = table["verdict"].value_counts()
    resolved = int(sum(counts.get(v, 0) for v in S.RESOLVED))
    kinds = ", ".join(f"{v} {int(counts[v])}" for v in S.RESOLVED if counts.get(v, 0))
    capped = int(counts.get("inconclusive", 0))
    return (f"{resolved} of {len(table)} comparisons resolved" + (f" ({kinds})" if kinds else "")
            + f", {capped} reached the cap inconclusive; mean seeds a side {table['seeds'].mean():.1f} of at most "
            f"{int(table['cap'].max())}")


def section() -> Section:
    return Section("Seeds sized by the study", "looks", markdown=True, intro=(
        "With --seeds auto every comparison ran a first batch of test seeds a side, then, while its verdict was "
        "still open, batches of as many more on both of its sides (paired comparisons on the same seeds), up "
        "to the cap; it stopped at the first look whose statistic crossed a boundary of a group-sequential "
        "design (Lan–DeMets O'Brien–Fleming-type alpha spending, for the difference test at α/m of its Holm "
        "family and for each one-sided test of TOST at α; study/sequential.py), so that over all the looks "
        "together the false-positive rate at Δ = 0 and the false-equivalence rate at |Δ| = margin stay at "
        "their levels. Replayed here from the runs with the launcher's own code. These are the verdicts of "
        "record: the fixed-seed tables above test whatever seeds each side ended with (a side an open "
        "comparison kept going has more), which no stopping rule planned. Train time: the runs the comparison "
        "used, both sides (a run shared by several comparisons counts in each). Also in looks.csv and "
        "looks_paths.csv."))


def fill(section_: Section, table: pd.DataFrame, key: str) -> list[str]:
    """The section's part for one study key, and the lines the command line prints."""
    of = table[table["key"] == key]
    if of.empty:
        return []
    text = summary_line(of)
    section_.blocks += [("p", text + "."), ("table", for_people(of))]
    return [f"[{key_label(key)}] seeds auto: {text}"]


__all__ = ["settings_of", "replay", "for_people", "summary_line", "section", "fill"]
