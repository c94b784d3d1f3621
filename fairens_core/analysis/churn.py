"""Churn: do the members disagree where the ensemble gains? (Ko et al. 2023, §4.1, Fig. 4, Fig. 22)

Churn (Ko et al. 2023, eq. 1) is the fraction of test examples on which two models predict different
labels; for a pool of members it is averaged over random pairs (`metrics.mean_pairwise_churn`).
Where all members agree, averaging changes nothing: an ensemble can only repair examples on
which its members disagree. The paper finds churn far higher on the bottom-k classes than on
the top-k classes, and strongly correlated with the ensemble's accuracy improvement.

The analyses return tidy `pandas.DataFrame`s; churn and accuracies are in percent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd
import torch

from .. import metrics as M
from ..config import TrainConfig
from .fairness import class_groups
from .stats import jackknife_se


def pool_configs(base: TrainConfig, pools) -> dict[str, TrainConfig]:
    """One training config per pool: name -> `base` with another model, width and pool size.

    pools: (model, width, members) triples; members None keeps `base.members`. Names read
    "cnn1d" or "cnn1d ×0.5" (the width, when it is not 1).
    """
    configs = {}
    for model, width, members in pools:
        name = model if width == 1 else f"{model} ×{width:g}"
        if name in configs:
            raise ValueError(f"pool {name!r} is listed twice")
        configs[name] = base.replace(model=model, width=width, members=members or base.members).validate()
    return configs


def classes_churn(probs: torch.Tensor, y: torch.Tensor, classes, pairs: int = 100,
                  seed: int = 0) -> tuple[float, float]:
    """Mean pairwise churn (%) of the members on a group of classes (None: all examples), and
    its part where exactly one model of the pair is right (%).

    The second is the churn of the members' right/wrong indicators; the same seed picks the
    same pairs for both.
    """
    mask = None if classes is None else M.class_mask(y, classes)
    correct = (probs.argmax(-1) == y).long()  # (M, N): 1 right, 0 wrong
    return (100 * M.mean_pairwise_churn(probs, num_pairs=pairs, seed=seed, mask=mask),
            100 * M.mean_pairwise_churn(correct, num_pairs=pairs, seed=seed, mask=mask))


def group_churn(probs: torch.Tensor, y: torch.Tensor, k: int, pairs: int = 100, seed: int = 0,
                reference: int | None = None) -> pd.DataFrame:
    """Churn of a pool on all / top-k / bottom-k classes (Ko et al. 2023, §4.1, Fig. 4).

    probs (M, N, C) member probabilities, y (N,) labels. Classes are ranked as in
    `fairness.class_groups` (members' average per-class accuracy, or member `reference`).
    Churn is averaged over `pairs` random member pairs (all pairs if there are fewer); the same
    pairs serve every group. Returns one row per group: group, churn (%), churn_one_right (%,
    see `churn_vs_gain`).
    """
    groups = class_groups(probs, y, k, reference)
    rows = []
    for g, classes in groups.items():
        churn, one_right = classes_churn(probs, y, classes, pairs, seed)
        rows.append({"group": g, "churn": churn, "churn_one_right": one_right})
    return pd.DataFrame(rows)


def bottom_top_ratio(probs: torch.Tensor, y: torch.Tensor, k: int, pairs: int = 100, seed: int = 0) -> float:
    """A pool's bottom-k churn divided by its top-k churn (Fig. 4's contrast as one number; NaN
    where the top-k churn is 0). Classes are ranked and pairs drawn as in `group_churn`."""
    churn = group_churn(probs, y, k, pairs, seed).set_index("group")["churn"]
    return float(churn["bottom-k"] / churn["top-k"]) if churn["top-k"] > 0 else float("nan")


def member_jackknife_se(statistic: Callable[[dict[str, torch.Tensor]], object],
                        pools: Mapping[str, torch.Tensor], size: int | None = None) -> np.ndarray:
    """Standard error over members of ``statistic(pools)`` (a number or a sequence of numbers), by
    the leave-one-out jackknife: replicate i computes the statistic with member i left out of
    every pool. A pool's members differ only in their seeds, so this says how much a value depends
    on which members happened to be trained.

    Every pool is cut to its first `size` members (default: the smallest pool), as `churn_vs_gain`
    cuts them. A statistic that averages churn over random pairs should use all pairs here
    (``pairs`` at least size · (size − 1) / 2), so that the replicates differ only by the member left out.
    With fewer than 3 members the SE is NaN (a 2-SE pass rule on it is then not testable).
    """
    size = size or min(len(p) for p in pools.values())
    cut = {name: probs[:size] for name, probs in pools.items()}
    if size < 3:  # two members leave one member per replicate: no pair, no churn
        return np.full_like(np.asarray(statistic(cut), dtype=float), np.nan)
    keep = [torch.tensor([j for j in range(size) if j != i]) for i in range(size)]
    replicates = [np.asarray(statistic({name: probs[rest] for name, probs in cut.items()}), dtype=float)
                  for rest in keep]
    return jackknife_se(np.stack(replicates))


def _all_pairs(pools: Mapping[str, torch.Tensor]) -> int:
    """Enough pairs for `mean_pairwise_churn` to use every pair of the smallest pool's members."""
    n = min(len(p) for p in pools.values())
    return n * (n - 1) // 2


