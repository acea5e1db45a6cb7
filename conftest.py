"""Doctest set-up: the docstring examples of ``src/scleromx_bayes`` run as tests.

Examples that need a fitted model, a sensitivity result or an OC result use the
small ones built here once per session (``fit``, ``ds``, ``sens``, ``oc``, ...);
each example runs in its own temporary folder, so the files it writes go nowhere.
"""

from __future__ import annotations

import warnings

import pytest
from _pytest.doctest import DoctestItem


@pytest.fixture(scope="session")
def doctest_objects():
    import numpy as np
    import pandas as pd

    import scleromx_bayes as sxb

    cohort = sxb.load_example()  # synthetic
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # short fits: R-hat warnings are expected here
        fit = sxb.fit(cohort, "base", draws=200, tune=200, chains=2, seed=1)
        fit_b = sxb.fit(cohort, "no_pooling", draws=200, tune=200, chains=2, seed=1)
        grid = sxb.Grid.one_at_a_time(
            {"outcome": ["cr", "orr"], "site_sd": [0.5, 1.0]}, draws=200, tune=200, chains=2
        )
        sens = sxb.run_sensitivity(cohort, grid)
        oc = sxb.operating_characteristics(
            cohort,
            "base",
            [
                sxb.Truth.at_reference(cohort),
                sxb.Truth.one_better("DNS rescue", 0.3, p=sxb.reference_rates(cohort)),
            ],
            sxb.DecisionRule.better(0.9),
            n_sims=20,
            seed=1,
        )
    return {
        "sxb": sxb,
        "np": np,
        "pd": pd,
        "cohort": cohort,
        "fit": fit,
        "fit_a": fit,
        "fit_b": fit_b,
        "ds": fit.summary(),
        "sens": sens,
        "oc": oc,
    }


@pytest.fixture(autouse=True)
def _doctest_setup(request):
    if not isinstance(request.node, DoctestItem):
        yield
        return
    request.getfixturevalue("doctest_namespace").update(request.getfixturevalue("doctest_objects"))
    monkeypatch = request.getfixturevalue("monkeypatch")
    monkeypatch.chdir(request.getfixturevalue("tmp_path"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def pytest_collection_modifyitems(config, items):
    """The documentation build, the longest single job of the suite, goes first: with
    pytest-xdist (``--dist loadfile``, see ``pyproject.toml``) one worker builds it
    while the other runs the rest, a test file at a time (a file's tests share its
    module fixtures and compiled models)."""
    items.sort(key=lambda item: item.nodeid.split("::")[0] != "tests/test_docs.py")
