"""The report's sections on two parts of the study's design (`analysis.report` places and fills them):

- Crossed matched runs: each curriculum and variant re-run at the baseline's chosen shared
  hyperparameters on the baseline's seeds (`tables.crossed_table`), beside the matched baselines
  (the baseline at each method's hyperparameters, `tables.matched_table`): the two directions of
  one question — does a curriculum's difference hold whoever's search chose the optimizer, learning
  rate, weight decay and batch size?
- Selection: each searched method's top-k search configurations re-run on fresh seeds, the best mean
  chosen (`tables.selection_table`): what the search's single validation accuracy was worth.

A study without these runs (one from an earlier launcher) gets one line in each section saying so.
Numbers come from `analysis.tables`, words from `analysis.words`.
"""

from __future__ import annotations

import pandas as pd

from study.record import split_key

from . import tables as T
from . import words as W
from .load import key_label
from .render import Section


def crossed_section() -> Section:
    return Section("Crossed: each method at the baseline's hyperparameters", "crossed", markdown=True, intro=(
        "The other direction of the matched baselines: each curriculum (and variant) re-run at the baseline's "
        "chosen shared hyperparameters (optimizer, lr, weight decay, batch size) on the seeds of the baseline's "
        "seed repeats, against those repeats: a paired t-test per seed, Δ = method − baseline, Holm over this "
        "table's methods, verdicts as in the answer. Below, both directions side by side: at the method's own "
        "shared hyperparameters (the matched baselines) and at the baseline's. A difference found in both "
        "directions does not depend on whose search chose the hyperparameters; one found in only one "
        "direction does. Also in crossed.csv."))


def selection_section() -> Section:
    return Section("Selection on fresh seeds", "selection", markdown=True, intro=(
        "A search trial's validation accuracy is one seed's number, and the best of many such numbers is "
        "biased upwards (the winner's curse). Each method's best search configurations were therefore re-run "
        "on fresh seeds before one was chosen. Per candidate: its rank in the search, the search's validation "
        "accuracy, the mean (sd) over the selection seeds (a run that did not complete scores chance), their "
        "difference, and which one was chosen — read from the configuration the method's seed repeats ran. "
        "Validation only: selection never looks at test. Also in selection.csv."))


def crossed(section: Section, matched: pd.DataFrame, crossed_runs: pd.DataFrame, trials: pd.DataFrame, key: str,
            margin: float) -> list[str]:
    """The crossed comparison of one study key and both directions beside it; the CLI's lines."""
    name, dataset = key_label(key), split_key(key)[0]
    if crossed_runs.empty:
        section.blocks.append(("note", _no_crossed_note(trials)))
        return []
    text = W.family_text(crossed_runs, versus="baseline")
    section.blocks += [("p", text + " (each method at the baseline's shared hyperparameters)."),
                       ("table", W.paired_for_people(crossed_runs, margin, "method", "baseline")),
                       ("h4", "Both directions (Δ vs the baseline, paired by seed)"),
                       ("table", W.directions_for_people(matched, crossed_runs))]
    printed = [f"[{name}] crossed, each method at the baseline's shared hyperparameters (paired by seed): {text}"]
    printed += ["  " + line for line in W.paired_lines(crossed_runs)]
    printed += ["  both directions: " + line for line in W.direction_lines(matched, crossed_runs)]
    footnote = W.failure_note([crossed_runs], dataset)
    if footnote:
        section.blocks.append(("p", footnote))
        printed.append("  " + footnote)
    return printed


def _no_crossed_note(trials: pd.DataFrame) -> str:
    runs = trials[(trials["phase"] == "control") & (trials["matched_to"] == "baseline")] if len(trials) else trials
    have = (f"this study has {len(runs)} such run{'s' if len(runs) != 1 else ''} but no baseline repeats on "
            f"their seeds" if len(runs) else "this study has none (launchers before the crossed design wrote none)")
    return (f"no crossed comparison: needs each curriculum or variant re-run at the baseline's chosen shared "
            f"hyperparameters (phase control, matched_to baseline) and the baseline's seed repeats on the same "
            f"seeds; {have}.")


def selection(section: Section, table: pd.DataFrame, params: dict, key: str) -> list[str]:
    """The selection table of one study key and its sentence; the CLI's line."""
    name = key_label(key)
    if table.empty:
        section.blocks.append(("note", "no selection runs (phase select): each method's configuration is its "
                                       "single best search trial by validation accuracy, one seed's number "
                                       "(launchers before the top-k selection ran none)."))
        return []
    text = W.selection_text(table, T.SELECT_RULE, params.get("select_top"), params.get("select_seeds"))
    section.blocks += [("p", text), ("table", W.selection_for_people(table))]
    return [f"[{name}] selection: {text}"]


__all__ = ["crossed_section", "selection_section", "crossed", "selection"]