def bottom_top_ratio_se(pools: Mapping[str, torch.Tensor], y: torch.Tensor, k: int, seed: int = 0) -> pd.Series:
    """Per pool, the standard error over members of its `bottom_top_ratio` (`member_jackknife_se`;
    pools cut to the smallest, every pair of the members kept in each replicate)."""
    def ratios(cut):
        return [bottom_top_ratio(probs, y, k, pairs=_all_pairs(cut), seed=seed) for probs in cut.values()]
    return pd.Series(member_jackknife_se(ratios, pools), index=list(pools))


def gain_correlation_se(pools: Mapping[str, torch.Tensor], y: torch.Tensor, k: int, seed: int = 0,
                        predictor: str = "churn") -> float:
    """The standard error over members of the Pearson r between `predictor` and the relative
    improvement over the (pool, group) points of `churn_vs_gain` (`member_jackknife_se`)."""
    def r(cut):
        frame = churn_vs_gain(cut, y, k, pairs=_all_pairs(cut), seed=seed)
        return gain_correlations(frame, predictors=[predictor]).loc[predictor, "r"]
    return float(member_jackknife_se(r, pools))


def churn_vs_gain(pools: Mapping[str, torch.Tensor], y: torch.Tensor, k: int, pairs: int = 100,
                  seed: int = 0, size: int | None = None, by: str = "group") -> pd.DataFrame:
    """Churn and ensemble accuracy improvement of several pools, per group (Ko et al. 2023, Fig. 22).

    pools: name -> (M_i, N, C) member probabilities on the same test set, y (N,) labels.
    Every pool is cut to its first `size` members (default: the smallest pool), so that gains of
    pools of different sizes compare like with like. Groups are, per pool, all / top-k /
    bottom-k classes of that pool (`by="group"`, ranked as in `group_churn`) or every class
    present in y (`by="class"`, group = the class index as a string).

    Returns one row per (model, group): model, group, members, churn (%), churn_one_right
    (the part of churn where exactly one model of the pair is right, %; the rest are two
    different wrong answers, which help the average only by splitting the wrong votes),
    single (average member accuracy, %), ensemble (accuracy of the probability average, %),
    improvement (ensemble − single, points), relative_improvement (100 · (ensemble /
    single − 1), %, the y axis of the paper's Fig. 22; NaN where no member is ever right) and
    fixed (the share of the average member's errors that the ensemble fixes, %,
    `metrics.errors_fixed`; NaN where the members make no error).
    """
    if by not in ("group", "class"):
        raise ValueError(f"by={by!r} is not allowed; choose 'group' or 'class'")
    size = size or min(len(p) for p in pools.values())
    rows = []
    for name, probs in pools.items():
        if len(probs) < size:
            raise ValueError(f"pool {name!r} has {len(probs)} members, fewer than size={size}")
        probs = probs[:size]
        if by == "group":
            groups = class_groups(probs, y, k)
        else:
            groups = {str(int(c)): c.reshape(1) for c in torch.unique(y)}
        ensemble = M.mean_probs(probs)
        for g, classes in groups.items():
            single_fraction = float(M.group_accuracy(probs, y, classes).mean())
            ensemble_fraction = float(M.group_accuracy(ensemble, y, classes))
            single, ens = 100 * single_fraction, 100 * ensemble_fraction
            churn, one_right = classes_churn(probs, y, classes, pairs, seed)
            rows.append({"model": name, "group": g, "members": size,
                         "churn": churn, "churn_one_right": one_right,
                         "single": single, "ensemble": ens, "improvement": ens - single,
                         "relative_improvement": 100 * (ens / single - 1) if single else float("nan"),
                         "fixed": 100 * M.errors_fixed(ensemble_fraction, single_fraction)})
    return pd.DataFrame(rows)


def gain_correlations(frame: pd.DataFrame, target: str = "relative_improvement",
                      predictors=("churn", "churn_one_right", "error"),
                      by: str | None = None) -> pd.DataFrame:
    """Pearson r between each predictor column of a `churn_vs_gain` frame and `target`.

    "error" is the average member's error, 100 − single. Returns one row per predictor with a
    column r over all rows of `frame`, or, with `by` (e.g. "model"), one column per value of
    that column: the correlation within each pool.
    """
    frame = frame.assign(error=100 - frame["single"])

    def r(part: pd.DataFrame) -> dict:
        return {p: M.pearson_r(part[p], part[target]) for p in predictors}

    if by is None:
        return pd.DataFrame({"r": r(frame)})
    return pd.DataFrame({value: r(part) for value, part in frame.groupby(by, sort=False)})
