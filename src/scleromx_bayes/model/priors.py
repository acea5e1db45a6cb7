"""Priors as PyMC variables whose hyper-parameters are data.

Each hyper-parameter of each prior is a scalar named ``prior__<prior>__<parameter>``
in the model's data (see ``model.build``), so one compiled model serves every
prior variant of the same structure: a new prior is new data, not a new compile.

A prior's family is part of the compiled graph. (Families as data too, a switch
between log-densities, made each compile 5-8 times slower, 25-45 s against 5:
more than it saves.)
"""

from __future__ import annotations

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from ..cohort import CellTable
from ..spec import DISTRIBUTIONS, PRIOR_ROLES, ModelSpec, Prior
from .structure import effective_structure

__all__ = ["canonical_value", "data_name", "hyperparameter_values", "prior_variable", "stand_in"]

STAND_IN_FAMILY = {"location": "Normal", "scale": "HalfNormal"}


def data_name(prior_name: str, param: str) -> str:
    """The name of one hyper-parameter of one prior among the model's scalars."""
    return f"prior__{prior_name}__{param}"


def canonical_value(name: str) -> float:
    """A fixed valid value for a scalar (hyper-parameter or switch): 0 for
    locations, 1/2 for probabilities, 1 otherwise. Every compile
    uses these (see ``fit.compiled_for``)."""
    param = name.rsplit("__", 1)[-1]
    if param.endswith("mu"):
        return 0.0
    return 0.5 if param == "p" else 1.0


def hyperparameter_values(spec: ModelSpec, cells: CellTable) -> dict[str, np.ndarray]:
    """The ``pm.Data`` values a spec sets, keyed by data-variable name."""
    out = {}
    for name in effective_structure(spec, cells).priors:
        for param, value in spec.prior(name).params.items():
            out[data_name(name, param)] = np.asarray(value, dtype=np.float64)
    return out


def prior_variable(rv_name: str, dist: str, params: dict, **kwargs) -> pt.TensorVariable:
    """The random variable ``rv_name`` of family ``dist`` with (data) ``params``."""
    if dist == "GammaPrecision":
        # sample the precision as BUGS states it; the SD is what the model uses
        precision = pm.Gamma(f"{rv_name}_precision", **params, **kwargs)
        return pm.Deterministic(rv_name, 1.0 / pt.sqrt(precision), **kwargs)
    return getattr(pm, dist)(rv_name, **params, **kwargs)


def stand_in(prior_name: str) -> Prior:
    """The prior a shared graph gives a switched-off term's parameter (its role's
    first family, canonical values): sampled, never used by the likelihood."""
    family = STAND_IN_FAMILY[PRIOR_ROLES[prior_name]]
    return Prior(family, {p: canonical_value(p) for p in DISTRIBUTIONS[family][0]})
