"""Fit a model: sample the posterior, check convergence, keep everything.

nutpie is the default sampler. A compiled model is cached per shared graph
(:class:`model.SharedGraph`: kinds of term and sizes, not the spec's switches,
prior families or the cohort); a new fit with other priors, pooling, site or
severity terms, counts or cohort of the same size reuses it through ``with_data``
instead of compiling again (compiling takes seconds, sampling these models a
fraction of one). Every compile happens with exact floating-point
arithmetic (:func:`model.exact_float_math`), so draws do not depend on what a
compile cache holds.
"""

from __future__ import annotations

import numbers
import os
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr

from . import native
from .borrowing import Borrowing, Evidence, PreparedBorrowing
from .cohort import CellTable, Cohort, CohortError, OutcomeDefinition, Problem
from .diagnostics import ConvergenceCriteria, Diagnostics, diagnose
from .errors import SettingsError
from .model import (
    build_model,
    canonical_value,
    data_values,
    effective_structure,
    exact_float_math,
    scalar_values,
    shared_graph,
    stored_names,
)
from .model import names as v
from .model.external import ExternalEvidence, require_no_pooling
from .provenance import DataProvenance
from .spec import ModelSpec, load_spec
from .summary import summarise
from .trace import sample_tree

__all__ = [
    "Fit",
    "FitTiming",
    "SamplerSettings",
    "cells_for",
    "check_seed",
    "clear_compiled_cache",
    "compile_count",
    "fit",
    "fit_cells",
]

# Hierarchical logistic models on tiny cells have funnel-like posteriors; a step
# size adapted to 0.9 acceptance (rstanarm uses 0.95) avoids most divergences.
TARGET_ACCEPT = 0.9
SEED_MAX = 2**63 - 1  # seeds are stored as 64-bit integers in netCDF attributes
MIN_DRAWS = 10  # fewer draws per chain cannot give an R-hat or an ESS

_cache: dict[tuple, object] = {}
_cache_lock = threading.Lock()
_compilations = 0


