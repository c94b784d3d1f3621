"""The built book in a real browser: every chart drawn and inside the text column, no console
errors, nothing fetched from outside, no leftovers of the machinery in the text, a light site.

Builds a temporary copy of the book (the real toc plus one extra page with a
chart, a slider chart and a claims table made by our renderer, so the check
means something before chapters exist), serves it on 127.0.0.1 and opens
every page once in headless Debian Chromium through playwright, at a desktop width where the
text column is 784 px wide (:data:`VIEWPORT`); the tests then check what each page showed.

Set FAIRENS_SCREENSHOTS=<folder> to keep a screenshot of every page.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import os
import re
import shutil
import threading
from pathlib import Path
from urllib.parse import urlparse

import nbformat
import pytest

from fairens_core import book

from conftest import CHROMIUM, require_browser

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
TEST_PAGE = "book/_browser_test/charts"
MATH_OFFLINE = importlib.util.find_spec("sphinx-mathjax-offline") is not None
VIEWPORT = {"width": 1440, "height": 900}  # the theme's widest layout: a 784 px text column
MAX_PAGE_BYTES = 1_000_000
MAX_SITE_BYTES = 20_000_000
# Text a reader should never see: test markers in code, progress bars in outputs, the
# project's internal names for the papers.
RESIDUE = {
    "NBVAL marker": re.compile(r"NBVAL"),
    "progress bar": re.compile(r"\d+%\||\bit/s\b"),
    "internal paper number": re.compile(r"paper 00\d"),
}

pytestmark = [pytest.mark.browser, pytest.mark.slow]


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
    require_browser()
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
# Each chart's drawing against the output area it sits in: its laid-out width (the SVG's
# width attribute), the width it is shown at, and whether anything around it scrolls sideways.
CHART_LAYOUT = """() => [...document.querySelectorAll('.fairens-chart')].map(el => {
    const svg = el.querySelector('svg.marks');
    const box = el.closest('.cell_output') || el.parentElement;
    const style = getComputedStyle(box);
    const column = box.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
    let scrolls = false;
    for (let e = el; e && e !== box.parentElement; e = e.parentElement)
        scrolls = scrolls || e.scrollWidth > e.clientWidth + 1;
    const legend = svg ? [...svg.querySelectorAll('.role-legend text')].map(t => t.textContent) : [];
    return {id: el.id, column: Math.round(column),
            laid_out: svg ? parseFloat(svg.getAttribute('width')) : null,
            drawn: svg ? svg.getBoundingClientRect().width : null,
            shown: svg ? Math.round(el.getBoundingClientRect().width) : null,  // el is the vega-embed box
            scrolls, cut: legend.filter(t => t.endsWith('…'))};
})"""
ICONS_DRAWN = """() => {
    const icons = [...document.querySelectorAll('.bd-header-article i.fa-solid, .bd-header-article i.fas')]
        .filter(i => i.offsetParent);
    return icons.length > 0 && icons.every(i => i.getBoundingClientRect().width > 0
        && getComputedStyle(i, '::before').fontFamily.includes('Font Awesome'));
}"""


@pytest.fixture(scope="module")
def visited(site, tmp_path_factory):
    """Open every page once; returns {page: what it showed} and the external requests blocked."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    base, html_dir, pages = site
    shots = os.environ.get("FAIRENS_SCREENSHOTS")
    seen, external = {}, []
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("profile")), executable_path=str(CHROMIUM), headless=True,
            args=FLAGS, viewport=VIEWPORT)
        try:
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
                errors, scripts = [], []
                page.on("console", lambda m, e=errors: m.type == "error" and e.append(f"console: {m.text}"))
                page.on("pageerror", lambda exc, e=errors: e.append(f"pageerror: {exc}"))
                page.on("response", lambda r, e=errors: r.status >= 400 and e.append(f"HTTP {r.status}: {r.url}"))
                page.on("request", lambda r, s=scripts: r.resource_type == "script" and s.append(r.url))
                response = page.goto(f"{base}/{rel}", wait_until="load")
                if response is None or response.status != 200:
                    errors.append(f"HTTP {response.status if response else 'no response'}")
                try:
                    page.wait_for_function(ALL_DRAWN, timeout=30_000)
                except PlaywrightTimeout:
                    errors.append(f"charts not drawn: {page.evaluate(UNDRAWN)}")
                page.wait_for_timeout(300)  # let late errors surface
                info = {"errors": errors, "scripts": scripts, "charts": page.evaluate(CHART_LAYOUT),
                        "text": page.evaluate("document.body.innerText"),
                        "icons_drawn": page.evaluate(ICONS_DRAWN)}
                if rel == TEST_PAGE + ".html":
                    info["failing_claims"] = page.locator("table.fairens-claims tr.fairens-claim-fails").count()
                    info["sliders"] = page.locator(".fairens-chart .vega-bindings input[type=range]").count()
                    info["kernel_notes"] = page.locator(".fairens-needs-kernel").count()
                    info["math"] = page.locator("mjx-container").count()
                seen[rel] = info
                if shots:
                    Path(shots).mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(Path(shots) / (rel.replace("/", "__") + ".png")), full_page=True)
                page.close()
        finally:
            ctx.close()
    return seen, sorted(set(external))


