"""Execute the book's chapters and build the HTML book.

Command line (``python -m fairens_core book ...`` or ``python -m fairens_core.book ...``)::

    book [--chapters NAME ...] [-p NAME VALUE ...] [--update-notebooks | --full] [--no-build]
         [--book-root PATH]

The book's sources (``_config.yml``, ``_toc.yml``, the bibliography and the folders of the
pages the toc lists) are copied into ``_build/executed/``, and every notebook listed in
``_toc.yml`` (or the chosen subset, matched by file stem such as ``bottom_k`` or by path
such as ``book/part1_fair_ensemble/bottom_k``) is executed there with papermill. The HTML
book is built from that copy into ``_build/html``, and the committed notebooks stay as they
are: a build never replaces their results, even where a chapter fails on this machine. A
copy is only refreshed from its source when the source is newer, so a chapter executed
there stays in later builds until its source changes.

``-p`` values are parsed as Python literals where possible (``-p members 10`` is an int,
``-p data_root /data`` a string) and injected after the ``parameters`` cell; running without
``-p`` removes an earlier injected cell, so the chapter goes back to its defaults. A notebook
is only written when it ran through; a failing chapter is named with the last lines of its
error, its partial output goes to ``_build/failed/``, the other chapters still run and the
command exits non-zero. ``jupyter-book build`` does not execute anything itself
(``execute_notebooks: off`` in ``_config.yml``).

Two maintainer actions write into the repository instead:

``--update-notebooks`` executes the chosen chapters in place, so that the committed
notebooks are the executed ones (commit them afterwards). Every executed notebook records the
kind of CPU it ran on (metadata ``fairens.executed_on``, see :mod:`fairens_core.machine`).

``--full`` executes the chosen chapters with ``profile="full"`` into
``book/full/<part>/<chapter>.ipynb`` (the book's "At full scale" part), reading run records
from ``records/full`` (``$FAIRENS_RECORDS``), which ``python -m fairens_core pack`` writes;
a run missing there is trained.

Both then re-execute the overview page (``book/full/overview.ipynb``), which tabulates the
claims of the committed pages and would otherwise go stale.

The book's Sphinx extension is :mod:`fairens_core.sphinx_ext`.

The notebook packages (yaml, nbformat, papermill) are imported by the functions that use them:
``python -m fairens_core train`` loads this module too, and must run where only torch and the
scientific stack are installed (the GPU machines).
"""

from __future__ import annotations

import argparse
import ast
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from .claims import caption, read_claims
from .machine import cpu_signature

INJECTED_TAG = "injected-parameters"
PRELUDE_TAG = "fairens-prelude"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"  # a live ipywidget's output
CELL_TIMEOUT_S = 3600  # a cell running longer has hung (the longest default-profile cell takes minutes)
FULL_DIR = Path("book") / "full"  # full-profile copies of chapters, relative to the book root
FULL_RECORDS = Path("records") / "full"  # their run records, shipped with the book
OVERVIEW = FULL_DIR / "overview.ipynb"  # every chapter's verdicts at both scales, read from the committed pages
EXECUTED_DIR = Path("_build") / "executed"  # the copy of the book that is executed and built
FAILED_DIR = Path("_build") / "failed"  # partial runs of failed chapters
CONFIG_FILES = ("_config.yml", "_toc.yml")
SKIPPED_NAMES = frozenset({"_build", ".ipynb_checkpoints", "__pycache__"})  # never copied into the build
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


def toc_parts(root) -> list[tuple[str, list[Path]]]:
    """(caption, its files) for every part of ``<root>/_toc.yml``, in order."""
    import yaml

    toc = yaml.safe_load((Path(root) / "_toc.yml").read_text(encoding="utf-8")) or {}
    return [(part.get("caption", ""), [_resolve(Path(root), c["file"]) for c in part.get("chapters", [])])
            for part in toc.get("parts", [])]


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


