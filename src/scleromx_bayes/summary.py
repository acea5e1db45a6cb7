"""Posterior summaries of a fit as one labelled ``xarray.Dataset``.

CR probability is reported three ways:

* ``p_cr_new_site``: for a patient treated at a centre not in the data, the site
  effect integrated out (Gauss-Hermite quadrature per draw, exact to ~1e-10);
  this is the figure to quote for "what to expect elsewhere";
* ``p_cr_typical_site``: at a centre with site effect 0;
* ``p_cr_by_site``: at each observed centre.

Every ``*_new_site``-scale quantity (thresholds, contrasts, ranks) uses the
new-site probability.
"""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import arviz as az
import numpy as np
import xarray as xr
from scipy.special import expit

if TYPE_CHECKING:
    from .fit import Fit

__all__ = ["summarise", "posterior_probabilities", "describe", "STATS"]

STATS = ("mean", "median", "sd", "hdi_lower", "hdi_upper")
SAMPLE_DIMS = ("chain", "draw")
_GH_NODES, _GH_WEIGHTS = np.polynomial.hermite.hermgauss(40)
SYNTHETIC_NOTE = "SYNTHETIC DATA: generated for illustration, not real patients."


def describe(draws: xr.DataArray, hdi_prob: float) -> xr.DataArray:
    """Mean, median, SD and HDI bounds over chain and draw, along a ``stat`` dim."""
    hdi = az.hdi(draws, prob=hdi_prob)
    parts = [
        draws.mean(SAMPLE_DIMS),
        draws.median(SAMPLE_DIMS),
        draws.std(SAMPLE_DIMS, ddof=1),
        hdi.sel(ci_bound="lower", drop=True),
        hdi.sel(ci_bound="upper", drop=True),
    ]
    out = xr.concat(
        parts,
        dim=xr.DataArray(list(STATS), dims="stat", name="stat"),
        coords="minimal",
        compat="override",
    )
    return out.transpose(..., "stat").drop_attrs()


def posterior_probabilities(fit: Fit) -> dict[str, xr.DataArray]:
    """Draws of CR probability: ``new_site``, ``typical_site`` (regimen x severity)
    and ``by_site`` (regimen x severity x site)."""
    post = fit.posterior["posterior"].to_dataset()
    cells = fit.cells
    eta = post["typical_logit"]  # regimen x severity log-odds at a site with effect 0
    typical = xr.apply_ufunc(expit, eta)
    zero = xr.DataArray(0.0)
    site_sd = post["site_sd"] if "site_sd" in post else zero
    patient_sd = post["patient_sd"] if "patient_sd" in post else zero
    if "site_sd" in post or "patient_sd" in post:
        # a new patient at a new centre: both random effects integrated out
        new_site = _expected_expit(eta, np.sqrt(site_sd**2 + patient_sd**2))
    else:
        new_site = typical
    if "site_effect" in post:
        by_site = eta + post["site_effect"]
        # at an observed centre, a new patient: the patient effect integrated out
        by_site = (
            _expected_expit(by_site, patient_sd)
            if "patient_sd" in post
            else xr.apply_ufunc(expit, by_site)
        )
    else:
        by_site = new_site.expand_dims(site=list(cells.sites))
    order = ("chain", "draw", "regimen", "severity")
    return {
        "new_site": new_site.transpose(*order),
        "typical_site": typical.transpose(*order),
        "by_site": by_site.transpose(*order, "site"),
    }


def _expected_expit(eta: xr.DataArray, sd: xr.DataArray) -> xr.DataArray:
    """E[expit(eta + sd * Z)], Z ~ N(0, 1), per draw, by 40-node Gauss-Hermite:
    sum_i w_i / sqrt(pi) * expit(eta + sd * sqrt(2) * x_i)."""
    nodes = xr.DataArray(np.sqrt(2.0) * _GH_NODES, dims="node")
    weights = xr.DataArray(_GH_WEIGHTS / np.sqrt(np.pi), dims="node")
    return (xr.apply_ufunc(expit, eta + sd * nodes) * weights).sum("node")


def _rank_probabilities(p: xr.DataArray, masked: Sequence[str] = ()) -> xr.DataArray:
    """P(regimen has rank j) within each severity; rank 1 = highest CR probability.
    Masked regimens take no rank (NaN) and the others are ranked among themselves."""
    regimens = list(p["regimen"].values)
    keep = [r for r in regimens if r not in set(masked)]
    values = p.sel(regimen=keep).transpose("chain", "draw", "severity", "regimen").values
    ranks = (-values).argsort(axis=-1).argsort(axis=-1)  # 0 = best
    probs = np.full((values.shape[2], len(regimens), len(regimens)), np.nan)
    for j in range(len(keep)):
        probs[:, [regimens.index(r) for r in keep], j] = (ranks == j).mean(axis=(0, 1))
    for j in range(len(keep), len(regimens)):
        probs[:, [regimens.index(r) for r in keep], j] = 0.0
    return xr.DataArray(
        probs,
        dims=("severity", "regimen", "rank"),
        coords={
            "severity": p["severity"].values,
            "regimen": regimens,
            "rank": np.arange(1, len(regimens) + 1),
        },
    )


