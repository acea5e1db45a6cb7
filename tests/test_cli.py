"""The command line: demo, fit, validate, and bad input (exit 2, no traceback,
nothing overwritten).

What a user sees of a whole process (the console script's start-up, a demo run as the
README gives it, a fit in one process and the API in another agreeing, a run's count
of compiled models, Dask's settings from the environment) runs the real console
script in a subprocess (``run_cli``); messages, exit codes and files run ``main`` in
this process (``invoke_cli``), without a new interpreter's 2-4 s of imports."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import scleromx_bayes as sxb
from conftest import invoke_cli, run_cli
from scleromx_bayes.simulate import example_path

SMALL = ["--draws", "200", "--tune", "200", "--chains", "2"]


def run(*args, cwd=None):
    return run_cli(*args, cwd=cwd)


def test_demo_writes_everything(tmp_path):
    res = run("demo", "--out", tmp_path / "demo", *SMALL)
    assert res.returncode == 0, res.stderr
    assert "SYNTHETIC" in res.stdout
    for regimen in sxb.load_example().regimens:
        assert regimen in res.stdout
    assert "P(better than HDIVig)" in res.stdout
    files = sorted(p.name for p in (tmp_path / "demo").iterdir())
    assert files == ["forest.png", "posterior.nc", "ppc.png", "summary.nc"]
    assert "posterior predictive check: smallest p" in res.stdout
    ds = sxb.read_dataset(tmp_path / "demo" / "summary.nc")
    assert ds.attrs["synthetic"] == 1
    assert (tmp_path / "demo" / "forest.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_fit_counts_table_with_orr_and_zarr(tmp_path):
    counts = tmp_path / "published.csv"
    counts.write_text(
        "site,regimen,severity,n,n_cr,n_pr\nA,HDIVig,nonsevere,20,9,4\n"
        "B,HDIVig,nonsevere,11,4,3\nA,PCD,severe,6,3,1\nB,PCD,severe,4,1,1\n"
    )
    res = invoke_cli(
        "fit",
        counts,
        "--out",
        tmp_path / "o",
        "--outcome",
        "orr",
        "--format",
        "zarr",
        "--model",
        "no_pooling",
        *SMALL,
    )
    assert res.returncode == 0, res.stderr
    ds = sxb.read_dataset(tmp_path / "o" / "summary.zarr")
    assert ds.attrs["outcome"] == "orr" and ds.attrs["model_name"] == "no_pooling"
    assert int(ds.n_responders.sum()) == 9 + 4 + 4 + 3 + 3 + 1 + 1 + 1


def test_validate(tmp_path):
    res = invoke_cli("validate", example_path())
    assert res.returncode == 0
    assert "valid episodes table (SYNTHETIC)" in res.stdout
    assert "33 patients, 47 episodes" in res.stdout


@pytest.fixture
def previous_output(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.nc").write_text("previous results")
    return out


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["fit", "{bad}", "--out", "{out}"],
            "row 3, column 'response': unknown response code 'CRR'",
        ),
        (["fit", "{missing}", "--out", "{out}"], "file not found"),
        (["fit", "{good}", "--out", "{out}", "--model", "nope"], "no shipped spec named 'nope'"),
        (
            ["fit", "{good}", "--out", "{out}", "--model", "{badspec}"],
            "distribution 'Uniform' is not allowed",
        ),
        (
            ["fit", "{good}", "--out", "{out}", "--sampler", "stan"],
            "--sampler must be 'nutpie' or 'pymc'",
        ),
        (["fit", "{counts}", "--out", "{out}", "--outcome", "orr"], "needs an 'n_pr' column"),
        (["validate", "{bad}"], "unknown response code 'CRR'"),
        (["fit", "{good}", "--out", "{out}", "--outcome", "pr"], "Invalid value for '--outcome'"),
    ],
)
def test_bad_input_exits_2_without_traceback(tmp_path, previous_output, args, message):
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "patient_id,site,regimen,severity,response\np1,A,R,severe,CR\np2,A,R,severe,CRR\n"
    )
    badspec = tmp_path / "spec.toml"
    badspec.write_text('name = "x"\n[priors.intercept]\ndist = "Uniform"\nlower = 0\nupper = 1\n')
    counts = tmp_path / "counts.csv"
    counts.write_text("site,regimen,severity,n,n_cr\nA,R,severe,3,1\n")
    names = {
        "bad": bad,
        "missing": tmp_path / "nope.csv",
        "good": example_path(),
        "badspec": badspec,
        "counts": counts,
        "out": previous_output,
    }
    res = invoke_cli(*[a.format(**names) for a in args])
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert message in res.stderr.replace("\n", " ") or message in res.stdout
    assert "Traceback" not in res.stderr
    assert sorted(p.name for p in previous_output.iterdir()) == ["summary.nc"]
    assert (previous_output / "summary.nc").read_text() == "previous results"


def test_python_api_matches_cli_in_three_lines(tmp_path):
    cohort = sxb.load_example()
    fit = sxb.fit(cohort, "base", draws=200, tune=200, chains=2, seed=1)
    ds = fit.summary()
    res = run("demo", "--out", tmp_path / "d", *SMALL, "--seed", "1")
    assert res.returncode == 0
    cli = sxb.read_dataset(tmp_path / "d" / "summary.nc")
    xr.testing.assert_equal(cli.p_cr_new_site, ds.p_cr_new_site)


TINY_GRID = """name = "tiny"
model = "base"
combine = "one_at_a_time"
draws = 200
tune = 200
chains = 2
ess_min = 50
rhat_max = 1.05
[axes]
site_sd = [0.5, 1.0]
leave_out_site = ["none", "Centre G"]
"""


def test_sensitivity_writes_dataset_table_and_plot_and_resumes(tmp_path):
    grid = tmp_path / "tiny.toml"
    grid.write_text(TINY_GRID)
    out = tmp_path / "sens"
    res = run("sensitivity", example_path(), "--grid", grid, "--out", out)
    assert res.returncode == 0, res.stderr
    assert "SYNTHETIC" in res.stdout and "flips?" in res.stdout
    assert "1 model(s) compiled" in res.stdout.replace("\n", " ")
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "conclusions.csv",
        "rank_stability.csv",
        "sensitivity.nc",
        "sensitivity_forest.png",
        "store",
    ]
    ds = sxb.read_dataset(out / "sensitivity.nc")
    assert list(ds.scenario.values) == ["baseline", "site_sd=1.0", "leave_out_site=Centre G"]
    assert ds.attrs["synthetic"] == 1
    table = (out / "conclusions.csv").read_text().splitlines()
    assert table[0].startswith("regimen,severity,reference,p_better_baseline")
    assert len(table) == 1 + 5 * 2  # 5 regimens against HDIVig, 2 severities
    stored = sorted((out / "store" / "scenarios").iterdir())
    assert len(stored) == 3

    # (the runs below are about messages, exit codes and files: main in this process)
    # a second run without --resume refuses, and loses nothing
    again = invoke_cli("sensitivity", example_path(), "--grid", grid, "--out", out)
    assert again.returncode == 2 and "add --resume" in again.stderr
    assert "Traceback" not in again.stderr
    assert sorted((out / "store" / "scenarios").iterdir()) == stored
    # with --resume it reuses all three and writes the same numbers
    resumed = invoke_cli("sensitivity", example_path(), "--grid", grid, "--out", out, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    back = sxb.read_dataset(out / "sensitivity.nc")
    assert back.attrs["n_reused"] == 3
    xr.testing.assert_equal(back.p_cr_new_site, ds.p_cr_new_site)

    # the reweighting fast path: the baseline's result is the exact one; every other
    # scenario is either reweighted (with its k-hat) or refitted, and says which
    fast_out = tmp_path / "fast"
    fast = invoke_cli(
        "sensitivity", example_path(), "--grid", grid, "--out", fast_out, "--reweight"
    )
    assert fast.returncode == 0, fast.stderr
    quick = sxb.read_dataset(fast_out / "sensitivity.nc")
    assert "PSIS" in quick.attrs["reweighting"]
    assert quick.attrs["n_reweighted"] == int(quick["reweighted"].sum())
    assert int(quick["reweighted"].sel(scenario="baseline")) == 0
    assert np.isfinite(
        quick["pareto_k"].sel(scenario=["site_sd=1.0", "leave_out_site=Centre G"])
    ).all()
    xr.testing.assert_equal(
        quick.p_cr_new_site.sel(scenario="baseline"), ds.p_cr_new_site.sel(scenario="baseline")
    )


@pytest.mark.parametrize(
    "grid_text,extra,message",
    [
        (
            '[axes]\nsite_sd = [0.5, "wide"]\n',
            [],
            "axis 'site_sd', value 'wide': must be a number > 0",
        ),
        (
            '[axes]\nleave_out_site = ["none", "Centre Z"]\n',
            [],
            "axis 'leave_out_site', value 'Centre Z': not a site in the data",
        ),
        (
            "[axes]\nsite_sd = [0.5]\n",
            ["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"],
            "give --workers or --scheduler, not both",
        ),
        (
            "[axes]\nsite_sd = [0.5]\n",
            ["--scheduler", "tcp://127.0.0.1:1"],
            "cannot reach the Dask scheduler at tcp://127.0.0.1:1",
        ),
    ],
)
def test_sensitivity_bad_input_exits_2(tmp_path, previous_output, grid_text, extra, message):
    grid = tmp_path / "bad.toml"
    grid.write_text(grid_text)
    # Dask's connect timeout, when shorter than the command's 10 s, is the one used;
    # Dask reads it from the environment when imported, so that case runs the real
    # console script in a new process; the others only read files
    here = not extra or "--workers" in extra
    res = (invoke_cli if here else run_cli)(
        "sensitivity",
        example_path(),
        "--grid",
        grid,
        "--out",
        previous_output,
        *extra,
        **({} if here else {"env": {"DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "1s"}}),
    )
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert message in res.stderr.replace("\n", " ")
    if "cannot reach" in message:
        assert "after 1 s" in res.stderr
    assert "Traceback" not in res.stderr
    assert sorted(p.name for p in previous_output.iterdir()) == ["summary.nc"]


def test_compare_models(tmp_path):
    res = invoke_cli(
        "compare",
        example_path(),
        "--model",
        "base",
        "--model",
        "complete_pooling",
        "--level",
        "cell",
        "--out",
        tmp_path / "cmp",
        *SMALL,
    )
    assert res.returncode == 0, res.stderr
    assert "leaving out one cell at a time" in res.stdout
    assert "SYNTHETIC" in res.stdout
    table = (tmp_path / "cmp" / "comparison.csv").read_text().splitlines()
    assert table[0].startswith("model,rank,elpd")
    assert {line.split(",")[0] for line in table[1:]} == {"base", "complete_pooling"}
    assert all(line.endswith(",cell") for line in table[1:])


@pytest.mark.parametrize(
    "args,message",
    [
        (["--model", "base"], "give at least two --model"),
        (["--model", "base", "--model", "nope"], "no shipped spec named 'nope'"),
        (
            ["--model", "base", "--model", "no_pooling", "--level", "patient"],
            "--level must be 'episode' or 'cell'",
        ),
    ],
)
def test_compare_bad_input(args, message):
    res = invoke_cli("compare", example_path(), *args)
    assert res.returncode == 2 and message in res.stderr.replace("\n", " ")
    assert "Traceback" not in res.stderr


def test_fit_a_wider_family_model(tmp_path):
    res = invoke_cli("fit", example_path(), "--model", "exnex", "--out", tmp_path / "ex", *SMALL)
    assert res.returncode == 0, res.stderr
    assert "EXNEX: posterior probability of being exchangeable: HDIVig" in res.stdout.replace(
        "\n", " "
    )
    ds = sxb.read_dataset(tmp_path / "ex" / "summary.nc")
    assert ds.attrs["model_name"] == "exnex" and "exchangeability_weight" in ds
    assert ds.attrs["target_accept"] == 0.9  # the default: EXNEX sets none of its own


def test_patient_effect_on_a_counts_table_is_bad_input(tmp_path, previous_output):
    counts = tmp_path / "counts.csv"
    counts.write_text("site,regimen,severity,n,n_cr\nA,R,severe,3,1\nB,R,severe,4,2\n")
    res = invoke_cli("fit", counts, "--model", "patient_effect", "--out", previous_output)
    assert res.returncode == 2 and "needs an episode table" in res.stderr.replace("\n", " ")
    assert "Traceback" not in res.stderr
    assert sorted(p.name for p in previous_output.iterdir()) == ["summary.nc"]


def test_an_internal_error_is_exit_1_with_the_traceback_behind_debug(monkeypatch, capsys):
    from scleromx_bayes import cli

    def broken():
        raise KeyError("a bug, not bad input")

    monkeypatch.setattr(sxb, "load_example", broken)
    with pytest.raises(SystemExit) as info:
        cli.main(["demo", "--out", "unused"])
    assert info.value.code == 1
    err = capsys.readouterr().err
    assert "internal error: KeyError" in err and "--debug" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as info:
        cli.main(["--debug", "demo", "--out", "unused"])
    assert info.value.code == 1
    assert "Traceback" in capsys.readouterr().err


def test_help_and_a_bad_option_are_answered_without_loading_pymc():
    """``import scleromx_bayes`` loads a public name's module on first use: the command
    line's help and its refusal of a bad option do not wait for PyMC to load."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from scleromx_bayes.cli import main\n"
        "try:\n"
        "    main(sys.argv[1:])\n"
        "except SystemExit as exit:\n"
        "    heavy = [m for m in ('pymc', 'pytensor', 'nutpie', 'arviz') if m in sys.modules]\n"
        "    print(exit.code, heavy)\n"
    )
    for args, expected in ((["--help"], "0 []"), (["fit", "x.csv", "--outcome", "pr"], "2 []")):
        done = subprocess.run(
            [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120
        )
        assert done.stdout.strip().splitlines()[-1] == expected, (done.stdout, done.stderr)


def test_a_public_name_stays_the_function_when_its_module_is_imported():
    """``fit`` and ``report`` name both a module and the function it defines: importing
    the module (as other modules do) must not replace the package's function."""
    import importlib
    import subprocess
    import sys

    code = (
        "import scleromx_bayes as sxb\n"
        "import scleromx_bayes.fit, scleromx_bayes.report\n"
        "from scleromx_bayes.fit import SamplerSettings\n"
        "print(callable(sxb.fit), callable(sxb.report), sxb.fit.__name__, sxb.report.__name__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["True", "True", "fit", "report"], done.stderr
    # and in this process, whatever the suite imported first
    assert sxb.fit is importlib.import_module("scleromx_bayes.fit").fit
    assert sxb.report is importlib.import_module("scleromx_bayes.report").report
    assert sorted(sxb.__all__) == sorted(set(sxb.__all__))
    assert set(sxb.__all__) <= set(dir(sxb))
    with pytest.raises(AttributeError, match="no attribute 'fitt'"):
        sxb.fitt  # noqa: B018
