"""Where a result came from: the data's provenance, package versions, the synthetic flag.

Everything the package writes carries these, so a result can be traced back to the
data (by fingerprint, never by content) and the software that made it.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from .cohort import CellTable, Cohort

__all__ = ["SYNTHETIC_NOTE", "DataProvenance", "provenance_attrs", "versions"]

SYNTHETIC_NOTE = "SYNTHETIC DATA: generated for illustration, not real patients."
_PACKAGES = (
    "scleromx-bayes",
    "pymc",
    "pytensor",
    "nutpie",
    "numba",
    "arviz",
    "arviz-base",
    "arviz-stats",
    "numpy",
    "xarray",
    "pandas",
)


@dataclass(frozen=True)
class DataProvenance:
    """What a fit's data were, without any patient-level content.

    The outcome definition is not here: it belongs to the cells a fit used
    (``CellTable.outcome``), the one place it is set.

    Examples
    --------
    >>> import scleromx_bayes as sxb
    >>> DataProvenance.of(sxb.load_example()).synthetic
    True
    """

    source: str
    kind: str
    fingerprint: str
    n_patients: int | None
    n_episodes: int
    synthetic: bool

    @classmethod
    def of(cls, cohort: Cohort) -> DataProvenance:
        """The provenance of ``cohort``: its source, kind, sizes and fingerprint."""
        return cls(
            source=cohort.source,
            kind=cohort.kind,
            fingerprint=cohort.fingerprint(),
            n_patients=cohort.n_patients,
            n_episodes=cohort.n_episodes,
            synthetic=cohort.synthetic,
        )

    @classmethod
    def of_cells(cls, cells: CellTable, synthetic: bool = False) -> DataProvenance:
        """For cells made without a cohort (simulations, hand-built tables)."""
        return cls("<cells>", "cells", "", None, int(cells.n.sum()), synthetic)

    def to_attrs(self) -> dict[str, object]:
        """The provenance as flat netCDF-safe attributes."""
        return {
            "data_source": self.source,
            "data_kind": self.kind,
            "data_fingerprint": self.fingerprint,
            "n_patients": -1 if self.n_patients is None else int(self.n_patients),
            "n_episodes": int(self.n_episodes),
        }


@functools.cache  # importlib.metadata scans sys.path: ~50 ms a call, once per Dataset
def versions() -> str:
    """Versions of this package and the ones its results depend on, as JSON."""
    out = {}
    for name in _PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return json.dumps(out, sort_keys=True)


def provenance_attrs(synthetic: bool) -> dict[str, object]:
    """Package versions, creation time and the synthetic flag (with its note when set),
    for every Dataset the package writes."""
    attrs: dict[str, object] = {
        "versions": versions(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "synthetic": int(synthetic),
    }
    if synthetic:
        attrs["note"] = SYNTHETIC_NOTE
    return attrs
