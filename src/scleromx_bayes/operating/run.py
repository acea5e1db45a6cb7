"""Running an operating-characteristics study: chunks of simulations on any
executor, each finished chunk stored at once, collected into one Dataset."""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ..borrowing import Borrowing, Evidence
from ..cohort import CellTable, Cohort, OutcomeDefinition
from ..diagnostics import ConvergenceCriteria
from ..errors import SettingsError
from ..fit import SamplerSettings, check_seed
from ..provenance import provenance_attrs
from ..runner import run_chunks
from ..sensitivity.store import Store, StoreError
from ..spec import ModelSpec, load_spec
from ..summary import choose_reference
from .design import as_design, check_spec_for_design
from .engine import STATUS, ChunkTask, run_chunk
from .metrics import decision_probabilities, estimation_metrics, used_simulations
from .rules import DecisionRule
from .truth import Truth

__all__ = ["OC_CRITERIA", "OC_SETTINGS", "evaluate", "operating_characteristics"]

# Many small fits: 2 chains of 500 draws give P(better) to about +-0.015, and a
# simulation's diagnostics are judged at what such fits can show (R-hat over 2
# chains of 500 moves by ~0.01 by chance alone).
OC_SETTINGS = SamplerSettings(draws=500, tune=500, chains=2)
OC_CRITERIA = ConvergenceCriteria(rhat_max=1.05, ess_min=100)
CHUNK = 20  # simulations per task: one store file, one round trip to a worker


def _specs(specs) -> list[ModelSpec]:
    specs = [specs] if isinstance(specs, str | ModelSpec) else list(specs)
    out = [load_spec(s) if isinstance(s, str) else s for s in specs]
    if not out:
        raise SettingsError("give at least one spec")
    names = [s.name for s in out]
    if len(set(names)) != len(names):
        raise SettingsError(f"specs must have different names: {names}")
    return out


def _named(items, kind: str) -> list:
    items = [items] if isinstance(items, Truth | DecisionRule) else list(items)
    if not items:
        raise SettingsError(f"give at least one {kind}")
    names = [x.name for x in items]
    if len(set(names)) != len(names):
        raise SettingsError(f"{kind}s must have different names: {names}")
    return items


def _design_table(design: CellTable) -> str:
    frame = design.frame[["site", "regimen", "severity", "n"]]
    return frame.to_csv(index=False, lineterminator="\n")


def _key(task: ChunkTask) -> str:
    """What a stored chunk answers: everything its numbers depend on."""
    parts = {
        "design": _design_table(task.design),
        "levels": [task.design.regimens, task.design.sites, task.design.severities],
        "spec": task.spec.to_toml(),
        "truth": task.truth.label(),
        "simulations": list(task.simulations),
        "seed": task.seed,
        "settings": task.settings.to_attrs(),
        "criteria": [task.criteria.rhat_max, task.criteria.ess_min],
        "reference": task.reference,
        "p0": list(task.p0s),
        "interval": task.interval,
        "borrowing": _borrowing_record(task.borrowing),
    }
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:32]


