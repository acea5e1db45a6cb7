"""Operating characteristics of a decision rule on a cohort's own design: how often
a rule says "better" when regimens are equal (false positives), how often when one
truly is (power), how biased and how well covered the estimates are, for each model.

design -> truth (simulated cohorts) -> engine (fit each, per-simulation results)
-> metrics (P(decision), bias, RMSE, coverage, each with its MCSE) -> run (the
whole study on any executor, stored per chunk) -> calibrate (a threshold for a
target false-positive rate).
"""

from .calibrate import Calibration, calibrate, threshold_for
from .design import as_design, read_design
from .read import oc_focus, oc_table
from .rules import DECISIONS, DecisionRule
from .run import OC_CRITERIA, OC_SETTINGS, evaluate, operating_characteristics
from .truth import Truth, reference_rates

__all__ = [
    "DECISIONS",
    "OC_CRITERIA",
    "OC_SETTINGS",
    "Calibration",
    "DecisionRule",
    "Truth",
    "as_design",
    "calibrate",
    "evaluate",
    "oc_focus",
    "oc_table",
    "operating_characteristics",
    "read_design",
    "reference_rates",
    "threshold_for",
]
