"""Tests for fairens_core.metrics.calibration."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchmetrics.functional.classification import binary_calibration_error, multiclass_calibration_error

from fairens_core.metrics import brier_score, expected_calibration_error, mace, nll

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def random_probs(seed, n, classes, sharpness=2.0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    probs = (sharpness * torch.randn(n, classes, generator=g)).softmax(-1).to(dtype)
    labels = torch.randint(0, classes, (n,), generator=g)
    return probs, labels


@pytest.mark.parametrize("device", DEVICES)
def test_nll_and_brier_hand_computed(device):
    probs = torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1]], dtype=torch.float64, device=device)
    labels = torch.tensor([0, 2], device=device)
    assert nll(probs, labels) == pytest.approx(-(math.log(0.5) + math.log(0.1)) / 2)
    # (0.25 + 0.0625 + 0.0625) and (0.01 + 0.64 + 0.81)
    assert brier_score(probs, labels) == pytest.approx((0.375 + 1.46) / 2)


def test_nll_is_finite_for_zero_probability():
    probs = torch.tensor([[1.0, 0.0]])
    assert math.isfinite(nll(probs, torch.tensor([1])))
    assert nll(probs, torch.tensor([1])) > 80


def test_ece_hand_computed():
    # confidences 0.9 (right), 0.9 (wrong), 0.6 (right), 0.6 (right), 2 bins: [0, .5), [.5, 1]
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.6, 0.4]], dtype=torch.float64)
    labels = torch.tensor([0, 1, 1, 0])
    # one bin holds everything: acc 3/4, mean confidence 0.75 -> ECE 0
    assert expected_calibration_error(probs, labels, n_bins=2) == pytest.approx(0.0)
    # 10 bins: bin [.9, 1): acc .5 conf .9; bin [.6, .7): acc 1, conf .6 -> .5 * .4 + .5 * .4
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(0.4)


def test_ece_bin_edges_belong_to_the_upper_bin():
    # confidence exactly 0.5 with 2 bins falls in [0.5, 1], as in torchmetrics
    probs = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]])
    labels = torch.tensor([0, 1])  # first right (argmax 0), second wrong
    # bins {0.25 wrong}: |0 - .25| / 2; {0.5 right}: |1 - .5| / 2
    assert expected_calibration_error(probs, labels, n_bins=2) == pytest.approx(0.375)
    expected = multiclass_calibration_error(probs, labels, num_classes=4, n_bins=2, norm="l1")
    assert float(expected) == pytest.approx(0.375)


def test_a_confidence_of_exactly_one_has_a_bin_of_its_own_as_in_torchmetrics():
    # confidence 1 (wrong) and 0.95 (right), 10 bins: apart they contribute |0 - 1| / 2 and
    # |1 - 0.95| / 2 = 0.525 in all; sharing the bin [0.9, 1] they would give |1 - 1.95| / 2 = 0.475
    probs = torch.tensor([[1.0, 0.0], [0.95, 0.05]])
    labels = torch.tensor([1, 0])
    expected = multiclass_calibration_error(probs, labels, num_classes=2, n_bins=10, norm="l1")
    assert float(expected) == pytest.approx(0.525)
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(0.525)


def test_perfectly_confident_and_right_is_calibrated():
    probs = torch.eye(4, dtype=torch.float64)
    labels = torch.arange(4)
    assert expected_calibration_error(probs, labels) == 0.0
    assert mace(probs, labels) == 0.0
    assert brier_score(probs, labels) == 0.0


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 300), st.integers(2, 10), st.sampled_from([1, 5, 10, 15]),
       st.floats(0.1, 6.0))
def test_ece_matches_torchmetrics(seed, n, classes, n_bins, sharpness):
    probs, labels = random_probs(seed, n, classes, sharpness)
    expected = multiclass_calibration_error(probs, labels, num_classes=classes, n_bins=n_bins, norm="l1")
    assert expected_calibration_error(probs, labels, n_bins=n_bins) == pytest.approx(float(expected), abs=1e-6)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 200), st.integers(2, 8), st.sampled_from([5, 15]))
def test_mace_is_mean_of_torchmetrics_per_class_errors(seed, n, classes, n_bins):
    probs, labels = random_probs(seed, n, classes)
    per_class = [
        float(binary_calibration_error(probs[:, k].contiguous(), (labels == k).long(), n_bins=n_bins, norm="l1"))
        for k in range(classes)
    ]
    assert mace(probs, labels, n_bins=n_bins) == pytest.approx(np.mean(per_class), abs=1e-6)


def test_mace_hand_computed_differs_from_top_label_ece():
    # two classes, one bin: per class |mean p_k - frequency of k|
    probs = torch.tensor([[0.8, 0.2], [0.8, 0.2], [0.8, 0.2], [0.8, 0.2]], dtype=torch.float64)
    labels = torch.tensor([0, 0, 1, 1])
    # class 0: |0.8 - 0.5| = .3, class 1: |0.2 - 0.5| = .3
    assert mace(probs, labels, n_bins=1) == pytest.approx(0.3)
    three = torch.tensor([[0.6, 0.3, 0.1]] * 4, dtype=torch.float64)
    labels3 = torch.tensor([0, 0, 1, 2])
    # top-label: |0.6 - 0.5| = .1; per class: |.6-.5|, |.3-.25|, |.1-.25| -> mean 0.1
    assert expected_calibration_error(three, labels3, n_bins=1) == pytest.approx(0.1)
    assert mace(three, labels3, n_bins=1) == pytest.approx((0.1 + 0.05 + 0.15) / 3)


def test_mace_adaptive_bins_hand_computed():
    # class 1 probabilities .1 .2 .3 .4 with labels 0 0 1 1 (class 1 = last two): 2 equal-mass bins
    probs1 = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    probs = torch.stack([1 - probs1, probs1], dim=1)
    labels = torch.tensor([0, 0, 1, 1])
    # class 1: bins {.1,.2} acc 0 conf .15; {.3,.4} acc 1 conf .35 -> .5*.15 + .5*.65 = .4
    # class 0: bins {.6,.7} acc 0 conf .65; {.8,.9} acc 1 conf .85 -> .5*.65 + .5*.15 = .4
    assert mace(probs, labels, n_bins=2, binning="adaptive") == pytest.approx(0.4)
