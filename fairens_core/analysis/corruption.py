"""Who gains from the ensemble when the test inputs are corrupted (Ko et al. 2023, §3.2, Fig. 3 right, 21).

The paper evaluates its CIFAR-100 ensembles on CIFAR-100-C (Hendrycks & Dietterich's 19
corruptions at severities 1-5) and reports the relative gain of the ensemble over a single model
for the top-k and bottom-k classes at each severity. The classes are ranked once, on the clean
test set, and the same groups are then followed under corruption.

Pipeline: `corrupted_inputs` makes every corrupted copy of the test inputs (once, however many
pools see them) and `corrupted_probs` runs a pool's members on them;
`severity_gains` turns that into one row per (corruption, severity, group);
`average_over_corruptions` adds the average over corruption types that the paper plots
(`average_over_pools` the average over pools that differ in their training seed);
`severity_table` lays one such average out by severity, and `spread_se` gives the standard error
of a number read off that table from both sources of noise (training seeds, corruption types);
`severity_curves` gives the gain against ensemble size (Fig. 3 right); `severity_trend`
summarises how the gain moves with severity; `severity_disagreement` follows the members'
disagreement (the paper's explanation of where the gain goes, §4.1) and how the vote resolves
it. `signal_examples` and `image_grid` show what the corruptions do to one input (the analogue
of the paper's Fig. 20).
"""

from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from .. import metrics as M
from ..corruptions import SEVERITIES, corrupt, names_for
from .churn import classes_churn
from .fairness import class_groups, single_model_accuracy
from .stats import MIN_SEEDS, mean_se

CLEAN = ("clean", 0)  # key of the uncorrupted inputs in a `corrupted_inputs` / `corrupted_probs` dict
AVERAGE = "average"   # corruption name of the rows of `average_over_corruptions`

Probs = Mapping[tuple[str, int], torch.Tensor]


def corrupted_inputs(x: torch.Tensor, corruptions: Sequence[str] | None = None,
                     severities: Sequence[int] = SEVERITIES, seed: int = 0) -> dict[tuple[str, int], torch.Tensor]:
    """The clean inputs and every corrupted copy of them, made once for every pool to see.

    x: test inputs in the dataset's raw format (see `fairens_core.corruptions.corrupt`);
    corruptions: None for all that apply to x. Returns {(corruption, severity): inputs} with the
    clean inputs under the key `CLEAN` = ("clean", 0).
    """
    corruptions = names_for(x) if corruptions is None else corruptions
    out = {CLEAN: x}
    for name in corruptions:
        for s in severities:
            out[(name, int(s))] = corrupt(x, name, int(s), seed=seed)
    return out


def corrupted_probs(predict: Callable[[torch.Tensor], torch.Tensor],
                    inputs: Mapping[tuple[str, int], torch.Tensor]) -> dict[tuple[str, int], torch.Tensor]:
    """Member probabilities on every input set of `corrupted_inputs`.

    predict: raw inputs (N, ...) -> logits (M, N, C), e.g. `RunRecord.predict`. Returns
    {(corruption, severity): probs (M, N, C)}, keyed as `inputs`.
    """
    with torch.inference_mode():
        return {key: predict(x).float().softmax(-1) for key, x in inputs.items()}


def _gain(ensemble: float, single: float) -> float:
    """`metrics.relative_gain`, NaN where no member gets anything right (tiny smoke-test pools)."""
    return M.relative_gain(float(ensemble), single) if single > 0 else float("nan")


def severity_gains(probs_by: Probs, y: torch.Tensor, k: int) -> pd.DataFrame:
    """Single-model and full-ensemble accuracy per corruption, severity and class group.

    probs_by: the output of `corrupted_probs` (each value (M, N, C)); y (N,). The top-k and
    bottom-k classes are those of the average member on the clean inputs (`fairness.class_groups`)
    and stay fixed under corruption. Returns one row per (corruption, severity, group) with
    columns corruption, severity, group ("all", "top-k", "bottom-k"), single (mean member
    accuracy), ensemble (accuracy of the probability-averaged pool), gain = ensemble / single and
    fixed (the share of the single model's errors that the ensemble fixes, `metrics.errors_fixed`).
    Severity 0 repeats the clean inputs under every corruption name, so each line starts there.
    The gain is NaN where the single-model accuracy is 0, fixed where it is 1.
    """
    groups = class_groups(probs_by[CLEAN], y, k)
    levels: dict[str, list[int]] = {}
    for name, severity in probs_by:
        if (name, severity) != CLEAN:
            levels.setdefault(name, []).append(severity)
    rows = []
    for name, severities in levels.items():
        for severity in [0, *sorted(severities)]:
            probs = probs_by[CLEAN if severity == 0 else (name, severity)]
            single = single_model_accuracy(probs, y, groups)
            ensemble = M.mean_probs(probs)
            for group, classes in groups.items():
                acc = M.group_accuracy(ensemble, y, classes)
                rows.append({"corruption": name, "severity": severity, "group": group, "single": single[group],
                             "ensemble": acc, "gain": _gain(acc, single[group]),
                             "fixed": M.errors_fixed(acc, single[group])})
    return pd.DataFrame(rows)


