"""The report: every number from the same Dataset the API returns (checked cell by
cell), the files a manuscript needs, the synthetic banner, the red diagnostics
banner, and the page as a real browser shows it (headless Chromium)."""

from __future__ import annotations

import os
import warnings
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import scleromx_bayes as sxb
from conftest import invoke_cli, quiet_fit, real_browser


class _Tables(HTMLParser):
    """Every table of a page: its id, header and the text of each body cell."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, dict] = {}
        self._table = self._cell = None
        self._section = ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table":
            self._table = {"header": [], "rows": []}
            self.tables[attrs.get("id", "")] = self._table
        elif self._table is not None and tag == "thead":
            self._section = "head"
        elif self._table is not None and tag == "tbody":
            self._section = "body"
        elif self._table is not None and tag == "tr" and self._section == "body":
            self._table["rows"].append([])
        elif self._table is not None and tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._cell is not None:
            text = "".join(self._cell).strip()
            if self._section == "head":
                self._table["header"].append(text)
            else:
                self._table["rows"][-1].append(text)
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def tables_of(html: str) -> dict[str, dict]:
    parser = _Tables()
    parser.feed(html)
    return parser.tables


@pytest.fixture(scope="module")
def example_report(tmp_path_factory, example, base_fit):
    out = tmp_path_factory.mktemp("report") / "report"
    oc = sxb.read_dataset(_small_oc(tmp_path_factory, example))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        files = sxb.report(example, base_fit, out, oc=oc, command="pytest")
    return files, base_fit.summary()


def _small_oc(tmp_path_factory, example) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        oc = sxb.operating_characteristics(
            example,
            "base",
            [sxb.Truth.at_reference(example), sxb.Truth.one_better("DNS rescue", 0.3, p=0.3)],
            sxb.DecisionRule.better(0.9),
            n_sims=4,
            seed=2,
            settings=sxb.SamplerSettings(draws=100, tune=100, chains=2),
        )
    path = tmp_path_factory.mktemp("oc") / "oc.nc"
    sxb.write_dataset(oc, path)
    return path


def test_every_results_cell_is_the_summarys_number(example_report):
    files, ds = example_report
    tables = tables_of(files.html.read_text())
    table = tables["table-results_p_cr"]
    assert table["header"][:3] == ["regimen", "severity", "evaluable"]
    p = ds["p_cr_new_site"]
    assert len(table["rows"]) == p.sizes["regimen"] * p.sizes["severity"]
    for row in table["rows"]:
        regimen, severity = row[0], row[1]
        cell = p.sel(regimen=regimen, severity=severity)
        n = int(ds["n_evaluable"].sel(regimen=regimen, severity=severity).sum())
        assert row[2] == str(n)
        for text, stat in zip(row[3:6], ("mean", "hdi_lower", "hdi_upper"), strict=True):
            assert text == f"{float(cell.sel(stat=stat)):.3f}", (regimen, severity, stat)
    contrasts = tables["table-results_contrasts"]
    ref = ds.attrs["reference_regimen"]
    for row in contrasts["rows"]:
        regimen, severity = row[0], row[1]
        assert regimen != ref
        pb = float(ds["prob_better"].sel(regimen=regimen, severity=severity))
        assert row[-1] == f"{pb:.3f}"
        rd = float(ds["risk_difference"].sel(regimen=regimen, severity=severity, stat="mean"))
        assert row[2] == f"{rd:.3f}"


def test_the_report_has_every_file_a_manuscript_needs(example_report):
    files, ds = example_report
    html = files.html.read_text()
    assert "data:image/png;base64," in html and "http://" not in html.replace(
        "http://www.w3.org", ""
    )
    assert "<script" not in html  # nothing needs JavaScript
    for section in (
        "Data",
        "Methods",
        "Results",
        "Model checking",
        "Operating characteristics",
        "Reproducibility appendix",
        "References",
    ):
        assert section in html, section
    assert html.count('class="banner synthetic"') >= 8  # the top and every section
    md = files.markdown.read_text()
    assert "SYNTHETIC DATA" in md and "| regimen | severity | evaluable |" in md
    for table_id, (csv, tex) in files.tables.items():
        assert csv.exists() and tex.exists(), table_id
        text = tex.read_text()
        assert "\\toprule" in text and "\\bottomrule" in text, table_id  # booktabs
    for figure_id, (png, svg) in files.figures.items():
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", figure_id
        assert "<svg" in svg.read_text()[:500], figure_id
    assert set(files.figures) == {"forest", "ppc", "oc"}
    # the methods paragraph is written from the spec and the fit
    assert "binomial with a logit link" in html and "partially pooled" in html
    assert f"random seed {ds.attrs['seed']}" in html
    assert ds.attrs["data_fingerprint"] in html  # the appendix carries the full value
    assert "[1]" in html and "Abril-Pla" in html


def test_a_failed_diagnostic_raises_the_red_banner(example, tmp_path):
    fit = quiet_fit(example, "base", seed=3, draws=20, tune=20, chains=2)
    assert not fit.diagnostics.ok
    files = sxb.report(example, fit, tmp_path / "r")
    html = files.html.read_text()
    assert 'id="diagnostics-banner"' in html and "crossed a threshold" in html
    assert 'class="banner danger"' in html


def test_report_command_writes_the_report_and_no_identifier(tmp_path):
    """Through the command line on an identified file: the report folder holds no
    patient identifier anywhere."""
    frame = sxb.load_example().table.copy()
    ids = {pid: f"MRN-{int(pid[1:]) * 104729:07d}-MARTIN" for pid in frame["patient_id"].unique()}
    frame["patient_id"] = frame["patient_id"].map(ids)
    data = tmp_path / "episodes.csv"
    frame.to_csv(data, index=False)
    args = ["--draws", "200", "--tune", "200", "--chains", "2"]
    res = invoke_cli(
        "report",
        data,
        "--model",
        "base",
        "--model",
        "no_pooling",
        "--out",
        tmp_path / "report",
        *args,
    )
    assert res.returncode == 0, res.stderr
    files = [p for p in (tmp_path / "report").rglob("*") if p.is_file()]
    assert len(files) >= 20
    for path in files:
        content = path.read_bytes()
        for pid in ids.values():
            assert pid.encode() not in content, (path, pid)
    html = (tmp_path / "report" / "report.html").read_text()
    assert "table-loo" in html  # two models: a LOO comparison
    assert "report" in html and "--model no_pooling" in html  # the exact command


def test_the_report_in_a_real_browser(example_report, tmp_path):
    files, ds = example_report
    driver, why = real_browser()
    if driver is None:
        pytest.skip(f"no real browser here: {why}")  # -ra prints the reason
    from selenium.webdriver.common.by import By

    try:
        driver.get(files.html.resolve().as_uri())
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert errors == [], errors
        images = driver.execute_script(
            "return Array.from(document.images).map(i => [i.complete, i.naturalWidth]);"
        )
        assert len(images) == len(files.figures)
        assert all(done and width > 0 for done, width in images), images
        rows = driver.find_elements(By.CSS_SELECTOR, "#table-results_p_cr tbody tr")
        p = ds["p_cr_new_site"]
        assert len(rows) == p.sizes["regimen"] * p.sizes["severity"]
        first = rows[0].find_elements(By.TAG_NAME, "td")
        regimen, severity = first[0].text, first[1].text
        mean = float(p.sel(regimen=regimen, severity=severity, stat="mean"))
        assert first[3].text == f"{mean:.3f}"
        banner = driver.find_element(By.ID, "synthetic-banner")
        assert banner.is_displayed() and "SYNTHETIC DATA" in banner.text
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, min(int(height) + 100, 16000))
        shot = Path(os.environ.get("SXB_ARTIFACTS", tmp_path)) / "report-screenshot.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        assert driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
    finally:
        driver.quit()


def test_report_numbers_do_not_drift_from_a_read_back_summary(example_report, tmp_path):
    """The CSV carries full precision: it equals the Dataset exactly."""
    files, ds = example_report
    frame = pd.read_csv(files.tables["results_p_cr"][0])
    table = frame.set_index(["regimen", "severity"])
    for (regimen, severity), row in table.iterrows():
        cell = ds["p_cr_new_site"].sel(regimen=regimen, severity=severity)
        assert row["mean"] == pytest.approx(float(cell.sel(stat="mean")), rel=1e-12)
    assert isinstance(ds, xr.Dataset) and np.isfinite(frame["mean"]).all()


def test_a_borrowing_fit_reports_ess_weight_and_conflict(example, tmp_path):
    from scleromx_bayes.borrowing.evidence import example_evidence_path

    evidence = sxb.read_evidence(example_evidence_path(), regimens=example.regimens)
    fit = quiet_fit(example, "robust_map", evidence=evidence, draws=200, tune=200, chains=2)
    ds = fit.summary()
    files = sxb.report(example, fit, tmp_path / "r")
    table = tables_of(files.html.read_text())["table-borrowing"]
    assert table["header"][:3] == ["regimen", "prior ESS (elir)", "prior ESS (moment)"]
    assert len(table["rows"]) == len(fit.borrowing.mixtures)
    for row in table["rows"]:
        ess = float(ds["prior_ess"].sel(regimen=row[0], ess_method="elir"))
        assert row[1] == f"{ess:.2f}"
        weight = float(ds["robust_weight_posterior"].sel(regimen=row[0]))
        assert row[4] == f"{weight:.2f}"
        assert row[6]  # the studies borrowed from, cited
    html = files.html.read_text()
    assert "meta-analytic-predictive" in html and "Schmidli" in html  # method and citation
    assert "SYNTHETIC" in html  # synthetic evidence makes the result so
