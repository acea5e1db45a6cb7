"""Registry scale: 100,000 simulated episodes at 1,000 centres, fitted with ``base``.

Side by side in one run: the site parameterisation chosen from the data (``auto``:
centred here, the median centre has about 80 episodes) against the always
non-centred one the package used before. Each fit runs in its own process so that
peak memory is its own. Targets (issue 8): R-hat <= 1.01, bulk ESS >= 400, no
divergences, under 60 s and 2 GB.
"""

from __future__ import annotations

import json
import subprocess
import sys

FIT = """
import json, resource, time, warnings
warnings.simplefilter("ignore")
import scleromx_bayes as sxb
import scleromx_bayes.fit  # the package loads its modules on first use: import them here
cohort, _ = sxb.simulate_cohort(
    {"A": -0.5, "B": 0.0, "C": 0.5, "D": 1.0}, {"nonsevere": 0.0, "severe": -1.0},
    site_sd=0.5, n_sites=1000, n_patients=100_000, seed=SEED,
)
spec = sxb.load_spec("base").with_overrides({"structure.parameterisation": "PARAM"})
t0 = time.perf_counter()
fit = sxb.fit(cohort, spec, seed=SEED, draws=1000, tune=1000, chains=4)
wall = time.perf_counter() - t0
d = fit.diagnostics
print(json.dumps({
    "wall_s": wall, "compile_s": fit.timing.compile_s, "sample_s": fit.timing.sample_s,
    "max_rhat": d.max_rhat, "min_ess_bulk": d.min_ess_bulk, "min_ess_tail": d.min_ess_tail,
    "divergences": d.divergences, "cells": len(fit.cells.frame),
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def run_one(param: str, seed: int) -> dict:
    code = FIT.replace("PARAM", param).replace("SEED", str(seed))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_registry(seed: int) -> dict:
    rows = {param: run_one(param, seed) for param in ("auto", "non_centred")}
    rows["ratio non_centred / auto (wall)"] = rows["non_centred"]["wall_s"] / rows["auto"]["wall_s"]
    return {"benchmark": "registry", "seed": seed, "results": rows}