def test_every_page_renders_offline(visited):
    seen, external = visited
    assert TEST_PAGE + ".html" in seen and "book/intro.html" in seen
    test_page = seen[TEST_PAGE + ".html"]
    assert len(test_page["charts"]) == 2
    assert test_page["failing_claims"] == 1
    assert test_page["sliders"] == 1, "no slider"
    assert test_page["kernel_notes"] == 1, "no live-kernel note"
    if MATH_OFFLINE:
        assert test_page["math"] >= 2, "MathJax did not typeset"
    problems = [f"{rel}: {e}" for rel, info in seen.items() for e in info["errors"]]
    problems += [f"external request blocked: {u}" for u in external]
    assert not problems, "\n".join(problems)


def test_charts_fit_the_column(visited):
    """Laid out no wider than the column (charts.fit_width), so neither scrolled nor scaled down,
    and every legend label in full."""
    problems = []
    for rel, info in visited[0].items():
        for c in info["charts"]:
            if c["laid_out"] is None:
                continue  # not drawn: test_every_page_renders_offline says so
            if c["scrolls"] or c["shown"] > c["column"]:
                problems.append(f"{rel} {c['id']}: {c['shown']} px in a {c['column']} px column, scrolls")
            elif c["laid_out"] > c["drawn"] + 1:
                problems.append(f"{rel} {c['id']}: laid out {c['laid_out']:.0f} px wide, scaled down "
                                f"to fit a {c['column']} px column")
            if c["cut"]:
                problems.append(f"{rel} {c['id']}: legend labels cut: {c['cut']}")
    assert not problems, "\n".join(problems)


def test_charts_shrink_with_a_narrow_window(site, tmp_path):
    """On a narrow screen a chart scales down with the column instead of scrolling."""
    from playwright.sync_api import sync_playwright

    base, _, _ = site
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"), executable_path=str(CHROMIUM), headless=True, args=FLAGS,
            viewport={"width": 420, "height": 800})
        try:
            page = ctx.new_page()
            page.goto(f"{base}/{TEST_PAGE}.html", wait_until="load")
            page.wait_for_function(ALL_DRAWN, timeout=30_000)
            charts = page.evaluate(CHART_LAYOUT)
        finally:
            ctx.close()
    assert charts and all(not c["scrolls"] and c["shown"] <= c["column"] for c in charts), charts


def test_no_machinery_in_the_text(visited):
    problems = [f"{rel}: {what}: {sorted(set(rx.findall(info['text'])))[:3]}"
                for rel, info in visited[0].items() for what, rx in RESIDUE.items()
                if rx.search(info["text"])]
    assert not problems, "\n".join(problems)


def test_site_is_light(site, visited):
    _, html_dir, _ = site
    heavy = [f"{p.relative_to(html_dir)}: {p.stat().st_size / 1e6:.2f} MB"
             for p in html_dir.rglob("*.html") if p.stat().st_size > MAX_PAGE_BYTES]
    assert not heavy, "pages over 1 MB of HTML:\n" + "\n".join(heavy)
    total = sum(p.stat().st_size for p in html_dir.rglob("*") if p.is_file())
    assert total < MAX_SITE_BYTES, f"the site is {total / 1e6:.1f} MB"
    assert not (html_dir / "_static" / "scripts" / "fontawesome.js").exists()
    for rel, info in visited[0].items():
        assert not any("fontawesome" in u for u in info["scripts"]), rel
        assert info["icons_drawn"], f"{rel}: the theme's icons are not drawn without fontawesome.js"
        # the 0.9 MB vega bundle only where there are charts
        assert any("fairens-vega.js" in u for u in info["scripts"]) == bool(info["charts"]), rel


def test_vega_bundle_is_served_locally(site):
    _, html_dir, _ = site
    bundle = html_dir / "_static" / "fairens-vega.js"
    assert bundle.exists() and bundle.stat().st_size > 300_000
    page = (html_dir / (TEST_PAGE + ".html")).read_text(encoding="utf-8")
    assert "_static/fairens-vega.js" in page and "_static/fairens-charts.css" in page
    intro = (html_dir / "book" / "intro.html").read_text(encoding="utf-8")
    assert "fairens-chart" not in intro and "_static/fairens-vega.js" not in intro


def test_math_is_offline(site):
    if not MATH_OFFLINE:
        pytest.skip("sphinx-mathjax-offline is not installed: pages with math would load MathJax from a CDN")
    _, html_dir, _ = site
    page = (html_dir / (TEST_PAGE + ".html")).read_text(encoding="utf-8")
    assert "_static/mathjax/tex-chtml.js" in page and "cdn.jsdelivr" not in page
    mathjax = html_dir / "_static" / "mathjax"
    assert (mathjax / "output" / "chtml" / "fonts" / "woff-v2").is_dir()
    assert not (mathjax / "tex-svg-full.js").exists()  # only the component the pages load
    assert sum(p.stat().st_size for p in mathjax.rglob("*") if p.is_file()) < 5_000_000
