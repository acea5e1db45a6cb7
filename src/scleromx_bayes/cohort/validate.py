"""Validating an episode table or a counts table into a :class:`Cohort`.

Every problem in a table is collected, each with file, row and column, and
reported at once in one :class:`CohortError`. Row numbers are the file's rows as a
spreadsheet shows them: the header is row 1 (after any leading ``#`` comment
lines, which count as rows too, so the number matches a text editor's line).

Nothing is guessed silently: a count must be written in ASCII digits, a response
must be one of the known codes, an unrecognised set of severity levels needs an
explicit ``severity_order``, and two levels of a factor that look like one level
mistyped raise a :class:`LevelWarning` naming the rows and the option that merges
them.
"""

from __future__ import annotations

import difflib
import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from ..errors import shorten
from .files import RawTable, load_table
from .labels import collapse, collapse_series, near_duplicates
from .problems import CohortError, Problem
from .tables import Cohort

__all__ = [
    "COUNT_COLUMNS",
    "EPISODE_COLUMNS",
    "LevelWarning",
    "read_cohort",
    "read_counts",
    "read_data",
]

EPISODE_COLUMNS = ("patient_id", "site", "regimen", "severity", "response")
COUNT_COLUMNS = ("site", "regimen", "severity", "n", "n_cr")
OPTIONAL_COUNT_COLUMNS = ("n_pr", "n_ne")
RESPONSE_CODES = ("CR", "PR", "NR", "NE")
# A count above this is a typo or an overflow, not a rare-disease cohort.
MAX_COUNT = 10**9
_COUNT = re.compile(r"[0-9]+(\.0+)?")  # ASCII digits only: "1_0" and "١٠" are refused

# Spellings clinicians use for the four response codes (compared case-folded).
# "none" is not among them: it may mean "no response" or "no data", so it is refused.
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
KNOWN_SEVERITY_ORDERS = (("nonsevere", "severe"), ("mild", "moderate", "severe"))


class LevelWarning(UserWarning):
    """Two levels of a factor look like one level spelled two ways.

    Examples
    --------
    >>> import warnings
    >>> frame = pd.DataFrame({"patient_id": ["P1", "P2"], "site": ["Lyon", "Lyon"],
    ...                       "regimen": ["HDIVig", "HDIVg"], "severity": ["severe"] * 2,
    ...                       "response": ["CR", "NR"]})
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     _ = sxb.read_cohort(frame)
    >>> any(issubclass(w.category, sxb.LevelWarning) for w in caught)
    True
    """


def _normalise_name(name: object) -> str:
    return re.sub(r"[\s\-]+", "_", collapse(name).lower())


def _rename_columns(
    raw: RawTable, required: Sequence[str], optional: Sequence[str]
) -> pd.DataFrame:
    frame = raw.frame.copy()
    frame.columns = [_normalise_name(c) for c in frame.columns]
    problems = []
    names = list(frame.columns)
    for c in dict.fromkeys(names):
        k = names.count(c)
        if k > 1:
            problems.append(
                Problem(
                    raw.source,
                    f"column appears {k} times: rename or remove the copies (which one "
                    "holds the data cannot be told)",
                    column=c,
                )
            )
    known = set(required) | set(optional)
    missing = [col for col in required if col not in frame.columns]
    for col in missing:
        unmatched = [c for c in frame.columns if c not in known]
        near = difflib.get_close_matches(col, unmatched, n=1, cutoff=0.6)
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        problems.append(Problem(raw.source, f"required column is missing{hint}", column=col))
    if len(missing) == len(required) and len(frame.columns) == 1:
        header = str(raw.frame.columns[0])
        problems.append(
            Problem(
                raw.source,
                f"the header {shorten(header)} was read as one column: is the file "
                "delimited by something other than a comma, semicolon or tab?",
            )
        )
    if problems:
        raise CohortError(problems)
    return frame


def _row_numbers(raw: RawTable) -> pd.Series:
    return pd.Series(np.arange(len(raw.frame)) + raw.header_row + 1, index=raw.frame.index)


