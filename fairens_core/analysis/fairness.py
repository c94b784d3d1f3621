"""Part I analyses (Ko et al. 2023, FAIR-Ensemble): who gains from a homogeneous ensemble.

Each function turns a pool of member predictions into a tidy `pandas.DataFrame` that a
chapter plots in a few lines. The metrics themselves live in `fairens_core.metrics`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .. import metrics as M
from ..claims import Claim, exceeds, finite, plus_minus, untestable
from .stats import mean_se

GROUPS = ("all", "top-k", "bottom-k")


def class_groups(probs: torch.Tensor, y: torch.Tensor, k: int, reference: int | None = None) -> dict:
    """{"all": None, "top-k": (K,), "bottom-k": (K,)} class indices.

    probs (M, N, C). Classes are ranked by the members' average per-class accuracy (stable:
    one model's ranking is noisy, and choosing the worst classes of a model on the same test
    set flatters its ensemble by regression to the mean) or, with `reference=m`, by member m
    alone as in Ko et al. 2023, §3.1.
    """
    ref = probs if reference is None else probs[reference]
    return {"all": None, "top-k": M.top_k_classes(ref, y, k), "bottom-k": M.bottom_k_classes(ref, y, k)}


def single_model_accuracy(probs, y, groups) -> dict[str, float]:
    """Average member's accuracy on each group: the 'single model' of every ratio."""
    return {g: float(np.mean([M.group_accuracy(p, y, c) for p in probs])) for g, c in groups.items()}


def gain_curves(probs: torch.Tensor, y: torch.Tensor, k: int, sizes=None, draws: int = 100,
                seed: int = 0, reference: int | None = None) -> pd.DataFrame:
    """Accuracy and relative gain vs ensemble size for all / top-k / bottom-k classes.

    Ko et al. (2023) Fig. 1-2 with the App. A.1 protocol: for each size S, `draws` random sets of S
    members from the pool, probability-averaged; relative gain = ensemble accuracy on the group
    / average single-model accuracy on the same group. Returns one row per (size, group) with
    columns size, group, accuracy, accuracy_std, gain, gain_std.
    """
    groups = class_groups(probs, y, k, reference)
    curves = _group_curves(probs, y, groups, sizes, draws, seed)
    return _gain_rows(curves, single_model_accuracy(probs, y, groups))


def _group_curves(probs: torch.Tensor, y: torch.Tensor, groups: dict, sizes, draws: int, seed: int) -> dict:
    """{key: EnsembleSizeCurve} of the probability-averaged ensemble's accuracy on every group
    {key: class indices or None}, all from the same draws."""
    def metric(ens):
        labels = ens.argmax(-1)
        return {key: M.group_accuracy(labels, y, classes) for key, classes in groups.items()}

    return M.mean_ensemble_size_curve(metric, probs, sizes=sizes, draws=draws, seed=seed)


def _gain_rows(curves: dict, single: dict) -> pd.DataFrame:
    rows = []
    for g, curve in curves.items():
        for s, mean, std in zip(curve.sizes, curve.mean, curve.std):
            rows.append({"size": s, "group": g, "accuracy": mean, "accuracy_std": std,
                         "gain": ratio(mean, single[g]), "gain_std": ratio(std, single[g])})
    return pd.DataFrame(rows)


def ratio(num: float, den: float) -> float:
    """num / den, NaN (undefined, and no RuntimeWarning) when den is 0: a group the single
    model never gets right has no relative gain."""
    return float(num) / float(den) if den != 0 else float("nan")


def pool_gains(probs: torch.Tensor, y: torch.Tensor, k: int, reference: int | None = None) -> pd.DataFrame:
    """Gain of the whole pool over its average member on each group, in three units.

    One row per group (all, top-k, bottom-k) with columns single and ensemble (accuracy, %),
    points (ensemble - single), relative (ensemble / single; NaN when single is 0) and fixed (the
    share of the single member's errors that the ensemble fixes, `metrics.errors_fixed`, in %; NaN
    when the single member makes no error on the group). A group with more errors to
    fix can gain more points without being helped more per error: `fixed` separates the two.
    """
    groups = class_groups(probs, y, k, reference)
    single = single_model_accuracy(probs, y, groups)
    ens = M.mean_probs(probs)
    rows = []
    for g, c in groups.items():
        acc = M.group_accuracy(ens, y, c)
        s, e = 100 * single[g], 100 * acc
        rows.append({"group": g, "single": s, "ensemble": e, "points": e - s, "relative": ratio(e, s),
                     "fixed": 100 * M.errors_fixed(acc, single[g])})
    return pd.DataFrame(rows).set_index("group")