def operating_characteristics(
    design: Cohort | CellTable,
    specs: Sequence[ModelSpec | str] | ModelSpec | str,
    truths: Sequence[Truth] | Truth,
    rules: Sequence[DecisionRule] | DecisionRule,
    *,
    n_sims: int = 1000,
    seed: int = 1,
    reference: str | None = None,
    outcome: OutcomeDefinition | None = None,
    settings: SamplerSettings | None = None,
    criteria: ConvergenceCriteria | None = None,
    interval: float = 0.95,
    exclude_failed: bool = False,
    evidence: Evidence | None = None,
    executor: cf.Executor | None = None,
    store: str | Path | None = None,
    resume: bool = True,
    progress: bool = False,
) -> xr.Dataset:
    """Operating characteristics of decision rules on a design, for each model.

    For each truth, ``n_sims`` cohorts of the design's cell sizes are simulated
    (centre effects drawn afresh from the truth's SD); every spec fits the same
    cohorts, each with one compiled model per spec and design; each rule is applied
    to every posterior.

    Parameters
    ----------
    design : Cohort or CellTable
        A cohort (its cells' sizes are used, its outcomes ignored) or a planned
        design from :func:`read_design`.
    specs : spec(s) or name(s)
        Binary-outcome specs (``base``, ``no_pooling``, ``exnex``, ... with or without
        borrowing: give ``evidence`` for specs with a ``[borrowing]`` table).
    truths : Truth or sequence of Truth
        :meth:`Truth.all_equal`, :meth:`Truth.one_better`, :meth:`Truth.from_table`,
        :meth:`Truth.from_fit` (posterior-predictive truth).
    rules : DecisionRule or sequence of DecisionRule
    n_sims : int
        Simulated cohorts per truth.
    seed : int
        Seeds every simulated cohort and fit through one ``SeedSequence``: the
        result does not depend on the executor or the number of workers.
    reference : str, optional
        Reference regimen of ``better`` rules and risk differences (default HDIVig
        when present, else the first).
    outcome : OutcomeDefinition, optional
        The outcome the design's cells are counted for (default CR).
    settings, criteria
        Sampler settings and convergence criteria of each fit (default
        :data:`OC_SETTINGS`: 2 chains x 500 draws; :data:`OC_CRITERIA`: R-hat <= 1.05,
        ESS >= 100, no divergences).
    interval : float
        Probability of the central posterior interval whose coverage is counted.
    exclude_failed : bool
        Leave simulations whose fit failed its diagnostics out of the
        characteristics (default: keep them, as an analyst would report them; their
        number is in ``n_failed_diagnostics`` either way).
    evidence : Evidence, optional
        Published series for specs that borrow (they stay fixed; the cohort is
        simulated).
    executor : concurrent.futures.Executor, optional
        Runs chunks of simulations in parallel (``ProcessPoolExecutor``, or
        ``dask.distributed.Client(...).get_executor()``).
    store : path, optional
        Folder where each finished chunk is written at once; running again with the
        same store reuses them (an interrupted run resumes).
    resume : bool
        If False and the store already holds finished chunks, refuse to run rather
        than mixing runs.
    progress : bool
        Show a progress bar over simulations.

    Returns
    -------
    xarray.Dataset
        ``p_decision[spec, truth, rule, regimen, severity, decision]`` (decision =
        go, consider, no_go) and ``p_any_go[spec, truth, rule]``; ``bias``, ``rmse``,
        ``coverage``, ``interval_width`` ``[spec, truth, estimand, regimen,
        severity]`` (estimand = ``p_cr`` at a new centre, ``risk_difference``
        against the reference), each with a ``*_mcse``; ``true_value``;
        ``n_simulations``, ``n_used``, ``n_failed_diagnostics``, ``n_errors``
        ``[spec, truth]``; ``design_n[regimen, severity]``; and every simulation's
        results (``sim_*`` variables along ``simulation``), from which
        :func:`evaluate` recomputes other rules and :func:`calibrate` thresholds.
        Attributes hold the design, specs, truths, rules, seed and settings.

    Examples
    --------
    >>> import scleromx_bayes as sxb
    >>> oc = sxb.operating_characteristics(
    ...     sxb.load_example(), ["base", "no_pooling"],
    ...     [sxb.Truth.all_equal(0.4), sxb.Truth.one_better("DNS rescue", 0.3, p=0.4)],
    ...     sxb.DecisionRule.better(0.9), n_sims=10, seed=1)   # a paper would use 1,000
    >>> go = oc.p_decision.sel(decision="go", regimen="DNS rescue", severity="severe")
    >>> go.dims
    ('spec', 'truth', 'rule')
    """
    cells = as_design(design, outcome)
    specs, truths, rules = _specs(specs), _named(truths, "truth"), _named(rules, "rule")
    if isinstance(n_sims, bool) or not isinstance(n_sims, int) or n_sims < 2:
        raise SettingsError(f"n_sims must be a whole number >= 2, not {n_sims!r}")
    seed = check_seed(seed)
    if not 0 < interval < 1:
        raise SettingsError(f"interval must be between 0 and 1, not {interval!r}")
    ref = choose_reference(cells.regimens, reference)
    for spec in specs:
        check_spec_for_design(spec, cells)
    for truth in truths:
        truth.check(cells)
    borrowings = {s.name: _borrowing(s, evidence, cells) for s in specs}
    settings = settings or OC_SETTINGS
    criteria = criteria or OC_CRITERIA
    p0s = tuple(sorted({r.p0 for r in rules if r.quantity == "above"}))
    tasks = [
        ChunkTask(
            cells,
            spec,
            truth,
            tuple(range(start, min(start + CHUNK, n_sims))),
            seed,
            settings.for_spec(spec),
            criteria,
            ref,
            p0s,
            float(interval),
            borrowings[spec.name],
        )
        for spec in specs
        for truth in truths
        for start in range(0, n_sims, CHUNK)
    ]
    t0 = time.perf_counter()
    run = {
        "sizes": [len(t.simulations) for t in tasks],
        "keys": [_key(t) for t in tasks],
        "executor": executor,
        "progress": progress,
        "failed": lambda ds: int((ds["status"] != STATUS["ok"]).sum()),
    }
    if store is None:
        chunks = run_chunks(tasks, run_chunk, **run)
    else:
        box = Store(store, folder="simulations")
        if not resume and box.finished():
            raise StoreError(
                f"store {box.path} already holds {box.finished()} finished chunk(s) of "
                "simulations: run again with resume=True (command line: add --resume), or "
                "choose another store"
            )
        with box:
            chunks = run_chunks(tasks, run_chunk, store=box, **run)
    sims = _collect(tasks, chunks, specs, truths)
    out = evaluate(sims, rules, exclude_failed=exclude_failed)
    out["design_n"] = xr.DataArray(
        cells.count_grid()[0].sum(axis=2),
        dims=("regimen", "severity"),
        coords={"regimen": list(cells.regimens), "severity": list(cells.severities)},
    )
    out.attrs = {
        "title": "scleromx_bayes operating characteristics",
        "design_table_csv": _design_table(cells),
        "design_episodes": int(cells.n.sum()),
        "model_specs_toml": json.dumps({s.name: s.to_toml() for s in specs}),
        "truths": json.dumps([t.to_dict() for t in truths]),
        "rules": json.dumps([r.to_dict() for r in rules]),
        "reference_regimen": ref,
        "n_sims": n_sims,
        "seed": seed,
        "seeding": "numpy SeedSequence(seed, spawn_key=(truth key, simulation, 0 data | 1 fit))",
        **settings.to_attrs(),
        "criteria_rhat_max": criteria.rhat_max,
        "criteria_ess_min": criteria.ess_min,
        "interval": float(interval),
        "exclude_failed": int(exclude_failed),
        "estimands": "p_cr: CR probability at a new centre; risk_difference: p_cr minus "
        f"the reference's ({ref})",
        "borrowing": json.dumps({k: _borrowing_record(b) for k, b in borrowings.items()}),
        "wall_s": time.perf_counter() - t0,
        # every outcome here is simulated
        **provenance_attrs(True),
        "note": "SYNTHETIC DATA: every cohort here is simulated from the stated truths.",
    }
    return out


