"""Part II analyses of §6.1-6.2 (Jeffares et al. 2023): hand-computed diagnostics, trajectories and a CSV run."""

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from fairens_core import TrainConfig
from fairens_core.analysis import regression_collusion as rc

X = torch.tensor([0.0, 1.0, 2.0, 3.0])
ALTERNATE = torch.tensor([0.5, -0.5, 0.5, -0.5])


def test_colluding_pair_with_a_varying_part():
    # f1 = x + 1 + s, f2 = x − 1 − s: the ensemble is x (= y), each member is off by ±(1 + s)
    preds = torch.stack([X + 1 + ALTERNATE, X - 1 - ALTERNATE])
    m = rc.collusion_metrics(preds, X, ps=(0.5,), repeats=10)
    assert m["ERR"] == pytest.approx(0.0)
    assert m["ERR_bar"] == pytest.approx(1.25)  # mean of 2.25 and 0.25
    assert m["DIV"] == pytest.approx(1.25)
    # the offsets ±1 are constant, the ±s part is not: 0.25 of the 1.25 is left, 80% removed
    assert m["DIV_debiased"] == pytest.approx(0.25)
    assert m["debiased_share"] == pytest.approx(0.8)
    assert m["dropout_0.5"] == pytest.approx(1.25)  # one member left: its own MSE
    assert math.isinf(m["dropout_0.5_relative"])  # ERR = 0


def test_dropping_a_member_of_a_constant_pair():
    # f1 = x + 1, f2 = x − 1, y = x + e with e = ±0.5: ERR = 0.25; either member alone has MSE 1.25
    y = X + ALTERNATE
    m = rc.collusion_metrics(torch.stack([X + 1, X - 1])[..., None], y, ps=(0.5,), repeats=20)
    assert (m["ERR"], m["ERR_bar"], m["DIV"]) == pytest.approx((0.25, 1.25, 1.0))
    assert m["debiased_share"] == pytest.approx(1.0)  # pure offsets: debiasing removes all of DIV
    assert m["dropout_0.5"] == pytest.approx(1.0)
    assert m["dropout_0.5_relative"] == pytest.approx(4.0)


def test_identical_members_have_nothing_to_remove_or_lose():
    preds = torch.stack([X, X, X, X, X])
    m = rc.collusion_metrics(preds, X + 1, ps=(0.2, 0.4, 0.6), repeats=5)
    assert m["ERR"] == pytest.approx(1.0) and m["DIV"] == pytest.approx(0, abs=1e-15)
    assert m["debiased_share"] == 0
    assert [m[f"dropout_{p}"] for p in (0.2, 0.4, 0.6)] == pytest.approx([0, 0, 0], abs=1e-15)


def test_summarize_sweep_and_long_formats():
    sweep = pd.DataFrame({"dataset": "d", "beta": [0.0, 0.0, 1.0], "seed": [0, 1, 0], "members": 2,
                          "DIV": [1.0, 3.0, 5.0], "dropout_0.5": [0.0, 2.0, 4.0],
                          "dropout_0.5_relative": [0.0, 1.0, 2.0]})
    s = rc.summarize_sweep(sweep).set_index("beta")
    assert s.loc[0.0, "repeats"] == 2 and s.loc[1.0, "repeats"] == 1
    assert s.loc[0.0, "DIV"] == 2.0 and s.loc[0.0, "DIV_std"] == pytest.approx(math.sqrt(2))
    assert s.loc[1.0, "DIV_std"] == 0.0
    long = rc.long_metrics(s.reset_index(), {"DIV": "diversity"}).set_index("beta")
    assert long.loc[0.0, "lo"] == pytest.approx(2 - math.sqrt(2)) and long.loc[0.0, "quantity"] == "diversity"
    drop = rc.dropout_long(s.reset_index(), ps=(0.5,)).set_index("beta")
    assert drop.loc[1.0, "mean"] == 2.0 and drop.loc[1.0, "p"] == 0.5


