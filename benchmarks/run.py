"""Side-by-side timings, written to benchmarks/results/*.json and printed.

    ./dev bench fit            # one fit of the example cohort: ours vs pm.sample vs bambi
    ./dev bench sensitivity    # the default grid: run_sensitivity vs loops of pm.sample and bambi
    ./dev bench fastmath       # what exact floating point (fast-math off) costs per spec
    ./dev bench registry       # 100,000 episodes at 1,000 centres: auto vs non-centred sites
    ./dev bench read           # validating a 1,000,000-row episode table vs bare read_csv
    ./dev bench oc             # 1,000 simulations x 3 specs: operating_characteristics vs pm.sample
    ./dev bench cold           # first fit on a new machine (empty caches): ours, pm.sample, bambi
    ./dev bench compile        # where a first compile's time goes, per numba function

Every contender fits the same data (the synthetic example cohort, CR, NE excluded)
with 4 chains x 1000 warm-up x 1000 draws on this machine's 2 cores, and the
ratios are taken within one run, so machine speed cancels out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import arviz as az
import numpy as np

import scleromx_bayes as sxb
import scleromx_bayes.fit  # noqa: F401  (the package loads its modules on first use)

HERE = Path(__file__).parent
RESULTS = HERE / "results"
SETTINGS = {"draws": 1000, "tune": 1000, "chains": 4}


def min_ess(draws) -> float:
    """Smallest bulk ESS over the regimens' log-odds (the quantity every contender has)."""
    return float(np.min(az.ess(draws, method="bulk").values))


def ours(cohort, spec, seed: int) -> dict:
    t0 = time.perf_counter()
    fit = sxb.fit(cohort, spec, seed=seed, **SETTINGS)
    wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "min_ess_bulk": min_ess(fit.posterior["posterior"]["regimen_logit"]),
        "divergences": fit.diagnostics.divergences,
    }


def plain_pymc(cohort, spec, seed: int) -> dict:
    """What a user writes by hand: the same model, built and sampled with pm.sample."""
    import pymc as pm

    t0 = time.perf_counter()
    model = sxb.build_model(cohort.cells(), spec)
    with model:
        tree = pm.sample(
            **SETTINGS, cores=2, random_seed=seed, progressbar=False, target_accept=0.9
        )
    wall = time.perf_counter() - t0
    div = int(tree["sample_stats"]["diverging"].values.sum())
    return {
        "wall_s": wall,
        "min_ess_bulk": min_ess(tree["posterior"]["regimen_logit"]),
        "divergences": div,
    }


def bambi_fit(cohort, seed: int) -> dict:
    """bambi: cr ~ severity + (1|regimen) + (1|site), Bernoulli per episode."""
    import bambi as bmb

    data = cohort.table[cohort.table["response"] != "NE"].copy()
    data["cr"] = (data["response"] == "CR").astype(int)
    t0 = time.perf_counter()
    model = bmb.Model("cr ~ severity + (1|regimen) + (1|site)", data, family="bernoulli")
    tree = model.fit(**SETTINGS, cores=2, random_seed=seed, progressbar=False, target_accept=0.9)
    wall = time.perf_counter() - t0
    post = tree["posterior"]
    regimen_logit = post["Intercept"] + post["1|regimen"]
    div = int(tree["sample_stats"]["diverging"].values.sum())
    return {"wall_s": wall, "min_ess_bulk": min_ess(regimen_logit), "divergences": div}


def machine() -> dict:
    import nutpie
    import pymc

    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "pymc": pymc.__version__,
        "nutpie": nutpie.__version__,
        "platform": platform.platform(),
    }


COLD = "scleromx_bayes.fit (nutpie, cold: includes compiling)"
FROM_DISK = "scleromx_bayes.fit (nutpie, new process: compiled model on disk)"


def bench_fit(seed: int) -> dict:
    import tempfile

    from scleromx_bayes import native

    cohort = sxb.load_example()
    spec = sxb.load_spec("base")
    with warnings.catch_warnings(), tempfile.TemporaryDirectory() as empty:
        warnings.simplefilter("ignore")
        # cold: nutpie's callbacks compiled from nothing (an empty native cache; the
        # comparators below get PyTensor's op cache as it is, as ours does)
        native.cache_directory = lambda: Path(empty)
        sxb.clear_compiled_cache()
        rows = {COLD: ours(cohort, spec, seed)}
        # what every later process sees: the compiled callbacks loaded from disk
        sxb.clear_compiled_cache()
        rows[FROM_DISK] = ours(cohort, spec, seed)
        rows |= {
            "scleromx_bayes.fit (nutpie, warm: compiled model reused)": ours(
                cohort, spec, seed + 1
            ),
            "plain pm.sample (same model)": plain_pymc(cohort, spec, seed),
            "bambi (Bernoulli per episode)": bambi_fit(cohort, seed),
        }
    for r in rows.values():
        r["ess_per_s"] = r["min_ess_bulk"] / r["wall_s"]
    cold = rows[COLD]
    from_disk = rows[FROM_DISK]
    warm = rows["scleromx_bayes.fit (nutpie, warm: compiled model reused)"]
    ratios = {}
    for name in ("plain pm.sample (same model)", "bambi (Bernoulli per episode)"):
        other = rows[name]
        ratios[name] = {
            "wall_time_ratio_vs_cold": other["wall_s"] / cold["wall_s"],
            "wall_time_ratio_vs_new_process": other["wall_s"] / from_disk["wall_s"],
            "wall_time_ratio_vs_warm": other["wall_s"] / warm["wall_s"],
            "ess_per_s_ratio_cold": cold["ess_per_s"] / other["ess_per_s"],
            "ess_per_s_ratio_warm": warm["ess_per_s"] / other["ess_per_s"],
        }
    return {
        "benchmark": "fit",
        "settings": SETTINGS,
        "seed": seed,
        "machine": machine(),
        "results": rows,
        "ratios (other / ours for time; ours / other for ESS/s)": ratios,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "which",
        choices=["fit", "cold", "compile", "sensitivity", "fastmath", "registry", "read", "oc"],
        nargs="?",
        default="fit",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="sensitivity: fewer scenarios in the comparison loops; oc: 100 simulations",
    )
    args = parser.parse_args(argv)
    if args.which == "fit":
        result = bench_fit(args.seed)
    elif args.which == "cold":
        from cold_bench import bench_cold

        result = bench_cold(args.seed)
        result["machine"] = machine()
    elif args.which == "compile":
        from compile_bench import bench_compile

        result = bench_compile(args.seed)
        result["machine"] = machine()
    elif args.which == "read":
        from read_bench import bench_read

        result = bench_read(args.seed)
        result["machine"] = machine()
    elif args.which == "registry":
        from registry_bench import bench_registry

        result = bench_registry(args.seed)
        result["machine"] = machine()
    elif args.which == "oc":
        from oc_bench import bench_oc

        result = bench_oc(args.seed, n_sims=100 if args.quick else 1000)
        result["machine"] = machine()
    elif args.which == "fastmath":
        from fastmath_bench import bench_fastmath

        result = bench_fastmath(args.seed)
        result["machine"] = machine()
    else:
        from sensitivity_bench import bench_sensitivity

        result = bench_sensitivity(args.seed, quick=args.quick)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{args.which}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    json.dump(result, sys.stdout, indent=2)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