# A full-profile page reads the shipped records and never trains (a GPU-sized run on a CPU):
# a run it lacks raises MissingRecordError, which the chapter reports (`runner.run_available`).
RECORDS_ONLY_TAG = "records-only"
RECORDS_ONLY = ("from fairens_core.book import FULL_RECORDS, find_root\n"
                "from fairens_core.plan import RecordsOnly\n"
                "from fairens_core.runner import instead_of_training\n\n"
                "# this page reads the book's records/full, wherever it is opened; it trains nothing\n"
                "instead_of_training(RecordsOnly(find_root() / FULL_RECORDS))")


def mark_full_copy(root: Path, chapter: Path, copy: Path) -> None:
    """Put a note under the title of a full-profile copy saying what it is, and the hidden cell
    that keeps it from training, before its first code cell (once; fixed cell ids, so that
    re-running the copy changes only what it computes)."""
    import nbformat

    nb = nbformat.read(str(copy), as_version=4)
    ours = (FULL_NOTE_TAG, RECORDS_ONLY_TAG)
    nb.cells = [c for c in nb.cells if not set(ours) & set(c.get("metadata", {}).get("tags", []))]
    first_code = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"), len(nb.cells))
    nb.cells.insert(first_code, nbformat.v4.new_code_cell(RECORDS_ONLY, id=RECORDS_ONLY_TAG,
                                                          metadata={"tags": [RECORDS_ONLY_TAG, "remove-cell"]}))
    overview = os.path.relpath(Path(root).resolve() / FULL_DIR / "overview.ipynb", copy.resolve().parent)
    note = nbformat.v4.new_markdown_cell(FULL_NOTE.replace("{name}", chapter.stem).replace("{overview}", overview),
                                         id=FULL_NOTE_TAG, metadata={"tags": [FULL_NOTE_TAG]})
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
                                kernel_name=kernel, cwd=str(path.parent), execution_timeout=CELL_TIMEOUT_S,
                                progress_bar=False, log_output=False)
        except Exception as exc:  # noqa: BLE001 - report any failure by chapter
            if failed_dir is not None and out.exists():
                failed_dir.mkdir(parents=True, exist_ok=True)
                shutil.copy(out, failed_dir / path.name)
            return _error_tail(exc)
        done = nbformat.read(str(out), as_version=4)
    done.cells = [c for c in done.cells if PRELUDE_TAG not in c.get("metadata", {}).get("tags", [])]
    _strip_run_metadata(done)
    # the analysis in a chapter (not its training: train.CPU_THREADS) may round with the kernel's thread count
    kernel_threads = int(os.environ.get("OMP_NUM_THREADS", 0)) or None  # set by --jobs, else torch's default
    done.metadata.setdefault("fairens", {})["executed_on"] = cpu_signature(kernel_threads)
    nbformat.write(done, str(output or path))
    return None


def _error_tail(exc: Exception, n: int = 12) -> str:
    tb = getattr(exc, "traceback", None)  # PapermillExecutionError carries the kernel's
    text = "\n".join(tb) if tb else f"{type(exc).__name__}: {exc}"
    lines = [ln for ln in _ANSI.sub("", text).splitlines() if ln.strip()]
    return "\n".join(lines[-n:])


def _strip_run_metadata(nb) -> None:
    """Remove timestamps, absolute paths and live widgets, and fix the id papermill draws for the
    parameters it injects, so that a re-run only changes real outputs and a stored chapter shows
    each widget's static fallback (a widget without a kernel is dead weight: its view cannot
    render and its state only repeats the fallback)."""
    pm_meta = nb.metadata.get("papermill", {})
    for key in ("start_time", "end_time", "duration", "exception", "input_path", "output_path"):
        pm_meta.pop(key, None)
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        if INJECTED_TAG in cell.metadata.get("tags", []):
            cell.id = INJECTED_TAG
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
        for output in cell.get("outputs", []):
            output.get("data", {}).pop(WIDGET_VIEW, None)


