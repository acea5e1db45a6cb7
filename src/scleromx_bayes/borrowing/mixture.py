"""Mixture priors for a CR probability: normals on the log-odds, betas on the
probability; fitting by EM, robustifying, prior effective sample size, and the
update by a cohort's count.

Integrals over the prior (ESS, predictive probabilities, marginal likelihoods)
are computed on a fine grid of the log-odds, where every density here is smooth
and the probability's end points are out of reach.

Effective sample size, three ways (as RBesT, Neuenschwander et al. 2020):

* ``elir``: the expected local information ratio, ``E[i_prior(x) / i_F(x)]``, the
  prior's curvature against the Fisher information of one patient, averaged over
  the prior; the only one of the three that is predictively consistent;
* ``moment``: the sample size of the beta (or the normal on the log-odds) with the
  prior's mean and variance; conservative;
* ``morris``: Morita, Thall & Müller (2008), evaluated at the prior's mode, in
  the limit of an infinitely flat baseline prior (RBesT's ``morita`` uses s = 100);
  liberal for mixtures.

For a Beta(a, b) prior with a, b > 1 all three give a + b (for a or b <= 1 the
elir integral diverges, and it is refused).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import optimize, special, stats

__all__ = ["BetaMixture", "NormalMixture", "automixfit", "fit_normal_mixture"]

ESSMethod = Literal["elir", "moment", "morris"]
_GRID = np.linspace(-30.0, 30.0, 24001)  # log-odds; step 0.0025


def _check_weights(weights) -> np.ndarray:
    w = np.atleast_1d(np.asarray(weights, dtype=float))
    if w.ndim != 1 or not len(w) or (w < 0).any() or not np.isclose(w.sum(), 1.0, atol=1e-6):
        raise ValueError(f"mixture weights must be >= 0 and sum to 1, not {list(w)}")
    return w / w.sum()


def _store_components(mixture, parameters: dict[str, bool]) -> None:
    """Check and store a mixture's weights and its per-component ``parameters``
    (name -> must be > 0) as float arrays, one value per component."""
    weights = _check_weights(mixture.weights)
    object.__setattr__(mixture, "weights", weights)
    for name, positive in parameters.items():
        values = np.atleast_1d(np.asarray(getattr(mixture, name), dtype=float))
        if values.shape != weights.shape:
            raise ValueError(f"{name} needs one value per component ({weights.size})")
        if not np.isfinite(values).all() or (positive and not (values > 0).all()):
            raise ValueError(f"{name} must be finite{' and > 0' if positive else ''}")
        object.__setattr__(mixture, name, values)


# EM evaluates these hundreds of times over every draw. scipy.stats.norm.logpdf's and
# scipy.special.logsumexp's per-call argument handling, and sums across a short last
# axis, were over 80% of a MAP prior's time: these are plain NumPy.
_LOG_SQRT_2PI = np.log(2 * np.pi) / 2


def _normal_log_density(x, means, sds) -> np.ndarray:
    """``scipy.stats.norm.logpdf(x, means, sds)``, the same operations in the same order."""
    z = (x - means) / sds
    return (-(z**2) / 2.0 - _LOG_SQRT_2PI) - np.log(sds)


def _shifted_exp(a: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """The maximum over ``axis`` (kept; 0 where every term is -inf), and ``exp(a - max)``."""
    top = a.max(axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    return top, np.exp(a - top)


def _log_sum_exp(a: np.ndarray) -> np.ndarray:
    """``log(sum(exp(a)))`` over the last axis."""
    top, shares = _shifted_exp(a)
    return np.log(shares.sum(-1)) + top[..., 0]


def _responsibilities(log_parts: np.ndarray, axis: int = -1) -> tuple[np.ndarray, np.ndarray]:
    """log density of the mixture and each component's share, from
    ``log w_k + log f_k(x)`` stacked on ``axis``."""
    top, shares = _shifted_exp(log_parts, axis)
    total = shares.sum(axis, keepdims=True)
    return np.squeeze(np.log(total) + top, axis), shares / total


def _mixture_information(log_parts, grad, hess) -> np.ndarray:
    """-(d2/dx2) log of a mixture from its components' log-density derivatives."""
    _, r = _responsibilities(log_parts)
    return (r * grad).sum(-1) ** 2 - (r * (hess + grad**2)).sum(-1)


