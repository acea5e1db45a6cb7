"""The report's sentences: a methods paragraph written from the spec and the fit,
and a results paragraph with the summary's numbers filled in. Every number comes
from the objects passed in; nothing is typed by hand."""

from __future__ import annotations

import json

import xarray as xr

from ..model import effective_structure
from ..spec import ModelSpec

__all__ = ["REFERENCES", "methods_paragraphs", "results_paragraphs"]

REFERENCES = {
    "pymc": "Abril-Pla O, Andreani V, Carroll C, et al. PyMC: a modern, and comprehensive "
    "probabilistic programming framework in Python. PeerJ Computer Science 2023;9:e1516.",
    "nutpie": "Seyboldt A, et al. nutpie: a fast implementation of the No-U-Turn sampler "
    "(software), https://github.com/pymc-devs/nutpie.",
    "nuts": "Hoffman MD, Gelman A. The No-U-Turn sampler. Journal of Machine Learning "
    "Research 2014;15:1593-1623.",
    "arviz": "Kumar R, Carroll C, Hartikainen A, Martin O. ArviZ a unified library for "
    "exploratory analysis of Bayesian models in Python. Journal of Open Source Software "
    "2019;4(33):1143.",
    "rhat": "Vehtari A, Gelman A, Simpson D, Carpenter B, Bürkner PC. Rank-normalization, "
    "folding, and localization: an improved R-hat for assessing convergence of MCMC. "
    "Bayesian Analysis 2021;16(2):667-718.",
    "loo": "Vehtari A, Gelman A, Gabry J. Practical Bayesian model evaluation using "
    "leave-one-out cross-validation and WAIC. Statistics and Computing 2017;27:1413-1432.",
    "exnex": "Neuenschwander B, Wandel S, Roychoudhury S, Bailey S. Robust exchangeability "
    "designs for early phase clinical trials with multiple strata. Pharmaceutical "
    "Statistics 2016;15(2):123-134.",
    "map": "Neuenschwander B, Capkun-Niggli G, Branson M, Spiegelhalter DJ. Summarizing "
    "historical information on controls in clinical trials. Clinical Trials "
    "2010;7(1):5-18.",
    "robust_map": "Schmidli H, Gsteiger S, Roychoudhury S, et al. Robust meta-analytic-"
    "predictive priors in clinical trials with historical control information. "
    "Biometrics 2014;70(4):1023-1032.",
    "elir": "Neuenschwander B, Weber S, Schmidli H, O'Hagan A. Predictively consistent "
    "prior effective sample sizes. Biometrics 2020;76(2):578-587.",
    "power_scaling": "Kallioinen N, Paananen T, Bürkner PC, Vehtari A. Detecting and "
    "diagnosing prior and likelihood sensitivity with power-scaling. Statistics and "
    "Computing 2024;34:57.",
    "simulation": "Morris TP, White IR, Crowther MJ. Using simulation studies to evaluate "
    "statistical methods. Statistics in Medicine 2019;38(11):2074-2102.",
}

_POOLING = {
    "partial": "The regimens' log-odds were partially pooled: drawn from a common normal "
    "distribution whose mean and between-regimen SD were estimated from the data, so a "
    "regimen seen in few episodes is shrunk towards the others.",
    "none": "Each regimen had its own log-odds with an independent prior (no pooling).",
    "complete": "All regimens shared one log-odds (complete pooling); regimen contrasts "
    "are then zero by assumption and not reported.",
    "exnex": "Regimens were modelled by an exchangeable–nonexchangeable (EXNEX) mixture "
    "[exnex]: each regimen is exchangeable with the others (partially pooled) with a "
    "prior probability, and otherwise has its own log-odds.",
}
_NE = {
    "exclude": "were excluded from the denominator",
    "failure": "were counted as non-responders",
    "success": "were counted as responders",
}
_PRIOR_NAMES = {
    "intercept": "mean log-odds of CR (reference severity, typical centre)",
    "regimen_sd": "between-regimen SD of the log-odds",
    "site_sd": "between-centre SD of the log-odds",
    "severity_effect": "log odds ratio of each severity against the reference",
    "interaction_sd": "SD of the regimen-by-severity interaction",
    "patient_sd": "between-patient SD of the log-odds",
    "nonexchangeable": "log-odds of a nonexchangeable regimen",
    "exchangeability": "prior probability of exchangeability",
    "covariate_effect": "log odds ratio per SD of each covariate",
    "cutpoint_gap": "gap between the CR-or-PR and CR cutpoints",
}


