"""Proper scoring rules and calibration errors of one (ensemble) predictive distribution.

Papers 002 and 003 judge ensembles by their calibration as well as their
accuracy: the coupling paper (The Dynamics of Functional Diversity throughout Neural
Network Training) reports test error and "mean average calibration error
(MACE)" of K-ensembles (Fig. 1c, 1d, 1j).

All functions take (N, C) probabilities of one model (e.g. ``mean_probs(member_probs)``
for the ensemble) and (N,) int labels, and return a float.
"""

from __future__ import annotations

from typing import Literal

import torch

from ._utils import ArrayLike, as_labels, as_tensor, safe_log


def _probs_and_labels(probs: ArrayLike, labels: ArrayLike) -> tuple[torch.Tensor, torch.Tensor]:
    probs = as_tensor(probs)
    if probs.ndim != 2:
        raise ValueError(f"probs must be (N, C), got shape {tuple(probs.shape)}; aggregate members first")
    return probs, as_labels(labels, device=probs.device)


def nll(probs: ArrayLike, labels: ArrayLike) -> float:
    """Negative log-likelihood (cross-entropy) of the true labels, averaged over examples.

    -(1/N) Σ_i log p_i,y_i; probabilities are clamped at the smallest positive
    float so that an underflowed 0 gives a large finite loss rather than inf.

    Args:
        probs: (N, C) probabilities.
        labels: (N,) int labels.
    """
    probs, labels = _probs_and_labels(probs, labels)
    true_class = probs.gather(1, labels[:, None]).squeeze(1)
    return float(-safe_log(true_class).mean())


def brier_score(probs: ArrayLike, labels: ArrayLike) -> float:
    """Multi-class Brier score (1/N) Σ_i ‖p_i − onehot(y_i)‖², in [0, 2].

    Summed over classes, as in Brier (1950) and Jeffares et al. 2023, §4.2 ((p̄ − y)ᵀ(p̄ − y));
    some libraries divide by C in addition.

    Args:
        probs: (N, C) probabilities.
        labels: (N,) int labels.
    """
    probs, labels = _probs_and_labels(probs, labels)
    one_hot = torch.nn.functional.one_hot(labels, probs.shape[1]).to(probs.dtype)
    return float(((probs - one_hot) ** 2).sum(dim=1).mean())


def _binned_calibration_error(
    confidence: torch.Tensor, hit: torch.Tensor, n_bins: int, binning: Literal["uniform", "adaptive"]
) -> torch.Tensor:
    """Σ_b (n_b / N) |mean(hit in b) − mean(confidence in b)| over non-empty bins.

    ``uniform``: n_bins equal-width bins [0, 1/n_bins), …, [1 − 1/n_bins, 1), and a
    confidence of exactly 1 in a bin of its own (torchmetrics' convention, the one readers
    compare with; float32 softmax rounds large margins to exactly 1).
    ``adaptive``: n_bins bins holding (almost) equally many examples, after
    sorting by confidence (Nixon et al. 2019).
    """
    hit = hit.to(confidence.dtype)
    if binning == "uniform":
        edges = torch.linspace(0, 1, n_bins + 1, dtype=confidence.dtype, device=confidence.device)[1:]
        bin_index = torch.bucketize(confidence, edges, right=True)  # edge values open the next bin; 1 -> n_bins
    elif binning == "adaptive":
        order = torch.argsort(confidence, stable=True)
        bin_index = torch.empty_like(order)
        bin_index[order] = torch.arange(confidence.numel(), device=confidence.device) * n_bins // confidence.numel()
    else:
        raise ValueError(f"binning must be 'uniform' or 'adaptive', got {binning!r}")
    count = torch.zeros(n_bins + 1, dtype=confidence.dtype, device=confidence.device)
    count.index_add_(0, bin_index, torch.ones_like(confidence))
    conf_sum = torch.zeros_like(count).index_add_(0, bin_index, confidence)
    hit_sum = torch.zeros_like(count).index_add_(0, bin_index, hit)
    # |Σ hit − Σ conf| / N equals (n_b / N) |acc_b − conf_b|, and is 0 for empty bins.
    return (hit_sum - conf_sum).abs().sum() / confidence.numel()


def expected_calibration_error(probs: ArrayLike, labels: ArrayLike, n_bins: int = 15) -> float:
    """Top-label expected calibration error with equal-width bins (Guo et al. 2017).

    ``ECE = Σ_b (n_b / N) |acc_b − conf_b|`` where conf is the max probability and
    acc whether its class is right.  Matches
    ``torchmetrics.functional.classification.multiclass_calibration_error``
    (norm "l1") with the same ``n_bins`` (tested), including its extra bin for
    confidences exactly equal to 1.

    Args:
        probs: (N, C) probabilities.
        labels: (N,) int labels.
        n_bins: number of bins (15, the torchmetrics default).
    """
    probs, labels = _probs_and_labels(probs, labels)
    confidence, predicted = probs.max(dim=1)
    return float(_binned_calibration_error(confidence, predicted == labels, n_bins, "uniform"))


def mace(
    probs: ArrayLike,
    labels: ArrayLike,
    n_bins: int = 15,
    binning: Literal["uniform", "adaptive"] = "uniform",
) -> float:
    """Mean (over classes) calibration error of every class's probability: the coupling paper's MACE.

    The coupling paper reports "mean average calibration error (MACE)" without the
    formula (its reference [3] is cut from our copy).  We implement the
    class-wise calibration error averaged over classes (Kull et al. 2019
    "classwise-ECE"; Nixon et al. 2019 "SCE"): for every class k, the
    one-vs-rest calibration error of p_k against 1{y = k}, then the mean over
    the C classes.  Unlike the top-label ECE it also judges the probabilities
    of the non-predicted classes.  ``binning="adaptive"`` uses equal-mass bins
    (Nixon et al.'s ACE).  Each per-class term equals
    ``torchmetrics.functional.classification.binary_calibration_error`` (tested).

    Args:
        probs: (N, C) probabilities.
        labels: (N,) int labels.
        n_bins: bins per class.
        binning: "uniform" (equal width) or "adaptive" (equal mass).
    """
    probs, labels = _probs_and_labels(probs, labels)
    one_hot = torch.nn.functional.one_hot(labels, probs.shape[1]).bool()
    per_class = [
        _binned_calibration_error(probs[:, k].contiguous(), one_hot[:, k], n_bins, binning)
        for k in range(probs.shape[1])
    ]
    return float(torch.stack(per_class).mean())
