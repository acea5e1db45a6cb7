"""Running a grid: every scenario on any executor, each finished one stored at once,
all collected along a ``scenario`` dimension of one Dataset."""

from __future__ import annotations

import concurrent.futures as cf
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from ..cohort import Cohort
from ..fit import fit_cells
from ..provenance import DataProvenance, provenance_attrs
from ..summary import choose_reference, summarise
from .grid import BASELINE_VALUES, Grid, GridError, load_grid
from .plan import ScenarioInputs, resolve
from .result import ScenarioResult
from .store import Store

__all__ = ["run_scenario", "run_sensitivity"]


def run_scenario(
    inputs: ScenarioInputs, grid: Grid, data: DataProvenance, summary_args: dict
) -> ScenarioResult:
    """Fit and summarise one scenario. Runs in a worker: a picklable top-level function
    whose every error is recorded in the result, so the other scenarios go on."""
    t0 = time.perf_counter()
    try:
        fitted = fit_cells(
            inputs.cells,
            inputs.spec,
            settings=grid.sampler_settings(),
            seed=grid.seed,
            data=data,
            criteria=grid.criteria(),
            warn=False,
        )
        ds = summarise(
            fitted,
            **summary_args,
            masked_sites=inputs.excluded_sites,
            masked_regimens=inputs.excluded_regimens,
        )
    except Exception as exc:  # recorded with its reason, never dropped
        return ScenarioResult.error(exc, time.perf_counter() - t0)
    diag = fitted.diagnostics
    return ScenarioResult(
        status="ok" if diag.ok else "failed_diagnostics",
        reason="; ".join(diag.problems),
        summary=ds,
        compiled_now=fitted.timing.compiled_now,
        compile_s=fitted.timing.compile_s,
        sample_s=fitted.timing.sample_s,
        wall_s=time.perf_counter() - t0,
    )


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
        Default: one after the other in this process.
    store : path, optional
        Folder where each finished scenario is written as soon as it finishes.
        Running again with the same store reuses them (an interrupted run resumes).
    resume : bool
        If False and the store already holds finished scenarios, refuse to run
        rather than mixing runs.
    progress : bool
        Show a progress bar (done, running, failed).

    Returns
    -------
    xarray.Dataset
        The variables of :meth:`Fit.summary` with a leading ``scenario`` dim, a
        coordinate per axis, and per-scenario ``status``, ``reason``, ``max_rhat``,
        ``min_ess_bulk``, ``min_ess_tail``, ``divergences``, ``compiled_now``,
        ``compile_s``, ``sample_s``. ``attrs["compilations"]`` counts the models
        compiled by this run.

    Examples
    --------
    >>> grid = load_grid("default").with_run_settings(draws=300, tune=300)  # doctest: +SKIP
    >>> sens = run_sensitivity(sxb.load_example(), grid, store="sens-store")  # doctest: +SKIP
    >>> conclusions(sens)  # doctest: +SKIP
    """
    if isinstance(grid, str):
        grid = load_grid(grid)
    scenarios = grid.expand(cohort)
    inputs = [resolve(cohort, grid, s) for s in scenarios]  # bad values fail before any fit
    ref = choose_reference(cohort.regimens, reference)
    summary_args = {"hdi_prob": hdi_prob, "thresholds": tuple(thresholds), "reference": ref}
    data = DataProvenance.of(cohort)
    keys = [inp.key(data.fingerprint, grid, summary_args) for inp in inputs]
    if store is None:
        return _run(
            cohort, grid, scenarios, inputs, keys, data, summary_args, None, executor, progress
        )
    box = Store(store)
    if not resume and box.finished():
        raise GridError(
            f"store {box.path} already holds {box.finished()} finished scenario(s): run "
            "again with resume=True (command line: add --resume), or choose another store"
        )
    with box:
        return _run(
            cohort, grid, scenarios, inputs, keys, data, summary_args, box, executor, progress
        )


def _run(cohort, grid, scenarios, inputs, keys, data, summary_args, box, executor, progress):
    results: dict[int, ScenarioResult] = {}
    if box is not None:
        for i, key in enumerate(keys):
            loaded = box.load(key)
            if loaded is not None:
                results[i] = loaded
    todo = [i for i in range(len(inputs)) if i not in results]

    t0 = time.perf_counter()
    bar = _Progress(len(inputs), done=len(results), enabled=progress)
    try:

        def finish(i: int, result: ScenarioResult) -> None:
            results[i] = result
            if box is not None:
                box.save(keys[i], scenarios[i].name, result)
            bar.update(result.status != "ok")

        if executor is None:
            for i in todo:
                bar.running(1)
                finish(i, run_scenario(inputs[i], grid, data, summary_args))
        else:
            futures = {
                executor.submit(run_scenario, inputs[i], grid, data, summary_args): i for i in todo
            }
            bar.running(len(futures))
            pending = set(futures)
            try:
                while pending:
                    done, pending = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
                    for fut in done:
                        i = futures[fut]
                        try:
                            result = fut.result()
                        except Exception as exc:  # a worker died, not the model
                            result = ScenarioResult.error(exc)
                        finish(i, result)
            except BaseException:
                for fut in pending:
                    fut.cancel()
                raise
    finally:
        bar.close()
    wall = time.perf_counter() - t0
    return _assemble(
        cohort,
        grid,
        scenarios,
        inputs,
        [results[i] for i in range(len(inputs))],
        summary_args,
        data,
        wall,
    )


class _Progress:
    def __init__(self, total: int, done: int, enabled: bool):
        self.enabled, self.done, self.failed, self.in_flight = enabled, done, 0, 0
        if enabled:
            self.bar = Progress(
                TextColumn("scenarios"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
            )
            self.task = self.bar.add_task("run", total=total, completed=done, status="")
            self.bar.start()

    def running(self, k: int) -> None:
        self.in_flight += k
        self._show()

    def update(self, failed: bool) -> None:
        self.done += 1
        self.in_flight = max(0, self.in_flight - 1)
        self.failed += failed
        if self.enabled:
            self.bar.advance(self.task)
        self._show()

    def _show(self) -> None:
        if self.enabled:
            self.bar.update(self.task, status=f"running {self.in_flight}, failed {self.failed}")

    def close(self) -> None:
        if self.enabled:
            self.bar.stop()


def _assemble(
    cohort: Cohort,
    grid: Grid,
    scenarios: Sequence,
    inputs: Sequence[ScenarioInputs],
    results: Sequence[ScenarioResult],
    summary_args: dict,
    data: DataProvenance,
    wall: float,
) -> xr.Dataset:
    template = next((r.summary for r in results if r.summary is not None), None)
    if template is None:
        reasons = "; ".join(
            f"{s.name}: {r.reason}" for s, r in zip(scenarios, results, strict=True)
        )
        raise RuntimeError(f"every scenario failed: {reasons}")
    parts = [
        (
            r.summary if r.summary is not None else xr.full_like(template.astype(float), np.nan)
        ).drop_attrs()
        for r in results
    ]
    combined = xr.concat(
        parts, dim="scenario", join="outer", coords="minimal", compat="override", data_vars="all"
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
