"""Shared helpers for the book tests: the repository root and tiny notebooks."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from fairens_core.machine import cpu_signature

ROOT = Path(__file__).resolve().parents[1]
FULL = ROOT / "book" / "full"
CHROMIUM = Path("/usr/bin/chromium")  # Debian's; .ci/run installs it
NOT_RERUN: dict[str, str] = {}  # default-profile chapter -> the CPU its committed outputs come from

# The full-profile pages (book/full) read the run records shipped in records/full; their
# kernels inherit this. They also read data from the data root: without one they are skipped.
os.environ.setdefault("FAIRENS_RECORDS", str(ROOT / "records" / "full"))


def pytest_ignore_collect(collection_path, config):
    if not os.environ.get("FAIRENS_DATA") and (collection_path == FULL or FULL in collection_path.parents):
        return True
    return None


def pytest_collection_modifyitems(config, items):
    """nbval re-executes a default-profile chapter only where it can compare the outputs digit for
    digit: on the kind of CPU that executed it (its notebook metadata says which).

    A chapter trains its members when nbval re-runs it, and training is bitwise reproducible on
    one kind of CPU, not across kinds (`fairens_core.machine`); re-training without comparing
    would repeat, at the chapter's full cost, what its smoke and re-run tests (test_notebooks.py,
    test_reruns.py) check. Other chapters are skipped and the summary lists them. The full-scale
    pages only analyse the records shipped in records/full: they are compared on every machine.
    """
    here = cpu_signature()
    for item in items:
        notebook = getattr(item.parent, "nb", None)  # an nbval cell's parent holds its notebook
        if notebook is None or FULL in Path(item.parent.path).parents:
            continue
        there = notebook.metadata.get("fairens", {}).get("executed_on") or "an unrecorded machine"
        if here != there:
            item.add_marker(pytest.mark.skip(reason=f"executed on {there}; re-executed only on that kind of CPU; "
                                                    f"this machine: {here}"))
            NOT_RERUN[str(item.parent.path)] = there


def pytest_terminal_summary(terminalreporter):
    if NOT_RERUN:
        terminalreporter.section("chapters not re-executed: outputs comparable only on the kind of CPU that "
                                 "executed them")
        terminalreporter.write_line(f"this machine: {cpu_signature()}")
        for path, there in sorted(NOT_RERUN.items()):
            terminalreporter.write_line(f"{os.path.relpath(path, ROOT)}: executed on {there}")


def pytest_configure(config):
    # nbval opens the sanitize file relative to the cwd; resolve it against the
    # repository so `pytest` works from any folder.
    path = getattr(config.option, "nbval_sanitize_with", None)
    if path and not Path(path).exists() and (ROOT / path).exists():
        config.option.nbval_sanitize_with = str(ROOT / path)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A fresh, empty record cache for one test: no shipped records, not planning.

    Modules that train use it for every test: ``pytestmark = pytest.mark.usefixtures("cache")``.
    """
    monkeypatch.setenv("FAIRENS_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FAIRENS_RECORDS", raising=False)
    monkeypatch.setattr("fairens_core.runner._instead", None)  # not planning; restored after the test
    return tmp_path / "cache"


@pytest.fixture
def repo_root() -> Path:
    return ROOT


@pytest.fixture
def make_notebook():
    """Write a notebook: ``make_notebook(path, [src, ...], parameters="x = 1")``.

    ``parameters`` becomes a first code cell tagged ``parameters`` (papermill).
    """
    import nbformat

    def make(path, cells, parameters=None):
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        if parameters is not None:
            nb.cells.append(nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]}))
        nb.cells += [nbformat.v4.new_code_cell(src) for src in cells]
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, str(path))
        return path

    return make


@pytest.fixture
def execute():
    """Execute a notebook with papermill into another file: ``execute(src, dst, **parameters)``."""
    import papermill as pm

    def run(src, dst, **parameters):
        pm.execute_notebook(str(src), str(dst), parameters=parameters or None,
                            kernel_name="python3", cwd=str(Path(src).parent),
                            progress_bar=False)
        return Path(dst)

    return run


def require_browser(*modules: str) -> None:
    """Skip the calling test (fail it in CI) unless Chromium, playwright and `modules` are installed."""
    reason = None
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} is missing (apt-get install chromium; .ci/run installs it)"
    else:
        absent = [m for m in ("playwright", *modules) if importlib.util.find_spec(m) is None]
        reason = f"{', '.join(absent)} not installed" if absent else None
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"browser test cannot run in CI: {reason}")
        pytest.skip(reason)
