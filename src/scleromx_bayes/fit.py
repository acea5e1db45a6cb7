"""Fit a model: sample the posterior, check convergence, keep everything.

nutpie is the default sampler. A compiled model is cached per model structure
and cell layout; a new fit with other prior values or counts reuses it through
``with_data`` instead of compiling again (compiling takes seconds, sampling
these models a fraction of one).
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import arviz as az
import numpy as np
import xarray as xr

from .cohort import CellTable, Cohort, CohortError, OutcomeDefinition, Problem
from .model import build_model, data_values, effective_structure, hyperparameter_values
from .spec import ModelSpec, load_spec

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["Diagnostics", "Fit", "fit", "fit_cells", "compile_count", "clear_compiled_cache"]

RHAT_MAX = 1.01
# Hierarchical logistic models on tiny cells have funnel-like posteriors; a step
# size adapted to 0.9 acceptance (rstanarm uses 0.95) avoids most divergences.
TARGET_ACCEPT = 0.9
ESS_MIN = 400

_cache: dict[tuple, object] = {}
_cache_lock = threading.Lock()
_compilations = 0


def compile_count() -> int:
    """How many models this process has compiled for nutpie so far."""
    return _compilations


def clear_compiled_cache() -> None:
    """Forget every compiled model (the next fit of each structure compiles again)."""
    with _cache_lock:
        _cache.clear()


def _layout_key(cells: CellTable, spec: ModelSpec) -> tuple:
    eff = effective_structure(spec, cells)
    cell_keys = tuple(map(tuple, cells.frame[cells.key_columns].to_numpy()))
    # every structural switch and every prior family, by name, so a new structure
    # can never share a compiled model with an old one by accident
    structure = tuple((k, v) for k, v in eff.items() if k != "priors")
    dists = tuple((p, spec.prior(p).dist) for p in eff["priors"])
    return (
        structure,
        dists,
        cells.regimens,
        cells.sites,
        cells.severities,
        cell_keys,
    )


def compiled_for(cells: CellTable, spec: ModelSpec) -> tuple[object, bool]:
    """The nutpie compiled model for this layout, and whether it was compiled now."""
    import nutpie
    import pymc as pm

    global _compilations
    key = _layout_key(cells, spec)
    with _cache_lock:
        if key in _cache:
            return _cache[key], False
        model = build_model(cells, spec)
        # nutpie's initial-point function keeps the pm.Data values the model had when
        # compiled (with_data does not reach it). Compiling every layout with the same
        # canonical prior values makes a fit depend on its own data and seed only, not
        # on which scenario happened to compile the model first.
        with model:
            pm.set_data({name: _canonical(name) for name in hyperparameter_values(spec, cells)})
        compiled = nutpie.compile_pymc_model(model)
        _cache[key] = compiled
        _compilations += 1
        return compiled, True


def resolve_target_accept(spec: ModelSpec, target_accept: float | None) -> float:
    """The caller's target_accept, else the spec's own, else the package default."""
    if target_accept is not None:
        return float(target_accept)
    return spec.target_accept if spec.target_accept is not None else TARGET_ACCEPT


def _canonical(data_name: str) -> float:
    """A fixed valid value for a prior hyper-parameter: 0 for locations, 1/2 for
    probabilities, 1 otherwise."""
    if data_name.endswith("__mu"):
        return 0.0
    return 0.5 if data_name.endswith("__p") else 1.0


@dataclass(frozen=True)
class Diagnostics:
    """Convergence checks of one fit. ``ok`` is False if any check failed."""

    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    divergences: int
    draws_total: int
    problems: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_attrs(self) -> dict[str, float | int | str]:
        return {
            "diagnostics_max_rhat": self.max_rhat,
            "diagnostics_min_ess_bulk": self.min_ess_bulk,
            "diagnostics_min_ess_tail": self.min_ess_tail,
            "diagnostics_divergences": self.divergences,
            "diagnostics_ok": int(self.ok),
            "diagnostics_problems": "; ".join(self.problems) or "none",
        }


def diagnose(
    tree: xr.DataTree,
    var_names: Sequence[str],
    *,
    rhat_max: float = RHAT_MAX,
    ess_min: float = ESS_MIN,
) -> Diagnostics:
    """R-hat (rank-normalised), bulk and tail ESS over ``var_names``, and divergences."""
    post = tree["posterior"].to_dataset()[list(var_names)]
    with warnings.catch_warnings():
        # Constant entries (the reference severity's effect is 0) give R-hat = 0/0;
        # they are NaN and skipped below, the warning says nothing new.
        warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
        rhat = az.rhat(post)
        ess_bulk = az.ess(post, method="bulk")
        ess_tail = az.ess(post, method="tail")

    def extreme(ds: xr.Dataset, fn) -> float:
        vals = np.concatenate([np.ravel(ds[v].values) for v in ds.data_vars])
        vals = vals[np.isfinite(vals)]
        return float(fn(vals)) if vals.size else float("nan")

    max_rhat = extreme(rhat, np.max)
    min_bulk, min_tail = extreme(ess_bulk, np.min), extreme(ess_tail, np.min)
    stats = tree["sample_stats"]
    div = int(stats["diverging"].values.sum()) if "diverging" in stats else 0
    total = int(post.sizes["chain"] * post.sizes["draw"])
    problems = []
    if div:
        problems.append(f"{div} divergent transition{'s' if div > 1 else ''} of {total} draws")
    if max_rhat > rhat_max:
        problems.append(f"R-hat up to {max_rhat:.3f} (> {rhat_max})")
    if min_bulk < ess_min:
        problems.append(f"bulk ESS down to {min_bulk:.0f} (< {ess_min})")
    if min_tail < ess_min:
        problems.append(f"tail ESS down to {min_tail:.0f} (< {ess_min})")
    return Diagnostics(max_rhat, min_bulk, min_tail, div, total, tuple(problems))


@dataclass(frozen=True)
class Fit:
    """A fitted model: the whole posterior as a DataTree, with what made it.

    Attributes
    ----------
    posterior : xarray.DataTree
        Groups ``posterior``, ``sample_stats``, ``observed_data``, ``constant_data``.
    spec : ModelSpec
    cells : CellTable
        The aggregated counts the fit used.
    data : dict
        Provenance of the data: source, fingerprint, kind, counts, synthetic flag.
    sampler : dict
        Sampler name and settings.
    seed : int
    diagnostics : Diagnostics
    """

    posterior: xr.DataTree
    spec: ModelSpec
    cells: CellTable
    data: dict
    sampler: dict
    seed: int
    diagnostics: Diagnostics

    @property
    def synthetic(self) -> bool:
        return bool(self.data.get("synthetic", False))

    def summary(
        self,
        hdi_prob: float = 0.95,
        thresholds: Sequence[float] = (0.25, 0.5),
        reference: str | None = None,
    ) -> xr.Dataset:
        """Posterior summary as an ``xarray.Dataset``; see :func:`summarise`."""
        from .summary import summarise

        return summarise(self, hdi_prob=hdi_prob, thresholds=thresholds, reference=reference)


def _cell_groups(cells: CellTable) -> dict[str, xr.Dataset]:
    cell = np.arange(len(cells.frame))
    coords = {
        "cell": cell,
        "cell_regimen": ("cell", cells.frame["regimen"].to_numpy(dtype=str)),
        "cell_site": ("cell", cells.frame["site"].to_numpy(dtype=str)),
        "cell_severity": ("cell", cells.frame["severity"].to_numpy(dtype=str)),
    }
    return {
        "observed_data": xr.Dataset({"responders": ("cell", cells.y)}, coords=coords),
        "constant_data": xr.Dataset({"n_evaluable": ("cell", cells.n)}, coords=coords),
    }


def _shift_vector(cells: CellTable, shift: Mapping[str, float] | None) -> np.ndarray:
    shift = dict(shift or {})
    unknown = set(shift) - set(cells.regimens)
    if unknown:
        raise ValueError(f"regimen_prior_shift names unknown regimen(s) {sorted(unknown)}")
    return np.array([float(shift.get(r, 0.0)) for r in cells.regimens])


def _sample_nutpie(
    cells: CellTable,
    spec: ModelSpec,
    *,
    draws: int,
    tune: int,
    chains: int,
    seed: int,
    cores: int | None,
    progress: bool,
    target_accept: float,
    shift: np.ndarray,
) -> tuple[xr.DataTree, dict]:
    import nutpie

    t0 = time.perf_counter()
    compiled, fresh = compiled_for(cells, spec)
    t1 = time.perf_counter()
    compiled = compiled.with_data(**data_values(cells, spec, shift))
    tree = nutpie.sample(
        compiled,
        draws=draws,
        tune=tune,
        chains=chains,
        seed=seed,
        cores=cores or min(chains, os.cpu_count() or 1),
        save_warmup=False,
        progress_bar=progress,
        target_accept=target_accept,
    )
    timing = {"compiled_now": fresh, "compile_s": t1 - t0, "sample_s": time.perf_counter() - t1}
    return tree, timing


def _sample_pymc(
    cells: CellTable,
    spec: ModelSpec,
    *,
    draws: int,
    tune: int,
    chains: int,
    seed: int,
    cores: int | None,
    progress: bool,
    target_accept: float,
    shift: np.ndarray,
) -> tuple[xr.DataTree, dict]:
    import pymc as pm

    t0 = time.perf_counter()
    model = build_model(cells, spec)
    with model:
        pm.set_data({"regimen_prior_shift": shift})
        tree = pm.sample(
            draws=draws,
            tune=tune,
            chains=chains,
            random_seed=seed,
            cores=cores or 1,
            progressbar=progress,
            nuts_sampler="pymc",
            compute_convergence_checks=False,
            target_accept=target_accept,
        )
    # pm.sample compiles inside; its compile time is not separable here
    timing = {"compiled_now": True, "compile_s": float("nan"), "sample_s": time.perf_counter() - t0}
    return tree, timing


def fit_cells(
    cells: CellTable,
    spec: ModelSpec,
    *,
    data_info: dict | None = None,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    seed: int = 1,
    sampler: Literal["nutpie", "pymc"] = "nutpie",
    cores: int | None = None,
    progress: bool = False,
    rhat_max: float = RHAT_MAX,
    ess_min: float = ESS_MIN,
    target_accept: float | None = None,
    regimen_prior_shift: Mapping[str, float] | None = None,
    warn: bool = True,
) -> Fit:
    """Fit ``spec`` to an already aggregated :class:`CellTable` (see :func:`fit`).

    ``regimen_prior_shift`` moves named regimens' prior log-odds (e.g. ``{"DNS rescue":
    -1.0}`` centres that regimen's prior one log-odds unit below the others).
    """
    if cells.n.sum() == 0:
        raise ValueError("no evaluable episodes: every cell has n = 0")
    target_accept = resolve_target_accept(spec, target_accept)
    shift = _shift_vector(cells, regimen_prior_shift)
    kwargs = {
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "seed": seed,
        "cores": cores,
        "progress": progress,
        "target_accept": target_accept,
        "shift": shift,
    }
    if sampler == "nutpie":
        tree, timing = _sample_nutpie(cells, spec, **kwargs)
    elif sampler == "pymc":
        tree, timing = _sample_pymc(cells, spec, **kwargs)
    else:
        raise ValueError(f"sampler must be 'nutpie' or 'pymc', not {sampler!r}")
    for name, group in _cell_groups(cells).items():
        tree[name] = xr.DataTree(group)
    # Drop what only the sampler needs: warm-up groups and free-form text columns.
    for name in [c for c in tree.children if c.startswith("warmup")]:
        del tree[name]
    stats = tree["sample_stats"].to_dataset()
    text = [v for v in stats.data_vars if stats[v].dtype == object]
    if text:
        tree["sample_stats"] = xr.DataTree(stats.drop_vars(text))

    free = [
        v
        for v in tree["posterior"].data_vars
        if v
        in (
            "regimen_logit",
            "intercept",
            "regimen_sd",
            "severity_effect",
            "site_effect",
            "site_sd",
            "interaction_sd",
            "typical_logit",
            "patient_sd",
            "covariate_effect",
            "cutpoint_gap",
        )
    ]
    diagnostics = diagnose(tree, free, rhat_max=rhat_max, ess_min=ess_min)
    if warn and not diagnostics.ok:
        warnings.warn(
            "sampling diagnostics: "
            + "; ".join(diagnostics.problems)
            + " -- treat these estimates with care",
            RuntimeWarning,
            stacklevel=2,
        )
    settings = {
        "sampler": sampler,
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "target_accept": target_accept,
        "regimen_prior_shift": {
            r: float(v) for r, v in zip(cells.regimens, shift, strict=True) if v
        },
        **timing,
    }
    return Fit(
        posterior=tree,
        spec=spec,
        cells=cells,
        data=dict(data_info or {}),
        sampler=settings,
        seed=seed,
        diagnostics=diagnostics,
    )


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
    rhat_max: float = RHAT_MAX,
    ess_min: float = ESS_MIN,
    target_accept: float | None = None,
) -> Fit:
    """Fit a model of CR probability to a cohort.

    Parameters
    ----------
    cohort : Cohort
    spec : ModelSpec or str
        A spec, or the name/path of one (default ``"base"``).
    outcome : OutcomeDefinition, optional
        CR (default) or CR+PR, and the NE policy.
    draws, tune, chains : int
        Posterior draws and warm-up iterations per chain, number of chains.
    seed : int
        The same seed gives identical draws.
    sampler : {"nutpie", "pymc"}
    rhat_max, ess_min : float
        Thresholds past which a ``RuntimeWarning`` is raised and the problem recorded.
    target_accept : float, optional
        NUTS step-size adaptation target. Default: the spec's ``[sampler]`` value if it
        has one (EXNEX does), else 0.9. Raise it (0.95, 0.99) when a fit reports
        divergent transitions.

    Returns
    -------
    Fit

    Examples
    --------
    >>> import scleromx_bayes as sxb
    >>> fit = sxb.fit(sxb.load_example(), "base", draws=200, tune=200, seed=1)  # doctest: +SKIP
    >>> fit.summary()["p_cr_new_site"].sel(stat="mean")  # doctest: +SKIP
    """
    if isinstance(spec, str):
        spec = load_spec(spec)
    outcome = outcome or OutcomeDefinition()
    cells = cells_for(cohort, spec, outcome)
    info = data_info(cohort, outcome)
    return fit_cells(
        cells,
        spec,
        data_info=info,
        draws=draws,
        tune=tune,
        chains=chains,
        seed=seed,
        sampler=sampler,
        cores=cores,
        progress=progress,
        rhat_max=rhat_max,
        ess_min=ess_min,
        target_accept=target_accept,
    )


def cells_for(cohort: Cohort, spec: ModelSpec, outcome: OutcomeDefinition | None = None):
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


def data_info(cohort: Cohort, outcome: OutcomeDefinition) -> dict:
    """Provenance of the data a fit used (no patient-level content)."""
    return {
        "source": cohort.source,
        "kind": cohort.kind,
        "fingerprint": cohort.fingerprint(),
        "n_patients": cohort.n_patients if cohort.n_patients is not None else -1,
        "n_episodes": cohort.n_episodes,
        "synthetic": cohort.synthetic,
        "outcome": outcome.response,
        "ne_policy": outcome.ne,
    }
