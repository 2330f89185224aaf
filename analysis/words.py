"""The answer in words: the tables of `analysis.tables` rendered for people — accuracies in %,
differences in percentage points (pp), p-values, verdicts, the Holm family stated — as pandas
frames (→ HTML and markdown), markdown, and the compact lines the command line prints. Numbers in,
words out: nothing here computes a statistic.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from study.record import split_key
from trainer.config import method_order

from .load import key_order
from .stats import MARGIN
from .tables import ALL_CORRUPTIONS, METRIC_WORDS, _present, chance


def _regime_cell(row) -> str:
    runs = f" ({runs_done(row.n_completed, row.n_run)})" if row.n_completed < row.n_run else ""
    if row.verdict == "reference":
        return f"{mean_pm(row.mean, row.ci95)} %{runs} (reference)"
    return f"{interval(row.diff, row.diff_low, row.diff_high)} pp{runs}, {row.verdict}"


def _regime_cost(row) -> str:
    if row.verdict == "reference":
        parts = [f"{row.train_seconds:.1f} s" if np.isfinite(row.train_seconds) else "",
                 f"{row.peak_memory_mb:.0f} MB" if np.isfinite(row.peak_memory_mb) else ""]
    else:
        parts = [f"{ratio(row.time_ratio)} time" if np.isfinite(row.time_ratio) else "",
                 f"{ratio(row.memory_ratio)} memory" if np.isfinite(row.memory_ratio) else ""]
    return ", ".join(p for p in parts if p) or "–"


def regime_column(key: str) -> str:
    """A regime's column title: "mnist5k · noise40", and "mnist5k · standard" for the standard regime."""
    dataset, regime = split_key(key)
    return f"{dataset} · {regime}"


def regimes_for_people(table: pd.DataFrame) -> pd.DataFrame:
    """Rows = methods (the baseline, the reference, first), columns = regimes per dataset: for each,
    "Δ vs baseline [95% CI] pp, verdict", then its cost beside it."""
    table = with_regime_words(table)
    keys = sorted(table["key"].dropna().unique(), key=key_order)
    frame = pd.DataFrame({"method": method_order(table["method"])})
    for key in keys:
        of_key = table[table["key"] == key].set_index("method")
        title = regime_column(key)
        frame[f"{title}: Δ vs baseline [95% CI], verdict"] = frame["method"].map(of_key["cell"]).fillna("–")
        frame[f"{title}: cost vs baseline"] = frame["method"].map(of_key["cost"]).fillna("–")
    return frame


def regime_lines(table: pd.DataFrame) -> list[str]:
    """The regime table, compact (the CLI): a line per method and regime, the method named once."""
    table = with_regime_words(table)
    keys = sorted(table["key"].dropna().unique(), key=key_order)
    titles = {key: regime_column(key) for key in keys}
    width_t = max((len(t) for t in titles.values()), default=0)
    width_c = max((len(c) for c in table["cell"]), default=0)
    width_m = max((len(m) for m in table["method"]), default=0)
    lines = []
    for method in method_order(table["method"]):
        mine = table[table["method"] == method].set_index("key")
        first = True
        for key in keys:
            if key not in mine.index:
                continue
            row = mine.loc[key]
            lines.append(f"{method if first else '':<{width_m}}  {titles[key]:<{width_t}}  {row['cell']:<{width_c}}  "
                         f"{row['cost']}".rstrip())
            first = False
    return lines


def family_text(table: pd.DataFrame, versus: str | None = "baseline", metric: str = "test_acc",
                column: str = "method", left: str | None = None) -> str:
    """The Holm family, stated: "Holm over 5 comparisons: sharpening, annealing, … vs baseline on clean
    test accuracy", or for controls (column="versus", left="sharpening", versus=None) "Holm over 3
    comparisons: sharpening vs anti, random_order, blur_aug on …". Untestable comparisons are not in
    the family (holm leaves them out), and are named."""
    tested = table[table["p"].notna()] if "p" in table else table.iloc[0:0]
    untested = table[table["p"].isna() & (table["verdict"] != "reference")] if "p" in table else tested
    names = ", ".join(tested[column]) or "none"
    text = (f"Holm over {len(tested)} comparison{'s' if len(tested) != 1 else ''}: "
            f"{f'{left} vs ' if left else ''}{names}{f' vs {versus}' if versus else ''} on "
            f"{METRIC_WORDS.get(metric, metric)}")
    if len(untested):
        text += f" (not testable, so outside the family: {', '.join(untested[column])})"
    return text


