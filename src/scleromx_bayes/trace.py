"""nutpie's draws as a DataTree in one step per group.

A model compiled by :func:`scleromx_bayes.native.compile_for_nutpie` stores each
draw's position only; the variables a fit keeps are computed here from all draws at
once (:mod:`scleromx_bayes.derived`), with the data the fit was given.

``nutpie.sample`` turns its Arrow trace into a DataTree through ArviZ's
``from_dict``, which builds an xarray object per variable for four groups (two of
them warm-up, dropped by every fit here): 0.06-0.09 s of a 0.2 s warm fit of the
example, paid once per fit of a sensitivity grid or an operating-characteristics
study. :func:`trace_tree` reads the same Arrow columns with nutpie's own column
reader and builds the two groups a fit keeps (``posterior``, ``sample_stats``)
directly: the same variables, values, dims, coordinates and attributes
(``tests/test_native.py`` checks it against ``nutpie.sample``'s own result).

Uses nutpie internals (``nutpie.sample._add_arrow_data``); nutpie is pinned to
0.16.x for :mod:`native`'s sake already.
"""

from __future__ import annotations

import json

import arviz_base
import numpy as np
import nutpie
import pandas as pd
import xarray as xr
from nutpie import __version__ as nutpie_version
from nutpie.sample import _add_arrow_data

__all__ = ["sample_tree", "trace_tree"]

# what nutpie leaves out of sample_stats when its store_* options are off, as they
# are in every fit here (nutpie.sample._extract)
UNSTORED_STATS = (
    "gradient",
    "unconstrained_draw",
    "mass_matrix_inv",
    "mass_matrix_eigvals",
    "mass_matrix_stds",
    "divergence_start",
    "divergence_end",
    "divergence_momentum",
    "divergence_start_gradient",
    "transformed_position",
    "transformed_gradient",
    "transformation_mu",
)
SAMPLE_DIMS = ["chain", "draw"]


def _group(data: dict, dims: dict, coords: dict, attrs: dict) -> xr.Dataset:
    variables = {}
    for name, values in data.items():
        # text columns (divergence messages) are not kept; the chain and draw
        # columns are the coordinates
        if values.dtype == object or name in SAMPLE_DIMS:
            continue
        item = list(dims.get(name) or [f"{name}_dim_{i}" for i in range(values.ndim - 2)])
        variables[name] = (SAMPLE_DIMS + item, values)
    chains, draws = next(iter(data.values())).shape[:2]
    used = {d for dims_, _ in variables.values() for d in dims_}
    index = {name: pd.Index(values) for name, values in coords.items() if name in used}
    return xr.Dataset(
        variables,
        coords={"chain": np.arange(chains), "draw": np.arange(draws), **index},
        attrs=arviz_base.make_attrs(attrs, sample_dims=SAMPLE_DIMS),
    )


def trace_tree(results, compiled, settings: dict) -> xr.DataTree:
    """The posterior draws and sampler statistics of a finished nutpie run.

    Parameters
    ----------
    results :
        What ``nutpie.sample(..., return_raw_trace=True)`` returned.
    compiled :
        The compiled model that was sampled (its coords and reparameterised names).
    settings : dict
        nutpie's settings of the run (``inference_library_settings``).

    Returns
    -------
    xarray.DataTree
        Groups ``posterior`` and ``sample_stats``, warm-up left out, text statistics
        (divergence messages) left out.
    """
    draw_batches, stat_batches = results.get_arrow_trace()
    chains = len(draw_batches)
    tuning = [int(s.column("tuning").to_numpy().sum()) for s in stat_batches]
    kept = max(d.num_rows - t for d, t in zip(draw_batches, tuning, strict=True))
    posterior, stats, dims = {}, {}, {}
    for chain, (draw, stat, t) in enumerate(zip(draw_batches, stat_batches, tuning, strict=True)):
        rows = draw.num_rows - t
        _add_arrow_data(posterior, kept, draw.slice(t, rows), chain, chains, dims, [])
        _add_arrow_data(stats, kept, stat.slice(t, rows), chain, chains, dims, UNSTORED_STATS)
    derived = getattr(compiled, "derived", None)
    if derived is not None:  # positions only: compute what is stored
        posterior = derived(posterior, compiled.derived_data())
        dims.update({n: list(compiled.dims[n]) for n in derived.names if compiled.dims.get(n)})
    for name in compiled.reparameterized_names:
        posterior.pop(name, None)
    coords = dict(compiled.coords)
    library = {
        "inference_library": "nutpie",
        "inference_library_version": nutpie_version,
        "inference_library_settings": json.dumps(settings),
    }
    return xr.DataTree.from_dict(
        {
            "posterior": _group(posterior, dims, coords, {}),
            "sample_stats": _group(stats, dims, coords, library),
        }
    )


def sample_tree(compiled, **kwargs) -> xr.DataTree:
    """``nutpie.sample(compiled, **kwargs)``, as the DataTree :func:`trace_tree` builds.

    Parameters
    ----------
    compiled :
        A compiled model (:func:`scleromx_bayes.native.compile_for_nutpie`, or
        nutpie's own).
    **kwargs :
        ``nutpie.sample``'s settings (draws, tune, chains, seed, ...).

    Returns
    -------
    xarray.DataTree
        Groups ``posterior`` and ``sample_stats``.

    Examples
    --------
    >>> import pymc as pm, nutpie
    >>> from scleromx_bayes.trace import sample_tree
    >>> with pm.Model() as m:
    ...     x = pm.Normal("x", 0.0, 1.0)
    >>> compiled = nutpie.compile_pymc_model(m)
    >>> tree = sample_tree(compiled, draws=30, tune=30, chains=2, seed=1, progress_bar=False)
    >>> tree["posterior"]["x"].shape
    (2, 30)
    """
    running = nutpie.sample(compiled, **kwargs, blocking=False, return_raw_trace=True)
    try:
        results = running.wait()
    except BaseException:  # an interrupt or an error: stop the sampler's threads
        running.cancel()
        raise
    return trace_tree(results, compiled, running._settings.as_dict())
