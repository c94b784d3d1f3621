"""Accuracy overall, per class, and on groups of classes or examples.

Ko et al. (2023) (Ko et al., FAIR-Ensemble) measures fairness as the accuracy of the
K best (top-k) and K worst (bottom-k) classes of a reference model (§3.1,
"Balanced Dataset Sub-Groups", K = 10 by default) and of attribute subgroups
such as blond males in CelebA (§3.1, "Imbalanced Dataset Sub-Groups"); the
benefit of ensembling is the ratio ensemble / single model (§3.2, Fig. 1-3).

Conventions: ``preds`` is either float class scores (…, N, C) (probabilities
or logits) or integer labels (…, N); a leading member dimension M is allowed
wherever the docstring says so and then yields one result per member.
"""

from __future__ import annotations

from typing import Hashable

import torch

from ._utils import ArrayLike, as_labels, as_tensor, has_member_dim, predicted_labels
from .aggregation import mean_probs


def _correct(preds: ArrayLike, labels: ArrayLike) -> torch.Tensor:
    """Boolean (…, N) tensor: is the prediction right?"""
    pred_labels = predicted_labels(preds)
    if pred_labels.ndim not in (1, 2):
        raise ValueError("preds must be (N, C) / (M, N, C) float scores or (N,) / (M, N) int labels")
    return pred_labels == as_labels(labels, device=pred_labels.device)


def accuracy(preds: ArrayLike, labels: ArrayLike) -> float | torch.Tensor:
    """Fraction of correctly classified examples (top-1 accuracy).

    Args:
        preds: (N, C) scores or (N,) labels of one model, or (M, N, C) / (M, N)
            for M members at once.
        labels: (N,) int labels.

    Returns:
        A float for one model, a (M,) tensor for stacked members.
    """
    correct = _correct(preds, labels).double()
    result = correct.mean(dim=-1)
    return result if result.ndim else float(result)


def per_class_accuracy(preds: ArrayLike, labels: ArrayLike, num_classes: int | None = None) -> torch.Tensor:
    """Accuracy restricted to the examples of each class (recall per class).

    Args:
        preds: (N, C) / (N,) for one model or (M, N, C) / (M, N) for members.
        labels: (N,) int labels.
        num_classes: C; inferred from the scores, else from the labels.

    Returns:
        (C,) float64 tensor, or (M, C) for members.  Classes without any
        example get NaN.
    """
    preds_t = as_tensor(preds)
    labels = as_labels(labels, device=preds_t.device)
    if num_classes is None:
        num_classes = preds_t.shape[-1] if preds_t.is_floating_point() else int(labels.max()) + 1
    correct = _correct(preds_t, labels).double()  # (…, N)
    one_hot = torch.nn.functional.one_hot(labels, num_classes).double()  # (N, C)
    hits = correct @ one_hot  # (…, C): correct examples per class
    counts = one_hot.sum(dim=0)
    return hits / counts  # 0/0 -> NaN for empty classes


def _reference_class_accuracy(reference_preds: ArrayLike, labels: ArrayLike) -> torch.Tensor:
    """Per-class accuracy of a reference: one model, or the average over members."""
    reference_preds = as_tensor(reference_preds)
    acc = per_class_accuracy(reference_preds, labels)
    if has_member_dim(reference_preds):
        acc = acc.mean(dim=0)  # members' average per-class accuracy
    return acc


def _ranked_classes(reference_preds: ArrayLike, labels: ArrayLike, k: int, best: bool) -> torch.Tensor:
    acc = _reference_class_accuracy(reference_preds, labels)
    present = torch.nonzero(~torch.isnan(acc)).flatten()  # ignore classes absent from labels
    if not 0 < k <= present.numel():
        raise ValueError(f"k must be in [1, {present.numel()}], got {k}")
    # stable sort: among equal accuracies the smaller class index comes first.
    order = torch.sort(acc[present], descending=best, stable=True).indices
    return present[order[:k]]


def top_k_classes(reference_preds: ArrayLike, labels: ArrayLike, k: int = 10) -> torch.Tensor:
    """Indices of the K classes on which the reference is most accurate.

    Ko et al. (2023) §3.1: "we calculate the class accuracy of the base model and find
    the best and worst K (K = 10) performing classes".  Two references are
    supported through the shape of ``reference_preds``:

    * (N, C) or (N,): one given reference model (e.g. a base model);
    * (M, N, C) or (M, N): the members' *average per-class accuracy* (the
      "average single model"; Ko et al. 2023, Table 4 ranks classes this way).

    Args:
        reference_preds: reference predictions as above.
        labels: (N,) int labels of the data used for ranking.
        k: group size K.

    Returns:
        (K,) int64 class indices, best first (ties: smaller index first).
    """
    return _ranked_classes(reference_preds, labels, k, best=True)


def bottom_k_classes(reference_preds: ArrayLike, labels: ArrayLike, k: int = 10) -> torch.Tensor:
    """Indices of the K classes on which the reference is least accurate.

    Same reference conventions as :func:`top_k_classes` (Ko et al. 2023, §3.1).

    Returns:
        (K,) int64 class indices, worst first (ties: smaller index first).
    """
    return _ranked_classes(reference_preds, labels, k, best=False)