def pct(value, digits: int = 2) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{100 * value:.{digits}f}"


def pp(value, digits: int = 2) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    text = f"{100 * value:+.{digits}f}"
    return f"{0:+.{digits}f}" if float(text) == 0 else text  # no "-0.00" for a rounding-level difference


def pvalue(value) -> str:
    if value is None or not np.isfinite(value):
        return "–"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def p_equals(value) -> str:
    """"p=0.042" or "p<0.001"."""
    text = pvalue(value)
    return f"p{text}" if text.startswith("<") else f"p={text}"


def mean_pm(mean, half) -> str:
    if mean is None or not np.isfinite(mean):
        return "–"
    return pct(mean) + (f" ± {pct(half)}" if half is not None and np.isfinite(half) else " (n=1)")


def interval(diff, low, high) -> str:
    if diff is None or not np.isfinite(diff):
        return "–"
    return pp(diff) + (f" [{pp(low)}, {pp(high)}]" if low is not None and np.isfinite(low) else "")


def ratio(value) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.2f}×"


def runs_done(n_completed, n_run) -> str:
    """"5/5", or "4/5 †" when a run did not complete (it is scored as chance: the footnote says so)."""
    if not _present(n_run):
        return "–"
    return f"{int(n_completed)}/{int(n_run)}" + (" †" if int(n_completed) < int(n_run) else "")


def failure_note(frames: list[pd.DataFrame], dataset: str | None = None) -> str | None:
    """The † footnote, or None if every compared run completed."""
    words = []
    for frame in frames:
        for column in [c for c in frame.columns if c.endswith("failed")]:
            words += [w for w in frame[column].dropna() if w]
    if not words:
        return None
    score = pct(chance(dataset)) if dataset else "1/classes"
    return (f"† a re-run that did not complete ({'; '.join(dict.fromkeys(words))}) stays in the comparison, "
            f"scored as chance accuracy ({score} %): dropping the seeds a method failed on would flatter it.")


def _diff_cells(frame: pd.DataFrame, margin: float) -> dict:
    return {
        "Δ pp [95% CI]": [interval(d, lo, hi) for d, lo, hi in zip(frame["diff"], frame["diff_low"], frame["diff_high"])],
        "p": frame["p"].map(pvalue), "p (Holm)": frame["p_holm"].map(pvalue),
        "MDE pp (80% power)": frame["mde"].map(lambda v: "–" if not np.isfinite(v) else f"{100 * v:.2f}"),
        f"p (TOST ±{100 * margin:g} pp)": frame["p_tost"].map(pvalue), "verdict": frame["verdict"].fillna("–")}


def effort_for_people(effort: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "method": effort["method"], "role": effort["role"], "search trials": effort["trials"],
        "completed": effort["completed"], "diverged": effort["diverged"], "failed": effort["failed"],
        "stopped (ASHA)": effort["stopped"], "still running": effort["running"]})


def best_for_people(best: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "method": best["method"], "role": best["role"],
        "chosen trial (parent run's record)": [run if _present(run) else (note if _present(note) else "–")
                                               for run, note in zip(best["best_run"], best["note"])],
        "config": best["config"].fillna("–"), "shared hyperparameters": best["shared"].fillna("–"),
        "val acc %": best["val_acc"].map(pct), "val loss": best["val_loss"].map(lambda v: "–" if not np.isfinite(v) else f"{v:.4f}"),
        "its test acc %": best["test_acc"].map(pct)})


