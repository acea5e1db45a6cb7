"""EXNEX: a regimen unlike the others is not pulled to the pack."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

import scleromx_bayes as sxb
from conftest import REFERENCE_MODE, quiet_fit
from scleromx_bayes.model import effective_structure

# five similar regimens near 40% CR and one far better (about 90%)
TRUTH = {"R1": -0.4, "R2": -0.3, "R3": -0.5, "R4": -0.4, "R5": -0.2, "Outlier": 2.2}


@pytest.fixture(scope="module")
def cohort():
    """Synthetic counts: 25 episodes per regimen at each of 2 sites, one severity."""
    rng = np.random.default_rng(11)
    rows = [
        {
            "site": site,
            "regimen": r,
            "severity": "all",
            "n": 25,
            "n_cr": int(rng.binomial(25, expit(logit))),
        }
        for r, logit in TRUTH.items()
        for site in ("S1", "S2")
    ]
    frame = pd.DataFrame(rows)
    frame.attrs["synthetic"] = True
    return sxb.read_counts(frame, regimen_order=list(TRUTH))


@pytest.fixture(scope="module")
def fits(cohort):
    exnex = sxb.load_spec("exnex")
    # the same exchangeable component as EXNEX's, with nowhere else to go
    pooled = sxb.load_spec("base").with_overrides(
        {"priors.regimen_sd": exnex.prior("regimen_sd").to_dict()}, name="base_sd_0.5"
    )
    settings = {"draws": 1000, "tune": 1000, "chains": 2, "seed": 2}
    return {
        "exnex": quiet_fit(cohort, exnex, **settings),
        "pooled": quiet_fit(cohort, pooled, **settings),
    }


def test_outlier_is_recognised_and_not_pulled_to_the_pack(fits, cohort):
    ex = fits["exnex"]
    # a divergence is a property of one realisation, not of the form: allow a few
    assert ex.diagnostics.divergences <= 5
    ds = ex.summary()
    weight = ds["exchangeability_weight"].to_series()
    others = weight.drop("Outlier")
    assert weight["Outlier"] < 0.25, weight
    assert (others > weight["Outlier"] + 0.3).all() and others.mean() > 0.5, weight
    # in this sample R5 drew 27/50 against 13-20/50 for the rest of the pack: the
    # regimen furthest from the pack is the least exchangeable of the five
    assert others.idxmin() == "R5", weight
    raw = cohort.cells().frame.groupby("regimen")[["n", "y"]].sum()
    raw = (raw["y"] / raw["n"])["Outlier"]
    p_exnex = float(ds.p_cr_typical_site.sel(regimen="Outlier", stat="mean").item())
    p_pooled = float(
        fits["pooled"].summary().p_cr_typical_site.sel(regimen="Outlier", stat="mean").item()
    )
    # EXNEX stays near the outlier's own data; plain pooling drags it toward the others
    assert abs(p_exnex - raw) < 0.05
    assert raw - p_pooled > 1.5 * (raw - p_exnex), (raw, p_exnex, p_pooled)
    assert (
        "exchangeability_weight" in ds
        and "EXNEX" in ds["exchangeability_weight"].attrs["description"]
    )


def test_exnex_spec_checks():
    spec = sxb.load_spec("exnex")
    assert spec.regimen_pooling == "exnex" and spec.target_accept is None
    assert {"nonexchangeable", "exchangeability"} <= set(spec.required_priors())
    assert sxb.ModelSpec.from_toml(spec.to_toml()) == spec
    with pytest.raises(sxb.SpecError, match="must be Normal under EXNEX"):
        spec.with_overrides(
            {"priors.nonexchangeable": {"dist": "StudentT", "nu": 3, "mu": 0, "sigma": 1.5}}
        )
    with pytest.raises(sxb.SpecError, match="p must lie strictly between 0 and 1"):
        spec.with_overrides({"priors.exchangeability.p": 1.0})
    with pytest.raises(sxb.SpecError, match="is a probability and needs Bernoulli"):
        spec.with_overrides({"priors.exchangeability": {"dist": "Normal", "mu": 0, "sigma": 1}})
    with pytest.raises(sxb.SpecError, match="sampler.target_accept must be a number in"):
        spec.with_overrides({"sampler.target_accept": 1.5})
    with pytest.raises(sxb.SpecError, match=r"unknown key\(s\) in \[sampler\]"):
        spec.with_overrides({"sampler.draws": 10})


def test_spec_target_accept_used_caller_wins_one_regimen_falls_back(example):
    one = sxb.read_counts(
        pd.DataFrame(
            {
                "site": ["A", "B"],
                "regimen": ["R", "R"],
                "severity": ["all", "all"],
                "n": [10, 12],
                "n_cr": [4, 7],
            }
        )
    )
    eff = effective_structure(sxb.load_spec("exnex"), one.cells())
    assert eff.regimen_pooling == "complete" and "exchangeability" not in eff.priors
    spec = sxb.load_spec("exnex").with_overrides({"sampler.target_accept": 0.95})
    settings = {"draws": 200, "tune": 200, "chains": 2, "seed": 1}
    assert quiet_fit(one, spec, **settings).sampler.target_accept == 0.95  # the spec's
    f = quiet_fit(one, spec, **settings, target_accept=0.8)
    assert f.sampler.target_accept == 0.8
    assert "exchangeability_weight" not in f.summary()


def test_exnex_prior_probability_is_data_not_structure(cohort):
    """Changing the prior probability of exchangeability reuses the compiled model and
    moves the weights the right way."""
    spec = sxb.load_spec("exnex")
    settings = {"draws": 500, "tune": 800, "chains": 2, "seed": 4}
    low = quiet_fit(cohort, spec.with_overrides({"priors.exchangeability.p": 0.2}), **settings)
    before = sxb.compile_count()
    high = quiet_fit(cohort, spec.with_overrides({"priors.exchangeability.p": 0.8}), **settings)
    assert sxb.compile_count() == before
    w_low = low.summary()["exchangeability_weight"].drop_sel(regimen="Outlier")
    w_high = high.summary()["exchangeability_weight"].drop_sel(regimen="Outlier")
    assert bool((w_high > w_low).all())


# Three regimens at one site, one severity: the EXNEX posterior is a 2-D integral over
# (intercept, regimen_sd) of per-regimen 1-D integrals, all by Gauss-Hermite.
SMALL = {"A": (12, 3), "B": (10, 8), "C": (8, 2)}  # regimen: (n, CR)


def _small_cohort():
    frame = pd.DataFrame(
        [
            {"site": "S1", "regimen": r, "severity": "all", "n": n, "n_cr": cr}
            for r, (n, cr) in SMALL.items()
        ]
    )
    frame.attrs["synthetic"] = True
    return sxb.read_counts(frame, regimen_order=list(SMALL))


def _exnex_by_quadrature(p: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Posterior means of each regimen's CR probability and P(exchangeable), from the
    mixture-prior form of EXNEX (Neuenschwander et al. 2016), with the shipped
    priors: intercept N(0, 1.5), regimen_sd HalfNormal(0.5), nonexchangeable
    N(0, 1.5)."""
    z, wz = np.polynomial.hermite_e.hermegauss(80)
    wz = wz / wz.sum()  # E over a standard normal
    mu, w_mu = 1.5 * z, wz
    tau = np.linspace(1e-6, 3.0, 1201)
    w_tau = np.exp(-0.5 * (tau / 0.5) ** 2)
    w_tau[[0, -1]] *= 0.5  # trapezoid
    n, y = (np.array(c, dtype=float) for c in zip(*SMALL.values(), strict=True))

    def lik(theta):  # (..., regimen): binomial kernel
        return np.exp(y * theta - n * np.logaddexp(0.0, theta))

    # exchangeable: theta = mu + tau z, over (mu, tau, node, regimen)
    th_ex = mu[:, None, None, None] + tau[None, :, None, None] * z[None, None, :, None]
    l_ex = lik(th_ex)
    ex = np.einsum("abkr,k->abr", l_ex, wz)
    ex_p = np.einsum("abkr,k->abr", l_ex * expit(th_ex), wz)
    th_nex = 1.5 * z[:, None]  # nonexchangeable: N(0, 1.5), over (node, regimen)
    l_nex = lik(th_nex)
    nex, nex_p = np.einsum("kr,k->r", l_nex, wz), np.einsum("kr,k->r", l_nex * expit(th_nex), wz)
    marginal = p * ex + (1 - p) * nex  # (mu, tau, regimen): the regimen's likelihood
    weight = w_mu[:, None] * w_tau[None, :] * marginal.prod(axis=-1)
    weight = weight / weight.sum()
    p_cr = np.einsum("ab,abr->r", weight, (p * ex_p + (1 - p) * nex_p) / marginal)
    p_ex = np.einsum("ab,abr->r", weight, p * ex / marginal)
    return p_cr, p_ex


