"""Tests for fairens_core.metrics.randomness."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fairens_core.metrics import accuracy_trajectories, trajectory_l1_distance, trajectory_variance


def test_l1_distance_hand_computed():
    runs = np.array([[0.0, 10.0], [2.0, 10.0], [4.0, 16.0]])
    # epoch 0: |0-2|, |0-4|, |2-4| -> 2, 4, 2 mean 8/3; epoch 1: 0, 6, 6 mean 4; average 10/3
    assert trajectory_l1_distance(runs) == pytest.approx(10 / 3)


def test_variance_hand_computed():
    runs = np.array([[0.0, 10.0], [2.0, 10.0], [4.0, 16.0]])
    # epoch 0: population var of 0, 2, 4 = 8/3; epoch 1: of 10, 10, 16 = 8
    assert trajectory_variance(runs) == pytest.approx((8 / 3 + 8) / 2)
    assert trajectory_variance(runs, correction=1) == pytest.approx((4 + 12) / 2)


def test_identical_runs_have_no_spread():
    runs = np.tile(np.linspace(0.1, 0.9, 7), (4, 1))
    assert trajectory_l1_distance(runs) == 0.0
    assert trajectory_variance(runs) == 0.0


def test_needs_two_runs():
    with pytest.raises(ValueError):
        trajectory_l1_distance(np.zeros((1, 5)))


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 6), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_l1_matches_pairwise_loop(num_runs, epochs, seed):
    t = np.random.default_rng(seed).random((num_runs, epochs))
    pairs = [(i, j) for i in range(num_runs) for j in range(i + 1, num_runs)]
    expected = np.mean([np.mean([abs(t[i, e] - t[j, e]) for i, j in pairs]) for e in range(epochs)])
    assert trajectory_l1_distance(t) == pytest.approx(expected)
    assert trajectory_variance(t) == pytest.approx(np.var(t, axis=0).mean())


def test_accuracy_trajectories_overall_and_group():
    labels = torch.tensor([0, 1, 1])
    preds = torch.tensor([[[0, 0, 0], [0, 1, 1]], [[1, 1, 1], [0, 1, 0]]])  # (R=2, E=2, N=3)
    torch.testing.assert_close(
        accuracy_trajectories(preds, labels), torch.tensor([[1 / 3, 1.0], [2 / 3, 2 / 3]], dtype=torch.float64)
    )
    torch.testing.assert_close(
        accuracy_trajectories(preds, labels, classes=[1]), torch.tensor([[0.0, 1.0], [1.0, 0.5]], dtype=torch.float64)
    )