def severity_disagreement(probs_by: Probs, y: torch.Tensor, k: int, pairs: int = 100, seed: int = 0) -> pd.DataFrame:
    """How the members disagree, and how the average resolves it, per corruption, severity and group.

    Groups as in `severity_gains` (fixed on the clean inputs). One row per (corruption, severity,
    group), in %: churn (mean over `pairs` member pairs, the same pairs everywhere), churn_one_right
    (its part where exactly one member of the pair is right; `churn.classes_churn`), and won / lost
    (`metrics.gain_won_lost`: won - lost is the ensemble's gain over the average member in points).
    Severity 0 is the clean input, repeated at the start of every corruption's rows.
    """
    groups = class_groups(probs_by[CLEAN], y, k)

    def measures(probs):
        return {group: (*classes_churn(probs, y, classes, pairs, seed),
                        *(100 * v for v in M.gain_won_lost(probs, y, classes)))
                for group, classes in groups.items()}

    def rows_of(name, severity, values):
        return [{"corruption": name, "severity": severity, "group": group,
                 **dict(zip(("churn", "churn_one_right", "won", "lost"), v))} for group, v in values.items()]

    corrupted = {key: probs for key, probs in probs_by.items() if key != CLEAN}
    clean = measures(probs_by[CLEAN])
    rows = [row for name in dict.fromkeys(name for name, _ in corrupted) for row in rows_of(name, 0, clean)]
    for (name, severity), probs in corrupted.items():
        rows += rows_of(name, int(severity), measures(probs))
    return pd.DataFrame(rows).sort_values(["corruption", "severity"], kind="stable", ignore_index=True)


