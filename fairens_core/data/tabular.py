"""Tables: UCI Adult and Abalone, and any CSV file; features standardised or one-hot encoded."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch

from .checks import check_choice, check_fraction, check_int
from .dataset import TASKS, Dataset
from .files import locate, locate_or_embedded, open_text


def split_indices(n: int, test_fraction: float, seed: int, stratify: np.ndarray | None = None):
    """Train and test row indices, shuffled; stratified on ``stratify`` when every stratum has 2+ rows."""
    from sklearn.model_selection import train_test_split

    if stratify is not None and np.bincount(np.unique(stratify, return_inverse=True)[1]).min() < 2:
        stratify = None
    return train_test_split(np.arange(n), test_size=test_fraction, random_state=seed, stratify=stratify)


def standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale every column to zero mean, unit variance with train statistics (constant columns: std 1)."""
    mean = train.mean(axis=0)
    std = train.std(axis=0)
    std[std == 0] = 1.0
    return ((train - mean) / std).astype(np.float32), ((test - mean) / std).astype(np.float32)


def _encode_features(train, test) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Numeric columns standardised, the others one-hot over the train categories, train statistics only.

    Takes two pandas DataFrames with the same columns; returns float32 ``(N_train, F)``,
    ``(N_test, F)`` and the F feature names (``column=value`` for one-hot columns). A test
    category never seen in train is encoded as all zeros.
    """
    import pandas as pd

    blocks_train, blocks_test, names = [], [], []
    for column in train.columns:
        if pd.api.types.is_numeric_dtype(train[column]) and not pd.api.types.is_bool_dtype(train[column]):
            train_values = train[column].to_numpy(np.float64)[:, None]
            test_values = pd.to_numeric(test[column]).to_numpy(np.float64)[:, None]
            train_values, test_values = standardise(train_values, test_values)
            blocks_train.append(train_values)
            blocks_test.append(test_values)
            names.append(str(column))
        else:
            categories = np.array(sorted(train[column].astype(str).unique()))
            blocks_train.append(train[column].astype(str).to_numpy()[:, None] == categories)
            blocks_test.append(test[column].astype(str).to_numpy()[:, None] == categories)
            names += [f"{column}={c}" for c in categories]
    x_train = np.concatenate(blocks_train, axis=1).astype(np.float32)
    x_test = np.concatenate(blocks_test, axis=1).astype(np.float32)
    return x_train, x_test, names


def tabular_dataset(name: str, train, test, target: str, task: str, classes: list[str] | None = None):
    """A Dataset from train and test DataFrames: features encoded, the ``target`` column as y.

    Classification: y are indices into ``classes`` (default: the sorted distinct target values).
    Regression: y is float32, standardised with the train mean and std.
    """
    x_train, x_test, feature_names = _encode_features(train.drop(columns=[target]), test.drop(columns=[target]))
    if task == "classification":
        if classes is None:
            classes = sorted(set(train[target].astype(str)) | set(test[target].astype(str)))
        index = {c: i for i, c in enumerate(classes)}
        y_train = torch.tensor([index[str(v)] for v in train[target]], dtype=torch.int64)
        y_test = torch.tensor([index[str(v)] for v in test[target]], dtype=torch.int64)
        target_mean = target_std = None
    else:
        values = train[target].to_numpy(np.float64)
        target_mean, target_std = float(values.mean()), float(values.std()) or 1.0
        y_train = torch.from_numpy(((values - target_mean) / target_std).astype(np.float32))
        y_test = (test[target].to_numpy(np.float64) - target_mean) / target_std
        y_test = torch.from_numpy(y_test.astype(np.float32))
        classes = []
    return Dataset(
        name=name,
        task=task,
        x_train=torch.from_numpy(x_train),
        y_train=y_train,
        x_test=torch.from_numpy(x_test),
        y_test=y_test,
        classes=list(classes),
        target_mean=target_mean,
        target_std=target_std,
        feature_names=feature_names,
    )



ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
    "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week", "native_country", "income",
]  # fmt: skip


def _read_adult(path: Path):
    """One Adult file as a DataFrame; the test file's junk first line and trailing dots are handled."""
    import pandas as pd

    with open_text(path) as f:
        junk = f.readline().startswith("|")  # adult.test starts with "|1x3 Cross validator"
    frame = pd.read_csv(
        path, header=None, names=ADULT_COLUMNS, skiprows=int(junk), sep=",", skipinitialspace=True, na_values="?",
    )
    frame["income"] = frame["income"].str.strip().str.rstrip(".")  # adult.test writes ">50K."
    unknown = sorted(set(frame["income"].dropna()) - {"<=50K", ">50K"})
    if unknown:
        raise ValueError(f"{path}: unexpected income labels {unknown}")
    return frame


