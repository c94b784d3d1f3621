"""Small input helpers shared by the metric modules (private).

Every public metric accepts torch tensors, numpy arrays or lists of per-member
arrays, and keeps tensors on the device they arrived on.  These helpers are the
only place where that conversion happens, so the metric functions themselves
can stay short.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import torch

ArrayLike = Union[torch.Tensor, np.ndarray, Sequence]
SeedLike = Union[int, torch.Generator, None]


def as_tensor(x: ArrayLike, dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
    """Convert ``x`` to a tensor without copying when possible.

    A list/tuple of tensors or arrays is stacked along a new first dimension, which
    is the natural way to hand over one prediction array per ensemble member.
    """
    if isinstance(x, (list, tuple)) and len(x) > 0 and isinstance(x[0], (torch.Tensor, np.ndarray)):
        x = torch.stack([torch.as_tensor(item) for item in x])
    elif hasattr(x, "to_numpy"):  # pandas Series / DataFrame: by position, never by index label
        x = x.to_numpy(copy=True)
    return torch.as_tensor(x, dtype=dtype, device=device)


def as_labels(labels: ArrayLike, device=None) -> torch.Tensor:
    """Integer class labels of shape (N,) as an int64 tensor."""
    return as_tensor(labels, device=device).long()


def predicted_labels(preds: ArrayLike) -> torch.Tensor:
    """Hard predictions from either class scores or labels.

    Floating-point input holds class scores (probabilities or logits) with the
    classes last, and its argmax over the last dimension is returned; integer
    or boolean input already holds labels.  Argmax of probabilities and of
    logits agree, so either kind of score may be passed.
    """
    preds = as_tensor(preds)
    if preds.is_floating_point():
        return preds.argmax(dim=-1)
    return preds.long()


def has_member_dim(preds: torch.Tensor) -> bool:
    """True for stacked members: (M, N, C) scores or (M, N) integer labels."""
    return preds.ndim == (3 if preds.is_floating_point() else 2)


def check_members(preds: torch.Tensor, name: str = "preds", ndim: int = 3) -> None:
    """Raise a readable error unless ``preds`` has ``ndim`` dimensions (members first)."""
    if preds.ndim != ndim:
        raise ValueError(
            f"{name} must have shape (members, examples, classes) = {ndim} dims, got shape {tuple(preds.shape)}"
        )


def member_weights(num_members: int, weights: ArrayLike | None, like: torch.Tensor) -> torch.Tensor:
    """Ensemble weights w_j of shape (M,): uniform 1/M by default, else validated.

    Jeffares et al. (2023) §4.1 assumes sum_j w_j = 1 and w_j >= 0; the
    ambiguity-type identities need the weights to sum to one, so we check it.
    """
    if weights is None:
        return torch.full((num_members,), 1.0 / num_members, dtype=like.dtype, device=like.device)
    w = as_tensor(weights, dtype=like.dtype, device=like.device)
    if w.shape != (num_members,):
        raise ValueError(f"weights must have shape ({num_members},), got {tuple(w.shape)}")
    if (w < 0).any() or not torch.isclose(w.sum(), torch.ones((), dtype=w.dtype, device=w.device), atol=1e-6):
        raise ValueError("weights must be non-negative and sum to 1")
    return w


def make_generator(seed: SeedLike) -> torch.Generator:
    """A CPU ``torch.Generator`` from an int seed (or the generator itself).

    Random choices (which members, which pairs) are drawn on the CPU and the
    resulting indices moved to the data's device, so a seed gives the same
    draws on CPU and CUDA.
    """
    if isinstance(seed, torch.Generator):
        return seed
    generator = torch.Generator()
    generator.manual_seed(0 if seed is None else int(seed))
    return generator


def safe_log(p: torch.Tensor) -> torch.Tensor:
    """log(p) with p clamped to the smallest positive normal number of its dtype.

    Softmax outputs can underflow to exactly 0 in float32; clamping keeps losses
    finite (about -87 in float32, -708 in float64) instead of returning inf.
    """
    return torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))
