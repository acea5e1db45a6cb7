"""Atomic writes of summaries and posteriors (netCDF or Zarr), and reading them back.

A write goes to a temporary sibling first and is renamed into place, so a crash
or a bad input never leaves a half-written file or destroys the previous one.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import xarray as xr

__all__ = ["write_dataset", "read_dataset", "write_posterior", "read_posterior", "atomic_path"]


def _is_zarr(path: Path) -> bool:
    return path.suffix == ".zarr"


class atomic_path:  # noqa: N801 - used as a context manager like open()
    """Context manager giving a temporary path that replaces ``path`` on success.

    Examples
    --------
    >>> with atomic_path("out.txt") as tmp:  # doctest: +SKIP
    ...     tmp.write_text("done")
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
    """Write a Dataset atomically to ``.nc`` (netCDF4 via h5netcdf) or ``.zarr``."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if _is_zarr(path):
            ds.to_zarr(tmp, mode="w")
        else:
            ds.to_netcdf(tmp, engine="h5netcdf")
    return path


def read_dataset(path: str | Path) -> xr.Dataset:
    """Read a Dataset written by :func:`write_dataset`, fully loaded and closed."""
    path = Path(path)
    if _is_zarr(path):
        with xr.open_zarr(path) as ds:
            return ds.load()
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return ds.load()


def write_posterior(tree: xr.DataTree, path: str | Path) -> Path:
    """Write a whole posterior DataTree atomically (netCDF or Zarr)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        if _is_zarr(path):
            tree.to_zarr(tmp, mode="w")
        else:
            tree.to_netcdf(tmp, engine="h5netcdf")
    return path


def read_posterior(path: str | Path) -> xr.DataTree:
    """Read a DataTree written by :func:`write_posterior`."""
    path = Path(path)
    if _is_zarr(path):
        return xr.open_datatree(path, engine="zarr").load()
    with xr.open_datatree(path, engine="h5netcdf") as tree:
        return tree.load()