def _mean_accuracy(frame: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Single and ensemble accuracy averaged within each `by` group, the gain and the share of
    errors fixed recomputed from the averages (of the average accuracy, not the average of gains)."""
    mean = frame.groupby(list(by), sort=False)[["single", "ensemble"]].mean().reset_index()
    mean["gain"] = [_gain(e, s) for e, s in zip(mean["ensemble"], mean["single"])]
    mean["fixed"] = [M.errors_fixed(e, s) for e, s in zip(mean["ensemble"], mean["single"])]
    return mean


def average_over_corruptions(frame: pd.DataFrame, by: Sequence[str] = ("severity", "group")) -> pd.DataFrame:
    """Average over corruption types, as the paper does for each severity.

    frame: rows of `severity_gains` or `severity_curves`, of one pool or of several stacked with a
    "pool" column (averaged over as well unless `by` names it). Single and ensemble accuracy are
    averaged and the gain is recomputed from the averages. Returns the columns of `frame` with
    corruption = "average"; `by` lists the other key columns (add "size" for curves).
    """
    mean = _mean_accuracy(frame, by)
    mean.insert(0, "corruption", AVERAGE)
    return mean[[c for c in frame.columns if c in mean.columns]]


def average_over_pools(frame: pd.DataFrame, by: Sequence[str] = ("corruption", "severity", "group")) -> pd.DataFrame:
    """Average over pools: rows of `severity_gains` of several pools, stacked with a "pool"
    column, to one row per `by` key (accuracies averaged, the gain recomputed from them)."""
    mean = _mean_accuracy(frame, by)
    return mean[[c for c in frame.columns if c in mean.columns]]


def severity_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows of one average (`average_over_corruptions`, `average_over_pools` of one type) as a
    table indexed by severity, with columns (measure, group): measure "single", "ensemble", "gain",
    and "fixed" where `frame` has it."""
    values = [v for v in ("single", "ensemble", "gain", "fixed") if v in frame.columns]
    return frame.pivot_table(index="severity", columns="group", values=values, dropna=False)


def spread_se(frame: pd.DataFrame, statistic: Callable[[pd.DataFrame], float]) -> float:
    """Standard error of `statistic` of the average over pools and corruption types, from both of
    its sources of noise combined in quadrature.

    frame: rows of `severity_gains` of every pool (column "pool"); statistic: a `severity_table` ->
    a number (e.g. the bottom-k gain at severity 5 minus that at 1). One part is the training seed:
    the SE over pools of the statistic of each pool's average over types (NaN below
    `stats.MIN_SEEDS` pools); the other the choice of corruptions: the SE over types of the
    statistic of each type's average over pools (NaN below two types). NaN where either is.
    """
    by_pool = [statistic(severity_table(average_over_corruptions(part)))
               for _, part in frame.groupby("pool", sort=False)]
    by_type = [statistic(severity_table(average_over_pools(part)))
               for _, part in frame.groupby("corruption", sort=False)]
    se_pool, se_type = mean_se(by_pool, min_count=MIN_SEEDS)[1], mean_se(by_type)[1]
    return float(np.hypot(se_pool, se_type))


def severity_curves(probs_by: Probs, y: torch.Tensor, k: int, sizes: Sequence[int] | None = None,
                    draws: int = 100, seed: int = 0) -> pd.DataFrame:
    """Gain against ensemble size for every corruption and severity (Ko et al. 2023, Fig. 3 right).

    Groups as in `severity_gains` (fixed on the clean inputs); sub-ensembles drawn with the App.
    A.1 protocol of `metrics.ensemble_size_curve`, the same draws for every corruption. Returns
    one row per (corruption, severity, size, group): single, ensemble (mean over draws), gain.
    Clean inputs appear as corruption "clean", severity 0.
    """
    groups = class_groups(probs_by[CLEAN], y, k)
    keys = list(probs_by)
    n = len(y)
    # All corrupted copies side by side, (M, len(keys) * N, C): one pass over the draws for all.
    stacked = torch.cat([probs_by[key] for key in keys], dim=1)

    def metric(ens):
        # predicted labels of every draw and corrupted copy, (draws * len(keys), N)
        labels = ens.view(len(ens) * len(keys), n, -1).argmax(-1)
        return {(i, g): M.group_accuracy(labels, y, c).view(len(ens), len(keys))[:, i]
                for g, c in groups.items() for i in range(len(keys))}

    curves = M.mean_ensemble_size_curve(metric, stacked, sizes=sizes, draws=draws, seed=seed)
    rows = []
    for i, (name, severity) in enumerate(keys):
        single = single_model_accuracy(probs_by[(name, severity)], y, groups)
        for group in groups:
            curve = curves[(i, group)]
            for size, acc in zip(curve.sizes, curve.mean):
                rows.append({"corruption": name, "severity": severity, "size": size, "group": group,
                             "single": single[group], "ensemble": float(acc), "gain": _gain(acc, single[group])})
    return pd.DataFrame(rows)


def severity_trend(frame: pd.DataFrame) -> pd.DataFrame:
    """How each group's gain moves with severity, per corruption (rows of `severity_gains`).

    Over severities >= 1: Spearman's rank correlation between severity and gain (+1: the gain
    rises at every step), the gain at the lowest and at the highest severity, and their
    difference. Indexed by (corruption, group).
    """
    rows = []
    corrupted = frame[frame["severity"] > 0].sort_values("severity")
    for (name, group), part in corrupted.groupby(["corruption", "group"], sort=False):
        gain = part["gain"].to_numpy()
        rho = spearmanr(part["severity"], gain).statistic if len(part) > 1 and np.ptp(gain) > 0 else np.nan
        rows.append({"corruption": name, "group": group, "spearman": float(rho),
                     "gain_low": gain[0], "gain_high": gain[-1], "change": gain[-1] - gain[0]})
    return pd.DataFrame(rows).set_index(["corruption", "group"])


def signal_examples(x: torch.Tensor, corruptions: Sequence[str], severities: Sequence[int],
                    seed: int = 0) -> pd.DataFrame:
    """One signal under every corruption and severity, for plotting (Ko et al. 2023, Fig. 20's analogue).

    x: (1, C, L) float, one signal; channel 0 is returned. Rows: corruption, severity, t, value.
    """
    rows = []
    for name in corruptions:
        for s in severities:
            values = corrupt(x, name, int(s), seed=seed)[0, 0]
            rows += [{"corruption": name, "severity": int(s), "t": t, "value": float(v)} for t, v in enumerate(values)]
    return pd.DataFrame(rows)


def image_grid(x: torch.Tensor, corruptions: Sequence[str], severities: Sequence[int], seed: int = 0,
               pad: int = 2) -> np.ndarray:
    """One image under every corruption (rows) and severity (columns) as a single (H', W', 3) uint8 montage.

    x: (1, C, H, W) uint8 with C = 1 or 3; cells are separated by `pad` white pixels.
    """
    cells = [[np.asarray(corrupt(x, name, int(s), seed=seed))[0] for s in severities] for name in corruptions]
    _, height, width = cells[0][0].shape
    grid = np.full((len(cells) * (height + pad), len(severities) * (width + pad), 3), 255, np.uint8)
    for i, row in enumerate(cells):
        for j, img in enumerate(row):
            top, left = i * (height + pad), j * (width + pad)
            grid[top:top + height, left:left + width] = np.broadcast_to(img, (3, height, width)).transpose(1, 2, 0)
    return grid
