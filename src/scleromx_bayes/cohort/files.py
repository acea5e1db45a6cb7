"""Reading a table from a file or a DataFrame, before any validation of its content.

Each reader returns a :class:`RawTable`: text cells, the header exactly as written
(so that a column named twice is still seen twice), the file row of the header,
and whether the file carries the synthetic-data marker. Anything that stops a file
from being read as the table its author meant (a folder, a link loop, an encoding
other than UTF-8, a delimiter other than the comma, a workbook with several sheets,
a row longer than the header) is a :class:`CohortError` naming the file.
"""

from __future__ import annotations

import codecs
import errno
import io
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .problems import CohortError, Problem

__all__ = ["SYNTHETIC_MARKER", "RawTable", "load_table"]

# A header comment line that starts with this marks the file as synthetic data. It
# is an explicit marker, not a word search: "# NOT synthetic" marks nothing.
SYNTHETIC_MARKER = "# SYNTHETIC DATA:"
_DELIMITERS = (",", ";", "\t", "|")
_LONG_ROW = re.compile(r"Expected (\d+) fields in line (\d+), saw (\d+)")
_DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab", "|": "vertical bar"}


@dataclass(frozen=True)
class RawTable:
    """A table as read: every cell text, before names or values are checked."""

    frame: pd.DataFrame
    source: str
    header_row: int  # the file row of the header (1 unless comment lines precede it)
    synthetic: bool

    def row_number(self, position: int) -> int:
        """The file row of the data row at ``position`` (0-based)."""
        return self.header_row + 1 + position


def _fail(source: str, message: str, **where) -> CohortError:
    return CohortError([Problem(source, message, **where)])


def _check_path(path: Path) -> None:
    """A readable regular file, or an error that says what it is instead."""
    try:
        info = path.stat()
    except FileNotFoundError:
        why = "is a broken symbolic link" if path.is_symlink() else "file not found"
        raise _fail(str(path), why) from None
    except OSError as exc:
        why = "is a symbolic link loop" if exc.errno == errno.ELOOP else exc.strerror
        raise _fail(str(path), f"cannot be read: {why}") from None
    if stat.S_ISDIR(info.st_mode):
        raise _fail(str(path), "is a folder, not a table file")
    if not stat.S_ISREG(info.st_mode):
        raise _fail(str(path), "is not a regular file")


def _decode(raw: bytes, source: str, encoding: str | None) -> str:
    """UTF-8 (with or without BOM) or UTF-16 (by its BOM), else the given encoding."""
    if encoding is not None:
        try:
            return raw.decode(encoding)
        except (LookupError, UnicodeDecodeError) as exc:
            raise _fail(source, f"cannot be decoded as {encoding}: {exc}") from None
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return raw.decode("utf-16")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        zeros = raw[:2000].count(b"\x00")
        hint = (
            "it looks like UTF-16 without a byte-order mark: save it as UTF-8"
            if zeros > len(raw[:2000]) // 4
            else "it may be Latin-1 or Windows-1252: save it as UTF-8, or give "
            "encoding='cp1252' (command line: --encoding cp1252)"
        )
        raise _fail(
            source, f"is not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); {hint}"
        ) from None


def _delimiter(header: str, suffix: str) -> str:
    """Tab for .tsv; otherwise the comma, unless the header has none and another
    delimiter splits it (semicolons from a European spreadsheet, tabs)."""
    if suffix == ".tsv":
        return "\t"
    if "," in header:
        return ","
    counts = {d: header.count(d) for d in _DELIMITERS}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _read_text(path: Path, source: str, encoding: str | None) -> RawTable:
    text = _decode(path.read_bytes(), source, encoding)
    lines = text.splitlines()
    n_comments = 0
    while n_comments < len(lines) and lines[n_comments].lstrip().startswith("#"):
        n_comments += 1
    synthetic = any(ln.strip().startswith(SYNTHETIC_MARKER) for ln in lines[:n_comments])
    if n_comments == len(lines):
        raise _fail(source, "the file has no header row")
    sep = _delimiter(lines[n_comments], path.suffix.lower())
    header_row = n_comments + 1
    try:
        # pandas' C parser: the header is read as a data row, so a name given twice
        # stays twice; a row with more fields than the header is an error, a row with
        # fewer is filled with blanks (reported by the validation)
        grid = pd.read_csv(
            io.StringIO("\n".join(lines[n_comments:])),
            sep=sep,
            header=None,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
            engine="c",
        )
    except pd.errors.ParserError as exc:
        found = _LONG_ROW.search(str(exc))
        if found is None:
            raise _fail(source, f"cannot be read as a delimited table: {exc}") from None
        width, line, fields = map(int, found.groups())
        what = (
            "ends in a delimiter that the header lacks"
            if lines[n_comments + line - 1].rstrip().endswith(sep)
            else "has more fields than the header"
        )
        raise _fail(
            source,
            f"{what}: {fields} fields, the header has {width} ({_DELIMITER_NAMES[sep]}-delimited)",
            row=n_comments + line,
        ) from None
    frame = grid.iloc[1:].reset_index(drop=True)
    frame.columns = [str(c) for c in grid.iloc[0]]
    return RawTable(frame, source, header_row, synthetic)


