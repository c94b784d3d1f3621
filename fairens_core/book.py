"""Execute the book's chapters and build the HTML book.

Command line (``python -m fairens_core book ...`` or ``python -m fairens_core.book ...``)::

    book [--chapters NAME ...] [-p NAME VALUE ...] [--full] [--no-build] [--book-root PATH]

Every notebook listed in ``_toc.yml`` (or the chosen subset, matched by file
stem such as ``bottom_k`` or by path such as ``book/part1_fair_ensemble/bottom_k``)
is executed with papermill **in place**: the committed notebooks are the
executed ones. ``-p`` values are parsed as Python literals where possible
(``-p members 10`` is an int, ``-p data_root /data`` a string) and injected
after the ``parameters`` cell; running without ``-p`` removes an earlier
injected cell, so the chapter goes back to its defaults. A notebook is only
overwritten when it ran through; a failing chapter is named with the last
lines of its error, its partial output goes to ``_build/failed/``, the other
chapters still run and the command exits non-zero. Then the HTML is built
with ``jupyter-book build`` (which does not execute anything itself:
``execute_notebooks: off`` in ``_config.yml``).

``--full`` executes the chosen chapters with ``profile="full"`` into
``book/full/<part>/<chapter>.ipynb`` instead (the book's "At full scale" part),
reading run records from ``records/full`` (``$FAIRENS_RECORDS``), which
``python -m fairens_core pack`` writes; a run missing there is trained.

This module is also the book's Sphinx extension (``extra_extensions`` in
``_config.yml``): it ships the offline vega bundle and, when the
``sphinx-mathjax-offline`` package is installed, an offline MathJax.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional, Sequence

from .claims import read_claims

INJECTED_TAG = "injected-parameters"
PRELUDE_TAG = "fairens-prelude"
FULL_DIR = Path("book") / "full"  # full-profile copies of chapters, relative to the book root
FULL_RECORDS = Path("records") / "full"  # their run records, shipped with the book
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


# ------------------------------------------------------------------ the toc


def find_root(start=None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) holding ``_toc.yml``."""
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "_toc.yml").is_file():
            return d
    raise FileNotFoundError(f"no _toc.yml at or above {here}")


