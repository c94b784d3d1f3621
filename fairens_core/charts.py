"""Offline Altair charts for the notebooks and the built book.

Altair's default HTML output loads vega, vega-lite and vega-embed from a CDN,
which neither an offline reader nor the browser test can reach. Call
:func:`enable` once at the top of a notebook; every chart displayed afterwards
is stored as

* ``application/vnd.vegalite.v5+json``: the spec, which JupyterLab, Jupyter
  Notebook 7 and VS Code draw with their own Vega-Lite (JupyterLab 4 registers
  the v5 type; vega-embed only warns that the spec says Vega-Lite 6);
* ``text/plain``: a line for viewers without Vega-Lite.

There is deliberately no ``text/html``: JupyterLab prefers it to its Vega-Lite
renderer, and inside JupyterLab no offline ``vegaEmbed`` exists to run it. The
book's Sphinx extension (:mod:`fairens_core.sphinx_ext`) adds it when the book
is built: ``<div id=...></div><script>vegaEmbed(...)</script>`` (see
:func:`book_html`) that loads nothing from the network, with vega, vega-lite
and vega-embed served from ``_static/`` (:func:`write_js_bundle`) on the pages
that have charts. Div ids are the chart's number on its page plus a hash of
its spec, so rebuilding gives byte-identical pages.

Every chart is narrowed to fit the book's text column (:func:`fit_width`), and
the theme (:func:`theme`) lets legends name their series in full.

The helpers :func:`line_with_band` and :func:`slider` cover what the chapters
draw most: mean ± spread curves against ensemble size, and a parameter to
scrub through one dimension of the results.

Interactivity in the built book should come from Altair parameters
(:func:`slider`), which run in the page. ipywidgets need a live kernel; show
them with :func:`live_widget` so the book says so instead of a dead control.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Optional, Sequence

import altair as alt

RENDERER = "fairens"
MIME_VEGALITE = "application/vnd.vegalite.v5+json"
JS_FILE = "fairens-vega.js"
EMBED_OPTIONS = {
    "renderer": "svg",
    # Export buttons only: "open in editor" and friends would need the network.
    "actions": {"export": True, "source": False, "compiled": False, "editor": False},
}

# The book's text column is 784 px wide and vega-embed keeps 38 px on the right of a chart
# for its action button: wider charts get their views narrowed to fit (see fit_width).
MAX_WIDTH = 740
MIN_FACTOR = 0.5  # views narrower than half their width would be unreadable
THEME = "fairens"


def enable() -> None:
    """Register and activate the offline renderer and the book's theme; call once per notebook."""
    alt.renderers.register(RENDERER, render)
    alt.renderers.enable(RENDERER)
    alt.theme.register(THEME, enable=True)(theme)
    # the renderer stores each chart's data once, compactly; full-profile charts exceed
    # altair's default limit of 5,000 rows
    alt.data_transformers.disable_max_rows()


def theme() -> dict:
    """Altair's default look, with legends that name every series in full.

    Vega-Lite cuts legend labels at 160 px and titles at 180 px ("coupled to t + re…").
    Legend symbols are drawn opaque: a legend taken from a shaded band would be barely visible.
    """
    return {"config": {"view": {"continuousWidth": 300, "continuousHeight": 300},
                       "legend": {"labelLimit": 0, "titleLimit": 0, "symbolOpacity": 1}}}


def rounded(spec: dict, digits: int = 4) -> dict:
    """The spec with the floats of its inline datasets kept to `digits` significant digits.

    The charts show at most 3; NaN (which JSON lacks) becomes null.
    """
    def rnd(v):
        if not isinstance(v, float):
            return v
        return float(f"{v:.{digits}g}") if math.isfinite(v) else None

    def rows(data):
        if not isinstance(data, list):
            return data
        return [{k: rnd(v) for k, v in r.items()} if isinstance(r, dict) else rnd(r) for r in data]

    if "datasets" not in spec:
        return spec
    return {**spec, "datasets": {name: rows(data) for name, data in spec["datasets"].items()}}


