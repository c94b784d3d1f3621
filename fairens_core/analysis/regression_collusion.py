"""Part II, learner collusion in practice (Jeffares et al. 2023 2023, §6.1-6.2).

Chapter `tabular_collusion` (§6.1, Fig. 2-4, App. B) trains MLP ensembles on tabular
regression with the augmented objective L_β for a grid of β and measures, on the test set,
the three symptoms the paper predicts for collusion: diversity that is large next to the
ensemble's MSE (Fig. 2), a large share of it that is a mere constant offset per member
(optimal debiasing, Fig. 3, App. C.1), and an ensemble that breaks when members are dropped
at test time (Fig. 4).

Chapter `generalization` (§6.2, Fig. 5, App. G.1 Fig. 10-12) follows train and test loss of
the ensemble over the epochs of training, for β = 0 against β = 1, from the per-epoch raw
outputs a record keeps with ``TrainConfig.track_outputs``.

The formulas live in `fairens_core.metrics.diversity`; this module trains through
`runner.run` (cached) and arranges the numbers into tidy data frames, in float64.

Shapes: M members, N examples, E evaluations (epochs), C outputs (regression: C = 1).
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import pandas as pd
import torch

from ..config import TrainConfig
from ..derived import derived_frame
from ..metrics import diversity as D
from ..metrics._utils import make_generator
from ..runner import run
from . import joint, stats

seeds = joint.seeds  # the chapters call rc.seeds
DROPOUT_PS = (0.2, 0.4, 0.6)  # fractions of members dropped at test time (Fig. 4, App. B)


def _f64(x) -> torch.Tensor:
    return torch.as_tensor(x).detach().double()


# ------------------------------------------------------------------ §6.1: symptoms of collusion


def dropout_increases(f: torch.Tensor, y: torch.Tensor, ps: Iterable[float], repeats: int = 100,
                      seed: int = 0) -> dict:
    """Mean increase of the ensemble MSE with a fraction p of the members dropped at test time (Fig. 4).

    The same random subsets as ``metrics.diversity.learner_dropout_error_increase`` (for each p,
    ``repeats`` permutations drawn from a generator seeded with ``seed``; round(p·M) members
    dropped), evaluated in one batched operation instead of one call per subset.

    Args:
        f: (M, N) member predictions (float64); y: (N,) targets.

    Returns:
        {p: mean increase of the ensemble MSE} for every p in ``ps``.
    """
    m = f.shape[0]
    full = ((f.mean(0) - y) ** 2).mean()
    out = {}
    for p in ps:
        dropped = math.floor(p * m + 0.5)
        if not 0 <= dropped < m:
            raise ValueError(f"dropping {dropped} of {m} members leaves none")
        generator = make_generator(seed)
        kept = torch.stack([torch.randperm(m, generator=generator)[dropped:] for _ in range(repeats)])  # (R, K)
        err = ((f[kept].mean(1) - y) ** 2).mean(-1)  # (R,)
        out[p] = float((err - full).mean())
    return out


def debiasing_check(f: torch.Tensor, draws: int = 200, seed: int = 0) -> float:
    """App. C.1 checked numerically: no other zero-sum constant shifts leave less diversity.

    Starting from the optimally debiased members f_j − b_j, every draw adds random constants
    δ_j (one per member, Gaussian with the spread of the b_j, centred so that Σ_j δ_j = 0 and
    the ensemble is unchanged) and measures the diversity left.

    Returns:
        min over draws of DIV(shifted) / DIV(debiased): at least 1 when App. C.1's optimum
        holds (NaN when the debiased diversity is 0).
    """
    g = D.debias_predictions(f)  # (M, N)
    div0 = ((g - g.mean(0)) ** 2).mean()
    if div0 <= 1e-15:
        return float("nan")
    scale = float((f.mean(1) - f.mean()).std()) or 1.0
    delta = torch.randn(draws, f.shape[0], generator=make_generator(seed), dtype=f.dtype) * scale
    delta = delta - delta.mean(1, keepdim=True)  # (draws, M), zero-sum
    shifted = g[None] + delta[..., None]  # (draws, M, N)
    div = ((shifted - shifted.mean(1, keepdim=True)) ** 2).mean((1, 2))
    return float((div / div0).min())


def collusion_metrics(preds, targets, ps: Iterable[float] = DROPOUT_PS, repeats: int = 100,
                      seed: int = 0) -> dict:
    """The §6.1 diagnostics of one regression ensemble on one data split.

    Args:
        preds: (M, N) or (M, N, 1) member outputs; targets: (N,).
        ps: fractions of members dropped at test time (Fig. 4).
        repeats: random member subsets per fraction (100 in the paper).
        seed: seed of those subsets.

    Returns:
        A dict: ERR (ensemble MSE), ERR_bar (mean member MSE), DIV = ERR_bar − ERR
        (Def. 4.2, Fig. 2), DIV_debiased (diversity left after optimal debiasing, App. C.1),
        debiased_share (1 − DIV_debiased / DIV: the share of DIV that constant member
        offsets explain, Fig. 3; 0 when DIV is 0 to rounding), debias_check (the App. C.1
        check of :func:`debiasing_check`: ≥ 1 when no other zero-sum shifts do better), and
        for each p in ``ps`` ``dropout_<p>`` (mean increase of ERR with a fraction p of
        members dropped) and ``dropout_<p>_relative`` (that increase / ERR, Fig. 4).
    """
    f = _f64(preds)
    f = f[..., 0] if f.ndim == 3 else f
    y = _f64(targets)
    dec = D.diversity_decomposition(f, y, "mse")
    debiased = D.debiased_diversity(f)
    div = dec.div.item()
    row = {"ERR": dec.err.item(), "ERR_bar": dec.err_bar.item(), "DIV": div, "DIV_debiased": debiased.item(),
           "debiased_share": 1 - debiased.item() / div if div > 1e-12 else 0.0,
           "debias_check": debiasing_check(f, seed=seed)}
    for p, increase in dropout_increases(f, y, ps, repeats, seed).items():
        row[f"dropout_{p:g}"] = increase
        row[f"dropout_{p:g}_relative"] = increase / row["ERR"] if row["ERR"] > 0 else math.inf
    return row


METRICS_VERSION = 1  # bump when collusion_metrics changes: cached results are then computed anew


def record_metrics(record, ps: Iterable[float] = DROPOUT_PS, repeats: int = 100, seed: int = 0) -> dict:
    """:func:`collusion_metrics` of a record's test predictions, cached beside the record
    (``fairens_core.derived``), so that a re-executed page reads them instead of recomputing."""
    ps = [float(p) for p in ps]
    frame = derived_frame(record, "collusion_metrics", METRICS_VERSION,
                          {"ps": ps, "repeats": int(repeats), "seed": int(seed)},
                          lambda: pd.DataFrame([collusion_metrics(record.logits(), record.y_test, ps, repeats, seed)]))
    return {c: float(frame[c].iloc[0]) for c in frame.columns}


def beta_sweep(base: TrainConfig, betas: Iterable[float], seed_list: Sequence[int],
               ps: Iterable[float] = DROPOUT_PS, repeats: int = 100, label: str | None = None) -> pd.DataFrame:
    """Train (or load) one ensemble per (β, seed) and measure :func:`collusion_metrics` on its test set.

    Every run is ``base`` with ``beta`` and ``seed`` replaced, trained with L_β
    (Jeffares et al. 2023, eq. 2); members differ by their initialisation only (β > 0 needs shared
    batches). The dataset may be any regression dataset of `fairens_core.data`, e.g. a
    UCI-style CSV (``dataset="csv"``). The metrics of a record are cached (:func:`record_metrics`).

    Returns:
        One row per (β, seed): dataset (``label`` or the dataset's name), beta, seed,
        members, then the columns of :func:`collusion_metrics`.
    """
    rows = []
    for beta in betas:
        for s in seed_list:
            record = run(base.replace(beta=float(beta), seed=s, progress=False))
            if record.meta["task"] != "regression":
                raise ValueError(f"dataset {base.dataset!r} is a classification task; §6.1 needs regression")
            metrics = record_metrics(record, ps, repeats, seed=s)
            rows.append({"dataset": label or record.meta["dataset"], "beta": float(beta), "seed": s,
                         "members": record.members, **metrics})
    return pd.DataFrame(rows)


def paired_difference(sweep: pd.DataFrame, metric: str, a: float, b: float, min_seeds: int = 3) -> dict:
    """Mean and standard error over seeds of ``metric`` at β = a minus β = b, paired by seed,
    for the rows of one dataset of :func:`beta_sweep`. se is NaN with fewer than ``min_seeds``
    seeds (a pass rule on it is then not testable). Returns diff, se, n, a_mean, b_mean."""
    return joint.paired_difference(sweep, metric, float(a), float(b), key="beta", min_seeds=min_seeds)


def mean_se(sweep: pd.DataFrame, metric: str, beta: float, min_seeds: int = 3) -> tuple[float, float, int]:
    """Mean of ``metric`` over the seeds at ``beta`` and its standard error (NaN below ``min_seeds``)."""
    mean, se, n = stats.mean_se(sweep.loc[sweep.beta == float(beta), metric])
    return mean, (se if n >= min_seeds else float("nan")), n


def summarize_sweep(sweep: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds of every metric, per (dataset, β).

    Columns: dataset, beta, repeats, then ``<metric>`` (mean) and ``<metric>_std`` for each
    numeric column of :func:`beta_sweep` (std is 0 with a single repeat).
    """
    metrics = [c for c in sweep.columns if c not in ("dataset", "beta", "seed", "members")]
    grouped = sweep.groupby(["dataset", "beta"], sort=False)
    mean = grouped[metrics].mean()
    std = grouped[metrics].std(ddof=1).fillna(0.0).add_suffix("_std")
    out = pd.concat([grouped.size().rename("repeats"), mean, std], axis=1).reset_index()
    return out[["dataset", "beta", "repeats"] + [c for m in metrics for c in (m, f"{m}_std")]]


def long_metrics(summary: pd.DataFrame, metrics: dict[str, str]) -> pd.DataFrame:
    """Rows (dataset, beta, quantity, mean, lo, hi) for charts: ``metrics`` maps columns to labels.

    lo / hi = mean ∓ one standard deviation over the repeats (the paper's Fig. 2-4 bands).
    """
    frames = [pd.DataFrame({"dataset": summary.dataset, "beta": summary.beta, "quantity": label,
                            "mean": summary[col], "lo": summary[col] - summary[f"{col}_std"],
                            "hi": summary[col] + summary[f"{col}_std"]})
              for col, label in metrics.items()]
    return pd.concat(frames, ignore_index=True)


def dropout_long(summary: pd.DataFrame, ps: Iterable[float] = DROPOUT_PS, relative: bool = True) -> pd.DataFrame:
    """Fig. 4 as rows (dataset, beta, p, mean, lo, hi): the (relative) increase of test ERR."""
    suffix = "_relative" if relative else ""
    frames = [long_metrics(summary, {f"dropout_{p:g}{suffix}": f"p = {p:g}"}).assign(p=p) for p in ps]
    return pd.concat(frames, ignore_index=True)


# ------------------------------------------------------------------ §6.2: generalization over training


def _loss_name(task: str, combine: str) -> str:
    if task == "regression":
        return "mse"
    return "ce_score" if combine == "score" else "ce_prob"


def decompose(outputs, targets, task: str = "regression", combine: str = "prob") -> D.DiversityDecomposition:
    """ERR, ERR-bar and DIV (Def. 4.1-4.2) of raw member outputs (M, N, C) against targets (N,).

    Regression: squared error of averaged outputs (C = 1). Classification: cross-entropy of
    the averaged probabilities (``combine="prob"``) or of the averaged scores ("score").
    """
    out = _f64(outputs)
    loss = _loss_name(task, combine)
    if loss == "mse":
        return D.diversity_decomposition(out[..., 0] if out.ndim == 3 else out, _f64(targets), "mse")
    labels = torch.as_tensor(targets).long()
    return D.diversity_decomposition(out.softmax(-1) if loss == "ce_prob" else out, labels, loss)


def loss_trajectory(record) -> pd.DataFrame:
    """Per-epoch ERR / ERR-bar / DIV of one ensemble on its train and test split (App. G.1).

    Needs a record trained with ``track_outputs`` (raw outputs of every member after every
    epoch: ``train_outputs_trajectory`` and ``test_outputs_trajectory``, (M, E, n, C), with
    ``y_train_tracked`` and ``y_test``).

    Returns:
        One row per (epoch, split): epoch (1-based), split ("train" / "test"), examples,
        ERR (ensemble loss), ERR_bar (mean member loss), DIV.
    """
    if getattr(record, "train_outputs_trajectory", None) is None:
        raise ValueError("this record has no per-epoch outputs: train it with track_outputs=-1 (or n > 0)")
    task, combine = record.meta["task"], record.config.get("combine", "prob")
    splits = {"train": (record.train_outputs_trajectory, record.y_train_tracked),
              "test": (record.test_outputs_trajectory, record.y_test)}
    rows = []
    for split, (outputs, y) in splits.items():
        y = y[:outputs.shape[2]]
        for e in range(outputs.shape[1]):
            dec = decompose(outputs[:, e], y, task, combine)
            rows.append({"epoch": e + 1, "split": split, "examples": outputs.shape[2], "ERR": dec.err.item(),
                         "ERR_bar": dec.err_bar.item(), "DIV": dec.div.item()})
    return pd.DataFrame(rows)


def trajectories(base: TrainConfig, betas: Iterable[float], seed_list: Sequence[int]) -> pd.DataFrame:
    """:func:`loss_trajectory` for every (β, seed): ``base`` with beta, seed and track_outputs=-1.

    Returns the rows of :func:`loss_trajectory` with columns beta and seed in front.
    """
    frames = []
    for beta in betas:
        for s in seed_list:
            cfg = base.replace(beta=float(beta), seed=s, track_outputs=base.track_outputs or -1, progress=False)
            frames.append(loss_trajectory(run(cfg)).assign(beta=float(beta), seed=s))
    out = pd.concat(frames, ignore_index=True)
    return out[["beta", "seed"] + [c for c in out.columns if c not in ("beta", "seed")]]


def _mean_se(values: pd.Series) -> pd.Series:
    n = len(values)
    se = values.std(ddof=1) / math.sqrt(n) if n > 1 else 0.0
    mean = values.mean()
    return pd.Series({"mean": mean, "se": se, "lo": mean - 2 * se, "hi": mean + 2 * se, "repeats": n})


def generalization_gap(traj: pd.DataFrame) -> pd.DataFrame:
    """The generalization gap L_test(f̄, y) − L_train(f̄, y) per (β, epoch), ± 2 s.e. over seeds (Fig. 5).

    Args:
        traj: rows of :func:`trajectories`.

    Returns:
        One row per (beta, epoch): mean, se (standard error over seeds), lo / hi
        (mean ∓ 2 s.e., the paper's band), repeats.
    """
    wide = traj.pivot_table(index=["beta", "seed", "epoch"], columns="split", values="ERR")
    gap = (wide["test"] - wide["train"]).rename("gap").reset_index()
    out = gap.groupby(["beta", "epoch"]).gap.apply(_mean_se).unstack().reset_index()
    out["repeats"] = out.repeats.astype(int)
    return out


def curves(traj: pd.DataFrame, quantities: Sequence[str] = ("ERR",)) -> pd.DataFrame:
    """Mean ± 2 s.e. over seeds of ``quantities`` per (β, split, epoch), long format (Fig. 10-12).

    Returns rows: beta, split, epoch, quantity, mean, se, lo, hi, repeats.
    """
    long = traj.melt(id_vars=["beta", "seed", "epoch", "split"], value_vars=list(quantities),
                     var_name="quantity", value_name="value")
    out = long.groupby(["beta", "split", "epoch", "quantity"]).value.apply(_mean_se).unstack().reset_index()
    out["repeats"] = out.repeats.astype(int)
    return out


def paired_gap_difference(traj: pd.DataFrame, epochs: int | None = None, low: float = 0.0,
                          high: float = 1.0) -> pd.Series:
    """Gap(β = high) − gap(β = low), paired by seed, averaged over the last ``epochs`` epochs.

    The two ensembles of a seed start from the same initial weights (members differ by
    initialisation only), so the difference within a seed removes the luck of the draw.
    ``epochs=None`` uses the last epoch only.

    Returns mean, se, lo, hi (± 2 s.e.) and repeats of the per-seed differences.
    """
    wide = traj.pivot_table(index=["beta", "seed", "epoch"], columns="split", values="ERR")
    gap = (wide["test"] - wide["train"]).rename("gap").reset_index()
    last = gap.epoch.max()
    gap = gap[gap.epoch > last - (epochs or 1)]
    per_seed = gap.groupby(["beta", "seed"]).gap.mean().unstack("beta")
    return _mean_se((per_seed[float(high)] - per_seed[float(low)]).dropna())


def summary_at(traj: pd.DataFrame, epoch: int | None = None) -> pd.DataFrame:
    """ERR, ERR-bar and DIV at one epoch (default: the last), mean over seeds, per (β, split)."""
    epoch = traj.epoch.max() if epoch is None else epoch
    at = traj[traj.epoch == epoch]
    out = at.groupby(["beta", "split"], sort=False)[["ERR", "ERR_bar", "DIV"]].mean().reset_index()
    return out.assign(epoch=epoch)[["beta", "split", "epoch", "ERR", "ERR_bar", "DIV"]]

