"""Part V analyses (Kondratyuk et al. 2020, Kondratyuk et al. 2020): accuracy per FLOP of ensembles of a width family.

One pool of M members is trained per width; every ensemble of n ≤ M members is a sub-ensemble of
that pool (so each width is trained once). The functions below turn those pools into tidy
`pandas.DataFrame`s: accuracy against inference and training cost for each (width, n, aggregation),
the Pareto front of accuracy vs FLOPs, and the crossovers between consecutive widths.

Cost conventions (per test example; 1 multiply-add = 2 FLOPs, as `torch.utils.flop_counter`):

* inference FLOPs of an n-member ensemble = n × the member's forward FLOPs (Kondratyuk et al. 2020, §4,
  `metrics.ensemble_flops`); the member's forward FLOPs come from the record's meta;
* training FLOPs of a member = FLOPs of one forward + backward pass per example (counted by
  `torch.utils.flop_counter` on a fresh member) × examples seen in training
  (epochs × steps per epoch × batch size); evaluation passes are not counted;
* training seconds of a member = the pool's measured wall time / M (members of a pool train
  together, vectorized, so this is a share, not a separate measurement).
"""

from __future__ import annotations

import numbers
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode

from .. import metrics as M
from ..config import TrainConfig
from ..models import build_model
from ..records import RunRecord
from ..runner import run_available
from .stats import jackknife_se

AGGREGATIONS = ("arithmetic", "geometric")
_AGGREGATE = {"arithmetic": M.mean_probs, "geometric": M.geometric_mean_probs}  # Kondratyuk et al. 2020, eq. 1
COSTS = ("flops", "train_flops", "train_seconds")
INTEGER_WIDTH_MODELS = ("wrn16",)  # width is WRN-16-k's integer k


# --------------------------------------------------------------------------- parameters and runs


def check_widths(widths: Sequence[float], model: str) -> list[float]:
    """Validate a width family; returns the widths in ascending order.

    At least two distinct positive widths (the chapter compares consecutive ones); integers for
    models whose width is an integer widening factor (``wrn16``). Raises ValueError naming
    ``widths`` otherwise.
    """
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Sequence):
        raise ValueError(f"widths={widths!r}: a list of at least two positive numbers, e.g. [0.5, 1, 2]")
    ok = all(isinstance(w, numbers.Real) and not isinstance(w, bool) and np.isfinite(w) and w > 0 for w in widths)
    if not ok or len(set(widths)) < 2 or len(set(widths)) != len(widths):
        raise ValueError(f"widths={list(widths)!r}: at least two distinct positive numbers, e.g. [0.5, 1, 2]")
    if model in INTEGER_WIDTH_MODELS and any(float(w) != int(w) for w in widths):
        raise ValueError(f"widths={list(widths)!r}: model {model!r} needs integer widths (k of WRN-16-k), "
                         "e.g. [1, 2, 4, 8]")
    return sorted(widths)


def check_sizes(sizes: Sequence[int] | None, members: int) -> list[int]:
    """Ensemble sizes to evaluate (default 1..members); ValueError naming ``sizes`` if out of range."""
    if sizes is None:
        return list(range(1, members + 1))
    bad = [s for s in sizes if not isinstance(s, numbers.Integral) or isinstance(s, bool) or not 1 <= s <= members]
    if bad or not sizes:
        raise ValueError(f"sizes={sizes!r}: integers in [1, members={members}] (None: all of 1..{members})")
    return sorted(set(int(s) for s in sizes))


def check_chapter(model: str, members: int, widths: Sequence[float], sizes: Sequence[int] | None, draws: int,
                  plateau_at: int) -> tuple[list[float], list[int]]:
    """Validate the chapter's knobs before anything trains; returns (widths, sizes), sorted.

    sizes must include 1 (every comparison starts from the single model) and ``plateau_at``,
    which must be at least 2; draws a positive integer. Raises ValueError naming the knob.
    """
    widths = check_widths(widths, model)
    sizes = check_sizes(sizes, members)
    if 1 not in sizes:
        raise ValueError(f"sizes={sizes!r} must include 1: every comparison starts from the single model")
    if not isinstance(draws, numbers.Integral) or isinstance(draws, bool) or draws < 1:
        raise ValueError(f"draws={draws!r}: a positive integer (sub-ensembles per size)")
    if not isinstance(plateau_at, numbers.Integral) or isinstance(plateau_at, bool) or plateau_at < 2 \
            or plateau_at not in sizes:
        raise ValueError(f"plateau_at={plateau_at!r}: an ensemble size >= 2 among sizes={sizes}")
    return widths, sizes


