"""Which randomness matters (Ko et al. 2023, FAIR-Ensemble §4.2-4.3).

The chapter trains one ensemble per *source* of randomness — members that differ only in
their initial weights, only in the order of the mini-batches, only in the augmentation
draws, in two or all of them, or in nothing at all — and compares them. Every function
here takes `records`, a dict `{source: RunRecord}` keyed by the `vary` preset of each
ensemble (see `fairens_core.randomness.VARY_PRESETS`), all trained with the same recipe
on the same data; and returns a tidy `pandas.DataFrame` in percentage points.

The top-k and bottom-k classes are ranked once for all sources (`class_groups`), so that
the sources are compared on the same classes, as Ko et al. 2023 does with one base model shared
across its ablations (App. A.1).
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
import torch

from .. import metrics as M
from .stats import mean_se

# The ensembles of the chapter, in the order of the paper's figures, and their names there.
SOURCES = ("none", "init", "batch_order", "augmentation", "init+batch_order", "all")
LABELS = {"none": "None", "init": "Init", "batch_order": "BatchOrder", "augmentation": "DA",
          "init+batch_order": "Init & BatchOrder", "all": "All sources"}
GROUPS = ("overall", "top-k", "bottom-k")


def _labels(records: Mapping) -> torch.Tensor:
    """The test labels every record shares (they must all be trained on the same data)."""
    ys = [r.y_test for r in records.values()]
    if any(not torch.equal(torch.as_tensor(ys[0]), torch.as_tensor(y)) for y in ys[1:]):
        raise ValueError("the records do not share one test set: train them on the same data")
    return torch.as_tensor(ys[0])


def accuracy_table(records: Mapping) -> pd.DataFrame:
    """Final test accuracy (%) per source: mean and std of the members, and their ensemble.

    Returns a frame indexed by source with columns member_mean, member_std (population)
    and ensemble (probability-averaged members).
    """
    rows = {}
    for source, record in records.items():
        probs = record.probs()
        acc = 100 * M.accuracy(probs, record.y_test)  # (M,)
        rows[source] = {"member_mean": float(acc.mean()), "member_std": float(acc.std(correction=0)),
                        "ensemble": 100 * M.accuracy(M.mean_probs(probs), record.y_test)}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("source")


def class_groups(records: Mapping, k: int) -> dict[str, torch.Tensor | None]:
    """{"overall": None, "top-k": (K,), "bottom-k": (K,)} class indices, shared by all sources.

    Classes are ranked by their test accuracy averaged over every member of every ensemble
    (final predictions), best first for top-k and worst first for bottom-k.
    """
    probs = torch.cat([r.probs() for r in records.values()])  # (sum of M, N, C)
    y = _labels(records)
    return {"overall": None, "top-k": M.top_k_classes(probs, y, k), "bottom-k": M.bottom_k_classes(probs, y, k)}


def source_trajectories(records: Mapping, k: int) -> pd.DataFrame:
    """Test accuracy of every member after every epoch, overall and on the top-k / bottom-k classes.

    Ko et al. (2023) §4.2, Fig. 5 (left): the training curves of the members of each ablation.
    Needs per-epoch test probabilities, `record.test_probs_trajectory` (M, E, n, C): records
    trained with `track_predictions=n` (-1: the whole test set), the same n for every record;
    the curves are measured on those first n test examples (the class groups on the whole set).

    Returns one row per (source, member, epoch, group) with columns source, member,
    epoch (1..E), group, accuracy (%) and deviation: the member's accuracy minus the mean
    of its ensemble's members at that epoch and group (points), which shows the spread.
    """
    groups = class_groups(records, k)
    tracked = {r.test_probs_trajectory.shape[2] if r.test_probs_trajectory is not None else 0
               for r in records.values()}
    if 0 in tracked or len(tracked) != 1:
        raise ValueError("every record needs per-epoch predictions of the same test examples: "
                         "train them with one track_predictions (-1: the whole test set)")
    y = _labels(records)[:tracked.pop()]
    frames = []
    for source, record in records.items():
        traj = record.test_probs_trajectory
        members, epochs = traj.shape[:2]
        for group, classes in groups.items():
            acc = 100 * M.accuracy_trajectories(traj, y, classes).numpy()  # (M, E)
            frames.append(pd.DataFrame({
                "source": source,
                "member": np.repeat(np.arange(members), epochs),
                "epoch": np.tile(np.arange(1, epochs + 1), members),
                "group": group,
                "accuracy": acc.ravel(),
                "deviation": (acc - acc.mean(0)).ravel(),
            }))
    return pd.concat(frames, ignore_index=True)


def trajectory_spread(trajectories: pd.DataFrame) -> pd.DataFrame:
    """How far apart the members' training curves are, per source and group (Ko et al. 2023, §4.2, Fig. 5 right).

    `trajectories` is the frame of `source_trajectories`. For every (source, group):
    l1_distance = mean over epochs of the mean |a_i(e) - a_j(e)| over member pairs (points),
    variance = mean over epochs of the members' variance (points²); see
    `metrics.trajectory_l1_distance` and `metrics.trajectory_variance`. Both weigh every
    epoch alike, so the fast-moving first epochs dominate them; final_l1_distance is the
    L1 distance at the last epoch alone: how different the trained members end up.
    Returns columns source, group, l1_distance, variance, final_l1_distance.
    """
    rows = []
    for (source, group), df in trajectories.groupby(["source", "group"], sort=False):
        curves = df.pivot(index="member", columns="epoch", values="accuracy").to_numpy(copy=True)  # (M, E)
        rows.append({"source": source, "group": group,
                     "l1_distance": M.trajectory_l1_distance(curves),
                     "variance": M.trajectory_variance(curves),
                     "final_l1_distance": M.trajectory_l1_distance(curves[:, -1:])})
    return pd.DataFrame(rows)


def top_bottom_gap_curves(records: Mapping, k: int, sizes=None, draws: int = 100, seed: int = 0) -> pd.DataFrame:
    """Top-k minus bottom-k accuracy of the ensemble as it grows, per source (Ko et al. 2023, Fig. 6, 13, 15).

    For each ensemble size S, `draws` random sets of S members of one source are
    probability-averaged (App. A.1 protocol, `metrics.ensemble_size_curve`); 0 would mean
    the ensemble is as good on its worst classes as on its best.
    Returns one row per (source, size) with columns source, size, top, bottom (accuracy, %),
    gap = top - bottom and gap_std (std over the draws), in points.
    """
    groups = class_groups(records, k)
    top, bottom = groups["top-k"], groups["bottom-k"]
    y = _labels(records)

    def metric(ens):
        labels = ens.argmax(-1)
        t, b = M.group_accuracy(labels, y, top), M.group_accuracy(labels, y, bottom)
        return {"top": 100 * t, "bottom": 100 * b, "gap": 100 * (t - b)}

    frames = []
    for source, record in records.items():
        curves = M.mean_ensemble_size_curve(metric, record.probs(), sizes=sizes, draws=draws, seed=seed)
        frames.append(pd.DataFrame({
            "source": source, "size": curves["gap"].sizes,
            "top": curves["top"].mean, "bottom": curves["bottom"].mean,
            "gap": curves["gap"].mean, "gap_std": curves["gap"].std,
        }))
    return pd.concat(frames, ignore_index=True)


def gap_summary(curves: pd.DataFrame) -> pd.DataFrame:
    """What the full ensemble changes, per source: the numbers behind the claims of §4.3.

    `curves` is the frame of `top_bottom_gap_curves`. Compares the smallest size (a single
    member on average) with the largest (the whole ensemble). Returns a frame indexed by
    source with columns gap_single, gap_ensemble, gap_change (ensemble - single; negative:
    the ensemble narrows the gap), top_gain and bottom_gain (ensemble - single accuracy, points),
    top_fixed and bottom_fixed (the share of the single member's errors on those classes that
    the ensemble fixes, `metrics.errors_fixed`, in %; NaN where the members make no error there).
    """
    rows = {}
    for source, c in curves.sort_values("size", kind="stable").groupby("source", sort=False):
        first, last = c.iloc[0], c.iloc[-1]
        rows[source] = {"gap_single": first["gap"], "gap_ensemble": last["gap"],
                        "gap_change": last["gap"] - first["gap"],
                        "top_gain": last["top"] - first["top"], "bottom_gain": last["bottom"] - first["bottom"],
                        "top_fixed": 100 * M.errors_fixed(last["top"] / 100, first["top"] / 100),
                        "bottom_fixed": 100 * M.errors_fixed(last["bottom"] / 100, first["bottom"] / 100)}
    # Averaging identical draws can leave float noise (-1e-15) behind: round it away, and + 0.0
    # turns the -0.0 that rounding may leave into 0.0.
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("source").round(9) + 0.0


def over_seeds(frames: Mapping, statistic) -> tuple[float, float, int]:
    """`mean_se` of `statistic(frame)` over {seed: frame} (one number per seed: a paired comparison
    of two sources stays within one seed)."""
    return mean_se([statistic(f) for f in frames.values()])


def mean_frame(frames: Mapping) -> pd.DataFrame:
    """The element-wise mean of same-shaped frames {seed: frame} (numeric columns)."""
    stacked = pd.concat(list(frames.values()))
    return stacked.groupby(level=0, sort=False).mean(numeric_only=True)


def smallest_gap(gaps: Mapping, sources) -> dict:
    """Which of `sources` gives the smallest top − bottom gap of the full ensemble, and by how much.

    `gaps` {seed: Series indexed by source} (`gap_summary(...)["gap_ensemble"]` per seed). Returns
    {"source": the source with the smallest mean gap, "runner_up": the next one, "margin": (mean,
    se, n) of runner_up's gap minus the smallest's over seeds, and "mean": {source: (mean, se, n)}}.
    """
    sources = list(sources)
    mean = {s: mean_se([g[s] for g in gaps.values()]) for s in sources}
    ranked = sorted(sources, key=lambda s: mean[s][0])
    best, second = ranked[0], ranked[1]
    margin = mean_se([g[second] - g[best] for g in gaps.values()])
    return {"source": best, "runner_up": second, "margin": margin, "mean": mean}