def _prior_text(name: str, prior) -> str:
    params = ", ".join(f"{k} = {v:g}" for k, v in prior.params.items())
    label = _PRIOR_NAMES.get(name, name.replace("_", " "))
    text = f"the {label} had a {prior.dist}({params}) prior"
    if prior.rationale:
        text += f" ({prior.rationale.rstrip('.')})"
    return text


def methods_paragraphs(fit, summary: xr.Dataset, *, compared=(), sensitivity=None, oc=None):
    """The methods section as paragraphs (plain text; citations as [key])."""
    spec: ModelSpec = fit.spec
    eff = effective_structure(spec, fit.cells)
    cells = fit.cells
    outcome = "complete response (CR)" if summary.attrs["outcome"] == "cr" else "CR or PR"
    terms = ["a regimen effect"]
    if eff.severity_effect:
        terms.append(f"a severity effect (reference: {cells.severities[0]})")
    if eff.site_effect:
        terms.append("a normally distributed centre random effect")
    if eff.interaction:
        terms.append("a partially pooled regimen-by-severity interaction")
    if eff.patient_effect:
        terms.append("a patient random effect")
    if eff.covariates:
        terms.append(f"standardised covariates ({', '.join(eff.covariates)})")
    if spec.response_scale == "ordinal":
        likelihood = (
            "Responses (no response < partial response < complete response) in each "
            "regimen x centre x severity cell were modelled as multinomial with a "
            "proportional-odds cumulative logit, the linear predictor the sum of "
        )
    else:
        likelihood = (
            f"The number of episodes with {outcome} among the evaluable episodes of each "
            "regimen x centre x severity cell was modelled as binomial with a logit link, "
            "the log-odds the sum of "
        )
    first = (
        f"{likelihood}{', '.join(terms[:-1])} and {terms[-1]}."
        if len(terms) > 1
        else f"{likelihood}{terms[0]}."
    )
    first += f" Not-evaluable episodes {_NE[summary.attrs['ne_policy']]}."
    first += " " + _POOLING[eff.regimen_pooling]
    # the priors of the terms actually built (a dropped term's prior is not used)
    priors = [_prior_text(n, p) for n, p in spec.priors.items() if n in eff.priors]
    prior_text = "Priors were weakly informative and stated on the probability scale: "
    prior_text += "; ".join(priors) + "."
    versions = json.loads(summary.attrs["versions"])
    a = summary.attrs
    sampler = (
        f"nutpie {versions.get('nutpie', '?')} [nutpie]"
        if a["sampler"] == "nutpie"
        else f"PyMC's NUTS sampler {versions.get('pymc', '?')}"
    )
    sampling = (
        f"The model was written in PyMC {versions.get('pymc', '?')} [pymc] and its posterior "
        f"sampled with the No-U-Turn sampler [nuts] as implemented in {sampler}: "
        f"{a['chains']} chains of {a['tune']} warm-up and {a['draws']} sampling iterations, "
        f"target acceptance {a['target_accept']:g}, random seed {a['seed']}. Convergence was "
        "checked with the rank-normalised R-hat and bulk and tail effective sample sizes "
        f"[rhat], computed with ArviZ {versions.get('arviz', '?')} [arviz], and divergent "
        "transitions were counted. The CR probability at a new centre integrates the "
        "centre effect out of each posterior draw (Gauss–Hermite quadrature); contrasts "
        f"are against {a['reference_regimen']}, and intervals are {a['hdi_prob']:.0%} "
        "highest-density intervals. The analysed data have the SHA-256 fingerprint "
        f"{a['data_fingerprint'].removeprefix('sha256:')[:16]}… (full value in the "
        "appendix)."
    )
    out = [first, prior_text, sampling]
    if fit.borrowing is not None:
        method = fit.borrowing.settings.label() if fit.borrowing.settings else "map"
        out.append(
            f"Published series were borrowed from by {method}: a binomial-logit "
            "random-effects meta-analysis of each regimen's series gave the "
            "meta-analytic-predictive (MAP) prior [map] of its log-odds, approximated by a "
            "normal mixture; a robust version adds a weakly informative component "
            "[robust_map]. Prior effective sample sizes are by the expected local "
            "information ratio [elir]."
        )
    if compared:
        out.append(
            "Models (" + ", ".join(compared) + ") were compared by Pareto-smoothed "
            "importance-sampling leave-one-out cross-validation [loo]."
        )
    if sensitivity is not None:
        out.append(
            f"Sensitivity analyses refitted the model under {sensitivity.sizes['scenario']} "
            f"scenarios (grid '{sensitivity.attrs['grid_name']}': priors, pooling, outcome "
            "definition, not-evaluable episodes, leave one centre out and others); a "
            "decision was said to flip when P(better) crossed the decision threshold in a "
            "scenario where the contrast is defined and the fit passed its diagnostics."
        )
    if oc is not None:
        out.append(
            f"Operating characteristics were estimated from {oc.attrs['n_sims']} cohorts "
            "simulated on the study's own design under each stated truth, fitted by each "
            "model; each is given with its Monte Carlo standard error [simulation]."
        )
    return out