def load_adult(root: Path) -> Dataset:
    """UCI Adult (census income): predict income >50K (class 1) from 14 attributes.

    Reads ``adult.data`` and ``adult.test`` from ``root/adult`` or ``root``, else the copies
    embedded in the package (the same bytes, compressed). Rows with a
    missing value (``?``) are dropped, leaving 30,162 train / 15,060 test rows. Numeric columns
    are standardised with train statistics, categorical ones one-hot over the train categories
    (a test-only category is all zeros); ``race`` and ``sex`` stay among the features and are
    also the protected groups (codes index ``group_names``, values sorted). x is float32.
    """
    how = "Download adult.data and adult.test from https://archive.ics.uci.edu/dataset/2/adult."
    frames = {}
    for split, file in (("train", "adult.data"), ("test", "adult.test")):
        path = locate_or_embedded("adult", [root / "adult" / file, root / file], f"{file}.xz", how)
        frames[split] = _read_adult(path).dropna().reset_index(drop=True)
    dataset = tabular_dataset(
        "adult", frames["train"], frames["test"], "income", "classification", classes=["<=50K", ">50K"]
    )
    for attribute in ("race", "sex"):
        names = sorted(set(frames["train"][attribute]) | set(frames["test"][attribute]))
        dataset.group_names[attribute] = names
        for split, groups in (("train", dataset.groups_train), ("test", dataset.groups_test)):
            codes = frames[split][attribute].map(names.index).to_numpy()
            groups[attribute] = torch.tensor(codes, dtype=torch.int64)
    return dataset


def _sniff_separator(path: Path) -> str:
    """The field separator of a text table: one of , ; tab |, else runs of whitespace."""
    with open_text(path) as f:
        sample = f.read(65536)
    try:
        return csv.Sniffer().sniff(sample, delimiters=",;\t|").delimiter
    except csv.Error:
        return r"\s+"


def _read_table(path: Path, sep: str | None, header):
    """A text table as a DataFrame with numeric columns parsed; ``?`` and empty cells are missing.

    ``header="infer"``: the first row is a header when some column is numeric below it but
    not in it (UCI files often have no header). Columns of a headerless file are named 0, 1, ....
    """
    import pandas as pd

    sep = _sniff_separator(path) if sep is None else sep
    pandas_header = None if header == "infer" else header
    frame = pd.read_csv(
        path, sep=sep, header=pandas_header, dtype=str, na_values=["?"], skipinitialspace=True, engine="python"
    )
    frame = frame.apply(lambda column: column.str.strip())
    if header == "infer" and len(frame) > 1 and any(_is_header_cell(frame[c]) for c in frame.columns):
        frame.columns = [str(v) for v in frame.iloc[0]]
        frame = frame.iloc[1:].reset_index(drop=True)
    for column in frame.columns:
        numbers = pd.to_numeric(frame[column], errors="coerce")
        if numbers.notna().sum() == frame[column].notna().sum():
            frame[column] = numbers
    return frame


def _is_header_cell(column) -> bool:
    """True when the column's first cell is text and all others are numbers."""
    import pandas as pd

    rest = column.iloc[1:].dropna()
    first = pd.to_numeric(column.iloc[:1], errors="coerce")
    return len(rest) > 0 and pd.to_numeric(rest, errors="coerce").notna().all() and first.isna().all()


# A text column with more distinct values than this is an identifier or a misread number more
# often than a category: one-hot encoding it silently would add that many features.
AUTO_CATEGORY_LIMIT = 50


def load_csv(
    root: Path,
    *,
    path: str | Path | None = None,
    target: str | int | None = None,
    task: str = "regression",
    test_fraction: float = 0.2,
    seed: int = 0,
    sep: str | None = None,
    header="infer",
    drop=(),
    categorical=(),
    log=(),
) -> Dataset:
    """A UCI-style text table: numeric columns standardised, the others one-hot (train statistics).

    ``path`` may be relative to ``root`` and may end in ``.xz``. ``target`` is a column name or
    a 0-based column index, and so is each entry of ``drop`` (columns left out, e.g. an
    identifier or a column that leaks the target), ``categorical`` (columns one-hot encoded
    even when they hold numbers, e.g. codes) and ``log`` (skewed numeric columns replaced by
    ``log1p`` before standardisation); a single column may be given without a list. Text
    columns are one-hot encoded anyway, unless one has more than ``AUTO_CATEGORY_LIMIT``
    distinct values: then it must be dropped or listed in ``categorical``.

    ``sep=None`` sniffs the separator; ``header`` is "infer", None (no header row; columns are
    named "0", "1", ...) or the header's row number. Unknown columns are a ValueError naming the
    option and listing the table's columns. Rows with a missing value (``?`` or empty) in a
    kept column are dropped. The split is shuffled with ``seed`` (stratified by class for
    classification). Regression targets are float32, standardised with the train mean / std
    (kept as ``target_mean`` / ``target_std``). The dataset is named ``csv:<file name>``.
    """
    if path is None:
        raise ValueError("path=None: the csv dataset needs path=<file>")
    if target is None or isinstance(target, bool) or not isinstance(target, (str, int)):
        raise ValueError(f"target={target!r}: allowed values are a column name or a 0-based column index")
    check_choice("task", task, TASKS)
    check_fraction("test_fraction", test_fraction)
    check_int("seed", seed, minimum=0)
    if header != "infer" and header is not None and not isinstance(header, int):
        raise ValueError(f"header={header!r}: allowed values are 'infer', None or a row number")
    columns = {"drop": _column_list("drop", drop), "categorical": _column_list("categorical", categorical),
               "log": _column_list("log", log)}
    path = Path(path).expanduser()
    path = locate("csv", [path if path.is_absolute() else root / path], "Check the path option.")
    frame = _read_table(path, sep, header)
    return _table_dataset(f"csv:{path.name}", frame, target, task, test_fraction, seed, **columns)


