"""Batched data augmentation that runs where the data lives (CPU or GPU).

Images and signals (examples of shape (C, *spatial)): flip, crop (shift for 1-D signals),
cutout. Tables (examples of shape (F,)): jitter, Gaussian noise added to every standardised
feature, the tabular stand-in for random crops and flips.

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
JITTER = 0.1  # std of the noise added to each standardised feature (a tenth of its spread)
SPATIAL_KINDS = ("crop", "flip", "cutout", "shift")  # need examples (C, *spatial)
FEATURE_KINDS = ("jitter",)  # need examples (F,)
AUGMENTATIONS = SPATIAL_KINDS + FEATURE_KINDS  # what TrainConfig.augment may name


def check_kinds(kinds: tuple[str, ...], example_shape: tuple[int, ...]) -> None:
    """Raise a ValueError naming `augment` when a kind does not fit the examples' shape."""
    wrong = [k for k in kinds if (k in SPATIAL_KINDS) != (len(example_shape) >= 2)]
    if wrong:
        fits = SPATIAL_KINDS if len(example_shape) >= 2 else FEATURE_KINDS
        raise ValueError(f"augment={tuple(kinds)!r}: {', '.join(wrong)} does not apply to examples of shape "
                         f"{tuple(example_shape)}; for these data choose from {fits}")


def _draw(kinds, n, example_shape, gen) -> dict:
    """Random parameters for n examples of `example_shape` from one member's generator (on the CPU)."""
    spatial = example_shape[1:]
    p = {}
    if "flip" in kinds:
        p["flip"] = torch.rand(n, generator=gen) < 0.5
    if "crop" in kinds or "shift" in kinds:
        p["offset"] = torch.randint(0, 2 * PAD + 1, (n, len(spatial)), generator=gen)
    if "cutout" in kinds:
        p["center"] = torch.stack([torch.randint(0, s, (n,), generator=gen) for s in spatial], 1)
    if "jitter" in kinds:
        p["jitter"] = JITTER * torch.randn(n, *example_shape, generator=gen)
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


def draw(kinds: tuple[str, ...], n: int, example_shape: tuple[int, ...], generators: list[torch.Generator]) -> dict:
    """Augmentation parameters of one step for M members of n examples each, concatenated
    member after member (M*n rows, on the CPU): `generators[m]` drives member m's draws."""
    draws = [_draw(kinds, n, example_shape, g) for g in generators]
    return {k: torch.cat([d[k] for d in draws]) for k in draws[0]}


def apply(x: torch.Tensor, kinds: tuple[str, ...], params: dict) -> torch.Tensor:
    """Augment a stacked batch x (M, B, *example_shape) with drawn `params` (on x's device)."""
    if not kinds:
        return x
    flat = x.reshape(x.shape[0] * x.shape[1], *x.shape[2:])
    if "flip" in kinds:
        flat = torch.where(params["flip"].view(-1, *[1] * (flat.dim() - 1)), flat.flip(-1), flat)
    if "offset" in params:
        flat = _translate(flat, params["offset"])
    if "cutout" in kinds:
        flat = _cutout(flat, params["center"])
    if "jitter" in kinds:
        flat = flat + params["jitter"]
    return flat.reshape(x.shape)


def augment(x: torch.Tensor, kinds: tuple[str, ...], generators: list[torch.Generator]) -> torch.Tensor:
    """Augment a stacked batch. x (M, B, *example_shape) float -> same shape.

    `generators[m]` drives member m's random draws.
    """
    if not kinds:
        return x
    check_kinds(kinds, tuple(x.shape[2:]))
    params = draw(kinds, x.shape[1], tuple(x.shape[2:]), generators)
    return apply(x, kinds, {k: v.to(x.device) for k, v in params.items()})
