"""Sphinx configuration for the scleromx_bayes documentation.

Built by ``./dev docs`` (strict: every warning is an error) into ``docs/_build/html``,
a static folder that opens offline. The tutorial and the explanation pages are MyST
notebooks executed at every build (myst-nb), so their output cannot drift from the
code. The API reference is generated here, before Sphinx reads the sources, from
``scleromx_bayes.__all__``: one page per public module, one entry per public name.
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import scleromx_bayes

project = "scleromx_bayes"
author = "scleromx_bayes developers"
copyright = "2026, scleromx_bayes developers"
release = scleromx_bayes.__version__
version = release

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.mathjax",
    # MathJax from a CDN would need a network: this copies its own MathJax into
    # _static, so the site's maths render offline
    "sphinx-mathjax-offline",
    "numpydoc",
]

exclude_patterns = ["_build", "**.ipynb_checkpoints", "jupyter_execute"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb"}

# Executed notebooks: every build runs every cell ("force"); an error in a cell fails
# the build. SXB_DOCS_EXECUTE=off builds prose and API only (for quick edits; never CI).
nb_execution_mode = "off" if os.environ.get("SXB_DOCS_EXECUTE") == "off" else "force"
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_execution_timeout = 900
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# Docstrings: NumPy style; numpydoc's validation turns an object without a docstring
# into a warning, which the strict build makes an error.
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_validation_checks = {"GL08"}
numpydoc_xref_param_type = False
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "undoc-members": False}

html_theme = "pydata_sphinx_theme"
html_title = "scleromx_bayes"
html_static_path: list[str] = []
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "footer_start": ["copyright"],
    "footer_end": [],
    "announcement": (
        "Every cohort, table and figure in these pages is SYNTHETIC "
        "(simulated example data), not real patients."
    ),
}
html_sidebars = {"index": []}
# the theme reads its colour mode from localStorage, empty for a file:// page: without
# a default it logs a console error on every page opened from disk
html_context = {"default_mode": "light"}
html_show_sourcelink = False

# What the API pages group by: the public module an object is defined in.
SECTIONS = {
    "cohort": "Reading and validating a cohort",
    "spec": "Model specifications",
    "model": "Building the PyMC model",
    "fit": "Fitting",
    "diagnostics": "Convergence diagnostics",
    "summary": "The summary Dataset",
    "checks": "Model checking and comparison",
    "validation": "Simulation-based calibration",
    "sensitivity": "Sensitivity analyses",
    "borrowing": "Borrowing from published series",
    "operating": "Operating characteristics",
    "report": "The report",
    "plots": "Plots",
    "io": "Reading and writing results",
    "provenance": "Provenance",
    "simulate": "Simulated cohorts",
    "errors": "Errors",
}


def _section(obj: object) -> str:
    """The public module that defines ``obj`` (``scleromx_bayes.<section>...``)."""
    return obj.__module__.removeprefix("scleromx_bayes.").split(".")[0]


def write_api_pages(folder: Path) -> None:
    """Write ``api/*.rst`` from ``scleromx_bayes.__all__`` (every name, once)."""
    groups: dict[str, list[str]] = {}
    for name in scleromx_bayes.__all__:
        groups.setdefault(_section(getattr(scleromx_bayes, name)), []).append(name)
    unknown = set(groups) - set(SECTIONS)
    if unknown:
        raise RuntimeError(f"docs/conf.py: no API section for module(s) {sorted(unknown)}")
    folder.mkdir(exist_ok=True)
    order = [key for key in SECTIONS if key in groups]
    index = [
        "API reference",
        "=============",
        "",
        "Everything importable as ``scleromx_bayes.<name>`` (the package's ``__all__``),",
        "grouped by the module that defines it. ``import scleromx_bayes as sxb``.",
        "",
        ".. toctree::",
        "   :maxdepth: 1",
        "",
    ]
    index += [f"   {key}" for key in order]
    (folder / "index.rst").write_text("\n".join(index) + "\n")
    for key in order:
        title = SECTIONS[key]
        lines = [title, "=" * len(title), "", ".. currentmodule:: scleromx_bayes", ""]
        for name in groups[key]:
            obj = getattr(scleromx_bayes, name)
            kind = "autoclass" if inspect.isclass(obj) else "autofunction"
            lines += [f".. {kind}:: {name}", ""]
        (folder / f"{key}.rst").write_text("\n".join(lines))


write_api_pages(Path(__file__).parent / "api")
