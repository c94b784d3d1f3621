"""The book's Sphinx extension (``extra_extensions`` in ``_config.yml``).

It serves vega, vega-lite and vega-embed from the book's ``_static`` folder (the bundle that
:mod:`fairens_core.charts` builds from vl-convert), so that charts draw offline, and, when the
``sphinx-mathjax-offline`` package is installed, an offline MathJax. It lives apart from
:mod:`fairens_core.book` because charts needs altair, which the machines that only execute
chapters (``python -m fairens_core ...`` on a GPU) may lack.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from sphinx.util import logging

from .charts import JS_FILE, write_js_bundle


def _ship_static(app, exc) -> None:
    if exc is None and app.builder.format == "html":
        write_js_bundle(Path(app.outdir) / "_static")


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


def setup(app):
    """Sphinx hook: serve vega/vega-lite/vega-embed (and MathJax) from ``_static``."""
    # Deferred: charts wait for DOMContentLoaded, which runs after deferred scripts.
    app.add_js_file(JS_FILE, loading_method="defer")
    app.connect("build-finished", _ship_static)
    app.connect("html-page-context", _dedupe_scripts)
    if importlib.util.find_spec("sphinx-mathjax-offline") is not None:
        app.setup_extension("sphinx-mathjax-offline")
    else:
        logging.getLogger(__name__).warning(
            "sphinx-mathjax-offline is not installed: pages with math load MathJax from a CDN")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
