"""Posterior summaries of a fit as one labelled ``xarray.Dataset``.

CR probability is reported three ways:

* ``p_cr_new_site``: for a patient treated at a centre not in the data, the site
  effect integrated out (quadrature per draw, exact to ~1e-12 at any SD);
  this is the figure to quote for "what to expect elsewhere";
* ``p_cr_typical_site``: at a centre with site effect 0;
* ``p_cr_by_site``: at each observed centre.

Every ``*_new_site``-scale quantity (thresholds, contrasts, ranks) uses the
new-site probability.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Protocol

import arviz as az
import numpy as np
import xarray as xr
from scipy.special import expit, ndtr

from .cohort import CellTable
from .diagnostics import Diagnostics
from .errors import SettingsError
from .model import effective_structure
from .model import names as v
from .provenance import DataProvenance, provenance_attrs
from .spec import ModelSpec

__all__ = [
    "STATS",
    "FittedModel",
    "choose_reference",
    "describe",
    "describe_together",
    "expected_expit",
    "posterior_probabilities",
    "summarise",
]


class FittedModel(Protocol):
    """What a summary reads from a fit (``scleromx_bayes.Fit`` is one)."""

    posterior: xr.DataTree
    spec: ModelSpec
    cells: CellTable
    data: DataProvenance
    seed: int
    diagnostics: Diagnostics
    prior_shift: Mapping[str, float]

    @property
    def sampler(self): ...  # SamplerSettings: has to_attrs()

    @property
    def synthetic(self) -> bool: ...


STATS = ("mean", "median", "sd", "hdi_lower", "hdi_upper")
SAMPLE_DIMS = ("chain", "draw")
_GH_NODES, _GH_WEIGHTS = np.polynomial.hermite.hermgauss(40)


def describe(draws: xr.DataArray, hdi_prob: float) -> xr.DataArray:
    """Mean, median, SD and HDI bounds over chain and draw, along a ``stat`` dim.

    Examples
    --------
    >>> draws = xr.DataArray(np.arange(8.0).reshape(2, 4), dims=("chain", "draw"))
    >>> describe(draws, 0.5).sel(stat=["mean", "median"]).values.tolist()
    [3.5, 3.5]
    """
    return describe_together({"x": draws}, hdi_prob)["x"]


def describe_together(
    draws: Mapping[str, xr.DataArray], hdi_prob: float
) -> dict[str, xr.DataArray]:
    """:func:`describe` of several arrays of draws in one NumPy pass.

    Every array's scalars are stacked along one axis, so the statistics and ArviZ's
    HDI run once for all of them: a summary describes seven arrays, and describing
    them one by one cost more in xarray's per-call overhead than in arithmetic. NaN
    draws are skipped in the mean, median and SD (as xarray's reductions do).
    """
    arrays = {name: d.transpose(*SAMPLE_DIMS, ...) for name, d in draws.items()}
    columns = [d.values.reshape(d.shape[0], d.shape[1], -1) for d in arrays.values()]
    stacked = np.concatenate(columns, axis=-1)
    flat = stacked.reshape(-1, stacked.shape[-1])
    if np.isnan(flat).any():
        mean, median = np.nanmean(flat, axis=0), np.nanmedian(flat, axis=0)
        sd = np.nanstd(flat, axis=0, ddof=1)
    else:
        mean, median, sd = flat.mean(axis=0), np.median(flat, axis=0), flat.std(axis=0, ddof=1)
    hdi = az.hdi(xr.DataArray(stacked, dims=(*SAMPLE_DIMS, "scalar")), prob=hdi_prob)
    bounds = hdi.transpose("scalar", "ci_bound")
    lower = bounds.sel(ci_bound="lower").values
    upper = bounds.sel(ci_bound="upper").values
    stats = np.stack([mean, median, sd, lower, upper], axis=-1)
    out, start = {}, 0
    for name, d in arrays.items():
        shape = d.shape[2:]
        size = int(np.prod(shape, dtype=int))
        coords = {k: c.variable for k, c in d.coords.items() if not set(c.dims) & set(SAMPLE_DIMS)}
        out[name] = xr.DataArray(
            stats[start : start + size].reshape(*shape, len(STATS)),
            dims=(*d.dims[2:], "stat"),
            coords={**coords, "stat": list(STATS)},
            name=d.name,
        )
        start += size
    return out


def posterior_probabilities(fit: FittedModel) -> dict[str, xr.DataArray]:
    """Draws of CR probability: ``new_site``, ``typical_site`` (regimen x severity)
    and ``by_site`` (regimen x severity x site)."""
    post = fit.posterior["posterior"].to_dataset()
    cells = fit.cells
    eta = post[v.TYPICAL_LOGIT]  # regimen x severity log-odds at a site with effect 0
    typical = xr.apply_ufunc(expit, eta)
    zero = xr.DataArray(0.0)
    site_sd = post[v.SITE_SD] if v.SITE_SD in post else zero
    patient_sd = post[v.PATIENT_SD] if v.PATIENT_SD in post else zero
    if v.SITE_SD in post or v.PATIENT_SD in post:
        # a new patient at a new centre: both random effects integrated out
        new_site = expected_expit(eta, np.sqrt(site_sd**2 + patient_sd**2))
    else:
        new_site = typical
    if v.SITE_EFFECT in post:
        by_site = eta + post[v.SITE_EFFECT]
        # at an observed centre, a new patient: the patient effect integrated out
        by_site = (
            expected_expit(by_site, patient_sd)
            if v.PATIENT_SD in post
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


def expected_expit(eta: xr.DataArray, sd: xr.DataArray) -> xr.DataArray:
    """E[expit(eta + sd * Z)], Z ~ N(0, 1), per draw, to about 1e-12 at any SD.

    Up to SD 1.3, 40-node Gauss-Hermite: sum_i w_i / sqrt(pi) * expit(eta + sd *
    sqrt(2) * x_i). Beyond it Gauss-Hermite loses accuracy fast (2e-4 at SD 3: the
    logistic's poles at i*pi lie ever closer in the standard-normal scale), so the
    integral is split into the probit part, exact, and the logistic's remainder,
    which decays like exp(-|x|) on either side of 0 and takes Gauss-Laguerre:
    Phi(eta / sd) + int_0^inf exp(-x) [phi_sd(-x - eta) - phi_sd(x - eta)] /
    (1 + exp(-x)) dx, with 64 nodes (``tests/test_summary_io.py`` checks both
    against adaptive quadrature).

    Examples
    --------
    >>> round(float(expected_expit(xr.DataArray(0.8), xr.DataArray(3.0))), 6)
    0.591052
    """
    return xr.apply_ufunc(_expected_expit_values, eta, sd)


_GH_SCALED_NODES = np.sqrt(2.0) * _GH_NODES
_GH_SCALED_WEIGHTS = _GH_WEIGHTS / np.sqrt(np.pi)
# SD above which Gauss-Laguerre on the remainder is the more accurate rule
# (measured: both within 2e-12 of adaptive quadrature there)
_WIDE_SD = 1.3
_GL_NODES, _GL_WEIGHTS = np.polynomial.laguerre.laggauss(64)


def _expected_expit_values(eta: np.ndarray, sd: np.ndarray) -> np.ndarray:
    # on arrays broadcast by apply_ufunc; each draw takes the rule its SD calls for
    eta, sd = np.broadcast_arrays(np.asarray(eta, float), np.asarray(sd, float))
    out = np.empty(eta.shape)
    wide = sd > _WIDE_SD
    out[~wide] = _hermite_expit(eta[~wide], sd[~wide])
    out[wide] = _split_expit(eta[wide], sd[wide])
    return out


def _hermite_expit(eta: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """E[expit(eta + sd Z)] by 40-node Gauss-Hermite (the nodes along a last axis:
    xarray's broadcasting of a node dim was half the time; summed by NumPy, not
    BLAS, whose kernels differ by CPU). The logistic is 1 / (1 + exp(-x)) in place:
    SciPy's ``expit`` took 1.7 times as long on these sizes, for the same numbers to
    the last bit or two."""
    values = eta[:, None] + sd[:, None] * _GH_SCALED_NODES
    np.negative(values, out=values)
    np.exp(values, out=values)  # inf far below 0: the reciprocal is then 0
    values += 1.0
    np.reciprocal(values, out=values)
    values *= _GH_SCALED_WEIGHTS
    return values.sum(axis=-1)


def _split_expit(eta: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """E[expit(eta + sd Z)] as Phi(eta / sd) plus Gauss-Laguerre on the remainder."""
    x, sd_, eta_ = _GL_NODES, sd[:, None], eta[:, None]

    def normal_pdf(u):
        return np.exp(-0.5 * (u / sd_) ** 2) / (sd_ * np.sqrt(2.0 * np.pi))

    remainder = (normal_pdf(-x - eta_) - normal_pdf(x - eta_)) / (1.0 + np.exp(-x))
    return ndtr(eta / sd) + (remainder * _GL_WEIGHTS).sum(axis=-1)


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


def choose_reference(regimens: Sequence[str], reference: str | None) -> str:
    """The reference regimen: as given, else HDIVig when present, else the first."""
    if reference is not None:
        if reference not in regimens:
            raise SettingsError(
                f"reference regimen {reference!r} is not in the data; regimens: {list(regimens)}"
            )
        return reference
    return "HDIVig" if "HDIVig" in regimens else regimens[0]


def summarise(
    fit: FittedModel,
    *,
    hdi_prob: float = 0.95,
    thresholds: Sequence[float] = (0.25, 0.5),
    reference: str | None = None,
    masked_sites: Sequence[str] = (),
    masked_regimens: Sequence[str] = (),
    probabilities: Mapping[str, xr.DataArray] | None = None,
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

    Parameters
    ----------
    fit : Fit
        The fit (anything with the ``FittedModel`` attributes).
    hdi_prob : float
        Probability of the highest-density intervals.
    thresholds : sequence of float
        CR probabilities for ``prob_above``.
    reference : str, optional
        The reference regimen of contrasts (default: the first).
    masked_sites, masked_regimens : sequence of str
        Levels left out of the data, reported as NaN.
    probabilities : mapping of str to DataArray, optional
        :func:`posterior_probabilities` of ``fit``, when already at hand (the
        draws of a reweighted scenario are the baseline's resampled, and so are
        theirs); computed from the fit when None.

    Returns
    -------
    xarray.Dataset
        The variables above, with attributes to reproduce the fit.

    Examples
    --------
    >>> ds = fit.summary(hdi_prob=0.9, thresholds=[0.5])
    >>> ds.attrs["hdi_prob"], ds.prob_above.threshold.values.tolist()
    (0.9, [0.5])
    """
    if not 0 < hdi_prob < 1:
        raise SettingsError(f"hdi_prob must be between 0 and 1, not {hdi_prob}")
    thresholds = [float(t) for t in thresholds]
    if any(not 0 < t < 1 for t in thresholds):
        raise SettingsError(f"thresholds must lie strictly between 0 and 1: {thresholds}")
    cells = fit.cells
    ref = choose_reference(cells.regimens, reference)
    probs = posterior_probabilities(fit) if probabilities is None else probabilities
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
    # under complete pooling every regimen is the same by assumption: a contrast or a
    # ranking is the premise, not a finding, and is reported as undefined (NaN)
    defined = effective_structure(fit.spec, cells).contrasts_defined
    no_contrast = is_ref | masked_r | bool(ref in set(masked_regimens)) | (not defined)
    post = fit.posterior["posterior"].to_dataset()
    scales = [name for name in v.SCALE_PARAMETERS if name in post]
    extras = [name for name in (v.COVARIATE_EFFECT, v.CUTPOINT_GAP) if name in post]
    described = describe_together(
        {
            "p_cr_new_site": new,
            "p_cr_typical_site": probs["typical_site"],
            "p_cr_by_site": probs["by_site"],
            "risk_difference": rd,
            "odds_ratio": ratio,
            **{name: post[name] for name in (*scales, *extras)},
        },
        hdi_prob,
    )
    ds = xr.Dataset(
        {
            "p_cr_new_site": described["p_cr_new_site"],
            "p_cr_typical_site": described["p_cr_typical_site"],
            "p_cr_by_site": described["p_cr_by_site"],
            "prob_above": (new > thr).mean(SAMPLE_DIMS),
            "risk_difference": described["risk_difference"].where(~no_contrast),
            "odds_ratio": described["odds_ratio"].where(~no_contrast),
            "prob_better": (rd > 0).mean(SAMPLE_DIMS).where(~no_contrast),
            "rank_probability": _rank_probabilities(new, masked_regimens).where(defined),
            "n_evaluable": xr.DataArray(n_grid, dims=grid_dims, coords=grid_coords),
            "n_responders": xr.DataArray(y_grid, dims=grid_dims, coords=grid_coords),
        }
    )
    if masked_regimens:
        for name in ("p_cr_new_site", "p_cr_typical_site", "p_cr_by_site", "prob_above"):
            ds[name] = ds[name].where(~masked_r)
    if masked_sites:
        ds["p_cr_by_site"] = ds["p_cr_by_site"].where(~masked_s)
    if scales:
        ds["scale_parameters"] = xr.concat(
            [described[name] for name in scales],
            dim=xr.DataArray(scales, dims="parameter", name="parameter"),
        )
    for name in extras:
        ds[name] = described[name]

    if v.EXCHANGEABILITY_WEIGHT in post:
        ds["exchangeability_weight"] = post[v.EXCHANGEABILITY_WEIGHT].mean(SAMPLE_DIMS)
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

    if not defined:
        note = "undefined: under complete pooling every regimen is the same by assumption"
        for name in ("risk_difference", "odds_ratio", "prob_better", "rank_probability"):
            ds[name].attrs["description"] = note
    attrs: dict[str, object] = {
        "title": "scleromx_bayes posterior summary",
        "model_name": fit.spec.name,
        "model_spec_toml": fit.spec.to_toml(),
        # the outcome is the cells' own: the one place it is set
        "outcome": cells.outcome.response,
        "ne_policy": cells.outcome.ne,
        "reference_regimen": ref,
        "contrasts_defined": int(defined),
        "hdi_prob": hdi_prob,
        **fit.data.to_attrs(),
        **fit.sampler.to_attrs(),
        "seed": fit.seed,
        "regimen_prior_shift": json.dumps(dict(fit.prior_shift)),
        **fit.diagnostics.to_attrs(),
        **provenance_attrs(fit.synthetic),
    }
    borrowing = getattr(fit, "borrowing", None)
    if borrowing is not None:
        _add_borrowing(ds, attrs, borrowing, fit.posterior["posterior"], fit.prior_shift)
    ds.attrs = attrs
    return ds


def _add_borrowing(ds, attrs, borrowing, posterior, shift) -> None:
    """Per regimen: the borrowed prior's ESS (three methods), the robust component's
    posterior weight, and in attrs the method, mixtures and studies used."""
    regimens = list(ds["regimen"].values)
    methods = ("elir", "moment", "morris")
    ess = np.full((len(regimens), len(methods)), np.nan)
    weight = np.full(len(regimens), np.nan)
    for r, mix in borrowing.mixtures.items():
        i = regimens.index(r)
        ess[i] = [mix.ess(m) for m in methods]
        if borrowing.settings.method == "robust_map":
            draws = posterior[v.REGIMEN_LOGIT].sel(regimen=r).values.ravel() - shift.get(r, 0.0)
            weight[i] = borrowing.robust_weight_posterior(r, draws)
    ds["prior_ess"] = xr.DataArray(
        ess,
        dims=("regimen", "ess_method"),
        coords={"regimen": regimens, "ess_method": list(methods)},
    )
    ds["prior_ess"].attrs["description"] = (
        "effective sample size (patients) of each borrowed regimen's prior: expected "
        "local information ratio, moment matching, Morita-Thall-Muller"
    )
    ds["robust_weight_posterior"] = ("regimen", weight)
    ds["robust_weight_posterior"].attrs["description"] = (
        "posterior probability that the regimen's log-odds comes from the robust "
        "(weakly informative) component of its robust MAP prior"
    )
    settings = borrowing.settings
    attrs.update(
        borrowing_method=settings.label(),
        borrowed_regimens=json.dumps(list(borrowing.external.regimens)),
        borrowing_studies=json.dumps(borrowing.citations),
        borrowing_mixtures=json.dumps({r: m.to_dict() for r, m in borrowing.mixtures.items()}),
        borrowing_settings=json.dumps(
            {
                "tau_prior_halfnormal_scale": settings.tau_prior,
                "intercept_prior": list(settings.intercept_prior),
                "robust_weight": settings.robust_weight,
                "robust_mean": settings.robust_mean,
                "a0": settings.a0,
                "seed": settings.seed,
            }
        ),
    )
    evidence = settings.evidence
    if evidence is not None:
        attrs.update(evidence_source=evidence.source, evidence_synthetic=int(evidence.synthetic))
        if evidence.synthetic:  # synthetic evidence makes the result so
            attrs.update(provenance_attrs(True))
