"""Atomic writes of summaries, posteriors and tables, and reading them back.

A write goes to a temporary sibling first and is renamed into place, so a crash
or a bad input never leaves a half-written file or destroys the previous one.
:class:`output_folder` does the same for every file of a run at once: all are
written to a staging folder and moved into place only when all succeeded. CSV
cells that a spreadsheet would run as a formula are escaped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import xarray as xr

from .errors import InputError

__all__ = [
    "atomic_path",
    "check_writable",
    "output_folder",
    "read_dataset",
    "read_posterior",
    "write_csv",
    "write_dataset",
    "write_posterior",
]

# A cell starting with one of these runs as a formula in a spreadsheet (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _is_zarr(path: Path) -> bool:
    return path.suffix == ".zarr"


@contextlib.contextmanager
def _consolidated_zarr() -> Iterator[None]:
    """xarray writes Zarr stores with consolidated metadata (one read opens them), and
    zarr 3 warns on every write that this is not yet in the format 3 specification:
    a warning the user can do nothing about, so it is not shown."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        yield


class atomic_path:  # noqa: N801 - used as a context manager like open()
    """Context manager giving a temporary path that replaces ``path`` on success.

    Examples
    --------
    >>> with atomic_path("out.txt") as tmp:
    ...     _ = tmp.write_text("done")
    >>> Path("out.txt").read_text()
    'done'
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        os.close(fd)
        os.unlink(name)
        self.tmp = Path(name)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            _remove(self.tmp)
            return
        if self.tmp.is_dir() and self.path.exists():
            # A directory cannot replace another in one rename: move the old aside first.
            old = self.path.with_name(f".{self.path.name}.old")
            _remove(old)
            os.replace(self.path, old)
            os.replace(self.tmp, self.path)
            _remove(old)
        else:
            os.replace(self.tmp, self.path)


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


def write_dataset(ds: xr.Dataset, path: str | Path) -> Path:
    """Write a Dataset atomically to ``.nc`` (netCDF4 via h5netcdf) or ``.zarr``.

    Parameters
    ----------
    ds : xarray.Dataset
        The Dataset (e.g. a summary).
    path : str or Path
        ``.nc`` or ``.zarr`` (replaced atomically).

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> sxb.write_dataset(ds, "summary.nc").name
    'summary.nc'
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        if _is_zarr(path):
            with _consolidated_zarr():
                ds.to_zarr(tmp, mode="w")
        else:
            ds.to_netcdf(tmp, engine="h5netcdf")
    return path


def read_dataset(path: str | Path) -> xr.Dataset:
    """Read a Dataset written by :func:`write_dataset`, fully loaded and closed.

    Parameters
    ----------
    path : str or Path
        A ``.nc`` file or ``.zarr`` store.

    Returns
    -------
    xarray.Dataset
        The Dataset, in memory.

    Examples
    --------
    >>> _ = sxb.write_dataset(ds, "summary.nc")
    >>> sxb.read_dataset("summary.nc").attrs["model_name"]
    'base'
    """
    path = Path(path)
    if _is_zarr(path):
        with xr.open_zarr(path) as ds:
            return ds.load()
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return ds.load()


def write_posterior(tree: xr.DataTree, path: str | Path) -> Path:
    """Write a whole posterior DataTree atomically (netCDF or Zarr).

    Parameters
    ----------
    tree : xarray.DataTree
        The posterior (``Fit.posterior``).
    path : str or Path
        ``.nc`` or ``.zarr`` (replaced atomically).

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> sxb.write_posterior(fit.posterior, "posterior.nc").name
    'posterior.nc'
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        if _is_zarr(path):
            with _consolidated_zarr():
                tree.to_zarr(tmp, mode="w")
        else:
            tree.to_netcdf(tmp, engine="h5netcdf")
    return path


def read_posterior(path: str | Path) -> xr.DataTree:
    """Read a DataTree written by :func:`write_posterior`.

    Parameters
    ----------
    path : str or Path
        A ``.nc`` file or ``.zarr`` store.

    Returns
    -------
    xarray.DataTree
        The posterior, in memory.

    Examples
    --------
    >>> _ = sxb.write_posterior(fit.posterior, "posterior.nc")
    >>> "posterior" in sxb.read_posterior("posterior.nc").children
    True
    """
    path = Path(path)
    if _is_zarr(path):
        return xr.open_datatree(path, engine="zarr").load()
    with xr.open_datatree(path, engine="h5netcdf") as tree:
        return tree.load()


def escape_formula(value: object) -> object:
    """Prefix a text cell that a spreadsheet would run as a formula with an apostrophe.

    Examples
    --------
    >>> escape_formula("=cmd|' /C calc'!A0")
    "'=cmd|' /C calc'!A0"
    >>> escape_formula(-0.5)
    -0.5
    """
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def write_csv(frame: pd.DataFrame, path: str | Path, **kwargs) -> Path:
    """Write a table as CSV atomically, text cells escaped against formula injection.

    Parameters
    ----------
    frame : pandas.DataFrame
        The table.
    path : str or Path
        The CSV file (replaced atomically).
    **kwargs
        Passed to :meth:`pandas.DataFrame.to_csv`.

    Returns
    -------
    Path
        ``path``.

    Examples
    --------
    >>> frame = pd.DataFrame({"regimen": ["=HDIVig"], "n": [3]})
    >>> path = sxb.write_csv(frame, "table.csv", index=False)
    >>> path.read_text().splitlines()[1]          # a formula-like cell is escaped
    "'=HDIVig,3"
    """
    path = Path(path)
    safe = frame.copy()
    for column in safe.columns:
        if not pd.api.types.is_numeric_dtype(safe[column]):
            safe[column] = safe[column].map(escape_formula)
    safe.index = safe.index.map(escape_formula)
    safe.columns = [escape_formula(str(c)) for c in safe.columns]
    with atomic_path(path) as tmp:
        safe.to_csv(tmp, **kwargs)
    return path


def check_writable(folder: str | Path) -> Path:
    """Raise :class:`InputError` now, before any work, if ``folder`` cannot be written.

    Parameters
    ----------
    folder : str or Path
        The output folder a run will write (created if missing).

    Returns
    -------
    Path
        The folder.

    Examples
    --------
    >>> sxb.check_writable("results").name
    'results'
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder} exists and is not a folder")
    probe_in = folder
    while not probe_in.exists():
        probe_in = probe_in.parent
    try:
        fd, name = tempfile.mkstemp(prefix=".write-check.", dir=probe_in)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        raise InputError(f"cannot write to {folder}: {exc.strerror}") from None
    return folder


class output_folder:  # noqa: N801 - used as a context manager like open()
    """Write a run's files into a staging folder; move them into ``folder`` together
    when the block succeeds, leave ``folder`` untouched when it fails.

    Examples
    --------
    >>> with output_folder("results") as stage:
    ...     _ = write_dataset(ds, stage / "summary.nc")
    >>> sorted(p.name for p in Path("results").iterdir())
    ['summary.nc']
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def __enter__(self) -> Path:
        check_writable(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.stage = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.folder))
        return self.stage

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                for item in sorted(self.stage.iterdir()):
                    with atomic_path(self.folder / item.name) as tmp:
                        os.replace(item, tmp)
        finally:
            _remove(self.stage)
