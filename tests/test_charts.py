"""Offline Altair renderer, chart helpers and the vega bundle."""

from __future__ import annotations

import re

import altair as alt
import nbformat
import pandas as pd
import pytest

from fairens_core import charts

SCRIPT_SRC = re.compile(r"<script[^>]*\bsrc\s*=", re.I)
NETWORK = re.compile(r"""(src|href)\s*=\s*["']?(https?:)?//""", re.I)


@pytest.fixture
def df():
    return pd.DataFrame({
        "members": [1, 2, 3] * 2,
        "acc": [0.80, 0.85, 0.87, 0.70, 0.78, 0.80],
        "lo": [0.79, 0.84, 0.86, 0.69, 0.77, 0.79],
        "hi": [0.81, 0.86, 0.88, 0.71, 0.79, 0.81],
        "group": ["top-k"] * 3 + ["bottom-k"] * 3,
    })


@pytest.fixture
def chart(df):
    return charts.line_with_band(df, "members:Q", "acc:Q", "lo:Q", "hi:Q", "group:N", title="gain")


def bundle_of(chart):
    out = chart._repr_mimebundle_()
    return out[0] if isinstance(out, tuple) else out


def test_enable_activates_renderer_and_theme(chart):
    charts.enable()
    assert alt.renderers.active == charts.RENDERER and alt.theme.active == charts.THEME
    out = chart._repr_mimebundle_()
    bundle, metadata = out if isinstance(out, tuple) else (out, {})
    # no text/html: JupyterLab would prefer it to its Vega-Lite renderer (see charts' docstring)
    assert set(bundle) == {charts.MIME_VEGALITE, "text/plain"}
    assert bundle[charts.MIME_VEGALITE] == charts.compact(charts.fit_width(chart.to_dict()))
    assert metadata[charts.MIME_VEGALITE]["embed_options"]["renderer"] == "svg"
    assert bundle[charts.MIME_VEGALITE]["config"]["legend"]["labelLimit"] == 0


def test_book_html_loads_nothing_from_the_network(chart):
    charts.enable()
    html = charts.book_html(bundle_of(chart)[charts.MIME_VEGALITE], 1)
    assert not SCRIPT_SRC.search(html), "the snippet must not load scripts"
    assert not NETWORK.search(html)
    assert re.search(r'<div id="fairens-chart-1-[0-9a-f]{10}" class="fairens-chart"></div>', html)
    assert "vegaEmbed(" in html and "</script>" in html
    assert html.count("</script>") == 1  # "</" inside the spec is escaped


def test_book_html_embeds_datasets_as_arrays(chart):
    charts.enable()
    spec = bundle_of(chart)[charts.MIME_VEGALITE]
    assert all(isinstance(v, str) for v in spec["datasets"].values())
    html = charts.book_html(spec, 1)
    (name,) = spec["datasets"]
    assert f'"{name}":[{{' in html  # a JavaScript array, not a string escaped twice


def test_spec_with_closing_tag_cannot_end_the_script():
    html = charts.chart_html({"title": "</script><b>x</b>"}, "fairens-chart-1-x")
    assert html.count("</script>") == 1


def _notebook(*specs, old_html=None):
    outputs = [{"output_type": "display_data", "metadata": {}, "data": {charts.MIME_VEGALITE: s, "text/plain": "c"}}
               for s in specs]
    if old_html:
        outputs[0]["data"]["text/html"] = old_html
    return {"cells": [{"cell_type": "code", "outputs": [o]} for o in outputs]
            + [{"cell_type": "markdown", "source": "text"}]}


def test_book_adds_html_with_stable_ids(chart, df):
    from fairens_core.sphinx_ext import add_chart_html

    charts.enable()
    spec = bundle_of(chart)[charts.MIME_VEGALITE]
    other = bundle_of(charts.line_with_band(df.assign(acc=df.acc + 0.01), "members:Q", "acc:Q", "lo:Q", "hi:Q"))
    nb = _notebook(spec, spec, other[charts.MIME_VEGALITE])
    assert add_chart_html(nb) == 3
    ids = [re.search(r'id="([^"]+)"', c["outputs"][0]["data"]["text/html"]).group(1) for c in nb["cells"][:3]]
    assert ids[0].startswith("fairens-chart-1-") and ids[1].startswith("fairens-chart-2-")
    assert ids[0][len("fairens-chart-1-"):] == ids[1][len("fairens-chart-2-"):] != ids[2][len("fairens-chart-3-"):]
    again = _notebook(spec, spec, other[charts.MIME_VEGALITE])
    add_chart_html(again)
    assert again == nb  # a rebuild gives the same page


