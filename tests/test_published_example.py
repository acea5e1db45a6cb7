"""A classic hierarchical binomial analysis, reproduced through the package's API.

Source: "Surgical: Institutional ranking", random-effects model, in the BUGS
Examples Volume 1 (Spiegelhalter, Thomas, Best & Gilks, 1996; OpenBUGS Examples,
MRC Biostatistics Unit). Mortality after cardiac surgery in babies at 12 hospitals:

    r[i] ~ Binomial(p[i], n[i]);  logit p[i] = b[i];  b[i] ~ Normal(mu, tau)
    mu ~ dnorm(0, 1.0E-6)  (sd 1000);  tau ~ dgamma(0.001, 0.001);  sigma = 1/sqrt(tau)

This is our ``base`` model with the hospitals as the partially pooled factor, one
site and one severity (both terms drop), ``intercept ~ Normal(0, 1000)`` and
``regimen_sd ~ GammaPrecision(0.001, 0.001)``. The published table (OpenBUGS,
20,000 samples after 1,000 burn-in) gives mean, MC error and 2.5% / 97.5% points.
"""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest
from scipy import special, stats
from scipy.special import expit

import scleromx_bayes as sxb

N = [47, 148, 119, 810, 211, 196, 148, 215, 207, 97, 256, 360]
R = [0, 18, 8, 46, 8, 13, 9, 31, 14, 8, 29, 24]
HOSPITALS = list("ABCDEFGHIJKL")  # as the hospitals are labelled in the BUGS example

# node: (mean, MC error, 2.5%, 97.5%, ESS) from the published OpenBUGS results table
PUBLISHED = {
    "A": (0.05308, 2.53e-4, 0.01802, 0.09438, 6088),
    "B": (0.1031, 2.241e-4, 0.0668, 0.1514, 9488),
    "C": (0.07078, 1.333e-4, 0.0399, 0.109, 17125),
    "D": (0.05926, 7.644e-5, 0.04464, 0.07571, 10717),
    "E": (0.05159, 1.73e-4, 0.02777, 0.07921, 5910),
    "F": (0.06916, 1.109e-4, 0.0428, 0.1009, 17753),
    "G": (0.06676, 1.244e-4, 0.03809, 0.1006, 16373),
    "H": (0.1234, 2.89e-4, 0.08337, 0.1713, 6152),
    "I": (0.06989, 1.136e-4, 0.04394, 0.1009, 16329),
    "J": (0.07834, 1.668e-4, 0.04499, 0.1228, 14111),
    "K": (0.1021, 1.768e-4, 0.0713, 0.1401, 9903),
    "L": (0.06847, 9.305e-5, 0.04711, 0.09309, 15869),
    "mu": (-2.556, 0.001469, -2.877, -2.274, 10686),
    "pop.mean": (0.07265, 9.645e-5, 0.05333, 0.09332, 10905),
    "sigma": (0.4049, 0.00284, 0.1628, 0.7838, 3160),
}