def test_decompose_classification_probability_and_score_averaging():
    logits = torch.log(torch.tensor([[[0.8, 0.2]], [[0.4, 0.6]]]))  # (M=2, N=1, C=2)
    dec = rc.decompose(logits, torch.tensor([0]), "classification", "prob")
    assert dec.err.item() == pytest.approx(-math.log(0.6))
    assert dec.err_bar.item() == pytest.approx(-(math.log(0.8) + math.log(0.4)) / 2)
    score = rc.decompose(logits, torch.tensor([0]), "classification", "score")
    mean_logit = logits.mean(0)[0]
    assert score.err.item() == pytest.approx(-torch.log_softmax(mean_logit.double(), -1)[0].item())


def fake_record():
    # train epoch 1: identical members [1, 2] vs y = 0; epoch 2: members ±1 around the target
    train = torch.tensor([[[1.0, 2.0], [1.0, -1.0]], [[1.0, 2.0], [-1.0, 1.0]]])[..., None]  # (2, 2, 2, 1)
    test = torch.tensor([[[0.0, 0.0], [2.0, 2.0]], [[2.0, 2.0], [2.0, 2.0]]])[..., None]
    return SimpleNamespace(meta={"task": "regression"}, config={"combine": "prob"},
                           train_outputs_trajectory=train, test_outputs_trajectory=test,
                           y_train_tracked=torch.zeros(2), y_test=torch.zeros(2))


def test_loss_trajectory_by_hand():
    t = rc.loss_trajectory(fake_record()).set_index(["split", "epoch"])
    assert t.loc[("train", 1), ["ERR", "ERR_bar", "DIV"]].tolist() == pytest.approx([2.5, 2.5, 0.0])
    assert t.loc[("train", 2), ["ERR", "ERR_bar", "DIV"]].tolist() == pytest.approx([0.0, 1.0, 1.0])
    assert t.loc[("test", 1), ["ERR", "ERR_bar", "DIV"]].tolist() == pytest.approx([1.0, 2.0, 1.0])
    assert t.loc[("test", 2), ["ERR", "ERR_bar", "DIV"]].tolist() == pytest.approx([4.0, 4.0, 0.0])
    with pytest.raises(ValueError, match="track_outputs"):
        rc.loss_trajectory(SimpleNamespace(train_outputs_trajectory=None))


def gap_frame():
    # per (beta, seed): train ERR 1 at every epoch, test ERR 1 + gap
    gaps = {(0.0, 0): 1.0, (0.0, 1): 3.0, (1.0, 0): 2.0, (1.0, 1): 5.0}
    rows = []
    for (beta, seed), gap in gaps.items():
        for epoch in (1, 2):
            test = 1.0 + gap * epoch / 2
            rows += [{"beta": beta, "seed": seed, "epoch": epoch, "split": "train", "ERR": 1.0, "ERR_bar": 1.5, "DIV": 0.5},
                     {"beta": beta, "seed": seed, "epoch": epoch, "split": "test", "ERR": test, "ERR_bar": test, "DIV": 0.0}]
    return pd.DataFrame(rows)


def test_generalization_gap_mean_and_two_standard_errors():
    g = rc.generalization_gap(gap_frame()).set_index(["beta", "epoch"])
    last = g.loc[(0.0, 2)]  # gaps 1 and 3: mean 2, s.e. = std / √2 = 1
    assert (last["mean"], last["se"], last["lo"], last["hi"], last["repeats"]) == pytest.approx((2, 1, 0, 4, 2))
    assert g.loc[(1.0, 1), "mean"] == pytest.approx(1.75)  # (1 + 2.5) / 2
    diff = rc.paired_gap_difference(gap_frame())  # last epoch: [2 − 1, 5 − 3] = [1, 2]
    assert (diff["mean"], diff["se"]) == pytest.approx((1.5, 0.5))
    both = rc.paired_gap_difference(gap_frame(), epochs=2)  # seed means: [0.75, 1.5]
    assert both["mean"] == pytest.approx(1.125)
    c = rc.curves(gap_frame()).set_index(["beta", "split", "epoch"])
    assert c.loc[(0.0, "test", 2), "mean"] == pytest.approx(3.0) and c.loc[(0.0, "train", 2), "se"] == 0
    s = rc.summary_at(gap_frame()).set_index(["beta", "split"])
    assert s.loc[(1.0, "test"), "ERR"] == pytest.approx(4.5) and (s.epoch == 2).all()