def results_paragraphs(summary: xr.Dataset, decision: float = 0.9) -> list[str]:
    """The results in sentences, every number read from the summary."""
    ref = summary.attrs["reference_regimen"]
    n = summary["n_evaluable"].sum("site")
    p = summary["p_cr_new_site"]
    prob = summary.attrs["hdi_prob"]
    spec_pooling = summary.attrs.get("model_name", "")
    ref_parts = []
    for k in map(str, p["severity"].values):
        s = p.sel(regimen=ref, severity=k)
        ref_parts.append(
            f"{s.sel(stat='mean'):.2f} ({prob:.0%} HDI {s.sel(stat='hdi_lower'):.2f}–"
            f"{s.sel(stat='hdi_upper'):.2f}) in {k} disease"
        )
    first = (
        f"Under model '{spec_pooling}', the CR probability with {ref} at a new centre was "
        + "; ".join(ref_parts)
        + "."
    )
    out = [first]
    if not int(summary.attrs.get("contrasts_defined", 1)):
        out.append("Regimen contrasts are undefined under complete pooling.")
        return out
    sentences, above = [], []
    for r in map(str, p["regimen"].values):
        if r == ref:
            continue
        k = str(n.sel(regimen=r)["severity"].values[int(n.sel(regimen=r).values.argmax())])
        pb = float(summary["prob_better"].sel(regimen=r, severity=k))
        rd = summary["risk_difference"].sel(regimen=r, severity=k)
        sentences.append(
            f"the posterior probability that {r} gives a higher CR rate than {ref} in {k} "
            f"disease was {pb:.2f} (risk difference {rd.sel(stat='mean'):+.2f}, {prob:.0%} "
            f"HDI {rd.sel(stat='hdi_lower'):+.2f} to {rd.sel(stat='hdi_upper'):+.2f}; "
            f"{int(n.sel(regimen=r, severity=k))} evaluable episodes)"
        )
        if pb > decision:
            above.append(f"{r} ({k})")
    out.append("In the severity where each regimen was given most, " + "; ".join(sentences) + ".")
    if above:
        out.append(
            f"P(better than {ref}) exceeded {decision:g} for {', '.join(above)}; read it with "
            "the sensitivity analyses and the operating characteristics, which say how often "
            "such a finding arises by chance on this design."
        )
    else:
        out.append(f"No regimen's P(better than {ref}) exceeded {decision:g}.")
    return out
