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

from ..cohort import CellTable
from ..derived import JOINT, log_densities
from ..fit import Fit, FitTiming, cell_groups
from ..model import build_model, data_values, effective_structure
from ..model import names as v
from ..spec import ModelSpec
from .plan import ScenarioInputs

__all__ = ["K_HAT_MAX", "LogDensity", "Reweighted", "ScenarioParameters", "resample", "reweight"]

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


# draws per call of a vectorised log density: bounds its intermediate arrays (draws
# times cells) on a registry-sized cohort, while the example's 4,000 take 8 calls
DRAWS_PER_CALL = 512


class _LogDensity:
    """One model graph's joint log density (prior times likelihood, on the
    parameters' own scale) at many draws per call, built once; each call takes a
    scenario's data.

    The graph is PyTensor's own, vectorised over a leading draw dimension and
    evaluated by NumPy (:func:`derived.log_densities`): one call evaluates a block
    of draws, nothing is compiled (numba's compile of the same graph cost seconds
    per structure on an empty cache, for a few calls).
    """

    def __init__(self, own: pm.Model):
        self.function = log_densities(own, "joint")
        self.names = self.function.positions

    def __call__(self, data: dict[str, np.ndarray], draws: dict[str, np.ndarray]) -> np.ndarray:
        """Log density at each of ``draws`` (each parameter's draws along a first
        axis) under ``data`` (by name; data not given keep the model's values)."""
        values = {
            d: np.asarray(data[d.name], dtype=d.type.dtype) if d.name in data else d.get_value()
            for d in self.function.data
        }
        n = len(draws[self.names[0]])
        blocks = []
        for start in range(0, n, DRAWS_PER_CALL):
            block = {name: draws[name][None, start : start + DRAWS_PER_CALL] for name in self.names}
            blocks.append(self.function(block, values)[JOINT][0])
        return np.concatenate(blocks)


class ScenarioParameters:
    """Each scenario's own model, built once per graph, and its free parameters: what
    decides, before anything is fitted, whether the baseline's draws can answer it.

    Examples
    --------
    >>> from scleromx_bayes.sensitivity import resolve
    >>> grid = sxb.Grid.one_at_a_time({"model": ["base", "no_pooling"], "site_sd": [0.5, 1.0]})
    >>> base, *others = [resolve(cohort, grid, s) for s in grid.expand(cohort)]
    >>> [ScenarioParameters(base.cells, base.spec).why_not(x)[:16] for x in others]
    ['other parameters', '']
    """

    def __init__(self, cells: CellTable, spec: ModelSpec):
        self.cells, self.spec = cells, spec
        self._models: dict[tuple, pm.Model] = {}
        self._signatures: dict[tuple, list] = {}
        self.base_signature = self.signature(None)
        # EXNEX draws each regimen's state given the data (model.exnex): the baseline's
        # regimen log-odds are its own data's, so they do not carry over to a scenario
        _, model = self.model(None)
        self.state_given_data = v.EXCHANGEABILITY_SELECTOR in {rv.name for rv in model.free_RVs}

    def cells_and_spec(self, inputs: ScenarioInputs | None) -> tuple[CellTable, ModelSpec]:
        return (self.cells, self.spec) if inputs is None else (inputs.cells, inputs.spec)

    def model(self, inputs: ScenarioInputs | None) -> tuple[tuple, pm.Model]:
        """``inputs``' own model (None: the baseline's) and its graph's key; a grid's
        scenarios share a handful of graphs, so each is built once (~0.05 s)."""
        cells, spec = self.cells_and_spec(inputs)
        key = _signature_key(cells, spec)
        if key not in self._models:
            self._models[key] = build_model(cells, spec)
        return key, self._models[key]

    def signature(self, inputs: ScenarioInputs | None) -> list:
        """The free parameters of ``inputs``' own model (name, support, shape)."""
        key, model = self.model(inputs)
        if key not in self._signatures:
            self._signatures[key] = _signature(model)
        return self._signatures[key]

    def why_not(self, inputs: ScenarioInputs) -> str:
        """Why the baseline's draws cannot answer ``inputs`` ("" when they can)."""
        if inputs.spec.borrowing or self.spec.borrowing:
            return "borrows from published series"
        if self.state_given_data:
            return "EXNEX: each draw's exchangeability state is drawn given the baseline's data"
        if self.signature(inputs) != self.base_signature:
            return "other parameters than the baseline (model structure or support of a prior)"
        return ""


class LogDensity:
    """The joint log density (prior times likelihood, on the parameters' own scale)
    at a fit's draws, for any scenario with the same free parameters: other data,
    other prior values, or another prior family of the same support.

    One function per model graph (a tenth of a second or so to build, nothing
    compiled), built on first use: the baseline's, and one more for each other
    prior family a grid asks for; each scenario passes its data. Which scenarios
    it may be asked about: ``parameters.why_not`` (:class:`ScenarioParameters`).
    """

    def __init__(self, base: Fit, parameters: ScenarioParameters | None = None):
        self.base = base
        self.parameters = parameters or ScenarioParameters(base.cells, base.spec)
        posterior = base.posterior["posterior"]
        self.shape = tuple(posterior.sizes[d] for d in ("chain", "draw"))
        # each parameter's draws, chains one after another (the functions' order)
        self._draws = {
            name: values.reshape(-1, *values.shape[2:])
            for name, x in posterior.data_vars.items()
            for values in [x.transpose("chain", "draw", ...).values]
        }
        self._by_graph: dict[tuple, _LogDensity] = {}

    def _log_density(self, inputs: ScenarioInputs | None) -> _LogDensity:
        key, model = self.parameters.model(inputs)
        if key not in self._by_graph:
            self._by_graph[key] = _LogDensity(model)
        return self._by_graph[key]

    def at_draws(self, inputs: ScenarioInputs | None = None) -> np.ndarray:
        """Log density of the baseline's draws under ``inputs`` (None: the baseline),
        shaped (chain, draw); its own prior families' graph, built on first use."""
        cells, spec = self.parameters.cells_and_spec(inputs)
        data = dict(data_values(cells, spec, self.base.shift_vector()))
        return self._log_density(inputs)(data, self._draws).reshape(self.shape)


@dataclass(frozen=True)
class Reweighted:
    """A scenario answered, or not, from the baseline's draws."""

    pareto_k: float
    threshold: float
    ess: float  # effective sample size of the smoothed weights
    fit: Fit | None  # the baseline's draws resampled; None when k-hat is too high
    index: np.ndarray | None = None  # which baseline draw each one is (see resample)

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


def resample(draws: xr.DataArray, index: np.ndarray) -> xr.DataArray:
    """``draws`` (dims chain, draw, ...) at the baseline draws ``index`` picks, counted
    chain after chain: the resampled posterior keeps the baseline's chain and draw
    labels, and any quantity derived draw by draw from the baseline's draws (CR
    probabilities, say) is resampled to the scenario's by the same index.

    Examples
    --------
    >>> x = xr.DataArray([[1.0, 2.0], [3.0, 4.0]], dims=("chain", "draw"))
    >>> resample(x, np.array([3, 3, 0, 1])).values.tolist()
    [[4.0, 4.0], [1.0, 2.0]]
    """
    draws = draws.transpose("chain", "draw", ...)
    flat = draws.values.reshape(-1, *draws.shape[2:])
    return draws.copy(data=flat[index].reshape(draws.shape))


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
    ``density.parameters.why_not(inputs)`` is empty.
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
    resampled = posterior.map(resample, index=index, keep_attrs=True)
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
    return Reweighted(k_hat, threshold, ess, fit, index)
