"""Build the PyMC model for a cell table and a spec.

For cell c = (regimen r, site s, severity k) with n_c evaluable episodes and y_c
responders::

    y_c ~ Binomial(n_c, p_c)
    logit p_c = typical_logit[r, k] + site_effect[s]
    typical_logit[r, k] = regimen_logit[r] + severity_effect[k] (+ interaction[r, k])

``regimen_logit`` is pooled as the spec says (none / partial / complete / EXNEX);
random effects are non-centred. ``regimen_prior_shift`` (data, zero by default)
moves a regimen's prior log-odds, e.g. against it in a tipping-point analysis.
Every prior hyper-parameter and the counts are ``pm.Data``, so one compiled model
serves every prior variant and every data subset of the same shape (a left-out
site is a block of ``n = 0`` cells, which add nothing to the likelihood).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import numpy as np
import pymc as pm
import pytensor
import pytensor.tensor as pt

from ..cohort import CellTable
from ..spec import ModelSpec
from . import names as v
from .priors import data_name, hyperparameter_values, prior_variable
from .structure import Structure, effective_structure

__all__ = ["build_model", "data_values", "exact_float_math", "ordinal_counts", "stored_names"]


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
    """
    with pytensor.config.change_flags(numba__fastmath=False):
        yield


def _exnex_regimens(spec: ModelSpec, mu, shift, n_regimens: int) -> pt.TensorVariable:
    """EXNEX (Neuenschwander et al. 2016): each regimen's log-odds is, with prior
    probability p, exchangeable, N(mu, regimen_sd), and otherwise nonexchangeable,
    N(m, s) of its own. The yes/no state is summed out (a two-component normal
    mixture per regimen); ``exchangeability_weight`` is its posterior probability
    given each draw, so its posterior mean is P(exchangeable | data)."""
    tau = prior_variable(v.REGIMEN_SD, "regimen_sd", spec.prior("regimen_sd"))
    nex = {
        k: pm.Data(data_name("nonexchangeable", k), np.float64(x))
        for k, x in spec.prior("nonexchangeable").params.items()
    }
    p_ex = pm.Data(
        data_name("exchangeability", "p"), np.float64(spec.prior("exchangeability").params["p"])
    )
    ones = pt.ones(n_regimens)
    mus = pt.stack([ones * mu + shift, ones * nex["mu"] + shift], axis=-1)
    sigmas = pt.stack([ones * tau, ones * nex["sigma"]], axis=-1)
    weights = pt.stack([p_ex, 1.0 - p_ex])
    # centred: a mixture has no non-centred form; small cohorts may want target_accept 0.95
    theta = pm.NormalMixture(v.REGIMEN_LOGIT, w=weights, mu=mus, sigma=sigmas, dims="regimen")
    log_ex = pt.log(p_ex) + pm.logp(pm.Normal.dist(mus[:, 0], sigmas[:, 0]), theta)
    log_nex = pt.log1p(-p_ex) + pm.logp(pm.Normal.dist(mus[:, 1], sigmas[:, 1]), theta)
    pm.Deterministic(
        v.EXCHANGEABILITY_WEIGHT,
        pt.exp(log_ex - pt.logaddexp(log_ex, log_nex)),
        dims="regimen",
    )
    return theta


def _regimen_logit(spec: ModelSpec, eff: Structure, shift, n_regimens: int):
    pooling = eff.regimen_pooling
    if pooling == "none":
        own = prior_variable(
            v.REGIMEN_OWN_LOGIT, "intercept", spec.prior("intercept"), dims="regimen"
        )
        return pm.Deterministic(v.REGIMEN_LOGIT, own + shift, dims="regimen")
    intercept = prior_variable(v.INTERCEPT, "intercept", spec.prior("intercept"))
    if pooling == "partial":
        regimen_sd = prior_variable(v.REGIMEN_SD, "regimen_sd", spec.prior("regimen_sd"))
        if eff.regimen_centred:  # well-informed regimens (see structure.CENTRED_INFORMATION)
            return pm.Normal(v.REGIMEN_LOGIT, intercept + shift, regimen_sd, dims="regimen")
        z = pm.Normal(v.REGIMEN_Z, 0.0, 1.0, dims="regimen")
        return pm.Deterministic(v.REGIMEN_LOGIT, intercept + shift + regimen_sd * z, dims="regimen")
    if pooling == "exnex":
        return _exnex_regimens(spec, intercept, shift, n_regimens)
    return pm.Deterministic(v.REGIMEN_LOGIT, intercept + shift, dims="regimen")


