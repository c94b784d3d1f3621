"""Chapters re-run as a researcher would: another dataset, model, size, grid or a CSV table of one's own.

Each re-run must give a correct page about *that* run: it finishes, ends with a claims table, its
generated text names the data it ran on and not the default's, no claim is decided on an undefined
number (those rows say "not testable here"), and no warning or NaN leaks into the page.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from sklearn.datasets import load_iris

from fairens_core.claims import read_claims

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
UNDEFINED = re.compile(r"(?<![\w.])[+-]?(nan|inf)(?![\w])\s*%?", re.IGNORECASE)


@pytest.fixture(scope="module")
def iris_csv(tmp_path_factory) -> Path:
    """A classification table of one's own, as a user would bring it."""
    iris = load_iris(as_frame=True)
    table = iris.frame.rename(columns={"target": "species"})
    path = tmp_path_factory.mktemp("data") / "iris.csv"
    table.to_csv(path, index=False)
    return path


def page_text(notebook: Path) -> tuple[str, str]:
    """(generated text of the page: Markdown, HTML tables and plain outputs; stream output)."""
    nb = nbformat.read(str(notebook), as_version=4)
    shown, streams = [], []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                streams.append(out.get("text", ""))
            data = out.get("data", {})
            for mime in ("text/markdown", "text/html", "text/plain"):
                if mime in data:
                    shown.append(data[mime] if isinstance(data[mime], str) else "".join(data[mime]))
                    break
    return "\n".join(shown), "\n".join(streams)


RERUNS = {
    "bottom_k on digits with MLPs": ("part1_fair_ensemble/bottom_k", dict(profile="smoke", dataset="digits",
                                                                         model="mlp"), "digits", "mnist1d"),
    # the learning-rate sweep switched off; the batch-size sweep over the smoke profile's two seeds
    "minority_groups with one ablation and one sweep": ("part1_fair_ensemble/minority_groups",
                                                        dict(profile="smoke", ablations=["init"], lr_factors=[],
                                                             batch_sizes=[512, 64]), None, None),
    "randomness with 2 members": ("part1_fair_ensemble/randomness", dict(profile="smoke", members=2), None, None),
    "independent_vs_joint with equal sizes": ("part2_collusion/independent_vs_joint",
                                              dict(profile="smoke", members=3, large_members=3), None, None),
    "generalization on a classification CSV": ("part2_collusion/generalization", {}, "iris", "diabetes"),
    "bottom_k on a classification CSV": ("part1_fair_ensemble/bottom_k", dict(K=1), "iris", "mnist1d"),
    "hardness on a classification CSV": ("part4_landscape/hardness", {}, "iris", "mnist1d"),
    "churn with one pool": ("part1_fair_ensemble/churn", dict(profile="smoke", pools=[["cnn1d", 0.5, None]]),
                            None, None),
    "bottom_k with one pool": ("part1_fair_ensemble/bottom_k", dict(profile="smoke", repeats=1), None, None),
    # fewer seeds than the 2-SE rules need: the page says so instead of printing "± nan"
    "coupling with one seed": ("part3_coupling/coupling", dict(profile="smoke", seeds=1), None, None),
    "forgetting with one seed": ("part3_coupling/forgetting", dict(profile="smoke", seeds=1), None, None),
    "reinit with two seeds": ("part3_coupling/reinit", dict(profile="smoke", repeats=2), None, None),
    # every seed (parent) but the first at t = 0 and the largest t only: the trends in t are not judged
    "coupling with the other seeds at the ends": ("part3_coupling/coupling",
                                                  dict(profile="smoke", seeds=3, seed_steps="ends"), None, None),
    "function_space with the other parents at the ends": ("part3_coupling/function_space",
                                                          dict(profile="smoke", parent_steps="ends"), None, None),
    # members that never get a bottom-k signal right: relative gains undefined, said in words
    "corruption on a smaller mnist1d": ("part1_fair_ensemble/corruption",
                                        dict(profile="smoke", dataset_options={"n_samples": 1000}, n_eval=100),
                                        None, None),
    # one pool: no standard error over training seeds, so the 2-SE rules are not judged
    "corruption with one pool": ("part1_fair_ensemble/corruption", dict(profile="smoke", repeats=1), None, None),
    "flops on digits with MLPs": ("part5_efficiency/flops", dict(profile="smoke", dataset="digits", model="mlp"),
                                  "digits", "mnist1d"),
}

# Rows a re-run must leave undecided: a claim comparing conditions needs three seeds (or pools),
# and these runs have fewer.
UNDECIDED = {"minority_groups with one ablation and one sweep": ["With a smaller batch, batch order diversifies"],
             "corruption with one pool": ["At every severity the bottom-k classes gain more",
                                          "The bottom-k gain grows with severity"]}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RERUNS))
def test_a_rerun_gives_a_page_about_that_run(name, tmp_path, execute, iris_csv):
    chapter, parameters, named, not_named = RERUNS[name]
    if named == "iris":  # the user's own table, with the chapter's extra settings
        parameters = dict(profile="smoke", dataset="csv", model="mlp", **parameters,
                          dataset_options={"path": str(iris_csv), "target": "species", "task": "classification"})
    source = BOOK / f"{chapter}.ipynb"
    out = execute(source, tmp_path / source.name, **parameters)
    rows = read_claims(out)
    assert rows, "no claims table"
    text, streams = page_text(out)
    assert "Warning" not in streams, streams[-2000:]
    if named:
        assert named in text + streams, f"the page never names the data it ran on ({named})"
    if not_named:
        assert not_named not in text + streams, f"the page's generated text describes the default's data ({not_named})"
    for claim in UNDECIDED.get(name, ()):
        verdicts = [r["holds"] for r in rows if claim in r["claim"]]
        assert verdicts == [None], f"{claim!r}: {verdicts} (expected one row, not testable)"
    measured = " ".join(r["measured"] for r in rows if r["holds"] is not None)
    assert not UNDEFINED.search(measured), f"a claim decided on an undefined number: {measured}"
    assert not UNDEFINED.search(text), UNDEFINED.search(text)
