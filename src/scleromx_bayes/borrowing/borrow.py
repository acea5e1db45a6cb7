"""Borrowing settings, and what they turn into for one cohort's cells."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..cohort import CellTable, Problem
from ..model.external import METHODS, ExternalEvidence
from .evidence import Evidence, EvidenceError
from .map_prior import MAPPrior, map_prior, study_labels
from .mixture import NormalMixture

__all__ = ["Borrowing", "PreparedBorrowing"]

# MAP priors already fitted in this process, by evidence digest, regimen and settings
_MAP_PRIORS: dict[tuple, MAPPrior] = {}
_MAP_LOCK = threading.Lock()


@dataclass(frozen=True)
class Borrowing:
    """How to borrow from published series when fitting a cohort.

    Parameters
    ----------
    evidence : Evidence or None
        From :func:`read_evidence`, with the cohort's regimens (None for
        ``mixture``, which needs no studies).
    method : {"map", "robust_map", "power", "joint", "mixture"}
        ``map``: each borrowed regimen's prior is its MAP prior (a normal mixture
        on the log-odds). ``robust_map``: the same plus a weakly informative
        component of weight ``robust_weight`` centred at ``robust_mean``.
        ``power``: the external likelihood raised to ``a0`` is added (the regimen's
        own prior stays). ``joint``: the external studies and the cohort form one
        random-effects meta-analysis per borrowed regimen (what MAP approximates).
        ``mixture``: the fixed normal mixtures of ``mixtures`` (e.g. a MAP prior
        published with its components), robustified if ``robust_weight`` is given.
    regimens : tuple of str, optional
        Regimens to borrow for; default every cohort regimen the evidence has.
    tau_prior, intercept_prior :
        The between-study SD's HalfNormal scale and the mean log-odds' normal
        prior (mean, sd) of the meta-analysis (``map``, ``robust_map``, ``joint``).
    """

    evidence: Evidence | None
    method: str = "robust_map"
    regimens: tuple[str, ...] | None = None
    robust_weight: float = 0.2
    robust_mean: float = 0.5
    a0: float = 0.5
    tau_prior: float = 1.0
    intercept_prior: tuple[float, float] = (0.0, 2.0)
    seed: int = 1
    # method "mixture": regimen -> {"weights", "means", "sds"} on the log-odds
    mixtures: Mapping[str, Mapping[str, Any]] | None = None
    robust: bool = False  # method "mixture": add the robust component too

    def __post_init__(self) -> None:
        if self.method not in (*METHODS, "mixture"):
            raise ValueError(f"method must be one of {METHODS + ('mixture',)}, not {self.method!r}")
        if (self.method == "mixture") != (self.mixtures is not None):
            raise ValueError('mixtures= goes with method="mixture", and only with it')
        if self.method != "mixture" and self.evidence is None:
            raise ValueError(f"method {self.method!r} borrows from an evidence table: give one")
        if not 0 < self.robust_weight < 1 or not 0 < self.robust_mean < 1:
            raise ValueError("robust_weight and robust_mean must be in (0, 1)")
        if not 0 <= self.a0 <= 1:
            raise ValueError(f"a0 must be in [0, 1], not {self.a0}")

    @classmethod
    def from_spec(cls, evidence: Evidence, settings: Mapping[str, Any]) -> Borrowing:
        """From a spec's validated ``[borrowing]`` table (``spec.borrowing``)."""
        regimens = settings.get("regimens")
        return cls(
            evidence if settings["method"] != "mixture" else None,
            method=settings["method"],
            regimens=tuple(regimens) if regimens else None,
            robust_weight=settings["robust_weight"],
            robust_mean=settings["robust_mean"],
            a0=settings["a0"],
            tau_prior=settings["tau_prior"],
            intercept_prior=(settings["intercept_prior_mean"], settings["intercept_prior_sd"]),
            mixtures=settings.get("mixture"),
        )

    def label(self) -> str:
        if self.method == "mixture":
            return "mixture"
        if self.method == "robust_map":
            return f"robust_map({self.robust_weight:g})"
        if self.method == "power":
            return f"power({self.a0:g})"
        return self.method

    def prepare(self, cells: CellTable) -> PreparedBorrowing:
        """MAP priors fitted (``map``, ``robust_map``) and arrays for the model."""
        if self.method == "mixture":
            return self._fixed_mixtures(cells)
        regimens = self.regimens or tuple(r for r in cells.regimens if r in self.evidence.regimens)
        missing = [r for r in regimens if r not in self.evidence.regimens]
        if missing or not regimens:
            what = missing or "of the cohort"
            raise EvidenceError(
                [Problem(self.evidence.source, f"no study of regimen(s) {what}", column="regimen")]
            )
        priors: dict[str, MAPPrior] = {}
        mixtures: dict[str, NormalMixture] = {}
        if self.method in ("map", "robust_map"):
            for r in regimens:
                priors[r] = self._map_prior(r)
                mix = priors[r].mixture
                if self.method == "robust_map":
                    mix = mix.robustify(self.robust_weight, self.robust_mean)
                mixtures[r] = mix
        rows = self.evidence.table[self.evidence.table["regimen"].isin(regimens)]
        external = ExternalEvidence(
            method=self.method,
            regimens=tuple(regimens),
            **_pad(mixtures),
            study_regimen=np.array([regimens.index(r) for r in rows["regimen"]], dtype=np.int64),
            study_n=rows["n"].to_numpy(np.int64),
            study_cr=rows["n_cr"].to_numpy(np.int64),
            a0=self.a0,
            mean_prior=self.intercept_prior,
            tau_prior=self.tau_prior,
        )
        citations = {r: study_labels(g) for r, g in rows.groupby("regimen", sort=False)}
        return PreparedBorrowing(self, external, priors, mixtures, citations)

    def _map_prior(self, regimen: str) -> MAPPrior:
        """The regimen's MAP prior, fitted once per evidence table and settings in a
        process (every scenario of a sensitivity grid that borrows reuses it)."""
        table = self.evidence.table.to_csv(index=False).encode()
        key = (
            hashlib.sha256(table).hexdigest(),
            regimen,
            self.tau_prior,
            tuple(self.intercept_prior),
            self.seed,
        )
        with _MAP_LOCK:
            if key not in _MAP_PRIORS:
                _MAP_PRIORS[key] = map_prior(
                    self.evidence,
                    regimen,
                    tau_prior=self.tau_prior,
                    intercept_prior=self.intercept_prior,
                    seed=self.seed,
                )
            return _MAP_PRIORS[key]

    def _fixed_mixtures(self, cells: CellTable) -> PreparedBorrowing:
        mixtures = {}
        for regimen, m in self.mixtures.items():
            if regimen not in cells.regimens:
                raise ValueError(
                    f"borrowing.mixture names {regimen!r}, not a regimen of the cohort "
                    f"({', '.join(cells.regimens)})"
                )
            mix = NormalMixture(m["weights"], m["means"], m["sds"])
            if self.robust:
                mix = mix.robustify(self.robust_weight, self.robust_mean)
            mixtures[regimen] = mix
        # the model treats a fixed mixture as it treats a MAP mixture
        external = ExternalEvidence(method="map", regimens=tuple(mixtures), **_pad(mixtures))
        return PreparedBorrowing(self, external, {}, mixtures, {r: [] for r in mixtures})


