"""Datasets of the book, loaded into memory as tensors.

Every loader returns a :class:`Dataset`: the whole train and test split as tensors, the class
names and, for fairness experiments, protected group attributes. Images stay uint8
``(N, C, H, W)`` (a quarter of the memory of float32); a model normalises them on the fly with
``(x / 255 - mean) / std`` using the per-channel ``mean`` and ``std`` carried by the dataset.

``load_dataset(name, root, **options)`` dispatches through :data:`DATASETS`. Files are looked up
under :func:`data_root`; generated data (mnist1d) and decoded images (JPEG folders and zips)
are cached under :func:`cache_dir`. Adult and Abalone also ship with the package (``datasets/``,
UCI, CC BY 4.0): a loader reads them when the data root has no copy. Nothing is downloaded unless
a loader is asked to with ``download=True``, and a missing dataset raises
:class:`DatasetNotFoundError` naming the files it expected: it never falls back to other data.
"""

from __future__ import annotations

import csv
import hashlib
import inspect
import io
import lzma
import multiprocessing
import os
import pickle
import sys
import warnings
import zipfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

# Per-channel statistics of x/255 on the train split, as commonly published.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR100_MEAN = (0.5071, 0.4865, 0.4409)
CIFAR100_STD = (0.2673, 0.2564, 0.2762)
SVHN_MEAN = (0.4377, 0.4438, 0.4728)
SVHN_STD = (0.1980, 0.2010, 0.1970)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".ppm", ".tif", ".tiff", ".webp")

TASKS = ("classification", "regression")

# Adult and Abalone, xz-compressed, shipped as package data (licence and citation in its README.md).
EMBEDDED_DIR = Path(__file__).resolve().parent / "datasets"


class DatasetNotFoundError(FileNotFoundError):
    """The files of a dataset are not where the loader looks; the message says where and how to get them."""


@dataclass
class Dataset:
    """A dataset held in memory: train and test split, class names and protected groups.

    Shapes: ``x_*`` is ``(N, *input_shape)``, float32, or uint8 ``(N, C, H, W)`` for images;
    ``y_*`` is ``(N,)``, int64 class ids or float32 regression targets (standardised, see
    ``target_mean`` / ``target_std``); each ``groups_*[attribute]`` is ``(N,)`` int64 codes
    whose names are ``group_names[attribute]``.
    """

    name: str
    task: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: list[str]
    groups_train: dict[str, torch.Tensor] = field(default_factory=dict)
    groups_test: dict[str, torch.Tensor] = field(default_factory=dict)
    group_names: dict[str, list[str]] = field(default_factory=dict)
    mean: tuple[float, ...] | None = None  # per channel, applied to x / 255 of uint8 images
    std: tuple[float, ...] | None = None
    target_mean: float | None = None  # regression: y = (target - target_mean) / target_std
    target_std: float | None = None
    feature_names: list[str] = field(default_factory=list)  # tabular data: name of each column of x

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task={self.task!r}: allowed are {list(TASKS)}")
        for split, x, y, groups in (
            ("train", self.x_train, self.y_train, self.groups_train),
            ("test", self.x_test, self.y_test, self.groups_test),
        ):
            if len(x) != len(y):
                raise ValueError(f"x_{split} has {len(x)} rows but y_{split} has {len(y)}")
            for attribute, codes in groups.items():
                if len(codes) != len(y):
                    raise ValueError(f"groups_{split}[{attribute!r}] has {len(codes)} rows, expected {len(y)}")

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one input, without the batch dimension."""
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        """Number of classes; 1 (one output) for regression."""
        return len(self.classes) if self.task == "classification" else 1

    @property
    def is_image(self) -> bool:
        """True for uint8 ``(N, C, H, W)`` images."""
        return self.x_train.dtype == torch.uint8 and self.x_train.ndim == 4

    def describe(self) -> str:
        """One paragraph: sizes, input shape, classes (or target) and groups."""
        kind = "uint8 images" if self.is_image else f"{str(self.x_train.dtype).removeprefix('torch.')} inputs"
        shape = "x".join(str(s) for s in self.input_shape)
        text = f"{self.name}: {self.task}, {len(self.y_train)} train / {len(self.y_test)} test"
        text += f", {kind} of shape {shape}"
        if self.task == "classification" and self.classes:
            counts = torch.bincount(self.y_train, minlength=len(self.classes)).tolist()
            text += f"; {len(self.classes)} classes ({_preview(self.classes)})"
            text += f", train class sizes {min(counts)}-{max(counts)}"
        elif self.target_mean is not None:
            text += f"; target standardised (mean {self.target_mean:.4g}, std {self.target_std:.4g})"
        for attribute, names in self.group_names.items():
            counts = torch.bincount(self.groups_train[attribute], minlength=len(names)).tolist()
            sizes = ", ".join(f"{n} {c}" for n, c in zip(names, counts))
            text += f"; group '{attribute}' in train: {sizes}"
        return text + "."


def _preview(names: list[str], limit: int = 10) -> str:
    return ", ".join(names) if len(names) <= limit else ", ".join(names[:limit]) + ", ..."


# ---------------------------------------------------------------------------------------------
# Locations, caching and option checks


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


def _cache_file(stem: str, key: str, suffix: str) -> Path:
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_dir() / f"{stem}-{digest}{suffix}"


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file so that a concurrent reader never sees half a cache file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _cached_tensors(stem: str, key: str, build: Callable[[], dict]) -> dict:
    """``build()`` (a dict of tensors, strings and lists), cached with torch.save under ``key``."""
    path = _cache_file(stem, key, ".pt")
    if path.exists():
        try:
            return torch.load(path, weights_only=True)
        except Exception as error:  # a truncated or foreign file: rebuild from the source data
            warnings.warn(f"ignoring unreadable cache file {path}: {error}")
    result = build()
    _atomic_write(path, lambda tmp: torch.save(result, tmp))
    return result


def _find(dataset: str, candidates: list[Path], how: str) -> Path:
    """The first existing path among ``candidates``, else DatasetNotFoundError naming them all."""
    for path in candidates:
        if path.exists():
            return path
    expected = " or ".join(str(p) for p in candidates)
    raise DatasetNotFoundError(f"{dataset}: expected {expected}. {how}")


def _find_or_embedded(dataset: str, candidates: list[Path], embedded: str, how: str) -> Path:
    """The first existing path among ``candidates``, else the package's copy ``EMBEDDED_DIR / embedded``."""
    for path in candidates:
        if path.exists():
            return path
    if (EMBEDDED_DIR / embedded).exists():
        return EMBEDDED_DIR / embedded
    return _find(dataset, candidates, how)


