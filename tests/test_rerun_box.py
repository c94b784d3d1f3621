"""The "Re-run this chapter" box lists exactly the parameters of its chapter's parameters cell."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import nbformat
import papermill.translators as translators
import pytest

from fairens_core import rerun_box
from fairens_core.book import chapters

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = chapters(ROOT)


def _names(source: str) -> list[str]:
    return [t.id for node in ast.parse(source).body if isinstance(node, ast.Assign)
            for t in node.targets if isinstance(t, ast.Name)]


def test_parameters_with_comments_and_fallbacks():
    source = ('profile = "default"   # the scale\n'
              "members = None\n"
              "ks = [1, 3]          # the K values | of the sweep\n"
              "odd = None\n")
    params = rerun_box.parameters(source)
    assert [p.name for p in params] == ["profile", "members", "ks", "odd"]
    assert [p.default for p in params] == ['"default"', "None", "[1, 3]", "None"]
    assert params[0].description == "the scale"
    assert params[1].description == rerun_box.COMMON["members"]  # no comment: the shared wording
    assert params[3].description == ""


def test_box_for_a_synthetic_notebook(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Title\n\nIntro."),
                nbformat.v4.new_code_cell('profile = "default"  # scale\nseed = None\nK = 3  # group | size',
                                          metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("print(K)")]
    path = tmp_path / "demo.ipynb"
    nbformat.write(nb, str(path))
    assert rerun_box.update(path, tmp_path)
    assert not rerun_box.update(path, tmp_path)  # idempotent
    cells = nbformat.read(str(path), as_version=4).cells
    assert len(cells) == 4 and rerun_box.TAG in cells[1].metadata["tags"]
    text = cells[1].source
    assert rerun_box.listed_parameters(text) == ["profile", "seed", "K"]
    assert "python -m fairens_core book --chapters demo -p seed 1" in text
    assert "papermill demo.ipynb demo-rerun.ipynb -p seed 1" in text
    assert "group \\| size" in text  # a pipe in a comment does not break the table
    assert text.startswith(":::{admonition} Re-run this chapter\n:class: dropdown")
    assert not rerun_box.stale(path, tmp_path)


def test_box_quotes_the_measured_default_cost(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"),
                nbformat.v4.new_code_cell("seed = None", metadata={"tags": ["parameters"]})]
    path = tmp_path / "demo.ipynb"
    nbformat.write(nb, str(path))
    assert "took" not in rerun_box.box(path, tmp_path)  # no measurements: no sentence
    (tmp_path / rerun_box.COSTS_FILE).parent.mkdir(parents=True)
    (tmp_path / rerun_box.COSTS_FILE).write_text(json.dumps({"date": "2026-12-05", "cpus": 2, "chapters": {
        "demo": {"runs": 4, "train_seconds": 150.0, "estimated_seconds": 30.0, "analysis_seconds": 6.5}}}))
    text = rerun_box.box(path, tmp_path)
    assert ("With the default parameters on 2 CPU cores (measured 2026-12-05), training its 4 runs took 3 min, "
            "and executing the chapter with every record cached 6 s") in text


def test_every_chapter_quotes_its_cost():
    costs = json.loads((ROOT / rerun_box.COSTS_FILE).read_text())["chapters"]
    assert {c.stem for c in CHAPTERS} <= set(costs)


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_every_chapter_has_an_up_to_date_box(chapter):
    nb = nbformat.read(str(chapter), as_version=4)
    boxes = [i for i, c in enumerate(nb.cells) if c.cell_type == "markdown" and rerun_box.TAG in c.metadata.get("tags", [])]
    assert len(boxes) == 1, f"{chapter.name}: expected one cell tagged {rerun_box.TAG}"
    first_md = next(i for i, c in enumerate(nb.cells) if c.cell_type == "markdown")
    assert boxes[0] == first_md + 1, "the box follows the title cell"
    params = rerun_box.parameters_cell(nb)
    assert rerun_box.listed_parameters(nb.cells[boxes[0]].source) == _names(params.source)
    assert not rerun_box.stale(chapter, ROOT), (
        f"{chapter.name}: box out of date; run `python -m fairens_core.rerun_box {chapter.relative_to(ROOT)}`")


@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_papermill_can_read_every_parameter_line(chapter):
    """papermill infers each parameter from its line and gives up (a warning on every run) when the
    comment holds another '='; the chapter's form and `--help-notebook` then miss that parameter."""
    cell = rerun_box.parameters_cell(nbformat.read(str(chapter), as_version=4))
    unreadable = [line for line in cell.source.splitlines()
                  if line.strip() and not line.lstrip().startswith("#")
                  and translators.PythonTranslator.inspect(nbformat.v4.new_code_cell(line)) == []]
    assert not unreadable, unreadable
