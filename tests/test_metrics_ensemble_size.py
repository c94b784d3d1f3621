"""Tests for fairens_core.metrics.ensemble_size."""

import math

import numpy as np
import pytest
import torch

from fairens_core.metrics import accuracy, ensemble_size_curve, mean_probs


def pool(members=6, n=30, classes=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    probs = torch.randn(members, n, classes, generator=g, dtype=torch.float64).softmax(-1)
    labels = torch.randint(0, classes, (n,), generator=g)
    return probs, labels


def test_member_index_metric_hand_computed():
    # metric = mean index of the chosen members, encoded in the "predictions" themselves
    members = torch.arange(5, dtype=torch.float64).reshape(5, 1, 1)
    curve = ensemble_size_curve(lambda p: float(p.mean()), members, sizes=[1, 5])
    # size 1: the 5 single members are enumerated (5 <= 100 subsets) -> mean 2, population std sqrt(2)
    assert curve.sizes == [1, 5]
    np.testing.assert_allclose(curve.mean, [2.0, 2.0])
    np.testing.assert_allclose(curve.std, [math.sqrt(2.0), 0.0])
    assert len(curve.values[1]) == 1  # a single subset of size M


def test_enumerates_all_subsets_when_few():
    probs, labels = pool(members=5)
    curve = ensemble_size_curve(lambda p: accuracy(mean_probs(p), labels), probs, sizes=[2], draws=100)
    assert curve.subsets[0].shape == (math.comb(5, 2), 2)
    assert len({tuple(s) for s in curve.subsets[0]}) == 10


def test_random_draws_protocol():
    probs, labels = pool(members=12)
    curve = ensemble_size_curve(lambda p: accuracy(mean_probs(p), labels), probs, sizes=[3, 6], draws=100, seed=1)
    for size, subsets, values in zip(curve.sizes, curve.subsets, curve.values):
        assert subsets.shape == (100, size) and values.shape == (100,)
        # members are distinct within a draw
        assert all(len(set(s.tolist())) == size for s in subsets)
        # draws are not all the same subset
        assert len({tuple(sorted(s.tolist())) for s in subsets}) > 50
        # each value is the metric of its subset
        first = torch.as_tensor(subsets[0])
        assert values[0] == pytest.approx(accuracy(mean_probs(probs[first]), labels))
    np.testing.assert_allclose(curve.mean, [v.mean() for v in curve.values])


def test_reproducible_with_seed_and_generator():
    probs, labels = pool(members=10)
    metric = lambda p: accuracy(mean_probs(p), labels)  # noqa: E731
    a = ensemble_size_curve(metric, probs, sizes=[4], seed=3)
    b = ensemble_size_curve(metric, probs, sizes=[4], seed=torch.Generator().manual_seed(3))
    c = ensemble_size_curve(metric, probs, sizes=[4], seed=4)
    np.testing.assert_array_equal(a.subsets[0], b.subsets[0])
    assert not np.array_equal(a.subsets[0], c.subsets[0])


def test_dict_metric_gives_one_curve_per_key():
    probs, labels = pool(members=4)
    curves = ensemble_size_curve(
        lambda p: {"acc": accuracy(mean_probs(p), labels), "size": float(p.shape[0])}, probs
    )
    assert set(curves) == {"acc", "size"}
    np.testing.assert_allclose(curves["size"].mean, [1, 2, 3, 4])
    np.testing.assert_allclose(curves["size"].std, 0)
    # the full-size point is the full ensemble
    assert curves["acc"].mean[-1] == pytest.approx(accuracy(mean_probs(probs), labels))


def test_invalid_sizes():
    probs, _ = pool(members=3)
    with pytest.raises(ValueError):
        ensemble_size_curve(lambda p: 0.0, probs, sizes=[4])