def _open_text(path: Path):
    """A text file for reading, decompressed on the fly when it ends in ``.xz``."""
    if path.suffix == ".xz":
        return lzma.open(path, "rt", newline="")
    return open(path, newline="")


def _check_choice(param: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{param}={value!r}: allowed values are {list(allowed)}")


def _check_int(param: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{param}={value!r}: allowed values are integers >= {minimum}")


def _check_fraction(param: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise ValueError(f"{param}={value!r}: allowed values are numbers strictly between 0 and 1")


def _check_number(param: str, value, minimum: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= minimum:
        raise ValueError(f"{param}={value!r}: allowed values are numbers >= {minimum}")


def _check_bool(param: str, value) -> None:
    _check_choice(param, value, (False, True))


def _image_size(value) -> tuple[int, int] | None:
    """``None``, an int ``s`` or a pair ``(h, w)`` as ``(h, w)``; anything else is a ValueError."""
    if value is None:
        return None
    pair = (value, value) if isinstance(value, (int, np.integer)) else value
    if (
        not isinstance(pair, (tuple, list))
        or len(pair) != 2
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in pair)
    ):
        raise ValueError(f"image_size={value!r}: allowed values are None, a positive int or a pair (h, w)")
    return int(pair[0]), int(pair[1])


def _check_options(name: str, loader: Callable, options: dict) -> None:
    """Unknown keyword options are a ValueError listing the options the loader accepts."""
    allowed = [p.name for p in inspect.signature(loader).parameters.values() if p.kind is p.KEYWORD_ONLY]
    for option in options:
        if option not in allowed:
            raise ValueError(f"unknown option {option!r} for dataset {name!r}: allowed options are {allowed}")


# ---------------------------------------------------------------------------------------------
# Shared helpers: splits, standardisation, tables, images


def _split_indices(n: int, test_fraction: float, seed: int, stratify: np.ndarray | None = None):
    """Train and test row indices, shuffled; stratified on ``stratify`` when every stratum has 2+ rows."""
    from sklearn.model_selection import train_test_split

    if stratify is not None and np.bincount(np.unique(stratify, return_inverse=True)[1]).min() < 2:
        stratify = None
    return train_test_split(np.arange(n), test_size=test_fraction, random_state=seed, stratify=stratify)


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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
            train_values, test_values = _standardise(train_values, test_values)
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


def _tabular_dataset(name: str, train, test, target: str, task: str, classes: list[str] | None = None):
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


def _channel_stats(x: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of ``x / 255`` for uint8 ``(N, C, H, W)``, in chunks to bound memory."""
    total = torch.zeros(x.shape[1], dtype=torch.float64)
    squares = torch.zeros(x.shape[1], dtype=torch.float64)
    for start in range(0, len(x), chunk):
        block = x[start : start + chunk].double().div_(255)
        total += block.sum(dim=(0, 2, 3))
        squares += block.square().sum(dim=(0, 2, 3))
    count = x.numel() / x.shape[1]
    mean = total / count
    std = (squares / count - mean.square()).clamp_min(0).sqrt()
    return tuple(round(v, 4) for v in mean.tolist()), tuple(round(v, 4) for v in std.tolist())


def _read_image(file, size: tuple[int, int] | None, crop_square: bool) -> np.ndarray:
    """One image as RGB uint8 ``(H, W, 3)``, optionally centre-cropped to a square, then resized to ``size``."""
    from PIL import Image

    with Image.open(file) as image:
        if size is not None:
            image.draft("RGB", (size[1], size[0]))  # JPEG: decode at a reduced scale >= size, much faster
        image = image.convert("RGB")
    if crop_square and image.width != image.height:
        side = min(image.size)
        left, top = (image.width - side) // 2, (image.height - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if size is not None and image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(image)


def _decode_members(source: str | zipfile.ZipFile, members: list[str], size, crop_square: bool) -> np.ndarray:
    """Decode ``members`` of an open zip, or of a directory ``source``, to uint8 ``(n, H, W, 3)``."""
    images = []
    for member in members:
        if isinstance(source, zipfile.ZipFile):
            file = io.BytesIO(source.read(member))
        else:
            file = os.path.join(source, member)
        images.append(_read_image(file, size, crop_square))
        if images[-1].shape != images[0].shape:
            raise ValueError(
                f"images differ in size: {members[0]} is {images[0].shape[1]}x{images[0].shape[0]}, "
                f"{member} is {images[-1].shape[1]}x{images[-1].shape[0]}; pass image_size to resize them"
            )
    return np.stack(images)


_DECODE_CHUNK = 1000  # images per task sent to a decoding worker

# The source a decoding worker process reads from: opening a zip parses its whole directory
# (about a second for 60k members), so each worker does it once, not once per chunk.
_worker_source: str | zipfile.ZipFile | None = None


def _start_worker(source: str) -> None:
    global _worker_source
    _worker_source = source if os.path.isdir(source) else zipfile.ZipFile(source)


def _decode_in_worker(members: list[str], size, crop_square: bool) -> np.ndarray:
    return _decode_members(_worker_source, members, size, crop_square)


def _decode_images(
    source: Path,
    members: list[str],
    size: tuple[int, int] | None = None,
    crop_square: bool = False,
    num_workers: int | None = None,
) -> torch.Tensor:
    """Decode image files to one uint8 tensor ``(N, 3, H, W)``, in order.

    ``source`` is a .zip (``members`` are names inside it) or a directory (``members`` are
    relative paths). Large sets are decoded by a pool of ``num_workers`` processes (default:
    all cores, up to 8); Pillow's Python overhead per small image makes threads no faster.
    """
    if not members:
        raise ValueError(f"no images to decode in {source}")
    workers = min(os.cpu_count() or 1, 8) if num_workers is None else num_workers
    chunks = [members[i : i + _DECODE_CHUNK] for i in range(0, len(members), _DECODE_CHUNK)]
    if workers <= 1 or len(chunks) == 1:
        if source.is_dir():
            parts = [_decode_members(str(source), c, size, crop_square) for c in chunks]
            return _stack_nchw(parts, len(members))
        with zipfile.ZipFile(source) as archive:
            return _stack_nchw([_decode_members(archive, c, size, crop_square) for c in chunks], len(members))
    # fork is cheap and safe here (workers use only zipfile, Pillow and numpy); spawn elsewhere
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    with ProcessPoolExecutor(workers, context, initializer=_start_worker, initargs=(str(source),)) as pool:
        parts = pool.map(_decode_in_worker, chunks, [size] * len(chunks), [crop_square] * len(chunks))
        return _stack_nchw(parts, len(members))


def _decode_splits(source: Path, splits: dict[str, list[str]], size, crop_square=False, num_workers=None):
    """Decode all splits in one pass: ``{"x_<split>": uint8 (N, 3, H, W), "mean": ..., "std": ...}``.

    ``mean`` and ``std`` are the per-channel statistics of the "train" split.
    """
    everything = _decode_images(source, [m for names in splits.values() for m in names], size, crop_square, num_workers)
    result, start = {}, 0
    for split, names in splits.items():
        result[f"x_{split}"] = everything[start : start + len(names)].clone()  # own storage, not a view
        start += len(names)
    result["mean"], result["std"] = _channel_stats(result["x_train"])
    return result


def _stack_nchw(parts, total: int) -> torch.Tensor:
    """Copy ``(n, H, W, 3)`` arrays into one preallocated ``(total, 3, H, W)`` tensor."""
    out, start = None, 0
    for part in parts:
        if out is None:
            out = torch.empty((total, part.shape[3], part.shape[1], part.shape[2]), dtype=torch.uint8)
        elif part.shape[1:3] != tuple(out.shape[2:]):
            raise ValueError(
                f"images differ in size: {out.shape[3]}x{out.shape[2]} and {part.shape[2]}x{part.shape[1]}; "
                "pass image_size to resize them"
            )
        out[start : start + len(part)] = torch.from_numpy(part).permute(0, 3, 1, 2)
        start += len(part)
    return out


def _tree_fingerprint(directory: Path) -> str:
    """Cheap identity of a directory tree for cache keys: file count, total size, newest mtime."""
    count = size = newest = 0
    for folder, _, files in os.walk(directory):
        for name in files:
            stat = os.stat(os.path.join(folder, name))
            count, size, newest = count + 1, size + stat.st_size, max(newest, stat.st_mtime_ns)
    return f"{count}:{size}:{newest}"


# ---------------------------------------------------------------------------------------------
# Generated and bundled data


def load_mnist1d(root: Path, *, n_samples: int = 10_000, seed: int = 42, test_fraction: float = 0.2) -> Dataset:
    """MNIST-1D (Greydanus, 2020), generated offline by the ``mnist1d`` package and cached as .npz.

    x is float32 ``(N, 1, 40)`` (channels first, for 1-D convolutions), y int64 digits 0-9.
    The package makes ``n_samples // 10`` signals per class, shuffles them and puts the first
    ``1 - test_fraction`` of them in train. ``root`` is unused.
    """
    _check_int("n_samples", n_samples, minimum=10)
    _check_int("seed", seed, minimum=0)
    _check_fraction("test_fraction", test_fraction)
    from importlib.metadata import version

    key = f"n={n_samples}|seed={seed}|test_fraction={test_fraction!r}|mnist1d={version('mnist1d')}"
    path = _cache_file("mnist1d", key, ".npz")
    arrays = None
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as cached:
                arrays = {k: cached[k] for k in ("x_train", "y_train", "x_test", "y_test")}
        except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as error:
            # truncated, garbage or foreign: set it aside and generate the data again
            aside = path.with_name(f"{path.name}.corrupt-{os.getpid()}")
            try:
                os.replace(path, aside)
            except FileNotFoundError:  # another process set it aside first
                pass
            warnings.warn(f"unreadable cache file {path} ({type(error).__name__}: {error}); "
                          f"moved aside to {aside}; regenerating it")
    if arrays is None:
        arrays = _generate_mnist1d(n_samples, seed, test_fraction)
        _atomic_write(path, lambda tmp: _save_npz(tmp, arrays))
    return Dataset(
        name="mnist1d",
        task="classification",
        x_train=torch.from_numpy(arrays["x_train"]),
        y_train=torch.from_numpy(arrays["y_train"]),
        x_test=torch.from_numpy(arrays["x_test"]),
        y_test=torch.from_numpy(arrays["y_test"]),
        classes=[str(d) for d in range(10)],
    )


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:  # a file object, so numpy does not append ".npz" to the name
        np.savez(f, **arrays)


def _generate_mnist1d(n_samples: int, seed: int, test_fraction: float) -> dict[str, np.ndarray]:
    """Arrays x_train (N, 1, 40) float32, y_train (N,) int64, x_test, y_test from mnist1d.make_dataset."""
    import random

    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = n_samples
    args.seed = seed
    args.train_split = 1 - test_fraction
    # make_dataset seeds the global `random` and numpy generators; leave the caller's state untouched
    states = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(args)
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
    return {
        "x_train": data["x"].astype(np.float32)[:, None, :],
        "y_train": data["y"].astype(np.int64),
        "x_test": data["x_test"].astype(np.float32)[:, None, :],
        "y_test": data["y_test"].astype(np.int64),
    }


def load_digits(root: Path, *, seed: int = 0) -> Dataset:
    """scikit-learn's bundled 8x8 digits (1,797 images): x float32 ``(N, 1, 8, 8)`` in [0, 1].

    Split 80/20, stratified by digit, shuffled with ``seed``. ``root`` is unused.
    """
    _check_int("seed", seed, minimum=0)
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None]  # pixel values are counts 0..16
    y = bunch.target.astype(np.int64)
    train, test = _split_indices(len(y), 0.2, seed, stratify=y)
    return Dataset(
        name="digits",
        task="classification",
        x_train=torch.from_numpy(x[train]),
        y_train=torch.from_numpy(y[train]),
        x_test=torch.from_numpy(x[test]),
        y_test=torch.from_numpy(y[test]),
        classes=[str(d) for d in range(10)],
    )


def load_diabetes(root: Path, *, seed: int = 0) -> Dataset:
    """scikit-learn's bundled diabetes regression (442 patients, 10 raw features).

    Split 80/20 with ``seed``; features and target standardised with train statistics.
    ``root`` is unused.
    """
    _check_int("seed", seed, minimum=0)
    from sklearn.datasets import load_diabetes as sklearn_diabetes

    frame = sklearn_diabetes(as_frame=True, scaled=False).frame
    train, test = _split_indices(len(frame), 0.2, seed)
    return _tabular_dataset("diabetes", frame.iloc[train], frame.iloc[test], "target", "regression")


def load_synthetic(
    root: Path,
    *,
    n_samples: int = 6000,
    n_classes: int = 4,
    n_features: int = 20,
    imbalance: float = 1.0,
    minority_fraction: float = 0.1,
    minority_shift: float = 1.5,
    seed: int = 0,
    test_fraction: float = 0.3,
) -> Dataset:
    """Generated classification data with a protected ``group`` attribute (majority / minority).

    Each class is a mixture of two Gaussian clusters in ``n_features // 2`` informative
    dimensions (unit noise, class overlap tuned so that a small MLP reaches roughly 85% on the
    majority), padded with pure-noise dimensions and mixed by a random rotation. The group is
    not the target: a ``minority_fraction`` of every class is drawn from a moved distribution,
    its informative features rotated by up to ``minority_shift`` radians and translated by
    ``2 * minority_shift`` noise standard deviations. With few minority samples and a different
    decision boundary there, models are worse and more variable on the minority
    (``minority_shift=0`` gives both groups the same distribution, a control).

    Class sizes are spaced geometrically from the largest (class 0) to the smallest, their
    ratio being ``imbalance``. x is float32 ``(N, n_features)`` standardised with train
    statistics; the split is stratified by class and group. Deterministic given ``seed``.
    ``root`` is unused.
    """
    _check_int("n_samples", n_samples, minimum=20)
    _check_int("n_classes", n_classes, minimum=2)
    _check_int("n_features", n_features, minimum=2)
    _check_number("imbalance", imbalance, minimum=1.0)
    _check_fraction("minority_fraction", minority_fraction)
    _check_number("minority_shift", minority_shift, minimum=0.0)
    _check_int("seed", seed, minimum=0)
    _check_fraction("test_fraction", test_fraction)
    counts = _class_counts(n_samples, n_classes, imbalance)
    if counts.min() < 4:
        raise ValueError(f"n_samples={n_samples}: too few for n_classes={n_classes} at imbalance={imbalance}")
    x, y, group = _make_synthetic(counts, n_features, minority_fraction, minority_shift, seed)
    train, test = _split_indices(len(y), test_fraction, seed, stratify=2 * y + group)
    x_train, x_test = _standardise(x[train], x[test])
    return Dataset(
        name="synthetic",
        task="classification",
        x_train=torch.from_numpy(x_train),
        y_train=torch.from_numpy(y[train]),
        x_test=torch.from_numpy(x_test),
        y_test=torch.from_numpy(y[test]),
        classes=[str(k) for k in range(n_classes)],
        groups_train={"group": torch.from_numpy(group[train])},
        groups_test={"group": torch.from_numpy(group[test])},
        group_names={"group": ["majority", "minority"]},
    )


def _class_counts(n_samples: int, n_classes: int, imbalance: float) -> np.ndarray:
    """Class sizes summing to ``n_samples``, geometric from largest to smallest with ratio ``imbalance``."""
    weights = float(imbalance) ** (-np.arange(n_classes) / (n_classes - 1))
    counts = np.floor(n_samples * weights / weights.sum()).astype(np.int64)
    counts[0] += n_samples - counts.sum()  # the rounding remainder goes to the largest class
    return counts


def _make_synthetic(counts: np.ndarray, n_features: int, minority_fraction: float, shift: float, seed: int):
    """x float64 ``(N, n_features)``, y int64 ``(N,)``, group int64 ``(N,)`` (1 = minority), shuffled."""
    from scipy.linalg import expm

    rng = np.random.default_rng(seed)
    n_classes, n = len(counts), int(counts.sum())
    informative = max(2, n_features // 2)
    y = np.repeat(np.arange(n_classes), counts)
    group = np.zeros(n, dtype=np.int64)
    for k in range(n_classes):  # the same minority share in every class
        members = np.flatnonzero(y == k)
        group[rng.choice(members, size=round(minority_fraction * len(members)), replace=False)] = 1

    centres = rng.normal(size=(n_classes, 2, informative))  # two clusters per class
    cluster = rng.integers(2, size=n)
    z = centres[y, cluster] + rng.normal(size=(n, informative))

    generator = rng.normal(size=(informative, informative))
    generator -= generator.T  # skew-symmetric, so expm(...) is a rotation
    generator /= np.linalg.norm(generator, 2)  # largest rotation angle = shift radians
    direction = rng.normal(size=informative)
    direction /= np.linalg.norm(direction)
    minority = group == 1
    z[minority] = z[minority] @ expm(shift * generator).T + 2 * shift * direction

    noise = rng.normal(size=(n, n_features - informative))
    mixing, _ = np.linalg.qr(rng.normal(size=(n_features, n_features)))
    x = np.concatenate([z, noise], axis=1) @ mixing
    order = rng.permutation(n)
    return x[order], y[order], group[order]


# ---------------------------------------------------------------------------------------------
# Images in torchvision's on-disk formats


def _unpickle(path: Path) -> dict:
    """A CIFAR batch file as a dict with str keys (the files are Python 2 pickles with bytes keys)."""
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _strings(values) -> list[str]:
    return [v.decode() if isinstance(v, bytes) else str(v) for v in values]


def _cifar_images(batches: list[dict], label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``(N, 3, 32, 32)`` and int64 ``(N,)`` from CIFAR batches (rows of 3072 = R, G, B planes)."""
    data = np.concatenate([np.asarray(b["data"], dtype=np.uint8).reshape(-1, 3, 32, 32) for b in batches])
    labels = np.concatenate([np.asarray(b[label_key], dtype=np.int64) for b in batches])
    return torch.from_numpy(data), torch.from_numpy(labels)


def _cifar_folder(dataset: str, root: Path, folder: str, download: bool, torchvision_class: str) -> Path:
    """The CIFAR folder under root, downloaded by torchvision first if asked to."""
    if download:
        import torchvision.datasets

        getattr(torchvision.datasets, torchvision_class)(str(root), train=True, download=True)
    return _find(
        dataset,
        [root / folder],
        f"Download it with load_dataset({dataset!r}, download=True) or "
        f"torchvision.datasets.{torchvision_class}(root, download=True).",
    )


def load_cifar10(root: Path, *, download: bool = False) -> Dataset:
    """CIFAR-10 from ``root/cifar-10-batches-py`` (torchvision's format): uint8 ``(N, 3, 32, 32)``, 50k/10k."""
    _check_bool("download", download)
    folder = _cifar_folder("cifar10", root, "cifar-10-batches-py", download, "CIFAR10")
    train_files = [folder / f"data_batch_{i}" for i in range(1, 6)]
    for path in [*train_files, folder / "test_batch", folder / "batches.meta"]:
        _find("cifar10", [path], "The folder is incomplete; download it again with download=True.")
    x_train, y_train = _cifar_images([_unpickle(p) for p in train_files], "labels")
    x_test, y_test = _cifar_images([_unpickle(folder / "test_batch")], "labels")
    classes = _strings(_unpickle(folder / "batches.meta")["label_names"])
    return Dataset(
        "cifar10", "classification", x_train, y_train, x_test, y_test, classes, mean=CIFAR10_MEAN, std=CIFAR10_STD,
    )


def load_cifar100(root: Path, *, label: str = "fine", download: bool = False) -> Dataset:
    """CIFAR-100 from ``root/cifar-100-python``: uint8 ``(N, 3, 32, 32)``, 100 fine or 20 coarse classes."""
    _check_choice("label", label, ("fine", "coarse"))
    _check_bool("download", download)
    folder = _cifar_folder("cifar100", root, "cifar-100-python", download, "CIFAR100")
    for path in [folder / "train", folder / "test", folder / "meta"]:
        _find("cifar100", [path], "The folder is incomplete; download it again with download=True.")
    x_train, y_train = _cifar_images([_unpickle(folder / "train")], f"{label}_labels")
    x_test, y_test = _cifar_images([_unpickle(folder / "test")], f"{label}_labels")
    classes = _strings(_unpickle(folder / "meta")[f"{label}_label_names"])
    return Dataset(
        "cifar100", "classification", x_train, y_train, x_test, y_test, classes,
        mean=CIFAR100_MEAN, std=CIFAR100_STD,
    )


def load_svhn(root: Path, *, download: bool = False) -> Dataset:
    """SVHN (cropped digits) from ``train_32x32.mat`` / ``test_32x32.mat`` in root or root/svhn.

    uint8 ``(N, 3, 32, 32)``; the files label the digit 0 as 10, here it is 0. The ``extra``
    split is not loaded.
    """
    _check_bool("download", download)
    from scipy.io import loadmat

    if download:
        import torchvision.datasets

        for split in ("train", "test"):
            torchvision.datasets.SVHN(str(root), split=split, download=True)
    how = (
        "Download it with load_dataset('svhn', download=True) "
        "or torchvision.datasets.SVHN(root, split, download=True)."
    )
    splits = []
    for split in ("train", "test"):
        mat = loadmat(_find("svhn", [root / f"{split}_32x32.mat", root / "svhn" / f"{split}_32x32.mat"], how))
        x = torch.from_numpy(np.ascontiguousarray(mat["X"].transpose(3, 2, 0, 1)))  # (32, 32, 3, N) -> NCHW
        y = torch.from_numpy(mat["y"].reshape(-1).astype(np.int64) % 10)
        splits += [x, y]
    return Dataset("svhn", "classification", *splits, [str(d) for d in range(10)], mean=SVHN_MEAN, std=SVHN_STD)


# ---------------------------------------------------------------------------------------------
# Folders of image files


def _image_members(path: Path) -> dict[str, list[tuple[str, str]]]:
    """``{"train": [(class, member), ...], "test": [...]}`` of an ImageFolder tree, sorted.

    ``path`` is a directory or a .zip holding ``train/<class>/...`` and ``test/<class>/...``,
    possibly inside one wrapping folder. Members are names inside the zip, or paths relative
    to ``path`` for a directory.
    """
    if path.is_dir():
        names = [
            os.path.relpath(os.path.join(folder, f), path).replace(os.sep, "/")
            for folder, _, files in os.walk(path)
            for f in files
        ]
    else:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    # ignore hidden files and the __MACOSX folder that macOS adds to zips
    names = [n for n in names if not any(part.startswith((".", "__MACOSX")) for part in n.split("/"))]
    prefix = ""
    if not any(n.startswith("train/") for n in names):
        tops = {n.split("/")[0] for n in names}
        if len(tops) == 1 and any(n.startswith(f"{next(iter(tops))}/train/") for n in names):
            prefix = f"{next(iter(tops))}/"
    members = {}
    for split in ("train", "test"):
        start = f"{prefix}{split}/"
        found = [
            (n[len(start) :].split("/")[0], n)  # (class folder, member)
            for n in names
            if n.startswith(start) and "/" in n[len(start) :] and n.lower().endswith(IMAGE_EXTENSIONS)
        ]
        if not found:
            raise DatasetNotFoundError(
                f"imagefolder: no images under {path}/{start}<class>/; expected the layout "
                "train/<class>/<image> and test/<class>/<image> (optionally inside one folder)"
            )
        members[split] = sorted(found)
    return members


def load_imagefolder(
    root: Path, *, path: str | Path | None = None, image_size=None, num_workers: int | None = None
) -> Dataset:
    """Images in ImageFolder layout, ``train/<class>/*`` and ``test/<class>/*``, from a directory or a .zip.

    ``path`` may be relative to ``root``. The zip is read in place; it may wrap train/ and test/
    in one top-level folder. Images are decoded by Pillow to RGB uint8 ``(N, 3, H, W)``, resized
    (bilinear) to ``image_size`` (int or (h, w)) if given; otherwise all must share one size.
    Classes are the train class folders sorted by name. ``mean`` / ``std`` are the per-channel
    statistics of the train images. Decoded tensors are cached under :func:`cache_dir`, keyed
    by the resolved path, its size and modification time, and ``image_size``; ``num_workers``
    processes decode (default: all cores, up to 8; 0 or 1 decodes in this process).
    """
    if path is None:
        raise ValueError("path=None: the imagefolder dataset needs path=<directory or .zip>")
    size = _image_size(image_size)
    if num_workers is not None:
        _check_int("num_workers", num_workers, minimum=0)
    path = Path(path).expanduser()
    path = path if path.is_absolute() else root / path
    how = "Give a directory or .zip holding train/<class>/<image> and test/<class>/<image>."
    path = _find("imagefolder", [path], how)
    return _imagefolder(path, path.stem, size, num_workers)


def _imagefolder(path: Path, name: str, size, num_workers) -> Dataset:
    path = path.resolve()
    stat = path.stat()
    fingerprint = _tree_fingerprint(path) if path.is_dir() else f"{stat.st_size}:{stat.st_mtime_ns}"
    key = f"{path}|{fingerprint}|size={size}"

    def build() -> dict:
        members = _image_members(path)
        classes = sorted({c for c, _ in members["train"]})
        unknown = sorted({c for c, _ in members["test"]} - set(classes))
        if unknown:
            raise ValueError(f"imagefolder {path}: test classes {unknown} have no train images")
        index = {c: i for i, c in enumerate(classes)}
        files = {split: [m for _, m in members[split]] for split in members}
        result = _decode_splits(path, files, size, num_workers=num_workers)
        for split in ("train", "test"):
            result[f"y_{split}"] = torch.tensor([index[c] for c, _ in members[split]], dtype=torch.int64)
        return {"classes": classes, **result}

    cached = _cached_tensors(f"imagefolder-{path.stem}", key, build)
    return Dataset(
        name=name,
        task="classification",
        x_train=cached["x_train"],
        y_train=cached["y_train"],
        x_test=cached["x_test"],
        y_test=cached["y_test"],
        classes=list(cached["classes"]),
        mean=tuple(cached["mean"]),
        std=tuple(cached["std"]),
    )


def load_cifar10_jpeg(root: Path, *, image_size=None, num_workers: int | None = None) -> Dataset:
    """CIFAR-10 re-encoded as JPEG, ``root/cifar10-jpeg.zip`` in ImageFolder layout; the CIFAR-10 mean/std."""
    size = _image_size(image_size)
    if num_workers is not None:
        _check_int("num_workers", num_workers, minimum=0)
    path = _find(
        "cifar10_jpeg",
        [root / "cifar10-jpeg.zip"],
        "It is a zip of train/<class>/NNNN.jpg and test/<class>/NNNN.jpg; "
        "for the original CIFAR-10 use load_dataset('cifar10', download=True).",
    )
    dataset = _imagefolder(path, "cifar10_jpeg", size, num_workers)
    dataset.mean, dataset.std = CIFAR10_MEAN, CIFAR10_STD
    return dataset


def load_tinyimagenet(root: Path, *, num_workers: int | None = None) -> Dataset:
    """Tiny ImageNet from ``root/tiny-imagenet-200``: 200 classes, uint8 ``(N, 3, 64, 64)``, 100k/10k.

    The test split is the labelled ``val`` split (the official test labels are not public).
    Classes are the sorted wnids, named by the first synonym in ``words.txt``; ``mean`` /
    ``std`` are the train statistics. Decoded tensors are cached under :func:`cache_dir`.
    """
    if num_workers is not None:
        _check_int("num_workers", num_workers, minimum=0)
    how = "Download http://cs231n.stanford.edu/tiny-imagenet-200.zip and unzip it into the data root."
    base = _find("tinyimagenet", [root / "tiny-imagenet-200"], how)
    for path in (base / "wnids.txt", base / "words.txt", base / "train", base / "val" / "val_annotations.txt"):
        _find("tinyimagenet", [path], how)
    key = f"{base.resolve()}|{_tree_fingerprint(base)}"

    def build() -> dict:
        wnids = sorted((base / "wnids.txt").read_text().split())
        index = {w: i for i, w in enumerate(wnids)}
        train = sorted(
            (w, f"train/{w}/images/{f.name}")
            for w in wnids
            for f in (base / "train" / w / "images").iterdir()
            if f.name.lower().endswith(IMAGE_EXTENSIONS)
        )
        annotations = (base / "val" / "val_annotations.txt").read_text().splitlines()
        rows = [line.split("\t") for line in annotations if line]
        test = sorted((wnid, f"val/images/{file}") for file, wnid, *_ in rows)
        members = {"train": train, "test": test}
        files = {split: [m for _, m in members[split]] for split in members}
        result = _decode_splits(base, files, (64, 64), num_workers=num_workers)
        for split in ("train", "test"):
            result[f"y_{split}"] = torch.tensor([index[w] for w, _ in members[split]], dtype=torch.int64)
        return result

    cached = _cached_tensors("tinyimagenet", key, build)
    words = {}
    for line in (base / "words.txt").read_text().splitlines():
        wnid, _, description = line.partition("\t")
        words[wnid] = description.split(",")[0].strip()
    wnids = sorted((base / "wnids.txt").read_text().split())
    return Dataset(
        name="tinyimagenet",
        task="classification",
        x_train=cached["x_train"],
        y_train=cached["y_train"],
        x_test=cached["x_test"],
        y_test=cached["y_test"],
        classes=[words.get(w, w) for w in wnids],
        mean=tuple(cached["mean"]),
        std=tuple(cached["std"]),
    )


CELEBA_ATTRIBUTES = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()


def load_celeba(
    root: Path,
    *,
    target: str = "Blond_Hair",
    group: str = "Male",
    image_size: int = 32,
    num_workers: int | None = None,
) -> Dataset:
    """CelebA (aligned faces) from ``root/celeba``: classify ``target``, with ``group`` as protected attribute.

    Binary attributes: class 1 / group code 1 is "has the attribute". Train is the official
    train partition (0), test the official test partition (2); the validation partition (1) is
    not used. Images are centre-cropped to a square and resized (bilinear) to ``image_size``:
    uint8 ``(N, 3, s, s)``; ``mean`` / ``std`` are the train statistics. Decoded images are
    cached under :func:`cache_dir` per ``image_size``.
    """
    _check_choice("target", target, CELEBA_ATTRIBUTES)
    _check_choice("group", group, CELEBA_ATTRIBUTES)
    size = _image_size(image_size)
    if size is None:
        raise ValueError("image_size=None: allowed values are a positive int or a pair (height, width)")
    if num_workers is not None:
        _check_int("num_workers", num_workers, minimum=0)
    how = "Download it with torchvision.datasets.CelebA(root, download=True) or from the CelebA website."
    base = _find("celeba", [root / "celeba"], how)
    files = {
        name: _find("celeba", [base / name], how)
        for name in ("img_align_celeba", "list_attr_celeba.txt", "list_eval_partition.txt")
    }
    names, attributes = _celeba_attributes(files["list_attr_celeba.txt"])
    lines = files["list_eval_partition.txt"].read_text().splitlines()
    partition = dict(line.split() for line in lines if line.strip())  # file -> "0" train, "1" val, "2" test
    splits = {
        "train": [f for f in attributes if partition.get(f) == "0"],
        "test": [f for f in attributes if partition.get(f) == "2"],
    }
    stat = files["list_eval_partition.txt"].stat()
    key = f"{base.resolve()}|{_tree_fingerprint(files['img_align_celeba'])}|{stat.st_mtime_ns}|size={size}"

    def build() -> dict:
        return _decode_splits(files["img_align_celeba"], splits, size, True, num_workers)

    images = _cached_tensors("celeba", key, build)
    column = {"target": names.index(target), "group": names.index(group)}

    def codes(split: str, which: str) -> torch.Tensor:
        return torch.tensor([attributes[f][column[which]] for f in splits[split]], dtype=torch.int64)

    return Dataset(
        name="celeba",
        task="classification",
        x_train=images["x_train"],
        y_train=codes("train", "target"),
        x_test=images["x_test"],
        y_test=codes("test", "target"),
        classes=[f"not {target}", target],
        groups_train={group: codes("train", "group")},
        groups_test={group: codes("test", "group")},
        group_names={group: [f"not {group}", group]},
        mean=tuple(images["mean"]),
        std=tuple(images["std"]),
    )


def _celeba_attributes(path: Path) -> tuple[list[str], dict[str, list[int]]]:
    """Attribute names and ``{file: [0/1 per attribute]}`` from list_attr_celeba.txt (values are -1 / 1)."""
    lines = path.read_text().splitlines()
    names = lines[1].split()
    attributes = {}
    for line in lines[2:]:
        if line.strip():
            file, *values = line.split()
            attributes[file] = [int(v == "1") for v in values]
    missing = sorted(set(CELEBA_ATTRIBUTES) - set(names))
    if missing:
        raise ValueError(f"{path}: attributes {missing} missing from the header line")
    return names, attributes


# ---------------------------------------------------------------------------------------------
# Tables


ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education_num", "marital_status", "occupation",
    "relationship", "race", "sex", "capital_gain", "capital_loss", "hours_per_week", "native_country", "income",
]  # fmt: skip


def _read_adult(path: Path):
    """One Adult file as a DataFrame; the test file's junk first line and trailing dots are handled."""
    import pandas as pd

    with _open_text(path) as f:
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
        path = _find_or_embedded("adult", [root / "adult" / file, root / file], f"{file}.xz", how)
        frames[split] = _read_adult(path).dropna().reset_index(drop=True)
    dataset = _tabular_dataset(
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
    with _open_text(path) as f:
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
    _check_choice("task", task, TASKS)
    _check_fraction("test_fraction", test_fraction)
    _check_int("seed", seed, minimum=0)
    if header != "infer" and header is not None and not isinstance(header, int):
        raise ValueError(f"header={header!r}: allowed values are 'infer', None or a row number")
    columns = {"drop": _column_list("drop", drop), "categorical": _column_list("categorical", categorical),
               "log": _column_list("log", log)}
    path = Path(path).expanduser()
    path = _find("csv", [path if path.is_absolute() else root / path], "Check the path option.")
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
    train, test = _split_indices(len(frame), test_fraction, seed, stratify)
    return _tabular_dataset(name, frame.iloc[train], frame.iloc[test], target, task)


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
    _check_int("seed", seed, minimum=0)
    how = "Download abalone.data from https://archive.ics.uci.edu/dataset/1/abalone."
    candidates = [root / "uci" / "abalone.data", root / "abalone.data"]
    path = _find_or_embedded("abalone", candidates, "abalone.data.xz", how)
    frame = _read_table(path, sep=",", header="infer")
    if frame.shape[1] != len(ABALONE_COLUMNS):
        raise ValueError(f"{path}: expected the {len(ABALONE_COLUMNS)} abalone columns, found {frame.shape[1]}")
    frame.columns = ABALONE_COLUMNS
    return _table_dataset("abalone", frame, "Rings", "regression", 0.2, seed)


# ---------------------------------------------------------------------------------------------
# Registry

DATASETS: dict[str, Callable[..., Dataset]] = {
    "mnist1d": load_mnist1d,
    "digits": load_digits,
    "synthetic": load_synthetic,
    "cifar10": load_cifar10,
    "cifar100": load_cifar100,
    "svhn": load_svhn,
    "imagefolder": load_imagefolder,
    "cifar10_jpeg": load_cifar10_jpeg,
    "tinyimagenet": load_tinyimagenet,
    "celeba": load_celeba,
    "adult": load_adult,
    "abalone": load_abalone,
    "diabetes": load_diabetes,
    "csv": load_csv,
}


def prepare_inputs(x: torch.Tensor, mean, std, device) -> torch.Tensor:
    """Raw dataset inputs -> float model inputs on `device`: uint8 images become (x/255 - mean)/std."""
    x = x.to(device)
    if x.dtype != torch.uint8:
        return x.float()
    shape = (1, -1) + (1,) * (x.dim() - 2)
    mean = torch.tensor(mean, device=device).view(shape)
    std = torch.tensor(std, device=device).view(shape)
    return (x.float() / 255 - mean) / std


def load_dataset(name: str, root: str | Path | None = None, **options) -> Dataset:
    """Load dataset ``name`` from :data:`DATASETS` with files under :func:`data_root` (``root``).

    Options are the keyword arguments of the dataset's loader, e.g.
    ``load_dataset("cifar100", label="coarse")``. Unknown names or options raise ValueError
    before anything is read.
    """
    if name not in DATASETS:
        raise ValueError(f"name={name!r}: allowed dataset names are {sorted(DATASETS)}")
    loader = DATASETS[name]
    _check_options(name, loader, options)
    return loader(data_root(root), **options)
