"""Part I analyses: group curves, tables and the size-to-reach summary."""

import pandas as pd
import pytest
import torch

from fairens_core.analysis import fairness


def _one_hot(labels, classes=3):
    return torch.nn.functional.one_hot(torch.tensor(labels), classes).float()


@pytest.fixture
def pool():
    # 3 members, 6 examples, 3 classes; class 0 is always right, classes 1-2 are split.
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    probs = torch.stack([
        _one_hot([0, 0, 1, 0, 2, 0]),
        _one_hot([0, 0, 0, 1, 0, 2]),
        _one_hot([0, 0, 1, 1, 2, 2]),
    ])
    return probs, y


def test_single_vs_ensemble_by_hand(pool):
    probs, y = pool
    table = fairness.single_vs_ensemble(probs, y, k=1)
    # members: 4/6, 4/6, 6/6 -> 77.8%; the mean-prob vote gets all six right.
    assert table.loc["single", "mean"] == pytest.approx(100 * 14 / 18)
    assert table.loc["ensemble of 3", "mean"] == pytest.approx(100.0)
    assert table.loc["single", "top-1"] == pytest.approx(100.0)  # class 0


def test_gain_curves_start_at_one_and_end_at_the_pool(pool):
    probs, y = pool
    curves = fairness.gain_curves(probs, y, k=1, draws=20)
    first = curves[curves["size"] == 1].set_index("group")["gain"]
    assert first.to_numpy() == pytest.approx([1, 1, 1], abs=1e-9)
    last = curves[curves["size"] == 3].set_index("group")
    assert last.loc["all", "accuracy"] == pytest.approx(1.0)
    assert last.loc["all", "gain"] == pytest.approx(18 / 14)


def _curves(rows):
    return pd.DataFrame([{"size": s, "group": g, "gain": v} for g, vals in rows.items()
                         for s, v in zip(range(1, len(vals) + 1), vals)])


def test_size_to_reach_by_hand():
    curves = _curves({"rising": [1.0, 1.02, 1.039, 1.04], "falling": [1.0, 0.99, 0.981, 0.98],
                      "flat": [1.0, 1.0, 1.0, 1.0]})
    reach = fairness.size_to_reach(curves, 0.95)
    # rising needs gain >= 1.038 (size 3); falling needs <= 0.981 (size 3); flat at once.
    assert reach["size_to_95pct"].to_dict() == {"rising": 3, "falling": 3, "flat": 1}
    assert reach.loc["falling", "final_gain"] == pytest.approx(0.98)


def test_size_to_reach_rejects_a_bad_fraction():
    with pytest.raises(ValueError, match="fraction"):
        fairness.size_to_reach(_curves({"a": [1.0, 1.1]}), 1.5)


def test_size_to_reach_is_na_when_the_gain_is_undefined():
    # a group the single model never gets right: gain = accuracy / 0 (inf, or NaN for 0 / 0)
    curves = _curves({"never": [float("nan")] * 3, "grows": [float("inf")] * 3, "ok": [1.0, 1.1, 1.1]})
    reach = fairness.size_to_reach(curves, 0.95)["size_to_95pct"]
    assert reach.isna().to_dict() == {"never": True, "grows": True, "ok": False}
    assert reach["ok"] == 2


def test_pool_gains_in_three_units_by_hand(pool):
    probs, y = pool
    gains = fairness.pool_gains(probs, y, k=1)
    # members 4/6, 4/6, 6/6 right; the ensemble gets all six right
    assert gains.loc["all", "single"] == pytest.approx(100 * 14 / 18)
    assert gains.loc["all", "points"] == pytest.approx(100 - 100 * 14 / 18)
    assert gains.loc["all", "relative"] == pytest.approx(18 / 14)
    assert gains.loc["all", "fixed"] == pytest.approx(100.0)  # every error of the average member fixed
    assert gains.loc["top-k", "fixed"] != gains.loc["top-k", "fixed"]  # class 0 has no error: undefined (NaN)


def test_gains_by_setting_stacks_each_pool_on_its_own_test_set(pool):
    probs, y = pool
    table = fairness.gains_by_setting({1000: (probs, y), 2000: (probs[:2, :4], y[:4])}, k=1)
    assert list(table["setting"].unique()) == [1000, 2000]
    first = table[table.setting == 1000].set_index("group")
    assert first.loc["all", "points"] == pytest.approx(fairness.pool_gains(probs, y, 1).loc["all", "points"])
    second = table[table.setting == 2000].set_index("group")
    assert second.loc["all", "single"] == pytest.approx(100 * 6 / 8)  # members 3/4 and 3/4 on the first 4 examples


def test_gains_are_nan_not_inf_when_the_single_model_never_wins(recwarn):
    y = torch.tensor([0, 1])
    probs = torch.stack([_one_hot([0, 0], 2), _one_hot([0, 0], 2)])  # nobody ever predicts class 1
    curves = fairness.gain_curves(probs, y, k=1, draws=3)
    bottom = curves[curves.group == "bottom-k"]["gain"]
    assert bottom.isna().all()
    assert fairness.pool_gains(probs, y, k=1).loc["bottom-k", "relative"] != fairness.pool_gains(probs, y, k=1).loc["bottom-k", "relative"]
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_paired_differences_and_the_two_se_rule(pool):
    probs, y = pool
    table = fairness.seed_gains({0: probs, 1: probs.flip(0), 2: probs}, y, k=1)
    mean, se, n = fairness.paired(table, "points")
    assert n == 3 and se == pytest.approx(0.0)
    assert mean == pytest.approx(table.query("group == 'bottom-k'").points.iloc[0]
                                 - table.query("group == 'top-k'").points.iloc[0])
    assert fairness.two_se_claim("c", "p", "m", 1.0, 0.4, 3).holds is True
    assert fairness.two_se_claim("c", "p", "m", 1.0, 0.6, 3).holds is False
    assert fairness.two_se_claim("c", "p", "m", 1.0, 0.1, 2).holds is None  # too few seeds
    assert fairness.two_se_claim("c", "p", "m", float("nan"), 0.1, 3).note.startswith("not testable here")
    assert fairness.describe(float("inf"), 0.1) == "undefined"


def test_reach_by_pool_reads_each_pool_on_its_own():
    one = _curves({"top-k": [1.0, 1.04, 1.04, 1.04], "bottom-k": [1.0, 1.02, 1.03, 1.04]}).assign(pool_seed=0)
    two = _curves({"top-k": [1.0, 1.01, 1.04, 1.04], "bottom-k": [1.0, 1.01, 1.02, 1.04]}).assign(pool_seed=1)
    reach = fairness.reach_by_pool(pd.concat([one, two]), 0.95)
    assert reach.loc[0].to_dict() == {"top-k": 2, "bottom-k": 4}
    assert reach.loc[1].to_dict() == {"top-k": 3, "bottom-k": 4}
