"""Model specifications: TOML in, a validated immutable :class:`ModelSpec` out.

A spec says *which* model (structure) and *what priors*. Nothing in a spec is
executed: distributions come from an allowlist and every key is checked.

Layout of a spec file::

    name = "base"
    description = "..."

    [structure]
    regimen_pooling = "partial"   # none | partial | complete | exnex
    site_effect = true
    severity_effect = true
    parameterisation = "auto"  # auto | centred | non_centred

    [priors.intercept]
    dist = "Normal"
    mu = -0.5
    sigma = 1.5
    rationale = "..."

Prior names (all on the log-odds scale):

``intercept``
    log-odds of CR for a regimen at a typical site in the reference severity.
    Under partial or complete pooling this is the prior of the regimens' common
    mean; under no pooling each regimen gets it independently.
``regimen_sd``
    between-regimen SD of the log-odds (partial pooling only).
``site_sd``
    between-site SD of the log-odds (site random effect).
``interaction_sd``
    SD of the regimen x severity interaction on the log-odds (only with
    ``regimen_severity_interaction = true``): how far one regimen's severity shift
    may depart from the common one.
``patient_sd``
    between-patient SD of the log-odds (``patient_effect = true``), for patients with
    episodes in several cells; the likelihood is then per patient and cell.
``covariate_effect``
    log odds ratio per SD of each covariate in ``structure.covariates`` (extra
    numeric columns of an episode table, standardised).
``cutpoint_gap``
    ordinal model (``response_scale = "ordinal"``): log-odds of CR-or-PR minus
    log-odds of CR, the same for every cell (proportional odds).
``severity_effect``
    shift in log-odds for each severity level against the reference level.
"""

from __future__ import annotations

import copy
import math
import stat
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import tomli_w

from .errors import InputError

__all__ = ["ModelSpec", "Prior", "SpecError", "load_spec", "list_specs", "models_dir", "read_toml"]

# A spec or grid file is a page of text; anything larger is not one (/dev/zero is endless).
MAX_TOML_BYTES = 1_000_000
# Bounds that keep every hyper-parameter a number a sampler can start from: a prior
# SD of 5e-324 or a mean of 1e308 log-odds is a typo, not a belief.
LOCATION_MAX = 100.0
POSITIVE_RANGE = (1e-6, 1e6)


class SpecError(InputError):
    """A model specification is invalid.

    Examples
    --------
    >>> try:
    ...     sxb.load_spec("no_such_spec")
    ... except sxb.SpecError as error:
    ...     print("no_such_spec" in str(error))
    True
    """


