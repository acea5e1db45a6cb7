"""R-hat and ESS for all scalars at once (convergence.py) are ArviZ's, scalar by scalar."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from arviz_stats.base import array_stats

from scleromx_bayes.convergence import rhat_ess


def _ar1(rng, phi, chains, draws):
    """AR(1) chains, one scalar per coefficient: autocorrelation from none to strong."""
    phi = np.asarray(phi)[:, None]
    x = np.zeros((phi.shape[0], chains, draws))
    noise = rng.normal(size=x.shape)
    for t in range(1, draws):
        x[..., t] = phi * x[..., t - 1] + noise[..., t]
    return x


def _cases():
    rng = np.random.default_rng(1)
    yield "independent", rng.normal(size=(5, 4, 1000))
    yield "autocorrelated", _ar1(rng, [0.0, 0.5, 0.9, 0.99, -0.5, 0.95], 2, 500)
    yield "odd length", _ar1(rng, [0.2, 0.8, 0.97, 0.0], 3, 33)
    for draws in (16, 17, 18, 25):  # the shortest the fast path takes
        yield f"{draws} draws", _ar1(rng, [0.1, 0.9, -0.3], 2, draws)
    yield "a chain elsewhere", rng.normal(size=(3, 4, 200)) + np.array([0, 0, 0, 3.0])[:, None]
    yield "a constant", np.concatenate([np.zeros((1, 2, 100)), rng.normal(size=(1, 2, 100))])
    yield "ties", rng.integers(0, 3, size=(3, 2, 300)).astype(float)
    yield "too short: ArviZ's own", rng.normal(size=(2, 2, 9))
    with_nan = rng.normal(size=(2, 2, 50))
    with_nan[0, 0, 3] = np.nan
    yield "a NaN: ArviZ's own", with_nan


@pytest.mark.parametrize("name,draws", list(_cases()), ids=[c[0] for c in _cases()])
def test_rhat_and_ess_are_arviz_own(name, draws):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a constant's R-hat is 0 / 0
        rhat, bulk, tail = rhat_ess(draws, 0.89)
        expected = (
            array_stats.rhat(draws, method="rank"),
            array_stats.ess(draws, method="bulk"),
            array_stats.ess(draws, method="tail", prob=0.89),
        )
    for ours, theirs in zip((rhat, bulk, tail), expected, strict=True):
        np.testing.assert_allclose(ours, theirs, rtol=1e-11, atol=0, equal_nan=True)
    assert np.isfinite(bulk).any()
