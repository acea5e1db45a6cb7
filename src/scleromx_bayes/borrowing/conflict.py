"""Prior-data conflict: does the cohort's count fit what the borrowed prior predicts?

Two measures, as a reviewer will ask for both:

* the prior-predictive tail probability of the cohort's count under the borrowed
  prior (a robust prior without its weakly informative component; two-sided,
  mid-p: small means the literature did not predict this cohort);
* under a robust prior, the posterior weight of its weakly informative component
  (large means the cohort has moved away from the borrowed components).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .mixture import BetaMixture, NormalMixture

__all__ = ["CONFLICT_P", "CONFLICT_WEIGHT", "Conflict", "prior_data_conflict"]

CONFLICT_P = 0.05  # tail probability below which the count is called surprising
CONFLICT_WEIGHT = 0.5  # robust-component posterior weight above which borrowing yielded


@dataclass(frozen=True)
class Conflict:
    """How a cohort's y CRs in n patients sit against a prior: the tail probability
    under the borrowed components, and the robust component's weight before and
    after the cohort."""

    y: int
    n: int
    tail_probability: float
    robust_weight_prior: float  # NaN when the prior has no robust component
    robust_weight_posterior: float

    @property
    def conflict(self) -> bool:
        return self.tail_probability < CONFLICT_P or (
            self.robust_weight_posterior > CONFLICT_WEIGHT
        )

    @property
    def message(self) -> str:
        seen = f"{self.y}/{self.n} CR"
        if not self.conflict:
            return (
                f"no sign of prior-data conflict: {seen} has predictive tail probability "
                f"{self.tail_probability:.2f} under the prior"
            )
        parts = []
        if self.tail_probability < CONFLICT_P:
            parts.append(
                f"the prior predicted a count like {seen} with tail probability "
                f"{self.tail_probability:.3f} (< {CONFLICT_P})"
            )
        if self.robust_weight_posterior > CONFLICT_WEIGHT:
            parts.append(
                f"the robust component's weight rose from {self.robust_weight_prior:.2f} to "
                f"{self.robust_weight_posterior:.2f}: the cohort overrides the literature"
            )
        return "PRIOR-DATA CONFLICT: " + "; ".join(parts)


def prior_data_conflict(
    prior: NormalMixture | BetaMixture, y: int, n: int, *, robust_component: int | None = None
) -> Conflict:
    """Conflict measures of y CRs in n patients against ``prior``.

    ``robust_component`` is the index of the weakly informative component (the
    last one after :meth:`NormalMixture.robustify`); None: no robust weight.

    Parameters
    ----------
    prior : NormalMixture or BetaMixture
        The borrowed prior.
    y, n : int
        CRs and patients of the cohort for this regimen.
    robust_component : int, optional
        Index of the weakly informative component (``-1`` after ``robustify``).

    Returns
    -------
    Conflict
        Tail probability, the robust component's weight before and after the
        cohort, and a message.

    Examples
    --------
    >>> prior = NormalMixture([1.0], [-1.5], [0.3]).robustify(0.2)
    >>> prior_data_conflict(prior, 9, 10, robust_component=-1).conflict
    True
    """
    if not (0 <= y <= n) or n < 1:
        raise ValueError(f"need 0 <= y <= n and n >= 1, not y={y}, n={n}")
    borrowed = prior if robust_component is None else _without(prior, robust_component)
    pmf = borrowed.predictive(n)
    below, above = pmf[:y].sum(), pmf[y + 1 :].sum()
    at = pmf[y]
    tail = float(min(1.0, 2 * min(below + 0.5 * at, above + 0.5 * at)))
    if robust_component is None:
        weight_prior = weight_post = float("nan")
    else:
        weight_prior = float(prior.weights[robust_component])
        weight_post = float(prior.posterior_weights(y, n)[robust_component])
    return Conflict(int(y), int(n), tail, weight_prior, weight_post)


def _without(prior: NormalMixture | BetaMixture, k: int) -> NormalMixture | BetaMixture:
    """The mixture of every component but ``k``, reweighted."""
    keep = np.ones(len(prior.weights), dtype=bool)
    keep[k] = False
    if not keep.any():
        raise ValueError("the robust component is the whole prior: nothing was borrowed")
    w = prior.weights[keep] / prior.weights[keep].sum()
    if isinstance(prior, NormalMixture):
        return NormalMixture(w, prior.means[keep], prior.sds[keep])
    return BetaMixture(w, prior.a[keep], prior.b[keep])
