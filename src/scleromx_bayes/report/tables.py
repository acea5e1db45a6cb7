"""The report's tables, each a ``pandas.DataFrame`` read from the same Datasets the
Python API returns (``fit.summary()``, ``run_sensitivity``, ``operating_characteristics``):
nothing is recomputed here, so a number in the report is the number in the Dataset.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr

from ..cohort import Cohort

__all__ = [
    "Table",
    "contrast_table",
    "data_by_centre",
    "data_by_regimen",
    "data_overview",
    "diagnostics_table",
    "probability_table",
    "rank_table",
]


@dataclass(frozen=True)
class Table:
    """One table of the report: its id (file name and HTML id), caption, the numbers
    (``frame``, full precision: what CSV carries) and how many decimals to show."""

    id: str
    caption: str
    frame: pd.DataFrame
    decimals: int = 3
    supplement: bool = False

    def shown(self) -> pd.DataFrame:
        """The frame as displayed: floats rounded to ``decimals``, NaN as an en dash."""
        out = self.frame.copy()
        for col in out.columns:
            if pd.api.types.is_float_dtype(out[col]):
                out[col] = out[col].map(lambda x: "–" if pd.isna(x) else f"{x:.{self.decimals}f}")
        return out


def data_overview(cohort: Cohort, summary: xr.Dataset) -> Table:
    """Patients, episodes, centres; evaluable episodes and NE handling; the outcome."""
    table = cohort.table
    ne = int((table["response"] == "NE").sum()) if cohort.kind == "episodes" else None
    if cohort.kind == "counts" and "n_ne" in table:
        ne = int(table["n_ne"].sum())
    outcome = {"cr": "complete response (CR)", "orr": "CR or partial response (CR+PR)"}
    policy = {
        "exclude": "excluded from the denominator",
        "failure": "counted as non-responders",
        "success": "counted as responders",
    }
    rows = [
        ("Patients", "–" if cohort.n_patients is None else str(cohort.n_patients)),
        ("Treatment episodes", str(cohort.n_episodes)),
        ("Evaluable episodes analysed", str(int(summary["n_evaluable"].sum()))),
        ("Responders analysed", str(int(summary["n_responders"].sum()))),
        ("Centres", str(len(cohort.sites))),
        ("Regimens", str(len(cohort.regimens))),
        ("Severity levels (reference first)", ", ".join(cohort.severities)),
        ("Not evaluable (NE) episodes", "not recorded" if ne is None else str(ne)),
        ("NE episodes were", policy[summary.attrs["ne_policy"]]),
        ("Outcome", outcome[summary.attrs["outcome"]]),
    ]
    frame = pd.DataFrame(rows, columns=["", "value"])
    return Table("data_overview", "The cohort analysed.", frame)


def data_by_regimen(cohort: Cohort, summary: xr.Dataset) -> Table:
    """Evaluable episodes and responders by regimen x severity (and NE episodes)."""
    n = summary["n_evaluable"].sum("site").to_series()
    y = summary["n_responders"].sum("site").to_series()
    frame = pd.DataFrame({"evaluable": n, "responders": y}).reset_index()
    if cohort.kind == "episodes":
        ne = (
            cohort.table.assign(ne=cohort.table["response"].eq("NE"))
            .groupby(["regimen", "severity"], observed=True)["ne"]
            .sum()
        )
        frame["not evaluable"] = [
            int(ne.get((r, k), 0)) for r, k in zip(frame["regimen"], frame["severity"], strict=True)
        ]
    frame = frame[frame["evaluable"] + frame.get("not evaluable", 0) > 0].reset_index(drop=True)
    outcome = "CR" if summary.attrs["outcome"] == "cr" else "CR or PR"
    return Table(
        "data_by_regimen",
        f"Evaluable episodes and responders ({outcome}) by regimen and severity.",
        frame.astype({"evaluable": int, "responders": int}),
    )


def data_by_centre(summary: xr.Dataset) -> Table:
    """Evaluable episodes / responders by centre and regimen (supplement)."""
    n = summary["n_evaluable"].sum("severity").transpose("site", "regimen").to_pandas()
    y = summary["n_responders"].sum("severity").transpose("site", "regimen").to_pandas()
    text = pd.DataFrame(
        np.where(n.values > 0, y.astype(str).values + "/" + n.astype(str).values, ""),
        index=n.index,
        columns=n.columns,
    ).reset_index()
    return Table(
        "data_by_centre",
        "Responders / evaluable episodes by centre and regimen (supplement).",
        text.rename(columns={"site": "centre"}),
        supplement=True,
    )


def probability_table(summary: xr.Dataset) -> Table:
    """CR probability at a new centre: mean and 95% HDI, per regimen x severity."""
    p = summary["p_cr_new_site"]
    prob = summary.attrs["hdi_prob"]
    frame = pd.DataFrame(
        {
            "regimen": np.repeat(p["regimen"].values, p.sizes["severity"]),
            "severity": np.tile(p["severity"].values, p.sizes["regimen"]),
            "evaluable": summary["n_evaluable"].sum("site").values.ravel().astype(int),
            "mean": p.sel(stat="mean").values.ravel(),
            f"{prob:.0%} HDI lower": p.sel(stat="hdi_lower").values.ravel(),
            f"{prob:.0%} HDI upper": p.sel(stat="hdi_upper").values.ravel(),
        }
    )
    return Table(
        "results_p_cr",
        f"Posterior CR probability at a new centre (centre effect integrated out): mean "
        f"and {prob:.0%} highest-density interval.",
        frame,
    )


def contrast_table(summary: xr.Dataset) -> Table:
    """Risk difference, odds ratio and P(better) against the reference."""
    ref = summary.attrs["reference_regimen"]
    rd, odds = summary["risk_difference"], summary["odds_ratio"]
    rows = []
    for r in map(str, rd["regimen"].values):
        if r == ref:
            continue
        for k in map(str, rd["severity"].values):
            a, o = rd.sel(regimen=r, severity=k), odds.sel(regimen=r, severity=k)
            rows.append(
                {
                    "regimen": r,
                    "severity": k,
                    "risk difference": float(a.sel(stat="mean")),
                    "RD lower": float(a.sel(stat="hdi_lower")),
                    "RD upper": float(a.sel(stat="hdi_upper")),
                    "odds ratio (median)": float(o.sel(stat="median")),
                    "OR lower": float(o.sel(stat="hdi_lower")),
                    "OR upper": float(o.sel(stat="hdi_upper")),
                    "P(better)": float(summary["prob_better"].sel(regimen=r, severity=k)),
                }
            )
    prob = summary.attrs["hdi_prob"]
    return Table(
        "results_contrasts",
        f"Each regimen against {ref} at a new centre: risk difference (mean, {prob:.0%} "
        f"HDI), odds ratio (median, {prob:.0%} HDI) and the posterior probability of a "
        "higher CR probability.",
        pd.DataFrame(rows),
    )


def rank_table(summary: xr.Dataset) -> Table:
    """P(best) and expected rank per regimen within each severity."""
    ranks = summary["rank_probability"]
    rank = ranks["rank"].values
    rows = []
    for k in map(str, ranks["severity"].values):
        for r in map(str, ranks["regimen"].values):
            probs = ranks.sel(severity=k, regimen=r).values
            rows.append(
                {
                    "severity": k,
                    "regimen": r,
                    "P(best)": float(probs[0]),
                    "expected rank": float((probs * rank).sum()),
                }
            )
    return Table(
        "results_ranks",
        "Rank probabilities at a new centre within each severity (rank 1: highest CR probability).",
        pd.DataFrame(rows),
        decimals=2,
    )


def diagnostics_table(summary: xr.Dataset, rhat_max: float, ess_min: float) -> Table:
    """R-hat, ESS and divergences with the thresholds they are judged against."""
    a = summary.attrs
    rows = [
        ("largest R-hat (rank-normalised)", a["diagnostics_max_rhat"], f"<= {rhat_max:g}"),
        ("smallest bulk ESS", a["diagnostics_min_ess_bulk"], f">= {ess_min:g}"),
        ("smallest tail ESS", a["diagnostics_min_ess_tail"], f">= {ess_min:g}"),
        ("divergent transitions", float(a["diagnostics_divergences"]), "0"),
    ]
    frame = pd.DataFrame(rows, columns=["diagnostic", "value", "threshold"])
    return Table("diagnostics", "Sampling diagnostics (ArviZ).", frame, decimals=3)
