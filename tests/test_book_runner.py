"""The book runner on a tiny book: failures, overrides, subsets, the build copy, build."""

from __future__ import annotations

import os
import subprocess
import sys

import nbformat
import pytest
import yaml

from fairens_core import book, sphinx_ext

CONFIG = """title: tiny
only_build_toc_files: true
execute:
  execute_notebooks: "off"
"""
TOC = """format: jb-book
root: intro
parts:
  - caption: Part
    chapters:
      - file: book/part/good
      - file: book/part/bad
"""
GOOD = [
    "import os\nprint('x is', x, '| threads:', os.environ.get('OMP_NUM_THREADS'))",
    "from fairens_core.claims import Claim, show_claims\n"
    "show_claims([Claim('x is positive', 'p', str(x), x > 0)])",
]
BAD = ["raise ValueError('boom from the bad chapter')"]


@pytest.fixture
def tiny(tmp_path, make_notebook):
    (tmp_path / "_config.yml").write_text(CONFIG)
    (tmp_path / "_toc.yml").write_text(TOC)
    (tmp_path / "intro.md").write_text("# Tiny\n\nA tiny book.\n")
    make_notebook(tmp_path / "book/part/good.ipynb", GOOD, parameters="x = 1")
    make_notebook(tmp_path / "book/part/bad.ipynb", BAD, parameters="x = 1")
    return tmp_path


def sources(root):
    """Every file of the book outside _build, with its bytes: what `git status` would compare."""
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file() and "_build" not in p.relative_to(root).parts}


def stdout_of(nb_path):
    nb = nbformat.read(str(nb_path), as_version=4)
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))


def test_toc_lists_chapters(tiny):
    assert [p.name for p in book.toc_files(tiny)] == ["intro.md", "good.ipynb", "bad.ipynb"]
    assert [p.name for p in book.chapters(tiny)] == ["good.ipynb", "bad.ipynb"]


def test_repository_toc_parses(repo_root):
    files = book.toc_files(repo_root)
    rel = [p.relative_to(repo_root).as_posix() for p in files]
    assert rel[0] == "book/intro.md"
    assert {"book/howto.md", "book/reference/api.md"} <= set(rel)
    assert all(p.exists() for p in book.chapters(repo_root))


def test_select_by_stem_or_path(tiny):
    every = book.chapters(tiny)
    assert book.select(every, ["good"], tiny) == every[:1]
    assert book.select(every, ["book/part/bad.ipynb", "good"], tiny) == [every[1], every[0]]
    with pytest.raises(SystemExit, match="no chapter named 'nope'"):
        book.select(every, ["nope"], tiny)


@pytest.mark.parametrize("text, value", [
    ("10", 10), ("0.5", 0.5), ("None", None), ("True", True), ("[1, 2]", [1, 2]),
    ("'quoted'", "quoted"), ("cpu", "cpu"), ("/data/x", "/data/x"),
])
def test_parse_value(text, value):
    assert book.parse_value(text) == value


