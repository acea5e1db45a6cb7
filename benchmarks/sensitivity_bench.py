"""The default sensitivity grid three ways, side by side in one run.

* ``run_sensitivity``: one compiled nutpie model per shared graph (pooling, site
  and severity terms are switches; prior values and counts are data), every
  scenario refitted exactly;
* ``run_sensitivity(reweight=True)``: the same, but scenarios the baseline's
  draws can answer (Pareto k-hat <= 0.7) are importance-reweighted, not refitted;
* the loop a PyMC user writes today: per scenario, build the same model and call
  ``pm.sample`` (PyTensor's C cache is warm after the first);
* the loop a bambi user writes: per scenario, a binomial ``p(y, n)`` model on the
  same cells with the same terms and priors.

Every contender fits the same scenarios (same cells, same priors, same sampler
settings), so the ratios compare tools, not models.
"""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd

import scleromx_bayes as sxb
import scleromx_bayes.fit  # noqa: F401  (the package loads its modules on first use)
from scleromx_bayes.fit import clear_compiled_cache
from scleromx_bayes.sensitivity import ScenarioInputs, load_grid, resolve, run_sensitivity

SETTINGS = {"draws": 1000, "tune": 1000, "chains": 4}


def _fitted_cells(inputs: ScenarioInputs):
    """The cells a by-hand analysis would fit: those with evaluable episodes."""
    frame = inputs.cells.frame
    return frame[frame["n"] > 0].reset_index(drop=True)


def _bambi_prior(prior, *, group_sd=None):
    import bambi as bmb

    if group_sd is None:
        return bmb.Prior(prior.dist, **prior.params)
    return bmb.Prior("Normal", mu=0.0, sigma=bmb.Prior(group_sd.dist, **group_sd.params))


def bambi_model(inputs: ScenarioInputs):
    """The scenario as a bambi user would write it."""
    import bambi as bmb

    spec, cells = inputs.spec, inputs.cells
    data = _fitted_cells(inputs)
    terms, priors = [], {}
    pooling = spec.regimen_pooling if data["regimen"].nunique() > 1 else "complete"
    if pooling == "none":
        terms.append("0 + regimen")
        priors["regimen"] = _bambi_prior(spec.prior("intercept"))
    else:
        terms.append("1")
        priors["Intercept"] = _bambi_prior(spec.prior("intercept"))
    if spec.severity_effect and data["severity"].nunique() > 1:
        terms.append("severity")
        priors["severity"] = _bambi_prior(spec.prior("severity_effect"))
        # the least severe level is the reference, as in our model
        data["severity"] = pd.Categorical(data["severity"], categories=list(cells.severities))
    if pooling == "partial":
        terms.append("(1|regimen)")
        priors["1|regimen"] = _bambi_prior(None, group_sd=spec.prior("regimen_sd"))
    if spec.site_effect and data["site"].nunique() > 1:
        terms.append("(1|site)")
        priors["1|site"] = _bambi_prior(None, group_sd=spec.prior("site_sd"))
    formula = "p(y, n) ~ " + " + ".join(terms)
    return bmb.Model(formula, data, family="binomial", priors=priors, auto_scale=False)


def _loop(inputs: list[ScenarioInputs], one) -> dict:
    t0 = time.perf_counter()
    divergences = 0
    for inp in inputs:
        divergences += one(inp)
    wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "fits": len(inputs),
        "fits_per_s": len(inputs) / wall,
        "divergences": divergences,
    }


def _pymc_one(seed: int):
    import pymc as pm

    def one(inp: ScenarioInputs) -> int:
        model = sxb.build_model(inp.cells, inp.spec)
        with model:
            tree = pm.sample(
                **SETTINGS,
                cores=2,
                random_seed=seed,
                progressbar=False,
                target_accept=0.9,
                compute_convergence_checks=False,
            )
        return int(tree["sample_stats"]["diverging"].values.sum())

    return one


def _bambi_one(seed: int):
    def one(inp: ScenarioInputs) -> int:
        tree = bambi_model(inp).fit(
            **SETTINGS, cores=2, random_seed=seed, progressbar=False, target_accept=0.9
        )
        return int(tree["sample_stats"]["diverging"].values.sum())

    return one


