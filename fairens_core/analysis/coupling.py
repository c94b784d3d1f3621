"""Coupling conditions and what they do to K-ensembles (the coupling paper, §1-2, Fig. 1a-f, Fig. 2).

The coupling paper asks how much of the diversity that makes deep ensembles work is still reachable
after the members have shared the first t steps of training. It compares four conditions
(§1), which map onto `TrainConfig` fields as follows:

* no-coupling: independent runs, each member with its own initial weights and batch order
  (``spawn_step=None, vary="all"``);
* coupled-order: own initial weights, the *same* mini-batches at every step
  (``spawn_step=None, vary="init"``);
* coupled-to-t: one parent trains for t steps (initial weights and batches shared), then K
  children continue with their own batches; T steps in all, the schedule and the momentum
  carry on through the fork (``spawn_step=t, vary="all"``);
* coupled-to-t-reset: as coupled-to-t, but at the fork the optimizer (momentum) and the
  learning-rate schedule restart, so every child trains T more steps, T + t in all
  (``spawn_step=t, spawn_reset=True``).

coupled-to-0 shares only the initial weights (paper: "a special case t = 0"); with t = 0
the reset changes nothing, so :func:`condition_config` maps coupled-to-0-reset onto
coupled-to-0 (one record, one cache entry).

Records of every condition come from :func:`coupling_configs` + `fairens_core.run`; the
functions below turn them into tidy `pandas.DataFrame`s: accuracy gain and MACE improvement
of the K-ensemble over its members (Fig. 1a-d), the members' accuracies (Fig. 2), and the
symmetric KL divergence between children of one parent and between ensembles of different
parents (Fig. 1e-f). Accuracies and gains are in percentage points.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from .. import metrics as M
from ..config import TrainConfig
from ..data import load_dataset
from ..metrics._utils import make_generator
from ..runner import run
from . import stats

CONDITIONS = ("no-coupling", "coupled-order", "coupled-to-t", "coupled-to-t-reset")
LABELS = {"no-coupling": "no coupling", "coupled-order": "coupled order", "coupled-to-t": "coupled to t",
          "coupled-to-t-reset": "coupled to t + reset"}
REFERENCES = ("no-coupling", "coupled-order")  # conditions without a spawn time
SPAWNED = ("coupled-to-t", "coupled-to-t-reset")


# ---------------------------------------------------------------------------- configurations
def steps_per_epoch(cfg: TrainConfig) -> int:
    """Optimizer steps per epoch of `cfg` (its training set size // batch size)."""

    ds = load_dataset(cfg.dataset, cfg.data_root, **cfg.dataset_options)
    return len(ds.y_train) // cfg.batch_size


def total_steps(cfg: TrainConfig) -> int:
    """T: the optimizer steps of one uncoupled run of `cfg`."""
    return cfg.epochs * steps_per_epoch(cfg)


def spawn_steps(fractions: Sequence[float], total: int) -> list[int]:
    """Spawn times t in steps: round(f * total) for each fraction f of training, sorted, unique."""
    bad = [f for f in fractions if not 0 <= f < 1]
    if bad:
        raise ValueError(f"spawn fractions must lie in [0, 1): {bad}")
    return sorted({int(round(f * total)) for f in fractions})


def condition_config(base: TrainConfig, condition: str, t: int | None = None) -> TrainConfig:
    """The TrainConfig of one coupling condition (see the module docstring).

    `base` gives the recipe (data, model, members, schedule, seed, ...); its coupling fields
    are overwritten. `t` (steps) is required for the two spawned conditions and must be None
    for the others. coupled-to-0-reset is returned as coupled-to-0, which trains identically.
    """
    if condition not in CONDITIONS:
        raise ValueError(f"condition={condition!r}: choose one of {list(CONDITIONS)}")
    plain = base.replace(spawn_step=None, spawn_reset=False, reinit_fraction=0.0, reinit_from="input")
    if condition in REFERENCES:
        if t is not None:
            raise ValueError(f"{condition} has no spawn time: pass t=None")
        return plain.replace(vary="all" if condition == "no-coupling" else "init").validate()
    if t is None or t < 0:
        raise ValueError(f"{condition} needs a spawn time t >= 0 (steps)")
    reset = condition == "coupled-to-t-reset" and t > 0
    return plain.replace(vary="all", spawn_step=int(t), spawn_reset=reset).validate()


def coupling_configs(base: TrainConfig, steps: Sequence[int],
                     conditions: Sequence[str] = CONDITIONS) -> dict[tuple[str, int | None], TrainConfig]:
    """{(condition, t): config} for every condition, and every spawn time for the spawned ones.

    Reference conditions have t = None. ("coupled-to-t-reset", 0) and ("coupled-to-t", 0)
    share one config (and so one record).
    """
    out = {}
    for condition in conditions:
        for t in ([None] if condition in REFERENCES else steps):
            out[(condition, t)] = condition_config(base, condition, t)
    return out


def run_configs(configs: Mapping, runner=None, quiet: bool = True) -> dict:
    """{key: record} for {key: config}: each distinct config is run (or loaded from the cache) once.

    runner: `fairens_core.run` by default; quiet: no progress bars while training.
    """
    runner = run if runner is None else runner
    by_hash, out = {}, {}
    for key, cfg in configs.items():
        h = cfg.key()
        if h not in by_hash:
            by_hash[h] = runner(cfg, quiet=quiet)
        out[key] = by_hash[h]
    return out


# ---------------------------------------------------------------------------- K-ensembles
def k_subsets(members: int, k: int, draws: int = 20, seed: int = 0) -> list[tuple[int, ...]]:
    """Member index sets of the K-ensembles to evaluate.

    All C(members, k) subsets when there are at most `draws` of them, else `draws` random
    k-subsets (sorted indices; drawn with `seed`).
    """
    if not 1 <= k <= members:
        raise ValueError(f"K={k} must be between 1 and the {members} members")
    if math.comb(members, k) <= draws:
        return list(itertools.combinations(range(members), k))
    g = make_generator(seed)
    return [tuple(sorted(torch.randperm(members, generator=g)[:k].tolist())) for _ in range(draws)]


def ensemble_scores(probs: torch.Tensor, y: torch.Tensor, k: int | None = None, draws: int = 20,
                    seed: int = 0, n_bins: int = 15) -> dict[str, float]:
    """How a K-ensemble compares with its members (the coupling paper, Fig. 1a-d), averaged over K-subsets.

    Args:
        probs: (M, N, C) member probabilities; y: (N,) labels.
        k: ensemble size K (None: all M members).

    Returns a dict (accuracies in %, MACE as a fraction):
        member_acc, member_acc_std: mean and std (population) of the members' accuracies;
        ensemble_acc: accuracy of the probability-averaged K-ensemble;
        gain: ensemble_acc − mean accuracy of its K members (Fig. 1a-b);
        gain_se: standard error of `gain` over test examples (the gain is a mean over
            examples of ens_correct − mean member_correct; one training seed, so this is
            test-set noise only);
        member_mace, ensemble_mace, mace_improvement = member_mace − ensemble_mace (Fig. 1c-d;
            positive when the ensemble is better calibrated than its average member);
        member_nll, ensemble_nll, nll_improvement: the same for the negative log-likelihood.
    """
    probs, y = torch.as_tensor(probs).float(), torch.as_tensor(y)
    k = probs.shape[0] if k is None else k
    correct = (probs.argmax(-1) == y).double()  # (M, N)
    member_mace = torch.tensor([M.mace(p, y, n_bins) for p in probs])
    member_nll = torch.tensor([M.nll(p, y) for p in probs])
    rows = []
    for subset in k_subsets(probs.shape[0], k, draws, seed):
        idx = list(subset)
        ens = M.mean_probs(probs[idx])
        per_example = (ens.argmax(-1) == y).double() - correct[idx].mean(0)  # (N,)
        rows.append({
            "ensemble_acc": 100 * float((ens.argmax(-1) == y).double().mean()),
            "gain": 100 * float(per_example.mean()),
            "gain_se": 100 * float(per_example.std() / math.sqrt(len(y))),
            "member_mace": float(member_mace[idx].mean()), "ensemble_mace": M.mace(ens, y, n_bins),
            "member_nll": float(member_nll[idx].mean()), "ensemble_nll": M.nll(ens, y),
        })
    out = pd.DataFrame(rows).mean().to_dict()
    acc = 100 * correct.mean(1)
    out["member_acc"], out["member_acc_std"] = float(acc.mean()), float(acc.std(correction=0))
    out["mace_improvement"] = out["member_mace"] - out["ensemble_mace"]
    out["nll_improvement"] = out["member_nll"] - out["ensemble_nll"]
    return out


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """spawn_step as a nullable integer column (missing for the reference conditions)."""
    if "spawn_step" in frame:
        frame["spawn_step"] = frame["spawn_step"].astype("Int64")
    return frame


def _key_columns(key, names=("condition", "spawn_step")) -> dict:
    return dict(zip(names, key))


def coupling_table(records: Mapping, k: int | None = None, draws: int = 20, seed: int = 0,
                   keys: Sequence[str] = ("condition", "spawn_step")) -> pd.DataFrame:
    """One row per record with :func:`ensemble_scores` (Fig. 1a-d, 1i-j).

    `records` maps (condition, t) to a RunRecord (see :func:`coupling_configs`); other
    tuple keys work too, named by `keys` (e.g. ("side", "share") in chapter reinit). Columns:
    the key columns (spawn_step: missing for the reference conditions), spawn_epoch (when
    the keys include spawn_step), and the scores.
    """
    rows = []
    for key, record in records.items():
        row = _key_columns(key, keys)
        if "spawn_step" in row:
            spe = record.meta["steps_per_epoch"]
            row["spawn_epoch"] = None if row["spawn_step"] is None else row["spawn_step"] / spe
        row.update(ensemble_scores(record.probs(), record.y_test, k, draws, seed))
        rows.append(row)
    return _tidy(pd.DataFrame(rows))


def member_table(records: Mapping) -> pd.DataFrame:
    """Every member's final test accuracy (%), one row per (condition, t, member) (Fig. 2)."""
    rows = []
    for key, record in records.items():
        for m, acc in enumerate((100 * record.member_accuracy()).tolist()):
            rows.append({**_key_columns(key), "member": m, "accuracy": acc})
    return _tidy(pd.DataFrame(rows))


def _paired(per_example, probs_a, probs_b, y) -> tuple[float, float]:
    d = per_example(torch.as_tensor(probs_a).float(), torch.as_tensor(y)) - \
        per_example(torch.as_tensor(probs_b).float(), torch.as_tensor(y))
    return 100 * float(d.mean()), 100 * float(d.std() / math.sqrt(len(d)))


def paired_gain_difference(probs_a: torch.Tensor, probs_b: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(difference, standard error) of the all-member ensemble gain of A minus that of B, in points.

    Paired over test examples (both evaluated on the same test set), so the standard error
    is that of the mean of the per-example differences: test-set noise only.
    """
    return _paired(lambda p, yy: (M.mean_probs(p).argmax(-1) == yy).double() - (p.argmax(-1) == yy).double().mean(0),
                   probs_a, probs_b, y)


def paired_accuracy_difference(probs_a: torch.Tensor, probs_b: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(difference, standard error) of the all-member ensemble accuracy of A minus that of B, in points.

    Paired over test examples like :func:`paired_gain_difference`.
    """
    return _paired(lambda p, yy: (M.mean_probs(p).argmax(-1) == yy).double(), probs_a, probs_b, y)


# ---------------------------------------------------------------------------- function space
def children_kl(records: Mapping, keys: Sequence[str] = ("condition", "spawn_step")) -> pd.DataFrame:
    """Symmetric KL (and disagreement) between the children of one parent (Fig. 1e).

    For each record: the point-wise symmetric KL divergence KL(p‖q) + KL(q‖p) between two
    members' predicted distributions, averaged over test examples, then over all member
    pairs (`metrics.pairwise_symmetric_kl`). Columns: condition, spawn_step, sym_kl,
    sym_kl_std (over pairs), disagreement (% of test examples on which a pair's labels
    differ, mean over pairs). Other tuple keys are named by `keys`, as in :func:`coupling_table`.
    """
    rows = []
    for key, record in records.items():
        probs = record.probs()
        kl = M.pairwise_symmetric_kl(probs).double()
        off = ~torch.eye(len(kl), dtype=torch.bool)
        rows.append({**_key_columns(key, keys), "sym_kl": float(kl[off].mean()), "sym_kl_std": float(kl[off].std()),
                     "disagreement": 100 * M.mean_off_diagonal(M.pairwise_disagreement(probs))})
    return _tidy(pd.DataFrame(rows))


def between_parent_kl(records_a: Mapping, records_b: Mapping, k: int | None = None) -> pd.DataFrame:
    """Symmetric KL between two K-ensembles whose children come from *different* parents (Fig. 1f).

    `records_a` and `records_b` map the same keys (condition, t) to records trained with
    different seeds (so different parents, different children). For every key: the
    symmetric KL between the first-K-member ensemble of A and that of B (`ensemble_kl`),
    and, for comparison, the mean symmetric KL between a member of A and a member of B
    (`member_kl`, over all K × K cross pairs). Columns: condition, spawn_step, ensemble_kl,
    member_kl, ensemble_disagreement (%).
    """
    missing = set(records_a) ^ set(records_b)
    if missing:
        raise ValueError(f"records_a and records_b must have the same keys; unmatched: {sorted(map(str, missing))}")
    rows = []
    for key, ra in records_a.items():
        pa, pb = ra.probs(), records_b[key].probs()
        kk = min(pa.shape[0], pb.shape[0]) if k is None else k
        pa, pb = pa[:kk], pb[:kk]
        ea, eb = M.mean_probs(pa), M.mean_probs(pb)
        cross = [M.symmetric_kl(a, b) for a in pa for b in pb]
        rows.append({**_key_columns(key), "ensemble_kl": M.symmetric_kl(ea, eb), "member_kl": float(np.mean(cross)),
                     "ensemble_disagreement": 100 * float((ea.argmax(-1) != eb.argmax(-1)).double().mean())})
    return _tidy(pd.DataFrame(rows))


# ---------------------------------------------------------------------------- trends
def rank_correlation(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation of x and y (ties get their average rank); NaN if either is constant."""
    rx, ry = pd.Series(list(x)).rank(), pd.Series(list(y)).rank()
    if rx.nunique() < 2 or ry.nunique() < 2:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def early_share(t: Sequence[float], values: Sequence[float], until: float) -> float:
    """Share of the total change of `values` (from the smallest to the largest t) reached by t = `until`.

    Linear interpolation in t; 1 means the whole change happened by `until`, and a share
    above until / max(t) means the curve moves faster early than late (on a linear t axis).
    """
    order = np.argsort(np.asarray(t, dtype=float))
    t, v = np.asarray(t, dtype=float)[order], np.asarray(values, dtype=float)[order]
    total = v[-1] - v[0]
    if total == 0:
        return float("nan")
    return float((np.interp(until, t, v) - v[0]) / total)


def rank_correlation_over_seeds(curves: pd.DataFrame) -> tuple[float, float]:
    """(mean, standard error) over seeds of each seed's `rank_correlation` with t: `curves` has one
    row per seed and one column per t. A seed missing a point is left out; the SE is NaN below
    `stats.MIN_SEEDS` curves (a 2-SE rule not testable)."""
    curves = curves.dropna()
    return mean_se([rank_correlation(curves.columns, curve) for curve in curves.to_numpy()])


def early_share_over_seeds(curves: pd.DataFrame, until: float) -> tuple[float, float]:
    """(mean, standard error) over seeds of each seed's `early_share` by t = `until`, for `curves`
    as in `rank_correlation_over_seeds`."""
    curves = curves.dropna()
    return mean_se([early_share(curves.columns, curve, until) for curve in curves.to_numpy()])


def spawn_label(t: int | None, steps_per_epoch: int) -> str:
    """Axis label of a spawn time: "init" for t = 0, "t (e ep)" otherwise, "no spawn" for None."""
    if t is None or pd.isna(t):
        return "no spawn"
    t = int(t)
    return "init" if t == 0 else f"{t} ({t / steps_per_epoch:.2g} ep)"


def lookup(frame: pd.DataFrame, condition: str, t: int | None = None) -> pd.Series:
    """The row of `frame` for (condition, spawn time t); t=None for the reference conditions."""
    same_t = frame["spawn_step"].isna() if t is None else frame["spawn_step"] == t
    hits = frame[(frame["condition"] == condition) & same_t.fillna(False).astype(bool)]
    if len(hits) != 1:
        raise KeyError(f"{len(hits)} rows for condition={condition!r}, t={t}")
    return hits.iloc[0]


# ---------------------------------------------------------------------------- several seeds
def seed_configs(base: TrainConfig, seeds: Sequence[int], steps: Sequence[int],
                 conditions: Sequence[str] = CONDITIONS,
                 other_steps: Sequence[int] | None = None) -> dict[tuple[int, str, int | None], TrainConfig]:
    """{(seed, condition, t): config}: :func:`coupling_configs` repeated for every training seed.

    The first seed trains every spawn time in `steps`; the others those in `other_steps`
    (None: `steps` too), e.g. only the first and the last spawn time when a claim compares those.
    """
    out = {}
    for i, s in enumerate(seeds):
        times = steps if (i == 0 or other_steps is None) else other_steps
        out.update({(int(s), *key): cfg for key, cfg in
                    coupling_configs(base.replace(seed=int(s)), times, conditions).items()})
    return out


def seed_coupling_table(records: Mapping, k: int | None = None, draws: int = 20) -> pd.DataFrame:
    """:func:`coupling_table` of {(seed, condition, t): record}, one row per seed and key (column `seed`).

    The K-subsets of each seed are drawn with that seed.
    """
    seeds = sorted({key[0] for key in records})
    return pd.concat([coupling_table({key[1:]: r for key, r in records.items() if key[0] == s}, k, draws, s)
                      .assign(seed=s) for s in seeds], ignore_index=True)


def mean_se(values) -> tuple[float, float]:
    """(mean, standard error) of the finite values, for a difference between conditions over seeds:
    the SE is NaN (a 2-SE rule not testable) below `stats.MIN_SEEDS` values."""
    return stats.mean_se(values, min_count=stats.MIN_SEEDS)[:2]


def over_seeds(frame: pd.DataFrame, columns: Sequence[str],
               keys: Sequence[str] = ("condition", "spawn_step")) -> pd.DataFrame:
    """Mean and seed-level standard error of `columns` per key: columns `c` and `c_se` for each c,
    and `seeds` (how many seeds each mean averages). Rows keep the keys' first-seen order."""
    rows = []
    for key, group in frame.groupby(list(keys), dropna=False, sort=False):
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        for c in columns:
            row[c], row[c + "_se"] = stats.mean_se(group[c])[:2]  # descriptive: from two seeds on
        row["seeds"] = len(group)
        rows.append(row)
    return _tidy(pd.DataFrame(rows))


def seed_difference(frame: pd.DataFrame, column: str, a: tuple, b: tuple,
                    keys: Sequence[str] = ("condition", "spawn_step")) -> tuple[float, float, int]:
    """(mean, SE, n) over seeds of column(a) − column(b), paired by seed; the SE is NaN below
    `stats.MIN_SEEDS` seeds (a claim comparing conditions needs three).

    `a` and `b` are key tuples (e.g. ("coupled-to-t", 0)); a None spawn step matches the
    reference conditions. Only seeds that have both keys count.
    """
    def values(key):
        mask = pd.Series(True, index=frame.index)
        for name, value in zip(keys, key):
            col = frame[name]
            mask &= col.isna() if value is None else (col == value).fillna(False).astype(bool)
        return frame[mask].set_index("seed")[column]

    d = (values(a) - values(b)).dropna()
    mean, se = mean_se(d)
    return mean, se, int(len(d))
