"""Plots written to PNG: the CR-probability forest plot (regimen x severity), the
sensitivity forest, and predictive checks.

Figures are made with matplotlib's object API (``Figure``), not ``pyplot``: no
backend is chosen or changed, so importing this module leaves a user's
interactive matplotlib session as it was.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from scipy import stats

from .io import atomic_path
from .provenance import SYNTHETIC_NOTE

__all__ = [
    "borrowing_plot",
    "forest_plot",
    "new_figure",
    "oc_plot",
    "predictive_plot",
    "save_figure",
    "sensitivity_forest",
]


def new_figure(rows: int, columns: int, figsize: tuple[float, float], **kwargs):
    """A figure and its grid of axes (always 2-D), without pyplot."""
    fig = Figure(figsize=figsize)
    axes = fig.subplots(rows, columns, squeeze=False, **kwargs)
    return fig, axes


FORMATS = ("png", "svg", "pdf")


def save_figure(fig: Figure, path: str | Path, title: str, *, synthetic: bool, dpi: int) -> Path:
    """Title the figure (saying so when the data are synthetic) and write it
    atomically in the format its path names: PNG (at ``dpi``), SVG or PDF."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".") or "png"
    if fmt not in FORMATS:
        raise ValueError(f"a figure is written as {', '.join(FORMATS)}, not {path.suffix!r}")
    if synthetic:
        title += f"\n{SYNTHETIC_NOTE}"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=fmt, dpi=dpi)
    return path


def forest_plot(
    summary: xr.Dataset,
    path: str | Path,
    *,
    variable: str = "p_cr_new_site",
    dpi: int = 110,
) -> Path:
    """Forest plot of CR probability (mean and HDI) by regimen, one panel per severity.

    Parameters
    ----------
    summary : xarray.Dataset
        A result of :meth:`Fit.summary`.
    path : str or Path
        Where to write the figure (PNG, SVG or PDF by suffix).
    variable : str
        The summary variable to plot.
    dpi : int
        Resolution of raster output.

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> sxb.forest_plot(fit.summary(), "forest.png").name
    'forest.png'
    """
    da = summary[variable]
    severities = list(da["severity"].values)
    regimens = list(da["regimen"].values)
    fig, axes = new_figure(
        1, len(severities), (4.2 * len(severities), 0.5 * len(regimens) + 1.8), sharey=True
    )
    prob = summary.attrs.get("hdi_prob", 0.95)
    for ax, sev in zip(axes[0], severities, strict=True):
        d = da.sel(severity=sev)
        ypos = range(len(regimens))[::-1]
        for y, reg in zip(ypos, regimens, strict=True):
            s = d.sel(regimen=reg)
            ax.plot(
                [float(s.sel(stat="hdi_lower")), float(s.sel(stat="hdi_upper"))],
                [y, y],
                color="tab:blue",
                lw=2,
            )
            ax.plot(float(s.sel(stat="mean")), y, "o", color="tab:blue")
        ax.set_yticks(list(ypos), regimens)
        ax.set_xlim(0, 1)
        ax.axvline(0.5, color="grey", lw=0.5, ls=":")
        ax.set_title(str(sev))
        ax.set_xlabel(f"P(CR), mean and {prob:.0%} HDI")
    title = f"CR probability at a new centre - model '{summary.attrs.get('model_name', '?')}'"
    return save_figure(fig, path, title, synthetic=bool(summary.attrs.get("synthetic")), dpi=dpi)


