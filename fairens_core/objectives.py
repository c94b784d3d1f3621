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


def member_losses(outputs: torch.Tensor, y: torch.Tensor, task: str, label_smoothing: float = 0.0) -> torch.Tensor:
    """Per-member mean loss. outputs (M, B, C), y (M, B) -> (M,)."""
    M, B = outputs.shape[:2]
    if task == "regression":
        return ((outputs[..., 0] - y) ** 2).mean(1)
    ce = F.cross_entropy(outputs.flatten(0, 1), y.flatten(), label_smoothing=label_smoothing, reduction="none")
    return ce.view(M, B).mean(1)


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

    With learner dropout (`keep`, (M,) bool, Jeffares et al. 2023, App. G.7) the ensemble term is the loss
    of the k kept members' combined prediction, scaled by k instead of M: each kept member then
    gets a gradient of the same size as in plain joint training of k members (the ensemble
    term's gradient per member shrinks as 1/k), and a dropped member gets none from it.
    """
    M = outputs.shape[0]
    losses = member_losses(outputs, y.expand(M, -1), task, label_smoothing)
    total = losses.sum()
    if beta:
        k = M if keep is None else keep.sum()
        total = (1 - beta) * total + beta * k * ensemble_loss(outputs, y, task, combine, keep)
    return total, losses.detach()