def read_toml(
    path: str | Path, error: type[InputError] = InputError, what: str = "TOML"
) -> dict[str, Any]:
    """Parse a TOML file, raising ``error`` naming the file for anything that is not one
    (a folder, a device, an endless or deeply nested file, invalid TOML)."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise error(f"{path}: {what} file not found") from None
    except OSError as exc:
        raise error(f"{path}: cannot be read: {exc.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise error(f"{path}: is a folder, not a {what} file")
    if not stat.S_ISREG(info.st_mode):
        raise error(f"{path}: is not a regular file")
    with path.open("rb") as handle:
        raw = handle.read(MAX_TOML_BYTES + 1)
    if len(raw) > MAX_TOML_BYTES:
        raise error(f"{path}: larger than {MAX_TOML_BYTES:,} bytes: not a spec or grid file")
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise error(f"{path}: is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:
        raise error(f"{path}: nested too deeply to be a spec or grid file") from None


# The allowlist: distribution -> its parameters and the kind of quantity it is for:
# a log-odds ("location"), a standard deviation ("scale"), or a probability.
DISTRIBUTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "Normal": (("mu", "sigma"), "location"),
    "StudentT": (("nu", "mu", "sigma"), "location"),
    "HalfNormal": (("sigma",), "scale"),
    "HalfStudentT": (("nu", "sigma"), "scale"),
    "HalfCauchy": (("beta",), "scale"),
    "Exponential": (("lam",), "scale"),
    # BUGS's convention for a scale: the precision 1/sd^2 ~ Gamma(alpha, beta), e.g.
    # dgamma(0.001, 0.001). Offered to reproduce published BUGS analyses; for new
    # work prefer HalfNormal or HalfStudentT (Gelman 2006).
    "GammaPrecision": (("alpha", "beta"), "scale"),
    # the prior probability of a yes/no latent state (EXNEX: is a regimen exchangeable?);
    # the state is summed out of the model, never sampled
    "Bernoulli": (("p",), "probability"),
}
# Prior name -> the kind of distribution it needs.
PRIOR_ROLES: dict[str, str] = {
    "intercept": "location",
    "regimen_sd": "scale",
    "site_sd": "scale",
    "severity_effect": "location",
    "interaction_sd": "scale",
    "nonexchangeable": "location",
    "patient_sd": "scale",
    "covariate_effect": "location",
    "cutpoint_gap": "scale",
    "exchangeability": "probability",
}
_KIND_WORDS = {
    "location": "is on the log-odds scale",
    "scale": "is a standard deviation",
    "probability": "is a probability",
}
POOLING = ("none", "partial", "complete", "exnex")
STRUCTURE_DEFAULTS: dict[str, Any] = {
    "regimen_pooling": "partial",
    "site_effect": True,
    "severity_effect": True,
    "regimen_severity_interaction": False,
    "patient_effect": False,
    "covariates": [],
    "response_scale": "binary",
    "parameterisation": "auto",
}
# auto: centred site effects when sites are well informed (see model.structure)
PARAMETERISATIONS = ("auto", "centred", "non_centred")
_POSITIVE_PARAMS = {"sigma", "nu", "beta", "lam", "alpha"}


@dataclass(frozen=True)
class Prior:
    """One prior: a distribution from the allowlist and its parameters.

    Examples
    --------
    >>> Prior("HalfNormal", {"sigma": 0.5}).params["sigma"]
    0.5
    """

    dist: str
    params: Mapping[str, float]
    rationale: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", dict(self.params))

    def __hash__(self) -> int:
        return hash((self.dist, tuple(sorted(self.params.items())), self.rationale))

    def to_dict(self) -> dict[str, Any]:
        """The prior as a plain dict (``dist`` and its parameters)."""
        out: dict[str, Any] = {"dist": self.dist, **self.params}
        if self.rationale:
            out["rationale"] = self.rationale
        return out


@dataclass(frozen=True)
class ModelSpec:
    """A validated model specification. Build with :func:`load_spec` or
    :meth:`from_dict`; change with :meth:`with_overrides`.

    Examples
    --------
    >>> spec = load_spec("base")
    >>> spec.regimen_pooling
    'partial'
    >>> wider = spec.with_overrides({"priors.site_sd.sigma": 1.0})
    >>> wider.prior("site_sd").params["sigma"]
    1.0
    """

    name: str
    description: str
    regimen_pooling: str
    site_effect: bool
    severity_effect: bool
    priors: Mapping[str, Prior] = field(hash=False)
    regimen_severity_interaction: bool = False
    patient_effect: bool = False
    covariates: tuple[str, ...] = ()
    response_scale: str = "binary"
    parameterisation: str = "auto"
    # the NUTS adaptation target this model needs by default ([sampler] in TOML);
    # None: the package default. A caller's own target_accept always wins.
    target_accept: float | None = None
    # [borrowing]: how to borrow from published series (see BORROWING_DEFAULTS);
    # empty: no borrowing. The evidence table itself is data, given at fit time.
    borrowing: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "priors", dict(self.priors))
        object.__setattr__(self, "covariates", tuple(self.covariates))
        object.__setattr__(self, "borrowing", dict(self.borrowing))

    def __hash__(self) -> int:
        return hash(
            (
                self.name,
                self.description,
                self.structure_key(),
                tuple(sorted((k, hash(p)) for k, p in self.priors.items())),
                tuple(sorted((k, str(x)) for k, x in self.borrowing.items())),
            )
        )

    # -- access --------------------------------------------------------
    def prior(self, name: str) -> Prior:
        """The prior named ``name``; a ``SpecError`` names the spec if it has none."""
        try:
            return self.priors[name]
        except KeyError:
            raise SpecError(f"spec {self.name!r} has no prior {name!r}") from None

    def required_priors(self) -> tuple[str, ...]:
        """Priors this structure uses."""
        need = ["intercept"]
        if self.regimen_pooling in ("partial", "exnex"):
            need.append("regimen_sd")
        if self.regimen_pooling == "exnex":
            need += ["nonexchangeable", "exchangeability"]
        if self.site_effect:
            need.append("site_sd")
        if self.severity_effect:
            need.append("severity_effect")
        if self.regimen_severity_interaction:
            need.append("interaction_sd")
        if self.patient_effect:
            need.append("patient_sd")
        if self.covariates:
            need.append("covariate_effect")
        if self.response_scale == "ordinal":
            need.append("cutpoint_gap")
        return tuple(need)

    def structure_key(self) -> tuple:
        """Everything that changes the compiled graph (prior *values* do not)."""
        return (
            self.regimen_pooling,
            self.site_effect,
            self.severity_effect,
            self.regimen_severity_interaction,
            self.patient_effect,
            self.covariates,
            self.response_scale,
            self.parameterisation,
            tuple((k, self.priors[k].dist) for k in self.required_priors() if k in self.priors),
        )

    # -- conversion ------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The spec as a plain dict, as its TOML file would hold it."""
        return {
            "name": self.name,
            "description": self.description,
            "structure": {
                "regimen_pooling": self.regimen_pooling,
                "site_effect": self.site_effect,
                "severity_effect": self.severity_effect,
                "regimen_severity_interaction": self.regimen_severity_interaction,
                "patient_effect": self.patient_effect,
                "covariates": list(self.covariates),
                "response_scale": self.response_scale,
                "parameterisation": self.parameterisation,
            },
            "priors": {k: p.to_dict() for k, p in self.priors.items()},
            **(
                {"sampler": {"target_accept": self.target_accept}}
                if self.target_accept is not None
                else {}
            ),
            **({"borrowing": dict(self.borrowing)} if self.borrowing else {}),
        }

    def to_toml(self) -> str:
        """The spec as TOML; ``ModelSpec.from_toml(spec.to_toml()) == spec``."""
        return tomli_w.dumps(self.to_dict())

    @classmethod
    def from_toml(cls, text_or_path: str | Path) -> ModelSpec:
        """Parse a spec from TOML text or a ``.toml`` path."""
        text = str(text_or_path)
        if isinstance(text_or_path, Path) or (text.endswith(".toml") and "\n" not in text):
            return cls.from_dict(
                read_toml(text_or_path, SpecError, "spec"), source=str(text_or_path)
            )
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(f"<string>: not valid TOML: {exc}") from None
        except RecursionError:
            raise SpecError("<string>: nested too deeply to be a spec") from None
        return cls.from_dict(data, source="<string>")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "<dict>") -> ModelSpec:
        """Validate a plain dict (as TOML gives it) into a spec."""
        where = f"{source}: "
        unknown = set(data) - {"name", "description", "structure", "priors", "sampler", "borrowing"}
        if unknown:
            raise SpecError(
                f"{where}unknown key(s) {sorted(unknown)}; allowed: name, "
                "description, structure, priors, sampler, borrowing"
            )
        name = data.get("name")
        if not isinstance(name, str) or not name:
            raise SpecError(f"{where}'name' must be a non-empty string")
        description = data.get("description", "")
        if not isinstance(description, str):
            raise SpecError(f"{where}'description' must be a string")
        structure = dict(STRUCTURE_DEFAULTS)
        given = data.get("structure", {})
        if not isinstance(given, Mapping):
            raise SpecError(f"{where}[structure] must be a table")
        bad = set(given) - set(STRUCTURE_DEFAULTS)
        if bad:
            raise SpecError(
                f"{where}unknown key(s) in [structure]: {sorted(bad)}; allowed: "
                f"{sorted(STRUCTURE_DEFAULTS)}"
            )
        structure.update(given)
        if structure["regimen_pooling"] not in POOLING:
            raise SpecError(
                f"{where}structure.regimen_pooling must be one of {list(POOLING)}, "
                f"not {structure['regimen_pooling']!r}"
            )
        covs = structure["covariates"]
        if not isinstance(covs, list | tuple) or not all(isinstance(c, str) and c for c in covs):
            raise SpecError(f"{where}structure.covariates must be a list of column names")
        if len(set(covs)) != len(covs):
            raise SpecError(f"{where}structure.covariates names a column twice: {list(covs)}")
        structure["covariates"] = tuple(covs)
        if structure["parameterisation"] not in PARAMETERISATIONS:
            raise SpecError(
                f"{where}structure.parameterisation must be one of "
                f"{list(PARAMETERISATIONS)}, not {structure['parameterisation']!r}"
            )
        if structure["response_scale"] not in ("binary", "ordinal"):
            raise SpecError(
                f"{where}structure.response_scale must be 'binary' or 'ordinal', "
                f"not {structure['response_scale']!r}"
            )
        for key in (
            "site_effect",
            "severity_effect",
            "regimen_severity_interaction",
            "patient_effect",
        ):
            if not isinstance(structure[key], bool):
                raise SpecError(f"{where}structure.{key} must be true or false")

        raw_priors = data.get("priors", {})
        if not isinstance(raw_priors, Mapping):
            raise SpecError(f"{where}[priors] must be a table")
        priors = {name_: _parse_prior(name_, body, where) for name_, body in raw_priors.items()}
        target_accept = _parse_sampler(data.get("sampler", {}), where)
        borrowing = _parse_borrowing(data.get("borrowing", {}), where)
        if borrowing and structure["regimen_pooling"] != "none":
            raise SpecError(
                f"{where}[borrowing] replaces a regimen's own prior: it needs "
                f'structure.regimen_pooling = "none", not {structure["regimen_pooling"]!r}'
            )
        spec = cls(
            name=name,
            description=description,
            priors=priors,
            target_accept=target_accept,
            borrowing=borrowing,
            **structure,
        )
        missing = [p for p in spec.required_priors() if p not in priors]
        if missing:
            raise SpecError(
                f"{where}the structure needs prior(s) {missing}: add a table "
                + ", ".join(f"[priors.{m}]" for m in missing)
            )
        if spec.regimen_pooling == "exnex" and priors["nonexchangeable"].dist != "Normal":
            raise SpecError(
                f"{where}priors.nonexchangeable must be Normal under EXNEX (the "
                "two components of each regimen's prior are normal)"
            )
        return spec

    def with_overrides(
        self, overrides: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> ModelSpec:
        """A new spec with some values changed; the result is validated again.

        Keys are dotted paths (``"priors.site_sd.sigma"``, ``"structure.site_effect"``,
        ``"site_effect"``) or nested dicts. A prior override that names a ``dist``
        replaces that prior whole; otherwise its parameters are updated.

        Examples
        --------
        >>> spec = load_spec("base").with_overrides(
        ...     {"priors.regimen_sd": {"dist": "HalfNormal", "sigma": 0.25}}, name="skeptical")
        >>> spec.name, spec.prior("regimen_sd").params["sigma"]
        ('skeptical', 0.25)
        """
        data = copy.deepcopy(self.to_dict())
        merged = dict(overrides or {})
        merged.update(kwargs)
        for key, value in merged.items():
            parts = key.split(".")
            if parts[0] in STRUCTURE_DEFAULTS:
                parts = ["structure", *parts]
            if parts == ["structure"] or parts == ["priors"]:
                for sub, v in value.items():
                    _set_path(data, [parts[0], sub], v)
            else:
                _set_path(data, parts, value)
        return ModelSpec.from_dict(data, source=f"override of spec {self.name!r}")


# [borrowing] keys and their defaults (method "none": no borrowing).
BORROWING_DEFAULTS: dict[str, Any] = {
    "method": "none",
    "robust_weight": 0.2,
    "robust_mean": 0.5,
    "a0": 0.5,
    "tau_prior": 1.0,
    "intercept_prior_mean": 0.0,
    "intercept_prior_sd": 2.0,
}
BORROWING_METHODS = ("none", "map", "robust_map", "power", "joint", "mixture")


def _parse_borrowing(body: Any, where: str) -> dict[str, Any]:
    """A validated [borrowing] table; empty when there is none or its method is none."""
    if not isinstance(body, Mapping):
        raise SpecError(f"{where}[borrowing] must be a table")
    unknown = set(body) - set(BORROWING_DEFAULTS) - {"regimens", "mixture"}
    if unknown:
        raise SpecError(
            f"{where}unknown key(s) in [borrowing]: {sorted(unknown)}; allowed: "
            f"{sorted([*BORROWING_DEFAULTS, 'regimens', 'mixture'])}"
        )
    out = {**BORROWING_DEFAULTS, **body}
    if out["method"] not in BORROWING_METHODS:
        raise SpecError(
            f"{where}borrowing.method must be one of {list(BORROWING_METHODS)}, "
            f"not {out['method']!r}"
        )
    if out["method"] == "none":
        return {}
    bounds = {
        "robust_weight": (0.0, 1.0, False),
        "robust_mean": (0.0, 1.0, False),
        "a0": (0.0, 1.0, True),
        "tau_prior": (0.0, 100.0, False),
        "intercept_prior_sd": (0.0, 100.0, False),
        "intercept_prior_mean": (-30.0, 30.0, True),
    }
    for key, (low, high, closed) in bounds.items():
        value = out[key]
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        inside = ok and (low <= value <= high if closed else low < value < high)
        if not inside:
            raise SpecError(
                f"{where}borrowing.{key} must be a number in "
                f"{'[' if closed else '('}{low:g}, {high:g}{']' if closed else ')'}, not {value!r}"
            )
        out[key] = float(value)
    if (out["method"] == "mixture") != ("mixture" in out):
        raise SpecError(
            f'{where}borrowing.method = "mixture" goes with a [borrowing.mixture.<regimen>] '
            "table per regimen (weights, means, sds of normal components on the log-odds), "
            "and only with it"
        )
    if "mixture" in out:
        out["mixture"] = _parse_mixtures(out["mixture"], where)
    regimens = out.get("regimens")
    if regimens is not None and (
        not isinstance(regimens, list) or not all(isinstance(r, str) and r for r in regimens)
    ):
        raise SpecError(f"{where}borrowing.regimens must be a list of regimen names")
    return out


def _parse_mixtures(body: Any, where: str) -> dict[str, dict[str, list[float]]]:
    """[borrowing.mixture.<regimen>] tables: a fixed normal-mixture prior on each
    regimen's log-odds (e.g. a MAP prior published with its components)."""
    if not isinstance(body, Mapping) or not body:
        raise SpecError(f"{where}[borrowing.mixture] must hold one table per regimen")
    out = {}
    for regimen, table in body.items():
        at = f"{where}borrowing.mixture.{regimen}"
        if not isinstance(table, Mapping) or set(table) != {"weights", "means", "sds"}:
            raise SpecError(f"{at} must be a table with exactly weights, means and sds")
        lists = {}
        for key in ("weights", "means", "sds"):
            values = table[key]
            if not isinstance(values, list) or not values:
                raise SpecError(f"{at}.{key} must be a non-empty list of numbers")
            if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in values):
                raise SpecError(f"{at}.{key} must be a list of numbers")
            if not all(math.isfinite(x) for x in values):
                raise SpecError(f"{at}.{key} must be finite")
            lists[key] = [float(x) for x in values]
        if len({len(x) for x in lists.values()}) != 1:
            raise SpecError(f"{at}: weights, means and sds need one value per component")
        if any(w < 0 for w in lists["weights"]) or abs(sum(lists["weights"]) - 1) > 1e-6:
            raise SpecError(f"{at}.weights must be >= 0 and sum to 1")
        if any(sd <= 0 for sd in lists["sds"]):
            raise SpecError(f"{at}.sds must be > 0")
        out[str(regimen)] = lists
    return out


