"""The package's import graph: no cycle, and every import of the package at a module's top."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "fairens_core"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_imports(path: Path):
    """(imported module, is at module top) for every import of fairens_core in `path`."""
    tree = ast.parse(path.read_text())
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    top = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module or ""
            if not target.startswith("fairens_core"):
                continue
            # `from . import x` imports the module x; `from .m import f` the module m
            names = [f"{target}.{a.name}" for a in node.names] if node.module is None else [target]
            for name in names:
                yield name, id(node) in top
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("fairens_core"):
                    yield alias.name, id(node) in top


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def resolve(name: str) -> str | None:
    """The module a dotted import refers to (an attribute import resolves to its module)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


@pytest.mark.parametrize("module", sorted(MODULES))
def test_the_package_is_imported_at_the_top(module):
    late = [name for name, at_top in package_imports(MODULES[module]) if not at_top]
    assert not late, f"{module} imports {late} inside a function"


def test_the_import_graph_has_no_cycle():
    graph = {m: {resolve(n) for n, _ in package_imports(p)} - {None, m} for m, p in MODULES.items()}
    # a module's own package (its __init__) is not an edge: __init__ imports nothing eagerly
    graph = {m: {d for d in deps if d != "fairens_core"} for m, deps in graph.items()}
    state: dict[str, int] = {}

    def visit(m, path):
        if state.get(m) == 1:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(m):] + [m]))
        if state.get(m) == 2:
            return
        state[m] = 1
        for d in sorted(graph.get(m, ())):
            visit(d, path + [m])
        state[m] = 2

    for m in sorted(graph):
        visit(m, [])
