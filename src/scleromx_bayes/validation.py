"""Is the inference right? Simulation-based calibration and interval coverage.

Both draw a "true" parameter set and a data set from the model's own prior
predictive distribution on a fixed design (the cells and their ``n``), fit the
simulated counts with the same compiled model, and compare:

* **SBC** (Talts et al. 2018, arXiv:1804.06788): the rank of each true value among
  thinned posterior draws is uniform on ``0..L`` if, and only if (over enough
  simulations), the sampler and the model agree. Checked per parameter with a
  chi-square test on binned ranks.
* **Coverage**: the share of simulations whose central 95% interval of a regimen's
  CR probability (typical site, each severity) contains the true value. With truths
  drawn from the prior, a correct posterior covers at the nominal rate on average.

Data simulated here are synthetic and labelled so.
"""

from __future__ import annotations

import concurrent.futures as cf
import time
import warnings
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr
from scipy import stats
from scipy.special import expit

from .borrowing import PreparedBorrowing
from .cohort import CellTable, read_counts
from .derived import NUMPY_MODE
from .fit import SamplerSettings, fit_cells
from .model import build_model, effective_structure
from .model import names as v
from .model.external import ExternalEvidence
from .plots import new_figure, save_figure
from .runner import run_chunks
from .spec import ModelSpec, load_spec

__all__ = ["SBCResult", "design_cells", "sbc", "scaled_design"]

# Parameters whose ranks are checked: the model's own, on their natural scale.
_SCALARS = (v.INTERCEPT, v.REGIMEN_SD, v.SITE_SD, v.INTERACTION_SD, v.CUTPOINT_GAP)


@dataclass(frozen=True)
class SBCResult:
    """Ranks, coverage and diagnostics of an SBC run.

    Attributes
    ----------
    ranks : xarray.Dataset
        ``rank[simulation, parameter]`` in ``0..n_ranks - 1``; ``covered[simulation,
        regimen, severity]`` (1 if the central interval held the truth);
        ``divergences[simulation]``, ``max_rhat[simulation]``.
    uniformity : xarray.Dataset
        ``chi2_p[parameter]``: p-value of the chi-square test of uniform ranks over
        ``n_bins`` bins; ``coverage[regimen, severity]`` and ``coverage_overall``.
    """

    ranks: xr.Dataset
    uniformity: xr.Dataset

    @property
    def min_p_value(self) -> float:
        return float(self.uniformity["chi2_p"].min())

    @property
    def coverage_overall(self) -> float:
        return float(self.uniformity["coverage_overall"])


def design_cells(cells: CellTable) -> CellTable:
    """The design of a cell table: its cells and ``n``, responders set to 0."""
    return scaled_design(cells, 1)


def scaled_design(cells: CellTable, factor: int) -> CellTable:
    """The same cells with every ``n`` multiplied by ``factor`` (a larger cohort of the
    same shape: e.g. 9 times the 33-patient example is about 300 patients)."""
    return cells.with_counts(cells.n * int(factor), np.zeros_like(cells.y))


def small_borrowing_design() -> tuple[CellTable, ExternalEvidence]:
    """A small design for checking the joint borrowing model: 2 regimens at 2 sites
    (20 patients, one severity) and 3 published series of R1 (30 patients); every
    count is to be simulated (the responders here are 0)."""
    frame = pd.DataFrame(
        {
            "site": ["A", "A", "B", "B"],
            "regimen": ["R1", "R2", "R1", "R2"],
            "severity": "all",
            "n": [6, 5, 4, 5],
            "n_cr": 0,
        }
    )
    external = ExternalEvidence(
        "joint",
        ("R1",),
        study_regimen=np.zeros(3, dtype=np.int64),
        study_n=np.array([10, 8, 12]),
        study_cr=np.zeros(3, dtype=np.int64),
    )
    return design_cells(read_counts(frame).cells()), external


def _parameter_draws(post: xr.Dataset, cells: CellTable) -> dict[str, np.ndarray]:
    """Flattened draws (sample, ...) of every checked parameter, named for the output."""
    out: dict[str, np.ndarray] = {}
    for name in _SCALARS:
        if name in post:
            out[name] = post[name].values.reshape(-1)
    for r in cells.regimens:
        out[f"{v.REGIMEN_LOGIT}[{r}]"] = post[v.REGIMEN_LOGIT].sel(regimen=r).values.reshape(-1)
    for name in (v.BORROWED_MEAN, v.BORROWED_TAU):  # the joint model's meta-analyses
        if name in post:
            for r in post[name]["borrowed_regimen"].values:
                out[f"{name}[{r}]"] = post[name].sel(borrowed_regimen=r).values.reshape(-1)
    if v.SEVERITY_EFFECT in post:
        for k in cells.severities[1:]:
            out[f"{v.SEVERITY_EFFECT}[{k}]"] = (
                post[v.SEVERITY_EFFECT].sel(severity=k).values.reshape(-1)
            )
    return out