def width_family_configs(base: TrainConfig, widths: Sequence[float]) -> dict[float, TrainConfig]:
    """{width: config} of one pool of ``base.members`` members per width, in ascending width order.

    Every config is validated before the first one trains, so a bad width fails at once.
    """
    configs = {w: base.replace(width=int(w) if base.model in INTEGER_WIDTH_MODELS else w, progress=False)
               for w in check_widths(widths, base.model)}
    for cfg in configs.values():
        cfg.validate()
    return configs


def available_width_family(base: TrainConfig, widths: Sequence[float]) -> tuple[list[RunRecord], list[float]]:
    """(records of the widths that can be had, widths whose records are missing): with
    `plan.RecordsOnly` in force (a full page rendered from shipped records), a width that was
    never trained is reported instead of trained."""
    records, missing = run_available(width_family_configs(base, widths))
    return list(records.values()), list(missing)


# --------------------------------------------------------------------------- costs


def training_step_flops(model: torch.nn.Module, input_shape: Sequence[int], num_classes: int) -> int:
    """FLOPs of one training step (forward + backward, cross-entropy) per example.

    Counted with ``torch.utils.flop_counter.FlopCounterMode`` on a batch of two (BatchNorm in
    training mode needs more than one value per channel) and halved. Like ``model_flops``, it
    counts matrix multiplications and convolutions only; the backward pass costs about twice
    the forward one (the first layer needs no gradient for its input, so a little less).
    """
    model = model.train()
    x = torch.zeros((2, *input_shape))
    y = torch.zeros(2, dtype=torch.long) if num_classes > 1 else torch.zeros(2, 1)
    counter = FlopCounterMode(display=False)
    with counter:
        out = model(x)
        loss = torch.nn.functional.cross_entropy(out, y) if num_classes > 1 else (out - y).pow(2).mean()
        loss.backward()
    return int(counter.get_total_flops()) // 2


def member_costs(record: RunRecord) -> dict:
    """Per-member costs of a pool: forward FLOPs, parameters, training FLOPs and seconds.

    Returns {"flops": int (forward FLOPs per example, from meta), "parameters": int,
    "train_step_flops": int (forward + backward FLOPs per example seen), "examples_seen": int
    (epochs x steps per epoch x batch size), "train_flops": float (their product: one member's
    training FLOPs), "train_seconds": float (the pool's wall time / M), "device": str}.
    """
    cfg, meta = record.config, record.meta
    shape, classes = tuple(meta["input_shape"]), meta["num_classes"]
    torch.manual_seed(0)  # the FLOP count does not depend on the values; keep init deterministic anyway
    probe = build_model(cfg["model"], shape, classes, width=cfg["width"], dropout=cfg.get("dropout", 0.0))
    step = training_step_flops(probe, shape, classes)
    examples_seen = int(cfg["epochs"] * meta["steps_per_epoch"] * cfg["batch_size"])
    return {
        "flops": int(meta["flops_per_example"]),
        "parameters": int(meta["parameters"]),
        "train_step_flops": step,
        "examples_seen": examples_seen,
        "train_flops": float(step * examples_seen),
        "train_seconds": float(meta["wall_time_s"]) / record.members,
        "device": meta.get("device_name", meta.get("device", "")),
    }


def member_cost_table(records: Sequence[RunRecord]) -> pd.DataFrame:
    """`member_costs` of each pool, one row per width (columns width, then the keys of `member_costs`)."""
    rows = [{"width": float(r.config["width"]), **member_costs(r)} for r in records]
    return pd.DataFrame(rows).sort_values("width", ignore_index=True)


# --------------------------------------------------------------------------- accuracy vs size


