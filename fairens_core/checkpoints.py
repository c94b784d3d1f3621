"""Checkpoints of a group of members in training: saved atomically, read as tensors only.

A checkpoint holds tensors, numbers, strings and containers of them (weights, optimizer state,
history), so it is read with `torch.load(weights_only=True)`: a file planted in the cache can
never run code when it is loaded.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch


class Checkpoint:
    """Atomic save / tensors-only load of one group's state at an epoch boundary."""

    def __init__(self, path: Path | None):
        self.path = path

    def load(self):
        if self.path is None or not self.path.exists():
            return None
        return torch.load(self.path, map_location="cpu", weights_only=True)

    def save(self, state: dict):
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # a unique temporary name: two writers never share one; os.replace makes the swap atomic
        fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
        os.close(fd)
        try:
            torch.save(state, tmp)
            os.replace(tmp, self.path)
        finally:
            Path(tmp).unlink(missing_ok=True)


def to_device(obj, device):
    """Tensors in nested dicts / lists moved to `device`; everything else as it is."""
    if torch.is_tensor(obj):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_device(v, device) for v in obj]
    return obj
