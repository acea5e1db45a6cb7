"""scleromx_bayes: Bayesian response prediction for small rare-disease treatment cohorts.

>>> import scleromx_bayes as sxb
>>> cohort = sxb.load_example()          # synthetic example cohort  # doctest: +SKIP
>>> fit = sxb.fit(cohort, "base", seed=1)                           # doctest: +SKIP
>>> ds = fit.summary()                   # xarray.Dataset            # doctest: +SKIP
>>> sens = sxb.run_sensitivity(cohort, "default", store="sens")     # doctest: +SKIP
"""

from .checks import compare, loo, posterior_predictive_check, prior_predictive_check
from .cohort import (
    CellTable,
    Cohort,
    CohortError,
    OutcomeDefinition,
    Problem,
    read_cohort,
    read_counts,
    read_data,
)
from .fit import Diagnostics, Fit, compile_count, fit, fit_cells
from .io import read_dataset, read_posterior, write_dataset, write_posterior
from .model import build_model
from .sensitivity import (
    Grid,
    GridError,
    conclusions,
    load_grid,
    power_scaling,
    rank_stability,
    run_sensitivity,
    tipping_point,
)
from .simulate import load_example, simulate_cohort
from .spec import ModelSpec, Prior, SpecError, list_specs, load_spec
from .summary import summarise
from .validation import sbc

__version__ = "0.1.0"

__all__ = [
    "CellTable",
    "Cohort",
    "CohortError",
    "Diagnostics",
    "Fit",
    "Grid",
    "GridError",
    "ModelSpec",
    "OutcomeDefinition",
    "Prior",
    "Problem",
    "SpecError",
    "build_model",
    "compare",
    "compile_count",
    "conclusions",
    "fit",
    "fit_cells",
    "list_specs",
    "loo",
    "load_example",
    "load_grid",
    "load_spec",
    "posterior_predictive_check",
    "power_scaling",
    "prior_predictive_check",
    "rank_stability",
    "read_cohort",
    "read_counts",
    "read_data",
    "read_dataset",
    "read_posterior",
    "run_sensitivity",
    "sbc",
    "simulate_cohort",
    "summarise",
    "tipping_point",
    "write_dataset",
    "write_posterior",
]
