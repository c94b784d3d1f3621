"""Tests for fairens_core.analysis.churn on a hand-made pool of three members."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from fairens_core.analysis.churn import (bottom_top_ratio, bottom_top_ratio_se, churn_vs_gain, gain_correlation_se,
                                         gain_correlations, group_churn, member_jackknife_se)

Y = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
# Predicted labels of three members: classes 0 and 1 always right; class 2 (worst by tie-break)
# and class 3 each missed once by two members, on different examples.
LABELS = torch.tensor([
    [0, 0, 1, 1, 2, 0, 3, 1],
    [0, 0, 1, 1, 0, 2, 3, 3],
    [0, 0, 1, 1, 2, 2, 0, 3],
])
PROBS = torch.nn.functional.one_hot(LABELS, 4).double()  # (3, 8, 4); the mean is a majority vote


def test_group_churn_hand_computed():
    frame = group_churn(PROBS, Y, k=1).set_index("group")["churn"]
    # top-1 = class 0: no disagreement. bottom-1 = class 2 (tie with 3, smaller index first):
    # pairs (0,1) disagree on 2/2 examples, (0,2) and (1,2) on 1/2 -> 2/3.
    # all: pairs differ on 3, 3 and 2 of 8 examples -> 1/3.
    assert list(frame.index) == ["all", "top-k", "bottom-k"]
    assert frame["top-k"] == 0
    assert frame["bottom-k"] == pytest.approx(100 * 2 / 3)
    assert frame["all"] == pytest.approx(100 / 3)


def test_bottom_top_ratio():
    assert np.isnan(bottom_top_ratio(PROBS, Y, k=1))  # the top-1 class has no churn
    probs = torch.softmax(torch.randn(6, 40, 4, generator=torch.Generator().manual_seed(0)), -1)
    y = torch.arange(40) % 4
    churn = group_churn(probs, y, k=1).set_index("group")["churn"]
    assert bottom_top_ratio(probs, y, k=1) == pytest.approx(churn["bottom-k"] / churn["top-k"])


def test_member_jackknife_se_of_a_mean_is_the_standard_error():
    # for a statistic that is a mean over members the jackknife SE is the textbook std / sqrt(m)
    probs = torch.softmax(torch.randn(7, 30, 3, generator=torch.Generator().manual_seed(1)), -1)
    y = torch.arange(30) % 3
    accuracy = (probs.argmax(-1) == y).double().mean(1)  # (7,)

    def mean_accuracy(pools):
        return [(p.argmax(-1) == y).double().mean(1).mean() for p in pools.values()]

    se = member_jackknife_se(mean_accuracy, {"a": probs, "b": probs.flip(0)})
    assert se.shape == (2,)
    assert se == pytest.approx([accuracy.std().item() / 7 ** 0.5] * 2)
    # pools are cut to the smallest before members are left out
    cut = member_jackknife_se(mean_accuracy, {"a": probs, "b": probs[:4]})
    assert cut[0] == pytest.approx(accuracy[:4].std().item() / 2)
    assert np.isnan(member_jackknife_se(mean_accuracy, {"a": probs[:2]})).all()  # too few members for an SE


def test_ratio_and_correlation_ses_are_jackknifes_over_all_pairs():
    gen = torch.Generator().manual_seed(2)
    pools = {"a": torch.softmax(torch.randn(6, 40, 4, generator=gen), -1),
             "b": torch.softmax(2 * torch.randn(5, 40, 4, generator=gen), -1)}
    y = torch.arange(40) % 4
    se = bottom_top_ratio_se(pools, y, k=1)
    assert list(se.index) == ["a", "b"]
    # five members (the smallest pool): 10 pairs, all of them, so no pair sampling enters the SE
    expected = member_jackknife_se(lambda p: [bottom_top_ratio(v, y, 1, pairs=10) for v in p.values()], pools)
    assert se.tolist() == pytest.approx(expected.tolist())
    r_se = gain_correlation_se(pools, y, k=1)
    expected_r = member_jackknife_se(
        lambda p: gain_correlations(churn_vs_gain(p, y, 1, pairs=10)).loc["churn", "r"], pools)
    assert r_se == pytest.approx(float(expected_r)) and r_se > 0


def test_churn_vs_gain_hand_computed():
    frame = churn_vs_gain({"a": PROBS}, Y, k=1).set_index("group")
    assert list(frame.columns) == ["model", "members", "churn", "churn_one_right", "single", "ensemble",
                                   "improvement", "relative_improvement", "fixed"]
    # every disagreement here is one right answer against one wrong answer
    assert frame["churn_one_right"].tolist() == pytest.approx(frame["churn"].tolist())
    # the majority vote repairs every mistake: ensemble 100% everywhere
    assert frame["ensemble"].tolist() == pytest.approx([100, 100, 100])
    # members are right on 6, 7, 7 of 8 examples; on class 2 on 1, 1, 2 of 2
    assert frame.loc["all", "single"] == pytest.approx(100 * 20 / 24)
    assert frame.loc["bottom-k", "single"] == pytest.approx(100 * 2 / 3)
    assert frame.loc["bottom-k", "improvement"] == pytest.approx(100 / 3)
    assert frame.loc["bottom-k", "relative_improvement"] == pytest.approx(50)
    assert frame.loc["all", "relative_improvement"] == pytest.approx(20)
    assert frame.loc["top-k", "improvement"] == 0
    assert frame.loc["bottom-k", "fixed"] == pytest.approx(100)  # every error of the members fixed
    assert math.isnan(frame.loc["top-k", "fixed"])  # the members make no error on the top class
    assert frame.loc["bottom-k", "churn"] == pytest.approx(100 * 2 / 3)


def test_churn_vs_gain_cuts_pools_to_the_smallest():
    # a fourth member that is always wrong would change every number if it were used
    wrong = torch.nn.functional.one_hot((Y + 1) % 4, 4).double()[None]
    big = torch.cat([PROBS, wrong])
    cut = churn_vs_gain({"small": PROBS, "big": big}, Y, k=1)
    assert (cut["members"] == 3).all()
    small, big_rows = (cut[cut.model == m].drop(columns="model").reset_index(drop=True)
                       for m in ("small", "big"))
    assert small.equals(big_rows)
    full = churn_vs_gain({"big": big}, Y, k=1)
    assert (full["members"] == 4).all() and full["churn"].iloc[0] > cut["churn"].iloc[0]
    with pytest.raises(ValueError, match="fewer than size"):
        churn_vs_gain({"small": PROBS}, Y, k=1, size=4)


def test_identical_members_have_no_churn_and_no_gain():
    probs = PROBS[:1].repeat(4, 1, 1)
    frame = churn_vs_gain({"same": probs}, Y, k=2, by="class")
    assert frame["group"].tolist() == ["0", "1", "2", "3"]
    assert (frame["churn"] == 0).all() and (frame["improvement"] == 0).all()


def test_churn_vs_gain_per_class():
    frame = churn_vs_gain({"a": PROBS}, Y, k=1, by="class").set_index("group")
    # class 3: pairs (0,1) and (1,2) disagree on 1/2, (0,2) on 2/2 -> 2/3, like class 2
    assert frame["churn"].tolist() == pytest.approx([0, 0, 100 * 2 / 3, 100 * 2 / 3])
    assert frame["single"].tolist() == pytest.approx([100, 100, 100 * 2 / 3, 100 * 2 / 3])
    with pytest.raises(ValueError, match="by="):
        churn_vs_gain({"a": PROBS}, Y, k=1, by="example")


def test_pool_configs_names_and_sizes():
    from fairens_core.analysis.churn import pool_configs
    from fairens_core.config import TrainConfig

    base = TrainConfig(model="cnn1d", members=20, epochs=3)
    configs = pool_configs(base, [("cnn1d", 1, None), ("cnn1d", 0.5, 10), ("mlp", 1, 10)])
    assert list(configs) == ["cnn1d", "cnn1d ×0.5", "mlp"]
    assert configs["cnn1d"] == base  # the base pool itself: shared cache record
    assert (configs["cnn1d ×0.5"].width, configs["cnn1d ×0.5"].members) == (0.5, 10)
    assert configs["mlp"].model == "mlp" and configs["mlp"].epochs == 3
    with pytest.raises(ValueError, match="twice"):
        pool_configs(base, [("mlp", 1, None), ("mlp", 1, 10)])


def test_disagreeing_on_wrong_answers_is_churn_without_gain():
    y = torch.tensor([0, 0])
    labels = torch.tensor([[1, 0], [2, 0]])  # both wrong on the first example, in different ways
    probs = torch.nn.functional.one_hot(labels, 3).double()
    row = churn_vs_gain({"a": probs}, y, k=1).set_index("group").loc["all"]
    assert row["churn"] == pytest.approx(50)
    assert row["churn_one_right"] == 0
    assert row["improvement"] == 0


def test_gain_correlations_overall_and_within_pools():
    frame = pd.DataFrame({
        "model": ["a", "a", "a", "b", "b", "b"],
        "churn": [1.0, 2.0, 3.0, 10.0, 20.0, 30.0],
        "churn_one_right": [1.0, 2.0, 3.0, 1.0, 2.0, 3.0],
        "single": [90.0, 80.0, 70.0, 90.0, 80.0, 70.0],
        "relative_improvement": [1.0, 2.0, 3.0, 1.0, 2.0, 3.0],
    }, index=[5, 6, 7, 8, 9, 10])  # an index that does not start at 0
    overall = gain_correlations(frame)["r"]
    assert overall["churn_one_right"] == pytest.approx(1)
    assert overall["error"] == pytest.approx(1)  # error = 100 - single grows with the gain
    assert overall["churn"] < 0.9  # pool b's churn is ten times pool a's for the same gain
    within = gain_correlations(frame, by="model")
    assert list(within.columns) == ["a", "b"]
    assert within.loc["churn"].tolist() == pytest.approx([1, 1])
