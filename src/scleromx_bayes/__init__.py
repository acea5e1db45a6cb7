"""scleromx_bayes: Bayesian response prediction for small rare-disease treatment cohorts.

>>> import scleromx_bayes as sxb
>>> cohort = sxb.load_example()                  # synthetic example cohort
>>> fit = sxb.fit(cohort, "base", draws=200, tune=200, chains=2, seed=1)   # defaults: 4 x 1000
>>> ds = fit.summary()                           # xarray.Dataset
>>> ds.p_cr_new_site.dims
('regimen', 'severity', 'stat')

The data flow, one module (or package) a step: ``cohort`` → ``spec`` → ``model`` →
``fit`` → ``summary`` → ``io``; ``checks``, ``validation`` and ``sensitivity`` work
on fits; ``borrowing`` turns published series into priors; ``plots`` draws;
``operating`` simulates a design's operating characteristics; ``cli`` is a
shell over this public API. See ARCHITECTURE.md.
"""

from .borrowing import (
    BetaMixture,
    Evidence,
    EvidenceError,
    MAPPrior,
    NormalMixture,
    map_prior,
    prior_data_conflict,
    read_evidence,
)
from .checks import (
    compare,
    loo,
    posterior_predictive_check,
    power_scaling,
    prior_predictive_check,
)
from .cohort import (
    CellTable,
    Cohort,
    CohortError,
    LevelWarning,
    OutcomeDefinition,
    Problem,
    read_cohort,
    read_counts,
    read_data,
)
from .diagnostics import ConvergenceCriteria, Diagnostics
from .errors import InputError, SettingsError
from .fit import (
    Fit,
    FitTiming,
    SamplerSettings,
    clear_compiled_cache,
    compile_count,
    fit,
    fit_cells,
)
from .io import (
    check_writable,
    output_folder,
    read_dataset,
    read_posterior,
    write_csv,
    write_dataset,
    write_posterior,
)
from .model import build_model
from .operating import (
    Calibration,
    DecisionRule,
    Truth,
    calibrate,
    oc_focus,
    oc_table,
    operating_characteristics,
    read_design,
    reference_rates,
    threshold_for,
)
from .plots import borrowing_plot, forest_plot, oc_plot, predictive_plot, sensitivity_forest
from .provenance import DataProvenance
from .report import ReportFiles, report
from .sensitivity import (
    Grid,
    GridError,
    StoreError,
    conclusions,
    load_grid,
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
    "borrowing_plot",
    "BetaMixture",
    "Calibration",
    "DecisionRule",
    "Truth",
    "calibrate",
    "oc_focus",
    "oc_plot",
    "oc_table",
    "operating_characteristics",
    "read_design",
    "reference_rates",
    "threshold_for",
    "Evidence",
    "EvidenceError",
    "MAPPrior",
    "NormalMixture",
    "map_prior",
    "prior_data_conflict",
    "read_evidence",
    "CellTable",
    "Cohort",
    "CohortError",
    "ConvergenceCriteria",
    "DataProvenance",
    "Diagnostics",
    "Fit",
    "FitTiming",
    "Grid",
    "GridError",
    "InputError",
    "LevelWarning",
    "ModelSpec",
    "OutcomeDefinition",
    "Prior",
    "Problem",
    "SamplerSettings",
    "SettingsError",
    "SpecError",
    "StoreError",
    "build_model",
    "check_writable",
    "clear_compiled_cache",
    "compare",
    "compile_count",
    "conclusions",
    "fit",
    "fit_cells",
    "forest_plot",
    "list_specs",
    "load_example",
    "load_grid",
    "load_spec",
    "loo",
    "output_folder",
    "posterior_predictive_check",
    "power_scaling",
    "predictive_plot",
    "prior_predictive_check",
    "rank_stability",
    "read_cohort",
    "read_counts",
    "read_data",
    "read_dataset",
    "read_posterior",
    "report",
    "ReportFiles",
    "run_sensitivity",
    "sbc",
    "sensitivity_forest",
    "simulate_cohort",
    "summarise",
    "tipping_point",
    "write_csv",
    "write_dataset",
    "write_posterior",
]
