"""The built book in a real browser: every chart drawn, no console errors, nothing fetched
from outside.

Builds a temporary copy of the book (the real toc plus one extra page with a
chart, a slider chart and a claims table made by our renderer, so the check
means something before chapters exist), serves it on 127.0.0.1 and opens
every page in headless Debian Chromium through playwright.

Set FAIRENS_SCREENSHOTS=<folder> to keep a screenshot of every page.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import os
import shutil
import threading
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import pytest

from fairens_core import book

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
TEST_PAGE = "book/_browser_test/charts"
MATH_OFFLINE = importlib.util.find_spec("sphinx-mathjax-offline") is not None

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def _require_browser():
    reason = None
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium; .ci/run installs it)"
    elif importlib.util.find_spec("playwright") is None:
        reason = "the playwright package is not installed"
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"browser test cannot run in CI: {reason}")
        pytest.skip(reason)


CHART_CELLS = [
    "import altair as alt, pandas as pd\n"
    "from fairens_core import charts\n"
    "from fairens_core.claims import Claim, show_claims\n"
    "charts.enable()",
    "df = pd.DataFrame({'members': [1, 2, 3, 4] * 2, 'acc': [.80, .84, .86, .87, .70, .76, .79, .81],\n"
    "                   'group': ['top-k'] * 4 + ['bottom-k'] * 4})\n"
    "df['lo'], df['hi'] = df.acc - .01, df.acc + .01\n"
    "charts.line_with_band(df, 'members:Q', 'acc:Q', 'lo:Q', 'hi:Q', 'group:N', title='accuracy')",
    "m = charts.slider('members', df.members)\n"
    "alt.Chart(df).mark_bar().encode(x='acc:Q', y='group:N').add_params(m)"
    ".transform_filter(alt.datum.members == m)",
    "show_claims([Claim('renders', 'here', 'yes', True), Claim('fails', 'there', 'no', False)])",
    "import ipywidgets\ncharts.live_widget(ipywidgets.IntSlider(description='live only'))",
]


def _test_page(path: Path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    intro = "# Browser test page\n\nOne chart, one slider chart, a claims table and a widget."
    if MATH_OFFLINE:
        intro += "\n\nInline math $\\bar f = \\frac{1}{M}\\sum_j f_j$ and a display:\n\n$$L_\\beta = (1-\\beta)\\,L_{ind} + \\beta\\,L_{joint}$$"
    nb.cells = [nbformat.v4.new_markdown_cell(intro)] + [nbformat.v4.new_code_cell(c) for c in CHART_CELLS]
    path.parent.mkdir(parents=True)
    nbformat.write(nb, str(path))


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Build the book copy and serve its HTML; yields (base_url, html_dir, page paths)."""
    _require_browser()
    import papermill as pm

    src = tmp_path_factory.mktemp("book")
    for name in ("_config.yml", "references.bib"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "book", src / "book",
                    ignore=shutil.ignore_patterns("_build", ".ipynb_checkpoints"))
    toc = (ROOT / "_toc.yml").read_text(encoding="utf-8")
    toc += f"  - caption: Browser test\n    chapters:\n      - file: {TEST_PAGE}\n"
    (src / "_toc.yml").write_text(toc, encoding="utf-8")

    page = src / (TEST_PAGE + ".ipynb")
    _test_page(page)
    pm.execute_notebook(str(page), str(page), kernel_name="python3", cwd=str(page.parent),
                        progress_bar=False)

    assert book.build(src) == 0, "jupyter-book build failed"
    html = src / "_build" / "html"
    pages = [p.relative_to(src).with_suffix(".html").as_posix()
             for p in book.toc_files(src) if p.exists()]

    handler = functools.partial(_QuietHandler, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", html, pages
    finally:
        server.shutdown()
        server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


ALL_DRAWN = """() => [...document.querySelectorAll('.fairens-chart, .vega-embed')]
                     .every(el => el.querySelector('svg, canvas'))"""
UNDRAWN = """() => [...document.querySelectorAll('.fairens-chart, .vega-embed')]
                   .filter(el => !el.querySelector('svg, canvas')).map(el => el.id || el.className)"""


def test_every_page_renders_offline(site, tmp_path):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    base, html_dir, pages = site
    assert TEST_PAGE + ".html" in pages and "book/intro.html" in pages
    shots = os.environ.get("FAIRENS_SCREENSHOTS")
    problems, n_charts = [], {}
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        try:
            external = []

            def offline_only(route):
                url = route.request.url
                if urlparse(url).hostname in ("127.0.0.1", "localhost") or url.startswith(("data:", "blob:")):
                    route.continue_()
                else:
                    external.append(url)
                    route.abort()

            ctx.route("**/*", offline_only)
            for rel in pages:
                page = ctx.new_page()
                errors = []
                page.on("console", lambda m, e=errors: m.type == "error" and e.append(f"console: {m.text}"))
                page.on("pageerror", lambda exc, e=errors: e.append(f"pageerror: {exc}"))
                page.on("response", lambda r, e=errors: r.status >= 400 and e.append(f"HTTP {r.status}: {r.url}"))
                response = page.goto(f"{base}/{rel}", wait_until="load")
                if response is None or response.status != 200:
                    problems.append(f"{rel}: HTTP {response.status if response else 'no response'}")
                try:
                    page.wait_for_function(ALL_DRAWN, timeout=30_000)
                except PlaywrightTimeout:
                    problems.append(f"{rel}: charts not drawn: {page.evaluate(UNDRAWN)}")
                page.wait_for_timeout(300)  # let late errors surface
                n_charts[rel] = page.evaluate("document.querySelectorAll('.fairens-chart').length")
                problems += [f"{rel}: {e}" for e in errors]
                if rel == TEST_PAGE + ".html":
                    assert page.locator("table.fairens-claims tr.fairens-claim-fails").count() == 1
                    assert page.locator(".fairens-chart .vega-bindings input[type=range]").count() == 1, "no slider"
                    assert page.locator(".fairens-needs-kernel").count() == 1, "no live-kernel note"
                    if MATH_OFFLINE:
                        assert page.locator("mjx-container").count() >= 2, "MathJax did not typeset"
                if shots:
                    Path(shots).mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(Path(shots) / (rel.replace("/", "__") + ".png")), full_page=True)
                page.close()
            problems += [f"external request blocked: {u}" for u in sorted(set(external))]
        finally:
            ctx.close()
    assert n_charts[TEST_PAGE + ".html"] == 2
    assert not problems, "\n".join(problems)


def test_vega_bundle_is_served_locally(site):
    _, html_dir, _ = site
    bundle = html_dir / "_static" / "fairens-vega.js"
    assert bundle.exists() and bundle.stat().st_size > 300_000
    intro = (html_dir / "book" / "intro.html").read_text(encoding="utf-8")
    assert "_static/fairens-vega.js" in intro


def test_math_is_offline(site):
    if not MATH_OFFLINE:
        pytest.skip("sphinx-mathjax-offline is not installed: pages with math would load MathJax from a CDN")
    _, html_dir, _ = site
    page = (html_dir / (TEST_PAGE + ".html")).read_text(encoding="utf-8")
    assert "_static/mathjax/tex-chtml.js" in page and "cdn.jsdelivr" not in page
