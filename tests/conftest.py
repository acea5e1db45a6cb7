"""Shared fixtures. Fits use small draws and fixed seeds; compiled models are
cached per layout, so fixtures that share a layout compile once per session."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import io
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from pytensor.compile.mode import Mode

import scleromx_bayes as sxb

FAST = {"draws": 400, "tune": 400, "chains": 2}
# A reference graph a test evaluates a few times: PyTensor's rewrites, then each
# operation's own Python code. The default mode would compile it with numba, and
# FAST_COMPILE with gcc: seconds per graph on an empty compile cache, for nothing
# the test checks.
REFERENCE_MODE = Mode(linker="py", optimizer="fast_run")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


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


def run_cli(
    *args, cwd=None, columns: int = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run the real console script in a subprocess, as a user would (``env``: variables
    set for it on top of this process's)."""
    exe = Path(sys.executable).with_name("scleromx-bayes")
    return subprocess.run(
        [str(exe), *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "COLUMNS": str(columns), **(env or {})},
        timeout=600,
    )


def invoke_cli(*args, columns: int = 120) -> subprocess.CompletedProcess:
    """Run the command line's ``main`` in this process, its output captured: what
    :func:`run_cli` sees (exit code, stdout, stderr) without a new interpreter's
    imports (2-4 s a call). For what does not depend on the process: messages, exit
    codes, files written or left alone. An exception that escapes ``main`` (a
    traceback, in a terminal) propagates to the test."""
    from scleromx_bayes import cli

    words = [str(a) for a in args]
    stdout, stderr = io.StringIO(), io.StringIO()
    widths = [(console, console._width) for console in (cli.out, cli.err)]
    argv = sys.argv
    try:
        # as the console script sees it: click names the program after argv[0], and a
        # report records the command it was made with
        sys.argv = ["scleromx-bayes", *words]
        for console, _ in widths:
            console.width = columns
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                cli.main(words)
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
        for console, width in widths:
            console._width = width
    return subprocess.CompletedProcess(words, code, stdout.getvalue(), stderr.getvalue())


class ScenarioExecutor(cf.ThreadPoolExecutor):
    """One worker, so scenarios finish in order; records the scenarios it is asked to
    run (``submitted``). A user's Ctrl-C arrives while the ``interrupt_at``-th
    scenario runs; scenario ``fail`` dies in its worker."""

    def __init__(self, interrupt_at: int | None = None, fail: str | None = None):
        super().__init__(max_workers=1)
        self.submitted: list[str] = []
        self.interrupt_at, self.fail = interrupt_at, fail

    def submit(self, fn, *args, **kwargs):
        name = args[0].scenario.name
        self.submitted.append(name)
        if len(self.submitted) == self.interrupt_at:
            return super().submit(_raise, KeyboardInterrupt())
        if name == self.fail:
            return super().submit(_raise, FloatingPointError("worker crashed"))
        return super().submit(fn, *args, **kwargs)


def _raise(exc: BaseException):
    raise exc


def real_browser():
    """A headless Chromium driven by Selenium, or the reason there is none."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError as exc:
        return None, f"selenium is not installed ({exc})"
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        return None, f"no Chromium at {CHROMIUM} / driver at {CHROMEDRIVER} (apt chromium-driver)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options), ""
    except Exception as exc:  # a browser that cannot start is a reason to skip, said
        return None, f"Chromium did not start: {type(exc).__name__}: {exc}"