def _typical_p(post: xr.Dataset, cells: CellTable) -> np.ndarray:
    """Draws of CR probability at a typical site: (sample, regimen, severity)."""
    shape = (-1, len(cells.regimens), len(cells.severities))
    return expit(post[v.TYPICAL_LOGIT].values.reshape(shape))


SBC_CHUNK = 25  # simulations per task of the runner


@dataclass(frozen=True)
class _SBCChunk:
    """Some simulations of an SBC run: their simulated counts and truths (picklable)."""

    design: CellTable
    spec: ModelSpec
    settings: SamplerSettings
    seed: int
    simulations: tuple[int, ...]
    responders: np.ndarray
    partial: np.ndarray | None
    borrowings: tuple
    truths: dict[str, np.ndarray]
    true_p: np.ndarray
    keep: np.ndarray
    quantiles: tuple[float, float]


def _sbc_chunk(task: _SBCChunk) -> tuple[xr.Dataset, list[str]]:
    """Fit each simulated data set (seed ``seed + 1 + i``, as always); rank every
    truth among the thinned draws; check interval coverage of the typical-site CR."""
    design, names = task.design, list(task.truths)
    n = len(task.simulations)
    ranks = np.zeros((n, len(names)), dtype=np.int64)
    covered = np.zeros((n, len(design.regimens), len(design.severities)), dtype=np.int8)
    divergences = np.zeros(n, dtype=np.int64)
    max_rhat = np.zeros(n)
    for j, i in enumerate(task.simulations):
        cells = design.with_counts(
            design.n, task.responders[j], None if task.partial is None else task.partial[j]
        )
        fitted = fit_cells(
            cells,
            task.spec,
            settings=task.settings,
            seed=task.seed + 1 + int(i),
            warn=False,
            borrowing=task.borrowings[j],
        )
        post = fitted.posterior["posterior"].to_dataset()
        for k, (name, values) in enumerate(_parameter_draws(post, design).items()):
            ranks[j, k] = int((values[task.keep] < task.truths[name][j]).sum())
        p = _typical_p(post, design)
        lo, hi = np.quantile(p, task.quantiles, axis=0)
        covered[j] = (lo <= task.true_p[j]) & (task.true_p[j] <= hi)
        divergences[j] = fitted.diagnostics.divergences
        max_rhat[j] = fitted.diagnostics.max_rhat
    ds = xr.Dataset(
        {
            "rank": (("simulation", "parameter"), ranks),
            "covered": (("simulation", "regimen", "severity"), covered),
            "divergences": ("simulation", divergences),
            "max_rhat": ("simulation", max_rhat),
        },
        coords={"simulation": list(task.simulations), "parameter": names},
    )
    return ds, []