def _set_path(data: dict, parts: list[str], value: Any) -> None:
    if parts[0] == "priors" and len(parts) == 2:
        if isinstance(value, Mapping) and "dist" in value:
            data["priors"][parts[1]] = dict(value)
        elif isinstance(value, Mapping):
            data["priors"].setdefault(parts[1], {}).update(value)
        else:
            raise SpecError(f"override of priors.{parts[1]} must be a table")
        return
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise SpecError(f"cannot override {'.'.join(parts)}: {p!r} is not a table")
    node[parts[-1]] = value


def _parse_prior(name: str, body: Any, where: str) -> Prior:
    if name not in PRIOR_ROLES:
        raise SpecError(f"{where}unknown prior {name!r}; known priors: {sorted(PRIOR_ROLES)}")
    if not isinstance(body, Mapping) or "dist" not in body:
        raise SpecError(f"{where}[priors.{name}] must be a table with a 'dist' key")
    body = dict(body)
    dist = body.pop("dist")
    rationale = body.pop("rationale", "")
    if dist not in DISTRIBUTIONS:
        raise SpecError(
            f"{where}priors.{name}: distribution {dist!r} is not allowed; "
            f"use one of {sorted(DISTRIBUTIONS)}"
        )
    params, kind = DISTRIBUTIONS[dist]
    role = PRIOR_ROLES[name]
    if kind != role:
        fitting = [d for d, (_, k) in DISTRIBUTIONS.items() if k == role]
        needs = (
            f"a positive distribution ({', '.join(fitting)})"
            if role == "scale"
            else " or ".join(fitting)
        )
        raise SpecError(f"{where}priors.{name} {_KIND_WORDS[role]} and needs {needs}, not {dist}")
    unknown = set(body) - set(params)
    missing = set(params) - set(body)
    if unknown:
        raise SpecError(
            f"{where}priors.{name}: {dist} has no parameter(s) {sorted(unknown)}; "
            f"it takes {list(params)}"
        )
    if missing:
        raise SpecError(f"{where}priors.{name}: {dist} needs parameter(s) {sorted(missing)}")
    values = {}
    for p in params:
        v = body[p]
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise SpecError(f"{where}priors.{name}.{p} must be a number, not {v!r}")
        if not math.isfinite(v):
            raise SpecError(f"{where}priors.{name}.{p} must be a finite number, not {v}")
        if p in _POSITIVE_PARAMS and not v > 0:
            raise SpecError(f"{where}priors.{name}.{p} must be > 0, not {v}")
        low, high = POSITIVE_RANGE
        if p in _POSITIVE_PARAMS and not low <= v <= high:
            raise SpecError(
                f"{where}priors.{name}.{p} = {v:g} is outside [{low:g}, {high:g}]: "
                "no sampler can start from such a prior"
            )
        if p == "mu" and abs(v) > LOCATION_MAX:
            raise SpecError(
                f"{where}priors.{name}.mu = {v:g} log-odds is outside "
                f"[-{LOCATION_MAX:g}, {LOCATION_MAX:g}] (a probability of 0 or 1 to "
                "forty decimals): is it a typo?"
            )
        if p == "p" and not 0 < v < 1:
            raise SpecError(f"{where}priors.{name}.p must lie strictly between 0 and 1, not {v}")
        values[p] = float(v)
    if not isinstance(rationale, str):
        raise SpecError(f"{where}priors.{name}.rationale must be a string")
    return Prior(dist, values, rationale)


