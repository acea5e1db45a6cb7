"""Model building, degenerate designs, exactness, recovery and reproducibility."""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import integrate, stats
from scipy.special import expit

import scleromx_bayes as sxb
from conftest import FAST, REFERENCE_MODE, quiet_fit
from scleromx_bayes.model import Structure, effective_structure, scalar_values


def episodes(rows):
    return sxb.read_cohort(
        pd.DataFrame(rows, columns=["patient_id", "site", "regimen", "severity", "response"])
    )


def test_model_dims_and_data(example):
    cells = example.cells()
    model = sxb.build_model(cells, sxb.load_spec("base"))
    assert list(model.coords["regimen"]) == list(example.regimens)
    assert list(model.coords["severity"]) == ["nonsevere", "severe"]
    names = {v.name for v in model.data_vars}
    assert {"n_evaluable", "n_responders", "model_scalars", "cell_index"} <= names
    # every prior hyper-parameter is one named scalar of the data, with the spec's value
    scalars = scalar_values(cells, sxb.load_spec("base"))
    assert list(scalars) == [
        "prior__intercept__mu",
        "prior__intercept__sigma",
        "prior__regimen_sd__sigma",
        "prior__site_sd__sigma",
        "prior__severity_effect__mu",
        "prior__severity_effect__sigma",
    ]
    stored = model["model_scalars"].get_value()
    np.testing.assert_array_equal(stored, [0.0, 1.5, 1.0, 0.5, 0.0, 1.5])
    free = {v.name for v in model.free_RVs}
    assert free == {"intercept", "regimen_sd", "regimen_z", "severity_shift", "site_sd", "site_z"}


def test_single_level_factors_drop_their_terms():
    cohort = episodes([("p1", "A", "R", "severe", "CR"), ("p2", "A", "R", "severe", "NR")])
    eff = effective_structure(sxb.load_spec("base"), cohort.cells())
    assert eff == Structure(
        regimen_pooling="complete",
        site_effect=False,
        severity_effect=False,
        interaction=False,
        patient_effect=False,
        covariates=(),
        ordinal=False,
        priors=("intercept",),
    )
    model = sxb.build_model(cohort.cells(), sxb.load_spec("base"))
    assert {v.name for v in model.free_RVs} == {"intercept"}


@pytest.mark.parametrize(
    "rows",
    [
        # one site
        [
            ("p1", "A", "R1", "severe", "CR"),
            ("p2", "A", "R2", "nonsevere", "NR"),
            ("p3", "A", "R1", "nonsevere", "NR"),
        ],
        # one severity
        [
            ("p1", "A", "R1", "severe", "CR"),
            ("p2", "B", "R2", "severe", "NR"),
            ("p3", "B", "R1", "severe", "PR"),
        ],
        # one regimen
        [("p1", "A", "R1", "severe", "CR"), ("p2", "B", "R1", "nonsevere", "NR")],
        # a cell whose only episode is not evaluable (n = 0 after exclusion)
        [
            ("p1", "A", "R1", "severe", "CR"),
            ("p2", "B", "R2", "nonsevere", "NE"),
            ("p3", "B", "R1", "nonsevere", "NR"),
        ],
    ],
    ids=["one-site", "one-severity", "one-regimen", "empty-cell"],
)
def test_degenerate_designs_fit_and_summarise(rows):
    cohort = episodes(rows)
    result = quiet_fit(cohort, "base", draws=200, tune=200, chains=2, seed=3)
    ds = result.summary()
    p = ds.p_cr_new_site.sel(stat="mean")
    assert p.shape == (len(cohort.regimens), len(cohort.severities))
    assert np.all((p > 0) & (p < 1))
    assert int(ds.n_evaluable.sum()) == int(cohort.cells().n.sum())