def test_exnex_posterior_equals_quadrature():
    """The sampled form (both log-odds non-centred, the state summed out of each
    regimen's likelihood and drawn afterwards) is the EXNEX posterior: each
    regimen's CR probability and P(exchangeable) within 4 Monte Carlo SE of the
    mixture-prior model's, computed by quadrature."""
    import arviz as az
    import xarray as xr

    from scleromx_bayes.model import build_model

    cohort = _small_cohort()
    spec = sxb.load_spec("exnex")
    free = {rv.name for rv in build_model(cohort.cells(), spec).free_RVs}
    assert free == {
        "intercept",
        "regimen_sd",
        "regimen_z",
        "nonexchangeable_z",
        "exchangeability_selector",
    }
    fit = quiet_fit(cohort, spec, draws=2000, tune=1000, chains=2, seed=3)
    assert fit.diagnostics.divergences == 0
    post = fit.posterior["posterior"]
    draws = xr.Dataset(
        {"p_cr": expit(post["regimen_logit"]), "weight": post["exchangeability_weight"]}
    )
    means = draws.mean(("chain", "draw"))
    se = draws.std(("chain", "draw")) / np.sqrt(az.ess(draws))
    p_cr, p_ex = _exnex_by_quadrature()
    for name, exact in (("p_cr", p_cr), ("weight", p_ex)):
        gap = np.abs(means[name].values - exact)
        assert (gap < 4 * se[name].values + 1e-3).all(), (name, means[name].values, exact)
    # the draws are the posterior's, not the likelihood's alone: B (8/10) is pulled
    # toward A and C where it is exchangeable, and is the least exchangeable
    assert p_ex[1] < p_ex[0] and p_ex[1] < p_ex[2]


