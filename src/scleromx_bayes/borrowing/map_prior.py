"""Meta-analytic-predictive (MAP) priors from published series (Neuenschwander et
al. 2010), fitted with PyMC and nutpie, approximated by a normal mixture.

For the external studies j = 1..J of one regimen, with n_j patients and y_j CRs::

    y_j ~ Binomial(n_j, expit(theta_j)),   theta_j = mu + tau * z_j,   z_j ~ N(0, 1)
    mu ~ Normal(m, s),   tau ~ HalfNormal(t)

The MAP prior is the predictive distribution of a new study's log-odds,
``theta_new = mu + tau * z`` over the posterior of (mu, tau). Its draws are
approximated by a mixture of normals on the log-odds (EM, components by AIC,
:func:`mixture.automixfit`), and how well the mixture matches the draws is
reported (quantiles of the CR probability, and the largest CDF gap).

The between-study SD prior says how different a new study may be: HalfNormal(0.5)
is moderate heterogeneity on the log-odds, HalfNormal(1) (the default, as in
RBesT's examples) substantial. With a handful of studies, this prior drives the
result: report it, and vary it in a sensitivity analysis.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pymc as pm
import xarray as xr
from scipy import special

from ..diagnostics import ConvergenceCriteria, Diagnostics, diagnose
from ..model import exact_float_math
from ..native import compile_for_nutpie
from ..provenance import SYNTHETIC_NOTE
from ..trace import sample_tree
from .evidence import Evidence
from .mixture import NormalMixture, automixfit

__all__ = ["MAPPrior", "map_prior"]

QUANTILES = (0.025, 0.1, 0.25, 0.5, 0.75, 0.9, 0.975)
_compiled: dict[int, object] = {}
_lock = threading.Lock()


def _model(n_studies: int) -> pm.Model:
    with pm.Model(coords={"study": np.arange(n_studies)}) as model:
        # counts and prior values are data: one compile per number of studies
        n = pm.Data("n", np.ones(n_studies, dtype=np.int64))
        y = pm.Data("y", np.zeros(n_studies, dtype=np.int64))
        hyper = pm.Data("hyper", np.array([0.0, 2.0, 1.0]))  # m, s, t
        mu = pm.Normal("mu", hyper[0], hyper[1])
        tau = pm.HalfNormal("tau", hyper[2])
        z = pm.Normal("z", 0.0, 1.0, dims="study")
        pm.Binomial("y_obs", n=n, logit_p=mu + tau * z, observed=y)
    return model


def _compiled_model(n_studies: int):
    with _lock:
        if n_studies not in _compiled:
            model = _model(n_studies)
            with exact_float_math():
                _compiled[n_studies] = compile_for_nutpie(model, var_names=["mu", "tau"])
        return _compiled[n_studies]


@dataclass(frozen=True)
class MAPPrior:
    """A MAP prior for one regimen's CR log-odds.

    Attributes
    ----------
    regimen : str
    mixture : NormalMixture
        The prior used downstream (components on the log-odds).
    draws : numpy.ndarray
        Predictive draws of a new study's log-odds the mixture approximates.
    studies : pandas.DataFrame
        The external studies used (study, n, n_cr, citation, ...).
    accuracy : pandas.DataFrame
        CR-probability quantiles of the draws against the mixture's.
    tau : dict
        Posterior mean, SD, median and 95% interval of the between-study SD.
    diagnostics : Diagnostics
        Of the meta-analysis sampling (R-hat, ESS, divergences).

    Examples
    --------
    >>> from scleromx_bayes.borrowing import example_evidence_path
    >>> prior = sxb.map_prior(sxb.read_evidence(example_evidence_path()), "HDIVig",
    ...                       draws=500, tune=500, chains=2, seed=1)
    >>> 0 < prior.summary()["mean"] < 1, prior.ess("elir") > 1
    (True, True)
    """

    regimen: str
    mixture: NormalMixture
    draws: np.ndarray = field(repr=False)
    studies: pd.DataFrame = field(repr=False)
    accuracy: pd.DataFrame = field(repr=False)
    aic: dict[int, float]
    tau: dict[str, float]
    settings: dict[str, float]
    diagnostics: Diagnostics
    synthetic: bool

    def summary(self) -> dict[str, float]:
        """Mean, SD, median and 2.5/97.5% quantiles of the predictive CR probability
        (of the mixture, the prior used downstream)."""
        return self.mixture.summary()

    def ess(self, method: str = "elir") -> float:
        """Prior effective sample size (patients) of the mixture: ``elir``,
        ``moment`` or ``morris`` (see :mod:`mixture`)."""
        return self.mixture.ess(method)

    def robustify(self, weight: float = 0.2, mean: float = 0.5, n: float = 1.0) -> NormalMixture:
        """The robust MAP prior (Schmidli et al. 2014); see :meth:`NormalMixture.robustify`."""
        return self.mixture.robustify(weight, mean, n)

    @property
    def max_cdf_gap(self) -> float:
        """Largest gap between the draws' and the mixture's CDF of the log-odds."""
        x = np.sort(self.draws)
        empirical = (np.arange(x.size) + 0.5) / x.size
        cdf = np.cumsum(np.exp(self.mixture.logpdf(x)) * np.gradient(x))
        return float(np.abs(empirical - cdf / cdf[-1]).max())

    def to_dataset(self) -> xr.Dataset:
        """The prior, its accuracy and its provenance as an ``xarray.Dataset``."""
        mix = self.mixture
        ds = xr.Dataset(
            {
                "mixture_weight": ("component", mix.weights),
                "mixture_mean": ("component", mix.means),
                "mixture_sd": ("component", mix.sds),
                "quantile_of_draws": ("quantile", self.accuracy["draws"].to_numpy()),
                "quantile_of_mixture": ("quantile", self.accuracy["mixture"].to_numpy()),
                "ess": ("ess_method", [self.ess(m) for m in ("elir", "moment", "morris")]),
            },
            coords={
                "component": np.arange(mix.components),
                "quantile": list(QUANTILES),
                # not "method": .sel(method=...) is xarray's own keyword
                "ess_method": ["elir", "moment", "morris"],
            },
        )
        ds["mixture_mean"].attrs["scale"] = "log-odds of CR"
        ds.attrs = {
            "title": f"MAP prior for {self.regimen}",
            "regimen": self.regimen,
            "studies": "; ".join(self.studies["label"]),
            "n_studies": len(self.studies),
            "tau_mean": self.tau["mean"],
            "tau_lower": self.tau["q2.5"],
            "tau_upper": self.tau["q97.5"],
            "max_cdf_gap": self.max_cdf_gap,
            **{f"prior_{k}": v for k, v in self.summary().items()},
            **{f"setting_{k}": v for k, v in self.settings.items()},
            **self.diagnostics.to_attrs(),
            "synthetic": int(self.synthetic),
        }
        if self.synthetic:
            ds.attrs["note"] = SYNTHETIC_NOTE
        return ds


def study_labels(rows: pd.DataFrame) -> list[str]:
    """Each study's citation, or its name where the table gives none."""
    if "citation" not in rows:
        return list(rows["study"])
    return [c or s for s, c in zip(rows["study"], rows["citation"], strict=True)]


