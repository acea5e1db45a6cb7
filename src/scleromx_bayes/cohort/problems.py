"""Problems found in an input table, each located by file, row and column."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import InputError

__all__ = ["CohortError", "Problem"]

# At most this many problems are listed in one message; the rest are counted.
SHOWN = 25


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input table, located as precisely as possible.

    Examples
    --------
    >>> str(Problem("cohort.csv", "blank site", row=4, column="site"))
    "cohort.csv, row 4, column 'site': blank site"
    """

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


class CohortError(InputError):
    """The input table cannot be used; ``problems`` lists every reason found.

    Examples
    --------
    >>> frame = pd.DataFrame({"patient_id": ["P1"], "site": [""], "regimen": ["HDIVig"],
    ...                       "severity": ["severe"], "response": ["CR"]})
    >>> try:
    ...     sxb.read_cohort(frame)
    ... except sxb.CohortError as error:
    ...     print(error.problems[0].column, "-", error.problems[0].message)
    site - blank site
    """

    # what the message says the problems are in
    what = "the cohort data"

    def __init__(self, problems: Sequence[Problem]):
        self.problems = list(problems)
        shown = "\n".join(f"  - {p}" for p in self.problems[:SHOWN])
        more = len(self.problems) - SHOWN
        tail = f"\n  ... and {more} more" if more > 0 else ""
        n = len(self.problems)
        super().__init__(f"{n} problem{'s' if n > 1 else ''} in {self.what}:\n{shown}{tail}")
