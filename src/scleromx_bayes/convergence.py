"""Rank-normalised R-hat and bulk / tail ESS for many scalars at once.

The same computation as ArviZ's (``arviz_stats.base`` diagnostics: Vehtari, Gelman,
Simpson, Carpenter & Bürkner 2021), arranged so that every step runs over all of a
fit's scalars in one NumPy call: ArviZ's array functions loop over scalars in
Python (rank, normal quantiles, FFT, Geyer's sequences one scalar at a time), which
took 0.05-0.45 s a fit, as long as sampling a small model. Geyer's initial positive
and monotone sequences become a first-crossing index and a running minimum of pair
sums. ``tests/test_model.py`` checks the numbers against ArviZ's, scalar by scalar.

Draws that ArviZ would refuse or treat specially (non-finite values, fewer than 2
chains or 16 draws) are handed to ArviZ itself by :func:`rhat_ess`.
"""

from __future__ import annotations

import numpy as np
from arviz_stats.base import array_stats
from scipy import special, stats
from scipy.fft import next_fast_len

__all__ = ["rhat_ess"]


def _z_scale(x: np.ndarray) -> np.ndarray:
    """Normal scores of the ranks of each scalar's values (Blom's offset 3/8)."""
    k = x.shape[0]
    flat = x.reshape(k, -1)
    rank = stats.rankdata(flat, method="average", axis=1)
    size = flat.shape[1]
    # ndtri is scipy.stats.norm.ppf's own kernel, without its argument handling
    return special.ndtri((rank - 0.375) / (size - 0.75 + 1)).reshape(x.shape)


def _split(x: np.ndarray) -> np.ndarray:
    """Each chain's first and last half as chains of their own: (k, 2m, n // 2)."""
    half = x.shape[-1] // 2
    return np.concatenate([x[..., :half], x[..., -half:]], axis=1)


def _rhat(x: np.ndarray) -> np.ndarray:
    n = x.shape[-1]
    between = n * np.var(np.mean(x, axis=-1), axis=-1, ddof=1)
    within = np.mean(np.var(x, axis=-1, ddof=1), axis=-1)
    return np.sqrt((between / within + n - 1) / n)


def _autocov(x: np.ndarray) -> np.ndarray:
    n = x.shape[-1]
    m = next_fast_len(2 * n)
    centred = x - x.mean(-1, keepdims=True)
    spectrum = np.fft.rfft(centred, n=m, axis=-1)
    spectrum *= np.conjugate(spectrum)
    return np.fft.irfft(spectrum, n=m, axis=-1)[..., :n] / n


def _ess(x: np.ndarray) -> np.ndarray:
    """ESS of each scalar's (chain, draw) array, Geyer's truncation vectorised."""
    k, chains, n = x.shape
    flat = x.reshape(k, -1)
    constant = (flat.max(axis=1) - flat.min(axis=1)) < np.finfo(float).resolution
    acov = _autocov(x)
    mean_var = acov[:, :, 0].mean(axis=1) * n / (n - 1.0)
    var_plus = mean_var * (n - 1.0) / n
    if chains > 1:
        var_plus = var_plus + np.var(x.mean(axis=-1), axis=-1, ddof=1)
    rho = 1.0 - (mean_var[:, None] - acov.mean(axis=1)) / var_plus[:, None]
    rho[:, 0] = 1.0
    # pairs (rho[2j], rho[2j + 1]); ArviZ evaluates pair j >= 1 while 2j - 1 < n - 3
    # and the previous pair's sum is positive, and stores the pairs with sum >= 0
    j_max = int(np.ceil((n - 2) / 2)) - 1
    pairs = rho[:, 0 : 2 * j_max + 2 : 2] + rho[:, 1 : 2 * j_max + 2 : 2]
    crossing = pairs[:, 1:] <= 0
    first = crossing.argmax(axis=1) + 1 if crossing.shape[1] else np.zeros(k, dtype=int)
    last = np.where(crossing.any(axis=1), first, j_max)
    last = np.where(pairs[:, 0] > 0, last, 0)  # J: the last pair evaluated
    monotone = np.minimum.accumulate(pairs, axis=1)  # Geyer's initial monotone sequence
    within = np.arange(pairs.shape[1])[None, :] < last[:, None]
    rows = np.arange(k)
    even = rho[rows, 2 * last]
    extra = np.where((pairs[rows, last] >= 0) | (even > 0), even, 0.0)
    tau = -1.0 + 2.0 * np.where(within, monotone, 0.0).sum(axis=1) + extra
    size = chains * n
    tau = np.maximum(tau, 1 / np.log10(size))
    ess = size / tau
    ess = np.where(np.isnan(rho).any(axis=1), np.nan, ess)
    return np.where(constant, float(size), ess)


def _ess_tail(x: np.ndarray, prob: float) -> np.ndarray:
    flat = x.reshape(x.shape[0], -1)
    out = []
    for p in sorted((prob, 1 - prob)):
        q = np.quantile(flat, p, axis=1)
        out.append(_ess(_split((x <= q[:, None, None]).astype(float))))
    return np.minimum(*out)


def rhat_ess(draws: np.ndarray, tail_prob: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rank-normalised R-hat, bulk ESS and tail ESS of each scalar.

    Parameters
    ----------
    draws : numpy.ndarray
        (scalar, chain, draw).
    tail_prob : float
        As ArviZ's tail ESS takes it: the quantiles are ``tail_prob`` and
        ``1 - tail_prob`` (``az.ess`` passes ``stats.ci_prob``).

    Returns
    -------
    tuple of numpy.ndarray
        R-hat, bulk ESS, tail ESS, one value per scalar (NaN where undefined).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> rhat, bulk, tail = rhat_ess(rng.normal(size=(3, 4, 500)), 0.89)
    >>> bool((rhat < 1.02).all() and (bulk > 1000).all())
    True
    """
    draws = np.asarray(draws, dtype=float)
    _, chains, n = draws.shape
    if chains < 2 or n < 16 or not np.isfinite(draws).all():
        return (
            array_stats.rhat(draws, chain_axis=-2, draw_axis=-1, method="rank"),
            array_stats.ess(draws, chain_axis=-2, draw_axis=-1, method="bulk"),
            array_stats.ess(draws, chain_axis=-2, draw_axis=-1, method="tail", prob=tail_prob),
        )
    split = _split(draws)
    folded = np.abs(split - np.median(split.reshape(split.shape[0], -1), axis=1)[:, None, None])
    z = _z_scale(split)
    rhat = np.maximum(_rhat(z), _rhat(_z_scale(folded)))
    return rhat, _ess(z), _ess_tail(draws, tail_prob)
