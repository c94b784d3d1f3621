"""Tests for fairens_core.metrics.churn."""

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from fairens_core.metrics import churn, class_mask, mean_pairwise_churn, pairwise_disagreement, pearson_r

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_churn_hand_computed(device):
    a = torch.tensor([0, 1, 2, 3], device=device)
    b = torch.tensor([0, 1, 0, 0], device=device)
    assert churn(a, b) == pytest.approx(0.5)
    scores_a = torch.nn.functional.one_hot(a, 4).double()
    assert churn(scores_a, b) == pytest.approx(0.5)


def test_churn_with_group_mask():
    labels = torch.tensor([0, 0, 1, 1])
    a = torch.tensor([0, 1, 1, 0])
    b = torch.tensor([0, 0, 1, 1])
    assert churn(a, b, mask=class_mask(labels, [0])) == pytest.approx(0.5)
    assert churn(a, b, mask=class_mask(labels, [1])) == pytest.approx(0.5)
    assert churn(a, a, mask=class_mask(labels, [1])) == 0.0


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 50), st.integers(2, 6), st.integers(0, 2**31 - 1))
def test_churn_symmetric_and_zero_for_identical(n, classes, seed):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(n, classes, generator=g)
    b = torch.rand(n, classes, generator=g)
    assert churn(a, b) == churn(b, a)
    assert churn(a, a) == 0.0
    assert churn(a, a.clone() * 3.0) == 0.0  # same argmax, different scores
    # equals the fraction of differing argmax
    assert churn(a, b) == pytest.approx(float((a.argmax(1) != b.argmax(1)).double().mean()))


def test_mean_pairwise_churn_uses_all_pairs_when_few():
    members = torch.tensor([[0, 0, 0, 0], [0, 0, 1, 1], [1, 1, 1, 1]])
    # pairs: (0,1) 0.5, (0,2) 1.0, (1,2) 0.5
    assert mean_pairwise_churn(members) == pytest.approx(2 / 3)
    np.testing.assert_allclose(
        pairwise_disagreement(members).numpy(), [[0, 0.5, 1], [0.5, 0, 0.5], [1, 0.5, 0]]
    )


def test_mean_pairwise_churn_samples_distinct_pairs():
    g = torch.Generator().manual_seed(0)
    members = torch.randint(0, 3, (20, 50), generator=g)  # 190 pairs > 100
    value = mean_pairwise_churn(members, num_pairs=100, seed=0)
    assert value == mean_pairwise_churn(members, num_pairs=100, seed=0)  # reproducible
    all_pairs = [churn(members[i], members[j]) for i, j in itertools.combinations(range(20), 2)]
    # a mean over 100 of the 190 pair values: within their range and different from a different seed
    assert min(all_pairs) <= value <= max(all_pairs)
    assert value != mean_pairwise_churn(members, num_pairs=100, seed=1)
    # with num_pairs >= 190 every pair is used exactly once
    assert mean_pairwise_churn(members, num_pairs=190) == pytest.approx(np.mean(all_pairs))


def test_pearson_r_matches_scipy():
    rng = np.random.default_rng(0)
    x = rng.normal(size=30)
    y = 0.5 * x + rng.normal(size=30)
    assert pearson_r(x, y) == pytest.approx(stats.pearsonr(x, y)[0], abs=1e-12)
    assert pearson_r([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert pearson_r([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_pearson_r_takes_pandas_series_by_position():
    import pandas as pd

    x = pd.Series([1.0, 2.0, 3.0, 4.0], index=[10, 11, 12, 13])
    y = pd.Series([2.0, 4.0, 5.0, 9.0], index=[13, 12, 11, 10])  # a label-aligned r would differ
    assert pearson_r(x, y) == pytest.approx(np.corrcoef(x.to_numpy(), y.to_numpy())[0, 1])
