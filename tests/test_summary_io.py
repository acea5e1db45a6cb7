"""The posterior summary Dataset, its round trips and its privacy."""

from __future__ import annotations

import json
import warnings

import arviz as az
import numpy as np
import pytest
import xarray as xr
from scipy import integrate, stats
from scipy.special import expit

import scleromx_bayes as sxb
from scleromx_bayes.summary import (
    describe_together,
    expected_expit,
    posterior_probabilities,
)


def test_summary_variables_and_dims(base_summary, example):
    ds = base_summary
    assert ds.p_cr_new_site.dims == ("regimen", "severity", "stat")
    assert ds.p_cr_by_site.dims == ("regimen", "severity", "site", "stat")
    assert list(ds.stat.values) == ["mean", "median", "sd", "hdi_lower", "hdi_upper"]
    assert list(ds.regimen.values) == list(example.regimens)
    assert list(ds.site.values) == list(example.sites)
    for name in ("p_cr_new_site", "p_cr_typical_site", "p_cr_by_site"):
        s = ds[name]
        assert bool(((s >= 0) & (s <= 1)).all()), name
        assert bool((s.sel(stat="hdi_lower") <= s.sel(stat="mean")).all())
        assert bool((s.sel(stat="mean") <= s.sel(stat="hdi_upper")).all())
    assert ds.prob_above.dims == ("regimen", "severity", "threshold")
    # P(p > 0.25) >= P(p > 0.5) always
    assert bool((ds.prob_above.sel(threshold=0.25) >= ds.prob_above.sel(threshold=0.5)).all())


def test_contrasts_against_reference(base_summary):
    ds = base_summary
    assert ds.attrs["reference_regimen"] == "HDIVig"
    assert bool(ds.prob_better.sel(regimen="HDIVig").isnull().all())
    assert bool(ds.risk_difference.sel(regimen="HDIVig").isnull().all())
    other = ds.prob_better.sel(regimen="DNS rescue")
    assert bool(((other >= 0) & (other <= 1)).all())
    # the mean risk difference is the difference of mean probabilities
    rd = ds.risk_difference.sel(regimen="DNS rescue", stat="mean")
    p = ds.p_cr_new_site.sel(stat="mean")
    np.testing.assert_allclose(
        rd, p.sel(regimen="DNS rescue") - p.sel(regimen="HDIVig"), atol=1e-12
    )
    assert bool((ds.odds_ratio.sel(regimen="DNS rescue") > 0).all())


def test_rank_probabilities_are_distributions(base_summary):
    rp = base_summary.rank_probability
    np.testing.assert_allclose(rp.sum("rank"), 1.0)
    np.testing.assert_allclose(rp.sum("regimen"), 1.0)


def test_new_site_probability_integrates_the_site_effect(base_fit):
    """Quadrature against brute-force Monte Carlo over a new site's effect."""
    probs = posterior_probabilities(base_fit)
    post = base_fit.posterior["posterior"]
    rng = np.random.default_rng(0)
    z = rng.standard_normal(200_000)
    eta = float(post["regimen_logit"].isel(chain=0, draw=0, regimen=0))
    sd = float(post["site_sd"].isel(chain=0, draw=0))
    mc = expit(eta + sd * z).mean()
    quad = float(probs["new_site"].isel(chain=0, draw=0, regimen=0, severity=0))
    assert quad == pytest.approx(mc, abs=3e-3)
    # with a positive site SD the new-site probability is pulled toward 1/2
    typical = probs["typical_site"]
    assert bool((abs(probs["new_site"] - 0.5) <= abs(typical - 0.5) + 1e-12).all())


def test_counts_and_privacy(base_summary, example):
    ds = base_summary
    assert int(ds.n_evaluable.sum()) == int(example.cells().n.sum())
    assert int(ds.n_responders.sum()) == int(example.cells().y.sum())
    text = str(ds.to_dict())
    for pid in example.table["patient_id"].unique():
        assert f"'{pid}'" not in text


def test_provenance_attrs(base_summary, example):
    a = base_summary.attrs
    assert sxb.ModelSpec.from_toml(a["model_spec_toml"]) == sxb.load_spec("base")
    assert a["data_fingerprint"] == example.fingerprint()
    assert a["seed"] == 11 and a["sampler"] == "nutpie" and a["draws"] == 400
    assert a["synthetic"] == 1 and "SYNTHETIC" in a["note"]
    assert "pymc" in json.loads(a["versions"])
    assert a["outcome"] == "cr" and a["ne_policy"] == "exclude"
    for key in (
        "diagnostics_max_rhat",
        "diagnostics_min_ess_bulk",
        "diagnostics_divergences",
        "created",
    ):
        assert key in a


@pytest.mark.parametrize("suffix", [".nc", ".zarr"])
def test_round_trip_identical(base_summary, tmp_path, suffix):
    # and silently: a warning on every write (zarr 3's on consolidated metadata)
    # would reach every user of --format zarr, who can do nothing about it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = sxb.write_dataset(base_summary, tmp_path / f"summary{suffix}")
    xr.testing.assert_identical(sxb.read_dataset(path), base_summary)
    # writing again replaces it whole
    sxb.write_dataset(base_summary.isel(regimen=[0]), path)
    assert sxb.read_dataset(path).sizes["regimen"] == 1
    assert [p.name for p in tmp_path.iterdir()] == [f"summary{suffix}"]  # no temp left


