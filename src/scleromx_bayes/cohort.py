"""Cohort tables: read, validate, apply an outcome definition, aggregate to cells.

Two input shapes give the same :class:`Cohort`:

* an **episode table**, one row per patient x treatment episode, with columns
  ``patient_id, site, regimen, severity, response`` (response CR / PR / NR / NE)
  and any further columns (``line``, covariates), kept as they are;
* a **counts table**, as published series report it, with columns
  ``site, regimen, severity, n, n_cr`` and optionally ``n_pr`` and ``n_ne``
  (episodes among ``n`` that were not evaluable).

Row numbers in error messages are the row of the file as a spreadsheet shows it:
the header is row 1, the first data row is row 2 (leading ``#`` comment lines
count as rows too, so the number matches a text editor's line number).
"""

from __future__ import annotations

import difflib
import hashlib
import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

__all__ = [
    "Cohort",
    "CellTable",
    "CohortError",
    "OutcomeDefinition",
    "Problem",
    "read_cohort",
    "read_counts",
    "read_data",
]

EPISODE_COLUMNS = ("patient_id", "site", "regimen", "severity", "response")
COUNT_COLUMNS = ("site", "regimen", "severity", "n", "n_cr")
OPTIONAL_COUNT_COLUMNS = ("n_pr", "n_ne")
RESPONSE_CODES = ("CR", "PR", "NR", "NE")

