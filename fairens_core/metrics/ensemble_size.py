"""Metric as a function of ensemble size, with the sampling protocol of Ko et al. 2023.

Ko et al. (2023) App. A.1: "Given a pool of M models, for each ensemble
size S we sample 100 times with replacement.  We then average the accuracy
across the 100 samples."  We read this as: each draw is a set of S distinct
members (drawn without replacement within the draw), and the 100 draws are
independent (so the same set may be drawn twice).  When the pool has no more
than ``draws`` distinct subsets of size S (always for S = M, where there is a
single one), every subset is evaluated exactly once instead: that is the exact
value the random draws estimate, without Monte Carlo noise or repeated work.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import torch

from ._utils import ArrayLike, SeedLike, as_tensor, make_generator


@dataclass
class EnsembleSizeCurve:
    """A metric's mean and spread over random sub-ensembles of each size.

    Attributes:
        sizes: ensemble sizes S, ascending order as given.
        mean: (len(sizes),) mean of the metric over the draws of each size.
        std: (len(sizes),) population standard deviation over the draws.
        values: raw metric value of every draw, one 1-D array per size.
        subsets: member indices of every draw, one (draws, S) array per size.
    """

    sizes: list[int]
    mean: np.ndarray
    std: np.ndarray
    values: list[np.ndarray] = field(repr=False)
    subsets: list[np.ndarray] = field(repr=False)


def _subsets_of_size(
    pool_size: int, size: int, draws: int, generator: torch.Generator
) -> np.ndarray:
    """(number of draws, size) member indices for one ensemble size."""
    if math.comb(pool_size, size) <= draws:
        return np.array(list(itertools.combinations(range(pool_size), size)), dtype=np.int64)
    # randperm(...)[:size] draws `size` distinct members; draws are independent.
    return np.stack([torch.randperm(pool_size, generator=generator)[:size].numpy() for _ in range(draws)])


def drawn_subsets(pool_size: int, sizes: Sequence[int] | None = None, draws: int = 100,
                  seed: SeedLike = 0) -> tuple[list[int], list[np.ndarray]]:
    """(sizes, member indices of every draw: one (draws, S) array per size), App. A.1 protocol.

    One generator serves the sizes in the order given, so a seed gives the same draws to every
    curve computed from it."""
    sizes = list(range(1, pool_size + 1)) if sizes is None else [int(s) for s in sizes]
    if any(not 1 <= s <= pool_size for s in sizes):
        raise ValueError(f"sizes must lie in [1, {pool_size}], got {sizes}")
    generator = make_generator(seed)
    return sizes, [_subsets_of_size(pool_size, size, draws, generator) for size in sizes]


def ensemble_size_curve(
    metric_fn: Callable[[torch.Tensor], float | Mapping[str, float]],
    member_preds: ArrayLike,
    sizes: Sequence[int] | None = None,
    draws: int = 100,
    seed: SeedLike = 0,
) -> EnsembleSizeCurve | dict[str, EnsembleSizeCurve]:
    """Evaluate ``metric_fn`` on random sub-ensembles of every size (Ko et al. 2023, App. A.1).

    Args:
        metric_fn: maps a (S, N, C) subset of the members (same layout as
            ``member_preds``) to a float, or to a dict of floats to get one curve
            per key, e.g. ``lambda p: {"top": group_accuracy(mean_probs(p), y, top),
            "bottom": group_accuracy(mean_probs(p), y, bottom)}``. For a metric of the
            members' average, `mean_ensemble_size_curve` evaluates all draws at once.
        member_preds: (M, N, C) predictions of the pool of M members (any tensor
            with members first works: probabilities, logits, labels).
        sizes: ensemble sizes to evaluate; default 1..M.
        draws: random draws per size (100 in Ko et al. 2023).
        seed: int seed or ``torch.Generator`` for reproducible draws.

    Returns:
        An :class:`EnsembleSizeCurve`, or ``{key: EnsembleSizeCurve}`` when
        ``metric_fn`` returns dicts.
    """
    member_preds = as_tensor(member_preds)
    sizes, subsets = drawn_subsets(member_preds.shape[0], sizes, draws, seed)
    results = []  # results[i][d] = metric value (or dict) of draw d at size i
    for chosen in subsets:
        index = torch.as_tensor(chosen, device=member_preds.device)
        results.append([metric_fn(member_preds.index_select(0, idx)) for idx in index])

    if isinstance(results[0][0], Mapping):
        keys = list(results[0][0].keys())
        return {key: _curve(sizes, [[r[key] for r in draws_] for draws_ in results], subsets) for key in keys}
    return _curve(sizes, results, subsets)


def subset_means(member_preds: ArrayLike, subsets: np.ndarray) -> torch.Tensor:
    """(D, N, C) average of the members of each of D subsets ((D, S) member indices).

    The members are added one subset position at a time, element by element, so every CPU gets
    the same bits: a matrix product would be faster, but the BLAS kernel's order of additions
    depends on the CPU (and on memory alignment), and a last-bit difference flips the argmax of
    a tie, which float16 records make common."""
    member_preds = as_tensor(member_preds)
    index = torch.as_tensor(subsets, device=member_preds.device)
    total = member_preds[index[:, 0]]  # indexing copies
    for position in range(1, index.shape[1]):
        total += member_preds[index[:, position]]
    return total / index.shape[1]


MEAN_CHUNK_ELEMENTS = 1 << 24  # subset averages held at once (64 MB of float32)


def mean_ensemble_size_curve(
    metric_fn: Callable[[torch.Tensor], torch.Tensor | Mapping[str, torch.Tensor]],
    member_preds: ArrayLike,
    sizes: Sequence[int] | None = None,
    draws: int = 100,
    seed: SeedLike = 0,
) -> EnsembleSizeCurve | dict[str, EnsembleSizeCurve]:
    """`ensemble_size_curve` for a metric of the members' average, vectorised over the draws.

    ``metric_fn`` maps the (D, N, C) averages of D drawn subsets (`subset_means`) to (D,)
    values, or to a dict of them; e.g. ``lambda ens: accuracy(ens, y)`` for the accuracy of
    probability averaging. Same draws as `ensemble_size_curve` with the same seed, and the
    same values up to float rounding of the average. Draws are evaluated in chunks of at most
    `MEAN_CHUNK_ELEMENTS` averaged numbers.
    """
    member_preds = as_tensor(member_preds)
    sizes, subsets = drawn_subsets(member_preds.shape[0], sizes, draws, seed)
    per_draw = max(1, member_preds[0].numel())
    chunk = max(1, MEAN_CHUNK_ELEMENTS // per_draw)
    results = []  # results[i] = (D,) values, or {key: (D,) values}, at size i
    for chosen in subsets:
        parts = [metric_fn(subset_means(member_preds, chosen[start:start + chunk]))
                 for start in range(0, len(chosen), chunk)]
        if isinstance(parts[0], Mapping):
            results.append({key: torch.cat([torch.as_tensor(p[key]).reshape(-1) for p in parts]) for key in parts[0]})
        else:
            results.append(torch.cat([torch.as_tensor(p).reshape(-1) for p in parts]))
    if isinstance(results[0], Mapping):
        return {key: _curve(sizes, [r[key].tolist() for r in results], subsets) for key in results[0]}
    return _curve(sizes, [r.tolist() for r in results], subsets)


def _curve(sizes: list[int], results: list[list[float]], subsets: list[np.ndarray]) -> EnsembleSizeCurve:
    values = [np.asarray([float(v) for v in draws_], dtype=np.float64) for draws_ in results]
    return EnsembleSizeCurve(
        sizes=sizes,
        mean=np.array([v.mean() for v in values]),
        std=np.array([v.std() for v in values]),
        values=values,
        subsets=subsets,
    )
