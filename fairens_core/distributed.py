"""Scale-out: train the groups of an ensemble as Ray tasks (``TrainConfig.executor="ray"``).

An ensemble is split into groups of ``max_group`` members (all members when None), exactly as
in a local run, and each group becomes one Ray task that runs the same `train.train_group`:
so a record is identical whether its groups ran here or on a cluster (same config, same
device type), and it lands in the same cache under the same key. Joint training (beta > 0)
couples every member, so it is one group and one task.

Fault tolerance: each task checkpoints its group every epoch into the run's work directory
(when the workers can see it: a local instance, or a shared file system); a task whose worker
dies is re-run up to ``ray_retries`` times and resumes from its last epoch. Finished groups
are saved by the driver as they arrive, so an interrupted driver loses nothing either. A
Python error inside a task is not retried: it is raised with the members it concerns.

Connecting: ``ray_address`` or ``$RAY_ADDRESS`` names an existing cluster; with neither, a
local Ray instance is started on this machine. The nodes need this package installed and
the dataset under their data root (``$FAIRENS_DATA`` is passed along from the driver).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from tqdm import tqdm

from .checkpoints import to_device
from .data import load_dataset
from .ensemble import init_member
from .train import (CPU_THREADS, DeviceData, History, build_ensemble, make_optimizer, plan_phases, resolve_device,
                    train_group)

ENV_PASSED = ("FAIRENS_DATA", "FAIRENS_CACHE")  # so workers find the same data and dataset cache


def connect(cfg) -> None:
    """Attach to the cluster at cfg.ray_address / $RAY_ADDRESS, or start a local instance."""
    import ray

    if not ray.is_initialized():
        address = cfg.ray_address or os.environ.get("RAY_ADDRESS") or None
        ray.init(address=address, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)


def pack_parent(parent) -> dict:
    """A parent's (ensemble, optimizer, history) as CPU tensors, to ship to the workers."""
    ens, opt, history = parent
    return {"ensemble": to_device(ens.state_stacked(), "cpu"), "optimizer": to_device(opt.state_dict(), "cpu"),
            "history": history.state}


def unpack_parent(cfg, ds, state: dict, device):
    """Rebuild (ensemble, optimizer, history) of a packed parent on `device`."""
    ens = build_ensemble(cfg, [init_member(cfg, ds.input_shape, ds.num_classes, 0)], device)
    ens.load_stacked(to_device(state["ensemble"], device))
    opt = make_optimizer(cfg, ens.parameters())
    opt.load_state_dict(to_device(state["optimizer"], device))
    return ens, opt, History(state["history"])


def train_group_task(cfg, members: list[int], parent: dict | None, workdir: str | None, env: dict) -> dict:
    """Body of one Ray task: load the data on the worker and train `members` (see train.train_group).

    Ray gives a worker one intra-op thread per requested CPU; on a CPU `train_group` trains with
    train.CPU_THREADS instead, as in a local run, so that its members are the same bits.
    """
    os.environ.update(env)
    device = resolve_device(cfg.device)
    ds = load_dataset(cfg.dataset, cfg.data_root, **cfg.dataset_options)
    _, phase = plan_phases(cfg, len(ds.y_train) // cfg.batch_size)
    start = unpack_parent(cfg, ds, parent, device) if parent is not None else None
    return train_group(cfg, ds, DeviceData.for_config(cfg, ds, device), members, phase, device,
                       Path(workdir) if workdir else None, tqdm(disable=True), start)


def gpus_per_task(cfg) -> float:
    """GPUs a task asks for: cfg.ray_gpus_per_task, else 1 for a CUDA device ("auto" on a GPU cluster)."""
    import ray

    if cfg.ray_gpus_per_task is not None:
        return cfg.ray_gpus_per_task
    if cfg.device.startswith("cuda"):
        return 1
    return 1 if cfg.device == "auto" and ray.cluster_resources().get("GPU", 0) > 0 else 0


def train_groups_on_ray(cfg, ds, data, groups: list[list[int]], phase, parent, workdir: Path | None, bar, device):
    """The Ray executor (see `train.train_groups_here`): dispatch one task per group; yield
    (members, part) in the order they finish. The workers load the data themselves, so `ds`,
    `data` and `device` (this process's) are not shipped.

    `bar` (members × `steps` optimizer steps per group) advances as groups finish, so its rate
    and ETA are those of the whole cluster.
    """
    if not groups:
        return
    import ray

    steps = phase.stop - phase.start
    connect(cfg)
    env = {k: os.environ[k] for k in ENV_PASSED if k in os.environ}
    task = ray.remote(train_group_task).options(
        num_cpus=CPU_THREADS if cfg.ray_cpus_per_task is None else cfg.ray_cpus_per_task,
        num_gpus=gpus_per_task(cfg), max_retries=cfg.ray_retries, retry_exceptions=False)
    shipped = ray.put(pack_parent(parent)) if parent is not None else None
    pending = {task.remote(cfg, members, shipped, str(workdir) if workdir else None, env): members
               for members in groups}
    while pending:
        (ready,), _ = ray.wait(list(pending), num_returns=1)
        members = pending.pop(ready)
        try:
            part = ray.get(ready)
        except ray.exceptions.RayError as error:
            for ref in pending:
                ray.cancel(ref)
            raise RuntimeError(f"members {members[0]}-{members[-1]} failed on Ray "
                               f"(after up to {cfg.ray_retries} retries of a dead worker): {error}") from error
        bar.update(len(members) * steps)
        yield members, _to_cpu(part)


def _to_cpu(part: dict) -> dict:
    return {k: (v.cpu() if torch.is_tensor(v) else v) for k, v in part.items()}
