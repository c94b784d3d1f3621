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

Modules: ``dataset`` (the :class:`Dataset` every loader returns), ``files`` (data root, cache,
finding files), ``checks`` (loader options), and the loaders by kind of data: ``generated``
(mnist1d, digits, diabetes, synthetic), ``images`` (CIFAR, SVHN, image folders and zips, Tiny
ImageNet, CelebA) and ``tabular`` (Adult, Abalone, any CSV file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from .checks import check_options
from .dataset import TASKS, Dataset, DatasetNotFoundError
from .files import cache_dir, data_root
from .generated import load_diabetes, load_digits, load_mnist1d, load_synthetic
from .images import (load_celeba, load_cifar10, load_cifar10_jpeg, load_cifar100, load_imagefolder, load_svhn,
                     load_tinyimagenet)
from .tabular import load_abalone, load_adult, load_csv

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

__all__ = ["DATASETS", "TASKS", "Dataset", "DatasetNotFoundError", "cache_dir", "data_root", "load_dataset",
           "prepare_inputs", *(loader.__name__ for loader in DATASETS.values())]


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
    check_options(name, loader, options)
    return loader(data_root(root), **options)
