"""Part V analyses (Kondratyuk et al. 2020): sub-ensemble accuracy, costs, Pareto front and crossovers, by hand."""

import math

import numpy as np
import pandas as pd
import pytest
import torch

from fairens_core.analysis import efficiency as E
from fairens_core.config import TrainConfig
from fairens_core.records import RunRecord


# --------------------------------------------------------------------------- accuracy by size

@pytest.fixture
def pool():
    """3 members, 2 examples, 3 classes. Example 0 (label 1) separates the two aggregations:
    member 0 rules out class 2 and member 1 nearly rules out class 0, so the geometric mean
    (which multiplies) falls back on class 1 where the arithmetic mean picks 0 or 2.
    Example 1 (label 0) every member gets right."""
    probs = torch.tensor([
        [[0.70, 0.30, 0.00], [0.8, 0.1, 0.1]],
        [[0.01, 0.30, 0.69], [0.8, 0.1, 0.1]],
        [[0.20, 0.50, 0.30], [0.8, 0.1, 0.1]],
    ], dtype=torch.float64)
    return probs, torch.tensor([1, 0])


def test_accuracy_by_size_by_hand(pool):
    probs, y = pool
    acc = E.accuracy_by_size(probs, y, draws=100).set_index(["aggregation", "n"])
    # singles: members score 1/2, 1/2, 1 -> 2/3 under both aggregations.
    assert acc.loc[("arithmetic", 1), "accuracy"] == pytest.approx(2 / 3)
    assert acc.loc[("geometric", 1), "accuracy"] == pytest.approx(2 / 3)
    # pairs, example 0: arithmetic picks 0, 0, 2 (all wrong); geometric picks 1, 1, 2.
    assert acc.loc[("arithmetic", 2), "accuracy"] == pytest.approx(1 / 2)
    assert acc.loc[("geometric", 2), "accuracy"] == pytest.approx(5 / 6)
    # the whole pool: arithmetic [.303, .367, .33] and geometric [.112, .356, 0] both pick 1.
    assert acc.loc[("arithmetic", 3), "accuracy"] == pytest.approx(1.0)
    assert acc.loc[("geometric", 3), "accuracy"] == pytest.approx(1.0)
    assert acc.loc[("arithmetic", 2), "subsets"] == 3 and acc.loc[("arithmetic", 3), "subsets"] == 1
    assert acc.loc[("arithmetic", 3), "accuracy_std"] == 0


# --------------------------------------------------------------------------- costs

def test_training_step_flops_counts_forward_and_backward():
    # Linear(4, 3): forward 2*4*3 = 24 per example, weight gradient another 24; the input
    # needs no gradient, so no third matmul.
    assert E.training_step_flops(torch.nn.Linear(4, 3), (4,), 3) == 48
    # 4 -> 5 -> 3: forward 40 + 30; backward: layer 2 weight 30 and input 30, layer 1 weight 40.
    mlp = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    assert E.training_step_flops(mlp, (4,), 3) == 170


def _record(width, probs, wall=8.0, flops=1000, params=100):
    config = {"model": "cnn1d", "width": width, "dropout": 0.0, "epochs": 2, "batch_size": 4}
    meta = {"input_shape": [40], "num_classes": probs.shape[-1], "flops_per_example": flops,
            "parameters": params, "steps_per_epoch": 5, "wall_time_s": wall, "device_name": "cpu"}
    return RunRecord(config=config, key=f"w{width}", test_logits=probs.clamp_min(1e-6).log().half(),
                     y_test=torch.tensor([1, 0]), history={}, meta=meta)


