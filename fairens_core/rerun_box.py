"""The "Re-run this chapter" box: a collapsed note on every chapter page, made from its
``parameters`` cell so that it cannot drift from it.

The box is a Markdown cell tagged ``rerun-box`` right after the chapter's first Markdown
cell (its title and introduction). It holds the command that re-executes the chapter with
other parameters (``python -m fairens_core book`` and the papermill equivalent) and a table
of the parameters: name, default and description, the description being the trailing
comment of the parameter's line (or, for lines without one, :data:`COMMON`).

Command line (writes the notebooks in place)::

    python -m fairens_core.rerun_box [NOTEBOOK ...]    # default: every chapter in _toc.yml
    python -m fairens_core.rerun_box --check           # exit 1 if a box is missing or stale
"""

from __future__ import annotations

import argparse
import ast
import io
import json
import sys
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from .book import chapters, find_root

TAG = "rerun-box"
PARAMETERS_TAG = "parameters"
COSTS_FILE = Path("benchmarks") / "chapter_costs.json"  # measured by benchmarks/chapter_costs.py

# Descriptions of parameters that many chapters share, for lines without a comment.
COMMON = {
    "profile": 'the run\'s scale: "default" (CPU), "smoke" (seconds) or "full" (GPU)',
    "dataset": "the dataset (None: the profile's choice)",
    "model": "the members' architecture (None: the profile's choice)",
    "width": "the model's width (None: the profile's choice)",
    "members": "the number of members (None: the profile's choice)",
    "epochs": "training epochs of every member (None: the profile's choice)",
    "seed": "the base random seed (None: the profile's choice)",
    "device": 'where to train, e.g. "cpu" or "cuda" (None: the best available)',
    "data_root": "the folder of downloaded datasets (needed by the full profile's image data)",
    "pool_model": "the classification pool's architecture (None: its profile's choice)",
    "pool_members": "the classification pool's number of members (None: its profile's choice)",
    "hessian_examples": "test examples used for the Hessian form of the diversity (None: the profile's choice)",
}


@dataclass(frozen=True)
class Parameter:
    name: str
    default: str  # the value's source text
    description: str


def parameters(source: str) -> list[Parameter]:
    """The parameters assigned in a ``parameters`` cell, in order, with their trailing comments."""
    tree = ast.parse(source)
    comments = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    out = []
    for node in tree.body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            value = ast.get_source_segment(source, node.value) if node.value is not None else "None"
            comment = comments.get(node.end_lineno, "")
            for target in targets:
                if isinstance(target, ast.Name):
                    out.append(Parameter(target.id, value, comment or COMMON.get(target.id, "")))
    return out