def _borrowing(spec: ModelSpec, evidence: Evidence | None, cells: CellTable):
    if not spec.borrowing:
        return None
    if evidence is None and spec.borrowing["method"] != "mixture":
        raise SettingsError(
            f"spec {spec.name!r} borrows from published series: "
            "give evidence=sxb.read_evidence(...)"
        )
    # a MAP prior is fitted once here, not once per simulation
    return Borrowing.from_spec(evidence, spec.borrowing).prepare(cells)


def _borrowing_record(prepared) -> dict | None:
    """What was borrowed, as plain values: method, mixtures, external counts."""
    if prepared is None:
        return None
    ext = prepared.external
    return {
        "method": prepared.settings.label() if prepared.settings else ext.method,
        "mixtures": {r: m.to_dict() for r, m in prepared.mixtures.items()},
        "study_n": np.asarray(ext.study_n).tolist() if ext.study_n is not None else None,
        "study_cr": np.asarray(ext.study_cr).tolist() if ext.study_cr is not None else None,
    }


def _collect(tasks, chunks, specs, truths) -> xr.Dataset:
    """Per-simulation results along (spec, truth, simulation); errors' reasons kept."""
    by_pair: dict[tuple[str, str], list] = {}
    reasons: dict[tuple[str, str], list[str]] = {}
    for task, (ds, why) in zip(tasks, chunks, strict=True):
        pair = (task.spec.name, task.truth.name)
        by_pair.setdefault(pair, []).append(ds)
        reasons.setdefault(pair, []).extend(why)
    rows = []
    for spec in specs:
        cols = [xr.concat(by_pair[(spec.name, t.name)], "simulation") for t in truths]
        rows.append(xr.concat(cols, pd.Index([t.name for t in truths], name="truth")))
    sims = xr.concat(rows, pd.Index([s.name for s in specs], name="spec"))
    sims["error_reasons"] = xr.DataArray(
        [["\n".join(reasons[(s.name, t.name)]) for t in truths] for s in specs],
        dims=("spec", "truth"),
    )
    return sims


