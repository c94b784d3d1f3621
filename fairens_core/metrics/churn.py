"""Predictive churn between models, and the Pearson correlation used to relate it to gains.

Ko et al. (2023) §4.1 eq. 1, following Milani Fard et al. (2016):
C(f1, f2) = E_x[ 1{ŷ_x;f1 ≠ ŷ_x;f2} ], the fraction of examples on which two
models predict different classes.  For an ensemble, Ko et al. 2023 reports the
average churn over 100 pairs of members sampled without replacement, overall
and separately on the top-k and bottom-k classes (Fig. 4), and the Pearson
correlation between churn and the ensemble's accuracy gain (Fig. 22).
"""

from __future__ import annotations

import itertools

import torch

from ._utils import ArrayLike, SeedLike, as_tensor, make_generator, predicted_labels


def _select(x: torch.Tensor, mask: ArrayLike | None) -> torch.Tensor:
    """Keep the examples (last dim of hard labels) selected by a boolean mask."""
    if mask is None:
        return x
    mask = as_tensor(mask, dtype=torch.bool, device=x.device)
    if not mask.any():
        raise ValueError("mask selects no example")
    return x[..., mask]


def churn(preds_a: ArrayLike, preds_b: ArrayLike, mask: ArrayLike | None = None) -> float:
    """Fraction of examples on which two models' predicted classes differ (Ko et al. 2023, eq. 1).

    Symmetric, and 0 for identical predictions.

    Args:
        preds_a, preds_b: (N, C) float scores or (N,) int labels of the two models.
        mask: optional (N,) boolean mask restricting the expectation to a group of
            examples, e.g. ``class_mask(labels, bottom_k)`` for bottom-k churn.

    Returns:
        Churn in [0, 1].
    """
    a = _select(predicted_labels(preds_a), mask)
    b = _select(predicted_labels(preds_b).to(a.device), mask)
    return float((a != b).double().mean())


def mean_pairwise_churn(
    member_preds: ArrayLike,
    num_pairs: int = 100,
    seed: SeedLike = 0,
    mask: ArrayLike | None = None,
) -> float:
    """Average churn over random pairs of ensemble members (Ko et al. 2023, §4.1).

    ``num_pairs`` distinct unordered pairs are sampled without replacement from
    the M(M-1)/2 possible pairs; if there are no more than ``num_pairs`` pairs,
    all of them are used (then the seed plays no role).

    Args:
        member_preds: (M, N, C) float scores or (M, N) int labels, M >= 2.
        num_pairs: number of pairs (100 in Ko et al. 2023).
        seed: int seed or ``torch.Generator``.
        mask: optional (N,) boolean example mask (group churn).

    Returns:
        Mean churn over the pairs.
    """
    labels = predicted_labels(member_preds)  # (M, N)
    num_members = labels.shape[0]
    if labels.ndim != 2 or num_members < 2:
        raise ValueError("member_preds must hold at least two members: (M, N, C) or (M, N)")
    pairs = list(itertools.combinations(range(num_members), 2))
    if len(pairs) > num_pairs:
        chosen = torch.randperm(len(pairs), generator=make_generator(seed))[:num_pairs]
        pairs = [pairs[i] for i in chosen.tolist()]
    return sum(churn(labels[i], labels[j], mask) for i, j in pairs) / len(pairs)


def pearson_r(x: ArrayLike, y: ArrayLike) -> float:
    """Pearson correlation coefficient between two 1-D samples.

    Ko et al. (2023) §4.1 / Fig. 22 correlates churn with the ensemble's test accuracy
    improvement across architectures (r = 0.975 on CIFAR-100).

    Args:
        x, y: (n,) paired observations, n >= 2.

    Returns:
        r in [-1, 1]; NaN if either sample is constant.
    """
    x = as_tensor(x, dtype=torch.float64).flatten()
    y = as_tensor(y, dtype=torch.float64, device=x.device).flatten()
    if x.shape != y.shape or x.numel() < 2:
        raise ValueError("x and y must have the same length >= 2")
    dx, dy = x - x.mean(), y - y.mean()
    return float((dx * dy).sum() / torch.sqrt((dx * dx).sum() * (dy * dy).sum()))