def answer_for_people(summary: pd.DataFrame, margin: float = MARGIN, reference: str = "baseline",
                      measure: str = "test acc", tuning: pd.DataFrame | None = None) -> pd.DataFrame:
    """The answer's table on `measure`; with `tuning` (analysis.tuning.tuning_comparison) a last column
    says at which search budget the verdict holds and where the tuning curves cross."""
    frame = pd.DataFrame({
        "method": summary["method"], "role": summary["role"],
        f"{measure} % (mean ± 95% CI)": [mean_pm(m, h) for m, h in zip(summary["mean"], summary["ci95"])],
        "completed / run": [runs_done(c, n) for c, n in zip(summary["n_completed"], summary["n_run"])]})
    cells = _diff_cells(summary, margin)
    cells["Δ pp [95% CI]"] = [c if v != "reference" else "reference" for c, v in zip(cells["Δ pp [95% CI]"], summary["verdict"])]
    cells["verdict"] = summary["verdict"].where(summary["verdict"] != "reference", "–")
    frame = frame.assign(**{f"Δ vs {reference} pp [95% CI]" if k == "Δ pp [95% CI]" else k: v for k, v in cells.items()})
    frame[f"train time (× {reference})"] = [f"{s:.1f} s ({ratio(r)})" if np.isfinite(s) else "–"
                                            for s, r in zip(summary["train_seconds"], summary["cost_ratio"])]
    if tuning is not None and len(tuning):
        against = tuning.set_index("method")
        frame[f"search budget; tuning curve vs {reference}"] = [
            tuning_words(against.loc[m]) if m in against.index else "–" for m in summary["method"]]
    return frame


def paired_for_people(table: pd.DataFrame, margin: float = MARGIN, left: str = "method",
                      right: str = "matched baseline", measure: str = "test acc") -> pd.DataFrame:
    frame = pd.DataFrame({
        left: table["method"], right: table["versus"], "seeds (pairs)": table["pairs"],
        f"{left} {measure} %": [mean_pm(m, h) for m, h in zip(table["method_mean"], table["method_ci95"])],
        f"{left} completed": [runs_done(c, n) for c, n in zip(table["method_n_completed"], table["method_n_run"])],
        f"{right} {measure} %": [mean_pm(m, h) for m, h in zip(table["versus_mean"], table["versus_ci95"])],
        f"{right} completed": [runs_done(c, n) for c, n in zip(table["versus_n_completed"], table["versus_n_run"])]})
    cells = _diff_cells(table, margin)
    frame = frame.assign(**{f"Δ {left} − {right} pp [95% CI]" if k == "Δ pp [95% CI]" else k: v
                            for k, v in cells.items()})
    frame[f"train time (× {right})"] = table["cost_ratio"].map(ratio)
    return frame


def seeds_for_people(seeds: pd.DataFrame) -> pd.DataFrame:
    """One row per seed: the curriculum's test accuracy, then each control's and its Δ (pp)."""
    if seeds.empty:
        return pd.DataFrame()
    rows = {}
    mark = {True: "", False: " †"}
    for r in seeds.itertuples(index=False):
        row = rows.setdefault((r.curriculum, r.seed), {"seed": r.seed,
                                                      f"{r.curriculum} %": pct(r.curriculum_value)
                                                      + mark[r.curriculum_outcome == "completed"]})
        row[f"{r.control} % (Δ pp)"] = (f"{pct(r.control_value)}{mark[r.control_outcome == 'completed']} "
                                        f"({pp(r.diff)})")
    return pd.DataFrame(list(rows.values())).fillna("–")


def markdown(frame: pd.DataFrame) -> str:
    def cell(value) -> str:
        text = "–" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *body])


def answer_lines(summary: pd.DataFrame, reference: str = "baseline") -> list[str]:
    """One line per method (the CLI's short answer): test acc, runs, Δ vs the reference ± CI, p,
    Holm p, MDE, TOST p, the verdict and the cost."""
    lines = []
    for row in summary.itertuples(index=False):
        head = (f"{row.method:<14} {mean_pm(row.mean, row.ci95):>14} %  "
                f"{runs_done(row.n_completed, row.n_run):<6}")
        if row.verdict == "reference":
            seconds = f"  train {row.train_seconds:.1f} s" if np.isfinite(row.train_seconds) else ""
            lines.append(f"{head} reference{seconds}")
            continue
        cost = f"  time {ratio(row.cost_ratio)}" if np.isfinite(row.cost_ratio) else ""
        lines.append(f"{head} Δ {interval(row.diff, row.diff_low, row.diff_high)} pp  {p_equals(row.p)} "
                     f"(Holm {pvalue(row.p_holm)})  MDE {pct(row.mde)} pp  TOST {p_equals(row.p_tost)}  "
                     f"{row.verdict}{cost}")
    return lines


