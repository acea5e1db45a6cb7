"""A first fit as a new machine sees it: every contender in its own process, with
its own empty compile caches.

    ./dev bench cold

`./dev bench fit` times one process in which PyTensor's compile directory is
already warm for the comparators (only our nutpie callbacks start from nothing).
Here each contender gets a fresh ``PYTENSOR_FLAGS=base_compiledir=<empty dir>`` and
``NUMBA_CACHE_DIR=<empty dir>``, and fits the example twice, each in a new process:

- *first on the machine*: the caches are empty, so everything is compiled
  (our numba code and nutpie callbacks; PyMC's and bambi's C code);
- *second process*: the same caches, now holding what the first process compiled,
  which is what every later command, notebook kernel or worker on that machine sees.

The fit itself is timed (model building, compiling, sampling, our summaries), and
so is the import of the contender's package, separately.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SETTINGS = {"draws": 1000, "tune": 1000, "chains": 4}

# Each snippet imports its package, fits the synthetic example and prints JSON.
_OURS = """
import time, json, warnings
t0 = time.perf_counter()
import scleromx_bayes as sxb
import scleromx_bayes.fit  # the package loads its modules on first use: import them here
t1 = time.perf_counter()
warnings.simplefilter("ignore")
cohort = sxb.load_example()
fit = sxb.fit(cohort, "base", seed={seed}, **{settings})
t2 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "fit_s": t2 - t1,
                  "divergences": fit.diagnostics.divergences}}))
"""

_PYMC = """
import time, json, warnings
t0 = time.perf_counter()
import pymc as pm
import scleromx_bayes as sxb
import scleromx_bayes.model
t1 = time.perf_counter()
warnings.simplefilter("ignore")
cohort = sxb.load_example()
model = sxb.build_model(cohort.cells(), sxb.load_spec("base"))
with model:
    tree = pm.sample(**{settings}, cores=2, random_seed={seed}, progressbar=False,
                     target_accept=0.9)
t2 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "fit_s": t2 - t1,
                  "divergences": int(tree["sample_stats"]["diverging"].values.sum())}}))
"""

_BAMBI = """
import time, json, warnings
t0 = time.perf_counter()
import bambi as bmb
t1 = time.perf_counter()
warnings.simplefilter("ignore")
import scleromx_bayes as sxb
data = sxb.load_example().table
data = data[data["response"] != "NE"].copy()
data["cr"] = (data["response"] == "CR").astype(int)
t2 = time.perf_counter()  # reading the example is not bambi's cost
model = bmb.Model("cr ~ severity + (1|regimen) + (1|site)", data, family="bernoulli")
tree = model.fit(**{settings}, cores=2, random_seed={seed}, progressbar=False,
                 target_accept=0.9)
t3 = time.perf_counter()
print(json.dumps({{"import_s": t1 - t0, "fit_s": t3 - t2,
                  "divergences": int(tree["sample_stats"]["diverging"].values.sum())}}))
"""

CONTENDERS = {
    "scleromx_bayes.fit (nutpie)": _OURS,
    "plain pm.sample (same model)": _PYMC,
    "bambi (Bernoulli per episode)": _BAMBI,
}


def _run(snippet: str, caches: Path, seed: int) -> dict:
    env = dict(os.environ)
    env["PYTENSOR_FLAGS"] = f"base_compiledir={caches / 'pytensor'}"
    env["NUMBA_CACHE_DIR"] = str(caches / "numba")
    code = snippet.format(seed=seed, settings=repr(SETTINGS))
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def bench_cold(seed: int) -> dict:
    """Each contender twice, each time in a new process, on caches of its own."""
    rows = {}
    for name, snippet in CONTENDERS.items():
        with tempfile.TemporaryDirectory(prefix="cold-bench-") as tmp:
            caches = Path(tmp)
            first = _run(snippet, caches, seed)
            second = _run(snippet, caches, seed)
        rows[name] = {"first on the machine": first, "second process": second}
    ours = rows["scleromx_bayes.fit (nutpie)"]
    ratios = {
        name: {
            when: rows[name][when]["fit_s"] / ours[when]["fit_s"]
            for when in ("first on the machine", "second process")
        }
        for name in rows
        if name != "scleromx_bayes.fit (nutpie)"
    }
    return {
        "benchmark": "cold",
        "settings": SETTINGS,
        "seed": seed,
        "results": rows,
        "ratios (other's fit time / ours)": ratios,
    }