def bench_sensitivity(seed: int, quick: bool = False) -> dict:
    """Run the default grid with ``run_sensitivity`` and as the two by-hand loops.

    ``quick`` times the by-hand loops on every third scenario only and scales
    their time up to the whole grid (stated in the result).
    """
    from run import machine  # benchmarks/run.py, on sys.path when run from there

    cohort = sxb.load_example()
    grid = load_grid("default").with_run_settings(seed=seed, **SETTINGS)
    scenarios = grid.expand(cohort)
    inputs = [resolve(cohort, grid, s) for s in scenarios]
    loop_inputs = inputs[::3] if quick else inputs

    import tempfile
    from pathlib import Path

    from scleromx_bayes import native

    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as empty:
        warnings.simplefilter("ignore")
        on_disk = native.cache_directory
        # first on this machine: nutpie's callbacks compiled (an empty native cache)
        native.cache_directory = lambda: Path(empty)
        clear_compiled_cache()
        t0 = time.perf_counter()
        cold = run_sensitivity(cohort, grid)
        cold_wall = time.perf_counter() - t0
        native.cache_directory = on_disk
        # any later process: compiled callbacks on disk (each run of ours pays its own
        # loading: clear_compiled_cache forgets the in-process models and callbacks)
        clear_compiled_cache()
        run_sensitivity(
            cohort, load_grid("default").with_run_settings(seed=seed, draws=10, tune=10, chains=1)
        )
        clear_compiled_cache()
        t0 = time.perf_counter()
        sens = run_sensitivity(cohort, grid)
        ours_wall = time.perf_counter() - t0
        clear_compiled_cache()
        t0 = time.perf_counter()
        fast = run_sensitivity(cohort, grid, reweight=True)
        fast_wall = time.perf_counter() - t0
        pymc_loop = _loop(loop_inputs, _pymc_one(seed))
        bambi_loop = _loop(loop_inputs, _bambi_one(seed))
    scale = len(inputs) / len(loop_inputs)
    for loop in (pymc_loop, bambi_loop):
        loop["wall_s_whole_grid"] = loop["wall_s"] * scale
    ours, ours_fast = _ours(sens, ours_wall), _ours(fast, fast_wall)
    ours_cold = _ours(cold, cold_wall)
    ours_fast["reweighted"] = int(fast.attrs["n_reweighted"])
    ours_fast["reweighted_scenarios"] = [
        str(name) for name in fast["scenario"].values[fast["reweighted"].values == 1]
    ]
    ours_fast["pareto_k"] = dict(
        zip(map(str, fast["scenario"].values), map(float, fast["pareto_k"].values), strict=True)
    )
    # how far the reweighted answers are from the exact ones, in posterior SDs
    rw = fast["reweighted"].values == 1
    gap = abs(
        fast["p_cr_new_site"].sel(stat="mean") - sens["p_cr_new_site"].sel(stat="mean")
    ) / sens["p_cr_new_site"].sel(stat="sd")
    ours_fast["max_gap_in_posterior_sd"] = float(gap.isel(scenario=rw).max()) if rw.any() else 0.0
    return {
        "benchmark": "sensitivity",
        "grid": "default",
        "scenarios": len(inputs),
        "settings": SETTINGS,
        "seed": seed,
        "machine": machine(),
        "quick": quick,
        "loop_scenarios_timed": len(loop_inputs),
        "results": {
            "run_sensitivity, first on the machine (compiling)": ours_cold,
            "run_sensitivity": ours,
            "run_sensitivity(reweight=True)": ours_fast,
            "loop of pm.sample": pymc_loop,
            "loop of bambi": bambi_loop,
        },
        "ratios (loop wall time over the first run_sensitivity's, whole grid)": {
            "loop of pm.sample": pymc_loop["wall_s_whole_grid"] / cold_wall,
            "loop of bambi": bambi_loop["wall_s_whole_grid"] / cold_wall,
        },
        "ratios (loop wall time over run_sensitivity's, whole grid)": {
            "loop of pm.sample": pymc_loop["wall_s_whole_grid"] / ours_wall,
            "loop of bambi": bambi_loop["wall_s_whole_grid"] / ours_wall,
        },
        "ratios (loop wall time over run_sensitivity(reweight=True)'s, whole grid)": {
            "loop of pm.sample": pymc_loop["wall_s_whole_grid"] / fast_wall,
            "loop of bambi": bambi_loop["wall_s_whole_grid"] / fast_wall,
        },
    }


def _ours(sens, wall: float) -> dict:
    """Wall time and each scenario's own compile and sampling times, summed. With
    reweighting the exact refits run on a thread of their own while the baseline's
    draws answer the rest, so those sums overlap and may exceed the wall time: the
    time outside them (``other_s``) is then not defined (None)."""
    compile_s, sample_s = float(sens.attrs["compile_s"]), float(sens.attrs["sample_s"])
    overlapping = sens.attrs["reweighting"] != "none"
    return {
        "wall_s": wall,
        "fits": int(sens.sizes["scenario"]),
        "fits_per_s": sens.sizes["scenario"] / wall,
        "compilations": int(sens.attrs["compilations"]),
        "compile_s": compile_s,
        "sample_s": sample_s,
        "other_s": None if overlapping else wall - compile_s - sample_s,
        "divergences": int(np.nansum(sens["divergences"].values)),
        "scenarios_ok": int(sens.attrs["n_ok"]),
    }