@dataclass(frozen=True)
class ChapterTask:
    """One chapter to execute: `run_chapter`'s arguments, and the kernel's intra-op thread count
    (None: torch's default) when chapters run side by side."""

    source: Path
    output: Path
    parameters: dict
    kernel: str
    failed_dir: Path
    prelude: Optional[str]
    threads: Optional[int] = None


def execute_task(task: ChapterTask) -> tuple[Optional[str], float]:
    """(error tail or None, seconds) of one chapter; runs in a worker process when jobs > 1."""
    if task.threads is not None:
        # the kernel inherits this worker's environment: chapters side by side share the cores
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(task.threads)
    t0 = time.monotonic()
    if not task.source.exists():
        return f"file not found: {task.source}", 0.0
    error = run_chapter(task.source, task.parameters, kernel=task.kernel, failed_dir=task.failed_dir,
                        output=task.output, prelude=task.prelude)
    return error, time.monotonic() - t0


def execute_tasks(tasks: Sequence[ChapterTask], jobs: int):
    """(error, seconds) of every task, in order; `jobs` kernels at a time, each from its own process."""
    if jobs == 1:
        yield from map(execute_task, tasks)
        return
    with ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield from pool.map(execute_task, tasks)


# -------------------------------------------------------------- the command


def book_sources(root) -> list[Path]:
    """The top-level files and folders of ``root`` that the book is built from.

    ``_config.yml``, ``_toc.yml``, the bibliography files and static files named in
    ``_config.yml``, and the top-level file or folder of every page listed in the toc.
    """
    import yaml

    root = Path(root)
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8")) or {}
    html = config.get("html") or {}
    named = [*CONFIG_FILES, *(config.get("bibtex_bibfiles") or []), html.get("favicon"), config.get("logo")]
    named += [p.relative_to(root).as_posix() for p in toc_files(root)]
    tops = dict.fromkeys(Path(n).parts[0] for n in named if n)
    return [root / top for top in tops if (root / top).exists() and top not in SKIPPED_NAMES]


def stage_book(root, staging) -> None:
    """Copy the book's sources into ``staging``; a staged file newer than its source is kept.

    Files keep their modification time, so a staged notebook that was executed after its
    source last changed stays, and one whose source changed since is replaced.
    """
    root, staging = Path(root), Path(staging)
    for source in book_sources(root):
        files = [source] if source.is_file() else sorted(
            f for f in source.rglob("*")
            if f.is_file() and not SKIPPED_NAMES.intersection(f.relative_to(root).parts))
        for file in files:
            target = staging / file.relative_to(root)
            if not target.exists() or file.stat().st_mtime_ns > target.stat().st_mtime_ns:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, target)


