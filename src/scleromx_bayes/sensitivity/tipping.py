"""Tipping points: how skeptical must the prior be before a regimen stops looking better?"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import xarray as xr

from ..cohort import Cohort
from ..errors import SettingsError
from ..fit import SamplerSettings, cells_for, check_seed, fit_cells
from ..provenance import DataProvenance
from ..spec import ModelSpec, load_spec
from ..summary import choose_reference, summarise

__all__ = ["tipping_point"]


def tipping_point(
    cohort: Cohort,
    regimen: str,
    *,
    reference: str | None = None,
    severity: str | None = None,
    kind: str = "scale",
    values: Sequence[float] | None = None,
    decision: float = 0.9,
    spec: ModelSpec | str = "base",
    seed: int = 1,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
) -> xr.Dataset:
    """How skeptical must the prior on regimen effects be before P(better) < decision?

    ``kind="scale"`` shrinks the between-regimen SD prior (HalfNormal scale, from
    wide to narrow); ``kind="shift"`` moves ``regimen``'s prior log-odds against it
    (0, -0.25, -0.5, ...). All fits share one compiled model.

    A shift is best read under ``spec="no_pooling"``, where it moves that regimen's
    own prior. Under partial pooling the data can absorb a one-regimen shift by
    inflating the between-regimen SD, so P(better) need not fall steadily as the
    shift grows; ``attrs["monotone"]`` says whether it did, and the message warns.

    Parameters
    ----------
    cohort : Cohort
        The cohort.
    regimen : str
        The regimen whose P(better) is followed.
    reference : str, optional
        The reference regimen (default: the first).
    severity : str, optional
        The severity level read (default: the first).
    kind : {"scale", "shift"}
        Shrink the between-regimen SD prior, or shift the regimen's prior log-odds.
    values : sequence of float, optional
        The scales or shifts tried (a default ladder otherwise).
    decision : float
        The decision threshold on P(better).
    spec : ModelSpec or str
        The model.
    seed, draws, tune, chains : int
        Sampling of each fit.

    Returns
    -------
    xarray.Dataset
        ``prob_better`` and ``risk_difference`` (mean) along ``value``; attrs
        ``tipping_value`` (linear interpolation at the crossing; NaN if the decision
        never flips in the range) and ``message``.

    Examples
    --------
    >>> tip = sxb.tipping_point(sxb.load_example(), "DNS rescue", values=[1.0, 0.25],
    ...                         draws=200, tune=200, chains=2)
    >>> tip.value.values.tolist(), tip.prob_better.dims
    ([1.0, 0.25], ('value',))
    """
    if kind not in ("scale", "shift"):
        raise SettingsError(f"kind must be 'scale' or 'shift', not {kind!r}")
    spec = load_spec(spec) if isinstance(spec, str) else spec
    if kind == "scale" and spec.regimen_pooling != "partial":
        raise SettingsError("a scale tipping point needs a partially pooled model (e.g. 'base')")
    settings = SamplerSettings(draws=draws, tune=tune, chains=chains)
    seed = check_seed(seed)
    if values is None:
        values = (
            [2.0, 1.0, 0.7, 0.5, 0.35, 0.25, 0.15, 0.1, 0.05]
            if kind == "scale"
            else [0.0, -0.25, -0.5, -0.75, -1.0, -1.5, -2.0, -3.0]
        )
    if regimen not in cohort.regimens:
        raise SettingsError(f"regimen {regimen!r} is not in the data")
    ref = choose_reference(cohort.regimens, reference)
    severity = severity or cohort.severities[0]
    cells = cells_for(cohort, spec)
    data = DataProvenance.of(cohort)
    prob, rd = [], []
    for v in values:
        if kind == "scale":
            s = spec.with_overrides(
                {"priors.regimen_sd": {"dist": "HalfNormal", "sigma": float(v)}}
            )
            shift = None
        else:
            s, shift = spec, {regimen: float(v)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fitted = fit_cells(
                cells,
                s,
                settings=settings,
                seed=seed,
                data=data,
                regimen_prior_shift=shift,
                warn=False,
            )
        ds = summarise(fitted, reference=ref)
        prob.append(float(ds["prob_better"].sel(regimen=regimen, severity=severity)))
        rd.append(float(ds["risk_difference"].sel(regimen=regimen, severity=severity, stat="mean")))
    prob_arr = np.array(prob)
    # values run from least to most skeptical, so P(better) should not rise
    monotone = bool(np.all(np.diff(prob_arr) <= 0.02))  # 0.02: Monte-Carlo wiggle
    tip, message = np.nan, ""
    above = prob_arr > decision
    if not above[0]:
        message = (
            f"P(better) is {prob_arr[0]:.2f} <= {decision} already at the least skeptical "
            f"value {values[0]}: no tipping point needed"
        )
    else:
        cross = np.flatnonzero(~above)
        if cross.size == 0:
            message = f"P(better) stays above {decision} over the whole range: robust"
        else:
            j = int(cross[0])
            x0, x1, y0, y1 = values[j - 1], values[j], prob_arr[j - 1], prob_arr[j]
            tip = float(x0 + (decision - y0) * (x1 - x0) / (y1 - y0)) if y1 != y0 else float(x1)
            what = "regimen SD prior scale" if kind == "scale" else "prior shift (log-odds)"
            message = f"P(better) falls below {decision} at a {what} of about {tip:.3g}"
    if not monotone:
        message += "; P(better) is not monotone in the prior value" + (
            ": under partial pooling the between-regimen SD absorbs a one-regimen "
            "shift; use kind='scale' or spec='no_pooling'"
            if kind == "shift"
            else ""
        )
    return xr.Dataset(
        {"prob_better": ("value", prob_arr), "risk_difference": ("value", np.array(rd))},
        coords={"value": np.asarray(values, dtype=float)},
        attrs={
            "regimen": regimen,
            "reference_regimen": ref,
            "severity": severity,
            "kind": kind,
            "decision": decision,
            "tipping_value": tip,
            "monotone": int(monotone),
            "message": message,
            "synthetic": int(cohort.synthetic),
        },
    )
