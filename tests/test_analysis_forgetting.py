"""Tests for fairens_core.analysis.forgetting (Part III, chapter "forgetting")."""

from types import SimpleNamespace

import pandas as pd
import pytest
import torch

from fairens_core import TrainConfig
from fairens_core.analysis import forgetting as F

Y = torch.tensor([0, 1, 2])
CFG = TrainConfig(dataset="mnist1d", model="cnn1d", members=2, epochs=3, schedule="multistep", warmup_epochs=0,
                  milestones=(0.5, 0.75), lr=0.1, track_predictions=-1)


def record(labels, steps, cfg=CFG, spe=10, y=Y):
    """A stand-in for a RunRecord from predicted labels (M, E, n): one-hot trajectories."""
    traj = torch.nn.functional.one_hot(torch.as_tensor(labels), 3).half()
    return SimpleNamespace(test_probs_trajectory=traj, history={"eval_step": torch.tensor(steps)}, y_test=y,
                           config=cfg.key_fields(), meta={"steps_per_epoch": spe})


# member 0: right everywhere, then forgets example 1, then example 0 -> one event per transition
# member 1: wrong on example 2, then right everywhere -> no event
A = record([[[0, 1, 2], [0, 0, 2], [1, 1, 2]],
            [[0, 1, 0], [0, 1, 2], [0, 1, 2]]], steps=[10, 20, 30])


def test_forgetting_per_epoch_hand_computed():
    frame = F.forgetting_per_epoch(A)
    assert frame[["member", "epoch", "step", "events"]].values.tolist() == [
        [0, 2.0, 20, 1], [0, 3.0, 30, 1], [1, 2.0, 20, 0], [1, 3.0, 30, 0]]
    # the examples that could be forgotten: right at the evaluation before each transition
    assert frame["right_before"].tolist() == [3, 2, 2, 3]
    # lr during each transition: 30 steps in all, drops at steps 15 and 23 (ceil of 22.5)
    assert frame["lr"].tolist() == pytest.approx([0.01, 0.001, 0.01, 0.001])


def test_forgetting_summary_means_over_members():
    summary = F.forgetting_summary(F.forgetting_per_epoch(A))
    assert summary["events"].tolist() == [0.5, 0.5]
    assert summary["events_std"].tolist() == pytest.approx([2 ** -0.5] * 2)
    assert summary["right_before"].tolist() == [2.5, 2.5]
    assert list(summary.columns) == ["epoch", "step", "events", "events_std", "right_before", "lr"]


def test_spawned_records_have_no_lr_column():
    spawned = record(A.test_probs_trajectory.argmax(-1), steps=[10, 20, 30], cfg=CFG.replace(spawn_step=5, vary="all"))
    assert "lr" not in F.forgetting_per_epoch(spawned)


def test_lr_drops():
    assert F.lr_drops(CFG.replace(epochs=20), 125) == [10.0, 15.0]
    assert F.lr_drops(CFG.replace(epochs=10), 125) == [5.0, 938 / 125]
    assert F.lr_drops(CFG.replace(schedule="cosine"), 125) == []


def test_around_drops():
    summary = pd.DataFrame({"epoch": [2.0, 3.0, 4.0, 5.0, 6.0], "events": [10.0, 8.0, 8.0, 2.0, 1.0]})
    out = F.around_drops(summary, [4.0, 6.0])  # the second drop has no transition after it
    assert out.values.tolist() == [[4.0, 8.0, 2.0, 0.25]]


def test_forgetting_after_spawn_counts_only_the_childrens_evaluations():
    early = record([[[0, 1, 2], [0, 0, 2], [0, 1, 2]]] * 2, steps=[10, 20, 30])  # t = 0: no evaluation at step 0
    # t = 15: the evaluation at step 10 is the parent's (a forgetting there must not count); the one at the fork
    # (15, the parent's weights every child starts from) opens the children's first stretch; then 20, 25, 30
    late = record([[[0, 0, 2], [1, 1, 2], [0, 1, 2], [0, 1, 1], [0, 1, 1]]] * 2, steps=[10, 15, 20, 25, 30])
    frame = F.forgetting_after_spawn({0: early, 15: late})
    assert set(frame["evaluations"]) == {3}  # the smaller of 3 (10, 20, 30) and 4 (15, 20, 25, 30)
    by_t = frame.groupby("spawn_step")["events"].first()
    assert by_t[0] == 1  # 10 -> 20 forgets example 1
    assert by_t[15] == 1  # 20 -> 25 forgets example 2; 10 -> 15 (the parent's) ignored
    assert frame["spawn_epoch"].tolist() == [0, 0, 1.5, 1.5]
    assert frame.groupby("spawn_step")[["start", "end"]].first().values.tolist() == [[10, 30], [0, 10]]
    two = F.forgetting_after_spawn({0: early, 15: late}, evaluations=2)
    assert two.groupby("spawn_step")["events"].first().tolist() == [1, 0]
    with pytest.raises(ValueError, match="evaluations=4"):
        F.forgetting_after_spawn({0: early, 15: late}, evaluations=4)


def test_partial_tracking_uses_the_first_examples():
    partial = record([[[0, 1], [1, 1]]], steps=[10, 20], y=torch.tensor([0, 1, 2, 2]))
    assert F.forgetting_per_epoch(partial)["events"].tolist() == [1]


def test_trajectories_are_required():
    missing = SimpleNamespace(test_probs_trajectory=None, history={"eval_step": torch.tensor([10])}, y_test=Y,
                              config=CFG.key_fields(), meta={"steps_per_epoch": 10})
    with pytest.raises(ValueError, match="track_predictions"):
        F.forgetting_per_epoch(missing)


@pytest.mark.slow
def test_on_real_records(tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRENS_CACHE", str(tmp_path / "cache"))
    from fairens_core.train import train_ensemble

    tiny = TrainConfig(dataset="mnist1d", dataset_options={"n_samples": 700}, model="cnn1d", width=0.5, members=2,
                       epochs=3, batch_size=64, lr=0.05, warmup_epochs=0.5, progress=False, device="cpu",
                       track_predictions=-1, schedule="multistep")
    plain = train_ensemble(tiny)
    frame = F.forgetting_per_epoch(plain)
    assert len(frame) == 2 * 2 and frame["lr"].notna().all()
    spe = plain.meta["steps_per_epoch"]
    spawned = {t: train_ensemble(tiny.replace(spawn_step=t, spawn_reset=t > 0)) for t in (0, spe + 2)}
    after = F.forgetting_after_spawn(spawned)
    # every window: the evaluation at the fork, then one per epoch of the child's 3
    assert len(after) == 4 and (after["evaluations"] == 4).all()
    assert (after["start"] == 0).all() and (after["end"] == 3 * spe).all()