def test_empty_cell_contributes_nothing():
    """A cell with n = 0 leaves the log-posterior unchanged."""
    rows = [
        ("p1", "A", "R1", "severe", "CR"),
        ("p2", "B", "R1", "severe", "NR"),
        ("p3", "B", "R2", "severe", "NR"),
    ]
    cells = episodes(rows).cells()
    spec = sxb.load_spec("base")
    model = sxb.build_model(cells, spec)
    point = model.initial_point()
    logp = model.compile_logp(mode=REFERENCE_MODE)
    zeroed = cells.with_counts(
        np.where(cells.frame.regimen == "R2", 0, cells.n),
        np.where(cells.frame.regimen == "R2", 0, cells.y),
    )
    model0 = sxb.build_model(zeroed, spec)
    drop = sxb.build_model(episodes(rows[:2] + [("p3", "B", "R2", "severe", "NE")]).cells(), spec)
    logp0 = model0.compile_logp(mode=REFERENCE_MODE)(point)
    assert logp0 == pytest.approx(drop.compile_logp(mode=REFERENCE_MODE)(point))
    assert logp0 != pytest.approx(logp(point))


def test_exact_against_numerical_integration():
    """One regimen, one site, one severity, no pooling: p = expit(theta),
    theta ~ Normal(mu, sigma), y ~ Binomial(n, p). The posterior of p is computed
    by 1-D quadrature and compared with the sampler's, within Monte-Carlo error."""
    n, y = 12, 9
    rows = [(f"p{i}", "A", "R", "severe", "CR" if i < y else "NR") for i in range(n)]
    spec = sxb.load_spec("no_pooling").with_overrides(
        {"priors.intercept": {"dist": "Normal", "mu": -0.5, "sigma": 1.2}}
    )
    result = quiet_fit(episodes(rows), spec, draws=2000, tune=1000, chains=4, seed=5)

    def unnorm(theta):
        return stats.norm.pdf(theta, -0.5, 1.2) * stats.binom.pmf(y, n, expit(theta))

    z = integrate.quad(unnorm, -12, 12)[0]
    mean = integrate.quad(lambda t: expit(t) * unnorm(t), -12, 12)[0] / z
    second = integrate.quad(lambda t: expit(t) ** 2 * unnorm(t), -12, 12)[0] / z
    sd = np.sqrt(second - mean**2)
    grid = np.linspace(-8, 8, 40001)
    cdf = np.cumsum(unnorm(grid))
    cdf /= cdf[-1]
    lo, hi = expit(np.interp([0.025, 0.975], cdf, grid))

    draws = expit(result.posterior["posterior"]["regimen_logit"].values.ravel())
    ess = float(az.ess(result.posterior["posterior"].to_dataset()["regimen_logit"]).min())
    mcse = sd / np.sqrt(ess)
    assert abs(draws.mean() - mean) < 4 * mcse
    assert abs(draws.std() - sd) < 0.1 * sd
    assert np.quantile(draws, 0.025) == pytest.approx(lo, abs=0.02)
    assert np.quantile(draws, 0.975) == pytest.approx(hi, abs=0.02)
    summary = result.summary()
    assert float(summary.p_cr_new_site.sel(stat="mean").item()) == pytest.approx(draws.mean())


def test_parameter_recovery_on_a_larger_cohort():
    truth_logit = {"A": -1.0, "B": 0.0, "C": 1.0, "D": 0.5}
    cohort, truth = sxb.simulate_cohort(
        truth_logit,
        {"nonsevere": 0.0, "severe": -1.0},
        site_sd=0.4,
        n_sites=8,
        n_patients=1200,
        seed=42,
        # centred, so the typical site (effect 0) is well defined
        site_effect=[-0.6, -0.35, -0.15, 0, 0, 0.15, 0.35, 0.6],
    )
    result = quiet_fit(cohort, "base", draws=600, tune=600, chains=2, seed=2)
    assert result.diagnostics.divergences == 0
    ds = result.summary()
    typical = ds.p_cr_typical_site
    for reg in truth_logit:
        for sev in ("nonsevere", "severe"):
            s = typical.sel(regimen=reg, severity=sev)
            true = truth.p_cr(reg, sev)
            assert float(s.sel(stat="hdi_lower")) < true < float(s.sel(stat="hdi_upper")), (
                reg,
                sev,
            )
            assert abs(float(s.sel(stat="mean")) - true) < 0.08
    sev = result.posterior["posterior"]["severity_effect"].sel(severity="severe")
    assert abs(float(sev.mean()) - (-1.0)) < 0.3
    # the ordering of regimens is recovered
    means = ds.p_cr_new_site.sel(severity="nonsevere", stat="mean").to_series()
    assert list(means.sort_values().index) == ["A", "B", "D", "C"]


