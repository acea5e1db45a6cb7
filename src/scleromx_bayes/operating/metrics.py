"""Operating characteristics from per-simulation results, each with its Monte Carlo
standard error (Morris, White & Crowther 2019, Stat Med 38:2074, table 6):

* P(decision) over simulations, MCSE sqrt(P (1 - P) / n);
* bias = mean(estimate - truth), MCSE sd(error) / sqrt(n);
* RMSE = sqrt(mean(error^2)), MCSE sd(error^2) / (2 RMSE sqrt(n)) (delta method);
* coverage of the central interval, MCSE sqrt(C (1 - C) / n);
* interval width, MCSE sd(width) / sqrt(n).

``n`` counts the simulations used: every fitted one, or only those whose
diagnostics passed (``exclude_failed``); a fit that raised is never used, only
counted.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import xarray as xr

from .engine import STATUS
from .rules import DECISIONS, DecisionRule

__all__ = ["decision_probabilities", "estimation_metrics", "used_simulations"]


def used_simulations(sims: xr.Dataset, exclude_failed: bool = False) -> xr.DataArray:
    """Which simulations count: fitted (and, with ``exclude_failed``, diagnostics ok)."""
    worst = STATUS["ok"] if exclude_failed else STATUS["failed_diagnostics"]
    return sims["status"] <= worst


def _proportion(hit: xr.DataArray, used: xr.DataArray, known: xr.DataArray):
    n = (used & known).sum("simulation")
    p = (hit & used).sum("simulation") / n.where(n > 0)
    return p, np.sqrt(p * (1 - p) / n.where(n > 0))


def decision_probabilities(
    sims: xr.Dataset, rules: Sequence[DecisionRule], used: xr.DataArray
) -> xr.Dataset:
    """P(go), P(consider), P(no-go) per regimen x severity and rule, and P(any go):
    the probability that at least one regimen x severity (other than the reference,
    for ``better`` rules) says go, the family-wise rate under a null truth."""
    p_parts, se_parts, any_p, any_se = [], [], [], []
    for rule in rules:
        q = _quantity(sims, rule)
        decided = rule.decide(q.values)
        known = q.notnull()
        hits = [xr.DataArray(d, dims=q.dims, coords=q.coords) for d in decided]
        ps, ses = zip(*(_proportion(h, used, known) for h in hits), strict=True)
        dim = xr.DataArray(list(DECISIONS), dims="decision", name="decision")
        p_parts.append(xr.concat(ps, dim))
        se_parts.append(xr.concat(ses, dim))
        any_go = hits[0].any(("regimen", "severity"))
        p, se = _proportion(any_go, used, known.any(("regimen", "severity")))
        any_p.append(p)
        any_se.append(se)
    rule_dim = xr.DataArray([r.name for r in rules], dims="rule", name="rule")
    return xr.Dataset(
        {
            "p_decision": xr.concat(p_parts, rule_dim),
            "p_decision_mcse": xr.concat(se_parts, rule_dim),
            "p_any_go": xr.concat(any_p, rule_dim),
            "p_any_go_mcse": xr.concat(any_se, rule_dim),
        }
    )


def _quantity(sims: xr.Dataset, rule: DecisionRule) -> xr.DataArray:
    if rule.quantity == "better":
        return sims["prob_better"]
    return sims["prob_above"].sel(p0=rule.p0, drop=True)


def estimation_metrics(sims: xr.Dataset, used: xr.DataArray) -> xr.Dataset:
    """Bias, RMSE, coverage and width of the interval, per estimand x regimen x
    severity, each with its MCSE; and the mean true value."""
    err = (sims["estimate"] - sims["true_value"]).where(used)
    n = err.notnull().sum("simulation")
    root_n = np.sqrt(n.where(n > 0))
    bias = err.mean("simulation")
    sq = err**2
    rmse = np.sqrt(sq.mean("simulation"))
    inside = (sims["lower"] <= sims["true_value"]) & (sims["true_value"] <= sims["upper"])
    covered = inside.where(err.notnull())
    coverage = covered.mean("simulation")
    width = (sims["upper"] - sims["lower"]).where(err.notnull())
    return xr.Dataset(
        {
            "bias": bias,
            "bias_mcse": err.std("simulation", ddof=1) / root_n,
            "rmse": rmse,
            "rmse_mcse": sq.std("simulation", ddof=1) / (2 * rmse * root_n),
            "coverage": coverage,
            "coverage_mcse": np.sqrt(coverage * (1 - coverage)) / root_n,
            "interval_width": width.mean("simulation"),
            "interval_width_mcse": width.std("simulation", ddof=1) / root_n,
            "true_value": sims["true_value"].mean("simulation"),
            "n_used": n,
        }
    )
