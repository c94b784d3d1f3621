"""Ensemble aggregation: turn member predictions (M, N, C) into one ensemble prediction.

Every function takes the members along the first dimension and returns the
ensemble's prediction for the N examples, so the result can be passed to any
single-model metric (``accuracy``, ``nll``, ``expected_calibration_error``...).

References
----------
* Ko et al. (2023) (Ko et al., FAIR-Ensemble) §3: homogeneous ensembles average the
  members' softmax outputs.
* Jeffares et al. (2023) §4.2: probability averaging p̄ = Σ_j w_j p_j and
  score averaging q̄ = softmax(Σ_j w_j f_j).
* Kondratyuk et al. (2020) (Kondratyuk et al.) eq. 1: geometric mean μ = (y_1 ⋯ y_n)^(1/n).
"""

from __future__ import annotations

import torch

from ._utils import ArrayLike, as_tensor, check_members, member_weights, safe_log


def mean_probs(probs: ArrayLike, weights: ArrayLike | None = None) -> torch.Tensor:
    """Arithmetic mean of the members' probabilities (probability averaging).

    Args:
        probs: (M, N, C) member probabilities.
        weights: optional (M,) non-negative weights summing to 1; uniform if None.

    Returns:
        (N, C) ensemble probabilities p̄ = Σ_j w_j p_j (Jeffares et al. 2023, §4.2 "probability
        averaging"; the default aggregation of papers 000, 002 and 003).
    """
    probs = as_tensor(probs)
    check_members(probs, "probs")
    w = member_weights(probs.shape[0], weights, probs)
    return torch.einsum("m,mnc->nc", w, probs)


def geometric_mean_probs(probs: ArrayLike, normalize: bool = True) -> torch.Tensor:
    """Element-wise geometric mean of the members' probabilities.

    Kondratyuk et al. (2020) (Kondratyuk et al.) eq. 1: μ = (y_1 y_2 ⋯ y_n)^(1/n), computed in log
    space as exp(mean_j log y_j) to avoid underflow of the product.

    Eq. 1 itself is not normalised (its rows sum to at most 1 by the AM-GM
    inequality).  With ``normalize=True`` (default) each row is rescaled to sum
    to 1 so the result is a distribution usable by ``nll`` / ECE; the argmax, and
    hence accuracy, is the same either way.  Normalised, it equals
    softmax(mean_j log p_j), i.e. score averaging of the log-probabilities.

    Args:
        probs: (M, N, C) member probabilities.
        normalize: rescale each example's output to sum to one.

    Returns:
        (N, C) ensemble prediction.
    """
    probs = as_tensor(probs)
    check_members(probs, "probs")
    mean_log = safe_log(probs).mean(dim=0)
    if normalize:
        return torch.softmax(mean_log, dim=-1)
    return mean_log.exp()


def score_average(logits: ArrayLike, weights: ArrayLike | None = None) -> torch.Tensor:
    """Score (logit) averaging: softmax of the weighted mean of the members' logits.

    Jeffares et al. (2023) §4.2 (1): q̄ = φ(f̄) with f̄ = Σ_j w_j f_j and φ = softmax.
    Returns probabilities, like the other aggregators; the averaged logits
    themselves are ``torch.einsum("m,mnc->nc", w, logits)``.

    Args:
        logits: (M, N, C) member scores (pre-softmax outputs).
        weights: optional (M,) weights summing to 1; uniform if None.

    Returns:
        (N, C) ensemble probabilities q̄.
    """
    logits = as_tensor(logits)
    check_members(logits, "logits")
    w = member_weights(logits.shape[0], weights, logits)
    return torch.softmax(torch.einsum("m,mnc->nc", w, logits), dim=-1)


def majority_vote(preds: ArrayLike, num_classes: int | None = None) -> torch.Tensor:
    """Plurality vote of the members' hard predictions.

    Each member votes for its argmax class; the ensemble predicts the class with
    the most votes.  Ties go to the smallest class index (deterministic; the
    papers do not specify a tie rule).

    Args:
        preds: (M, N, C) member probabilities or logits, or (M, N) predicted labels.
        num_classes: number of classes C; needed only when ``preds`` holds labels
            (defaults to the largest label + 1).

    Returns:
        (N,) int64 predicted labels.
    """
    preds = as_tensor(preds)
    if preds.ndim == 3:
        num_classes = preds.shape[-1]
        votes = preds.argmax(dim=-1)
    elif preds.ndim == 2:
        votes = preds.long()
        num_classes = int(votes.max()) + 1 if num_classes is None else num_classes
    else:
        raise ValueError(f"preds must be (M, N, C) scores or (M, N) labels, got shape {tuple(preds.shape)}")
    counts = torch.nn.functional.one_hot(votes, num_classes).sum(dim=0)  # (N, C)
    # argmax returns the first maximal index, which implements the tie rule.
    return counts.argmax(dim=-1)
