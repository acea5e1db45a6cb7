"""The structure a model is actually built with, from a spec and the cells.

A factor with one level drops its term (one site: no site effect; one regimen:
no between-regimen SD), so the structure built can be less than the spec says.
:class:`Structure` is that built structure, as a frozen value.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..cohort import CellTable
from ..spec import ModelSpec, SpecError

__all__ = ["CENTRED_INFORMATION", "Structure", "effective_structure"]

# A group (regimen or site) is "well informed" when the data alone pin its log-odds
# down to about +-0.1: Fisher information n * p * (1 - p) of at least 100, with p the
# cohort's overall response rate. Its random effect then samples well centred; the
# non-centred form, right for a handful of patients a group, makes a ridge between
# the group mean, the SD and the standardised effects there (a 1,000-centre registry
# with 25,000 episodes a regimen gave R-hat 1.17 and divergences non-centred). Less
# informed groups stay non-centred: with a between-group SD near 0 (no true site
# effect, or a few groups) a centred effect makes the funnel the non-centred form
# avoids.
CENTRED_INFORMATION = 100.0


def _well_informed(cells: CellTable, factor: str, levels: int) -> bool:
    """Does the median group of ``factor`` (groups left out, n = 0, aside) carry
    ``CENTRED_INFORMATION`` or more?"""
    n = np.bincount(cells.index(factor), weights=cells.n, minlength=levels)
    n = n[n > 0]
    if not n.size:
        return False
    rate = float(np.clip(cells.y.sum() / cells.n.sum(), 0.01, 0.99))
    return bool(np.median(n) * rate * (1 - rate) >= CENTRED_INFORMATION)


@dataclass(frozen=True)
class Structure:
    """The terms a model has once one-level factors have dropped theirs.

    ``priors`` names the priors this structure uses, in the spec's order.
    """

    regimen_pooling: str
    site_effect: bool
    severity_effect: bool
    interaction: bool
    patient_effect: bool
    covariates: tuple[str, ...]
    ordinal: bool
    priors: tuple[str, ...]
    # random effects sampled centred (well-informed groups) rather than non-centred
    regimen_centred: bool = False
    site_centred: bool = False

    def terms(self) -> tuple:
        """Everything but the prior names: what changes the compiled graph's shape."""
        return (
            self.regimen_pooling,
            self.site_effect,
            self.severity_effect,
            self.interaction,
            self.patient_effect,
            self.covariates,
            self.ordinal,
            self.regimen_centred,
            self.site_centred,
        )

    @property
    def contrasts_defined(self) -> bool:
        """False under complete pooling: every regimen is the same by assumption, so a
        contrast between regimens is the premise, not a finding."""
        return self.regimen_pooling != "complete"


def effective_structure(spec: ModelSpec, cells: CellTable) -> Structure:
    """The structure actually built for these cells: a factor with one level drops its term.

    Examples
    --------
    >>> import scleromx_bayes as sxb
    >>> effective_structure(sxb.load_spec("base"), sxb.load_example().cells()).site_effect
    True
    """
    pooling = spec.regimen_pooling
    if pooling in ("partial", "exnex") and len(cells.regimens) == 1:
        pooling = "complete"  # a between-regimen SD is not defined by one regimen
    site = spec.site_effect and len(cells.sites) > 1
    severity = spec.severity_effect and len(cells.severities) > 1
    # an interaction needs both factors to vary (and a severity term to depart from)
    interaction = spec.regimen_severity_interaction and severity and len(cells.regimens) > 1
    if spec.patient_effect and not cells.patients:
        raise SpecError(
            "the spec has a patient effect but the cells were aggregated without "
            "patients: build them with Cohort.cells(by_patient=True) or use sxb.fit"
        )
    if tuple(spec.covariates) != tuple(cells.covariates):
        raise SpecError(
            f"the spec's covariates {list(spec.covariates)} differ from the cells' "
            f"{list(cells.covariates)}: build them with Cohort.cells(covariates=...)"
        )
    # a per-patient effect is identified only by patients seen in more than one cell
    patient = spec.patient_effect and len(cells.frame) > len(cells.patients) > 1
    ordinal = spec.response_scale == "ordinal"
    if ordinal and "n_pr" not in cells.frame:
        raise SpecError(
            "the ordinal model needs partial responses: an episode table, or a "
            "counts table with an n_pr column"
        )
    # the priors are the spec's own list once the dropped terms are switched off
    built = replace(
        spec,
        regimen_pooling=pooling,
        site_effect=site,
        severity_effect=severity,
        regimen_severity_interaction=interaction,
        patient_effect=patient,
    )
    if spec.parameterisation == "auto":
        regimen_centred = _well_informed(cells, "regimen", len(cells.regimens))
        site_centred = _well_informed(cells, "site", len(cells.sites))
    else:
        regimen_centred = site_centred = spec.parameterisation == "centred"
    return Structure(
        regimen_centred=pooling == "partial" and regimen_centred,
        site_centred=site and site_centred,
        regimen_pooling=pooling,
        site_effect=site,
        severity_effect=severity,
        interaction=interaction,
        patient_effect=patient,
        covariates=tuple(spec.covariates),
        ordinal=ordinal,
        priors=built.required_priors(),
    )