class _Prior:
    """What both mixture families share, through a density on the log-odds grid."""

    def grid_log_density(self) -> np.ndarray:  # density of the log-odds on _GRID
        raise NotImplementedError

    def log_density(self, logit) -> np.ndarray:
        """Log density of the log-odds at ``logit`` (interpolated on the grid)."""
        return np.interp(logit, _GRID, self.grid_log_density())

    def _grid_weights(self) -> np.ndarray:
        d = np.exp(self.grid_log_density())
        return d / d.sum()

    def probability_mean(self) -> float:
        return float((self._grid_weights() * special.expit(_GRID)).sum())

    def probability_sd(self) -> float:
        w, p = self._grid_weights(), special.expit(_GRID)
        return float(np.sqrt((w * (p - (w * p).sum()) ** 2).sum()))

    def probability_quantile(self, q) -> np.ndarray:
        cdf = np.cumsum(self._grid_weights())
        return special.expit(np.interp(np.atleast_1d(q), cdf, _GRID))

    def summary(self) -> dict[str, float]:
        """Mean, SD, median and central 95% interval of the CR probability."""
        lo, median, hi = self.probability_quantile([0.025, 0.5, 0.975])
        return {
            "mean": self.probability_mean(),
            "sd": self.probability_sd(),
            "median": float(median),
            "q2.5": float(lo),
            "q97.5": float(hi),
        }

    def predictive(self, n: int) -> np.ndarray:
        """P(y CRs of n) for y = 0..n under the prior (its prior predictive)."""
        y = np.arange(n + 1)[:, None]
        lik = stats.binom.pmf(y, n, special.expit(_GRID)[None, :])
        return lik @ self._grid_weights()

    def ess(self, method: ESSMethod = "elir") -> float:
        """Prior effective sample size, in patients (see the module docstring)."""
        raise NotImplementedError


