"""Minority-subgroup analyses (Ko et al. 2023, §3.2, App. H) and the decision-tree ensembles."""

from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from fairens_core import TrainConfig
from fairens_core.analysis import subgroups as S
from fairens_core.data import Dataset
from fairens_core.train import train_ensemble
from fairens_core.trees import train_tree_ensemble


def one_hot(labels, classes=2):
    """(M, N) predicted labels -> (M, N, C) 'probabilities' (one-hot)."""
    return torch.nn.functional.one_hot(torch.tensor(labels), classes).float()


# Six examples, all of class 1: four in group 0 ("a"), two in group 1 ("b").
Y = torch.tensor([1, 1, 1, 1, 1, 1])
GROUPS = torch.tensor([0, 0, 0, 0, 1, 1])
# Three members. Group a: every member right on 3 of 4 (the same 3): no gain.
# Group b: each member right on one example, but the majority vote is right on both.
PROBS = one_hot([[1, 1, 1, 0, 1, 0],
                 [1, 1, 1, 0, 0, 1],
                 [1, 1, 1, 0, 1, 1]])
DATA = SimpleNamespace(y_test=Y, groups_test={"g": GROUPS}, group_names={"g": ["a", "b"]})


def test_subgroup_rows_by_hand():
    rows = S.subgroup_rows(PROBS, Y, GROUPS, ["a", "b"]).set_index("subgroup")
    assert list(rows.index) == ["all", "a", "b"]
    assert rows.loc["a", "n"] == 4 and rows.loc["b", "n"] == 2
    assert rows.loc["a", "base"] == pytest.approx(0.75) and rows.loc["a", "gain"] == pytest.approx(1.0)
    assert rows.loc["b", "base"] == pytest.approx(2 / 3)  # members right on 1, 1, 2 of 2
    assert rows.loc["b", "ensemble"] == pytest.approx(1.0)
    assert rows.loc["b", "gain"] == pytest.approx(1.5)
    assert rows.loc["b", "fixed"] == pytest.approx(1.0)  # every error the members leave on b is fixed
    assert rows.loc["a", "fixed"] == pytest.approx(0.0)  # the vote repeats the members' one shared error
    assert rows.loc["a", "churn"] == 0.0
    assert rows.loc["b", "churn"] == pytest.approx((1 + 0.5 + 0.5) / 3)  # pairs (0,1), (0,2), (1,2)
    assert rows.loc["all", "base"] == pytest.approx((4 / 6 + 4 / 6 + 5 / 6) / 3)


def test_label_keeps_one_class_and_pooled_groups_add_rows():
    y = torch.tensor([0, 1, 1, 1, 0])
    groups = torch.tensor([0, 1, 2, 2, 2])
    probs = one_hot([[0, 1, 0, 1, 1]])  # right, right, wrong, right, wrong
    rows = S.subgroup_rows(probs, y, groups, ["a", "b", "c"], label=1, pooled={"b+c": ["b", "c"]})
    rows = rows.set_index("subgroup")
    assert list(rows.index) == ["all", "b", "c", "b+c"]  # "a" has no example of class 1
    assert rows.loc["b", "base"] == 1.0 and rows.loc["c", "base"] == 0.5 and rows.loc["c", "n"] == 2
    assert rows.loc["b+c", "n"] == 3 and rows.loc["b+c", "base"] == pytest.approx(2 / 3)
    assert rows.loc["all", "churn"] == 0.0  # a single member disagrees with nobody


def test_repeat_table_summarize_and_minority_vs_majority():
    flipped = PROBS.flip(0)  # same members, other order: identical numbers
    frame = S.repeat_table({0: PROBS, 1: flipped}, DATA, "g", model="m")
    assert list(frame.columns[:3]) == ["ablation", "sources", "seed"]
    assert len(frame) == 6
    summary = S.summarize(frame).set_index("subgroup")
    assert summary.loc["b", "base"] == pytest.approx(100 * 2 / 3)
    assert summary.loc["b", "points"] == pytest.approx(100 / 3)
    assert summary.loc["b", "base_std"] == 0.0 and summary.loc["b", "gain"] == pytest.approx(1.5)
    gains = S.minority_vs_majority(frame).iloc[0]
    assert (gains["minority"], gains["majority"]) == ("b", "a")
    assert gains["gap"] == pytest.approx(0.5) and gains["gap_std"] == 0.0
    assert gains["gap_se"] == 0.0 and gains["repeats"] == 2
    assert (gains["minority_fixed"], gains["majority_fixed"]) == (pytest.approx(100), pytest.approx(0))
    assert gains["fixed_gap"] == pytest.approx(-100) and gains["fixed_gap_se"] == 0.0  # majority - minority
    named = S.minority_vs_majority(frame, minority="a", majority="b").iloc[0]
    assert named["gap"] == pytest.approx(-0.5)
    table = S.paper_table(S.summarize(frame))
    assert table.loc[("m", "b"), "base"] == "66.7 ± 0.0" and table.loc[("m", "b"), "gain"] == 1.5


