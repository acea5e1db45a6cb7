"""Truths: the CR probabilities a simulated cohort is drawn from.

A truth gives, for each simulation, the log-odds of CR of every regimen x severity
at a typical centre (site effect 0) and the between-centre SD from which each
simulated cohort's centre effects are drawn afresh. What the models are judged
against is the CR probability at a new centre (the centre effect integrated out),
the quantity every decision rule and ``p_cr_new_site`` use.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import logit

from ..cohort import CellTable, Cohort
from ..cohort.files import load_table
from ..errors import SettingsError
from ..model import names as v
from ..summary import FittedModel, choose_reference

__all__ = ["Truth", "reference_rates"]

_ANY = "*"  # every severity


def _probability(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise SettingsError(f"{name} must be a probability, not {value!r}")
    value = float(value)
    if not 0 < value < 1:
        raise SettingsError(f"{name} must lie strictly between 0 and 1, not {value}")
    return value


def _by_severity(name: str, p: float | Mapping[str, float]) -> dict[str, float]:
    """A probability for every severity (``*``) or one per named severity."""
    if isinstance(p, Mapping):
        return {str(k): _probability(f"{name}[{k}]", x) for k, x in p.items()}
    return {_ANY: _probability(name, p)}


def _site_sd(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not value >= 0:
        raise SettingsError(f"site_sd must be a number >= 0, not {value!r}")
    if not math.isfinite(float(value)):
        raise SettingsError(f"site_sd must be finite, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class Truth:
    """A named scenario of true CR probabilities (typical centre) and a centre SD.

    Make one with :meth:`all_equal`, :meth:`one_better`, :meth:`from_table` or
    :meth:`from_fit`; the regimens and severities are checked against a design when
    the simulations run.

    Attributes
    ----------
    name : str
        Its label in results (``truth`` coordinate); also seeds its simulations, so a
        truth's simulated cohorts do not depend on which other truths are run.
    site_sd : float
        SD of the centre effects (log-odds) drawn for every simulated cohort.

    Examples
    --------
    >>> Truth.all_equal(0.4).name
    'all equal'
    >>> Truth.one_better("DNS rescue", 0.3, p=0.4).name
    'DNS rescue +0.3'
    """

    name: str
    site_sd: float = 0.5
    kind: str = "table"
    # severity -> p for every regimen not in `table` ("*" = every severity)
    default: Mapping[str, float] = field(default_factory=dict)
    # regimen -> severity -> p
    table: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    # regimen -> difference in CR probability added to `default`
    delta: Mapping[str, float] = field(default_factory=dict)
    # a fit's posterior draws (fitted truths): typical log-odds (draw, regimen,
    # severity), centre SD (draw), and the labels of their axes
    draws: tuple | None = field(default=None, compare=False, repr=False)
    source: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise SettingsError(f"a truth needs a name, not {self.name!r}")
        object.__setattr__(self, "site_sd", _site_sd(self.site_sd))

    # -- constructors --------------------------------------------------------
    @classmethod
    def all_equal(
        cls, p: float | Mapping[str, float], *, site_sd: float = 0.5, name: str = "all equal"
    ) -> Truth:
        """Every regimen has CR probability ``p`` (one value, or one per severity):
        the null scenario a false-positive rate is computed under."""
        return cls(name, site_sd, "all_equal", _by_severity("p", p))

    @classmethod
    def at_reference(
        cls,
        cohort: Cohort | CellTable,
        reference: str | None = None,
        *,
        site_sd: float = 0.5,
        name: str = "all equal",
    ) -> Truth:
        """Every regimen at the reference regimen's observed CR proportion in each
        severity, ``(y + 0.5) / (n + 1)`` (a severity where the reference has no
        patients takes its overall proportion). See :func:`reference_rates`."""
        return cls.all_equal(reference_rates(cohort, reference), site_sd=site_sd, name=name)

    @classmethod
    def one_better(
        cls,
        regimen: str,
        delta: float,
        *,
        p: float | Mapping[str, float],
        site_sd: float = 0.5,
        name: str | None = None,
    ) -> Truth:
        """Every regimen at ``p`` but ``regimen``, whose CR probability is ``p + delta``
        (a difference in probability at a typical centre) in every severity."""
        if isinstance(delta, bool) or not isinstance(delta, numbers.Real):
            raise SettingsError(f"delta must be a number, not {delta!r}")
        name = name or f"{regimen} {float(delta):+g}"
        return cls(name, site_sd, "one_better", _by_severity("p", p), delta={regimen: float(delta)})

    @classmethod
    def from_table(
        cls,
        table: str | Path | pd.DataFrame | Mapping[str, float | Mapping[str, float]],
        *,
        site_sd: float = 0.5,
        name: str | None = None,
    ) -> Truth:
        """User-given CR probabilities (typical centre): a file or frame with columns
        ``regimen``, ``p_cr`` and optionally ``severity`` (absent or ``*``: every
        severity), or a mapping ``{regimen: p}`` / ``{regimen: {severity: p}}``. A
        file's errors name it, the row and the column."""
        if isinstance(table, Mapping):
            rows = {str(r): _by_severity(f"p[{r}]", p) for r, p in table.items()}
            return cls(name or "table", site_sd, "table", table=rows)
        if isinstance(table, str | Path):
            raw = load_table(table)
            frame, source = raw.frame, raw.source
            row_of = raw.row_number
            name = name or Path(table).stem
        else:
            frame, source, row_of = table.astype(str), "truth table", lambda i: i + 2
        frame = frame.rename(columns=lambda c: str(c).strip().lower())
        missing = {"regimen", "p_cr"} - set(frame.columns)
        if missing:
            raise SettingsError(f"{source}: a truth table needs column(s) {sorted(missing)}")
        rows: dict[str, dict[str, float]] = {}
        for i, row in enumerate(frame.to_dict("records")):
            regimen = str(row["regimen"]).strip()
            sev = str(row.get("severity", _ANY)).strip() or _ANY
            where = f"{source} row {row_of(i)} column p_cr ({regimen}, {sev})"
            try:
                value = float(str(row["p_cr"]).strip())
            except ValueError:
                raise SettingsError(f"{where}: {row['p_cr']!r} is not a number") from None
            cell = rows.setdefault(regimen, {})
            if sev in cell:
                raise SettingsError(f"{where}: this regimen and severity are given twice")
            cell[sev] = _probability(where, value)
        return cls(name or "table", site_sd, "table", table=rows)

    @classmethod
    def from_fit(cls, fit: FittedModel, *, name: str = "as fitted") -> Truth:
        """Posterior-predictive truth: every simulation takes one posterior draw of a
        fit (its typical-centre log-odds and centre SD) as the truth."""
        post = fit.posterior["posterior"].to_dataset()
        eta = post[v.TYPICAL_LOGIT].transpose("chain", "draw", "regimen", "severity").values
        eta = eta.reshape(-1, *eta.shape[2:])
        sd = post[v.SITE_SD].values.reshape(-1) if v.SITE_SD in post else np.zeros(len(eta))
        labels = (tuple(fit.cells.regimens), tuple(fit.cells.severities))
        source = {
            "model_name": fit.spec.name,
            "seed": int(fit.seed),
            "data_fingerprint": fit.data.fingerprint,
            "draws": int(len(eta)),
        }
        return cls(name, 0.0, "fitted", draws=(eta, sd, labels), source=source)

    # -- use -------------------------------------------------------------------
    @property
    def seed_key(self) -> int:
        """A stable number from the name: seeds this truth's simulated cohorts."""
        return int.from_bytes(hashlib.sha256(self.name.encode()).digest()[:4], "little")

    def to_dict(self) -> dict[str, object]:
        """Plain values, for a result's attributes."""
        out: dict[str, object] = {"name": self.name, "kind": self.kind, "site_sd": self.site_sd}
        if self.kind == "fitted":
            return {**out, "site_sd": "from each posterior draw", **self.source}
        if self.default:
            out["p_cr"] = dict(self.default)
        if self.table:
            out["p_cr_by_regimen"] = {r: dict(x) for r, x in self.table.items()}
        if self.delta:
            out["delta"] = dict(self.delta)
        return out

    def check(self, design: CellTable) -> None:
        """Refuse a truth that names regimens or severities the design lacks, or
        leaves a regimen x severity without a probability."""
        regimens, severities = set(design.regimens), set(design.severities)
        if self.kind == "fitted":
            fit_regimens, fit_severities = self.draws[2]
            if set(fit_regimens) != regimens or set(fit_severities) != severities:
                raise SettingsError(
                    f"truth {self.name!r} comes from a fit of regimens {list(fit_regimens)} and "
                    f"severities {list(fit_severities)}; the design has {list(design.regimens)} "
                    f"and {list(design.severities)}"
                )
            return
        named = set(self.table) | set(self.delta)
        unknown = sorted(named - regimens)
        if unknown:
            raise SettingsError(
                f"truth {self.name!r} names regimen(s) {unknown} not in the design; "
                f"regimens: {list(design.regimens)}"
            )
        for source in [self.default, *self.table.values()]:
            bad = sorted(set(source) - severities - {_ANY})
            if bad:
                raise SettingsError(
                    f"truth {self.name!r} names severity level(s) {bad} not in the design; "
                    f"levels: {list(design.severities)}"
                )
        self.typical_p(design)  # every cell has a probability in (0, 1)

    def typical_p(self, design: CellTable) -> np.ndarray:
        """CR probability at a typical centre, (regimen, severity), for a fixed truth."""
        out = np.full((len(design.regimens), len(design.severities)), np.nan)
        for i, r in enumerate(design.regimens):
            source = self.table.get(r, self.default)
            for j, k in enumerate(design.severities):
                p = source.get(k, source.get(_ANY))
                if p is None:
                    raise SettingsError(
                        f"truth {self.name!r} gives no CR probability for {r} in {k} disease"
                    )
                p = p + self.delta.get(r, 0.0)
                if not 0 < p < 1:
                    raise SettingsError(
                        f"truth {self.name!r}: CR probability of {r} in {k} disease would be "
                        f"{p:.3g}, outside (0, 1)"
                    )
                out[i, j] = p
        return out

    def draw(self, design: CellTable, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        """One simulation's truth: typical-centre log-odds (regimen, severity) in the
        design's order, and the centre SD."""
        if self.kind != "fitted":
            return logit(self.typical_p(design)), self.site_sd
        eta, sd, (regimens, severities) = self.draws
        i = int(rng.integers(len(eta)))
        rows = [list(regimens).index(r) for r in design.regimens]
        cols = [list(severities).index(k) for k in design.severities]
        return eta[i][np.ix_(rows, cols)], float(sd[i])

    def label(self) -> str:
        """The truth as canonical JSON: the label that keys its stored simulations."""
        return json.dumps(self.to_dict(), sort_keys=True)


def reference_rates(cohort: Cohort | CellTable, reference: str | None = None) -> dict[str, float]:
    """The reference regimen's CR proportion per severity, ``(y + 0.5) / (n + 1)``
    (never 0 or 1); a severity without its patients takes the overall proportion.

    Parameters
    ----------
    cohort : Cohort or CellTable
        The cohort whose reference regimen is read.
    reference : str, optional
        The reference regimen (default: the first).

    Returns
    -------
    dict of str to float
        CR proportion per severity level.

    Examples
    --------
    >>> import scleromx_bayes as sxb
    >>> rates = reference_rates(sxb.load_example())
    >>> sorted(rates)
    ['nonsevere', 'severe']
    """
    cells = cohort.cells() if isinstance(cohort, Cohort) else cohort
    ref = choose_reference(cells.regimens, reference)
    frame = cells.frame[cells.frame["regimen"] == ref]
    if frame["n"].sum() == 0:
        raise SettingsError(
            f"the reference regimen {ref!r} has no evaluable patients: give the CR "
            "probability of the null truth yourself (Truth.all_equal(p))"
        )
    overall = (frame["y"].sum() + 0.5) / (frame["n"].sum() + 1)
    by = frame.groupby("severity")[["n", "y"]].sum()
    return {
        k: float((by.at[k, "y"] + 0.5) / (by.at[k, "n"] + 1))
        if k in by.index and by.at[k, "n"] > 0
        else float(overall)
        for k in cells.severities
    }
