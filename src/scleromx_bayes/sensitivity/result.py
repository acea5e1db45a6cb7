"""What one scenario's run produced: a summary or the reason there is none."""

from __future__ import annotations

from dataclasses import dataclass, replace

import xarray as xr

__all__ = ["ScenarioResult"]


@dataclass(frozen=True)
class ScenarioResult:
    """One scenario's outcome.

    ``status`` is ``ok``, ``failed_diagnostics`` (a summary exists but is left out of
    the ranges) or ``error`` (no summary); ``reason`` says why it is not ``ok``.
    """

    status: str
    reason: str
    summary: xr.Dataset | None
    compiled_now: bool = False
    compile_s: float = 0.0
    sample_s: float = 0.0
    wall_s: float = 0.0
    reused: bool = False
    # answered from the baseline's draws by importance sampling (see reweight.py);
    # pareto_k is NaN when reweighting was not tried
    reweighted: bool = False
    pareto_k: float = float("nan")
    importance_ess: float = float("nan")  # effective sample size of the weights

    @classmethod
    def error(cls, exc: BaseException, wall_s: float = 0.0) -> ScenarioResult:
        return cls("error", f"{type(exc).__name__}: {exc}", None, wall_s=wall_s)

    def as_reused(self) -> ScenarioResult:
        return replace(self, reused=True)

    def meta(self) -> dict[str, object]:
        """Everything but the summary, as plain values (stored beside it)."""
        return {
            "status": self.status,
            "reason": self.reason,
            "compiled_now": self.compiled_now,
            "compile_s": self.compile_s,
            "sample_s": self.sample_s,
            "wall_s": self.wall_s,
            "reweighted": self.reweighted,
            "pareto_k": self.pareto_k,
            "importance_ess": self.importance_ess,
        }