def test_summarize_std_is_over_seeds():
    frame = pd.DataFrame({"ablation": "x", "sources": "x", "seed": [0, 1], "subgroup": "g", "n": 10,
                          "base": [0.5, 0.7], "ensemble": [0.6, 0.8], "gain": [1.2, 8 / 7], "fixed": [0.2, 1 / 3],
                          "churn": [0.1, 0.3]})
    row = S.summarize(frame).iloc[0]
    assert row["base"] == pytest.approx(60) and row["base_std"] == pytest.approx(10)
    assert row["points"] == pytest.approx(10) and row["churn"] == pytest.approx(20)
    assert row["fixed"] == pytest.approx(100 * (0.2 + 1 / 3) / 2)


def test_effective_vary_drops_augmentation_without_augmentations():
    assert S.effective_vary(TrainConfig(vary="all")) == "init+batch_order"
    assert S.effective_vary(TrainConfig(vary="augmentation")) == "none"
    assert S.effective_vary(TrainConfig(vary="all", augment=("flip",))) == "init+batch_order+augmentation"
    assert S.effective_vary(TrainConfig(vary="batch_order", augment=("flip",))) == "batch_order"
    assert S.effective_vary(TrainConfig(vary="all", dropout=0.1)) == "init+batch_order+augmentation"  # masks vary


TINY = dict(dataset="synthetic", dataset_options={"n_samples": 300}, model="mlp", width=0.25, members=2,
            epochs=1, batch_size=64, warmup_epochs=0, schedule="constant", device="cpu", progress=False)


def test_all_equals_init_batch_order_without_augmentation():
    """What lets `ablation_table` reuse the Init&BatchOrder record for All on tabular data."""
    every = train_ensemble(TrainConfig(**TINY, vary="all"))
    two = train_ensemble(TrainConfig(**TINY, vary="init+batch_order"))
    assert torch.equal(every.test_logits, two.test_logits)


def test_jitter_makes_all_differ_from_init_batch_order_on_a_table():
    """With the tabular augmentation, All has a source of its own, and DA alone makes members differ."""
    jittered = TrainConfig(**TINY, augment=("jitter",))
    assert S.effective_vary(jittered.replace(vary="all")) == "init+batch_order+augmentation"
    every = train_ensemble(jittered.replace(vary="all"))
    two = train_ensemble(jittered.replace(vary="init+batch_order"))
    assert not torch.equal(every.test_logits, two.test_logits)
    da = train_ensemble(jittered.replace(vary="augmentation"))
    assert not torch.equal(da.test_logits[0], da.test_logits[1])
    none = train_ensemble(jittered.replace(vary="none"))
    assert torch.equal(none.test_logits[0], none.test_logits[1])


