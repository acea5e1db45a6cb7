"""The threshold of a decision rule that holds its false-positive rate at a target."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import xarray as xr

from ..errors import SettingsError
from .metrics import used_simulations
from .rules import DecisionRule
from .run import _per_simulation, operating_characteristics
from .truth import Truth

__all__ = ["Calibration", "calibrate", "threshold_for"]

BOOTSTRAP = 400  # resamples of the simulations for the threshold's Monte Carlo SE


@dataclass(frozen=True)
class Calibration:
    """A calibrated threshold.

    Attributes
    ----------
    threshold : float
        The smallest ``c`` with false-positive rate P(quantity > c | null) at most
        ``target``: "go" when the posterior probability exceeds it.
    false_positive_rate : float
        The rate at ``threshold`` in these simulations (at most ``target``), and its
        Monte Carlo SE ``false_positive_rate_mcse``.
    threshold_mcse : float
        Bootstrap SE of the threshold over the simulations.
    per_cell : xarray.DataArray
        The threshold each regimen x severity needs alone (``error="per_comparison"``).
    rule : DecisionRule
        The rule with the calibrated threshold.

    Examples
    --------
    >>> cal = sxb.threshold_for(oc, spec="base", truth="all equal", target=0.2)
    >>> isinstance(cal, sxb.Calibration), 0.5 <= cal.threshold <= 1.0
    (True, True)
    """

    threshold: float
    false_positive_rate: float
    false_positive_rate_mcse: float
    threshold_mcse: float
    target: float
    error: str
    n_sims: int
    spec: str
    truth: str
    per_cell: xr.DataArray
    rule: DecisionRule


def _threshold(q: np.ndarray, target: float) -> float:
    """Smallest c with mean(q > c) <= target, over simulations (axis 0)."""
    q = np.sort(q[~np.isnan(q)])[::-1]
    allowed = int(np.floor(target * len(q) + 1e-9))  # how many may exceed c
    return float(q[allowed]) if allowed < len(q) else 0.0


def threshold_for(
    oc: xr.Dataset,
    *,
    spec: str,
    truth: str,
    quantity: Literal["better", "above"] = "better",
    p0: float | None = None,
    target: float = 0.1,
    error: Literal["per_comparison", "familywise"] = "per_comparison",
    regimen: str | None = None,
    severity: str | None = None,
    seed: int = 1,
) -> Calibration:
    """Calibrate a threshold from an OC Dataset's simulations under a null truth.

    ``error="per_comparison"``: every regimen x severity (or the one named) keeps its
    own false-positive rate at or below ``target`` (the threshold is the largest of
    the cells'); ``"familywise"``: the probability that *any* says go does.

    Parameters
    ----------
    oc : xarray.Dataset
        A result of :func:`operating_characteristics` that includes ``truth``.
    spec : str
        The model whose simulations are read.
    truth : str
        The null truth's name (e.g. ``"all equal"``).
    quantity : {"better", "above"}
        A threshold on P(better than the reference) or on P(p > ``p0``).
    p0 : float, optional
        The CR probability of ``quantity="above"``.
    target : float
        The false-positive rate to hold.
    error : {"per_comparison", "familywise"}
        Hold each comparison's rate, or the probability that any says go.
    regimen, severity : str, optional
        Calibrate for one comparison only.
    seed : int
        Seed of the bootstrap giving the Monte Carlo SEs.

    Returns
    -------
    Calibration
        The threshold, its false-positive rate and both Monte Carlo SEs.

    Examples
    --------
    ``oc`` from :func:`operating_characteristics` with a null truth:

    >>> cal = sxb.threshold_for(oc, spec="base", truth="all equal", target=0.2)
    >>> cal.false_positive_rate <= 0.2 + 3 * cal.false_positive_rate_mcse
    True
    """
    if not 0 < target < 1:
        raise SettingsError(f"target must be between 0 and 1, not {target!r}")
    if error not in ("per_comparison", "familywise"):
        raise SettingsError(f"error is 'per_comparison' or 'familywise', not {error!r}")
    sims = _per_simulation(oc)
    for dim, value in (("spec", spec), ("truth", truth)):
        if value not in sims[dim].values:
            raise SettingsError(f"no {dim} {value!r}; have {sims[dim].values.tolist()}")
    sims = sims.sel(spec=spec, truth=truth)
    q = sims["prob_better"] if quantity == "better" else sims["prob_above"].sel(p0=p0)
    if regimen is not None:
        q = q.sel(regimen=[regimen])
    if severity is not None:
        q = q.sel(severity=[severity])
    q = q.where(used_simulations(sims)).transpose("simulation", "regimen", "severity")
    values = q.values.reshape(q.sizes["simulation"], -1)
    values = values[:, ~np.all(np.isnan(values), axis=0)]  # the reference has no contrast
    if values.size == 0:
        raise SettingsError("nothing to calibrate: no regimen x severity with a contrast")
    values = values[~np.all(np.isnan(values), axis=1)]  # simulations without a fit

    def pick(v: np.ndarray) -> float:
        if error == "familywise":
            return _threshold(np.nanmax(v, axis=1), target)
        return max(_threshold(v[:, j], target) for j in range(v.shape[1]))

    c = pick(values)
    if not c < 1:
        raise SettingsError(
            f"no threshold below 1 holds the false-positive rate at {target:g}: over "
            f"{target:.0%} of the null simulations give a posterior probability of 1 "
            "(more draws per fit resolve it)"
        )
    hits = values > c
    rate_hits = hits.any(axis=1) if error == "familywise" else hits
    rate = float(rate_hits.mean(axis=0).max()) if rate_hits.ndim > 1 else float(rate_hits.mean())
    n = len(values)
    rng = np.random.default_rng(seed)
    boot = [pick(values[rng.integers(n, size=n)]) for _ in range(BOOTSTRAP)]
    per_cell = xr.DataArray(
        _per_cell(q, target),
        dims=("regimen", "severity"),
        coords={"regimen": q["regimen"].values, "severity": q["severity"].values},
    )
    rule = DecisionRule.better(c) if quantity == "better" else DecisionRule.above(p0, c)
    return Calibration(
        threshold=c,
        false_positive_rate=rate,
        false_positive_rate_mcse=float(np.sqrt(rate * (1 - rate) / n)),
        threshold_mcse=float(np.std(boot, ddof=1)),
        target=target,
        error=error,
        n_sims=n,
        spec=spec,
        truth=truth,
        per_cell=per_cell,
        rule=rule,
    )


def calibrate(
    design,
    spec,
    null: Truth,
    *,
    quantity: Literal["better", "above"] = "better",
    p0: float | None = None,
    target: float = 0.1,
    error: Literal["per_comparison", "familywise"] = "per_comparison",
    regimen: str | None = None,
    severity: str | None = None,
    n_sims: int = 1000,
    seed: int = 1,
    **kwargs,
) -> Calibration:
    """The threshold ``c`` of "go when P(...) > c" that holds the false-positive rate
    at ``target`` on this design and model, simulating under the ``null`` truth
    (e.g. :meth:`Truth.all_equal`).

    Other keyword arguments go to :func:`operating_characteristics` (``reference``,
    ``settings``, ``executor``, ``store``, ``progress``, ``evidence``). The threshold
    is computed from the simulated posterior probabilities themselves (no search
    over refits), so its Monte Carlo SE is a bootstrap over those simulations.

    Parameters
    ----------
    design : Cohort or CellTable
        The design (its cells' sizes; outcomes are ignored).
    spec : ModelSpec or str
        The model the rule is applied to.
    null : Truth
        The truth under which a "go" is a false positive.
    quantity : {"better", "above"}
        Calibrate a threshold on P(better than the reference) or on P(p > ``p0``).
    p0 : float, optional
        The CR probability of ``quantity="above"``.
    target : float
        The false-positive rate to hold.
    error : {"per_comparison", "familywise"}
        Hold each comparison's rate, or the probability that any comparison says go.
    regimen, severity : str, optional
        Calibrate for one comparison only.
    n_sims : int
        Simulations under ``null``.
    seed : int
        Seed of the simulations.
    **kwargs
        Passed to :func:`operating_characteristics`.

    Returns
    -------
    Calibration
        The threshold, its false-positive rate and both Monte Carlo SEs.

    Examples
    --------
    >>> cal = sxb.calibrate(sxb.load_example(), "base", sxb.Truth.all_equal(0.4),
    ...                     target=0.2, n_sims=20)       # a paper would use 1,000
    >>> 0.5 <= cal.threshold <= 1, cal.n_sims
    (True, 20)
    """
    rule = DecisionRule.better(0.5) if quantity == "better" else DecisionRule.above(p0, 0.5)
    oc = operating_characteristics(design, spec, null, rule, n_sims=n_sims, seed=seed, **kwargs)
    return threshold_for(
        oc,
        spec=str(oc["spec"].values[0]),
        truth=null.name,
        quantity=quantity,
        p0=p0,
        target=target,
        error=error,
        regimen=regimen,
        severity=severity,
        seed=seed,
    )


def _per_cell(q: xr.DataArray, target: float) -> np.ndarray:
    out = np.full((q.sizes["regimen"], q.sizes["severity"]), np.nan)
    for i in range(q.sizes["regimen"]):
        for j in range(q.sizes["severity"]):
            col = q.values[:, i, j]
            if not np.all(np.isnan(col)):
                out[i, j] = _threshold(col, target)
    return out
