"""Running a grid: every scenario on any executor, each finished one stored at once,
all collected along a ``scenario`` dimension of one Dataset."""

from __future__ import annotations

import concurrent.futures as cf
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import xarray as xr

from ..borrowing import Borrowing, Evidence
from ..cohort import Cohort
from ..fit import Fit, fit_cells
from ..progress import ProgressBar
from ..provenance import DataProvenance, provenance_attrs
from ..summary import choose_reference, posterior_probabilities, summarise
from .grid import BASELINE_VALUES, Grid, GridError, load_grid
from .plan import ScenarioInputs, resolve
from .result import ScenarioResult
from .reweight import K_HAT_MAX, LogDensity, ScenarioParameters, resample
from .reweight import reweight as reweight_scenario
from .store import Store

__all__ = ["run_scenario", "run_sensitivity"]


def _result(
    fitted: Fit,
    inputs: ScenarioInputs,
    summary_args: dict,
    t0: float,
    probabilities: dict | None = None,
    **extra,
):
    ds = summarise(
        fitted,
        **summary_args,
        masked_sites=inputs.excluded_sites,
        masked_regimens=inputs.excluded_regimens,
        probabilities=probabilities,
    )
    diag = fitted.diagnostics
    return ScenarioResult(
        status="ok" if diag.ok else "failed_diagnostics",
        reason="; ".join(diag.problems),
        summary=ds,
        compiled_now=fitted.timing.compiled_now,
        compile_s=fitted.timing.compile_s,
        sample_s=fitted.timing.sample_s,
        wall_s=time.perf_counter() - t0,
        **extra,
    )


def _fit(inputs: ScenarioInputs, grid: Grid, data: DataProvenance) -> Fit:
    borrowing = None
    if inputs.spec.borrowing:
        borrowing = Borrowing.from_spec(inputs.evidence, inputs.spec.borrowing)
    return fit_cells(
        inputs.cells,
        inputs.spec,
        settings=grid.sampler_settings(),
        seed=grid.seed,
        data=data,
        criteria=grid.criteria(),
        warn=False,
        borrowing=borrowing,
    )


def run_scenario(
    inputs: ScenarioInputs, grid: Grid, data: DataProvenance, summary_args: dict
) -> ScenarioResult:
    """Fit and summarise one scenario. Runs in a worker: a picklable top-level function
    whose every error is recorded in the result, so the other scenarios go on."""
    t0 = time.perf_counter()
    try:
        return _result(_fit(inputs, grid, data), inputs, summary_args, t0)
    except Exception as exc:  # recorded with its reason, never dropped
        return ScenarioResult.error(exc, time.perf_counter() - t0)


