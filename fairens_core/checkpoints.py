"""Checkpoints of a group of members in training: saved atomically, read as tensors only.

A checkpoint holds tensors, numbers, strings and containers of them (weights, optimizer state,
history), so it is read with `torch.load(weights_only=True)`: a file planted in the cache can
never run code when it is loaded. A checkpoint that cannot be read (truncated, garbage, or a
pickle that would need code) is named in a `DamagedCacheWarning`, moved aside and treated as
absent, so the group it belonged to is trained again instead of blocking its config for good.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import torch

from .records import CacheWriteError, DamagedCacheWarning, move_aside


class Checkpoint:
    """Atomic save / tensors-only load of one group's state at an epoch boundary."""

    def __init__(self, path: Path | None):
        self.path = path

    def load(self) -> dict | None:
        """The saved state, or None: no checkpoint, or a damaged one (warned and moved aside)."""
        if self.path is None or not self.path.exists():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 -- whatever the reason, the file cannot be used
            problem = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        else:
            if isinstance(state, dict):
                return state
            problem = f"holds a {type(state).__name__}, not a dict of tensors"
        aside = move_aside(self.path)
        warnings.warn(f"unreadable checkpoint {self.path} ({problem}); moved aside to {aside}; "
                      "its members will be trained again", DamagedCacheWarning, stacklevel=2)
        return None

    def save(self, state: dict):
        if self.path is None:
            return
        # a unique temporary name: two writers never share one; os.replace makes the swap atomic
        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent)
            with os.fdopen(fd, "wb") as f:
                torch.save(state, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as err:
            raise CacheWriteError(f"cannot write the checkpoint {self.path}: {err.strerror or err} "
                                  f"[{type(err).__name__}]") from err
        finally:
            if tmp is not None:
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
