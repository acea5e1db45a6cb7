"""Labels as people type them: one spelling per level, and typos that look like levels.

:func:`collapse` is the one normalisation every label and code goes through:
Unicode NFC, zero-width characters removed, whitespace trimmed and collapsed. Two
labels equal after it are one level. :func:`near_duplicates` finds pairs of levels
that are probably one level mistyped ("sever" beside "severe").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from itertools import combinations

import numpy as np
import pandas as pd

__all__ = ["collapse", "collapse_series", "edit_distance", "near_duplicates"]

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))
_TOKENS = re.compile(r"[\s\-_/.,+()]+")
_OTHER_SPACE = re.compile(r"[^\S ]")
_NOT_NORMAL = r"^\s|\s$|\s\s|[^\S ]"  # a space at an end, two in a row, or a tab etc.
# Pairwise typo checks above this many levels would cost seconds; larger factors
# (registry-scale site lists) get the cheap check only: equal without punctuation.
PAIRWISE_LIMIT = 200


def collapse(value: object) -> str:
    """NFC-normalise, drop zero-width characters, trim and collapse whitespace; NaN is ''.

    Examples
    --------
    >>> collapse("  Ho\\u0302pital\\u200b  A ")
    'Hôpital A'
    """
    if type(value) is str and value.isascii() and value == value.strip() and _plain(value):
        return value  # the common case, already normal: ASCII has no NFC or zero-width forms
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    text = unicodedata.normalize("NFC", str(value)).translate(_ZERO_WIDTH)
    return re.sub(r"\s+", " ", text.strip())


def _plain(text: str) -> bool:
    """No whitespace other than single spaces."""
    return "  " not in text and not _OTHER_SPACE.search(text)


def collapse_series(values: pd.Series) -> pd.Series:
    """:func:`collapse` of every value: text already normal (ASCII, single inner spaces,
    none at the ends) is kept as it is, the rest is collapsed once per distinct value."""
    if pd.api.types.is_string_dtype(values) and not values.isna().any():
        text = values.astype(str)
        normal = text.str.isascii() & ~text.str.contains(_NOT_NORMAL, regex=True)
        if normal.all():
            return text
        out = text.copy()
        out[~normal] = _collapse_distinct(text[~normal])
        return out
    return _collapse_distinct(values)


def _collapse_distinct(values: pd.Series) -> pd.Series:
    distinct = pd.unique(values)
    collapsed = values.map(dict(zip(distinct, map(collapse, distinct), strict=True)))
    return collapsed.fillna("")  # a missing value (NaN is not found by its own key) is blank


def edit_distance(a: str, b: str, limit: int = 2) -> int:
    """Levenshtein distance of ``a`` and ``b``, or ``limit + 1`` as soon as it exceeds ``limit``."""
    if abs(len(a) - len(b)) > limit:
        return limit + 1
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        if min(current) > limit:
            return limit + 1
        previous = current
    return previous[-1]


def _skeleton(label: str) -> str:
    return re.sub(r"[\W_]+", "", label.casefold())


def _numbered_series(a: str, b: str) -> bool:
    """True for labels of one series that differ in one short code: "Centre A" and
    "Centre B", "Site 01" and "Site 02" are meant to differ."""
    ta, tb = _TOKENS.split(a.casefold()), _TOKENS.split(b.casefold())
    if len(ta) != len(tb):
        return False
    differ = [(x, y) for x, y in zip(ta, tb, strict=True) if x != y]
    return len(differ) == 1 and all(len(t) <= 2 or t.isdigit() for t in differ[0])


def near_duplicates(counts: Mapping[str, int]) -> list[tuple[str, str]]:
    """Pairs of levels that are probably one level spelled two ways: equal once case,
    spaces and punctuation are removed, or (for up to ``PAIRWISE_LIMIT`` levels) one
    or two edits apart, unless they differ only in a series code ("Centre A"/"B").

    Examples
    --------
    >>> near_duplicates({"severe": 10, "sever": 1, "nonsevere": 20})
    [('severe', 'sever')]
    """
    levels = list(counts)
    pairs: list[tuple[str, str]] = []
    by_skeleton: dict[str, str] = {}
    for level in levels:
        key = _skeleton(level)
        if key in by_skeleton:
            pairs.append((by_skeleton[key], level))
        else:
            by_skeleton[key] = level
    if len(levels) <= PAIRWISE_LIMIT:
        for a, b in combinations(levels, 2):
            if (a, b) in pairs or _numbered_series(a, b):
                continue
            shortest = min(len(a), len(b))
            # one edit in a 3-letter code is a different code, not a typo
            if shortest >= 4 and edit_distance(a.casefold(), b.casefold(), 2) <= (
                1 if shortest < 6 else 2
            ):
                pairs.append((a, b))
    return pairs