def run_sensitivity(
    cohort: Cohort,
    grid: Grid | str,
    *,
    executor: cf.Executor | None = None,
    store: str | Path | None = None,
    resume: bool = True,
    progress: bool = False,
    hdi_prob: float = 0.95,
    thresholds: Sequence[float] = (0.25, 0.5),
    reference: str | None = None,
    reweight: bool = False,
    k_hat_max: float = K_HAT_MAX,
    evidence: Evidence | None = None,
) -> xr.Dataset:
    """Run every scenario of ``grid`` and collect them along a ``scenario`` dimension.

    Parameters
    ----------
    cohort : Cohort
    grid : Grid or str
        A grid, or the name/path of one (``"default"``).
    executor : concurrent.futures.Executor, optional
        Runs scenarios in parallel (a ``ThreadPoolExecutor``, a
        ``ProcessPoolExecutor``, or ``dask.distributed.Client(...).get_executor()``).
        Default: one after the other in this process; with ``reweight``, the exact
        refits on one thread of their own while this one reweights.
    store : path, optional
        Folder where each finished scenario is written as soon as it finishes.
        Running again with the same store reuses them (an interrupted run resumes).
    resume : bool
        If False and the store already holds finished scenarios, refuse to run
        rather than mixing runs.
    progress : bool
        Show a progress bar (done, running, failed).
    hdi_prob : float
        Probability of the highest-density intervals of each scenario's summary.
    thresholds : sequence of float
        CR probabilities for ``prob_above``.
    reference : str, optional
        The reference regimen of contrasts (default: the first).
    reweight : bool
        Opt-in fast path: answer each scenario whose model has the baseline's
        parameters on the same support (other prior values or families, left-out
        sites, outcome, NE policy) from the baseline's draws by Pareto-smoothed
        importance sampling, when its Pareto k-hat is at most ``k_hat_max``; refit
        the others exactly (see ``sensitivity.reweight``). The first scenario (the
        baseline) is always fitted. Scenarios with other parameters are refitted
        from the start, alongside the baseline's fit and the reweighting.
    k_hat_max : float
        The k-hat above which a reweighted scenario is refitted (default 0.7).
    evidence : Evidence, optional
        Published series, for scenarios that borrow (the ``borrowing`` axis, or a
        model with a ``[borrowing]`` table).

    Returns
    -------
    xarray.Dataset
        The variables of :meth:`Fit.summary` with a leading ``scenario`` dim, a
        coordinate per axis, and per-scenario ``status``, ``reason``, ``max_rhat``,
        ``min_ess_bulk``, ``min_ess_tail``, ``divergences``, ``compiled_now``,
        ``compile_s``, ``sample_s``, ``reweighted`` (1: answered from the
        baseline's draws), ``pareto_k`` and ``importance_ess`` (NaN where
        reweighting was not tried).
        ``attrs["compilations"]`` counts the models compiled by this run.

    Examples
    --------
    >>> grid = sxb.Grid.one_at_a_time({"outcome": ["cr", "orr"]}, draws=200, tune=200, chains=2)
    >>> sens = sxb.run_sensitivity(sxb.load_example(), grid, store="sens-store")
    >>> sens.scenario.values.tolist(), sens.attrs["compilations"] <= 1
    (['baseline', 'outcome=orr'], True)
    """
    if isinstance(grid, str):
        grid = load_grid(grid)
    scenarios = grid.expand(cohort)
    # bad values fail before any fit
    inputs = [resolve(cohort, grid, s, evidence) for s in scenarios]
    ref = choose_reference(cohort.regimens, reference)
    summary_args = {"hdi_prob": hdi_prob, "thresholds": tuple(thresholds), "reference": ref}
    if not 0 < k_hat_max <= 1:
        raise GridError(f"k_hat_max must be in (0, 1], not {k_hat_max!r}")
    k_hat = float(k_hat_max) if reweight else None
    data = DataProvenance.of(cohort)
    # a reweighted run never shares stored results with an exact one
    keys = [inp.key(data.fingerprint, grid, {**summary_args, "reweight": k_hat}) for inp in inputs]
    plan = _Plan(cohort, grid, scenarios, inputs, keys, data, summary_args, k_hat)
    if store is None:
        return _run(plan, None, executor, progress)
    box = Store(store)
    if not resume and box.finished():
        raise GridError(
            f"store {box.path} already holds {box.finished()} finished scenario(s): run "
            "again with resume=True (command line: add --resume), or choose another store"
        )
    with box:
        return _run(plan, box, executor, progress)


@dataclass(frozen=True)
class _Plan:
    cohort: Cohort
    grid: Grid
    scenarios: Sequence
    inputs: Sequence[ScenarioInputs]
    keys: Sequence[str]
    data: DataProvenance
    summary_args: dict
    k_hat_max: float | None  # None: no reweighting


