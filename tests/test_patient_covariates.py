"""Patient random effect (several episodes per patient) and covariates."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

import scleromx_bayes as sxb
from conftest import quiet_fit
from scleromx_bayes.checks import compare, pointwise_log_likelihood
from scleromx_bayes.fit import cells_for
from scleromx_bayes.model import effective_structure
from scleromx_bayes.summary import posterior_probabilities

PATIENT_SD, LINE_LOG_OR = 1.2, -0.8  # truth: per unit of line of therapy
REGIMEN_LOGIT = {"A": 0.8, "B": 0.0, "C": -0.5, "D": 0.4}


@pytest.fixture(scope="module")
def repeated():
    """Synthetic: 160 patients at 4 sites, each treated with all 4 regimens in a random
    order (line 1 to 4); CR depends on regimen, line and the patient's own effect."""
    rng = np.random.default_rng(21)
    rows = []
    for i in range(160):
        u = rng.normal(0, PATIENT_SD)
        for line, regimen in enumerate(rng.permutation(list(REGIMEN_LOGIT)), start=1):
            p = expit(REGIMEN_LOGIT[regimen] + LINE_LOG_OR * (line - 2.5) + u)
            rows.append(
                (f"P{i:03d}", f"S{i % 4}", regimen, "all", "CR" if rng.random() < p else "NR", line)
            )
    frame = pd.DataFrame(
        rows, columns=["patient_id", "site", "regimen", "severity", "response", "line"]
    )
    frame.attrs["synthetic"] = True
    return sxb.read_cohort(frame)


@pytest.fixture(scope="module")
def spec():
    return sxb.load_spec("patient_effect").with_overrides(
        {
            "structure.covariates": ["line"],
            "priors.covariate_effect": {"dist": "Normal", "mu": 0.0, "sigma": 1.0},
        },
        name="patient_and_line",
    )


@pytest.fixture(scope="module")
def patient_fit(repeated, spec):
    return quiet_fit(repeated, spec, draws=800, tune=800, chains=2, seed=4)


def test_recovers_patient_sd_and_covariate_effect(patient_fit, repeated):
    # a divergence or two in 1,600 draws comes and goes with the seed; more would not
    assert patient_fit.diagnostics.divergences <= 5
    ds = patient_fit.summary()
    sd = ds.scale_parameters.sel(parameter="patient_sd")
    assert float(sd.sel(stat="hdi_lower")) < PATIENT_SD < float(sd.sel(stat="hdi_upper"))
    assert float(sd.sel(stat="hdi_lower")) > 0.4  # clearly there
    # the covariate is standardised: the truth per SD is the per-unit truth times SD(line)
    per_sd = LINE_LOG_OR * repeated.table["line"].astype(float).std(ddof=0)
    effect = ds.covariate_effect.sel(covariate="line")
    assert float(effect.sel(stat="hdi_lower")) < per_sd < float(effect.sel(stat="hdi_upper"))
    assert float(effect.sel(stat="hdi_upper")) < 0
    assert len(patient_fit.cells.patients) == 160


def test_new_patient_at_new_site_integrates_both_effects(patient_fit):
    """p_cr_new_site = E[expit(eta + u + v)], u ~ N(0, site_sd), v ~ N(0, patient_sd),
    against brute-force Monte Carlo for one draw."""
    post = patient_fit.posterior["posterior"]
    draw = {"chain": 0, "draw": 5}
    eta = float(post["typical_logit"].isel(**draw, regimen=0, severity=0))
    site_sd, patient_sd = (
        float(post["site_sd"].isel(**draw)),
        float(post["patient_sd"].isel(**draw)),
    )
    rng = np.random.default_rng(0)
    z = rng.standard_normal((2, 400_000))
    mc = expit(eta + site_sd * z[0] + patient_sd * z[1]).mean()
    quad = float(
        posterior_probabilities(patient_fit)["new_site"].isel(**draw, regimen=0, severity=0)
    )
    assert quad == pytest.approx(mc, abs=2e-3)
    typical = float(expit(eta))
    assert abs(quad - 0.5) < abs(typical - 0.5)  # integrating pulls toward 1/2


