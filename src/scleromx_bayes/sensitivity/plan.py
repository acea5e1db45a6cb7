"""From a scenario to what it fits: the spec with its overrides, the outcome, and
the cells with left-out sites and dropped regimens as ``n = 0``.

Data subsets never change the compiled shape: a left-out site, a dropped regimen
or a small site becomes cells with ``n = 0``. Scenarios that share a model
structure therefore share one compiled model; prior values and counts are
swapped in as data.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..borrowing import Evidence
from ..cohort import CellTable, Cohort, OutcomeDefinition
from ..fit import cells_for
from ..model import effective_structure
from ..spec import ModelSpec, load_spec
from .grid import BASELINE_VALUES, RUN_KEYS, Grid, GridError, Scenario, borrowing_overrides

__all__ = ["ScenarioInputs", "resolve"]

# part of every store key: a result stored by another version is recomputed
PACKAGE_VERSION = importlib.metadata.version("scleromx-bayes")


@dataclass(frozen=True)
class ScenarioInputs:
    """What one scenario fits: cells (full layout, masked counts), spec, outcome."""

    scenario: Scenario
    cells: CellTable
    spec: ModelSpec
    outcome: OutcomeDefinition
    excluded_sites: tuple[str, ...]
    excluded_regimens: tuple[str, ...]
    evidence: Evidence | None = None  # published series, when the spec borrows

    @property
    def contrast_note(self) -> str:
        """Why this scenario has no regimen contrasts at all ("" when it has them)."""
        if not effective_structure(self.spec, self.cells).contrasts_defined:
            return "undefined under the model (complete pooling: regimens equal by assumption)"
        return ""

    def key(self, fingerprint: str, grid: Grid, summary_args: Mapping[str, Any]) -> str:
        """A content hash: the same inputs give the same store entry."""
        payload = {
            "spec": self.spec.to_toml(),
            "outcome": self.outcome.label,
            "excluded_sites": self.excluded_sites,
            "excluded_regimens": self.excluded_regimens,
            "evidence": _evidence_digest(self.evidence),
            "fingerprint": fingerprint,
            "run": {k: getattr(grid, k) for k in RUN_KEYS},
            "package": PACKAGE_VERSION,
            "summary": dict(summary_args),
        }
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode())
        return digest.hexdigest()[:16]


def _evidence_digest(evidence: Evidence | None) -> str | None:
    if evidence is None:
        return None
    return hashlib.sha256(evidence.table.to_csv(index=False).encode()).hexdigest()[:16]


def resolve(
    cohort: Cohort, grid: Grid, scenario: Scenario, evidence: Evidence | None = None
) -> ScenarioInputs:
    """Turn a scenario into the cells, spec and outcome it fits (and the evidence,
    when it borrows from published series)."""
    get = lambda axis: scenario.get(axis, BASELINE_VALUES.get(axis))  # noqa: E731
    spec = load_spec(get("model") or grid.model)
    overrides: dict[str, Any] = dict(grid.presets[get("regimen_prior")])
    if get("borrowing") != "none":
        overrides.update(borrowing_overrides(get("borrowing")))
    if scenario.get("site_sd") is not None:
        overrides["priors.site_sd"] = {"dist": "HalfNormal", "sigma": float(get("site_sd"))}
    if get("severity_adjustment") == "unadjusted":
        overrides["structure.severity_effect"] = False
    if get("site_effect") == "none":
        overrides["structure.site_effect"] = False
    spec = (
        spec.with_overrides(overrides, name=f"{spec.name}:{scenario.name}") if overrides else spec
    )
    outcome = OutcomeDefinition(get("outcome"), ne=get("ne_policy"))
    cells = cells_for(cohort, spec, outcome)

    excluded_sites: list[str] = []
    site = get("leave_out_site")
    if site != "none":
        excluded_sites.append(_level_of_data("leave_out_site", site, "site", cohort.sites))
    k = int(get("min_site_patients"))
    if k > 0:
        sizes = _site_sizes(cohort)
        excluded_sites += [s for s in cohort.sites if sizes[s] < k and s not in excluded_sites]
    excluded_regimens: list[str] = []
    regimen = get("drop_regimen")
    if regimen != "none":
        excluded_regimens.append(
            _level_of_data("drop_regimen", regimen, "regimen", cohort.regimens)
        )
    keep = ~(
        cells.frame["site"].isin(excluded_sites) | cells.frame["regimen"].isin(excluded_regimens)
    )
    cells = cells.with_counts(np.where(keep, cells.n, 0), np.where(keep, cells.y, 0))
    if spec.borrowing and spec.borrowing["method"] != "mixture" and evidence is None:
        raise GridError(
            f"scenario {scenario.name!r} borrows from published series "
            f"({spec.borrowing['method']}): give the evidence table, "
            "run_sensitivity(..., evidence=sxb.read_evidence(path, regimens=cohort.regimens))"
        )
    return ScenarioInputs(
        scenario,
        cells,
        spec,
        outcome,
        tuple(excluded_sites),
        tuple(excluded_regimens),
        evidence if spec.borrowing else None,
    )


def _level_of_data(axis: str, value: str, what: str, levels: Sequence[str]) -> str:
    """``value`` if it is one of the data's ``levels``, else a GridError naming the axis."""
    if value not in levels:
        raise GridError(
            f"axis {axis!r}, value {value!r}: not a {what} in the data ({', '.join(levels)})"
        )
    return value


def _site_sizes(cohort: Cohort) -> dict[str, int]:
    """Patients per site (episodes tables) or episodes per site (counts tables)."""
    if cohort.kind == "episodes":
        return cohort.table.groupby("site")["patient_id"].nunique().to_dict()
    return cohort.table.groupby("site")["n"].sum().to_dict()
