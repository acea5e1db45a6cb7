"""Borrowing from published series: the evidence table, mixture priors and their
effective sample size, MAP priors against exact quadrature, prior-data conflict."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special, stats

import scleromx_bayes as sxb
from conftest import REFERENCE_MODE
from scleromx_bayes.borrowing import (
    BetaMixture,
    EvidenceError,
    NormalMixture,
    automixfit,
    example_evidence_path,
    fit_normal_mixture,
    map_prior,
    prior_data_conflict,
    read_evidence,
)

# Placebo arms of eight ankylosing spondylitis trials (ASAS20 at week 6), the
# historical controls of Baeten et al., The Lancet 2013;382(9906):1705, as shipped
# in RBesT's data set AS (inst/make_ds.R): n and responders per study.
AS_N = np.array([107, 44, 51, 39, 139, 20, 78, 35])
AS_R = np.array([23, 12, 19, 9, 39, 6, 9, 10])


def _evidence(n, r, regimen="placebo") -> sxb.borrowing.Evidence:
    frame = pd.DataFrame(
        {"study": [f"Study {i + 1}" for i in range(len(n))], "regimen": regimen, "n": n, "n_cr": r}
    )
    return read_evidence(frame)


# -- the evidence table -----------------------------------------------------------


def test_the_example_evidence_is_synthetic_and_maps_onto_the_cohort(example):
    ev = read_evidence(example_evidence_path(), regimens=example.regimens)
    assert ev.synthetic
    assert set(ev.regimens) <= set(example.regimens)
    assert (ev.table["n"] >= 2).all() and (ev.table["n"] <= 40).all()
    assert ev.table["citation"].str.contains("Synthetic").all()


def test_every_problem_in_an_evidence_table_is_named_with_row_and_column(tmp_path):
    path = tmp_path / "studies.csv"
    path.write_text(
        "study,regimen,n,n_cr,design\n"
        "S1,HDIVig,10,12,retrospective\n"  # n_cr > n
        "S2,IVIg,8,3,prospective\n"  # unknown regimen without alias
        "S3,HDIVig,x,3,case series\n"  # n not a count
        "S4,HDIVig,6,2,anecdote\n"  # design not allowed
        "S1,HDIVig,9,2,retrospective\n"  # duplicate study x regimen
    )
    with pytest.raises(EvidenceError) as info:
        read_evidence(path, regimens=["HDIVig", "DNS rescue"])
    text = str(info.value)
    assert "in the evidence table" in text
    for row, column in [(2, "n_cr"), (3, "regimen"), (4, "n"), (5, "design"), (6, "study")]:
        assert f"studies.csv, row {row}, column '{column}'" in text, text
    # an alias maps a spelling of the literature onto the cohort's regimen
    fixed = path.read_text().replace("S1,HDIVig,10,12", "S1,HDIVig,10,2")
    fixed = fixed.replace("x,3", "7,3").replace("anecdote", "case series")
    fixed = fixed.replace("S1,HDIVig,9,2", "S5,hdivig,9,2")
    path.write_text(fixed)
    ev = read_evidence(path, regimens=["HDIVig", "DNS rescue"], regimen_aliases={"IVIg": "HDIVig"})
    assert list(ev.table["regimen"]) == ["HDIVig"] * 5
    # a regimen the cohort does not have is refused unless asked for
    other = pd.DataFrame({"study": ["T"], "regimen": ["Thalidomide"], "n": [4], "n_cr": [1]})
    with pytest.raises(EvidenceError, match="not a regimen of the cohort"):
        read_evidence(other, regimens=["HDIVig"])
    assert read_evidence(other, regimens=["HDIVig"], allow_other_regimens=True).regimens == (
        "Thalidomide",
    )


# -- mixtures and effective sample size ------------------------------------------


@pytest.mark.parametrize("a,b", [(4.0, 6.0), (2.0, 2.0), (1.5, 30.0), (20.0, 5.0), (11.0, 32.0)])
def test_every_ess_method_gives_a_plus_b_for_a_beta_prior(a, b):
    prior = BetaMixture([1.0], [a], [b])
    for method in ("elir", "moment", "morris"):
        assert prior.ess(method) == pytest.approx(a + b, rel=1e-4), method


def test_elir_is_refused_where_its_integral_diverges():
    with pytest.raises(ValueError, match="a >= 1 and b >= 1"):
        BetaMixture([1.0], [0.8], [3.0]).ess("elir")
    # at a = 1 the (a - 1) / p^2 term vanishes and the integral converges: for Beta(1, b)
    # elir = (b - 1) E[p / (1 - p)] = (b - 1) a / (b - 1) = a (a robust uniform component
    # adds no information of its own; RBesT's robust ESS is reproduced below)
    assert BetaMixture([1.0], [1.0], [3.0]).ess("elir") == pytest.approx(1.0, rel=1e-3)


def test_normal_prior_ess_against_quadrature():
    """On the log-odds, one patient's information is p(1 - p): for N(m, s) the elir
    and moment ESS are E[1 / (p(1-p))] / s^2 and Morita's is 1 / (s^2 p(1-p)) at m
    (the prior's mode)."""
    m, s = -0.8, 0.6
    prior = NormalMixture([1.0], [m], [s])
    # 1 / (p (1 - p)) = e^x + 2 + e^-x, whose normal expectation is closed-form
    expected_inverse_info = np.exp(m + s**2 / 2) + 2 + np.exp(-m + s**2 / 2)
    assert prior.ess("elir") == pytest.approx(expected_inverse_info / s**2, rel=1e-5)
    assert prior.ess("moment") == pytest.approx(expected_inverse_info / s**2, rel=1e-5)
    p = special.expit(m)
    assert prior.ess("morris") == pytest.approx(1 / (s**2 * p * (1 - p)), rel=1e-3)


def test_the_mixture_fit_reproduces_a_known_mixture():
    truth = NormalMixture([0.6, 0.3, 0.1], [-1.2, 0.2, 1.5], [0.3, 0.5, 0.4])
    draws = truth.sample(12_000, np.random.default_rng(5))
    fitted, aic = automixfit(draws, max_components=4)
    qs = [0.025, 0.1, 0.25, 0.5, 0.75, 0.9, 0.975]
    np.testing.assert_allclose(
        fitted.probability_quantile(qs), truth.probability_quantile(qs), atol=0.01
    )
    assert min(aic, key=aic.get) == fitted.components >= 3
    assert fitted.ess("elir") == pytest.approx(truth.ess("elir"), rel=0.05)


def test_the_mixture_arithmetic_is_scipy_s_and_the_fit_is_an_em_fixed_point():
    from scleromx_bayes.borrowing import mixture

    rng = np.random.default_rng(3)
    x = rng.normal(size=(2000, 1)) * 3
    means, sds = np.array([-1.0, 0.5, 2.0]), np.array([0.4, 1.0, 2.5])
    # the same operations as scipy's, so the same bits
    assert np.array_equal(
        mixture._normal_log_density(x, means, sds), stats.norm.logpdf(x, means, sds)
    )
    parts = np.log([0.2, 0.3, 0.5]) + stats.norm.logpdf(x, means, sds)
    parts[0] = -np.inf  # a point no component reaches
    log_mix, shares = mixture._responsibilities(parts)
    np.testing.assert_allclose(log_mix[1:], special.logsumexp(parts[1:], axis=-1), rtol=1e-14)
    assert log_mix[0] == -np.inf and np.isnan(shares[0]).all()
    np.testing.assert_allclose(shares[1:].sum(-1), 1.0, rtol=1e-14)
    np.testing.assert_array_equal(mixture._log_sum_exp(parts), log_mix)
    # one EM step written with scipy, from the fitted mixture, returns it: EM converged
    draws = NormalMixture([0.7, 0.3], [-1.0, 1.0], [0.5, 0.8]).sample(5000, rng)
    fitted = fit_normal_mixture(draws, 2)
    r = np.exp(
        np.log(fitted.weights)
        + stats.norm.logpdf(draws[:, None], fitted.means, fitted.sds)
        - special.logsumexp(
            np.log(fitted.weights) + stats.norm.logpdf(draws[:, None], fitted.means, fitted.sds),
            axis=-1,
        )[:, None]
    )
    nk = r.sum(0)
    means_step = (r * draws[:, None]).sum(0) / nk
    sds_step = np.sqrt((r * (draws[:, None] - means_step) ** 2).sum(0) / nk)
    np.testing.assert_allclose(nk / nk.sum(), fitted.weights, rtol=1e-4)
    np.testing.assert_allclose(means_step, fitted.means, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(sds_step, fitted.sds, rtol=1e-4)


def test_predictive_and_update_of_a_beta_prior_are_beta_binomial():
    prior = BetaMixture([0.7, 0.3], [3.0, 1.5], [7.0, 1.5])
    pmf = prior.predictive(12)
    exact = 0.7 * stats.betabinom.pmf(np.arange(13), 12, 3, 7) + 0.3 * stats.betabinom.pmf(
        np.arange(13), 12, 1.5, 1.5
    )
    np.testing.assert_allclose(pmf, exact, atol=1e-6)
    assert pmf.sum() == pytest.approx(1.0, abs=1e-9)


def test_robust_component_and_conflict():
    informative = NormalMixture([1.0], [special.logit(0.2)], [0.25])
    robust = informative.robustify(weight=0.2)
    assert robust.weights == pytest.approx([0.8, 0.2])
    assert robust.sds[-1] == pytest.approx(2.0) and robust.means[-1] == pytest.approx(0.0)
    # posterior component weights against direct quadrature
    y, n = 9, 10

    def marginal(mean, sd):
        return integrate.quad(
            lambda x: stats.binom.pmf(y, n, special.expit(x)) * stats.norm.pdf(x, mean, sd),
            mean - 12 * sd,
            mean + 12 * sd,
            points=[special.logit(0.9)],
            limit=200,
        )[0]

    w = robust.weights * np.array(
        [marginal(m, s) for m, s in zip(robust.means, robust.sds, strict=True)]
    )
    np.testing.assert_allclose(robust.posterior_weights(y, n), w / w.sum(), atol=1e-6)
    clash = prior_data_conflict(robust, y, n, robust_component=-1)
    assert clash.conflict and "PRIOR-DATA CONFLICT" in clash.message
    assert clash.robust_weight_posterior > 0.9 and clash.tail_probability < 0.01
    calm = prior_data_conflict(robust, 2, 10, robust_component=-1)
    assert not calm.conflict and calm.robust_weight_posterior < 0.2
    with pytest.raises(ValueError, match="0 <= y <= n"):
        prior_data_conflict(robust, 11, 10)


# -- MAP priors against exact quadrature ------------------------------------------------


def _exact_predictive(n, r, m=0.0, s=2.0, tau_scale=1.0):
    """The MAP model by quadrature: posterior of (mu, tau) on a grid, each study's
    likelihood integrated over its own effect; returns a function giving the
    predictive CDF of a new study's log-odds, and the predictive mean of its CR
    probability."""
    mu = np.linspace(-4.5, 3.0, 181)
    tau = np.linspace(1e-4, 3.5, 161)
    z = np.linspace(-7, 7, 841)
    wz = stats.norm.pdf(z) * (z[1] - z[0])
    log_post = np.empty((mu.size, tau.size))
    for j, t in enumerate(tau):
        theta = mu[:, None] + t * z[None, :]  # (mu, z)
        log_p, log_q = -np.logaddexp(0, -theta), -np.logaddexp(0, theta)
        log_lik = 0.0
        for nk, rk in zip(n, r, strict=True):
            # the binomial coefficient is a constant: left out
            lik = np.exp(rk * log_p + (nk - rk) * log_q) @ wz
            log_lik = log_lik + np.log(lik)
        log_post[:, j] = (
            log_lik + stats.norm.logpdf(mu, m, s) + stats.halfnorm.logpdf(t, 0, tau_scale)
        )
    post = np.exp(log_post - log_post.max())
    post /= post.sum()

    def cdf(x):
        return float((post * stats.norm.cdf((x - mu[:, None]) / tau[None, :])).sum())

    p_new = special.expit(mu[:, None, None] + tau[None, :, None] * z[None, None, :]) @ wz
    return cdf, float((post * p_new).sum())


@pytest.fixture(scope="module")
def as_prior():
    """The MAP analysis RBesT documents for the AS controls: tau ~ HalfNormal(1),
    mean log-odds ~ N(0, 2) (RBesT: tau.prior = 1, beta.prior = 2)."""
    return map_prior(
        _evidence(AS_N, AS_R), "placebo", tau_prior=1.0, intercept_prior=(0, 2), seed=3
    )


def test_map_prior_matches_quadrature_on_the_ankylosing_spondylitis_controls(as_prior):
    """Our MAP prior's predictive mean and quantiles agree with the model computed
    exactly by quadrature, within Monte Carlo error."""
    prior = as_prior
    assert prior.diagnostics.ok, prior.diagnostics.problems
    cdf, mean_exact = _exact_predictive(AS_N, AS_R)
    p = special.expit(prior.draws)
    mcse = p.std() / np.sqrt(prior.diagnostics.min_ess_bulk)
    assert abs(p.mean() - mean_exact) < 4 * mcse
    for q in (0.1, 0.5, 0.9):
        # the draws' quantile sits where the exact CDF says q, to MC precision
        assert cdf(np.quantile(prior.draws, q)) == pytest.approx(q, abs=0.02)
    # the mixture approximates the draws, and says how well
    gap = prior.accuracy["mixture"] - prior.accuracy["draws"]
    assert np.abs(gap).max() < 0.01 and prior.max_cdf_gap < 0.01
    ess = {m: prior.ess(m) for m in ("elir", "moment", "morris")}
    assert all(np.isfinite(list(ess.values())))
    assert 20 < ess["elir"] < sum(AS_N)  # informative, but far less than 513 patients
    ds = prior.to_dataset()
    assert ds.attrs["n_studies"] == 8 and ds.attrs["synthetic"] == 0
    assert float(ds["ess"].sel(ess_method="elir")) == pytest.approx(ess["elir"])


# The published analysis: RBesT's vignette "Getting started with RBesT (binary)"
# (Weber et al., R package RBesT, CRAN; sections "Meta-Analytic-Predictive Analysis",
# "Parametric Approximation", "Effective Sample Size" and "Robustification of the MAP
# Prior"), gMAP(cbind(r, n - r) ~ 1 | study, data = AS, tau.dist = "HalfNormal",
# tau.prior = 1, beta.prior = 2), seed 34563. Its printed output:
RBEST_MAP = {"mean": 0.2550, "sd": 0.0864, "q2.5": 0.1060, "median": 0.2470, "q97.5": 0.4610}
RBEST_TAU = {"mean": 0.3870, "sd": 0.2150, "median": 0.3590}
# automixfit(map_mcmc): weights, a, b of its four beta components
RBEST_MIXTURE = (
    [0.4612914, 0.1917812, 0.1893896, 0.1575378],
    [33.9513487, 19.4400089, 12.2692310, 2.2521243],
    [103.0146367, 41.5205219, 55.9202833, 5.4812202],
)
# round(ess(map, "elir" | "moment" | "morita")), round(ess(robustify(map, 0.2, 1/2)))
RBEST_ESS = {"elir": 38, "moment": 24, "morris": 95}
RBEST_ROBUST_ESS = 27
RBEST_MIXTURE_SUMMARY = {
    "mean": 0.25545885,
    "sd": 0.08662045,
    "q2.5": 0.10730400,
    "median": 0.24758768,
    "q97.5": 0.46276759,
}  # summary(map)


def test_effective_sample_size_of_rbests_published_mixture():
    """Our ESS methods on the very mixture RBesT printed give its printed ESS
    (rounded, as RBesT prints them), robustified too; and its summary."""
    mix = BetaMixture(*RBEST_MIXTURE)
    for method, published in RBEST_ESS.items():
        assert round(mix.ess(method)) == published, method
    weights, a, b = RBEST_MIXTURE
    robust = BetaMixture([w * 0.8 for w in weights] + [0.2], a + [1.0], b + [1.0])
    assert round(robust.ess("elir")) == RBEST_ROBUST_ESS
    summary = mix.summary()
    for key, published in RBEST_MIXTURE_SUMMARY.items():
        assert summary[key] == pytest.approx(published, abs=5e-4), key


def test_reproduces_rbests_published_map_analysis(as_prior):
    """The same meta-analysis with PyMC and nutpie: the MAP prior's summary and the
    between-study SD agree with RBesT's printed MCMC summary within Monte Carlo
    error (ours from our ESS; RBesT's 4000 saved draws by default, and its
    three-digit printing); the ESS of our normal-mixture fit is near RBesT's beta
    mixture's 38 (another parametric family: measured 34-36 over seeds)."""
    p = special.expit(as_prior.draws)
    ess = as_prior.diagnostics.min_ess_bulk
    theirs = 4000
    se_mean = p.std() * np.sqrt(1 / ess + 1 / theirs) + 5e-5
    assert abs(p.mean() - RBEST_MAP["mean"]) < 4 * se_mean
    # an SD's MCSE is about sd / sqrt(2 ESS) for a near-normal sample; skewed here: x1.5
    se_sd = 1.5 * p.std() * np.sqrt(1 / (2 * ess) + 1 / (2 * theirs))
    assert abs(p.std() - RBEST_MAP["sd"]) < 4 * se_sd
    for q, key in ((0.025, "q2.5"), (0.5, "median"), (0.975, "q97.5")):
        x = np.quantile(p, q)
        density = stats.gaussian_kde(p)(x)[0]
        se_q = np.sqrt(q * (1 - q) * (1 / ess + 1 / theirs)) / density
        assert abs(x - RBEST_MAP[key]) < 4 * se_q + 5e-4, key
    tau = as_prior.tau
    se_tau = tau["sd"] * np.sqrt(1 / ess + 1 / theirs)
    assert abs(tau["mean"] - RBEST_TAU["mean"]) < 4 * se_tau + 5e-4
    assert abs(tau["median"] - RBEST_TAU["median"]) < 6 * se_tau + 5e-4
    assert abs(tau["sd"] - RBEST_TAU["sd"]) < 4 * 1.5 * tau["sd"] / np.sqrt(2 * ess) + 5e-4
    assert as_prior.ess("elir") == pytest.approx(RBEST_ESS["elir"], rel=0.2)
    assert as_prior.ess("moment") == pytest.approx(RBEST_ESS["moment"], rel=0.2)


def test_one_study_without_heterogeneity_is_the_conjugate_posterior():
    """With one study and the between-study SD held at ~0, the MAP prior is the
    posterior of that study's log-odds: N(0, 2) prior times its binomial likelihood,
    computed by one-dimensional quadrature."""
    n, r = 40, 12
    prior = map_prior(
        _evidence([n], [r]), "placebo", tau_prior=1e-4, intercept_prior=(0, 2), seed=2
    )
    x = np.linspace(-8, 6, 20001)
    post = stats.binom.pmf(r, n, special.expit(x)) * stats.norm.pdf(x, 0, 2)
    post /= post.sum()
    mean_exact = float((post * special.expit(x)).sum())
    p = special.expit(prior.draws)
    assert abs(p.mean() - mean_exact) < 4 * p.std() / np.sqrt(prior.diagnostics.min_ess_bulk)
    assert prior.tau["q97.5"] < 1e-3


# -- the command line ----------------------------------------------------------------


def test_borrow_command_prints_the_prior_and_writes_dataset_and_plot(tmp_path):
    from conftest import invoke_cli
    from scleromx_bayes.simulate import example_path

    out = tmp_path / "borrow"
    args = ["borrow", example_evidence_path(), "--regimen", "DNS rescue", "--out", out]
    res = invoke_cli(*args, "--data", example_path())
    assert res.returncode == 0, res.stderr
    for text in ("MAP prior for DNS rescue", "SYNTHETIC", "ESS elir", "robust MAP", "4/5 CR"):
        assert text in res.stdout, text
    assert sorted(p.name for p in out.iterdir()) == ["borrowing.png", "map_prior.nc"]
    ds = sxb.read_dataset(out / "map_prior.nc")
    assert ds.attrs["synthetic"] == 1 and ds.attrs["cohort_n"] == 5
    assert 0 < ds.attrs["robust_weight_posterior"] < 1
    # (no patient identifier in what it writes: tests/test_hostile_inputs.py)
    # bad input: exit 2, one message, no traceback, nothing written
    for extra, message in [
        (["--regimen", "Thalidomide"], "no study of it"),
        (["--alias", "IVIg"], "LITERATURE_NAME=COHORT_REGIMEN"),
    ]:
        bad = invoke_cli("borrow", example_evidence_path(), "--out", tmp_path / "bad", *extra)
        if "--regimen" not in extra:
            bad = invoke_cli(*args[:-2], "--out", tmp_path / "bad", *extra)
        assert bad.returncode == 2, (extra, bad.stderr)
        assert message in bad.stderr and "Traceback" not in bad.stderr
        assert not (tmp_path / "bad").exists()
    # a model that borrows needs the evidence; the evidence needs such a model
    for extra, message in [
        (["--model", "robust_map"], "give --evidence FILE"),
        (["--model", "base", "--evidence", example_evidence_path()], "[borrowing] table"),
    ]:
        bad = invoke_cli("fit", example_path(), "--out", tmp_path / "bad", *extra)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
        assert not (tmp_path / "bad").exists()


# -- borrowing inside the model ------------------------------------------------------


def _prepared(example, method, **kwargs):
    from scleromx_bayes.borrowing import Borrowing

    ev = read_evidence(example_evidence_path(), regimens=example.regimens)
    return Borrowing(ev, method=method, regimens=("HDIVig", "DNS rescue"), **kwargs)


def _logp_pair(cells, spec, external, *, shared=False):
    from scleromx_bayes.model import build_model

    model = build_model(cells, spec, external=external, shared=shared)
    return model, model.compile_logp(mode=REFERENCE_MODE), model.initial_point()


def test_power_prior_is_the_external_likelihood_times_a0(example):
    """Exact, at random points: the power prior adds a0 times the external studies'
    binomial log-likelihood (kernel) of the borrowed regimens' log-odds, and with
    a0 = 0 the model is the no-pooling model."""
    from scleromx_bayes.model import build_model

    spec = sxb.load_spec("no_pooling")
    cells = example.cells()
    rng = np.random.default_rng(1)
    plain = build_model(cells, spec)
    plain_logp = plain.compile_logp(mode=REFERENCE_MODE)
    prior = spec.prior("intercept").params
    for a0 in (0.0, 0.4, 1.0):
        prepared = _prepared(example, "power", a0=a0).prepare(cells)
        for shared in (False, True):
            model, logp, point = _logp_pair(cells, spec, prepared.external, shared=shared)
            for _ in range(3):
                values = {k: rng.normal(size=np.shape(x)) for k, x in point.items()}
                # no pooling: every regimen's log-odds is mu + sigma * z
                logit = prior["mu"] + prior["sigma"] * values["regimen_z"]
                ext = prepared.external
                eta = logit[[list(cells.regimens).index(r) for r in ext.regimens]][
                    ext.study_regimen
                ]
                kernel = ext.study_cr * -np.logaddexp(0, -eta) + (
                    ext.study_n - ext.study_cr
                ) * -np.logaddexp(0, eta)
                plain_values = {k: values[k] for k in plain.initial_point()}
                assert float(logp(values)) == pytest.approx(
                    float(plain_logp(plain_values)) + a0 * kernel.sum(), rel=1e-10, abs=1e-8
                )


def test_map_prior_and_joint_model_agree(example):
    """MAP-then-prior and the joint (meta-analytic-combined) model are the same
    analysis up to the mixture approximation: the borrowed regimens' posteriors
    agree within Monte Carlo error."""
    spec = sxb.load_spec("no_pooling")
    settings = {"draws": 1000, "tune": 700, "chains": 2, "seed": 6}
    fits = {}
    for method in ("map", "joint"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # ESS is judged below
            fits[method] = sxb.fit(example, spec, borrowing=_prepared(example, method), **settings)
    means, ses = {}, {}
    for method, f in fits.items():
        p = special.expit(f.posterior["posterior"]["regimen_logit"])
        means[method] = p.mean(("chain", "draw"))
        ess = float(f.diagnostics.min_ess_bulk)
        ses[method] = p.std(("chain", "draw")) / np.sqrt(ess)
    for r in ("HDIVig", "DNS rescue"):
        gap = abs(float(means["map"].sel(regimen=r) - means["joint"].sel(regimen=r)))
        se = float(np.hypot(ses["map"].sel(regimen=r), ses["joint"].sel(regimen=r)))
        assert gap < 4 * se + 0.01, (r, gap, se)  # 0.01: the mixture's approximation
    # the summary says what was borrowed, for which regimens, from which studies
    ds = fits["map"].summary()
    assert ds.attrs["borrowing_method"] == "map" and ds.attrs["synthetic"] == 1
    assert "Invented L et al." in ds.attrs["borrowing_studies"]
    ess = ds["prior_ess"].sel(ess_method="elir")
    assert np.isfinite(ess.sel(regimen=["HDIVig", "DNS rescue"])).all()
    assert np.isnan(ess.sel(regimen="Len-Dex-HDIVig"))


def test_every_choice_of_borrowed_regimens_shares_one_compiled_code(example):
    """Which regimens borrow is data: for each method, borrowing for two regimens or
    for one gives the same compiled graphs (PyTensor's key, under which native.py
    keeps the code), so a second choice compiles nothing; and the indices are the
    cohort's positions of the borrowed regimens and of the rest."""
    from scleromx_bayes import native
    from scleromx_bayes.borrowing import Borrowing
    from scleromx_bayes.model import build_model, data_values

    cells = example.cells()
    spec = sxb.load_spec("no_pooling")
    ev = read_evidence(example_evidence_path(), regimens=example.regimens)
    for method in ("map", "robust_map", "joint", "power"):
        keys = []
        for regimens in (("HDIVig", "DNS rescue"), ("DNS rescue",)):
            external = Borrowing(ev, method=method, regimens=regimens).prepare(cells).external
            model = build_model(cells, spec, shared=True, external=external)
            logp = native._compile_graphs(model, native._graphs(model))
            keys.append(native._graph_key(logp))
            values = data_values(cells, spec, shared=True, external=external)
            borrowed = [cells.regimens[i] for i in values["borrowed_index"]]
            assert borrowed == list(external.regimens), method
            if method != "power":
                own = [cells.regimens[i] for i in values["own_index"]]
                assert sorted(own + borrowed) == sorted(cells.regimens), method
                assert not set(own) & set(borrowed), method
        assert keys[0] is not None and keys[0] == keys[1], method


def test_robust_weight_rises_when_the_cohort_disagrees(example):
    """A literature promising 90% CR for HDIVig against the cohort's 13/31: the
    robust component takes over (its posterior weight far above its prior 0.2)."""
    from scleromx_bayes.borrowing import Borrowing

    optimistic = pd.DataFrame(
        {
            "study": ["A", "B", "C"],
            "regimen": "HDIVig",
            "n": [30, 40, 25],
            "n_cr": [27, 36, 23],
        }
    )
    ev = read_evidence(optimistic, regimens=example.regimens)
    b = Borrowing(ev, method="robust_map", robust_weight=0.2, tau_prior=0.25)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a short run; the weight is the point
        f = sxb.fit(example, "no_pooling", draws=800, tune=600, chains=2, seed=3, borrowing=b)
    ds = f.summary()
    assert float(ds["robust_weight_posterior"].sel(regimen="HDIVig")) > 0.6
    assert ds.attrs["borrowing_method"] == "robust_map(0.2)"


def test_borrowing_needs_no_pooling(example):
    with pytest.raises(sxb.SpecError, match='regimen_pooling = "none"'):
        sxb.fit(example, "base", draws=20, tune=20, borrowing=_prepared(example, "map"))


# -- borrowing as a sensitivity axis ------------------------------------------------


def test_borrowing_is_a_sensitivity_axis(example):
    from scleromx_bayes.sensitivity import Grid, GridError, run_sensitivity

    run = {"draws": 500, "tune": 400, "chains": 2, "seed": 4, "ess_min": 100, "rhat_max": 1.05}
    grid = Grid.one_at_a_time(
        {"borrowing": ["none", "robust_map(0.3)", "power(0.5)"]}, name="borrow", **run
    )
    # two regimens' series (the meta-analyses other tests compiled): a quicker test
    table = read_evidence(example_evidence_path()).table
    ev = read_evidence(
        table[table["regimen"].isin(["HDIVig", "DNS rescue"])], regimens=example.regimens
    )
    with pytest.raises(GridError, match="give the evidence table"):
        run_sensitivity(example, grid)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sens = run_sensitivity(example, grid, evidence=ev)
    assert list(sens["borrowing"].values) == ["none", "robust_map(0.3)", "power(0.5)"]
    assert (sens["status"] == "ok").all(), sens["reason"].values
    ess = sens["prior_ess"].sel(ess_method="elir")
    assert np.isfinite(ess.sel(scenario="borrowing=robust_map(0.3)", regimen="HDIVig"))
    assert np.isnan(ess.sel(scenario="baseline")).all()
    # a scenario is its standalone fit: the same spec, evidence and seed
    spec = sxb.load_spec("base").with_overrides(
        {
            "structure.regimen_pooling": "none",
            "borrowing.method": "robust_map",
            "borrowing.robust_weight": 0.3,
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        alone = sxb.fit(
            example, spec, evidence=ev, **{k: run[k] for k in ("draws", "tune", "chains", "seed")}
        )
    np.testing.assert_allclose(
        alone.summary()["p_cr_new_site"].values,
        sens["p_cr_new_site"].sel(scenario="borrowing=robust_map(0.3)").values,
        rtol=1e-10,
    )
    for bad, message in [("power", "power needs its weight"), ("robust_map(2)", "in \\(0, 1\\)")]:
        with pytest.raises(GridError, match=message):
            Grid.one_at_a_time({"borrowing": ["none", bad]}, name="bad")


def test_a_published_mixture_prior_from_the_spec(example):
    """A MAP prior published with its components goes in a spec as it is; the model
    treats it as a MAP mixture: the borrowed regimen's prior log density is the
    mixture's, exactly."""
    from scleromx_bayes.borrowing import Borrowing
    from scleromx_bayes.model import build_model

    toml = sxb.load_spec("no_pooling").to_toml() + (
        '\n[borrowing]\nmethod = "mixture"\n'
        '[borrowing.mixture."DNS rescue"]\nweights = [0.7, 0.3]\nmeans = [1.0, 0.2]\n'
        "sds = [0.4, 1.2]\n"
    )
    spec = sxb.ModelSpec.from_toml(toml)
    assert sxb.ModelSpec.from_toml(spec.to_toml()) == spec
    cells = example.cells()
    prepared = Borrowing.from_spec(None, spec.borrowing).prepare(cells)
    model = build_model(cells, spec, external=prepared.external)
    logp = model.compile_logp(vars=[model["borrowed_logit"]], jacobian=False, mode=REFERENCE_MODE)
    mix = NormalMixture([0.7, 0.3], [1.0, 0.2], [0.4, 1.2])
    for x in (-1.0, 0.3, 1.7):
        assert float(logp({**model.initial_point(), "borrowed_logit": np.array([x])})) == (
            pytest.approx(float(mix.logpdf(x)), rel=1e-12)
        )
    for bad, message in [
        ("weights = [0.7, 0.4]", "sum to 1"),
        ("sds = [0.4, -1.2]", "sds must be > 0"),
        ("means = [1.0]", "one value per component"),
    ]:
        key = bad.split(" = ")[0]
        broken = toml.replace(
            {
                "weights": "weights = [0.7, 0.3]",
                "sds": "sds = [0.4, 1.2]",
                "means": "means = [1.0, 0.2]",
            }[key],
            bad,
        )
        with pytest.raises(sxb.SpecError, match=message):
            sxb.ModelSpec.from_toml(broken)