@dataclass(frozen=True)
class NormalMixture(_Prior):
    """A mixture of normals on the log-odds of CR.

    Examples
    --------
    >>> prior = NormalMixture([1.0], [0.0], [0.5])
    >>> round(prior.summary()["median"], 3)
    0.5
    """

    weights: np.ndarray
    means: np.ndarray
    sds: np.ndarray

    def __post_init__(self) -> None:
        _store_components(self, {"means": False, "sds": True})

    @property
    def components(self) -> int:
        """Number of mixture components."""
        return len(self.weights)

    def _log_parts(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=float)[..., None]
        return np.log(self.weights) + _normal_log_density(x, self.means, self.sds)

    def logpdf(self, x) -> np.ndarray:
        """Log density of the log-odds."""
        return _log_sum_exp(self._log_parts(x))

    def grid_log_density(self) -> np.ndarray:
        """Log density of the log-odds on the package's integration grid."""
        return self.logpdf(_GRID)

    def sample(self, size: int, rng: np.random.Generator) -> np.ndarray:
        """``size`` draws of the log-odds from the mixture, with ``rng``."""
        k = rng.choice(self.components, size=size, p=self.weights)
        return rng.normal(self.means[k], self.sds[k])

    def robustify(self, weight: float = 0.2, mean: float = 0.5, n: float = 1.0) -> NormalMixture:
        """This prior with a weakly informative component of weight ``weight``
        (Schmidli et al. 2014): a normal on the log-odds centred at ``logit(mean)``
        worth ``n`` patients (SD ``1 / sqrt(n * mean * (1 - mean))``: 2 for one
        patient at 50%), so a cohort that disagrees can override the rest."""
        if not 0 < weight < 1:
            raise ValueError(f"weight must be in (0, 1), not {weight}")
        if not 0 < mean < 1 or not n > 0:
            raise ValueError("mean must be in (0, 1) and n > 0")
        sd = 1.0 / np.sqrt(n * mean * (1 - mean))
        return NormalMixture(
            np.append(self.weights * (1 - weight), weight),
            np.append(self.means, special.logit(mean)),
            np.append(self.sds, sd),
        )

    def posterior_weights(self, y: int, n: int) -> np.ndarray:
        """Each component's posterior weight after y CRs in n patients."""
        lik = stats.binom.pmf(y, n, special.expit(_GRID))
        parts = np.exp(self._log_parts(_GRID))  # (grid, component)
        marginal = (lik[:, None] * parts).sum(0)
        return marginal / marginal.sum()

    def ess(self, method: ESSMethod = "elir") -> float:
        """Prior effective sample size in patients: ``"elir"``, ``"moment"`` or ``"morris"``."""
        p = special.expit(_GRID)
        inverse_fisher = 1.0 / (p * (1 - p))  # one patient's information is p(1-p)
        if method == "moment":
            w = self._grid_weights()
            mean = (w * _GRID).sum()
            variance = (w * (_GRID - mean) ** 2).sum()
            return float((w * inverse_fisher).sum() / variance)
        parts = self._log_parts(_GRID)
        grad = -(_GRID[:, None] - self.means) / self.sds**2
        hess = np.broadcast_to(-1.0 / self.sds**2, grad.shape)
        info = _mixture_information(parts, grad, hess)
        if method == "elir":
            return float((self._grid_weights() * info * inverse_fisher).sum())
        if method == "morris":
            mode = _GRID[np.argmax(self.grid_log_density())]
            i_mode = int(np.argmin(np.abs(_GRID - mode)))
            return float(info[i_mode] * inverse_fisher[i_mode])
        raise ValueError(f"method must be 'elir', 'moment' or 'morris', not {method!r}")

    def to_dict(self) -> dict[str, list[float]]:
        """The components as plain lists (``weight``, ``mean``, ``sd``), for attrs and TOML."""
        return {"weight": list(self.weights), "mean": list(self.means), "sd": list(self.sds)}


