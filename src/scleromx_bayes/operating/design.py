"""The design an OC study simulates on: cells (regimen x site x severity) and their
sizes, from a cohort (its outcomes are ignored) or from a planned table."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from ..cohort import CellTable, Cohort, OutcomeDefinition, read_counts
from ..cohort.files import load_table
from ..errors import SettingsError
from ..model import effective_structure
from ..spec import ModelSpec

__all__ = ["as_design", "check_spec_for_design", "read_design"]


def read_design(
    data: str | Path | pd.DataFrame, *, severity_order=None, regimen_order=None
) -> Cohort:
    """Read a planned design: one row per site x regimen x severity with the planned
    number of patients ``n`` (columns ``site, regimen, severity, n``; an ``n_cr``
    column, if present, is ignored). Validated like a counts table: errors name the
    file, row and column.

    Parameters
    ----------
    data : str, Path or pandas.DataFrame
        The planned design (CSV, TSV, Parquet, Excel or a frame).
    severity_order, regimen_order : sequence of str, optional
        Level orders, as for :func:`read_cohort`.

    Returns
    -------
    Cohort
        A counts cohort whose ``n`` are the planned sizes (``n_cr`` all 0).

    Examples
    --------
    >>> import pandas as pd
    >>> plan = pd.DataFrame({"site": ["A", "A"], "regimen": ["HDIVig", "DNS rescue"],
    ...                      "severity": "severe", "n": [10, 5]})
    >>> read_design(plan).n_episodes
    15
    """
    raw = load_table(data)
    frame = raw.frame.copy()
    names = {str(c).strip().lower() for c in frame.columns}
    if "n_cr" not in names:
        # outcomes are simulated: a zero placeholder lets the counts reader check the rest
        frame["n_cr"] = "0"
    else:
        frame[[c for c in frame.columns if str(c).strip().lower() == "n_cr"][0]] = "0"
    return read_counts(
        replace(raw, frame=frame), severity_order=severity_order, regimen_order=regimen_order
    )


def as_design(design: Cohort | CellTable, outcome: OutcomeDefinition | None = None) -> CellTable:
    """The cells of a cohort (or a cell table) with their ``n`` and no responders."""
    if isinstance(design, Cohort):
        design = design.cells(outcome or OutcomeDefinition())
    if not isinstance(design, CellTable):
        raise TypeError(
            "design must be a Cohort (sxb.read_data, sxb.read_design) or a CellTable, "
            f"not {type(design).__name__}"
        )
    if design.n.sum() == 0:
        raise SettingsError("the design has no evaluable patients (every n is 0)")
    frame = design.frame.drop(columns=[c for c in ("n_pr",) if c in design.frame])
    return replace(design, frame=frame.assign(y=np.zeros(len(frame), dtype=np.int64)))


def check_spec_for_design(spec: ModelSpec, design: CellTable) -> None:
    """Refuse the specs an OC study cannot simulate for: outcomes are simulated as CR
    or not per cell, so no ordinal responses, patient effects or covariates."""
    if spec.response_scale == "ordinal":
        raise SettingsError(
            f"spec {spec.name!r} is ordinal (CR > PR > NR): operating characteristics simulate "
            "binary CR outcomes; use a binary spec (base, no_pooling, exnex, ...)"
        )
    if spec.patient_effect or spec.covariates:
        what = "a patient effect" if spec.patient_effect else f"covariates {list(spec.covariates)}"
        raise SettingsError(
            f"spec {spec.name!r} has {what}: a design gives cell sizes only, so operating "
            "characteristics are simulated for cell-level specs"
        )
    effective_structure(spec, design)
