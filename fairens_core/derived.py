"""Derived results: what an analysis computes from a record's weights, cached beside the record.

Some evaluations need the members' weights and real compute: error barriers along
interpolation paths, predictions under corruptions, samples around a solution. At full scale
they run on the GPU right after training, and their results — small tables, not weights — are
stored as `derived/<record key>-<recipe>-<hash of the parameters>.npz` (tensors and numbers
only, no pickle) in the cache and, when packed, next to the records. A full-profile page then
re-executes on any CPU in seconds, from records whose weights were never shipped.

A result is found by its record, its recipe's name and version, and its parameters: change
any of them and it is computed anew.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from .records import cache_root, record_dirs


def result_name(record_key: str, recipe: str, version: int, params: dict) -> str:
    blob = json.dumps({"recipe": recipe, "version": version, **params}, sort_keys=True, default=str)
    return f"{record_key}-{recipe}-{hashlib.sha256(blob.encode()).hexdigest()[:12]}.npz"


def find_result(name: str) -> Path | None:
    for folder in record_dirs():
        path = folder / "derived" / name
        if path.exists():
            return path
    return None


def derived_frame(record, recipe: str, version: int, params: dict, compute: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    """The frame `compute()` returns for `record`, from the cache when it was computed before.

    `params`: everything besides the record that the result depends on (JSON-serialisable).
    Columns must be numbers or strings.
    """
    name = result_name(record.key, recipe, version, params)
    path = find_result(name)
    if path is not None:
        try:
            return read_frame(path)
        except (OSError, ValueError, KeyError) as err:  # damaged: compute it again
            print(f"warning: derived result {path} is unreadable ({err}); it will be recomputed")
    frame = compute()
    write_frame(frame, cache_root() / "records" / "derived" / name)
    return frame


def write_frame(frame: pd.DataFrame, path: Path) -> None:
    """A frame as a tensors-only archive: one array per column, the column order kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"column/{i}": np.asarray(frame[c].to_numpy()) for i, c in enumerate(frame.columns)}
    for key, values in arrays.items():
        if values.dtype == object:
            arrays[key] = values.astype(str)
    arrays["columns"] = np.asarray([str(c) for c in frame.columns])
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp.npz", dir=path.parent)
    os.close(fd)
    try:
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def read_frame(path: Path) -> pd.DataFrame:
    with np.load(path, allow_pickle=False) as z:
        columns = [str(c) for c in z["columns"]]
        return pd.DataFrame({c: z[f"column/{i}"] for i, c in enumerate(columns)})


def derived_names(record_key: str) -> list[Path]:
    """Every derived result of `record_key` in the cache (`pack` ships them with the record)."""
    folder = cache_root() / "records" / "derived"
    return sorted(folder.glob(f"{record_key}-*.npz")) if folder.is_dir() else []