def build_model(cells: CellTable, spec: ModelSpec) -> pm.Model:
    """Return the ``pymc.Model`` for ``cells`` under ``spec``.

    Parameters
    ----------
    cells : CellTable
        From :meth:`Cohort.cells`.
    spec : ModelSpec
        From :func:`load_spec`.

    Examples
    --------
    >>> import scleromx_bayes as sxb
    >>> cohort = sxb.load_example()
    >>> model = sxb.build_model(cohort.cells(), sxb.load_spec("base"))
    >>> sorted(model.coords)[:3]
    ['category', 'cell', 'regimen']
    """
    eff = effective_structure(spec, cells)
    n_regimens, n_severities = len(cells.regimens), len(cells.severities)
    coords = {
        "regimen": list(cells.regimens),
        "site": list(cells.sites),
        "severity": list(cells.severities),
        "cell": np.arange(len(cells.frame)),
        "category": list(v.ORDINAL_CATEGORIES if eff.ordinal else v.BINARY_CATEGORIES),
    }
    if eff.severity_effect:
        coords["severity_vs_reference"] = list(cells.severities[1:])
    if eff.patient_effect:
        coords["patient"] = list(cells.patients)
    if eff.covariates:
        coords["covariate"] = list(eff.covariates)
    r_idx, s_idx, k_idx = cells.index("regimen"), cells.index("site"), cells.index("severity")

    with pm.Model(coords=coords) as model:
        n = pm.Data(v.N_EVALUABLE, cells.n, dims="cell")
        shift = pm.Data(v.REGIMEN_PRIOR_SHIFT, np.zeros(n_regimens), dims="regimen")
        regimen_logit = _regimen_logit(spec, eff, shift, n_regimens)
        # log-odds at a typical site (site effect 0) for every regimen x severity: the
        # one quantity summaries, checks and validation read, whatever the structure
        typical = pt.shape_padright(regimen_logit) + pt.zeros((1, n_severities))
        if eff.severity_effect:
            severity_shift = prior_variable(
                v.SEVERITY_SHIFT,
                "severity_effect",
                spec.prior("severity_effect"),
                dims="severity_vs_reference",
            )
            severity_effect = pm.Deterministic(
                v.SEVERITY_EFFECT, pt.concatenate([pt.zeros(1), severity_shift]), dims="severity"
            )
            typical = typical + severity_effect[None, :]
        if eff.interaction:
            # regimen-specific departures from the common severity shift, pooled toward 0;
            # the reference severity carries none, so regimen_logit stays its log-odds there
            interaction_sd = prior_variable(
                v.INTERACTION_SD, "interaction_sd", spec.prior("interaction_sd")
            )
            u = pm.Normal(v.INTERACTION_Z, 0.0, 1.0, dims=("regimen", "severity_vs_reference"))
            interaction = pm.Deterministic(
                v.INTERACTION,
                pt.concatenate([pt.zeros((n_regimens, 1)), interaction_sd * u], axis=1),
                dims=("regimen", "severity"),
            )
            typical = typical + interaction
        if eff.ordinal:
            # logit P(CR or better) = logit P(CR) + gap, the same gap in every cell
            gap = prior_variable(v.CUTPOINT_GAP, "cutpoint_gap", spec.prior("cutpoint_gap"))
            # the summarised outcome: CR (0) or CR+PR (1); data, so one compiled model
            # serves both outcome definitions
            at_orr = pm.Data(v.OUTCOME_IS_ORR, np.float64(cells.outcome.response == "orr"))
            typical = typical + at_orr * gap
        typical_logit = pm.Deterministic(v.TYPICAL_LOGIT, typical, dims=("regimen", "severity"))
        eta = typical_logit[r_idx, k_idx]  # (cell,)

        if eff.site_effect:
            site_sd = prior_variable(v.SITE_SD, "site_sd", spec.prior("site_sd"))
            if eff.site_centred:  # well-informed sites (see structure.CENTRED_INFORMATION)
                site_effect = pm.Normal(v.SITE_EFFECT, 0.0, site_sd, dims="site")
            else:
                w = pm.Normal(v.SITE_Z, 0.0, 1.0, dims="site")
                site_effect = pm.Deterministic(v.SITE_EFFECT, site_sd * w, dims="site")
            eta = eta + site_effect[s_idx]

        if eff.patient_effect:
            patient_sd = prior_variable(v.PATIENT_SD, "patient_sd", spec.prior("patient_sd"))
            z = pm.Normal(v.PATIENT_Z, 0.0, 1.0, dims="patient")
            patient_effect = pm.Deterministic(v.PATIENT_EFFECT, patient_sd * z, dims="patient")
            eta = eta + patient_effect[cells.index("patient")]

        if eff.covariates:
            # standardised values are part of the layout (the cells' keys), not data
            x = cells.frame[list(eff.covariates)].to_numpy(dtype=np.float64)  # (cell, covariate)
            beta = prior_variable(
                v.COVARIATE_EFFECT,
                "covariate_effect",
                spec.prior("covariate_effect"),
                dims="covariate",
            )
            eta = eta + pt.dot(pt.as_tensor(x), beta)

        if eff.ordinal:
            log_odds_cr = eta - at_orr * gap
            p_cr = pm.math.sigmoid(log_odds_cr)
            p_pr_or_better = pm.math.sigmoid(log_odds_cr + gap)
            # (cell, category): NR, PR, CR
            probs = pt.stack([1.0 - p_pr_or_better, p_pr_or_better - p_cr, p_cr], axis=-1)
            counts = pm.Data(v.RESPONSE_COUNTS, ordinal_counts(cells), dims=("cell", "category"))
            pm.Multinomial(v.RESPONSES, n=n, p=probs, observed=counts, dims=("cell", "category"))
            log_probs = pt.log(probs)
        else:
            y = pm.Data(v.N_RESPONDERS, cells.y, dims="cell")
            pm.Binomial(v.RESPONDERS, n=n, logit_p=eta, observed=y, dims="cell")
            # (cell, category): non-responder, responder
            log_probs = pt.stack(
                [-pt.softplus(eta), -pt.softplus(-eta)], axis=-1
            )  # log(1-p), log p
        # what one episode of each category contributes to the likelihood: LOO and
        # predictive checks read it from here, never from a second copy of the model
        pm.Deterministic(v.CATEGORY_LOG_PROB, log_probs, dims=("cell", "category"))
    return model


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
    cells: CellTable, spec: ModelSpec, shift: np.ndarray | None = None
) -> Mapping[str, np.ndarray]:
    """Every ``pm.Data`` value of the model for these cells and spec: what a compiled
    model of the same layout needs to fit other counts or priors."""
    eff = effective_structure(spec, cells)
    out = {
        v.N_EVALUABLE: cells.n,
        v.REGIMEN_PRIOR_SHIFT: np.zeros(len(cells.regimens)) if shift is None else shift,
        **hyperparameter_values(spec, cells),
    }
    if eff.ordinal:
        out[v.RESPONSE_COUNTS] = ordinal_counts(cells)
        out[v.OUTCOME_IS_ORR] = np.float64(cells.outcome.response == "orr")
    else:
        out[v.N_RESPONDERS] = cells.y
    return out