def accuracy_by_size(probs: torch.Tensor, y: torch.Tensor, sizes: Sequence[int] | None = None,
                     draws: int = 100, seed: int = 0) -> pd.DataFrame:
    """Test accuracy of sub-ensembles of a pool, by size and aggregation.

    probs (M, N, C) member probabilities, y (N,). For each size n, ``draws`` random sets of n
    members (every set exactly once when there are no more than ``draws``: all 255 subsets of a
    pool of 8 with the default), aggregated by the arithmetic mean of probabilities and by the
    geometric mean (Kondratyuk et al. 2020, eq. 1). "The models are chosen randomly" (Kondratyuk et al. 2020, §3).

    Returns one row per (n, aggregation): n, aggregation, accuracy (mean over the sets),
    accuracy_std, subsets (number of sets).
    """
    # The same bits on every CPU, so that ties (common in float16 records) break the same way: sums in
    # float64, element by element (`subset_means`), and logs rounded to float32, so that a last-bit
    # difference between log implementations (vector or scalar code) cannot decide a tie.
    probs = torch.as_tensor(probs, dtype=torch.float64)
    classes = probs.shape[-1]
    # the log-probabilities once per pool: the geometric mean's argmax is that of the mean log-probability
    # (eq. 1 normalised is softmax(mean log p)), so a subset needs only two means, not a fresh log
    logs = torch.log(probs.clamp_min(torch.finfo(torch.float32).tiny)).float().double()
    stacked = torch.cat([probs, logs], dim=-1)

    def metric(ens):
        return {"arithmetic": M.accuracy(ens[..., :classes], y), "geometric": M.accuracy(ens[..., classes:], y)}

    curves = M.mean_ensemble_size_curve(metric, stacked, sizes=sizes, draws=draws, seed=seed)
    rows = [{"n": n, "aggregation": name, "accuracy": mean, "accuracy_std": std, "subsets": len(values)}
            for name, curve in curves.items()
            for n, mean, std, values in zip(curve.sizes, curve.mean, curve.std, curve.values)]
    return pd.DataFrame(rows)


def efficiency_table(records: Sequence[RunRecord], sizes: Sequence[int] | None = None, draws: int = 100,
                     seed: int = 0, leave_out: int | None = None, costs: dict | None = None) -> pd.DataFrame:
    """Accuracy and cost of every (width, n, aggregation): the points of Kondratyuk et al. 2020, Fig. 1.

    One record (a pool) per width. Costs of an n-member ensemble are n times a member's:
    ``flops`` (inference FLOPs per example, via `metrics.ensemble_flops`), ``parameters``,
    ``train_flops`` and ``train_seconds`` (see the module docstring). Returns columns model,
    width, n, aggregation, accuracy, accuracy_std, subsets, flops, parameters, train_flops,
    train_seconds, pool, device; sorted by aggregation, width, n.

    ``leave_out`` drops member ``i`` of every pool (the jackknife replicates of `jackknife`;
    sizes larger than the remaining pool are skipped); ``costs`` maps ``id(record)`` to its
    `member_costs` (to count them once).
    """
    frames = []
    for record in records:
        cost = costs[id(record)] if costs and id(record) in costs else member_costs(record)
        probs = record.probs()
        if leave_out is not None:
            probs = torch.cat([probs[:leave_out], probs[leave_out + 1:]])
        pool = int(probs.shape[0])
        kept = None if sizes is None and leave_out is None else \
            [n for n in (sizes if sizes is not None else range(1, record.members + 1)) if n <= pool]
        acc = accuracy_by_size(probs, record.y_test, kept, draws, seed)
        acc["flops"] = [M.ensemble_flops([cost["flops"]] * n) for n in acc.n]
        acc["parameters"] = acc.n * cost["parameters"]
        acc["train_flops"] = acc.n * cost["train_flops"]
        acc["train_seconds"] = acc.n * cost["train_seconds"]
        frames.append(acc.assign(model=record.config["model"], width=float(record.config["width"]),
                                 pool=pool, device=cost["device"]))
    table = pd.concat(frames, ignore_index=True)
    columns = ["model", "width", "n", "aggregation", "accuracy", "accuracy_std", "subsets", "flops", "parameters",
               "train_flops", "train_seconds", "pool", "device"]
    return table[columns].sort_values(["aggregation", "width", "n"], ignore_index=True)


