"""Claims tables: the verdict that ends every chapter.

Each chapter reproduces a handful of statements from its paper and checks
them against what it measured. :func:`show_claims` displays them as a single
notebook output carrying three representations of the same rows:

* ``text/html``: a readable table for JupyterLab and the book
  (✓ holds, ✗ fails with the row shaded red, – not testable in this run);
* ``application/vnd.fairens.claims+json``: the rows as JSON, which
  :func:`read_claims` reads back from an executed notebook (tests, tools);
* ``text/plain``: a fallback for terminals and plain viewers.

All three are deterministic functions of the rows, so ``nbval`` can compare a
claims cell tagged ``nbval-check-output`` against the committed notebook.
Keep the ``measured`` strings deterministic too: rounded numbers, no
wall-clock timings or paths.

A verdict has three values: ``True`` (holds), ``False`` (fails) and ``None``
(not testable in this run, e.g. a quantity is undefined or the run lacks the
condition the claim compares; the note says why). Untestable rows are shown but
not counted. Rows marked ``addition`` are the book's own checks, not results of
the paper: they are shown, and kept out of the paper-fidelity count.

Pass rules are fixed before the result and test direction *and* size:
:func:`exceeds` asks whether a difference is larger than a margin of two
standard errors (over seeds where the claim compares conditions).

Example::

    show_claims([
        Claim("Bottom-k classes gain more than top-k classes",
              paper="Fig. 2: bottom-10 gain ≈ 1.3× at 20 members",
              measured=f"{gain_bottom:.2f}× vs {gain_top:.2f}×",
              holds=gain_bottom > gain_top),
    ])
"""

from __future__ import annotations

import html
import math
from dataclasses import asdict, dataclass
from os import PathLike
from typing import Iterable, Mapping, Optional, Union

MIME_TYPE = "application/vnd.fairens.claims+json"
KEYS = ("claim", "paper", "measured", "holds", "note", "addition")
UNTESTABLE = "not testable here"


@dataclass(frozen=True)
class Claim:
    """One statement from a paper and whether this chapter reproduced it.

    Attributes:
        claim: The statement in plain words.
        paper: Where the paper makes it and its value there,
            e.g. ``"Fig. 2: bottom-10 gain ≈ 1.3× at 20 members"``.
        measured: What this run measured, formatted for reading
            (rounded; no timings, so that outputs are reproducible).
        holds: Whether the measurement supports the claim; None when this run cannot
            test it (the note says why).
        note: Optional caveat (scale of the run, a deviation, ...).
        addition: The row is the book's own check, not a result of the paper.
    """

    claim: str
    paper: str
    measured: str
    holds: Optional[bool]
    note: str = ""
    addition: bool = False

    def __post_init__(self):
        # Coerce numpy bools and numbers so the JSON stays plain and stable.
        object.__setattr__(self, "holds", None if self.holds is None else bool(self.holds))
        object.__setattr__(self, "measured", str(self.measured))
        object.__setattr__(self, "note", "" if self.note is None else str(self.note))
        object.__setattr__(self, "addition", bool(self.addition))
        if self.holds is None and not self.note.startswith(UNTESTABLE):
            # every untestable row says so in the same words (and why, when the chapter knows)
            why = self.note or "this run cannot decide it (an undefined value, or too noisy at this scale)"
            object.__setattr__(self, "note", f"{UNTESTABLE}: {why}")

    def to_dict(self) -> dict:
        """The row as a plain dict with keys :data:`KEYS`."""
        return asdict(self)


ClaimLike = Union[Claim, Mapping]


def untestable(claim: str, paper: str, why: str, *, measured: str = "—", addition: bool = False) -> Claim:
    """A row this run cannot test, with the reason (e.g. "one ensemble size only")."""
    return Claim(claim, paper, measured, None, note=f"{UNTESTABLE}: {why}", addition=addition)


def claim_or_untestable(claim: str, paper: str, measured: str, holds: Optional[bool], note: str = "", *,
                        why: str = "an undefined quantity, or too few seeds", addition: bool = False) -> Claim:
    """A row with its verdict, or, when the verdict is None, an :func:`untestable` row that keeps
    ``measured`` and gives ``why`` as the reason (``note`` is then dropped)."""
    if holds is None:
        return untestable(claim, paper, why, measured=measured, addition=addition)
    return Claim(claim, paper, measured, holds, note, addition)