def paired_lines(table: pd.DataFrame) -> list[str]:
    """One line per paired comparison: `sharpening − anti  Δ +0.40 [...] pp  p=… (Holm …)  verdict`."""
    width = max((len(f"{row.method} − {row.versus}") for row in table.itertuples(index=False)), default=0)
    return [f"{f'{row.method} − {row.versus}':<{width}}  {row.pairs} seeds  Δ "
            f"{interval(row.diff, row.diff_low, row.diff_high)} pp  {p_equals(row.p)} (Holm {pvalue(row.p_holm)})  "
            f"{row.verdict}" + (f"  time {ratio(row.cost_ratio)}" if np.isfinite(row.cost_ratio) else "")
            for row in table.itertuples(index=False)]


def tuning_words(row) -> str:
    """A method's tuning curve against the baseline's (a row of analysis.tuning.tuning_comparison):
    "8 trials per method: below the baseline's expected best at every k ≤ 8; bands overlap at k = 8",
    or "... crosses the baseline's at k = 3 (below before, above from k = 3) ...", and the k at which
    the bands are disjoint, where there are any."""
    budget, versus = int(row["budget"]), row["versus"]
    trials = (f"{budget} trials per method" if row["n"] == row["versus_n"]
              else f"{int(row['n'])} trials against {versus}'s {int(row['versus_n'])}: compared up to k = {budget}")
    crossings = [int(k) for k in str(row["crossings"]).split(", ") if k.strip().isdigit()]
    if not crossings:
        order = row["order_at_budget"]
        where = (f"{order} the {versus}'s expected best at every k ≤ {budget}" if order != "tied"
                 else f"tied with the {versus}'s expected best at k = {budget}")
    else:
        ks = ", ".join(map(str, crossings))
        where = (f"crosses the {versus}'s expected best at k = {ks} ({row['order_at_1']} at k = 1, "
                 f"{row['order_at_budget']} at k = {budget})")
    overlap = f"bands {'overlap' if row['bands_overlap'] else 'are disjoint'} at k = {budget}"
    parts = [where, overlap]
    if row["bands_separate"]:
        parts.append(f"expected-best bands disjoint at k = {row['bands_separate']}")
    if row["median_bands_separate"]:
        parts.append(f"median-best bands disjoint at k = {row['median_bands_separate']}")
    return f"{trials}: " + "; ".join(parts)


def tuning_for_people(curves: pd.DataFrame, comparison: pd.DataFrame) -> pd.DataFrame:
    """One row per method: its search trials (failed ones scored chance), the expected best at k = 1
    (the mean trial) and at k = n with the band, the median best at k = n with the band, and its
    curve against the baseline's."""
    rows = []
    against = comparison.set_index("method") if len(comparison) else pd.DataFrame()
    for method in method_order(curves["method"]):
        mine = curves[curves["method"] == method].sort_values("k")
        first, last = mine.iloc[0], mine.iloc[-1]
        n = int(last["n"])
        rows.append({
            "method": method,
            "search trials": f"{n}" + (f" ({int(last['failed'])} scored chance)" if last["failed"] else ""),
            "mean trial, k = 1 (%)": pct(first["expected"]),
            f"expected best at k = {n} (%) [band]": f"{pct(last['expected'])} [{pct(last['expected_low'])}, "
                                                   f"{pct(last['expected_high'])}]",
            f"median best at k = {n} (%) [band]": f"{pct(last['median'])} [{pct(last['median_low'])}, "
                                                 f"{pct(last['median_high'])}]",
            "against the baseline's curve": (tuning_words(against.loc[method]) if method in against.index
                                             else "reference" if method == "baseline" else "–")})
    return pd.DataFrame(rows)