def test_failed_write_keeps_the_old_file(base_summary, tmp_path):
    path = sxb.write_dataset(base_summary, tmp_path / "summary.nc")
    before = path.read_bytes()
    bad = base_summary.copy()
    bad.attrs["unserialisable"] = {"a": object()}
    with pytest.raises((TypeError, ValueError)):
        sxb.write_dataset(bad, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["summary.nc"]


def test_posterior_round_trip(base_fit, tmp_path):
    path = sxb.write_posterior(base_fit.posterior, tmp_path / "posterior.nc")
    back = sxb.read_posterior(path)
    xr.testing.assert_equal(
        back["posterior"].to_dataset(), base_fit.posterior["posterior"].to_dataset()
    )
    assert set(back.children) >= {"posterior", "sample_stats", "observed_data", "constant_data"}


@pytest.mark.parametrize("sd", [0.0, 0.3, 1.0, 1.3, 1.31, 2.5, 6.0, 20.0])
def test_expected_expit_equals_adaptive_quadrature(sd):
    """Both rules (Gauss-Hermite up to SD 1.3, probit part plus Gauss-Laguerre above)
    against scipy's adaptive quadrature, over the log-odds a posterior reaches."""
    etas = np.linspace(-8.0, 8.0, 17)

    def exact(eta):
        if sd == 0:
            return expit(eta)
        density = lambda z: expit(eta + sd * z) * stats.norm.pdf(z)  # noqa: E731
        return integrate.quad(density, -40, 40, epsabs=1e-14, epsrel=1e-14, limit=400)[0]

    got = expected_expit(xr.DataArray(etas, dims="draw"), xr.DataArray(sd))
    assert got.dims == ("draw",)
    np.testing.assert_allclose(got.values, [exact(e) for e in etas], rtol=0, atol=1e-11)
    # per draw: an SD that differs between draws takes each draw's own rule
    sds = xr.DataArray(np.where(np.arange(17) % 2, sd, 0.7), dims="draw")
    mixed = expected_expit(xr.DataArray(etas, dims="draw"), sds)
    np.testing.assert_allclose(mixed.values[1::2], got.values[1::2], rtol=0, atol=0)
    narrow = expected_expit(xr.DataArray(etas[::2], dims="draw"), xr.DataArray(0.7))
    np.testing.assert_allclose(mixed.values[::2], narrow.values, rtol=0, atol=0)


def test_describing_arrays_together_equals_arviz_one_by_one():
    rng = np.random.default_rng(7)
    draws = {
        "scalar": xr.DataArray(rng.normal(size=(3, 50)), dims=("chain", "draw")),
        "by_regimen": xr.DataArray(
            rng.gamma(2.0, size=(3, 50, 4)),
            dims=("chain", "draw", "regimen"),
            coords={"regimen": list("abcd")},
        ),
        # chain and draw not first: described all the same
        "grid": xr.DataArray(
            rng.beta(2.0, 5.0, size=(2, 3, 3, 50)),
            dims=("regimen", "site", "chain", "draw"),
            coords={"regimen": ["x", "y"], "site": [1, 2, 3]},
        ),
    }
    draws["grid"][0, 1, 2, 7] = np.nan  # skipped, as xarray's reductions skip it
    out = describe_together(draws, 0.8)
    for name, d in draws.items():
        got = out[name]
        assert got.dims == (*[x for x in d.dims if x not in ("chain", "draw")], "stat")
        for dim in got.dims[:-1]:
            assert got[dim].values.tolist() == d[dim].values.tolist()
        hdi = az.hdi(d, prob=0.8)
        expected = {
            "mean": d.mean(("chain", "draw")),
            "median": d.median(("chain", "draw")),
            "sd": d.std(("chain", "draw"), ddof=1),
            "hdi_lower": hdi.sel(ci_bound="lower"),
            "hdi_upper": hdi.sel(ci_bound="upper"),
        }
        for stat, value in expected.items():
            np.testing.assert_allclose(
                got.sel(stat=stat).values, value.transpose(*got.dims[:-1]).values, rtol=1e-13
            )
    assert np.isfinite(out["grid"].sel(regimen="x", site=2, stat="mean")).item()


def test_summary_arguments(base_fit):
    ds = base_fit.summary(hdi_prob=0.5, thresholds=[0.4], reference="DNS rescue")
    wide = base_fit.summary(hdi_prob=0.95)
    width = lambda d: d.p_cr_new_site.sel(stat="hdi_upper") - d.p_cr_new_site.sel(stat="hdi_lower")  # noqa: E731
    assert bool((width(ds) < width(wide)).all())
    assert list(ds.threshold.values) == [0.4]
    assert bool(ds.prob_better.sel(regimen="DNS rescue").isnull().all())
    with pytest.raises(ValueError, match="reference regimen 'X' is not in the data"):
        base_fit.summary(reference="X")
    with pytest.raises(ValueError, match="thresholds must lie strictly between 0 and 1"):
        base_fit.summary(thresholds=[1.5])