def test_same_seed_same_draws_and_compiled_once(example):
    spec = sxb.load_spec("base")
    quiet_fit(example, spec, draws=10, tune=10, chains=1)  # make sure this layout is compiled
    before = sxb.compile_count()
    a = quiet_fit(example, spec, seed=7, **FAST)
    b = quiet_fit(example, spec.with_overrides({"priors.site_sd.sigma": 0.5}), seed=7, **FAST)
    c = quiet_fit(example, spec, seed=8, **FAST)
    wide = quiet_fit(example, spec.with_overrides({"priors.site_sd.sigma": 2.0}), seed=7, **FAST)
    assert sxb.compile_count() == before  # prior values are data: no new compilation
    # identical draws (the creation timestamp attribute differs, so compare values)
    xr.testing.assert_equal(
        a.posterior["posterior"].to_dataset(), b.posterior["posterior"].to_dataset()
    )
    assert not np.array_equal(
        a.posterior["posterior"]["regimen_logit"].values,
        c.posterior["posterior"]["regimen_logit"].values,
    )
    # a wider site prior must actually reach the model
    assert float(wide.posterior["posterior"]["site_sd"].mean()) > float(
        a.posterior["posterior"]["site_sd"].mean()
    )


def test_pymc_sampler_agrees_with_nutpie(example, base_fit):
    alt = quiet_fit(example, "base", sampler="pymc", seed=11, **FAST)
    a = base_fit.summary().p_cr_new_site.sel(stat="mean")
    b = alt.summary().p_cr_new_site.sel(stat="mean")
    assert float(abs(a - b).max()) < 0.06
    assert alt.sampler.sampler == "pymc"


def test_diagnostics_warn_and_are_recorded(example):
    with pytest.warns(RuntimeWarning, match="sampling diagnostics: .*ESS"):
        result = sxb.fit(example, "base", draws=60, tune=60, chains=2, seed=1)
    assert not result.diagnostics.ok
    attrs = result.summary().attrs
    assert attrs["diagnostics_ok"] == 0 and "ESS" in attrs["diagnostics_problems"]


