"""The statistical model: its structure, priors, PyMC graph and variable names.

``structure`` says which terms a spec builds on given cells, ``priors`` makes prior
variables with data hyper-parameters, ``build`` assembles the PyMC model (and holds
the one likelihood), ``likelihood`` evaluates that likelihood for posterior draws,
``shared`` says which graph a sampler compiles once for many structures and
cohorts, and ``names`` holds every variable name.
"""

from . import names
from .build import (
    build_model,
    data_values,
    exact_float_math,
    ordinal_counts,
    scalar_values,
    stored_names,
)
from .external import ExternalEvidence
from .likelihood import category_log_probs
from .priors import canonical_value, hyperparameter_values
from .shared import SharedGraph, shared_graph, shared_values
from .structure import Structure, effective_structure

__all__ = [
    "ExternalEvidence",
    "SharedGraph",
    "Structure",
    "build_model",
    "canonical_value",
    "category_log_probs",
    "data_values",
    "effective_structure",
    "exact_float_math",
    "hyperparameter_values",
    "names",
    "ordinal_counts",
    "scalar_values",
    "shared_graph",
    "shared_values",
    "stored_names",
]