def sbc(
    spec: ModelSpec | str,
    design: CellTable,
    n_sims: int,
    seed: int,
    *,
    draws: int = 500,
    tune: int = 500,
    chains: int = 4,
    n_ranks: int = 100,
    n_bins: int = 20,
    interval: float = 0.95,
    fit_spec: ModelSpec | str | None = None,
    target_accept: float | None = None,
    progress: bool = False,
    external: ExternalEvidence | None = None,
    executor: cf.Executor | None = None,
) -> SBCResult:
    """Simulation-based calibration of ``spec`` on a fixed ``design``.

    Parameters
    ----------
    spec : ModelSpec or str
    design : CellTable
        Cells and their ``n`` (responders are simulated); see :func:`design_cells`.
    n_sims : int
        Simulated data sets (200 or more for a recorded check).
    seed : int
        Seeds the prior draws and every fit: the run is reproducible.
    draws, tune, chains : int
        Sampler settings per fit. Posterior draws are thinned to ``n_ranks - 1``
        so that they are close to independent, as ranks require.
    n_ranks, n_bins : int
        Ranks run over ``0..n_ranks - 1`` and are grouped into ``n_bins`` bins for the
        chi-square test (``n_ranks`` must be a multiple of ``n_bins``).
    interval : float
        Central interval whose coverage is counted.
    fit_spec : ModelSpec or str, optional
        Fit with this spec instead of ``spec`` (same structure, other priors): a
        negative control, which a working check must flag as miscalibrated.
    target_accept : float, optional
        NUTS step-size adaptation target of every fit (default: as :func:`fit`).
    external : ExternalEvidence, optional
        Borrowing (``map``, ``robust_map`` or ``joint``; ``spec`` without pooling):
        under ``joint`` the external studies' counts are simulated too, with the
        cohort's, from the prior predictive. The power prior is not generative (its
        weighted likelihood is not a sampling model) and is refused.
    progress : bool
        Show a progress bar.
    executor : concurrent.futures.Executor, optional
        Runs chunks of simulations in parallel, through the runner that operating
        characteristics use (``runner.run_chunks``); every fit keeps its own seed
        (``seed + 1 + i``), so the result does not depend on it.

    Returns
    -------
    SBCResult

    Examples
    --------
    >>> import scleromx_bayes as sxb
    >>> from scleromx_bayes.validation import design_cells, sbc
    >>> design = design_cells(sxb.load_example().cells())
    >>> result = sbc("base", design, n_sims=10, seed=1)     # validation/ runs 200
    >>> 0 <= float(result.uniformity["chi2_p"].min()) <= 1
    True
    """
    spec = load_spec(spec) if isinstance(spec, str) else spec
    fit_spec = spec if fit_spec is None else fit_spec
    fit_spec = load_spec(fit_spec) if isinstance(fit_spec, str) else fit_spec
    if effective_structure(fit_spec, design) != effective_structure(spec, design):
        raise ValueError("fit_spec must have the same structure as spec (only priors may differ)")
    if n_ranks % n_bins:
        raise ValueError(f"n_ranks ({n_ranks}) must be a multiple of n_bins ({n_bins})")
    n_keep = n_ranks - 1
    if draws * chains < n_keep:
        raise ValueError(f"draws * chains must be at least n_ranks - 1 = {n_keep}")
    eff = effective_structure(spec, design)
    settings = SamplerSettings(
        draws=draws, tune=tune, chains=chains, target_accept=target_accept
    ).for_spec(fit_spec)
    if external is not None and external.method == "power":
        raise ValueError("the power prior is not a generative model: SBC does not apply")
    model = build_model(design, spec, external=external, simulate=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        prior = pm.sample_prior_predictive(
            draws=n_sims, model=model, random_seed=seed, compile_kwargs={"mode": NUMPY_MODE}
        )
    truth_post = prior["prior"].to_dataset()
    partial = None
    if spec.response_scale == "ordinal":
        # NR / PR / CR counts per cell; the cells carry CR (or CR+PR) and PR
        counts = prior["prior_predictive"][v.RESPONSES].values.reshape(n_sims, -1, 3)
        partial = counts[..., 1]
        orr = design.outcome.response == "orr"
        simulated = counts[..., 2] + (partial if orr else 0)
    else:
        simulated = prior["prior_predictive"][v.RESPONDERS].values.reshape(n_sims, -1)
    borrowings = [None] * n_sims
    if external is not None:
        sim_external = None
        if external.method == "joint":
            sim_external = prior["prior_predictive"][v.EXTERNAL_RESPONDERS].values
            sim_external = sim_external.reshape(n_sims, -1)
        borrowings = [
            PreparedBorrowing(
                None,
                external
                if sim_external is None
                else replace(external, study_cr=sim_external[i].astype(np.int64)),
            )
            for i in range(n_sims)
        ]
    truths = _parameter_draws(truth_post, design)
    true_p = _typical_p(truth_post, design)  # (sim, regimen, severity)

    names = list(truths)
    lo_q, hi_q = (1 - interval) / 2, 1 - (1 - interval) / 2
    t0 = time.perf_counter()
    # thinned draws for the ranks: close to independent, as ranks require
    keep = np.linspace(0, draws * chains - 1, n_keep).round().astype(int)
    tasks = [
        _SBCChunk(
            design=design,
            spec=fit_spec,
            settings=settings,
            seed=seed,
            simulations=tuple(chunk),
            responders=simulated[chunk],
            partial=None if partial is None else partial[chunk],
            borrowings=tuple(borrowings[i] for i in chunk),
            truths={name: truths[name][chunk] for name in names},
            true_p=true_p[chunk],
            keep=keep,
            quantiles=(lo_q, hi_q),
        )
        for chunk in np.array_split(np.arange(n_sims), max(1, -(-n_sims // SBC_CHUNK)))
    ]
    chunks = run_chunks(
        tasks,
        _sbc_chunk,
        sizes=[len(t.simulations) for t in tasks],
        executor=executor,
        progress=progress,
    )
    per_sim = xr.concat([ds for ds, _ in chunks], "simulation")
    ranks = per_sim["rank"].values
    covered = per_sim["covered"].values
    divergences = per_sim["divergences"].values
    max_rhat = per_sim["max_rhat"].values

    sim = np.arange(n_sims)
    coords = {"simulation": sim, "parameter": names}
    rank_ds = xr.Dataset(
        {
            "rank": (("simulation", "parameter"), ranks),
            "covered": (("simulation", "regimen", "severity"), covered),
            "divergences": ("simulation", divergences),
            "max_rhat": ("simulation", max_rhat),
        },
        coords={**coords, "regimen": list(design.regimens), "severity": list(design.severities)},
    )
    width = n_ranks // n_bins
    chi2_p = []
    for j in range(len(names)):
        counts = np.bincount(ranks[:, j] // width, minlength=n_bins)
        chi2_p.append(float(stats.chisquare(counts).pvalue))
    coverage = covered.mean(axis=0)
    uniformity = xr.Dataset(
        {
            "chi2_p": ("parameter", np.array(chi2_p)),
            "coverage": (("regimen", "severity"), coverage),
            "coverage_overall": float(covered.mean()),
        },
        coords={
            "parameter": names,
            "regimen": list(design.regimens),
            "severity": list(design.severities),
        },
    )
    attrs = {
        "model_name": spec.name,
        "model_spec_toml": spec.to_toml(),
        "fit_spec_toml": fit_spec.to_toml(),
        "structure": str(eff.terms()),
        "n_sims": n_sims,
        "seed": seed,
        "draws": draws,
        "tune": tune,
        "chains": chains,
        "target_accept": settings.target_accept,
        "n_ranks": n_ranks,
        "n_bins": n_bins,
        "interval": interval,
        "design_cells": len(design.frame),
        "design_episodes": int(design.n.sum()),
        "sims_with_divergences": int((divergences > 0).sum()),
        "wall_s": time.perf_counter() - t0,
        "synthetic": 1,
        "note": "SYNTHETIC DATA: simulated from the model's prior predictive distribution.",
    }
    rank_ds.attrs = attrs
    uniformity.attrs = attrs
    return SBCResult(rank_ds, uniformity)


def rank_histograms(result: SBCResult, path, *, columns: int = 4):
    """Rank histograms (one panel per parameter) with the 99% band of a uniform
    histogram, written as PNG."""
    ranks = result.ranks["rank"]
    names = list(ranks["parameter"].values)
    n_sims = ranks.sizes["simulation"]
    n_bins, n_ranks = result.ranks.attrs["n_bins"], result.ranks.attrs["n_ranks"]
    lo, hi = stats.binom.ppf([0.005, 0.995], n_sims, 1 / n_bins)
    rows = -(-len(names) // columns)
    fig, axes = new_figure(rows, columns, (3.2 * columns, 2.3 * rows))
    for ax, name in zip(axes.flat, names, strict=False):
        ax.axhspan(lo, hi, color="grey", alpha=0.25, lw=0)
        ax.hist(
            ranks.sel(parameter=name).values,
            bins=np.linspace(0, n_ranks, n_bins + 1),
            color="tab:blue",
            edgecolor="white",
        )
        p = float(result.uniformity["chi2_p"].sel(parameter=name))
        ax.set_title(f"{name}\nchi2 p = {p:.2f}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    a = result.ranks.attrs
    title = (
        f"SBC rank histograms: model '{a['model_name']}', {n_sims} simulations, "
        f"{a['design_episodes']} episodes (grey: 99% band of uniform)"
    )
    return save_figure(fig, path, title, synthetic=True, dpi=90)


def summary_table(result: SBCResult) -> dict:
    """Plain numbers for a record: p-values, coverage, diagnostics."""
    u = result.uniformity
    return {
        "model": result.ranks.attrs["model_name"],
        "n_sims": int(result.ranks.attrs["n_sims"]),
        "design_episodes": int(result.ranks.attrs["design_episodes"]),
        "chi2_p": {
            str(k): round(float(v), 4)
            for k, v in zip(u["parameter"].values, u["chi2_p"].values, strict=True)
        },
        "min_chi2_p": round(result.min_p_value, 4),
        "coverage_overall": round(result.coverage_overall, 4),
        "coverage": {
            f"{r}/{k}": round(float(u["coverage"].sel(regimen=r, severity=k)), 3)
            for r in u["regimen"].values
            for k in u["severity"].values
        },
        "sims_with_divergences": int(result.ranks.attrs["sims_with_divergences"]),
        "wall_s": round(float(result.ranks.attrs["wall_s"]), 1),
    }