def compact(spec: dict, digits: int = 4) -> dict:
    """`rounded`, with each inline dataset stored as one JSON string.

    nbformat writes a notebook's JSON one key per line, so a 1,000-row frame stored as a
    list would cost ~100 kB in the spec output alone; Vega-Lite parses a dataset given as a
    JSON string exactly like the list it encodes.
    """
    spec = rounded(spec, digits)
    if "datasets" not in spec:
        return spec
    return {**spec, "datasets": {name: data if isinstance(data, str) else
                                 json.dumps(data, separators=(",", ":"), allow_nan=False)
                                 for name, data in spec["datasets"].items()}}


def render(spec: dict, **metadata) -> tuple[dict, dict]:
    """Altair renderer: spec → MIME bundle (vega-lite JSON + text) and its metadata.

    No ``text/html``: JupyterLab ranks it above its own Vega-Lite renderer, and a notebook has
    no offline ``vegaEmbed`` to run it with. The book adds the HTML when it is built
    (:func:`fairens_core.sphinx_ext.add_chart_html`). The spec is narrowed to
    :data:`MAX_WIDTH` (:func:`fit_width`) and its datasets compacted (:func:`compact`).
    """
    small = compact(fit_width(spec))
    bundle = {MIME_VEGALITE: small,
              "text/plain": "<fairens chart: drawn by JupyterLab, Jupyter Notebook, VS Code and the fairens book>"}
    # JupyterLab's Vega renderer reads vega-embed options from the output's metadata.
    return bundle, {MIME_VEGALITE: {"embed_options": EMBED_OPTIONS}}


def div_id(spec: dict, n: int) -> str:
    """Id of the n-th chart of a page: the counter keeps it unique, the hash tells specs apart."""
    digest = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
    return f"fairens-chart-{n}-{digest}"


def book_html(spec: dict, n: int) -> str:
    """The offline HTML of the n-th chart of a page, from a (compact) spec as stored in a notebook."""
    return chart_html(expanded(spec), div_id(spec, n))


def expanded(spec: dict) -> dict:
    """`compact` undone: datasets stored as JSON strings become lists again.

    The HTML embeds them as JavaScript arrays rather than strings, which would be escaped
    twice (in the script, then in the notebook's JSON).
    """
    if "datasets" not in spec:
        return spec
    return {**spec, "datasets": {name: json.loads(data) if isinstance(data, str) else data
                                 for name, data in spec["datasets"].items()}}


# ---------------------------------------------------------- fitting the column

_VIEW_CHILDREN = ("layer", "hconcat", "vconcat", "concat")


def scaled(spec: dict, factor: float) -> dict:
    """The spec with every view's explicit width (or x step) times ``factor``; heights kept.

    Only view-level ``width`` keys are touched (the root, layers, concatenations, the inner
    ``spec`` of a facet or repeat), never a mark's or the config's.
    """
    def width(w):
        if isinstance(w, (int, float)) and not isinstance(w, bool):
            return max(20, int(w * factor))
        if isinstance(w, dict) and isinstance(w.get("step"), (int, float)):
            return {**w, "step": max(2, round(w["step"] * factor, 1))}
        return w  # "container" or absent

    def view(v):
        if not isinstance(v, dict):
            return v
        out = dict(v)
        if "width" in out:
            out["width"] = width(out["width"])
        for key in _VIEW_CHILDREN:
            if isinstance(out.get(key), list):
                out[key] = [view(c) for c in out[key]]
        if isinstance(out.get("spec"), dict):
            out["spec"] = view(out["spec"])
        return out

    return view(spec)


