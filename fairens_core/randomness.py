"""Every source of randomness in a training run, each with its own seed.

FAIR-Ensemble (Ko et al. 2023, §4.2) asks which source of randomness makes ensemble members
differ: the initial weights, the order of the mini-batches, or the data augmentation.
To answer it, each source draws from its own generator, seeded from the run's base seed,
the source's name and — only if that source *varies* between members — the member index.

Nothing here touches torch's global RNG: a member's random numbers depend only on
(seed, source, member, step), never on how members are grouped or in which order they
run. That is what makes vectorized ≡ loop and resume ≡ uninterrupted possible.
"""

from __future__ import annotations

import hashlib

import torch

SOURCES = ("init", "batch_order", "augmentation")

# Named presets of which sources differ between members (Ko et al. 2023, §4.2 ablations).
VARY_PRESETS = {
    "none": (),  # identical runs: a sanity check, diversity must be zero
    "init": ("init",),
    "batch_order": ("batch_order",),
    "augmentation": ("augmentation",),
    "init+batch_order": ("init", "batch_order"),
    "all": SOURCES,
}


def parse_vary(vary: str) -> tuple[str, ...]:
    """Sources named by a preset or a '+'-joined list, e.g. 'batch_order+augmentation'."""
    if vary in VARY_PRESETS:
        return VARY_PRESETS[vary]
    parts = tuple(p.strip() for p in vary.split("+"))
    unknown = [p for p in parts if p not in SOURCES]
    if unknown or not vary:
        raise ValueError(
            f"vary={vary!r}: allowed are the presets {sorted(VARY_PRESETS)} "
            f"or a '+'-joined subset of {list(SOURCES)}"
        )
    return tuple(s for s in SOURCES if s in parts)


def derive_seed(*labels) -> int:
    """A 63-bit seed that is a pure function of its labels (stable across processes)."""
    digest = hashlib.sha256(repr(labels).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def source_seed(seed: int, source: str, member: int, vary: tuple[str, ...], phase: str = "") -> int:
    """Seed of one source for one member: shared by all members unless `source` varies."""
    who = member if source in vary else "shared"
    return derive_seed(seed, source, who, phase)


def generator(seed: int, *step_labels, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh generator for (seed, step labels): cheap, and resumable by construction."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(seed, *step_labels))
    return g
