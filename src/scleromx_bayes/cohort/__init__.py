"""Cohort data: read a table, validate it, define the outcome, aggregate to cells.

``files`` reads a table as text (any format), ``validate`` turns it into a
:class:`Cohort` or a :class:`CohortError` listing every problem, ``labels`` is the
one normalisation of labels, and ``tables`` holds :class:`Cohort`,
:class:`OutcomeDefinition` and the :class:`CellTable` a model is fitted to.
"""

from .files import SYNTHETIC_MARKER, load_table
from .problems import CohortError, Problem
from .tables import CellTable, Cohort, OutcomeDefinition
from .validate import LevelWarning, read_cohort, read_counts, read_data

__all__ = [
    "SYNTHETIC_MARKER",
    "CellTable",
    "Cohort",
    "CohortError",
    "LevelWarning",
    "OutcomeDefinition",
    "Problem",
    "load_table",
    "read_cohort",
    "read_counts",
    "read_data",
]
