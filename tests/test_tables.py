"""Reader-facing tables (fairens_core.tables) and the claims summary (fairens_core.claims.summary)."""

from __future__ import annotations

import pandas as pd

from fairens_core.claims import Claim, show_claims, show_summary, summary_text
from fairens_core.tables import MISSING, describe_vary, label, show


def test_labels_units_and_missing_values():
    frame = pd.DataFrame({"final_gain": [1.023456, float("nan")],
                          "size_to_95pct": pd.array([3, None], dtype="Int64")},
                         index=pd.Index(["top-k", "bottom-k"], name="group"))
    table = show(frame, digits=4)
    assert table.header == ["group", label("final_gain"), label("size_to_95pct")]
    assert table.rows == [["top-k", "1.0235", "3"], ["bottom-k", MISSING, MISSING]]
    assert "<NA>" not in table._repr_html_() and "nan" not in repr(table)
    assert "final_gain" not in table._repr_html_()


def test_range_index_is_dropped_and_output_is_deterministic():
    frame = pd.DataFrame({"a_b": [0.5, 2.0], "name": ["x", "y"]})
    first, second = show(frame), show(frame.copy())
    assert first.header == ["a b", "name"]
    assert first._repr_html_() == second._repr_html_() and repr(first) == repr(second)
    assert "0x" not in repr(first)


def test_overrides_scale_and_series():
    table = show(pd.Series([0.1234, 0.5], index=pd.Index([1, 2], name="size"), name="gain"),
                 digits=1, scale=100, columns={"gain": "gain (%)"})
    assert table.header == ["ensemble size", "gain (%)"]
    assert table.rows == [["1", "12.3"], ["2", "50.0"]]


def test_describe_vary():
    assert describe_vary("all") == "every random seed"
    assert describe_vary("init+batch_order") == "initial weights and batch order"
    assert describe_vary(("init", "batch_order")) == "init and batch order"


ROWS = [Claim("Gain grows", "Fig. 2", "1.3×", True),
        Claim("Top_k *plateaus*", "Fig. 2: within 5", "size 9", False, note="only 10 classes"),
        Claim("Costs $5", "Tab. 1", "4", False)]


def test_summary_counts_and_explains_failures():
    text = summary_text(ROWS)
    assert text.startswith("**What holds and what does not.** 1 of 3 of the paper's claims hold in this run. "
                           "Holds: Gain grows.")
    assert "Top\\_k \\*plateaus\\*" in text  # Markdown is escaped
    assert "Note: only 10 classes" in text and "Measured: size 9" in text
    assert "\\$5" in text  # no stray dollar math
    assert "all 1 " not in summary_text(ROWS[:1]) and "The paper's claim holds" in summary_text(ROWS[:1])
    assert "None of the 2 claims of the paper tested here holds" in summary_text(ROWS[1:])


def test_summary_defaults_to_the_latest_table():
    show_claims(ROWS)
    assert show_summary().data == summary_text(ROWS)


def test_dataset_label_names_a_csv_by_its_file():
    from fairens_core.config import TrainConfig
    from fairens_core.tables import dataset_label

    assert dataset_label(TrainConfig(dataset="digits")) == "digits"
    assert dataset_label(TrainConfig(dataset="csv", dataset_options={"path": "/data/uci/iris.csv"})) == "csv:iris.csv"
