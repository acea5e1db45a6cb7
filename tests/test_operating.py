"""Operating characteristics: exact against enumeration and quadrature, pooling
lowers the false-positive rate, seeds independent of workers and chunks, resume,
failures recorded, calibration, and input errors."""

from __future__ import annotations

import concurrent.futures as cf
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy.special import expit
from scipy.stats import binom, norm

import scleromx_bayes as sxb
import scleromx_bayes.simulate
from conftest import invoke_cli
from scleromx_bayes.operating import as_design, engine, evaluate, run, threshold_for
from scleromx_bayes.operating.engine import simulate_counts, simulation_seeds

# -- exact reference: two regimens, one centre, one severity, independent priors ----
N_ARM = 8
PRIOR_SD = 1.5  # no_pooling: each regimen's log-odds ~ N(0, 1.5)
GRID = np.linspace(-12, 12, 6001)
P_NULL, P_ALT = 0.3, 0.6
N_SIMS = 120
EXACT_SETTINGS = sxb.SamplerSettings(draws=1000, tune=500, chains=2)


def two_arm_design():
    frame = pd.DataFrame(
        {"site": "A", "regimen": ["R1", "R2"], "severity": "all", "n": [N_ARM, N_ARM]}
    )
    return sxb.read_design(frame, regimen_order=["R1", "R2"])


def grid_posterior(y: int) -> np.ndarray:
    """Posterior weights of one regimen's log-odds on GRID after y of N_ARM."""
    log = norm.logpdf(GRID, 0, PRIOR_SD) + binom.logpmf(y, N_ARM, expit(GRID))
    w = np.exp(log - log.max())
    return w / w.sum()


POSTERIORS = [grid_posterior(y) for y in range(N_ARM + 1)]
POST_MEAN = np.array([(w * expit(GRID)).sum() for w in POSTERIORS])


def exact_prob_better(y1: int, y2: int) -> float:
    """P(p2 > p1 | y1, y2) by quadrature: sum over x2 of f2(x2) F1(x2)."""
    w1, w2 = POSTERIORS[y1], POSTERIORS[y2]
    below = np.cumsum(w1) - 0.5 * w1
    return float((w2 * below).sum())


PB = np.array([[exact_prob_better(a, b) for b in range(N_ARM + 1)] for a in range(N_ARM + 1)])


def exact_p_go(p1: float, p2: float, c: float) -> float:
    """Enumerate every outcome: P(P(better) > c) under true p1, p2."""
    joint = np.outer(binom.pmf(range(N_ARM + 1), N_ARM, p1), binom.pmf(range(N_ARM + 1), N_ARM, p2))
    return float((joint * (PB > c)).sum())


def gap_threshold() -> float:
    """A threshold near 0.85 in the widest gap between the exact P(better) values, so
    that Monte Carlo error in a fit's P(better) cannot change a decision."""
    values = np.unique(PB.round(6))
    values = values[(values > 0.7) & (values < 0.97)]
    gaps = np.diff(values)
    i = int(np.argmax(gaps))
    assert gaps[i] > 0.04, "the design leaves no clear gap for a threshold"
    return float((values[i] + values[i + 1]) / 2)


