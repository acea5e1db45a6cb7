"""Sensitivity analyses: a grid of scenarios, compiled once per structure, run on any
executor, checkpointed, collected into one Dataset, and read for conclusions.

``grid`` reads and checks grids, ``plan`` resolves a scenario into what it fits,
``run`` runs them (``result`` is one scenario's outcome, ``store`` keeps finished
ones), ``read`` draws conclusions, and ``tipping`` finds tipping points.
"""

from .grid import AXES, Grid, GridError, Scenario, grid_from_dict, load_grid
from .plan import ScenarioInputs, resolve
from .read import conclusions, left_out_reason, rank_stability
from .result import ScenarioResult
from .run import run_scenario, run_sensitivity
from .store import Store, StoreError, StoreWarning
from .tipping import tipping_point

__all__ = [
    "AXES",
    "Grid",
    "GridError",
    "Scenario",
    "ScenarioInputs",
    "ScenarioResult",
    "Store",
    "StoreError",
    "StoreWarning",
    "conclusions",
    "grid_from_dict",
    "left_out_reason",
    "load_grid",
    "rank_stability",
    "resolve",
    "run_scenario",
    "run_sensitivity",
    "tipping_point",
]
