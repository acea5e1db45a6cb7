"""Decision rules on a posterior: "go" when a posterior probability is high enough.

Two quantities, both on the CR probability at a new centre (``p_cr_new_site``):

* ``better``: P(p_regimen > p_reference | data), per regimen x severity;
* ``above``: P(p_regimen > p0 | data).

A rule says **go** when its quantity exceeds ``go``; with a ``no_go`` threshold it
says **no-go** below that and **consider** in between (the go / no-go / consider
zones of early-phase decision making); without one, everything that is not go is
no-go.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..errors import SettingsError

__all__ = ["DECISIONS", "DecisionRule"]

DECISIONS = ("go", "consider", "no_go")


def _unit(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < value < 1:
        raise SettingsError(f"{name} must be a number strictly between 0 and 1, not {value!r}")
    return float(value)


@dataclass(frozen=True)
class DecisionRule:
    """A decision rule on a posterior probability.

    Attributes
    ----------
    quantity : {"better", "above"}
        P(better than the reference regimen), or P(CR probability above ``p0``).
    go : float
        Go when the posterior probability exceeds this.
    no_go : float, optional
        No-go when it is below this (``no_go <= go``); consider in between.
    p0 : float, optional
        The CR probability of ``above`` rules.
    name : str, optional
        Its label in results; default e.g. ``P(better) > 0.9``.

    Examples
    --------
    >>> DecisionRule.better(0.9).name
    'P(better) > 0.9'
    >>> DecisionRule.above(0.3, 0.8, no_go=0.2).name
    'P(p > 0.3) > 0.8, no-go < 0.2'
    >>> DecisionRule.better(0.9).decide(np.array([0.95, 0.5]))[0]
    array([ True, False])
    """

    quantity: Literal["better", "above"]
    go: float
    no_go: float | None = None
    p0: float | None = None
    name: str = ""

    def __post_init__(self) -> None:
        if self.quantity not in ("better", "above"):
            raise SettingsError(f"a rule's quantity is 'better' or 'above', not {self.quantity!r}")
        object.__setattr__(self, "go", _unit("go", self.go))
        if self.no_go is not None:
            object.__setattr__(self, "no_go", _unit("no_go", self.no_go))
            if self.no_go > self.go:
                raise SettingsError(f"no_go ({self.no_go}) must not exceed go ({self.go})")
        if self.quantity == "above":
            if self.p0 is None:
                raise SettingsError("an 'above' rule needs p0, the CR probability to beat")
            object.__setattr__(self, "p0", _unit("p0", self.p0))
        elif self.p0 is not None:
            raise SettingsError("p0 belongs to 'above' rules only")
        if not self.name:
            what = "P(better)" if self.quantity == "better" else f"P(p > {self.p0:g})"
            name = f"{what} > {self.go:g}"
            if self.no_go is not None:
                name += f", no-go < {self.no_go:g}"
            object.__setattr__(self, "name", name)

    @classmethod
    def better(cls, go: float, *, no_go: float | None = None, name: str = "") -> DecisionRule:
        """Go when P(p_regimen > p_reference) exceeds ``go``."""
        return cls("better", go, no_go, None, name)

    @classmethod
    def above(
        cls, p0: float, go: float, *, no_go: float | None = None, name: str = ""
    ) -> DecisionRule:
        """Go when P(p_regimen > p0) exceeds ``go``."""
        return cls("above", go, no_go, p0, name)

    @classmethod
    def parse(cls, text: str) -> DecisionRule:
        """From the command line: ``better:0.9``, ``better:0.9:0.2`` (go, no-go),
        ``above:0.3:0.8`` or ``above:0.3:0.8:0.2`` (p0, go, no-go)."""
        parts = text.split(":")
        try:
            numbers_ = [float(x) for x in parts[1:]]
        except ValueError:
            raise SettingsError(f"rule {text!r}: thresholds must be numbers") from None
        if parts[0] == "better" and len(numbers_) in (1, 2):
            return cls.better(numbers_[0], no_go=numbers_[1] if len(numbers_) == 2 else None)
        if parts[0] == "above" and len(numbers_) in (2, 3):
            no_go = numbers_[2] if len(numbers_) == 3 else None
            return cls.above(numbers_[0], numbers_[1], no_go=no_go)
        raise SettingsError(
            f"rule {text!r}: write better:GO[:NOGO] or above:P0:GO[:NOGO], e.g. better:0.9"
        )

    def decide(self, prob: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Go, consider and no-go (boolean arrays) for posterior probabilities ``prob``
        (NaN, e.g. the reference against itself, is none of the three)."""
        known = ~np.isnan(prob)
        go = known & (prob > self.go)
        if self.no_go is None:
            no_go = known & ~go
        else:
            no_go = known & (prob < self.no_go)
        return go, known & ~go & ~no_go, no_go

    def to_dict(self) -> dict[str, object]:
        """The rule as a plain dict (for attrs and JSON)."""
        return {
            "name": self.name,
            "quantity": self.quantity,
            "go": self.go,
            "no_go": self.no_go,
            "p0": self.p0,
        }
