"""Operating characteristics of a decision rule, side by side in one run.

* ``operating_characteristics``: 1,000 simulated cohorts of the example's design
  (33 synthetic patients, 46 evaluable episodes) under "all equal", fitted by 3
  specs (``base``, ``no_pooling``, ``exnex``): 3,000 fits on 2 worker processes,
  each reusing one compiled model per spec;
* the loop a PyMC user writes: per simulated cohort, build the same model
  (``sxb.build_model``, so the comparison is of tools, not models) and call
  ``pm.sample`` with the same settings, on the first ``--comparator`` cohorts of
  each spec; its time per fit is scaled to the same 3,000 fits.

Both use 2 chains x 500 warm-up x 500 draws per fit and fit the same simulated
cohorts (taken from the OC run's ``sim_responders``).
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import time
import warnings
from dataclasses import replace

import numpy as np
import pymc as pm

import scleromx_bayes as sxb
import scleromx_bayes.fit  # noqa: F401  (the package loads its modules on first use)
from scleromx_bayes.operating import OC_SETTINGS, as_design

SPECS = ("base", "no_pooling", "exnex")


def _pymc_loop(cells, spec, responders: np.ndarray, seed: int) -> dict:
    """Build and sample the model for each simulated cohort, as by hand."""
    t0 = time.perf_counter()
    divergences = 0
    for i, y in enumerate(responders):
        model = sxb.build_model(cells.with_counts(cells.n, y), spec)
        with model, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = pm.sample(
                draws=OC_SETTINGS.draws,
                tune=OC_SETTINGS.tune,
                chains=OC_SETTINGS.chains,
                cores=2,
                random_seed=seed + i,
                progressbar=False,
                target_accept=spec.target_accept or 0.9,
                compute_convergence_checks=False,
            )
        divergences += int(tree["sample_stats"]["diverging"].values.sum())
    wall = time.perf_counter() - t0
    return {
        "fits": len(responders),
        "wall_s": wall,
        "per_fit_s": wall / len(responders),
        "divergences": divergences,
    }


def bench_oc(
    seed: int,
    n_sims: int = 1000,
    workers: int = 2,
    comparator: int = 10,
    exnex_sims: int | None = None,
) -> dict:
    cohort = sxb.load_example()
    null = sxb.Truth.at_reference(cohort)
    rule = sxb.DecisionRule.better(0.9)
    settings = replace(OC_SETTINGS, cores=1)  # one thread per worker process
    pool = cf.ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"))
    # one spec at a time on the same pool, so the record says where the time goes
    # (a user passes all three at once: the same fits, the same total)
    # every spec at n_sims (exnex_sims: fewer EXNEX fits, its time scaled up)
    exnex_sims = n_sims if exnex_sims is None else min(n_sims, exnex_sims)
    sims_of = {name: exnex_sims if name == "exnex" else n_sims for name in SPECS}
    walls, parts = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in SPECS:
            t0 = time.perf_counter()
            parts[name] = sxb.operating_characteristics(
                cohort,
                name,
                null,
                rule,
                n_sims=sims_of[name],
                seed=seed,
                settings=settings,
                executor=pool,
            )
            walls[name] = time.perf_counter() - t0
    pool.shutdown()
    per_fit = {name: walls[name] / sims_of[name] for name in SPECS}
    fits = n_sims * len(SPECS)
    ours_wall = sum(per_fit[name] * n_sims for name in SPECS)  # every spec at n_sims
    cells = as_design(cohort)
    loops = {}
    for name in SPECS:
        y = parts[name]["sim_responders"].sel(spec=name, truth=null.name).values[:comparator]
        loops[name] = _pymc_loop(cells, sxb.load_spec(name), y, seed)
    loop_per_fit = float(np.mean([r["per_fit_s"] for r in loops.values()]))
    projected = loop_per_fit * fits
    return {
        "benchmark": "oc",
        "design": "synthetic example cohort (33 patients, 46 evaluable episodes, 31 cells)",
        "specs": list(SPECS),
        "n_sims_per_spec": n_sims,
        "fits": fits,
        "settings": {**settings.to_attrs(), "workers": workers},
        "seed": seed,
        "ours": {
            "simulations_timed_per_spec": sims_of,
            "wall_s_measured_per_spec": walls,
            "per_fit_s_per_spec": per_fit,
            "wall_s_for_all_fits": ours_wall,
            "within_10_minutes": ours_wall <= 600,
            "fits_failing_diagnostics": {
                k: int(p["n_failed_diagnostics"].sum()) for k, p in parts.items()
            },
            "n_errors": int(sum(int(p["n_errors"].sum()) for p in parts.values())),
            "mean_false_positive_rate": {
                k: float(p["p_decision"].sel(decision="go").mean()) for k, p in parts.items()
            },
        },
        "pm_sample_loop": {
            "measured_on_fits_per_spec": comparator,
            "per_spec": loops,
            "per_fit_s": loop_per_fit,
            "projected_wall_s_for_all_fits": projected,
        },
        "ratio_pm_sample_over_ours": projected / ours_wall,
    }
