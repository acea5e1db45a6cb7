"""The reweighting fast path: scenarios answered from the baseline's draws by PSIS
agree with their exact refits within Monte Carlo error; k-hat sends the others to
an exact refit; the Dataset says which was which."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest
import xarray as xr
from pymc.model.transform.conditioning import remove_value_transforms
from scipy import stats

from conftest import REFERENCE_MODE, ScenarioExecutor
from scleromx_bayes.model import build_model
from scleromx_bayes.sensitivity import Grid, GridError, load_grid, run_sensitivity
from scleromx_bayes.sensitivity import reweight as reweight_module
from scleromx_bayes.sensitivity import run as run_module
from scleromx_bayes.sensitivity.plan import resolve
from scleromx_bayes.sensitivity.reweight import LogDensity, _signature, resample, reweight
from scleromx_bayes.summary import posterior_probabilities, summarise

RUN = {"draws": 1000, "tune": 500, "chains": 2, "seed": 5, "ess_min": 100, "rhat_max": 1.05}
AXES = {
    # reweightable: only data or prior values differ from the baseline. On the
    # example (4 x 1000 draws) their k-hat is about -1.9, 0.3 and -0.4.
    "site_sd": [0.5, 0.25],
    "leave_out_site": ["none", "Centre F"],
    "ne_policy": ["exclude", "failure"],
    # CR+PR instead of CR: a posterior far from the baseline's, k-hat about 1.7
    "outcome": ["cr", "orr"],
    # another parameter space: never reweighted
    "model": ["base", "no_pooling"],
}
REWEIGHTABLE = ["site_sd=0.25", "leave_out_site=Centre F", "ne_policy=failure"]


@pytest.fixture(scope="module")
def both(example):
    grid = Grid.one_at_a_time(AXES, name="reweight", **RUN)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fast = run_sensitivity(example, grid, reweight=True)
        exact = run_sensitivity(example, grid)
    return fast, exact


def test_the_dataset_records_what_was_reweighted(both):
    fast, exact = both
    reweighted = fast["reweighted"].to_series()
    assert sorted(reweighted[reweighted == 1].index) == sorted(REWEIGHTABLE)
    assert fast.attrs["n_reweighted"] == len(REWEIGHTABLE)
    assert "PSIS" in fast.attrs["reweighting"] and exact.attrs["reweighting"] == "none"
    k = fast["pareto_k"]
    assert (k.sel(scenario=REWEIGHTABLE) <= 0.7).all()
    # tried and refused: refitted exactly, its k-hat kept
    assert float(k.sel(scenario="outcome=orr")) > 0.7
    ess = fast["importance_ess"]
    assert (ess.sel(scenario=REWEIGHTABLE) > 100).all()
    assert np.isnan(ess.sel(scenario="model=no_pooling"))
    # other parameters (and the baseline itself): not tried
    assert np.isnan(k.sel(scenario=["baseline", "model=no_pooling"])).all()
    assert (exact["reweighted"] == 0).all() and np.isnan(exact["pareto_k"]).all()
    assert (fast["status"] == "ok").all(), fast["reason"].values


def test_refused_and_untried_scenarios_are_the_exact_fits(both):
    fast, exact = both
    for name in ["baseline", "outcome=orr", "model=no_pooling"]:
        np.testing.assert_array_equal(
            fast["p_cr_new_site"].sel(scenario=name), exact["p_cr_new_site"].sel(scenario=name)
        )


def test_exact_refits_run_on_the_executor_other_parameters_first(example, both, monkeypatch):
    """The baseline is fitted in the caller's thread and the reweighting is done
    there; the executor refits the rest: a scenario with other parameters from the
    start (before the baseline's fit begins), one whose k-hat is too high once it has
    been tried. Their results are the exact run's, to the bit."""
    fast, exact = both
    grid = Grid.one_at_a_time(
        {"outcome": ["cr", "orr"], "model": ["base", "no_pooling"], "site_sd": [0.5, 0.25]},
        name="reweight",
        **RUN,
    )
    pool = ScenarioExecutor()
    fitted_here = []  # each fit in this thread, with what had been submitted by then
    fit_scenario = run_module._fit

    def recorded(inputs, *args):
        if threading.current_thread() is threading.main_thread():
            fitted_here.append((inputs.scenario.name, list(pool.submitted)))
        return fit_scenario(inputs, *args)

    monkeypatch.setattr(run_module, "_fit", recorded)
    with warnings.catch_warnings(), pool:
        warnings.simplefilter("ignore", RuntimeWarning)
        run = run_sensitivity(example, grid, reweight=True, executor=pool)
    assert fitted_here == [("baseline", ["model=no_pooling"])]
    assert pool.submitted == ["model=no_pooling", "outcome=orr"]
    assert run["reweighted"].to_series().to_dict() == {
        "baseline": 0,
        "outcome=orr": 0,
        "model=no_pooling": 0,
        "site_sd=0.25": 1,
    }
    for name in ["baseline", "outcome=orr", "model=no_pooling", "site_sd=0.25"]:
        np.testing.assert_array_equal(
            run["p_cr_new_site"].sel(scenario=name), fast["p_cr_new_site"].sel(scenario=name)
        )
    np.testing.assert_array_equal(
        run["p_cr_new_site"].sel(scenario="model=no_pooling"),
        exact["p_cr_new_site"].sel(scenario="model=no_pooling"),
    )


def _assert_agrees(fast, exact, name):
    """The reweighted scenario ``name`` agrees with its exact refit within Monte Carlo
    error: each side's standard error is sd / sqrt(ESS), with the exact fit's smallest
    bulk ESS and, for the reweighted one, the importance ESS scaled by the baseline's
    draws' efficiency."""
    base_efficiency = float(fast["min_ess_bulk"].sel(scenario="baseline")) / (
        RUN["draws"] * RUN["chains"]
    )
    rw = fast.sel(scenario=name)
    ex = exact.sel(scenario=name)
    assert int(rw["reweighted"]) == 1 and int(ex["reweighted"]) == 0
    ess_rw = float(rw["importance_ess"]) * min(1.0, base_efficiency)
    ess_ex = float(ex["min_ess_bulk"])
    for var in ["p_cr_new_site", "p_cr_typical_site"]:
        mean_rw = rw[var].sel(stat="mean")
        mean_ex = ex[var].sel(stat="mean")
        sd = np.maximum(rw[var].sel(stat="sd"), ex[var].sel(stat="sd"))
        se = sd * np.sqrt(1 / ess_rw + 1 / ess_ex)
        gap = np.abs(mean_rw - mean_ex)
        assert (gap <= 4 * se).all(), (name, var, (gap / se).max().item())


def test_every_reweighted_scenario_agrees_with_its_exact_refit(both):
    fast, exact = both
    for name in REWEIGHTABLE:
        _assert_agrees(fast, exact, name)
    # and the answer moved where the data say: not just the baseline again
    assert not np.allclose(
        fast["p_cr_new_site"].sel(scenario="leave_out_site=Centre F", stat="mean"),
        fast["p_cr_new_site"].sel(scenario="baseline", stat="mean"),
        atol=1e-4,
    )


def test_a_scenario_with_another_prior_family_is_reweighted_and_agrees(example):
    """A baseline with a heavy-tailed regimen SD (HalfCauchy(2.5), the vague preset's
    family: a graph the suite compiles anyway) answers the HalfNormal(1) scenario: the
    same parameters on the same support, so its draws are weighted by the two graphs'
    densities (k-hat about -1.4 to -1.8 over seeds: the scenario's prior has the
    lighter tail, the weights are bounded) and agree with the exact refit of the
    HalfNormal model."""
    heavy = {"priors.regimen_sd": {"dist": "HalfCauchy", "beta": 2.5}}
    grid = Grid.one_at_a_time(
        {"regimen_prior": ["heavy", "baseline"]}, name="family", presets={"heavy": heavy}, **RUN
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fast = run_sensitivity(example, grid, reweight=True)
        exact = run_sensitivity(example, grid)
    name = "regimen_prior=baseline"
    assert float(fast["pareto_k"].sel(scenario=name)) <= 0.0
    _assert_agrees(fast, exact, name)
    # the baseline itself is fitted, as in the exact run; the reweighted scenario's
    # answer is its own, not the baseline's again
    p = fast["p_cr_new_site"]
    np.testing.assert_array_equal(
        p.sel(scenario="baseline"), exact["p_cr_new_site"].sel(scenario="baseline")
    )
    assert not np.allclose(
        p.sel(scenario=name, stat="mean"), p.sel(scenario="baseline", stat="mean"), atol=1e-4
    )
    assert fast.attrs["n_reweighted"] == 1


def test_k_hat_max_is_checked(example):
    grid = Grid.one_at_a_time({"site_sd": [0.5, 1.0]}, name="g", **RUN)
    with pytest.raises(GridError, match="k_hat_max"):
        run_sensitivity(example, grid, reweight=True, k_hat_max=1.5)


def test_a_stricter_k_hat_sends_scenarios_to_an_exact_refit(example, both):
    """Leaving centre F out moves the posterior enough for k-hat near 0.3: under a
    0.05 bound it is refitted, and its result is then the exact fit's."""
    fast, exact = both
    name = "leave_out_site=Centre F"
    assert float(fast["pareto_k"].sel(scenario=name)) > 0.1
    grid = Grid.one_at_a_time({"leave_out_site": ["none", "Centre F"]}, name="reweight", **RUN)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        strict = run_sensitivity(example, grid, reweight=True, k_hat_max=0.05)
    assert int(strict["reweighted"].sum()) == 0
    assert float(strict["pareto_k"].sel(scenario=name)) > 0.05
    np.testing.assert_array_equal(
        strict["p_cr_new_site"].sel(scenario=name), exact["p_cr_new_site"].sel(scenario=name)
    )


def test_exnex_scenarios_are_refitted_not_reweighted(example):
    """EXNEX draws each regimen's state given the data (model.exnex), so a baseline's
    regimen log-odds belong to its own data: its scenarios are refitted exactly even
    when only a prior value differs."""
    grid = Grid.one_at_a_time(
        {"model": ["exnex"], "site_sd": [0.5, 0.25]},
        name="exnex",
        draws=300,
        tune=300,
        chains=2,
        seed=5,
        ess_min=100,
        rhat_max=1.05,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fast = run_sensitivity(example, grid, reweight=True)
    assert list(fast.scenario.values) == ["baseline", "site_sd=0.25"]
    assert (fast["reweighted"] == 0).all() and np.isnan(fast["pareto_k"]).all()
    assert (fast["status"] == "ok").all(), fast["reason"].values


def test_each_scenario_s_parameters_are_its_own_model_s_built_once_a_structure(example, base_fit):
    """why_not compares a scenario's free parameters with the baseline's; they are
    built once per structure, prior families and sizes, and must be exactly what
    the scenario's own model has, whatever the axis changed."""
    density = LogDensity(base_fit)
    more = Grid.one_at_a_time(
        {
            "model": ["base", "exnex", "interaction", "complete_pooling"],
            "regimen_prior": ["baseline", "vague"],
            "site_effect": ["random", "none"],
            "severity_adjustment": ["adjusted", "unadjusted"],
            "drop_regimen": ["none", "DNS rescue"],
            "min_site_patients": [0, 4],
        }
    )
    inputs = [
        resolve(example, grid, scenario)
        for grid in (load_grid("default"), more)
        for scenario in grid.expand(example)
    ]
    built = []
    for scenario in inputs:
        own = _signature(build_model(scenario.cells, scenario.spec))
        assert density.parameters.signature(scenario) == own, scenario.spec.name
        built.append(own)
    distinct = {repr(b) for b in built}
    assert len(distinct) >= 6  # the axes above do change the parameters
    assert len(density.parameters._signatures) < len(inputs)  # and most scenarios share them
    reasons = {density.parameters.why_not(x) for x in inputs}
    assert "" in reasons
    assert "other parameters than the baseline (model structure or support of a prior)" in reasons


def test_a_prior_family_change_is_weighted_by_the_two_families_densities(example, base_fit):
    """The vague preset swaps the regimen SD's HalfNormal(1) for a HalfCauchy(2.5) and
    widens the intercept: the same parameters, so its log density at the baseline's
    draws differs from the baseline's by exactly the two priors' log ratios (scipy's
    densities here), through its own compiled graph. A BUGS-style precision prior
    samples another parameter, so it is never reweighted."""
    density = LogDensity(base_fit)
    grid = load_grid("default")
    (vague,) = [resolve(example, grid, s) for s in grid.expand(example) if s.name.endswith("vague")]
    assert density.parameters.why_not(vague) == ""
    log_ratio = density.at_draws(vague) - density.at_draws()
    posterior = base_fit.posterior["posterior"]
    sd = posterior["regimen_sd"].transpose("chain", "draw").values
    intercept = posterior["intercept"].transpose("chain", "draw").values
    expected = (
        stats.halfcauchy(scale=2.5).logpdf(sd)
        - stats.halfnorm(scale=1.0).logpdf(sd)
        + stats.norm(0.0, 2.5).logpdf(intercept)
        - stats.norm(0.0, 1.5).logpdf(intercept)
    )
    # the same up to PyMC's and scipy's normalising constants' last digits
    np.testing.assert_allclose(log_ratio, expected, rtol=0, atol=1e-8)
    assert np.ptp(expected) > 0.5  # the draws do tell the two priors apart
    precision = Grid.one_at_a_time(
        {"regimen_prior": ["baseline", "bugs"]},
        name="g",
        presets={
            "bugs": {"priors.regimen_sd": {"dist": "GammaPrecision", "alpha": 1.0, "beta": 1.0}}
        },
    )
    (bugs,) = [resolve(example, precision, s) for s in precision.expand(example)][1:]
    assert density.parameters.why_not(bugs).startswith("other parameters than the baseline")


def test_log_density_at_draws_is_each_scenario_s_own_model_s(example, base_fit, monkeypatch):
    """at_draws evaluates the log density's graph vectorised over draws, a block of
    draws per call: at each draw it is the scenario's own model's log density (PyMC's
    compile_logp, one draw at a time, with that scenario's data, not the last set),
    and blocks of any size give the same numbers."""
    density = LogDensity(base_fit)
    grid = load_grid("default")
    scenarios = [
        resolve(example, grid, s)
        for s in grid.expand(example)
        if s.name in ("site_sd=0.25", "leave_out_site=Centre F", "ne_policy=failure")
    ]
    assert len(scenarios) == 3
    posterior = base_fit.posterior["posterior"]
    at_draws = [density.at_draws(x) for x in [None, *scenarios]]
    for x, got in zip([None, *scenarios], at_draws, strict=True):
        assert got.shape == (2, 400) and np.isfinite(got).all()
        cells, spec = (base_fit.cells, base_fit.spec) if x is None else (x.cells, x.spec)
        own = remove_value_transforms(build_model(cells, spec))
        log_density = own.compile_logp(jacobian=False, mode=REFERENCE_MODE)
        for chain, draw in [(0, 0), (0, 123), (1, 399)]:
            point = {
                rv.name: posterior[rv.name].isel(chain=chain, draw=draw).values
                for rv in own.free_RVs
            }
            assert got[chain, draw] == pytest.approx(float(log_density(point)), rel=1e-13)
    # every scenario's data reach the code: each density differs from the baseline's
    assert all(not np.allclose(d, at_draws[0]) for d in at_draws[1:])
    monkeypatch.setattr(reweight_module, "DRAWS_PER_CALL", 7)  # 800 draws: 115 blocks
    for x, got in zip([None, *scenarios], at_draws, strict=True):
        np.testing.assert_array_equal(density.at_draws(x), got)


def test_a_reweighted_scenario_s_probabilities_are_the_baseline_s_resampled(example, base_fit):
    """run_sensitivity summarises a reweighted scenario from the baseline's CR
    probabilities resampled by the same index as its draws (the quadrature is done
    once): the same numbers, to the bit, as computing them from the resampled draws."""
    density = LogDensity(base_fit)
    grid = load_grid("default")
    (scenario,) = [
        resolve(example, grid, s) for s in grid.expand(example) if s.name == "site_sd=0.25"
    ]
    answer = reweight(density, density.at_draws(), scenario, seed=3)
    assert answer.trusted and answer.index.shape == (2 * 400,)
    assert len(np.unique(answer.index)) < answer.index.size  # resampled, not the same draws
    own = posterior_probabilities(answer.fit)
    resampled = {k: resample(p, answer.index) for k, p in posterior_probabilities(base_fit).items()}
    assert own.keys() == resampled.keys()
    for name, p in own.items():
        xr.testing.assert_identical(resampled[name], p)
    xr.testing.assert_equal(summarise(answer.fit, probabilities=resampled), summarise(answer.fit))
