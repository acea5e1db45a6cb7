"""Reading a sensitivity Dataset: does a regimen contrast, or a ranking, survive?

A scenario enters the range of a contrast only where that contrast is defined and
trusted there. Each row says which scenarios were left out, and why:

* ``undefined under the model``: complete pooling makes regimens equal by
  assumption, so the contrast is the premise, not a finding;
* ``regimen not in the data`` / ``reference not in the data``: dropped;
* ``failed diagnostics`` or ``error``: the fit is not to be trusted.

When the baseline itself is left out, whether the decision flips is "not assessable".
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["conclusions", "left_out_reason", "rank_stability"]

FLIPS_YES, FLIPS_NO, NOT_ASSESSABLE = "yes", "no", "not assessable"


def _baseline_name(sens: xr.Dataset) -> str:
    names = [str(s) for s in sens["scenario"].values]
    return "baseline" if "baseline" in names else names[0]


def left_out_reason(sens: xr.Dataset, scenario: str, regimen: str | None = None) -> str:
    """Why ``scenario`` does not enter the range of ``regimen``'s contrast ("" if it does)."""
    row = sens.sel(scenario=scenario)
    status = str(row["status"].values)
    if status != "ok":
        return "failed diagnostics" if status == "failed_diagnostics" else "error"
    if str(row["contrast_note"].values):
        return "undefined under the model"
    excluded = str(row["excluded_regimens"].values).split(";")
    if sens.attrs["reference_regimen"] in excluded:
        return "reference not in the data"
    if regimen is not None and regimen in excluded:
        return "regimen not in the data"
    return ""


def _range(values: xr.DataArray) -> tuple[float, float]:
    good = values.dropna("scenario")
    return (float(good.min()), float(good.max())) if good.size else (np.nan, np.nan)


def conclusions(sens: xr.Dataset, decision: float = 0.9) -> pd.DataFrame:
    """For each regimen contrast: P(better) and risk difference at baseline, their range
    over the scenarios where the contrast is defined and trusted, and whether the
    decision ``P(better) > decision`` flips.

    Parameters
    ----------
    sens : xarray.Dataset
        A result of :func:`run_sensitivity`.
    decision : float
        The decision threshold on P(better).

    Returns
    -------
    pandas.DataFrame
        One row per (regimen, severity) compared with the reference: ``p_better_*``
        and ``rd_*`` (baseline, min, max), ``flips`` ("yes", "no" or "not
        assessable"), ``flipping_scenarios``, ``scenarios_used`` and
        ``scenarios_left_out`` ("name (reason); ...").

    Examples
    --------
    ``sens`` from :func:`run_sensitivity`:

    >>> table = sxb.conclusions(sens, decision=0.9)
    >>> list(table.columns[:3]), set(table.flips) <= {"yes", "no", "not assessable"}
    (['regimen', 'severity', 'reference'], True)
    """
    ref = sens.attrs["reference_regimen"]
    base = _baseline_name(sens)
    names = [str(s) for s in sens["scenario"].values]
    rows = []
    for regimen in map(str, sens["regimen"].values):
        if regimen == ref:
            continue
        reasons = {s: left_out_reason(sens, s, regimen) for s in names}
        for severity in map(str, sens["severity"].values):
            pb = sens["prob_better"].sel(regimen=regimen, severity=severity)
            rd = sens["risk_difference"].sel(regimen=regimen, severity=severity, stat="mean")
            why = dict(reasons)
            for s in names:  # defined, trusted, but no estimate (no data in this severity)
                if not why[s] and np.isnan(float(pb.sel(scenario=s))):
                    why[s] = "no estimate"
            used = [s for s in names if not why[s]]
            pb_used, rd_used = pb.sel(scenario=used), rd.sel(scenario=used)
            baseline_ok = base in used
            p_base = float(pb.sel(scenario=base)) if baseline_ok else np.nan
            if baseline_ok:
                decided = p_base > decision
                flipping = [s for s in used if (float(pb.sel(scenario=s)) > decision) != decided]
                flips = FLIPS_YES if flipping else FLIPS_NO
            else:
                decided, flipping, flips = None, [], NOT_ASSESSABLE
            rows.append(
                {
                    "regimen": regimen,
                    "severity": severity,
                    "reference": ref,
                    "p_better_baseline": p_base,
                    "p_better_min": _range(pb_used)[0],
                    "p_better_max": _range(pb_used)[1],
                    "rd_baseline": float(rd.sel(scenario=base)) if baseline_ok else np.nan,
                    "rd_min": _range(rd_used)[0],
                    "rd_max": _range(rd_used)[1],
                    f"better_at_{decision:g}_baseline": decided,
                    "flips": flips,
                    "flipping_scenarios": ";".join(flipping),
                    "scenarios_used": len(used),
                    "scenarios_left_out": "; ".join(f"{s} ({why[s]})" for s in names if why[s]),
                }
            )
    return pd.DataFrame(rows)


def rank_stability(sens: xr.Dataset) -> pd.DataFrame:
    """Expected rank of each regimen (1 = highest CR) per scenario: baseline, range,
    and the share of scenarios in which it is ranked first most often. Scenarios
    where ranks are undefined or untrusted are left out, as in :func:`conclusions`.

    Parameters
    ----------
    sens : xarray.Dataset
        A result of :func:`run_sensitivity`.

    Returns
    -------
    pandas.DataFrame
        One row per regimen x severity.

    Examples
    --------
    ``sens`` from :func:`run_sensitivity`:

    >>> table = sxb.rank_stability(sens)
    >>> set(table.regimen) == set(sens.regimen.values)
    True
    """
    names = [str(s) for s in sens["scenario"].values]
    used = [s for s in names if not left_out_reason(sens, s)]
    base = _baseline_name(sens)
    rp = sens["rank_probability"]
    expected = (rp * rp["rank"]).sum("rank", min_count=1)
    best = rp.sel(rank=1)
    top = best.sel(scenario=used).fillna(-1).argmax("regimen")
    rows = []
    for severity in map(str, sens["severity"].values):
        top_s = top.sel(severity=severity)
        for i, regimen in enumerate(map(str, sens["regimen"].values)):
            e = expected.sel(regimen=regimen, severity=severity)
            lo, hi = _range(e.sel(scenario=used))
            at_base = base in used
            rows.append(
                {
                    "severity": severity,
                    "regimen": regimen,
                    "expected_rank_baseline": float(e.sel(scenario=base)) if at_base else np.nan,
                    "expected_rank_min": lo,
                    "expected_rank_max": hi,
                    "p_first_baseline": float(
                        best.sel(regimen=regimen, severity=severity, scenario=base)
                    )
                    if at_base
                    else np.nan,
                    "share_of_scenarios_most_likely_first": float((top_s == i).mean())
                    if top_s.size
                    else np.nan,
                    "scenarios_used": len(used),
                }
            )
    return pd.DataFrame(rows)