@dataclass(frozen=True)
class PreparedBorrowing:
    """A :class:`Borrowing` made concrete for one cohort's cells (``settings`` is
    None for arrays made directly, as simulation-based calibration does)."""

    settings: Borrowing | None
    external: ExternalEvidence
    priors: dict[str, MAPPrior] = field(default_factory=dict)
    mixtures: dict[str, NormalMixture] = field(default_factory=dict)
    citations: dict[str, list[str]] = field(default_factory=dict)

    def robust_weight_posterior(self, regimen: str, logit_draws: np.ndarray) -> float:
        """Posterior probability that ``regimen``'s log-odds comes from the robust
        component: the component's share of the prior density, averaged over the
        posterior draws."""
        mix = self.mixtures[regimen]
        parts = np.log(mix.weights) + _norm_logpdf(logit_draws[:, None], mix.means, mix.sds)
        share = np.exp(parts[:, -1] - np.logaddexp.reduce(parts, axis=1))
        return float(share.mean())


def _pad(mixtures: Mapping[str, NormalMixture]) -> dict[str, np.ndarray]:
    """Components of each mixture in rows, padded to the widest with weight 0."""
    width = max((m.components for m in mixtures.values()), default=1)
    out = {}
    for attr, fill, name in (
        ("weights", 0.0, "mixture_weight"),
        ("means", 0.0, "mixture_mean"),
        ("sds", 1.0, "mixture_sd"),
    ):
        rows = np.full((len(mixtures), width), fill)
        for i, mix in enumerate(mixtures.values()):
            values = getattr(mix, attr)
            rows[i, : values.size] = values
        out[name] = rows
    return out


def _norm_logpdf(x, mean, sd):
    return -0.5 * ((x - mean) / sd) ** 2 - np.log(sd) - 0.5 * np.log(2 * np.pi)