def test_diagnostics_are_arviz_own_per_variable(example):
    """The diagnostics of every parameter at once give what az.rhat / az.ess give
    variable by variable, to rounding (a short fit, so the extremes are not all
    alike)."""
    from scleromx_bayes.diagnostics import diagnose
    from scleromx_bayes.model import names as v

    fit = quiet_fit(example, "base", draws=60, tune=60, chains=2, seed=3)
    posterior = fit.posterior["posterior"].to_dataset()
    post = posterior[[n for n in v.CONVERGENCE_CHECKED if n in posterior]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        per_variable = {
            "rhat": az.rhat(post),
            "bulk": az.ess(post, method="bulk"),
            "tail": az.ess(post, method="tail"),
        }

    def every(ds):
        vals = np.concatenate([np.ravel(ds[n].values) for n in ds.data_vars])
        return vals[np.isfinite(vals)]

    d = diagnose(fit.posterior)
    assert d.max_rhat == pytest.approx(every(per_variable["rhat"]).max(), rel=1e-12)
    assert d.min_ess_bulk == pytest.approx(every(per_variable["bulk"]).min(), rel=1e-12)
    assert d.min_ess_tail == pytest.approx(every(per_variable["tail"]).min(), rel=1e-12)
    assert d.max_rhat > 1.0 and d.min_ess_bulk < 120


def test_unknown_sampler(example):
    with pytest.raises(ValueError, match="sampler must be 'nutpie' or 'pymc'"):
        sxb.fit(example, "base", sampler="stan")


def test_draws_do_not_depend_on_which_prior_compiled_the_model(example):
    """A compiled model is shared by every prior variant of a layout; the draws of a
    fit must not depend on which variant happened to compile it first."""
    from scleromx_bayes.fit import clear_compiled_cache

    spec = sxb.load_spec("base")
    skeptical = spec.with_overrides({"priors.regimen_sd.sigma": 0.5, "priors.intercept.mu": -1.0})
    clear_compiled_cache()
    first = quiet_fit(example, skeptical, draws=100, tune=100, chains=2, seed=4)
    clear_compiled_cache()
    quiet_fit(example, spec, draws=100, tune=100, chains=2, seed=4)  # compiles with base values
    second = quiet_fit(example, skeptical, draws=100, tune=100, chains=2, seed=4)
    xr.testing.assert_equal(
        first.posterior["posterior"].to_dataset(), second.posterior["posterior"].to_dataset()
    )


@pytest.mark.parametrize("spec_name", ["base", "patient_effect", "ordinal"])
def test_counts_never_ask_for_a_new_compiled_model(example, spec_name):
    """Counts (n, y, partial responses) are data: changing them, as leaving a site out
    or switching the outcome does, must never ask for a new compiled model."""
    from scleromx_bayes.fit import cells_for

    spec = sxb.load_spec(spec_name)
    cells = cells_for(example, spec)
    tiny = sxb.SamplerSettings(draws=10, tune=10, chains=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sxb.fit_cells(cells, spec, settings=tiny)  # compiles, or reuses, this layout
        before = sxb.compile_count()
        keep = (cells.frame["site"] != "Centre A").to_numpy()
        left_out = cells.with_counts(np.where(keep, cells.n, 0), np.where(keep, cells.y, 0))
        assert left_out.frame["n_pr"].sum() < cells.frame["n_pr"].sum()
        sxb.fit_cells(left_out, spec, settings=tiny)
        orr = cells_for(example, spec, sxb.OutcomeDefinition("orr", ne="failure"))
        sxb.fit_cells(orr, spec, settings=tiny)
    assert sxb.compile_count() == before


def test_parameterisation_follows_the_data(example):
    """Well-informed groups get centred effects, sparse ones non-centred; both
    parameterisations target the same posterior."""
    base = sxb.load_spec("base")
    sparse = effective_structure(base, example.cells())  # a handful of episodes a group
    assert not sparse.regimen_centred and not sparse.site_centred
    rich, truth = sxb.simulate_cohort(
        {"A": -0.5, "B": 0.5},
        {"nonsevere": 0.0, "severe": -1.0},
        n_sites=4,
        n_patients=3000,
        site_sd=0.5,
        seed=3,
    )
    eff = effective_structure(base, rich.cells())
    assert eff.regimen_centred and eff.site_centred
    forced = base.with_overrides({"structure.parameterisation": "non_centred"})
    eff = effective_structure(forced, rich.cells())
    assert not eff.regimen_centred and not eff.site_centred
    centred = quiet_fit(rich, base, draws=800, tune=600, chains=2, seed=4)
    non_centred = quiet_fit(rich, forced, draws=800, tune=600, chains=2, seed=4)
    post = centred.posterior["posterior"]
    assert "site_z" not in post and "regimen_z" not in post
    assert "site_z" in non_centred.posterior["posterior"]
    effects = {}
    for name, f in (("centred", centred), ("non_centred", non_centred)):
        u = f.posterior["posterior"].to_dataset()["site_effect"]
        effects[name] = (u.mean(("chain", "draw")), az.mcse(u))
        # every true site effect within 3.5 posterior SD (centred on the overall level)
        sd = u.std(("chain", "draw"))
        true = np.array([truth.site_effect[s] for s in u["site"].values])
        true = true - true.mean()
        est = effects[name][0].values - effects[name][0].values.mean()
        assert (np.abs(est - true) < 3.5 * sd.values + 0.1).all(), (name, est, true)
    (m1, e1), (m2, e2) = effects["centred"], effects["non_centred"]
    assert (np.abs(m1 - m2).values < 4 * np.sqrt(e1.values**2 + e2.values**2) + 1e-3).all()


def test_the_likelihood_is_the_binomial_one_with_its_constant(example):
    """The responders' log-probability (kernel + log C(n, y) passed in as data) is
    scipy's binomial pmf, cell by cell, at any linear predictor; and the prior
    predictive draws responders from that binomial."""
    import pymc as pm

    from scleromx_bayes.model import names as v

    cells = example.cells()
    model = sxb.build_model(cells, sxb.load_spec("base"))
    responders = model[v.RESPONDERS]
    eta = model[v.RESPONDERS].owner.inputs[3]  # (rng, size, n, eta, log C)
    rng = np.random.default_rng(4)
    point = {eta: rng.normal(0.0, 1.5, len(cells.frame))}
    logp = pm.logp(responders, model.rvs_to_values[responders]).eval(
        {model.rvs_to_values[responders]: cells.y, **point}, mode=REFERENCE_MODE
    )
    expected = stats.binom.logpmf(cells.y, cells.n, expit(point[eta]))
    np.testing.assert_allclose(logp, expected, rtol=1e-12, atol=1e-12)

    with model, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the binomial draws run in object mode
        prior = pm.sample_prior_predictive(draws=400, random_seed=2)
    draws = prior["prior_predictive"][v.RESPONDERS].values.astype(float)
    p = np.exp(prior["prior"][v.CATEGORY_LOG_PROB].values[..., 1])  # each draw's p per cell
    n = np.broadcast_to(cells.n, draws.shape)
    keep = (n > 0) & (p > 1e-6) & (p < 1 - 1e-6)
    z = (draws - n * p)[keep] / np.sqrt(n * p * (1 - p))[keep]
    # binomial given each draw's p: standardised residuals of mean 0 and variance 1
    assert abs(z.mean()) < 4 / np.sqrt(z.size)
    assert 0.9 < z.var() < 1.1
    assert (draws <= n).all() and (draws >= 0).all()


@pytest.mark.parametrize(
    ("name", "shared"),
    [("base", False), ("base", True), ("interaction", False), ("interaction", True)],
)
def test_cell_log_odds_are_the_stored_terms_added_cell_by_cell(name, shared):
    """The likelihood's log-odds of each cell are the stored typical_logit at its
    regimen and severity plus its site's effect, bit for bit, at any parameter values:
    the likelihood gathers each term per cell, the summaries read the matrix, and the
    two must not drift apart (severity switched on and off in the shared graph)."""
    import pytensor

    from scleromx_bayes.model import names as v

    # three severities: each non-reference level reads its own shift and departure
    cohort, _ = sxb.simulate_cohort(
        {"A": -1.0, "B": 0.0, "C": 0.5},
        {"mild": 0.0, "moderate": 0.5, "severe": 1.0},
        n_sites=4,
        n_patients=90,
        seed=5,
    )
    cells = cohort.cells()
    assert len(cells.severities) == 3
    spec = sxb.load_spec(name)
    model = sxb.build_model(cells, spec, shared=shared)
    eta = model[v.RESPONDERS].owner.inputs[3]  # (rng, size, n, eta, log C)
    outputs = [eta, model[v.TYPICAL_LOGIT], model[v.SITE_EFFECT]]
    function = pytensor.function(
        model.value_vars, model.replace_rvs_by_values(outputs), mode=REFERENCE_MODE
    )
    regimen, severity, site = (cells.index(f) for f in ("regimen", "severity", "site"))
    rng = np.random.default_rng(11)
    initial = model.initial_point()
    switches = [1.0, 0.0] if shared else [None]
    for switch in switches:
        if switch is not None:
            names = list(scalar_values(cells, spec, shared=True))
            scalars = model["model_scalars"].get_value().copy()
            scalars[names.index("switch__severity_effect")] = switch
            model["model_scalars"].set_value(scalars)
        for _ in range(3):
            point = [rng.normal(0.0, 1.5, np.shape(initial[x.name])) for x in model.value_vars]
            cell_eta, typical, site_effect = function(*point)
            np.testing.assert_array_equal(cell_eta, typical[regimen, severity] + site_effect[site])
            if switch == 0.0 and name == "base":  # no severity term: columns alike
                np.testing.assert_array_equal(typical, typical[:, :1] + 0 * typical)
