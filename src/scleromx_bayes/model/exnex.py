"""EXNEX (Neuenschwander, Wandel, Roychoudhury & Bailey 2016) in the form NUTS samples well.

The model: each regimen r is exchangeable with the others (δ_r = 1, prior
probability p) or not, and its log-odds is

    θ_r | δ_r = 1 ~ Normal(μ, τ)      θ_r | δ_r = 0 ~ Normal(m, s).

Written as a mixture prior on one θ_r per regimen (PyMC's ``NormalMixture``), θ_r
cannot be non-centred and (τ, θ) is a funnel: on the example's design NUTS took
about 60 leapfrog steps a draw at target_accept 0.95, with bulk ESS near 150 of
1,000 draws. Here, as in OncoBayes2's EXNEX, each regimen has both log-odds, each
non-centred,

    θ_ex[r] = μ + τ·z_ex[r]      θ_nex[r] = m + s·z_nex[r]      z ~ Normal(0, 1),

and δ_r is summed out of the *likelihood* of the regimen's cells:
p·L_r(θ_ex[r]) + (1 − p)·L_r(θ_nex[r]). The same model (the component not chosen
is drawn from its prior, which integrates to 1), about 14 steps a draw at 0.9 and
five times the ESS.

A regimen's log-odds needs δ_r. With a selector u_r ~ Uniform(0, 1) that no
likelihood term reads (its posterior is its prior, independent of the rest),
δ_r = [u_r < w_r] with w_r = P(δ_r = 1 | θ_ex, θ_nex, data) has exactly the
posterior's conditional law, so ``regimen_logit`` = θ_ex if δ_r else θ_nex is an
exact posterior draw, computed like any other deterministic. ``w_r`` is stored as
``exchangeability_weight``; its posterior mean is P(exchangeable | data). In a
model built to simulate data (prior predictive draws), w_r is p itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from . import names as v

__all__ = ["ExnexRegimens", "exnex_regimens", "regimen_mixture", "select_regimens"]


@dataclass(frozen=True)
class ExnexRegimens:
    """Both log-odds of every regimen, the selector, and the prior probability."""

    exchangeable: pt.TensorVariable  # (regimen,)
    nonexchangeable: pt.TensorVariable  # (regimen,)
    selector: pt.TensorVariable  # (regimen,) Uniform(0, 1)
    p: pt.TensorVariable  # scalar: prior probability of exchangeability


def exnex_regimens(mu, tau, nex_mu, nex_sigma, p, shift) -> ExnexRegimens:
    """The free variables of EXNEX's regimen term (inside a model context)."""
    z_ex = pm.Normal(v.REGIMEN_Z, 0.0, 1.0, dims="regimen")
    z_nex = pm.Normal(v.NONEXCHANGEABLE_Z, 0.0, 1.0, dims="regimen")
    selector = pm.Uniform(v.EXCHANGEABILITY_SELECTOR, 0.0, 1.0, dims="regimen")
    return ExnexRegimens(
        exchangeable=mu + shift + tau * z_ex,
        nonexchangeable=nex_mu + shift + nex_sigma * z_nex,
        selector=selector,
        p=p,
    )


def _filled(value: float, length) -> pt.TensorVariable:
    """A vector of ``value``, as ``pt.full`` but filled from a length-1 array: numba
    compiles PyTensor's fill from a 0-d value through its general array assignment,
    whose error messages alone took about 3 s of a model's first compile."""
    return pt.alloc(np.full(1, value), length)


def _per_regimen(cell_values, regimen_of_cell, n_regimens):
    return pt.inc_subtensor(_filled(0.0, n_regimens)[regimen_of_cell], cell_values)


def _log_weights(ll_ex, ll_nex, regimen_of_cell, p, n_regimens):
    """log p + log L_r(θ_ex) and log(1 − p) + log L_r(θ_nex), per regimen."""
    return (
        pt.log(p) + _per_regimen(ll_ex, regimen_of_cell, n_regimens),
        pt.log1p(-p) + _per_regimen(ll_nex, regimen_of_cell, n_regimens),
    )


def regimen_mixture(ll_ex, ll_nex, regimen_of_cell, p, n_regimens):
    """The likelihood with δ summed out, spread evenly over each regimen's cells.

    ``ll_ex``, ``ll_nex``: each cell's log-likelihood under the exchangeable and the
    nonexchangeable log-odds of its regimen. Returns one value per cell whose sum
    over a regimen's cells is log(p·L_r(θ_ex) + (1 − p)·L_r(θ_nex)): the total is
    the model's log-likelihood (what NUTS and power-scaling read); a cell's share is
    not a pointwise log-likelihood (LOO reads ``category_log_prob``, given δ).
    """
    log_ex, log_nex = _log_weights(ll_ex, ll_nex, regimen_of_cell, p, n_regimens)
    total = pt.logaddexp(log_ex, log_nex)
    cells = _per_regimen(_filled(1.0, ll_ex.shape[0]), regimen_of_cell, n_regimens)
    return (total / cells)[regimen_of_cell]


def select_regimens(
    terms: ExnexRegimens, ll_ex, ll_nex, regimen_of_cell, n_regimens, simulate: bool
) -> pt.TensorVariable:
    """``exchangeability_weight`` (stored) and each regimen's log-odds given δ."""
    if simulate:  # the generative model: δ from its prior
        weight = pt.ones(n_regimens) * terms.p
    else:
        log_ex, log_nex = _log_weights(ll_ex, ll_nex, regimen_of_cell, terms.p, n_regimens)
        weight = pt.exp(log_ex - pt.logaddexp(log_ex, log_nex))
    weight = pm.Deterministic(v.EXCHANGEABILITY_WEIGHT, weight, dims="regimen")
    exchangeable = terms.selector < weight
    return pm.Deterministic(
        v.REGIMEN_LOGIT,
        pt.switch(exchangeable, terms.exchangeable, terms.nonexchangeable),
        dims="regimen",
    )
