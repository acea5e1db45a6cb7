"""Messy and hostile input, as a new user meets it: each case once read wrongly
without a word, crashed with a traceback, or leaked or lost something."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import scleromx_bayes as sxb
from conftest import invoke_cli, write_csv
from scleromx_bayes.borrowing import example_evidence_path
from scleromx_bayes.diagnostics import diagnose
from scleromx_bayes.errors import SettingsError
from scleromx_bayes.sensitivity import Grid, StoreError, StoreWarning
from scleromx_bayes.sensitivity.store import Store
from scleromx_bayes.simulate import example_path

HEADER = "patient_id,site,regimen,severity,response\n"


def cli(*args):
    """The command line in this process (``invoke_cli``), 80 columns wide: these
    tests are about messages, exit codes and the files written."""
    return invoke_cli(*args, columns=80)


# -- privacy -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def identified(tmp_path_factory):
    """The example cohort with identifiers no written file may contain."""
    frame = sxb.load_example().table.copy()
    ids = {pid: f"MRN-{int(pid[1:]) * 7919:06d}-DUPONT" for pid in frame["patient_id"].unique()}
    frame["patient_id"] = frame["patient_id"].map(ids)
    path = tmp_path_factory.mktemp("ids") / "episodes.csv"
    frame.to_csv(path, index=False)
    return path, sorted(ids.values())


def _assert_no_identifier(folder: Path, identifiers) -> int:
    files = [p for p in folder.rglob("*") if p.is_file()]
    for path in files:
        content = path.read_bytes()
        for pid in identifiers:
            assert pid.encode() not in content, (path, pid)
            assert pid.encode("utf-16-le") not in content, (path, pid)
    return len(files)


def test_no_written_file_carries_a_patient_identifier(identified, tmp_path):
    path, ids = identified
    small = ["--draws", "100", "--tune", "100", "--chains", "1"]
    res = cli("fit", path, "--model", "patient_effect", "--out", tmp_path / "fit", *small)
    assert res.returncode == 0, res.stderr
    posterior = sxb.read_posterior(tmp_path / "fit" / "posterior.nc")
    codes = posterior["posterior"]["patient"].values
    assert len(codes) > 1 and all(str(c).startswith("patient ") for c in codes)
    grid = tmp_path / "g.toml"
    grid.write_text(
        'name = "g"\nmodel = "patient_effect"\ncombine = "list"\ndraws = 100\ntune = 100\n'
        'chains = 1\n[[scenarios]]\nname = "baseline"\n'
    )
    res = cli("sensitivity", path, "--grid", grid, "--out", tmp_path / "sens")
    assert res.returncode == 0, res.stderr
    res = cli("validate", path)
    assert res.returncode == 0 and not any(pid in res.stdout for pid in ids)
    evidence = example_evidence_path()
    res = cli(
        "borrow", evidence, "--regimen", "DNS rescue", "--data", path, "--out", tmp_path / "b"
    )
    assert res.returncode == 0, res.stderr
    res = cli(
        "oc",
        path,
        "--out",
        tmp_path / "oc",
        "--truth",
        "null",
        "--truth",
        "fitted",
        "--n-sims",
        "2",
        *small,
    )
    assert res.returncode == 0, res.stderr
    assert _assert_no_identifier(tmp_path, ids) >= 13


# -- silent nonsense -------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        ({"draws": 0}, SettingsError, "draws must be between 10 and"),
        ({"draws": 1}, SettingsError, "draws must be between 10 and"),
        ({"chains": 0}, SettingsError, "chains must be between 1 and 64"),
        ({"tune": 0}, SettingsError, "tune must be between 10 and"),
        ({"seed": "abc"}, SettingsError, "seed must be a whole number"),
        ({"seed": 1.5}, SettingsError, "seed must be a whole number"),
        ({"seed": -1}, SettingsError, "seed must be between 0"),
        ({"seed": 2**64}, SettingsError, "seed must be between 0"),
        ({"draws": "many"}, SettingsError, "draws must be a whole number"),
        ({"target_accept": 1.2}, SettingsError, r"target_accept must be a number in \[0.5, 1\)"),
        ({"outcome": "orr"}, TypeError, r"OutcomeDefinition\('orr'\)"),
    ],
)
def test_bad_run_settings_fail_before_compiling(example, kwargs, error, match):
    before = sxb.compile_count()
    with pytest.raises(error, match=match):
        sxb.fit(example, "base", **kwargs)
    assert sxb.compile_count() == before
    assert issubclass(SettingsError, ValueError)


def test_a_dataframe_is_not_a_cohort(example):
    with pytest.raises(TypeError, match=r"validate it first with sxb.read_cohort\(frame\)"):
        sxb.fit(example.table, "base")


def test_diagnostics_that_cannot_be_computed_are_a_failure():
    constant = xr.Dataset({"regimen_logit": (("chain", "draw", "regimen"), np.zeros((2, 10, 3)))})
    stats = xr.Dataset({"diverging": (("chain", "draw"), np.zeros((2, 10), bool))})
    tree = xr.DataTree.from_dict({"posterior": constant, "sample_stats": stats})
    result = diagnose(tree)
    assert not result.ok
    assert "R-hat could not be computed" in "; ".join(result.problems)


@pytest.mark.parametrize(
    "setting,match",
    [
        ("tune = 0", "tune must be between 10 and"),
        ("chains = 0", "chains must be between 1 and 64"),
        ("seed = -1", "seed must be between 0"),
        ("seed = 18446744073709551616", "seed must be between 0"),
        ('draws = "many"', "draws must be a whole number"),
        ("draws = 1", "draws must be between 10 and"),
    ],
)
def test_grid_run_settings_are_checked_when_read(tmp_path, setting, match):
    path = tmp_path / "g.toml"
    path.write_text(f'name = "g"\n{setting}\n[axes]\nsite_sd = [0.5, 1.0]\n')
    with pytest.raises(sxb.GridError, match=match):
        sxb.load_grid(path)


# -- input read wrongly without a word ----------------------------------------------


def _frame(rows):
    return pd.DataFrame(rows, columns=["patient_id", "site", "regimen", "severity", "response"])


def test_a_workbook_with_several_filled_sheets_needs_a_sheet(tmp_path):
    path = tmp_path / "cohort.xlsx"
    first = _frame([("p1", "A", "R", "severe", "CR")])
    second = _frame([(f"q{i}", "B", "R", "severe", "NR") for i in range(5)])
    with pd.ExcelWriter(path) as book:
        first.to_excel(book, sheet_name="2019", index=False)
        second.to_excel(book, sheet_name="2020", index=False)
    with pytest.raises(sxb.CohortError, match=r"2 sheets with data \(2019, 2020\)"):
        sxb.read_cohort(path)
    assert sxb.read_cohort(path, sheet="2020").n_episodes == 5
    with pytest.raises(sxb.CohortError, match="has no sheet '2021'"):
        sxb.read_cohort(path, sheet="2021")


def test_a_column_named_twice_is_refused(tmp_path):
    path = write_csv(tmp_path, HEADER.strip() + ",response\np1,A,R,severe,CR,NR\n")
    with pytest.raises(sxb.CohortError, match="column 'response': column appears 2 times"):
        sxb.read_cohort(path)


def test_labels_equal_after_unicode_normalisation_are_one_level(tmp_path):
    nfd = "Ho\u0302pital"
    text = HEADER + f"p1,Hôpital,R,severe,CR\np2,{nfd},R,severe,NR\np3,Hôp\u200bital,R,severe,CR\n"
    cohort = sxb.read_cohort(write_csv(tmp_path, text))
    assert cohort.sites == ("Hôpital",)


@pytest.mark.parametrize(
    "value,why",
    [
        ("1_0", "not a whole number written in digits 0-9"),
        ("\u0661\u0660", "not a whole number written in digits 0-9"),
        ("99999999999999999999999", "is larger than"),
        ("-3", "is negative"),
        ("2.5", "not a whole number"),
    ],
)
def test_counts_are_read_strictly(tmp_path, value, why):
    path = write_csv(tmp_path, f"site,regimen,severity,n,n_cr\nA,R,severe,{value},0\n")
    with pytest.raises(sxb.CohortError, match=f"row 2, column 'n': count .*{why}"):
        sxb.read_counts(path)


def test_none_is_not_a_response(tmp_path):
    path = write_csv(tmp_path, HEADER + "p1,A,R,severe,None\n")
    with pytest.raises(sxb.CohortError, match="unknown response code 'None'"):
        sxb.read_cohort(path)


def test_rows_longer_than_the_header_are_refused(tmp_path):
    path = write_csv(tmp_path, HEADER + "p1,A,R,severe,CR,\np2,A,R,severe,NR\n")
    with pytest.raises(sxb.CohortError, match="row 2: ends in a delimiter that the header lacks"):
        sxb.read_cohort(path)


def test_a_dataframe_with_duplicate_index_labels(tmp_path):
    frame = _frame([("p1", "A", "R", "severe", "CR"), ("p2", "A", "R", "severe", "NR")])
    frame.index = [0, 0]
    with pytest.raises(sxb.CohortError, match="index has duplicate labels"):
        sxb.read_cohort(frame)


def test_a_typo_in_a_level_warns_and_an_unknown_order_is_not_guessed(tmp_path):
    rows = "".join(f"p{i},A,R,{sev},CR\n" for i, sev in enumerate(["severe"] * 4 + ["sever"]))
    path = write_csv(tmp_path, HEADER + rows + "p9,A,R,nonsevere,NR\n")
    with (
        pytest.warns(sxb.LevelWarning, match=r"'severe' \(4 rows\) and 'sever' \(1 rows\)"),
        pytest.raises(sxb.CohortError, match="give them from least to most severe"),
    ):
        sxb.read_cohort(path)
    regimens = HEADER + "p1,A,Rituximab,severe,CR\np2,A,Rituximb,severe,NR\n"
    with pytest.warns(sxb.LevelWarning, match=r"regimen_aliases=\{'Rituximb': 'Rituximab'\}"):
        sxb.read_cohort(write_csv(tmp_path, regimens, "r.csv"))


def test_series_of_sites_are_not_typos(example):
    with warnings.catch_warnings():
        warnings.simplefilter("error", sxb.LevelWarning)
        sxb.read_cohort(example_path())


# -- files and messages -------------------------------------------------------------


def test_semicolon_and_tab_delimited_files_are_read(tmp_path):
    rows = [HEADER.strip(), "p1,A,R,severe,CR", "p2,A,R,severe,NR"]
    for sep, name in ((";", "semi.csv"), ("\t", "tab.csv")):
        path = write_csv(tmp_path, "\n".join(r.replace(",", sep) for r in rows) + "\n", name)
        assert sxb.read_cohort(path).n_episodes == 2


def test_encodings(tmp_path):
    text = HEADER + "p1,Hôpital,R,severe,CR\n"
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes(text.encode("utf-16"))
    assert sxb.read_cohort(utf16).sites == ("Hôpital",)
    latin = tmp_path / "latin.csv"
    latin.write_bytes(text.encode("latin-1"))
    with pytest.raises(sxb.CohortError, match="not UTF-8 text .* encoding='cp1252'"):
        sxb.read_cohort(latin)
    assert sxb.read_cohort(latin, encoding="latin-1").sites == ("Hôpital",)


def test_paths_that_are_not_files(tmp_path):
    loop = tmp_path / "loop.csv"
    loop.symlink_to(loop)
    with pytest.raises(sxb.CohortError, match="symbolic link loop"):
        sxb.read_cohort(loop)
    with pytest.raises(sxb.CohortError, match="is a folder"):
        sxb.read_cohort(tmp_path)


def test_a_huge_label_is_not_echoed_whole(tmp_path):
    huge = "X" * 1_000_000
    path = write_csv(tmp_path, HEADER + f"p1,A,R,severe,CR\np1,{huge},R,severe,NR\n")
    with pytest.raises(sxb.CohortError, match="recorded at two sites") as info:
        sxb.read_cohort(path)
    assert len(str(info.value)) < 500 and "(1000000 characters)" in str(info.value)


def test_no_evaluable_episodes_names_the_file(tmp_path):
    path = write_csv(tmp_path, HEADER + "p1,A,R,severe,NE\n", "allne.csv")
    with pytest.raises(sxb.CohortError, match="allne.csv: no evaluable episodes"):
        sxb.fit(sxb.read_cohort(path), "base")


def test_the_synthetic_flag_is_an_explicit_marker(tmp_path):
    real = write_csv(
        tmp_path,
        "# This is NOT synthetic data: real patients.\n" + HEADER + "p1,A,R,severe,CR\n",
        "real.csv",
    )
    assert not sxb.read_cohort(real).synthetic
    fake = write_csv(
        tmp_path, "# SYNTHETIC DATA: made up.\n" + HEADER + "p1,A,R,severe,CR\n", "fake.csv"
    )
    assert sxb.read_cohort(fake).synthetic


# -- labels printed literally ------------------------------------------------------------


def test_square_brackets_are_printed_literally(tmp_path):
    text = HEADER + "p1,A,DNS [/],severe,CR\np2,A,Dara-Dex-HDIVig [modified],severe,NR\n"
    res = cli("validate", write_csv(tmp_path, text))
    assert res.returncode == 0, res.stderr
    assert "DNS [/]" in res.stdout and "Dara-Dex-HDIVig [modified]" in res.stdout
    bad = write_csv(tmp_path, HEADER + "p1,A,R,severe,[bold]CR[/]\n", "bad.csv")
    res = cli("validate", bad)
    assert res.returncode == 2 and "'[bold]CR[/]'" in res.stderr
    assert "Traceback" not in res.stderr


def test_the_missing_prior_hint_keeps_its_bracket(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text('name = "s"\n[priors.intercept]\ndist = "Normal"\nmu = 0\nsigma = 1\n')
    res = cli("fit", example_path(), "--model", spec, "--out", tmp_path / "o")
    assert res.returncode == 2 and "[priors.regimen_sd]" in res.stderr


# -- specs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "param,value,match",
    [
        ("mu", "nan", "must be a finite number"),
        ("mu", "inf", "must be a finite number"),
        ("mu", "1e308", "is outside"),
        ("sigma", "inf", "must be a finite number"),
        ("sigma", "5e-324", "is outside"),
    ],
)
def test_absurd_prior_values_are_refused_when_read(param, value, match):
    with pytest.raises(sxb.SpecError, match=match):
        sxb.load_spec("base").with_overrides({f"priors.intercept.{param}": float(value)})


def test_spec_paths_that_are_not_spec_files(tmp_path):
    with pytest.raises(sxb.SpecError, match="is a folder"):
        sxb.load_spec(tmp_path)
    with pytest.raises(sxb.SpecError, match="not a regular file"):
        sxb.ModelSpec.from_toml(Path("/dev/zero"))
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(sxb.SpecError, match="nested too deeply|not valid TOML"):
        sxb.load_spec(deep)
    res = cli("fit", example_path(), "--model", "/dev/zero", "--out", tmp_path / "o")
    assert res.returncode == 2 and "Traceback" not in res.stderr


# -- outputs -------------------------------------------------------------------------------


def test_an_unwritable_out_fails_before_the_fit(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    res = cli("fit", example_path(), "--out", blocker / "results")
    assert res.returncode == 2 and "cannot write to" in res.stderr
    assert "Traceback" not in res.stderr


def test_a_failed_run_leaves_the_previous_output_untouched(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.nc").write_text("previous")
    with pytest.raises(OSError, match="disk full"), sxb.output_folder(out) as stage:
        (stage / "summary.nc").write_text("new")
        raise OSError("disk full")
    assert sorted(p.name for p in out.iterdir()) == ["summary.nc"]
    assert (out / "summary.nc").read_text() == "previous"
    with sxb.output_folder(out) as stage:
        (stage / "summary.nc").write_text("new")
        (stage / "forest.png").write_text("png")
    assert sorted(p.name for p in out.iterdir()) == ["forest.png", "summary.nc"]


def test_csv_cells_that_would_run_as_formulas_are_escaped(tmp_path):
    frame = pd.DataFrame(
        {"regimen": ["=cmd|' /C calc'!A0", "+1", "@x", "HDIVig"], "rd": [-0.5, 0.1, 0.2, 0.0]}
    )
    text = sxb.write_csv(frame, tmp_path / "t.csv", index=False).read_text()
    assert "'=cmd|' /C calc'!A0" in text and "\n'+1," in text and "\n'@x," in text
    assert "\n-0.5" not in text and ",-0.5" in text  # numbers stay numbers


# -- the sensitivity store -------------------------------------------------------------


@pytest.fixture(scope="module")
def two_scenarios():
    return Grid.from_list(
        [{"name": "baseline"}, {"name": "skeptical", "regimen_prior": "skeptical"}],
        draws=100,
        tune=100,
        chains=2,
        seed=5,
        ess_min=10,
        rhat_max=1.2,
    )


def _stored(store: Path) -> list[Path]:
    return sorted((store / "scenarios").glob("*.nc"))


def test_a_damaged_store_file_is_named_and_recomputed(example, two_scenarios, tmp_path):
    store = tmp_path / "store"
    first = sxb.run_sensitivity(example, two_scenarios, store=store)
    files = _stored(store)
    files[0].write_bytes(b"")  # emptied
    with pytest.warns(StoreWarning, match=f"{files[0].name}: unreadable"):
        again = sxb.run_sensitivity(example, two_scenarios, store=store)
    assert again.attrs["n_reused"] == 1
    xr.testing.assert_equal(again["p_cr_new_site"], first["p_cr_new_site"])


def test_a_swapped_or_edited_store_file_is_not_trusted(example, two_scenarios, tmp_path):
    store = tmp_path / "store"
    first = sxb.run_sensitivity(example, two_scenarios, store=store)
    a, b = _stored(store)
    tmp = a.with_suffix(".swap")
    shutil.move(a, tmp)
    shutil.move(b, a)
    shutil.move(tmp, b)
    with pytest.warns(StoreWarning, match="holds the result of another scenario"):
        again = sxb.run_sensitivity(example, two_scenarios, store=store)
    assert again.attrs["n_reused"] == 0
    xr.testing.assert_equal(again["p_cr_new_site"], first["p_cr_new_site"])
    edited = sxb.read_dataset(a)
    edited["prob_better"] = edited["prob_better"] * 0 + 0.99
    edited.to_netcdf(a, engine="h5netcdf")
    with pytest.warns(StoreWarning, match="does not match its checksum"):
        sxb.run_sensitivity(example, two_scenarios, store=store)


def test_one_run_at_a_time_holds_a_store(tmp_path):
    with Store(tmp_path / "store"), pytest.raises(StoreError, match="in use by another run"):
        with Store(tmp_path / "store"):
            pass
    with Store(tmp_path / "store"):  # released when the first run ends
        pass


def test_zero_usable_scenarios_are_not_assessable(example):
    grid = Grid.from_list([{"name": "baseline"}], draws=100, tune=100, chains=2, ess_min=10**6)
    sens = sxb.run_sensitivity(example, grid)
    table = sxb.conclusions(sens)
    assert (table["flips"] == "not assessable").all()
    assert table["p_better_baseline"].isnull().all()