# Spellings clinicians use for the four response codes (compared case-folded).
_RESPONSE_ALIASES = {
    "cr": "CR",
    "complete": "CR",
    "complete response": "CR",
    "complete remission": "CR",
    "pr": "PR",
    "partial": "PR",
    "partial response": "PR",
    "partial remission": "PR",
    "nr": "NR",
    "no response": "NR",
    "none": "NR",
    "non-responder": "NR",
    "failure": "NR",
    "sd": "NR",
    "pd": "NR",
    "ne": "NE",
    "not evaluable": "NE",
    "non evaluable": "NE",
    "non-evaluable": "NE",
}
_SEVERITY_ALIASES = {
    "non-severe": "nonsevere",
    "non severe": "nonsevere",
    "not severe": "nonsevere",
}
# Least severe first: the first level is the reference of the severity effect.
_KNOWN_SEVERITY_ORDERS = (("nonsevere", "severe"), ("mild", "moderate", "severe"))


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input table, located as precisely as possible."""

    source: str
    message: str
    row: int | None = None
    column: str | None = None

    def __str__(self) -> str:
        where = [self.source]
        if self.row is not None:
            where.append(f"row {self.row}")
        if self.column is not None:
            where.append(f"column '{self.column}'")
        return f"{', '.join(where)}: {self.message}"


class CohortError(ValueError):
    """The input table cannot be used; ``problems`` lists every reason found."""

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        shown = "\n".join(f"  - {p}" for p in self.problems[:25])
        more = len(self.problems) - 25
        tail = f"\n  ... and {more} more" if more > 0 else ""
        n = len(self.problems)
        super().__init__(f"{n} problem{'s' if n > 1 else ''} in the cohort data:\n{shown}{tail}")


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
        return f"{self.response}/ne={self.ne}"


@dataclass(frozen=True)
class CellTable:
    """Aggregated counts, one row per regimen x site x severity cell.

    The cell set is every combination present in the cohort (before the outcome
    definition is applied), so that changing the outcome, the NE policy or leaving
    a site out changes counts, never the shape. ``n`` is the number of evaluable
    episodes, ``y`` the number of responders.
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
        return self.frame["n"].to_numpy(dtype=np.int64)

    @property
    def y(self) -> np.ndarray:
        return self.frame["y"].to_numpy(dtype=np.int64)

    def index(self, factor: str) -> np.ndarray:
        """Integer codes of ``factor`` ('regimen', 'site', 'severity', 'patient') per cell."""
        levels = {
            "regimen": self.regimens,
            "site": self.sites,
            "severity": self.severities,
            "patient": self.patients,
        }[factor]
        return pd.Categorical(self.frame[factor], categories=list(levels)).codes.astype(np.int64)

    def with_counts(self, n: np.ndarray, y: np.ndarray) -> CellTable:
        """Same cells, new counts (used for leave-out and simulated data). Partial
        responses, where the table has them, are kept, and zeroed where ``n = 0``."""
        n, y = np.asarray(n, dtype=np.int64), np.asarray(y, dtype=np.int64)
        frame = self.frame.assign(n=n, y=y)
        if "n_pr" in frame:
            frame["n_pr"] = np.where(n == 0, 0, frame["n_pr"].to_numpy())
        return replace(self, frame=frame)

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
        return self.source_rows or tuple(range(2, len(self.table) + 2))

    # -- derived views -------------------------------------------------
    @property
    def n_patients(self) -> int | None:
        return int(self.table["patient_id"].nunique()) if self.kind == "episodes" else None

    @property
    def n_episodes(self) -> int:
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
                t = t.assign(patient=t["patient_id"])
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
            values = pd.to_numeric(self.table[col].map(_collapse), errors="coerce")
            for i in self.table.index[values.isna()]:
                problems.append(
                    Problem(
                        self.source,
                        f"covariate value {_collapse(self.table.at[i, col])!r} is not a number",
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


# ---------------------------------------------------------------------------
# reading


def _normalise_name(name: object) -> str:
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


def _collapse(value: object) -> str:
    """Trim and collapse inner whitespace; NaN becomes ''."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return re.sub(r"\s+", " ", str(value).strip())


def _load_frame(data: str | Path | pd.DataFrame) -> tuple[pd.DataFrame, str, int, bool]:
    """Read any supported input. Returns (frame, source, header_row, synthetic_flag)."""
    if isinstance(data, pd.DataFrame):
        return data.copy(), "<DataFrame>", 1, bool(data.attrs.get("synthetic", False))
    path = Path(data)
    source = path.name
    if not path.exists():
        raise CohortError([Problem(str(path), "file not found")])
    suffix = path.suffix.lower()
    try:
        if suffix in (".csv", ".tsv", ".txt"):
            text = path.read_text(encoding="utf-8-sig")
            lines = text.splitlines()
            n_comments = 0
            while n_comments < len(lines) and lines[n_comments].lstrip().startswith("#"):
                n_comments += 1
            synthetic = any("synthetic" in ln.lower() for ln in lines[:n_comments])
            sep = "\t" if suffix == ".tsv" else ","
            frame = pd.read_csv(
                io.StringIO(text),
                sep=sep,
                skiprows=n_comments,
                dtype=str,
                keep_default_na=False,
                skip_blank_lines=False,
            )
            return frame, source, n_comments + 1, synthetic
        if suffix == ".parquet":
            frame = pd.read_parquet(path)
            return frame, source, 1, bool(frame.attrs.get("synthetic", False))
        if suffix in (".xlsx", ".xlsm", ".xls"):
            return pd.read_excel(path, dtype=str, keep_default_na=False), source, 1, False
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise CohortError([Problem(source, f"cannot be read: {exc}")]) from None
    raise CohortError(
        [Problem(source, f"unsupported file type '{suffix}' (use .csv, .tsv, .parquet or .xlsx)")]
    )


def _rename_columns(
    frame: pd.DataFrame, required: Sequence[str], optional: Sequence[str], source: str
) -> pd.DataFrame:
    rename = {c: _normalise_name(c) for c in frame.columns}
    frame = frame.rename(columns=rename)
    problems = []
    seen: dict[str, int] = {}
    for c in frame.columns:
        seen[c] = seen.get(c, 0) + 1
    for c, k in seen.items():
        if k > 1:
            problems.append(Problem(source, f"column appears {k} times", row=None, column=c))
    known = set(required) | set(optional)
    for col in required:
        if col not in frame.columns:
            unmatched = [c for c in frame.columns if c not in known]
            near = difflib.get_close_matches(col, unmatched, n=1, cutoff=0.6)
            hint = f" (did you mean '{near[0]}'?)" if near else ""
            problems.append(Problem(source, f"required column is missing{hint}", column=col))
    if problems:
        raise CohortError(problems)
    return frame


def _row_numbers(frame: pd.DataFrame, header_row: int) -> pd.Series:
    return pd.Series(np.arange(len(frame)) + header_row + 1, index=frame.index)


def _drop_empty_rows(
    frame: pd.DataFrame, rows: pd.Series, source: str, problems: list[Problem]
) -> pd.DataFrame:
    blank = frame.apply(lambda col: col.map(_collapse).eq("")).all(axis=1)
    for i in frame.index[blank]:
        problems.append(Problem(source, "empty row", row=int(rows[i])))
    return frame[~blank]


def _canonical_labels(
    frame: pd.DataFrame,
    column: str,
    aliases: Mapping[str, str] | None,
    rows: pd.Series,
    source: str,
    problems: list[Problem],
) -> None:
    """Normalise whitespace and case of a label column in place; blank is an error."""
    alias = {k.casefold(): v for k, v in (aliases or {}).items()}
    spelled: dict[str, str] = {}
    values = []
    for i, raw in frame[column].items():
        v = _collapse(raw)
        if v == "":
            problems.append(Problem(source, f"blank {column}", row=int(rows[i]), column=column))
        v = alias.get(v.casefold(), v)
        # The first spelling seen of a label (ignoring case) is the one kept.
        values.append(spelled.setdefault(v.casefold(), v))
    frame[column] = values


def _severity_levels(
    values: Sequence[str], order: Sequence[str] | None, source: str
) -> tuple[str, ...]:
    present = list(dict.fromkeys(values))
    if order is not None:
        order = [_SEVERITY_ALIASES.get(o.strip().lower(), o.strip().lower()) for o in order]
        unknown = [v for v in present if v not in order]
        if unknown:
            raise CohortError(
                [
                    Problem(
                        source,
                        f"severity {unknown[0]!r} is not in the given order {list(order)}",
                        column="severity",
                    )
                ]
            )
        return tuple(o for o in order if o in present)
    for known in _KNOWN_SEVERITY_ORDERS:
        if set(present) <= set(known):
            return tuple(o for o in known if o in present)
    return tuple(sorted(present))


def _regimen_levels(
    values: Sequence[str], order: Sequence[str] | None, source: str
) -> tuple[str, ...]:
    present = list(dict.fromkeys(values))
    if order is None:
        return tuple(present)
    unknown = [v for v in present if v not in order]
    if unknown:
        raise CohortError(
            [
                Problem(
                    source,
                    f"regimen {unknown[0]!r} is not in the given order {list(order)}",
                    column="regimen",
                )
            ]
        )
    return tuple(o for o in order if o in present)


def _check_duplicates(
    frame: pd.DataFrame,
    keys: list[str],
    rows: pd.Series,
    source: str,
    problems: list[Problem],
    what: str,
) -> None:
    dup = frame.duplicated(subset=keys, keep=False)
    if dup.any():
        for _, group in frame[dup].groupby(keys, sort=False):
            nums = [int(rows[i]) for i in group.index]
            problems.append(
                Problem(
                    source,
                    f"duplicated {what}: rows {', '.join(map(str, nums))} are the same",
                    row=nums[-1],
                )
            )


def read_cohort(
    data: str | Path | pd.DataFrame,
    *,
    regimen_aliases: Mapping[str, str] | None = None,
    severity_order: Sequence[str] | None = None,
    regimen_order: Sequence[str] | None = None,
) -> Cohort:
    """Read and validate an episode table (one row per patient x treatment episode).

    Parameters
    ----------
    data : path or DataFrame
        CSV/TSV, Parquet or Excel file, or a DataFrame. Required columns:
        ``patient_id, site, regimen, severity, response``; any others are kept.
    regimen_aliases : mapping, optional
        Spellings to merge, e.g. ``{"IVIg": "HDIVig"}`` (matched ignoring case).
    severity_order : sequence of str, optional
        Severity levels from least to most severe. Default: ``nonsevere, severe``
        when those are the levels, otherwise alphabetical.
    regimen_order : sequence of str, optional
        Order in which regimens are listed in outputs (default: first appearance).

    Returns
    -------
    Cohort

    Raises
    ------
    CohortError
        Listing every problem found, each with file, row and column.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"patient_id": ["p1", "p2"], "site": ["A", "A"],
    ...                    "regimen": ["HDIVig", "HDIVig"], "severity": ["nonsevere"] * 2,
    ...                    "response": ["CR", "nr"]})
    >>> read_cohort(df).cells().frame[["n", "y"]].values.tolist()
    [[2, 1]]
    """
    frame, source, header_row, synthetic = _load_frame(data)
    frame = _rename_columns(frame, EPISODE_COLUMNS, ("line",), source)
    rows = _row_numbers(frame, header_row)
    problems: list[Problem] = []
    frame = _drop_empty_rows(frame, rows, source, problems)
    if frame.empty:
        raise CohortError(problems or [Problem(source, "the table has no data rows")])
    frame = frame.copy()
    for col in ("patient_id", "site", "regimen", "severity"):
        _canonical_labels(
            frame, col, regimen_aliases if col == "regimen" else None, rows, source, problems
        )
    frame["severity"] = [_SEVERITY_ALIASES.get(v.lower(), v.lower()) for v in frame["severity"]]

    codes = []
    for i, raw in frame["response"].items():
        v = _collapse(raw)
        code = _RESPONSE_ALIASES.get(v.casefold())
        if code is None:
            msg = (
                "blank response (write NE if the episode was not evaluable)"
                if v == ""
                else f"unknown response code {v!r} (use CR, PR, NR or NE)"
            )
            problems.append(Problem(source, msg, row=int(rows[i]), column="response"))
        codes.append(code or "")
    frame["response"] = codes

    extra = tuple(c for c in frame.columns if c not in EPISODE_COLUMNS)
    _check_duplicates(
        frame,
        list(frame.columns),
        rows,
        source,
        problems,
        "episode (add a 'line' column to tell repeated treatments apart)",
    )
    sites_per_patient = frame[frame["patient_id"] != ""].groupby("patient_id")["site"].unique()
    for pid, sites in sites_per_patient.items():
        if len(sites) > 1:
            at = frame.index[(frame["patient_id"] == pid) & (frame["site"] == sites[1])][0]
            problems.append(
                Problem(
                    source,
                    f"patient {pid!r} is recorded at two sites ({sites[0]!r} and {sites[1]!r})",
                    row=int(rows[at]),
                    column="site",
                )
            )
    if problems:
        raise CohortError(problems)
    source_rows = tuple(int(rows[i]) for i in frame.index)
    frame = frame.reset_index(drop=True)
    return Cohort(
        table=frame,
        kind="episodes",
        regimens=_regimen_levels(frame["regimen"].tolist(), regimen_order, source),
        sites=tuple(sorted(set(frame["site"]))),
        severities=_severity_levels(frame["severity"].tolist(), severity_order, source),
        source=source,
        synthetic=synthetic,
        extra_columns=extra,
        source_rows=source_rows,
    )


def read_counts(
    data: str | Path | pd.DataFrame,
    *,
    regimen_aliases: Mapping[str, str] | None = None,
    severity_order: Sequence[str] | None = None,
    regimen_order: Sequence[str] | None = None,
) -> Cohort:
    """Read and validate a counts table (``site, regimen, severity, n, n_cr``).

    Optional columns: ``n_pr`` (partial responses, needed for the CR+PR outcome)
    and ``n_ne`` (episodes among ``n`` that were not evaluable).

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"site": ["A"], "regimen": ["HDIVig"], "severity": ["nonsevere"],
    ...                    "n": [31], "n_cr": [13]})
    >>> read_counts(df).n_episodes
    31
    """
    frame, source, header_row, synthetic = _load_frame(data)
    frame = _rename_columns(frame, COUNT_COLUMNS, OPTIONAL_COUNT_COLUMNS, source)
    rows = _row_numbers(frame, header_row)
    problems: list[Problem] = []
    frame = _drop_empty_rows(frame, rows, source, problems)
    if frame.empty:
        raise CohortError(problems or [Problem(source, "the table has no data rows")])
    frame = frame.copy()
    for col in ("site", "regimen", "severity"):
        _canonical_labels(
            frame, col, regimen_aliases if col == "regimen" else None, rows, source, problems
        )
    frame["severity"] = [_SEVERITY_ALIASES.get(v.lower(), v.lower()) for v in frame["severity"]]

    count_cols = [c for c in ("n", "n_cr", *OPTIONAL_COUNT_COLUMNS) if c in frame.columns]
    for col in count_cols:
        values = []
        for i, raw in frame[col].items():
            v = _collapse(raw)
            try:
                x = float(v)
                ok = x == int(x) and x >= 0
            except (ValueError, OverflowError):
                ok, x = False, 0.0
            if not ok:
                why = (
                    "blank"
                    if v == ""
                    else ("negative" if v.startswith("-") else "not a whole number")
                )
                problems.append(
                    Problem(
                        source,
                        f"count {v!r} is {why}; counts must be whole numbers >= 0",
                        row=int(rows[i]),
                        column=col,
                    )
                )
            values.append(int(x) if ok else 0)
        frame[col] = np.asarray(values, dtype=np.int64)
    if not problems:
        for i in frame.index:
            r = int(rows[i])
            if frame.at[i, "n_cr"] > frame.at[i, "n"]:
                problems.append(
                    Problem(
                        source,
                        f"n_cr ({frame.at[i, 'n_cr']}) is larger than n ({frame.at[i, 'n']})",
                        row=r,
                        column="n_cr",
                    )
                )
            responders = frame.at[i, "n_cr"] + (frame.at[i, "n_pr"] if "n_pr" in frame else 0)
            if "n_pr" in frame and responders > frame.at[i, "n"]:
                problems.append(
                    Problem(
                        source, f"n_cr + n_pr ({responders}) is larger than n", row=r, column="n_pr"
                    )
                )
            if "n_ne" in frame and responders + frame.at[i, "n_ne"] > frame.at[i, "n"]:
                problems.append(
                    Problem(source, "n_cr + n_pr + n_ne is larger than n", row=r, column="n_ne")
                )
    _check_duplicates(
        frame,
        ["site", "regimen", "severity"],
        rows,
        source,
        problems,
        "site x regimen x severity cell",
    )
    if problems:
        raise CohortError(problems)
    frame = frame.reset_index(drop=True)
    extra = tuple(c for c in frame.columns if c not in COUNT_COLUMNS + OPTIONAL_COUNT_COLUMNS)
    return Cohort(
        table=frame,
        kind="counts",
        regimens=_regimen_levels(frame["regimen"].tolist(), regimen_order, source),
        sites=tuple(sorted(set(frame["site"]))),
        severities=_severity_levels(frame["severity"].tolist(), severity_order, source),
        source=source,
        synthetic=synthetic,
        extra_columns=extra,
    )


def read_data(
    data: str | Path | pd.DataFrame,
    *,
    kind: Literal["episodes", "counts"] | None = None,
    **kwargs,
) -> Cohort:
    """Read an episode or a counts table, telling them apart by their columns.

    A table with ``n`` and ``n_cr`` columns is a counts table; anything else is
    read as episodes (and its errors say which episode columns are missing).
    ``kind`` forces either.
    """
    if kind == "episodes":
        return read_cohort(data, **kwargs)
    if kind == "counts":
        return read_counts(data, **kwargs)
    if kind is not None:
        raise ValueError(f"kind must be 'episodes' or 'counts', not {kind!r}")
    frame, _, _, _ = _load_frame(data)
    cols = {_normalise_name(c) for c in frame.columns}
    reader = read_counts if {"n", "n_cr"} <= cols else read_cohort
    return reader(data, **kwargs)
