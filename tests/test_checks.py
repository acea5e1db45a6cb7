"""Predictive checks and LOO comparison."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.special import gammaln

import scleromx_bayes as sxb
from conftest import FAST, quiet_fit
from scleromx_bayes.checks import (
    compare,
    pointwise_log_likelihood,
    posterior_predictive_check,
    prior_predictive_check,
)
from scleromx_bayes.plots import predictive_plot


@pytest.fixture(scope="module")
def pooling_fits(example, base_fit):
    return {"base": base_fit, "no_pooling": quiet_fit(example, "no_pooling", seed=11, **FAST)}


def test_episode_and_cell_log_likelihoods_agree(base_fit):
    """Per draw, the episodes' Bernoulli terms add up to the cells' binomial terms
    less the binomial coefficients: an exact identity."""
    cells = base_fit.cells
    by_cell = pointwise_log_likelihood(base_fit, "cell")
    by_episode = pointwise_log_likelihood(base_fit, "episode")
    assert by_cell.sizes["observation"] == int((cells.n > 0).sum())
    assert by_episode.sizes["observation"] == int(cells.n.sum())
    assert int(by_episode["response"].sum()) == int(cells.y.sum())
    log_choose = gammaln(cells.n + 1) - gammaln(cells.y + 1) - gammaln(cells.n - cells.y + 1)
    np.testing.assert_allclose(
        by_cell.sum("observation"), by_episode.sum("observation") + log_choose.sum(), rtol=1e-10
    )
    with pytest.raises(ValueError, match="level must be 'episode' or 'cell'"):
        pointwise_log_likelihood(base_fit, "patient")


@pytest.mark.parametrize("level,n_obs", [("episode", 46), ("cell", 31)])
def test_compare_table(pooling_fits, level, n_obs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # no_pooling: one high k, tested below
        table = compare(pooling_fits, level)
    assert set(table.index) == {"base", "no_pooling"}
    assert {"elpd", "elpd_diff", "se", "weight", "n_high_pareto_k"} <= set(table.columns)
    assert (table["n_obs"] == n_obs).all() and (table["level"] == level).all()
    # best model first, at 0; the others below it
    assert table["elpd_diff"].iloc[0] == 0.0 and (table["elpd_diff"] <= 0).all()
    assert table["elpd"].iloc[0] == table["elpd"].max()
    assert np.isfinite(table["elpd"]).all()


def test_compare_refuses_different_data(example, base_fit):
    orr = quiet_fit(example, "base", outcome=sxb.OutcomeDefinition("orr"), seed=11, **FAST)
    with pytest.raises(ValueError, match="not of the same data and outcome"):
        compare({"cr": base_fit, "orr": orr})
    with pytest.raises(ValueError, match="at least two fits"):
        compare({"cr": base_fit})


def test_compare_warns_about_influential_observations():
    """No pooling, a regimen seen once: leaving its single episode out changes that
    regimen's posterior entirely, and PSIS says so with a high Pareto k."""
    rows = [
        (f"p{i}", "A" if i % 2 else "B", "R1", "severe", "CR" if i % 3 else "NR") for i in range(24)
    ] + [("q1", "A", "R2", "severe", "CR"), ("q2", "B", "R3", "severe", "NR")]
    cohort = sxb.read_cohort(
        pd.DataFrame(rows, columns=["patient_id", "site", "regimen", "severity", "response"])
    )
    spec = sxb.load_spec("no_pooling").with_overrides({"priors.intercept.sigma": 5.0})
    fits = {
        "wide": quiet_fit(cohort, spec, seed=1, **FAST),
        "base": quiet_fit(cohort, "base", seed=1, **FAST),
    }
    with pytest.warns(RuntimeWarning, match=r"Pareto k > 0.7 for some episodes of: .*wide"):
        table = compare(fits, "episode")
    assert table.loc["wide", "n_high_pareto_k"] >= 1


def test_posterior_predictive_check(base_fit, tmp_path):
    ppc = posterior_predictive_check(base_fit, seed=1)
    n = base_fit.summary()["n_evaluable"].sum("site")
    np.testing.assert_array_equal(ppc["n_evaluable"], n)
    has_data = ppc["n_evaluable"] > 0
    assert bool((ppc["predicted_lower"] <= ppc["predicted_mean"]).all())
    assert bool((ppc["predicted_upper"] <= ppc["n_evaluable"]).all())
    p = ppc["predictive_p_value"].values[has_data.values]
    assert ((p >= 0) & (p <= 1)).all()
    assert bool(ppc["predictive_p_value"].where(~has_data).isnull().all())
    assert ppc.attrs["synthetic"] == 1
    path = predictive_plot(ppc, tmp_path / "ppc.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_posterior_predictive_check_flags_a_misfit():
    """Complete pooling forced on two regimens at 1/20 and 19/20: neither count is
    reproduced, and the predictive p-values say so."""
    counts = pd.DataFrame(
        {
            "site": ["A", "A"],
            "regimen": ["good", "bad"],
            "severity": ["all", "all"],
            "n": [20, 20],
            "n_cr": [19, 1],
        }
    )
    cohort = sxb.read_counts(counts)
    pooled = quiet_fit(cohort, "complete_pooling", seed=1, **FAST)
    ppc = posterior_predictive_check(pooled, seed=1)
    assert float(ppc["predictive_p_value"].max()) < 0.01
    separate = quiet_fit(cohort, "no_pooling", seed=1, **FAST)
    assert float(posterior_predictive_check(separate, seed=1)["predictive_p_value"].min()) > 0.2


def test_prior_predictive_check(example):
    cells = example.cells()
    pp = prior_predictive_check(cells, "base", draws=500, seed=2, synthetic=True)
    assert pp.attrs["kind"] == "prior predictive" and pp.attrs["draws"] == 500
    np.testing.assert_array_equal(pp["observed_responders"].sum(), cells.y.sum())
    # weakly informative priors: every observed count is well inside what they predict
    p = pp["predictive_p_value"].values[(pp["n_evaluable"] > 0).values]
    assert p.min() > 0.05
