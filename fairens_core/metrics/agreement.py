"""Functional (dis)similarity between models' predictions.

* The coupling paper, Fig. 1e-f: "symmetric KL
  divergence between predicted class probability vectors", computed point-wise
  and averaged over test examples.
* The Fort et al. (2019) reproduction: "disagreement between
  predictions", the fraction of test examples whose predicted classes differ,
  shown as member-by-member heat maps (the same quantity as the churn of Ko et al.
  2023, eq. 1).
"""

from __future__ import annotations

import torch

from ._utils import ArrayLike, as_tensor, check_members, predicted_labels, safe_log


def _kl_per_example(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) = Σ_k p_k (log p_k − log q_k) over the last dimension (0 log 0 = 0)."""
    return (torch.special.xlogy(p, p) - p * safe_log(q)).sum(dim=-1)


def symmetric_kl(p: ArrayLike, q: ArrayLike) -> float:
    """Symmetric KL divergence KL(p ‖ q) + KL(q ‖ p), averaged over examples (the coupling paper, Fig. 1e-f).

    The sum of both directions (Jeffreys divergence); halve it for the mean of
    the two directions.  Zero iff p = q on every example.

    Args:
        p, q: (N, C) probabilities of two models.

    Returns:
        Mean over the N examples.
    """
    p = as_tensor(p)
    q = as_tensor(q, device=p.device)
    return float((_kl_per_example(p, q) + _kl_per_example(q, p)).mean())


def pairwise_symmetric_kl(probs: ArrayLike) -> torch.Tensor:
    """Symmetric KL between every pair of members: (M, M) matrix with zero diagonal.

    Args:
        probs: (M, N, C) member probabilities.

    Returns:
        (M, M) tensor; entry (i, j) = ``symmetric_kl(probs[i], probs[j])``.
    """
    probs = as_tensor(probs)
    check_members(probs, "probs")
    p, q = probs[:, None], probs[None, :]  # broadcast to (M, M, N, C)
    per_example = _kl_per_example(p, q) + _kl_per_example(q, p)
    return per_example.mean(dim=-1)


def pairwise_disagreement(preds: ArrayLike) -> torch.Tensor:
    """Fraction of examples on which members i and j predict different classes: (M, M).

    The Fort et al. (2019) reproduction "Disagreement Between Predictions"; entry (i, j) equals
    ``churn(preds[i], preds[j])`` of Ko et al. 2023, eq. 1.

    Args:
        preds: (M, N, C) float scores or (M, N) int labels.

    Returns:
        (M, M) float64 tensor, symmetric with zero diagonal.
    """
    labels = predicted_labels(preds)  # (M, N)
    if labels.ndim != 2:
        raise ValueError("preds must be (M, N, C) scores or (M, N) labels")
    return (labels[:, None, :] != labels[None, :, :]).double().mean(dim=-1)


def mean_off_diagonal(matrix: ArrayLike) -> float:
    """Mean of the off-diagonal entries of a square (M, M) matrix: the average over pairs i ≠ j."""
    matrix = as_tensor(matrix, dtype=torch.float64)
    size = matrix.shape[0]
    if matrix.shape != (size, size) or size < 2:
        raise ValueError("matrix must be square with at least 2 rows")
    off_diagonal = ~torch.eye(size, dtype=torch.bool, device=matrix.device)
    return float(matrix[off_diagonal].mean())
