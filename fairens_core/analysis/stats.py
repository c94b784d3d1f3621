"""The statistics the chapters' pass rules share: a mean over seeds and its standard error, and the
leave-one-out jackknife standard error."""

from __future__ import annotations

import numpy as np

MIN_SEEDS = 3  # claims that compare conditions need a seed-level standard error from >= 3 seeds


def mean_se(values, min_count: int = 2) -> tuple[float, float, int]:
    """(mean, standard error of the mean, count) of the finite values; the SE is NaN below
    ``min_count`` values (at least two; a 2-SE pass rule on it is then not testable), the mean NaN
    with none."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return float("nan"), float("nan"), 0
    se = float(v.std(ddof=1) / np.sqrt(len(v))) if len(v) >= max(2, min_count) else float("nan")
    return float(v.mean()), se, len(v)


def jackknife_se(replicates) -> np.ndarray:
    """Leave-one-out jackknife standard error, sqrt((m − 1)/m · Σ (θ_i − θ̄)²), of m replicates
    stacked along axis 0 (θ_i: the statistic without item i); one SE per trailing element."""
    reps = np.asarray(replicates, dtype=float)
    m = len(reps)
    return np.sqrt((m - 1) / m * ((reps - reps.mean(axis=0)) ** 2).sum(axis=0))