# --------------------------------------------------------------------------- Pareto front and crossovers


def pareto_front(frame: pd.DataFrame, cost: str = "flops", value: str = "accuracy") -> pd.Series:
    """Boolean mask of the rows that no other row dominates (cost ≤, value ≥, one of them strictly).

    Kondratyuk et al. (2020) reads its figures this way: a point "above and to the left" of another is the
    better trade-off (§4). Rows with equal cost and value are all kept.
    """
    c, v = frame[cost].to_numpy(float), frame[value].to_numpy(float)
    dominated = ((c[None, :] <= c[:, None]) & (v[None, :] >= v[:, None])
                 & ((c[None, :] < c[:, None]) | (v[None, :] > v[:, None]))).any(axis=1)
    return pd.Series(~dominated, index=frame.index, name="pareto")


def with_pareto(table: pd.DataFrame, cost: str = "flops", value: str = "accuracy") -> pd.DataFrame:
    """`table` with a boolean column ``pareto``, the front computed separately per aggregation."""
    parts = [part.assign(pareto=pareto_front(part, cost, value)) for _, part in table.groupby("aggregation", sort=False)]
    return pd.concat(parts).loc[table.index]


def crossovers(table: pd.DataFrame, aggregation: str = "arithmetic", cost: str = "flops") -> pd.DataFrame:
    """Narrow ensembles against the next wider model, for each pair of consecutive widths.

    ``cost`` is the column that prices an ensemble: "flops" (inference, Kondratyuk et al. 2020, §4),
    "train_flops" or "train_seconds". Columns of the result:

      narrow, wide                 the two widths;
      wide_accuracy, wide_cost     the wider single model (n = 1);
      match_n                      smallest n whose narrow ensemble is at least as accurate as the wider single
                                   model (NaN: none in the pool);
      match_cost_ratio             that ensemble's cost / the wider single model's (< 1: cheaper);
      best_at_wide_cost            best accuracy of a narrow ensemble costing no more than the wider single model
                                   (NaN: not even one narrow member fits);
      margin                       best_at_wide_cost − wide_accuracy (> 0: ensembling wins at equal cost);
      switch_n                     smallest n at which some ensemble of the wider width is at least as accurate for
                                   no more cost (one of the two strictly): beyond n = switch_n − 1 the next width is
                                   the better buy (Kondratyuk et al. 2020, §4's crossover; NaN: not within the pool).
    """
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation={aggregation!r}: choose one of {list(AGGREGATIONS)}")
    if cost not in COSTS:
        raise ValueError(f"cost={cost!r}: choose one of {list(COSTS)}")
    part = table[table.aggregation == aggregation]
    widths = sorted(part.width.unique())
    rows = []
    for narrow, wide in zip(widths[:-1], widths[1:]):
        a = part[part.width == narrow].sort_values("n")
        b = part[part.width == wide].sort_values("n")
        single = b[b.n == 1]
        wide_acc = float(single.accuracy.iloc[0]) if len(single) else np.nan
        wide_cost = float(single[cost].iloc[0]) if len(single) else np.nan
        match = a[a.accuracy >= wide_acc]
        affordable = a[a[cost] <= wide_cost]
        best = float(affordable.accuracy.max()) if len(affordable) else np.nan
        switch = [int(n) for n, c, acc in zip(a.n, a[cost], a.accuracy) if _dominated(c, acc, b[cost], b.accuracy)]
        rows.append({
            "narrow": narrow, "wide": wide, "wide_accuracy": wide_acc, "wide_cost": wide_cost,
            "match_n": float(match.n.iloc[0]) if len(match) else np.nan,
            "match_cost_ratio": float(match[cost].iloc[0]) / wide_cost if len(match) else np.nan,
            "best_at_wide_cost": best, "margin": best - wide_acc,
            "switch_n": float(switch[0]) if switch else np.nan,
        })
    return pd.DataFrame(rows, columns=["narrow", "wide", "wide_accuracy", "wide_cost", "match_n",
                                       "match_cost_ratio", "best_at_wide_cost", "margin", "switch_n"])


