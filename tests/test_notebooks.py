"""Smoke test: every chapter in _toc.yml runs with the smoke profile and ends with claims.

Notebooks are executed into tmp_path, never in place: the committed ones stay
as the book shows them (nbval checks those separately, see howto.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fairens_core.book import chapters
from fairens_core.claims import read_claims

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = chapters(ROOT)
SMOKE = {"profile": "smoke"}


@pytest.mark.slow
@pytest.mark.parametrize("chapter", CHAPTERS, ids=[c.stem for c in CHAPTERS])
def test_chapter_runs_with_smoke_profile(chapter, tmp_path, execute):
    out = execute(chapter, tmp_path / chapter.name, **SMOKE)
    rows = read_claims(out)
    assert rows, f"{chapter.relative_to(ROOT)} shows no claims table (fairens_core.claims.show_claims)"
    assert all(r["holds"] is None or isinstance(r["holds"], bool) for r in rows)
    untestable = [r for r in rows if r["holds"] is None]
    assert all(r["note"].startswith("not testable here: ") for r in untestable), untestable
