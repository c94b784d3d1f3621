"""The live re-run form: built from the parameters cell, re-runs the chapter with papermill, shows
the new claims; a stored chapter keeps only the form's Markdown note."""

from __future__ import annotations

import nbformat
import pytest

from fairens_core.book import WIDGET_VIEW, run_chapter
from fairens_core.claims import MIME_TYPE
from fairens_core.rerun_form import RerunForm, note

CHAPTER = [
    "from fairens_core.claims import Claim, show_claims\n"
    "from IPython.display import Markdown, display\n"
    "if members < 2:\n    raise ValueError(f'members={members}: an ensemble needs at least 2')\n"
    "display(Markdown(f'We trained **{members}** members.'))\n"
    "show_claims([Claim('More members help', 'Fig. 1', f'{members} members', members > 3)])",
    "from fairens_core.rerun_form import RerunForm\nRerunForm('chapter.ipynb')",
]


@pytest.fixture
def chapter(tmp_path, make_notebook):
    return make_notebook(tmp_path / "chapter.ipynb", CHAPTER,
                         parameters="members = 3  # ensemble size\nnames = ['a', 'b']")


def test_the_form_lists_every_parameter_with_its_default(chapter):
    form = RerunForm(chapter)
    assert list(form.fields) == ["members", "names"]
    assert form.fields["members"].value == "3" and form.fields["names"].value == "['a', 'b']"
    assert form.fields["members"].tooltip == "ensemble size"
    assert form.changed() == {}
    form.fields["names"].value = "['c']"
    assert form.changed() == {"names": ["c"]}
    form.fields["members"].value = "five"
    with pytest.raises(ValueError, match="members='five' is not a Python literal"):
        form.changed()


@pytest.mark.slow
def test_a_rerun_shows_the_new_prose_and_claims(chapter):
    form = RerunForm(chapter)
    form.fields["members"].value = "5"
    out = form.rerun()
    assert out is not None and out.exists() and out.parent != chapter.parent
    shown = [o["data"] for o in form.results.outputs]
    assert any("We trained **5** members." in d.get("text/markdown", "") for d in shown)
    (claims,) = [d[MIME_TYPE] for d in shown if MIME_TYPE in d]
    assert claims[0]["measured"] == "5 members" and claims[0]["holds"] is True
    assert "Done" in form.status.value
    stored = nbformat.read(str(chapter), as_version=4)  # the chapter itself is not changed
    assert len(stored.cells) == 3 and stored.cells[0].source.startswith("members = 3")

    form.fields["members"].value = "1"  # the chapter's own validation stops it: said in the status line
    assert form.rerun() is None and "members=1: an ensemble needs at least 2" in form.status.value


@pytest.mark.slow
def test_a_stored_chapter_keeps_the_note_not_the_dead_widget(chapter, tmp_path):
    out = tmp_path / "stored.ipynb"
    assert run_chapter(chapter, {}, output=out) is None
    nb = nbformat.read(str(out), as_version=4)
    (output,) = nb.cells[-1].outputs
    assert WIDGET_VIEW not in output.data and output.data["text/markdown"] == note("chapter")
    assert output.data["text/plain"] == note("chapter")  # not a repr with an address that changes every run
    assert "widgets" not in nb.metadata
