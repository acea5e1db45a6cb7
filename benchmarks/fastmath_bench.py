"""What exact floating point costs: fast-math on vs off, same model, same run.

For each spec, the model of the example cohort is compiled twice with nutpie (numba
fast-math on, as PyTensor defaults, and off, as the package compiles), then each is
sampled ``repeats`` times with 4 chains x 1000 warm-up x 1000 draws; the median
sampling time of each is reported with their ratio, and the compile times.
"""

from __future__ import annotations

import statistics
import time

import nutpie
import pytensor

import scleromx_bayes as sxb
import scleromx_bayes.fit  # noqa: F401  (the package loads its modules on first use)
from scleromx_bayes.fit import cells_for
from scleromx_bayes.model import build_model, data_values, stored_names

SPECS = ("base", "exnex", "interaction", "ordinal")


def _compile(model, fastmath: bool):
    t0 = time.perf_counter()
    with pytensor.config.change_flags(numba__fastmath=fastmath):
        compiled = nutpie.compile_pymc_model(model, var_names=stored_names(model))
    return compiled, time.perf_counter() - t0


def bench_fastmath(seed: int, repeats: int = 3) -> dict:
    cohort = sxb.load_example()
    rows = {}
    for name in SPECS:
        spec = sxb.load_spec(name)
        cells = cells_for(cohort, spec)
        target = spec.target_accept or 0.9
        row = {}
        for fastmath in (True, False):
            compiled, compile_s = _compile(build_model(cells, spec), fastmath)
            compiled = compiled.with_data(**data_values(cells, spec))
            times = []
            for r in range(repeats):
                t0 = time.perf_counter()
                nutpie.sample(
                    compiled,
                    draws=1000,
                    tune=1000,
                    chains=4,
                    cores=2,
                    seed=seed + r,
                    progress_bar=False,
                    target_accept=target,
                )
                times.append(time.perf_counter() - t0)
            key = "fastmath_on" if fastmath else "fastmath_off"
            row[key] = {"compile_s": compile_s, "sample_s_median": statistics.median(times)}
        row["sample_time_ratio_off_over_on"] = (
            row["fastmath_off"]["sample_s_median"] / row["fastmath_on"]["sample_s_median"]
        )
        rows[name] = row
    return {"benchmark": "fastmath", "seed": seed, "repeats": repeats, "results": rows}