def _read_excel(path: Path, source: str, sheet: str | None) -> RawTable:
    with pd.ExcelFile(path) as book:
        names = [str(s) for s in book.sheet_names]
        if sheet is None:
            filled = [
                s
                for s in names
                if not pd.read_excel(book, sheet_name=s, header=None, dtype=str)
                .dropna(how="all")
                .empty
            ]
            if len(filled) > 1:
                raise _fail(
                    source,
                    f"the workbook has {len(filled)} sheets with data ({', '.join(filled)}): "
                    "say which one to read with sheet='...' (command line: --sheet)",
                )
            sheet = filled[0] if filled else names[0]
        elif sheet not in names:
            raise _fail(source, f"has no sheet {sheet!r}; its sheets are {', '.join(names)}")
        grid = pd.read_excel(book, sheet_name=sheet, header=None, dtype=str, keep_default_na=False)
    if grid.empty:
        raise _fail(source, f"sheet {sheet!r} is empty")
    frame = grid.iloc[1:].reset_index(drop=True)
    frame.columns = [str(c) for c in grid.iloc[0]]
    # the sheet is named in messages where it is not the workbook's only one
    where = source if len(names) == 1 else f"{source} (sheet {sheet!r})"
    return RawTable(frame, where, 1, False)


def _from_frame(data: pd.DataFrame) -> RawTable:
    if data.index.has_duplicates:
        dup = data.index[data.index.duplicated()].unique()[:3].tolist()
        raise _fail(
            "<DataFrame>",
            f"the index has duplicate labels ({', '.join(map(repr, dup))}): rows could "
            "not be told apart; reset it with frame.reset_index(drop=True)",
        )
    frame = data.reset_index(drop=True)
    frame.columns = [str(c) for c in frame.columns]
    return RawTable(frame, "<DataFrame>", 1, bool(data.attrs.get("synthetic", False)))


def load_table(
    data: str | Path | pd.DataFrame, *, sheet: str | None = None, encoding: str | None = None
) -> RawTable:
    """Read a CSV/TSV, Excel or Parquet file, or take a DataFrame, as a :class:`RawTable`.

    Parameters
    ----------
    data : path or DataFrame
    sheet : str, optional
        The sheet of an Excel workbook. Required when more than one sheet has data.
    encoding : str, optional
        Text encoding of a CSV/TSV file. Default: UTF-8 (with or without a BOM) or
        UTF-16 with a BOM; anything else is refused with a hint rather than guessed.

    Examples
    --------
    >>> import pandas as pd
    >>> load_table(pd.DataFrame({"site": ["A"]})).frame.columns.tolist()
    ['site']
    """
    if isinstance(data, pd.DataFrame):
        return _from_frame(data)
    path = Path(data)
    source = path.name or str(path)
    _check_path(path)
    suffix = path.suffix.lower()
    if sheet is not None and suffix not in (".xlsx", ".xlsm", ".xls"):
        raise _fail(source, "sheet= applies to Excel workbooks only")
    if suffix in (".csv", ".tsv", ".txt"):
        return _read_text(path, source, encoding)
    # the readers of binary formats raise their own errors on a damaged file
    if suffix == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except (OSError, ValueError, ImportError) as exc:
            raise _fail(source, f"cannot be read as Parquet: {exc}") from None
        return RawTable(frame, source, 1, bool(frame.attrs.get("synthetic", False)))
    if suffix in (".xlsx", ".xlsm", ".xls"):
        try:
            return _read_excel(path, source, sheet)
        except CohortError:
            raise
        except (OSError, ValueError, KeyError, ImportError) as exc:
            raise _fail(source, f"cannot be read as an Excel workbook: {exc}") from None
    raise _fail(source, f"unsupported file type '{suffix}' (use .csv, .tsv, .parquet or .xlsx)")