def _cell_source(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _tags(cell) -> list:
    return cell.get("metadata", {}).get("tags", [])


def parameters_cell(nb):
    """The notebook's cell tagged ``parameters`` (None if it has none)."""
    return next((c for c in nb["cells"] if c["cell_type"] == "code" and PARAMETERS_TAG in _tags(c)), None)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("$", "\\$")


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def default_cost(name: str, root: Optional[Path]) -> str:
    """A sentence on what the chapter's default run cost on a CPU, from `COSTS_FILE` under
    ``root`` ("" when the file or the chapter is not there)."""
    path = Path(root) / COSTS_FILE if root is not None else None
    if path is None or not path.is_file():
        return ""
    measured = json.loads(path.read_text(encoding="utf-8"))
    cost = measured["chapters"].get(name)
    if cost is None:
        return ""
    cpus = f"{measured['cpus']} CPU core{'s' if measured['cpus'] != 1 else ''}"
    train = cost["train_seconds"] + cost["estimated_seconds"]
    parts = [f"training its {cost['runs']} run{'s' if cost['runs'] != 1 else ''} took "
             f"{_minutes(train)}" if cost["runs"] else "it trains nothing"]
    if cost.get("analysis_seconds") is not None:
        parts.append(f"executing the chapter with every record cached {_minutes(cost['analysis_seconds'])}")
    when = cost.get("date", measured["date"])  # a chapter refreshed alone carries its own date
    return (f"With the default parameters on {cpus} (measured {when}), " + ", and ".join(parts)
            + "; runs that another chapter already trained are read from the cache.")


def box(notebook_path, root: Optional[Path] = None, params: Optional[list[Parameter]] = None) -> str:
    """The box's Markdown for the notebook at ``notebook_path`` (relative to ``root`` in commands)."""
    import nbformat

    path = Path(notebook_path)
    if params is None:
        cell = parameters_cell(nbformat.read(str(path), as_version=4))
        params = parameters(_cell_source(cell)) if cell is not None else []
    rel = path.resolve().relative_to(root.resolve()).as_posix() if root else path.as_posix()
    name = path.stem
    names = [p.name for p in params]
    example = ["-p", "seed", "1"] if "seed" in names else ["-p", "profile", "smoke"] if "profile" in names else []
    ex = " ".join(example)
    cost = default_cost(name, root)
    lines = [
        ":::{admonition} Re-run this chapter",
        ":class: dropdown tip",
        "",
        "Every number on this page comes from running the code below. To run it again with other "
        "parameters, execute the chapter in a copy of the book and rebuild the HTML book, or "
        "execute this notebook alone with papermill:",
        "",
        "```bash",
        f"python -m fairens_core book --chapters {name}{' ' + ex if ex else ''}",
        f"papermill {rel} {name}-rerun.ipynb{' ' + ex if ex else ''}",
        "```",
        "",
        "`python -m fairens_core book` reads each `-p NAME VALUE` as a Python literal "
        "(`-p members 10`, `-p profile full`, `-p ks \"[1, 3, 5]\"`); papermill takes "
        "lists as YAML (`-y \"NAME: [1, 2]\"`). `None` means the profile's choice. "
        "Runs already trained are read from the record cache.",
        "",
        "What a setting costs before running it: "
        f"`python -m fairens_core plan --profile default --chapters {name}{' ' + ex if ex else ''}` lists every "
        "run it would train, with its time (measured for a run in the cache, estimated from this CPU's "
        "speed otherwise). In JupyterLab, the form in the chapter's last cell re-runs it with new values."
        + (" " + cost if cost else ""),
        "",
        "| parameter | default | what it sets |",
        "|:--|:--|:--|",
    ]
    for p in params:
        lines.append(f"| `{p.name}` | `{_md_cell(p.default)}` | {_md_cell(p.description)} |")
    lines.append(":::")
    return "\n".join(lines)


def listed_parameters(box_source: str) -> list[str]:
    """The parameter names a box's table lists, in order (for tests and --check)."""
    names = []
    for line in box_source.splitlines():
        if line.startswith("| `") and "` |" in line:
            names.append(line[3:line.index("` |")])
    return names


def update(notebook_path, root: Optional[Path] = None) -> bool:
    """Insert or refresh the box of one notebook; returns True when the file changed."""
    import nbformat

    path = Path(notebook_path)
    nb = nbformat.read(str(path), as_version=4)
    text = box(path, root)
    existing = next((c for c in nb.cells if c.cell_type == "markdown" and TAG in _tags(c)), None)
    if existing is not None:
        if existing.source == text:
            return False
        existing.source = text
    else:
        first_md = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"), -1)
        nb.cells.insert(first_md + 1, nbformat.v4.new_markdown_cell(text, metadata={"tags": [TAG]}))
    nbformat.write(nb, str(path))
    return True


def stale(notebook_path, root: Optional[Path] = None) -> bool:
    """Whether the notebook's box is missing or differs from what its parameters cell gives."""
    import nbformat

    nb = nbformat.read(str(notebook_path), as_version=4)
    existing = next((c for c in nb.cells if c.cell_type == "markdown" and TAG in _tags(c)), None)
    return existing is None or existing.source != box(notebook_path, root)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fairens_core.rerun_box", description=__doc__.split("\n\n")[0])
    p.add_argument("notebooks", nargs="*", type=Path, help="default: every chapter in _toc.yml")
    p.add_argument("--check", action="store_true", help="only report missing or stale boxes (exit 1 if any)")
    args = p.parse_args(argv)
    root = find_root()
    paths = args.notebooks or chapters(root)
    bad = 0
    for path in paths:
        if args.check:
            if stale(path, root):
                bad += 1
                print(f"stale: {path}")
        elif update(path, root):
            print(f"updated: {path}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