def test_efficiency_table_scales_costs_with_n(pool):
    probs, _ = pool
    table = E.efficiency_table([_record(0.5, probs, wall=9.0, flops=1000, params=100)])
    row = table[(table.aggregation == "arithmetic") & (table.n == 2)].iloc[0]
    assert row.flops == 2000 and row.parameters == 200
    assert row.train_seconds == pytest.approx(2 * 9.0 / 3)  # the pool's wall time shared by 3 members
    from fairens_core.models import build_model
    step = E.training_step_flops(build_model("cnn1d", (40,), 3, width=0.5), (40,), 3)
    assert row.train_flops == pytest.approx(2 * step * 2 * 5 * 4)  # n x step x epochs x steps x batch
    # float16 logits of these probabilities still give the hand-computed accuracies
    assert row.accuracy == pytest.approx(1 / 2)
    assert list(table.width.unique()) == [0.5] and len(table) == 6


def test_member_cost_table(pool):
    probs, _ = pool
    costs = E.member_cost_table([_record(1, probs, wall=6.0), _record(0.5, probs, wall=3.0)])
    assert costs.width.tolist() == [0.5, 1.0]
    row = costs.iloc[1]
    assert row.examples_seen == 2 * 5 * 4 and row.train_seconds == pytest.approx(2.0)
    assert row.train_flops == row.train_step_flops * row.examples_seen
    # forward + backward is between 2 and 3 forward passes (the first layer has no input gradient)
    from fairens_core.models import build_model, model_flops
    forward = model_flops(build_model("cnn1d", (40,), 3, width=1), (40,))
    assert 2 * forward < row.train_step_flops <= 3 * forward


# --------------------------------------------------------------------------- Pareto front

def test_pareto_front_by_hand():
    frame = pd.DataFrame({"flops": [1, 2, 2, 3, 4, 4], "accuracy": [0.5, 0.7, 0.6, 0.7, 0.9, 0.9]})
    # (2, .6) loses to (2, .7); (3, .7) costs more for the same accuracy; the two (4, .9) tie and stay.
    assert E.pareto_front(frame).tolist() == [True, True, False, False, True, True]


def test_with_pareto_is_per_aggregation():
    table = pd.DataFrame({"aggregation": ["arithmetic", "arithmetic", "geometric", "geometric"],
                          "flops": [1, 2, 1, 2], "accuracy": [0.9, 0.8, 0.7, 0.75]})
    # (2, .8) is dominated within arithmetic; (2, .75) is not, although (1, .9) would dominate it.
    assert E.with_pareto(table).pareto.tolist() == [True, False, True, True]


# --------------------------------------------------------------------------- crossovers

def _table(curves):
    """{width: (member flops, [accuracy at n = 1, 2, ...])} -> an efficiency-like table."""
    rows = [{"width": w, "n": n, "aggregation": "arithmetic", "accuracy": a, "flops": f * n,
             "train_flops": 3 * f * n, "train_seconds": 1.0 * n}
            for w, (f, accs) in curves.items() for n, a in enumerate(accs, start=1)]
    return pd.DataFrame(rows)


def test_crossover_cheaper_match():
    table = _table({1: (10, [0.80, 0.86, 0.89, 0.90]), 2: (35, [0.88, 0.91])})
    row = E.crossovers(table).iloc[0]
    assert (row.narrow, row.wide, row.wide_accuracy, row.wide_cost) == (1, 2, 0.88, 35)
    assert row.match_n == 3 and row.match_cost_ratio == pytest.approx(30 / 35)
    assert row.best_at_wide_cost == pytest.approx(0.89) and row.margin == pytest.approx(0.01)
    # n = 4 (40 FLOPs, .90) is not beaten: the wide single model is less accurate, two cost 70.
    assert math.isnan(row.switch_n)


def test_crossover_switch_and_no_cheap_match():
    table = _table({1: (10, [0.80, 0.86, 0.89, 0.90]), 2: (35, [0.90, 0.93])})
    row = E.crossovers(table).iloc[0]
    assert row.match_n == 4 and row.match_cost_ratio == pytest.approx(40 / 35)  # matched, but dearer
    assert row.margin == pytest.approx(-0.01)
    # n = 4 costs 40 for .90; the wide single model gives .90 for 35: the next width is the better buy.
    assert row.switch_n == 4