def toc_files(root) -> list[Path]:
    """Every file named in ``<root>/_toc.yml`` (root page first), resolved to a path."""
    import yaml

    root = Path(root)
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8")) or {}
    names = [toc["root"]] if toc.get("root") else []

    def walk(node):
        if isinstance(node, dict):
            if "file" in node:
                names.append(node["file"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk({k: v for k, v in toc.items() if k != "root"})
    return [_resolve(root, n) for n in names]


def _resolve(root: Path, name: str) -> Path:
    p = root / name
    if p.suffix in (".ipynb", ".md", ".rst"):
        return p
    for suffix in (".ipynb", ".md", ".rst"):
        if p.with_suffix(suffix).exists():
            return p.with_suffix(suffix)
    return p  # not written yet (e.g. a page another author is working on)


def chapters(root) -> list[Path]:
    """The chapters listed in the toc, in toc order (their full-profile copies excluded)."""
    full = Path(root).resolve() / FULL_DIR
    return [p for p in toc_files(root) if p.suffix == ".ipynb" and full not in p.resolve().parents]


def full_copy(root: Path, chapter: Path) -> Path:
    """Where the full-profile copy of `chapter` (book/<part>/<name>.ipynb) lives."""
    root = Path(root).resolve()
    return root / FULL_DIR / Path(chapter).resolve().relative_to(root / "book")


def full_copies(root) -> list[tuple[Path, Path]]:
    """(chapter, its full-profile copy) for every chapter that has one, in toc order."""
    return [(c, full_copy(root, c)) for c in chapters(root) if full_copy(root, c).exists()]


FULL_NOTE_TAG = "full-profile-note"
FULL_NOTE = (
    "```{note}\nThis page is chapter *{name}* executed with the full profile (`profile=\"full\"`), "
    "from the run records in `records/full`. The text was written for the default run on a CPU; the "
    "numbers, figures and the claims table are the full profile's. [At full scale]({overview}) "
    "lists the claims whose verdict differs between the two.\n```")


def mark_full_copy(root: Path, chapter: Path, copy: Path) -> None:
    """Put a note under the title of a full-profile copy saying what it is (once)."""
    import nbformat

    nb = nbformat.read(str(copy), as_version=4)
    nb.cells = [c for c in nb.cells if FULL_NOTE_TAG not in c.get("metadata", {}).get("tags", [])]
    overview = os.path.relpath(Path(root).resolve() / FULL_DIR / "overview.ipynb", copy.resolve().parent)
    note = nbformat.v4.new_markdown_cell(FULL_NOTE.replace("{name}", chapter.stem).replace("{overview}", overview),
                                         metadata={"tags": [FULL_NOTE_TAG]})
    title = next((i for i, c in enumerate(nb.cells) if c.cell_type == "markdown"), -1)
    nb.cells.insert(title + 1, note)
    nbformat.write(nb, str(copy))


def missing(root) -> list[Path]:
    """Files the toc names that do not exist (yet)."""
    return [p for p in toc_files(root) if not p.exists()]


def select(all_chapters: Sequence[Path], names: Sequence[str], root: Path) -> list[Path]:
    """Chapters matching ``names`` by stem or by path relative to ``root``."""
    chosen = []
    for name in names:
        key = name[:-len(".ipynb")] if name.endswith(".ipynb") else name
        hits = [c for c in all_chapters
                if key in (c.stem, c.relative_to(root).with_suffix("").as_posix())]
        if not hits:
            known = ", ".join(c.stem for c in all_chapters) or "none"
            raise SystemExit(f"no chapter named {name!r} in _toc.yml (chapters: {known})")
        chosen += [h for h in hits if h not in chosen]
    return chosen


# ------------------------------------------------------------ running one


def parse_value(text: str):
    """``"10"`` → 10, ``"None"`` → None, ``"[1, 2]"`` → [1, 2]; anything else stays a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def run_chapter(path: Path, parameters: dict, kernel: str = "python3",
                failed_dir: Optional[Path] = None, output: Optional[Path] = None,
                prelude: Optional[str] = None) -> Optional[str]:
    """Execute ``path`` with papermill, in place or into ``output``; return None on success,
    else the error's tail. ``prelude``: code run first in the kernel (a cell not kept).

    The notebook is only written when execution succeeds; a failed run is
    saved to ``failed_dir`` (if given) for inspection.
    """
    import nbformat
    import papermill as pm

    if failed_dir is not None:
        (failed_dir / path.name).unlink(missing_ok=True)  # a stale copy from an earlier run
    nb = nbformat.read(str(path), as_version=4)
    # Drop a previous run's override cell: no -p means the chapter's defaults.
    nb.cells = [c for c in nb.cells if INJECTED_TAG not in c.get("metadata", {}).get("tags", [])]
    if prelude:
        nb.cells.insert(0, nbformat.v4.new_code_cell(prelude, metadata={"tags": [PRELUDE_TAG]}))
    with tempfile.TemporaryDirectory(prefix="fairens-book-") as tmp:
        out = Path(tmp) / path.name
        try:
            pm.execute_notebook(nb, str(out), parameters=parameters or None,
                                kernel_name=kernel, cwd=str(path.parent),
                                progress_bar=False, log_output=False)
        except Exception as exc:  # noqa: BLE001 - report any failure by chapter
            if failed_dir is not None and out.exists():
                failed_dir.mkdir(parents=True, exist_ok=True)
                shutil.copy(out, failed_dir / path.name)
            return _error_tail(exc)
        done = nbformat.read(str(out), as_version=4)
    done.cells = [c for c in done.cells if PRELUDE_TAG not in c.get("metadata", {}).get("tags", [])]
    _strip_run_metadata(done)
    nbformat.write(done, str(output or path))
    return None


def _error_tail(exc: Exception, n: int = 12) -> str:
    tb = getattr(exc, "traceback", None)  # PapermillExecutionError carries the kernel's
    text = "\n".join(tb) if tb else f"{type(exc).__name__}: {exc}"
    lines = [ln for ln in _ANSI.sub("", text).splitlines() if ln.strip()]
    return "\n".join(lines[-n:])


def _strip_run_metadata(nb) -> None:
    """Remove timestamps and absolute paths so a re-run only changes real outputs."""
    pm_meta = nb.metadata.get("papermill", {})
    for key in ("start_time", "end_time", "duration", "exception", "input_path", "output_path"):
        pm_meta.pop(key, None)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)


# -------------------------------------------------------------- the command


def build(root: Path, extra_args: Sequence[str] = ()) -> int:
    """``jupyter-book build <root>``; returns its exit code."""
    cmd = [sys.executable, "-c",
           "import sys; from jupyter_book.cli.main import main; sys.exit(main())",
           "build", str(root), *extra_args]
    return subprocess.call(cmd)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fairens_core book",
        description="Execute the book's chapters in place with papermill, then build the HTML book.")
    p.add_argument("--chapters", nargs="+", metavar="NAME",
                   help="only these chapters (file stem or path); default: all in _toc.yml")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                   metavar=("NAME", "VALUE"),
                   help="override a parameter of every chosen chapter (value parsed as a Python literal)")
    p.add_argument("--full", action="store_true",
                   help="execute with profile='full' into book/full/... (records from records/full)")
    p.add_argument("--no-build", action="store_true", help="execute only; skip jupyter-book build")
    p.add_argument("--book-root", type=Path, default=None,
                   help="folder with _config.yml and _toc.yml (default: nearest at or above cwd)")
    p.add_argument("--kernel", default="python3", help="Jupyter kernel name (default: python3)")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the book command; returns the process exit code."""
    args = parser().parse_args(argv)
    root = (args.book_root or find_root()).resolve()
    every = chapters(root)
    todo = select(every, args.chapters, root) if args.chapters else every
    params = {name: parse_value(value) for name, value in args.parameter}
    if args.full:
        params = {"profile": "full", **params}
        os.environ.setdefault("FAIRENS_RECORDS", str(root / FULL_RECORDS))


    for path in missing(root):
        print(f"warning: _toc.yml names a missing file: {path.relative_to(root).as_posix()}", flush=True)
    failed = []
    if params:
        print("parameters: " + ", ".join(f"{k}={v!r}" for k, v in params.items()), flush=True)
    for i, path in enumerate(todo, 1):
        name = path.relative_to(root).with_suffix("").as_posix()
        print(f"[{i}/{len(todo)}] {name} ...", end=" ", flush=True)
        t0 = time.monotonic()
        if not path.exists():
            error = f"file not found: {path}"
        else:
            output = full_copy(root, path) if args.full else None
            if output is not None:
                output.parent.mkdir(parents=True, exist_ok=True)
            error = run_chapter(path, params, kernel=args.kernel,
                                failed_dir=root / "_build" / "failed", output=output)
        elapsed = time.monotonic() - t0
        if error is None and output is not None:
            mark_full_copy(root, path, output)
        if error is None:
            rows = read_claims(output or path)
            verdict = f"claims {sum(r['holds'] for r in rows)}/{len(rows)} hold" if rows else "no claims table"
            print(f"ok ({elapsed:.1f}s, {verdict})", flush=True)
        else:
            failed.append(name)
            partial = root / "_build" / "failed" / path.name
            where = f"; partial run in {partial.relative_to(root).as_posix()}" if partial.exists() else ""
            print(f"FAILED ({elapsed:.1f}s{where})", flush=True)
            print("    " + error.replace("\n", "\n    "), flush=True)
    if todo:
        print(f"{len(todo) - len(failed)} of {len(todo)} chapters ok"
              + (f"; FAILED: {', '.join(failed)}" if failed else ""), flush=True)
    else:
        print("no chapters listed in _toc.yml yet", flush=True)

    status = 1 if failed else 0
    if not args.no_build:
        print(f"building the book: jupyter-book build {root}", flush=True)
        if build(root) != 0:
            print("jupyter-book build FAILED", flush=True)
            status = 1
        else:
            print(f"book written to {root / '_build' / 'html' / 'index.html'}", flush=True)
    return status


# ------------------------------------------------------- Sphinx extension


def _ship_static(app, exc) -> None:
    if exc is None and app.builder.format == "html":
        from .charts import write_js_bundle

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
    import importlib.util

    from sphinx.util import logging

    from .charts import JS_FILE

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


if __name__ == "__main__":
    sys.exit(main())