def _column_list(option: str, value) -> list[str | int]:
    """``value`` (one column or a list of them, by name or 0-based index) as a list."""
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(v, (str, int)) and not isinstance(v, bool) for v in value
    ):
        raise ValueError(f"{option}={value!r}: allowed values are column names or 0-based indices, or a list of them")
    return list(value)


def _column_names(option: str, value: list[str | int], columns: list[str]) -> list[str]:
    """The columns named or indexed by ``value``; an unknown one is a ValueError listing ``columns``."""
    names = []
    for column in value:
        if isinstance(column, int) and -len(columns) <= column < len(columns):
            names.append(columns[column])
        elif isinstance(column, str) and column in columns:
            names.append(column)
        else:
            raise ValueError(f"{option}: no column {column!r} in the table; its columns are {columns}")
    return names


def _table_dataset(name: str, frame, target, task: str, test_fraction: float, seed: int,
                   drop=(), categorical=(), log=()) -> Dataset:
    """Split a DataFrame and encode it; ``target`` and the columns of ``drop``, ``categorical`` and
    ``log`` (see :func:`load_csv`) are column names or 0-based indices."""
    import pandas as pd

    is_numeric = pd.api.types.is_numeric_dtype
    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    target = _column_names("target", [target], columns)[0]
    chosen = {option: _column_names(option, value, columns)
              for option, value in (("drop", drop), ("categorical", categorical), ("log", log))}
    for option, names in chosen.items():
        if target in names:
            raise ValueError(f"{option}: {target!r} is the target column")
    for first, second in (("drop", "categorical"), ("drop", "log"), ("categorical", "log")):
        both = sorted(set(chosen[first]) & set(chosen[second]))
        if both:
            raise ValueError(f"{first} and {second} both name {both}")
    frame = frame.drop(columns=chosen["drop"]).dropna().reset_index(drop=True)
    for column in chosen["log"]:
        if not is_numeric(frame[column]) or (frame[column] <= -1).any():
            raise ValueError(f"log: column {column!r} must hold numbers > -1 for log1p")
        frame[column] = np.log1p(frame[column].astype(np.float64))
    for column in chosen["categorical"]:
        frame[column] = frame[column].astype(str)
    for column in frame.columns.drop(target):
        distinct = frame[column].nunique()
        if not is_numeric(frame[column]) and column not in chosen["categorical"] and distinct > AUTO_CATEGORY_LIMIT:
            raise ValueError(
                f"column {column!r} holds text with {distinct} distinct values: drop it (drop=[{column!r}]) "
                f"or one-hot encode it on purpose (categorical=[{column!r}])"
            )
    if task == "regression" and not is_numeric(frame[target]):
        raise ValueError(f"target={target!r} is not numeric; use task='classification'")
    stratify = frame[target].astype(str).to_numpy() if task == "classification" else None
    train, test = split_indices(len(frame), test_fraction, seed, stratify)
    return tabular_dataset(name, frame.iloc[train], frame.iloc[test], target, task)


ABALONE_COLUMNS = [
    "Sex", "Length", "Diameter", "Height", "Whole_weight", "Shucked_weight", "Viscera_weight", "Shell_weight",
    "Rings",
]  # fmt: skip


def load_abalone(root: Path, *, seed: int = 0) -> Dataset:
    """UCI Abalone: regress the number of ``Rings`` (age) from sex and 7 measurements.

    Reads ``root/uci/abalone.data`` or ``root/abalone.data``, else the copy embedded in the
    package (the same bytes, compressed), with or without a header row.
    ``Sex`` (M / F / I) is one-hot, the measurements standardised; the split is 80/20 shuffled
    with ``seed``; y is float32 Rings standardised with the train mean / std.
    """
    check_int("seed", seed, minimum=0)
    how = "Download abalone.data from https://archive.ics.uci.edu/dataset/1/abalone."
    candidates = [root / "uci" / "abalone.data", root / "abalone.data"]
    path = locate_or_embedded("abalone", candidates, "abalone.data.xz", how)
    frame = _read_table(path, sep=",", header="infer")
    if frame.shape[1] != len(ABALONE_COLUMNS):
        raise ValueError(f"{path}: expected the {len(ABALONE_COLUMNS)} abalone columns, found {frame.shape[1]}")
    frame.columns = ABALONE_COLUMNS
    return _table_dataset("abalone", frame, "Rings", "regression", 0.2, seed)
