"""Training throughput of packed, vectorized (vmap) and per-member-loop ensembles
(member-examples per second).

    python benchmarks/ensemble_throughput.py [--device cpu|cuda] [--model cnn1d] [--dataset mnist1d]
        [--members 1 4 16] [--steps 30] [--batch-size 128] [--json out.json]

For each M it times `--steps` optimizer steps of one packed group of M members
(`packed.PackedEnsemble`), of one vmapped group (`ensemble.StackedEnsemble`) and of M
single-member groups (the loop path), after warm-up steps, and prints a table. Not a test:
speed is measured here, correctness (packed ≡ vmap ≡ loop) is tested in tests/test_packed.py.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from fairens_core import TrainConfig
from fairens_core import randomness as rnd
from fairens_core.augment import augment
from fairens_core.data import load_dataset
from fairens_core.ensemble import init_member
from fairens_core.objectives import member_losses
from fairens_core.train import DeviceData, build_ensemble, make_optimizer, resolve_device


def time_steps(cfg, ds, data, members: int, steps: int, warmup: int = 5) -> float:
    """Seconds per optimizer step of one group of `members` (cfg.execution: packed or vmap)."""
    ens = build_ensemble(cfg, [init_member(cfg, ds.input_shape, ds.num_classes, s) for s in range(members)],
                         data.x_train.device).train()
    opt = make_optimizer(cfg, ens.parameters())
    n = data.x_train.shape[0]
    gens = lambda step: [rnd.generator(m, "augment", step) for m in range(members)]  # noqa: E731

    def step(i):
        idx = torch.randint(0, n, (members, cfg.batch_size), device=data.x_train.device)
        x = augment(data.x_train[idx], cfg.augment, gens(i))
        with torch.autocast(data.x_train.device.type, torch.bfloat16, enabled=cfg.precision == "bf16"):
            out = ens(x).float()
        loss = member_losses(out, data.y_train[idx], ds.task).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for i in range(warmup):
        step(i)
    sync = torch.cuda.synchronize if data.x_train.is_cuda else (lambda: None)
    sync()
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    sync()
    return (time.perf_counter() - start) / steps


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--dataset", default="mnist1d")
    p.add_argument("--model", default="cnn1d")
    p.add_argument("--members", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--precision", default="fp32")
    p.add_argument("--augment", nargs="*", default=[])
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)

    cfg = TrainConfig(dataset=args.dataset, model=args.model, batch_size=args.batch_size,
                      precision=args.precision, augment=tuple(args.augment), device=args.device).validate()
    device = resolve_device(cfg.device)
    ds = load_dataset(cfg.dataset)
    data = DeviceData.from_dataset(ds, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{platform.processor() or 'cpu'} ({torch.get_num_threads()} threads)"
    print(f"{cfg.model} on {cfg.dataset}, batch {cfg.batch_size}/member, {args.steps} steps, {name}")
    print(f"{'M':>4} {'packed ex/s':>12} {'vmap ex/s':>10} {'loop ex/s':>10} {'packed/loop':>12} {'vmap/loop':>10}")
    rows = []
    for M in args.members:
        packed = time_steps(cfg.replace(execution="packed"), ds, data, M, args.steps)
        vec = time_steps(cfg.replace(execution="vectorized"), ds, data, M, args.steps)
        # M groups of one run one after another (each a vmapped group of one, as the loop path trains)
        loop = M * time_steps(cfg.replace(execution="loop"), ds, data, 1, args.steps)
        row = {"members": M, "packed_examples_per_s": M * cfg.batch_size / packed,
               "vectorized_examples_per_s": M * cfg.batch_size / vec,
               "loop_examples_per_s": M * cfg.batch_size / loop, "packed_speedup": loop / packed,
               "vectorized_speedup": loop / vec}
        rows.append(row)
        print(f"{M:>4} {row['packed_examples_per_s']:>12,.0f} {row['vectorized_examples_per_s']:>10,.0f} "
              f"{row['loop_examples_per_s']:>10,.0f} {row['packed_speedup']:>11.2f}× {row['vectorized_speedup']:>9.2f}×")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": name, "model": cfg.model, "dataset": cfg.dataset, "batch_size": cfg.batch_size,
                       "torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
