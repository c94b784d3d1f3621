"""Generated and bundled data: MNIST-1D, scikit-learn's digits and diabetes, and a synthetic
classification task with a protected minority group."""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from .checks import check_fraction, check_int, check_number
from .dataset import Dataset
from .files import atomic_write, cache_file
from .tabular import split_indices, standardise, tabular_dataset


def load_mnist1d(root: Path, *, n_samples: int = 10_000, seed: int = 42, test_fraction: float = 0.2) -> Dataset:
    """MNIST-1D (Greydanus, 2020), generated offline by the ``mnist1d`` package and cached as .npz.

    x is float32 ``(N, 1, 40)`` (channels first, for 1-D convolutions), y int64 digits 0-9.
    The package makes ``n_samples // 10`` signals per class, shuffles them and puts the first
    ``1 - test_fraction`` of them in train. ``root`` is unused.
    """
    check_int("n_samples", n_samples, minimum=10)
    check_int("seed", seed, minimum=0)
    check_fraction("test_fraction", test_fraction)
    from importlib.metadata import version

    key = f"n={n_samples}|seed={seed}|test_fraction={test_fraction!r}|mnist1d={version('mnist1d')}"
    path = cache_file("mnist1d", key, ".npz")
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
        atomic_write(path, lambda tmp: _save_npz(tmp, arrays))
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
    check_int("seed", seed, minimum=0)
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None]  # pixel values are counts 0..16
    y = bunch.target.astype(np.int64)
    train, test = split_indices(len(y), 0.2, seed, stratify=y)
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
    check_int("seed", seed, minimum=0)
    from sklearn.datasets import load_diabetes as sklearn_diabetes

    frame = sklearn_diabetes(as_frame=True, scaled=False).frame
    train, test = split_indices(len(frame), 0.2, seed)
    return tabular_dataset("diabetes", frame.iloc[train], frame.iloc[test], "target", "regression")


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
    check_int("n_samples", n_samples, minimum=20)
    check_int("n_classes", n_classes, minimum=2)
    check_int("n_features", n_features, minimum=2)
    check_number("imbalance", imbalance, minimum=1.0)
    check_fraction("minority_fraction", minority_fraction)
    check_number("minority_shift", minority_shift, minimum=0.0)
    check_int("seed", seed, minimum=0)
    check_fraction("test_fraction", test_fraction)
    counts = _class_counts(n_samples, n_classes, imbalance)
    if counts.min() < 4:
        raise ValueError(f"n_samples={n_samples}: too few for n_classes={n_classes} at imbalance={imbalance}")
    x, y, group = _make_synthetic(counts, n_features, minority_fraction, minority_shift, seed)
    train, test = split_indices(len(y), test_fraction, seed, stratify=2 * y + group)
    x_train, x_test = standardise(x[train], x[test])
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
