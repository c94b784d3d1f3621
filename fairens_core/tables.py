"""Tables for readers: what a chapter shows instead of a raw DataFrame.

A DataFrame's own display shows the code's column names (``final_gain``), a numbered index
and ``<NA>``. :func:`show` returns a :class:`Table` that displays the same numbers with
labelled columns, a fixed number of digits, no numbered index and a dash for missing
values. Its HTML and plain text are deterministic functions of the frame, so ``nbval`` can
compare a table cell against the committed notebook.

Example::

    show(reach, digits=4, columns={"size_to_95pct": "size reaching 95% of the final gain"})

:func:`describe_vary` words a config's ``vary`` preset ("all", "init+batch_order") for a
printed line.
"""

from __future__ import annotations

import html
import math
import numbers
from typing import Mapping, Optional, Union

# Column and index names used by the analysis functions, as a reader should see them.
# A name not listed here is shown with its underscores replaced by spaces.
LABELS = {
    "final_gain": "final gain",
    "gain": "gain (ensemble / single)",
    "gain_std": "gain s.d.",
    "gain_se": "gain s.e.",
    "size_to_95pct": "size reaching 95% of the final gain",
    "single": "single member",
    "ensemble": "ensemble",
    "churn": "churn (%)",
    "churn_one_right": "churn with one of the pair right (%)",
    "wrong_vs_wrong": "disagreements where both are wrong (%)",
    "relative_improvement": "relative improvement (%)",
    "fixed": "errors fixed (%)",
    "minority_fixed": "minority errors fixed (%)",
    "majority_fixed": "majority errors fixed (%)",
    "fixed_gap": "errors fixed, majority − minority (points)",
    "fixed_gap_se": "errors fixed, gap s.e.",
    "improvement": "improvement",
    "l1_distance": "L1 distance (points)",
    "final_l1_distance": "L1 distance, last epoch (points)",
    "variance": "variance (points²)",
    "gap_change": "gap change",
    "gap_ensemble": "gap of the full ensemble",
    "gap_single": "gap of a single member",
    "bottom_gain": "bottom-k gain",
    "top_gain": "top-k gain",
    "bottom_fixed": "bottom-k errors fixed (%)",
    "top_fixed": "top-k errors fixed (%)",
    "member_mean": "average member",
    "member_std": "member s.d.",
    "events_std": "events s.d.",
    "accuracy_std": "accuracy s.d.",
    "lr": "learning rate",
    "spawn_step": "spawn step",
    "n": "n",
    "r": "Pearson r",
    "p": "p-value",
    "size": "ensemble size",
    "model": "model",
    "group": "group",
    "source": "members differ in",
    "ablation": "members differ in",
    "beta": "β",
    "acc": "accuracy",
    "test_acc": "test accuracy",
    "train_acc": "train accuracy",
    "members": "members",
    "flops": "FLOPs",
    "width": "width",
}

# The `vary` presets of a TrainConfig (fairens_core.randomness.VARY_PRESETS), in words.
VARY_WORDS = {
    "none": "nothing (identical seeds)",
    "init": "initial weights only",
    "batch_order": "batch order only",
    "augmentation": "augmentation only",
    "init+batch_order": "initial weights and batch order",
    "all": "every random seed",
}

MISSING = "–"


def label(name) -> str:
    """The reader's name of a column or index level: :data:`LABELS`, else underscores → spaces."""
    if isinstance(name, tuple):
        return ", ".join(label(n) for n in name if n not in (None, ""))
    if name is None:
        return ""
    text = str(name)
    if text in LABELS:
        return LABELS[text]
    head, _, rest = text.partition(" ")
    if rest and head in LABELS:  # "single all" → "single member, all"
        return f"{LABELS[head]}, {rest}"
    return text.replace("_", " ")


def describe_vary(vary) -> str:
    """``"all"`` → ``"every random seed (...)"``; a tuple of sources → their names joined by "and"."""
    if isinstance(vary, str):
        return VARY_WORDS.get(vary, vary.replace("_", " ").replace("+", " and "))
    parts = [str(v).replace("_", " ") for v in vary]
    return " and ".join(parts) if parts else VARY_WORDS["none"]


def dataset_label(config) -> str:
    """The data a run used, as a reader knows it: a CSV table by its file (``csv:iris.csv``, the
    name its records carry), else the dataset's name."""
    options = dict(getattr(config, "dataset_options", None) or {})
    if config.dataset == "csv" and options.get("path"):
        return f"csv:{str(options['path']).replace(chr(92), '/').rsplit('/', 1)[-1]}"
    return config.dataset