def test_exnex_likelihood_sums_the_state_out_of_each_regimen():
    """The model's likelihood term is sum_r log(p L_r(ex) + (1 - p) L_r(nex)), exactly,
    at a point where the two log-odds differ; the selector does not enter it."""
    from scipy.stats import binom

    from scleromx_bayes.model import build_model

    cells = _small_cohort().cells()
    spec = sxb.load_spec("exnex").with_overrides({"priors.exchangeability.p": 0.3})
    model = build_model(cells, spec)
    like = model.compile_logp(vars=[model["responders"]], jacobian=False, mode=REFERENCE_MODE)
    point = model.initial_point()
    point |= {
        "intercept": np.array(-0.4),
        "regimen_sd_log__": np.log(np.array(0.7)),
        "regimen_z": np.array([0.5, -1.0, 2.0]),
        "nonexchangeable_z": np.array([-0.3, 1.2, 0.1]),
    }
    n, y = (np.array(c) for c in zip(*SMALL.values(), strict=True))
    ex = binom.logpmf(y, n, expit(-0.4 + 0.7 * point["regimen_z"]))
    nex = binom.logpmf(y, n, expit(1.5 * point["nonexchangeable_z"]))
    expected = np.logaddexp(np.log(0.3) + ex, np.log(0.7) + nex).sum()
    assert like(point) == pytest.approx(expected, rel=1e-12)
    for u in (0.01, 0.99):  # the selector changes nothing the likelihood sees
        logit_u = np.log(u / (1 - u)) * np.ones(3)
        assert like(point | {"exchangeability_selector_interval__": logit_u}) == pytest.approx(
            expected, rel=1e-12
        )