@pytest.fixture(scope="module")
def surgical_fit():
    counts = pd.DataFrame(
        {"site": "all", "regimen": HOSPITALS, "severity": "all", "n": N, "n_cr": R}
    )
    cohort = sxb.read_counts(counts, regimen_order=HOSPITALS)
    spec = sxb.load_spec("base").with_overrides(
        {
            "priors.intercept": {"dist": "Normal", "mu": 0.0, "sigma": 1000.0},
            "priors.regimen_sd": {"dist": "GammaPrecision", "alpha": 0.001, "beta": 0.001},
        },
        name="surgical",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return sxb.fit(cohort, spec, draws=4000, tune=1500, chains=4, seed=2024)


def _draws(fit, node: str) -> np.ndarray:
    post = fit.posterior["posterior"]
    if node == "mu":
        x = post["intercept"]
    elif node == "pop.mean":
        x = expit(post["intercept"])
    elif node == "sigma":
        x = post["regimen_sd"]
    else:
        x = expit(post["regimen_logit"].sel(regimen=node))
    return np.asarray(x)  # (chain, draw)


def test_structure_is_the_bugs_model(surgical_fit):
    free = set(surgical_fit.posterior["posterior"].data_vars)
    assert {"intercept", "regimen_sd", "regimen_sd_precision", "regimen_z"} <= free
    assert "site_sd" not in free and "severity_shift" not in free  # one level: dropped
    assert surgical_fit.diagnostics.divergences == 0
    assert surgical_fit.diagnostics.max_rhat < 1.01


@pytest.mark.parametrize("node", list(PUBLISHED))
def test_matches_the_published_posterior(surgical_fit, node):
    mean, mc_error, lo, hi, published_ess = PUBLISHED[node]
    x = _draws(surgical_fit, node)
    tolerance = 4 * np.hypot(float(az.mcse(x, method="mean")), mc_error)
    assert abs(x.mean() - mean) < tolerance, (node, x.mean(), mean, tolerance)
    # The table gives no MC error for its quantiles: take ours and scale it by the
    # ratio of effective sample sizes for theirs (MC error goes as 1/sqrt(ESS)).
    for prob, published in ((0.025, lo), (0.975, hi)):
        ours_mcse = float(az.mcse(x, method="quantile", prob=prob))
        ess = float(az.ess(x, method="quantile", prob=prob))
        theirs_mcse = ours_mcse * np.sqrt(ess / published_ess)
        tolerance = 4 * np.hypot(ours_mcse, theirs_mcse)
        got = np.quantile(x, prob)
        assert abs(got - published) < tolerance, (node, prob, got, published, tolerance)


def exact_mu_sigma() -> dict[str, tuple[float, float, float]]:
    """Mean, 2.5% and 97.5% points of mu and sigma by numerical integration.

    Given (mu, sigma) each hospital's likelihood is a 1-D integral over its b[i]
    (Gauss-Hermite, 60 nodes), so the joint posterior of (mu, sigma) is a 2-D grid.
    """
    x, w = np.polynomial.hermite.hermgauss(60)
    mu = np.linspace(-3.6, -1.6, 241)
    sigma = np.linspace(1e-3, 2.5, 900)
    m, s = np.meshgrid(mu, sigma, indexing="ij")
    b = m[..., None] + np.sqrt(2) * s[..., None] * x
    log_post = stats.norm.logpdf(m, 0, 1000)
    # tau = 1/sigma^2 ~ Gamma(0.001, rate 0.001); |d tau / d sigma| = 2 / sigma^3
    log_post += stats.gamma.logpdf(1 / s**2, 0.001, scale=1000) + np.log(2 / s**3)
    # the binomial log-likelihood from log p and log(1 - p), computed once for all
    # hospitals (scipy's binom.pmf on these 13 million points took 1.4 s a hospital)
    log_p, log_q = -np.logaddexp(0, -b), -np.logaddexp(0, b)
    for n, r in zip(N, R, strict=True):
        log_choose = special.gammaln(n + 1) - special.gammaln(r + 1) - special.gammaln(n - r + 1)
        likelihood = np.exp(log_choose + r * log_p + (n - r) * log_q)
        log_post += np.log((likelihood * w).sum(-1) / np.sqrt(np.pi))
    post = np.exp(log_post - log_post.max())
    post /= post.sum()
    out = {}
    for name, grid, marginal in (("mu", mu, post.sum(1)), ("sigma", sigma, post.sum(0))):
        cdf = np.cumsum(marginal)
        lo, hi = np.interp([0.025, 0.975], cdf, grid)
        out[name] = (float((marginal * grid).sum()), float(lo), float(hi))
    return out


def test_exact_by_quadrature_agrees_with_published_and_with_us(surgical_fit):
    exact = exact_mu_sigma()
    for node, (mean, lo, hi) in exact.items():
        x = _draws(surgical_fit, node)
        assert abs(x.mean() - mean) < 4 * float(az.mcse(x, method="mean")), node
        for prob, value in ((0.025, lo), (0.975, hi)):
            mcse = float(az.mcse(x, method="quantile", prob=prob))
            assert abs(np.quantile(x, prob) - value) < 4 * mcse, (node, prob)
        # and the published table agrees with the quadrature (the source is sound)
        published_mean, mc_error = PUBLISHED[node][:2]
        assert abs(published_mean - mean) < 4 * mc_error + 2e-3, (node, published_mean, mean)


def test_summary_reports_the_same_hospital_probabilities(surgical_fit):
    ds = surgical_fit.summary()
    # one site, no site effect: new-site and typical-site probabilities are the same
    typical = ds.p_cr_typical_site.sel(severity="all", stat="mean")
    np.testing.assert_allclose(ds.p_cr_new_site.sel(severity="all", stat="mean"), typical)
    # hospital H (31/215) has the highest probability most often (published median rank 12 of 12)
    rp = ds.rank_probability.sel(severity="all", rank=1)
    assert str(rp.idxmax("regimen").item()) == "H"