def test_crossover_never_matched_and_other_costs():
    table = _table({0.5: (10, [0.5, 0.6]), 1: (30, [0.9]), 2: (100, [0.95])})
    rows = E.crossovers(table)
    assert rows[["narrow", "wide"]].values.tolist() == [[0.5, 1], [1, 2]]
    assert math.isnan(rows.match_n[0]) and math.isnan(rows.match_cost_ratio[0])
    # priced by seconds (1 per member), one wide member costs the same as one narrow one
    by_seconds = E.crossovers(table, cost="train_seconds").iloc[0]
    assert by_seconds.best_at_wide_cost == pytest.approx(0.5) and by_seconds.switch_n == 1
    with pytest.raises(ValueError, match="cost"):
        E.crossovers(table, cost="latency")
    with pytest.raises(ValueError, match="aggregation"):
        E.crossovers(table, aggregation="median")


# --------------------------------------------------------------------------- summaries

def test_gain_share_by_hand():
    table = _table({1: (10, [0.80, 0.86, 0.89, 0.90]), 2: (35, [0.9, 0.9, 0.9, 0.9])})
    share = E.gain_share(table, at=2).set_index("width")
    assert share.loc[1, "share"] == pytest.approx(0.6)  # (.86 - .80) / (.90 - .80)
    assert math.isnan(share.loc[2, "share"])  # no gain at all: no share to speak of


def test_geometric_minus_arithmetic():
    table = pd.DataFrame({"width": [1] * 4, "n": [1, 1, 2, 2], "aggregation": ["arithmetic", "geometric"] * 2,
                          "accuracy": [0.8, 0.8, 0.85, 0.86]})
    diff = E.geometric_minus_arithmetic(table)
    assert diff.n.tolist() == [2] and diff.difference.iloc[0] == pytest.approx(0.01)


# --------------------------------------------------------------------------- parameters

@pytest.mark.parametrize("widths", [[1], [1, 1], [0, 1], [1, "2"], "12", None])
def test_bad_widths_are_named(widths):
    with pytest.raises(ValueError, match="widths"):
        E.check_widths(widths, "cnn1d")


def test_wrn_needs_integer_widths():
    assert E.check_widths([4, 1, 2], "wrn16") == [1, 2, 4]
    with pytest.raises(ValueError, match="integer"):
        E.check_widths([1, 1.5], "wrn16")


def test_check_chapter():
    assert E.check_chapter("cnn1d", 4, [2, 1], None, 10, 2) == ([1, 2], [1, 2, 3, 4])
    with pytest.raises(ValueError, match="sizes"):
        E.check_chapter("cnn1d", 4, [1, 2], [1, 5], 10, 2)
    with pytest.raises(ValueError, match="must include 1"):
        E.check_chapter("cnn1d", 4, [1, 2], [2, 3], 10, 2)
    with pytest.raises(ValueError, match="plateau_at"):
        E.check_chapter("cnn1d", 4, [1, 2], [1, 3], 10, 2)
    with pytest.raises(ValueError, match="draws"):
        E.check_chapter("cnn1d", 4, [1, 2], None, 0, 2)


def test_chapter_profiles_resolve():
    from fairens_core.profiles import chapter_settings

    for profile in ("default", "smoke", "full"):
        s = chapter_settings("flops", profile)
        E.check_chapter(s.config.model, s.config.members, s.widths, s.sizes, s.draws, s.plateau_at)
    assert chapter_settings("flops", "full").config.model == "fastcnn"
    assert np.all(np.diff(chapter_settings("flops", "default").widths) > 0)


# --------------------------------------------------------------------------- seed-level standard errors

def test_leave_out_drops_one_member(pool):
    probs, _ = pool
    record = _record(0.5, probs)
    table = E.efficiency_table([record], leave_out=2)
    # members 0 and 1 remain: singles 1/2 each, and no ensemble of 3
    assert sorted(table.n.unique()) == [1, 2] and set(table.pool) == {2}
    singles = table[(table.n == 1) & (table.aggregation == "geometric")].accuracy.iloc[0]
    assert singles == pytest.approx(0.5)


