"""Sensitivity analyses: a grid of scenarios, compiled once per structure, run
on any executor, checkpointed, collected into one Dataset.

A **scenario** sets some of these axes (the first value of each axis is the
baseline):

=====================  ==========================================================
axis                   values
=====================  ==========================================================
``model``              a shipped spec name or a path (base, no_pooling, ...)
``regimen_prior``      a preset: baseline, skeptical, very_skeptical,
                       enthusiastic, vague, or one defined in the grid
``site_sd``            scale of the HalfNormal prior on the between-site SD
``outcome``            cr, orr
``ne_policy``          exclude, failure, success
``severity_adjustment``  adjusted, unadjusted
``site_effect``        random, none
``leave_out_site``     none, a site name, or ``"each"`` (every site in turn)
``drop_regimen``       none or a regimen name
``min_site_patients``  drop sites with fewer patients than this (0 keeps all)
=====================  ==========================================================

Data subsets never change the compiled shape: a left-out site, a dropped
regimen or a small site becomes cells with ``n = 0``. Scenarios that share a
model structure therefore share one compiled model; prior values and counts
are swapped in as data.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import itertools
import json
import time
import tomllib
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from .cohort import CellTable, Cohort, OutcomeDefinition
from .fit import ESS_MIN, RHAT_MAX, Fit, cells_for, data_info, fit_cells
from .io import atomic_path, read_dataset, write_dataset
from .spec import ModelSpec, SpecError, load_spec, models_dir
from .summary import choose_reference, provenance_attrs, summarise

__all__ = [
    "AXES",
    "Grid",
    "GridError",
    "Scenario",
    "ScenarioInputs",
    "conclusions",
    "load_grid",
    "power_scaling",
    "rank_stability",
    "resolve",
    "run_sensitivity",
    "tipping_point",
]


class GridError(ValueError):
    """A sensitivity grid is invalid (names the axis and the value)."""


REGIMEN_PRIOR_PRESETS: dict[str, dict[str, Any]] = {
    "baseline": {},
    # P(regimen SD > 1) ~ 5%: regimens pulled strongly toward each other
    "skeptical": {"priors.regimen_sd": {"dist": "HalfNormal", "sigma": 0.5}},
    # P(regimen SD > 0.5) ~ 5%: almost no difference between regimens a priori
    "very_skeptical": {"priors.regimen_sd": {"dist": "HalfNormal", "sigma": 0.25}},
    # P(regimen SD > 2) ~ 32%: large differences between regimens are plausible
    "enthusiastic": {"priors.regimen_sd": {"dist": "HalfNormal", "sigma": 2.0}},
    # heavy-tailed SD, wide intercept: little prior information
    "vague": {
        "priors.regimen_sd": {"dist": "HalfCauchy", "beta": 2.5},
        "priors.intercept": {"dist": "Normal", "mu": 0.0, "sigma": 2.5},
    },
}

AXES: dict[str, str] = {
    "model": "model spec name or path",
    "regimen_prior": "regimen prior preset",
    "site_sd": "HalfNormal scale of the between-site SD",
    "outcome": "cr or orr",
    "ne_policy": "exclude, failure or success",
    "severity_adjustment": "adjusted or unadjusted",
    "site_effect": "random or none",
    "leave_out_site": "none, a site, or each",
    "drop_regimen": "none or a regimen",
    "min_site_patients": "whole number >= 0",
}
BASELINE_VALUES = {
    "regimen_prior": "baseline",
    "outcome": "cr",
    "ne_policy": "exclude",
    "severity_adjustment": "adjusted",
    "site_effect": "random",
    "leave_out_site": "none",
    "drop_regimen": "none",
    "min_site_patients": "0",
}
COMBINE = ("product", "one_at_a_time", "list")
RUN_KEYS = ("seed", "draws", "tune", "chains", "rhat_max", "ess_min")


@dataclass(frozen=True)
class Scenario:
    """One scenario: a name and the axis values it sets (others stay at baseline)."""

    name: str
    settings: tuple[tuple[str, str], ...]

    def get(self, axis: str, default: str | None = None) -> str | None:
        return dict(self.settings).get(axis, default)


@dataclass(frozen=True)
class Grid:
    """A set of scenarios and how to run them. Build with :func:`load_grid`,
    :meth:`product`, :meth:`one_at_a_time` or :meth:`from_list`.

    Examples
    --------
    >>> grid = Grid.one_at_a_time({"outcome": ["cr", "orr"], "site_sd": [0.5, 1.0]},
    ...                           draws=300, tune=300, chains=2)
    >>> [s.name for s in grid.scenarios]
    ['baseline', 'outcome=orr', 'site_sd=1.0']
    """

    name: str
    scenarios: tuple[Scenario, ...]
    model: str = "base"
    description: str = ""
    presets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    seed: int = 1
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    rhat_max: float = RHAT_MAX
    ess_min: float = ESS_MIN

    def __post_init__(self) -> None:
        object.__setattr__(self, "presets", {**REGIMEN_PRIOR_PRESETS, **dict(self.presets)})
        names = [s.name for s in self.scenarios]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise GridError(f"grid {self.name!r}: scenario names repeat: {sorted(dup)}")
        if not self.scenarios:
            raise GridError(f"grid {self.name!r} has no scenarios")
        for s in self.scenarios:
            for axis, value in s.settings:
                _check_value(axis, value, self.presets)
        try:
            load_spec(self.model)
        except SpecError as exc:
            raise GridError(f"grid {self.name!r}: model {self.model!r}: {exc}") from None

    # -- constructors -------------------------------------------------------
    @classmethod
    def product(cls, axes: Mapping[str, Sequence[Any]], *, name: str = "grid", **kw) -> Grid:
        """Every combination of the axis values."""
        axes = _normalise_axes(axes)
        scenarios = []
        for combo in itertools.product(*axes.values()):
            settings = tuple(zip(axes, combo, strict=True))
            changed = [f"{a}={v}" for a, v in settings if v != axes[a][0]]
            scenarios.append(Scenario(",".join(changed) or "baseline", settings))
        return cls(name=name, scenarios=tuple(scenarios), **kw)

    @classmethod
    def one_at_a_time(cls, axes: Mapping[str, Sequence[Any]], *, name: str = "grid", **kw) -> Grid:
        """The baseline (first value of every axis), then each other value of each
        axis with the rest at baseline."""
        axes = _normalise_axes(axes)
        base = tuple((a, v[0]) for a, v in axes.items())
        scenarios = [Scenario("baseline", base)]
        for axis, values in axes.items():
            for v in values[1:]:
                settings = tuple((a, v if a == axis else b) for a, b in base)
                scenarios.append(Scenario(f"{axis}={v}", settings))
        return cls(name=name, scenarios=tuple(scenarios), **kw)

    @classmethod
    def from_list(cls, scenarios: Sequence[Mapping[str, Any]], *, name: str = "grid", **kw) -> Grid:
        """An explicit list: each item has a ``name`` and some axis values."""
        out = []
        for i, item in enumerate(scenarios):
            item = dict(item)
            label = item.pop("name", None)
            if not isinstance(label, str) or not label:
                raise GridError(f"scenario {i + 1} of grid {name!r} needs a 'name'")
            axes = _normalise_axes({k: [v] for k, v in item.items()})
            out.append(Scenario(label, tuple((a, v[0]) for a, v in axes.items())))
        return cls(name=name, scenarios=tuple(out), **kw)

    def with_run_settings(self, **kw) -> Grid:
        """The same scenarios with other sampler settings (draws, tune, chains, seed, ...)."""
        bad = set(kw) - set(RUN_KEYS)
        if bad:
            raise GridError(f"unknown run setting(s) {sorted(bad)}; allowed: {list(RUN_KEYS)}")
        return replace(self, **{k: v for k, v in kw.items() if v is not None})

    def expand(self, cohort: Cohort) -> list[Scenario]:
        """Concrete scenarios for a cohort: ``leave_out_site = "each"`` becomes one per site."""
        out = []
        for s in self.scenarios:
            if s.get("leave_out_site") == "each":
                for site in cohort.sites:
                    settings = tuple(
                        (a, site if a == "leave_out_site" else v) for a, v in s.settings
                    )
                    label = s.name.replace("leave_out_site=each", f"leave_out_site={site}")
                    if label == s.name:
                        label = f"{s.name},leave_out_site={site}"
                    out.append(Scenario(label, settings))
            else:
                out.append(s)
        return out

    def to_dict(self) -> dict[str, Any]:
        custom = {k: v for k, v in self.presets.items() if REGIMEN_PRIOR_PRESETS.get(k) != v}
        out: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "model": self.model,
            "combine": "list",
            **{k: getattr(self, k) for k in RUN_KEYS},
        }
        if custom:
            out["presets"] = {"regimen_prior": custom}
        out["scenarios"] = [{"name": s.name, **dict(s.settings)} for s in self.scenarios]
        return out


def _normalise_axes(axes: Mapping[str, Any]) -> dict[str, list[str]]:
    out = {}
    for axis, values in axes.items():
        if axis not in AXES:
            raise GridError(f"unknown axis {axis!r}; axes: {list(AXES)}")
        if isinstance(values, str | int | float):
            values = [values]
        values = [_as_label(v) for v in values]
        if not values:
            raise GridError(f"axis {axis!r} has no values")
        out[axis] = values
    return out


def _as_label(value: Any) -> str:
    if isinstance(value, bool):
        raise GridError(f"axis values are names or numbers, not {value!r}")
    return str(value)


def _check_value(axis: str, value: str, presets: Mapping[str, Any]) -> None:
    def bad(why: str) -> GridError:
        return GridError(f"axis {axis!r}, value {value!r}: {why}")

    if axis not in AXES:
        raise GridError(f"unknown axis {axis!r}; axes: {list(AXES)}")
    if axis == "model":
        try:
            load_spec(value)
        except SpecError as exc:
            raise bad(str(exc)) from None
    elif axis == "regimen_prior" and value not in presets:
        raise bad(f"no such preset; presets: {sorted(presets)}")
    elif axis == "site_sd":
        try:
            ok = float(value) > 0
        except ValueError:
            ok = False
        if not ok:
            raise bad("must be a number > 0")
    elif axis == "outcome" and value not in ("cr", "orr"):
        raise bad("must be 'cr' or 'orr'")
    elif axis == "ne_policy" and value not in ("exclude", "failure", "success"):
        raise bad("must be 'exclude', 'failure' or 'success'")
    elif axis == "severity_adjustment" and value not in ("adjusted", "unadjusted"):
        raise bad("must be 'adjusted' or 'unadjusted'")
    elif axis == "site_effect" and value not in ("random", "none"):
        raise bad("must be 'random' or 'none'")
    elif axis == "min_site_patients" and not (value.isdigit()):
        raise bad("must be a whole number >= 0")


def grids_dir() -> Path:
    return models_dir()


def load_grid(name_or_path: str | Path) -> Grid:
    """Load a sensitivity grid: a shipped name (``"default"`` is
    ``models/grid_default.toml``) or a path to a TOML file.

    Examples
    --------
    >>> grid = load_grid("default")
    >>> grid.name
    'default'
    """
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith(".toml") or "/" in text:
        path = Path(text)
    else:
        path = grids_dir() / f"grid_{text}.toml"
        if not path.exists():
            shipped = sorted(p.stem.removeprefix("grid_") for p in grids_dir().glob("grid_*.toml"))
            raise GridError(f"no shipped grid named {text!r}; shipped: {shipped}")
    if not path.exists():
        raise GridError(f"{path}: grid file not found")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise GridError(f"{path}: not valid TOML: {exc}") from None
    return grid_from_dict(data, source=str(path))


def grid_from_dict(data: Mapping[str, Any], *, source: str = "<dict>") -> Grid:
    """Validate a grid given as a dict (the TOML layout)."""
    data = dict(data)
    allowed = {"name", "description", "model", "combine", "axes", "scenarios", "presets", *RUN_KEYS}
    unknown = set(data) - allowed
    if unknown:
        raise GridError(f"{source}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    combine = data.pop("combine", "one_at_a_time")
    if combine not in COMBINE:
        raise GridError(f"{source}: combine must be one of {list(COMBINE)}, not {combine!r}")
    presets = data.pop("presets", {})
    bad = set(presets) - {"regimen_prior"}
    if bad:
        raise GridError(
            f"{source}: presets can be given for 'regimen_prior' only, not {sorted(bad)}"
        )
    kw = {k: data.pop(k) for k in list(data) if k in (*RUN_KEYS, "description", "model")}
    kw["presets"] = presets.get("regimen_prior", {})
    name = data.pop("name", Path(source).stem)
    axes = data.pop("axes", None)
    scenarios = data.pop("scenarios", None)
    try:
        if combine == "list":
            if not scenarios:
                raise GridError(f"{source}: combine = 'list' needs [[scenarios]]")
            return Grid.from_list(scenarios, name=name, **kw)
        if not axes:
            raise GridError(f"{source}: combine = {combine!r} needs an [axes] table")
        maker = Grid.product if combine == "product" else Grid.one_at_a_time
        return maker(axes, name=name, **kw)
    except TypeError as exc:
        raise GridError(f"{source}: {exc}") from None


# ---------------------------------------------------------------------------
# resolving a scenario into what to fit


@dataclass(frozen=True)
class ScenarioInputs:
    """What one scenario fits: cells (full layout, masked counts), spec, outcome."""

    scenario: Scenario
    cells: CellTable
    spec: ModelSpec
    outcome: OutcomeDefinition
    excluded_sites: tuple[str, ...]
    excluded_regimens: tuple[str, ...]

    def key(self, fingerprint: str, grid: Grid, summary_args: Mapping[str, Any]) -> str:
        """A content hash: the same inputs give the same store entry."""
        payload = {
            "spec": self.spec.to_toml(),
            "outcome": self.outcome.label,
            "excluded_sites": self.excluded_sites,
            "excluded_regimens": self.excluded_regimens,
            "fingerprint": fingerprint,
            "run": {k: getattr(grid, k) for k in RUN_KEYS},
            "summary": dict(summary_args),
        }
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode())
        return digest.hexdigest()[:16]


def resolve(cohort: Cohort, grid: Grid, scenario: Scenario) -> ScenarioInputs:
    """Turn a scenario into the cells, spec and outcome it fits."""
    get = lambda axis: scenario.get(axis, BASELINE_VALUES.get(axis))  # noqa: E731
    spec = load_spec(get("model") or grid.model)
    overrides: dict[str, Any] = dict(grid.presets[get("regimen_prior")])
    if scenario.get("site_sd") is not None:
        overrides["priors.site_sd"] = {"dist": "HalfNormal", "sigma": float(get("site_sd"))}
    if get("severity_adjustment") == "unadjusted":
        overrides["structure.severity_effect"] = False
    if get("site_effect") == "none":
        overrides["structure.site_effect"] = False
    spec = (
        spec.with_overrides(overrides, name=f"{spec.name}:{scenario.name}") if overrides else spec
    )
    outcome = OutcomeDefinition(get("outcome"), ne=get("ne_policy"))
    cells = cells_for(cohort, spec, outcome)

    excluded_sites: list[str] = []
    site = get("leave_out_site")
    if site != "none":
        excluded_sites.append(_level_of_data("leave_out_site", site, "site", cohort.sites))
    k = int(get("min_site_patients"))
    if k > 0:
        sizes = _site_sizes(cohort)
        excluded_sites += [s for s in cohort.sites if sizes[s] < k and s not in excluded_sites]
    excluded_regimens: list[str] = []
    regimen = get("drop_regimen")
    if regimen != "none":
        excluded_regimens.append(
            _level_of_data("drop_regimen", regimen, "regimen", cohort.regimens)
        )
    keep = ~(
        cells.frame["site"].isin(excluded_sites) | cells.frame["regimen"].isin(excluded_regimens)
    )
    cells = cells.with_counts(np.where(keep, cells.n, 0), np.where(keep, cells.y, 0))
    return ScenarioInputs(
        scenario, cells, spec, outcome, tuple(excluded_sites), tuple(excluded_regimens)
    )


def _level_of_data(axis: str, value: str, what: str, levels: Sequence[str]) -> str:
    """``value`` if it is one of the data's ``levels``, else a GridError naming the axis."""
    if value not in levels:
        raise GridError(
            f"axis {axis!r}, value {value!r}: not a {what} in the data ({', '.join(levels)})"
        )
    return value


