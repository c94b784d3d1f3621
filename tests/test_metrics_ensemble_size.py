"""Tests for fairens_core.metrics.ensemble_size."""

import math

import numpy as np
import pytest
import torch

import fairens_core.metrics.ensemble_size as es
from fairens_core.metrics import accuracy, ensemble_size_curve, mean_ensemble_size_curve, mean_probs, subset_means


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


def test_mean_curve_matches_the_per_draw_curve():
    probs, labels = pool(members=9, n=50)
    slow = ensemble_size_curve(lambda p: {"acc": accuracy(mean_probs(p), labels), "p0": float(mean_probs(p)[0, 0])},
                               probs, sizes=[1, 3, 9], draws=40, seed=5)
    fast = mean_ensemble_size_curve(lambda ens: {"acc": accuracy(ens, labels), "p0": ens[:, 0, 0]},
                                    probs, sizes=[1, 3, 9], draws=40, seed=5)
    for key in ("acc", "p0"):
        for a, b in zip(slow[key].subsets, fast[key].subsets):
            np.testing.assert_array_equal(a, b)  # the same draws
        for a, b in zip(slow[key].values, fast[key].values):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


def test_mean_curve_chunks_give_the_same_values(monkeypatch):
    probs, labels = pool(members=8, n=40)
    whole = mean_ensemble_size_curve(lambda ens: accuracy(ens, labels), probs, sizes=[2, 4], draws=30, seed=2)
    monkeypatch.setattr(es, "MEAN_CHUNK_ELEMENTS", 7 * probs[0].numel())  # chunks of 7 draws
    chunked = mean_ensemble_size_curve(lambda ens: accuracy(ens, labels), probs, sizes=[2, 4], draws=30, seed=2)
    for a, b in zip(whole.values, chunked.values):
        np.testing.assert_array_equal(a, b)


def test_subset_means_average_the_chosen_members():
    probs, _ = pool(members=5, n=7)
    subsets = np.array([[0, 3], [4, 1]])
    means = subset_means(probs, subsets)
    torch.testing.assert_close(means[0], (probs[0] + probs[3]) / 2)
    torch.testing.assert_close(means[1], (probs[4] + probs[1]) / 2)
