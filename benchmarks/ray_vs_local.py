"""Wall time of one ensemble trained locally vs as Ray tasks on this machine.

    .venv/bin/python benchmarks/ray_vs_local.py --members 16 --groups 2

Three runs of the same config (records are identical for the same group split; see
tests/test_distributed.py): local with all members in one vectorized group, local with
`--groups` groups run one after another, and Ray with one task per group. A local Ray
instance is started first; its start-up time is reported separately, since a cluster that
is already running does not pay it. Nothing is read from or written to the record cache.
"""

from __future__ import annotations

import argparse
import os
import time

import ray

from fairens_core.profiles import chapter_settings
from fairens_core.train import CPU_THREADS, train_ensemble


def timed(cfg):
    t = time.perf_counter()
    record = train_ensemble(cfg)
    return time.perf_counter() - t, float(record.member_accuracy().mean())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=16)
    parser.add_argument("--groups", type=int, default=2, help="Ray tasks (and local groups) per ensemble")
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()

    base = chapter_settings("bottom_k", "default", members=args.members, epochs=args.epochs).config
    base = base.replace(progress=False)
    per_group = -(-args.members // args.groups)
    cpus = os.cpu_count()
    t = time.perf_counter()
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    start_up = time.perf_counter() - t

    rows = [("local, one vectorized group", *timed(base)),
            (f"local, {args.groups} groups of {per_group} in turn", *timed(base.replace(max_group=per_group))),
            (f"ray, {args.groups} tasks of {per_group} ({CPU_THREADS} CPUs each)",
             *timed(base.replace(max_group=per_group, executor="ray"))),
            (f"ray, {args.groups} tasks of {per_group} (1 CPU each, oversubscribed)",
             *timed(base.replace(max_group=per_group, executor="ray", ray_cpus_per_task=1)))]
    print(f"{args.members} × {base.model} on {base.dataset}, {base.epochs} epochs, {cpus} CPUs; "
          f"Ray start-up (local instance): {start_up:.1f} s")
    print(f"{'run':45s} {'wall s':>8s} {'s/member':>9s} {'member acc':>11s}")
    for name, wall, acc in rows:
        print(f"{name:45s} {wall:8.1f} {wall / args.members:9.2f} {100 * acc:10.2f}%")
    ray.shutdown()


if __name__ == "__main__":
    main()