def _site_sizes(cohort: Cohort) -> dict[str, int]:
    """Patients per site (episodes tables) or episodes per site (counts tables)."""
    if cohort.kind == "episodes":
        return cohort.table.groupby("site")["patient_id"].nunique().to_dict()
    return cohort.table.groupby("site")["n"].sum().to_dict()


# ---------------------------------------------------------------------------
# running one scenario (runs in a worker: must stay a picklable top-level function)


def _run_one(inputs: ScenarioInputs, grid: Grid, info: dict, summary_args: dict) -> dict:
    t0 = time.perf_counter()
    try:
        fitted = fit_cells(
            inputs.cells,
            inputs.spec,
            data_info=info,
            draws=grid.draws,
            tune=grid.tune,
            chains=grid.chains,
            seed=grid.seed,
            rhat_max=grid.rhat_max,
            ess_min=grid.ess_min,
            warn=False,
        )
        ds = summarise(
            fitted,
            **summary_args,
            masked_sites=inputs.excluded_sites,
            masked_regimens=inputs.excluded_regimens,
        )
    except Exception as exc:  # recorded, and the other scenarios go on
        return {
            "status": "error",
            "reason": f"{type(exc).__name__}: {exc}",
            "summary": None,
            "compiled_now": False,
            "compile_s": 0.0,
            "sample_s": 0.0,
            "wall_s": time.perf_counter() - t0,
        }
    diag = fitted.diagnostics
    return {
        "status": "ok" if diag.ok else "failed_diagnostics",
        "reason": "; ".join(diag.problems),
        "summary": ds,
        "compiled_now": bool(fitted.sampler["compiled_now"]),
        "compile_s": float(fitted.sampler["compile_s"]),
        "sample_s": float(fitted.sampler["sample_s"]),
        "wall_s": time.perf_counter() - t0,
    }


