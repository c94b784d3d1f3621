"""Tests for fairens_core.analysis.coupling (Part III, chapters "coupling" and "function_space")."""

import math
import statistics
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from fairens_core import TrainConfig
from fairens_core import metrics as M
from fairens_core.analysis import coupling as C

BASE = TrainConfig(dataset="mnist1d", model="cnn1d", members=3, epochs=2, warmup_epochs=0.5, device="cpu")


# ---------------------------------------------------------------------------- configurations
def test_condition_configs_map_the_paper_onto_the_engine():
    nc = C.condition_config(BASE, "no-coupling")
    co = C.condition_config(BASE, "coupled-order")
    to = C.condition_config(BASE, "coupled-to-t", 10)
    reset = C.condition_config(BASE, "coupled-to-t-reset", 10)
    assert (nc.spawn_step, nc.vary) == (None, "all")
    assert (co.spawn_step, co.vary) == (None, "init")  # own init, shared batches (and augmentation)
    assert (to.spawn_step, to.spawn_reset, to.vary) == (10, False, "all")
    assert (reset.spawn_step, reset.spawn_reset) == (10, True)
    # everything else is the base recipe
    for cfg in (nc, co, to, reset):
        assert (cfg.members, cfg.epochs, cfg.model, cfg.reinit_fraction) == (3, 2, "cnn1d", 0.0)


def test_coupling_fields_of_the_base_are_overwritten():
    base = BASE.replace(spawn_step=5, spawn_reset=True, reinit_fraction=0.5, vary="batch_order")
    nc = C.condition_config(base, "no-coupling")
    assert (nc.spawn_step, nc.spawn_reset, nc.reinit_fraction, nc.vary) == (None, False, 0.0, "all")


def test_reset_at_zero_is_coupled_to_zero():
    assert C.condition_config(BASE, "coupled-to-t-reset", 0).key() == C.condition_config(BASE, "coupled-to-t", 0).key()


@pytest.mark.parametrize("condition, t, match", [
    ("bogus", None, "condition"), ("no-coupling", 5, "no spawn time"), ("coupled-to-t", None, "spawn time"),
    ("coupled-to-t-reset", -1, "spawn time")])
def test_condition_config_rejects(condition, t, match):
    with pytest.raises(ValueError, match=match):
        C.condition_config(BASE, condition, t)


def test_coupling_configs_cover_every_condition_and_time():
    configs = C.coupling_configs(BASE, [0, 4, 8])
    assert set(configs) == {("no-coupling", None), ("coupled-order", None),
                            *((c, t) for c in C.SPAWNED for t in (0, 4, 8))}
    assert len({c.key() for c in configs.values()}) == 2 + 3 + 2  # reset at 0 is coupled-to-0


def test_run_configs_runs_each_distinct_config_once():
    calls = []

    def runner(cfg, quiet=False):
        calls.append(cfg.key())
        return SimpleNamespace(key=cfg.key())

    configs = C.coupling_configs(BASE, [0, 4])
    records = C.run_configs(configs, runner=runner)
    assert set(records) == set(configs)
    assert len(calls) == len(set(calls)) == 2 + 2 + 1
    assert records[("coupled-to-t-reset", 0)] is records[("coupled-to-t", 0)]


def test_spawn_steps_round_sort_and_deduplicate():
    assert C.spawn_steps([0.5, 0, 1 / 64, 1 / 1000], 1250) == [0, 1, 20, 625]
    assert C.spawn_steps([0.1, 0.1001], 100) == [10]
    with pytest.raises(ValueError, match="spawn fractions"):
        C.spawn_steps([1.0], 100)


def test_spawn_label():
    assert C.spawn_label(0, 125) == "init"
    assert C.spawn_label(250, 125) == "250 (2 ep)"
    assert C.spawn_label(None, 125) == C.spawn_label(pd.NA, 125) == "no spawn"


# ---------------------------------------------------------------------------- K-ensembles
def test_k_subsets_all_or_drawn():
    assert C.k_subsets(4, 2, draws=10) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    assert C.k_subsets(5, 5) == [(0, 1, 2, 3, 4)]
    drawn = C.k_subsets(10, 3, draws=7, seed=1)
    assert len(drawn) == 7 and all(len(s) == 3 and list(s) == sorted(s) for s in drawn)
    assert drawn == C.k_subsets(10, 3, draws=7, seed=1)
    with pytest.raises(ValueError, match="K=4"):
        C.k_subsets(3, 4)


