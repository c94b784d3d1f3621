"""Engine tests: randomness control, vectorized ≡ loop, coupling, objectives, cache, resume, validation."""

import subprocess
import sys

import pytest
import torch

from fairens_core import TrainConfig, run
from fairens_core import randomness as rnd
from fairens_core import train as train_mod
from fairens_core.ensemble import reinit_names
from fairens_core.objectives import augmented_loss, ensemble_loss, member_losses
from fairens_core.records import RunRecord, find_record
from fairens_core.train import epoch_order, train_ensemble

TINY = dict(dataset="mnist1d", dataset_options={"n_samples": 700}, model="cnn1d", width=0.5,
            members=3, epochs=2, batch_size=64, lr=0.05, warmup_epochs=0.5, progress=False, device="cpu")


pytestmark = pytest.mark.usefixtures("cache")  # a fresh record cache per test (conftest)


def tiny(**changes) -> TrainConfig:
    return TrainConfig(**{**TINY, **changes})


# ---------------------------------------------------------------------------- randomness
def initial_weights(cfg):
    seeds = [rnd.source_seed(cfg.seed, "init", m, cfg.vary_sources) for m in range(cfg.members)]
    return [train_mod.init_member(cfg, (1, 40), 10, s).state_dict() for s in seeds]


def same_state(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("vary, init_differs, order_differs", [
    ("none", False, False), ("init", True, False), ("batch_order", False, True),
    ("augmentation", False, False), ("init+batch_order", True, True), ("all", True, True),
])
def test_randomness_presets_control_each_source(vary, init_differs, order_differs):
    cfg = tiny(vary=vary)
    w = initial_weights(cfg)
    assert same_state(w[0], w[1]) is not init_differs
    seeds = [rnd.source_seed(cfg.seed, "batch_order", m, cfg.vary_sources) for m in range(2)]
    order = epoch_order(seeds, epoch=0, n=500, device="cpu")
    assert torch.equal(order[0], order[1]) is not order_differs
    aug = [rnd.source_seed(cfg.seed, "augmentation", m, cfg.vary_sources) for m in range(2)]
    assert (aug[0] == aug[1]) is ("augmentation" not in cfg.vary_sources)


def test_seed_changes_everything_and_is_stable():
    assert rnd.derive_seed(0, "init", 1) == rnd.derive_seed(0, "init", 1)
    assert rnd.derive_seed(0, "init", 1) != rnd.derive_seed(1, "init", 1)
    with pytest.raises(ValueError, match="vary"):
        rnd.parse_vary("init+colour")
    assert rnd.parse_vary("augmentation+init") == ("init", "augmentation")


def test_identical_seeds_give_identical_members():
    rec = train_ensemble(tiny(vary="none", augment=("shift",)))
    assert torch.equal(rec.test_logits[0], rec.test_logits[1])
    assert torch.equal(rec.test_logits[1], rec.test_logits[2])


def test_each_source_alone_makes_members_differ():
    for vary in ("init", "batch_order", "augmentation"):
        rec = train_ensemble(tiny(vary=vary, augment=("shift",), members=2, epochs=1))
        assert not torch.equal(rec.test_logits[0], rec.test_logits[1]), vary


# ---------------------------------------------------------------------------- vectorized ≡ loop
def test_vectorized_equals_loop():
    cfg = tiny(augment=("shift",))
    vec = train_ensemble(cfg)
    loop = train_ensemble(cfg.replace(execution="loop"))
    assert vec.key == loop.key  # execution is not part of the result's identity
    for k in vec.weights:
        torch.testing.assert_close(vec.weights[k], loop.weights[k], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(vec.test_logits.float(), loop.test_logits.float(), atol=2e-2, rtol=1e-2)
    assert torch.equal(vec.test_logits.argmax(-1), loop.test_logits.argmax(-1)) or \
        (vec.test_logits.argmax(-1) != loop.test_logits.argmax(-1)).float().mean() < 1e-3


def test_group_split_does_not_change_members():
    cfg = tiny(members=4, epochs=1)
    whole = train_ensemble(cfg)
    split = train_ensemble(cfg.replace(max_group=2))
    torch.testing.assert_close(whole.test_logits.float(), split.test_logits.float(), atol=2e-2, rtol=1e-2)


def test_a_cpu_record_does_not_depend_on_the_callers_thread_count():
    # unpinned, this config's weights differ between 1 and 4 threads (AVX-512 EPYC, torch 2.14):
    # the weight gradients of conv1d and linear split their sums between threads
    cfg, before, weights = tiny(members=2), torch.get_num_threads(), {}
    try:
        for threads in (1, 4):
            torch.set_num_threads(threads)
            weights[threads] = train_ensemble(cfg).weights
            assert torch.get_num_threads() == threads, "the caller's thread count is restored"
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(weights[1][k], weights[4][k]) for k in weights[1])


def test_record_contents_and_shapes():
    rec = train_ensemble(tiny(track_predictions=50, snapshot_weights=True))
    M, N = 3, len(rec.y_test)
    assert rec.test_logits.shape == (M, N, 10) and rec.test_logits.dtype == torch.float16
    assert rec.history["test_acc"].shape == (M, 2)
    assert rec.history["eval_step"].tolist() == [rec.meta["steps_per_epoch"], 2 * rec.meta["steps_per_epoch"]]
    assert rec.test_probs_trajectory.shape == (M, 2, 50, 10)
    P = rec.meta["parameters"]
    assert rec.weight_snapshots.shape == (M, 2, P)
    assert rec.meta["flops_per_example"] > 0
    # rebuilt members reproduce the recorded logits
    x = train_mod.DeviceData.from_dataset(train_mod.load_dataset("mnist1d", None, n_samples=700), torch.device("cpu")).x_test
    with torch.no_grad():
        torch.testing.assert_close(rec.models()[1](x), rec.logits()[1], atol=2e-2, rtol=1e-2)
    assert rec.history["test_acc"][:, -1].tolist() == pytest.approx(rec.member_accuracy().tolist(), abs=1e-3)


def test_track_outputs_keeps_raw_train_and_test_outputs_per_epoch(tmp_path):
    cfg = tiny(dataset="diabetes", dataset_options={}, model="mlp", members=2, epochs=2, batch_size=32,
               track_outputs=-1)
    rec = train_ensemble(cfg)
    ds = train_mod.load_dataset("diabetes", None)
    n_train, n_test = len(ds.y_train), len(ds.y_test)
    assert rec.train_outputs_trajectory.shape == (2, 2, n_train, 1)
    assert rec.test_outputs_trajectory.shape == (2, 2, n_test, 1)
    assert torch.equal(rec.y_train_tracked, ds.y_train)
    # raw regression outputs: the last epoch is the final model, and they give the logged test loss
    torch.testing.assert_close(rec.test_outputs_trajectory[:, -1].half(), rec.test_logits)
    mse = ((rec.test_outputs_trajectory[..., 0] - rec.y_test) ** 2).mean(-1)
    torch.testing.assert_close(mse, rec.history["test_loss"])
    torch.testing.assert_close(rec.train_outputs_trajectory[:, -1], rec.predict(ds.x_train), atol=1e-5, rtol=1e-5)
    loaded = RunRecord.load(rec.save(tmp_path))
    assert torch.equal(loaded.train_outputs_trajectory, rec.train_outputs_trajectory)
    assert torch.equal(loaded.test_outputs_trajectory, rec.test_outputs_trajectory)
    assert torch.equal(loaded.y_train_tracked, rec.y_train_tracked)
    plain = train_ensemble(cfg.replace(track_outputs=0, epochs=1))
    assert plain.train_outputs_trajectory is None and plain.y_train_tracked is None


def test_track_outputs_first_n_are_logits_of_classifiers():
    rec = train_ensemble(tiny(members=2, epochs=1, track_outputs=20, track_predictions=20))
    assert rec.train_outputs_trajectory.shape == rec.test_outputs_trajectory.shape == (2, 1, 20, 10)
    assert rec.y_train_tracked.shape == (20,)
    torch.testing.assert_close(rec.test_outputs_trajectory.softmax(-1).half(), rec.test_probs_trajectory)


@pytest.mark.parametrize("warmup", [0, 1])
def test_constant_schedule_keeps_the_learning_rate_after_warmup(warmup):
    cfg = tiny(schedule="constant", warmup_epochs=warmup)
    factors = [train_mod.lr_factor(cfg, step, total=40, steps_per_epoch=10) for step in range(40)]
    assert factors[10:] == [1.0] * 30
    assert factors[:10] == ([1.0] * 10 if warmup == 0 else [(s + 1) / 10 for s in range(10)])


# ---------------------------------------------------------------------------- coupling (the coupling paper)
def test_spawning_leaves_the_parent_untouched():
    # every group of children starts from the same parent: training one group must not change it
    cfg = tiny(members=4, spawn_step=5, vary="batch_order").validate()
    ds = train_mod.load_dataset(cfg.dataset, None, **cfg.dataset_options)
    device = torch.device("cpu")
    data = train_mod.DeviceData.from_dataset(ds, device)
    parent_phase, phase = train_mod.plan_phases(cfg, len(ds.y_train) // cfg.batch_size)
    bar = train_mod.tqdm(disable=True)
    parent = train_mod.train_phase(cfg, ds, data, [0], parent_phase, device, None, bar)
    first = train_mod.train_group(cfg, ds, data, [0, 1], phase, device, None, bar, parent)
    again = train_mod.train_group(cfg, ds, data, [0, 1], phase, device, None, bar, parent)
    assert torch.equal(first["test_logits"], again["test_logits"])


def test_children_identical_until_spawn_then_differ():
    spe = 700 * 8 // 10 // 64  # steps per epoch of TINY's train split
    rec = train_ensemble(tiny(spawn_step=spe, epochs=3, vary="batch_order", snapshot_weights=True))
    snaps = rec.weight_snapshots  # (M, E, P); evaluation 0 is the end of the shared first epoch
    assert torch.equal(snaps[0, 0], snaps[1, 0]) and torch.equal(snaps[0, 0], snaps[2, 0])
    assert not torch.equal(snaps[0, 1], snaps[1, 1])
    assert not torch.equal(rec.test_logits[0], rec.test_logits[1])


def test_spawn_reset_trains_t_extra_steps_and_reinit_differs():
    spe = 700 * 8 // 10 // 64
    rec = train_ensemble(tiny(spawn_step=spe, spawn_reset=True, epochs=2, vary="batch_order"))
    assert rec.history["eval_step"][-1].item() == 3 * spe
    base = tiny(spawn_step=spe, vary="batch_order", snapshot_weights=True, members=2)
    low = train_ensemble(base.replace(reinit_fraction=0.3, reinit_from="input"))
    plain = train_ensemble(base)
    assert not torch.equal(low.weight_snapshots[:, -1], plain.weight_snapshots[:, -1])


@pytest.mark.parametrize("t, reset", [(0, False), (5, False), (5, True)])
def test_children_are_evaluated_at_the_fork_and_whole_epochs_after_it(t, reset):
    spe = 700 * 8 // 10 // 64
    rec = train_ensemble(tiny(spawn_step=t, spawn_reset=reset, epochs=2, vary="batch_order", members=2))
    steps = rec.history["eval_step"].tolist()
    end = t + 2 * spe if reset else 2 * spe
    after = [s for s in steps if s >= t]
    assert after[0] == t and after[-1] == end
    assert all((s - t) % spe == 0 for s in after[:-1])


def test_spawned_runs_have_their_own_protocol_in_the_key():
    plain = tiny(vary="batch_order")
    assert plain.key() == tiny(vary="batch_order").key()
    spawned = tiny(spawn_step=5, vary="batch_order")
    assert "spawn_protocol" not in plain.key_fields() and spawned.key() != plain.key()


def test_reinit_names_walk_from_either_side():
    counts = [("a", 10), ("b", 30), ("c", 60)]
    assert reinit_names(counts, 0.0, "input") == []
    assert reinit_names(counts, 0.1, "input") == ["a"]
    assert reinit_names(counts, 0.3, "input") == ["a", "b"]
    assert reinit_names(counts, 0.5, "output") == ["c"]
    assert reinit_names(counts, 1.0, "output") == ["c", "b", "a"]


# ---------------------------------------------------------------------------- objectives (Jeffares et al. 2023)
def test_l_beta_endpoints():
    torch.manual_seed(0)
    out, y = torch.randn(4, 16, 5), torch.randint(0, 5, (16,))
    indep = member_losses(out, y.expand(4, -1), "classification").sum()
    loss0, _ = augmented_loss(out, y, 0.0, "classification")
    loss1, _ = augmented_loss(out, y, 1.0, "classification", "prob")
    p_bar = out.softmax(-1).mean(0)
    joint = -p_bar[torch.arange(16), y].log().mean()
    torch.testing.assert_close(loss0, indep)
    torch.testing.assert_close(loss1, 4 * joint)
    loss_s, _ = augmented_loss(out, y, 1.0, "classification", "score")
    torch.testing.assert_close(loss_s, 4 * torch.nn.functional.cross_entropy(out.mean(0), y))
    half, _ = augmented_loss(out, y, 0.5, "classification")
    torch.testing.assert_close(half, 0.5 * indep + 0.5 * 4 * joint)
    reg, t = torch.randn(3, 8, 1), torch.randn(8)
    torch.testing.assert_close(ensemble_loss(reg, t, "regression"), ((reg[..., 0].mean(0) - t) ** 2).mean())
    keep = torch.tensor([True, False, True])
    torch.testing.assert_close(ensemble_loss(reg, t, "regression", keep=keep),
                               ((reg[[0, 2], :, 0].mean(0) - t) ** 2).mean())


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_learner_dropout_trains_the_kept_members_as_a_smaller_joint_ensemble(task):
    torch.manual_seed(0)
    out = torch.randn(5, 16, 4 if task == "classification" else 1, requires_grad=True)
    y = torch.randint(0, 4, (16,)) if task == "classification" else torch.randn(16)
    keep = torch.tensor([True, False, True, True, False])
    loss, _ = augmented_loss(out, y, 1.0, task, keep=keep)
    (grad,) = torch.autograd.grad(loss, out)
    kept = out.detach()[keep].requires_grad_()
    small, _ = augmented_loss(kept, y, 1.0, task)  # plain joint training of the 3 kept members
    (grad_small,) = torch.autograd.grad(small, kept)
    torch.testing.assert_close(grad[keep], grad_small)
    assert grad[~keep].abs().max() == 0  # at beta = 1 a dropped member learns nothing from the batch


@pytest.mark.parametrize("task, combine", [("classification", "prob"), ("classification", "score"),
                                           ("regression", "prob")])
@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_per_example_learner_dropout_is_the_authors_loss_example_by_example(task, combine, beta):
    torch.manual_seed(1)
    M, B = 5, 6
    out = torch.randn(M, B, 4 if task == "classification" else 1)
    y = torch.randint(0, 4, (B,)) if task == "classification" else torch.randn(B)
    keep = torch.rand(B, M).argsort(1) < 3  # 3 of 5 members per example
    loss, _ = augmented_loss(out, y, beta, task, combine, keep)
    per_example = []
    for b in range(B):  # the kept members of example b as a small ensemble of their own
        kept = out[keep[b], b:b + 1]
        each = member_losses(kept, y[b:b + 1].expand(len(kept), -1), task)
        per_example.append((1 - beta) * each.mean() + beta * ensemble_loss(kept, y[b:b + 1], task, combine))
    torch.testing.assert_close(loss, M * torch.stack(per_example).mean())
    everyone, _ = augmented_loss(out, y, beta, task, combine)  # all kept: plain M * L_beta
    torch.testing.assert_close(augmented_loss(out, y, beta, task, combine, torch.ones(B, M, dtype=torch.bool))[0],
                               everyone)


def test_per_example_masks_keep_a_fixed_number_of_members():
    cfg = tiny(vary="init", beta=1.0, learner_dropout=0.4, learner_dropout_draw="example")
    keep = train_mod.learner_dropout_mask(cfg, 5, step=7)
    assert keep.shape == (cfg.batch_size, 5) and (keep.sum(1) == 3).all()
    assert torch.equal(keep, train_mod.learner_dropout_mask(cfg, 5, step=7))
    assert not torch.equal(keep, train_mod.learner_dropout_mask(cfg, 5, step=8))
    assert len({tuple(row.tolist()) for row in keep}) > 1  # drawn per example, not per batch
    assert "learner_dropout_draw" not in tiny().key_fields()  # the default keeps the old keys
    assert tiny(learner_dropout_draw="example").key() == tiny().key()  # no dropout: nothing to draw
    assert cfg.key() != cfg.replace(learner_dropout_draw="batch").key()


def test_joint_training_runs_and_differs_from_independent():
    indep = train_ensemble(tiny(vary="init", epochs=1))
    joint = train_ensemble(tiny(vary="init", epochs=1, beta=1.0))
    dropout = train_ensemble(tiny(vary="init", epochs=1, beta=1.0, learner_dropout=0.5))
    per_example = train_ensemble(tiny(vary="init", epochs=1, beta=1.0, learner_dropout=0.5,
                                      learner_dropout_draw="example"))
    assert not torch.equal(indep.test_logits, joint.test_logits)
    assert not torch.equal(joint.test_logits, dropout.test_logits)
    assert not torch.equal(dropout.test_logits, per_example.test_logits)


# ---------------------------------------------------------------------------- cache and resume
def test_cache_hit_trains_nothing(monkeypatch, cache):
    cfg = tiny(members=2, epochs=1)
    first = run(cfg)
    assert first.path.exists() and first.path.parent == cache / "records"
    monkeypatch.setattr("fairens_core.runner.train_ensemble", lambda *a, **k: pytest.fail("trained again"))
    again = run(cfg.replace(device="cpu", progress=True))  # fields outside the key do not matter
    assert again.key == first.key and torch.equal(again.test_logits, first.test_logits)


def test_damaged_record_is_recomputed(cache):
    cfg = tiny(members=2, epochs=1)
    first = run(cfg)
    data = bytearray(first.path.read_bytes())
    data[-30] ^= 0xFF
    first.path.write_bytes(bytes(data))
    with pytest.raises(Exception):
        RunRecord.load(first.path)
    again = run(cfg)
    assert torch.equal(again.test_logits, first.test_logits)


class Interrupt(Exception):
    pass


@pytest.mark.parametrize("execution, spawn", [("loop", False), ("vectorized", True)])
def test_resume_equals_uninterrupted(monkeypatch, cache, execution, spawn):
    spe = 700 * 8 // 10 // 64
    cfg = tiny(epochs=3, execution=execution, augment=("shift",), track_predictions=20,
               spawn_step=spe + 3 if spawn else None, vary="all" if not spawn else "batch_order+augmentation")
    reference = train_ensemble(cfg)

    saves = {"n": 0}
    real_save = train_mod.Checkpoint.save

    def save_then_die(self, state):
        real_save(self, state)
        saves["n"] += 1
        if saves["n"] == 5:  # mid-run: after some groups or epochs are safely on disk
            raise Interrupt

    monkeypatch.setattr(train_mod.Checkpoint, "save", save_then_die)
    monkeypatch.setattr(train_mod, "CHECKPOINT_EVERY_S", 0.0)  # a checkpoint at every epoch's end
    with pytest.raises(Interrupt):
        run(cfg)
    partial = cache / "records" / f"{cfg.key()}.partial"
    assert any(partial.glob("*.pt"))
    monkeypatch.setattr(train_mod.Checkpoint, "save", real_save)
    resumed = run(cfg)
    assert torch.equal(resumed.test_logits, reference.test_logits)
    assert torch.equal(resumed.test_probs_trajectory, reference.test_probs_trajectory)
    for k in ("train_loss", "test_acc"):
        assert torch.equal(resumed.history[k], reference.history[k])
    assert not partial.exists()  # checkpoints and their folder go once the record is saved


# ---------------------------------------------------------------------------- validation
@pytest.mark.parametrize("changes, field", [
    (dict(dataset="imagenet"), "dataset"), (dict(model="transformer"), "model"),
    (dict(members=0), "members"), (dict(epochs=1.5), "epochs"), (dict(optimizer="rmsprop"), "optimizer"),
    (dict(schedule="poly"), "schedule"), (dict(augment=("mixup",)), "augment"), (dict(vary="weights"), "vary"),
    (dict(beta=1.5), "beta"), (dict(beta=-0.1), "beta"), (dict(beta=0.5, vary="all"), "vary"),
    (dict(beta=0.5, execution="loop", vary="init"), "loop"), (dict(learner_dropout=0.3), "learner_dropout"),
    (dict(spawn_step=3, vary="init"), "spawn_step"), (dict(spawn_reset=True), "spawn_step"),
    (dict(dropout=1.0), "dropout"), (dict(device="tpu"), "device"), (dict(lr=0), "lr"),
    (dict(track_predictions=-5), "track_predictions"), (dict(track_outputs=True), "track_outputs"),
    (dict(precision="fp8"), "precision"), (dict(lr=float("nan")), "lr"), (dict(weight_decay=float("nan")), "weight_decay"),
    (dict(warmup_epochs=float("inf")), "warmup_epochs"), (dict(beta=float("nan")), "beta"),
    (dict(save_weights="maybe"), "save_weights"), (dict(milestones=5), "milestones"),
])
def test_bad_config_is_rejected_with_the_field_named(changes, field):
    with pytest.raises(ValueError, match=field):
        tiny(**changes).validate()


def test_beta_above_one_allowed_only_explicitly():
    tiny(beta=1.5, vary="init", allow_unbounded_beta=True).validate()


def test_errors_that_need_the_dataset_come_before_training(monkeypatch):
    monkeypatch.setattr(train_mod, "train_steps", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(ValueError, match="spawn_step"):
        train_ensemble(tiny(spawn_step=10_000, vary="batch_order"))
    with pytest.raises(ValueError, match="batch_size"):
        train_ensemble(tiny(batch_size=5000))
    with pytest.raises(ValueError, match="unknown config field"):
        TrainConfig.from_dict({"memberz": 3})


# ---------------------------------------------------------------------------- CLI
def test_cli_trains_then_hits_cache(cache, tmp_path):
    args = [sys.executable, "-m", "fairens_core", "train", "--members", "2", "--epochs", "1", "--width", "0.5",
            "--dataset-options", "{'n_samples': 600}", "--warmup-epochs", "0", "--quiet"]
    env = {**__import__("os").environ, "FAIRENS_CACHE": str(cache)}
    first = subprocess.run(args, capture_output=True, text=True, env=env, check=True)
    assert "record:" in first.stdout and "ensemble accuracy" in first.stdout
    second = subprocess.run(args, capture_output=True, text=True, env=env, check=True)
    assert first.stdout.splitlines()[-1] == second.stdout.splitlines()[-1]
    bad = subprocess.run(args + ["--optimizer", "rmsprop"], capture_output=True, text=True, env=env)
    assert bad.returncode != 0 and "optimizer" in bad.stderr


def test_a_diverging_run_stops_at_its_first_non_finite_loss_and_caches_nothing(cache):
    # a valid but absurd learning rate: the loss overflows within the first epoch
    cfg = tiny(lr=1e12, warmup_epochs=0.5, epochs=2)
    with pytest.raises(train_mod.NonFiniteLossError, match=r"not finite at step \d+.*lr=1e\+12"):
        run(cfg)
    assert find_record(cfg.key()) is None
    assert not list((cache / "records").glob("*.npz"))
