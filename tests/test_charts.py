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


def test_enable_activates_renderer(chart):
    charts.enable()
    assert alt.renderers.active == charts.RENDERER
    bundle = bundle_of(chart)
    assert set(bundle) == {charts.MIME_VEGALITE, "text/html", "text/plain"}
    assert bundle[charts.MIME_VEGALITE] == charts.compact(chart.to_dict())


def test_html_loads_nothing_from_the_network(chart):
    charts.enable()
    html = bundle_of(chart)["text/html"]
    assert not SCRIPT_SRC.search(html), "the snippet must not load scripts"
    assert not NETWORK.search(html)
    assert re.search(r'<div id="fairens-chart-1-[0-9a-f]{10}" class="fairens-chart"></div>', html)
    assert "vegaEmbed(" in html and "</script>" in html
    assert html.count("</script>") == 1  # "</" inside the spec is escaped


def test_spec_with_closing_tag_cannot_end_the_script():
    html = charts.chart_html({"title": "</script><b>x</b>"}, "fairens-chart-1-x")
    assert html.count("</script>") == 1


def test_ids_are_deterministic(chart, df):
    charts.enable()
    first = [bundle_of(chart)["text/html"], bundle_of(chart)["text/html"]]
    assert first[0] != first[1]  # two displays of one chart get distinct ids
    charts.enable()  # a fresh notebook run restarts the counter
    assert [bundle_of(chart)["text/html"], bundle_of(chart)["text/html"]] == first
    other = charts.line_with_band(df.assign(acc=df.acc + 0.01), "members:Q", "acc:Q", "lo:Q", "hi:Q")
    charts.enable()
    assert bundle_of(other)["text/html"].split('"')[1] != first[0].split('"')[1]  # id hashes the spec


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
    htmls = [o[0].data["text/html"] for o in outputs[0]]
    assert "fairens-chart-1-" in htmls[0] and "fairens-chart-2-" in htmls[1]
    assert all(charts.MIME_VEGALITE in o[0].data for o in outputs[0])
