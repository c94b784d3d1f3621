"""The shared statistics of the pass rules: mean and SE over seeds, jackknife SE."""

import math

import numpy as np

from fairens_core.analysis.stats import jackknife_se, mean_se


def test_mean_se_skips_non_finite_values_and_needs_enough_of_them():
    mean, se, n = mean_se([1.0, 3.0, float("nan"), 5.0])
    assert (mean, n) == (3.0, 3) and math.isclose(se, 2 / math.sqrt(3))
    assert math.isnan(mean_se([1.0, 3.0], min_count=3)[1])
    assert all(math.isnan(v) for v in mean_se([float("inf")])[:2])


def test_jackknife_se_of_the_mean_is_the_usual_standard_error():
    x = np.array([2.0, 4.0, 9.0, 1.0])
    leave_one_out = np.array([np.delete(x, i).mean() for i in range(len(x))])
    assert math.isclose(float(jackknife_se(leave_one_out)), x.std(ddof=1) / math.sqrt(len(x)))
    per_column = jackknife_se(np.stack([leave_one_out, 2 * leave_one_out], axis=1))
    assert per_column.shape == (2,) and math.isclose(per_column[1], 2 * per_column[0])
