"""Every notebook of the book names its kernel (so that papermill and nbclient run it as it is), and no cell
imports over a name an earlier cell gave to its data."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT / "book").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def test_there_are_notebooks():
    assert len(NOTEBOOKS) > 10


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_notebook_has_a_python3_kernelspec(path):
    metadata = json.loads(path.read_text(encoding="utf-8"))["metadata"]
    assert metadata.get("kernelspec", {}).get("name") == "python3"  # papermill: "No kernel name found" otherwise
    assert metadata["kernelspec"].get("language") == "python"
    assert metadata.get("language_info", {}).get("name") == "python"


def _bound_and_imported(source: str) -> tuple[set[str], set[str]]:
    """Names a code cell assigns at its top level, and names it imports."""
    tree = ast.parse("\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))))
    bound, imported = set(), set()
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imported |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            bound |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
    return bound, imported


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_cell_imports_over_a_chapter_variable(path):
    # a reader who re-runs an earlier cell in JupyterLab would get the import instead of the data
    bound = {}
    for number, cell in enumerate(json.loads(path.read_text(encoding="utf-8"))["cells"]):
        if cell["cell_type"] != "code":
            continue
        assigned, imported = _bound_and_imported("".join(cell["source"]))
        clashes = {name: bound[name] for name in imported if name in bound}
        assert not clashes, f"cell {number} imports {sorted(clashes)}, assigned earlier in cells {clashes}"
        for name in assigned:
            bound.setdefault(name, number)