def one_hot(labels, c=3, sharp=1.0):
    """Probabilities with `sharp` on the label and the rest spread evenly."""
    p = torch.full((len(labels), c), (1 - sharp) / (c - 1))
    p[torch.arange(len(labels)), torch.tensor(labels)] = sharp
    return p


Y = torch.tensor([0, 1, 2, 0])


def test_ensemble_scores_hand_computed():
    # member 0 right on 0, 1, 2 (3/4); member 1 right on 0, 3 (2/4); confident (0.8) everywhere
    a = one_hot([0, 1, 2, 1], sharp=0.8)
    b = one_hot([0, 2, 1, 0], sharp=0.7)
    probs = torch.stack([a, b])
    s = C.ensemble_scores(probs, Y)
    assert s["member_acc"] == pytest.approx(100 * 5 / 8)
    assert s["member_acc_std"] == pytest.approx(100 * 1 / 8)
    # ensemble: ex 0 right; ex 1 p = (0.8 + 0.15)/2 for class 1 vs (0.1 + 0.7)/2 for class 2 -> right;
    # ex 2 class 2: (0.8 + 0.15)/2 vs class 1 (0.1 + 0.7)/2 -> right; ex 3: class 1 0.45 vs class 0 0.4 -> wrong
    assert s["ensemble_acc"] == pytest.approx(75.0)
    assert s["gain"] == pytest.approx(75.0 - 62.5)
    per_example = torch.tensor([1, 1, 1, 0], dtype=torch.float64) - torch.tensor([1, 0.5, 0.5, 0.5], dtype=torch.float64)
    assert s["gain_se"] == pytest.approx(100 * float(per_example.std() / 2))
    assert s["member_mace"] == pytest.approx((M.mace(a, Y) + M.mace(b, Y)) / 2)
    assert s["ensemble_mace"] == pytest.approx(M.mace(probs.mean(0), Y))
    assert s["mace_improvement"] == pytest.approx(s["member_mace"] - s["ensemble_mace"])
    assert s["nll_improvement"] == pytest.approx(s["member_nll"] - s["ensemble_nll"])


def test_identical_members_gain_nothing():
    p = one_hot([0, 1, 1, 0], sharp=0.6)
    s = C.ensemble_scores(torch.stack([p, p, p]), Y, k=2)
    assert s["gain"] == 0 and s["gain_se"] == 0 and s["mace_improvement"] == pytest.approx(0)


def test_k_ensemble_scores_average_the_subsets():
    probs = torch.stack([one_hot([0, 1, 2, 1]), one_hot([0, 2, 1, 0]), one_hot([1, 1, 2, 0])])
    s = C.ensemble_scores(probs, Y, k=2)
    subsets = [C.ensemble_scores(probs[list(i)], Y) for i in [(0, 1), (0, 2), (1, 2)]]
    assert s["gain"] == pytest.approx(np.mean([x["gain"] for x in subsets]))
    assert s["ensemble_mace"] == pytest.approx(np.mean([x["ensemble_mace"] for x in subsets]))
    assert s["member_acc"] == pytest.approx(100 * (3 + 2 + 3) / 12)  # over all members


def test_paired_gain_difference():
    good = torch.stack([one_hot([0, 1, 2, 1], sharp=0.8), one_hot([0, 2, 1, 0], sharp=0.7)])
    same = torch.stack([one_hot([0, 1, 2, 1])] * 2)
    d, se = C.paired_gain_difference(good, same, Y)
    assert d == pytest.approx(12.5)  # gain 12.5 vs 0
    assert se > 0
    assert C.paired_gain_difference(good, good, Y) == (0.0, 0.0)


def fake(probs, meta=None):
    probs = torch.as_tensor(probs)
    return SimpleNamespace(probs=lambda: probs, y_test=Y, meta=meta or {"steps_per_epoch": 10},
                           member_accuracy=lambda: (probs.argmax(-1) == Y).float().mean(1))


