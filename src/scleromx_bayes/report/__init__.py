"""A report a clinician can put in a paper: tables, a methods paragraph, results in
sentences, figures, checks and an appendix, all from the same Datasets the Python
API returns.

tables (DataFrames from the Datasets) and text (sentences from the spec and the
summary) -> render (Jinja2 templates: HTML, Markdown; CSV, LaTeX; PNG, SVG) -> build
(``report``: the sections in a paper's order, staged and moved into place).
"""

from .build import ReportFiles, report

__all__ = ["ReportFiles", "report"]
