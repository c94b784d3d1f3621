"""The in-memory dataset every loader returns, and the error for missing files."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


TASKS = ("classification", "regression")


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
