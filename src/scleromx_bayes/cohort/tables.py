"""A validated cohort, an outcome definition, and the cells a model is fitted to.

A :class:`Cohort` is what the readers return (episodes or published counts);
:meth:`Cohort.cells` applies an :class:`OutcomeDefinition` and aggregates to a
:class:`CellTable`, one row per regimen x site x severity cell. Patient
identifiers never leave a :class:`Cohort`: cells split by patient carry
pseudonymous codes (``patient 0001``, ...) in order of first appearance, and the
mapping lives in memory only.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Literal

import numpy as np
import pandas as pd

from .labels import collapse
from .problems import CohortError, Problem

__all__ = ["CellTable", "Cohort", "OutcomeDefinition"]


@dataclass(frozen=True)
class OutcomeDefinition:
    """What counts as a response, and what a not-evaluable (NE) episode becomes.

    Parameters
    ----------
    response : {"cr", "orr"}
        ``"cr"``: complete response only. ``"orr"``: overall response, CR or PR.
    ne : {"exclude", "failure", "success"}
        ``"exclude"`` drops NE episodes from the denominator (default);
        ``"failure"`` counts them as non-responders (worst case);
        ``"success"`` counts them as responders (best case).

    Examples
    --------
    >>> OutcomeDefinition("orr", ne="failure").label
    'orr/ne=failure'
    """

    response: Literal["cr", "orr"] = "cr"
    ne: Literal["exclude", "failure", "success"] = "exclude"

    def __post_init__(self) -> None:
        if self.response not in ("cr", "orr"):
            raise ValueError(f"outcome must be 'cr' or 'orr', not {self.response!r}")
        if self.ne not in ("exclude", "failure", "success"):
            raise ValueError(
                f"NE policy must be 'exclude', 'failure' or 'success', not {self.ne!r}"
            )

    @property
    def label(self) -> str:
        """A short name of the outcome and NE policy, e.g. ``"cr/ne=exclude"``."""
        return f"{self.response}/ne={self.ne}"


@dataclass(frozen=True)
class CellTable:
    """Aggregated counts, one row per regimen x site x severity cell.

    The cell set is every combination present in the cohort (before the outcome
    definition is applied), so that changing the outcome, the NE policy or leaving
    a site out changes counts, never the shape. ``n`` is the number of evaluable
    episodes, ``y`` the number of responders.

    Examples
    --------
    >>> cells = sxb.load_example().cells()
    >>> int(cells.n.sum()) == len(cells.frame) or int(cells.n.sum()) > 0
    True
    >>> list(cells.frame.columns[:3])
    ['regimen', 'site', 'severity']
    """

    frame: pd.DataFrame  # regimen, site, severity, [patient], [covariates], n, y, [n_pr]
    regimens: tuple[str, ...]
    sites: tuple[str, ...]
    severities: tuple[str, ...]
    outcome: OutcomeDefinition
    # by patient: one cell per patient x regimen x site x severity (episode level)
    patients: tuple[str, ...] = ()
    # standardised covariate columns of frame (mean 0, SD 1 over the cohort's episodes)
    covariates: tuple[str, ...] = ()

    _COUNTS = ("n", "y", "n_pr")  # everything else in frame identifies a cell

    @property
    def key_columns(self) -> list[str]:
        """The columns that identify a cell (everything but the counts)."""
        return [c for c in self.frame.columns if c not in self._COUNTS]

    @property
    def n(self) -> np.ndarray:
        """Evaluable episodes per cell."""
        return self.frame["n"].to_numpy(dtype=np.int64)

    @property
    def y(self) -> np.ndarray:
        """Responders per cell."""
        return self.frame["y"].to_numpy(dtype=np.int64)

    @cached_property
    def _codes(self) -> dict[str, np.ndarray]:
        # per table, filled by index(): a fit asks for the same codes a dozen times,
        # and pd.Categorical takes milliseconds (a tenth of a small warm fit)
        return {}

    def index(self, factor: str) -> np.ndarray:
        """Integer codes of ``factor`` ('regimen', 'site', 'severity', 'patient') per
        cell (read-only)."""
        if factor not in self._codes:
            levels = {
                "regimen": self.regimens,
                "site": self.sites,
                "severity": self.severities,
                "patient": self.patients,
            }[factor]
            codes = pd.Categorical(self.frame[factor], categories=list(levels)).codes
            codes = codes.astype(np.int64)
            codes.setflags(write=False)
            self._codes[factor] = codes
        return self._codes[factor]

    def with_counts(
        self, n: np.ndarray, y: np.ndarray, n_pr: np.ndarray | None = None
    ) -> CellTable:
        """Same cells, new counts (used for leave-out and simulated data). Partial
        responses are replaced by ``n_pr`` when given; otherwise, where the table has
        them, kept, and zeroed where ``n = 0``."""
        n, y = np.asarray(n, dtype=np.int64), np.asarray(y, dtype=np.int64)
        frame = self.frame.assign(n=n, y=y)
        if n_pr is not None:
            frame["n_pr"] = np.asarray(n_pr, dtype=np.int64)
        elif "n_pr" in frame:
            frame["n_pr"] = np.where(n == 0, 0, frame["n_pr"].to_numpy())
        table = replace(self, frame=frame)
        table._codes.update(self._codes)  # the same cells: the same codes
        return table

    def count_grid(self) -> tuple[np.ndarray, np.ndarray]:
        """``(n, y)`` as arrays over regimen x severity x site, zero where no cell."""
        shape = (len(self.regimens), len(self.severities), len(self.sites))
        n, y = np.zeros(shape, np.int64), np.zeros(shape, np.int64)
        r, k, s = self.index("regimen"), self.index("severity"), self.index("site")
        np.add.at(n, (r, k, s), self.n)
        np.add.at(y, (r, k, s), self.y)
        return n, y


@dataclass(frozen=True)
class Cohort:
    """A validated cohort, from an episode table or a counts table.

    Use :func:`read_cohort`, :func:`read_counts`, :func:`read_data` or
    :func:`scleromx_bayes.load_example` to make one.

    Attributes
    ----------
    table : pandas.DataFrame
        The normalised table (episodes or counts, as read).
    kind : {"episodes", "counts"}
    regimens, sites, severities : tuple of str
        Levels; severities run from least to most severe (the first is the reference).
    source : str
        Where the data came from (a file name, or ``<DataFrame>``).
    synthetic : bool
        True for the embedded example and simulated cohorts: every output made from
        them says so.

    Examples
    --------
    >>> cohort = sxb.load_example()
    >>> cohort.kind, cohort.n_patients, cohort.synthetic
    ('episodes', 33, True)
    """

    table: pd.DataFrame
    kind: Literal["episodes", "counts"]
    regimens: tuple[str, ...]
    sites: tuple[str, ...]
    severities: tuple[str, ...]
    source: str = "<DataFrame>"
    synthetic: bool = False
    extra_columns: tuple[str, ...] = field(default=())
    # the file row of each table row (header = row 1), for errors found after reading
    source_rows: tuple[int, ...] = field(default=(), repr=False)

    @property
    def row_numbers(self) -> tuple[int, ...]:
        """The source file's row number of each episode, for error messages."""
        return self.source_rows or tuple(range(2, len(self.table) + 2))

    # -- derived views -------------------------------------------------
    @cached_property
    def patient_codes(self) -> Mapping[str, str]:
        """Pseudonymous code of each patient identifier (episode tables only), in order
        of first appearance. Kept in memory: nothing the package writes holds an
        identifier, only these codes."""
        if self.kind != "episodes":
            return {}
        ids = pd.unique(self.table["patient_id"])
        width = max(4, len(str(len(ids))))
        return {pid: f"patient {i:0{width}d}" for i, pid in enumerate(ids, start=1)}

    @property
    def n_patients(self) -> int | None:
        """Number of distinct patients; ``None`` for a counts table, which has no patients."""
        return int(self.table["patient_id"].nunique()) if self.kind == "episodes" else None

    @property
    def n_episodes(self) -> int:
        """Number of treatment episodes (rows) in the cohort."""
        if self.kind == "episodes":
            return len(self.table)
        return int(self.table["n"].sum())

    def fingerprint(self) -> str:
        """SHA-256 of the normalised table: identifies the data without revealing it."""
        frame = self.table.sort_values(list(self.table.columns)).reset_index(drop=True)
        buf = io.StringIO()
        frame.to_csv(buf, index=False, lineterminator="\n")
        return "sha256:" + hashlib.sha256(buf.getvalue().encode()).hexdigest()

    def cells(
        self,
        outcome: OutcomeDefinition | None = None,
        *,
        by_patient: bool = False,
        covariates: Sequence[str] = (),
    ) -> CellTable:
        """Aggregate to regimen x site x severity cells under an outcome definition.

        ``by_patient`` splits cells by patient (for a patient random effect: each
        cell is then one patient's episodes of one regimen at one severity);
        ``covariates`` names numeric extra columns, standardised over the cohort's
        episodes and added to the cell keys. Both need an episode table.

        Examples
        --------
        >>> import scleromx_bayes as sxb
        >>> cells = sxb.load_example().cells(sxb.OutcomeDefinition("cr"))
        >>> int(cells.frame["n"].sum()) > 0
        True
        """
        outcome = outcome or OutcomeDefinition()
        keys = ["regimen", "site", "severity"]
        covariates = tuple(covariates)
        if (by_patient or covariates) and self.kind != "episodes":
            what = "a patient random effect" if by_patient else f"covariates {list(covariates)}"
            raise CohortError(
                [
                    Problem(
                        self.source,
                        f"{what} needs an episode table (one row "
                        "per patient x episode); a counts table "
                        "has no patients or covariate values",
                    )
                ]
            )
        if self.kind == "episodes":
            t = self.table
            if by_patient:
                t = t.assign(patient=t["patient_id"].map(self.patient_codes))
                keys.append("patient")
            if covariates:
                t = t.assign(**self._standardised(covariates))
                keys += list(covariates)
            resp = t["response"]
            success = resp.eq("CR") | (resp.eq("PR") if outcome.response == "orr" else False)
            ne = resp.eq("NE")
            if outcome.ne == "exclude":
                n, y = (~ne).astype(int), (success & ~ne).astype(int)
            elif outcome.ne == "failure":
                n, y = pd.Series(1, index=t.index), success.astype(int)
            else:
                n, y = pd.Series(1, index=t.index), (success | ne).astype(int)
            # partial responses among n (never NE), for the ordinal model
            n_pr = resp.eq("PR").astype(int)
            agg = t[keys].assign(n=n, y=y, n_pr=n_pr).groupby(keys, sort=False, observed=True).sum()
        else:
            t = self.table
            if outcome.response == "orr" and "n_pr" not in t:
                raise CohortError(
                    [
                        Problem(
                            self.source,
                            "outcome 'orr' (CR+PR) needs an 'n_pr' column",
                            column="n_pr",
                        )
                    ]
                )
            y = t["n_cr"] + (t["n_pr"] if outcome.response == "orr" else 0)
            n_ne = t["n_ne"] if "n_ne" in t else 0
            if outcome.ne == "exclude":
                n = t["n"] - n_ne
            elif outcome.ne == "failure":
                n = t["n"]
            else:
                n, y = t["n"], y + n_ne
            extra = {"n_pr": t["n_pr"]} if "n_pr" in t else {}
            agg = t[keys].assign(n=n, y=y, **extra).groupby(keys, sort=False, observed=True).sum()
        frame = agg.reset_index()
        patients = tuple(sorted(set(frame["patient"]))) if by_patient else ()
        order = {
            "regimen": {v: i for i, v in enumerate(self.regimens)},
            "site": {v: i for i, v in enumerate(self.sites)},
            "severity": {v: i for i, v in enumerate(self.severities)},
            "patient": {v: i for i, v in enumerate(patients)},
        }
        frame = frame.sort_values(
            keys, key=lambda col: col.map(order[col.name]) if col.name in order else col
        ).reset_index(drop=True)
        frame = frame.astype({"regimen": str, "site": str, "severity": str})
        counts = ["n", "y"] + (["n_pr"] if "n_pr" in frame else [])
        return CellTable(
            frame[keys + counts].astype({c: np.int64 for c in counts}),
            self.regimens,
            self.sites,
            self.severities,
            outcome,
            patients=patients,
            covariates=covariates,
        )

    def _standardised(self, covariates: Sequence[str]) -> dict[str, np.ndarray]:
        """Numeric covariate columns scaled to mean 0, SD 1; errors name row and column."""
        problems, out = [], {}
        for col in covariates:
            if col not in self.table.columns:
                problems.append(
                    Problem(
                        self.source,
                        f"covariate column is missing; extra "
                        f"columns are {list(self.extra_columns)}",
                        column=col,
                    )
                )
                continue
            values = pd.to_numeric(self.table[col].map(collapse), errors="coerce")
            for i in self.table.index[values.isna()]:
                problems.append(
                    Problem(
                        self.source,
                        f"covariate value {collapse(self.table.at[i, col])!r} is not a number",
                        row=int(self.row_numbers[i]),
                        column=col,
                    )
                )
            sd = float(values.std(ddof=0))
            if not problems and not sd > 0:
                problems.append(
                    Problem(
                        self.source,
                        "covariate takes one value only: nothing to estimate",
                        column=col,
                    )
                )
            out[col] = ((values - values.mean()) / (sd or 1.0)).to_numpy()
        if problems:
            raise CohortError(problems)
        return out

    def without_sites(self, sites: Sequence[str]) -> Cohort:
        """The cohort with every row of ``sites`` removed (levels recomputed)."""
        return self._subset(~self.table["site"].isin(list(sites)))

    def without_regimens(self, regimens: Sequence[str]) -> Cohort:
        """The cohort with every row of ``regimens`` removed (levels recomputed)."""
        return self._subset(~self.table["regimen"].isin(list(regimens)))

    def _subset(self, keep: pd.Series) -> Cohort:
        rows = tuple(r for r, k in zip(self.row_numbers, keep, strict=True) if k)
        table = self.table[keep].reset_index(drop=True)
        if table.empty:
            raise CohortError([Problem(self.source, "no rows left after the subset")])
        present = {c: set(table[c]) for c in ("regimen", "site", "severity")}
        return Cohort(
            table=table,
            kind=self.kind,
            regimens=tuple(v for v in self.regimens if v in present["regimen"]),
            sites=tuple(v for v in self.sites if v in present["site"]),
            severities=tuple(v for v in self.severities if v in present["severity"]),
            source=self.source,
            synthetic=self.synthetic,
            extra_columns=self.extra_columns,
            source_rows=rows,
        )
