"""Plots written to PNG: the CR-probability forest plot (regimen x severity)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402
import xarray as xr  # noqa: E402

from .io import atomic_path  # noqa: E402
from .summary import SYNTHETIC_NOTE  # noqa: E402

__all__ = ["forest_plot"]


def forest_plot(summary: xr.Dataset, path: str | Path, *,
                variable: str = "p_cr_new_site") -> Path:
    """Forest plot of CR probability (mean and HDI) by regimen, one panel per severity.

    Examples
    --------
    >>> forest_plot(fit.summary(), "forest.png")  # doctest: +SKIP
    """
    da = summary[variable]
    severities = list(da["severity"].values)
    regimens = list(da["regimen"].values)
    fig, axes = plt.subplots(1, len(severities), figsize=(4.2 * len(severities), 0.5 * len(regimens) + 1.8),
                             sharey=True, squeeze=False)
    prob = summary.attrs.get("hdi_prob", 0.95)
    for ax, sev in zip(axes[0], severities, strict=True):
        d = da.sel(severity=sev)
        ypos = range(len(regimens))[::-1]
        for y, reg in zip(ypos, regimens, strict=True):
            s = d.sel(regimen=reg)
            ax.plot([float(s.sel(stat="hdi_lower")), float(s.sel(stat="hdi_upper"))], [y, y],
                    color="tab:blue", lw=2)
            ax.plot(float(s.sel(stat="mean")), y, "o", color="tab:blue")
        ax.set_yticks(list(ypos), regimens)
        ax.set_xlim(0, 1)
        ax.axvline(0.5, color="grey", lw=0.5, ls=":")
        ax.set_title(str(sev))
        ax.set_xlabel(f"P(CR), mean and {prob:.0%} HDI")
    title = f"CR probability at a new centre - model '{summary.attrs.get('model_name', '?')}'"
    if summary.attrs.get("synthetic"):
        title += f"\n{SYNTHETIC_NOTE}"
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