@dataclass(frozen=True)
class BetaMixture(_Prior):
    """A mixture of beta distributions on the CR probability.

    Examples
    --------
    >>> round(BetaMixture([1.0], [4.0], [6.0]).ess("elir"), 6)
    10.0
    """

    weights: np.ndarray
    a: np.ndarray
    b: np.ndarray

    def __post_init__(self) -> None:
        _store_components(self, {"a": True, "b": True})

    def _log_parts(self, p) -> np.ndarray:
        p = np.asarray(p, dtype=float)[..., None]
        return np.log(self.weights) + stats.beta.logpdf(p, self.a, self.b)

    def grid_log_density(self) -> np.ndarray:
        """Log density of the log-odds on the package's integration grid."""
        # density of the log-odds: f(p) * p * (1 - p)
        p = special.expit(_GRID)
        return _log_sum_exp(self._log_parts(p)) + np.log(p) + np.log1p(-p)

    def ess(self, method: ESSMethod = "elir") -> float:
        """Prior effective sample size in patients: ``"elir"``, ``"moment"`` or ``"morris"``."""
        if method == "moment":
            m, s = self.probability_mean(), self.probability_sd()
            return float(m * (1 - m) / s**2 - 1)
        p = special.expit(_GRID)
        grad = (self.a - 1) / p[:, None] - (self.b - 1) / (1 - p[:, None])
        hess = -(self.a - 1) / p[:, None] ** 2 - (self.b - 1) / (1 - p[:, None]) ** 2
        info = _mixture_information(self._log_parts(p), grad, hess)
        if method == "elir":
            if (self.a < 1).any() or (self.b < 1).any():
                # a component with a < 1 puts (a - 1) / p^2 information where its density
                # grows like p^(a - 1): the defining integral diverges. At a = 1 the term
                # vanishes (a uniform robust component is fine: RBesT gives 27 patients for
                # its robustified AS prior, as this does)
                raise ValueError("the elir ESS of a beta mixture needs every a >= 1 and b >= 1")
            return float((self._grid_weights() * info * p * (1 - p)).sum())
        if method == "morris":
            mode = self._mode()
            grad_m = (self.a - 1) / mode - (self.b - 1) / (1 - mode)
            hess_m = -(self.a - 1) / mode**2 - (self.b - 1) / (1 - mode) ** 2
            info_m = _mixture_information(self._log_parts(mode), grad_m, hess_m)
            # the flattened baseline prior Beta(mode/s, (1-mode)/s) as s grows
            flat = -1 / mode**2 - 1 / (1 - mode) ** 2
            mean = self.probability_mean()
            expected = mean / mode**2 + (1 - mean) / (1 - mode) ** 2
            return float((info_m - flat) / expected)
        raise ValueError(f"method must be 'elir', 'moment' or 'morris', not {method!r}")

    def _mode(self) -> float:
        p = special.expit(_GRID)
        start = p[np.argmax(_log_sum_exp(self._log_parts(p)))]
        res = optimize.minimize_scalar(
            lambda x: -_log_sum_exp(self._log_parts(x)),
            bounds=(max(1e-9, start * 0.5), min(1 - 1e-9, start + (1 - start) * 0.5)),
            method="bounded",
            options={"xatol": 1e-12},
        )
        return float(res.x)

    def posterior_weights(self, y: int, n: int) -> np.ndarray:
        """Each component's posterior weight after y CRs in n patients."""
        log_marginal = np.log(self.weights) + stats.betabinom.logpmf(y, n, self.a, self.b)
        return np.exp(log_marginal - special.logsumexp(log_marginal))


def fit_normal_mixture(draws, components: int, *, iterations: int = 1000) -> NormalMixture:
    """Fit a ``components``-component normal mixture to ``draws`` by EM.

    Starts from the draws' quantiles, so the fit is deterministic; component SDs
    are kept above 1/1000 of the draws' SD.
    """
    x = np.asarray(draws, dtype=float).ravel()
    x = x[np.isfinite(x)]
    k = int(components)
    if k < 1 or x.size < 5 * k:
        raise ValueError(f"need at least {5 * k} finite draws for {k} component(s)")
    floor = 1e-3 * x.std()
    means = np.quantile(x, (np.arange(k) + 0.5) / k)
    sds = np.full(k, x.std() / k)
    weights = np.full(k, 1.0 / k)
    previous = -np.inf
    for _ in range(iterations):
        # components on the first axis, draws on the second: every sum over the draws
        # runs along contiguous memory, and over the components row by row
        log_parts = np.log(weights)[:, None] + _normal_log_density(x, means[:, None], sds[:, None])
        log_mix, r = _responsibilities(log_parts, axis=0)
        total = log_mix.sum()
        nk = r.sum(1) + 1e-300
        weights = nk / nk.sum()
        means = (r * x).sum(1) / nk
        sds = np.maximum(np.sqrt((r * (x - means[:, None]) ** 2).sum(1) / nk), floor)
        if total - previous < 1e-9 * abs(total):
            break
        previous = total
    order = np.argsort(-weights)
    return NormalMixture(weights[order], means[order], sds[order])


def automixfit(draws, max_components: int = 4) -> tuple[NormalMixture, dict[int, float]]:
    """The normal mixture with the lowest AIC among 1..``max_components``
    components (as RBesT's ``automixfit``), and every candidate's AIC."""
    x = np.asarray(draws, dtype=float).ravel()
    fits, aic = {}, {}
    for k in range(1, max_components + 1):
        mix = fit_normal_mixture(x, k)
        fits[k] = mix
        aic[k] = float(-2 * mix.logpdf(x).sum() + 2 * (3 * k - 1))
    best = min(aic, key=aic.get)
    return fits[best], aic