def rendered_width(spec: dict) -> Optional[float]:
    """Width in px of the SVG that Vega draws for ``spec`` (axes, legends and titles included).

    None when vl-convert is missing or cannot render the spec. Its text metrics match
    Chromium's to the pixel on the machine that builds the book; another reader's fonts may
    differ a little, which the book's CSS absorbs by scaling the SVG down.
    """
    try:
        import vl_convert as vlc

        version = _vegalite_version()
        svg = vlc.vegalite_to_svg(spec, **({"vl_version": version} if version else {}))
    except Exception:  # noqa: BLE001 - fitting is cosmetic; never fail a chapter for it
        return None
    m = re.search(r'<svg[^>]*\bwidth="([\d.]+)"', svg)
    return float(m.group(1)) if m else None


def fit_width(spec: dict, max_width: int = MAX_WIDTH, min_factor: float = MIN_FACTOR) -> dict:
    """``spec``, or a copy with narrower views whose drawing is at most ``max_width`` px wide.

    Legends, axes and titles keep their size; the views' widths shrink by a common factor,
    found by regula falsi on the rendered width (close to linear in it). Views never shrink
    below ``min_factor`` of their width: a chart that still does not fit (a title or legend
    wider than the column) is left to the book's CSS, which scales its SVG down.
    """
    full = rendered_width(spec)
    if full is None or full <= max_width:
        return spec
    lo, hi = min_factor, 1.0
    w_lo, w_hi = rendered_width(scaled(spec, lo)), full
    if w_lo is None or w_lo >= full:
        return spec  # no explicit widths to shrink
    if w_lo > max_width:
        return scaled(spec, lo)
    for _ in range(4):
        if max_width - w_lo <= 8:  # close enough to the column
            break
        factor = lo + (hi - lo) * (max_width - w_lo) / (w_hi - w_lo)
        width = rendered_width(scaled(spec, factor))
        if width is None:
            break
        if width <= max_width:
            lo, w_lo = factor, width
        else:
            hi, w_hi = factor, width
    return scaled(spec, lo)


def chart_html(spec: dict, div_id: str) -> str:
    """HTML snippet embedding ``spec`` with the page's ``vegaEmbed``.

    It waits for the document to be parsed (the bundle is a deferred script)
    and says what is missing if ``vegaEmbed`` is not on the page at all.
    """
    # "</" inside a <script> would end it early.
    spec_js = json.dumps(spec, sort_keys=True, separators=(",", ":")).replace("</", "<\\/")
    opts_js = json.dumps(EMBED_OPTIONS, sort_keys=True)
    return f"""<div id="{div_id}" class="fairens-chart"></div>
<script type="text/javascript">
(function () {{
  var el = document.getElementById("{div_id}");
  var spec = {spec_js};
  function draw() {{
    if (typeof window.vegaEmbed !== "function") {{
      el.innerHTML = "<em>Interactive chart: open this notebook in JupyterLab or read it in the fairens book.</em>";
      return;
    }}
    window.vegaEmbed(el, spec, {opts_js}).catch(function (err) {{
      el.textContent = "Chart failed to render: " + err;
      console.error(err);
    }});
  }}
  if (document.readyState === "loading") {{
    document.addEventListener("DOMContentLoaded", draw);
  }} else {{
    draw();
  }}
}})();
</script>"""


def _vegalite_version() -> Optional[str]:
    """The bundled Vega-Lite matching Altair's schema (e.g. "6.4"), if any."""
    import vl_convert as vlc

    wanted = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    return wanted if wanted in vlc.get_vegalite_versions() else None


def js_bundle() -> str:
    """vega + vega-lite + vega-embed as one classic script (from vl-convert).

    vl-convert's bundle assigns ``window.vegaEmbed``, ``window.vega`` and
    ``window.vegaLite``; its top-level ``const`` declarations would otherwise
    share the page's global scope with every other script, hence the IIFE.
    """
    import vl_convert as vlc

    return f"/* {_bundle_stamp()} */\n(function () {{\n{vlc.javascript_bundle(vl_version=_vegalite_version())}\n}})();\n"


