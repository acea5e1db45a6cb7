"""Writing a report: sections of blocks (paragraphs, tables, figures) rendered with
Jinja2 into one self-contained HTML file and its Markdown twin; every table also as
CSV (full precision) and LaTeX (booktabs); every figure as PNG (300 dpi) and SVG."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
import pandas as pd

from ..io import atomic_path, write_csv
from .tables import Table
from .text import REFERENCES

__all__ = ["Figure", "Section", "render"]

PNG_DPI = 300


@dataclass(frozen=True)
class Figure:
    """A figure of the report: ``draw(path, dpi)`` writes it in the format the path names."""

    id: str
    caption: str
    draw: Callable[[Path, int], Path]


@dataclass
class Section:
    id: str
    title: str
    blocks: list = field(default_factory=list)
    number: int = 0

    def paragraph(self, text: str) -> None:
        self.blocks.append({"kind": "paragraph", "text": text})

    def banner(self, text: str, style: str) -> None:
        self.blocks.append({"kind": "banner", "text": text, "style": style})

    def heading(self, text: str) -> None:
        self.blocks.append({"kind": "heading", "text": text})

    def code(self, text: str) -> None:
        self.blocks.append({"kind": "code", "text": text})

    def table(self, table: Table) -> None:
        self.blocks.append({"kind": "table", "table": table})

    def figure(self, figure: Figure) -> None:
        self.blocks.append({"kind": "figure", "figure": figure})


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("scleromx_bayes.report", "templates"),
        autoescape=jinja2.select_autoescape(["html.j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _cells(table: Table) -> tuple[list[str], list[list[dict]]]:
    shown = table.shown()
    numeric = [pd.api.types.is_numeric_dtype(table.frame[c]) for c in table.frame.columns]
    rows = [
        [{"text": str(v), "numeric": n} for v, n in zip(row, numeric, strict=True)]
        for row in shown.itertuples(index=False)
    ]
    return [str(c) for c in shown.columns], rows


_CITE = re.compile(r"\[([a-z_]+)\]")


def _number_citations(sections: Sequence[Section]) -> list[dict]:
    """Replace [key] by [n] in order of first citation; the numbered references."""
    order: list[str] = []

    def number(match: re.Match) -> str:
        key = match.group(1)
        if key not in REFERENCES:
            return match.group(0)
        if key not in order:
            order.append(key)
        return f"[{order.index(key) + 1}]"

    for section in sections:
        for block in section.blocks:
            if block["kind"] == "paragraph":
                block["text"] = _CITE.sub(number, block["text"])
    return [{"key": k, "text": REFERENCES[k]} for k in order]


def render(
    sections: Sequence[Section], stage: Path, context: dict
) -> tuple[dict[str, tuple[Path, Path]], dict[str, tuple[Path, Path]]]:
    """Write ``report.html``, ``report.md``, ``tables/`` and ``figures/`` into ``stage``;
    return the table (CSV, LaTeX) and figure (PNG, SVG) paths by id."""
    (stage / "tables").mkdir()
    (stage / "figures").mkdir()
    references = _number_citations(sections)
    if references:
        refs = Section("references", "References")
        refs.blocks.append({"kind": "references", "entries": references})
        sections = [*sections, refs]
    tables, figures = {}, {}
    n_table = n_figure = 0
    for number, section in enumerate(sections, start=1):
        section.number = number
        for block in section.blocks:
            if block["kind"] == "table":
                n_table += 1
                t: Table = block["table"]
                block["number"] = n_table
                block["columns"], block["rows"] = _cells(t)
                csv = write_csv(t.frame, stage / "tables" / f"{t.id}.csv", index=False)
                tex = stage / "tables" / f"{t.id}.tex"
                latex = t.shown().to_latex(
                    index=False, escape=True, caption=t.caption, label=f"tab:{t.id}"
                )
                with atomic_path(tex) as tmp:
                    tmp.write_text(latex, encoding="utf-8")
                tables[t.id] = (csv, tex)
            elif block["kind"] == "figure":
                n_figure += 1
                f: Figure = block["figure"]
                block["number"] = n_figure
                png = f.draw(stage / "figures" / f"{f.id}.png", PNG_DPI)
                svg = f.draw(stage / "figures" / f"{f.id}.svg", PNG_DPI)
                block["figure"] = {
                    "id": f.id,
                    "caption": f.caption,
                    "png_base64": base64.b64encode(png.read_bytes()).decode("ascii"),
                }
                figures[f.id] = (png, svg)
    env = _environment()
    for name, template in (("report.html", "report.html.j2"), ("report.md", "report.md.j2")):
        text = env.get_template(template).render(sections=sections, **context)
        with atomic_path(stage / name) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return tables, figures
