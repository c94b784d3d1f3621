"""Forgetting events during training and after a spawn (the coupling paper, §2.1, Fig. 1g-h).

A forgetting event (Toneva et al. 2019) is a test example that was classified correctly at
one evaluation and wrongly at the next. The coupling paper counts them on the test set once per
epoch: Fig. 1g shows the events per epoch, averaged over independent runs, against the
epochs of training (with the learning-rate drops marked); Fig. 1h sums each child's events
over its training after the fork, for children of the coupled-to-t-reset condition, against
the spawn time t.

Both need every evaluation's test predictions: records trained with `track_predictions=-1`
(`record.test_probs_trajectory`, (M, E, N, C), and `record.history["eval_step"]`, (E,)), or
with `track_predictions=n`, in which case the events are counted on the first n test examples.
The counting itself is `fairens_core.metrics.forgetting`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import torch

from .. import metrics as M
from ..config import TrainConfig
from ..train import lr_factor


def _trajectory(record) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(M, E, n, C) per-evaluation test probabilities, (E,) evaluation steps and (n,) labels of a record.

    n is the number of tracked test examples (the first n of the test set; all of them with
    track_predictions=-1).
    """
    traj = record.test_probs_trajectory
    if traj is None:
        raise ValueError("forgetting needs the test predictions at every epoch: train the record with "
                         "track_predictions=-1 (or a number of test examples)")
    return traj, torch.as_tensor(record.history["eval_step"]), torch.as_tensor(record.y_test)[:traj.shape[2]]


def lr_factor_at(cfg: TrainConfig, steps: np.ndarray, steps_per_epoch: int) -> np.ndarray:
    """Learning-rate multiplier of an uncoupled run of `cfg` at each step (the engine's schedule)."""

    total = cfg.epochs * steps_per_epoch
    return np.array([lr_factor(cfg, int(s), total, steps_per_epoch) for s in steps])


def lr_drops(cfg: TrainConfig, steps_per_epoch: int) -> list[float]:
    """Epochs (possibly fractional) at which a 'multistep' schedule lowers the learning rate.

    Empty for the other schedules (which change the rate smoothly).
    """
    if cfg.schedule != "multistep":
        return []
    total = cfg.epochs * steps_per_epoch
    return [int(np.ceil(m * total)) / steps_per_epoch for m in cfg.milestones]


def forgetting_per_epoch(record) -> pd.DataFrame:
    """Forgetting events on the test set between consecutive evaluations, per member (Fig. 1g).

    One row per (member, transition): member, epoch (the epoch at whose end the example is
    found forgotten, i.e. the later evaluation, in epochs), step, events (number of test
    examples correct at the previous evaluation and wrong at this one), right_before (the
    examples correct at the previous evaluation: only these can be forgotten), lr (the
    learning-rate multiplier during the steps of this transition, sampled at its midpoint; only
    for records without a spawn).
    """
    traj, steps, y = _trajectory(record)
    cfg = TrainConfig.from_dict(record.config)
    spe = record.meta["steps_per_epoch"]
    rows = []
    for m in range(traj.shape[0]):
        events = M.forgetting_events_per_epoch(traj[m].float(), y)  # (E - 1,)
        right = (traj[m].float().argmax(-1) == y).sum(-1)  # (E,)
        for e, n in enumerate(events.tolist(), start=1):
            rows.append({"member": m, "epoch": float(steps[e]) / spe, "step": int(steps[e]), "events": int(n),
                         "right_before": int(right[e - 1])})
    frame = pd.DataFrame(rows)
    if cfg.spawn_step is None and len(frame):
        mid = (frame["step"].to_numpy() - spe / 2).clip(min=0)
        frame["lr"] = lr_factor_at(cfg, mid, spe) * cfg.lr
    return frame


def forgetting_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over members of :func:`forgetting_per_epoch`'s events, and the mean of
    its right_before, per epoch."""
    out = frame.groupby(["epoch", "step"]).agg(events=("events", "mean"), events_std=("events", "std"),
                                              right_before=("right_before", "mean"))
    out = out.reset_index()
    if "lr" in frame:
        out = out.merge(frame.groupby("step")["lr"].first().reset_index(), on="step")
    return out


def forgetting_after_spawn(records: Mapping[int, object], evaluations: int | None = None) -> pd.DataFrame:
    """Each child's forgetting events after its fork, summed over the test set (Fig. 1h).

    `records` maps a spawn time t (steps) to a record whose members are children spawned at
    t (coupled-to-t-reset: every child then trains the same number of steps). Only
    transitions between evaluations at or after the fork count (evaluations at steps >= t:
    a spawned record is evaluated at its fork, on the parent's weights, which every child
    starts from), so every child is judged on its own training, not on its parent's; and
    only the first `evaluations` of them (None: as many as every record has), so that every
    spawn time is judged on the same number of evaluations, as the paper's "first 50 epochs
    after coupling".

    A spawned record is evaluated at its fork (t = 0: on the shared initial weights) and then
    at whole epochs after it (`train.evaluation_steps`), so every window starts at the fork and
    counts whole epochs of the child's own training. Columns `start` and `end` give, in the
    child's steps after the fork, the first and the last evaluation counted.

    One row per (spawn_step, member): spawn_step, spawn_epoch, member, events, evaluations
    (the number of evaluations whose transitions were counted), start, end.
    """
    after = {}
    for t, record in records.items():
        traj, steps, y = _trajectory(record)
        after[t] = (traj, steps >= (t or 0), y, record.meta["steps_per_epoch"], steps)
    available = min(int(mask.sum()) for _, mask, _, _, _ in after.values())
    n = available if evaluations is None else evaluations
    if n > available:
        raise ValueError(f"evaluations={n}: some records have only {available} evaluations after their fork")
    rows = []
    for t, (traj, mask, y, spe, steps) in after.items():
        idx = torch.nonzero(mask).flatten()[:n]
        start, end = int(steps[idx[0]]) - (t or 0), int(steps[idx[-1]]) - (t or 0)
        for m in range(traj.shape[0]):
            events = M.cumulative_forgetting(traj[m][idx].float(), y)
            rows.append({"spawn_step": t, "spawn_epoch": (t or 0) / spe, "member": m, "events": int(events),
                         "evaluations": int(n), "start": start, "end": end})
    return pd.DataFrame(rows)


def around_drops(summary: pd.DataFrame, drops: list[float]) -> pd.DataFrame:
    """Forgetting events just before and just after each learning-rate drop.

    `summary`: :func:`forgetting_summary` (columns epoch, events); `drops`: :func:`lr_drops`.
    For a drop after epoch d: `before` = the events of the transition ending at epoch d (the
    last one at the higher rate), `after` = those of the next transition (the first at the
    lower rate), and ratio = after / before. Drops without both transitions are left out.
    """
    events = summary.set_index("epoch")["events"]
    epochs = events.index.to_numpy()
    rows = []
    for d in drops:
        before = epochs[epochs <= d + 1e-9]
        after = epochs[epochs > d + 1e-9]
        if len(before) and len(after):
            b, a = float(events[before[-1]]), float(events[after[0]])
            rows.append({"drop_epoch": d, "before": b, "after": a, "ratio": a / b if b else float("nan")})
    return pd.DataFrame(rows, columns=["drop_epoch", "before", "after", "ratio"])