def _drop_empty_rows(
    frame: pd.DataFrame, rows: pd.Series, source: str, problems: list[Problem]
) -> pd.DataFrame:
    """Every cell collapsed (see :func:`collapse`); rows blank throughout reported and dropped."""
    frame = frame.apply(collapse_series)
    blank = frame.eq("").all(axis=1)
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
    """Merge spellings of a collapsed label column in place; blank is an error."""
    alias = {collapse(k).casefold(): v for k, v in (aliases or {}).items()}
    collapsed = frame[column]
    for i in frame.index[collapsed.eq("")]:
        problems.append(Problem(source, f"blank {column}", row=int(rows[i]), column=column))
    # The first spelling seen of a label (ignoring case) is the one kept.
    spelled: dict[str, str] = {}
    canonical = {}
    for v in pd.unique(collapsed):
        v_alias = alias.get(v.casefold(), v)
        canonical[v] = spelled.setdefault(v_alias.casefold(), v_alias)
    values = collapsed.map(canonical)
    frame[column] = values


def _warn_near_duplicates(frame: pd.DataFrame, columns: Sequence[str], source: str) -> None:
    for column in columns:
        counts = frame[column].value_counts(sort=False).to_dict()
        for a, b in near_duplicates(counts):
            fix = (
                f"merge them with regimen_aliases={{{b!r}: {a!r}}}"
                if column == "regimen"
                else f"correct the {column} column"
            )
            warnings.warn(
                f"{source}: {column} levels {shorten(a)} ({counts[a]} rows) and "
                f"{shorten(b)} ({counts[b]} rows) look like one level spelled two ways; "
                f"{fix} if they are",
                LevelWarning,
                stacklevel=4,
            )


def _in_given_order(
    present: Sequence[str], order: Sequence[str], column: str, source: str
) -> tuple[str, ...]:
    """The levels present, in the user's order; a level the order lacks is an error."""
    unknown = [v for v in present if v not in order]
    if unknown:
        raise CohortError(
            [
                Problem(
                    source,
                    f"{column} {shorten(unknown[0])} is not in the given order {list(order)}",
                    column=column,
                )
            ]
        )
    return tuple(o for o in order if o in present)


def _severity_levels(
    values: Sequence[str], order: Sequence[str] | None, source: str
) -> tuple[str, ...]:
    present = list(dict.fromkeys(values))
    if order is not None:
        order = [_SEVERITY_ALIASES.get(o.strip().lower(), o.strip().lower()) for o in order]
        return _in_given_order(present, order, "severity", source)
    if len(present) == 1:
        return tuple(present)
    for known in KNOWN_SEVERITY_ORDERS:
        if set(present) <= set(known):
            return tuple(o for o in known if o in present)
    unknown = [v for v in present if not any(v in known for known in KNOWN_SEVERITY_ORDERS)]
    raise CohortError(
        [
            Problem(
                source,
                f"severity levels {', '.join(map(shorten, present))} are not a known order "
                f"({', '.join(map(shorten, unknown))} unrecognised): give them from least to "
                "most severe with severity_order=[...] (command line: --severity-order)",
                column="severity",
            )
        ]
    )


def _regimen_levels(
    values: Sequence[str], order: Sequence[str] | None, source: str
) -> tuple[str, ...]:
    present = list(dict.fromkeys(values))
    return tuple(present) if order is None else _in_given_order(present, order, "regimen", source)


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


def _prepare(
    raw: RawTable,
    required: Sequence[str],
    optional: Sequence[str],
    labels: Sequence[str],
    regimen_aliases: Mapping[str, str] | None,
) -> tuple[pd.DataFrame, pd.Series, list[Problem]]:
    """Names checked, empty rows dropped, labels normalised: what both readers share."""
    frame = _rename_columns(raw, required, optional)
    rows = _row_numbers(raw)
    problems: list[Problem] = []
    frame = _drop_empty_rows(frame, rows, raw.source, problems)
    if frame.empty:
        raise CohortError(problems or [Problem(raw.source, "the table has no data rows")])
    frame = frame.copy()
    for col in labels:
        aliases = regimen_aliases if col == "regimen" else None
        _canonical_labels(frame, col, aliases, rows, raw.source, problems)
    frame["severity"] = frame["severity"].map(
        {v: _SEVERITY_ALIASES.get(v.lower(), v.lower()) for v in pd.unique(frame["severity"])}
    )
    return frame, rows, problems