# ---------------------------------------------------------------------------
# the store: one file per finished scenario


class Store:
    """A folder of finished scenarios, written atomically one by one."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise GridError(f"store {self.path} exists and is not a folder")

    def _file(self, key: str, suffix: str) -> Path:
        return self.path / "scenarios" / f"{key}{suffix}"

    def finished(self) -> int:
        folder = self.path / "scenarios"
        return len(list(folder.glob("*.nc"))) if folder.exists() else 0

    def load(self, key: str) -> dict | None:
        path = self._file(key, ".nc")
        if not path.exists():
            return None
        ds = read_dataset(path)
        meta = json.loads(ds.attrs.pop("scenario_run"))
        return {**meta, "summary": ds, "reused": True}

    def save(self, key: str, name: str, result: dict) -> None:
        meta = {k: v for k, v in result.items() if k not in ("summary", "reused")}
        if result["summary"] is None:
            # errors are recorded (and retried on resume), never silently dropped
            with atomic_path(self._file(key, ".error.json")) as tmp:
                tmp.write_text(json.dumps({"scenario": name, **meta}, indent=2))
            return
        ds = result["summary"].copy()
        ds.attrs["scenario_run"] = json.dumps(meta)
        write_dataset(ds, self._file(key, ".nc"))
        stale = self._file(key, ".error.json")
        if stale.exists():
            stale.unlink()


# ---------------------------------------------------------------------------
# running a grid


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
    inputs = [resolve(cohort, grid, s) for s in scenarios]
    ref = choose_reference(cohort.regimens, reference)
    summary_args = {"hdi_prob": hdi_prob, "thresholds": tuple(thresholds), "reference": ref}
    info = data_info(cohort, OutcomeDefinition())
    fingerprint = info["fingerprint"]
    keys = [inp.key(fingerprint, grid, summary_args) for inp in inputs]

    box = Store(store) if store is not None else None
    if box is not None and not resume and box.finished():
        raise GridError(
            f"store {box.path} already holds {box.finished()} finished scenario(s); "
            "resume, or choose another store"
        )
    results: dict[int, dict] = {}
    if box is not None:
        for i, key in enumerate(keys):
            loaded = box.load(key)
            if loaded is not None:
                results[i] = loaded
    todo = [i for i in range(len(inputs)) if i not in results]

    t0 = time.perf_counter()
    bar = _Progress(len(inputs), done=len(results), enabled=progress)
    try:

        def finish(i: int, result: dict) -> None:
            result["reused"] = False
            results[i] = result
            if box is not None:
                box.save(keys[i], scenarios[i].name, result)
            bar.update(result["status"] != "ok")

        if executor is None:
            for i in todo:
                bar.running(1)
                finish(i, _run_one(inputs[i], grid, info, summary_args))
        else:
            futures = {
                executor.submit(_run_one, inputs[i], grid, info, summary_args): i for i in todo
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
                            result = {
                                "status": "error",
                                "reason": f"{type(exc).__name__}: {exc}",
                                "summary": None,
                                "compiled_now": False,
                                "compile_s": 0.0,
                                "sample_s": 0.0,
                                "wall_s": 0.0,
                            }
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
        info,
        wall,
    )


class _Progress:
    def __init__(self, total: int, done: int, enabled: bool):
        self.enabled, self.done, self.failed, self.in_flight = enabled, done, 0, 0
        if enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

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


def _assemble(cohort, grid, scenarios, inputs, results, summary_args, info, wall) -> xr.Dataset:
    template = next((r["summary"] for r in results if r["summary"] is not None), None)
    if template is None:
        reasons = "; ".join(
            f"{s.name}: {r['reason']}" for s, r in zip(scenarios, results, strict=True)
        )
        raise RuntimeError(f"every scenario failed: {reasons}")
    parts = []
    for r in results:
        ds = (
            r["summary"]
            if r["summary"] is not None
            else xr.full_like(template.astype(float), np.nan)
        )
        parts.append(ds.drop_attrs())
    combined = xr.concat(
        parts, dim="scenario", join="outer", coords="minimal", compat="override", data_vars="all"
    )
    names = [s.name for s in scenarios]
    combined = combined.assign_coords(scenario=names)
    axes = list(dict.fromkeys(a for s in scenarios for a, _ in s.settings))
    for axis in axes:
        values = [
            s.get(axis, BASELINE_VALUES.get(axis, grid.model if axis == "model" else "")) or ""
            for s in scenarios
        ]
        combined = combined.assign_coords({axis: ("scenario", values)})

    def per(key: str, dtype=float) -> xr.DataArray:
        return xr.DataArray(np.array([r[key] for r in results], dtype=dtype), dims="scenario")

    summaries = [r["summary"] for r in results]
    for name, attr in (
        ("max_rhat", "diagnostics_max_rhat"),
        ("min_ess_bulk", "diagnostics_min_ess_bulk"),
        ("min_ess_tail", "diagnostics_min_ess_tail"),
        ("divergences", "diagnostics_divergences"),
    ):
        combined[name] = xr.DataArray(
            [float(s.attrs[attr]) if s is not None else np.nan for s in summaries], dims="scenario"
        )
    combined["status"] = per("status", str)
    combined["reason"] = per("reason", str)
    combined["compiled_now"] = per("compiled_now", bool).astype(np.int8)
    combined["reused"] = per("reused", bool).astype(np.int8)
    combined["compile_s"] = per("compile_s")
    combined["sample_s"] = per("sample_s")
    combined["model_spec_toml"] = xr.DataArray([i.spec.to_toml() for i in inputs], dims="scenario")
    combined["excluded_sites"] = xr.DataArray(
        [";".join(i.excluded_sites) for i in inputs], dims="scenario"
    )
    combined["excluded_regimens"] = xr.DataArray(
        [";".join(i.excluded_regimens) for i in inputs], dims="scenario"
    )
    ran = [r for r in results if not r["reused"]]
    attrs = {
        "title": "scleromx_bayes sensitivity analysis",
        "grid_name": grid.name,
        "grid_toml": _grid_toml(grid),
        "reference_regimen": summary_args["reference"],
        "hdi_prob": summary_args["hdi_prob"],
        "data_source": str(info["source"]),
        "data_fingerprint": info["fingerprint"],
        "n_patients": int(info["n_patients"]),
        "n_episodes": int(info["n_episodes"]),
        "n_scenarios": len(results),
        "n_ok": sum(r["status"] == "ok" for r in results),
        "n_failed": sum(r["status"] != "ok" for r in results),
        "n_reused": len(results) - len(ran),
        "compilations": int(sum(r["compiled_now"] for r in ran)),
        "wall_s": wall,
        "compile_s": float(sum(r["compile_s"] for r in ran)),
        "sample_s": float(sum(r["sample_s"] for r in ran)),
        "seed": grid.seed,
        "draws": grid.draws,
        "tune": grid.tune,
        "chains": grid.chains,
        **provenance_attrs(cohort.synthetic),
    }
    combined.attrs = attrs
    return combined


def _grid_toml(grid: Grid) -> str:
    import tomli_w

    return tomli_w.dumps(grid.to_dict())


# ---------------------------------------------------------------------------
# reading the results


def conclusions(sens: xr.Dataset, decision: float = 0.9) -> pd.DataFrame:
    """For each regimen contrast: P(better) and risk difference in every scenario,
    their range, and whether the decision ``P(better) > decision`` flips.

    Only scenarios with status ``ok`` enter the ranges; the others are counted.

    Returns
    -------
    pandas.DataFrame
        One row per (regimen, severity) compared with the reference.
    """
    ok = sens["status"] == "ok"
    ref = sens.attrs["reference_regimen"]
    base_name = (
        "baseline" if "baseline" in sens["scenario"].values else str(sens["scenario"].values[0])
    )
    rows = []
    for regimen in sens["regimen"].values:
        if regimen == ref:
            continue
        for severity in sens["severity"].values:
            pb = sens["prob_better"].sel(regimen=regimen, severity=severity)
            rd = sens["risk_difference"].sel(regimen=regimen, severity=severity, stat="mean")
            good = pb.where(ok).dropna("scenario")
            rd_good = rd.where(ok).dropna("scenario")
            base = float(pb.sel(scenario=base_name))
            decided = base > decision
            flips = [
                str(s)
                for s in good["scenario"].values
                if (float(good.sel(scenario=s)) > decision) != decided
            ]
            rows.append(
                {
                    "regimen": regimen,
                    "severity": severity,
                    "reference": ref,
                    "p_better_baseline": base,
                    "p_better_min": float(good.min()) if good.size else np.nan,
                    "p_better_max": float(good.max()) if good.size else np.nan,
                    "rd_baseline": float(rd.sel(scenario=base_name)),
                    "rd_min": float(rd_good.min()) if rd_good.size else np.nan,
                    "rd_max": float(rd_good.max()) if rd_good.size else np.nan,
                    f"better_at_{decision:g}_baseline": bool(decided),
                    "decision_flips": bool(flips),
                    "flipping_scenarios": ";".join(flips),
                    "scenarios_used": int(good.size),
                    "scenarios_excluded": int(sens.sizes["scenario"] - good.size),
                }
            )
    return pd.DataFrame(rows)


def rank_stability(sens: xr.Dataset) -> pd.DataFrame:
    """Expected rank of each regimen (1 = highest CR) per scenario: baseline, range,
    and the share of scenarios in which it is ranked first most often."""
    ok = sens["status"] == "ok"
    rp_all = sens["rank_probability"]
    expected_all = (rp_all * rp_all["rank"]).sum("rank", min_count=1)
    expected = expected_all.where(ok)
    best_all = rp_all.sel(rank=1)
    best = best_all.where(ok)
    top = best.fillna(-1).argmax("regimen")
    base_name = (
        "baseline" if "baseline" in sens["scenario"].values else str(sens["scenario"].values[0])
    )
    rows = []
    for severity in sens["severity"].values:
        top_s = top.sel(severity=severity).where(ok, drop=True)
        for i, regimen in enumerate(sens["regimen"].values):
            e = expected.sel(regimen=regimen, severity=severity).dropna("scenario")
            rows.append(
                {
                    "severity": severity,
                    "regimen": regimen,
                    "expected_rank_baseline": float(
                        expected_all.sel(regimen=regimen, severity=severity, scenario=base_name)
                    ),
                    "expected_rank_min": float(e.min()) if e.size else np.nan,
                    "expected_rank_max": float(e.max()) if e.size else np.nan,
                    "p_first_baseline": float(
                        best_all.sel(regimen=regimen, severity=severity, scenario=base_name)
                    ),
                    "share_of_scenarios_most_likely_first": float((top_s == i).mean())
                    if top_s.size
                    else np.nan,
                }
            )
    return pd.DataFrame(rows)


def tipping_point(
    cohort: Cohort,
    regimen: str,
    *,
    reference: str | None = None,
    severity: str | None = None,
    kind: str = "scale",
    values: Sequence[float] | None = None,
    decision: float = 0.9,
    spec: ModelSpec | str = "base",
    seed: int = 1,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
) -> xr.Dataset:
    """How skeptical must the prior on regimen effects be before P(better) < decision?

    ``kind="scale"`` shrinks the between-regimen SD prior (HalfNormal scale, from
    wide to narrow); ``kind="shift"`` moves ``regimen``'s prior log-odds against it
    (0, -0.25, -0.5, ...). All fits share one compiled model.

    A shift is best read under ``spec="no_pooling"``, where it moves that regimen's
    own prior. Under partial pooling the data can absorb a one-regimen shift by
    inflating the between-regimen SD, so P(better) need not fall steadily as the
    shift grows; ``attrs["monotone"]`` says whether it did, and the message warns.

    Returns
    -------
    xarray.Dataset
        ``prob_better`` and ``risk_difference`` (mean) along ``value``; attrs
        ``tipping_value`` (linear interpolation at the crossing; NaN if the decision
        never flips in the range) and ``message``.
    """
    if kind not in ("scale", "shift"):
        raise ValueError(f"kind must be 'scale' or 'shift', not {kind!r}")
    spec = load_spec(spec) if isinstance(spec, str) else spec
    if kind == "scale" and spec.regimen_pooling != "partial":
        raise ValueError("a scale tipping point needs a partially pooled model (e.g. 'base')")
    if values is None:
        values = (
            [2.0, 1.0, 0.7, 0.5, 0.35, 0.25, 0.15, 0.1, 0.05]
            if kind == "scale"
            else [0.0, -0.25, -0.5, -0.75, -1.0, -1.5, -2.0, -3.0]
        )
    if regimen not in cohort.regimens:
        raise ValueError(f"regimen {regimen!r} is not in the data")
    ref = choose_reference(cohort.regimens, reference)
    severity = severity or cohort.severities[0]
    cells = cells_for(cohort, spec)
    info = data_info(cohort, OutcomeDefinition())
    prob, rd = [], []
    for v in values:
        if kind == "scale":
            s = spec.with_overrides(
                {"priors.regimen_sd": {"dist": "HalfNormal", "sigma": float(v)}}
            )
            shift = None
        else:
            s, shift = spec, {regimen: float(v)}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            fitted = fit_cells(
                cells,
                s,
                data_info=info,
                seed=seed,
                draws=draws,
                tune=tune,
                chains=chains,
                regimen_prior_shift=shift,
                warn=False,
            )
        ds = summarise(fitted, reference=ref)
        prob.append(float(ds["prob_better"].sel(regimen=regimen, severity=severity)))
        rd.append(float(ds["risk_difference"].sel(regimen=regimen, severity=severity, stat="mean")))
    prob_arr = np.array(prob)
    # values run from least to most skeptical, so P(better) should not rise
    monotone = bool(np.all(np.diff(prob_arr) <= 0.02))  # 0.02: Monte-Carlo wiggle
    tip, message = np.nan, ""
    above = prob_arr > decision
    if not above[0]:
        message = (
            f"P(better) is {prob_arr[0]:.2f} <= {decision} already at the least skeptical "
            f"value {values[0]}: no tipping point needed"
        )
    else:
        cross = np.flatnonzero(~above)
        if cross.size == 0:
            message = f"P(better) stays above {decision} over the whole range: robust"
        else:
            j = int(cross[0])
            x0, x1, y0, y1 = values[j - 1], values[j], prob_arr[j - 1], prob_arr[j]
            tip = float(x0 + (decision - y0) * (x1 - x0) / (y1 - y0)) if y1 != y0 else float(x1)
            what = "regimen SD prior scale" if kind == "scale" else "prior shift (log-odds)"
            message = f"P(better) falls below {decision} at a {what} of about {tip:.3g}"
    if not monotone:
        message += "; P(better) is not monotone in the prior value" + (
            ": under partial pooling the between-regimen SD absorbs a one-regimen "
            "shift; use kind='scale' or spec='no_pooling'"
            if kind == "shift"
            else ""
        )
    return xr.Dataset(
        {"prob_better": ("value", prob_arr), "risk_difference": ("value", np.array(rd))},
        coords={"value": np.asarray(values, dtype=float)},
        attrs={
            "regimen": regimen,
            "reference_regimen": ref,
            "severity": severity,
            "kind": kind,
            "decision": decision,
            "tipping_value": tip,
            "monotone": int(monotone),
            "message": message,
            "synthetic": int(cohort.synthetic),
        },
    )


def power_scaling(
    fit: Fit,
    var_names: Iterable[str] = (
        "regimen_logit",
        "severity_effect",
        "site_sd",
        "regimen_sd",
        "interaction_sd",
    ),
) -> pd.DataFrame:
    """Power-scaling prior/likelihood sensitivity (ArviZ ``psense_summary``) of a fit.

    Adds ``log_prior`` and ``log_likelihood`` groups to ``fit.posterior`` (kept,
    so later calls and LOO reuse them) and returns ArviZ's table with its
    diagnosis per variable ("potential prior-data conflict", "potential strong
    prior / weak likelihood", or a check mark).
    """
    import arviz as az
    import pymc as pm

    from .model import build_model

    tree = fit.posterior
    names = [v for v in var_names if v in tree["posterior"].data_vars]
    if "log_prior" not in tree.children or "log_likelihood" not in tree.children:
        model = build_model(fit.cells, fit.spec)
        shift = fit.sampler.get("regimen_prior_shift") or {}
        with model:
            pm.set_data({"regimen_prior_shift": [shift.get(r, 0.0) for r in fit.cells.regimens]})
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            pm.compute_log_likelihood(tree, model=model, progressbar=False)
            pm.stats.compute_log_prior(tree, model=model, progressbar=False)
    return az.psense_summary(tree, var_names=names)
