"""Claims tables: MIME bundle, JSON round trip through a notebook, nbval comparison; every failing claim of
the committed chapters comes with its note."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import numpy as np
import pytest

from fairens_core.claims import (KEYS, MIME_TYPE, UNTESTABLE, Claim, all_hold, claim_or_untestable, claims_bundle,
                                 plus_minus, read_claims)

ROWS = [
    Claim("Bottom-k classes gain more than top-k", "Fig. 2: bottom-10 gain ≈ 1.3× at 20 members",
          "1.21× vs 1.02×", True),
    Claim("Gain keeps growing past 10 members", "Sec. 3: still rising at 20 members",
          "flat after 8 members", np.bool_(False), note="only 10 members in the default profile"),
    Claim("Escaping <b>html</b> & friends", "Tab. 1", "0.50", True),
]


def test_bundle_has_html_json_and_plain():
    bundle = claims_bundle(ROWS)
    assert set(bundle) == {MIME_TYPE, "text/html", "text/plain"}
    rows = bundle[MIME_TYPE]
    assert [set(r) for r in rows] == [set(KEYS)] * 3
    assert [r["holds"] for r in rows] == [True, False, True]
    assert all(type(r["holds"]) is bool for r in rows)  # numpy bools coerced
    json.dumps(rows)  # plain JSON


def test_html_marks_failing_rows():
    html = claims_bundle(ROWS)["text/html"]
    assert html.count("<tr class=") == 3
    assert html.count('class="fairens-claim-fails"') == 1
    assert "✓" in html and "✗" in html
    assert "2 of 3 hold" in html
    assert "&lt;b&gt;html&lt;/b&gt; &amp; friends" in html
    assert "only 10 members" in html


def test_plain_text_fallback():
    text = claims_bundle(ROWS)["text/plain"]
    assert text.splitlines()[0] == "Claims: 2 of 3 hold"
    assert "✗ FAILS  Gain keeps growing past 10 members" in text


def test_dict_rows_and_missing_note():
    row = {"claim": "c", "paper": "p", "measured": 0.5, "holds": 1}
    (out,) = claims_bundle([row])[MIME_TYPE]
    assert out == {"claim": "c", "paper": "p", "measured": "0.5", "holds": True, "note": "", "addition": False}


CLAIMS_CELL = """# NBVAL_CHECK_OUTPUT
from fairens_core.claims import Claim, show_claims
show_claims([
    Claim("first", "Fig. 1: 1.3×", f"{1.2345:.2f}×", True),
    Claim("second", "Tab. 2: 95%", "91%", False, note="small run"),
])"""


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    """A notebook ending with a claims table, executed once by papermill."""
    import papermill as pm

    tmp = tmp_path_factory.mktemp("claims")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
        # Outputs that differ on every run and must be masked by the sanitize file.
        nbformat.v4.new_code_cell(
            "# NBVAL_CHECK_OUTPUT\nimport os, time\n"
            "print(f'trained in {time.time() % 7:.2f}s at {object()!r}')\n"
            "print('records in', os.path.join(os.getcwd(), 'cache', str(os.getpid())))"),
        nbformat.v4.new_code_cell(CLAIMS_CELL),
    ]
    src = tmp / "src.ipynb"
    nbformat.write(nb, str(src))
    out = tmp / "chapter.ipynb"
    pm.execute_notebook(str(src), str(out), kernel_name="python3", cwd=str(tmp), progress_bar=False)
    return out


def test_read_claims_round_trip(executed):
    assert read_claims(executed) == [
        {"claim": "first", "paper": "Fig. 1: 1.3×", "measured": "1.23×", "holds": True, "note": "",
         "addition": False},
        {"claim": "second", "paper": "Tab. 2: 95%", "measured": "91%", "holds": False, "note": "small run",
         "addition": False},
    ]
    cell = nbformat.read(str(executed), as_version=4).cells[-1]
    assert len(cell.outputs) == 1  # one output, no stray execute_result
    assert set(cell.outputs[0].data) == {MIME_TYPE, "text/html", "text/plain"}


def _nbval(notebook, repo_root):
    ini = notebook.parent / "pytest.ini"
    ini.write_text("[pytest]\n")  # keep the repository's addopts out of the inner run
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c", str(ini),
           "--nbval-lax", "--nbval-current-env",
           "--nbval-sanitize-with", str(repo_root / "tests" / "nbval_sanitize.cfg"), str(notebook)]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=notebook.parent, timeout=300)


@pytest.mark.slow
def test_nbval_accepts_rerun_and_catches_changed_claims(executed, repo_root):
    """Re-executing gives the same checked outputs; a changed claim is caught."""
    ok = _nbval(executed, repo_root)
    assert ok.returncode == 0, ok.stdout + ok.stderr

    nb = nbformat.read(str(executed), as_version=4)
    out = nb.cells[-1].outputs[0]
    out.data[MIME_TYPE][0]["measured"] = "1.24×"  # only the JSON: it is compared too
    tampered = executed.parent / "tampered.ipynb"
    nbformat.write(nb, str(tampered))
    bad = _nbval(tampered, repo_root)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "Cell outputs differ" in bad.stdout


def test_compare_claims_matches_by_statement_and_flags_changed_verdicts():
    from fairens_core.claims import compare_claims

    default = [dict(claim="a", measured="1", holds=True), dict(claim="b", measured="2", holds=False),
               dict(claim="gone", measured="3", holds=True), dict(claim="nan", measured="—", holds=None)]
    full = [dict(claim="b", measured="20", holds=True), dict(claim="a", measured="10", holds=True),
            dict(claim="new", measured="4", holds=False), dict(claim="nan", measured="1", holds=True)]
    rows = compare_claims(default, full)
    assert [r["claim"] for r in rows] == ["a", "b", "gone", "nan", "new"]
    assert [r["changed"] for r in rows] == [False, True, True, True, True]
    assert rows[1]["full_measured"] == "20" and rows[2]["full_verdict"] == "" and rows[4]["default_verdict"] == ""
    assert rows[3]["default_verdict"] == "not testable here" and rows[3]["default_holds"] is None


def test_pass_rules_need_size_and_say_when_untestable():
    from fairens_core.claims import exceeds, not_worse, within

    assert exceeds(0.5, 0.1) is True          # 5 standard errors
    assert exceeds(0.15, 0.1) is False        # right direction, inside the 2-SE margin
    assert exceeds(-0.5, 0.1) is False
    assert exceeds(float("nan"), 0.1) is None and exceeds(1.0, float("inf")) is None
    assert within(0.05, tolerance=0.25, se=0.1) is True     # inside, with its 2-SE band
    assert within(0.5, 0.25, 0.1) is False                   # outside, with its band
    assert within(0.3, 0.25, 0.1) is None                    # the band straddles the tolerance
    assert within(0.112, 0.01, 0.052) is None                # a noisy run cannot pass by noise
    assert within(float("nan"), 0.1) is None
    assert not_worse(-0.2, tolerance=1.0, se=0.3) is True    # -0.2 - 0.6 stays above -1
    assert not_worse(-2.0, 1.0, 0.3) is False                 # -2.0 + 0.6 is still below -1
    assert not_worse(-0.5, 1.0, 0.5) is None                  # the band straddles -1
    assert not_worse(0.0, 1.0, 5.0) is None                   # a noisy run cannot pass by noise
    assert not_worse(0.0, 1.0, float("nan")) is None
    assert Claim("c", "p", "m", None, note="one seed").note == "not testable here: one seed"
    assert Claim("c", "p", "m", None).note.startswith("not testable here: this run cannot decide it")


def test_untestable_rows_and_additions_are_not_counted_as_the_papers():
    from fairens_core.claims import caption, counts, summary_text, untestable

    rows = [Claim("a", "Fig. 1", "1", True), Claim("b", "Fig. 2", "2", False),
            untestable("c", "Fig. 3", "one ensemble size only"),
            Claim("d", "—", "4", True, addition=True), Claim("e", "—", "5", False, addition=True)]
    c = counts(rows)
    assert c["paper"] == {"holds": 1, "fails": 1, "untestable": 1, "tested": 2}
    assert c["addition"] == {"holds": 1, "fails": 1, "untestable": 0, "tested": 2}
    assert caption(rows) == "Claims: 1 of 2 hold (1 not testable here); the book's own checks: 1 of 2 hold"
    bundle = claims_bundle(rows)
    assert bundle[MIME_TYPE][2]["holds"] is None and bundle[MIME_TYPE][3]["addition"] is True
    assert 'class="fairens-claim-untestable"' in bundle["text/html"]
    assert bundle["text/html"].count("<em>(the book's own check)</em>") == 2
    assert "–  c" in bundle["text/plain"]
    text = summary_text(rows)
    assert "1 of 2 of the paper's claims hold" in text
    assert "Not testable in this run:" in text and "one ensemble size only" in text
    assert "The book's own checks (not counted as the paper's results): 1 of 2 hold" in text


def test_all_hold_is_a_three_valued_and():
    assert all_hold([True, True]) is True
    assert all_hold([True, False, None]) is False  # one failure decides
    assert all_hold([True, None]) is None  # nothing failed, something untestable
    assert all_hold([]) is None
    assert all_hold(v for v in (np.bool_(True), True)) is True  # any iterable, numpy bools


def test_plus_minus_formats_value_and_se():
    assert plus_minus(0.022, 0.0116, scale=100) == "+2.20 ± 1.16"
    assert plus_minus(-0.4437, 0.1249) == "-0.44 ± 0.12"
    assert plus_minus(0.5, float("nan"), digits=1) == "+0.5"  # no SE: the ± part is left out
    assert plus_minus(0.9512, 0.0213, signed=False) == "0.95 ± 0.02"  # a level, not a difference
    assert plus_minus(-0.4437, 0.1249, signed=False) == "-0.44 ± 0.12"
    assert plus_minus(float("nan"), 0.1, signed=False) == "undefined"
    assert plus_minus(float("nan"), 0.1) == "undefined"


def test_claim_or_untestable_keeps_measured_and_gives_the_reason():
    row = claim_or_untestable("A gains more", "Fig. 1", "+1.0 ± 0.2", True, "a caveat", addition=True)
    assert (row.holds, row.note, row.addition, row.measured) == (True, "a caveat", True, "+1.0 ± 0.2")
    row = claim_or_untestable("A gains more", "Fig. 1", "+1.0", None, "a caveat", why="two repeats")
    assert row.holds is None and row.measured == "+1.0" and row.note == f"{UNTESTABLE}: two repeats"


BOOK = Path(__file__).resolve().parents[1] / "book"
COMMITTED = sorted(p for p in BOOK.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts and p.stem != "overview")


@pytest.mark.parametrize("path", COMMITTED, ids=lambda p: p.relative_to(BOOK).as_posix())
def test_every_failing_claim_of_a_committed_chapter_says_why(path):
    # the chapter's closing summary lists each failing row with its note: without one, "what does not hold"
    # would come without its "why" (what the verdict rests on, or how this run differs from the paper's)
    silent = [r["claim"] for r in read_claims(path) if r["holds"] is False and not r["addition"] and not r["note"]]
    assert not silent, f"failing claims without a note: {silent}"