def test_loo_compares_with_and_without_the_patient_effect(repeated, patient_fit, spec):
    plain = quiet_fit(
        repeated,
        spec.with_overrides({"structure.patient_effect": False}),
        draws=800,
        tune=800,
        chains=2,
        seed=4,
    )
    a = pointwise_log_likelihood(patient_fit, "episode")
    b = pointwise_log_likelihood(plain, "episode")
    for c in ("regimen", "site", "severity", "response"):
        np.testing.assert_array_equal(a[c].values, b[c].values)  # the same episodes, paired
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # Pareto k is not the point here
        table = compare({"patient": patient_fit, "plain": plain}, "episode")
    assert table.index[0] == "patient"
    with pytest.raises(ValueError, match="compare them at level='episode'"):
        compare({"patient": patient_fit, "plain": plain}, "cell")


def test_patient_effect_drops_with_one_episode_per_patient():
    cohort, _ = sxb.simulate_cohort(
        {"A": 0.0, "B": 1.0}, {"nonsevere": 0.0, "severe": -1.0}, n_patients=60, seed=2
    )
    spec = sxb.load_spec("patient_effect")
    eff = effective_structure(spec, cells_for(cohort, spec))
    assert eff.patient_effect is False and "patient_sd" not in eff.priors


def test_example_cohort_patients_have_several_episodes(example):
    spec = sxb.load_spec("patient_effect")
    cells = cells_for(example, spec)
    assert len(cells.frame) == example.n_episodes and len(cells.patients) == 33
    assert effective_structure(spec, cells).patient_effect is True


def test_counts_tables_and_bad_covariates_are_refused(tmp_path, example):
    counts = sxb.read_counts(
        pd.DataFrame({"site": ["A"], "regimen": ["R"], "severity": ["s"], "n": [5], "n_cr": [2]})
    )
    with pytest.raises(sxb.CohortError, match="needs an episode table"):
        sxb.fit(counts, "patient_effect")
    path = tmp_path / "episodes.csv"
    path.write_text(
        "patient_id,site,regimen,severity,response,line\n"
        "p1,A,R,severe,CR,1\np2,A,R,severe,NR,second\np3,B,R,severe,CR,2\n"
    )
    cohort = sxb.read_cohort(path)
    with pytest.raises(
        sxb.CohortError,
        match=r"episodes.csv, row 3, column 'line': covariate "
        r"value 'second' is not a number",
    ):
        sxb.fit(cohort, "line_of_therapy")
    with pytest.raises(sxb.CohortError, match="column 'dose': covariate column is missing"):
        example.cells(covariates=["dose"])
    same = sxb.read_cohort(
        pd.DataFrame(
            {
                "patient_id": ["a", "b"],
                "site": ["A", "A"],
                "regimen": ["R", "R"],
                "severity": ["s", "s"],
                "response": ["CR", "NR"],
                "line": [1, 1],
            }
        )
    )
    with pytest.raises(sxb.CohortError, match="covariate takes one value only"):
        same.cells(covariates=["line"])
    with pytest.raises(sxb.SpecError, match="covariates must be a list of column names"):
        sxb.load_spec("base").with_overrides({"structure.covariates": "line"})


def test_line_of_therapy_spec_on_the_example(example):
    fit = quiet_fit(example, "line_of_therapy", draws=300, tune=300, chains=2, seed=1)
    ds = fit.summary()
    assert list(ds.covariate_effect.covariate.values) == ["line"]
    assert "mean" in ds.covariate_effect.attrs["description"]


def test_patient_effect_is_a_sensitivity_scenario(example):
    grid = sxb.Grid.from_list(
        [
            {"name": "patients", "model": "patient_effect"},
            {"name": "patients, no A", "model": "patient_effect", "leave_out_site": "Centre A"},
        ],
        draws=300,
        tune=300,
        chains=2,
        ess_min=50,
        rhat_max=1.05,
    )
    sens = sxb.run_sensitivity(example, grid)
    assert int(sens["compiled_now"].sum()) <= 1  # the left-out site is zeroed cells
    assert "patient_sd" in sens.scale_parameters.parameter.values
    assert bool(sens.p_cr_by_site.sel(scenario="patients, no A", site="Centre A").isnull().all())
    assert int(sens.n_evaluable.sel(scenario="patients, no A", site="Centre A").sum()) == 0