def _bundle_stamp() -> str:
    import vl_convert as vlc

    return (f"fairens offline vega bundle: vega {vlc.get_vega_version()}, "
            f"vega-lite {_vegalite_version() or 'latest'}, vega-embed {vlc.get_vega_embed_version()}")


def write_js_bundle(static_dir) -> Path:
    """Write :data:`JS_FILE` into ``static_dir`` unless an identical version is there.

    About 0.9 MB; generating it takes a few seconds, so it is cached on the
    version stamp in its first line.
    """
    path = Path(static_dir) / JS_FILE
    stamp = f"/* {_bundle_stamp()} */"
    if path.exists():
        with path.open(encoding="utf-8") as f:
            if f.readline().rstrip("\n") == stamp:
                return path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(js_bundle(), encoding="utf-8")
    return path


# ---------------------------------------------------------------- helpers


def line_with_band(df, x: str, y: str, lo: str, hi: str, color: Optional[str] = None,
                   *, title: str = "", x_title: Optional[str] = None,
                   y_title: Optional[str] = None) -> alt.LayerChart:
    """Mean curve with a shaded spread band, e.g. accuracy ± std vs ensemble size.

    Args:
        df: Long-format data frame, one row per (x, color) point.
        x, y: Columns (Altair shorthand allowed, e.g. ``"members:Q"``).
        lo, hi: Columns giving the lower and upper edge of the band.
        color: Optional column separating curves (e.g. ``"group"``).
    """
    enc = {"x": alt.X(x, title=x_title)}
    if color:
        enc["color"] = alt.Color(color)
    base = alt.Chart(df, title=title).encode(**enc)
    # zero=False: accuracies live in a narrow band far from 0.
    band = base.mark_area(opacity=0.2).encode(
        y=alt.Y(lo, title=y_title or _field(y), scale=alt.Scale(zero=False)), y2=alt.Y2(hi))
    tooltip = [x, y, lo, hi] + ([color] if color else [])
    line = base.mark_line(point=True).encode(y=alt.Y(y, scale=alt.Scale(zero=False)), tooltip=tooltip)
    return alt.layer(band, line)


def slider(name: str, values: Sequence, value=None, label: Optional[str] = None) -> alt.Parameter:
    """A chart parameter bound to a slider over ``values`` (a dropdown if unevenly spaced).

    Use it with ``chart.add_params(p).transform_filter(alt.datum.members == p)``.
    It runs in the page, so it works in the built book without a kernel.
    """
    vals = sorted(set(values))
    value = vals[0] if value is None else value
    label = label or name
    steps = {b - a for a, b in zip(vals, vals[1:])}
    if len(vals) > 1 and len(steps) == 1:
        bind = alt.binding_range(min=vals[0], max=vals[-1], step=steps.pop(), name=label + " ")
    else:
        bind = alt.binding_select(options=vals, name=label + " ")
    return alt.param(name=name, value=value, bind=bind)


def live_widget(widget, note: str = "This control needs a live Python kernel: "
                "open the notebook in JupyterLab to use it.") -> None:
    """Display an ipywidget in JupyterLab, and ``note`` in the static book.

    Build it from controls whose callbacks rewrite other widgets (an HTML text, a chart's data),
    not from `ipywidgets.interactive`: its Output widget, printed into while the cell executes,
    can stall a notebook run under papermill / nbclient for good.

    The output carries the widget view plus a ``text/html`` note; the book is
    configured (``nb_mime_priority_overrides`` in ``_config.yml``) to drop the
    widget view, whose callbacks could not run there anyway.
    """
    from IPython.display import display

    bundle = dict(widget._repr_mimebundle_())
    bundle["text/html"] = f'<p class="fairens-needs-kernel"><em>{note}</em></p>'
    display(bundle, raw=True)


def _field(shorthand: str) -> str:
    return shorthand.split(":")[0]
