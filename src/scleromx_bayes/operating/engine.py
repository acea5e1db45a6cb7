"""One chunk of simulations: simulate cohorts from a truth, fit each, keep what the
operating characteristics are computed from.

Seeds come from one ``numpy.random.SeedSequence(seed)``: simulation ``i`` of a truth
draws its cohort from the child ``spawn_key=(truth.seed_key, i, 0)`` and seeds its
fit with ``(truth.seed_key, i, 1)``. Every spec fits the same simulated cohorts
(common random numbers: model comparisons are paired), and nothing depends on how
simulations are split among chunks or workers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy.special import expit

from ..borrowing import PreparedBorrowing
from ..cohort import CellTable
from ..diagnostics import ConvergenceCriteria
from ..fit import SEED_MAX, SamplerSettings, fit_cells
from ..model import effective_structure
from ..spec import ModelSpec
from ..summary import expected_expit, posterior_probabilities
from .truth import Truth

__all__ = ["ESTIMANDS", "STATUS", "ChunkTask", "run_chunk", "simulate_counts", "simulation_seeds"]

ESTIMANDS = ("p_cr", "risk_difference")
# per simulation: fitted and its diagnostics passed, fitted but a diagnostic failed,
# no fit (an error)
STATUS = {"ok": 0, "failed_diagnostics": 1, "error": 2}


def simulation_seeds(seed: int, truth: Truth, i: int) -> tuple[np.random.Generator, int]:
    """The data generator and the fit seed of simulation ``i`` of ``truth``."""
    data = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(truth.seed_key, i, 0)))
    state = np.random.SeedSequence(seed, spawn_key=(truth.seed_key, i, 1)).generate_state(2)
    fit_seed = (int(state[0]) << 32 | int(state[1])) % SEED_MAX
    return data, fit_seed


def simulate_counts(
    design: CellTable, eta: np.ndarray, site_sd: float, rng: np.random.Generator
) -> np.ndarray:
    """Responders per design cell: each centre's effect drawn from N(0, site_sd), then
    y ~ Binomial(n, expit(eta[regimen, severity] + site effect))."""
    u = rng.normal(0.0, site_sd, len(design.sites)) if site_sd > 0 else np.zeros(len(design.sites))
    r, k, s = design.index("regimen"), design.index("severity"), design.index("site")
    return rng.binomial(design.n, expit(eta[r, k] + u[s]))


def new_site_truth(eta: np.ndarray, site_sd: float) -> np.ndarray:
    """The true CR probability at a new centre, (regimen, severity): the truth's
    centre effect integrated out, exactly as the summary integrates the posterior's."""
    return expected_expit(xr.DataArray(eta), xr.DataArray(site_sd)).values


@dataclass(frozen=True)
class ChunkTask:
    """Everything a worker needs for some simulations of one spec and one truth
    (picklable: it crosses to processes and Dask workers)."""

    design: CellTable
    spec: ModelSpec
    truth: Truth
    simulations: tuple[int, ...]
    seed: int
    settings: SamplerSettings
    criteria: ConvergenceCriteria
    reference: str
    p0s: tuple[float, ...]
    interval: float
    borrowing: PreparedBorrowing | None = None  # a MAP prior fitted once, in the parent


def _empty(task: ChunkTask) -> dict[str, np.ndarray]:
    n, regs, sevs = len(task.simulations), len(task.design.regimens), len(task.design.severities)
    cell = (n, len(ESTIMANDS), regs, sevs)
    return {
        "estimate": np.full(cell, np.nan),
        "lower": np.full(cell, np.nan),
        "upper": np.full(cell, np.nan),
        "true_value": np.full(cell, np.nan),
        "prob_better": np.full((n, regs, sevs), np.nan),
        "prob_above": np.full((n, regs, sevs, len(task.p0s)), np.nan),
        "status": np.full(n, STATUS["error"], dtype=np.int8),
        "max_rhat": np.full(n, np.nan),
        "min_ess_bulk": np.full(n, np.nan),
        "divergences": np.full(n, -1, dtype=np.int64),
        "responders": np.zeros((n, len(task.design.frame)), dtype=np.int64),
    }


def run_chunk(task: ChunkTask) -> tuple[xr.Dataset, list[str]]:
    """Simulate and fit ``task.simulations``; per simulation, the posterior mean and
    central interval of each estimand, P(better than the reference), P(p > p0) for
    each ``p0``, the truth, and the fit's status and diagnostics. Also the reasons of
    the simulations whose fit raised (recorded, never dropped)."""
    design, out = task.design, _empty(task)
    ref = list(design.regimens).index(task.reference)
    lo_q, hi_q = (1 - task.interval) / 2, 1 - (1 - task.interval) / 2
    p0 = np.asarray(task.p0s, dtype=float)
    reasons: list[str] = []
    for j, i in enumerate(task.simulations):
        rng, fit_seed = simulation_seeds(task.seed, task.truth, i)
        eta, site_sd = task.truth.draw(design, rng)
        y = simulate_counts(design, eta, site_sd, rng)
        true_p = new_site_truth(eta, site_sd)
        out["true_value"][j, 0] = true_p
        out["true_value"][j, 1] = true_p - true_p[ref]
        out["responders"][j] = y
        try:
            fitted = fit_cells(
                design.with_counts(design.n, y),
                task.spec,
                settings=task.settings,
                seed=fit_seed,
                criteria=task.criteria,
                warn=False,
                borrowing=task.borrowing,
            )
        except Exception as exc:  # recorded with its reason, never dropped
            reasons.append(f"simulation {i}: {type(exc).__name__}: {exc}")
            continue
        new = posterior_probabilities(fitted)["new_site"].values  # chain, draw, regimen, severity
        p = new.reshape(-1, *new.shape[2:])
        rd = p - p[:, ref : ref + 1, :]
        for e, draws in enumerate((p, rd)):
            out["estimate"][j, e] = draws.mean(axis=0)
            out["lower"][j, e], out["upper"][j, e] = np.quantile(draws, [lo_q, hi_q], axis=0)
        out["prob_better"][j] = (rd > 0).mean(axis=0)
        out["prob_above"][j] = (p[..., None] > p0).mean(axis=0)
        diag = fitted.diagnostics
        out["status"][j] = STATUS["ok" if diag.ok else "failed_diagnostics"]
        out["max_rhat"][j], out["min_ess_bulk"][j] = diag.max_rhat, diag.min_ess_bulk
        out["divergences"][j] = diag.divergences
    for name in ("estimate", "lower", "upper", "true_value"):  # no contrast with itself
        out[name][:, 1, ref, :] = np.nan
    out["prob_better"][:, ref, :] = np.nan
    if not effective_structure(task.spec, design).contrasts_defined:
        # complete pooling: regimens equal by assumption, as the summary says (NaN)
        for name in ("estimate", "lower", "upper"):
            out[name][:, 1] = np.nan
        out["prob_better"][:] = np.nan
    cell = ("simulation", "estimand", "regimen", "severity")
    dims = {
        "estimate": cell,
        "lower": cell,
        "upper": cell,
        "true_value": cell,
        "prob_better": cell[:1] + cell[2:],
        "prob_above": (*cell[:1], *cell[2:], "p0"),
        "responders": ("simulation", "cell"),
    }
    ds = xr.Dataset(
        {name: (dims.get(name, ("simulation",)), values) for name, values in out.items()},
        coords={
            "simulation": list(task.simulations),
            "estimand": list(ESTIMANDS),
            "regimen": list(design.regimens),
            "severity": list(design.severities),
            "p0": list(task.p0s),
            "cell": np.arange(len(design.frame)),
        },
    )
    return ds, reasons
