"""Build the PyMC model for a cell table and a spec.

For cell c = (regimen r, site s, severity k) with n_c evaluable episodes and y_c
responders::

    y_c ~ Binomial(n_c, p_c)
    logit p_c = typical_logit[r, k] + site_effect[s]
    typical_logit[r, k] = regimen_logit[r] + severity_effect[k] (+ interaction[r, k])

``regimen_logit`` is pooled as the spec says (none / partial / complete / EXNEX);
random effects are non-centred unless the groups are well informed.
``regimen_prior_shift`` (data, zero by default) moves a regimen's prior log-odds,
e.g. against it in a tipping-point analysis.

Everything but the graph's shape is ``pm.Data``: the cells' indices and counts,
and every scalar (prior hyper-parameters, and in a shared graph the term
switches, see ``model.shared``) in one vector ``model_scalars``. One compiled
model then serves every prior variant, data subset (a left-out site is a block of
``n = 0`` cells, which add nothing to the likelihood) and cohort of the same
shape. One vector rather than a datum per scalar because nutpie's compiled
wrapper unpacks each data variable on its own: twenty scalars compiled 2-3x
slower than one vector of twenty.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt
from scipy import special

from ..cohort import CellTable
from ..spec import ModelSpec, Prior, SpecError
from . import names as v
from .exnex import ExnexRegimens, exnex_regimens, regimen_mixture, select_regimens
from .external import ExternalEvidence, require_no_pooling
from .priors import data_name, hyperparameter_values, prior_variable
from .shared import SharedGraph, graph_prior, shared_graph, shared_values, switch_name
from .structure import Structure, effective_structure

__all__ = [
    "build_model",
    "data_values",
    "exact_float_math",
    "ordinal_counts",
    "scalar_values",
    "stored_names",
]


_EXACT_FLOAT_LOCK = threading.RLock()


@contextlib.contextmanager
def exact_float_math() -> Iterator[None]:
    """Compile with IEEE floating point (numba fast-math off), inside this block only.

    PyTensor compiles for numba with fast-math on by default. Fast-math lets LLVM
    contract and reassociate arithmetic differently depending on what it can inline,
    and PyTensor's on-disk cache changes what it can inline: the same model's
    log-density then differs by an ulp between a process with an empty compile cache
    and one with a warm cache, and NUTS follows another path (seen with EXNEX's
    ``logaddexp``). With fast-math off the compiled code is the same arithmetic
    either way, so the same data, spec and seed give the same draws in any process.
    The user's own PyTensor configuration is restored when the block ends.

    PyTensor's configuration is one per process, so blocks in different threads take
    turns (a re-entrant lock): a block ending in one thread would otherwise turn
    fast-math back on in the middle of another thread's compile (a grid's refits run
    on a thread of their own beside the baseline's borrowing or log-density compile).
    """
    with _EXACT_FLOAT_LOCK, pytensor.config.change_flags(numba__fastmath=False):
        yield


def scalar_values(
    cells: CellTable,
    spec: ModelSpec,
    *,
    shared: bool = False,
    external: ExternalEvidence | None = None,
) -> dict[str, float]:
    """Every scalar datum of the model, by name, in the order of ``model_scalars``."""
    eff = effective_structure(spec, cells)
    if shared:
        out = dict(shared_values(cells, spec, external))
    else:
        out = dict(hyperparameter_values(spec, cells))
    if eff.ordinal:
        out[v.OUTCOME_IS_ORR] = cells.outcome.response == "orr"
    if external is not None:
        out.update(external.scalars())
    return {name: float(x) for name, x in out.items()}


class _Scalars:
    """The ``model_scalars`` vector, read by name."""

    def __init__(self, values: Mapping[str, float]):
        self.position = {name: i for i, name in enumerate(values)}
        self.data = pm.Data(v.MODEL_SCALARS, np.array(list(values.values()), dtype=np.float64))

    def __call__(self, name: str) -> pt.TensorVariable:
        return self.data[self.position[name]]

    def prior(self, prior_name: str, prior: Prior) -> dict[str, pt.TensorVariable]:
        return {p: self(data_name(prior_name, p)) for p in prior.params}


def _cell_index(cells: CellTable, patients: bool) -> np.ndarray:
    """Per cell: the indices of its regimen, severity and site (and patient)."""
    factors = ["regimen", "severity", "site"] + (["patient"] if patients else [])
    return np.stack([cells.index(f) for f in factors], axis=-1)


@dataclass(frozen=True)
class _Parts:
    """What every term of the model reads while the model is built."""

    spec: ModelSpec
    eff: Structure
    graph: SharedGraph | None  # None: the spec's own model
    scalars: _Scalars
    external: ExternalEvidence | None = None
    regimens: tuple[str, ...] = ()

    def prior(self, rv_name: str, prior_name: str, **kwargs) -> pt.TensorVariable:
        """A prior variable: the spec's own, or in a shared graph a stand-in for a
        term the spec switches off."""
        if self.graph is None:
            prior = self.spec.prior(prior_name)
        else:
            prior = graph_prior(self.spec, self.eff, prior_name)
        return prior_variable(rv_name, prior.dist, self.scalars.prior(prior_name, prior), **kwargs)

    def switch(self, what: str) -> pt.TensorVariable:
        return self.scalars(switch_name(what))


def _exnex_regimens(parts: _Parts, mu, shift) -> ExnexRegimens:
    """EXNEX's free variables (see ``model.exnex``): each regimen's exchangeable and
    nonexchangeable log-odds, both non-centred, and the selector of its state."""
    tau = parts.prior(v.REGIMEN_SD, "regimen_sd")
    nex = parts.scalars.prior("nonexchangeable", parts.spec.prior("nonexchangeable"))
    p_ex = parts.scalars(data_name("exchangeability", "p"))
    return exnex_regimens(mu, tau, nex["mu"], nex["sigma"], p_ex, shift)


def _standard_regimen_z(parts: _Parts, nu_name: str | None) -> pt.TensorVariable:
    """Standardised regimen deviations: N(0, 1), or a Student t with location 0,
    scale 1 and ``nu`` from the scalar ``nu_name`` (no pooling, t intercept prior)."""
    if nu_name is not None:
        nu = parts.scalars(nu_name)
        return pm.StudentT(v.REGIMEN_Z, nu=nu, mu=0.0, sigma=1.0, dims="regimen")
    return pm.Normal(v.REGIMEN_Z, 0.0, 1.0, dims="regimen")


def _own_regimen_logit(parts: _Parts, shift) -> pt.TensorVariable:
    """No pooling: each regimen's log-odds has the intercept prior of its own,
    written as location + scale * a standard variable of the same family (the form
    the shared graph samples)."""
    prior = parts.spec.prior("intercept")
    params = parts.scalars.prior("intercept", prior)
    t_prior = prior.dist == "StudentT"
    z = _standard_regimen_z(parts, data_name("intercept", "nu") if t_prior else None)
    return pm.Deterministic(
        v.REGIMEN_LOGIT, params["mu"] + shift + params["sigma"] * z, dims="regimen"
    )


def _switched_regimen_logit(parts: _Parts, shift) -> pt.TensorVariable:
    """Pooling none / partial / complete as data (see ``model.shared``)."""
    intercept = parts.prior(v.INTERCEPT, "intercept")
    regimen_sd = parts.prior(v.REGIMEN_SD, "regimen_sd")
    t_prior = graph_prior(parts.spec, parts.eff, "regimen_z").dist == "StudentT"
    z = _standard_regimen_z(parts, data_name("regimen_z", "nu") if t_prior else None)
    none, partial = parts.switch("no_pooling"), parts.switch("partial_pooling")
    centre = (1.0 - none) * intercept + none * parts.switch("no_pooling_mu")
    scale = partial * regimen_sd + none * parts.switch("no_pooling_sigma")
    return pm.Deterministic(v.REGIMEN_LOGIT, centre + shift + scale * z, dims="regimen")


def _borrowing_positions(regimens: Sequence[str], external: ExternalEvidence) -> dict:
    """The positions among ``regimens`` of the borrowed ones and of the others."""
    borrowed = np.array([list(regimens).index(r) for r in external.regimens], dtype=np.int64)
    own = np.setdiff1d(np.arange(len(regimens)), borrowed).astype(np.int64)
    return {v.BORROWED_INDEX: borrowed, v.OWN_INDEX: own}


def _borrowed_regimen_logit(parts: _Parts, shift) -> pt.TensorVariable:
    """Regimens without external evidence keep their own (no-pooling) prior; the
    borrowed ones get theirs from the literature (see ``model.external``)."""
    ext = parts.external
    positions = _borrowing_positions(parts.regimens, ext)
    # which regimens are borrowed is data (its sizes are dim lengths): the graph
    # depends only on the method and on whether any regimen keeps its own prior
    borrowed = pm.Data(v.BORROWED_INDEX, positions[v.BORROWED_INDEX], dims="borrowed_regimen")
    prior = parts.spec.prior("intercept")
    params = parts.scalars.prior("intercept", prior)
    t_prior = prior.dist == "StudentT"
    logit = pt.zeros(pm.modelcontext(None).dim_lengths["regimen"])
    has_own = positions[v.OWN_INDEX].size > 0
    if ext.method == "power" or has_own:
        dims = "regimen" if ext.method == "power" else "own_regimen"
        nu = parts.scalars(data_name("intercept", "nu")) if t_prior else None
        z = (
            pm.StudentT(v.REGIMEN_Z, nu=nu, mu=0.0, sigma=1.0, dims=dims)
            if t_prior
            else pm.Normal(v.REGIMEN_Z, 0.0, 1.0, dims=dims)
        )
        own_logit = params["mu"] + params["sigma"] * z
        if ext.method == "power":
            logit = own_logit
        else:
            own = pm.Data(v.OWN_INDEX, positions[v.OWN_INDEX], dims="own_regimen")
            logit = pt.set_subtensor(logit[own], own_logit)
    if ext.method in ("map", "robust_map"):
        b = pm.NormalMixture(
            v.BORROWED_LOGIT,
            w=pm.Data(v.MIXTURE_WEIGHT, ext.mixture_weight),
            mu=pm.Data(v.MIXTURE_MEAN, ext.mixture_mean),
            sigma=pm.Data(v.MIXTURE_SD, ext.mixture_sd),
            dims="borrowed_regimen",
        )
        logit = pt.set_subtensor(logit[borrowed], b)
    if ext.method in ("power", "joint"):
        study = pm.Data(v.STUDY_REGIMEN, ext.study_regimen, dims="external_study")
        n = pm.Data(v.STUDY_N, ext.study_n, dims="external_study")
        cr = pm.Data(v.STUDY_CR, ext.study_cr, dims="external_study")
    if ext.method == "power":
        # the external likelihood, down-weighted by a0 (the binomial kernel: the
        # coefficient is a constant)
        eta = logit[borrowed][study]
        kernel = cr * -pt.softplus(-eta) + (n - cr) * -pt.softplus(eta)
        pm.Potential("power_prior", parts.scalars("borrowing__a0") * kernel.sum())
    if ext.method == "joint":
        mean = pm.Normal(
            v.BORROWED_MEAN,
            parts.scalars("borrowing__mean_mu"),
            parts.scalars("borrowing__mean_sigma"),
            dims="borrowed_regimen",
        )
        tau = pm.HalfNormal(
            v.BORROWED_TAU, parts.scalars("borrowing__tau_sigma"), dims="borrowed_regimen"
        )
        e0 = pm.Normal(v.BORROWED_Z, 0.0, 1.0, dims="borrowed_regimen")
        e = pm.Normal(v.EXTERNAL_Z, 0.0, 1.0, dims="external_study")
        pm.Binomial(
            v.EXTERNAL_RESPONDERS,
            n=n,
            logit_p=mean[study] + tau[study] * e,
            observed=cr,
            dims="external_study",
        )
        logit = pt.set_subtensor(logit[borrowed], mean + tau * e0)
    return pm.Deterministic(v.REGIMEN_LOGIT, logit + shift, dims="regimen")


def _regimen_logit(parts: _Parts, shift) -> pt.TensorVariable | ExnexRegimens:
    if parts.external is not None:
        return _borrowed_regimen_logit(parts, shift)
    if parts.graph is not None and parts.graph.regimens == "switch":
        return _switched_regimen_logit(parts, shift)
    pooling = parts.eff.regimen_pooling
    if pooling == "none":
        return _own_regimen_logit(parts, shift)
    intercept = parts.prior(v.INTERCEPT, "intercept")
    if pooling == "partial":
        regimen_sd = parts.prior(v.REGIMEN_SD, "regimen_sd")
        if parts.eff.regimen_centred:  # well informed (see structure.CENTRED_INFORMATION)
            return pm.Normal(v.REGIMEN_LOGIT, intercept + shift, regimen_sd, dims="regimen")
        z = pm.Normal(v.REGIMEN_Z, 0.0, 1.0, dims="regimen")
        return pm.Deterministic(v.REGIMEN_LOGIT, intercept + shift + regimen_sd * z, dims="regimen")
    if pooling == "exnex":
        return _exnex_regimens(parts, intercept, shift)
    return pm.Deterministic(v.REGIMEN_LOGIT, intercept + shift, dims="regimen")


def build_model(
    cells: CellTable,
    spec: ModelSpec,
    *,
    shared: bool = False,
    external: ExternalEvidence | None = None,
    simulate: bool = False,
) -> pm.Model:
    """Return the ``pymc.Model`` for ``cells`` under ``spec``.

    Parameters
    ----------
    cells : CellTable
        From :meth:`Cohort.cells`.
    spec : ModelSpec
        From :func:`load_spec`.
    shared : bool
        False (default): the spec's own model, only the terms it has. True: the
        wider graph a sampler compiles once for every structure and cohort of the
        same :class:`SharedGraph`, with term switches as data, set to this spec's
        values (see ``model.shared``).
    external : ExternalEvidence, optional
        Published series to borrow from (see ``model.external``); needs regimen
        pooling "none" (the borrowed prior replaces the regimen's own).
    simulate : bool
        True: the model as it generates data, for prior predictive draws. Differs
        only under EXNEX, whose yes/no states are then drawn from their prior
        rather than given the cohort's counts (see ``model.exnex``).

    Returns
    -------
    pymc.Model
        The model, its data as ``pm.Data`` (cell indices, counts, ``model_scalars``).

    Examples
    --------
    >>> import scleromx_bayes as sxb
    >>> cohort = sxb.load_example()
    >>> model = sxb.build_model(cohort.cells(), sxb.load_spec("base"))
    >>> sorted(model.coords)[:3]
    ['category', 'cell', 'regimen']
    """
    eff = effective_structure(spec, cells)
    _check_external(spec, eff, cells, external)
    graph = shared_graph(cells, spec, external) if shared else None
    n_regimens = len(cells.regimens)
    site_term = graph.site != "none" if graph else eff.site_effect
    severity_term = graph.severity != "none" if graph else eff.severity_effect
    coords = {
        "regimen": list(cells.regimens),
        "site": list(cells.sites),
        "severity": list(cells.severities),
        "cell": np.arange(len(cells.frame)),
        "category": list(v.ORDINAL_CATEGORIES if eff.ordinal else v.BINARY_CATEGORIES),
    }
    if severity_term:
        coords["severity_vs_reference"] = list(cells.severities[1:])
    if eff.patient_effect:
        coords["patient"] = list(cells.patients)
    if eff.covariates:
        coords["covariate"] = list(eff.covariates)
    if external is not None:
        coords["borrowed_regimen"] = list(external.regimens)
        coords["own_regimen"] = [r for r in cells.regimens if r not in external.regimens]
        if external.study_n.size:
            coords["external_study"] = np.arange(external.study_n.size)

    with pm.Model(coords=coords) as model:
        # sizes in the graph are the model's dimension lengths (shared data), never
        # Python numbers: one compiled model serves cohorts of every size (native.py)
        n_regimens_data = model.dim_lengths["regimen"]
        n_severities_data = model.dim_lengths["severity"]
        scalars = _Scalars(scalar_values(cells, spec, shared=shared, external=external))
        parts = _Parts(spec, eff, graph, scalars, external, tuple(cells.regimens))
        # the cohort is data: one compiled model serves every cohort of the same size
        index = pm.Data(v.CELL_INDEX, _cell_index(cells, eff.patient_effect))
        n = pm.Data(v.N_EVALUABLE, cells.n, dims="cell")
        shift = pm.Data(v.REGIMEN_PRIOR_SHIFT, np.zeros(n_regimens), dims="regimen")
        regimen = _regimen_logit(parts, shift)
        exnex = isinstance(regimen, ExnexRegimens)
        # log-odds at a typical site (site effect 0) for every regimen x severity: the
        # one quantity summaries, checks and validation read, whatever the structure.
        # Terms are made once and added by typical_of / eta_of, in this order, to any
        # regimen log-odds (EXNEX needs the cells' log-odds under both of its own).
        typical_terms = []
        if severity_term:
            shifts = parts.prior(v.SEVERITY_SHIFT, "severity_effect", dims="severity_vs_reference")
            effect = pt.concatenate([pt.zeros(1), shifts])
            severity_switch = parts.switch("severity_effect") if graph is not None else None
            if severity_switch is not None:
                effect = severity_switch * effect
            severity_effect = pm.Deterministic(v.SEVERITY_EFFECT, effect, dims="severity")
            typical_terms.append(severity_effect[None, :])
        if eff.interaction:
            # regimen-specific departures from the common severity shift, pooled toward 0;
            # the reference severity carries none, so regimen_logit stays its log-odds there
            interaction_sd = parts.prior(v.INTERACTION_SD, "interaction_sd")
            u = pm.Normal(v.INTERACTION_Z, 0.0, 1.0, dims=("regimen", "severity_vs_reference"))
            interaction = pm.Deterministic(
                v.INTERACTION,
                pt.concatenate([pt.zeros_like(u[:, :1]), interaction_sd * u], axis=1),
                dims=("regimen", "severity"),
            )
            typical_terms.append(interaction)
        if eff.ordinal:
            # logit P(CR or better) = logit P(CR) + gap, the same gap in every cell
            gap = parts.prior(v.CUTPOINT_GAP, "cutpoint_gap")
            # the summarised outcome: CR (0) or CR+PR (1); data, so one compiled model
            # serves both outcome definitions
            at_orr = parts.scalars(v.OUTCOME_IS_ORR)
            typical_terms.append(at_orr * gap)

        def typical_of(regimen_logit):
            typical = pt.shape_padright(regimen_logit) + pt.zeros((1, n_severities_data))
            for term in typical_terms:
                typical = typical + term
            return typical

        if not exnex:
            pm.Deterministic(v.TYPICAL_LOGIT, typical_of(regimen), dims=("regimen", "severity"))

        cell_terms = []
        if site_term:
            site_sd = parts.prior(v.SITE_SD, "site_sd")
            centred = graph.site == "centred" if graph else eff.site_centred
            if centred:  # well-informed sites (see structure.CENTRED_INFORMATION)
                site_effect = pm.Normal(v.SITE_EFFECT, 0.0, site_sd, dims="site")
            else:
                w = pm.Normal(v.SITE_Z, 0.0, 1.0, dims="site")
                scale = site_sd if graph is None else parts.switch("site_effect") * site_sd
                site_effect = pm.Deterministic(v.SITE_EFFECT, scale * w, dims="site")
            cell_terms.append(site_effect[index[:, 2]])

        if eff.patient_effect:
            patient_sd = parts.prior(v.PATIENT_SD, "patient_sd")
            z = pm.Normal(v.PATIENT_Z, 0.0, 1.0, dims="patient")
            patient_effect = pm.Deterministic(v.PATIENT_EFFECT, patient_sd * z, dims="patient")
            cell_terms.append(patient_effect[index[:, 3]])

        if eff.covariates:
            # standardised values per cell, data like the counts
            x = pm.Data(v.COVARIATE_VALUES, _covariate_values(cells), dims=("cell", "covariate"))
            beta = parts.prior(v.COVARIATE_EFFECT, "covariate_effect", dims="covariate")
            cell_terms.append(pt.dot(x, beta))

        # eta_of adds the same terms as typical_of, in the same order, cell by cell:
        # each term's values for the cells are gathered from its own vector, not from
        # the (regimen, severity) matrix typical_of makes. The values are the same; the
        # gradient needs no reductions of that matrix, which cost about a quarter of
        # numba's first compile of a model (typical_logit itself is still stored).
        # The reference severity's zeros are a switch, not a concatenation: its
        # gradient (a Split) alone cost seconds of that compile.
        regimen_of_cell, severity_of_cell = index[:, 0], index[:, 1]
        not_reference = severity_of_cell > 0
        shift_of_cell = pt.maximum(severity_of_cell - 1, 0)  # any valid index where 0
        cell_typical_terms = []
        if severity_term:
            shift = shifts[shift_of_cell]
            shift = shift if severity_switch is None else severity_switch * shift
            cell_typical_terms.append(pt.switch(not_reference, shift, 0.0))
        if eff.interaction:
            departure = interaction_sd * u[regimen_of_cell, shift_of_cell]
            cell_typical_terms.append(pt.switch(not_reference, departure, 0.0))
        if eff.ordinal:
            cell_typical_terms.append(at_orr * gap)

        def eta_of(regimen_logit):  # (cell,)
            eta = regimen_logit[regimen_of_cell]
            for term in cell_typical_terms + cell_terms:
                eta = eta + term
            return eta

        if eff.ordinal:
            counts = pm.Data(v.RESPONSE_COUNTS, ordinal_counts(cells), dims=("cell", "category"))

            def cell_log_lik(eta):
                return _ordinal_logp(counts, n, eta, at_orr, gap)
        else:
            y = pm.Data(v.N_RESPONDERS, cells.y, dims="cell")
            log_coef = pm.Data(
                v.LOG_BINOMIAL_COEFFICIENT, log_binomial_coefficients(cells), dims="cell"
            )

            def cell_log_lik(eta):
                return _binomial_logp(y, n, eta, log_coef)

        if exnex:
            eta_ex = eta_of(regimen.exchangeable)
            eta_nex = eta_of(regimen.nonexchangeable)
            regimen_logit = select_regimens(
                regimen,
                cell_log_lik(eta_ex),
                cell_log_lik(eta_nex),
                index[:, 0],
                n_regimens_data,
                simulate,
            )
            pm.Deterministic(
                v.TYPICAL_LOGIT, typical_of(regimen_logit), dims=("regimen", "severity")
            )
        eta = eta_of(regimen_logit if exnex else regimen)

        if eff.ordinal:
            probs = _ordinal_probs(eta, at_orr, gap)  # (cell, category): NR, PR, CR
            # the likelihood reads the log-odds (probs are for simulating only)
            if exnex:
                pm.CustomDist(
                    v.RESPONSES,
                    n,
                    probs,
                    at_orr,
                    gap,
                    eta_ex,
                    eta_nex,
                    index[:, 0],
                    regimen.p,
                    logp=_exnex_logp(_ordinal_logp, n_regimens_data),
                    random=_multinomial_random,
                    signature="(),(k),(),(),(),(),(),()->(k)",
                    observed=counts,
                    dims=("cell", "category"),
                    dtype="int64",
                )
            else:
                pm.CustomDist(
                    v.RESPONSES,
                    n,
                    probs,
                    eta,
                    at_orr,
                    gap,
                    logp=lambda value, n, _probs, eta, at_orr, gap: _ordinal_logp(
                        value, n, eta, at_orr, gap
                    ),
                    random=_multinomial_random,
                    signature="(),(k),(),(),()->(k)",
                    observed=counts,
                    dims=("cell", "category"),
                    dtype="int64",
                )
            log_probs = pt.log(probs)
        else:
            if exnex:
                pm.CustomDist(
                    v.RESPONDERS,
                    n,
                    eta,
                    log_coef,
                    eta_ex,
                    eta_nex,
                    index[:, 0],
                    regimen.p,
                    logp=_exnex_logp(_binomial_logp, n_regimens_data),
                    random=_binomial_random,
                    observed=y,
                    dims="cell",
                    dtype="int64",
                )
            else:
                pm.CustomDist(
                    v.RESPONDERS,
                    n,
                    eta,
                    log_coef,
                    logp=_binomial_logp,
                    random=_binomial_random,
                    observed=y,
                    dims="cell",
                    dtype="int64",
                )
            # (cell, category): non-responder, responder
            log_probs = pt.stack(
                [-pt.softplus(eta), -pt.softplus(-eta)], axis=-1
            )  # log(1-p), log p
        # what one episode of each category contributes to the likelihood: LOO and
        # predictive checks read it from here, never from a second copy of the model
        pm.Deterministic(v.CATEGORY_LOG_PROB, log_probs, dims=("cell", "category"))
    return model


def log_binomial_coefficients(cells: CellTable) -> np.ndarray:
    """log C(n, y) per cell: the binomial likelihood's constant, from the data alone."""
    n = np.asarray(cells.n, dtype=np.float64)
    y = np.asarray(cells.y, dtype=np.float64)
    return special.gammaln(n + 1) - special.gammaln(y + 1) - special.gammaln(n - y + 1)


def _binomial_logp(value, n, eta, log_coef):
    """Binomial(n, logit^-1 eta) log-probability of ``value`` responders, its constant
    log C(n, y) passed in as data. PyMC's Binomial computes that constant with three
    log-gamma calls per cell at every gradient; with 7,827 cells (a registry) that
    was three quarters of each gradient's time. Same value, kernel only."""
    return log_coef + value * eta - n * pt.softplus(eta)


def _binomial_random(n, eta, *unused, rng=None, size=None):
    return rng.binomial(n, special.expit(eta), size=size)


def _category_probs(eta, at_orr, gap) -> list:
    """Each cell's probabilities of NR, PR and CR, one vector a category, from the
    summarised outcome's log-odds ``eta`` (CR, or CR+PR when ``at_orr``) and the
    cut-point gap."""
    log_odds_cr = eta - at_orr * gap
    p_cr = pm.math.sigmoid(log_odds_cr)
    p_pr_or_better = pm.math.sigmoid(log_odds_cr + gap)
    return [1.0 - p_pr_or_better, p_pr_or_better - p_cr, p_cr]


def _ordinal_probs(eta, at_orr, gap):
    """(cell, category) probabilities of NR, PR, CR (:func:`_category_probs`)."""
    return pt.stack(_category_probs(eta, at_orr, gap), axis=-1)


def _ordinal_logp(counts, n, eta, at_orr, gap):
    """Multinomial log-probability of each cell's NR, PR and CR counts under the
    ordinal model's probabilities (:func:`_category_probs`), category by category.

    Written with one vector per category rather than a (cell, category) matrix: the
    same value, but no stacking, matrix sums or parameter checks in the gradient
    (PyMC's Multinomial has all three: a first compile twice as long). A category
    with no episodes contributes 0 whatever its probability (PyMC's ``logpow``)."""
    log_coef = pt.gammaln(n + 1.0)
    kernel = 0.0
    for k, p in enumerate(_category_probs(eta, at_orr, gap)):
        count = counts[:, k]
        log_coef = log_coef - pt.gammaln(count + 1.0)
        # log(1) where the count is 0: no -inf * 0, and no NaN in the gradient
        kernel = kernel + count * pt.log(pt.switch(pt.eq(count, 0), 1.0, p))
    return log_coef + kernel


def _exnex_logp(cell_logp, n_regimens):
    """EXNEX's likelihood (``model.exnex``): ``cell_logp(value, n, x, *rest)`` under
    each regimen's exchangeable and nonexchangeable log-odds, δ summed out. The
    parameters are (n, x given δ, *rest, x_ex, x_nex, regimen of cell, p); x given
    δ is for simulating only (the likelihood does not depend on δ)."""

    def logp(value, n, _given_state, *params):
        *rest, x_ex, x_nex, regimen_of_cell, p = params
        return regimen_mixture(
            cell_logp(value, n, x_ex, *rest),
            cell_logp(value, n, x_nex, *rest),
            regimen_of_cell,
            p,
            n_regimens,
        )

    return logp


def _multinomial_random(n, probs, *unused, rng=None, size=None):
    return rng.multinomial(n, probs, size=size)


def _check_external(spec, eff, cells: CellTable, external) -> None:
    if external is None:
        return
    require_no_pooling(spec)
    unknown = [r for r in external.regimens if r not in cells.regimens]
    if unknown or not external.regimens:
        raise SpecError(f"borrowed regimens {unknown or '(none)'} are not regimens of the cells")


def _covariate_values(cells: CellTable) -> np.ndarray:
    return cells.frame[list(cells.covariates)].to_numpy(dtype=np.float64)


def stored_names(model: pm.Model) -> list[str]:
    """The variables a sampler keeps: all but the per-cell log-probabilities, which
    are recomputed from the graph when a check needs them."""
    named = [*model.free_RVs, *model.deterministics]
    return [var.name for var in named if var.name != v.CATEGORY_LOG_PROB]


def ordinal_counts(cells: CellTable) -> np.ndarray:
    """Counts of NR, PR and CR per cell (columns in that order), from n, y and n_pr."""
    pr = cells.frame["n_pr"].to_numpy(dtype=np.int64)
    cr = cells.y - (pr if cells.outcome.response == "orr" else 0)
    return np.stack([cells.n - cr - pr, pr, cr], axis=-1)


def data_values(
    cells: CellTable,
    spec: ModelSpec,
    shift: np.ndarray | None = None,
    *,
    shared: bool = False,
    external: ExternalEvidence | None = None,
) -> Mapping[str, np.ndarray]:
    """Every ``pm.Data`` value of the model for these cells and spec: what a compiled
    model of the same shape (``shared=True``: the same :class:`SharedGraph`) needs
    to fit other counts, cohorts, priors or structures."""
    eff = effective_structure(spec, cells)
    scalars = scalar_values(cells, spec, shared=shared, external=external)
    out = {
        v.MODEL_SCALARS: np.array(list(scalars.values()), dtype=np.float64),
        v.CELL_INDEX: _cell_index(cells, eff.patient_effect),
        v.N_EVALUABLE: cells.n,
        v.REGIMEN_PRIOR_SHIFT: np.zeros(len(cells.regimens)) if shift is None else shift,
    }
    if eff.covariates:
        out[v.COVARIATE_VALUES] = _covariate_values(cells)
    if eff.ordinal:
        out[v.RESPONSE_COUNTS] = ordinal_counts(cells)
    else:
        out[v.N_RESPONDERS] = cells.y
        out[v.LOG_BINOMIAL_COEFFICIENT] = log_binomial_coefficients(cells)
    if external is not None:
        positions = _borrowing_positions(cells.regimens, external)
        out[v.BORROWED_INDEX] = positions[v.BORROWED_INDEX]
        if external.method != "power" and positions[v.OWN_INDEX].size:
            out[v.OWN_INDEX] = positions[v.OWN_INDEX]
    if external is not None and external.method in ("map", "robust_map"):
        out[v.MIXTURE_WEIGHT] = external.mixture_weight
        out[v.MIXTURE_MEAN] = external.mixture_mean
        out[v.MIXTURE_SD] = external.mixture_sd
    if external is not None and external.method in ("power", "joint"):
        out[v.STUDY_REGIMEN] = external.study_regimen
        out[v.STUDY_N] = external.study_n
        out[v.STUDY_CR] = external.study_cr
    return out