def _reweight_from_baseline(plan: _Plan, todo: list[int], finish, refit, collect) -> None:
    """Fit the baseline and answer what its draws can (``finish``); hand every other
    scenario of ``todo`` to ``refit``, with its k-hat and importance ESS when
    reweighting was tried and refused. Scenarios the draws cannot answer (another
    structure) go first, before the baseline is fitted, so they run while it and the
    others are done here; ``collect`` takes in refits that have finished meanwhile."""
    base_inputs = plan.inputs[0]
    parameters = ScenarioParameters(base_inputs.cells, base_inputs.spec)
    answerable = []
    for i in (i for i in todo if i != 0):
        if parameters.why_not(plan.inputs[i]):
            refit(i)
        else:
            answerable.append(i)
    t0 = time.perf_counter()
    try:
        base = _fit(base_inputs, plan.grid, plan.data)
    except Exception as exc:
        if 0 in todo:
            finish(0, ScenarioResult.error(exc, time.perf_counter() - t0))
        base = None
    if base is not None and 0 in todo:
        finish(0, _result(base, base_inputs, plan.summary_args, t0))
    if base is None or not base.diagnostics.ok:
        # unreliable draws are no basis for reweighting
        for i in answerable:
            refit(i)
        return
    density = LogDensity(base, parameters)
    base_log_density = density.at_draws()
    # a reweighted scenario's draws are the baseline's resampled: so are its CR
    # probabilities (their quadrature is a third of a summary's time)
    probabilities = posterior_probabilities(base)
    for i in answerable:
        t0 = time.perf_counter()
        answer = reweight_scenario(
            density, base_log_density, plan.inputs[i], seed=plan.grid.seed, k_hat_max=plan.k_hat_max
        )
        if not answer.trusted:
            refit(i, tried_as=(answer.pareto_k, answer.ess))
            continue
        result = _result(
            answer.fit,
            plan.inputs[i],
            plan.summary_args,
            t0,
            probabilities={k: resample(p, answer.index) for k, p in probabilities.items()},
            reweighted=True,
            pareto_k=answer.pareto_k,
            importance_ess=answer.ess,
        )
        finish(i, replace(result, sample_s=result.wall_s))
        collect(block=False)


def _run(plan: _Plan, box: Store | None, executor, progress) -> xr.Dataset:
    grid, inputs, keys = plan.grid, plan.inputs, plan.keys
    data, summary_args = plan.data, plan.summary_args
    results: dict[int, ScenarioResult] = {}
    if box is not None:
        for i, key in enumerate(keys):
            loaded = box.load(key)
            if loaded is not None:
                results[i] = loaded
    todo = [i for i in range(len(inputs)) if i not in results]
    reweighting = plan.k_hat_max is not None and any(i != 0 for i in todo)
    own_pool = None
    if executor is None and reweighting:
        # the exact refits run on one thread of their own (nutpie's sampling leaves
        # this one free) while this one answers the other scenarios from the baseline
        executor = own_pool = cf.ThreadPoolExecutor(1, thread_name_prefix="scleromx-refit")
    futures: dict[cf.Future, int] = {}
    tried: dict[int, tuple[float, float]] = {}  # reweighting refused: k-hat, ESS

    t0 = time.perf_counter()
    bar = ProgressBar(len(inputs), done=len(results), enabled=progress)
    try:

        def finish(i: int, result: ScenarioResult) -> None:
            if i in tried:  # reweighting was tried and refused: say how it did
                k_hat, ess = tried[i]
                result = replace(result, pareto_k=k_hat, importance_ess=ess)
            results[i] = result
            if box is not None:
                box.save(keys[i], plan.scenarios[i].name, result)
            bar.update(result.status != "ok")

        def refit(i: int, tried_as: tuple[float, float] | None = None) -> None:
            if tried_as is not None:
                tried[i] = tried_as
            bar.running(1)
            if executor is None:
                finish(i, run_scenario(inputs[i], grid, data, summary_args))
            else:
                futures[executor.submit(run_scenario, inputs[i], grid, data, summary_args)] = i

        def collect(block: bool) -> None:
            """Finish the refits that are done (with ``block``, all of them)."""
            while futures:
                timeout = None if block else 0
                done, _ = cf.wait(futures, timeout=timeout, return_when=cf.FIRST_COMPLETED)
                # in submission order: what finished before an interrupt or a
                # failure collected with it is kept, whatever order the set has
                for fut in sorted(done, key=futures.__getitem__):
                    i = futures.pop(fut)
                    try:
                        result = fut.result()
                    except Exception as exc:  # a worker died, not the model
                        result = ScenarioResult.error(exc)
                    finish(i, result)
                if not block:
                    return

        if reweighting:
            _reweight_from_baseline(plan, todo, finish, refit, collect)
        else:
            for i in todo:
                refit(i)
        collect(block=True)
    except BaseException:
        for fut in futures:
            fut.cancel()
        raise
    finally:
        if own_pool is not None:
            own_pool.shutdown(wait=False, cancel_futures=True)
        bar.close()
    wall = time.perf_counter() - t0
    return _assemble(plan, [results[i] for i in range(len(inputs))], wall)


