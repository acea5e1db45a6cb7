"""The shared graph: one compiled model for every structure, prior and cohort of one
shape, whose switched-off terms leave the spec's own posterior exactly as it is."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import scleromx_bayes as sxb
from conftest import REFERENCE_MODE
from scleromx_bayes import native
from scleromx_bayes.fit import cells_for, clear_compiled_cache
from scleromx_bayes.model import build_model, shared_graph
from scleromx_bayes.sensitivity import load_grid
from scleromx_bayes.sensitivity.plan import resolve
from scleromx_bayes.simulate import simulate_cohort

BASE = sxb.load_spec("base")
# every pooling / term switch, and a prior family the no-pooling form must keep
SWITCHED = {
    "base": BASE,
    "no pooling": sxb.load_spec("no_pooling"),
    "no pooling, Student-t prior": sxb.load_spec("no_pooling").with_overrides(
        {"priors.intercept": {"dist": "StudentT", "nu": 3.0, "mu": -0.5, "sigma": 1.2}}
    ),
    "complete pooling": sxb.load_spec("complete_pooling"),
    "no site effect": BASE.with_overrides({"structure.site_effect": False}),
    "no severity effect": BASE.with_overrides({"structure.severity_effect": False}),
    "skeptical": BASE.with_overrides({"priors.regimen_sd.sigma": 0.25, "priors.intercept.mu": -1}),
}
# other graphs, whose own switches (site, severity) are data too
OTHERS = {
    "exnex": sxb.load_spec("exnex"),
    "interaction": sxb.load_spec("interaction"),
    "ordinal": sxb.load_spec("ordinal"),
    "exnex without severity": sxb.load_spec("exnex").with_overrides(
        {"structure.severity_effect": False}
    ),
}


def _random_point(model, rng, names):
    """Random values (on the sampler's unconstrained scale) for ``names``' value variables."""
    point = model.initial_point()
    return {k: rng.normal(size=np.shape(x)) if k in names else x for k, x in point.items()}


@pytest.mark.parametrize("name", [*SWITCHED, *OTHERS])
def test_the_shared_graph_has_the_spec_s_own_log_density(example, name):
    """Exact, no sampling: at random points, the shared graph's log-density over the
    spec's own variables and the data equals the spec's own model's, whatever values
    the switched-off terms' stand-in variables take."""
    spec = {**SWITCHED, **OTHERS}[name]
    outcome = sxb.OutcomeDefinition("orr") if spec.response_scale == "ordinal" else None
    cells = cells_for(example, spec, outcome)
    own = build_model(cells, spec)
    shared = build_model(cells, spec, shared=True)
    own_values = {model_var.name for model_var in own.value_vars}
    extra = {x.name for x in shared.value_vars} - own_values
    own_logp = own.compile_logp(mode=REFERENCE_MODE)  # a few evaluations
    shared_rvs = [shared[own.values_to_rvs[x].name] for x in own.value_vars]
    shared_logp = shared.compile_logp(vars=shared_rvs + shared.observed_RVs, mode=REFERENCE_MODE)
    rng = np.random.default_rng(7)
    for _ in range(5):
        point = _random_point(own, rng, own_values)
        values = []
        for _ in range(3):  # the stand-ins' values must not matter
            wide = _random_point(shared, rng, extra)
            wide.update({k: point[k] for k in own_values})
            values.append(float(shared_logp(wide)))
        assert np.isfinite(own_logp(point))
        np.testing.assert_allclose(values, float(own_logp(point)), rtol=1e-12, atol=1e-9)


def test_pooling_site_severity_and_priors_share_one_graph(example):
    cells = example.cells()
    t_prior = "no pooling, Student-t prior"
    graphs = {shared_graph(cells, spec) for name, spec in SWITCHED.items() if name != t_prior}
    assert len(graphs) == 1
    # a prior family is part of the graph (a family switch compiled 5x slower)
    vague = BASE.with_overrides({"priors.regimen_sd": {"dist": "HalfCauchy", "beta": 2.5}})
    assert shared_graph(cells, vague) not in graphs
    assert shared_graph(cells, SWITCHED[t_prior]) not in graphs
    assert shared_graph(cells, sxb.load_spec("exnex")) not in graphs


def test_default_grid_needs_two_compiled_models(example):
    """Every scenario of the default grid on the example runs on one of two compiled
    models: the base graph and its HalfCauchy ("vague" prior) twin (six before)."""
    grid = load_grid("default")
    scenarios = grid.expand(example)
    graphs = {}
    for scenario in scenarios:
        inputs = resolve(example, grid, scenario)
        graphs.setdefault(shared_graph(inputs.cells, inputs.spec), []).append(scenario.name)
    assert len(scenarios) >= 24
    assert len(graphs) == 2, graphs
    assert sorted(map(len, graphs.values())) == [1, len(scenarios) - 1]


def _other_cohort(example) -> sxb.Cohort:
    """Another cohort of the same shape (regimens, sites, severities): responses
    shuffled, a few episodes dropped, so its cells and counts differ."""
    table = example.table.drop(columns=["line"], errors="ignore")
    rng = np.random.default_rng(3)
    table = table.assign(response=rng.permutation(table["response"].to_numpy()))
    frame = pd.DataFrame(table).iloc[3:].reset_index(drop=True)
    cohort = sxb.read_cohort(frame)
    for factor in ("regimens", "sites", "severities"):
        assert sorted(getattr(cohort, factor)) == sorted(getattr(example, factor))
    assert len(cohort.cells().frame) != len(example.cells().frame) or not np.array_equal(
        cohort.cells().y, example.cells().y
    )
    return cohort


def _draws(cohort, spec):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fit = sxb.fit(cohort, spec, draws=60, tune=60, chains=1, seed=9)
    return fit


def test_draws_do_not_depend_on_what_compiled_the_graph(example):
    """A fit reusing a graph compiled for another structure or cohort gives the same
    draws, bit for bit, as a fit that compiled it itself; and keeps only its own
    model's variables."""
    other = _other_cohort(example)
    no_pooling = sxb.load_spec("no_pooling")
    clear_compiled_cache()
    fresh_cohort = _draws(other, BASE).posterior["posterior"].to_dataset()
    clear_compiled_cache()
    fresh_structure = _draws(example, no_pooling)
    clear_compiled_cache()
    before = sxb.compile_count()
    _draws(example, BASE)  # compiles the graph
    reused_cohort = _draws(other, BASE).posterior["posterior"].to_dataset()
    reused_structure = _draws(example, no_pooling)
    assert sxb.compile_count() == before + 1
    assert not reused_structure.timing.compiled_now
    xr.testing.assert_equal(fresh_cohort, reused_cohort)
    xr.testing.assert_equal(
        fresh_structure.posterior["posterior"].to_dataset(),
        reused_structure.posterior["posterior"].to_dataset(),
    )
    # labels come from the cohort fitted, not the one that compiled the graph
    assert list(reused_cohort["regimen"].values) == list(other.regimens)
    assert list(other.regimens) != list(example.regimens)


def _sized(n_regimens: int, n_sites: int, n_patients: int) -> sxb.Cohort:
    cohort, _ = simulate_cohort(
        {f"regimen {i}": -0.5 + 0.3 * i for i in range(n_regimens)},
        {"mild": 0.0, "moderate": -0.4, "severe": -0.8},
        n_sites=n_sites,
        n_patients=n_patients,
        seed=n_regimens,
    )
    return cohort


def test_cohorts_of_every_size_share_one_compiled_code():
    """The compiled code depends on the structure, not on the numbers of regimens,
    sites or cells: a cohort twice the size fits without compiling nutpie's
    callbacks, and every graph family's code is keyed the same at both sizes."""
    small, large = _sized(3, 4, 90), _sized(6, 11, 400)
    assert len(large.regimens) != len(small.regimens) and len(large.sites) != len(small.sites)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sxb.fit(small, BASE, draws=60, tune=60, chains=1, seed=9)
        before = native.native_cache_stats()
        fit = sxb.fit(large, BASE, draws=60, tune=60, chains=1, seed=9)
    after = native.native_cache_stats()
    # nothing compiled, nothing loaded; the larger cohort's graphs were recognised
    # before rewriting (PyTensor compiled nothing for them either)
    assert after == {**before, "graphs_reused": before["graphs_reused"] + 1}
    assert fit.posterior["posterior"]["regimen_logit"].sizes["regimen"] == 6
    assert fit.posterior["posterior"]["site_z"].sizes["site"] == 11
    # the graphs whose sizes once were Python numbers (EXNEX's per-regimen sums, the
    # interaction's reference column)
    for name in ("exnex", "interaction"):
        spec = OTHERS[name]
        keys = []
        for cohort in (small, large):
            model = build_model(cohort.cells(), spec, shared=True)
            logp = native._compile_graphs(model, native._graphs(model))
            keys.append(native._graph_key(logp))
        assert keys[0] is not None and keys[0] == keys[1], name


def test_a_fit_keeps_only_its_own_model_s_variables(example):
    fits = {
        "no pooling": (sxb.load_spec("no_pooling"), {"intercept", "regimen_sd"}),
        "complete pooling": (sxb.load_spec("complete_pooling"), {"regimen_z", "regimen_sd"}),
        "no site effect": (SWITCHED["no site effect"], {"site_sd", "site_z", "site_effect"}),
        "no severity": (SWITCHED["no severity effect"], {"severity_shift", "severity_effect"}),
    }
    for label, (spec, absent) in fits.items():
        fit = _draws(example, spec)
        stored = set(fit.posterior["posterior"].data_vars)
        model = build_model(fit.cells, spec)
        own = {var.name for var in [*model.free_RVs, *model.deterministics]}
        own -= {"category_log_prob"}
        assert stored == own, label
        assert not stored & absent, label