def _versions() -> str:
    names = [
        "scleromx-bayes",
        "pymc",
        "pytensor",
        "nutpie",
        "arviz",
        "arviz-base",
        "arviz-stats",
        "numpy",
        "xarray",
        "pandas",
    ]
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return json.dumps(out, sort_keys=True)


def provenance_attrs(synthetic: bool) -> dict[str, object]:
    """Package versions, creation time and the synthetic flag (with its note when set),
    for every Dataset the package writes."""
    attrs: dict[str, object] = {
        "versions": _versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "synthetic": int(synthetic),
    }
    if synthetic:
        attrs["note"] = SYNTHETIC_NOTE
    return attrs


def choose_reference(regimens: Sequence[str], reference: str | None) -> str:
    """The reference regimen: as given, else HDIVig when present, else the first."""
    if reference is not None:
        if reference not in regimens:
            raise ValueError(
                f"reference regimen {reference!r} is not in the data; regimens: {list(regimens)}"
            )
        return reference
    return "HDIVig" if "HDIVig" in regimens else regimens[0]


def summarise(
    fit: Fit,
    *,
    hdi_prob: float = 0.95,
    thresholds: Sequence[float] = (0.25, 0.5),
    reference: str | None = None,
    masked_sites: Sequence[str] = (),
    masked_regimens: Sequence[str] = (),
) -> xr.Dataset:
    """Summarise a fit as an ``xarray.Dataset``.

    ``masked_sites`` and ``masked_regimens`` (left out of the data in a sensitivity
    scenario) are reported as NaN rather than as prior predictions; ranks are
    then among the remaining regimens.

    Variables (``stat`` = mean, median, sd, hdi_lower, hdi_upper):

    - ``p_cr_new_site[regimen, severity, stat]``, ``p_cr_typical_site[...]``,
      ``p_cr_by_site[regimen, severity, site, stat]``
    - ``prob_above[regimen, severity, threshold]``: P(p_cr_new_site > threshold)
    - ``risk_difference[regimen, severity, stat]``, ``odds_ratio[...]`` and
      ``prob_better[regimen, severity]`` against ``reference`` (NaN on its own row)
    - ``rank_probability[severity, regimen, rank]`` (rank 1 = best)
    - ``scale_parameters[parameter, stat]``: between-regimen and between-site SDs
    - ``n_evaluable``, ``n_responders`` [regimen, severity, site]: the aggregated
      counts the fit used

    Attributes hold the spec as TOML, a data fingerprint, versions, sampler
    settings, seed, diagnostics and creation time; ``synthetic = 1`` and a note
    when the data are synthetic.

    Examples
    --------
    >>> ds = fit.summary(hdi_prob=0.9, thresholds=[0.5])  # doctest: +SKIP
    >>> ds.p_cr_new_site.sel(regimen="HDIVig", severity="nonsevere", stat="mean")  # doctest: +SKIP
    """
    if not 0 < hdi_prob < 1:
        raise ValueError(f"hdi_prob must be between 0 and 1, not {hdi_prob}")
    thresholds = [float(t) for t in thresholds]
    if any(not 0 < t < 1 for t in thresholds):
        raise ValueError(f"thresholds must lie strictly between 0 and 1: {thresholds}")
    cells = fit.cells
    ref = choose_reference(cells.regimens, reference)
    probs = posterior_probabilities(fit)
    new = probs["new_site"]

    p_ref = new.sel(regimen=ref, drop=True)
    is_ref = xr.DataArray(
        [r == ref for r in cells.regimens], dims="regimen", coords={"regimen": list(cells.regimens)}
    )
    rd = new - p_ref
    odds = new / (1 - new)
    ratio = odds / (p_ref / (1 - p_ref))

    thr = xr.DataArray(thresholds, dims="threshold", coords={"threshold": thresholds})
    n_grid, y_grid = cells.count_grid()
    grid_dims = ("regimen", "severity", "site")
    grid_coords = {
        "regimen": list(cells.regimens),
        "severity": list(cells.severities),
        "site": list(cells.sites),
    }

    masked_r = xr.DataArray(
        [r in set(masked_regimens) for r in cells.regimens],
        dims="regimen",
        coords={"regimen": list(cells.regimens)},
    )
    masked_s = xr.DataArray(
        [s in set(masked_sites) for s in cells.sites],
        dims="site",
        coords={"site": list(cells.sites)},
    )
    no_contrast = is_ref | masked_r | bool(ref in set(masked_regimens))
    ds = xr.Dataset(
        {
            "p_cr_new_site": describe(new, hdi_prob),
            "p_cr_typical_site": describe(probs["typical_site"], hdi_prob),
            "p_cr_by_site": describe(probs["by_site"], hdi_prob),
            "prob_above": (new > thr).mean(SAMPLE_DIMS),
            "risk_difference": describe(rd, hdi_prob).where(~no_contrast),
            "odds_ratio": describe(ratio, hdi_prob).where(~no_contrast),
            "prob_better": (rd > 0).mean(SAMPLE_DIMS).where(~no_contrast),
            "rank_probability": _rank_probabilities(new, masked_regimens),
            "n_evaluable": xr.DataArray(n_grid, dims=grid_dims, coords=grid_coords),
            "n_responders": xr.DataArray(y_grid, dims=grid_dims, coords=grid_coords),
        }
    )
    if masked_regimens:
        for name in ("p_cr_new_site", "p_cr_typical_site", "p_cr_by_site", "prob_above"):
            ds[name] = ds[name].where(~masked_r)
    if masked_sites:
        ds["p_cr_by_site"] = ds["p_cr_by_site"].where(~masked_s)
    post = fit.posterior["posterior"].to_dataset()
    scales = [v for v in ("regimen_sd", "site_sd", "interaction_sd", "patient_sd") if v in post]
    if scales:
        ds["scale_parameters"] = xr.concat(
            [describe(post[v], hdi_prob) for v in scales],
            dim=xr.DataArray(scales, dims="parameter", name="parameter"),
        )

    if "covariate_effect" in post:
        ds["covariate_effect"] = describe(post["covariate_effect"], hdi_prob)
    if "cutpoint_gap" in post:
        ds["cutpoint_gap"] = describe(post["cutpoint_gap"], hdi_prob)

    if "exchangeability_weight" in post:
        ds["exchangeability_weight"] = post["exchangeability_weight"].mean(SAMPLE_DIMS)
        if masked_regimens:
            ds["exchangeability_weight"] = ds["exchangeability_weight"].where(~masked_r)

    descriptions = {
        "cutpoint_gap": "ordinal model: log-odds of CR or PR minus log-odds of CR (the same "
        "in every cell)",
        "covariate_effect": "log odds ratio of CR per SD of the covariate (probabilities "
        "above are at every covariate's mean)",
        "exchangeability_weight": "EXNEX: posterior probability that the regimen is "
        "exchangeable with the others (its prior probability is in the spec)",
        "p_cr_new_site": "CR probability at a new centre (site effect integrated out)",
        "p_cr_typical_site": "CR probability at a typical centre (site effect 0)",
        "p_cr_by_site": "CR probability at each observed centre",
        "prob_above": "posterior probability that p_cr_new_site exceeds the threshold",
        "risk_difference": f"p_cr_new_site minus that of {ref}",
        "odds_ratio": f"odds of CR (new centre) over those of {ref}",
        "prob_better": f"posterior probability of a higher CR probability than {ref}",
        "rank_probability": "probability of each rank within severity (1 = highest CR)",
        "n_evaluable": "evaluable episodes the fit used (aggregated counts)",
        "n_responders": "responders the fit used (aggregated counts)",
        "scale_parameters": "between-regimen, between-site (and other) SDs of log-odds",
    }
    for name, text in descriptions.items():
        if name in ds:
            ds[name].attrs["description"] = text

    diag = fit.diagnostics
    data = fit.data
    attrs: dict[str, object] = {
        "title": "scleromx_bayes posterior summary",
        "model_name": fit.spec.name,
        "model_spec_toml": fit.spec.to_toml(),
        "outcome": data.get("outcome", fit.cells.outcome.response),
        "ne_policy": data.get("ne_policy", fit.cells.outcome.ne),
        "reference_regimen": ref,
        "hdi_prob": hdi_prob,
        "data_source": str(data.get("source", "<cells>")),
        "data_kind": str(data.get("kind", "cells")),
        "data_fingerprint": str(data.get("fingerprint", "")),
        "n_patients": int(data.get("n_patients", -1)),
        "n_episodes": int(data.get("n_episodes", int(cells.n.sum()))),
        "sampler": fit.sampler["sampler"],
        "draws": fit.sampler["draws"],
        "tune": fit.sampler["tune"],
        "chains": fit.sampler["chains"],
        "target_accept": fit.sampler.get("target_accept", float("nan")),
        "seed": fit.seed,
        "regimen_prior_shift": json.dumps(fit.sampler.get("regimen_prior_shift", {})),
        **diag.to_attrs(),
        **provenance_attrs(fit.synthetic),
    }
    ds.attrs = attrs
    return ds
