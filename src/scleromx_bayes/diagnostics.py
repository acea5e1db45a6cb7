"""Convergence checks of a fit: R-hat, bulk and tail ESS (ArviZ), divergences.

A check that cannot be computed (R-hat of a single draw is NaN) fails: a number
that is not there is never read as "fine".
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import xarray as xr
from arviz_base import rcParams

from .convergence import rhat_ess
from .errors import SettingsError
from .model import names as v

__all__ = ["ConvergenceCriteria", "Diagnostics", "diagnose"]


@dataclass(frozen=True)
class ConvergenceCriteria:
    """Thresholds past which a fit is reported as not converged.

    Examples
    --------
    >>> ConvergenceCriteria(rhat_max=1.05, ess_min=100).ess_min
    100.0
    """

    rhat_max: float = 1.01
    ess_min: float = 400.0

    def __post_init__(self) -> None:
        for name, low in (("rhat_max", 1.0), ("ess_min", 0.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise SettingsError(f"{name} must be a number, not {value!r}")
            if not np.isfinite(value) or value < low:
                raise SettingsError(f"{name} must be a finite number >= {low}, not {value!r}")
            object.__setattr__(self, name, float(value))


@dataclass(frozen=True)
class Diagnostics:
    """Convergence checks of one fit. ``ok`` is False if any check failed.

    Examples
    --------
    >>> d = sxb.Diagnostics(max_rhat=1.002, min_ess_bulk=900.0, min_ess_tail=800.0,
    ...                     divergences=0, draws_total=4000)
    >>> d.ok
    True
    """

    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    divergences: int
    draws_total: int
    problems: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        """True when no convergence threshold is crossed."""
        return not self.problems

    def to_attrs(self) -> dict[str, float | int | str]:
        """The diagnostics as flat netCDF-safe attributes."""
        return {
            "diagnostics_max_rhat": self.max_rhat,
            "diagnostics_min_ess_bulk": self.min_ess_bulk,
            "diagnostics_min_ess_tail": self.min_ess_tail,
            "diagnostics_divergences": self.divergences,
            "diagnostics_ok": int(self.ok),
            "diagnostics_problems": "; ".join(self.problems) or "none",
        }


def _extreme(values: np.ndarray, fn) -> float:
    """``fn`` over every finite value; NaN when there is none."""
    values = values[np.isfinite(values)]
    return float(fn(values)) if values.size else float("nan")


def _stacked(post: xr.Dataset) -> np.ndarray:
    """Every scalar of every variable as one (scalar, chain, draw) array, for
    :func:`convergence.rhat_ess` (ArviZ's numbers, all scalars at once)."""
    chains, draws = post.sizes["chain"], post.sizes["draw"]
    parts = [
        post[name].transpose("chain", "draw", ...).values.reshape(chains, draws, -1)
        for name in post.data_vars
    ]
    if not parts:
        return np.empty((0, chains, draws))
    return np.moveaxis(np.concatenate(parts, axis=-1), -1, 0)


def diagnose(
    tree: xr.DataTree,
    criteria: ConvergenceCriteria | None = None,
    var_names: Sequence[str] = v.CONVERGENCE_CHECKED,
) -> Diagnostics:
    """R-hat (rank-normalised), bulk and tail ESS over the model's parameters
    (``var_names`` that the posterior has), and divergent transitions, judged
    against ``criteria``."""
    criteria = criteria or ConvergenceCriteria()
    posterior = tree["posterior"].to_dataset()
    post = posterior[[name for name in var_names if name in posterior]]
    with warnings.catch_warnings():
        # Constant entries (the reference severity's effect is 0) give R-hat = 0/0;
        # they are NaN and skipped, the warning says nothing new.
        warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
        warnings.filterwarnings("ignore", "Degrees of freedom", RuntimeWarning)
        draws = _stacked(post)
        if not draws.size:  # nothing to check: NaN, reported as not computed
            draws = np.full((1, *draws.shape[1:]), np.nan)
        # the tail quantiles az.ess uses: ArviZ's stats.ci_prob
        rhat, ess_bulk, ess_tail = rhat_ess(draws, rcParams["stats.ci_prob"])
    max_rhat = _extreme(rhat, np.max)
    min_bulk, min_tail = _extreme(ess_bulk, np.min), _extreme(ess_tail, np.min)
    stats = tree["sample_stats"]
    div = int(stats["diverging"].values.sum()) if "diverging" in stats else 0
    total = int(post.sizes["chain"] * post.sizes["draw"])
    problems = []
    if div:
        problems.append(f"{div} divergent transition{'s' if div > 1 else ''} of {total} draws")
    if np.isnan(max_rhat):
        problems.append("R-hat could not be computed (too few draws)")
    elif max_rhat > criteria.rhat_max:
        problems.append(f"R-hat up to {max_rhat:.3f} (> {criteria.rhat_max})")
    for what, value in (("bulk", min_bulk), ("tail", min_tail)):
        if np.isnan(value):
            problems.append(f"{what} ESS could not be computed (too few draws)")
        elif value < criteria.ess_min:
            problems.append(f"{what} ESS down to {value:.0f} (< {criteria.ess_min:g})")
    return Diagnostics(max_rhat, min_bulk, min_tail, div, total, tuple(problems))