@pytest.fixture(scope="module")
def two_arm_oc():
    c = gap_threshold()
    truths = [
        sxb.Truth.all_equal(P_NULL, site_sd=0.0, name="null"),
        sxb.Truth.from_table({"R1": P_NULL, "R2": P_ALT}, site_sd=0.0, name="alternative"),
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        oc = sxb.operating_characteristics(
            two_arm_design(),
            "no_pooling",
            truths,
            [sxb.DecisionRule.better(c), sxb.DecisionRule.above(0.5, 0.8)],
            n_sims=N_SIMS,
            seed=3,
            reference="R1",
            settings=EXACT_SETTINGS,
        )
    return oc, c


def test_each_simulated_posterior_matches_quadrature(two_arm_oc):
    oc, _ = two_arm_oc
    y = oc["sim_responders"].sel(spec="no_pooling").values  # truth, simulation, cell
    pb = oc["sim_prob_better"].sel(spec="no_pooling", regimen="R2", severity="all").values
    mean = oc["sim_estimate"].sel(spec="no_pooling", estimand="p_cr", severity="all")
    assert set(oc["sim_status"].values.ravel()) <= {0, 1}
    exact_pb = PB[y[..., 0], y[..., 1]]
    assert np.abs(pb - exact_pb).max() < 0.05
    for cell, regimen in enumerate(["R1", "R2"]):
        exact_mean = POST_MEAN[y[..., cell]]
        assert np.abs(mean.sel(regimen=regimen).values - exact_mean).max() < 0.02


def test_decision_probabilities_match_enumeration(two_arm_oc):
    oc, c = two_arm_oc
    go = oc["p_decision"].sel(
        spec="no_pooling", rule=f"P(better) > {c:g}", decision="go", regimen="R2", severity="all"
    )
    for truth, p2 in (("null", P_NULL), ("alternative", P_ALT)):
        exact = exact_p_go(P_NULL, p2, c)
        simulated = float(go.sel(truth=truth))
        mcse = np.sqrt(exact * (1 - exact) / N_SIMS)
        assert abs(simulated - exact) <= 4 * mcse + 1e-9, (truth, simulated, exact)
        reported = float(
            oc["p_decision_mcse"].sel(
                spec="no_pooling",
                truth=truth,
                rule=f"P(better) > {c:g}",
                decision="go",
                regimen="R2",
                severity="all",
            )
        )
        assert reported == pytest.approx(np.sqrt(simulated * (1 - simulated) / N_SIMS))
    # go and no-go partition the simulations of a rule without a consider zone
    total = oc["p_decision"].sel(spec="no_pooling", regimen="R2").sum("decision")
    assert np.allclose(total.sel(rule=f"P(better) > {c:g}").values, 1.0)


def test_bias_matches_the_exact_expectation(two_arm_oc):
    oc, _ = two_arm_oc
    for truth, p2 in (("null", P_NULL), ("alternative", P_ALT)):
        exact_bias = float((binom.pmf(range(N_ARM + 1), N_ARM, p2) * POST_MEAN).sum() - p2)
        sel = {"spec": "no_pooling", "truth": truth, "estimand": "p_cr", "regimen": "R2"}
        bias = float(oc["bias"].sel(**sel, severity="all"))
        mcse = float(oc["bias_mcse"].sel(**sel, severity="all"))
        assert abs(bias - exact_bias) < 4 * mcse + 0.01
        assert float(oc["true_value"].sel(**sel, severity="all")) == pytest.approx(p2)
    # the reference's risk difference against itself is undefined, not zero
    assert np.isnan(oc["bias"].sel(estimand="risk_difference", regimen="R1")).all()


def test_calibrated_threshold_holds_the_rate(two_arm_oc):
    oc, _ = two_arm_oc
    cal = threshold_for(oc, spec="no_pooling", truth="null", target=0.1)
    pb = oc["sim_prob_better"].sel(spec="no_pooling", truth="null", regimen="R2").values
    assert (pb > cal.threshold).mean() <= 0.1
    assert (pb >= cal.threshold).mean() > 0.1  # no smaller threshold would do
    assert cal.false_positive_rate <= 0.1 and cal.threshold_mcse >= 0
    # in the exact world the calibrated rule's false-positive rate is near the target
    exact = exact_p_go(P_NULL, P_NULL, cal.threshold)
    assert exact <= 0.1 + 4 * np.sqrt(0.1 * 0.9 / N_SIMS)
    assert cal.rule.go == cal.threshold
    family = threshold_for(oc, spec="no_pooling", truth="null", target=0.1, error="familywise")
    assert family.threshold == pytest.approx(cal.threshold)  # one comparison only


def test_partial_pooling_has_fewer_false_positives(example):
    """On the example's design, under 'all equal', partial pooling says 'better' by
    chance less often than no pooling: paired over the same simulated cohorts."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        oc = sxb.operating_characteristics(
            example,
            ["base", "no_pooling"],
            sxb.Truth.all_equal(0.4),
            sxb.DecisionRule.better(0.9),
            n_sims=60,
            seed=5,
        )
    go = oc["sim_prob_better"] > 0.9  # spec, truth, simulation, regimen, severity
    rate = go.where(oc["sim_prob_better"].notnull()).mean(("regimen", "severity"))
    d = (rate.sel(spec="no_pooling") - rate.sel(spec="base")).values.ravel()
    assert d.mean() > 3 * d.std(ddof=1) / np.sqrt(len(d))
    fp = oc["p_decision"].sel(decision="go", truth="all equal").mean(("regimen", "severity"))
    assert fp.sel(spec="base").item() < fp.sel(spec="no_pooling").item()
    assert oc["p_any_go"].sel(spec="base").item() < oc["p_any_go"].sel(spec="no_pooling").item()
    assert oc.attrs["synthetic"] == 1
    assert (oc["design_n"].sel(regimen="DNS rescue", severity="severe") == 5).item()


def small_oc(**kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sxb.operating_characteristics(
            two_arm_design(),
            "no_pooling",
            [sxb.Truth.all_equal(0.3, site_sd=0.0), sxb.Truth.one_better("R2", 0.3, p=0.3)],
            sxb.DecisionRule.better(0.9, no_go=0.3),
            n_sims=kwargs.pop("n_sims", 6),
            seed=11,
            reference="R1",
            settings=sxb.SamplerSettings(draws=200, tune=200, chains=2),
            **kwargs,
        )


SIM_VARS = ["sim_prob_better", "sim_estimate", "sim_responders", "sim_status"]


def test_results_do_not_depend_on_workers_or_chunks(monkeypatch):
    whole = small_oc()
    monkeypatch.setattr(run, "CHUNK", 2)
    with cf.ThreadPoolExecutor(2) as pool:
        split = small_oc(executor=pool)
    for name in SIM_VARS:
        np.testing.assert_array_equal(whole[name].values, split[name].values)
    # one truth's cohorts do not depend on which other truths run
    alone = sxb.operating_characteristics(
        two_arm_design(),
        "no_pooling",
        sxb.Truth.all_equal(0.3, site_sd=0.0),
        sxb.DecisionRule.better(0.9),
        n_sims=6,
        seed=11,
        reference="R1",
        settings=sxb.SamplerSettings(draws=200, tune=200, chains=2),
    )
    np.testing.assert_array_equal(
        alone["sim_responders"].values[:, 0], whole["sim_responders"].values[:, 0]
    )
    decided = whole["p_decision"].sum("decision").sel(regimen="R2")
    assert np.allclose(decided.values, 1.0)  # go + consider + no-go


def test_store_resumes_an_interrupted_run(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "CHUNK", 3)
    first = small_oc(store=tmp_path / "store")
    files = sorted((tmp_path / "store" / "simulations").glob("*.nc"))
    assert len(files) == 4  # 2 truths x 2 chunks
    files[0].unlink()  # as if the run had stopped before this chunk
    calls = []
    real = run.run_chunk
    monkeypatch.setattr(run, "run_chunk", lambda task: calls.append(task) or real(task))
    again = small_oc(store=tmp_path / "store")
    assert len(calls) == 1
    for name in SIM_VARS:
        np.testing.assert_array_equal(first[name].values, again[name].values)


def test_failed_fits_are_recorded_not_dropped(monkeypatch):
    real = engine.fit_cells
    count = {"n": 0}

    def flaky(*args, **kwargs):
        count["n"] += 1
        if count["n"] == 2:
            raise FloatingPointError("sampler blew up")
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "fit_cells", flaky)
    strict = sxb.ConvergenceCriteria(rhat_max=1.01, ess_min=10**6)  # nothing passes
    oc = small_oc(n_sims=4, criteria=strict)
    first = {"spec": "no_pooling", "truth": "all equal"}
    assert int(oc["n_errors"].sel(**first)) == 1
    assert "FloatingPointError: sampler blew up" in str(oc["sim_error_reasons"].sel(**first).item())
    assert int(oc["n_failed_diagnostics"].sel(**first)) == 3
    assert int(oc["n_used"].sel(**first).item()) == 3  # failed diagnostics kept by default
    dropped = evaluate(oc, sxb.DecisionRule.better(0.9), exclude_failed=True)
    assert int(dropped["n_used"].sel(**first).item()) == 0
    assert np.isnan(dropped["p_decision"].sel(**first, regimen="R2")).all()


def test_evaluate_recomputes_other_rules_without_refitting(two_arm_oc):
    oc, _ = two_arm_oc
    other = evaluate(oc, sxb.DecisionRule.better(0.5))
    pb = oc["sim_prob_better"].sel(spec="no_pooling", truth="alternative", regimen="R2").values
    got = other["p_decision"].sel(
        spec="no_pooling", truth="alternative", decision="go", regimen="R2"
    )
    assert float(got.squeeze()) == pytest.approx((pb > 0.5).mean())
    with pytest.raises(sxb.SettingsError, match=r"P\(p > 0.4\) was not computed"):
        evaluate(oc, sxb.DecisionRule.above(0.4, 0.8))


def test_bad_settings_are_refused_before_any_fit(example):
    rule = sxb.DecisionRule.better(0.9)
    with pytest.raises(sxb.SettingsError, match=r"names regimen\(s\) \['Rituximab'\] not in"):
        sxb.operating_characteristics(
            example, "base", sxb.Truth.one_better("Rituximab", 0.2, p=0.4), rule, n_sims=2
        )
    with pytest.raises(sxb.SettingsError, match="is ordinal"):
        sxb.operating_characteristics(example, "ordinal", sxb.Truth.all_equal(0.4), rule)
    with pytest.raises(sxb.SettingsError, match="outside \\(0, 1\\)"):
        sxb.operating_characteristics(
            example, "base", sxb.Truth.one_better("DNS rescue", 0.7, p=0.4), rule
        )
    with pytest.raises(sxb.SettingsError, match="no_go .* must not exceed go"):
        sxb.DecisionRule.better(0.5, no_go=0.8)
    with pytest.raises(sxb.SettingsError, match="write better:GO"):
        sxb.DecisionRule.parse("bigger:0.9")
    with pytest.raises(sxb.SettingsError, match="truths must have different names"):
        sxb.operating_characteristics(
            example, "base", [sxb.Truth.all_equal(0.4), sxb.Truth.all_equal(0.3)], rule
        )


def test_planned_design_errors_name_row_and_column(tmp_path):
    path = tmp_path / "plan.csv"
    path.write_text("site,regimen,severity,n\nA,HDIVig,severe,10\nA,DNS rescue,severe,five\n")
    with pytest.raises(sxb.CohortError) as err:
        sxb.read_design(path)
    text = str(err.value)
    assert "plan.csv" in text and "row 3" in text and "'n'" in text


def test_simulated_counts_follow_the_truth():
    """The data step alone: many cohorts from one truth average to n * p."""
    design = as_design(two_arm_design())
    truth = sxb.Truth.from_table({"R1": 0.2, "R2": 0.7}, site_sd=0.0)
    totals = np.zeros(2)
    for i in range(2000):
        rng, _ = simulation_seeds(1, truth, i)
        eta, sd = truth.draw(design, rng)
        totals += simulate_counts(design, eta, sd, rng)
    mean = totals / 2000
    se = np.sqrt(N_ARM * np.array([0.2 * 0.8, 0.7 * 0.3]) / 2000)
    assert np.all(np.abs(mean - N_ARM * np.array([0.2, 0.7])) < 4 * se)


# -- command line -------------------------------------------------------------------


def test_cli_oc_on_a_planned_design(tmp_path):
    plan = tmp_path / "plan.csv"
    plan.write_text(
        "site,regimen,severity,n\nA,HDIVig,severe,6\nB,HDIVig,severe,6\n"
        "A,DNS rescue,severe,3\nB,DNS rescue,severe,3\n"
    )
    truths = tmp_path / "optimistic.csv"
    truths.write_text("regimen,p_cr\nHDIVig,0.3\nDNS rescue,0.7\n")
    out = tmp_path / "oc"
    args = ["oc", plan, "--planned", "--out", out, "--p-reference", "0.3", "--truth", "null"]
    args += ["--truth", "DNS rescue:0.3", "--truth-table", truths, "--rule", "better:0.9"]
    args += ["--rule", "above:0.4:0.8:0.2", "--model", "no_pooling", "--model", "base"]
    args += ["--n-sims", "4", "--draws", "100", "--tune", "100", "--calibrate", "0.2"]
    res = invoke_cli(*args)
    assert res.returncode == 0, res.stderr
    assert "SYNTHETIC" in res.stdout and "P(go): P(better) > 0.9; truth: all equal" in res.stdout
    assert "go when P(better) >" in res.stdout
    assert sorted(p.name for p in out.iterdir()) == ["oc.nc", "oc.png", "oc_table.csv", "store"]
    table = pd.read_csv(out / "oc_table.csv")
    assert len(table) == 2 * 3 * 2 * 2  # specs x truths x rules x regimens (one severity)
    oc = sxb.read_dataset(out / "oc.nc")
    assert list(oc["truth"].values) == ["all equal", "DNS rescue +0.3", "optimistic"]
    assert oc.attrs["synthetic"] == 1 and oc.attrs["n_sims"] == 4
    row = table.query("truth == 'optimistic' and regimen == 'DNS rescue'").iloc[0]
    assert row["true_risk_difference"] > 0.3  # at a new centre, from 0.7 vs 0.3 typical
    again = invoke_cli(*args)  # the store is not mixed into a new run without --resume
    assert again.returncode == 2 and "--resume" in again.stderr
    assert invoke_cli(*args, "--resume").returncode == 0


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--truth", "Rituximab:0.2"], "names regimen(s) ['Rituximab'] not in the design"),
        (["--truth", "sometimes"], "write null, fitted, or REGIMEN:DELTA"),
        (["--rule", "bigger:0.9"], "write better:GO[:NOGO] or above:P0:GO[:NOGO]"),
        (["--model", "ordinal"], "is ordinal (CR > PR > NR)"),
        (["--planned", "--truth", "null"], "a planned design has no outcomes: give --p-reference"),
    ],
)
def test_cli_oc_bad_input_exits_2_and_writes_nothing(tmp_path, extra, message):
    data = sxb.simulate.example_path()
    if "--planned" in extra:
        data = tmp_path / "plan.csv"
        data.write_text("site,regimen,severity,n\nA,HDIVig,severe,6\nA,DNS rescue,severe,3\n")
    res = invoke_cli("oc", data, "--out", tmp_path / "oc", "--n-sims", "2", *extra)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "oc").exists()


def test_complete_pooling_has_no_contrast_to_decide(example):
    """As in the summary: under complete pooling regimens are equal by assumption, so
    P(better) is undefined (NaN), not a 'no-go' in every simulation."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        oc = sxb.operating_characteristics(
            example,
            "complete_pooling",
            sxb.Truth.all_equal(0.4),
            sxb.DecisionRule.better(0.9),
            n_sims=2,
            seed=1,
            settings=sxb.SamplerSettings(draws=100, tune=100, chains=2),
        )
    assert oc["sim_prob_better"].isnull().all()
    assert oc["p_decision"].isnull().all() and oc["p_any_go"].isnull().all()
    assert oc["bias"].sel(estimand="p_cr").notnull().all()  # CR probabilities still judged