def test_jackknife_of_the_mean_member_is_its_standard_error(pool):
    probs, _ = pool
    record = _record(0.5, probs)
    table = E.efficiency_table([record])
    replicates = E.jackknife_tables([record])
    assert len(replicates) == 3

    def mean_single(t):
        return t[(t.n == 1) & (t.aggregation == "arithmetic")].accuracy.iloc[0]

    est, se = E.jackknife(table, replicates, mean_single)
    members = np.array([0.5, 0.5, 1.0])  # member accuracies (see the pool fixture)
    assert est == pytest.approx(members.mean())
    # for a mean the jackknife SE is the usual std / sqrt(M)
    assert se == pytest.approx(members.std(ddof=1) / np.sqrt(3))
    # too few replicates: no SE
    assert np.isnan(E.jackknife(table, replicates[:2], mean_single)[1])


def test_margins_gaps_steps_and_slowdown_by_hand():
    table = _table({1: (10, [0.80, 0.86, 0.89, 0.90]), 2: (35, [0.88, 0.91, 0.92, 0.93])})
    table["aggregation"] = "geometric"
    assert E.single_steps(table) == pytest.approx([0.08])
    assert E.margins(table) == pytest.approx([0.01])  # .89 at 30 FLOPs against .88 at 35
    # the largest narrow ensemble (40 FLOPs, .90) against the best wide one within 40 FLOPs (.88)
    assert E.crossover_gaps(table) == pytest.approx([-0.02])
    # per member: (.89 - .80) / 2 up to n = 3, then (.90 - .89) / 1
    assert E.slowdown(table, 3) == pytest.approx([0.045 - 0.01, (0.92 - 0.88) / 2 - 0.01])
    assert np.isnan(E.slowdown(table, 4)).all()  # nothing after the largest size


def test_mean_geometric_gain():
    table = pd.DataFrame({"width": [1] * 6, "n": [1, 1, 2, 2, 3, 3], "aggregation": ["arithmetic", "geometric"] * 3,
                          "accuracy": [0.8, 0.8, 0.85, 0.86, 0.9, 0.9]})
    assert E.mean_geometric_gain(table) == pytest.approx(0.005)


# --------------------------------------------------------------------------- training length

def _all_right(pool):
    probs, _ = pool
    right = torch.zeros_like(probs)
    right[:, 0, 1] = right[:, 1, 0] = 1.0  # every member right on both examples
    return right


def test_pair_summary_by_hand(pool):
    narrow = _record(0.5, pool[0], flops=1000)  # members right on 1, 1 and 2 of 2 examples
    wide = _record(1, _all_right(pool), flops=3000)
    row = E.pair_summary([narrow, wide], draws=10).iloc[0]
    assert (row.narrow, row.wide) == (0.5, 1)
    assert row.step == pytest.approx(1 - 2 / 3)
    # the wide members never err, so the SE is the narrow members' std / sqrt(3)
    assert row.step_se == pytest.approx(np.std([0.5, 0.5, 1.0], ddof=1) / np.sqrt(3))
    # within 3,000 FLOPs the 3-member geometric ensemble gets both right, as the wide single model does
    assert row.margin == pytest.approx(0.0)


def test_training_length_sweep_skips_lengths_not_trained(pool, monkeypatch):
    def available(base, widths):
        if base.epochs == 7:
            return [], list(widths)
        return [_record(0.5, pool[0], flops=1000), _record(1, _all_right(pool), flops=3000)], []

    monkeypatch.setattr(E, "available_width_family", available)
    frame, skipped = E.training_length_sweep(TrainConfig(), [0.5, 1], [3, 7, 5], draws=10)
    assert skipped == [7]
    assert frame.epochs.tolist() == [3, 5]
    assert frame.step.tolist() == pytest.approx([1 / 3, 1 / 3])
    empty, skipped = E.training_length_sweep(TrainConfig(), [0.5, 1], [7], draws=10)
    assert empty.empty and skipped == [7]
