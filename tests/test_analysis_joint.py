"""Part II analyses (Jeffares et al. 2023): independent vs joint training and learner dropout (no training)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from fairens_core.analysis import joint as J
from fairens_core.records import RunRecord


def _logits_from_probs(p) -> torch.Tensor:
    return torch.tensor(p, dtype=torch.float64).log()


# Two members, two examples, two classes. Example 0 (label 0): member 1 says 0.8, member 2
# says 0.4 for class 0, so only member 1 is right and the probability average (0.6) is right.
# Example 1 (label 1): both right (0.7 and 0.9), average 0.8.
PROBS = [[[0.8, 0.2], [0.3, 0.7]],
         [[0.4, 0.6], [0.1, 0.9]]]
LABELS = torch.tensor([0, 1])


def _record(probs=PROBS, labels=LABELS, traj=None, **config) -> RunRecord:
    logits = _logits_from_probs(probs)
    m = logits.shape[0]
    history = {"eval_step": torch.tensor([1, 2]), "test_acc": torch.tensor([[0.5, 1.0]] * m),
               "test_loss": torch.zeros(m, 2), "train_loss": torch.zeros(m, 2), "train_acc": torch.zeros(m, 2)}
    return RunRecord(config={"beta": 0.0, "learner_dropout": 0.0, "combine": "prob", "seed": 0, **config},
                     key="k", test_logits=logits.float(), y_test=labels, history=history,
                     test_probs_trajectory=traj)


def test_ensemble_metrics_by_hand_probability_averaging():
    out = J.ensemble_metrics(_logits_from_probs(PROBS), LABELS, "prob")
    assert out["members"] == 2
    assert out["ensemble_acc"] == 1.0
    assert out["member_acc"] == 0.75 and out["member_acc_min"] == 0.5
    err = (-math.log(0.6) - math.log(0.8)) / 2
    err_bar = (-math.log(0.8) - math.log(0.7) - math.log(0.4) - math.log(0.9)) / 4
    assert out["ERR"] == pytest.approx(err, abs=1e-12)
    assert out["ERR_bar"] == pytest.approx(err_bar, abs=1e-12)
    assert out["DIV"] == pytest.approx(err_bar - err, abs=1e-12)


def test_ensemble_metrics_by_hand_score_averaging():
    # the softmax of averaged log-probabilities is the normalised geometric mean
    out = J.ensemble_metrics(_logits_from_probs(PROBS), LABELS, "score")
    g0 = math.sqrt(0.8 * 0.4) / (math.sqrt(0.8 * 0.4) + math.sqrt(0.2 * 0.6))
    g1 = math.sqrt(0.7 * 0.9) / (math.sqrt(0.7 * 0.9) + math.sqrt(0.3 * 0.1))
    assert out["ERR"] == pytest.approx((-math.log(g0) - math.log(g1)) / 2, abs=1e-12)
    assert out["ensemble_acc"] == 1.0 and out["member_acc"] == 0.75


def test_combine_changes_the_ensemble_prediction():
    # 3 classes, label 2: arithmetic mean (.355, .305, .34) picks class 0,
    # geometric mean (.084, .077, .336) picks class 2
    probs = [[[0.7, 0.01, 0.29]], [[0.01, 0.6, 0.39]]]
    logits, y = _logits_from_probs(probs), torch.tensor([2])
    assert J.ensemble_metrics(logits, y, "prob")["ensemble_acc"] == 0.0
    assert J.ensemble_metrics(logits, y, "score")["ensemble_acc"] == 1.0
    assert J.ensemble_metrics(logits, y, "prob")["member_acc"] == 0.0
    with pytest.raises(ValueError):
        J.ensemble_metrics(logits, y, "vote")
    with pytest.raises(ValueError):
        J.ensemble_metrics(logits[0], y)


def test_identical_members_have_no_diversity():
    logits = _logits_from_probs([PROBS[0], PROBS[0], PROBS[0]])
    for combine in ("prob", "score"):
        out = J.ensemble_metrics(logits, LABELS, combine)
        assert out["DIV"] == pytest.approx(0, abs=1e-12)
        assert out["ERR"] == pytest.approx(out["ERR_bar"], abs=1e-12)
        assert out["ensemble_acc"] == out["member_acc"] == 1.0


def test_sweep_tables_sort_and_read_the_config():
    records = [_record(beta=1.0), _record(beta=0.0), _record(beta=0.5, combine="score")]
    table = J.sweep_table(records)
    assert table.beta.tolist() == [0.0, 0.5, 1.0]
    assert table["combine"].tolist() == ["prob", "score", "prob"]  # evaluated as trained
    assert J.sweep_table(records, combine="score")["combine"].unique().tolist() == ["score"]
    sweep = J.beta_sweep_table({b: r for b, r in zip("abc", records)})
    assert len(sweep) == 3 and (sweep.seeds == 1).all() and (sweep.ensemble_acc_se == 0).all()
    assert sweep.loc[sweep.beta == 0, "member_acc"].item() == 0.75


def test_dropout_table_keeps_dropout_rows_apart():
    records = [_record(beta=1.0, learner_dropout=p) for p in (0.4, 0.0, 0.2)] + [_record()]
    table = J.dropout_table(records)
    assert list(zip(table.beta, table.learner_dropout)) == [(0.0, 0.0), (1.0, 0.0), (1.0, 0.2), (1.0, 0.4)]


def test_average_seeds_by_hand():
    table = pd.DataFrame({"beta": [0.0, 0.0, 1.0], "seed": [0, 1, 0],
                          **{m: [0.8, 0.9, 0.5] for m in J.METRICS}})
    out = J.average_seeds(table, ["beta"]).set_index("beta")
    assert out.loc[0.0, "seeds"] == 2 and out.loc[1.0, "seeds"] == 1
    assert out.loc[0.0, "ensemble_acc"] == pytest.approx(0.85)
    assert out.loc[0.0, "ensemble_acc_se"] == pytest.approx(math.sqrt(0.005) / math.sqrt(2))  # = 0.05
    assert out.loc[1.0, "DIV_se"] == 0.0


def test_training_curves_from_trajectory():
    # epoch 1: both members predict class 0 for both examples (ensemble 50%); epoch 2: the final PROBS
    first = torch.tensor([[[0.9, 0.1], [0.9, 0.1]], [[0.6, 0.4], [0.6, 0.4]]])
    traj = torch.stack([first, torch.tensor(PROBS)], 1).half()  # (M, E, n, C)
    curves = J.training_curves([_record(traj=traj, beta=1.0)])
    assert curves.epoch.tolist() == [1, 2]
    assert curves.ensemble_acc.tolist() == [0.5, 1.0]
    assert curves.member_acc.tolist() == [0.5, 1.0]  # from the history
    assert (curves.beta == 1.0).all()
    score = J.training_curves([_record(traj=traj)], combine="score")
    assert score.ensemble_acc.tolist() == [0.5, 1.0] and (score["combine"] == "score").all()
    assert J.training_curves([_record()]).ensemble_acc.isna().all()  # no trajectory kept


def test_late_rise_share():
    betas = [0, 0.5, 0.8, 1]
    assert J.late_rise_share(pd.Series([0.0, 0.1, 0.2, 1.0], index=betas)) == pytest.approx(0.8)
    assert J.late_rise_share(pd.Series([0.0, 1.0, 2.0, 3.0], index=[0, 1, 2, 3])) == pytest.approx(1 / 3)
    # the index order, not the row order, decides which step is the last
    assert J.late_rise_share(pd.Series([1.0, 0.0, 0.2], index=[1, 0, 0.5])) == pytest.approx(0.8)
    assert np.isnan(J.late_rise_share(pd.Series([1.0, 0.5], index=[0, 1])))
    with pytest.raises(ValueError):
        J.late_rise_share(pd.Series([1.0], index=[0]))


def test_seeds():
    assert J.seeds(3, 2) == [3, 4]
    assert J.seeds(0, 1) == [0]


def test_readable_and_long_format():
    table = J.beta_sweep_table([_record(), _record(beta=1.0, seed=1), _record(beta=1.0, seed=2)])
    shown = J.readable(table)
    assert list(shown.columns) == ["beta", "ensemble acc %", "member acc %", "weakest member %",
                                   "ERR (ensemble loss)", "DIV"]
    assert shown["member acc %"].tolist() == [75.0, 75.0] and shown["weakest member %"].tolist() == [50.0, 50.0]
    long = J.long_format(table, {"ensemble_acc": "ensemble", "member_acc": "member"}, scale=100)
    assert len(long) == 4 and set(long.quantity) == {"ensemble", "member"}
    assert long.value.tolist() == [100.0, 100.0, 75.0, 75.0]
    assert (long.lo == long.value).all() and (long.hi == long.value).all()  # identical seeds: se 0
    table.loc[0, "member_acc_se"] = 0.01
    long = J.long_format(table, {"member_acc": "member"}, scale=100)
    assert long.lo.iloc[0] == pytest.approx(73.0) and long.hi.iloc[0] == pytest.approx(77.0)


def test_member_table():
    rec = _record(beta=1.0, learner_dropout=0.2)
    rec.history["train_loss"] = torch.tensor([[9.0, 0.5], [9.0, 7.0]])
    table = J.member_table([rec, _record()])
    assert len(table) == 4
    first = table[table.beta == 1.0]
    assert first.accuracy.tolist() == [1.0, 0.5] and first.final_train_loss.tolist() == [0.5, 7.0]
    assert (first.learner_dropout == 0.2).all() and first.member.tolist() == [0, 1]


def test_train_seeds_gives_one_record_per_seed(tmp_path, monkeypatch):
    from fairens_core import TrainConfig

    monkeypatch.setenv("FAIRENS_CACHE", str(tmp_path))
    cfg = TrainConfig(dataset="mnist1d", dataset_options={"n_samples": 700}, model="cnn1d", width=0.25, members=2,
                      epochs=1, warmup_epochs=0.5, device="cpu", progress=False)
    records = J.train_seeds(cfg, [3, 4], beta=1.0, vary="init")
    assert [(r.config["seed"], r.config["beta"], r.config["vary"]) for r in records] == [(3, 1.0, "init"), (4, 1.0, "init")]


def test_paired_difference_by_hand():
    table = pd.DataFrame({"seed": [0, 1, 2, 0, 1, 2], "beta": [0.0] * 3 + [1.0] * 3,
                          "ensemble_acc": [0.9, 0.8, 0.7, 0.5, 0.6, 0.4]})
    out = J.paired_difference(table, "ensemble_acc", 0.0, 1.0)
    d = np.array([0.4, 0.2, 0.3])
    assert out["n"] == 3
    assert out["diff"] == pytest.approx(d.mean())
    assert out["se"] == pytest.approx(d.std(ddof=1) / math.sqrt(3))
    assert out["a_mean"] == pytest.approx(0.8) and out["b_mean"] == pytest.approx(0.5)


def test_paired_difference_needs_three_seeds_and_both_conditions():
    table = pd.DataFrame({"seed": [0, 1, 0, 1], "beta": [0.0, 0.0, 1.0, 1.0], "ensemble_acc": [0.9, 0.8, 0.5, 0.6]})
    out = J.paired_difference(table, "ensemble_acc", 0.0, 1.0)
    assert out["n"] == 2 and math.isnan(out["se"]) and out["diff"] == pytest.approx(0.3)
    missing = J.paired_difference(table, "ensemble_acc", 0.0, 0.5)
    assert missing["n"] == 0 and math.isnan(missing["diff"])


def test_closest_rival():
    table = pd.DataFrame({"beta": [0.0, 0.5, 1.0], "ensemble_acc": [0.9, 0.7, 0.5]})
    assert J.closest_rival(table, "ensemble_acc", 1.0) == 0.5
    assert J.closest_rival(table, "ensemble_acc", 0.0, lowest=False) == 0.5
    assert J.closest_rival(table[table.beta == 1.0], "ensemble_acc", 1.0) is None


def sweep_rows(column: str, by_beta: dict, **constant) -> pd.DataFrame:
    """A sweep_table-like frame: one row per (β, seed) with `column` from {β: [value per seed]}."""
    return pd.DataFrame([{"beta": b, "seed": s, column: v, **constant}
                         for b, values in by_beta.items() for s, v in enumerate(values)])


def test_against_closest_rival_orients_the_difference():
    acc = sweep_rows("ensemble_acc", {0.0: [0.9, 0.8, 0.7], 0.5: [0.6, 0.7, 0.5], 1.0: [0.5, 0.6, 0.4]})
    rival, d = J.against_closest_rival(acc, "ensemble_acc", 1.0)  # is β = 1 the least accurate?
    assert rival == 0.5 and d["diff"] == pytest.approx(0.1)  # rival minus target, 0.1 on every seed
    assert d["se"] == pytest.approx(0.0, abs=1e-12) and d["n"] == 3
    rival, d = J.against_closest_rival(acc, "ensemble_acc", 0.0, lowest=False)  # is β = 0 the most accurate?
    assert rival == 0.5 and d["diff"] == pytest.approx((0.3 + 0.1 + 0.2) / 3)  # target minus rival
    assert J.against_closest_rival(acc[acc.beta == 1.0], "ensemble_acc", 1.0) == (None, None)


def test_paired_difference_at_beta_pairs_rows_of_two_tables():
    prob = sweep_rows("ensemble_acc", {0.0: [0.8, 0.7, 0.9], 1.0: [0.5, 0.5, 0.5]}, combine="prob", members=5)
    score = sweep_rows("ensemble_acc", {0.0: [0.7, 0.7, 0.7], 1.0: [0.6, 0.4, 0.5]}, combine="score", members=5)
    d = J.paired_difference_at_beta([prob, score], 0.0, "ensemble_acc", "prob", "score", key="combine")
    assert d["n"] == 3 and d["diff"] == pytest.approx(0.1) and d["a_mean"] == pytest.approx(0.8)
    assert d["se"] == pytest.approx(np.std([0.1, 0.0, 0.2], ddof=1) / np.sqrt(3))
    large = score.assign(members=10)
    d = J.paired_difference_at_beta([prob, large], 1.0, "ensemble_acc", 10, 5, key="members")
    assert d["diff"] == pytest.approx(0.0) and d["b_mean"] == pytest.approx(0.5)


def test_paired_difference_by_epoch():
    curves = pd.DataFrame([{"beta": b, "seed": s, "epoch": e, "ensemble_acc": 0.5 + 0.1 * e - (0.05 * e if b else 0)
                            + 0.01 * s} for b in (0.0, 1.0) for s in range(3) for e in (2, 1)])
    out = J.paired_difference_by_epoch(curves, "ensemble_acc", 0.0, 1.0)
    assert out.index.tolist() == [1, 2]  # sorted epochs
    assert out["diff"].tolist() == pytest.approx([0.05, 0.10])  # the joint ensemble falls behind by 0.05 per epoch
    assert out["n"].tolist() == [3, 3] and out["se"].tolist() == pytest.approx([0.0, 0.0], abs=1e-12)
    assert out["a_mean"].tolist() == pytest.approx([0.61, 0.71])


def test_interior_minimum():
    err = sweep_rows("ERR", {0.0: [1.2, 1.1, 1.3], 0.5: [1.0, 1.0, 1.0], 0.8: [1.1, 1.1, 1.1], 1.0: [1.5, 1.4, 1.6]})
    out = J.interior_minimum(err)
    assert out["best"] == 0.5
    assert out["first"]["diff"] == pytest.approx(0.2) and out["last"]["diff"] == pytest.approx(0.5)
    assert out["first"]["se"] == pytest.approx(0.1 / np.sqrt(3))
    assert J.interior_minimum(err[err.beta.isin([0.0, 1.0])]) is None  # no intermediate β
    assert J.interior_minimum(err.assign(ERR=-err.ERR))["best"] == 0.8  # the lowest is among the inner β only


def test_describe_move_and_its_rule():
    d = {"diff": 0.108, "se": 0.012, "n": 3, "a_mean": 0.920, "b_mean": 0.812}
    assert J.describe_move(d) == "-10.8 ± 1.2 pts (92.0 → 81.2 %)"
    assert J.a_exceeds_b(d) is True  # a above b by 9 SE
    assert J.a_exceeds_b({**d, "diff": 0.02}) is False
    no_se = {**d, "se": float("nan")}
    assert J.describe_move(no_se, scale=1, unit="", digits=3, percent=False) == "-0.108 (no seed-level SE) (0.920 → 0.812)"
    assert J.a_exceeds_b(no_se) is None