def class_mask(labels: ArrayLike, classes: ArrayLike) -> torch.Tensor:
    """Boolean (N,) mask of the examples whose label is in ``classes``."""
    labels = as_labels(labels)
    classes = as_labels(classes, device=labels.device)
    return torch.isin(labels, classes)


def group_accuracy(preds: ArrayLike, labels: ArrayLike, classes: ArrayLike | None) -> float | torch.Tensor:
    """Accuracy on the examples of a group of classes (e.g. top-k or bottom-k); None: all examples.

    Pooled over the group's examples, which equals the mean of the per-class
    accuracies when classes are balanced (CIFAR-100, TinyImageNet test sets).

    Args:
        preds: (N, C) / (N,) for one model, or (M, N, C) / (M, N) for members.
        labels: (N,) int labels.
        classes: (K,) class indices defining the group, or None for every example
            (then it is `accuracy`).

    Returns:
        A float (one model) or a (M,) tensor (members).
    """
    if classes is None:
        return accuracy(preds, labels)
    mask = class_mask(labels, classes)
    if not mask.any():
        raise ValueError("no example belongs to the given classes")
    correct = _correct(preds, labels).double()
    result = correct[..., mask.to(correct.device)].mean(dim=-1)
    return result if result.ndim else float(result)


def subgroup_accuracy(preds: ArrayLike, labels: ArrayLike, groups: ArrayLike) -> dict[Hashable, float]:
    """Accuracy of each subgroup of examples given per-example group labels.

    For attribute subgroups that are not classes, e.g. CelebA "blond male"
    (Ko et al. 2023, §3.1 "Imbalanced Dataset Sub-Groups", Fig. 3 and 7).

    Args:
        preds: (N, C) scores or (N,) labels of one model.
        labels: (N,) int labels.
        groups: (N,) group id of every example (any integer coding, e.g.
            2 * is_male + is_blond).

    Returns:
        {group id: accuracy} for every group present, sorted by group id.
    """
    correct = _correct(preds, labels).double()
    if correct.ndim != 1:
        raise ValueError("subgroup_accuracy takes the predictions of a single model")
    codes, index = torch.unique(as_tensor(groups).to(correct.device), return_inverse=True)
    # sums of 0/1 are exact in float64, so this equals each group's mean to the last bit
    right = torch.bincount(index, weights=correct, minlength=len(codes))
    counts = torch.bincount(index, minlength=len(codes))
    return {g: float(r / n) for g, r, n in zip(codes.tolist(), right.tolist(), counts.tolist())}


def gain_won_lost(member_preds: ArrayLike, labels: ArrayLike, classes: ArrayLike | None = None) -> tuple[float, float]:
    """The ensemble's gain over its average member, split into answers won and answers lost.

    With q_n the share of members right on example n and e_n = 1 when the probability-averaged
    ensemble is right: won = mean of e_n (1 - q_n) (examples the ensemble gets right, weighted by
    the share of members that were wrong), lost = mean of (1 - e_n) q_n (examples it gets wrong,
    weighted by the share that were right). won - lost = ensemble accuracy - mean member accuracy
    exactly: a member that is right in a minority is outvoted, and that is where a gain is lost.

    Args:
        member_preds: (M, N, C) member scores (probabilities for the average).
        labels: (N,) int labels.
        classes: the group's class indices, or None for every example.

    Returns:
        (won, lost) as fractions of the group's examples.
    """
    probs = as_tensor(member_preds)
    if probs.ndim != 3:
        raise ValueError("member_preds must be (M, N, C) member scores")
    members_right = _correct(probs, labels).double().mean(0)                  # q_n
    ensemble_right = _correct(mean_probs(probs), labels).double()             # e_n
    if classes is not None:
        mask = class_mask(labels, classes).to(members_right.device)
        if not mask.any():
            raise ValueError("no example belongs to the given classes")
        members_right, ensemble_right = members_right[mask], ensemble_right[mask]
    won = float((ensemble_right * (1 - members_right)).mean())
    lost = float(((1 - ensemble_right) * members_right).mean())
    return won, lost


def relative_gain(ensemble_value, single_value):
    """Relative gain of the ensemble over a single model: ensemble / single.

    Ko et al. (2023) §3.2: "the relative gain in accuracy, i.e., the ratio between the
    homogeneous ensemble and base model performance" (Fig. 1-3, 8, 18-19).
    Works element-wise on floats, arrays or tensors (e.g. whole curves).

    Which single model to divide by is the caller's choice; Ko et al. 2023 uses one
    shared "base model" (App. A.1).  Averaging the members' accuracies (the
    ``sizes=1`` point of :func:`ensemble_size_curve`) gives the expected single
    model and removes the luck of picking one.
    """
    return ensemble_value / single_value


def errors_fixed(ensemble_value: float, single_value: float) -> float:
    """Share of a single model's errors that the ensemble fixes: (ensemble - single) / (1 - single).

    Accuracies as fractions. A group with more errors to fix can gain more points, and a larger
    ratio ensemble / single (:func:`relative_gain`), without being helped more per error; this
    normalisation separates the two. NaN (undefined) when the single model makes no error.
    """
    left = 1.0 - float(single_value)
    return (float(ensemble_value) - float(single_value)) / left if left != 0 else float("nan")