def evaluate(
    sims: xr.Dataset, rules: Sequence[DecisionRule] | DecisionRule, *, exclude_failed=False
) -> xr.Dataset:
    """Operating characteristics of ``rules`` from per-simulation results (the
    ``sim_*`` variables of an :func:`operating_characteristics` Dataset, or its
    internal per-simulation Dataset): other rules without refitting, as long as an
    ``above`` rule's ``p0`` was simulated.

    Examples
    --------
    >>> from scleromx_bayes.operating import evaluate
    >>> looser = evaluate(oc, sxb.DecisionRule.better(0.8))     # no refit
    >>> looser.p_decision.sizes["rule"]
    1
    """
    sims = _per_simulation(sims)
    rules = _named(rules, "rule")
    for rule in rules:
        if rule.quantity == "above" and rule.p0 not in set(sims["p0"].values.tolist()):
            raise SettingsError(
                f"rule {rule.name!r}: P(p > {rule.p0:g}) was not computed in these "
                f"simulations (p0 = {sims['p0'].values.tolist()}); run them with this rule"
            )
    used = used_simulations(sims, exclude_failed)
    out = xr.merge([decision_probabilities(sims, rules, used), estimation_metrics(sims, used)])
    order = ("spec", "truth", "rule", "estimand", "regimen", "severity", "decision")
    out = out.transpose(*[d for d in order if d in out.dims], ...)
    status = sims["status"]
    # counts in int64: the status codes are int8, and 128 simulations would overflow
    out["n_simulations"] = xr.full_like(
        status.isel(simulation=0, drop=True), status.sizes["simulation"], dtype=np.int64
    )
    out["n_failed_diagnostics"] = (status == STATUS["failed_diagnostics"]).sum("simulation")
    out["n_errors"] = (status == STATUS["error"]).sum("simulation")
    out["n_used"] = used.sum("simulation")
    for name in sims.data_vars:
        out[f"sim_{name}"] = sims[name]
    return out


def _per_simulation(ds: xr.Dataset) -> xr.Dataset:
    """The per-simulation variables, without their ``sim_`` prefix."""
    if "status" in ds and "simulation" in ds.dims:
        return ds
    names = {name: name[4:] for name in ds.data_vars if name.startswith("sim_")}
    if not names:
        raise SettingsError("not an operating-characteristics Dataset: no sim_* variables")
    return ds[list(names)].rename(names)