def map_prior(
    evidence: Evidence,
    regimen: str,
    *,
    tau_prior: float = 1.0,
    intercept_prior: tuple[float, float] = (0.0, 2.0),
    severity: str | None = None,
    draws: int = 2000,
    tune: int = 1000,
    chains: int = 4,
    seed: int = 1,
    max_components: int = 4,
) -> MAPPrior:
    """The MAP prior of ``regimen``'s CR probability from ``evidence``.

    Parameters
    ----------
    evidence : Evidence
        From :func:`read_evidence`.
    regimen : str
    tau_prior : float
        Scale of the HalfNormal prior of the between-study SD (log-odds).
    intercept_prior : (mean, sd)
        Normal prior of the mean log-odds across studies.
    severity : str, optional
        Use only studies of this severity (and those reporting none).
    draws, tune, chains, seed :
        Sampling of the meta-analysis (nutpie).
    max_components : int
        Most mixture components tried (chosen by AIC).

    Returns
    -------
    MAPPrior
        The predictive draws, their normal-mixture approximation and its accuracy,
        the between-study SD's posterior and the studies used.

    Examples
    --------
    >>> from scleromx_bayes.borrowing import example_evidence_path
    >>> ev = sxb.read_evidence(example_evidence_path())      # synthetic series
    >>> prior = sxb.map_prior(ev, "HDIVig", draws=500, tune=500, chains=2, seed=1)
    >>> sorted(prior.summary())[:3], prior.ess("elir") > 0
    (['mean', 'median', 'q2.5'], True)
    """
    if not tau_prior > 0 or not intercept_prior[1] > 0:
        raise ValueError("tau_prior and the intercept prior's sd must be > 0")
    rows = evidence.for_regimen(regimen, severity)
    compiled = _compiled_model(len(rows)).with_data(
        n=rows["n"].to_numpy(np.int64),
        y=rows["n_cr"].to_numpy(np.int64),
        hyper=np.array([intercept_prior[0], intercept_prior[1], tau_prior], dtype=float),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        tree = sample_tree(
            compiled,
            draws=draws,
            tune=tune,
            chains=chains,
            seed=seed,
            cores=min(chains, 2),
            progress_bar=False,
            target_accept=0.95,  # few studies: a funnel in tau
        )
    diagnostics = diagnose(tree, ConvergenceCriteria(), var_names=("mu", "tau"))
    post = tree["posterior"]
    mu = post["mu"].values.ravel()
    tau = post["tau"].values.ravel()
    rng = np.random.default_rng(seed)
    theta_new = mu + tau * rng.standard_normal(mu.size)
    mixture, aic = automixfit(theta_new, max_components)
    qs = np.array(QUANTILES)
    accuracy = pd.DataFrame(
        {
            "quantile": qs,
            "draws": special.expit(np.quantile(theta_new, qs)),
            "mixture": mixture.probability_quantile(qs),
        }
    )
    studies = rows.copy()
    studies["label"] = study_labels(rows)
    return MAPPrior(
        regimen=regimen,
        mixture=mixture,
        draws=theta_new,
        studies=studies,
        accuracy=accuracy,
        aic=aic,
        tau={
            "mean": float(tau.mean()),
            "sd": float(tau.std(ddof=1)),
            "median": float(np.median(tau)),
            "q2.5": float(np.quantile(tau, 0.025)),
            "q97.5": float(np.quantile(tau, 0.975)),
        },
        settings={
            "tau_prior_halfnormal_scale": float(tau_prior),
            "intercept_prior_mean": float(intercept_prior[0]),
            "intercept_prior_sd": float(intercept_prior[1]),
            "draws": draws,
            "tune": tune,
            "chains": chains,
            "seed": seed,
        },
        diagnostics=diagnostics,
        synthetic=evidence.synthetic,
    )
