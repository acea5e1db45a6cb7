"""Simulation-based calibration and coverage, small versions of the recorded runs
(validation/run.py), plus a negative control that the check must catch."""

from __future__ import annotations

import concurrent.futures as cf
import warnings
from dataclasses import replace

import numpy as np
import pytest

import scleromx_bayes as sxb
from scleromx_bayes.validation import design_cells, rank_histograms, sbc, scaled_design

SMALL = {"draws": 200, "tune": 300, "chains": 2, "n_ranks": 20, "n_bins": 5}


@pytest.fixture(scope="module")
def design(example):
    return design_cells(example.cells())


@pytest.fixture(scope="module")
def base_sbc(design):
    return sbc("base", design, n_sims=40, seed=7, **SMALL)


def test_sbc_ranks_are_uniform_for_the_base_model(base_sbc, design):
    ranks = base_sbc.ranks["rank"]
    assert ranks.sizes["simulation"] == 40
    names = list(ranks["parameter"].values)
    assert {"intercept", "regimen_sd", "site_sd", "severity_effect[severe]"} <= set(names)
    assert {f"regimen_logit[{r}]" for r in design.regimens} <= set(names)
    assert int(ranks.min()) >= 0 and int(ranks.max()) <= 19
    # 40 simulations cannot prove calibration; they can catch a gross error
    assert base_sbc.min_p_value > 1e-3, base_sbc.uniformity["chi2_p"].values
    assert base_sbc.ranks.attrs["synthetic"] == 1


def test_coverage_of_regimen_probabilities_is_near_nominal(base_sbc):
    # 40 simulations x 12 regimen-severity cells; nominal 0.95
    assert 0.88 < base_sbc.coverage_overall <= 1.0
    assert base_sbc.uniformity["coverage"].dims == ("regimen", "severity")


def test_sbc_flags_a_miscalibrated_fit(design):
    """Negative control: simulate under base, fit with a confidently wrong intercept
    prior. The intercept's ranks pile up at one end and the test must say so."""
    wrong = sxb.load_spec("base").with_overrides(
        {"priors.intercept": {"dist": "Normal", "mu": 3.0, "sigma": 0.2}}
    )
    result = sbc("base", design, n_sims=40, seed=7, fit_spec=wrong, **SMALL)
    p = result.uniformity["chi2_p"].sel(parameter="intercept")
    assert float(p) < 1e-6
    assert float(result.ranks["rank"].sel(parameter="intercept").mean()) < 5  # truth far below
    # below the band a calibrated fit must reach (see the coverage test above)
    assert result.coverage_overall < 0.88


def test_sbc_arguments_are_checked(design):
    with pytest.raises(ValueError, match="must be a multiple of n_bins"):
        sbc("base", design, n_sims=2, seed=1, n_ranks=21, n_bins=5)
    with pytest.raises(ValueError, match="same structure"):
        sbc("base", design, n_sims=2, seed=1, fit_spec="no_pooling")


def test_scaled_design_and_rank_histograms(design, base_sbc, tmp_path):
    big = scaled_design(design, 9)
    assert int(big.n.sum()) == 9 * int(design.n.sum())
    assert list(big.frame["regimen"]) == list(design.frame["regimen"])
    path = rank_histograms(base_sbc, tmp_path / "ranks.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_seed_same_ranks(design, base_sbc):
    again = sbc("base", design, n_sims=5, seed=7, **SMALL)
    np.testing.assert_array_equal(again.ranks["rank"].values, base_sbc.ranks["rank"].values[:5])


def test_sbc_of_the_joint_borrowing_model_on_a_small_design():
    """The joint (meta-analytic-combined) model: cohort and external counts simulated
    together from its prior predictive, refitted; ranks of the cohort's regimen
    log-odds and of the meta-analysis' mean and between-study SD are uniform and the
    95% intervals cover. (200 simulations are recorded in validation/README.md.)"""
    from scleromx_bayes.validation import small_borrowing_design

    design, external = small_borrowing_design()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = sbc(
            "no_pooling",
            design,
            n_sims=40,
            seed=5,
            draws=250,
            tune=300,
            chains=4,
            n_bins=5,
            external=external,
        )
    params = set(result.uniformity["parameter"].values)
    assert {"borrowed_mean[R1]", "borrowed_tau[R1]", "regimen_logit[R1]"} <= params
    assert float(result.uniformity["chi2_p"].min()) > 1e-3, result.uniformity["chi2_p"].values
    assert result.coverage_overall >= 0.85
    with pytest.raises(ValueError, match="not a generative model"):
        sbc("no_pooling", design, n_sims=2, seed=1, external=replace(external, method="power"))


def test_sbc_on_an_executor_gives_the_same_ranks(base_sbc, design):
    """SBC runs its fits through the runner OC studies use; each fit keeps its own
    seed, so a thread pool reproduces the sequential run exactly."""
    with cf.ThreadPoolExecutor(2) as pool:
        again = sbc("base", design, n_sims=6, seed=7, executor=pool, **SMALL)
    for name in ("rank", "covered", "divergences"):
        np.testing.assert_array_equal(
            again.ranks[name].values, base_sbc.ranks[name].isel(simulation=slice(0, 6)).values
        )


def test_sbc_of_the_ordinal_model_simulates_partial_responses(design):
    """The ordinal model's prior predictive is NR / PR / CR counts per cell: its SBC
    fits those, and ranks the cutpoint gap too."""
    result = sbc("ordinal", design, n_sims=4, seed=3, **SMALL)
    names = list(result.ranks["parameter"].values)
    assert "cutpoint_gap" in names and "regimen_sd" in names
    ranks = result.ranks["rank"].values
    assert ranks.min() >= 0 and ranks.max() <= 19