def _parse_sampler(body: Any, where: str) -> float | None:
    if not isinstance(body, Mapping):
        raise SpecError(f"{where}[sampler] must be a table")
    unknown = set(body) - {"target_accept"}
    if unknown:
        raise SpecError(
            f"{where}unknown key(s) in [sampler]: {sorted(unknown)}; allowed: ['target_accept']"
        )
    value = body.get("target_accept")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.5 <= value < 1:
        raise SpecError(f"{where}sampler.target_accept must be a number in [0.5, 1), not {value!r}")
    return float(value)


def models_dir() -> Path:
    """Folder of the shipped specs (inside the package; the repo's models/ in a checkout)."""
    packaged = Path(str(resources.files("scleromx_bayes"))) / "models"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "models"


def list_specs() -> list[str]:
    """Names of the shipped model specs.

    Returns
    -------
    list of str
        The names :func:`load_spec` accepts, sorted.

    Examples
    --------
    >>> {"base", "no_pooling", "exnex"} <= set(sxb.list_specs())
    True
    """
    return sorted(p.stem for p in models_dir().glob("*.toml") if not p.stem.startswith("grid_"))


def load_spec(name_or_path: str | Path) -> ModelSpec:
    """Load a shipped spec by name (``"base"``) or any spec file by path.

    Parameters
    ----------
    name_or_path : str or Path
        A shipped spec's name (:func:`list_specs`) or a TOML file.

    Returns
    -------
    ModelSpec
        The validated spec.

    Examples
    --------
    >>> load_spec("no_pooling").regimen_pooling
    'none'
    """
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or text.endswith(".toml") or "/" in text:
        return ModelSpec.from_toml(Path(text))
    path = models_dir() / f"{text}.toml"
    if not path.exists():
        raise SpecError(
            f"no shipped spec named {text!r}; shipped: {list_specs()} "
            "(or give a path to a .toml file)"
        )
    return ModelSpec.from_toml(path)
