"""Shared fixtures. Fits use small draws and fixed seeds; compiled models are
cached per layout, so fixtures that share a layout compile once per session."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import scleromx_bayes as sxb

FAST = {"draws": 400, "tune": 400, "chains": 2}


def quiet_fit(*args, **kwargs):
    """sxb.fit without the diagnostics warning: tests assert on diagnostics themselves."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return sxb.fit(*args, **kwargs)


@pytest.fixture(scope="session")
def example():
    return sxb.load_example()


@pytest.fixture(scope="session")
def base_fit(example):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # small draws: ESS warnings expected
        return sxb.fit(example, "base", seed=11, **FAST)


@pytest.fixture(scope="session")
def base_summary(base_fit):
    return base_fit.summary()


def write_csv(tmp_path, text: str, name: str = "cohort.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def run_cli(*args, cwd=None, columns: int = 120) -> subprocess.CompletedProcess:
    """Run the real console script in a subprocess, as a user would."""
    exe = Path(sys.executable).with_name("scleromx-bayes")
    return subprocess.run(
        [str(exe), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "COLUMNS": str(columns)},
        timeout=600,
    )