def tuning_lines(comparison: pd.DataFrame) -> list[str]:
    """The CLI's lines: one per method, its tuning curve against the baseline's."""
    width = max((len(m) for m in comparison["method"]), default=0)
    return [f"{row['method']:<{width}}  {tuning_words(row)}" for _, row in comparison.iterrows()]


def component(sd, share) -> str:
    """A variance component for people: "0.52 pp (34 %)" (sd, share of the variance), or "not measured"."""
    if sd is None or not np.isfinite(sd):
        return "not measured"
    return f"{100 * sd:.2f} pp ({100 * share:.0f} %)" if np.isfinite(share) else f"{100 * sd:.2f} pp"


def variance_for_people(table: pd.DataFrame) -> pd.DataFrame:
    """One row per method (and all methods together): each component's sd in pp and its share of the
    variance, from analysis.variance.variance_table; "not measured" where the study cannot say; rows
    over the completed runs only (with a "scored" column) where some runs did not complete."""
    frame = pd.DataFrame({
        "method": table["method"], "scored": table["scored"], "runs": table["runs"], "replicates": table["replicates"],
        "configurations": table["configurations"],
        "split (replicate)": [component(v, s) for v, s in zip(table["split_sd"], table["split_share"])],
        "configuration": [component(v, s) for v, s in zip(table["configuration_sd"], table["configuration_share"])],
        "seed": [component(v, s) for v, s in zip(table["seed_sd"], table["seed_share"])],
        # "one replicate" is the section's note and the "not measured" cells already: not on every row
        "estimated by": table["estimator"],
        "note": [("; ".join(p for p in str(n).split("; ") if not p.startswith("one replicate:")) if _present(n) else "")
                 for n in table["note"]]})
    # Every run scored as everywhere else: the column matters only beside rows of completed runs only.
    return frame if frame["scored"].nunique() > 1 else frame.drop(columns="scored")


def replicates_for_people(table: pd.DataFrame, margin: float = MARGIN) -> pd.DataFrame:
    """The headline over replicates (analysis.variance.replicate_summary): per method, Δ vs the
    baseline over replicates with its CI, p, Holm p, the verdict, each replicate's verdict and
    whether it held in every one."""
    frame = pd.DataFrame({
        "method": table["method"], "replicates": table["replicates"],
        "test acc % (mean of replicate means)": table["method_mean"].map(pct),
        "baseline %": table["versus_mean"].map(pct)})
    cells = _diff_cells(table, margin)
    cells.pop("MDE pp (80% power)")
    frame = frame.assign(**{"Δ pp [95% CI over replicates]" if k == "Δ pp [95% CI]" else k: v
                            for k, v in cells.items()})
    frame["verdict per replicate"] = table["per_replicate"]
    frame["held in every replicate"] = table["held_in_every_replicate"].map({True: "yes", False: "no"})
    return frame


def corruption_for_people(table: pd.DataFrame, reference: str = "baseline", hardest: int = 3) -> pd.DataFrame:
    """One row per method from `tables.corruption_table`: its mean corruption accuracy, Δ vs the
    reference, the mCE (reference = 100) and its hardest corruptions with their accuracy."""
    rows = []
    for method in method_order(table["method"]):
        mine = table[table["method"] == method]
        means = mine[mine["corruption"] == ALL_CORRUPTIONS].iloc[0]
        each = mine[mine["corruption"] != ALL_CORRUPTIONS].sort_values(["accuracy", "corruption"])
        rows.append({"method": method, "role": means["role"],
                     "corruption acc % (mean over corruptions)": pct(means["accuracy"]),
                     f"Δ vs {reference} pp": "reference" if method == reference else pp(means["diff"]),
                     f"mCE (error ÷ {reference}'s, per corruption; {reference} = 100)":
                         "100" if method == reference else (f"{100 * means['relative_error']:.1f}"
                                                            if np.isfinite(means["relative_error"]) else "–"),
                     "hardest corruptions (acc %)": ", ".join(f"{c} {pct(a, 1)}" for c, a in
                                                              zip(each["corruption"][:hardest], each["accuracy"][:hardest])),
                     "completed / run": runs_done(means["n_completed"], means["n_run"])})
    return pd.DataFrame(rows)