def test_ablation_table_runs_each_distinct_config_once(tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRENS_CACHE", str(tmp_path))
    monkeypatch.delenv("FAIRENS_RECORDS", raising=False)
    frame = S.ablation_table(TrainConfig(**TINY), ["init+batch_order", "all", "init"], [0, 1], "group")
    assert len(list((tmp_path / "records").glob("*.npz"))) == 4  # All shares Init&BatchOrder's records
    assert set(frame["subgroup"]) == {"all", "majority", "minority"}
    assert frame.groupby("ablation")["sources"].first().to_dict() == {
        "All": "init+batch_order", "Init": "init", "Init&BatchOrder": "init+batch_order"}
    same = frame[frame.ablation == "All"].drop(columns="ablation").reset_index(drop=True)
    assert same.equals(frame[frame.ablation == "Init&BatchOrder"].drop(columns="ablation").reset_index(drop=True))


def tree_dataset():
    """Class 1 iff x0 > 0; x1 is an exact copy of x0, so every split on x0 ties with one on x1."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 3, generator=g)
    x[:, 1] = x[:, 0]
    y = (x[:, 0] > 0).long()
    return Dataset(name="toy", task="classification", x_train=x[:150], y_train=y[:150], x_test=x[150:],
                   y_test=y[150:], classes=["0", "1"])


def test_tree_ensemble_shapes_probabilities_and_seeds():
    ds = tree_dataset()
    probs = train_tree_ensemble(ds, members=3, max_depth=2, seed=0)
    assert probs.shape == (3, 50, 2)
    assert torch.allclose(probs.sum(-1), torch.ones(3, 50))
    assert (probs.argmax(-1) == ds.y_test).float().mean() > 0.95
    assert torch.equal(probs, train_tree_ensemble(ds, members=3, max_depth=2, seed=0))


def test_trees_without_feature_sampling_only_break_ties():
    ds = tree_dataset()
    probs = train_tree_ensemble(ds, members=6, max_depth=3, seed=1)
    assert all(torch.equal(probs[0], p) for p in probs)  # random_state only picks x0 or x1
    sampled = train_tree_ensemble(ds, members=6, max_depth=3, seed=1, max_features=1)
    assert any(not torch.equal(sampled[0], p) for p in sampled)


def test_tree_ensemble_rejects_regression():
    ds = tree_dataset()
    ds.task = "regression"
    with pytest.raises(ValueError, match="regression"):
        train_tree_ensemble(ds, members=2)


def test_gain_by_role_picks_sizes_or_names():
    frame = S.repeat_table({0: PROBS}, DATA, "g", model="m", pooled={"a+b": ["a", "b"]})
    roles = S.gain_by_role(frame, minority="b", majority="a")
    assert roles.set_index("role")["subgroup"].to_dict() == {"minority": "b", "majority": "a"}
    assert roles.set_index("role")["gain"].to_dict() == pytest.approx({"minority": 1.5, "majority": 1.0})
    assert S.gain_by_role(frame).set_index("role")["subgroup"]["majority"] == "a+b"  # pooled rows count
    labelled = S.gain_by_role(frame, "b", "a", setting="Adult · ")
    assert set(labelled["setting"]) == {"Adult · " + a for a in labelled["ablation"]}


def test_relative_gain_text():
    assert S.relative_gain_text(1.0104) == "+1.04 %"
    assert S.relative_gain_text(0.9969) == "-0.31 %"


def ablation_frame():
    """An `ablation_table`-like frame by hand: two ablations, three seeds, subgroups all, a (majority), b."""
    rows = []
    for ablation, sources, churn, gain_b in (("BatchOrder", "batch_order", (0.01, 0.02, 0.03), (1.10, 1.20, 1.30)),
                                             ("All", "init+batch_order", (0.04, 0.04, 0.06), (1.00, 1.10, 1.10))):
        for seed in range(3):
            rows += [dict(ablation=ablation, sources=sources, seed=seed, subgroup="all", n=60, base=0.80,
                          ensemble=0.80 + 0.01 * (seed + 1), gain=1.0, fixed=0.05 * (seed + 1), churn=churn[seed]),
                     dict(ablation=ablation, sources=sources, seed=seed, subgroup="a", n=50, base=0.9, ensemble=0.9,
                          gain=1.0, fixed=0.0, churn=0.0),
                     dict(ablation=ablation, sources=sources, seed=seed, subgroup="b", n=10, base=0.5,
                          ensemble=0.5 * gain_b[seed], gain=gain_b[seed], fixed=gain_b[seed] - 1, churn=0.0)]
    return pd.DataFrame(rows)


def test_churn_ratio_is_paired_by_seed():
    ratio, se, n = S.churn_ratio(ablation_frame(), "BatchOrder", "All")
    r = [0.25, 0.5, 0.5]  # 0.01/0.04, 0.02/0.04, 0.03/0.06
    assert n == 3 and ratio == pytest.approx(sum(r) / 3)
    assert se == pytest.approx(pd.Series(r).std(ddof=1) / 3 ** 0.5)


def test_minority_gain_difference_in_points():
    d, se, n = S.minority_gain_difference(ablation_frame(), "BatchOrder", "All")
    assert n == 3 and d == pytest.approx(100 * (0.10 + 0.10 + 0.20) / 3)  # b is the smallest subgroup
    assert se == pytest.approx(pd.Series([10.0, 10.0, 20.0]).std(ddof=1) / 3 ** 0.5)
    d_named, _, _ = S.minority_gain_difference(ablation_frame(), "BatchOrder", "All", minority="a", majority="b")
    assert d_named == pytest.approx(0.0)


def test_ensemble_minus_base_over_rows():
    d, se, n = S.ensemble_minus_base(ablation_frame())
    assert n == 6 and d == pytest.approx(2.0)  # +1, +2, +3 points in each ablation
    assert se == pytest.approx(pd.Series([1.0, 2, 3, 1, 2, 3]).std(ddof=1) / 6 ** 0.5)
    assert S.ensemble_minus_base(ablation_frame(), "a")[:2] == pytest.approx((0.0, 0.0))


def test_same_members_compares_the_effective_sources():
    frame = ablation_frame()
    assert not S.same_members(frame, "All", "BatchOrder")
    same = pd.concat([frame, frame[frame.ablation == "All"].assign(ablation="Init&BatchOrder")])
    assert S.same_members(same, "All", "Init&BatchOrder")
    assert not S.same_members(frame, "All", "Init&BatchOrder")  # not run


def test_describe_gap_and_minority_gains_more():
    gap = pd.Series({"minority": "b", "majority": "a", "minority_gain": 1.0104, "majority_gain": 1.0033,
                     "gap": 0.0071, "gap_se": 0.0023, "repeats": 3})
    assert S.describe_gap(gap) == "b +1.04% vs a +0.33% (gap +0.71 ± 0.23 SE, 3 repeats)"
    assert S.minority_gains_more(gap) is True  # 0.71 > 2 × 0.23
    assert S.minority_gains_more(gap.copy().replace({0.0023: 0.004})) is False
    assert S.minority_gains_more(gap.copy().replace({3: 2})) is None  # two repeats: not testable
    assert S.minority_gains_more(gap.copy().replace({0.0023: float("nan")})) is None


def adult_summary():
    """A `summarize`-like frame: two ablations, rows "all examples" and Female."""
    return pd.DataFrame({"ablation": ["Init", "Init", "All", "All"],
                         "subgroup": ["all examples", "Female", "all examples", "Female"], "n": [10, 4, 10, 4],
                         "base": [80.0, 28.0, 80.2, 28.2], "base_std": [0.1] * 4,
                         "ensemble": [80.5, 29.0, 80.7, 29.3], "ensemble_std": [0.2, 0.3, 0.2, 0.4],
                         "points": [0.5, 1.0, 0.5, 1.1]})


def test_ablation_columns_is_laid_out_like_table_2():
    table = S.ablation_columns(adult_summary())
    assert list(table.columns) == ["n", "average member", "Init", "All"]
    assert table.loc["Female"].tolist() == [4, "28.10", "29.00 ± 0.30", "29.30 ± 0.40"]


def test_points_against_paper_quotes_table_2_in_points():
    table = S.points_against_paper(adult_summary())
    assert list(table.columns) == ["Init: paper", "Init: here", "All: paper", "All: here"]
    assert table.loc["Female", "All: paper"] == pytest.approx(28.76 - 27.97)  # Ko et al. 2023, Table 2
    assert table.loc["all examples", "Init: paper"] == pytest.approx(79.75 - 79.93)
    assert table.loc["Female", "All: here"] == 1.1


def test_chosen_ablation_prefers_all_sources():
    assert S.chosen_ablation(["BatchOrder", "Init", "All"]) == "All"
    assert S.chosen_ablation(["Init&BatchOrder", "Init"]) == "Init&BatchOrder"
    assert S.chosen_ablation(["BatchOrder", "Init"]) == "Init"


def test_churn_by_setting_and_its_change():
    low = ablation_frame()
    high = low.assign(churn=lambda d: d.churn.where(d.ablation != "BatchOrder", 2 * d.churn))  # BatchOrder churns twice as much
    table = S.churn_by_setting({0.1: low, 0.4: high}, "BatchOrder", "All").set_index("setting")
    assert table.loc[0.1, "churn_a"] == pytest.approx(2.0) and table.loc[0.1, "churn_b"] == pytest.approx(100 * 0.14 / 3)
    assert table.loc[0.4, "ratio"] == pytest.approx(2 * table.loc[0.1, "ratio"])
    change, se, n = S.churn_ratio_change({0.1: low, 0.4: high}, "BatchOrder", "All", 0.1, 0.4)
    # per seed, the ratio doubles: the change is the low ratio itself, 0.25, 0.5, 0.5
    assert change == pytest.approx((0.25 + 0.5 + 0.5) / 3) and n == 3
    # a change between conditions needs three seeds for its standard error
    two_seeds = {k: t[t.seed != t.seed.max()] for k, t in {0.1: low, 0.4: high}.items()}
    change, se, n = S.churn_ratio_change(two_seeds, "BatchOrder", "All", 0.1, 0.4)
    assert n == 2 and se != se