def test_tables_and_lookup():
    records = {("no-coupling", None): fake(torch.stack([one_hot([0, 1, 2, 1]), one_hot([0, 2, 1, 0])])),
               ("coupled-to-t", 0): fake(torch.stack([one_hot([0, 1, 2, 1])] * 2)),
               ("coupled-to-t", 20): fake(torch.stack([one_hot([0, 1, 2, 0])] * 2))}
    table = C.coupling_table(records)
    assert str(table["spawn_step"].dtype) == "Int64"
    assert C.lookup(table, "coupled-to-t", 20)["spawn_epoch"] == 2.0
    assert C.lookup(table, "coupled-to-t", 0)["gain"] == 0
    assert C.lookup(table, "no-coupling")["member_acc"] == pytest.approx(62.5)
    with pytest.raises(KeyError):
        C.lookup(table, "coupled-order")
    members = C.member_table(records)
    assert len(members) == 6 and members["accuracy"].max() == 100.0


# ---------------------------------------------------------------------------- function space
def test_children_kl_zero_for_identical_children_and_matches_metric():
    p = torch.softmax(torch.randn(3, 4, 3, generator=torch.Generator().manual_seed(0)), -1)
    frame = C.children_kl({("coupled-to-t-reset", 5): fake(p),
                           ("coupled-to-t-reset", 9): fake(torch.stack([p[0]] * 3))}).set_index("spawn_step")
    pair = [M.symmetric_kl(p[i], p[j]) for i in range(3) for j in range(3) if i != j]
    assert frame.loc[5, "sym_kl"] == pytest.approx(np.mean(pair), rel=1e-5)
    assert frame.loc[9, "sym_kl"] == pytest.approx(0, abs=1e-6) and frame.loc[9, "disagreement"] == 0


def test_between_parent_kl():
    g = torch.Generator().manual_seed(1)
    pa, pb = torch.softmax(torch.randn(2, 4, 3, generator=g), -1), torch.softmax(torch.randn(2, 4, 3, generator=g), -1)
    key = ("coupled-to-t-reset", 5)
    row = C.between_parent_kl({key: fake(pa)}, {key: fake(pb)}).iloc[0]
    assert row["ensemble_kl"] == pytest.approx(M.symmetric_kl(pa.mean(0), pb.mean(0)), rel=1e-5)
    cross = [M.symmetric_kl(a, b) for a in pa for b in pb]
    assert row["member_kl"] == pytest.approx(np.mean(cross), rel=1e-5)
    assert C.between_parent_kl({key: fake(pa)}, {key: fake(pa)}).iloc[0]["ensemble_kl"] == pytest.approx(0, abs=1e-6)
    # K = 1: the first member of each
    assert C.between_parent_kl({key: fake(pa)}, {key: fake(pb)}, k=1).iloc[0]["ensemble_kl"] == pytest.approx(
        M.symmetric_kl(pa[0], pb[0]), rel=1e-5)
    with pytest.raises(ValueError, match="same keys"):
        C.between_parent_kl({key: fake(pa)}, {("coupled-to-t-reset", 6): fake(pb)})