def _dominated(cost: float, accuracy: float, costs: pd.Series, accuracies: pd.Series) -> bool:
    """True if some (cost, accuracy) pair of the others is at least as good in both and better in one."""
    better = (costs <= cost) & (accuracies >= accuracy) & ((costs < cost) | (accuracies > accuracy))
    return bool(better.any())


# --------------------------------------------------------------------------- summaries for the claims


def gain_share(table: pd.DataFrame, at: int, aggregation: str = "arithmetic") -> pd.DataFrame:
    """Share of the largest ensemble's gain over a single member that n = ``at`` members already reach.

    share = (acc(at) − acc(1)) / (acc(n_max) − acc(1)), per width; NaN where the largest
    ensemble gains nothing (or ``at`` was not evaluated). Columns width, single, at, largest, n_max, share.
    """
    rows = []
    for width, part in table[table.aggregation == aggregation].groupby("width"):
        acc = part.set_index("n").accuracy
        n_max = int(acc.index.max())
        total = acc.get(n_max) - acc.get(1, np.nan)
        share = (acc.get(at, np.nan) - acc.get(1, np.nan)) / total if total > 0 else np.nan
        rows.append({"width": width, "single": acc.get(1, np.nan), "at": acc.get(at, np.nan),
                     "largest": acc.get(n_max), "n_max": n_max, "share": share})
    return pd.DataFrame(rows, columns=["width", "single", "at", "largest", "n_max", "share"])


def geometric_minus_arithmetic(table: pd.DataFrame) -> pd.DataFrame:
    """Accuracy of the geometric-mean ensemble minus the arithmetic-mean one, per width and n ≥ 2.

    Columns width, n, arithmetic, geometric, difference. (At n = 1 both are the member itself.)
    """
    wide = table.pivot_table(index=["width", "n"], columns="aggregation", values="accuracy").reset_index()
    wide = wide[wide.n >= 2].copy()
    wide["difference"] = wide["geometric"] - wide["arithmetic"]
    wide.columns.name = None
    return wide[["width", "n", "arithmetic", "geometric", "difference"]].reset_index(drop=True)


# --------------------------------------------------------------------------- seed-level standard errors


def jackknife_tables(records: Sequence[RunRecord], sizes: Sequence[int] | None = None, draws: int = 100,
                     seed: int = 0) -> list[pd.DataFrame]:
    """The leave-one-member-out replicates of `efficiency_table`: replicate i drops member i (the
    i-th seed) of every pool; sizes larger than M − 1 are skipped. Empty with fewer than 3 members."""
    costs = {id(r): member_costs(r) for r in records}
    pool = min(r.members for r in records)
    if pool < 3:
        return []
    return [efficiency_table(records, sizes, draws, seed, leave_out=i, costs=costs) for i in range(pool)]


def jackknife(table: pd.DataFrame, replicates: Sequence[pd.DataFrame], statistic) -> tuple[np.ndarray, np.ndarray]:
    """A statistic of the efficiency table and its standard error over the members (the seeds).

    ``statistic(table)`` maps an `efficiency_table` to a number or an array of numbers. The
    estimate is its value on ``table`` (the whole pools); the standard error is the
    leave-one-member-out jackknife over ``replicates`` (`jackknife_tables`):
    SE = sqrt((M − 1)/M · Σ (θ_i − θ̄)²). Statistics that use the largest ensemble should read
    its size from the table (``table.n.max()``): in a replicate it is M − 1. Returns
    (estimate, se) as float arrays of the statistic's shape; SE NaN without replicates.
    """
    estimate = np.asarray(statistic(table), float)
    if len(replicates) < 3:
        return estimate, np.full_like(estimate, np.nan)
    return estimate, jackknife_se(np.stack([np.asarray(statistic(t), float) for t in replicates]))


def single_steps(table: pd.DataFrame, aggregation: str = "geometric") -> np.ndarray:
    """Mean member accuracy of each width minus that of the next narrower width (one value per step)."""
    part = table[(table.aggregation == aggregation) & (table.n == 1)].sort_values("width")
    return np.diff(part.accuracy.to_numpy(float))


