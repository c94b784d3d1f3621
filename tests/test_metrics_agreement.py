"""Tests for fairens_core.metrics.agreement."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import rel_entr

from fairens_core.metrics import churn, mean_off_diagonal, pairwise_disagreement, pairwise_symmetric_kl, symmetric_kl

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_symmetric_kl_hand_computed(device):
    p = torch.tensor([[0.5, 0.5]], dtype=torch.float64, device=device)
    q = torch.tensor([[0.25, 0.75]], dtype=torch.float64, device=device)
    kl_pq = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    kl_qp = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert symmetric_kl(p, q) == pytest.approx(kl_pq + kl_qp)


def test_symmetric_kl_zero_probabilities():
    p = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    assert symmetric_kl(p, p) == 0.0  # 0 log 0 = 0


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(2, 5), st.integers(1, 20), st.integers(2, 6))
def test_pairwise_symmetric_kl_matches_scipy(seed, members, n, classes):
    g = torch.Generator().manual_seed(seed)
    probs = (2 * torch.randn(members, n, classes, generator=g, dtype=torch.float64)).softmax(-1)
    matrix = pairwise_symmetric_kl(probs)
    assert matrix.shape == (members, members)
    torch.testing.assert_close(matrix, matrix.T)
    torch.testing.assert_close(matrix.diagonal(), torch.zeros(members, dtype=torch.float64))
    a, b = probs[0].numpy(), probs[1].numpy()
    expected = (rel_entr(a, b).sum(-1) + rel_entr(b, a).sum(-1)).mean()
    assert float(matrix[0, 1]) == pytest.approx(expected, rel=1e-10)
    assert symmetric_kl(probs[0], probs[1]) == pytest.approx(expected, rel=1e-10)


def test_pairwise_disagreement_is_churn():
    g = torch.Generator().manual_seed(0)
    probs = torch.rand(4, 30, 3, generator=g)
    matrix = pairwise_disagreement(probs)
    for i in range(4):
        for j in range(4):
            assert float(matrix[i, j]) == pytest.approx(churn(probs[i], probs[j]))


def test_mean_off_diagonal():
    m = torch.tensor([[9.0, 1.0, 2.0], [1.0, 9.0, 3.0], [2.0, 3.0, 9.0]])
    assert mean_off_diagonal(m) == pytest.approx(2.0)
