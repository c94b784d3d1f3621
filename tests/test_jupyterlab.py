"""Charts drawn by JupyterLab itself: run live (Run All Cells) and from stored outputs.

JupyterLab ranks ``text/html`` above its Vega-Lite renderer, so a chart output that carried
the book's HTML showed "Interactive chart: open this notebook in JupyterLab ..." inside
JupyterLab. This starts a JupyterLab server on a temporary folder, opens a small notebook
in headless Debian Chromium through playwright, runs all cells from the Run menu and counts
the charts drawn; then opens a notebook executed beforehand (untrusted, as a reader gets it)
without running it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import CHROMIUM, require_browser

FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CELLS = [
    "import altair as alt, pandas as pd\nfrom fairens_core import charts\ncharts.enable()",
    "df = pd.DataFrame({'members': [1, 2, 3, 4] * 2, 'acc': [.80, .84, .86, .87, .70, .76, .79, .81],\n"
    "                   'group': ['top-k'] * 4 + ['bottom-k'] * 4})\n"
    "charts.line_with_band(df.assign(lo=df.acc - .01, hi=df.acc + .01), 'members:Q', 'acc:Q', 'lo:Q', 'hi:Q',\n"
    "                      'group:N', title='accuracy')",
    "m = charts.slider('members', df.members)\n"
    "alt.Chart(df).mark_bar().encode(x='acc:Q', y='group:N').add_params(m).transform_filter(alt.datum.members == m)",
]
N_CHARTS = 2
DRAWN = ".jp-OutputArea-output .vega-embed svg.marks"
FALLBACK = "text=Interactive chart"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def lab(tmp_path_factory, make_notebook_module):
    """A JupyterLab server on a folder with `live.ipynb` (not run) and `stored.ipynb` (run)."""
    require_browser("jupyterlab")
    import papermill as pm

    root = tmp_path_factory.mktemp("lab")
    make_notebook_module(root / "live.ipynb", CELLS)
    make_notebook_module(root / "stored.ipynb", CELLS)
    pm.execute_notebook(str(root / "stored.ipynb"), str(root / "stored.ipynb"), kernel_name="python3",
                        cwd=str(root), progress_bar=False)

    home = tmp_path_factory.mktemp("lab-home")
    env = {**os.environ,
           # no user settings, workspaces or trust database from the machine
           "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(home / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"), "JUPYTER_DATA_DIR": str(home / "data")}
    env.pop("JUPYTER_PATH", None)
    settings = home / "settings" / "@jupyterlab"
    for plugin, values in (("notebook-extension/tracker", {"autoStartDefaultKernel": True}),
                           ("apputils-extension/notification", {"fetchNews": "false"})):
        (settings / plugin).parent.mkdir(parents=True, exist_ok=True)
        (settings / f"{plugin}.jupyterlab-settings").write_text(json.dumps(values))
    port, token = _free_port(), secrets.token_hex(16)
    jupyter = Path(sys.executable).with_name("jupyter")
    cmd = [str(jupyter), "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers and CI runners
    log = open(home / "lab.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail("JupyterLab did not start:\n" + (home / "lab.log").read_text()[-3000:])
                time.sleep(0.5)
        yield base, token
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def make_notebook_module():
    import nbformat

    def make(path, cells):
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
        nbformat.write(nb, str(path))
        return path

    return make


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    require_browser("jupyterlab")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("profile")), executable_path=str(CHROMIUM), headless=True,
            args=FLAGS, viewport={"width": 1400, "height": 1000})
        try:
            yield ctx
        finally:
            ctx.close()


def _open(ctx, base, token, name):
    page = ctx.new_page()
    page.goto(f"{base}/lab/tree/{name}?token={token}", wait_until="domcontentloaded")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    return page


def _wait_for_charts(page, timeout_s: float) -> None:
    """Wait until N_CHARTS charts are drawn, accepting JupyterLab's "Select Kernel" dialog
    (Python 3 is preselected) if a fresh server asks."""
    deadline = time.monotonic() + timeout_s
    while page.locator(DRAWN).count() < N_CHARTS:
        accept = page.locator(".jp-Dialog .jp-mod-accept")
        if accept.count():
            accept.first.click()
        if time.monotonic() > deadline:
            outputs = page.locator(".jp-OutputArea-output").all_inner_texts()
            pytest.fail(f"{page.locator(DRAWN).count()} of {N_CHARTS} charts drawn; outputs: {outputs}")
        page.wait_for_timeout(500)


def _kernel_idle(base, token, path, timeout_s: float) -> None:
    """Wait until the notebook's kernel runs and is idle (Run All before that may drop cells)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with urllib.request.urlopen(f"{base}/api/sessions?token={token}", timeout=5) as r:
            sessions = json.load(r)
        if any(s.get("path") == path and (s.get("kernel") or {}).get("execution_state") == "idle"
               for s in sessions):
            return
        time.sleep(0.5)
    pytest.fail(f"no idle kernel for {path}: {sessions}")


def test_charts_draw_when_run_in_jupyterlab(lab, browser):
    base, token = lab
    page = _open(browser, base, token, "live.ipynb")
    try:
        _kernel_idle(base, token, "live.ipynb", 60)
        assert page.locator(DRAWN).count() == 0
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        _wait_for_charts(page, 90)
        assert page.locator(DRAWN).count() == N_CHARTS
        assert page.locator(FALLBACK).count() == 0
        assert page.locator(".jp-OutputArea-output .vega-bindings select, "
                            ".jp-OutputArea-output .vega-bindings input").count() == 1  # the slider
    finally:
        page.close()


def test_stored_charts_draw_without_running(lab, browser):
    base, token = lab
    page = _open(browser, base, token, "stored.ipynb")
    try:
        _wait_for_charts(page, 60)
        assert page.locator(DRAWN).count() == N_CHARTS
        assert page.locator(FALLBACK).count() == 0
    finally:
        page.close()