def sensitivity_forest(
    sens: xr.Dataset,
    path: str | Path,
    *,
    severity: str | None = None,
    variable: str = "risk_difference",
    dpi: int = 100,
) -> Path:
    """Forest plot of a contrast (or CR probability) in every scenario: one panel per
    regimen, one row per scenario; the baseline in black, failed scenarios hollow.

    Parameters
    ----------
    sens : xarray.Dataset
        A result of :func:`run_sensitivity`.
    path : str or Path
        Where to write the figure.
    severity : str, optional
        The severity level plotted (default: the first).
    variable : str
        The summary variable plotted.
    dpi : int
        Resolution of raster output.

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> sxb.sensitivity_forest(sens, "sensitivity.png", severity="nonsevere").name
    'sensitivity.png'
    """
    severity = severity or str(sens["severity"].values[0])
    ref = sens.attrs.get("reference_regimen")
    regimens = [
        r
        for r in sens["regimen"].values
        if not (variable in ("risk_difference", "odds_ratio") and r == ref)
    ]
    scenarios = list(sens["scenario"].values)
    fig, axes = new_figure(
        1, len(regimens), (2.6 * len(regimens) + 2.5, 0.28 * len(scenarios) + 1.8), sharey=True
    )
    ok = (sens["status"] == "ok").values
    ypos = list(range(len(scenarios)))[::-1]
    for ax, reg in zip(axes[0], regimens, strict=True):
        d = sens[variable].sel(regimen=reg, severity=severity)
        for y, scen, good in zip(ypos, scenarios, ok, strict=True):
            s = d.sel(scenario=scen)
            colour = "black" if scen == "baseline" else "tab:blue"
            ax.plot(
                [float(s.sel(stat="hdi_lower")), float(s.sel(stat="hdi_upper"))],
                [y, y],
                color=colour,
                lw=1.5,
                alpha=1.0 if good else 0.4,
            )
            ax.plot(
                float(s.sel(stat="mean")), y, "o", color=colour, mfc=colour if good else "white"
            )
        if variable == "risk_difference":
            ax.axvline(0, color="grey", lw=0.7, ls="--")
        ax.set_title(str(reg), fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
    axes[0][0].set_yticks(ypos, scenarios, fontsize=8)
    label = {
        "risk_difference": f"risk difference vs {ref}",
        "p_cr_new_site": "CR probability at a new centre",
    }.get(variable, variable)
    title = f"Sensitivity: {label} ({severity}); hollow = failed diagnostics"
    return save_figure(fig, path, title, synthetic=bool(sens.attrs.get("synthetic")), dpi=dpi)


def predictive_plot(check: xr.Dataset, path: str | Path, *, dpi: int = 100) -> Path:
    """Observed CR proportion per regimen x severity (dot) against the predictive
    interval of the proportion (bar), one panel per severity; PNG.

    Parameters
    ----------
    check : xarray.Dataset
        A result of :func:`posterior_predictive_check` or :func:`prior_predictive_check`.
    path : str or Path
        Where to write the figure.
    dpi : int
        Resolution of raster output.

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> check = sxb.posterior_predictive_check(fit, seed=1)
    >>> sxb.predictive_plot(check, "ppc.png").name
    'ppc.png'
    """
    severities = list(check["severity"].values)
    regimens = list(check["regimen"].values)
    fig, axes = new_figure(
        1, len(severities), (4.2 * len(severities), 0.5 * len(regimens) + 1.8), sharey=True
    )
    for ax, sev in zip(axes[0], severities, strict=True):
        ypos = list(range(len(regimens)))[::-1]
        for y, reg in zip(ypos, regimens, strict=True):
            c = check.sel(regimen=reg, severity=sev)
            n = int(c["n_evaluable"])
            if n == 0:
                continue
            ax.plot(
                [float(c["predicted_lower"]) / n, float(c["predicted_upper"]) / n],
                [y, y],
                color="tab:blue",
                lw=4,
                alpha=0.5,
            )
            ax.plot(float(c["observed_responders"]) / n, y, "o", color="black")
            ax.text(
                1.02,
                y,
                f"{int(c['observed_responders'])}/{n}",
                va="center",
                fontsize=7,
                transform=ax.get_yaxis_transform(),
            )
        ax.set_yticks(ypos, regimens)
        ax.set_xlim(0, 1)
        ax.set_title(str(sev))
        ax.set_xlabel("CR proportion")
    title = (
        f"{check.attrs['kind'].capitalize()} check: observed CR proportion (dot) and "
        f"{check.attrs['interval']:.0%} predictive interval (bar)"
    )
    return save_figure(fig, path, title, synthetic=bool(check.attrs.get("synthetic")), dpi=dpi)


def borrowing_plot(
    prior,
    path: str | Path,
    *,
    robust=None,
    cohort: tuple[int, int] | None = None,
    title: str = "",
    synthetic: bool = False,
    dpi: int = 150,
) -> Path:
    """The borrowed prior (and its robust version) against the cohort's likelihood,
    as densities of the CR probability.

    ``prior`` and ``robust`` are mixtures (``NormalMixture`` or ``BetaMixture``);
    ``cohort`` is (CRs, patients). The likelihood is scaled to a density (a
    Beta(y + 1, n - y + 1)) so the three curves share an axis.

    Parameters
    ----------
    prior : NormalMixture or BetaMixture
        The borrowed prior (e.g. ``MAPPrior.mixture``).
    path : str or Path
        Where to write the figure (PNG, SVG or PDF by suffix).
    robust : NormalMixture or BetaMixture, optional
        Its robust version, drawn beside it.
    cohort : tuple of int, optional
        The cohort's (CRs, patients) for this regimen, drawn as a scaled likelihood.
    title : str
        Figure title.
    synthetic : bool
        Mark the figure as made from synthetic data.
    dpi : int
        Resolution of raster output.

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> from scleromx_bayes.borrowing import example_evidence_path
    >>> ev = sxb.read_evidence(example_evidence_path())
    >>> prior = sxb.map_prior(ev, "HDIVig", draws=500, tune=500, chains=2, seed=1)
    >>> path = sxb.borrowing_plot(prior.mixture, "borrowing.png", robust=prior.robustify(0.2),
    ...                           cohort=(13, 31), synthetic=True)
    >>> path.name
    'borrowing.png'
    """
    p = np.linspace(0.001, 0.999, 999)
    logit = np.log(p / (1 - p))
    fig, axes = new_figure(1, 1, (6.4, 3.8))
    ax = axes[0][0]

    def density(mixture) -> np.ndarray:  # of the probability, from the log-odds
        return np.exp(mixture.log_density(logit)) / (p * (1 - p))

    ax.plot(p, density(prior), color="C0", label="borrowed (MAP) prior")
    if robust is not None:
        ax.plot(p, density(robust), color="C0", linestyle="--", label="robust MAP prior")
    if cohort is not None:
        y, n = cohort
        lik = stats.beta.pdf(p, y + 1, n - y + 1)
        ax.plot(p, lik, color="C3", label=f"cohort likelihood ({y}/{n} CR)")
    ax.set_xlabel("CR probability")
    ax.set_ylabel("density")
    ax.set_xlim(0, 1)
    ax.legend(frameon=False, fontsize=8)
    return save_figure(fig, path, title or "Borrowed prior", synthetic=synthetic, dpi=dpi)


def oc_plot(
    oc: xr.Dataset,
    path: str | Path,
    *,
    regimen: str,
    severity: str,
    decision: str = "go",
    dpi: int = 150,
) -> Path:
    """P(go) against the true difference in CR probability (new centre) of
    ``regimen`` over the reference, one line per model and one panel per rule; bars
    are +-2 Monte Carlo SEs. Each truth of the OC study is one point; under "all
    equal" the height is the false-positive rate, elsewhere the power.

    Parameters
    ----------
    oc : xarray.Dataset
        A result of :func:`operating_characteristics`.
    path : str or Path
        Where to write the figure (PNG, SVG or PDF by suffix).
    regimen, severity : str
        The comparison to plot (see :func:`oc_focus`).
    decision : {"go", "consider", "no_go"}
        Which decision's probability to plot.
    dpi : int
        Resolution of raster output.

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> sxb.oc_plot(oc, "oc.png", regimen="DNS rescue", severity="severe").name
    'oc.png'
    """
    rules = list(oc["rule"].values)
    # wide enough for the title even with one panel
    fig, axes = new_figure(1, len(rules), (max(7.0, 4.6 * len(rules)), 3.8))
    at = {"regimen": regimen, "severity": severity}
    x = oc["true_value"].sel(estimand="risk_difference", **at).isel(spec=0)
    order = np.argsort(x.values)
    for ax, rule in zip(axes[0], rules, strict=True):
        for i, spec in enumerate(oc["spec"].values):
            p = oc["p_decision"].sel(spec=spec, rule=rule, decision=decision, **at)
            se = oc["p_decision_mcse"].sel(spec=spec, rule=rule, decision=decision, **at)
            ax.errorbar(
                x.values[order],
                p.values[order],
                yerr=2 * se.values[order],
                marker="o",
                ms=4,
                capsize=2,
                color=f"C{i}",
                label=str(spec),
            )
        ax.axhline(0.1, color="grey", lw=0.5, ls=":")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel(f"true CR difference, {regimen} vs {oc.attrs['reference_regimen']}")
        ax.set_ylabel(f"P({decision.replace('_', '-')})")
        ax.set_title(str(rule), fontsize=9)
        ax.legend(frameon=False, fontsize=8)
    n = int(oc.attrs["n_sims"])
    title = f"Operating characteristics: {regimen}, {severity} disease ({n} simulated cohorts each)"
    return save_figure(fig, path, title, synthetic=True, dpi=dpi)
