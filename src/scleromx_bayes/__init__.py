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

from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

# Every public name, by the module that defines it. Each module is imported when one
# of its names is first used, so ``import scleromx_bayes`` stays cheap: the command
# line answers ``--help`` or refuses a bad option without loading PyMC.
_PUBLIC: dict[str, tuple[str, ...]] = {
    "borrowing": (
        "BetaMixture",
        "Evidence",
        "EvidenceError",
        "MAPPrior",
        "NormalMixture",
        "map_prior",
        "prior_data_conflict",
        "read_evidence",
    ),
    "checks": (
        "compare",
        "loo",
        "posterior_predictive_check",
        "power_scaling",
        "prior_predictive_check",
    ),
    "cohort": (
        "CellTable",
        "Cohort",
        "CohortError",
        "LevelWarning",
        "OutcomeDefinition",
        "Problem",
        "read_cohort",
        "read_counts",
        "read_data",
    ),
    "diagnostics": (
        "ConvergenceCriteria",
        "Diagnostics",
    ),
    "errors": (
        "InputError",
        "SettingsError",
    ),
    "fit": (
        "Fit",
        "FitTiming",
        "SamplerSettings",
        "clear_compiled_cache",
        "compile_count",
        "fit",
        "fit_cells",
    ),
    "io": (
        "check_writable",
        "output_folder",
        "read_dataset",
        "read_posterior",
        "write_csv",
        "write_dataset",
        "write_posterior",
    ),
    "model": ("build_model",),
    "operating": (
        "Calibration",
        "DecisionRule",
        "Truth",
        "calibrate",
        "oc_focus",
        "oc_table",
        "operating_characteristics",
        "read_design",
        "reference_rates",
        "threshold_for",
    ),
    "plots": (
        "borrowing_plot",
        "forest_plot",
        "oc_plot",
        "predictive_plot",
        "sensitivity_forest",
    ),
    "provenance": ("DataProvenance",),
    "report": (
        "ReportFiles",
        "report",
    ),
    "sensitivity": (
        "Grid",
        "GridError",
        "StoreError",
        "conclusions",
        "load_grid",
        "rank_stability",
        "run_sensitivity",
        "tipping_point",
    ),
    "simulate": (
        "load_example",
        "simulate_cohort",
    ),
    "spec": (
        "ModelSpec",
        "Prior",
        "SpecError",
        "list_specs",
        "load_spec",
    ),
    "summary": ("summarise",),
    "validation": ("sbc",),
}
__all__ = [name for names in _PUBLIC.values() for name in names]
_HOME = {name: module for module, names in _PUBLIC.items() for name in names}


class _Package(types.ModuleType):
    """This package, loading its public names on first use."""

    def __getattr__(self, name: str):
        if name not in _HOME:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
        super().__setattr__(name, value)
        return value

    def __setattr__(self, name: str, value) -> None:
        # Python binds a submodule to its package when it is first imported: where a
        # module and the public name it defines share a name (``fit``, ``report``), the
        # package's name stays the public one
        if name in _HOME and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *__all__})


sys.modules[__name__].__class__ = _Package