def _whole(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise SettingsError(f"{name} must be a whole number, not {value!r}")
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f">= {low}"
        raise SettingsError(f"{name} must be {bound}, not {value}")
    return int(value)


def check_seed(seed: object) -> int:
    """A valid seed: a whole number from 0 to 2**63 - 1 (bools and floats refused)."""
    return _whole("seed", seed, 0, SEED_MAX)


@dataclass(frozen=True)
class SamplerSettings:
    """How to sample: sampler, draws and warm-up per chain, chains, adaptation target.

    Validated on creation, so a bad value fails before anything is compiled.

    Examples
    --------
    >>> SamplerSettings(draws=500, chains=2).tune
    1000
    >>> SamplerSettings(draws=0)
    Traceback (most recent call last):
    ...
    scleromx_bayes.errors.SettingsError: draws must be between 10 and 10000000, not 0
    """

    sampler: Literal["nutpie", "pymc"] = "nutpie"
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    # None: the spec's own [sampler] target_accept, else TARGET_ACCEPT
    target_accept: float | None = None
    cores: int | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        if self.sampler not in ("nutpie", "pymc"):
            raise SettingsError(f"sampler must be 'nutpie' or 'pymc', not {self.sampler!r}")
        object.__setattr__(self, "draws", _whole("draws", self.draws, MIN_DRAWS, 10**7))
        object.__setattr__(self, "tune", _whole("tune", self.tune, MIN_DRAWS, 10**7))
        object.__setattr__(self, "chains", _whole("chains", self.chains, 1, 64))
        if self.cores is not None:
            object.__setattr__(self, "cores", _whole("cores", self.cores, 1))
        ta = self.target_accept
        if ta is not None:
            if isinstance(ta, bool) or not isinstance(ta, numbers.Real) or not 0.5 <= ta < 1:
                raise SettingsError(f"target_accept must be a number in [0.5, 1), not {ta!r}")
            object.__setattr__(self, "target_accept", float(ta))

    def for_spec(self, spec: ModelSpec) -> SamplerSettings:
        """These settings with ``target_accept`` resolved: the caller's, else the
        spec's own, else the package default."""
        if self.target_accept is not None:
            return self
        own = spec.target_accept if spec.target_accept is not None else TARGET_ACCEPT
        return replace(self, target_accept=own)

    def to_attrs(self) -> dict[str, object]:
        """The settings as flat netCDF-safe attributes."""
        return {
            "sampler": self.sampler,
            "draws": self.draws,
            "tune": self.tune,
            "chains": self.chains,
            "target_accept": float("nan") if self.target_accept is None else self.target_accept,
        }


@dataclass(frozen=True)
class FitTiming:
    """Where a fit's time went; ``compiled_now`` is False when a cached model served.

    Examples
    --------
    >>> fit.timing.sample_s > 0
    True
    """

    compiled_now: bool
    compile_s: float
    sample_s: float


def compile_count() -> int:
    """How many models this process has compiled for nutpie so far.

    Returns
    -------
    int
        Compilations so far (a fit served by a cached model adds none).

    Examples
    --------
    >>> n = sxb.compile_count()
    >>> _ = sxb.fit(sxb.load_example(), "base", draws=100, tune=100, chains=1, seed=2)
    >>> _ = sxb.fit(sxb.load_example(), "base", draws=100, tune=100, chains=1, seed=3)
    >>> sxb.compile_count() - n <= 1          # the second fit reuses the compiled model
    True
    """
    return _compilations


def clear_compiled_cache() -> None:
    """Forget every compiled model of this process (the next fit of each structure
    builds it again, loading nutpie's compiled callbacks from disk when
    :mod:`scleromx_bayes.native` has them, as a new process would).

    Examples
    --------
    >>> sxb.clear_compiled_cache()
    >>> before = sxb.compile_count()
    >>> _ = sxb.fit(sxb.load_example(), "base", draws=100, tune=100, chains=1, seed=1)
    >>> sxb.compile_count() - before
    1
    """
    with _cache_lock:
        _cache.clear()
        native.forget_loaded()


def compiled_for(
    cells: CellTable, spec: ModelSpec, external: ExternalEvidence | None = None
) -> tuple[tuple[object, list[str]], bool]:
    """The nutpie compiled model of the shared graph for these cells and spec with
    the names of its scalars, and whether it was compiled now. Other structures,
    priors and cohorts of the same :class:`model.SharedGraph` reuse it with their
    own data."""
    global _compilations
    key = shared_graph(cells, spec, external)
    with _cache_lock:
        if key in _cache:
            return _cache[key], False
        model = build_model(cells, spec, shared=True, external=external)
        # nutpie's initial-point function keeps the pm.Data values the model had when
        # compiled (with_data does not reach it). Compiling every graph with the same
        # canonical switch and prior values makes a fit depend on its own data and
        # seed only, not on which scenario happened to compile the model first.
        names = list(scalar_values(cells, spec, shared=True, external=external))
        with model:
            pm.set_data({v.MODEL_SCALARS: np.array([canonical_value(n) for n in names])})
        with exact_float_math():
            compiled = native.compile_for_nutpie(model, var_names=stored_names(model))
        _cache[key] = (compiled, names)
        _compilations += 1
        return _cache[key], True


def _for_cells(compiled, names, cells: CellTable, spec: ModelSpec, shift, external=None):
    """The compiled model with these cells' data, switches, priors and labels."""
    if list(scalar_values(cells, spec, shared=True, external=external)) != names:
        # the same SharedGraph always has the same scalars; a mismatch is a bug
        raise RuntimeError("scalar data out of step with the compiled model")
    values = data_values(cells, spec, shift, shared=True, external=external)
    compiled = compiled.with_data(**values)
    labels = {
        "regimen": cells.regimens,
        "site": cells.sites,
        "severity": cells.severities,
        "severity_vs_reference": cells.severities[1:],
        "patient": cells.patients,
        "covariate": cells.covariates,
        "cell": np.arange(len(cells.frame)),
    }
    if external is not None:
        labels["borrowed_regimen"] = external.regimens
        labels["own_regimen"] = [r for r in cells.regimens if r not in external.regimens]
    coords = dict(compiled.coords)
    coords.update({k: pd.Index(list(x)) for k, x in labels.items() if k in coords})
    return replace(compiled, _coords=coords)


@dataclass(frozen=True)
class Fit:
    """A fitted model: the whole posterior as a DataTree, with what made it.

    Attributes
    ----------
    posterior : xarray.DataTree
        Groups ``posterior``, ``sample_stats``, ``observed_data``, ``constant_data``.
    spec : ModelSpec
    cells : CellTable
        The aggregated counts the fit used (patients, if any, as pseudonymous codes).
    data : DataProvenance
        Source, fingerprint, kind, counts and synthetic flag of the data.
    sampler : SamplerSettings
        Sampler and settings, ``target_accept`` resolved.
    seed : int
    diagnostics : Diagnostics
    timing : FitTiming
    prior_shift : mapping of str to float
        Regimens whose prior log-odds were moved (a tipping-point analysis), and by how much.
    borrowing : PreparedBorrowing, optional
        What was borrowed from published series, and how.

    Examples
    --------
    >>> fit = sxb.fit(sxb.load_example(), "base", draws=200, tune=200, chains=2, seed=1)
    >>> fit.spec.name, "posterior" in fit.posterior.children
    ('base', True)
    """

    posterior: xr.DataTree
    spec: ModelSpec
    cells: CellTable
    data: DataProvenance
    sampler: SamplerSettings
    seed: int
    diagnostics: Diagnostics
    timing: FitTiming
    prior_shift: Mapping[str, float] = field(default_factory=dict)
    borrowing: PreparedBorrowing | None = None

    @property
    def external(self) -> ExternalEvidence | None:
        """What the model borrowed, as arrays (None without borrowing)."""
        return self.borrowing.external if self.borrowing is not None else None

    @property
    def synthetic(self) -> bool:
        """True when the fitted data are marked synthetic."""
        return self.data.synthetic

    def shift_vector(self) -> np.ndarray:
        """The prior shift per regimen, in the cells' regimen order."""
        return _shift_vector(self.cells, self.prior_shift)

    def summary(
        self,
        hdi_prob: float = 0.95,
        thresholds: Sequence[float] = (0.25, 0.5),
        reference: str | None = None,
    ) -> xr.Dataset:
        """Posterior summary as an ``xarray.Dataset``; see :func:`summarise`."""
        return summarise(self, hdi_prob=hdi_prob, thresholds=thresholds, reference=reference)


def cell_groups(cells: CellTable) -> dict[str, xr.Dataset]:
    coords = {
        "cell": np.arange(len(cells.frame)),
        "cell_regimen": ("cell", cells.frame["regimen"].to_numpy(dtype=str)),
        "cell_site": ("cell", cells.frame["site"].to_numpy(dtype=str)),
        "cell_severity": ("cell", cells.frame["severity"].to_numpy(dtype=str)),
    }
    return {
        "observed_data": xr.Dataset({v.RESPONDERS: ("cell", cells.y)}, coords=coords),
        "constant_data": xr.Dataset({v.N_EVALUABLE: ("cell", cells.n)}, coords=coords),
    }


def _shift_vector(cells: CellTable, shift: Mapping[str, float] | None) -> np.ndarray:
    shift = dict(shift or {})
    unknown = set(shift) - set(cells.regimens)
    if unknown:
        raise SettingsError(f"regimen_prior_shift names unknown regimen(s) {sorted(unknown)}")
    return np.array([float(shift.get(r, 0.0)) for r in cells.regimens])


def _sample_nutpie(
    cells: CellTable,
    spec: ModelSpec,
    settings: SamplerSettings,
    seed: int,
    shift: np.ndarray,
    external: ExternalEvidence | None,
) -> tuple[xr.DataTree, FitTiming]:
    t0 = time.perf_counter()
    (compiled, names), fresh = compiled_for(cells, spec, external)
    t1 = time.perf_counter()
    compiled = _for_cells(compiled, names, cells, spec, shift, external)
    tree = sample_tree(
        compiled,
        draws=settings.draws,
        tune=settings.tune,
        chains=settings.chains,
        seed=seed,
        cores=settings.cores or min(settings.chains, os.cpu_count() or 1),
        save_warmup=False,
        progress_bar=settings.progress,
        target_accept=settings.target_accept,
    )
    return tree, FitTiming(fresh, t1 - t0, time.perf_counter() - t1)


def _sample_pymc(
    cells: CellTable,
    spec: ModelSpec,
    settings: SamplerSettings,
    seed: int,
    shift: np.ndarray,
    external: ExternalEvidence | None,
) -> tuple[xr.DataTree, FitTiming]:
    t0 = time.perf_counter()
    model = build_model(cells, spec, external=external)
    with model, exact_float_math():
        pm.set_data({v.REGIMEN_PRIOR_SHIFT: shift})
        tree = pm.sample(
            draws=settings.draws,
            tune=settings.tune,
            chains=settings.chains,
            random_seed=seed,
            cores=settings.cores or 1,
            progressbar=settings.progress,
            nuts_sampler="pymc",
            compute_convergence_checks=False,
            target_accept=settings.target_accept,
            var_names=stored_names(model),
        )
    # pm.sample compiles inside; its compile time is not separable here
    return tree, FitTiming(True, float("nan"), time.perf_counter() - t0)


_names: dict[tuple, frozenset[str]] = {}


def _own_names(cells: CellTable, spec: ModelSpec, external) -> frozenset[str]:
    """The variables the spec's own model stores. They depend on its structure (and
    on what it borrows), not on counts or prior values, so the model is built once
    per structure, not once per fit (a build costs 0.06-0.18 s: a third of a warm
    fit of the example)."""
    borrowed = None if external is None else (external.method, tuple(external.regimens))
    key = (effective_structure(spec, cells), borrowed, tuple(cells.regimens))
    with _cache_lock:
        if key not in _names:
            _names[key] = frozenset(stored_names(build_model(cells, spec, external=external)))
        return _names[key]


def _tidy(tree: xr.DataTree, cells: CellTable, spec: ModelSpec, external) -> xr.DataTree:
    """Keep the spec's own model's variables (a shared graph samples switched-off
    terms from their priors too); add the counts as groups; drop what only the
    sampler needs (warm-up, text columns)."""
    own = _own_names(cells, spec, external)
    posterior = tree["posterior"].to_dataset()
    extra = [name for name in posterior.data_vars if name not in own]
    if extra:
        tree["posterior"] = xr.DataTree(posterior.drop_vars(extra))
    for name, group in cell_groups(cells).items():
        tree[name] = xr.DataTree(group)
    for name in [c for c in tree.children if c.startswith("warmup")]:
        del tree[name]
    stats = tree["sample_stats"].to_dataset()
    text = [name for name in stats.data_vars if stats[name].dtype == object]
    if text:
        tree["sample_stats"] = xr.DataTree(stats.drop_vars(text))
    return tree


def fit_cells(
    cells: CellTable,
    spec: ModelSpec,
    *,
    settings: SamplerSettings | None = None,
    seed: int = 1,
    data: DataProvenance | None = None,
    criteria: ConvergenceCriteria | None = None,
    regimen_prior_shift: Mapping[str, float] | None = None,
    warn: bool = True,
    borrowing: Borrowing | PreparedBorrowing | None = None,
) -> Fit:
    """Fit ``spec`` to an already aggregated :class:`CellTable` (see :func:`fit`).

    ``regimen_prior_shift`` moves named regimens' prior log-odds (e.g. ``{"DNS rescue":
    -1.0}`` centres that regimen's prior one log-odds unit below the others).
    ``borrowing`` borrows from published series (see :class:`Borrowing`).

    Parameters
    ----------
    cells : CellTable
        Aggregated counts (``Cohort.cells()``).
    spec : ModelSpec
        The model.
    settings : SamplerSettings, optional
        Sampler and its settings (default: nutpie, 4 x 1000 + 1000).
    seed : int
        Random seed: the same seed gives the same draws.
    data : DataProvenance, optional
        Where the cells came from, recorded in the summary.
    criteria : ConvergenceCriteria, optional
        R-hat / ESS thresholds the diagnostics are judged by.
    regimen_prior_shift : mapping of str to float, optional
        Prior log-odds shifts per regimen.
    warn : bool
        Warn when a diagnostic threshold is crossed.
    borrowing : Borrowing or PreparedBorrowing, optional
        Borrowing from published series.

    Returns
    -------
    Fit
        The posterior with its spec, cells, settings, seed and diagnostics.

    Examples
    --------
    >>> import scleromx_bayes as sxb
    >>> cells = sxb.load_example().cells()
    >>> settings = sxb.SamplerSettings(draws=200, tune=200)
    >>> fit = sxb.fit_cells(cells, sxb.load_spec("base"), settings=settings)
    >>> fit.spec.name, fit.sampler.draws
    ('base', 200)
    """
    settings = (settings or SamplerSettings()).for_spec(spec)
    seed = check_seed(seed)
    data = data or DataProvenance.of_cells(cells)
    if cells.n.sum() == 0:
        raise CohortError([Problem(data.source, "no evaluable episodes: every cell has n = 0")])
    shift = _shift_vector(cells, regimen_prior_shift)
    effective_structure(spec, cells)  # a spec that does not fit the cells fails here
    if borrowing is not None:
        require_no_pooling(spec)  # before any MAP prior is fitted
    if isinstance(borrowing, Borrowing):
        borrowing = borrowing.prepare(cells)
    external = borrowing.external if borrowing is not None else None
    sample = _sample_nutpie if settings.sampler == "nutpie" else _sample_pymc
    tree, timing = sample(cells, spec, settings, seed, shift, external)
    tree = _tidy(tree, cells, spec, external)
    diagnostics = diagnose(tree, criteria)
    if warn and not diagnostics.ok:
        warnings.warn(
            "sampling diagnostics: "
            + "; ".join(diagnostics.problems)
            + " -- treat these estimates with care",
            RuntimeWarning,
            stacklevel=2,
        )
    return Fit(
        posterior=tree,
        spec=spec,
        cells=cells,
        data=data,
        sampler=settings,
        seed=seed,
        diagnostics=diagnostics,
        timing=timing,
        prior_shift={r: float(x) for r, x in zip(cells.regimens, shift, strict=True) if x},
        borrowing=borrowing,
    )


def cells_for(
    cohort: Cohort, spec: ModelSpec, outcome: OutcomeDefinition | None = None
) -> CellTable:
    """The cells a spec needs: split by patient for a patient effect, keyed by its
    covariates when it has some."""
    cells = cohort.cells(outcome, by_patient=spec.patient_effect, covariates=spec.covariates)
    if spec.response_scale == "ordinal" and "n_pr" not in cells.frame:
        raise CohortError(
            [
                Problem(
                    cohort.source,
                    "the ordinal model needs partial responses: "
                    "use an episode table, or add an n_pr column to the counts",
                    column="n_pr",
                )
            ]
        )
    return cells


def fit(
    cohort: Cohort,
    spec: ModelSpec | str = "base",
    *,
    outcome: OutcomeDefinition | None = None,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    seed: int = 1,
    sampler: Literal["nutpie", "pymc"] = "nutpie",
    cores: int | None = None,
    progress: bool = False,
    rhat_max: float = 1.01,
    ess_min: float = 400,
    target_accept: float | None = None,
    evidence: Evidence | None = None,
    borrowing: Borrowing | None = None,
) -> Fit:
    """Fit a model of CR probability to a cohort.

    Every argument is checked before anything is compiled.

    Parameters
    ----------
    cohort : Cohort
        From :func:`read_cohort`, :func:`read_counts`, :func:`read_data` or
        :func:`load_example`.
    spec : ModelSpec or str
        A spec, or the name/path of one (default ``"base"``).
    outcome : OutcomeDefinition, optional
        CR (default) or CR+PR, and the NE policy.
    draws, tune, chains : int
        Posterior draws and warm-up iterations per chain (at least 10 each), chains.
    seed : int
        0 to 2**63 - 1. The same data, spec, seed and versions give identical draws
        in any process.
    sampler : {"nutpie", "pymc"}
        nutpie (default: compiled once per model structure) or PyMC's own NUTS.
    cores : int, optional
        Chains run in parallel (default: as many as the machine allows).
    progress : bool
        Show the sampler's progress bar.
    rhat_max, ess_min : float
        Thresholds past which a ``RuntimeWarning`` is raised and the problem recorded.
    target_accept : float, optional
        NUTS step-size adaptation target. Default: the spec's ``[sampler]`` value if it
        has one (EXNEX does), else 0.9. Raise it (0.95, 0.99) when a fit reports
        divergent transitions.
    evidence : Evidence, optional
        Published series (:func:`read_evidence`) for a spec with a ``[borrowing]``
        table, which says how to borrow from them.
    borrowing : Borrowing, optional
        Borrow from published series (MAP, robust MAP, power prior or the joint
        model) as this object says, whatever the spec says; needs a spec with
        ``regimen_pooling = "none"``.

    Returns
    -------
    Fit

    Examples
    --------
    >>> import scleromx_bayes as sxb
    >>> fit = sxb.fit(sxb.load_example(), "base", draws=200, tune=200, chains=2, seed=1)
    >>> p = fit.summary()["p_cr_new_site"].sel(stat="mean")
    >>> p.dims, bool(((p > 0) & (p < 1)).all())
    (('regimen', 'severity'), True)
    """
    if isinstance(cohort, pd.DataFrame):
        raise TypeError(
            "fit needs a Cohort, not a DataFrame: validate it first with "
            "sxb.read_cohort(frame) (episodes) or sxb.read_counts(frame) (counts)"
        )
    if not isinstance(cohort, Cohort):
        raise TypeError(f"fit needs a Cohort (from sxb.read_data), not {type(cohort).__name__}")
    if outcome is not None and not isinstance(outcome, OutcomeDefinition):
        raise TypeError(
            f"outcome must be an OutcomeDefinition, e.g. sxb.OutcomeDefinition({outcome!r}), "
            f"not {type(outcome).__name__}"
        )
    if isinstance(spec, str):
        spec = load_spec(spec)
    settings = SamplerSettings(
        sampler=sampler,
        draws=draws,
        tune=tune,
        chains=chains,
        target_accept=target_accept,
        cores=cores,
        progress=progress,
    )
    criteria = ConvergenceCriteria(rhat_max=rhat_max, ess_min=ess_min)
    seed = check_seed(seed)
    cells = cells_for(cohort, spec, outcome or OutcomeDefinition())
    if borrowing is None and spec.borrowing:
        if evidence is None and spec.borrowing["method"] != "mixture":
            raise SettingsError(
                f"spec {spec.name!r} borrows from published series ({spec.borrowing['method']}): "
                "give the evidence table, evidence=sxb.read_evidence(path, regimens=...)"
            )
        borrowing = Borrowing.from_spec(evidence, spec.borrowing)
    return fit_cells(
        cells,
        spec,
        settings=settings,
        seed=seed,
        data=DataProvenance.of(cohort),
        criteria=criteria,
        borrowing=borrowing,
    )
