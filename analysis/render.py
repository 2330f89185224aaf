"""The report as a document: sections of headings, tables, figures and notes, rendered to one
self-contained HTML page (figures embedded as base64 PNG) and to Markdown (the sections marked
`markdown`: the answer and its tables)."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .words import markdown


@dataclass
class Section:
    title: str
    anchor: str
    intro: str = ""
    # ("h3" | "h4", text), ("table", frame), ("image", path, alt), ("note", text), ("p", text), ("html", markup)
    blocks: list = field(default_factory=list)
    markdown: bool = False  # also in summary.md


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1180px;margin:24px auto;padding:0 16px;color:#222;line-height:1.45}
h1{font-size:1.6em;margin-bottom:0}
h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:2em}
.sub{color:#666;margin-top:4px}
.intro{color:#444;max-width:900px}
table{border-collapse:collapse;font-size:0.86em;margin:8px 0 16px}
th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f4f4f4}
tr:nth-child(even) td{background:#fafafa}
td.good{background:#dff3df!important;font-weight:600}
td.bad{background:#f8dcdc!important;font-weight:600}
td.neutral{color:#555}
td.same{background:#e3ecf8!important}
.note{background:#fff6d6;border-left:4px solid #e0b400;padding:6px 10px;margin:8px 0;font-size:0.92em}
.headline{font-size:1.12em;background:#eef4fb;border-left:4px solid #1f77b4;padding:8px 12px}
img{max-width:100%;height:auto;display:block;margin:8px 0}
pre{background:#f6f6f6;padding:8px;overflow-x:auto;font-size:0.85em}
nav a{margin-right:12px;font-size:0.9em}
table.kv th{width:150px}
"""


def _cell_class(value: str) -> str:
    """Verdict cells (analysis.stats.verdict's words, alone or ending a regime-table cell
    "+3.50 [+2.90, +4.10] pp, better") coloured; every other cell plain."""
    if " pp" in value and ", " in value:
        value = value.rsplit(", ", 1)[1]
    if value == "better":
        return " class='good'"
    if value == "worse":
        return " class='bad'"
    if value.startswith("equivalent within"):
        return " class='same'"
    if value.startswith(("inconclusive", "not testable")):
        return " class='neutral'"
    return ""


def html_table(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for row in frame.itertuples(index=False):
        cells = []
        for value in row:
            text = "–" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
            cells.append(f"<td{_cell_class(text)}>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def strip_tags(text: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", text))


def render_html(sections: list[Section], title: str, subtitle: str) -> str:
    parts = [f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1><p class='sub'>{html.escape(subtitle)}</p>",
             "<nav>" + "".join(f"<a href='#{s.anchor}'>{html.escape(s.title)}</a>" for s in sections) + "</nav>"]
    for section in sections:
        parts.append(f"<section id='{section.anchor}'><h2>{html.escape(section.title)}</h2>")
        if section.intro:
            parts.append(f"<p class='intro'>{html.escape(section.intro)}</p>")
        for block in section.blocks:
            kind = block[0]
            if kind in ("h3", "h4"):
                parts.append(f"<{kind}>{html.escape(block[1])}</{kind}>")
            elif kind == "table":
                parts.append(html_table(block[1]))
            elif kind == "image":
                data = base64.b64encode(Path(block[1]).read_bytes()).decode("ascii")
                parts.append(f"<img alt='{html.escape(block[2])}' src='data:image/png;base64,{data}'>")
            elif kind == "note":
                parts.append(f"<div class='note'>Note: {html.escape(block[1])}</div>")
            elif kind == "p":
                parts.append(f"<p>{html.escape(block[1])}</p>")
            elif kind == "html":
                text = block[1]
                parts.append(f"<p class='headline'>{text}</p>" if section.anchor == "answer" else text)
        parts.append("</section>")
    parts.append("</body></html>")
    return "\n".join(parts)


def render_markdown(sections: list[Section], title: str, subtitle: str) -> str:
    """summary.md: the answer and the tables (figures live in report.html)."""
    lines = [f"# {title}", "", subtitle, ""]
    for section in [s for s in sections if s.markdown]:
        lines += [f"## {section.title}", ""]
        if section.intro:
            lines += [section.intro, ""]
        for block in section.blocks:
            if block[0] in ("h3", "h4"):
                lines += [("### " if block[0] == "h3" else "#### ") + block[1], ""]
            elif block[0] == "table":
                lines += [markdown(block[1]), ""]
            elif block[0] == "note":
                lines += [f"> Note: {block[1]}", ""]
            elif block[0] == "p":
                lines += [block[1], ""]
            elif block[0] == "html":
                lines += [strip_tags(block[1].replace("<b>", "**").replace("</b>", "**")), ""]
    lines += ["Accuracies in %, differences in percentage points (pp). Figures, blur robustness, importances, "
              "timing and the full trial list: report.html."]
    return "\n".join(lines) + "\n"


__all__ = ["Section", "render_html", "render_markdown", "html_table", "strip_tags"]
