"""Tests for fairens_core.metrics.aggregation."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fairens_core.metrics import geometric_mean_probs, majority_vote, mean_probs, score_average

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request):
    return request.param


def two_members(device):
    # member 0 and member 1 on two examples, three classes
    return torch.tensor(
        [
            [[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]],
            [[0.2, 0.3, 0.5], [0.2, 0.8, 0.0]],
        ],
        dtype=torch.float64,
        device=device,
    )


def test_mean_probs_hand_computed(device):
    p = two_members(device)
    expected = torch.tensor([[0.4, 0.3, 0.3], [0.2, 0.5, 0.3]], dtype=torch.float64, device=device)
    out = mean_probs(p)
    assert out.device == p.device
    torch.testing.assert_close(out, expected)


def test_mean_probs_weights(device):
    p = two_members(device)
    out = mean_probs(p, weights=[0.75, 0.25])
    torch.testing.assert_close(out[0], torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64, device=device))


def test_weights_must_sum_to_one():
    with pytest.raises(ValueError):
        mean_probs(two_members("cpu"), weights=[0.5, 0.6])


def test_geometric_mean_hand_computed():
    p = torch.tensor([[[0.5, 0.5]], [[0.125, 0.875]]], dtype=torch.float64)
    raw = geometric_mean_probs(p, normalize=False)
    # sqrt(0.5 * 0.125) = 0.25, sqrt(0.5 * 0.875) = sqrt(0.4375)
    torch.testing.assert_close(raw, torch.tensor([[0.25, 0.4375**0.5]], dtype=torch.float64))
    normalized = geometric_mean_probs(p)
    torch.testing.assert_close(normalized, raw / raw.sum(), rtol=0, atol=1e-15)


def test_geometric_mean_of_softmax_is_score_average(device):
    # mean_j log softmax(f_j) = f̄ − const, so the normalised geometric mean is softmax(f̄)
    logits = torch.randn(4, 7, 5, dtype=torch.float64, device=device, generator=None)
    torch.testing.assert_close(
        geometric_mean_probs(logits.softmax(-1)), score_average(logits), rtol=0, atol=1e-12
    )


def test_score_average_hand_computed():
    logits = torch.tensor([[[2.0, 0.0]], [[0.0, 0.0]]], dtype=torch.float64)
    expected = torch.softmax(torch.tensor([[1.0, 0.0]], dtype=torch.float64), dim=-1)
    torch.testing.assert_close(score_average(logits), expected)
    # differs from probability averaging
    assert not torch.allclose(score_average(logits), mean_probs(logits.softmax(-1)))


def test_majority_vote_hand_computed(device):
    votes = torch.tensor([[0, 1, 2], [0, 2, 1], [1, 2, 0]], device=device)  # (M=3, N=3) labels
    # example 0: {0,0,1} -> 0; example 1: {1,2,2} -> 2; example 2: {2,1,0} tie -> smallest, 0
    torch.testing.assert_close(majority_vote(votes, num_classes=3), torch.tensor([0, 2, 0], device=device))


def test_majority_vote_from_scores_and_numpy():
    p = np.array([[[0.9, 0.1]], [[0.4, 0.6]], [[0.3, 0.7]]])
    assert majority_vote(p).tolist() == [1]


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 8), st.integers(2, 5), st.integers(0, 2**31 - 1))
def test_aggregates_are_distributions(members, examples, classes, seed):
    g = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(members, examples, classes, generator=g, dtype=torch.float64)
    p = logits.softmax(-1)
    for agg in (mean_probs(p), geometric_mean_probs(p), score_average(logits)):
        assert agg.shape == (examples, classes)
        torch.testing.assert_close(agg.sum(-1), torch.ones(examples, dtype=torch.float64))
        assert (agg >= 0).all()
    # one member: every aggregation returns that member
    torch.testing.assert_close(mean_probs(p[:1]), p[0])
    torch.testing.assert_close(geometric_mean_probs(p[:1]), p[0])
    torch.testing.assert_close(majority_vote(p[:1]), p[0].argmax(-1))
