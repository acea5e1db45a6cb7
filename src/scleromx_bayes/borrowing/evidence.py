"""Published results as data: one row per study x regimen (x severity), validated
like a cohort (every problem, with file, row and column, in one error)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from ..cohort import CohortError, Problem
from ..cohort.files import RawTable, load_table
from ..cohort.labels import collapse, collapse_series
from ..errors import shorten

__all__ = ["DESIGNS", "Evidence", "EvidenceError", "example_evidence_path", "read_evidence"]

REQUIRED = ("study", "regimen", "n", "n_cr")
OPTIONAL = ("n_pr", "severity", "year", "citation", "design", "notes")
DESIGNS = ("prospective", "retrospective", "case series")
MAX_COUNT = 10**7


class EvidenceError(CohortError):
    """The evidence table cannot be used; ``problems`` lists every reason found.

    Examples
    --------
    >>> frame = pd.DataFrame({"study": ["A"], "regimen": ["HDIVig"], "n": [5], "n_cr": [7]})
    >>> try:
    ...     sxb.read_evidence(frame)
    ... except sxb.EvidenceError as error:
    ...     print(len(error.problems))
    1
    """

    what = "the evidence table"


@dataclass(frozen=True)
class Evidence:
    """Validated published results.

    ``table`` has one row per study x regimen (x severity): ``study``, ``regimen``,
    ``n``, ``n_cr`` and whichever of ``n_pr``, ``severity``, ``year``, ``citation``,
    ``design``, ``notes`` the file had. Regimens are spelled as the cohort spells them
    when a cohort's regimens were given.

    Examples
    --------
    >>> from scleromx_bayes.borrowing import example_evidence_path
    >>> ev = sxb.read_evidence(example_evidence_path())
    >>> ev.synthetic, "HDIVig" in ev.regimens
    (True, True)
    """

    table: pd.DataFrame
    source: str
    synthetic: bool

    @property
    def regimens(self) -> tuple[str, ...]:
        """The regimens the evidence reports on, in table order."""
        return tuple(dict.fromkeys(self.table["regimen"]))

    def for_regimen(self, regimen: str, severity: str | None = None) -> pd.DataFrame:
        """The rows of one regimen (and, if given, one severity: rows that report
        no severity are kept, as they describe the regimen's whole series)."""
        rows = self.table[self.table["regimen"] == regimen]
        if severity is not None and "severity" in rows:
            rows = rows[rows["severity"].isin([severity, ""])]
        if rows.empty:
            raise EvidenceError(
                [Problem(self.source, f"no study of regimen {regimen!r}", column="regimen")]
            )
        return rows.reset_index(drop=True)


def example_evidence_path() -> Path:
    """The shipped example evidence table (synthetic: invented studies)."""
    return Path(str(resources.files("scleromx_bayes") / "data" / "example_evidence.csv"))


def _count(value: object) -> int | None:
    text = collapse(value)
    if text.isascii() and text.isdigit() and int(text) <= MAX_COUNT:
        return int(text)
    return None


def read_evidence(
    data: str | Path | pd.DataFrame,
    *,
    regimens: Sequence[str] | None = None,
    regimen_aliases: Mapping[str, str] | None = None,
    allow_other_regimens: bool = False,
    sheet: str | None = None,
    encoding: str | None = None,
) -> Evidence:
    """Read and validate a table of published results.

    Parameters
    ----------
    data : path or DataFrame
        Columns ``study``, ``regimen``, ``n``, ``n_cr``; optional ``n_pr``,
        ``severity``, ``year``, ``citation``, ``design`` (prospective /
        retrospective / case series) and free-text ``notes``.
    regimens : sequence of str, optional
        The cohort's regimens (``cohort.regimens``). Each evidence regimen must
        be one of them, matched ignoring case and spacing, or mapped by
        ``regimen_aliases``; otherwise it is an error unless
        ``allow_other_regimens``.
    regimen_aliases : mapping, optional
        Evidence spelling -> cohort regimen, e.g. ``{"IVIg": "HDIVig"}``.
    allow_other_regimens : bool
        Keep regimens that are not the cohort's instead of refusing them.
    sheet : str, optional
        The sheet of a workbook with several filled sheets.
    encoding : str, optional
        The file's encoding when it is not UTF-8.

    Returns
    -------
    Evidence
        The validated table; an :class:`EvidenceError` lists every problem.

    Examples
    --------
    >>> ev = read_evidence(example_evidence_path())
    >>> ev.synthetic, "HDIVig" in ev.regimens
    (True, True)
    """
    raw = data if isinstance(data, RawTable) else load_table(data, sheet=sheet, encoding=encoding)
    source = raw.source
    frame = raw.frame.copy()
    frame.columns = [collapse(c).lower().replace(" ", "_") for c in frame.columns]
    problems: list[Problem] = []
    for col in REQUIRED:
        if col not in frame.columns:
            problems.append(Problem(source, "required column is missing", column=col))
    unknown = [c for c in frame.columns if c not in REQUIRED + OPTIONAL]
    for col in unknown:
        problems.append(
            Problem(
                source, f"unknown column (expected {', '.join(REQUIRED + OPTIONAL)})", column=col
            )
        )
    if problems:
        raise EvidenceError(problems)
    frame = frame.apply(collapse_series)
    rows = pd.Series(np.arange(len(frame)) + raw.header_row + 1, index=frame.index)
    blank = frame.eq("").all(axis=1)
    frame = frame[~blank]
    if frame.empty:
        raise EvidenceError([Problem(source, "the table has no data rows")])

    def problem(i, column: str, message: str) -> None:
        problems.append(Problem(source, message, row=int(rows[i]), column=column))

    for col in ("study", "regimen"):
        for i in frame.index[frame[col].eq("")]:
            problem(i, col, f"blank {col}")
    counts = {}
    for col in ("n", "n_cr", "n_pr"):
        if col not in frame:
            continue
        parsed = frame[col].map(_count)
        for i in frame.index[parsed.isna()]:
            problem(i, col, f"{shorten(frame.at[i, col])} is not a whole number >= 0")
        counts[col] = parsed
    for i in frame.index:
        n, cr = counts["n"][i], counts["n_cr"][i]
        pr = counts["n_pr"][i] if "n_pr" in counts else 0
        if n is None or cr is None or pr is None:
            continue
        if n == 0:
            problem(i, "n", "a study with n = 0 carries no information: remove the row")
        if cr > n:
            problem(i, "n_cr", f"n_cr ({cr}) is larger than n ({n})")
        elif cr + pr > n:
            problem(i, "n_pr", f"n_cr + n_pr ({cr + pr}) is larger than n ({n})")
    if "design" in frame:
        for i in frame.index:
            design = frame.at[i, "design"].lower()
            if design and design not in DESIGNS:
                problem(i, "design", f"{shorten(design)} is not one of {', '.join(DESIGNS)}")
            frame.at[i, "design"] = design
    if "year" in frame:
        for i in frame.index:
            year = frame.at[i, "year"]
            if year and not (year.isdigit() and 1900 <= int(year) <= 2100):
                problem(i, "year", f"{shorten(year)} is not a year")
    if "severity" in frame:
        frame["severity"] = frame["severity"].str.lower()
    frame["regimen"] = _match_regimens(
        frame["regimen"], regimens, regimen_aliases, allow_other_regimens, problem
    )
    key = ["study", "regimen"] + (["severity"] if "severity" in frame else [])
    dup = frame.duplicated(key, keep="first")
    for i in frame.index[dup]:
        problem(i, "study", "the same study, regimen and severity appear in an earlier row")
    if problems:
        raise EvidenceError(problems)
    for col, parsed in counts.items():
        frame[col] = parsed.loc[frame.index].astype(np.int64)
    frame = frame.reset_index(drop=True)
    return Evidence(table=frame, source=source, synthetic=raw.synthetic)


def _match_regimens(values, regimens, aliases, allow_other, problem) -> pd.Series:
    if regimens is None:
        return values
    known = {collapse(r).casefold(): r for r in regimens}
    alias = {collapse(k).casefold(): v for k, v in (aliases or {}).items()}
    out = values.copy()
    for i, value in values.items():
        folded = value.casefold()
        target = alias.get(folded, known.get(folded))
        if target is not None and target not in regimens:
            problem(i, "regimen", f"alias maps {value!r} to {target!r}, not a cohort regimen")
        elif target is not None:
            out[i] = target
        elif value and not allow_other:
            problem(
                i,
                "regimen",
                f"{shorten(value)} is not a regimen of the cohort ({', '.join(regimens)}): "
                "map it with regimen_aliases, or pass allow_other_regimens=True",
            )
    return out
