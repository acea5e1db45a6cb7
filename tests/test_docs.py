"""The documentation site: built strictly (every warning an error, every notebook
cell executed), complete (every public name in the API reference, every page in the
navigation) and working in a real browser (pages render, images and maths load,
internal links resolve)."""

from __future__ import annotations

import functools
import inspect
import os
import subprocess
import sys
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from numpydoc.docscrape import NumpyDocString

import scleromx_bayes as sxb
from conftest import real_browser

DOCS = Path(__file__).resolve().parents[1] / "docs"
PAGES = [
    "index",
    "tutorial",
    *(f"howto/{p}" for p in ("spec", "grid", "counts", "dask", "resume", "reproduce")),
    *(f"explanation/{p}" for p in ("model", "new_site", "pooling", "exnex", "borrowing", "ess")),
    "api/index",
]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site built as ``./dev docs`` builds it: strict, every cell executed."""
    out = tmp_path_factory.mktemp("docs") / "html"
    # the notebooks' kernels keep matplotlib's inline backend (an MPLBACKEND of Agg
    # would silently drop every figure of the explanation pages)
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
    env["SXB_DOCS_EXECUTE"] = "force"
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", str(DOCS), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=1800,
    )
    if done.returncode != 0:
        pytest.fail(f"strict docs build failed:\n{(done.stdout + done.stderr)[-6000:]}")
    return out


class _Links(HTMLParser):
    """Every id, href and img src of a page."""

    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()
        self.hrefs: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if "id" in attrs:
            self.ids.add(attrs["id"])
        if tag == "a" and attrs.get("href"):
            self.hrefs.append(attrs["href"])
        if tag == "img" and attrs.get("src"):
            self.images.append(attrs["src"])


@functools.cache
def parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def internal_targets(page: Path, href: str) -> tuple[Path, str] | None:
    """The file and fragment an internal link points to (None for external links)."""
    parts = urlsplit(href)
    if parts.scheme or parts.netloc or href.startswith("mailto:"):
        return None
    target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
    if target.is_dir():
        target = target / "index.html"
    return target, unquote(parts.fragment)


def test_every_page_is_built_and_in_the_navigation(site):
    for page in PAGES:
        assert (site / f"{page}.html").exists(), page
    nav = parse(site / "index.html").hrefs
    sections = ("tutorial.html", "howto/index.html", "explanation/index.html", "api/index.html")
    for section in sections:
        assert any(h.split("#")[0].endswith(section) for h in nav), section


def test_api_reference_documents_everything_in_all(site):
    ids: set[str] = set()
    for page in (site / "api").glob("*.html"):
        ids |= parse(page).ids
    missing = [name for name in sxb.__all__ if f"scleromx_bayes.{name}" not in ids]
    assert missing == [], missing


def test_tutorial_outputs_come_from_executing_it(site):
    html = (site / "tutorial.html").read_text(encoding="utf-8")
    source = (DOCS / "tutorial.md").read_text(encoding="utf-8")
    n_cells = source.count("```{code-cell}")
    # every cell ran: each one's input is in the page, and the cells that display
    # something have output blocks (the figures as embedded or copied images)
    assert html.count("cell_input") == n_cells
    assert html.count("cell_output") >= n_cells // 2
    assert len(parse(site / "tutorial.html").images) >= 4  # ppc, forest, sensitivity, OC
    assert 'class="output traceback' not in html  # a cell that raised (allowed: none)
    # outputs that only the code can give: the error's file/row/column, the fitted
    # model's name in the summary's attributes, the real number of scenarios
    text = unescape(html)
    assert "row 3, column 'site': blank site" in text
    assert "'model_name': 'base'" in text
    assert "SYNTHETIC" in text


@pytest.mark.parametrize("page", [p for p in PAGES if p.startswith("explanation/")])
def test_every_explanation_has_its_figure(site, page):
    assert [src for src in parse(site / f"{page}.html").images if "_images/" in src], page


def test_every_internal_link_and_image_resolves(site):
    broken = []
    for page in site.rglob("*.html"):
        if "_static" in page.parts or "_sources" in page.parts:
            continue
        links = parse(page)
        for href in links.hrefs:
            target = internal_targets(page, href)
            if target is None:
                continue
            path, fragment = target
            if not path.exists():
                broken.append(f"{page.relative_to(site)}: {href} (no file)")
            elif fragment and path.suffix == ".html" and fragment not in parse(path).ids:
                broken.append(f"{page.relative_to(site)}: {href} (no #{fragment})")
        for src in links.images:
            if src.startswith("data:"):
                continue
            target = internal_targets(page, src)
            if target is not None and not target[0].exists():
                broken.append(f"{page.relative_to(site)}: image {src}")
    assert broken == [], broken[:20]


def test_the_site_in_a_real_browser(site, tmp_path):
    driver, why = real_browser()
    if driver is None:
        pytest.skip(f"no real browser here: {why}")  # -ra prints the reason
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        for page in ("index", "tutorial", "explanation/model", "explanation/pooling", "api/fit"):
            driver.get((site / f"{page}.html").resolve().as_uri())
            errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
            assert errors == [], (page, errors)
            assert driver.find_element(By.TAG_NAME, "h1").is_displayed(), page
            images = driver.execute_script(
                "return Array.from(document.images).map(i => [i.src, i.complete, i.naturalWidth]);"
            )
            assert all(done and width > 0 for _, done, width in images), (page, images)
            if page == "explanation/model":  # offline MathJax typesets the equations
                WebDriverWait(driver, 20).until(
                    lambda d: d.find_elements(By.CSS_SELECTOR, "mjx-container")
                )
            if page == "tutorial":
                assert len(images) >= 4
                banner = driver.find_element(By.CSS_SELECTOR, ".admonition.warning")
                assert banner.is_displayed() and "synthetic" in banner.text.lower()
                # the side navigation's links lead to pages that exist
                for link in driver.find_elements(By.CSS_SELECTOR, "nav a.reference.internal"):
                    href = link.get_attribute("href")
                    if href and href.startswith("file:"):
                        assert Path(unquote(urlsplit(href).path)).exists(), href
        shot = Path(os.environ.get("SXB_ARTIFACTS", tmp_path)) / "docs-tutorial.png"
        shot.parent.mkdir(parents=True, exist_ok=True)
        driver.get((site / "tutorial.html").resolve().as_uri())
        assert driver.save_screenshot(str(shot))
    finally:
        driver.quit()


def test_every_public_name_has_a_numpy_docstring_with_an_example():
    def examples(obj) -> str:
        return "\n".join(NumpyDocString(inspect.getdoc(obj) or "")["Examples"])

    lacking = [name for name in sxb.__all__ if ">>>" not in examples(getattr(sxb, name))]
    assert lacking == [], lacking


def test_every_public_function_documents_its_parameters_and_return():
    """NumPy docstrings in full: a Parameters entry for every argument of the
    signature (no stale ones) and a Returns section when something is returned."""
    wrong = []
    for name in sxb.__all__:
        obj = getattr(sxb, name)
        if not inspect.isfunction(obj):
            continue
        doc = NumpyDocString(inspect.getdoc(obj))
        documented = {
            part.strip().lstrip("*") for p in doc["Parameters"] for part in p.name.split(",")
        }
        signature = inspect.signature(obj)
        wanted = set(signature.parameters)
        returns = signature.return_annotation not in (inspect.Signature.empty, None, "None")
        if documented != wanted or (returns and not doc["Returns"]):
            wrong.append((name, sorted(wanted - documented), sorted(documented - wanted)))
    assert wrong == [], wrong