# ---------------------------------------------------------------------------- trends
def test_rank_correlation():
    assert C.rank_correlation([1, 2, 3, 4], [10, 8, 3, 1]) == pytest.approx(-1)
    assert C.rank_correlation([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert math.isnan(C.rank_correlation([1, 2, 3], [5, 5, 5]))


def test_early_share():
    assert C.early_share([0, 10, 20, 40], [4, 3, 2, 0], until=10) == pytest.approx(0.25)  # linear: 10/40
    assert C.early_share([0, 10, 40], [4, 1, 0], until=10) == pytest.approx(0.75)  # fast early
    assert C.early_share([40, 0, 10], [0, 4, 1], until=25) == pytest.approx(0.875)  # unsorted input
    assert math.isnan(C.early_share([0, 1], [2, 2], until=1))


def test_trends_over_seeds_take_each_seeds_curve_and_skip_incomplete_ones():
    curves = pd.DataFrame([[4, 3, 2, 0], [4, 1, 0.5, 0], [3, 3.5, 1, 0], [5, float("nan"), float("nan"), 1]],
                          index=[0, 1, 2, 3], columns=[0, 10, 20, 40])  # seed 3 has the two ends only
    rhos = [-1.0, -1.0, C.rank_correlation([0, 10, 20, 40], [3, 3.5, 1, 0])]
    rho, rho_se = C.rank_correlation_over_seeds(curves)
    assert rho == pytest.approx(np.mean(rhos)) and rho_se == pytest.approx(np.std(rhos, ddof=1) / math.sqrt(3))
    shares = [0.25, 0.75, -1 / 6]
    share, share_se = C.early_share_over_seeds(curves, until=10)
    assert share == pytest.approx(np.mean(shares)) and share_se == pytest.approx(np.std(shares, ddof=1) / math.sqrt(3))
    rho, rho_se = C.rank_correlation_over_seeds(curves.iloc[[0, 3]])  # one complete curve: no SE
    assert rho == pytest.approx(-1) and math.isnan(rho_se)


def test_paired_accuracy_difference():
    a = torch.stack([one_hot([0, 1, 2, 0])] * 2)  # ensemble right everywhere
    b = torch.stack([one_hot([0, 1, 1, 1])] * 2)  # right on 2 of 4
    d, se = C.paired_accuracy_difference(a, b, Y)
    assert d == pytest.approx(50.0)
    assert se == pytest.approx(100 * float(torch.tensor([0.0, 0, 1, 1]).std() / 2))


# ---------------------------------------------------------------------------- several seeds
def test_seed_configs_repeat_every_condition_per_seed():
    configs = C.seed_configs(BASE, [0, 1], [0, 4])
    assert {k[0] for k in configs} == {0, 1}
    assert configs[(1, "no-coupling", None)].seed == 1
    assert configs[(0, "coupled-to-t", 4)].key() == C.condition_config(BASE, "coupled-to-t", 4).key()
    assert len({c.key() for c in configs.values()}) == 2 * (2 + 2 + 1)
    ends = C.seed_configs(BASE, [0, 1, 2], [0, 4, 8], other_steps=[0, 8])
    assert (0, "coupled-to-t", 4) in ends and (1, "coupled-to-t", 4) not in ends and (2, "coupled-to-t", 8) in ends


def test_mean_se_and_over_seeds():
    assert C.mean_se([1.0, 2.0, 3.0]) == pytest.approx((2.0, 1 / 3 ** 0.5))  # std (ddof 1) 1 / sqrt(3)
    m, se = C.mean_se([1.0, 3.0])  # a difference between conditions needs three seeds
    assert m == 2.0 and math.isnan(se)
    frame = pd.DataFrame({"condition": ["a", "a", "b", "b"], "spawn_step": [None, None, 3, 3],
                          "seed": [0, 1, 0, 1], "gain": [1.0, 3.0, 0.0, 0.0]})
    out = C.over_seeds(frame, ["gain"])
    assert list(out["condition"]) == ["a", "b"]
    assert out["gain"].tolist() == [2.0, 0.0] and out["gain_se"].tolist() == [1.0, 0.0]
    assert out["seeds"].tolist() == [2, 2]


def test_seed_difference_is_paired_by_seed():
    frame = pd.DataFrame({"condition": ["a"] * 4 + ["b"] * 3, "spawn_step": [None] * 4 + [3] * 3,
                          "seed": [0, 1, 2, 3, 0, 1, 2], "gain": [1.0, 2.0, 3.0, 9.0, 0.5, 1.0, 1.0]})
    d, se, n = C.seed_difference(frame, "gain", ("a", None), ("b", 3))
    # seed 3 has no partner; the paired differences are 0.5, 1 and 2
    assert n == 3 and d == pytest.approx(3.5 / 3) and se == pytest.approx(statistics.stdev([0.5, 1, 2]) / 3 ** 0.5)
    two = C.seed_difference(frame[frame.seed < 2], "gain", ("a", None), ("b", 3))
    assert two[2] == 2 and math.isnan(two[1])  # two seeds: no 2-SE rule


def test_children_kl_names_other_keys():
    p = torch.tensor([[[0.9, 0.1]], [[0.5, 0.5]]])
    out = C.children_kl({("input", 0.25): fake(p)}, keys=("side", "share"))
    assert out[["side", "share"]].values.tolist() == [["input", 0.25]] and out["sym_kl"].iloc[0] > 0