def _cohort(
    frame: pd.DataFrame,
    kind: Literal["episodes", "counts"],
    raw: RawTable,
    regimen_order: Sequence[str] | None,
    severity_order: Sequence[str] | None,
    extra: tuple[str, ...],
    source_rows: tuple[int, ...] = (),
) -> Cohort:
    """The validated table as a :class:`Cohort`, its levels in order."""
    return Cohort(
        table=frame,
        kind=kind,
        regimens=_regimen_levels(frame["regimen"].tolist(), regimen_order, raw.source),
        sites=tuple(sorted(set(frame["site"]))),
        severities=_severity_levels(frame["severity"].tolist(), severity_order, raw.source),
        source=raw.source,
        synthetic=raw.synthetic,
        extra_columns=extra,
        source_rows=source_rows,
    )


def read_cohort(
    data: str | Path | pd.DataFrame | RawTable,
    *,
    regimen_aliases: Mapping[str, str] | None = None,
    severity_order: Sequence[str] | None = None,
    regimen_order: Sequence[str] | None = None,
    sheet: str | None = None,
    encoding: str | None = None,
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
        Severity levels from least to most severe. Needed unless the levels are
        ``nonsevere, severe`` or ``mild, moderate, severe`` (or there is one level).
    regimen_order : sequence of str, optional
        Order in which regimens are listed in outputs (default: first appearance).
    sheet : str, optional
        Which sheet of an Excel workbook (needed when several have data).
    encoding : str, optional
        Text encoding of a CSV file (default: UTF-8, or UTF-16 with a BOM).

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
    raw = data if isinstance(data, RawTable) else load_table(data, sheet=sheet, encoding=encoding)
    source = raw.source
    frame, rows, problems = _prepare(
        raw,
        EPISODE_COLUMNS,
        ("line",),
        ("patient_id", "site", "regimen", "severity"),
        regimen_aliases,
    )
    responses = frame["response"]
    codes = responses.map(
        {v: _RESPONSE_ALIASES.get(v.casefold(), "") for v in pd.unique(responses)}
    )
    for i in frame.index[codes.eq("")]:
        v = responses[i]
        msg = (
            "blank response (write NE if the episode was not evaluable)"
            if v == ""
            else f"unknown response code {shorten(v)} (use CR, PR, NR or NE)"
        )
        problems.append(Problem(source, msg, row=int(rows[i]), column="response"))
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
    # a patient at two sites: distinct (patient, site) pairs, a patient seen twice among them
    pairs = frame.loc[frame["patient_id"] != "", ["patient_id", "site"]].drop_duplicates()
    for pid, group in pairs[pairs.duplicated("patient_id", keep=False)].groupby(
        "patient_id", sort=False
    ):
        sites = group["site"].tolist()
        at = group.index[1]
        problems.append(
            Problem(
                source,
                f"patient {shorten(pid)} is recorded at two sites ({shorten(sites[0])} and "
                f"{shorten(sites[1])})",
                row=int(rows[at]),
                column="site",
            )
        )
    if problems:
        raise CohortError(problems)
    _warn_near_duplicates(frame, ("site", "regimen", "severity"), source)
    source_rows = tuple(rows.loc[frame.index].astype(int).tolist())
    frame = frame.reset_index(drop=True)
    return _cohort(frame, "episodes", raw, regimen_order, severity_order, extra, source_rows)


def _parse_count(value: object) -> tuple[int | None, str]:
    """A whole number >= 0 written in ASCII digits, or None and why not."""
    v = collapse(value)
    if v == "":
        return None, "is blank"
    if v.startswith("-") and _COUNT.fullmatch(v[1:]):
        return None, "is negative"
    if not _COUNT.fullmatch(v):
        return None, "is not a whole number written in digits 0-9"
    n = int(v.split(".")[0])
    if n > MAX_COUNT:
        return None, f"is larger than {MAX_COUNT:,} (a typo?)"
    return n, ""


def read_counts(
    data: str | Path | pd.DataFrame | RawTable,
    *,
    regimen_aliases: Mapping[str, str] | None = None,
    severity_order: Sequence[str] | None = None,
    regimen_order: Sequence[str] | None = None,
    sheet: str | None = None,
    encoding: str | None = None,
) -> Cohort:
    """Read and validate a counts table (``site, regimen, severity, n, n_cr``).

    Optional columns: ``n_pr`` (partial responses, needed for the CR+PR outcome)
    and ``n_ne`` (episodes among ``n`` that were not evaluable). Other parameters
    as for :func:`read_cohort`.

    Parameters
    ----------
    data : str, Path, pandas.DataFrame or RawTable
        The counts table (CSV, TSV, Parquet, Excel or a frame).
    regimen_aliases : mapping of str to str, optional
        Other spellings of regimens, merged onto one name.
    severity_order, regimen_order : sequence of str, optional
        Level orders (the first severity is the reference).
    sheet : str, optional
        The sheet of a workbook with several filled sheets.
    encoding : str, optional
        The file's encoding when it is not UTF-8.

    Returns
    -------
    Cohort
        A validated counts cohort; a :class:`CohortError` lists every problem.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"site": ["A"], "regimen": ["HDIVig"], "severity": ["nonsevere"],
    ...                    "n": [31], "n_cr": [13]})
    >>> read_counts(df).n_episodes
    31
    """
    raw = data if isinstance(data, RawTable) else load_table(data, sheet=sheet, encoding=encoding)
    source = raw.source
    frame, rows, problems = _prepare(
        raw,
        COUNT_COLUMNS,
        OPTIONAL_COUNT_COLUMNS,
        ("site", "regimen", "severity"),
        regimen_aliases,
    )
    count_cols = [c for c in ("n", "n_cr", *OPTIONAL_COUNT_COLUMNS) if c in frame.columns]
    unreadable: set = set()  # rows with a count that is not a number: no sums checked there
    for col in count_cols:
        values = []
        for i, value in frame[col].items():
            n, why = _parse_count(value)
            if n is None:
                unreadable.add(i)
                problems.append(
                    Problem(
                        source,
                        f"count {shorten(collapse(value))} {why}; counts must be whole "
                        "numbers >= 0",
                        row=int(rows[i]),
                        column=col,
                    )
                )
            values.append(n or 0)
        frame[col] = np.asarray(values, dtype=np.int64)
    # every row whose counts could be read is checked, so one file's problems come at once
    for i in frame.index:
        if i not in unreadable:
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
    problems.sort(key=lambda p: p.row or 0)  # in file order, whichever check found them
    if problems:
        raise CohortError(problems)
    _warn_near_duplicates(frame, ("site", "regimen", "severity"), source)
    frame = frame.reset_index(drop=True)
    extra = tuple(c for c in frame.columns if c not in COUNT_COLUMNS + OPTIONAL_COUNT_COLUMNS)
    return _cohort(frame, "counts", raw, regimen_order, severity_order, extra)


def read_data(
    data: str | Path | pd.DataFrame,
    *,
    kind: Literal["episodes", "counts"] | None = None,
    **kwargs,
) -> Cohort:
    """Read an episode or a counts table, telling them apart by their columns.

    A table with ``n`` and ``n_cr`` columns is a counts table; anything else is
    read as episodes (and its errors say which episode columns are missing).
    ``kind`` forces either. Keyword arguments go to :func:`read_cohort` or
    :func:`read_counts`.

    Parameters
    ----------
    data : str, Path or pandas.DataFrame
        An episode or a counts table.
    kind : {"episodes", "counts"}, optional
        Force the kind instead of telling it from the columns.
    **kwargs
        Passed to :func:`read_cohort` or :func:`read_counts`.

    Returns
    -------
    Cohort
        The validated cohort.

    Examples
    --------
    >>> from scleromx_bayes.simulate import example_path
    >>> sxb.read_data(example_path()).kind
    'episodes'
    """
    if kind == "episodes":
        return read_cohort(data, **kwargs)
    if kind == "counts":
        return read_counts(data, **kwargs)
    if kind is not None:
        raise ValueError(f"kind must be 'episodes' or 'counts', not {kind!r}")
    raw = load_table(data, sheet=kwargs.pop("sheet", None), encoding=kwargs.pop("encoding", None))
    cols = {_normalise_name(c) for c in raw.frame.columns}
    reader = read_counts if {"n", "n_cr"} <= cols else read_cohort
    return reader(raw, **kwargs)  # the table read once, validated as its kind
