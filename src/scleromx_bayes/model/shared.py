"""The graph a sampler compiles once and reuses across structures and cohorts.

:func:`build_model` builds a spec's own model: only the terms it has, each prior of
its own family. For sampling, ``build_model(..., shared=True)`` builds a wider
graph whose *switches* are data:

* regimen pooling none / partial / complete: ``regimen_logit = centre + shift +
  scale * regimen_z`` with ``centre`` the common intercept (partial, complete) or
  the no-pooling prior mean, and ``scale`` the between-regimen SD (partial), the
  no-pooling prior SD (none) or 0 (complete);
* site effect on / off and severity effect on / off: the term times a 0/1 datum;
* cell indices, counts and covariate values: the cohort itself.

A switched-off term's parameters are sampled from their priors (they touch no
likelihood term), so the other parameters' posterior is exactly the spec's own
model's; the fit keeps only the variables of the spec's own model. The compiled
graph then depends on :class:`SharedGraph` alone: the kinds of term, the prior
families, and the numbers of regimens, sites, severities and
patients. Every scenario of the default sensitivity grid, and every cohort of the
same size, share one compiled model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..cohort import CellTable
from ..spec import ModelSpec, Prior
from .external import ExternalEvidence
from .priors import data_name, stand_in
from .structure import Structure, effective_structure

__all__ = ["SharedGraph", "graph_prior", "shared_graph", "shared_values", "switch_name"]


def switch_name(what: str) -> str:
    """The name of one term switch of the shared graph among the model's scalars."""
    return f"switch__{what}"


@dataclass(frozen=True)
class SharedGraph:
    """Everything a shared graph's compiled code depends on (a cache key).

    ``regimens`` is "switch" (pooling none / partial / complete as data), "centred"
    (well-informed regimens, partial pooling) or "exnex"; ``site`` and ``severity``
    are "switch", "centred" (sites only) or "none" (one level: no term at all).
    ``priors`` pairs each prior in the graph with its family (a switched-off term's
    is :func:`priors.stand_in`'s).
    """

    regimens: str
    site: str
    severity: str
    interaction: bool
    patient_effect: bool
    n_covariates: int
    ordinal: bool
    priors: tuple[tuple[str, str], ...]
    sizes: tuple[int, int, int, int]  # regimens, sites, severities, patients
    external: tuple = ()  # borrowing: method, borrowed regimens, array shapes


def graph_prior(spec: ModelSpec, eff: Structure, name: str) -> Prior:
    """The prior a shared graph gives ``name``: the spec's own when its structure
    uses it, else a stand-in (the term is switched off).

    ``regimen_z`` (the standardised regimen deviations) is Normal(0, 1), except
    under no pooling with a Student-t intercept prior: then it is that t with
    location 0 and scale 1 (the graph shifts and scales it).
    """
    if name == "regimen_z":
        intercept = spec.prior("intercept")
        if eff.regimen_pooling == "none" and intercept.dist == "StudentT":
            return Prior("StudentT", {"nu": intercept.params["nu"]})
        return Prior("Normal", {})
    return spec.prior(name) if name in eff.priors else stand_in(name)


def shared_graph(
    cells: CellTable, spec: ModelSpec, external: ExternalEvidence | None = None
) -> SharedGraph:
    """The shared graph ``spec`` is sampled with on ``cells``.

    Examples
    --------
    >>> import scleromx_bayes as sxb
    >>> cells = sxb.load_example().cells()
    >>> a = shared_graph(cells, sxb.load_spec("base"))
    >>> a == shared_graph(cells, sxb.load_spec("no_pooling"))
    True
    """
    eff = effective_structure(spec, cells)
    if external is not None:
        regimens = "borrowed"  # the spec's own no-pooling prior, plus the literature's
    elif eff.regimen_pooling == "exnex":
        regimens = "exnex"
    else:
        regimens = "centred" if eff.regimen_centred else "switch"
    if len(cells.sites) == 1:
        site = "none"
    else:
        site = "centred" if eff.site_centred else "switch"
    severity = "none" if len(cells.severities) == 1 else "switch"
    names = ["intercept"] if regimens == "borrowed" else ["intercept", "regimen_sd"]
    if regimens == "exnex":
        names += ["nonexchangeable", "exchangeability"]
    if site != "none":
        names.append("site_sd")
    if severity != "none":
        names.append("severity_effect")
    for flag, name in (
        (eff.interaction, "interaction_sd"),
        (eff.patient_effect, "patient_sd"),
        (bool(eff.covariates), "covariate_effect"),
        (eff.ordinal, "cutpoint_gap"),
    ):
        if flag:
            names.append(name)
    if regimens == "switch":
        names.append("regimen_z")
    priors = tuple((name, graph_prior(spec, eff, name).dist) for name in names)
    return SharedGraph(
        regimens=regimens,
        site=site,
        severity=severity,
        interaction=eff.interaction,
        patient_effect=eff.patient_effect,
        n_covariates=len(eff.covariates),
        ordinal=eff.ordinal,
        priors=priors,
        sizes=(len(cells.regimens), len(cells.sites), len(cells.severities), len(cells.patients)),
        external=() if external is None else external.shape_key(tuple(cells.regimens)),
    )


def shared_values(
    cells: CellTable, spec: ModelSpec, external: ExternalEvidence | None = None
) -> dict[str, np.ndarray]:
    """The switch and prior data that make the shared graph ``spec``'s own model."""
    eff = effective_structure(spec, cells)
    graph = shared_graph(cells, spec, external)
    out: dict[str, np.ndarray] = {}
    for name, _ in graph.priors:
        prior = graph_prior(spec, eff, name)
        out.update({data_name(name, p): np.float64(x) for p, x in prior.params.items()})
    if graph.regimens == "switch":
        none = eff.regimen_pooling == "none"
        intercept = spec.prior("intercept").params
        out[switch_name("no_pooling")] = np.float64(none)
        out[switch_name("partial_pooling")] = np.float64(eff.regimen_pooling == "partial")
        out[switch_name("no_pooling_mu")] = np.float64(intercept["mu"] if none else 0.0)
        out[switch_name("no_pooling_sigma")] = np.float64(intercept["sigma"] if none else 1.0)
    if graph.site == "switch":
        out[switch_name("site_effect")] = np.float64(eff.site_effect)
    if graph.severity == "switch":
        out[switch_name("severity_effect")] = np.float64(eff.severity_effect)
    return out
