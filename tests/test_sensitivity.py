"""Sensitivity analyses: grids, compile sharing, equivalence with standalone fits,
resume, failure isolation, the Dask executor, the conclusions views, the CLI."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr

import scleromx_bayes as sxb
from conftest import ScenarioExecutor
from scleromx_bayes.fit import clear_compiled_cache
from scleromx_bayes.sensitivity import (
    Grid,
    GridError,
    conclusions,
    grid_from_dict,
    load_grid,
    rank_stability,
    resolve,
    run_sensitivity,
    tipping_point,
)

# Small draws; ESS threshold lowered to what such draws can reach, so "ok" means ok.
RUN = {"draws": 600, "tune": 400, "chains": 2, "seed": 4, "ess_min": 100, "rhat_max": 1.05}
AXES = {
    "regimen_prior": ["baseline", "skeptical"],
    "site_sd": [0.5, 1.0],
    "outcome": ["cr", "orr"],
    "leave_out_site": ["none", "Centre G"],
    "severity_adjustment": ["adjusted", "unadjusted"],
}


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


@pytest.fixture(scope="module")
def small_grid():
    return Grid.one_at_a_time(AXES, name="small", **RUN)


@pytest.fixture(scope="module")
def small_run(example, small_grid):
    """The small grid run from a cold cache, so its compilations can be counted."""
    clear_compiled_cache()
    before = sxb.compile_count()
    result = run_sensitivity(example, small_grid)
    return result, sxb.compile_count() - before


# -- grids ---------------------------------------------------------------------


def test_default_grid_has_at_least_24_scenarios(example):
    grid = load_grid("default")
    scenarios = grid.expand(example)
    assert len(scenarios) >= 24
    names = [s.name for s in scenarios]
    assert names[0] == "baseline"
    assert {f"leave_out_site={s}" for s in example.sites} <= set(names)
    assert {"model=no_pooling", "outcome=orr", "ne_policy=failure"} <= set(names)


def test_product_and_list_grids_from_toml(tmp_path):
    path = tmp_path / "g.toml"
    path.write_text(
        'name = "p"\ncombine = "product"\n[axes]\noutcome = ["cr", "orr"]\nsite_sd = [0.5, 1, 2]\n'
    )
    grid = load_grid(path)
    assert len(grid.scenarios) == 6
    assert grid.scenarios[0].name == "baseline"
    assert grid.scenarios[-1].name == "outcome=orr,site_sd=2"
    path.write_text(
        'name = "l"\ncombine = "list"\ndraws = 500\n'
        '[[scenarios]]\nname = "worst case"\nne_policy = "failure"\noutcome = "orr"\n'
        '[[scenarios]]\nname = "no small sites"\nmin_site_patients = 4\n'
    )
    grid = load_grid(path)
    assert [s.name for s in grid.scenarios] == ["worst case", "no small sites"]
    assert grid.draws == 500
    assert grid.scenarios[0].get("outcome") == "orr"
    # a grid written back is read back the same
    again = grid_from_dict(grid.to_dict())
    assert again.scenarios == grid.scenarios


@pytest.mark.parametrize(
    "text,message",
    [
        ('[axes]\nprior = ["a"]\n', "unknown axis 'prior'"),
        ("[axes]\nsite_sd = [0.5, -1]\n", "axis 'site_sd', value '-1': must be a number > 0"),
        (
            '[axes]\nregimen_prior = ["baseline", "hopeful"]\n',
            "axis 'regimen_prior', value 'hopeful': no such preset",
        ),
        ('[axes]\nmodel = ["base", "bespoke"]\n', "axis 'model', value 'bespoke'"),
        ('[axes]\noutcome = ["cr", "pr"]\n', "axis 'outcome', value 'pr': must be 'cr' or 'orr'"),
        ("[axes]\nmin_site_patients = [0, 2.5]\n", "axis 'min_site_patients', value '2.5'"),
        ('combine = "list"\n', "combine = 'list' needs [[scenarios]]"),
        ('combine = "zip"\n[axes]\noutcome = ["cr"]\n', "combine must be one of"),
        ('colour = "red"\n[axes]\noutcome = ["cr"]\n', "unknown key(s) ['colour']"),
        ("[axes]\noutcome = []\n", "axis 'outcome' has no values"),
    ],
)
def test_invalid_grids_name_axis_and_value(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(GridError) as info:
        load_grid(path)
    assert message in str(info.value)


def test_scenario_values_checked_against_the_data(example):
    grid = Grid.one_at_a_time({"leave_out_site": ["none", "Centre Z"]})
    with pytest.raises(GridError, match="axis 'leave_out_site', value 'Centre Z': not a site"):
        resolve(example, grid, grid.scenarios[1])
    grid = Grid.one_at_a_time({"drop_regimen": ["none", "Rituximab"]})
    with pytest.raises(GridError, match="axis 'drop_regimen', value 'Rituximab': not a regimen"):
        resolve(example, grid, grid.scenarios[1])


def test_subsets_keep_the_layout_and_zero_counts(example, small_grid):
    full = example.cells()
    scenario = next(s for s in small_grid.scenarios if s.name == "leave_out_site=Centre G")
    inputs = resolve(example, small_grid, scenario)
    assert inputs.excluded_sites == ("Centre G",)
    assert len(inputs.cells.frame) == len(full.frame)
    at_g = (inputs.cells.frame["site"] == "Centre G").to_numpy()
    assert inputs.cells.n[at_g].sum() == 0 and full.n[at_g].sum() > 0
    np.testing.assert_array_equal(inputs.cells.n[~at_g], full.n[~at_g])
    grid = Grid.one_at_a_time({"min_site_patients": [4]})
    small = resolve(example, grid, grid.scenarios[0])
    sizes = example.table.groupby("site")["patient_id"].nunique()
    assert set(small.excluded_sites) == set(sizes[sizes < 4].index) != set()


# -- running -------------------------------------------------------------------


def test_scenarios_share_compiled_models(small_run, small_grid, example):
    sens, compiled = small_run
    assert sens.sizes["scenario"] == len(small_grid.expand(example)) == 6
    # one shared graph: severity adjusted or not is a switch; priors, outcome and
    # subsets are data
    assert sens.attrs["compilations"] == compiled == 1
    assert int(sens["compiled_now"].sum()) == 1
    assert list(sens["scenario"].values) == [s.name for s in small_grid.scenarios]
    assert sens["outcome"].sel(scenario="outcome=orr").item() == "orr"
    assert sens["site_sd"].sel(scenario="site_sd=1.0").item() == "1.0"
    assert (sens["status"] == "ok").all(), sens["reason"].values
    assert sens["p_cr_new_site"].dims == ("scenario", "regimen", "severity", "stat")
    assert sens.attrs["compile_s"] > 0 and sens.attrs["sample_s"] > 0


def test_scenario_equals_standalone_fit(small_run, example):
    sens, _ = small_run
    base = sxb.load_spec("base")
    cases = {
        "site_sd=1.0": (base.with_overrides({"priors.site_sd.sigma": 1.0}), None),
        "outcome=orr": (base, sxb.OutcomeDefinition("orr")),
        "regimen_prior=skeptical": (base.with_overrides({"priors.regimen_sd.sigma": 0.5}), None),
    }
    for name, (spec, outcome) in cases.items():
        alone = quiet(
            sxb.fit, example, spec, outcome=outcome, draws=600, tune=400, chains=2, seed=4
        ).summary()
        got = sens.sel(scenario=name)
        for var in ("p_cr_new_site", "risk_difference", "prob_better", "rank_probability"):
            assert list(got[var].dims) == list(alone[var].dims)
            np.testing.assert_array_equal(got.regimen.values, alone.regimen.values)
            # same compiled model, same data, same seed: the same draws, to the last digit
            np.testing.assert_allclose(
                got[var].values,
                alone[var].values,
                rtol=1e-12,
                equal_nan=True,
                err_msg=f"{name}: {var}",
            )


def test_leave_one_site_out_equals_fit_without_that_site(example):
    """Zeroed cells (one compiled model) and a cohort without the site (another
    model) are the same posterior: compared within Monte-Carlo error."""
    grid = Grid.from_list(
        [{"name": "without D", "leave_out_site": "Centre D"}],
        draws=1500,
        tune=700,
        chains=2,
        seed=9,
    )
    masked = quiet(run_sensitivity, example, grid).sel(scenario="without D")
    dropped = quiet(
        sxb.fit,
        example.without_sites(["Centre D"]),
        "base",
        draws=1500,
        tune=700,
        chains=2,
        seed=10,
    ).summary()
    assert set(dropped.regimen.values) == set(example.regimens)  # Centre D removes no regimen
    for var in ("p_cr_new_site", "p_cr_typical_site"):
        a = masked[var].sel(stat="mean")
        b = dropped[var].sel(stat="mean").sel(regimen=a.regimen)
        sd = dropped[var].sel(stat="sd").sel(regimen=a.regimen)
        # both chains give ESS ~ 1000+: 5 MC standard errors of a difference
        assert float(abs(a - b).max()) < float(5 * np.sqrt(2 / 1000) * sd.max()), var
    # the left-out site's own estimate is reported as missing, not as a prior draw
    assert bool(masked["p_cr_by_site"].sel(site="Centre D").isnull().all())
    assert int(masked["n_evaluable"].sel(site="Centre D").sum()) == 0


def test_resume_after_an_interrupted_run(example, small_grid, tmp_path):
    store = tmp_path / "store"
    with ScenarioExecutor(interrupt_at=3) as pool, pytest.raises(KeyboardInterrupt):
        run_sensitivity(example, small_grid, store=store, executor=pool)
    # what finished before the interrupt is kept: one worker runs the scenarios in
    # order, so both before the third are done, even when collected with the interrupt
    kept = len(list((store / "scenarios").glob("*.nc")))
    assert kept == 2
    with ScenarioExecutor() as again:
        resumed = run_sensitivity(example, small_grid, store=store, executor=again)
    assert resumed.attrs["n_reused"] == kept and len(again.submitted) == 6 - kept
    fresh = run_sensitivity(example, small_grid)
    xr.testing.assert_allclose(resumed["p_cr_new_site"], fresh["p_cr_new_site"], rtol=1e-12)
    with pytest.raises(GridError, match="already holds 6 finished scenario"):
        run_sensitivity(example, small_grid, store=store, resume=False)


def test_a_failing_scenario_is_recorded_and_the_others_go_on(example, small_grid, tmp_path):
    store = tmp_path / "store"
    with ScenarioExecutor(fail="site_sd=1.0") as pool:
        sens = run_sensitivity(example, small_grid, store=store, executor=pool)
    status = sens["status"].to_series()
    assert status["site_sd=1.0"] == "error"
    assert "FloatingPointError: worker crashed" in sens["reason"].sel(scenario="site_sd=1.0").item()
    assert (status.drop("site_sd=1.0") == "ok").all()
    assert bool(sens["p_cr_new_site"].sel(scenario="site_sd=1.0").isnull().all())
    assert list((store / "scenarios").glob("*.error.json"))  # the failure is on disk too
    table = conclusions(sens)
    assert table["scenarios_left_out"].str.contains(r"site_sd=1\.0 \(error\)").all()
    # on resume, the failed scenario is retried (and now succeeds); the rest are reused
    again = run_sensitivity(example, small_grid, store=store)
    assert (again["status"] == "ok").all() and again.attrs["n_reused"] == 5
    assert not list((store / "scenarios").glob("*.error.json"))


def test_failed_diagnostics_are_reported_not_hidden(example):
    grid = Grid.from_list([{"name": "strict"}], draws=100, tune=100, chains=2, ess_min=10_000)
    sens = run_sensitivity(example, grid)
    assert sens["status"].item() == "failed_diagnostics"
    assert "bulk ESS" in sens["reason"].item()
    assert sens["min_ess_bulk"].item() < 10_000
    assert sens.attrs["n_failed"] == 1


def test_dask_executor_gives_the_same_numbers(example, small_grid, small_run):
    distributed = pytest.importorskip("dask.distributed")
    sub = Grid(name="two", scenarios=small_grid.scenarios[:2], **RUN)
    # one worker process: the scenarios cross a process boundary (pickled there and
    # back) and compile there; a second process would only import PyMC once more
    with (
        distributed.LocalCluster(
            n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        on_dask = run_sensitivity(example, sub, executor=client.get_executor())
    local, _ = small_run
    xr.testing.assert_allclose(
        on_dask["p_cr_new_site"], local["p_cr_new_site"].isel(scenario=[0, 1]), rtol=1e-12
    )
    # the worker process compiles for itself (its own process, its own count)
    assert on_dask.attrs["compilations"] == 1
    assert int(on_dask["compiled_now"].sum()) == on_dask.attrs["compilations"]


# -- reading the results ---------------------------------------------------------


def test_round_trip_of_the_sensitivity_dataset(small_run, tmp_path):
    sens, _ = small_run
    for suffix in (".nc", ".zarr"):
        path = sxb.write_dataset(sens, tmp_path / f"sens{suffix}")
        xr.testing.assert_identical(sxb.read_dataset(path), sens)


def test_conclusions_ranges_and_flips(small_run):
    sens, _ = small_run
    table = conclusions(sens, decision=0.9)
    assert len(table) == (sens.sizes["regimen"] - 1) * sens.sizes["severity"]
    assert (table["p_better_min"] <= table["p_better_baseline"] + 1e-12).all()
    assert (table["p_better_baseline"] <= table["p_better_max"] + 1e-12).all()
    assert (table["rd_min"] <= table["rd_max"]).all()
    row = table.iloc[0]
    # a decision threshold between the smallest and largest P(better) must flip
    mid = (row.p_better_min + row.p_better_max) / 2
    assert row.p_better_min < row.p_better_max
    flipped = conclusions(sens, decision=mid).iloc[0]
    assert flipped.flips == "yes" and flipped.flipping_scenarios
    assert conclusions(sens, decision=0.999).iloc[0].flips == "no"
    ranks = rank_stability(sens)
    assert (ranks["expected_rank_min"] >= 1).all()
    assert (ranks["expected_rank_max"] <= sens.sizes["regimen"]).all()
    share = ranks.groupby("severity")["share_of_scenarios_most_likely_first"].sum()
    np.testing.assert_allclose(share, 1.0)


def test_tipping_point_on_the_regimen_sd_scale(example):
    tp = quiet(
        tipping_point,
        example,
        "DNS rescue",
        kind="scale",
        decision=0.7,
        values=[2.0, 0.5, 0.1, 0.02],
        draws=600,
        tune=400,
        chains=2,
        seed=3,
    )
    p = tp["prob_better"].values
    assert p[0] > 0.7 > p[-1]  # wide prior: DNS rescue looks better; near-zero SD: no difference
    assert abs(p[-1] - 0.5) < 0.15
    assert 0.02 < tp.attrs["tipping_value"] < 2.0
    assert "falls below 0.7" in tp.attrs["message"]


def test_tipping_point_shift_under_no_pooling_is_monotone(example):
    tp = quiet(
        tipping_point,
        example,
        "DNS rescue",
        kind="shift",
        spec="no_pooling",
        decision=0.8,
        values=[0.0, -1.0, -2.0, -4.0],
        draws=600,
        tune=400,
        chains=2,
        seed=3,
    )
    p = tp["prob_better"].values
    assert np.all(np.diff(p) < 0), p
    assert tp.attrs["monotone"] == 1


def test_power_scaling_screen(base_fit):
    table = sxb.power_scaling(base_fit)
    assert {"prior", "likelihood", "diagnosis"} <= set(table.columns)
    assert any(ix.startswith("regimen_logit[") for ix in table.index)
    assert "site_sd" in table.index
    assert {"log_prior", "log_likelihood"} <= set(base_fit.posterior.children)
    # the reference severity's effect is 0 by definition: not screened (it once came
    # back as NaN with a check mark); every screened value is a real number
    assert "severity_effect[nonsevere]" not in table.index
    assert "severity_effect[severe]" in table.index
    assert table[["prior", "likelihood"]].notna().all().all()
    assert (table[["prior", "likelihood"]] >= 0).all().all()


def test_sensitivity_forest_png(small_run, tmp_path):
    from scleromx_bayes.plots import sensitivity_forest

    sens, _ = small_run
    path = sensitivity_forest(sens, tmp_path / "forest.png", severity="severe")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert path.stat().st_size > 10_000


# -- conclusions that cannot mislead ---------------------------------------------


@pytest.fixture(scope="module")
def structural_run(example):
    """Baseline, complete pooling (no contrast by assumption), a dropped regimen, ORR."""
    grid = Grid.from_list(
        [
            {"name": "baseline"},
            {"name": "pooled", "model": "complete_pooling"},
            {"name": "no DNS", "drop_regimen": "DNS rescue"},
            {"name": "orr", "outcome": "orr"},
        ],
        **RUN,
    )
    return grid, run_sensitivity(example, grid)


def test_undefined_contrasts_are_left_out_with_their_reason(structural_run):
    _, sens = structural_run
    assert sens.attrs["n_ok"] == 4  # complete pooling stays in the grid and the Dataset
    pooled = sens.sel(scenario="pooled")
    assert bool(pooled["prob_better"].isnull().all())
    assert bool(pooled["risk_difference"].isnull().all())
    assert "complete pooling" in str(pooled["contrast_note"].values)
    table = conclusions(sens).set_index(["regimen", "severity"])
    # the 0.00 that complete pooling would give is not in any range
    assert (table["p_better_min"] > 0.05).all(), table["p_better_min"]
    assert table["scenarios_left_out"].str.contains(r"pooled \(undefined under the model\)").all()
    dns = table.loc[("DNS rescue", "severe")]
    assert "no DNS (regimen not in the data)" in dns.scenarios_left_out
    assert dns.scenarios_used == 2
    other = table.loc[("Len-Dex-HDIVig", "severe")]
    assert "no DNS" not in other.scenarios_left_out and other.scenarios_used == 3


def test_not_assessable_when_the_baseline_is_left_out(example):
    grid = Grid.from_list(
        [{"name": "baseline", "model": "complete_pooling"}, {"name": "partial"}], **RUN
    )
    table = conclusions(run_sensitivity(example, grid))
    assert (table["flips"] == "not assessable").all()
    assert table["p_better_baseline"].isnull().all()


def test_each_scenario_carries_its_own_outcome(structural_run, tmp_path):
    grid, _ = structural_run
    store = tmp_path / "store"
    sens = run_sensitivity(sxb.load_example(), grid, store=store)
    assert sens["outcome_definition"].sel(scenario="orr").item() == "orr"
    assert sens["outcome_definition"].sel(scenario="baseline").item() == "cr"
    # the stored per-scenario summaries carry their own outcome in their attributes
    outcomes = sorted(
        sxb.read_dataset(f).attrs["outcome"] for f in (store / "scenarios").glob("*.nc")
    )
    assert outcomes == ["cr", "cr", "cr", "orr"]


def test_the_console_table_fits_80_columns(structural_run):
    from rich.console import Console

    from scleromx_bayes.cli import print_conclusions

    _, sens = structural_run
    console = Console(width=80, record=True, color_system=None)
    print_conclusions(sens, conclusions(sens), 0.9, console=console)
    text = console.export_text()
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert "…" not in text  # nothing cut
    row = next(line for line in text.splitlines() if line.startswith("DNS rescue"))
    assert row.rstrip().endswith(("no", "yes")) and row.count("[") == 2  # one line a row
    assert "pooled (undefined under the model)" in text
    assert "no DNS (regimen not in the data)" in text
