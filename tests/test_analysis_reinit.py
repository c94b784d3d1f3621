"""Tests for fairens_core.analysis.reinit (Part III, chapter "reinit")."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from fairens_core import TrainConfig
from fairens_core.analysis import coupling as C
from fairens_core.analysis import reinit as R
from fairens_core.ensemble import reinit_names

COUNTS = [("a.weight", 6), ("a.bias", 2), ("b.weight", 10), ("b.bias", 2)]  # 20 parameters, layers a (8), b (12)
BASE = TrainConfig(dataset="mnist1d", model="cnn1d", members=3, epochs=2, warmup_epochs=0.5, device="cpu")


def test_layer_table():
    t = R.layer_table(COUNTS)
    assert t["layer"].tolist() == ["a", "b"]
    assert t["tensors"].tolist() == [["a.weight", "a.bias"], ["b.weight", "b.bias"]]
    assert t["parameters"].tolist() == [8, 12]
    assert t["share_from_input"].tolist() == pytest.approx([0.4, 1.0])
    assert t["share_from_output"].tolist() == pytest.approx([1.0, 0.6])


@pytest.mark.parametrize("side, layers", [("input", [["a.weight", "a.bias"], ["a.weight", "a.bias", "b.weight", "b.bias"]]),
                                          ("output", [["b.bias", "b.weight"], ["b.bias", "b.weight", "a.bias", "a.weight"]])])
def test_layer_fractions_stop_exactly_at_layer_boundaries(side, layers):
    fractions = R.layer_fractions(COUNTS, side)
    assert [reinit_names(COUNTS, f, side) for f in fractions] == layers


def test_layer_fractions_on_the_real_network():
    counts = R.parameter_counts(BASE.replace(width=0.5), (1, 40), 10)
    table = R.layer_table(counts)
    for side in R.SIDES:
        chosen = [set(reinit_names(counts, f, side)) for f in R.layer_fractions(counts, side)]
        tensors = table["tensors"].tolist()[::(1 if side == "input" else -1)]
        assert chosen == [set(sum(tensors[:i + 1], [])) for i in range(len(tensors))]


def test_a_batch_norm_joins_the_convolution_before_it():
    cfg = BASE.replace(model="cnn1d_bn", width=0.5)
    counts = R.parameter_counts(cfg, (1, 40), 10)
    layer_of = R.parameter_layers(cfg, (1, 40), 10)
    assert set(layer_of) == {name for name, _ in counts}
    table = R.layer_table(counts, layer_of)
    assert table["layer"].tolist() == ["features.0", "features.3", "features.6", "fc"]
    assert table["tensors"].tolist()[0] == ["features.0.weight", "features.1.weight", "features.1.bias"]
    plan = R.reinit_plan(counts, layer_of=layer_of)
    assert plan["side"].tolist() == ["input"] * 3 + ["output"] * 3 + ["all"]
    assert plan["layers"].tolist() == [1, 2, 3, 1, 2, 3, 4]
    # without batch norm every module with parameters is a layer of its own, as by default
    plain = BASE.replace(width=0.5)
    counts = R.parameter_counts(plain, (1, 40), 10)
    assert R.layer_table(counts, R.parameter_layers(plain, (1, 40), 10)).equals(R.layer_table(counts))


def test_reinit_plan_by_layers():
    plan = R.reinit_plan(COUNTS)
    assert plan[["side", "reinit_from", "layers"]].values.tolist() == [
        ["input", "input", 1], ["output", "output", 1], ["all", "input", 2]]
    assert plan["share"].tolist() == pytest.approx([0.4, 0.6, 1.0])


def test_reinit_plan_drops_fractions_that_select_the_same_tensors():
    plan = R.reinit_plan(COUNTS, fractions=[0.25, 0.3, 0.75, 1.0])
    # input: 0.25 and 0.3 both stop after a.weight (6 >= 5, 6 >= 6); 0.75 -> a, b.weight (18 >= 15); 1.0 -> all
    # output: 0.25, 0.3 -> b.bias, b.weight (12); 0.75 -> + a.bias, a.weight = all (already listed once)
    assert plan["side"].tolist() == ["input", "input", "output", "all"]
    assert plan["share"].tolist() == pytest.approx([0.3, 0.9, 0.6, 1.0])
    assert plan["fraction"].tolist()[:2] == [0.25, 0.75]
    with pytest.raises(ValueError, match="fractions"):
        R.reinit_plan(COUNTS, fractions=[0])


def test_reinit_configs():
    plan = R.reinit_plan(COUNTS)
    configs = R.reinit_configs(BASE, 7, plan)
    assert list(configs) == [("none", 0.0), ("input", 0.4), ("output", 0.6), ("all", 1.0)]
    assert configs[("none", 0.0)].key() == C.condition_config(BASE, "coupled-to-t-reset", 7).key()
    for (side, _), cfg in configs.items():
        assert (cfg.spawn_step, cfg.spawn_reset) == (7, True)
        if side != "none":
            row = plan[plan["side"] == side].iloc[0]
            assert (cfg.reinit_fraction, cfg.reinit_from) == (row["fraction"], row["reinit_from"])
    assert R.reinit_configs(BASE, 7, plan, reset=False)[("input", 0.4)].spawn_reset is False


def test_child_pairs():
    assert R.child_pairs(5, 2) == [(0, 1), (2, 3)]
    assert R.child_pairs(5, 3) == [(0, 1), (2, 3), (1, 2)]
    assert R.child_pairs(2, 5) == [(0, 1)]


def test_barrier_table_hand_computed():
    curves = pd.DataFrame({"side": "input", "share": 0.4, "pair": ["0-1"] * 3 + ["2-3"] * 3,
                           "alpha": [1.0, 0.0, 0.5] * 2, "error": [6.0, 4.0, 20.0, 5.0, 5.0, 5.0]})
    table = R.barrier_table(curves)
    assert table[["side", "share", "pair"]].values.tolist() == [["input", 0.4, "0-1"], ["input", 0.4, "2-3"]]
    assert table["barrier"].tolist() == pytest.approx([15.0, 0.0])
    assert table["endpoint_error"].tolist() == pytest.approx([5.0, 5.0])
    # rows with a missing key (e.g. reference runs without a share) are kept
    refs = curves.assign(share=float("nan"), side="no coupling")
    assert len(R.barrier_table(pd.concat([curves, refs]))) == 4


def test_curve_area_and_first_share():
    assert R.curve_area([0, 0.5, 1], [0, 1, 0]) == pytest.approx(0.5)
    assert R.curve_area([1, 0], [2, 2]) == pytest.approx(2)
    with pytest.raises(ValueError, match="shares 0 and 1"):
        R.curve_area([0, 0.5], [1, 1])
    assert R.first_share_reaching([0.6, 0.0, 0.3], [3, 1, 2.5], target=2.5) == 0.3
    assert math.isnan(R.first_share_reaching([0, 1], [1, 2], target=3))


def test_reinit_records_by_side():
    records = {("none", 0.0): "none", ("input", 0.4): "in", ("output", 0.6): "out", ("all", 1.0): "all"}
    by_side = R.reinit_records_by_side(records)
    assert by_side == {"input": {0.0: "none", 0.4: "in", 1.0: "all"}, "output": {0.0: "none", 0.6: "out", 1.0: "all"}}


@pytest.mark.slow
def test_barrier_on_real_children(tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRENS_CACHE", str(tmp_path / "cache"))
    from fairens_core.train import train_ensemble

    tiny = TrainConfig(dataset="mnist1d", dataset_options={"n_samples": 700}, model="cnn1d", width=0.5, members=2,
                       epochs=2, batch_size=64, lr=0.05, warmup_epochs=0.5, progress=False, device="cpu",
                       vary="all", spawn_step=5, spawn_reset=True)
    rec = train_ensemble(tiny.replace(reinit_fraction=0.3))
    test = R.TestSet(rec)
    curves = R.barrier_curves(rec, test, pairs=1, alphas=3)
    assert curves["alpha"].tolist() == [0.0, 0.5, 1.0]
    # the endpoints are the children themselves, evaluated as in training
    ends = curves.set_index("alpha")["error"]
    accuracy = 100 * rec.member_accuracy()
    assert ends[0.0] == pytest.approx(100 - float(accuracy[0]), abs=1e-3)
    assert ends[1.0] == pytest.approx(100 - float(accuracy[1]), abs=1e-3)
    table = R.barrier_table(curves)
    assert table["barrier"].iloc[0] == pytest.approx(max(ends) - (ends[0.0] + ends[1.0]) / 2)
    # a child against itself: no barrier
    identical = R.barrier_curves(train_ensemble(tiny.replace(members=1)), test, pairs=1, alphas=3)
    assert identical.empty
    assert np.isfinite(table["barrier"]).all() and torch.is_tensor(test.x)


def seeded_scores():
    """Per-seed rows by hand: three seeds, no re-init, one share per side, everything."""
    rows = []
    for seed, bump in ((0, 0.0), (1, 1.0), (2, 2.0)):
        for side, share, acc in (("none", 0.0, 60.0), ("input", 0.5, 70.0), ("output", 0.5, 64.0), ("all", 1.0, 68.0)):
            rows.append({"seed": seed, "side": side, "share": share, "ensemble_acc": acc + bump, "sym_kl": share})
    return pd.DataFrame(rows)


def test_mean_over_seeds_keeps_the_key_order():
    means = R.mean_over_seeds(seeded_scores(), ["side", "share"])
    assert list(means["side"]) == ["none", "input", "output", "all"]
    assert means.set_index("side").loc["input", "ensemble_acc"] == pytest.approx(71.0)
    assert "seed" not in means


def test_areas_by_seed_use_each_side_through_the_shared_ends():
    areas = R.areas_by_seed(seeded_scores(), ["ensemble_acc"]).set_index("seed")
    # seed 0, input side: (60 + 70) / 2 * 0.5 + (70 + 68) / 2 * 0.5 = 67.0; output: (60 + 64) / 4 + (64 + 68) / 4 = 64.0
    assert areas.loc[0, "input ensemble_acc"] == pytest.approx(67.0)
    assert areas.loc[0, "output ensemble_acc"] == pytest.approx(64.0)
    assert areas.loc[2, "input ensemble_acc"] == pytest.approx(69.0)


def test_gaps_to_reference_pair_by_seed():
    scores = seeded_scores()
    reference = pd.DataFrame({"seed": [0, 1, 2], "ensemble_acc": [70.0, 70.5, 72.5]})
    gaps = R.gaps_to_reference(scores, reference).set_index(["side", "share"])
    # input: 70 − 70, 71 − 70.5, 72 − 72.5 → 0, 0.5, −0.5
    assert gaps.loc[("input", 0.5), "gap"] == pytest.approx(0.0)
    assert gaps.loc[("input", 0.5), "se"] == pytest.approx(0.5 / math.sqrt(3))
    assert gaps.loc[("input", 0.5), "seeds"] == 3
    two_seeds = R.gaps_to_reference(scores[scores.seed < 2], reference)
    assert two_seeds["se"].isna().all()  # fewer than three seeds: no standard error for a claim
