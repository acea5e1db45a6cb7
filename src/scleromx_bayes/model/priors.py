"""Priors as PyMC variables whose hyper-parameters are ``pm.Data``.

Each hyper-parameter of each prior is a data variable named
``prior__<prior>__<parameter>``, so one compiled model serves every prior variant
of the same structure: a new prior is new data, not a new compile.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from ..cohort import CellTable
from ..spec import ModelSpec, Prior
from .structure import effective_structure

__all__ = ["canonical_value", "data_name", "hyperparameter_values", "prior_variable"]


def data_name(prior_name: str, param: str) -> str:
    """The ``pm.Data`` name of one hyper-parameter of one prior."""
    return f"prior__{prior_name}__{param}"


def canonical_value(name: str) -> float:
    """A fixed valid value for a hyper-parameter's data variable: 0 for locations,
    1/2 for probabilities, 1 otherwise. Every compile uses these (see
    ``fit.compiled_for``)."""
    if name.endswith("__mu"):
        return 0.0
    return 0.5 if name.endswith("__p") else 1.0


def hyperparameter_values(spec: ModelSpec, cells: CellTable) -> dict[str, np.ndarray]:
    """The ``pm.Data`` values a spec sets, keyed by data-variable name."""
    out = {}
    for name in effective_structure(spec, cells).priors:
        for param, value in spec.prior(name).params.items():
            out[data_name(name, param)] = np.asarray(value, dtype=np.float64)
    return out


def prior_variable(rv_name: str, prior_name: str, prior: Prior, **kwargs) -> pt.TensorVariable:
    """The random variable ``rv_name`` with ``prior``'s family and data hyper-parameters."""
    params = {p: pm.Data(data_name(prior_name, p), np.float64(v)) for p, v in prior.params.items()}
    if prior.dist == "GammaPrecision":
        # sample the precision as BUGS states it; the SD is what the model uses
        precision = pm.Gamma(f"{rv_name}_precision", **params, **kwargs)
        return pm.Deterministic(rv_name, 1.0 / pt.sqrt(precision), **kwargs)
    return getattr(pm, prior.dist)(rv_name, **params, **kwargs)