def _kind(verdict) -> str:
    """A verdict's kind: "better", "worse", "equivalent", "inconclusive" or "not" (testable)."""
    return str(verdict).split(" ")[0] if _present(verdict) else ""


DECIDED = ("better", "worse", "equivalent")


def direction_words(own, crossed) -> str:
    """A method's two paired comparisons with the baseline read together: its verdict at its own
    shared hyperparameters (matched_table) and at the baseline's (crossed_table)."""
    a, b = _kind(own), _kind(crossed)
    if not a or not b:
        return "one direction only"
    if a == b and a in DECIDED:
        return f"{a} in both directions"
    if a in DECIDED and b in DECIDED:
        return f"{a} at its own hyperparameters, {b} at the baseline's: the difference depends on the hyperparameters"
    if a in DECIDED:
        return f"{a} at its own hyperparameters; open at the baseline's"
    if b in DECIDED:
        return f"{b} at the baseline's hyperparameters; open at its own"
    return "open in both directions"


def directions_for_people(matched: pd.DataFrame, crossed: pd.DataFrame) -> pd.DataFrame:
    """One row per curriculum or variant: Δ vs the baseline and the verdict at its own shared
    hyperparameters (the baseline moved there: matched_table) and at the baseline's (the method moved
    there: crossed_table), and the two read together."""
    own, there = matched.set_index("method"), crossed.set_index("method")
    rows = []
    for method in method_order([*matched["method"], *crossed["method"]]):
        cells = {"method": method}
        for title, table in (("at its own shared hyperparameters", own), ("at the baseline's", there)):
            row = table.loc[method] if method in table.index else None
            cells[f"{title}: Δ vs baseline pp [95% CI]"] = (
                interval(row["diff"], row["diff_low"], row["diff_high"]) if row is not None else "–")
            cells[f"{title}: verdict"] = row["verdict"] if row is not None else "–"
        cells["both directions"] = direction_words(own["verdict"].get(method), there["verdict"].get(method))
        rows.append(cells)
    return pd.DataFrame(rows)


def direction_lines(matched: pd.DataFrame, crossed: pd.DataFrame) -> list[str]:
    """The CLI's lines: per method, the two directions read together."""
    frame = directions_for_people(matched, crossed)
    width = max((len(m) for m in frame["method"]), default=0)
    return [f"{row['method']:<{width}}  {row['both directions']}" for _, row in frame.iterrows()]


def _chosen_cell(row) -> str:
    if row["chosen"]:
        return f"chosen ({row['chosen_by']})" if row["chosen_by"] else "chosen"
    return "the rule's pick (not what the seed repeats ran)" if row["rule_pick"] else ""


def selection_for_people(table: pd.DataFrame) -> pd.DataFrame:
    """One row per candidate of the top-k selection (tables.selection_table): its search trial and
    rank, the search's val acc beside the mean (sd) over the selection's fresh seeds, the
    difference, and which candidate was chosen (with the seed repeats' val acc for it)."""
    several = table["replicate"].nunique() > 1
    frame = pd.DataFrame({
        **({"replicate": table["replicate"]} if several else {}),
        "method": table["method"],
        "candidate (search rank)": [f"{c} ({int(r)})" if _present(r) and np.isfinite(r) else str(c)
                                    for c, r in zip(table["config_id"], table["search_rank"])],
        "config": [f"{c} {s}".strip() for c, s in zip(table["config"], table["shared"])],
        "search val acc %": table["search_val_acc"].map(pct),
        "selection val acc %, mean (sd)": [pct(m) + (f" ({pct(sd)})" if _present(sd) and np.isfinite(sd) else "")
                                           for m, sd in zip(table["select_mean"], table["select_sd"])],
        "completed / run": [runs_done(c, n) for c, n in zip(table["n_completed"], table["n_run"])],
        "search − selection pp": table["overstated"].map(pp),
        "chosen": [_chosen_cell(row) for _, row in table.iterrows()],
        "seed repeats' val acc %": [pct(v) if c else "" for v, c in zip(table["repeat_val_acc"], table["chosen"])]})
    return frame