@pytest.mark.slow
def test_chapter_analysis_on_a_tiny_csv(tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRENS_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    n = 160
    frame = pd.DataFrame({"a": rng.normal(size=n), "b": rng.normal(size=n), "kind": rng.choice(["u", "v"], n)})
    frame["target"] = 2 * frame.a - frame.b + (frame.kind == "u") + 0.1 * rng.normal(size=n)
    path = tmp_path / "tiny.csv"
    frame.to_csv(path, index=False)
    cfg = TrainConfig(dataset="csv", dataset_options={"path": str(path), "target": "target"}, model="mlp",
                      width=0.25, members=3, epochs=1, batch_size=32, schedule="constant", warmup_epochs=0,
                      vary="init", device="cpu", progress=False, save_weights=False)
    sweep = rc.beta_sweep(cfg, [0, 1], [0], ps=(0.4,), repeats=5)
    assert sweep.dataset.tolist() == ["csv:tiny.csv", "csv:tiny.csv"] and sweep.beta.tolist() == [0.0, 1.0]
    assert np.isfinite(sweep[["ERR", "DIV", "debiased_share", "dropout_0.4"]].to_numpy()).all()
    assert (sweep.DIV >= 0).all() and sweep.ERR_bar.sub(sweep.ERR).sub(sweep.DIV).abs().max() < 1e-9
    summary = rc.summarize_sweep(sweep)
    assert len(summary) == 2 and (summary.repeats == 1).all()
    traj = rc.trajectories(cfg.replace(epochs=2), [0, 1], [0])
    assert len(traj) == 2 * 2 * 2 and set(traj.split) == {"train", "test"}
    assert traj[traj.split == "train"].examples.iloc[0] == 128  # 80% of 160
    gap = rc.generalization_gap(traj)
    assert len(gap) == 4 and (gap.repeats == 1).all()


def test_batched_dropout_matches_the_metrics_library():
    from fairens_core.metrics import diversity as D

    g = torch.Generator().manual_seed(3)
    f = torch.randn(10, 40, generator=g, dtype=torch.float64)
    y = torch.randn(40, generator=g, dtype=torch.float64)
    fast = rc.dropout_increases(f, y, (0.2, 0.4, 0.6), repeats=30, seed=7)
    for p in (0.2, 0.4, 0.6):
        assert fast[p] == pytest.approx(D.learner_dropout_error_increase(f, y, p, "mse", repeats=30, seed=7), rel=1e-10)


def test_debiasing_check_app_c1():
    # any zero-sum shifts of the optimally debiased members leave at least as much diversity
    g = torch.Generator().manual_seed(0)
    f = torch.randn(5, 30, generator=g, dtype=torch.float64) + torch.arange(5, dtype=torch.float64)[:, None]
    assert rc.debiasing_check(f, draws=100) >= 1.0
    assert math.isnan(rc.debiasing_check(torch.stack([X, X + 1])))  # pure offsets: nothing left to compare


def test_record_metrics_are_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRENS_CACHE", str(tmp_path / "cache"))
    preds = torch.stack([X + 1 + ALTERNATE, X - 1 - ALTERNATE])
    calls = []
    record = SimpleNamespace(key="abc", y_test=X, logits=lambda: calls.append(1) or preds)
    first = rc.record_metrics(record, ps=(0.5,), repeats=4)
    second = rc.record_metrics(record, ps=(0.5,), repeats=4)
    assert first == second and len(calls) == 1
    assert first["debiased_share"] == pytest.approx(0.8)


def test_mean_se_and_paired_difference():
    sweep = pd.DataFrame({"beta": [0.0] * 3 + [1.0] * 3, "seed": [0, 1, 2] * 2, "DIV": [1.0, 2.0, 3.0, 4.0, 6.0, 8.0]})
    mean, se, n = rc.mean_se(sweep, "DIV", 1.0)
    assert (mean, n) == (6.0, 3) and se == pytest.approx(2 / math.sqrt(3))
    d = rc.paired_difference(sweep, "DIV", 1.0, 0.0)
    assert d["diff"] == pytest.approx(4.0) and d["se"] == pytest.approx(1 / math.sqrt(3))
    assert math.isnan(rc.mean_se(sweep[sweep.seed < 2], "DIV", 1.0)[1])
