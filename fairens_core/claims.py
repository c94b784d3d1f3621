"""Claims tables: the verdict that ends every chapter.

Each chapter reproduces a handful of statements from its paper and checks
them against what it measured. :func:`show_claims` displays them as a single
notebook output carrying three representations of the same rows:

* ``text/html``: a readable table for JupyterLab and the book
  (holds as ✓ / ✗, failing rows shaded red);
* ``application/vnd.fairens.claims+json``: the rows as JSON, which
  :func:`read_claims` reads back from an executed notebook (tests, tools);
* ``text/plain``: a fallback for terminals and plain viewers.

All three are deterministic functions of the rows, so ``nbval`` can compare a
claims cell tagged ``nbval-check-output`` against the committed notebook.
Keep the ``measured`` strings deterministic too: rounded numbers, no
wall-clock timings or paths.

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
from dataclasses import asdict, dataclass
from os import PathLike
from typing import Iterable, Mapping, Optional, Union

MIME_TYPE = "application/vnd.fairens.claims+json"
KEYS = ("claim", "paper", "measured", "holds", "note")


@dataclass(frozen=True)
class Claim:
    """One statement from a paper and whether this chapter reproduced it.

    Attributes:
        claim: The statement in plain words.
        paper: Where the paper makes it and its value there,
            e.g. ``"Fig. 2: bottom-10 gain ≈ 1.3× at 20 members"``.
        measured: What this run measured, formatted for reading
            (rounded; no timings, so that outputs are reproducible).
        holds: Whether the measurement supports the claim.
        note: Optional caveat (scale of the run, a deviation, ...).
    """

    claim: str
    paper: str
    measured: str
    holds: bool
    note: str = ""

    def __post_init__(self):
        # Coerce numpy bools and numbers so the JSON stays plain and stable.
        object.__setattr__(self, "holds", bool(self.holds))
        object.__setattr__(self, "measured", str(self.measured))
        object.__setattr__(self, "note", "" if self.note is None else str(self.note))

    def to_dict(self) -> dict:
        """The row as a plain dict with keys :data:`KEYS`."""
        return asdict(self)


ClaimLike = Union[Claim, Mapping]


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


_last_shown: list = []  # the rows of the latest show_claims call, for summary()
_MD_SPECIAL = "\\`*_{}[]<>#|$~"


def _md(text: str) -> str:
    """Escape Markdown (and MyST dollar-math) syntax in a claim's text."""
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in str(text))


def summary_text(rows: Iterable[ClaimLike]) -> str:
    """A short Markdown summary of claims rows: how many hold, which do not, and why.

    Each failing claim is listed with what was measured and its note (the caveat that
    explains it, where the chapter gives one); the claims that hold are listed briefly.
    """
    rows = [_as_claim(r) for r in rows]
    held = [r for r in rows if r.holds]
    failed = [r for r in rows if not r.holds]
    if not rows:
        return "**What holds and what does not.** This chapter checks no claims."
    if not failed:
        verdict = f"all {len(rows)} claims hold in this run." if len(rows) > 1 else "the claim holds in this run."
    elif not held:
        verdict = f"none of the {len(rows)} claims holds in this run." if len(rows) > 1 else \
            "the claim does not hold in this run."
    else:
        verdict = f"{len(held)} of {len(rows)} claims hold in this run."
    said = "; ".join(_md(r.claim) for r in held)
    lines = [f"**What holds and what does not.** {verdict[0].upper()}{verdict[1:]}"
             + (f" Holds: {said}." if held else ""), ""]
    if failed:
        lines += ["Does not hold:", ""]
        for r in failed:
            why = f" Note: {_md(r.note)}" if r.note else ""
            lines.append(f"- **{_md(r.claim)}**. Measured: {_md(r.measured)}; the paper: {_md(r.paper)}.{why}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def summary(rows: Optional[Iterable[ClaimLike]] = None):
    """:func:`summary_text` as a displayable Markdown object (rows default to the latest
    :func:`show_claims` call's), for a chapter's closing cell."""
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
    return {k: row.get(k, "") for k in KEYS}


_STYLE_FAIL = "background:#fdecea;"
_STYLE_CELL = "text-align:left;vertical-align:top;padding:4px 8px;"


def _html(rows: list[Claim]) -> str:
    n_ok = sum(r.holds for r in rows)
    out = [
        '<table class="fairens-claims" style="border-collapse:collapse;margin-left:0;">',
        f'<caption style="caption-side:top;text-align:left;font-weight:bold;">'
        f"Claims: {n_ok} of {len(rows)} hold</caption>",
        "<thead><tr>"
        + "".join(f'<th style="{_STYLE_CELL}">{h}</th>'
                  for h in ("Claim", "Paper", "Measured", "Holds", "Note"))
        + "</tr></thead>",
        "<tbody>",
    ]
    for r in rows:
        if r.holds:
            tr, mark = '<tr class="fairens-claim-holds">', '<span title="holds" style="color:#1a7f37;">✓</span>'
        else:
            tr = f'<tr class="fairens-claim-fails" style="{_STYLE_FAIL}">'
            mark = '<strong title="does not hold" style="color:#b3261e;">✗ fails</strong>'
        cells = [html.escape(r.claim), html.escape(r.paper), html.escape(r.measured), mark,
                 html.escape(r.note)]
        out.append(tr + "".join(f'<td style="{_STYLE_CELL}">{c}</td>' for c in cells) + "</tr>")
    out += ["</tbody>", "</table>"]
    return "\n".join(out)


def _plain(rows: list[Claim]) -> str:
    n_ok = sum(r.holds for r in rows)
    lines = [f"Claims: {n_ok} of {len(rows)} hold"]
    for r in rows:
        lines.append(f"{'✓' if r.holds else '✗ FAILS'}  {r.claim}")
        lines.append(f"    paper:    {r.paper}")
        lines.append(f"    measured: {r.measured}")
        if r.note:
            lines.append(f"    note:     {r.note}")
    return "\n".join(lines)


def compare_claims(default: Iterable[Mapping], full: Iterable[Mapping]) -> list[dict]:
    """Claims of one chapter at two profiles, matched by their statement (in `default`'s order).

    Returns one dict per claim: claim, paper (what the paper reports), default_measured,
    default_holds, full_measured, full_holds (None: no run at that profile) and changed (the
    verdict differs, or the claim is missing from one side).
    """
    full_by_claim = {r["claim"]: r for r in full}
    rows = []
    for r in default:
        f = full_by_claim.pop(r["claim"], None)
        rows.append({"claim": r["claim"], "paper": r.get("paper", ""), "default_measured": r["measured"],
                     "default_holds": bool(r["holds"]), "full_measured": f["measured"] if f else "",
                     "full_holds": bool(f["holds"]) if f else None,
                     "changed": f is None or bool(f["holds"]) != bool(r["holds"])})
    rows += [{"claim": c, "paper": f.get("paper", ""), "default_measured": "", "default_holds": None,
              "full_measured": f["measured"], "full_holds": bool(f["holds"]), "changed": True}
             for c, f in full_by_claim.items()]
    return rows
