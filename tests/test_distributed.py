"""Ray executor: records identical to local ones, retried dead workers, cache hits, errors."""

from __future__ import annotations

import signal
import threading
import time

import psutil
import pytest
import ray
import torch

from fairens_core import TrainConfig, run
from fairens_core import distributed
from fairens_core import train as train_mod
from fairens_core.train import CPU_THREADS, Phase, train_ensemble

SMALL = dict(dataset="mnist1d", dataset_options={"n_samples": 1500}, model="cnn1d", width=0.5, members=4,
             epochs=2, batch_size=64, lr=0.05, warmup_epochs=0.5, progress=False, device="cpu", max_group=2)


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


pytestmark = pytest.mark.usefixtures("cache")  # a fresh record cache per test (conftest)


def assert_same_record(a, b):
    assert a.key == b.key
    assert torch.equal(a.test_logits, b.test_logits)
    for k in ("train_loss", "test_acc"):
        assert torch.equal(a.history[k], b.history[k])
    for k in a.weights or {}:
        assert torch.equal(a.weights[k], b.weights[k]), k


@pytest.mark.parametrize("changes", [{}, dict(spawn_step=5, vary="batch_order")], ids=["independent", "spawned"])
def test_ray_records_equal_local_records(changes):
    cfg = TrainConfig(**{**SMALL, **changes})
    on_ray = train_ensemble(cfg.replace(executor="ray"), train_groups=distributed.train_groups_on_ray)
    assert_same_record(on_ray, train_ensemble(cfg))


def test_a_task_trains_with_the_pinned_thread_count_whatever_the_worker_has(monkeypatch):
    # Ray gives a worker one intra-op thread per requested CPU; on a CPU some kernels round
    # differently with another thread count, so a task trains with train.CPU_THREADS
    seen, real = [], train_mod.train_phase
    monkeypatch.setattr(train_mod, "train_phase", lambda *a: seen.append(torch.get_num_threads()) or real(*a))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        part = distributed.train_group_task(TrainConfig(**{**SMALL, "epochs": 1}), [0, 1], None, None, {})
        assert seen == [CPU_THREADS] and torch.get_num_threads() == 1 and part["test_logits"].shape[0] == 2
    finally:
        torch.set_num_threads(before)


def _group_task_processes():
    found = []
    for p in psutil.process_iter(["cmdline"]):
        if any("train_group_task" in part for part in (p.info["cmdline"] or [])):
            found.append(p)
    return found


def test_a_killed_worker_is_retried_and_the_record_is_unchanged(cache):
    cfg = TrainConfig(**{**SMALL, "epochs": 8, "executor": "ray"})
    reference = train_ensemble(cfg.replace(executor="local"))
    result, killed = {}, []
    worker = threading.Thread(target=lambda: result.update(record=run(cfg)))
    worker.start()
    partial = cache / "records" / f"{cfg.key()}.partial"
    deadline = time.monotonic() + 120
    while not killed and worker.is_alive() and time.monotonic() < deadline:
        # kill a task once it has checkpointed an epoch: its retry must resume, not restart
        if any(partial.glob("members_*-*[0-9].pt")):
            for p in _group_task_processes()[:1]:
                p.send_signal(signal.SIGKILL)
                killed.append(p.pid)
        time.sleep(0.01)
    worker.join(timeout=300)
    assert killed, "no running task was found to kill"
    assert_same_record(result["record"], reference)


def test_a_cache_hit_dispatches_nothing(monkeypatch):
    cfg = TrainConfig(**SMALL)
    local = run(cfg)

    def refuse(*args, **kwargs):
        raise AssertionError("dispatched work to Ray for a cached record")

    monkeypatch.setattr("fairens_core.runner.train_groups_on_ray", refuse)
    assert_same_record(run(cfg.replace(executor="ray")), local)


def test_a_failing_task_is_reported_with_its_members():
    bad = TrainConfig(**{**SMALL, "dataset": "no_such_dataset"})  # not validated: fails on the worker
    with pytest.raises(RuntimeError, match="members 2-3 failed on Ray"):
        phase = Phase("", 0, 1, 0, 1)
        list(distributed.train_groups_on_ray(bad, None, None, [[2, 3]], phase, None, None, distributed_bar(), "cpu"))


def distributed_bar():
    from tqdm import tqdm
    return tqdm(disable=True)


def test_unknown_executor_is_rejected_with_the_field_named():
    with pytest.raises(ValueError, match="executor"):
        TrainConfig(**{**SMALL, "executor": "spark"}).validate()


def test_the_environment_chooses_the_executor_of_every_chapter(monkeypatch):
    from fairens_core.profiles import chapter_settings

    monkeypatch.setenv("FAIRENS_EXECUTOR", "ray")
    monkeypatch.setenv("FAIRENS_MAX_GROUP", "5")
    cfg = chapter_settings("bottom_k", "default").config
    assert (cfg.executor, cfg.max_group) == ("ray", 5)
    assert cfg.key() == chapter_settings("bottom_k", "default", executor="local", max_group=None).config.key()
    monkeypatch.setenv("FAIRENS_MAX_GROUP", "five")
    with pytest.raises(ValueError, match="FAIRENS_MAX_GROUP"):
        chapter_settings("bottom_k", "default")
