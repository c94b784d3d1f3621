"""Training objectives of an ensemble (Jeffares et al. 2023, §5).

L_beta = (1 - beta) * ERR_bar + beta * ERR, where ERR_bar is the mean loss of the members and
ERR the loss of the ensemble's combined prediction. beta = 0 is independent training, beta = 1
joint training. We optimise M * L_beta, so that at beta = 0 each member's gradient is exactly
the gradient of its own loss (the usual step size of independent training).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def example_losses(outputs: torch.Tensor, y: torch.Tensor, task: str, label_smoothing: float = 0.0) -> torch.Tensor:
    """Every member's loss on every example. outputs (M, B, C), y (M, B) -> (M, B)."""
    M, B = outputs.shape[:2]
    if task == "regression":
        return (outputs[..., 0] - y) ** 2
    ce = F.cross_entropy(outputs.flatten(0, 1), y.flatten(), label_smoothing=label_smoothing, reduction="none")
    return ce.view(M, B)


def member_losses(outputs: torch.Tensor, y: torch.Tensor, task: str, label_smoothing: float = 0.0) -> torch.Tensor:
    """Per-member mean loss. outputs (M, B, C), y (M, B) -> (M,)."""
    return example_losses(outputs, y, task, label_smoothing).mean(1)


def ensemble_loss(outputs: torch.Tensor, y: torch.Tensor, task: str, combine: str = "prob",
                  keep: torch.Tensor | None = None) -> torch.Tensor:
    """Loss of the combined prediction of the members in `keep` (default: all).

    outputs (M, B, C); y (B,); keep (M,) bool. Regression averages outputs (MSE); classification
    averages probabilities (combine='prob') or scores/logits (combine='score') before the NLL.
    """
    if keep is not None:
        outputs = outputs[keep]
    if task == "regression":
        return ((outputs[..., 0].mean(0) - y) ** 2).mean()
    if combine == "score":
        return F.cross_entropy(outputs.mean(0), y)
    # log of the mean probability, computed stably in log space
    log_mean_p = torch.logsumexp(F.log_softmax(outputs, -1), dim=0) - math.log(outputs.shape[0])
    return F.nll_loss(log_mean_p, y)


def augmented_loss(outputs: torch.Tensor, y: torch.Tensor, beta: float, task: str, combine: str = "prob",
                   keep: torch.Tensor | None = None, label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """M * L_beta and the per-member losses. outputs (M, B, C), y (B,) shared by all members.

    With learner dropout (Jeffares et al. 2023, App. G.7), `keep` is either
    - (M,) bool, one mask for the batch: the ensemble term is the loss of the k kept members'
      combined prediction, scaled by k instead of M, so each kept member gets a gradient of the
      same size as in plain joint training of k members and a dropped member none from it; or
    - (B, M) bool, one mask per example (the authors' code): :func:`per_example_dropout_loss`.
    """
    M = outputs.shape[0]
    if keep is not None and keep.dim() == 2:
        return per_example_dropout_loss(outputs, y, beta, task, combine, keep, label_smoothing)
    losses = member_losses(outputs, y.expand(M, -1), task, label_smoothing)
    total = losses.sum()
    if beta:
        k = M if keep is None else keep.sum()
        total = (1 - beta) * total + beta * k * ensemble_loss(outputs, y, task, combine, keep)
    return total, losses.detach()


def per_example_dropout_loss(outputs: torch.Tensor, y: torch.Tensor, beta: float, task: str, combine: str,
                             keep: torch.Tensor, label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """M * L_beta with learner dropout drawn per example, as in the authors' code: for example b,
    (1 - beta) * the mean loss of its kept members + beta * the loss of their combined prediction,
    averaged over the batch. keep (B, M) bool, at least one True per row. Dropped members add
    nothing for that example. Returns the loss and the per-member mean losses (M,), detached."""
    M = outputs.shape[0]
    mask = keep.T.to(outputs.dtype)  # (M, B)
    k = mask.sum(0)  # (B,) kept members per example
    each = example_losses(outputs, y.expand(M, -1), task, label_smoothing)  # (M, B)
    if task == "regression":
        combined = ((outputs[..., 0] * mask).sum(0) / k - y) ** 2
    elif combine == "score":
        combined = F.cross_entropy((outputs * mask[..., None]).sum(0) / k[:, None], y, reduction="none")
    else:  # log of the kept members' mean probability; a dropped member's log-probability is -inf
        log_p = F.log_softmax(outputs, -1).masked_fill(~keep.T[..., None], float("-inf"))
        combined = -(torch.logsumexp(log_p, 0) - k.log()[:, None]).gather(1, y[:, None])[:, 0]
    per_example = (1 - beta) * (each * mask).sum(0) / k + beta * combined
    return M * per_example.mean(), each.detach().mean(1)