def build(root: Path, extra_args: Sequence[str] = ()) -> int:
    """``jupyter-book build <root>``; returns its exit code."""
    cmd = [sys.executable, "-c",
           "import sys; from jupyter_book.cli.main import main; sys.exit(main())",
           "build", str(root), *extra_args]
    return subprocess.call(cmd)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fairens_core book",
        description=("Execute the book's chapters with papermill in a copy of the book (_build/executed), "
                     "then build the HTML book from it into _build/html. The committed notebooks are not "
                     "changed, except by the maintainer actions --update-notebooks and --full."))
    p.add_argument("--chapters", nargs="+", metavar="NAME",
                   help="only these chapters (file stem or path); default: all in _toc.yml")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                   metavar=("NAME", "VALUE"),
                   help="override a parameter of every chosen chapter (value parsed as a Python literal)")
    writes = p.add_mutually_exclusive_group()
    writes.add_argument("--update-notebooks", action="store_true",
                        help="maintainer action: execute the chapters in place, rewriting the committed "
                             "notebooks (commit them afterwards)")
    writes.add_argument("--full", action="store_true",
                        help="maintainer action: execute with profile='full' into book/full/... in the "
                             "repository (run records from records/full), then build")
    p.add_argument("--no-build", action="store_true", help="execute only; skip jupyter-book build")
    p.add_argument("--book-root", type=Path, default=None,
                   help="folder with _config.yml and _toc.yml (default: nearest at or above cwd)")
    p.add_argument("--kernel", default="python3", help="Jupyter kernel name (default: python3)")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="chapters executed side by side, each kernel with CPUs / N threads (default 1). "
                        "Meant for re-executing with the records cached: a CPU run trains with "
                        "train.CPU_THREADS threads whatever N, so runs side by side share the cores")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the book command; returns the process exit code."""
    p = parser()
    args = p.parse_args(argv)
    if args.jobs < 1:
        p.error(f"--jobs must be a positive number of chapters, got {args.jobs}")
    root = (args.book_root or find_root()).resolve()
    every = chapters(root)
    todo = select(every, args.chapters, root) if args.chapters else every
    params = {name: parse_value(value) for name, value in args.parameter}
    if args.full:
        params = {"profile": "full", **params}
        os.environ.setdefault("FAIRENS_RECORDS", str(root / FULL_RECORDS))
    staging = root / EXECUTED_DIR
    stage_book(root, staging)

    for path in missing(root):
        print(f"warning: _toc.yml names a missing file: {path.relative_to(root).as_posix()}", flush=True)
    failed = []
    if params:
        print("parameters: " + ", ".join(f"{k}={v!r}" for k, v in params.items()), flush=True)
    jobs = max(1, min(args.jobs, len(todo) or 1))
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None
    tasks = []
    for path in todo:
        # What the run writes: the staged copy, or (maintainer actions) the repository's files.
        if args.full:
            source, output = path, full_copy(root, path)
            output.parent.mkdir(parents=True, exist_ok=True)
        elif args.update_notebooks:
            source, output = path, path
        else:
            source = output = staging / path.relative_to(root)
        tasks.append(ChapterTask(source, output, params, args.kernel, root / FAILED_DIR,
                                 RECORDS_ONLY if args.full else None, threads))
    if jobs > 1:
        print(f"executing {len(todo)} chapters, {jobs} at a time ({threads} thread(s) each)", flush=True)
    for i, (path, (error, elapsed)) in enumerate(zip(todo, execute_tasks(tasks, jobs)), 1):
        name = path.relative_to(root).with_suffix("").as_posix()
        if error is None and args.full:
            mark_full_copy(root, path, tasks[i - 1].output)
        if error is None:
            rows = read_claims(tasks[i - 1].output)
            verdict = caption(rows) if rows else "no claims table"
            print(f"[{i}/{len(todo)}] {name}: ok ({elapsed:.1f}s, {verdict})", flush=True)
        else:
            failed.append(name)
            partial = root / FAILED_DIR / path.name
            where = f"; partial run in {partial.relative_to(root).as_posix()}" if partial.exists() else ""
            print(f"[{i}/{len(todo)}] {name}: FAILED ({elapsed:.1f}s{where})", flush=True)
            print("    " + error.replace("\n", "\n    "), flush=True)
    if todo:
        print(f"{len(todo) - len(failed)} of {len(todo)} chapters ok"
              + (f"; FAILED: {', '.join(failed)}" if failed else ""), flush=True)
    else:
        print("no chapters listed in _toc.yml yet", flush=True)

    status = 1 if failed else 0
    if (args.update_notebooks or args.full) and len(failed) < len(todo) and (root / OVERVIEW).exists():
        # the overview quotes the committed pages' claims: rewritten pages make it stale
        error = run_chapter(root / OVERVIEW, {}, args.kernel, root / FAILED_DIR)
        print(f"{OVERVIEW.as_posix()}: " + ("re-executed from the chapters' claims" if error is None else "FAILED"),
              flush=True)
        if error is not None:
            print("    " + error.replace("\n", "\n    "), flush=True)
            status = 1
    if not args.no_build:
        stage_book(root, staging)  # notebooks the maintainer actions just wrote
        print(f"building the book: jupyter-book build {staging} --path-output {root}", flush=True)
        if build(staging, ["--path-output", str(root)]) != 0:
            print("jupyter-book build FAILED", flush=True)
            status = 1
        else:
            print(f"book written to {root / '_build' / 'html' / 'index.html'}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
