"""Smoke test: every chapter in _toc.yml runs with the smoke profile and ends with claims.

Notebooks are executed into tmp_path, never in place: the committed ones stay
as the book shows them (nbval checks those separately, see howto.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from fairens_core.book import chapters
from fairens_core.claims import read_claims
from fairens_core.profiles import BASE
from fairens_core.profiles import CHAPTERS as CHAPTER_KNOBS
from fairens_core.rerun_box import parameters, parameters_cell

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = chapters(ROOT)
PAPERMILL = Path(sys.executable).parent / "papermill"  # the environment's own command
TRAINS_AS = {"augmented_objective": "diversity"}  # its `dataset` parameters are those of diversity's ensemble


def literal_arguments(chapter: Path) -> list[str]:
    """`-p NAME VALUE` for every list or dict parameter of the chapter that its smoke profile sets,
    the value typed as a user types it in a shell (papermill hands it over as text)."""
    cell = parameters_cell(nbformat.read(str(chapter), as_version=4))
    names = {p.name for p in parameters(cell.source)}
    knobs = CHAPTER_KNOBS.get(chapter.stem, {}).get("smoke", {})
    train = CHAPTER_KNOBS.get(TRAINS_AS.get(chapter.stem, chapter.stem), {}).get("smoke", {}).get("train", {})
    smoke = {**BASE["smoke"], **train, **knobs}
    args = []
    for name in sorted(names):
        value = smoke.get(name)
        if isinstance(value, (list, tuple, dict)) and value:
            args += ["-p", name, json.dumps(value) if isinstance(value, dict) else repr(list(value))]
    return args


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_chapter_runs_with_smoke_profile(chapter, tmp_path):
    """The how-to's papermill command, verbatim (`cd <part>; papermill NAME.ipynb OUT -p ...`), with
    the smoke profile and every list or dict parameter given as text."""
    out = tmp_path / chapter.name
    command = [str(PAPERMILL), chapter.name, str(out), "-p", "profile", "smoke", *literal_arguments(chapter)]
    done = subprocess.run(command, cwd=chapter.parent, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stderr[-3000:]}"
    assert "Passed unknown parameter" not in done.stderr, done.stderr[-2000:]
    rows = read_claims(out)
    assert rows, f"{chapter.relative_to(ROOT)} shows no claims table (fairens_core.claims.show_claims)"
    assert all(r["holds"] is None or isinstance(r["holds"], bool) for r in rows)
    untestable = [r for r in rows if r["holds"] is None]
    assert all(r["note"].startswith("not testable here: ") for r in untestable), untestable


def test_list_and_dict_parameters_are_typed_as_text():
    args = literal_arguments(ROOT / "book" / "part1_fair_ensemble" / "corruption.ipynb")
    assert args[args.index("severities") + 1] == "[1, 3, 5]"
