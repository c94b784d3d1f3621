"""Part II analyses (Jeffares et al. 2023 2023): independent vs joint training, learner dropout.

Chapter `independent_vs_joint` trains ensembles with the augmented objective
L_β = (1 − β)·ERR-bar + β·ERR (eq. 2) for a grid of β, from independent (β = 0) to joint
(β = 1) training, and compares them as §3 (Table 1), §6.3 (Fig. 6) and App. G.2-G.6
(Fig. 13-17) do: ensemble accuracy and loss, member accuracy and diversity against β.
Chapter `learner_dropout` trains β = 1 ensembles that drop members from the ensemble term
at random (App. G.7, Fig. 18).

Every function here turns run records (or raw member logits) into tidy data frames; the
quantities come from `fairens_core.metrics` (ERR, ERR-bar and DIV from
`metrics.diversity.diversity_decomposition`, in float64).

Shapes: M members, N test examples, C classes, E evaluation points (epochs); members first.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np
import pandas as pd
import torch

from .. import metrics as M
from ..claims import exceeds
from ..metrics import diversity as D
from ..runner import run
from .stats import MIN_SEEDS

COMBINE = ("prob", "score")
METRICS = ("ensemble_acc", "member_acc", "member_acc_min", "ERR", "ERR_bar", "DIV")


def ensemble_metrics(logits, labels, combine: str = "prob") -> dict:
    """Accuracy, loss and diversity of one ensemble on one test set (Jeffares et al. 2023, §4, §6.3).

    Args:
        logits: (M, N, C) member scores.
        labels: (N,) int class ids.
        combine: "prob" averages the members' probabilities (p̄ = mean_j softmax(f_j), the
            paper's default, §4.2 ②); "score" averages their scores (softmax(mean_j f_j), §4.2 ①,
            App. G.3).

    Returns:
        dict with members (M), ensemble_acc (accuracy of the combined prediction),
        member_acc (mean member accuracy), member_acc_min (the weakest member),
        ERR (cross-entropy of the combined prediction: the ensemble test loss of App. G.6),
        ERR_bar (mean member cross-entropy) and DIV = ERR_bar − ERR (Def. 4.2); accuracies
        are fractions in [0, 1].
    """
    f = torch.as_tensor(logits).detach().double()
    y = torch.as_tensor(labels).long()
    if f.ndim != 3 or f.shape[1] != y.shape[0]:
        raise ValueError(f"logits must be (M, N, C) with N = len(labels); got {tuple(f.shape)} and {tuple(y.shape)}")
    if combine == "prob":
        dec, combined = D.diversity_decomposition(f.softmax(-1), y, "ce_prob"), M.mean_probs(f.softmax(-1))
    elif combine == "score":
        dec, combined = D.diversity_decomposition(f, y, "ce_score"), M.score_average(f)
    else:
        raise ValueError(f"combine must be one of {list(COMBINE)}, got {combine!r}")
    member_acc = (f.argmax(-1) == y).double().mean(1)  # (M,)
    ens_acc = (combined.argmax(-1) == y).double().mean()
    return {"members": f.shape[0], "ensemble_acc": ens_acc.item(), "member_acc": member_acc.mean().item(),
            "member_acc_min": member_acc.min().item(), "ERR": dec.err.item(), "ERR_bar": dec.err_bar.item(),
            "DIV": dec.div.item()}


def _records(records) -> list:
    return list(records.values()) if isinstance(records, Mapping) else list(records)


def record_row(record, combine: str | None = None) -> dict:
    """One row of :func:`sweep_table`: the record's objective settings and :func:`ensemble_metrics`.

    ``combine`` None evaluates the ensemble the way it was trained (``record.config["combine"]``).
    """
    cfg = record.config
    combine = combine or cfg.get("combine", "prob")
    return {"beta": float(cfg.get("beta", 0.0)), "learner_dropout": float(cfg.get("learner_dropout", 0.0)),
            "combine": combine, "seed": int(cfg.get("seed", 0)),
            **ensemble_metrics(record.logits(), record.y_test, combine)}


def sweep_table(records, combine: str | None = None) -> pd.DataFrame:
    """One row per record: beta, learner_dropout, combine, seed, members, then the columns of
    :func:`ensemble_metrics`, sorted by (members, beta, learner_dropout, seed).

    Args:
        records: RunRecords (an iterable, or a mapping whose values are records); each needs
            ``config`` (a dict of TrainConfig fields), ``logits()`` (M, N, C) and ``y_test`` (N,).
        combine: how to combine the members for evaluation; None: as each record was trained.
    """
    rows = [record_row(r, combine) for r in _records(records)]
    cols = ["beta", "learner_dropout", "combine", "seed", "members", *METRICS]
    table = pd.DataFrame(rows, columns=cols)
    return table.sort_values(["members", "beta", "learner_dropout", "seed"], ignore_index=True)


def beta_sweep_table(records, combine: str | None = None) -> pd.DataFrame:
    """The L_β sweep of Jeffares et al. 2023, Fig. 6 (left), 13, 14, 17 (and Table 1 at β ∈ {0, 1}).

    :func:`sweep_table` of the records, averaged over seeds: one row per (members, combine, β)
    with the mean of every metric and its standard error over seeds (columns ``<metric>_se``,
    0 for a single seed) and the number of seeds (``seeds``).
    """
    return average_seeds(sweep_table(records, combine), ["members", "combine", "beta"])


def dropout_table(records, combine: str | None = None) -> pd.DataFrame:
    """Learner dropout during joint training, Jeffares et al. 2023, App. G.7 (Fig. 18).

    As :func:`beta_sweep_table` but one row per (members, combine, β, learner_dropout), so that
    the independent reference (β = 0) and the joint ensembles with dropout p sit in one table.
    """
    return average_seeds(sweep_table(records, combine), ["members", "combine", "beta", "learner_dropout"])


def average_seeds(table: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """Mean of every metric over the seeds within each group of ``by``, with its standard error.

    Returns one row per group: the ``by`` columns, ``seeds`` (count), every metric of
    :data:`METRICS` (mean) and ``<metric>_se`` = std / √seeds (sample std; 0 for one seed).
    """
    grouped = table.groupby(by, sort=True)
    mean = grouped[list(METRICS)].mean()
    n = grouped.size().rename("seeds")
    se = grouped[list(METRICS)].std(ddof=1).fillna(0.0).div(np.sqrt(n), axis=0).add_suffix("_se")
    return pd.concat([n, mean, se], axis=1).reset_index()


def training_curves(records, combine: str | None = None, eps: float = 1e-7) -> pd.DataFrame:
    """Test accuracy during training (Jeffares et al. 2023, Fig. 6 right, on our test set).

    For every record and evaluation point: the mean member test accuracy (from the record's
    history) and, when the record kept per-epoch predictions (``track_predictions``), the
    accuracy of the combined ensemble on those examples. The trajectory stores probabilities
    (float16); score averaging is recovered from them exactly, since softmax(mean_j f_j) =
    softmax(mean_j log p_j) (the log-normaliser of each member is a constant per example),
    with probabilities clipped at ``eps`` against log 0.

    Returns one row per (record, epoch): beta, learner_dropout, combine, seed, members, epoch
    (1-based), member_acc, ensemble_acc (NaN without a trajectory).
    """
    frames = []
    for r in _records(records):
        cfg = r.config
        how = combine or cfg.get("combine", "prob")
        acc = r.history["test_acc"].double()  # (M, E)
        epochs = acc.shape[1]
        ens = np.full(epochs, np.nan)
        traj = getattr(r, "test_probs_trajectory", None)
        if traj is not None:
            p = traj.double()  # (M, E, n, C)
            y = torch.as_tensor(r.y_test)[: p.shape[2]].long()
            if how == "prob":
                combined = p.mean(0)
            elif how == "score":
                combined = p.clamp_min(eps).log().mean(0)
            else:
                raise ValueError(f"combine must be one of {list(COMBINE)}, got {how!r}")
            ens = (combined.argmax(-1) == y).double().mean(-1).numpy()  # (E,)
        frames.append(pd.DataFrame({
            "beta": float(cfg.get("beta", 0.0)), "learner_dropout": float(cfg.get("learner_dropout", 0.0)),
            "combine": how, "seed": int(cfg.get("seed", 0)), "members": acc.shape[0],
            "epoch": np.arange(1, epochs + 1), "member_acc": acc.mean(0).numpy(), "ensemble_acc": ens}))
    return pd.concat(frames, ignore_index=True)


def late_rise_share(values: pd.Series) -> float:
    """Share of the total rise of a curve (indexed by β, increasing) that happens in its last step.

    For DIV against β: (DIV(β_last) − DIV(β_prev)) / (DIV(β_last) − DIV(β_first)). Near 1: the
    curve is flat and jumps at the end ("diversity rises only as β → 1", Jeffares et al. 2023, §6.1, §6.3);
    1/(steps) for a straight line. NaN if the curve does not rise overall.
    """
    v = values.sort_index()
    if len(v) < 2:
        raise ValueError("need at least two points")
    total = v.iloc[-1] - v.iloc[0]
    return float((v.iloc[-1] - v.iloc[-2]) / total) if total > 0 else float("nan")


def train_seeds(cfg, seed_list: Iterable[int], **changes) -> list:
    """Records of `cfg` with `changes`, one per seed of `seed_list` (cache hits when trained before)."""
    return [run(cfg.replace(seed=s, **changes), quiet=True) for s in seed_list]


def seeds(base_seed: int, repeats: int) -> list[int]:
    """The seeds of `repeats` repetitions: base_seed, base_seed + 1, ..."""
    return [base_seed + i for i in range(repeats)]


LABELS = {"ensemble_acc": "ensemble acc %", "member_acc": "member acc %", "member_acc_min": "weakest member %",
          "ERR": "ERR (ensemble loss)", "ERR_bar": "ERR-bar", "DIV": "DIV"}


def readable(table: pd.DataFrame, keys=("beta",), metrics=("ensemble_acc", "member_acc", "member_acc_min",
                                                            "ERR", "DIV")) -> pd.DataFrame:
    """A table of :func:`beta_sweep_table` / :func:`dropout_table` for display: the ``keys`` columns,
    then ``metrics`` with accuracies in per cent (1 decimal) and losses to 3 decimals, renamed by
    :data:`LABELS`."""
    out = table[list(keys)].copy()
    for m in metrics:
        out[LABELS[m]] = (100 * table[m]).round(1) if m.endswith("acc") or m == "member_acc_min" else table[m].round(3)
    return out.reset_index(drop=True)


def long_format(table: pd.DataFrame, metrics: Mapping[str, str], x: str = "beta", by: Iterable[str] = (),
                spread: float = 2.0, scale: float = 1.0) -> pd.DataFrame:
    """Chart data: one row per (row of ``table``, metric) with x, the ``by`` columns, quantity (the
    label in ``metrics``), value = scale · mean, and lo / hi = value ∓ spread · scale · standard error
    (the paper's bands are ± 2 standard errors over runs, App. B)."""
    frames = []
    for m, label in metrics.items():
        se = table[f"{m}_se"] if f"{m}_se" in table else 0.0
        frames.append(pd.DataFrame({x: table[x], **{b: table[b] for b in by}, "quantity": label,
                                    "value": scale * table[m], "lo": scale * (table[m] - spread * se),
                                    "hi": scale * (table[m] + spread * se)}))
    return pd.concat(frames, ignore_index=True)


def member_table(records) -> pd.DataFrame:
    """Every member's own test accuracy (Jeffares et al. 2023, §6.3, App. G.7: how weak the base learners are).

    One row per (record, member): beta, learner_dropout, seed, member (0-based), accuracy (fraction),
    final_train_loss (the member's mean training loss over its last epoch, from the history).
    """
    rows = []
    for r in _records(records):
        cfg = r.config
        acc = r.member_accuracy().double()
        last = r.history["train_loss"][:, -1].double()
        rows += [{"beta": float(cfg.get("beta", 0.0)), "learner_dropout": float(cfg.get("learner_dropout", 0.0)),
                  "seed": int(cfg.get("seed", 0)), "member": m, "accuracy": acc[m].item(),
                  "final_train_loss": last[m].item()} for m in range(len(acc))]
    return pd.DataFrame(rows)


def paired_difference(table: pd.DataFrame, metric: str, a, b, key: str = "beta",
                      min_seeds: int = MIN_SEEDS) -> dict:
    """Mean and standard error over seeds of ``metric`` at ``key = a`` minus at ``key = b``.

    ``table`` holds one row per (record, seed), as :func:`sweep_table` returns; the two
    conditions are paired by seed (same seed: same initial weights and batches), and only
    seeds present in both count. Returns a dict with diff (mean of the per-seed differences),
    se (their sample std / √n; NaN with fewer than ``min_seeds`` seeds, so that a pass rule on
    it is not testable), n (seeds), a_mean and b_mean (the two conditions' means over those
    seeds).
    """
    wide = table.pivot_table(index="seed", columns=key, values=metric, aggfunc="mean")
    if a not in wide.columns or b not in wide.columns:
        return {"diff": float("nan"), "se": float("nan"), "n": 0, "a_mean": float("nan"),
                "b_mean": float("nan")}
    pair = wide[[a, b]].dropna()
    d = pair[a] - pair[b]
    n = len(d)
    se = float(d.std(ddof=1) / np.sqrt(n)) if n >= max(2, min_seeds) else float("nan")
    return {"diff": float(d.mean()) if n else float("nan"), "se": se, "n": n,
            "a_mean": float(pair[a].mean()) if n else float("nan"),
            "b_mean": float(pair[b].mean()) if n else float("nan")}


def describe_move(d: dict, scale: float = 100, unit: str = " pts", digits: int = 1, percent: bool = True) -> str:
    """"−10.8 ± 1.2 pts (92.0 → 81.2 %)": a `paired_difference` read as the move from condition a
    to condition b (b minus a), ± one SE over seeds, with the two conditions' means."""
    se = f" ± {scale * d['se']:.{digits}f}" if np.isfinite(d["se"]) else " (no seed-level SE)"
    ends = f"{scale * d['a_mean']:.{digits}f} → {scale * d['b_mean']:.{digits}f}" + (" %" if percent else "")
    return f"{-scale * d['diff']:+.{digits}f}{se}{unit} ({ends})"


def a_exceeds_b(d: dict) -> bool | None:
    """Pass rule on a `paired_difference`: condition a above condition b by more than 2 SE over
    seeds; None (not testable) when that SE is missing."""
    return exceeds(d["diff"], d["se"])


def closest_rival(table: pd.DataFrame, metric: str, target, key: str = "beta", lowest: bool = True):
    """The condition other than ``target`` whose mean ``metric`` is nearest to beating it: the
    lowest mean (``lowest=True``, e.g. "β = 1 is the least accurate") or the highest otherwise.
    None when there is no other condition."""
    means = table.groupby(key)[metric].mean().drop(target, errors="ignore")
    if means.empty:
        return None
    return means.idxmin() if lowest else means.idxmax()


def against_closest_rival(table: pd.DataFrame, metric: str, target, key: str = "beta", lowest: bool = True):
    """(rival, paired difference) for "``target`` is the lowest (or, ``lowest=False``, the highest)
    point of the sweep": the :func:`closest_rival` and the :func:`paired_difference` of ``metric``
    oriented so that a positive diff supports the claim (rival − target when lowest, target − rival
    otherwise; in the metric's unit, e.g. accuracy as a fraction). (None, None) without a rival."""
    rival = closest_rival(table, metric, target, key=key, lowest=lowest)
    if rival is None:
        return None, None
    if lowest:
        return rival, paired_difference(table, metric, rival, target, key=key)
    return rival, paired_difference(table, metric, target, rival, key=key)


def paired_difference_at_beta(tables: Iterable[pd.DataFrame], beta: float, metric: str, a, b,
                              key: str) -> dict:
    """:func:`paired_difference` of ``metric`` between conditions ``a`` and ``b`` of ``key`` that sit in
    different sweep tables (e.g. combine "prob" vs "score", or two ensemble sizes), using only their
    rows at β = ``beta``; the tables are :func:`sweep_table` frames, paired by seed."""
    rows = pd.concat([t[t["beta"] == beta] for t in tables])
    return paired_difference(rows, metric, a, b, key=key)


def paired_difference_by_epoch(curves: pd.DataFrame, metric: str, a, b, key: str = "beta") -> pd.DataFrame:
    """:func:`paired_difference` of ``metric`` (condition a − condition b, paired by seed) at every
    epoch of :func:`training_curves` rows: one row per epoch (sorted, index ``epoch``) with columns
    diff, se, n, a_mean and b_mean, in the metric's unit."""
    rows = {e: paired_difference(g, metric, a, b, key=key) for e, g in curves.groupby("epoch", sort=True)}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("epoch")


def interior_minimum(table: pd.DataFrame, metric: str = "ERR", key: str = "beta"):
    """Is the lowest ``metric`` at an intermediate β (Jeffares et al. 2023, App. G.4: the lowest test
    loss of CNN ensembles sits strictly between independent and joint training)?

    Among the conditions of ``key`` strictly between the first and the last, the one with the lowest
    mean ``metric`` over seeds (``best``), and the :func:`paired_difference` of each end minus it
    (``first``, ``last``: positive when that end is worse, in the metric's unit). Returns a dict
    with best, first, last; None when there are fewer than three conditions.
    """
    means = table.groupby(key)[metric].mean().sort_index()
    if len(means) < 3:
        return None
    inner = means.iloc[1:-1]
    best = inner.idxmin()
    return {"best": best, "first": paired_difference(table, metric, means.index[0], best, key=key),
            "last": paired_difference(table, metric, means.index[-1], best, key=key)}