def finite(*values) -> bool:
    """Whether every value is a finite number (a claim on NaN or inf is not testable)."""
    try:
        return all(math.isfinite(float(v)) for v in values)
    except (TypeError, ValueError):
        return False


def exceeds(difference, se, margin: float = 2.0) -> Optional[bool]:
    """The pass rule for "A is larger than B": ``difference = A - B`` exceeds ``margin``
    standard errors of the difference. None (not testable) when either is not finite."""
    if not finite(difference, se):
        return None
    return float(difference) > margin * float(se)


def within(difference, tolerance, se=0.0, margin: float = 2.0) -> Optional[bool]:
    """The pass rule for "A matches B (to within `tolerance`)", an equivalence test: True when
    ``|A - B|`` plus ``margin`` standard errors stays inside the tolerance, False when ``|A - B|``
    minus the margin is still outside it, and None (not testable: too noisy to decide) when the
    band straddles the tolerance or a value is not finite. A noisy run cannot pass it by noise."""
    if not finite(difference, tolerance, se):
        return None
    gap, band = abs(float(difference)), margin * float(se)
    if gap + band <= float(tolerance):
        return True
    if gap - band > float(tolerance):
        return False
    return None


def not_worse(difference, tolerance, se, margin: float = 2.0) -> Optional[bool]:
    """The pass rule for "A is not worse than B by more than `tolerance`" (non-inferiority):
    True when ``difference = A - B`` minus ``margin`` standard errors stays at or above
    ``-tolerance``, False when the difference plus the margin is still below it, and None (not
    testable: too noisy to decide) when the band straddles it or a value is not finite. Like
    :func:`within`, a noisy run cannot pass it by noise."""
    if not finite(difference, tolerance, se):
        return None
    band = margin * float(se)
    if float(difference) - band >= -float(tolerance):
        return True
    if float(difference) + band < -float(tolerance):
        return False
    return None


def all_hold(verdicts: Iterable[Optional[bool]]) -> Optional[bool]:
    """Three-valued "and" of pass-rule verdicts: False when any fails, True when there is at least
    one and all hold, None (not testable) otherwise (none given, or some untestable and none failing)."""
    verdicts = list(verdicts)
    if any(v is False for v in verdicts):
        return False
    return True if verdicts and all(verdicts) else None


def plus_minus(value, se, scale: float = 1.0, digits: int = 2, signed: bool = True) -> str:
    """``scale · value`` and ``± scale · se`` for a measured string, both rounded to ``digits``
    ("+2.20 ± 1.16"; a difference carries its sign, a level with ``signed=False`` does not:
    "0.95 ± 0.02"); the ± part is left out where the SE is not finite and the text is "undefined"
    where the value is not."""
    if not finite(value):
        return "undefined"
    sign = "+" if signed else ""
    return f"{scale * float(value):{sign}.{digits}f}" + (f" ± {scale * float(se):.{digits}f}" if finite(se) else "")


def counts(rows: Iterable[ClaimLike]) -> dict:
    """How many rows hold, fail and cannot be tested, for the paper's rows and the book's additions.

    Rows are Claims or mappings with at least "holds" (and "addition"). Returns
    ``{"paper": {"holds", "fails", "untestable", "tested"}, "addition": {...}}``.
    """
    out = {kind: {"holds": 0, "fails": 0, "untestable": 0, "tested": 0} for kind in ("paper", "addition")}
    for r in rows:
        holds, addition = (r.holds, r.addition) if isinstance(r, Claim) else (r.get("holds"), r.get("addition"))
        tally = out["addition" if addition else "paper"]
        key = "untestable" if holds is None else ("holds" if holds else "fails")
        tally[key] += 1
        tally["tested"] += holds is not None
    return out


def caption(rows: Iterable[ClaimLike]) -> str:
    """"Claims: 3 of 4 of the paper's hold (1 not testable here); the book's own checks: 2 of 2"."""
    c = counts(rows)
    paper, extra = c["paper"], c["addition"]
    text = f"Claims: {paper['holds']} of {paper['tested']} hold"
    if paper["untestable"]:
        text += f" ({paper['untestable']} {UNTESTABLE})"
    if extra["tested"] or extra["untestable"]:
        text += f"; the book's own checks: {extra['holds']} of {extra['tested']} hold"
        if extra["untestable"]:
            text += f" ({extra['untestable']} {UNTESTABLE})"
    return text


