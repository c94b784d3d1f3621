"""Inference cost of an ensemble (Kondratyuk et al. 2020, Kondratyuk et al. 2020).

Kondratyuk et al. (2020) §4 compares accuracy against FLOPs, where an ensemble of n models
costs the sum of its members' FLOPs ("essentially multiply the base FLOPs by n").
"""

from __future__ import annotations

from typing import Sequence, Union

from torch import nn

from ..models import model_flops


def ensemble_flops(members: Sequence[Union[int, nn.Module]], input_shape: Sequence[int] | None = None) -> int:
    """Forward FLOPs of an ensemble for one example: the sum over its members (Kondratyuk et al. 2020, §4).

    Args:
        members: per-member FLOPs (ints) and/or models; models are measured with
            ``fairens_core.models.model_flops(model, input_shape)``.
        input_shape: shape of one example (without batch dimension); required
            when ``members`` contains models.

    Returns:
        Total FLOPs per example.
    """
    total = 0
    for member in members:
        if isinstance(member, nn.Module):
            if input_shape is None:
                raise ValueError("input_shape is required to count the FLOPs of a model")
            total += int(model_flops(member, tuple(input_shape)))
        else:
            total += int(member)
    return total
