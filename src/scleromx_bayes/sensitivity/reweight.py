"""Answering a scenario from the baseline's draws instead of a new fit.

A scenario whose model has the same parameters as the baseline's, each on the
same support (other prior values or another prior family of the same role, a
left-out site, another outcome or NE policy), has a posterior ``p_s(theta)`` that
the baseline's draws can estimate by importance sampling, with weights
``p_s(theta) / p_0(theta)``: the ratio of the two models' joint densities at each
draw, each evaluated on its own model's graph. The weights
are Pareto-smoothed (PSIS; Vehtari et al. 2024, as ``loo`` and ``priorsense``
do), and their Pareto k-hat decides, scenario by scenario: at or below
:data:`K_HAT_MAX` (and the sample-size bound ``1 - 1/log10(S)``) the estimate is
trusted, above it the scenario is refitted exactly. EXNEX baselines are not
reweighted: their draws of each regimen's log-odds carry a state drawn given the
baseline's own data (``model.exnex``).

A trusted scenario's draws are the baseline's resampled with the smoothed
weights (systematic resampling, seeded), so every summary is computed as for a
fitted scenario; ``run_sensitivity`` records per scenario whether it was
reweighted, its k-hat and the weights' effective sample size.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace

import numpy as np
import pymc as pm
import xarray as xr
from pymc.model.transform.conditioning import remove_value_transforms

from ..cohort import CellTable
from ..fit import Fit, FitTiming, cell_groups
from ..model import build_model, data_values, effective_structure, exact_float_math
from ..model import names as v
from ..spec import ModelSpec
from .plan import ScenarioInputs

__all__ = ["K_HAT_MAX", "LogDensity", "Reweighted", "reweight"]

# Vehtari et al. (2024): above 0.7 the importance-sampling estimate is unreliable
K_HAT_MAX = 0.7


def _signature(model: pm.Model) -> list[tuple[str, str, tuple[int, ...]]]:
    """Each free parameter's name, support and shape: what must match for one
    model's draws to be weighted to another's posterior. The support is the name of
    the value transform (a log for a positive scale, none for a log-odds), so prior
    *families* of the same role may differ (HalfNormal against HalfCauchy); shapes
    come from the dims' lengths (asking PyMC for an initial point compiles a
    function, a tenth of a second)."""

    def shape(rv) -> tuple[int, ...]:
        dims = model.named_vars_to_dims.get(rv.name)
        if dims:
            return tuple(int(model.dim_lengths[d].get_value()) for d in dims)
        if all(n is not None for n in rv.type.shape):
            return tuple(rv.type.shape)
        return tuple(np.shape(model.initial_point()[model.rvs_to_values[rv].name]))

    def support(rv) -> str:
        return type(model.rvs_to_transforms.get(rv)).__name__

    return [(rv.name, support(rv), shape(rv)) for rv in model.free_RVs]


def _signature_key(cells: CellTable, spec: ModelSpec) -> tuple:
    """What a model's graph depends on: the structure built (terms,
    parameterisation, the priors it uses), those priors' families and the factors'
    numbers of levels. Prior *values* and counts do not change it."""
    structure = effective_structure(spec, cells)
    families = tuple(spec.prior(name).dist for name in structure.priors)
    sizes = tuple(len(x) for x in (cells.regimens, cells.sites, cells.severities, cells.patients))
    return structure, families, sizes


class _CompiledLogDensity:
    """One model graph's joint log density (prior times likelihood, on the
    parameters' own scale), compiled once; each call sets a scenario's data."""

    def __init__(self, own: pm.Model, draws: dict[str, np.ndarray]):
        self.model = remove_value_transforms(own)
        with exact_float_math():
            self.function = self.model.compile_logp(jacobian=False).f
        # the draws in the function's own argument order and types, so each
        # call can skip PyTensor's input checks (two thirds of a call's time)
        self.function.trust_input = True
        specs = self.function.maker.inputs
        inputs = [i.variable for i in specs if not i.implicit]
        # PyTensor's numba code itself, called with the draw and then the shared data
        # (fgraph inputs, in that order): a quarter of the time of a call through the
        # Function, same numbers. Any other layout or backend goes through the Function.
        jit = getattr(getattr(self.function, "vm", None), "jit_fn", None)
        explicit_first = all(not i.implicit for i in specs[: len(inputs)])
        self._jit = jit if explicit_first else None
        self._shared = self.function.input_storage[len(inputs) :]
        flat = [np.asarray(draws[x.name], dtype=x.dtype) for x in inputs]
        self.points = [
            tuple(np.ascontiguousarray(x[i]) if x.ndim > 1 else np.asarray(x[i]) for x in flat)
            for i in range(len(flat[0]))
        ]
        # EXNEX draws each regimen's state given the data (model.exnex): the baseline's
        # regimen log-odds are its own data's, so they do not carry over to a scenario
        self.state_given_data = v.EXCHANGEABILITY_SELECTOR in {rv.name for rv in own.free_RVs}

    def __call__(self, data: dict[str, np.ndarray]) -> np.ndarray:
        with self.model:
            pm.set_data(data)
        if self._jit is None:
            calls = (self.function(*p) for p in self.points)
        else:
            jit, shared = self._jit, tuple(c.storage[0] for c in self._shared)
            calls = (jit(*p, *shared)[0] for p in self.points)
        return np.fromiter(calls, float, len(self.points))


class LogDensity:
    """The joint log density (prior times likelihood, on the parameters' own scale)
    at a fit's draws, for any scenario with the same free parameters: other data,
    other prior values, or another prior family of the same support.

    One compiled function per model graph (a fraction of a second each, from
    PyTensor's cache): the baseline's, and one more for each other prior family a
    grid asks for; each scenario sets its data.
    """

    def __init__(self, base: Fit):
        self.base = base
        posterior = base.posterior["posterior"]
        self.shape = tuple(posterior.sizes[d] for d in ("chain", "draw"))
        # each parameter's draws, chains one after another (the functions' order)
        self._draws = {
            name: values.reshape(-1, *values.shape[2:])
            for name, x in posterior.data_vars.items()
            for values in [x.transpose("chain", "draw", ...).values]
        }
        self._models: dict[tuple, pm.Model] = {}
        self._signatures: dict[tuple, list] = {}
        self._compiled: dict[tuple, _CompiledLogDensity] = {}
        self.base_signature = self.signature(None)
        baseline = self._log_density(None)
        self.state_given_data = baseline.state_given_data

    def _cells_and_spec(self, inputs: ScenarioInputs | None) -> tuple[CellTable, ModelSpec]:
        return (self.base.cells, self.base.spec) if inputs is None else (inputs.cells, inputs.spec)

    def _model(self, inputs: ScenarioInputs | None) -> tuple[tuple, pm.Model]:
        """``inputs``' own model (None: the baseline's) and its graph's key; a grid's
        scenarios share a handful of graphs, so each is built once (~0.05 s)."""
        cells, spec = self._cells_and_spec(inputs)
        key = _signature_key(cells, spec)
        if key not in self._models:
            self._models[key] = build_model(cells, spec)
        return key, self._models[key]

    def _log_density(self, inputs: ScenarioInputs | None) -> _CompiledLogDensity:
        key, model = self._model(inputs)
        if key not in self._compiled:
            self._compiled[key] = _CompiledLogDensity(model, self._draws)
        return self._compiled[key]

    def signature(self, inputs: ScenarioInputs | None) -> list:
        """The free parameters of ``inputs``' own model (name, support, shape)."""
        key, model = self._model(inputs)
        if key not in self._signatures:
            self._signatures[key] = _signature(model)
        return self._signatures[key]

    def why_not(self, inputs: ScenarioInputs) -> str:
        """Why the baseline's draws cannot answer ``inputs`` ("" when they can)."""
        if inputs.spec.borrowing:
            return "borrows from published series"
        if self.state_given_data:
            return "EXNEX: each draw's exchangeability state is drawn given the baseline's data"
        if self.signature(inputs) != self.base_signature:
            return "other parameters than the baseline (model structure or support of a prior)"
        return ""

    def at_draws(self, inputs: ScenarioInputs | None = None) -> np.ndarray:
        """Log density of the baseline's draws under ``inputs`` (None: the baseline),
        shaped (chain, draw); its own prior families' graph, compiled on first use."""
        cells, spec = self._cells_and_spec(inputs)
        values = self._log_density(inputs)(dict(data_values(cells, spec, self.base.shift_vector())))
        return values.reshape(self.shape)


@dataclass(frozen=True)
class Reweighted:
    """A scenario answered, or not, from the baseline's draws."""

    pareto_k: float
    threshold: float
    ess: float  # effective sample size of the smoothed weights
    fit: Fit | None  # the baseline's draws resampled; None when k-hat is too high

    @property
    def trusted(self) -> bool:
        return self.fit is not None


def _threshold(n_draws: int) -> float:
    return float(min(K_HAT_MAX, 1 - 1 / np.log10(n_draws)))


def _systematic(weights: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices drawn with probabilities ``weights`` by systematic resampling (the
    least added noise of the simple schemes)."""
    n = weights.size
    positions = (rng.random() + np.arange(n)) / n
    cumulative = np.cumsum(weights)
    cumulative[-1] = 1.0
    return np.searchsorted(cumulative, positions)


def reweight(
    density: LogDensity,
    base_log_density: np.ndarray,
    inputs: ScenarioInputs,
    *,
    seed: int,
    k_hat_max: float = K_HAT_MAX,
) -> Reweighted:
    """Importance-reweight the baseline's draws to ``inputs``' posterior (PSIS).

    ``base_log_density`` is ``density.at_draws()``. Call only when
    ``density.why_not(inputs)`` is empty.
    """
    log_ratio = xr.DataArray(density.at_draws(inputs) - base_log_density, dims=("chain", "draw"))
    if not np.isfinite(log_ratio).all():
        return Reweighted(np.inf, k_hat_max, 0.0, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # arviz warns on large k-hat itself
        # arviz-stats' psislw takes what LOO gives it, a log-likelihood, and smooths
        # the weights exp(-input): hand it the negated log ratio
        log_weights, k_hat = (-log_ratio).azstats.psislw(dim=["chain", "draw"])
    k_hat = float(k_hat)
    threshold = min(k_hat_max, _threshold(log_ratio.size))
    weights = np.exp(log_weights.transpose("chain", "draw").values.ravel())
    weights = weights / weights.sum()
    ess = float(1.0 / np.sum(weights**2))
    if not k_hat <= threshold:
        return Reweighted(k_hat, threshold, ess, None)
    index = _systematic(weights, np.random.default_rng(seed))
    base = density.base
    posterior = base.posterior["posterior"].to_dataset()
    stacked = posterior.stack(sample=("chain", "draw"))
    picked = stacked.isel(sample=index).drop_vars(["sample", "chain", "draw"])
    chains, draws = density.shape
    resampled = (
        picked.assign_coords(
            chain=("sample", np.repeat(np.arange(chains), draws)),
            draw=("sample", np.tile(np.arange(draws), chains)),
        )
        .set_index(sample=["chain", "draw"])
        .unstack("sample")
        .transpose("chain", "draw", ...)
    )
    tree = base.posterior.copy()
    tree["posterior"] = xr.DataTree(resampled.assign_attrs(posterior.attrs))
    for name, group in cell_groups(inputs.cells).items():  # the scenario's own counts
        tree[name] = xr.DataTree(group)
    fit = replace(
        base,
        posterior=tree,
        spec=inputs.spec,
        cells=inputs.cells,
        timing=FitTiming(compiled_now=False, compile_s=0.0, sample_s=0.0),
    )
    return Reweighted(k_hat, threshold, ess, fit)
