"""Batched data augmentation that runs where the data lives (CPU or GPU).

Each member draws its augmentation parameters from its own generator (so members can
share or differ in this source of randomness); the pixels are then transformed for all
members in one batched op, as fast CIFAR trainers do, so augmentation is never the
bottleneck. The trainer draws a whole epoch's parameters at once (`draw` per step, on the
CPU: the same numbers on every device) and copies them to the device in one transfer, so
the training step itself never waits for the host.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

PAD = 4  # crop: translate by up to 4 pixels (the standard CIFAR recipe); shift: by up to 4 samples
CUTOUT = 8  # side of the square cut out of an image


def _draw(kinds, n, spatial, gen) -> dict:
    """Random parameters for n examples from one member's generator (on the CPU)."""
    p = {}
    if "flip" in kinds:
        p["flip"] = torch.rand(n, generator=gen) < 0.5
    if "crop" in kinds or "shift" in kinds:
        p["offset"] = torch.randint(0, 2 * PAD + 1, (n, len(spatial)), generator=gen)
    if "cutout" in kinds:
        p["center"] = torch.stack([torch.randint(0, s, (n,), generator=gen) for s in spatial], 1)
    return p


def _translate(x: torch.Tensor, offset: torch.Tensor) -> torch.Tensor:
    """Shift every example by its own offset (zero padding). x (K, C, *spatial)."""
    spatial = x.shape[2:]
    x = F.pad(x, [PAD, PAD] * len(spatial))
    for d, size in enumerate(spatial):
        dim = 2 + d
        idx = offset[:, d, None] + torch.arange(size, device=x.device)  # (K, size)
        shape = [x.shape[0]] + [1] * (x.dim() - 1)
        shape[dim] = size
        expand = list(x.shape)
        expand[dim] = size
        x = x.gather(dim, idx.view(shape).expand(expand))
    return x


def _cutout(x: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    mask = torch.ones_like(x[:, :1])
    grids = torch.meshgrid(*[torch.arange(s, device=x.device) for s in x.shape[2:]], indexing="ij")
    inside = torch.ones_like(mask, dtype=torch.bool)
    for d, grid in enumerate(grids):
        c = center[:, d].view(-1, *[1] * len(grids))
        inside = inside & ((grid - c).abs() <= CUTOUT // 2).unsqueeze(1)
    return x * mask.masked_fill(inside, 0)


def draw(kinds: tuple[str, ...], n: int, spatial: tuple[int, ...], generators: list[torch.Generator]) -> dict:
    """Augmentation parameters of one step for M members of n examples each, concatenated
    member after member (M*n rows, on the CPU): `generators[m]` drives member m's draws."""
    draws = [_draw(kinds, n, spatial, g) for g in generators]
    return {k: torch.cat([d[k] for d in draws]) for k in draws[0]}


def apply(x: torch.Tensor, kinds: tuple[str, ...], params: dict) -> torch.Tensor:
    """Augment a stacked batch x (M, B, C, *spatial) with drawn `params` (on x's device)."""
    if not kinds:
        return x
    flat = x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])
    if "flip" in kinds:
        flat = torch.where(params["flip"].view(-1, *[1] * (flat.dim() - 1)), flat.flip(-1), flat)
    if "offset" in params:
        flat = _translate(flat, params["offset"])
    if "cutout" in kinds:
        flat = _cutout(flat, params["center"])
    return flat.reshape(x.shape)


def augment(x: torch.Tensor, kinds: tuple[str, ...], generators: list[torch.Generator]) -> torch.Tensor:
    """Augment a stacked batch. x (M, B, C, *spatial) float -> same shape.

    `generators[m]` drives member m's random draws.
    """
    if not kinds:
        return x
    params = draw(kinds, x.shape[1], tuple(x.shape[3:]), generators)
    return apply(x, kinds, {k: v.to(x.device) for k, v in params.items()})