def _is_missing(value) -> bool:
    if value is None:
        return True
    try:
        import pandas as pd

        if value is pd.NA or value is pd.NaT:
            return True
    except ImportError:  # pragma: no cover - pandas is a dependency
        pass
    return isinstance(value, float) and math.isnan(value)


def _format(value, digits: int) -> str:
    if _is_missing(value):
        return MISSING
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        value = float(value)
        if value.is_integer() and abs(value) < 1e15 and digits == 0:
            return str(int(value))
        if abs(value) >= 1e6:  # FLOPs, parameter counts: 3.52e+09
            return f"{value:.{max(digits, 2)}e}"
        return f"{value:,.{digits}f}".replace(",", " ") if abs(value) >= 1e4 else f"{value:.{digits}f}"
    return str(value)


class Table:
    """A formatted table: rows of strings with a header, shown as HTML and as plain text."""

    def __init__(self, header: list[str], rows: list[list[str]], caption: str = "",
                 numeric: Optional[list[bool]] = None):
        self.header, self.rows, self.caption = header, rows, caption
        self.numeric = numeric or [False] * len(header)

    def _repr_html_(self) -> str:
        align = ["right" if n else "left" for n in self.numeric]
        out = ['<table class="fairens-table dataframe" style="border-collapse:collapse;margin-left:0;">']
        if self.caption:
            out.append('<caption style="caption-side:top;text-align:left;">'
                       f"{html.escape(self.caption)}</caption>")
        out.append("<thead><tr>" + "".join(
            f'<th style="text-align:{a};padding:3px 8px;">{html.escape(h)}</th>'
            for h, a in zip(self.header, align)) + "</tr></thead>")
        out.append("<tbody>")
        for row in self.rows:
            out.append("<tr>" + "".join(
                f'<td style="text-align:{a};padding:3px 8px;">{html.escape(c)}</td>'
                for c, a in zip(row, align)) + "</tr>")
        out += ["</tbody>", "</table>"]
        return "\n".join(out)

    def __repr__(self) -> str:
        widths = [max(len(h), *(len(r[i]) for r in self.rows)) if self.rows else len(h)
                  for i, h in enumerate(self.header)]

        def line(cells):
            return "  ".join(c.rjust(w) if n else c.ljust(w)
                             for c, w, n in zip(cells, widths, self.numeric)).rstrip()

        lines = [self.caption] if self.caption else []
        lines += [line(self.header), line(["-" * w for w in widths])]
        lines += [line(r) for r in self.rows]
        return "\n".join(lines)


def show(frame, digits: Union[int, Mapping[str, int]] = 2, columns: Optional[Mapping] = None,
         index: Optional[bool] = None, caption: str = "", scale: float = 1.0) -> Table:
    """`frame` (a DataFrame or Series) as a :class:`Table` for readers.

    Args:
        frame: The numbers to show.
        digits: Digits after the point, for every numeric column or per column (by its code
            name; unlisted columns get 2).
        columns: Labels that override :func:`label` for some columns (code name → label).
        index: Show the index as the first column(s). Default: unless it is a plain
            0, 1, 2, ... range.
        caption: A line above the table.
        scale: Multiply every numeric value by this first (e.g. 100 for fractions → %).
    """
    import pandas as pd

    if isinstance(frame, pd.Series):
        frame = frame.to_frame(name=frame.name if frame.name is not None else "value")
    columns = dict(columns or {})
    if index is None:
        index = not (isinstance(frame.index, pd.RangeIndex) and frame.index.name is None)
    n_index = frame.index.nlevels if index else 0
    if index:
        names = [n if n is not None else "" for n in frame.index.names]
        frame = frame.reset_index(names=[n if n else f"_level_{i}" for i, n in enumerate(names)])
    header, numeric, rows = [], [], [[] for _ in range(len(frame))]
    for position, name in enumerate(frame.columns):
        key = name if not isinstance(name, tuple) else " ".join(str(n) for n in name if n != "")
        if isinstance(key, str) and key.startswith("_level_"):
            header.append("")
        else:
            header.append(columns.get(key, columns.get(name, label(name))))
        values = frame.iloc[:, position]
        is_num = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        numeric.append(is_num)
        d = digits.get(key, 2) if isinstance(digits, Mapping) else digits
        if position < n_index and pd.api.types.is_integer_dtype(values):
            d = 0
        for r, value in enumerate(values.tolist()):
            if is_num and position >= n_index and scale != 1.0 and not _is_missing(value):
                value = value * scale
            rows[r].append(_format(value, d))
    return Table(header, rows, caption=caption, numeric=numeric)
