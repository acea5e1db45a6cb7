"""Sensitivity grids: named scenarios, each setting some axes, read from TOML.

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
``borrowing``          none, map, robust_map, robust_map(w), power(a0), joint:
                       borrow from published series (needs ``evidence=``; the
                       regimens then have no pooling, see ``model.external``)
=====================  ==========================================================

Run settings (``seed``, ``draws``, ``tune``, ``chains``, ``rhat_max``,
``ess_min``) are checked when a grid is read, so a bad value fails before
anything is compiled.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import tomli_w

from ..cohort import Cohort
from ..diagnostics import ConvergenceCriteria
from ..errors import InputError, SettingsError
from ..fit import SamplerSettings, check_seed
from ..spec import SpecError, load_spec, models_dir, read_toml

__all__ = [
    "AXES",
    "BASELINE_VALUES",
    "Grid",
    "GridError",
    "Scenario",
    "borrowing_overrides",
    "grid_from_dict",
    "load_grid",
]


class GridError(InputError):
    """A sensitivity grid is invalid (names the axis and the value).

    Examples
    --------
    >>> try:
    ...     sxb.Grid.one_at_a_time({"outcome": ["cr", "best"]})
    ... except sxb.GridError as error:
    ...     print("outcome" in str(error))
    True
    """


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
    "borrowing": "none, map, robust_map(w), power(a0) or joint",
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
    "borrowing": "none",
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
    rhat_max: float = ConvergenceCriteria.rhat_max
    ess_min: float = ConvergenceCriteria.ess_min

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
        try:  # run settings are checked when the grid is read, not after compiling
            self.sampler_settings()
            self.criteria()
            object.__setattr__(self, "seed", check_seed(self.seed))
        except SettingsError as exc:
            raise GridError(f"grid {self.name!r}: {exc}") from None

    def sampler_settings(self) -> SamplerSettings:
        """The sampler settings every scenario of this grid runs with."""
        return SamplerSettings(draws=self.draws, tune=self.tune, chains=self.chains)

    def criteria(self) -> ConvergenceCriteria:
        """The convergence thresholds a scenario must meet to be used."""
        return ConvergenceCriteria(rhat_max=self.rhat_max, ess_min=self.ess_min)

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

    def to_toml(self) -> str:
        """The grid as TOML (``combine = "list"``): what reruns exactly these scenarios."""
        return tomli_w.dumps(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        """The grid as a plain dict, as its TOML file would hold it."""
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
    elif axis == "borrowing":
        try:
            borrowing_overrides(value)
        except ValueError as exc:
            raise bad(str(exc)) from None


_BORROWING = re.compile(r"(none|map|robust_map|power|joint)(?:\(([0-9.]+)\))?")


def borrowing_overrides(value: str) -> dict[str, Any]:
    """Spec overrides for a ``borrowing`` axis value: ``robust_map(0.3)`` is a robust
    MAP prior with weight 0.3 on its vague component, ``power(0.5)`` a power prior
    with a0 = 0.5; borrowing needs regimens without pooling."""
    match = _BORROWING.fullmatch(value)
    if match is None:
        raise ValueError("must be none, map, robust_map, robust_map(w), power(a0) or joint")
    method, number = match.groups()
    if method == "none":
        return {"borrowing.method": "none"}
    out: dict[str, Any] = {"structure.regimen_pooling": "none", "borrowing.method": method}
    if number is not None:
        if method not in ("robust_map", "power"):
            raise ValueError(f"{method} takes no number")
        x = float(number)
        if method == "robust_map" and not 0 < x < 1:
            raise ValueError("the robust weight must be in (0, 1)")
        if method == "power" and not 0 <= x <= 1:
            raise ValueError("a0 must be in [0, 1]")
        out["borrowing.robust_weight" if method == "robust_map" else "borrowing.a0"] = x
    elif method == "power":
        raise ValueError("power needs its weight: power(a0), e.g. power(0.5)")
    return out


def grids_dir() -> Path:
    return models_dir()


def load_grid(name_or_path: str | Path) -> Grid:
    """Load a sensitivity grid: a shipped name (``"default"`` is
    ``models/grid_default.toml``) or a path to a TOML file.

    Parameters
    ----------
    name_or_path : str or Path
        A shipped grid's name or a TOML file.

    Returns
    -------
    Grid
        The validated grid.

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
    return grid_from_dict(read_toml(path, GridError, "grid"), source=str(path))


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
    except TypeError as exc:  # a key of the wrong type reaching the dataclass
        raise GridError(f"{source}: {exc}") from None
