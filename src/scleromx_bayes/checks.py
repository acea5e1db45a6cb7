"""Checking a model: prior and posterior predictive checks, and LOO comparison.

Predictive checks compare the observed CR counts per regimen x severity (summed
over sites) with counts replicated from the prior or the posterior. Model
comparison uses PSIS-LOO through ArviZ at one of two levels, which leave out
different things:

``"episode"``
    leave one treatment episode out (each responder contributes ``log p``, each
    non-responder ``log(1 - p)`` of its cell): "how well would we predict the next
    patient's response?". Available for episode and counts tables alike, since
    episodes within a cell are exchangeable.
``"cell"``
    leave one regimen x site x severity cell out (its binomial count): "how well would
    we predict a whole cell?", a harder and coarser question. Cells with ``n = 0``
    are not observations and are left out.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from typing import Literal

import arviz as az
import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr
from arviz_base import dict_to_dataset
from pymc.backends.arviz import coords_and_dims_for_inferencedata
from scipy.special import gammaln

from .cohort import CellTable
from .derived import NUMPY_MODE, log_densities
from .fit import Fit
from .model import build_model, category_log_probs, ordinal_counts
from .model import names as v
from .provenance import SYNTHETIC_NOTE
from .spec import ModelSpec, load_spec

__all__ = [
    "compare",
    "loo",
    "pointwise_log_likelihood",
    "posterior_predictive_check",
    "power_scaling",
    "prior_predictive_check",
]

Level = Literal["episode", "cell"]
PARETO_K_MAX = 0.7


def pointwise_log_likelihood(fit: Fit, level: Level = "episode") -> xr.DataArray:
    """Log-likelihood of each observation (episode or cell) per draw, under the
    likelihood the model was fitted with.

    Returns
    -------
    xarray.DataArray
        dims ``(chain, draw, observation)``; ``observation`` carries the cell's regimen,
        site and severity and, at episode level, the episode's ``response``: 1 for a
        responder and 0 otherwise, or for the ordinal model its category (0 = NR,
        1 = PR, 2 = CR). Episodes come in one canonical order whatever a model's cells
        are (with or without patients), so two models' terms pair up episode by episode.
    """
    if level not in ("episode", "cell"):
        raise ValueError(f"level must be 'episode' or 'cell', not {level!r}")
    cells = fit.cells
    log_p, counts = _category_log_probs(fit)  # (chain, draw, cell, K), (cell, K)
    frame = cells.frame
    labels = ("regimen", "site", "severity")
    if level == "cell":
        used = np.flatnonzero(cells.n > 0)
        c = counts[used]
        # multinomial (binomial for K = 2) log-probability of each cell's counts
        ll = gammaln(cells.n[used] + 1) - gammaln(c + 1).sum(-1) + (c * log_p[..., used, :]).sum(-1)
        obs = {k: ("observation", frame[k].to_numpy()[used]) for k in labels}
    else:
        categories = np.arange(counts.shape[1])
        cell_of = np.repeat(np.arange(len(frame)), cells.n)
        category = np.concatenate([np.repeat(categories, row) for row in counts]).astype(np.int8)
        keys = pd.DataFrame({k: frame[k].to_numpy()[cell_of] for k in labels})
        keys["response"] = category
        sort_by = [*labels, "response"]
        if "patient" in frame:
            keys["patient"] = frame["patient"].to_numpy()[cell_of]
            sort_by.append("patient")
        order = keys.sort_values(sort_by, kind="stable").index.to_numpy()
        ll = log_p[..., cell_of[order], category[order]]
        obs = {k: ("observation", keys[k].to_numpy()[order]) for k in (*labels, "response")}
    return xr.DataArray(
        ll,
        dims=("chain", "draw", "observation"),
        coords={"observation": np.arange(ll.shape[-1]), **obs},
        name=v.RESPONDERS,
    )


def _category_log_probs(fit: Fit) -> tuple[np.ndarray, np.ndarray]:
    """Per draw and cell, the log-probability of each response category (from the
    model's graph), and each cell's counts by category: (non-responder, responder)
    for the binary models, (NR, PR, CR) for the ordinal one."""
    cells = fit.cells
    post = fit.posterior["posterior"].to_dataset()
    log_p = category_log_probs(post, cells, fit.spec, fit.shift_vector(), fit.external).values
    if fit.spec.response_scale == "ordinal":
        return log_p, ordinal_counts(cells)
    return log_p, np.stack([cells.n - cells.y, cells.y], axis=-1)


def _outcome_probability(fit: Fit) -> np.ndarray:
    """Per draw and cell, the probability of the summarised outcome (CR, or CR or PR
    under ``orr``): what the observed responder counts are counts of."""
    log_p, _ = _category_log_probs(fit)
    p = np.exp(log_p)
    if fit.spec.response_scale != "ordinal":
        return p[..., 1]
    return p[..., 2] + (p[..., 1] if fit.cells.outcome.response == "orr" else 0.0)


def _with_log_likelihood(fit: Fit, level: Level) -> xr.DataTree:
    tree = fit.posterior.copy()
    ll = pointwise_log_likelihood(fit, level)
    tree["log_likelihood"] = xr.DataTree(xr.Dataset({v.RESPONDERS: ll}))
    return tree


def loo(fit: Fit, level: Level = "episode"):
    """PSIS-LOO of one fit (ArviZ ``loo``), at episode or cell level.

    Parameters
    ----------
    fit : Fit
        The fit.
    level : {"episode", "cell"}
        Leave out one episode (the next patient) or one regimen x site x severity cell.

    Returns
    -------
    arviz_stats.ELPDData
        ArviZ's result: ``elpd``, ``se``, ``p``, pointwise ``pareto_k``, ``warning``.

    Examples
    --------
    ``fit`` from :func:`fit`:

    >>> result = sxb.loo(fit, "episode")
    >>> bool(result.elpd < 0), int(result.pareto_k.size) == int(fit.cells.n.sum())
    (True, True)
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Pareto k is reported by compare()
        return az.loo(_with_log_likelihood(fit, level), pointwise=True, var_name=v.RESPONDERS)


def compare(fits: Mapping[str, Fit], level: Level = "episode") -> pd.DataFrame:
    """Compare fits of the same data by PSIS-LOO (ArviZ ``compare``).

    Parameters
    ----------
    fits : mapping of name to Fit
        At least two fits of the same cohort under the same outcome definition.
    level : {"episode", "cell"}
        What one left-out observation is (see the module docstring).

    Returns
    -------
    pandas.DataFrame
        ArviZ's comparison table (rank, elpd, p, elpd_diff, weight, se, dse, warning)
        plus ``n_obs``, ``n_high_pareto_k`` (k > 0.7: LOO unreliable for those
        observations) and ``level``. A ``RuntimeWarning`` names the fits with high k.

    Examples
    --------
    >>> table = sxb.compare({"base": fit_a, "no_pooling": fit_b})
    >>> sorted(table.index)
    ['base', 'no_pooling']
    """
    if len(fits) < 2:
        raise ValueError("compare needs at least two fits")
    trees = {name: _with_log_likelihood(f, level) for name, f in fits.items()}
    first_name, first = next(iter(fits.items()))
    reference = trees[first_name]["log_likelihood"][v.RESPONDERS]
    for name, f in fits.items():
        ll = trees[name]["log_likelihood"][v.RESPONDERS]
        same = (
            f.data.fingerprint == first.data.fingerprint
            and ll.sizes["observation"] == reference.sizes["observation"]
            and all(
                np.array_equal(ll[c].values, reference[c].values)
                for c in ("regimen", "site", "severity", "response")
                if c in reference.coords
            )
        )
        if not same:
            hint = (
                " (models with and without a patient effect have different cells: compare "
                "them at level='episode')"
                if level == "cell"
                else ""
            )
            raise ValueError(
                f"fit {name!r} is not of the same data and outcome as the others: LOO "
                f"compares models of the same observations only{hint}"
            )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        results = {
            name: az.loo(t, pointwise=True, var_name=v.RESPONDERS) for name, t in trees.items()
        }
        table = az.compare(results, round_to="none")
    table = pd.DataFrame(table)
    table["n_obs"] = [int(results[m].pareto_k.size) for m in table.index]
    table["n_high_pareto_k"] = [
        int((results[m].pareto_k > PARETO_K_MAX).sum()) for m in table.index
    ]
    table["level"] = level
    high = table[table["n_high_pareto_k"] > 0]
    if len(high):
        listed = ", ".join(
            f"{m} ({k} of {n})"
            for m, k, n in zip(high.index, high["n_high_pareto_k"], high["n_obs"], strict=True)
        )
        warnings.warn(
            f"Pareto k > {PARETO_K_MAX} for some {level}s of: {listed}; LOO is "
            "unreliable for those observations (a refit without them would tell)",
            RuntimeWarning,
            stacklevel=2,
        )
    return table


# ---------------------------------------------------------------------------
# predictive checks


def _aggregate(
    cells: CellTable, replicated: np.ndarray, interval: float, kind: str, synthetic: bool
) -> xr.Dataset:
    """Sum replicated cell counts (sample, cell) to regimen x severity and describe."""
    regimens, severities = list(cells.regimens), list(cells.severities)
    r, k = cells.index("regimen"), cells.index("severity")
    shape = (len(regimens), len(severities))
    observed, n = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    np.add.at(observed, (r, k), cells.y)
    np.add.at(n, (r, k), cells.n)
    rep = np.zeros((replicated.shape[0], *shape))
    np.add.at(rep, (slice(None), r, k), replicated)
    lo, hi = np.quantile(rep, [(1 - interval) / 2, 1 - (1 - interval) / 2], axis=0)
    # two-sided predictive p-value of the observed count, mid-p for ties
    above = (rep > observed).mean(0) + 0.5 * (rep == observed).mean(0)
    p_value = np.minimum(1.0, 2 * np.minimum(above, 1 - above))
    coords = {"regimen": regimens, "severity": severities}
    dims = ("regimen", "severity")
    ds = xr.Dataset(
        {
            "observed_responders": (dims, observed),
            "n_evaluable": (dims, n),
            "predicted_mean": (dims, rep.mean(0)),
            "predicted_lower": (dims, lo),
            "predicted_upper": (dims, hi),
            "predictive_p_value": (dims, np.where(n > 0, p_value, np.nan)),
        },
        coords=coords,
        attrs={
            "kind": kind,
            "interval": interval,
            "draws": int(replicated.shape[0]),
            "synthetic": int(synthetic),
        },
    )
    ds["predictive_p_value"].attrs["description"] = (
        "two-sided predictive p-value of the observed count (small: the model does not "
        "reproduce this regimen x severity count)"
    )
    if synthetic:
        ds.attrs["note"] = SYNTHETIC_NOTE
    return ds


def posterior_predictive_check(fit: Fit, *, seed: int = 0, interval: float = 0.95) -> xr.Dataset:
    """Observed CR counts per regimen x severity against counts replicated from the
    posterior (same cells, same ``n``).

    Parameters
    ----------
    fit : Fit
        The fit.
    seed : int
        Seed of the replicated counts.
    interval : float
        Probability of the central predictive interval.

    Returns
    -------
    xarray.Dataset
        ``observed_responders``, ``n_evaluable``, ``predicted_mean``,
        ``predicted_lower`` / ``predicted_upper`` (central ``interval``) and
        ``predictive_p_value``, each over regimen x severity.

    Examples
    --------
    >>> check = sxb.posterior_predictive_check(fit, seed=1)
    >>> sorted(check.sizes)
    ['regimen', 'severity']
    """
    cells = fit.cells
    p = _outcome_probability(fit)
    p = p.reshape(-1, p.shape[-1])
    rng = np.random.default_rng(seed)
    replicated = rng.binomial(cells.n, p)
    return _aggregate(cells, replicated, interval, "posterior predictive", fit.synthetic)


def prior_predictive_check(
    cells: CellTable,
    spec: ModelSpec | str,
    *,
    draws: int = 1000,
    seed: int = 0,
    interval: float = 0.95,
    synthetic: bool = False,
) -> xr.Dataset:
    """What the priors alone predict for the observed design, against the observed
    counts: a prior that cannot produce the data shows here before any fit.

    Parameters
    ----------
    cells : CellTable
        The design and observed counts.
    spec : ModelSpec or str
        The model whose priors are checked.
    draws : int
        Prior draws.
    seed : int
        Random seed.
    interval : float
        Probability of the central predictive interval.
    synthetic : bool
        Mark the result as made from synthetic data.

    Returns
    -------
    xarray.Dataset
        As :func:`posterior_predictive_check`, from the prior.

    Examples
    --------
    >>> check = sxb.prior_predictive_check(sxb.load_example().cells(), "base", seed=1)
    >>> sorted(check.sizes)
    ['regimen', 'severity']
    """
    spec = load_spec(spec) if isinstance(spec, str) else spec
    if spec.response_scale == "ordinal":
        raise ValueError("the prior predictive check counts responders: use a binary model")
    model = build_model(cells, spec, simulate=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        prior = pm.sample_prior_predictive(
            draws=draws, model=model, random_seed=seed, compile_kwargs={"mode": NUMPY_MODE}
        )
    replicated = prior["prior_predictive"][v.RESPONDERS].values.reshape(draws, -1)
    return _aggregate(cells, replicated, interval, "prior predictive", synthetic)


def _log_density_group(tree: xr.DataTree, model: pm.Model, kind: str) -> xr.Dataset:
    """The ``log_likelihood`` or ``log_prior`` group ``pymc.compute_log_likelihood`` /
    ``pymc.stats.compute_log_prior`` would add (the same variables, dims and
    coordinates), computed for all draws at once by NumPy rather than compiled
    and called draw by draw."""
    posterior = tree["posterior"]
    values = log_densities(model, kind).at_posterior(posterior)
    coords, dims = coords_and_dims_for_inferencedata(model)
    coords |= {d: posterior[d].values for d in ("chain", "draw")}
    return dict_to_dataset(
        values,
        inference_library=pm,
        dims=dims,
        coords=coords,
        sample_dims=["chain", "draw"],
        skip_event_dims=True,
    )


def power_scaling(fit: Fit, var_names: Iterable[str] = v.POWER_SCALING_CHECKED) -> pd.DataFrame:
    """Power-scaling prior/likelihood sensitivity (ArviZ ``psense_summary``) of a fit.

    Adds ``log_prior`` and ``log_likelihood`` groups to ``fit.posterior`` (kept,
    so later calls reuse them) and returns ArviZ's table with its diagnosis per
    variable ("potential prior-data conflict", "potential strong prior / weak
    likelihood", or a check mark).

    Parameters
    ----------
    fit : Fit
        The fit.
    var_names : iterable of str
        Variables screened (those the fit has).

    Returns
    -------
    pandas.DataFrame
        Prior and likelihood sensitivity and a diagnosis, one row per quantity.

    Examples
    --------
    >>> table = sxb.power_scaling(fit)
    >>> {"prior", "likelihood"} <= set(table.columns)
    True
    """
    tree = fit.posterior
    names = [name for name in var_names if name in tree["posterior"].data_vars]
    if "log_prior" not in tree.children or "log_likelihood" not in tree.children:
        model = build_model(fit.cells, fit.spec, external=fit.external)
        with model:
            pm.set_data({v.REGIMEN_PRIOR_SHIFT: fit.shift_vector()})
        for kind in ("likelihood", "prior"):
            tree[f"log_{kind}"] = xr.DataTree(_log_density_group(tree, model, kind))
    # a constant quantity (the reference severity's effect is 0 by definition) has no
    # sensitivity to measure: ArviZ would divide by zero and mark it as fine
    post = tree["posterior"].to_dataset()
    checked = {}
    for name in names:
        draws = post[name]
        spread = draws.std(("chain", "draw"))
        if spread.ndim == 0:
            if float(spread) > 0:
                checked[name] = draws
        elif spread.ndim == 1:
            checked[name] = draws.isel({spread.dims[0]: np.flatnonzero(spread.values > 0)})
        else:
            checked[name] = draws
    groups = {"posterior": xr.Dataset(checked, attrs=post.attrs)}
    groups |= {g: tree[g].to_dataset() for g in ("log_prior", "log_likelihood")}
    return az.psense_summary(xr.DataTree.from_dict(groups), var_names=list(checked))
