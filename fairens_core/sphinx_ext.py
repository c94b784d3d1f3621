"""The book's Sphinx extension (``extra_extensions`` in ``_config.yml``).

* Charts: a notebook stores each chart as a Vega-Lite spec only (see :mod:`fairens_core.charts`);
  when a notebook is read, every such output gets the book's offline HTML
  (:func:`add_chart_html`), and the pages that have charts load vega, vega-lite and vega-embed
  (the bundle that :mod:`fairens_core.charts` builds from vl-convert) and a small stylesheet
  from ``_static``; the other pages load neither. Widget outputs that would show only their
  text repr in a static page (a frozen progress bar) are dropped (:func:`drop_dead_widgets`).
* MathJax: when the ``sphinx-mathjax-offline`` package is installed, pages with math load
  its ``tex-chtml.js`` from ``_static/mathjax``, and only the files that component can load
  are shipped (:data:`MATHJAX_KEEP`), not the package's 24 MB.
* Weight: the theme's Font Awesome script (1.5 MB, it turns icons into inline SVG) is dropped:
  the theme's stylesheet draws the same icons from its web fonts. Source maps and the theme's
  translation catalogues, which no page loads, are removed too.

It lives apart from :mod:`fairens_core.book` because charts needs altair, which the machines
that only execute chapters (``python -m fairens_core ...`` on a GPU) may lack.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

from sphinx.util import logging

from .charts import JS_FILE, MIME_VEGALITE, book_html, write_js_bundle

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
CSS_FILE = "fairens-charts.css"
# Charts are laid out at most charts.MAX_WIDTH px wide; on a narrower screen, or with fonts
# wider than the build machine's, the SVG scales down with the column instead of scrolling.
CHART_CSS = """\
.fairens-chart { max-width: 100%; box-sizing: border-box; }  /* vega-embed draws into this div */
.fairens-chart svg.marks { max-width: 100%; height: auto; }
"""

MATHJAX_PACKAGE = "sphinx-mathjax-offline"
MATHJAX_COMPONENT = "tex-chtml.js"
# What tex-chtml.js loads at run time: its fonts, TeX packages on first use (\boldsymbol,
# \cancel, ...), and the accessibility modules its menu loads with their English speech rules.
MATHJAX_KEEP = (
    MATHJAX_COMPONENT,
    "output/chtml/fonts/woff-v2",
    "input/tex/extensions",
    "a11y",
    "input/mml.js",  # semantic-enrich, which the explorer needs, parses MathML
    "sre/mathmaps/base.json",
    "sre/mathmaps/en.json",
)
FONTAWESOME_JS = "scripts/fontawesome.js"
_FONTAWESOME_TAG = re.compile(r'[ \t]*<script[^>]*src="[^"]*_static/scripts/fontawesome\.js[^"]*"[^>]*>\s*</script>\n?')


# ------------------------------------------------------------------ charts


def add_chart_html(nb: dict) -> int:
    """Give each Vega-Lite output of a notebook (nbformat JSON) the book's offline HTML.

    Outputs that already carry ``text/html`` (stored by an older renderer) keep it. Charts
    are numbered in page order, so the div ids are stable. Returns the number of charts.
    """
    n = 0
    for cell in nb.get("cells", []):
        for output in cell.get("outputs") or []:
            data = output.get("data") or {}
            spec = data.get(MIME_VEGALITE)
            if not isinstance(spec, dict):
                continue
            n += 1
            data.setdefault("text/html", book_html(spec, n))
    return n


def drop_dead_widgets(nb: dict) -> int:
    """Remove widget outputs that have nothing to show without a kernel; returns how many.

    A widget view draws nothing in a static page, and its ``text/plain`` is the widget's repr:
    a progress bar frozen at "0%|", for instance. Widgets shown with
    :func:`fairens_core.charts.live_widget` carry a ``text/html`` note and stay.
    """
    dropped = 0
    for cell in nb.get("cells", []):
        outputs = cell.get("outputs")
        if not outputs:
            continue
        kept = [o for o in outputs
                if not (WIDGET_VIEW in (o.get("data") or {}) and "text/html" not in o["data"])]
        dropped += len(outputs) - len(kept)
        cell["outputs"] = kept
    return dropped


def _prepare_notebook(app, docname, source) -> None:
    # MyST-NB parses the text that source-read hands on: the changes exist only in the build,
    # the notebook and its downloadable copy (_sources) stay as they are.
    if not str(app.env.doc2path(docname)).endswith(".ipynb"):
        return
    if MIME_VEGALITE not in source[0] and WIDGET_VIEW not in source[0]:
        return
    nb = json.loads(source[0])
    if drop_dead_widgets(nb) + add_chart_html(nb):
        source[0] = json.dumps(nb, ensure_ascii=False)


def _chart_assets(app, pagename, templatename, context, doctree) -> None:
    # Added within html-page-context, the files go on this page only.
    if "fairens-chart" in context.get("body", ""):
        # Deferred: charts wait for DOMContentLoaded, which runs after deferred scripts.
        app.add_js_file(JS_FILE, loading_method="defer")
        app.add_css_file(CSS_FILE)


def _dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    # Sphinx 7.4 registers an inline script added after the builder started
    # twice (once with filename None, once with ""); sphinx-thebe's inline
    # `const THEBE_JS_URL = ...` then throws "already declared" on every page.
    seen, unique = set(), []
    for js in context.get("script_files", []):
        key = (getattr(js, "filename", js) or "", tuple(sorted(getattr(js, "attributes", {}).items())))
        if key not in seen:
            seen.add(key)
            unique.append(js)
    if "script_files" in context:
        context["script_files"][:] = unique


# ------------------------------------------------------------- the built site


def mathjax_source():
    """The offline MathJax folder of ``sphinx-mathjax-offline``, or None if not installed."""
    spec = importlib.util.find_spec(MATHJAX_PACKAGE)
    if spec is None or not spec.origin:
        return None
    folder = Path(spec.origin).parent / "static" / "mathjax"
    return folder if (folder / MATHJAX_COMPONENT).exists() else None


def ship_mathjax(source: Path, target: Path) -> None:
    """Copy :data:`MATHJAX_KEEP` from ``source`` into ``target``, replacing what is there."""
    shutil.rmtree(target, ignore_errors=True)
    for rel in MATHJAX_KEEP:
        src, dst = source / rel, target / rel
        if src.is_dir():
            shutil.copytree(src, dst)
        elif src.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)


def prune_site(outdir: Path, mathjax=None) -> None:
    """Slim a built site: Font Awesome's script, source maps, catalogues; MathJax where used."""
    static = outdir / "_static"
    uses_math = False
    for page in outdir.rglob("*.html"):
        text = page.read_text(encoding="utf-8")
        slim = _FONTAWESOME_TAG.sub("", text)
        if slim != text:
            page.write_text(slim, encoding="utf-8")
        uses_math = uses_math or "_static/mathjax/" in slim
    for name in (FONTAWESOME_JS, FONTAWESOME_JS + ".map", FONTAWESOME_JS + ".LICENSE.txt"):
        (static / name).unlink(missing_ok=True)
    for folder in ("scripts", "styles"):
        for sourcemap in (static / folder).glob("*.map"):
            sourcemap.unlink()
    shutil.rmtree(static / "locales", ignore_errors=True)
    if mathjax is not None and uses_math:
        ship_mathjax(mathjax, static / "mathjax")
    else:
        shutil.rmtree(static / "mathjax", ignore_errors=True)


def _finish(app, exc) -> None:
    if exc is None and app.builder.format == "html":
        static = Path(app.outdir) / "_static"
        write_js_bundle(static)
        (static / CSS_FILE).write_text(CHART_CSS, encoding="utf-8")
        prune_site(Path(app.outdir), mathjax_source())


def setup(app):
    """Sphinx hook: offline charts and MathJax, a lighter site."""
    app.connect("source-read", _prepare_notebook)
    app.connect("html-page-context", _chart_assets)
    app.connect("html-page-context", _dedupe_scripts)
    app.connect("build-finished", _finish)
    if mathjax_source() is not None:
        # Instead of the package's own setup, which copies all its 24 MB into every build.
        app.config.mathjax_path = "mathjax/" + MATHJAX_COMPONENT
    else:
        logging.getLogger(__name__).warning(
            "sphinx-mathjax-offline is not installed: pages with math load MathJax from a CDN")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
