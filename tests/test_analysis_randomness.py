"""Tests for fairens_core.analysis.randomness (chapter "Which randomness matters")."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from fairens_core import metrics as M
from fairens_core.analysis import randomness as R

# Six test examples, two per class: classes 0, 1, 2.
Y = torch.tensor([0, 0, 1, 1, 2, 2])


def record(pred_labels, y=Y, num_classes=3):
    """A stand-in for a RunRecord from predicted labels (M, E, N): one-hot probabilities.

    The final predictions (`probs()`) are those of the last epoch, as in a real record.
    """
    traj = torch.nn.functional.one_hot(torch.as_tensor(pred_labels), num_classes).float()  # (M, E, N, C)
    return SimpleNamespace(y_test=y, test_probs_trajectory=traj, probs=lambda: traj[:, -1])


# Members are always right on class 0, on class 1 for half of the examples, never on class 2
# at the end: class 0 is the top-1 class, class 2 the bottom-1 class.
A = record([[[0, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0]],
            [[0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 2, 1]]])  # M = 2, E = 2
B = record([[[0, 0, 1, 1, 2, 2], [0, 0, 1, 0, 0, 0]],
            [[0, 0, 1, 1, 2, 2], [0, 0, 1, 0, 0, 0]]])  # two identical members


def test_class_groups_rank_over_every_member_of_every_source():
    groups = R.class_groups({"all": A, "none": B}, k=1)
    assert groups["overall"] is None
    assert groups["top-k"].tolist() == [0]
    assert groups["bottom-k"].tolist() == [2]


def test_records_must_share_the_test_set():
    other = record([[[0, 0, 0, 0, 0, 0]], [[0, 0, 0, 0, 0, 0]]], y=torch.tensor([0, 0, 1, 1, 2, 1]))
    with pytest.raises(ValueError, match="test set"):
        R.class_groups({"all": A, "none": other}, k=1)


def test_source_trajectories_hand_computed():
    t = R.source_trajectories({"all": A}, k=1).set_index(["member", "epoch", "group"])["accuracy"]
    # member 0: epoch 1 predicts all 0 -> overall 2/6, top (class 0) 2/2, bottom (class 2) 0/2;
    #           epoch 2 [0,0,1,0,0,0]  -> overall 3/6, top 2/2, bottom 0/2.
    # member 1: epoch 2 [0,0,0,1,2,1]  -> overall 4/6, bottom 1/2.
    assert t[(0, 1, "overall")] == pytest.approx(100 * 2 / 6)
    assert t[(0, 1, "top-k")] == pytest.approx(100.0)
    assert t[(0, 1, "bottom-k")] == pytest.approx(0.0)
    assert t[(0, 2, "overall")] == pytest.approx(100 * 3 / 6)
    assert t[(1, 2, "overall")] == pytest.approx(100 * 4 / 6)
    assert t[(1, 2, "bottom-k")] == pytest.approx(50.0)
    assert len(t) == 2 * 2 * 3  # members x epochs x groups


def test_deviation_is_from_the_members_mean():
    t = R.source_trajectories({"all": A, "none": B}, k=1)
    sums = t.groupby(["source", "epoch", "group"])["deviation"].sum()
    np.testing.assert_allclose(sums, 0, atol=1e-9)
    assert (t.loc[t.source == "none", "deviation"] == 0).all()


def test_trajectories_on_the_tracked_prefix_of_the_test_set():
    partial = SimpleNamespace(y_test=Y, test_probs_trajectory=A.test_probs_trajectory[:, :, :4], probs=A.probs)
    t = R.source_trajectories({"all": partial}, k=1)
    whole = R.source_trajectories({"all": A}, k=1)
    expected = 100 * M.accuracy_trajectories(A.test_probs_trajectory[:, :, :4], Y[:4])  # (members, epochs)
    overall = t[t.group == "overall"].sort_values(["member", "epoch"]).accuracy.to_numpy()
    np.testing.assert_allclose(overall, expected.numpy().ravel())
    assert len(t) == len(whole)
    missing = SimpleNamespace(y_test=Y, test_probs_trajectory=None, probs=A.probs)
    with pytest.raises(ValueError, match="track_predictions"):
        R.source_trajectories({"all": missing}, k=1)
    with pytest.raises(ValueError, match="same test examples"):  # one record tracks 4, the other all
        R.source_trajectories({"all": partial, "none": B}, k=1)


def test_trajectory_spread_hand_computed():
    frame = pd.DataFrame({
        "source": "init", "group": "overall", "member": [0, 0, 1, 1], "epoch": [1, 2, 1, 2],
        "accuracy": [50.0, 80.0, 54.0, 80.0], "deviation": 0.0})
    spread = R.trajectory_spread(frame).iloc[0]
    # epoch 1: |50 - 54| = 4, variance (2² + 2²)/2 = 4; epoch 2: 0 and 0. Mean over epochs: 2 and 2.
    assert spread["l1_distance"] == pytest.approx(2.0)
    assert spread["variance"] == pytest.approx(2.0)
    assert spread["final_l1_distance"] == pytest.approx(0.0)  # both end at 80


def test_identical_members_have_no_spread_and_no_ensemble_benefit():
    spread = R.trajectory_spread(R.source_trajectories({"none": B}, k=1))
    assert (spread[["l1_distance", "variance", "final_l1_distance"]] == 0).all().all()
    curves = R.top_bottom_gap_curves({"none": B}, k=1, draws=10)
    assert curves["gap"].nunique() == 1 and (curves["gap_std"] == 0).all()


def test_gap_curves_and_summary_hand_computed():
    # Final predictions: member 0 [0,0,1,0,0,0], member 1 [0,0,0,1,2,1].
    # Single members: top (class 0) 100%, bottom (class 2) 0% and 50% -> gaps 100, 50: mean 75, std 25.
    # Ensemble of both (mean of one-hots): every disagreement is a tie, which argmax breaks
    # towards class 0, so the bottom class drops to 0% -> gap 100.
    curves = R.top_bottom_gap_curves({"all": A}, k=1, draws=10).set_index("size")
    assert curves.loc[1, "gap"] == pytest.approx(75.0)
    assert curves.loc[1, "gap_std"] == pytest.approx(25.0)
    assert curves.loc[2, "gap"] == pytest.approx(100.0)
    summary = R.gap_summary(curves.reset_index()).loc["all"]
    assert summary["gap_single"] == pytest.approx(75.0)
    assert summary["gap_change"] == pytest.approx(25.0)
    assert summary["top_gain"] == pytest.approx(0.0)
    assert summary["bottom_gain"] == pytest.approx(-25.0)
    # the single members leave no top-class error to fix (NaN); on the bottom class they are right
    # 25% of the time on average and the ensemble never is: it "fixes" -(0 - 25) / 75 = -1/3 of their errors
    assert np.isnan(summary["top_fixed"])
    assert summary["bottom_fixed"] == pytest.approx(-100 / 3)


def test_gap_summary_keeps_the_source_order():
    curves = pd.DataFrame({"source": ["b", "b", "a", "a"], "size": [2, 1, 1, 2],
                           "top": [90.0, 80.0, 70.0, 75.0], "bottom": [60.0, 40.0, 30.0, 45.0],
                           "gap": [30.0, 40.0, 40.0, 30.0], "gap_std": 0.0})
    summary = R.gap_summary(curves)
    assert summary.index.tolist() == ["b", "a"]
    assert summary.loc["b", "gap_change"] == pytest.approx(-10.0)
    assert summary.loc["a", "bottom_gain"] == pytest.approx(15.0)
    # b: bottom 40% -> 60% fixes a third of the 60 points of error; top 80% -> 90% half of 20
    assert summary.loc["b", "bottom_fixed"] == pytest.approx(100 / 3)
    assert summary.loc["b", "top_fixed"] == pytest.approx(50.0)


def test_accuracy_table_hand_computed():
    table = R.accuracy_table({"all": A, "none": B})
    # A's final members: 3/6 and 4/6 right; their ensemble (ties -> class 0): 2/6.
    assert table.loc["all", "member_mean"] == pytest.approx(100 * 3.5 / 6)
    assert table.loc["all", "member_std"] == pytest.approx(100 * 0.5 / 6)
    assert table.loc["all", "ensemble"] == pytest.approx(100 * 2 / 6)
    assert table.loc["none", "member_std"] == 0
    assert table.loc["none", "ensemble"] == pytest.approx(table.loc["none", "member_mean"])


def test_final_l1_distance_is_the_last_epoch_only():
    frame = pd.DataFrame({
        "source": "all", "group": "top-k", "member": [0, 0, 1, 1, 2, 2], "epoch": [1, 2] * 3,
        "accuracy": [10.0, 90.0, 30.0, 93.0, 50.0, 96.0], "deviation": 0.0})
    spread = R.trajectory_spread(frame).iloc[0]
    assert spread["final_l1_distance"] == pytest.approx((3 + 6 + 3) / 3)
    assert spread["l1_distance"] == pytest.approx(((20 + 40 + 20) / 3 + 4) / 2)
