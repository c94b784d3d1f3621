"""Forgetting events (Toneva et al. 2019), as used by the coupling paper, §2.1.

A forgetting event of an example is a transition from correctly to incorrectly
classified between two consecutive evaluations (Toneva et al. define it per
gradient update; the coupling paper counts it on the test set once per epoch, Fig. 1g-h).
The coupling paper's Fig. 1g shows the number of events per epoch, Fig. 1h the events
summed over the test set in a window of epochs after coupling ("cumulative
forgetting").

Input: the predictions of one run at E successive epochs, (E, N, C) float
scores or (E, N) int labels, with (N,) int labels.
"""

from __future__ import annotations

import torch

from ._utils import ArrayLike, as_labels, predicted_labels


def _forgetting_transitions(epoch_preds: ArrayLike, labels: ArrayLike) -> torch.Tensor:
    """(E − 1, N) boolean: example n is forgotten between epoch e and e + 1."""
    pred_labels = predicted_labels(epoch_preds)  # (E, N)
    if pred_labels.ndim != 2:
        raise ValueError("epoch_preds must be (E, N, C) scores or (E, N) labels")
    correct = pred_labels == as_labels(labels, device=pred_labels.device)
    return correct[:-1] & ~correct[1:]


def forgetting_events(epoch_preds: ArrayLike, labels: ArrayLike) -> torch.Tensor:
    """Number of forgetting events (correct → incorrect) of every example.

    Args:
        epoch_preds: (E, N, C) float scores or (E, N) int labels at E epochs.
        labels: (N,) int labels.

    Returns:
        (N,) int64 counts.  Examples never classified correctly have 0 events;
        Toneva et al. treat those separately as "never learned".
    """
    return _forgetting_transitions(epoch_preds, labels).sum(dim=0)


def forgetting_events_per_epoch(epoch_preds: ArrayLike, labels: ArrayLike) -> torch.Tensor:
    """Number of examples forgotten at each epoch transition (the coupling paper, Fig. 1g).

    Returns:
        (E − 1,) int64; entry e counts the events between epochs e and e + 1.
    """
    return _forgetting_transitions(epoch_preds, labels).sum(dim=1)


def cumulative_forgetting(epoch_preds: ArrayLike, labels: ArrayLike, start: int = 0, stop: int | None = None) -> int:
    """Forgetting events summed over examples within a window of epochs (the coupling paper, Fig. 1h).

    Only transitions between two epochs inside ``epoch_preds[start:stop]`` (Python
    slice semantics) are counted, e.g. ``start = t`` counts from the coupling
    epoch t to the end of training.

    Returns:
        Total number of events in the window.
    """
    window = predicted_labels(epoch_preds)[start:stop]
    if window.shape[0] < 2:
        return 0
    return int(forgetting_events(window, labels).sum())