@pytest.mark.slow
def test_failing_chapter_is_reported_and_others_run(tiny, capsys):
    before = sources(tiny)
    rc = book.main(["--book-root", str(tiny), "--no-build", "--jobs", "2", "-p", "x", "41"])
    out = capsys.readouterr().out
    assert rc != 0
    assert "2 at a time" in out  # side by side, each in its own kernel with its share of the cores
    threads = max(1, (os.cpu_count() or 1) // 2)
    assert f"threads: {threads}" in stdout_of(tiny / "_build/executed/book/part/good.ipynb")
    assert "[1/2] book/part/good: ok" in out and "Claims: 1 of 1 hold" in out
    assert "[2/2] book/part/bad: FAILED" in out
    assert "boom from the bad chapter" in out
    assert "FAILED: book/part/bad" in out and "partial run in _build/failed/bad.ipynb" in out
    # the good chapter was executed in the build copy with the override...
    executed = tiny / "_build/executed"
    assert "x is 41" in stdout_of(executed / "book/part/good.ipynb")
    # ...the bad one's copy left as it was, its partial run kept for inspection
    assert (executed / "book/part/bad.ipynb").read_bytes() == before["book/part/bad.ipynb"]
    assert (tiny / "_build/failed/bad.ipynb").exists()
    assert sources(tiny) == before  # the book's own notebooks are untouched
    assert not (tiny / "_build/html").exists()  # --no-build


def test_jobs_must_be_positive(tiny, capsys):
    with pytest.raises(SystemExit):
        book.main(["--book-root", str(tiny), "--no-build", "--jobs", "0"])
    assert "--jobs must be a positive number" in capsys.readouterr().err


@pytest.mark.slow
def test_rerun_without_overrides_restores_defaults(tiny, capsys):
    good = tiny / "_build/executed/book/part/good.ipynb"
    assert book.main(["--book-root", str(tiny), "--no-build", "--chapters", "good", "-p", "x", "7"]) == 0
    assert "x is 7" in stdout_of(good)
    assert book.main(["--book-root", str(tiny), "--no-build", "--chapters", "good"]) == 0
    nb = nbformat.read(str(good), as_version=4)
    assert not any(book.INJECTED_TAG in c.metadata.get("tags", []) for c in nb.cells)
    assert "x is 1" in stdout_of(good)
    # no timestamps or absolute paths left behind by papermill
    assert "input_path" not in nb.metadata.get("papermill", {})
    assert not any("papermill" in c.metadata or "execution" in c.metadata for c in nb.cells)
    assert "(bad" not in capsys.readouterr().out


def test_build_copy_holds_the_book_sources_and_keeps_executed_notebooks(tiny):
    (tiny / "references.bib").write_text("")
    (tiny / "_config.yml").write_text(CONFIG + "bibtex_bibfiles:\n  - references.bib\n")
    (tiny / "book/part/.ipynb_checkpoints").mkdir()
    (tiny / "book/part/.ipynb_checkpoints/good-checkpoint.ipynb").write_text("{}")
    (tiny / "notes.txt").write_text("not part of the book")
    assert [p.name for p in book.book_sources(tiny)] == ["_config.yml", "_toc.yml", "references.bib",
                                                         "intro.md", "book"]
    staging = tiny / "_build/executed"
    book.stage_book(tiny, staging)
    staged = sorted(p.relative_to(staging).as_posix() for p in staging.rglob("*") if p.is_file())
    assert staged == ["_config.yml", "_toc.yml", "book/part/bad.ipynb", "book/part/good.ipynb", "intro.md",
                      "references.bib"]
    good, source = staging / "book/part/good.ipynb", tiny / "book/part/good.ipynb"
    good.write_text("executed")  # written after its source: a later staging keeps it
    os.utime(good, ns=(source.stat().st_mtime_ns + 10**9,) * 2)
    book.stage_book(tiny, staging)
    assert good.read_text() == "executed"
    os.utime(source, ns=(good.stat().st_mtime_ns + 10**9,) * 2)  # the source changed since
    book.stage_book(tiny, staging)
    assert good.read_bytes() == source.read_bytes()


@pytest.mark.slow
def test_update_notebooks_executes_in_place(tiny, capsys):
    good = tiny / "book/part/good.ipynb"
    assert book.main(["--book-root", str(tiny), "--no-build", "--update-notebooks", "--chapters", "good",
                      "-p", "x", "5"]) == 0
    assert "x is 5" in stdout_of(good)


@pytest.mark.slow
def test_maintainer_actions_re_execute_the_overview(tiny, make_notebook, capsys):
    overview = make_notebook(tiny / "book/full/overview.ipynb", [
        "from fairens_core.book import chapters, find_root\n"
        "from fairens_core.claims import read_claims\n"
        "print('overview:', [r['measured'] for c in chapters(find_root()) for r in read_claims(c)])"])
    assert book.main(["--book-root", str(tiny), "--no-build", "--update-notebooks", "--chapters", "good",
                      "-p", "x", "7"]) == 0
    assert "overview: ['7']" in stdout_of(overview)  # it quotes the page just rewritten
    assert "book/full/overview.ipynb: re-executed" in capsys.readouterr().out
    assert book.main(["--book-root", str(tiny), "--no-build", "--update-notebooks", "--chapters", "bad"]) == 1
    assert "overview: ['7']" in stdout_of(overview) and "overview" not in capsys.readouterr().out  # nothing new


def test_full_executes_a_copy_with_the_full_profile(tiny, capsys, monkeypatch):
    monkeypatch.delenv("FAIRENS_RECORDS", raising=False)
    good = tiny / "book/part/good.ipynb"
    nb = nbformat.read(str(good), as_version=4)
    nb.cells.insert(0, nbformat.v4.new_markdown_cell("# Good"))
    nb.cells.insert(2, nbformat.v4.new_code_cell("print('profile is', profile)"))
    nb.cells[1].source += "\nprofile = 'default'"
    nbformat.write(nb, str(good))
    before = good.read_text()

    assert book.main(["--book-root", str(tiny), "--no-build", "--full", "--chapters", "good"]) == 0
    copy = tiny / "book/full/part/good.ipynb"
    assert "profile is full" in stdout_of(copy) and good.read_text() == before  # the chapter is untouched
    assert book.chapters(tiny) == [good, tiny / "book/part/bad.ipynb"]  # copies are not chapters
    assert book.full_copies(tiny) == [(good, copy)]
    cells = nbformat.read(str(copy), as_version=4).cells
    assert cells[0].source == "# Good" and book.FULL_NOTE_TAG in cells[1].metadata["tags"]
    assert "../overview.ipynb" in cells[1].source
    assert "Claims: 1 of 1 hold" in capsys.readouterr().out
    ids = [c.id for c in cells]
    assert book.main(["--book-root", str(tiny), "--no-build", "--full", "--chapters", "good"]) == 0
    cells = nbformat.read(str(copy), as_version=4).cells
    assert sum(book.FULL_NOTE_TAG in c.metadata.get("tags", []) for c in cells) == 1
    assert [c.id for c in cells] == ids  # a re-run changes outputs only, not the copy's cells
    assert os.environ["FAIRENS_RECORDS"] == str(tiny.resolve() / "records" / "full")


@pytest.mark.slow
def test_builds_html_after_running(tiny, capsys):
    (tiny / "_toc.yml").write_text(TOC.replace("      - file: book/part/bad\n", ""))
    before = sources(tiny)
    assert book.main(["--book-root", str(tiny), "-p", "x", "3"]) == 0
    page = tiny / "_build/html/book/part/good.html"
    assert "x is 3" in page.read_text()  # built from the executed copy...
    assert sources(tiny) == before  # ...and the book's notebooks are as they were
    assert "book written to" in capsys.readouterr().out


def test_module_entry_point():
    res = subprocess.run([sys.executable, "-m", "fairens_core.book", "--help"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "--chapters" in res.stdout and "--no-build" in res.stdout
    assert "--update-notebooks" in res.stdout and "maintainer action" in res.stdout


def test_book_runner_does_not_import_altair():
    # The runner executes chapters on machines without altair; only the Sphinx extension needs it.
    code = ("import sys, fairens_core.book, fairens_core.__main__; "
            "assert 'altair' not in sys.modules and 'fairens_core.charts' not in sys.modules")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def test_config_names_the_sphinx_extension(repo_root):
    config = yaml.safe_load((repo_root / "_config.yml").read_text(encoding="utf-8"))
    assert "fairens_core.sphinx_ext" in config["sphinx"]["extra_extensions"]
    assert callable(sphinx_ext.setup)
