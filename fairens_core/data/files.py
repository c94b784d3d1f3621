"""Where dataset files are looked up and where generated or decoded tensors are cached."""

from __future__ import annotations

import hashlib
import lzma
import os
import warnings
from pathlib import Path
from typing import Callable

import torch

from .dataset import DatasetNotFoundError


# Adult and Abalone, xz-compressed, shipped as package data (licence and citation in its README.md).
EMBEDDED_DIR = Path(__file__).resolve().parent.parent / "datasets"


def data_root(root: str | Path | None = None) -> Path:
    """Where dataset files live: ``root``, else ``$FAIRENS_DATA``, else ``~/.cache/fairens/data``."""
    if root is None:
        root = os.environ.get("FAIRENS_DATA") or Path.home() / ".cache" / "fairens" / "data"
    return Path(root).expanduser()


def cache_dir() -> Path:
    """Where generated and decoded tensors go: ``$FAIRENS_CACHE/data``, else ``~/.cache/fairens/data-cache``."""
    if os.environ.get("FAIRENS_CACHE"):
        return Path(os.environ["FAIRENS_CACHE"]).expanduser() / "data"
    return Path.home() / ".cache" / "fairens" / "data-cache"


def cache_file(stem: str, key: str, suffix: str) -> Path:
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / f"{stem}-{digest}{suffix}"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file so that a concurrent reader never sees half a cache file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def cached_tensors(stem: str, key: str, build: Callable[[], dict]) -> dict:
    """``build()`` (a dict of tensors, strings and lists), cached with torch.save under ``key``."""
    path = cache_file(stem, key, ".pt")
    if path.exists():
        try:
            return torch.load(path, weights_only=True)
        except Exception as error:  # a truncated or foreign file: rebuild from the source data
            warnings.warn(f"ignoring unreadable cache file {path}: {error}")
    result = build()
    atomic_write(path, lambda tmp: torch.save(result, tmp))
    return result


def locate(dataset: str, candidates: list[Path], how: str) -> Path:
    """The first existing path among ``candidates``, else DatasetNotFoundError naming them all."""
    for path in candidates:
        if path.exists():
            return path
    expected = " or ".join(str(p) for p in candidates)
    raise DatasetNotFoundError(f"{dataset}: expected {expected}. {how}")


def locate_or_embedded(dataset: str, candidates: list[Path], embedded: str, how: str) -> Path:
    """The first existing path among ``candidates``, else the package's copy ``EMBEDDED_DIR / embedded``."""
    for path in candidates:
        if path.exists():
            return path
    if (EMBEDDED_DIR / embedded).exists():
        return EMBEDDED_DIR / embedded
    return locate(dataset, candidates, how)


def open_text(path: Path):
    """A text file for reading, decompressed on the fly when it ends in ``.xz``."""
    if path.suffix == ".xz":
        return lzma.open(path, "rt", newline="")
    return open(path, newline="")