def test_book_keeps_stored_html():
    from fairens_core.sphinx_ext import add_chart_html

    nb = _notebook({"mark": "point"}, {"mark": "bar"}, old_html="<div>stored</div>")
    assert add_chart_html(nb) == 2
    assert nb["cells"][0]["outputs"][0]["data"]["text/html"] == "<div>stored</div>"
    assert 'id="fairens-chart-2-' in nb["cells"][1]["outputs"][0]["data"]["text/html"]


def test_wide_chart_is_narrowed_to_the_column(df):
    import vl_convert as vlc

    charts.enable()
    panel = charts.line_with_band(df, "members:Q", "acc:Q", "lo:Q", "hi:Q", "group:N").properties(width=480, height=200)
    wide = alt.hconcat(panel, panel.properties(title="a long title for the second panel"))
    spec = bundle_of(wide)[charts.MIME_VEGALITE]
    assert charts.rendered_width(wide.to_dict()) > charts.MAX_WIDTH
    assert charts.MAX_WIDTH - 30 <= charts.rendered_width(spec) <= charts.MAX_WIDTH
    assert [p["height"] for p in spec["hconcat"]] == [200, 200]
    assert all(240 <= p["width"] < 480 for p in spec["hconcat"])
    assert vlc.vegalite_to_svg(spec)  # still a valid chart


def test_narrow_chart_is_unchanged(chart):
    spec = chart.properties(width=300).to_dict()
    assert charts.fit_width(spec) is spec


def test_scaled_touches_view_widths_only():
    spec = {"width": 400, "config": {"view": {"continuousWidth": 300}},
            "facet": {"field": "f"}, "spec": {"width": {"step": 20}, "mark": {"type": "bar", "width": 5},
                                              "layer": [{"width": 100, "mark": "line"}]}}
    half = charts.scaled(spec, 0.5)
    assert half["width"] == 200 and half["spec"]["width"] == {"step": 10}
    assert half["spec"]["layer"][0]["width"] == 50
    assert half["config"] == spec["config"] and half["spec"]["mark"] == spec["spec"]["mark"]
    assert spec["width"] == 400  # the original is left alone


def test_legend_names_series_in_full():
    import vl_convert as vlc

    charts.enable()
    name = "coupled to t + re-initialised output layer (all children)"
    df = pd.DataFrame({"x": [0, 1], "y": [0, 1], "s": [name, "other"]})
    spec = bundle_of(alt.Chart(df).mark_line().encode(x="x", y="y", color="s"))[charts.MIME_VEGALITE]
    svg = vlc.vegalite_to_svg(spec)
    assert name in svg.replace("&amp;", "&") and "…" not in svg


def test_line_with_band_layers(chart):
    spec = chart.to_dict()
    marks = [layer["mark"]["type"] if isinstance(layer["mark"], dict) else layer["mark"]
             for layer in spec["layer"]]
    assert marks == ["area", "line"]
    band, line = spec["layer"]
    assert band["encoding"]["y"]["field"] == "lo" and band["encoding"]["y2"]["field"] == "hi"
    assert line["encoding"]["y"]["field"] == "acc"
    assert band["encoding"]["color"]["field"] == line["encoding"]["color"]["field"] == "group"


def test_spec_compiles_with_jupyterlabs_vegalite_5(chart):
    """JupyterLab 4 renders the v5 MIME type with Vega-Lite 5: the spec must compile there."""
    import vl_convert as vlc

    versions = vlc.get_vegalite_versions()
    v5 = [v for v in versions if v.startswith("5.")][-1]
    for version in (v5, versions[-1]):
        vega = vlc.vegalite_to_vega(chart.to_dict(), vl_version=version)
        assert vega["marks"]


def test_compact_spec_draws_the_same_chart(chart):
    """Datasets stored as rounded JSON strings render exactly like the original lists."""
    import vl_convert as vlc

    spec = chart.to_dict()
    small = charts.compact(spec)
    assert all(isinstance(v, str) for v in small["datasets"].values())
    v5 = [v for v in vlc.get_vegalite_versions() if v.startswith("5.")][-1]
    for version in (v5, None):
        kw = {"vl_version": version} if version else {}
        assert vlc.vegalite_to_svg(small, **kw) == vlc.vegalite_to_svg(spec, **kw)


