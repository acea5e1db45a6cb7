"""The regimen x severity interaction model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

import scleromx_bayes as sxb
from conftest import quiet_fit
from scleromx_bayes.checks import compare
from scleromx_bayes.model import effective_structure

# log-odds at a typical site: "A" works in nonsevere disease and fails in severe
# disease; B and C follow a common severity shift of -0.5
TRUTH = {
    ("A", "nonsevere"): 1.2,
    ("A", "severe"): -1.5,
    ("B", "nonsevere"): 0.0,
    ("B", "severe"): -0.5,
    ("C", "nonsevere"): 0.6,
    ("C", "severe"): 0.1,
}


@pytest.fixture(scope="module")
def interaction_cohort():
    """Synthetic: 120 episodes per regimen x severity over 4 sites (no site effect)."""
    rng = np.random.default_rng(5)
    rows = []
    for (regimen, severity), logit in TRUTH.items():
        for i in range(120):
            cr = rng.random() < expit(logit)
            rows.append(
                (f"{regimen}{severity[0]}{i}", f"S{i % 4}", regimen, severity, "CR" if cr else "NR")
            )
    frame = pd.DataFrame(rows, columns=["patient_id", "site", "regimen", "severity", "response"])
    frame.attrs["synthetic"] = True
    return sxb.read_cohort(frame)


@pytest.fixture(scope="module")
def fits(interaction_cohort):
    # 3 regimens identify their SDs weakly: the stricter adaptation the validation
    # record recommends keeps these fits free of divergences
    settings = {"draws": 600, "tune": 1000, "chains": 2, "seed": 3, "target_accept": 0.95}
    return {
        name: quiet_fit(interaction_cohort, name, **settings) for name in ("interaction", "base")
    }


def test_recovers_a_regimen_that_fails_in_severe_disease(fits):
    fit = fits["interaction"]
    assert fit.diagnostics.divergences == 0
    ds = fit.summary()
    typical = ds.p_cr_typical_site
    for (regimen, severity), logit in TRUTH.items():
        s = typical.sel(regimen=regimen, severity=severity)
        assert float(s.sel(stat="hdi_lower")) < expit(logit) < float(s.sel(stat="hdi_upper"))
    inter = fit.posterior["posterior"]["interaction"]
    assert float((inter.sel(regimen="A", severity="severe") < 0).mean()) > 0.95
    assert bool((inter.sel(severity="nonsevere") == 0).all())  # reference level: none
    assert "interaction_sd" in ds.scale_parameters.parameter.values
    # A is the worst regimen in severe disease, beyond doubt
    assert float(ds.rank_probability.sel(severity="severe", regimen="A", rank=3)) > 0.9


def test_additive_model_misfits_what_the_interaction_reproduces(fits):
    """The additive model forces A's severity shift to be everyone's: its posterior
    predictive check flags A's counts, while the interaction model reproduces them."""
    from scleromx_bayes.checks import posterior_predictive_check

    with_interaction = posterior_predictive_check(fits["interaction"], seed=1)
    additive = posterior_predictive_check(fits["base"], seed=1)
    assert float(with_interaction["predictive_p_value"].min()) > 0.2
    assert float(additive["predictive_p_value"].sel(regimen="A").max()) < 0.05
    # and the additive model cannot tell that A is last in severe disease
    ranks = fits["base"].summary().rank_probability
    assert float(ranks.sel(severity="severe", regimen="A", rank=3)) < 0.8


def test_loo_prefers_the_interaction_when_it_is_there(fits):
    table = compare(fits, "episode")
    assert table.index[0] == "interaction"
    assert table.loc["base", "elpd_diff"] < -2 * table.loc["base", "dse"]


def test_interaction_drops_without_two_severities():
    spec = sxb.load_spec("interaction")
    one = sxb.read_cohort(
        pd.DataFrame(
            {
                "patient_id": ["a", "b", "c"],
                "site": ["S", "S", "T"],
                "regimen": ["A", "B", "A"],
                "severity": ["severe"] * 3,
                "response": ["CR", "NR", "NR"],
            }
        )
    )
    eff = effective_structure(spec, one.cells())
    assert eff.interaction is False and "interaction_sd" not in eff.priors
    names = {v.name for v in sxb.build_model(one.cells(), spec).free_RVs}
    assert "interaction_z" not in names and "interaction_sd" not in names


def test_spec_round_trip_and_override():
    spec = sxb.load_spec("interaction")
    assert spec.regimen_severity_interaction is True
    assert sxb.ModelSpec.from_toml(spec.to_toml()) == spec
    off = spec.with_overrides({"structure.regimen_severity_interaction": False})
    assert "interaction_sd" not in off.required_priors()
    assert off.structure_key() != spec.structure_key()
    with pytest.raises(sxb.SpecError, match="needs prior"):
        sxb.ModelSpec.from_dict(
            {
                "name": "x",
                "structure": {"regimen_severity_interaction": True},
                "priors": {k: v.to_dict() for k, v in sxb.load_spec("base").priors.items()},
            }
        )


def test_new_structures_are_sensitivity_scenarios(example):
    grid = sxb.Grid.one_at_a_time(
        {"model": ["base", "interaction", "exnex"]},
        draws=300,
        tune=300,
        chains=2,
        ess_min=50,
        rhat_max=1.05,
    )
    sens = sxb.run_sensitivity(example, grid)
    assert list(sens.scenario.values) == ["baseline", "model=interaction", "model=exnex"]
    p = sens.p_cr_new_site.sel(stat="mean")
    assert bool(((p > 0) & (p < 1)).all())
    assert "interaction_sd" in sens.scale_parameters.parameter.values
    # EXNEX's weights are there for its scenario, missing for the others
    w = sens["exchangeability_weight"]
    assert bool(w.sel(scenario="model=exnex").notnull().all())
    assert bool(w.sel(scenario="baseline").isnull().all())