def _as_claim(c: ClaimLike) -> Claim:
    return c if isinstance(c, Claim) else Claim(**{k: c[k] for k in KEYS if k in c})


def claims_bundle(claims: Iterable[ClaimLike]) -> dict:
    """The MIME bundle that :func:`show_claims` displays (useful in tests)."""
    rows = [_as_claim(c) for c in claims]
    return {
        MIME_TYPE: [r.to_dict() for r in rows],
        "text/html": _html(rows),
        "text/plain": _plain(rows),
    }


def show_claims(claims: Iterable[ClaimLike]) -> None:
    """Display the claims table as one output (HTML + JSON + plain text)."""
    from IPython.display import display

    global _last_shown
    _last_shown = [_as_claim(c) for c in claims]
    display(claims_bundle(_last_shown), raw=True)


_last_shown: list = []  # the rows of the latest show_claims call, for show_summary()
_MD_SPECIAL = "\\`*_{}[]<>#|$~"


def _md(text: str) -> str:
    """Escape Markdown (and MyST dollar-math) syntax in a claim's text."""
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in str(text))


def summary_text(rows: Iterable[ClaimLike]) -> str:
    """A short Markdown summary of claims rows: what holds, what does not and why.

    The verdict counts the paper's rows; the book's own checks and untestable rows are
    reported apart. Each failing or untestable claim is listed with what was measured and its
    note (the caveat that explains it, where the chapter gives one).
    """
    rows = [_as_claim(r) for r in rows]
    if not rows:
        return "**What holds and what does not.** This chapter checks no claims."
    paper = [r for r in rows if not r.addition]
    tested = [r for r in paper if r.holds is not None]
    held = [r for r in tested if r.holds]
    if not tested:
        verdict = "none of the paper's claims can be tested in this run." if paper else \
            "this chapter checks only the book's own additions."
    elif len(held) == len(tested):
        verdict = (f"all {len(tested)} of the paper's claims tested hold in this run." if len(tested) > 1
                   else "the paper's claim holds in this run.")
    elif not held:
        verdict = (f"none of the {len(tested)} claims of the paper tested here holds." if len(tested) > 1
                   else "the paper's claim does not hold in this run.")
    else:
        verdict = f"{len(held)} of {len(tested)} of the paper's claims hold in this run."
    said = "; ".join(_md(r.claim) for r in held)
    lines = [f"**What holds and what does not.** {verdict[0].upper()}{verdict[1:]}"
             + (f" Holds: {said}." if held else ""), ""]

    def listed(title, selected):
        if selected:
            lines.extend([title, ""])
            for r in selected:
                why = f" Note: {_md(r.note)}" if r.note else ""
                lines.append(f"- **{_md(r.claim)}**. Measured: {_md(r.measured)}; the paper: {_md(r.paper)}.{why}")
            lines.append("")

    listed("Does not hold:", [r for r in paper if r.holds is False])
    listed("Not testable in this run:", [r for r in paper if r.holds is None])
    extra = [r for r in rows if r.addition]
    if extra:
        ok = sum(r.holds is True for r in extra)
        n = sum(r.holds is not None for r in extra)
        tally = f"{ok} of {n} hold" if n else "none can be tested in this run"
        lines += [f"The book's own checks (not counted as the paper's results): {tally}; "
                  + "; ".join(f"{_md(r.claim)} ({_verdict_word(r.holds)})" for r in extra) + ".", ""]
    return "\n".join(lines).rstrip() + "\n"


def _verdict_word(holds: Optional[bool]) -> str:
    return UNTESTABLE if holds is None else ("holds" if holds else "fails")


def show_summary(rows: Optional[Iterable[ClaimLike]] = None):
    """:func:`summary_text` as a displayable Markdown object (rows default to the latest
    :func:`show_claims` call's), for a chapter's closing cell. Not called `summary`: chapters
    keep DataFrames of that name, which importing it would shadow for a reader re-running a cell."""
    from IPython.display import Markdown

    return Markdown(summary_text(_last_shown if rows is None else rows))


