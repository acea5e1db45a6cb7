"""Published series as the model sees them: arrays, no files.

``borrowing.borrow`` turns an evidence table and a borrowing method into an
:class:`ExternalEvidence`; :func:`model.build_model` reads it. For a borrowed
regimen r (regimen pooling "none": the borrowed prior replaces the regimen's own):

* ``map`` / ``robust_map``: ``regimen_logit[r]`` has the MAP mixture prior (normal
  components on the log-odds; the robust one has a weakly informative component);
* ``power``: the external studies' binomial log-likelihood, times ``a0`` in [0, 1],
  is added for ``regimen_logit[r]`` (the regimen's own prior stays);
* ``joint``: the external studies enter the model as studies of their own, each with
  log-odds ``mean[r] + tau[r] * e_j``, and the cohort is one more such study:
  ``regimen_logit[r] = mean[r] + tau[r] * e_0`` (the meta-analytic-combined model,
  which MAP-then-prior approximates).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..spec import ModelSpec, SpecError

__all__ = ["METHODS", "ExternalEvidence", "require_no_pooling"]

METHODS = ("map", "robust_map", "power", "joint")


def require_no_pooling(spec: ModelSpec) -> None:
    """Borrowing replaces a regimen's own prior: refuse a spec that pools regimens."""
    if spec.regimen_pooling != "none":
        raise SpecError(
            "borrowing from published series replaces a regimen's own prior: use a spec "
            f'with regimen_pooling = "none" (this one has {spec.regimen_pooling!r})'
        )


@dataclass(frozen=True)
class ExternalEvidence:
    """Borrowed regimens and what is borrowed for them."""

    method: str
    regimens: tuple[str, ...]
    # map / robust_map: one row per borrowed regimen, components padded with weight 0
    mixture_weight: np.ndarray = field(default_factory=lambda: np.zeros((0, 1)))
    mixture_mean: np.ndarray = field(default_factory=lambda: np.zeros((0, 1)))
    mixture_sd: np.ndarray = field(default_factory=lambda: np.ones((0, 1)))
    # power / joint: one entry per external study
    study_regimen: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    study_n: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    study_cr: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    a0: float = 1.0
    # joint: priors of each borrowed regimen's mean log-odds and between-study SD
    mean_prior: tuple[float, float] = (0.0, 2.0)
    tau_prior: float = 1.0

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"borrowing method must be one of {METHODS}, not {self.method!r}")
        if not 0.0 <= self.a0 <= 1.0:
            raise ValueError(f"a0 must be in [0, 1], not {self.a0}")

    def shape_key(self, regimens: tuple[str, ...]) -> tuple:
        """What the compiled graph depends on: method, which regimens, array shapes."""
        index = tuple(regimens.index(r) for r in self.regimens)
        return (self.method, index, self.mixture_weight.shape, self.study_n.shape)

    def scalars(self) -> dict[str, float]:
        return {
            "borrowing__a0": float(self.a0),
            "borrowing__mean_mu": float(self.mean_prior[0]),
            "borrowing__mean_sigma": float(self.mean_prior[1]),
            "borrowing__tau_sigma": float(self.tau_prior),
        }
