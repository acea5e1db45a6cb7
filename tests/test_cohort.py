"""Reading, validation, outcome definitions and aggregation of cohort tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import scleromx_bayes as sxb
from conftest import write_csv
from scleromx_bayes import CohortError, OutcomeDefinition

HEADER = "patient_id,site,regimen,severity,response\n"


def problems(exc: CohortError) -> list[str]:
    return [str(p) for p in exc.problems]


def test_missing_column_suggests_near_name(tmp_path):
    path = write_csv(tmp_path, "patient_id,site,regimen,severty,response\np1,A,HDIVig,severe,CR\n")
    with pytest.raises(CohortError) as e:
        sxb.read_cohort(path)
    assert problems(e.value) == [
        "cohort.csv, column 'severity': required column is missing (did you mean 'severty'?)"
    ]


def test_column_names_are_normalised(tmp_path):
    path = write_csv(
        tmp_path, "Patient ID, Site ,REGIMEN,Severity,Response\np1,A,HDIVig,Non-Severe,cr\n"
    )
    cohort = sxb.read_cohort(path)
    assert list(cohort.table.columns[:5]) == [
        "patient_id",
        "site",
        "regimen",
        "severity",
        "response",
    ]
    assert cohort.severities == ("nonsevere",)
    assert cohort.table["response"].tolist() == ["CR"]


def test_unknown_response_code_names_row_and_column(tmp_path):
    path = write_csv(tmp_path, HEADER + "p1,A,HDIVig,severe,CR\np2,A,HDIVig,severe,maybe\n")
    with pytest.raises(CohortError) as e:
        sxb.read_cohort(path)
    assert problems(e.value) == [
        "cohort.csv, row 3, column 'response': unknown response code 'maybe' (use CR, PR, NR or NE)"
    ]


def test_blank_response_is_an_error_not_a_guess(tmp_path):
    path = write_csv(tmp_path, HEADER + "p1,A,HDIVig,severe,\n")
    with pytest.raises(CohortError, match=r"row 2, column 'response': blank response \(write NE"):
        sxb.read_cohort(path)


@pytest.mark.parametrize(
    "column,row",
    [
        ("patient_id", ",A,HDIVig,severe,CR"),
        ("site", "p1, ,HDIVig,severe,CR"),
        ("regimen", "p1,A,,severe,CR"),
        ("severity", "p1,A,HDIVig,,CR"),
    ],
)
def test_blank_labels(tmp_path, column, row):
    path = write_csv(tmp_path, HEADER + "p0,A,HDIVig,severe,CR\n" + row + "\n")
    with pytest.raises(CohortError) as e:
        sxb.read_cohort(path)
    assert f"cohort.csv, row 3, column '{column}': blank {column}" in problems(e.value)


def test_empty_and_duplicated_rows(tmp_path):
    path = write_csv(tmp_path, HEADER + "p1,A,HDIVig,severe,CR\n,,,,\np1,A,HDIVig,severe,CR\n")
    with pytest.raises(CohortError) as e:
        sxb.read_cohort(path)
    msgs = problems(e.value)
    assert "cohort.csv, row 3: empty row" in msgs
    assert (
        "cohort.csv, row 4: duplicated episode (add a 'line' column to tell repeated "
        "treatments apart): rows 2, 4 are the same"
    ) in msgs


def test_empty_table(tmp_path):
    with pytest.raises(CohortError, match="no data rows"):
        sxb.read_cohort(write_csv(tmp_path, HEADER))


def test_patient_at_two_sites(tmp_path):
    path = write_csv(tmp_path, HEADER + "p1,A,HDIVig,severe,NR\np1,B,Len,severe,CR\n")
    with pytest.raises(CohortError) as e:
        sxb.read_cohort(path)
    assert problems(e.value) == [
        "cohort.csv, row 3, column 'site': patient 'p1' is recorded at two sites ('A' and 'B')"
    ]


def test_row_numbers_count_leading_comment_lines(tmp_path):
    path = write_csv(tmp_path, "# a comment\n# another\n" + HEADER + "p1,A,HDIVig,severe,XX\n")
    with pytest.raises(CohortError, match="row 4, column 'response'"):
        sxb.read_cohort(path)


def test_whitespace_case_and_aliases(tmp_path):
    path = write_csv(
        tmp_path,
        HEADER + "p1,Centre  A,HDIVig,severe,CR\n"
        "p2, centre a ,hdivig,severe,Complete response\n"
        "p3,Centre A,IVIg,nonsevere,partial\n",
    )
    cohort = sxb.read_cohort(path, regimen_aliases={"ivig": "HDIVig"})
    assert cohort.sites == ("Centre A",)
    assert cohort.regimens == ("HDIVig",)
    assert cohort.severities == ("nonsevere", "severe")
    assert cohort.table["response"].tolist() == ["CR", "CR", "PR"]


def test_extra_columns_are_kept(tmp_path):
    path = write_csv(
        tmp_path,
        "patient_id,site,regimen,severity,response,line,age\n"
        "p1,A,HDIVig,severe,CR,1,60\np1,A,HDIVig,severe,NR,2,61\n",
    )
    cohort = sxb.read_cohort(path)
    assert cohort.extra_columns == ("line", "age")
    assert cohort.n_patients == 1 and cohort.n_episodes == 2


def test_unsupported_file_type(tmp_path):
    path = tmp_path / "cohort.json"
    path.write_text("{}")
    with pytest.raises(CohortError, match=r"cohort.json: unsupported file type '\.json'"):
        sxb.read_cohort(path)


def test_excel_and_parquet_read_the_same(tmp_path, example):
    table = example.table
    xlsx, parquet = tmp_path / "c.xlsx", tmp_path / "c.parquet"
    table.to_excel(xlsx, index=False)
    table.to_parquet(parquet, index=False)
    for path in (xlsx, parquet):
        cohort = sxb.read_cohort(path, regimen_order=example.regimens)
        pd.testing.assert_frame_equal(cohort.cells().frame, example.cells().frame)


def test_excel_error_names_row(tmp_path):
    frame = pd.DataFrame(
        {
            "patient_id": ["p1", "p2"],
            "site": ["A", "A"],
            "regimen": ["HDIVig", "HDIVig"],
            "severity": ["severe", "severe"],
            "response": ["CR", "??"],
        }
    )
    path = tmp_path / "c.xlsx"
    frame.to_excel(path, index=False)
    with pytest.raises(CohortError, match=r"c.xlsx, row 3, column 'response'"):
        sxb.read_cohort(path)


# -- outcome definitions ------------------------------------------------------

EPISODES = pd.DataFrame(
    {
        "patient_id": [f"p{i}" for i in range(6)],
        "site": ["A"] * 6,
        "regimen": ["R"] * 6,
        "severity": ["severe"] * 6,
        "response": ["CR", "CR", "PR", "NR", "NE", "NE"],
    }
)


@pytest.mark.parametrize(
    "response,ne,n,y",
    [
        ("cr", "exclude", 4, 2),
        ("cr", "failure", 6, 2),
        ("cr", "success", 6, 4),
        ("orr", "exclude", 4, 3),
        ("orr", "failure", 6, 3),
        ("orr", "success", 6, 5),
    ],
)
def test_outcome_definitions(response, ne, n, y):
    cells = sxb.read_cohort(EPISODES).cells(OutcomeDefinition(response, ne=ne))
    assert (int(cells.n.sum()), int(cells.y.sum())) == (n, y)


def test_outcome_definition_rejects_unknown_values():
    with pytest.raises(ValueError, match="outcome must be 'cr' or 'orr'"):
        OutcomeDefinition("pr")
    with pytest.raises(ValueError, match="NE policy"):
        OutcomeDefinition("cr", ne="drop")


def test_cells_keep_their_shape_when_all_episodes_are_excluded():
    frame = EPISODES.assign(site=["A", "A", "A", "A", "B", "B"])
    cells = sxb.read_cohort(frame).cells(OutcomeDefinition("cr", ne="exclude"))
    assert cells.frame[["site", "n", "y"]].values.tolist() == [["A", 4, 2], ["B", 0, 0]]


def test_aggregation_of_example(example):
    cells = example.cells()
    # every episode lands in exactly one cell; the published aggregates hold
    assert int(cells.n.sum()) == 46 and len(cells.frame) == len(
        example.table.groupby(["regimen", "site", "severity"])
    )
    by_regimen = cells.frame.groupby("regimen")[["n", "y"]].sum()
    hdivig = by_regimen.loc[["HDIVig", "HDIVig+steroids"]].sum()
    assert (hdivig["y"], hdivig["n"]) == (13, 31)
    assert tuple(by_regimen.loc["DNS rescue"]) == (5, 4)
    n, y = cells.count_grid()
    assert n.shape == (6, 2, 7) and n.sum() == 46 and y.sum() == cells.y.sum()


# -- counts tables ----------------------------------------------------------------

COUNTS = (
    "site,regimen,severity,n,n_cr,n_pr,n_ne\nA,HDIVig,nonsevere,10,4,2,1\nB,HDIVig,severe,5,1,1,0\n"
)


def test_counts_outcomes(tmp_path):
    cohort = sxb.read_counts(write_csv(tmp_path, COUNTS))
    assert cohort.kind == "counts" and cohort.n_patients is None
    get = lambda r, ne: cohort.cells(OutcomeDefinition(r, ne=ne)).frame[["n", "y"]].values.tolist()  # noqa: E731
    assert get("cr", "exclude") == [[9, 4], [5, 1]]
    assert get("cr", "failure") == [[10, 4], [5, 1]]
    assert get("cr", "success") == [[10, 5], [5, 1]]
    assert get("orr", "exclude") == [[9, 6], [5, 2]]


def test_counts_orr_needs_n_pr(tmp_path):
    cohort = sxb.read_counts(write_csv(tmp_path, "site,regimen,severity,n,n_cr\nA,R,severe,3,1\n"))
    with pytest.raises(CohortError, match="outcome 'orr' \\(CR\\+PR\\) needs an 'n_pr' column"):
        cohort.cells(OutcomeDefinition("orr"))


@pytest.mark.parametrize(
    "row,message",
    [
        ("A,R,severe,3,4", "row 2, column 'n_cr': n_cr (4) is larger than n (3)"),
        ("A,R,severe,-3,1", "row 2, column 'n': count '-3' is negative"),
        ("A,R,severe,3.5,1", "row 2, column 'n': count '3.5' is not a whole number"),
        ("A,R,severe,three,1", "row 2, column 'n': count 'three' is not a whole number"),
        ("A,R,severe,3,", "row 2, column 'n_cr': count '' is blank"),
    ],
)
def test_bad_counts(tmp_path, row, message):
    path = write_csv(tmp_path, "site,regimen,severity,n,n_cr\n" + row + "\n", "counts.csv")
    with pytest.raises(CohortError) as e:
        sxb.read_counts(path)
    assert any(message in p for p in problems(e.value)), problems(e.value)


def test_bad_counts_and_bad_sums_reported_together(tmp_path):
    # a row whose counts cannot be read does not hide another row's impossible sum
    path = write_csv(
        tmp_path, "site,regimen,severity,n,n_cr\nA,R,severe,3,4\nB,R,severe,3.5,1\n", "counts.csv"
    )
    with pytest.raises(CohortError) as e:
        sxb.read_counts(path)
    found = problems(e.value)
    assert len(found) == 2, found
    assert any("row 2, column 'n_cr': n_cr (4) is larger than n (3)" in p for p in found)
    assert any("row 3, column 'n': count '3.5' is not a whole number" in p for p in found)


def test_duplicated_count_cell(tmp_path):
    path = write_csv(tmp_path, "site,regimen,severity,n,n_cr\nA,R,severe,3,1\na ,r,SEVERE,2,1\n")
    with pytest.raises(CohortError, match="duplicated site x regimen x severity cell: rows 2, 3"):
        sxb.read_counts(path)


def test_read_data_tells_kinds_apart(tmp_path):
    counts = write_csv(tmp_path, COUNTS, "counts.csv")
    episodes = write_csv(tmp_path, HEADER + "p1,A,R,severe,CR\n", "episodes.csv")
    assert sxb.read_data(counts).kind == "counts"
    assert sxb.read_data(episodes).kind == "episodes"
    with pytest.raises(CohortError, match="required column is missing"):
        sxb.read_data(counts, kind="episodes")


def test_leave_out_helpers(example):
    without = example.without_sites(["Centre A"])
    assert "Centre A" not in without.sites and len(without.sites) == 6
    assert without.n_episodes == example.n_episodes - int(
        (example.table["site"] == "Centre A").sum()
    )
    assert "DNS rescue" not in example.without_regimens(["DNS rescue"]).regimens


def test_fingerprint_is_order_independent(example):
    shuffled = sxb.read_cohort(example.table.sample(frac=1, random_state=1))
    assert shuffled.fingerprint() == example.fingerprint()
    changed = example.table.copy()
    changed.loc[0, "response"] = "NE" if changed.loc[0, "response"] != "NE" else "CR"
    assert sxb.read_cohort(changed).fingerprint() != example.fingerprint()


def test_example_is_regenerated_byte_for_byte():
    from scleromx_bayes.simulate import example_csv_text, example_path

    assert example_path().read_text() == example_csv_text()
    assert example_path().read_text().startswith("# SYNTHETIC DATA")


def test_example_design(example):
    assert example.synthetic
    assert example.n_patients == 33 and 6 <= len(example.sites) <= 8
    sizes = example.table.groupby("site")["patient_id"].nunique()
    assert sizes.nunique() > 1  # unequal centres
    assert example.table.groupby("patient_id").size().max() >= 2  # repeated episodes
    assert set(example.regimens) == {
        "HDIVig",
        "HDIVig+steroids",
        "Len-Dex-HDIVig",
        "Bor-Dex-HDIVig",
        "Dara-Dex-HDIVig",
        "DNS rescue",
    }
    assert np.isin(example.table["response"], ["CR", "PR", "NR", "NE"]).all()