def test_compact_rounds_and_drops_nan():
    import json

    spec = {"datasets": {"d": [{"a": 0.123456789, "b": float("nan"), "c": "x", "n": 3}]}}
    assert json.loads(charts.compact(spec)["datasets"]["d"]) == [{"a": 0.1235, "b": None, "c": "x", "n": 3}]


def test_slider_binding():
    even = charts.slider("members", [4, 1, 2, 3]).param
    assert (even.value, even.bind.input, even.bind.min, even.bind.max, even.bind.step) == (1, "range", 1, 4, 1)
    uneven = charts.slider("members", [1, 2, 5, 10], value=5, label="ensemble size").param
    assert (uneven.value, uneven.bind.input, list(uneven.bind.options)) == (5, "select", [1, 2, 5, 10])


def test_slider_filters_a_chart(df):
    p = charts.slider("members", df.members)
    spec = (alt.Chart(df).mark_point().encode(x="acc:Q", y="group:N")
            .add_params(p).transform_filter(alt.datum.members == p)).to_dict()
    assert spec["params"][0]["bind"]["input"] == "range"


def test_live_widget_adds_a_note(monkeypatch):
    import IPython.display
    import ipywidgets

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, raw=False: shown.append(obj))
    charts.live_widget(ipywidgets.IntSlider())
    (bundle,) = shown
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "live Python kernel" in bundle["text/html"]


def test_js_bundle_written_once(tmp_path):
    path = charts.write_js_bundle(tmp_path)
    text = path.read_text(encoding="utf-8")
    assert path.name == charts.JS_FILE and len(text) > 300_000
    assert text.startswith("/* fairens offline vega bundle: vega ")
    for name in ("window.vegaEmbed", "window.vega", "window.vegaLite"):
        assert name in text
    assert not re.search(r"^\s*(import|export)\s", text, re.M)  # a classic script, not a module
    mtime = path.stat().st_mtime_ns
    assert charts.write_js_bundle(tmp_path).stat().st_mtime_ns == mtime  # cached on its stamp


@pytest.mark.slow
def test_reexecuted_notebook_has_identical_chart_outputs(tmp_path, make_notebook, execute):
    src = make_notebook(tmp_path / "chart.ipynb", [
        "import pandas as pd\nfrom fairens_core import charts\ncharts.enable()",
        "df = pd.DataFrame({'m': [1, 2, 3], 'acc': [.8, .85, .87]})\n"
        "charts.line_with_band(df.assign(lo=df.acc - .01, hi=df.acc + .01), 'm', 'acc', 'lo', 'hi')",
        "charts.line_with_band(df.assign(lo=df.acc - .02, hi=df.acc + .02), 'm', 'acc', 'lo', 'hi')",
    ])
    runs = [execute(src, tmp_path / f"run{i}.ipynb") for i in (1, 2)]
    outputs = [[c.outputs for c in nbformat.read(str(r), as_version=4).cells[1:]] for r in runs]
    assert outputs[0] == outputs[1]
    for (out,) in outputs[0]:
        assert set(out.data) == {charts.MIME_VEGALITE, "text/plain"}
        assert out.metadata[charts.MIME_VEGALITE]["embed_options"] == charts.EMBED_OPTIONS


def test_book_drops_widgets_that_need_a_kernel():
    from fairens_core.sphinx_ext import WIDGET_VIEW, drop_dead_widgets

    bar = {"output_type": "display_data", "metadata": {},
           "data": {WIDGET_VIEW: {"model_id": "a"}, "text/plain": "run:   0%|          | 0/6250"}}
    note = {"output_type": "display_data", "metadata": {},
            "data": {WIDGET_VIEW: {"model_id": "b"}, "text/html": "<p>needs a kernel</p>", "text/plain": "w"}}
    text = {"output_type": "stream", "name": "stdout", "text": "done\n"}
    nb = {"cells": [{"cell_type": "code", "outputs": [bar, text, note]}, {"cell_type": "markdown", "source": ""}]}
    assert drop_dead_widgets(nb) == 1
    assert nb["cells"][0]["outputs"] == [text, note]
