"""The model's likelihood evaluated at posterior draws, from the PyMC graph itself.

LOO and predictive checks need, for every draw, the log-probability of each response
category in each cell. That quantity is a node of the graph
(:data:`names.CATEGORY_LOG_PROB`); it is not stored while sampling, and is
computed here from the draws with ``pymc.compute_deterministics``, so there is no
second copy of the likelihood to drift from the first.
"""

from __future__ import annotations

import warnings

import numpy as np
import pymc as pm
import xarray as xr

from ..cohort import CellTable
from ..spec import ModelSpec
from . import names as v
from .build import build_model, data_values, exact_float_math
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
    with exact_float_math(), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        out = pm.compute_deterministics(
            posterior, var_names=[v.CATEGORY_LOG_PROB], model=model, progressbar=False
        )
    return out[v.CATEGORY_LOG_PROB].transpose("chain", "draw", "cell", "category")