def test_exnex_simulates_from_its_prior_and_fits_given_the_data():
    """Built to simulate, each regimen is exchangeable with its prior probability, and
    its log-odds has the mixture prior's variance; built to fit, the weight is each
    draw's P(exchangeable | data), which differs between regimens."""
    import pymc as pm

    from scleromx_bayes.model import build_model

    cells = _small_cohort().cells()
    spec = sxb.load_spec("exnex").with_overrides({"priors.exchangeability.p": 0.3})
    with warnings.catch_warnings():  # the binomial draw runs in numba's object mode
        warnings.simplefilter("ignore", UserWarning)
        prior = pm.sample_prior_predictive(
            draws=20_000, model=build_model(cells, spec, simulate=True), random_seed=5
        )["prior"]
    weight = prior["exchangeability_weight"].values
    assert np.all(weight == 0.3)
    chosen = prior["exchangeability_selector"].values < weight
    assert abs(chosen.mean() - 0.3) < 4 * np.sqrt(0.3 * 0.7 / chosen.size)
    # Var = 0.3 (1.5^2 + E tau^2) + 0.7 * 1.5^2, E tau^2 = 0.5^2 (HalfNormal(0.5))
    theta = prior["regimen_logit"].values.ravel()
    assert np.var(theta) == pytest.approx(0.3 * (2.25 + 0.25) + 0.7 * 2.25, rel=0.05)
    model = build_model(cells, spec)
    w = model.compile_fn(
        model["exchangeability_weight"],
        inputs=model.value_vars,
        on_unused_input="ignore",
        mode=REFERENCE_MODE,
    )
    values = w(model.initial_point() | {"regimen_z": np.array([0.0, 2.0, 0.0])})
    assert len(set(np.round(values, 6))) > 1 and np.all((0 < values) & (values < 1))


def test_ordinal_exnex_likelihood_is_the_regimen_mixture_of_multinomials():
    """The ordinal model under EXNEX: the same mixture, of NR / PR / CR multinomials."""
    from scipy.stats import multinomial

    from scleromx_bayes.model import build_model

    partial = {"A": 4, "B": 1, "C": 2}
    frame = pd.DataFrame(
        [
            {"site": "S1", "regimen": r, "severity": "all", "n": n, "n_cr": cr, "n_pr": partial[r]}
            for r, (n, cr) in SMALL.items()
        ]
    )
    frame.attrs["synthetic"] = True
    cells = sxb.read_counts(frame, regimen_order=list(SMALL)).cells()
    ex = sxb.load_spec("exnex")
    spec = sxb.load_spec("ordinal").with_overrides(
        {
            "structure.regimen_pooling": "exnex",
            **{
                f"priors.{p}": ex.prior(p).to_dict() for p in ("nonexchangeable", "exchangeability")
            },
        },
        name="ordinal_exnex",
    )
    model = build_model(cells, spec)
    like = model.compile_logp(vars=[model["responses"]], jacobian=False, mode=REFERENCE_MODE)
    point = model.initial_point() | {
        "intercept": np.array(-0.4),
        "regimen_z": np.array([0.5, -1.0, 2.0]),
        "nonexchangeable_z": np.array([-0.3, 1.2, 0.1]),
    }
    sd = float(np.exp(point["regimen_sd_log__"]))
    gap = float(np.exp(point["cutpoint_gap_log__"]))

    def probs(logit_cr):
        p_cr, p_any = expit(logit_cr), expit(logit_cr + gap)
        return np.stack([1 - p_any, p_any - p_cr, p_cr], axis=-1)

    n = np.array([c[0] for c in SMALL.values()])
    counts = np.array([[n_ - cr - partial[r], partial[r], cr] for r, (n_, cr) in SMALL.items()])
    ex_ll = multinomial.logpmf(counts, n, probs(-0.4 + sd * point["regimen_z"]))
    nex_ll = multinomial.logpmf(counts, n, probs(1.5 * point["nonexchangeable_z"]))
    expected = np.logaddexp(np.log(0.5) + ex_ll, np.log(0.5) + nex_ll).sum()
    assert like(point) == pytest.approx(expected, rel=1e-10)
