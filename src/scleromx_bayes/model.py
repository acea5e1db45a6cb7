"""Build the PyMC model for a cell table and a spec.

For cell c = (regimen r, site s, severity k) with n_c evaluable episodes and y_c
responders::

    y_c ~ Binomial(n_c, p_c)
    logit p_c = regimen_logit[r] + severity_effect[k] + site_effect[s]

``regimen_logit`` is pooled as the spec says (none / partial / complete);
random effects are non-centred. ``regimen_prior_shift`` (data, zero by default)
moves a regimen's prior log-odds, e.g. against it in a tipping-point analysis.
Every prior hyper-parameter and both count vectors are ``pm.Data``, so one
compiled model serves every prior variant and
every data subset of the same shape (a left-out site is a block of ``n = 0``
cells, which add nothing to the likelihood).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from .cohort import CellTable
from .spec import ModelSpec, Prior

__all__ = [
    "build_model",
    "data_values",
    "effective_structure",
    "hyperparameter_values",
    "ordinal_counts",
]


def _data_name(prior_name: str, param: str) -> str:
    return f"prior__{prior_name}__{param}"


def hyperparameter_values(spec: ModelSpec, cells: CellTable) -> dict[str, np.ndarray]:
    """The ``pm.Data`` values a spec sets, keyed by data-variable name."""
    out = {}
    for name in effective_structure(spec, cells)["priors"]:
        for param, value in spec.prior(name).params.items():
            out[_data_name(name, param)] = np.asarray(value, dtype=np.float64)
    return out


def effective_structure(spec: ModelSpec, cells: CellTable) -> dict:
    """The structure actually built: a factor with one level drops its term."""
    pooling = spec.regimen_pooling
    if pooling in ("partial", "exnex") and len(cells.regimens) == 1:
        pooling = "complete"  # a between-regimen SD is not defined by one regimen
    site = spec.site_effect and len(cells.sites) > 1
    severity = spec.severity_effect and len(cells.severities) > 1
    # an interaction needs both factors to vary (and a severity term to depart from)
    interaction = spec.regimen_severity_interaction and severity and len(cells.regimens) > 1
    if spec.patient_effect and not cells.patients:
        raise ValueError(
            "the spec has a patient effect but the cells were aggregated without "
            "patients: build them with fit.cells_for(cohort, spec)"
        )
    if tuple(spec.covariates) != tuple(cells.covariates):
        raise ValueError(
            f"the spec's covariates {list(spec.covariates)} differ from the cells' "
            f"{list(cells.covariates)}: build them with fit.cells_for(cohort, spec)"
        )
    # a per-patient effect is identified only by patients seen in more than one cell
    patient = spec.patient_effect and len(cells.frame) > len(cells.patients) > 1
    covariates = tuple(spec.covariates)
    ordinal = spec.response_scale == "ordinal"
    if ordinal and "n_pr" not in cells.frame:
        raise ValueError(
            "the ordinal model needs partial responses: an episode table, or a "
            "counts table with an n_pr column"
        )
    # the priors are the spec's own list once the dropped terms are switched off
    built = replace(
        spec,
        regimen_pooling=pooling,
        site_effect=site,
        severity_effect=severity,
        regimen_severity_interaction=interaction,
        patient_effect=patient,
    )
    priors = built.required_priors()
    return {
        "regimen_pooling": pooling,
        "site_effect": site,
        "severity_effect": severity,
        "interaction": interaction,
        "patient_effect": patient,
        "covariates": covariates,
        "ordinal": ordinal,
        "priors": priors,
    }


def _prior_rv(rv_name: str, prior_name: str, prior: Prior, **kwargs) -> pt.TensorVariable:
    params = {p: pm.Data(_data_name(prior_name, p), np.float64(v)) for p, v in prior.params.items()}
    if prior.dist == "GammaPrecision":
        # sample the precision as BUGS states it; the SD is what the model uses
        precision = pm.Gamma(f"{rv_name}_precision", **params, **kwargs)
        return pm.Deterministic(rv_name, 1.0 / pt.sqrt(precision), **kwargs)
    return getattr(pm, prior.dist)(rv_name, **params, **kwargs)


def _exnex_regimens(spec: ModelSpec, mu, shift, n_regimens: int) -> pt.TensorVariable:
    """EXNEX (Neuenschwander et al. 2016): each regimen's log-odds is, with prior
    probability p, exchangeable, N(mu, regimen_sd), and otherwise nonexchangeable,
    N(m, s) of its own. The yes/no state is summed out (a two-component normal
    mixture per regimen); ``exchangeability_weight`` is its posterior probability
    given each draw, so its posterior mean is P(exchangeable | data)."""
    tau = _prior_rv("regimen_sd", "regimen_sd", spec.prior("regimen_sd"))
    nex = {
        k: pm.Data(_data_name("nonexchangeable", k), np.float64(v))
        for k, v in spec.prior("nonexchangeable").params.items()
    }
    p_ex = pm.Data(
        _data_name("exchangeability", "p"), np.float64(spec.prior("exchangeability").params["p"])
    )
    ones = pt.ones(n_regimens)
    mus = pt.stack([ones * mu + shift, ones * nex["mu"] + shift], axis=-1)
    sigmas = pt.stack([ones * tau, ones * nex["sigma"]], axis=-1)
    weights = pt.stack([p_ex, 1.0 - p_ex])
    # centred: a mixture has no non-centred form; small cohorts may want target_accept 0.95
    theta = pm.NormalMixture("regimen_logit", w=weights, mu=mus, sigma=sigmas, dims="regimen")
    log_ex = pt.log(p_ex) + pm.logp(pm.Normal.dist(mus[:, 0], sigmas[:, 0]), theta)
    log_nex = pt.log1p(-p_ex) + pm.logp(pm.Normal.dist(mus[:, 1], sigmas[:, 1]), theta)
    pm.Deterministic(
        "exchangeability_weight", pt.exp(log_ex - pt.logaddexp(log_ex, log_nex)), dims="regimen"
    )
    return theta


def build_model(cells: CellTable, spec: ModelSpec) -> pm.Model:
    """Return the ``pymc.Model`` for ``cells`` under ``spec``.

    Parameters
    ----------
    cells : CellTable
        From :meth:`Cohort.cells`.
    spec : ModelSpec
        From :func:`load_spec`.

    Examples
    --------
    >>> import scleromx_bayes as sxb
    >>> cohort = sxb.load_example()
    >>> model = sxb.build_model(cohort.cells(), sxb.load_spec("base"))
    >>> sorted(model.coords)[:3]
    ['cell', 'regimen', 'severity']
    """
    eff = effective_structure(spec, cells)
    coords = {
        "regimen": list(cells.regimens),
        "site": list(cells.sites),
        "severity": list(cells.severities),
        "cell": np.arange(len(cells.frame)),
    }
    if eff["severity_effect"]:
        coords["severity_vs_reference"] = list(cells.severities[1:])
    if eff["patient_effect"]:
        coords["patient"] = list(cells.patients)
    if eff["covariates"]:
        coords["covariate"] = list(eff["covariates"])
    if eff["ordinal"]:
        coords["category"] = ["NR", "PR", "CR"]
    r_idx, s_idx, k_idx = cells.index("regimen"), cells.index("site"), cells.index("severity")

    with pm.Model(coords=coords) as model:
        n = pm.Data("n_evaluable", cells.n, dims="cell")

        shift = pm.Data("regimen_prior_shift", np.zeros(len(cells.regimens)), dims="regimen")
        pooling = eff["regimen_pooling"]
        if pooling == "none":
            own = _prior_rv(
                "regimen_own_logit", "intercept", spec.prior("intercept"), dims="regimen"
            )
            regimen_logit = pm.Deterministic("regimen_logit", own + shift, dims="regimen")
        else:
            intercept = _prior_rv("intercept", "intercept", spec.prior("intercept"))
            if pooling == "partial":
                regimen_sd = _prior_rv("regimen_sd", "regimen_sd", spec.prior("regimen_sd"))
                z = pm.Normal("regimen_z", 0.0, 1.0, dims="regimen")
                regimen_logit = pm.Deterministic(
                    "regimen_logit", intercept + shift + regimen_sd * z, dims="regimen"
                )
            elif pooling == "exnex":
                regimen_logit = _exnex_regimens(spec, intercept, shift, len(cells.regimens))
            else:
                regimen_logit = pm.Deterministic("regimen_logit", intercept + shift, dims="regimen")
        # log-odds at a typical site (site effect 0) for every regimen x severity: the
        # one quantity summaries, checks and validation read, whatever the structure
        typical = pt.shape_padright(regimen_logit) + pt.zeros((1, len(cells.severities)))
        if eff["severity_effect"]:
            severity_shift = _prior_rv(
                "severity_shift",
                "severity_effect",
                spec.prior("severity_effect"),
                dims="severity_vs_reference",
            )
            severity_effect = pm.Deterministic(
                "severity_effect", pt.concatenate([pt.zeros(1), severity_shift]), dims="severity"
            )
            typical = typical + severity_effect[None, :]
        if eff["interaction"]:
            # regimen-specific departures from the common severity shift, pooled toward 0;
            # the reference severity carries none, so regimen_logit stays its log-odds there
            interaction_sd = _prior_rv(
                "interaction_sd", "interaction_sd", spec.prior("interaction_sd")
            )
            u = pm.Normal("interaction_z", 0.0, 1.0, dims=("regimen", "severity_vs_reference"))
            interaction = pm.Deterministic(
                "interaction",
                pt.concatenate([pt.zeros((len(cells.regimens), 1)), interaction_sd * u], axis=1),
                dims=("regimen", "severity"),
            )
            typical = typical + interaction
        if eff["ordinal"]:
            # logit P(CR or better) = logit P(CR) + gap, the same gap in every cell
            gap = _prior_rv("cutpoint_gap", "cutpoint_gap", spec.prior("cutpoint_gap"))
            # the summarised outcome: CR (0) or CR+PR (1); data, so one compiled model
            # serves both outcome definitions
            at_orr = pm.Data("outcome_is_orr", np.float64(cells.outcome.response == "orr"))
            typical = typical + at_orr * gap
        typical_logit = pm.Deterministic("typical_logit", typical, dims=("regimen", "severity"))
        eta = typical_logit[r_idx, k_idx]

        if eff["site_effect"]:
            site_sd = _prior_rv("site_sd", "site_sd", spec.prior("site_sd"))
            w = pm.Normal("site_z", 0.0, 1.0, dims="site")
            site_effect = pm.Deterministic("site_effect", site_sd * w, dims="site")
            eta = eta + site_effect[s_idx]

        if eff["patient_effect"]:
            patient_sd = _prior_rv("patient_sd", "patient_sd", spec.prior("patient_sd"))
            v = pm.Normal("patient_z", 0.0, 1.0, dims="patient")
            patient_effect = pm.Deterministic("patient_effect", patient_sd * v, dims="patient")
            eta = eta + patient_effect[cells.index("patient")]

        if eff["covariates"]:
            # standardised values are part of the layout (the cells' keys), not data
            x = cells.frame[list(eff["covariates"])].to_numpy(dtype=np.float64)
            beta = _prior_rv(
                "covariate_effect",
                "covariate_effect",
                spec.prior("covariate_effect"),
                dims="covariate",
            )
            eta = eta + pt.dot(pt.as_tensor(x), beta)

        if eff["ordinal"]:
            log_odds_cr = eta - at_orr * gap
            p_cr = pm.math.sigmoid(log_odds_cr)
            p_pr_or_better = pm.math.sigmoid(log_odds_cr + gap)
            probs = pt.stack([1.0 - p_pr_or_better, p_pr_or_better - p_cr, p_cr], axis=-1)
            counts = pm.Data("response_counts", ordinal_counts(cells), dims=("cell", "category"))
            pm.Multinomial("responses", n=n, p=probs, observed=counts, dims=("cell", "category"))
        else:
            y = pm.Data("n_responders", cells.y, dims="cell")
            pm.Binomial("responders", n=n, logit_p=eta, observed=y, dims="cell")
    return model


def ordinal_counts(cells: CellTable) -> np.ndarray:
    """Counts of NR, PR and CR per cell (columns in that order), from n, y and n_pr."""
    pr = cells.frame["n_pr"].to_numpy(dtype=np.int64)
    cr = cells.y - (pr if cells.outcome.response == "orr" else 0)
    return np.stack([cells.n - cr - pr, pr, cr], axis=-1)


def data_values(cells: CellTable, spec: ModelSpec, shift: np.ndarray) -> dict[str, np.ndarray]:
    """Every ``pm.Data`` value of the model for these cells and spec: what a compiled
    model of the same layout needs to fit other counts or priors."""
    eff = effective_structure(spec, cells)
    out = {
        "n_evaluable": cells.n,
        "regimen_prior_shift": shift,
        **hyperparameter_values(spec, cells),
    }
    if eff["ordinal"]:
        out["response_counts"] = ordinal_counts(cells)
        out["outcome_is_orr"] = np.float64(cells.outcome.response == "orr")
    else:
        out["n_responders"] = cells.y
    return out