def read_claims(notebook_path: Union[str, PathLike]) -> list[dict]:
    """Read back every claims row displayed in an executed notebook, in order."""
    import nbformat

    nb = nbformat.read(str(notebook_path), as_version=4)
    rows = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if MIME_TYPE in data:
                rows.extend(_plain_dict(r) for r in data[MIME_TYPE])
    return rows


def _plain_dict(row: Mapping) -> dict:
    # nbformat hands back NotebookNodes; callers want ordinary dicts.
    out = {k: row.get(k, "") for k in KEYS}
    out["addition"] = bool(row.get("addition", False))
    return out


_STYLE_FAIL = "background:#fdecea;"
_STYLE_UNTESTABLE = "color:#5f6368;"
_STYLE_CELL = "text-align:left;vertical-align:top;padding:4px 8px;"


def _html(rows: list[Claim]) -> str:
    out = [
        '<table class="fairens-claims" style="border-collapse:collapse;margin-left:0;">',
        f'<caption style="caption-side:top;text-align:left;font-weight:bold;">'
        f"{html.escape(caption(rows))}</caption>",
        "<thead><tr>"
        + "".join(f'<th style="{_STYLE_CELL}">{h}</th>'
                  for h in ("Claim", "Paper", "Measured", "Holds", "Note"))
        + "</tr></thead>",
        "<tbody>",
    ]
    for r in rows:
        if r.holds is None:
            tr = f'<tr class="fairens-claim-untestable" style="{_STYLE_UNTESTABLE}">'
            mark = f'<span title="{UNTESTABLE}">– {UNTESTABLE}</span>'
        elif r.holds:
            tr, mark = '<tr class="fairens-claim-holds">', '<span title="holds" style="color:#1a7f37;">✓</span>'
        else:
            tr = f'<tr class="fairens-claim-fails" style="{_STYLE_FAIL}">'
            mark = '<strong title="does not hold" style="color:#b3261e;">✗ fails</strong>'
        claim = html.escape(r.claim) + (' <em>(the book\'s own check)</em>' if r.addition else "")
        cells = [claim, html.escape(r.paper), html.escape(r.measured), mark, html.escape(r.note)]
        out.append(tr + "".join(f'<td style="{_STYLE_CELL}">{c}</td>' for c in cells) + "</tr>")
    out += ["</tbody>", "</table>"]
    return "\n".join(out)


def _plain(rows: list[Claim]) -> str:
    lines = [caption(rows)]
    for r in rows:
        mark = "–" if r.holds is None else ("✓" if r.holds else "✗ FAILS")
        lines.append(f"{mark}  {r.claim}" + ("  (the book's own check)" if r.addition else ""))
        lines.append(f"    paper:    {r.paper}")
        lines.append(f"    measured: {r.measured}")
        if r.note:
            lines.append(f"    note:     {r.note}")
    return "\n".join(lines)


def compare_claims(default: Iterable[Mapping], full: Iterable[Mapping]) -> list[dict]:
    """Claims of one chapter at two profiles, matched by their statement (in `default`'s order).

    Returns one dict per claim: claim, paper (what the paper reports), addition, and for each
    profile p in (default, full): p_measured, p_holds (True / False / None) and p_verdict
    ("holds", "fails", "not testable here", or "" where that profile has no such row); and
    changed (the verdicts differ, or the claim is missing from one side).
    """
    def side(prefix, r):
        if r is None:
            return {f"{prefix}_measured": "", f"{prefix}_holds": None, f"{prefix}_verdict": ""}
        holds = None if r.get("holds") is None else bool(r["holds"])
        return {f"{prefix}_measured": r["measured"], f"{prefix}_holds": holds,
                f"{prefix}_verdict": _verdict_word(holds)}

    full_by_claim = {r["claim"]: r for r in full}
    rows = []
    for r in default:
        f = full_by_claim.pop(r["claim"], None)
        row = {"claim": r["claim"], "paper": r.get("paper", ""), "addition": bool(r.get("addition", False)),
               **side("default", r), **side("full", f)}
        rows.append(row)
    rows += [{"claim": c, "paper": f.get("paper", ""), "addition": bool(f.get("addition", False)),
              **side("default", None), **side("full", f)} for c, f in full_by_claim.items()]
    for row in rows:
        row["changed"] = not row["default_verdict"] or not row["full_verdict"] or \
            row["default_verdict"] != row["full_verdict"]
    return rows
