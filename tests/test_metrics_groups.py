"""Tests for fairens_core.metrics.groups."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fairens_core.metrics import (
    accuracy,
    bottom_k_classes,
    class_mask,
    errors_fixed,
    gain_won_lost,
    group_accuracy,
    mean_probs,
    per_class_accuracy,
    relative_gain,
    subgroup_accuracy,
    top_k_classes,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

LABELS = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
# predicted labels of one model: class 0 both right, class 1 one right, class 2 none, class 3 both
PRED = torch.tensor([0, 0, 1, 0, 1, 0, 3, 3])


def one_hot_scores(pred, num_classes=4):
    return torch.nn.functional.one_hot(pred, num_classes).double()


@pytest.mark.parametrize("device", DEVICES)
def test_accuracy_labels_and_scores(device):
    assert accuracy(PRED.to(device), LABELS.to(device)) == pytest.approx(5 / 8)
    assert accuracy(one_hot_scores(PRED).to(device), LABELS.to(device)) == pytest.approx(5 / 8)
    assert accuracy(PRED.numpy(), LABELS.numpy()) == pytest.approx(5 / 8)


def test_accuracy_per_member():
    members = torch.stack([PRED, LABELS])  # (M=2, N) int labels
    torch.testing.assert_close(accuracy(members, LABELS), torch.tensor([5 / 8, 1.0], dtype=torch.float64))


def test_per_class_accuracy_hand_computed():
    acc = per_class_accuracy(PRED, LABELS)
    torch.testing.assert_close(acc, torch.tensor([1.0, 0.5, 0.0, 1.0], dtype=torch.float64))


def test_per_class_accuracy_absent_class_is_nan():
    acc = per_class_accuracy(one_hot_scores(PRED, 5), LABELS)
    assert acc.shape == (5,) and math.isnan(acc[4])


def test_top_and_bottom_k_from_one_reference():
    # per-class accuracy 1, .5, 0, 1: ties between classes 0 and 3 go to the smaller index
    assert top_k_classes(PRED, LABELS, k=2).tolist() == [0, 3]
    assert bottom_k_classes(PRED, LABELS, k=2).tolist() == [2, 1]


def test_top_and_bottom_k_from_members_average():
    # member A is perfect except on class 1; member B is perfect except on class 2 (one miss)
    a = torch.tensor([0, 0, 0, 0, 2, 2, 3, 3])  # class accuracies 1, 0, 1, 1
    b = torch.tensor([0, 0, 1, 1, 2, 0, 3, 3])  # class accuracies 1, 1, .5, 1
    members = torch.stack([a, b])  # average: 1, .5, .75, 1
    assert bottom_k_classes(members, LABELS, k=2).tolist() == [1, 2]
    assert top_k_classes(members, LABELS, k=2).tolist() == [0, 3]
    # a single reference ranks differently: member B alone puts class 2 last
    assert bottom_k_classes(b, LABELS, k=1).tolist() == [2]


def test_k_out_of_range():
    with pytest.raises(ValueError):
        top_k_classes(PRED, LABELS, k=5)


def test_group_accuracy_and_class_mask():
    assert class_mask(LABELS, [1, 2]).tolist() == [False, False, True, True, True, True, False, False]
    assert group_accuracy(PRED, LABELS, [1, 2]) == pytest.approx(1 / 4)
    assert group_accuracy(PRED, LABELS, torch.tensor([0, 3])) == pytest.approx(1.0)
    members = torch.stack([PRED, LABELS])
    torch.testing.assert_close(group_accuracy(members, LABELS, [1, 2]), torch.tensor([0.25, 1.0], dtype=torch.float64))


def test_subgroup_accuracy_hand_computed():
    groups = np.array([0, 1, 0, 1, 0, 1, 0, 1])  # e.g. attribute "male"
    # group 0: examples 0,2,4,6 -> right, right, wrong, right; group 1: 1,3,5,7 -> right, wrong, wrong, right
    assert subgroup_accuracy(PRED, LABELS, groups) == {0: pytest.approx(0.75), 1: pytest.approx(0.5)}


def test_relative_gain():
    assert relative_gain(0.6, 0.4) == pytest.approx(1.5)
    np.testing.assert_allclose(relative_gain(np.array([0.5, 0.9]), np.array([0.25, 0.9])), [2.0, 1.0])


def test_errors_fixed():
    # Ko et al. 2023 §3.2, CelebA: blond males 9.44 % -> 21.80 % fix 13.6 % of their errors, all examples
    # 92.02 % -> 94.04 % fix 25.3 %: the larger relative gain (x2.31 vs x1.02) is the smaller share per error
    assert errors_fixed(0.2180, 0.0944) == pytest.approx(0.1236 / 0.9056)
    assert errors_fixed(0.9404, 0.9202) == pytest.approx(0.0202 / 0.0798)
    assert errors_fixed(0.5, 0.6) == pytest.approx(-0.25)  # an ensemble worse than its members adds errors
    assert math.isnan(errors_fixed(1.0, 1.0))  # no error to fix: undefined


@settings(max_examples=50, deadline=None)
@given(st.integers(2, 6), st.integers(1, 40), st.integers(0, 2**31 - 1))
def test_group_of_all_classes_is_overall_accuracy(num_classes, n, seed):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, num_classes, (n,), generator=g)
    scores = torch.rand(n, num_classes, generator=g, dtype=torch.float64)
    overall = accuracy(scores, labels)
    assert group_accuracy(scores, labels, torch.arange(num_classes)) == pytest.approx(overall)
    # overall accuracy is the class-frequency-weighted mean of the per-class accuracies
    per_class = per_class_accuracy(scores, labels)
    freq = torch.bincount(labels, minlength=num_classes).double() / n
    assert float(torch.nansum(per_class * freq)) == pytest.approx(overall)
    # top-k classes are never worse than bottom-k classes
    present = int((freq > 0).sum())
    k = max(1, present // 2)
    top, bottom = top_k_classes(scores, labels, k), bottom_k_classes(scores, labels, k)
    assert per_class[top].min() >= per_class[bottom].max()


def test_group_accuracy_of_no_group_is_the_accuracy():
    probs = torch.tensor([[[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], [[0.1, 0.9], [0.3, 0.7], [0.4, 0.6]]])
    y = torch.tensor([0, 1, 1])
    assert group_accuracy(probs[0], y, None) == pytest.approx(2 / 3)
    assert group_accuracy(probs, y, None).tolist() == pytest.approx([2 / 3, 2 / 3])


def test_gain_won_lost_hand_computed():
    # 3 members, 4 examples. Members right: 2/3, 1/3, 3/3, 1/3. The average is right on examples
    # 0-2 and wrong on 3, where the one member that was right is outvoted.
    p = torch.tensor([[[.9, .1], [.9, .1], [.2, .8], [.6, .4]],
                      [[.8, .2], [.4, .6], [.3, .7], [.4, .6]],
                      [[.4, .6], [.3, .7], [.45, .55], [.45, .55]]])
    y = torch.tensor([0, 0, 1, 0])
    won, lost = gain_won_lost(p, y)
    assert won == pytest.approx((1 / 3 + 2 / 3) / 4) and lost == pytest.approx((1 / 3) / 4)
    assert won - lost == pytest.approx(accuracy(mean_probs(p), y) - float(accuracy(p, y).mean()))
    # on the class-1 example alone every member is right: nothing to win or lose
    assert gain_won_lost(p, y, classes=[1]) == (0.0, 0.0)
    with pytest.raises(ValueError, match="no example"):
        gain_won_lost(p, y, classes=[5])
    with pytest.raises(ValueError, match=r"\(M, N, C\)"):
        gain_won_lost(p[0], y)