def test_evaluate_counts_hundreds_of_simulations_exactly():
    """The characteristics from per-simulation results alone (no fitting): 300
    simulations with known P(better) values give the known rates and counts."""
    n = 300
    rng = np.random.default_rng(0)
    pb = rng.uniform(size=(1, 1, n, 2, 1))
    status = np.zeros((1, 1, n), dtype=np.int8)
    status[0, 0, :7] = 1  # failed diagnostics
    status[0, 0, 7:9] = 2  # errors: no fit
    pb[0, 0, 7:9] = np.nan
    est = np.full((1, 1, n, 2, 2, 1), 0.5)
    cell = ("spec", "truth", "simulation", "estimand", "regimen", "severity")
    sims = xr.Dataset(
        {
            "prob_better": (("spec", "truth", "simulation", "regimen", "severity"), pb),
            "prob_above": (
                ("spec", "truth", "simulation", "regimen", "severity", "p0"),
                pb[..., None],
            ),
            "status": (("spec", "truth", "simulation"), status),
            "estimate": (cell, est),
            "lower": (cell, est - 0.1),
            "upper": (cell, est + 0.1),
            "true_value": (cell, est + 0.05),
        },
        coords={
            "spec": ["s"],
            "truth": ["t"],
            "simulation": np.arange(n),
            "regimen": ["A", "B"],
            "severity": ["all"],
            "p0": [0.3],
            "estimand": ["p_cr", "risk_difference"],
        },
    )
    out = evaluate(sims, sxb.DecisionRule.better(0.8))
    assert int(out["n_simulations"].item()) == n
    assert int(out["n_errors"].item()) == 2 and int(out["n_failed_diagnostics"].item()) == 7
    assert int(out["n_used"].item()) == n - 2
    fitted = pb[0, 0, 9:, 1, 0].tolist() + pb[0, 0, :7, 1, 0].tolist()
    go = out["p_decision"].sel(decision="go", regimen="B").item()
    assert go == pytest.approx(np.mean(np.array(fitted) > 0.8))
    assert out["bias"].sel(estimand="p_cr").values == pytest.approx(-0.05)
    assert out["coverage"].sel(estimand="p_cr").values == pytest.approx(1.0)