def seed_gains(pools: dict, y: torch.Tensor, k: int) -> pd.DataFrame:
    """`pool_gains` of independently seeded pools {seed: probs (M, N, C)}, stacked with a column seed."""
    return pd.concat([pool_gains(p, y, k).reset_index().assign(seed=s) for s, p in pools.items()],
                     ignore_index=True)


def gains_by_setting(pools: dict, k: int) -> pd.DataFrame:
    """`pool_gains` of pools trained in different settings {setting: (probs (M, N, C), y (N,))},
    each on its own test set, stacked with a column setting (e.g. a map over task difficulty)."""
    return pd.concat([pool_gains(probs, y, k).reset_index().assign(setting=setting)
                      for setting, (probs, y) in pools.items()], ignore_index=True)


def paired(table: pd.DataFrame, column: str, a: str = "bottom-k", b: str = "top-k") -> tuple[float, float, int]:
    """Mean and SE over seeds of `column` on group a minus group b (a `seed_gains` table)."""
    wide = table.pivot(index="seed", columns="group", values=column)
    return mean_se(wide[a] - wide[b])


def single_vs_ensemble(probs: torch.Tensor, y: torch.Tensor, k: int, reference: int | None = None) -> pd.DataFrame:
    """Absolute accuracy (%) of the average single model and of the full ensemble (Ko et al. 2023, Table 1)."""
    groups = class_groups(probs, y, k, reference)
    single = single_model_accuracy(probs, y, groups)
    ens = M.mean_probs(probs)
    table = pd.DataFrame({
        "single": {g: 100 * single[g] for g in groups},
        f"ensemble of {len(probs)}": {g: 100 * M.group_accuracy(ens, y, c) for g, c in groups.items()},
    }).T
    table.columns = ["mean", f"top-{k}", f"bottom-{k}"]
    return table


def k_sweep(probs: torch.Tensor, y: torch.Tensor, ks, sizes=None, draws: int = 100, seed: int = 0) -> pd.DataFrame:
    """`gain_curves` for several K, stacked with a column k (Ko et al. 2023, Fig. 9, 12)."""
    by_k = {k: class_groups(probs, y, k) for k in ks}
    curves = _group_curves(probs, y, {(k, g): c for k, groups in by_k.items() for g, c in groups.items()},
                           sizes, draws, seed)  # one pass over the draws for every K
    frames = [_gain_rows({g: curves[(k, g)] for g in groups}, single_model_accuracy(probs, y, groups)).assign(k=k)
              for k, groups in by_k.items()]
    return pd.concat(frames, ignore_index=True)