def margins(table: pd.DataFrame, aggregation: str = "geometric", cost: str = "flops") -> np.ndarray:
    """`crossovers`' margin of each pair of consecutive widths: the best narrow ensemble costing no more
    than the wider single model, minus that model's accuracy."""
    return crossovers(table, aggregation, cost).margin.to_numpy(float)


def crossover_gaps(table: pd.DataFrame, aggregation: str = "geometric", cost: str = "flops") -> np.ndarray:
    """For each pair of consecutive widths: the best ensemble of the wider width costing no more than
    the largest ensemble of the narrower width, minus that narrow ensemble's accuracy (> 0: at the
    end of the pool the next width is the better buy, Kondratyuk et al. 2020, §4's crossover; NaN
    when not even one wider member fits its cost)."""
    part = table[table.aggregation == aggregation]
    widths = sorted(part.width.unique())
    out = []
    for narrow, wide in zip(widths[:-1], widths[1:]):
        a = part[part.width == narrow]
        largest = a[a.n == a.n.max()].iloc[0]
        b = part[(part.width == wide) & (part[cost] <= largest[cost])]
        out.append(float(b.accuracy.max()) - float(largest.accuracy) if len(b) else np.nan)
    return np.asarray(out, float)


def slowdown(table: pd.DataFrame, at: int, aggregation: str = "geometric") -> np.ndarray:
    """Per width: accuracy gained per member up to ``at`` members minus that gained per member
    from ``at`` to the largest ensemble (> 0: returns diminish after ``at``). NaN where ``at``
    is not below the largest size or was not evaluated."""
    out = []
    for _, part in table[table.aggregation == aggregation].groupby("width"):
        acc = part.set_index("n").accuracy
        n_max = int(acc.index.max())
        if at not in acc.index or 1 not in acc.index or not 1 < at < n_max:
            out.append(np.nan)
            continue
        early = (acc[at] - acc[1]) / (at - 1)
        late = (acc[n_max] - acc[at]) / (n_max - at)
        out.append(float(early - late))
    return np.asarray(out, float)


def mean_geometric_gain(table: pd.DataFrame) -> float:
    """Mean of `geometric_minus_arithmetic` over widths and n ≥ 2."""
    return float(geometric_minus_arithmetic(table).difference.mean())


# --------------------------------------------------------------------------- training length


def pair_summary(records: Sequence[RunRecord], sizes: Sequence[int] | None = None, draws: int = 100,
                 seed: int = 0) -> pd.DataFrame:
    """Per pair of consecutive widths of one width family: the wider single model's gain over the
    narrower one (``step``, `single_steps`) and the best narrow ensemble at the wider model's FLOPs
    minus it (``margin``, `margins`), both with jackknife standard errors over the seeds."""
    table = efficiency_table(records, sizes, draws=draws, seed=seed)
    replicates = jackknife_tables(records, sizes, draws=draws, seed=seed)
    step, step_se = jackknife(table, replicates, single_steps)
    margin, margin_se = jackknife(table, replicates, margins)
    widths = sorted(table.width.unique())
    return pd.DataFrame({"narrow": widths[:-1], "wide": widths[1:], "step": step, "step_se": step_se,
                         "margin": margin, "margin_se": margin_se})


def training_length_sweep(base: TrainConfig, widths: Sequence[float], epochs: Sequence[int],
                          sizes: Sequence[int] | None = None, draws: int = 100,
                          seed: int = 0) -> tuple[pd.DataFrame, list[int]]:
    """`pair_summary` of the width family trained for each number of ``epochs`` (all else as
    ``base``): (one frame with an ``epochs`` column, lengths skipped because a width was not
    trained at this scale)."""
    frames, skipped = {}, []
    for length in epochs:
        records, missing = available_width_family(base.replace(epochs=int(length)), widths)
        if missing:
            skipped.append(int(length))
            continue
        frames[int(length)] = pair_summary(records, sizes, draws, seed)
    if not frames:
        return pd.DataFrame(columns=["epochs", "narrow", "wide", "step", "step_se", "margin", "margin_se"]), skipped
    return pd.concat(frames, names=["epochs"]).reset_index(level=0).reset_index(drop=True), skipped
