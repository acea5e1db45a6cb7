"""The model's likelihood evaluated at posterior draws, from the PyMC graph itself.

LOO and predictive checks need, for every draw, the log-probability of each response
category in each cell. That quantity is a node of the graph
(:data:`names.CATEGORY_LOG_PROB`); it is not stored while sampling, and is
computed here from the draws by that graph, so there is no second copy of the
likelihood to drift from the first. The graph is evaluated for all draws at once
by NumPy (:mod:`..derived`), as ``pymc.compute_deterministics`` would evaluate it
one draw at a time after compiling it (seconds of numba's compile per model
structure, on an empty cache).
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import xarray as xr
from pymc.model.transform.conditioning import remove_value_transforms

from ..cohort import CellTable
from ..derived import derived_variables
from ..spec import ModelSpec
from . import names as v
from .build import build_model, data_values
from .external import ExternalEvidence

__all__ = ["category_log_probs"]


def category_log_probs(
    posterior: xr.Dataset,
    cells: CellTable,
    spec: ModelSpec,
    shift: np.ndarray | None = None,
    external: ExternalEvidence | None = None,
) -> xr.DataArray:
    """Log-probability of each response category per draw and cell.

    Parameters
    ----------
    posterior : xarray.Dataset
        Draws of the model's variables (a fit's ``posterior`` group).
    cells, spec :
        The cells and spec the draws were fitted with.
    shift : array, optional
        The regimen prior shift the fit used (only moves priors; kept for the graph).
    external : ExternalEvidence, optional
        What the fit borrowed (its graph has the borrowed regimens' variables).

    Returns
    -------
    xarray.DataArray
        dims ``(chain, draw, cell, category)``; categories are non-responder and
        responder (binary models) or NR, PR, CR (ordinal model).
    """
    model = build_model(cells, spec, external=external)
    with model:
        pm.set_data(dict(data_values(cells, spec, shift, external=external)))
    # the draws are stored on the parameters' own scale: the graph without transforms
    # takes them as they are
    own_scale = remove_value_transforms(model)
    function = derived_variables(own_scale, var_names=[v.CATEGORY_LOG_PROB])
    log_p = function.at_posterior(posterior)[v.CATEGORY_LOG_PROB]
    dims = ("chain", "draw", *model.named_vars_to_dims[v.CATEGORY_LOG_PROB])
    coords = {d: posterior[d].values for d in ("chain", "draw")}
    coords |= {d: list(model.coords[d]) for d in dims[2:]}
    out = xr.DataArray(log_p, dims=dims, coords=coords, name=v.CATEGORY_LOG_PROB)
    return out.transpose("chain", "draw", "cell", "category")