def size_to_reach(curves: pd.DataFrame, fraction: float = 0.95) -> pd.DataFrame:
    """Smallest ensemble size at which each group's gain reaches `fraction` of its final gain.

    Gains are measured from 1 (the single model): a curve going from 1.00 to 1.04 reaches
    95% of its gain at the first size with gain >= 1 + 0.95 * 0.04. A group the ensemble
    hurts (final gain < 1) is measured the same way downwards; a flat one reaches at once.
    A group whose gain is undefined (a single-model accuracy of 0 gives inf or NaN) gets <NA>.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    rows = []
    for g, c in curves.sort_values("size").groupby("group", sort=False):
        final = c["gain"].iloc[-1]
        direction = 1.0 if final >= 1 else -1.0
        progress = direction * (c["gain"] - 1)  # movement towards the final gain
        reached = c.loc[progress >= fraction * abs(final - 1) - 1e-12, "size"]
        size = int(reached.iloc[0]) if np.isfinite(final) and len(reached) else pd.NA
        rows.append({"group": g, "final_gain": final, f"size_to_{int(fraction * 100)}pct": size})
    out = pd.DataFrame(rows).set_index("group")
    return out.astype({f"size_to_{int(fraction * 100)}pct": "Int64"})


def subgroup_table(probs: torch.Tensor, y: torch.Tensor, groups: torch.Tensor, names: list[str]) -> pd.DataFrame:
    """Accuracy of the average member and of the ensemble on every subgroup (Ko et al. 2023, App. H).

    probs (M, N, C); groups (N,) integer codes; `names[code]` labels the subgroups.
    """
    single = [M.subgroup_accuracy(p, y, groups) for p in probs]
    ens = M.subgroup_accuracy(M.mean_probs(probs), y, groups)
    rows = []
    for code in sorted(ens):
        s = np.array([d[code] for d in single])
        rows.append({"subgroup": names[int(code)], "n": int((groups == code).sum()),
                     "single": s.mean(), "single_std": s.std(), "ensemble": ens[code],
                     "gain": ens[code] / s.mean() if s.mean() > 0 else np.nan})  # undefined: no member right
    return pd.DataFrame(rows)


def seed_curves(pools: dict, y: torch.Tensor, k: int, sizes=None, draws: int = 100, seed: int = 0) -> pd.DataFrame:
    """`gain_curves` of independently seeded pools {seed: probs}, stacked with a column pool_seed."""
    return pd.concat([gain_curves(p, y, k, sizes, draws, seed).assign(pool_seed=s) for s, p in pools.items()],
                     ignore_index=True)


def reach_by_pool(curves: pd.DataFrame, fraction: float = 0.95) -> pd.DataFrame:
    """`size_to_reach` of every pool of a `seed_curves` table: one row per pool seed, one column
    per group (the smallest size reaching `fraction` of that pool's final gain)."""
    column = f"size_to_{int(fraction * 100)}pct"
    return pd.DataFrame({s: size_to_reach(c.drop(columns="pool_seed"), fraction)[column]
                         for s, c in curves.groupby("pool_seed")}).T.rename_axis("pool_seed")


def curve_gap(curves: pd.DataFrame, a: str = "bottom-k", b: str = "top-k") -> pd.DataFrame:
    """Gain of group a minus group b at every size, per pool seed: mean, se and n over the seeds
    (a `seed_curves` table); one row per size."""
    wide = curves.pivot_table(index=["pool_seed", "size"], columns="group", values="gain", dropna=False)
    gap = (wide[a] - wide[b]).unstack("pool_seed")
    return pd.DataFrame([dict(zip(("mean", "se", "n"), mean_se(row))) for _, row in gap.iterrows()],
                        index=gap.index)


def rise(curves: pd.DataFrame, group: str, start: int, end: int) -> tuple[float, float, int]:
    """Mean and SE over pool seeds of the gain of `group` at size `end` minus at size `start`."""
    wide = curves[curves.group == group].pivot(index="pool_seed", columns="size", values="gain")
    return mean_se(wide[end] - wide[start])


def two_se_claim(claim: str, paper: str, measured: str, difference: float, se: float, n: int,
                 min_seeds: int = 3, addition: bool = False, note: str = ""):
    """A claims row whose pass rule is "difference > 2 standard errors over seeds"; not testable
    (with the reason) below `min_seeds` seeds or on an undefined quantity. `note`: what the verdict
    rests on, shown beside a tested row."""
    if n < min_seeds:
        return untestable(claim, paper, f"{n} seeded pool(s), the rule needs {min_seeds}", measured=measured,
                          addition=addition)
    verdict = exceeds(difference, se)
    if verdict is None:
        return untestable(claim, paper, "the quantity is undefined in this run", measured=measured,
                          addition=addition)
    return Claim(claim, paper, measured, verdict, note, addition=addition)


def describe(value: float, se: float, digits: int = 1, unit: str = "") -> str:
    """"+4.4 ± 0.7 pts": `claims.plus_minus` with a unit (none after "undefined")."""
    text = plus_minus(value, se, digits=digits)
    return text + (f" {unit}" if unit and finite(value) else "")