def _overstated(diff: float, what: str) -> str:
    """"overstated <what> by 0.42 pp", "understated <what> by 0.10 pp" or "matched <what>" (diff =
    claimed − found)."""
    if float(pp(diff)) == 0:
        return f"matched {what}"
    return f"{'overstated' if diff > 0 else 'understated'} {what} by {pp(abs(diff))[1:]} pp"


def selection_text(table: pd.DataFrame, rule: str, top=None, seeds=None) -> str:
    """How the choice was made and what the search's single number was worth: the mean over the
    chosen configs of search val acc − their mean on the fresh selection seeds (and on the seed
    repeats, where there are any), the methods whose search favourite lost, and any method whose
    seed repeats ran another candidate than `rule` picks."""
    chosen = table[table["chosen"].astype(bool)]
    per = table.groupby(["replicate", "method"], sort=False)
    k = int(float(top)) if _present(top) else int(per.size().max())
    n = int(float(seeds)) if _present(seeds) else int(table["n_run"].max())
    text = (f"Each searched method's top {k} search configurations by validation accuracy were re-run on {n} fresh "
            f"seed{'s' if n != 1 else ''} each, and the one with {rule} was chosen and re-run as the seed repeats.")
    replicates = table["replicate"].nunique()
    over = chosen["overstated"][np.isfinite(chosen["overstated"].astype(float))]
    if len(over):
        methods = chosen["method"].nunique()
        count = (f"{len(over)} choices ({methods} methods × {replicates} replicates)" if replicates > 1
                 else f"{len(over)} method{'s' if len(over) != 1 else ''}")
        each = "choice" if replicates > 1 else "method"
        spread = f" (per {each} from {pp(over.min())} to {pp(over.max())} pp)" if len(over) > 1 else ""
        text += (f" The search's validation accuracy of the chosen configuration "
                 f"{_overstated(over.mean(), 'its mean on the fresh seeds')}, on average over {count}{spread}.")
    repeated = chosen[chosen["repeat_n"] > 0]
    gap = (repeated["search_val_acc"] - repeated["repeat_val_acc"]).astype(float)
    gap = gap[np.isfinite(gap)]
    if len(gap):
        text += (f" It {_overstated(gap.mean(), 'its mean over the seed repeats')} on average (seeds neither the "
                 f"search nor the selection chose on).")
    moved = [f"{m} (search rank {int(r)})" for m, r in zip(chosen["method"], chosen["search_rank"])
             if _present(r) and np.isfinite(r) and r != 1]
    if moved:
        text += f" The selection chose another than the search's best trial for: {', '.join(dict.fromkeys(moved))}."
    differs = [m for (_, m), rows in per if rows["rule_pick"].astype(bool).any()
               and not rows.loc[rows["rule_pick"].astype(bool), "chosen"].astype(bool).any()]
    if differs:
        text += (f" The seed repeats ran another candidate than this rule picks for: "
                 f"{', '.join(dict.fromkeys(differs))} (both marked in the table).")
    return text


def with_regime_words(table: pd.DataFrame) -> pd.DataFrame:
    """`tables.regime_table` with its people's cells: `cell` ("+3.50 [+2.90, +4.10] pp, better"; for
    the reference its accuracy) and `cost` ("1.04× time, 1.00× memory"; for the reference its
    seconds and MB)."""
    table = table.copy()
    table["cell"] = [_regime_cell(row) for row in table.itertuples(index=False)]
    table["cost"] = [_regime_cost(row) for row in table.itertuples(index=False)]
    return table


__all__ = ["pct", "pp", "pvalue", "p_equals", "mean_pm", "interval", "ratio", "runs_done", "failure_note",
           "effort_for_people", "best_for_people", "answer_for_people", "paired_for_people", "seeds_for_people",
           "markdown", "answer_lines", "paired_lines", "family_text", "regime_column", "regimes_for_people",
           "regime_lines", "with_regime_words", "tuning_words", "tuning_for_people", "tuning_lines",
           "variance_for_people", "replicates_for_people", "component", "corruption_for_people", "direction_words",
           "directions_for_people", "direction_lines", "selection_for_people", "selection_text"]
