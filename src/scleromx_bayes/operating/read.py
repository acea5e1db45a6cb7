"""Reading an OC Dataset: one tidy table, one row per spec x truth x rule x regimen
x severity, in the words of a methods section."""

from __future__ import annotations

import json

import pandas as pd
import xarray as xr

__all__ = ["oc_focus", "oc_table"]


def oc_table(oc: xr.Dataset) -> pd.DataFrame:
    """The operating characteristics as a table (the CLI writes it as ``oc_table.csv``).

    Columns: ``spec, truth, rule, regimen, severity, design_n``, the truth's
    ``true_p_cr`` and ``true_risk_difference`` (at a new centre), ``p_go``,
    ``p_go_mcse``, ``p_consider``, ``p_no_go``, then ``bias``, ``rmse``,
    ``coverage`` and ``interval_width`` of ``p_cr`` (suffix ``_p_cr``) and of the risk
    difference (``_rd``) with their MCSEs, and the simulations used / failing
    diagnostics / in error.

    Parameters
    ----------
    oc : xarray.Dataset
        A result of :func:`operating_characteristics`.

    Returns
    -------
    pandas.DataFrame
        One row per spec x truth x rule x regimen x severity.

    Examples
    --------
    >>> rows = sxb.oc_table(oc).query("truth == 'all equal'")
    >>> rows.dropna(subset="p_go").regimen.nunique() == oc.sizes["regimen"] - 1  # not the reference
    True
    """
    go = oc["p_decision"]
    cols = {
        "p_go": go.sel(decision="go"),
        "p_go_mcse": oc["p_decision_mcse"].sel(decision="go"),
        "p_consider": go.sel(decision="consider"),
        "p_no_go": go.sel(decision="no_go"),
    }
    for estimand, suffix in (("p_cr", "p_cr"), ("risk_difference", "rd")):
        for name in ("bias", "rmse", "coverage", "interval_width"):
            for tail in ("", "_mcse"):
                cols[f"{name}{tail}_{suffix}"] = oc[f"{name}{tail}"].sel(estimand=estimand)
    frame = xr.Dataset(
        {
            k: x.drop_vars("decision", errors="ignore").drop_vars("estimand", errors="ignore")
            for k, x in cols.items()
        }
    ).to_dataframe()
    frame = frame[list(cols)].reset_index()
    truth = oc["true_value"].isel(spec=0, drop=True)
    true = pd.DataFrame(
        {
            "true_p_cr": truth.sel(estimand="p_cr").to_series(),
            "true_risk_difference": truth.sel(estimand="risk_difference").to_series(),
        }
    ).reset_index()
    counts = (
        xr.Dataset({k: oc[k] for k in ("n_used", "n_failed_diagnostics", "n_errors")})
        .to_dataframe()[["n_used", "n_failed_diagnostics", "n_errors"]]
        .reset_index()
    )
    design = oc["design_n"].to_series().rename("design_n").reset_index()
    frame = (
        frame.merge(design, on=["regimen", "severity"])
        .merge(true, on=["truth", "regimen", "severity"])
        .merge(counts, on=["spec", "truth"])
    )
    first = [
        "spec",
        "truth",
        "rule",
        "regimen",
        "severity",
        "design_n",
        "true_p_cr",
        "true_risk_difference",
    ]
    # rows in the Dataset's own order (the merges above sort by label)
    for dim in first[:5]:
        frame[dim] = pd.Categorical(frame[dim], categories=list(oc[dim].values), ordered=True)
    frame = frame.sort_values(first[:5]).reset_index(drop=True)
    frame[first[:5]] = frame[first[:5]].astype(str)
    return frame[first + [c for c in frame.columns if c not in first]]


def oc_focus(oc: xr.Dataset) -> tuple[str, str]:
    """The regimen an OC plot is about (the first one a truth makes better, else the
    non-reference one with most patients) and its best-represented severity.

    Parameters
    ----------
    oc : xarray.Dataset
        A result of :func:`operating_characteristics`.

    Returns
    -------
    tuple of str
        (regimen, severity).

    Examples
    --------
    >>> sxb.oc_focus(oc)
    ('DNS rescue', 'severe')
    """
    ref = oc.attrs["reference_regimen"]
    named = [r for t in json.loads(oc.attrs["truths"]) for r in t.get("delta", {})]
    n = oc["design_n"]
    if named:
        regimen = named[0]
    else:
        others = n.drop_sel(regimen=ref).sum("severity")
        regimen = str(others["regimen"].values[int(others.values.argmax())])
    row = n.sel(regimen=regimen)
    return regimen, str(row["severity"].values[int(row.values.argmax())])
