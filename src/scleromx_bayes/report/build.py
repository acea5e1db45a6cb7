"""``report``: one folder a clinician can publish from, made from existing results."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import xarray as xr

from ..borrowing import prior_data_conflict
from ..checks import compare as loo_compare
from ..checks import posterior_predictive_check, power_scaling
from ..cohort import Cohort
from ..diagnostics import ConvergenceCriteria
from ..fit import Fit
from ..io import check_writable, output_folder
from ..operating import oc_focus, oc_table
from ..plots import forest_plot, oc_plot, predictive_plot, sensitivity_forest
from ..provenance import SYNTHETIC_NOTE
from ..sensitivity import conclusions
from . import tables as t
from .render import Figure, Section, render
from .text import methods_paragraphs, results_paragraphs

__all__ = ["ReportFiles", "report"]


@dataclass(frozen=True)
class ReportFiles:
    """What :func:`report` wrote: the HTML and Markdown reports, each table as
    (CSV, LaTeX) and each figure as (PNG, SVG), by id.

    Examples
    --------
    >>> files = sxb.report(sxb.load_example(), fit, "report")
    >>> files.html.name, files.html.exists()
    ('report.html', True)
    """

    folder: Path
    html: Path
    markdown: Path
    tables: Mapping[str, tuple[Path, Path]]
    figures: Mapping[str, tuple[Path, Path]]


def _moved(paths: Mapping[str, tuple[Path, Path]], stage: Path, out: Path):
    return {k: tuple(out / p.relative_to(stage) for p in v) for k, v in paths.items()}


def report(
    cohort: Cohort,
    fit: Fit,
    out: str | Path,
    *,
    sensitivity: xr.Dataset | None = None,
    oc: xr.Dataset | None = None,
    compare: Mapping[str, Fit] | None = None,
    tipping: xr.Dataset | None = None,
    command: str = "",
    decision: float = 0.9,
    criteria: ConvergenceCriteria | None = None,
) -> ReportFiles:
    """Write a report of ``fit`` to the folder ``out``: ``report.html`` (self-contained:
    figures embedded, no network, no JavaScript), ``report.md``, ``tables/*.csv`` and
    ``*.tex`` (booktabs), ``figures/*.png`` (300 dpi) and ``*.svg``.

    Every number is read from ``fit.summary()`` and the other results passed in
    (nothing is refitted here; the power-scaling check adds ``log_prior`` and
    ``log_likelihood`` groups to ``fit.posterior``, as :func:`power_scaling` does).
    The sections: the data, a methods paragraph written from the spec, the results
    with a paragraph of their numbers, model checking (diagnostics with a red banner
    when a threshold is crossed, the posterior predictive check, power scaling, LOO
    when ``compare`` holds other fits of the same cohort), sensitivity
    (``sensitivity`` from :func:`run_sensitivity`, ``tipping`` from
    :func:`tipping_point`), borrowing (when the fit borrowed), operating
    characteristics (``oc``) and a reproducibility appendix. Synthetic data carry a
    banner in every section and on every figure. Files are staged and moved into
    place only when all are written.

    Parameters
    ----------
    cohort : Cohort
        The cohort ``fit`` was fitted to (for its episode and NE counts).
    fit : Fit
    out : path
        Output folder (created; an existing one is replaced only when all succeeded).
    sensitivity : xarray.Dataset, optional
        A result of :func:`run_sensitivity`: the sensitivity section.
    oc : xarray.Dataset, optional
        A result of :func:`operating_characteristics`: the OC section.
    compare : mapping of str to Fit, optional
        Other models fitted to the same cohort: PSIS-LOO comparison and methods text.
    tipping : xarray.Dataset, optional
        A result of :func:`tipping_point`.
    command : str
        The command that made the results, for the appendix.
    decision : float
        The P(better) threshold the text and the sensitivity table speak of.
    criteria : ConvergenceCriteria, optional
        The thresholds the diagnostics table shows (default R-hat 1.01, ESS 400).

    Returns
    -------
    ReportFiles

    Examples
    --------
    >>> import scleromx_bayes as sxb
    >>> cohort = sxb.load_example()
    >>> fit = sxb.fit(cohort, "base", draws=200, tune=200, chains=2, seed=1)
    >>> files = sxb.report(cohort, fit, "report")
    >>> files.html
    PosixPath('report/report.html')
    """
    out = check_writable(out)
    criteria = criteria or ConvergenceCriteria()
    summary = fit.summary()
    synthetic = bool(summary.attrs.get("synthetic"))
    sections = [
        _data_section(cohort, summary),
        _methods_section(fit, summary, compare, sensitivity, oc),
        _results_section(summary, decision),
        _checking_section(fit, summary, criteria, compare),
    ]
    if sensitivity is not None or tipping is not None:
        sections.append(_sensitivity_section(sensitivity, tipping, decision))
    if fit.borrowing is not None:
        sections.append(_borrowing_section(fit, summary))
    if oc is not None:
        sections.append(_oc_section(oc))
    sections.append(_appendix(fit, summary, sensitivity, command))
    context = {
        "title": "Complete-response probability by regimen: a Bayesian analysis",
        "synthetic": synthetic,
        "synthetic_note": SYNTHETIC_NOTE
        + " Every number and figure in this report comes from synthetic data.",
        "model_name": fit.spec.name,
        "created": summary.attrs["created"],
        "version": json.loads(summary.attrs["versions"]).get("scleromx-bayes", "?"),
        "diagnostics_problems": "; ".join(fit.diagnostics.problems),
    }
    with output_folder(out) as stage:
        table_paths, figure_paths = render(sections, stage, context)
    return ReportFiles(
        folder=out,
        html=out / "report.html",
        markdown=out / "report.md",
        tables=_moved(table_paths, stage, out),
        figures=_moved(figure_paths, stage, out),
    )


def _data_section(cohort: Cohort, summary: xr.Dataset) -> Section:
    s = Section("data", "Data")
    s.table(t.data_overview(cohort, summary))
    s.table(t.data_by_regimen(cohort, summary))
    s.heading("Supplement: by centre")
    s.table(t.data_by_centre(summary))
    return s


def _methods_section(fit, summary, compare, sensitivity, oc) -> Section:
    s = Section("methods", "Methods")
    compared = [fit.spec.name, *compare] if compare else []
    for text in methods_paragraphs(fit, summary, compared=compared, sensitivity=sensitivity, oc=oc):
        s.paragraph(text)
    return s


def _results_section(summary: xr.Dataset, decision: float) -> Section:
    s = Section("results", "Results")
    for text in results_paragraphs(summary, decision):
        s.paragraph(text)
    s.table(t.probability_table(summary))
    if int(summary.attrs.get("contrasts_defined", 1)):
        s.table(t.contrast_table(summary))
        s.table(t.rank_table(summary))
    s.figure(
        Figure(
            "forest",
            "CR probability at a new centre by regimen (mean and 95% HDI), one panel per severity.",
            lambda path, dpi: forest_plot(summary, path, dpi=dpi),
        )
    )
    return s


def _checking_section(fit, summary, criteria, compare) -> Section:
    s = Section("checking", "Model checking")
    if fit.diagnostics.problems:
        s.banner(
            "Sampling diagnostics crossed a threshold: " + "; ".join(fit.diagnostics.problems),
            "danger",
        )
    else:
        s.banner("Every sampling diagnostic is within its threshold.", "ok")
    s.table(t.diagnostics_table(summary, criteria.rhat_max, criteria.ess_min))
    ppc = posterior_predictive_check(fit, seed=fit.seed)
    worst = float(ppc["predictive_p_value"].min())
    s.paragraph(
        "Posterior predictive check: for each regimen x severity, the observed number of "
        "responders against counts replicated from the posterior on the same cells; the "
        f"smallest two-sided predictive p-value is {worst:.2f}."
    )
    s.figure(
        Figure(
            "ppc",
            "Posterior predictive check: observed CR proportion (dot) and 95% predictive "
            "interval (bar) per regimen and severity.",
            lambda path, dpi: predictive_plot(ppc, path, dpi=dpi),
        )
    )
    sensitivity_table = power_scaling(fit).reset_index()
    sensitivity_table = sensitivity_table.rename(columns={sensitivity_table.columns[0]: "variable"})
    flagged = sensitivity_table[sensitivity_table["diagnosis"].astype(str) != "✓"]
    s.paragraph(
        "Power-scaling sensitivity [power_scaling]: how much the posterior of each parameter "
        "moves when the prior or the likelihood is raised to a power near 1 (cumulative "
        "Jensen-Shannon distance; above 0.05 is flagged). "
        + (
            "Flagged: "
            + "; ".join(f"{r.variable} ({r.diagnosis})" for r in flagged.itertuples())
            + "."
            if len(flagged)
            else "No parameter is flagged."
        )
    )
    s.table(
        t.Table(
            "power_scaling",
            "Power-scaling sensitivity to the prior and to the likelihood (ArviZ psense_summary).",
            sensitivity_table,
        )
    )
    if compare:
        table = loo_compare({fit.spec.name: fit, **dict(compare)})
        frame = table.reset_index().rename(columns={"index": "model"})
        keep = [
            c
            for c in (
                "model",
                "rank",
                "elpd",
                "p",
                "elpd_diff",
                "se",
                "dse",
                "weight",
                "n_high_pareto_k",
            )
            if c in frame.columns
        ]
        s.table(
            t.Table(
                "loo",
                "PSIS-LOO comparison (expected log predictive density; higher is better).",
                frame[keep],
                decimals=2,
            )
        )
    return s


def _sensitivity_section(sens, tipping, decision: float) -> Section:
    s = Section("sensitivity", "Sensitivity analyses")
    if sens is not None:
        table = conclusions(sens, decision=decision)
        cols = [
            "regimen",
            "severity",
            "p_better_baseline",
            "p_better_min",
            "p_better_max",
            "flips",
            "flipping_scenarios",
            "scenarios_left_out",
        ]
        flips = table[table["flips"] == "yes"]
        s.paragraph(
            f"Across {sens.sizes['scenario']} scenarios, the decision P(better) > "
            f"{decision:g} flips for {len(flips)} of {len(table)} regimen x severity "
            "contrasts"
            + (
                ": " + "; ".join(f"{r.regimen} ({r.severity})" for r in flips.itertuples())
                if len(flips)
                else ""
            )
            + ". Scenarios where a contrast is undefined or a fit failed its diagnostics "
            "are left out of its range, with the reason."
        )
        s.table(
            t.Table(
                "sensitivity_conclusions",
                f"P(better) at baseline and its range over the scenarios; whether the "
                f"decision (> {decision:g}) flips, and which scenarios were left out and why.",
                table[[c for c in cols if c in table.columns]],
            )
        )
        severity = str(
            sens["n_evaluable"].isel(scenario=0).sum(("regimen", "site")).idxmax("severity").values
        )
        s.figure(
            Figure(
                "sensitivity_forest",
                f"Risk difference against {sens.attrs['reference_regimen']} in every "
                f"scenario ({severity} disease).",
                lambda path, dpi: sensitivity_forest(sens, path, severity=severity, dpi=dpi),
            )
        )
    if tipping is not None:
        a = tipping.attrs
        frame = pd.DataFrame(
            {
                "value": tipping["value"].values,
                "P(better)": tipping["prob_better"].values,
                "risk difference": tipping["risk_difference"].values,
            }
        )
        s.paragraph(
            f"Tipping point of {a['regimen']} against {a['reference_regimen']} in "
            f"{a['severity']} disease: {a['message']}."
        )
        s.table(
            t.Table(
                "tipping_point",
                f"Tipping point for {a.get('regimen', '')}: P(better) as the prior grows "
                f"more skeptical ({a.get('kind', '')}).",
                frame,
            )
        )
    return s


def _borrowing_section(fit, summary) -> Section:
    s = Section("borrowing", "Borrowing from published series")
    borrowing = fit.borrowing
    rows = []
    n = summary["n_evaluable"].sum(("site", "severity"))
    y = summary["n_responders"].sum(("site", "severity"))
    for regimen, mixture in borrowing.mixtures.items():
        ess = summary["prior_ess"].sel(regimen=regimen)
        conflict = prior_data_conflict(
            mixture,
            int(y.sel(regimen=regimen)),
            int(n.sel(regimen=regimen)),
            robust_component=-1 if borrowing.external.method == "robust_map" else None,
        )
        rows.append(
            {
                "regimen": regimen,
                "prior ESS (elir)": float(ess.sel(ess_method="elir")),
                "prior ESS (moment)": float(ess.sel(ess_method="moment")),
                "prior ESS (Morita)": float(ess.sel(ess_method="morris")),
                "robust weight, posterior": float(
                    summary["robust_weight_posterior"].sel(regimen=regimen)
                ),
                "conflict tail probability": conflict.tail_probability,
                "studies": "; ".join(borrowing.citations.get(regimen, [])),
            }
        )
        s.paragraph(f"{regimen}: {conflict.message}")
    s.table(
        t.Table(
            "borrowing",
            "What each borrowed prior adds (effective sample size in patients), how much "
            "the robust component took over, and prior-data conflict.",
            pd.DataFrame(rows),
            decimals=2,
        )
    )
    return s


def _oc_section(oc: xr.Dataset) -> Section:
    s = Section("operating", "Operating characteristics of the decision rule")
    regimen, severity = oc_focus(oc)
    table = oc_table(oc)
    table = table[table["p_go"].notna() & (table["design_n"] > 0)]
    cols = [
        "spec",
        "truth",
        "rule",
        "regimen",
        "severity",
        "design_n",
        "true_risk_difference",
        "p_go",
        "p_go_mcse",
        "bias_p_cr",
        "coverage_p_cr",
    ]
    s.paragraph(
        f"{oc.attrs['n_sims']} cohorts of this design were simulated under each truth and "
        "fitted by each model. Under 'all equal' the probability of 'go' is the "
        "false-positive rate; under a truth where a regimen is better, it is the power. "
        "Monte Carlo standard errors are given beside each."
    )
    shown = table[cols].rename(
        columns={
            "spec": "model",
            "design_n": "n",
            "true_risk_difference": "true difference",
            "p_go": "P(go)",
            "p_go_mcse": "MC SE",
            "bias_p_cr": "bias of p",
            "coverage_p_cr": "coverage of p",
        }
    )
    s.table(
        t.Table(
            "operating_characteristics",
            "P(go) per model, truth and rule (with its Monte Carlo SE), and the bias and "
            "95% interval coverage of the CR probability at a new centre.",
            shown.reset_index(drop=True),
        )
    )
    s.figure(
        Figure(
            "oc",
            f"P(go) against the true difference in CR probability, {regimen} ({severity} "
            "disease), one line per model; bars are ±2 Monte Carlo SEs.",
            lambda path, dpi: oc_plot(oc, path, regimen=regimen, severity=severity, dpi=dpi),
        )
    )
    return s


def _appendix(fit, summary, sens, command: str) -> Section:
    s = Section("appendix", "Reproducibility appendix")
    a = summary.attrs
    s.paragraph(
        f"Seed {a['seed']}; data fingerprint {a['data_fingerprint']}; sampler {a['sampler']} "
        f"({a['chains']} chains, {a['tune']} warm-up, {a['draws']} draws, target acceptance "
        f"{a['target_accept']:g})."
    )
    s.heading("Command")
    s.code(command or "(made from Python: scleromx_bayes.report)")
    s.heading("Model specification (TOML)")
    s.code(fit.spec.to_toml())
    if sens is not None:
        s.heading("Sensitivity grid (TOML)")
        s.code(str(sens.attrs.get("grid_toml", "")))
    s.heading("Software versions")
    s.code(json.dumps(json.loads(a["versions"]), indent=2))
    return s
