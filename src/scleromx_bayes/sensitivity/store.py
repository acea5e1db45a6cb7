"""The store of a long run: one file per finished piece of work, written atomically.

A sensitivity run stores one file per scenario (``scenarios/``), an
operating-characteristics run one per chunk of simulations (``simulations/``).
Each file carries the key of the work it answers and a checksum of its content,
both verified on load: a file that is empty, truncated, edited or swapped with
another's is reported (a :class:`StoreWarning` naming the file) and its work is
computed again, never trusted. One run at a time holds the store (a lock file); a
second run on the same store is refused.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import xarray as xr

from ..errors import InputError
from ..io import atomic_path, read_dataset, write_dataset
from .result import ScenarioResult

__all__ = ["Store", "StoreError", "StoreWarning", "content_checksum"]


class StoreError(InputError):
    """The store cannot be used (not a folder, or in use by another run).

    Examples
    --------
    >>> from pathlib import Path
    >>> _ = Path("not-a-folder").write_text("")
    >>> try:
    ...     sxb.run_sensitivity(sxb.load_example(), "default", store="not-a-folder")
    ... except sxb.StoreError as error:
    ...     print(error)
    store not-a-folder exists and is not a folder
    """


class StoreWarning(UserWarning):
    """A stored scenario could not be trusted and is computed again."""


def content_checksum(ds: xr.Dataset, key: str, meta: str) -> str:
    """SHA-256 of a stored summary's values and coordinates, its key and its run record."""
    digest = hashlib.sha256()
    digest.update(key.encode())
    digest.update(meta.encode())
    for name in sorted(map(str, ds.variables)):
        values = np.asarray(ds[name].values)
        digest.update(f"{name}{values.shape}".encode())
        if values.dtype.kind in "biuf":
            digest.update(np.ascontiguousarray(values, dtype=np.float64).tobytes())
        else:
            digest.update("\x1f".join(map(str, values.ravel())).encode())
    return digest.hexdigest()


class Store:
    """A folder of finished scenarios. Use as a context manager to hold its lock.

    Examples
    --------
    >>> with Store("sens-store") as store:
    ...     store.finished()
    0
    """

    def __init__(self, path: str | Path, folder: str = "scenarios"):
        self.path = Path(path)
        self.folder = folder
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"store {self.path} exists and is not a folder")
        self._lock = None

    def __enter__(self) -> Store:
        (self.path / self.folder).mkdir(parents=True, exist_ok=True)
        lock = open(self.path / ".lock", "a+")  # noqa: SIM115 - held until __exit__
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "unknown"
            lock.close()
            raise StoreError(
                f"store {self.path} is in use by another run (process {holder}): wait for "
                "it to finish, or choose another store"
            ) from None
        lock.seek(0)
        lock.truncate()
        lock.write(str(os.getpid()))
        lock.flush()
        self._lock = lock
        return self

    def __exit__(self, *exc) -> None:
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    @property
    def _what(self) -> str:  # what one file holds, for messages
        return "scenario" if self.folder == "scenarios" else "chunk of simulations"

    def _file(self, key: str, suffix: str) -> Path:
        return self.path / self.folder / f"{key}{suffix}"

    def finished(self) -> int:
        """How many finished files the store holds."""
        folder = self.path / self.folder
        return len(list(folder.glob("*.nc"))) if folder.exists() else 0

    def _distrust(self, path: Path, why: str) -> None:
        warnings.warn(
            f"{path}: {why}; the {self._what} is computed again", StoreWarning, stacklevel=4
        )
        path.unlink(missing_ok=True)

    def load_dataset(self, key: str) -> tuple[xr.Dataset, dict] | None:
        """The stored Dataset for ``key`` and the record saved beside it, or None if
        absent or not to be trusted (then the file is reported and removed)."""
        path = self._file(key, ".nc")
        if not path.exists():
            return None
        try:
            ds = read_dataset(path)
            meta_text = str(ds.attrs.pop("scenario_run"))
            stored_key = str(ds.attrs.pop("store_key"))
            checksum = str(ds.attrs.pop("store_checksum"))
            meta = json.loads(meta_text)
        except (OSError, ValueError, KeyError) as exc:
            self._distrust(path, f"unreadable or incomplete ({type(exc).__name__})")
            return None
        if stored_key != key:
            self._distrust(path, f"holds the result of another {self._what} (key {stored_key})")
            return None
        if content_checksum(ds, stored_key, meta_text) != checksum:
            self._distrust(path, "its content does not match its checksum (edited?)")
            return None
        return ds, meta

    def save_dataset(self, key: str, ds: xr.Dataset, meta: dict) -> None:
        """Write a finished piece of work: the Dataset, its key, a record and a checksum."""
        ds = ds.copy()
        meta_text = json.dumps(meta)
        ds.attrs["scenario_run"] = meta_text
        ds.attrs["store_key"] = key
        ds.attrs["store_checksum"] = content_checksum(ds, key, meta_text)
        write_dataset(ds, self._file(key, ".nc"))
        self._file(key, ".error.json").unlink(missing_ok=True)

    def load(self, key: str) -> ScenarioResult | None:
        """The stored scenario for ``key``, or None if absent or not to be trusted."""
        loaded = self.load_dataset(key)
        if loaded is None:
            return None
        ds, meta = loaded
        return ScenarioResult(summary=ds, reused=True, **meta)

    def save(self, key: str, name: str, result: ScenarioResult) -> None:
        """Write a finished scenario (errors as JSON, retried on resume)."""
        meta = result.meta()
        if result.summary is None:
            # errors are recorded (and retried on resume), never silently dropped
            with atomic_path(self._file(key, ".error.json")) as tmp:
                tmp.write_text(json.dumps({"scenario": name, **meta}, indent=2))
            return
        self.save_dataset(key, result.summary, meta)
