"""Where a first compile's time goes: numba's own compile events, per function.

    ./dev bench compile

One fit of the example (``base``, a few draws) in a new process on empty caches
(``PYTENSOR_FLAGS=base_compiledir=<empty>``, ``NUMBA_CACHE_DIR=<empty>``), with
numba's event recorder on (``numba.core.event``, kind ``numba:compile``). Each
compiled function's *exclusive* time (its own compile, without the functions it
compiles on the way) is summed by name, so the table says which PyTensor op
implementations and numba overloads the first fit of a structure pays for. The
time numba spends outside dispatcher compiles (the two ``cfunc`` callbacks' own
LLVM work) is the fit's time minus the events' total.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

_SNIPPET = """
import collections, json, time, warnings
warnings.simplefilter("ignore")
from numba.core import event
import scleromx_bayes as sxb
import scleromx_bayes.fit  # the package loads its modules on first use: import them here
cohort = sxb.load_example()
with event.install_recorder("numba:compile") as rec:
    t0 = time.perf_counter()
    sxb.fit(cohort, {spec!r}, seed=1, draws=100, tune=100, chains=2)
    wall = time.perf_counter() - t0
stack, own, count = [], collections.Counter(), collections.Counter()
top_level = 0.0
for ts, ev in rec.buffer:
    d = ev.data["dispatcher"]
    name = getattr(getattr(d, "py_func", None), "__qualname__", str(d))
    if ev.is_start:
        stack.append([name, ts, 0.0])
        continue
    name, t_start, children = stack.pop()
    took = ts - t_start
    own[name] += took - children
    count[name] += 1
    if stack:
        stack[-1][2] += took
    else:
        top_level += took
print(json.dumps({{
    "fit_s": wall,
    "numba_dispatcher_compiles_s": top_level,
    "functions_compiled": sum(count.values()),
    "by_function_exclusive_s": {{n: [round(t, 3), count[n]] for n, t in own.most_common(25)}},
}}))
"""


def bench_compile(seed: int, specs=("base",)) -> dict:
    rows = {}
    for spec in specs:
        with tempfile.TemporaryDirectory(prefix="compile-bench-") as tmp:
            env = dict(os.environ)
            env["PYTENSOR_FLAGS"] = f"base_compiledir={Path(tmp) / 'pytensor'}"
            env["NUMBA_CACHE_DIR"] = str(Path(tmp) / "numba")
            done = subprocess.run(
                [sys.executable, "-c", _SNIPPET.format(spec=spec)],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            )
        rows[spec] = json.loads(done.stdout.strip().splitlines()[-1])
    return {"benchmark": "compile", "seed": seed, "results": rows}
