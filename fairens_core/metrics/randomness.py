"""How far apart training runs drift: diagnostics of training stochasticity.

Ko et al. (2023) §4.2 compares sources of randomness (initialisation,
batch order, data augmentation) with two numbers computed from the accuracy
trajectories of R training runs (Fig. 5):

* "the L1-Distance of the accuracy trajectories during training, which is
  calculated for every epoch by averaging the absolute distance in accuracy
  among the ensemble members and averaging these values across the training
  epochs";
* "the Variance of the different training episodes' accuracy at each epoch and
  then average over all the epochs".

Fig. 5 computes both on the top-10 and bottom-10 class groups; pass the
trajectories of a group (``accuracy_trajectories(..., classes=top)``) for that.
"""

from __future__ import annotations

import torch

from ._utils import ArrayLike, as_tensor
from .groups import class_mask


def accuracy_trajectories(
    preds: ArrayLike, labels: ArrayLike, classes: ArrayLike | None = None
) -> torch.Tensor:
    """Per-epoch accuracy of every run, optionally on a group of classes.

    Args:
        preds: (R, E, N, C) float scores or (R, E, N) int labels: R runs, E epochs.
        labels: (N,) int labels.
        classes: optional class indices; accuracy is then computed on their examples.

    Returns:
        (R, E) float64 accuracies.
    """
    preds = as_tensor(preds)
    pred_labels = preds.argmax(dim=-1) if preds.is_floating_point() else preds.long()
    labels = as_tensor(labels, device=pred_labels.device).long()
    correct = (pred_labels == labels).double()  # (R, E, N)
    if classes is not None:
        correct = correct[..., class_mask(labels, classes)]
    return correct.mean(dim=-1)


def _check_trajectories(trajectories: ArrayLike) -> torch.Tensor:
    trajectories = as_tensor(trajectories, dtype=torch.float64)
    if trajectories.ndim != 2 or trajectories.shape[0] < 2:
        raise ValueError("trajectories must have shape (runs >= 2, epochs)")
    return trajectories


def trajectory_l1_distance(trajectories: ArrayLike) -> float:
    """Mean absolute accuracy gap between runs, averaged over epochs (Ko et al. 2023, §4.2).

    For every epoch e, the absolute differences ``|a_i(e) - a_j(e)|`` are averaged
    over all unordered pairs of runs i < j; the result is averaged over epochs.

    Args:
        trajectories: (R, E) accuracies of R >= 2 runs over E epochs (in the unit
            you want back: fractions or percent).

    Returns:
        The L1 distance, in the units of ``trajectories``.
    """
    t = _check_trajectories(trajectories)
    gaps = (t[:, None, :] - t[None, :, :]).abs()  # (R, R, E), symmetric, zero diagonal
    num_runs = t.shape[0]
    per_epoch = gaps.sum(dim=(0, 1)) / (num_runs * (num_runs - 1))  # mean over ordered pairs i != j
    return float(per_epoch.mean())


def trajectory_variance(trajectories: ArrayLike, correction: int = 0) -> float:
    """Variance of accuracy across runs at each epoch, averaged over epochs (Ko et al. 2023, §4.2).

    Args:
        trajectories: (R, E) accuracies of R >= 2 runs over E epochs.
        correction: 0 for the population variance (numpy's default, our
            reading of the paper), 1 for the unbiased sample variance.

    Returns:
        The mean per-epoch variance, in squared units of ``trajectories``.
    """
    t = _check_trajectories(trajectories)
    return float(torch.var(t, dim=0, correction=correction).mean())