def _assemble(plan: _Plan, results: Sequence[ScenarioResult], wall: float) -> xr.Dataset:
    cohort, grid, scenarios, inputs = plan.cohort, plan.grid, plan.scenarios, plan.inputs
    summary_args, data = plan.summary_args, plan.data
    template = next((r.summary for r in results if r.summary is not None), None)
    if template is None:
        reasons = "; ".join(
            f"{s.name}: {r.reason}" for s, r in zip(scenarios, results, strict=True)
        )
        raise RuntimeError(f"every scenario failed: {reasons}")
    parts = [
        r.summary if r.summary is not None else xr.full_like(template.astype(float), np.nan)
        for r in results
    ]
    # each scenario's attrs describe that fit; the grid's own attrs are set below
    combined = xr.concat(
        parts,
        dim="scenario",
        join="outer",
        coords="minimal",
        compat="override",
        data_vars="all",
        combine_attrs="drop",
    )
    combined = combined.assign_coords(scenario=[s.name for s in scenarios])
    axes = list(dict.fromkeys(a for s in scenarios for a, _ in s.settings))
    for axis in axes:
        values = [
            s.get(axis, BASELINE_VALUES.get(axis, grid.model if axis == "model" else "")) or ""
            for s in scenarios
        ]
        combined = combined.assign_coords({axis: ("scenario", values)})

    def per(values, dtype=float) -> xr.DataArray:
        return xr.DataArray(np.array(list(values), dtype=dtype), dims="scenario")

    def attr(r: ScenarioResult, name: str) -> float:
        return float(r.summary.attrs[name]) if r.summary is not None else np.nan

    for name in ("max_rhat", "min_ess_bulk", "min_ess_tail", "divergences"):
        combined[name] = per(attr(r, f"diagnostics_{name}") for r in results)
    combined["status"] = per((r.status for r in results), str)
    combined["reason"] = per((r.reason for r in results), str)
    combined["compiled_now"] = per((r.compiled_now for r in results), bool).astype(np.int8)
    combined["reused"] = per((r.reused for r in results), bool).astype(np.int8)
    combined["reweighted"] = per((r.reweighted for r in results), bool).astype(np.int8)
    combined["pareto_k"] = per(r.pareto_k for r in results)
    combined["importance_ess"] = per(r.importance_ess for r in results)
    combined["compile_s"] = per(r.compile_s for r in results)
    combined["sample_s"] = per(r.sample_s for r in results)
    # each scenario's own settings, from what it actually fitted
    combined["model_spec_toml"] = per((i.spec.to_toml() for i in inputs), str)
    combined["outcome_definition"] = per((i.outcome.response for i in inputs), str)
    combined["ne_definition"] = per((i.outcome.ne for i in inputs), str)
    combined["contrast_note"] = per((i.contrast_note for i in inputs), str)
    combined["excluded_sites"] = per((";".join(i.excluded_sites) for i in inputs), str)
    combined["excluded_regimens"] = per((";".join(i.excluded_regimens) for i in inputs), str)
    ran = [r for r in results if not r.reused]
    combined.attrs = {
        "title": "scleromx_bayes sensitivity analysis",
        "grid_name": grid.name,
        "grid_toml": grid.to_toml(),
        "reference_regimen": summary_args["reference"],
        "hdi_prob": summary_args["hdi_prob"],
        **data.to_attrs(),
        "n_scenarios": len(results),
        "n_ok": sum(r.status == "ok" for r in results),
        "n_failed": sum(r.status != "ok" for r in results),
        "n_reused": len(results) - len(ran),
        "n_reweighted": sum(r.reweighted for r in results),
        "reweighting": (
            "none"
            if plan.k_hat_max is None
            else f"PSIS from the draws of scenario {scenarios[0].name!r} where the "
            f"scenario has its parameters and Pareto k-hat <= {plan.k_hat_max}; "
            "exact refit otherwise"
        ),
        "compilations": int(sum(r.compiled_now for r in ran)),
        "wall_s": wall,
        "compile_s": float(sum(r.compile_s for r in ran)),
        "sample_s": float(sum(r.sample_s for r in ran)),
        "seed": grid.seed,
        "draws": grid.draws,
        "tune": grid.tune,
        "chains": grid.chains,
        **provenance_attrs(cohort.synthetic),
    }
    return combined
