"""GPU speed of the fast CIFAR-10 recipe: airbench, vectorized vs loop ensembles, and MFU.

Run on a GPU machine, in one call, from the repository root (cifar10-jpeg.zip in --data-root;
airbench 0.1.8 importable, e.g. its source folder on PYTHONPATH, for the first section):

    python benchmarks/gpu_speed.py --data-root shared_data --json $OUT/gpu_speed.json

All sections use the same data, the CIFAR-10 JPEG zip decoded by
`load_dataset("cifar10_jpeg", root)`; each one is picked with --sections and stops starting
new work once its time budget (--<section>-budget-s) would be exceeded:

    airbench    airbench.train94 (a single ~94% model) timed over --airbench-runs runs after one
                warm-up run; test accuracy without and with test-time augmentation (tta_level 2).
    vectorized  fairens ensembles of M = --members fastcnn members trained by
                `train_ensemble` with the fast recipe (bf16, channels-last, crop+flip, Nesterov,
                triangular schedule with warm-up, label smoothing 0.2, batch 512 per member):
                wall time per member, mean member accuracy, ensemble accuracy.
    loop        the same recipe with execution="loop" (one member at a time): time per member
                and the ratio loop / vectorized per member.
    mfu         model FLOP utilisation of one training step (forward, backward, SGD step) of a
                CIFAR ResNet-18 (bf16, channels-last, --mfu-batch) and of the fastcnn vectorized
                step at M = max(--members): FLOPs counted by FlopCounterMode, divided by the
                step time and by the bf16 matmul rate measured in the same run.

--smoke runs every section but airbench on the CPU in seconds (a generated 32x32 JPEG zip of
a few hundred images, one epoch, tiny widths): it keeps this script working, its figures mean
nothing. Speed is measured here; correctness is tested in tests/.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# `python benchmarks/gpu_speed.py` on a machine where fairens_core is not installed
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fairens_core import TrainConfig  # noqa: E402
from fairens_core.analysis.efficiency import training_step_flops  # noqa: E402
from fairens_core.data import load_dataset  # noqa: E402
from fairens_core.ensemble import StackedEnsemble, init_member  # noqa: E402
from fairens_core.models import build_model  # noqa: E402
from fairens_core.profiles import BASE  # noqa: E402
from fairens_core.records import cache_root, find_record  # noqa: E402
from fairens_core.objectives import member_losses  # noqa: E402
from fairens_core.train import resolve_device, train_ensemble, training_forward  # noqa: E402

SECTIONS = ("airbench", "vectorized", "loop", "mfu")
CIFAR_SHAPE = (3, 32, 32)


# ---------------------------------------------------------------------------- helpers
def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device):
    """(fn(), seconds) with the device's queued work finished on both sides."""
    synchronize(device)
    start = time.perf_counter()
    out = fn()
    synchronize(device)
    return out, time.perf_counter() - start


def autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


class Budget:
    """Seconds left for a section; `fits(s)` says whether work predicted to take s still fits."""

    def __init__(self, seconds: float):
        self.seconds, self.start = seconds, time.perf_counter()

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.start)

    def fits(self, predicted: float) -> bool:
        return predicted <= self.left()


def write_fake_cifar_zip(path: Path, n_train: int = 256, n_test: int = 64, seed: int = 0) -> None:
    """A cifar10-jpeg.zip of random 32x32 images (10 noisy colours, learnable) for --smoke."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (10, 3))
    with zipfile.ZipFile(path, "w") as archive:
        for split, n in (("train", n_train), ("test", n_test)):
            for i in range(n):
                pixels = np.clip(colours[i % 10] + rng.normal(0, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
                buffer = io.BytesIO()
                Image.fromarray(pixels).save(buffer, format="JPEG")
                archive.writestr(f"{split}/class{i % 10}/{i:05d}.jpg", buffer.getvalue())


def recipe(args, members: int, **changes) -> TrainConfig:
    """The book's fast recipe (the full profile's training settings, `profiles.BASE["full"]`) with
    the benchmark's flags: at the defaults, the 20-member run is chapter bottom_k's full pool."""
    cfg = TrainConfig(**{
        **BASE["full"], "data_root": args.data_root, "dataset_options": args.dataset_options,
        "width": args.width, "members": members, "epochs": args.epochs, "batch_size": args.batch_size,
        "lr": args.lr, "weight_decay": args.weight_decay, "warmup_epochs": args.warmup_epochs,
        "compile": args.compile, "device": args.device, "progress": False})
    return cfg.replace(**changes).validate()


def train_timed(cfg: TrainConfig, save: bool = False) -> dict:
    """Train through `train_ensemble` (no cache); the record's own wall time excludes data loading.
    With `save`, the record also goes into the cache, where a chapter with this config finds it."""
    record = train_ensemble(cfg)
    if save and find_record(record.key) is None:
        record.save(cache_root() / "records")
    train_s = record.meta["wall_time_s"]
    return {"members": cfg.members, "train_s": train_s, "per_member_s": train_s / cfg.members,
            "member_acc_mean": float(record.member_accuracy().mean()), "ensemble_acc": record.ensemble_accuracy()}


def warm_up(cfg: TrainConfig) -> float:
    """One epoch of the same shapes (cuDNN autotuning, torch.compile); returns its seconds."""
    start = time.perf_counter()
    train_ensemble(cfg.replace(epochs=1, warmup_epochs=0.5 if cfg.warmup_epochs else 0))
    return time.perf_counter() - start


# ---------------------------------------------------------------------------- sections
def write_airbench_data(ds, folder: Path) -> None:
    """Our decoded images in airbench's format: folder/{train,test}.pt, each
    {'images': uint8 (N, 32, 32, 3), 'labels': int64 (N,), 'classes': names}."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, x, y in (("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)):
        torch.save({"images": x.permute(0, 2, 3, 1).contiguous(), "labels": y, "classes": list(ds.classes)},
                   folder / f"{split}.pt")


def section_airbench(args, ds, device, budget: Budget) -> dict:
    """airbench.train94 (timed end to end) on our decoded images; it reads ./cifar10/{train,test}.pt."""
    if device.type != "cuda":
        return {"status": "skipped", "reason": "airbench needs CUDA"}
    try:
        import airbench
    except ImportError as err:
        return {"status": "skipped", "reason": f"airbench is not importable ({err}); pip install airbench==0.1.8"}
    runs = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        write_airbench_data(ds, Path("cifar10"))
        _, warm = timed(lambda: airbench.train94(verbose=False), device)  # cuDNN autotuning, lazy init
        test = airbench.CifarLoader("cifar10", train=False, batch_size=2000)
        for _ in range(max(1, args.airbench_runs)):
            if runs and not budget.fits(runs[-1]["time_s"] * 1.2):
                break
            model, seconds = timed(lambda: airbench.train94(verbose=False), device)
            runs.append({"time_s": seconds, "acc": airbench.evaluate(model, test, tta_level=0),
                         "acc_tta2": airbench.evaluate(model, test, tta_level=2)})
    mean = lambda key: float(np.mean([r[key] for r in runs]))  # noqa: E731
    return {"status": "ok", "version": _version("airbench"), "warmup_s": warm, "runs": runs,
            "time_s_mean": mean("time_s"), "acc_mean": mean("acc"), "acc_tta2_mean": mean("acc_tta2")}


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:  # imported from a source folder on PYTHONPATH
        return "source"


def section_vectorized(args, budget: Budget) -> dict:
    rows, skipped, per_member = [], [], None
    for m in sorted(args.members):
        cfg = recipe(args, m)
        # predicted from the last per-member time (it falls with M, so this errs on the safe side)
        if per_member is not None and not budget.fits(per_member * m * (1 + 1 / args.epochs)):
            reason = f"budget: ~{per_member * m:.0f} s predicted, {budget.left():.0f} s left"
            skipped.append({"members": m, "reason": reason})
            continue
        warm = warm_up(cfg)
        row = train_timed(cfg, save=args.save_records)
        row["warmup_s"] = warm
        rows.append(row)
        per_member = row["per_member_s"]
    return {"status": "ok" if rows else "skipped", "channels_last": True, "compile": args.compile,
            "rows": rows, "skipped": skipped}


def section_loop(args, budget: Budget, vectorized: dict | None) -> dict:
    wanted = args.loop_members or max(args.members)
    vec = {r["members"]: r for r in (vectorized or {}).get("rows", [])}
    if 1 in vec:  # a loop member is a vectorized group of one, already warm
        warm, estimate = 0.0, vec[1]["per_member_s"] * 1.1
    else:
        warm = warm_up(recipe(args, 1, execution="loop"))
        estimate = warm * args.epochs  # from one (slower) warm-up epoch
    members = max(1, min(wanted, int(budget.left() // estimate)))
    row = train_timed(recipe(args, members, execution="loop"))
    result = {"status": "ok", "requested_members": wanted, "warmup_s": warm, **row}
    if members < wanted:
        result["note"] = f"{members} of {wanted} members trained to fit the budget; time per member is what counts"
    if vec:
        ref = vec.get(wanted) or vec[max(vec)]
        result["vectorized_members"] = ref["members"]
        result["vectorized_per_member_s"] = ref["per_member_s"]
        result["loop_over_vectorized"] = row["per_member_s"] / ref["per_member_s"]
    return result


def matmul_peak(n: int, device: torch.device, warmup: int = 3, repeats: int = 10) -> float:
    """FLOP/s of an n x n x n bf16 matrix product (fp32 on the CPU): the mean of `repeats` after warm-up."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(warmup):
        a @ b
    _, seconds = timed(lambda: [a @ b for _ in range(repeats)], device)
    return 2 * n**3 * repeats / seconds


def step_mfu(name, params, forward, x, y, loss_fn, flops, device, peak, steps, budget: Budget, warmup=5) -> dict:
    """Time a training step (forward, backward, SGD step) of `forward` on (x, y); `flops` per step.

    x (B, ...) or (M, B, ...); `steps` timed steps after `warmup` ones, fewer if the budget is short.
    """
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9, nesterov=True, weight_decay=5e-4)

    def step():
        with autocast(device):
            loss = loss_fn(forward(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    _, warm = timed(lambda: [step() for _ in range(warmup)], device)
    steps = max(2, min(steps, int(0.8 * budget.left() * warmup / warm)))
    _, seconds = timed(lambda: [step() for _ in range(steps)], device)
    per_step = seconds / steps
    return {"name": name, "batch": x.shape[-4], "steps": steps, "step_s": per_step, "flops_per_step": flops,
            "achieved_flops": flops / per_step, "mfu": flops / per_step / peak}


def section_mfu(args, device, budget: Budget) -> dict:
    peak = matmul_peak(args.matmul_size, device)
    rows, skipped = [], []
    # one ResNet-18 member, an ordinary module in channels-last layout; FLOPs counted on the CPU
    net = build_model("resnet18", CIFAR_SHAPE, 10, width=args.mfu_resnet_width)
    flops = args.mfu_batch * training_step_flops(net, CIFAR_SHAPE, 10)
    net = net.to(device).to(memory_format=torch.channels_last)
    x = torch.randn(args.mfu_batch, *CIFAR_SHAPE, device=device).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.mfu_batch,), device=device)
    forward = torch.compile(net) if args.compile and device.type == "cuda" else net
    rows.append(step_mfu("resnet18", net.parameters(), forward, x, y, F.cross_entropy, flops, device, peak,
                         args.mfu_steps, budget))
    # the vectorized fastcnn step of the largest ensemble, as train_ensemble runs it (minus augmentation)
    m = max(args.members)
    if budget.left() < 0.25 * budget.seconds:
        skipped.append({"name": f"fastcnn x{m} vectorized", "reason": f"budget: {budget.left():.0f} s left"})
    else:
        cfg = recipe(args, m)
        members = [init_member(cfg, CIFAR_SHAPE, 10, seed).to(device) for seed in range(m)]
        ens = StackedEnsemble(members).to(device).use_channels_last().train()
        x = torch.randn(m, args.batch_size, *CIFAR_SHAPE, device=device)
        y = torch.randint(0, 10, (m, args.batch_size), device=device)
        # M times one member's FLOPs: counted under vmap, FlopCounterMode would ignore the groups of
        # the grouped convolution in the weight gradient and count it M times over
        flops = m * args.batch_size * training_step_flops(init_member(cfg, CIFAR_SHAPE, 10, 0), CIFAR_SHAPE, 10)
        loss = lambda out, y: member_losses(out, y, "classification", 0.2).sum()  # noqa: E731
        rows.append(step_mfu(f"fastcnn x{m} vectorized", ens.parameters(), training_forward(cfg, ens), x, y, loss,
                             flops, device, peak, args.mfu_steps, budget))
        rows[-1]["members"] = m
    return {"status": "ok", "matmul_size": args.matmul_size, "peak_flops": peak, "rows": rows, "skipped": skipped}


# ---------------------------------------------------------------------------- main
def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=os.environ.get("FAIRENS_DATA"), help="folder of cifar10-jpeg.zip")
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    p.add_argument("--device", default="auto")
    p.add_argument("--smoke", action="store_true", help="tiny CPU run of every section but airbench")
    p.add_argument("--members", type=int, nargs="+", default=[1, 5, 20])
    p.add_argument("--loop-members", type=int, help="members of the loop run (default: max of --members)")
    full = BASE["full"]  # the book's fast recipe
    p.add_argument("--epochs", type=int, default=full["epochs"])
    p.add_argument("--batch-size", type=int, default=full["batch_size"], help="per member")
    p.add_argument("--width", type=float, default=1, help="fastcnn width")
    p.add_argument("--lr", type=float, default=full["lr"], help="peak; chosen on a CPU proxy, see README")
    p.add_argument("--weight-decay", type=float, default=full["weight_decay"])
    p.add_argument("--warmup-epochs", type=float, help=f"default: {full['warmup_epochs']}, a fifth of --epochs")
    p.add_argument("--save-records", action="store_true",
                   help="keep the vectorized runs' records in the cache ($FAIRENS_CACHE) for the book")
    p.add_argument("--compile", action="store_true", help="torch.compile the training forward (CUDA)")
    p.add_argument("--airbench-runs", type=int, default=5)
    p.add_argument("--mfu-batch", type=int, default=512)
    p.add_argument("--mfu-steps", type=int, default=20)
    p.add_argument("--mfu-resnet-width", type=float, default=1.0)
    p.add_argument("--matmul-size", type=int, default=8192)
    for name, seconds in (("airbench", 60), ("vectorized", 210), ("loop", 120), ("mfu", 60)):
        p.add_argument(f"--{name}-budget-s", type=float, default=seconds, help=f"time budget of section {name}")
    args = p.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        p.error(f"--sections: unknown {unknown}; choose from {list(SECTIONS)}")
    args.dataset_options = {}
    if args.smoke:  # seconds on a CPU: every code path, no meaningful figure
        args.device, args.epochs, args.members, args.loop_members = "cpu", 1, [1, 2], 2
        args.batch_size, args.width, args.mfu_batch, args.mfu_steps = 32, 0.125, 8, 2
        args.mfu_resnet_width, args.matmul_size, args.dataset_options = 0.0625, 256, {"num_workers": 0}
    if args.warmup_epochs is None:  # the recipe's own value (an int: it is part of the records' key)
        args.warmup_epochs = full["warmup_epochs"] if args.epochs == full["epochs"] else args.epochs / 5
    return args


def print_table(results: dict) -> None:
    s = results["sections"]
    smoke = " (SMOKE: figures mean nothing)" if results["smoke"] else ""
    print(f"\n{results['device']}, torch {results['torch']}{smoke}")
    for name, sec in s.items():
        if sec["status"] != "ok":
            print(f"{name:11s} skipped: {sec.get('reason', '')}")
    if s.get("airbench", {}).get("status") == "ok":
        a = s["airbench"]
        print(f"{'airbench':11s} train94 {a['time_s_mean']:.2f} s/model over {len(a['runs'])} runs, "
              f"acc {100 * a['acc_mean']:.2f}% (tta2 {100 * a['acc_tta2_mean']:.2f}%)")
    if s.get("vectorized", {}).get("status") == "ok":
        print(f"{'vectorized':11s} {'M':>4} {'train s':>8} {'s/member':>9} {'member acc':>11} {'ens acc':>8}")
        for r in s["vectorized"]["rows"]:
            print(f"{'':11s} {r['members']:>4} {r['train_s']:8.1f} {r['per_member_s']:9.2f} "
                  f"{100 * r['member_acc_mean']:10.2f}% {100 * r['ensemble_acc']:7.2f}%")
        for r in s["vectorized"]["skipped"]:
            print(f"{'':11s} {r['members']:>4} skipped: {r['reason']}")
    if s.get("loop", {}).get("status") == "ok":
        lp = s["loop"]
        ratio = f", loop / vectorized (M={lp['vectorized_members']}) = {lp['loop_over_vectorized']:.2f}x" \
            if "loop_over_vectorized" in lp else ""
        print(f"{'loop':11s} M={lp['members']}: {lp['per_member_s']:.2f} s/member, member acc "
              f"{100 * lp['member_acc_mean']:.2f}%{ratio}")
    if s.get("mfu", {}).get("status") == "ok":
        m = s["mfu"]
        print(f"{'mfu':11s} peak {m['peak_flops'] / 1e12:.1f} TFLOP/s ({m['matmul_size']}^3 matmul)")
        for r in m["rows"]:
            print(f"{'':11s} {r['name']:24s} batch {r['batch']:>4}: {1e3 * r['step_s']:8.2f} ms/step, "
                  f"{r['flops_per_step'] / 1e9:9.1f} GFLOP/step, {r['achieved_flops'] / 1e12:7.2f} TFLOP/s, "
                  f"MFU {100 * r['mfu']:.1f}%")
        for r in m["skipped"]:
            print(f"{'':11s} {r['name']:24s} skipped: {r['reason']}")


def main(argv=None) -> dict:
    args = parse_args(argv)
    with contextlib.ExitStack() as stack:
        if args.smoke:  # generated data, decoded into a throw-away cache
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            write_fake_cifar_zip(tmp / "cifar10-jpeg.zip")
            args.data_root = str(tmp)
            stack.enter_context(_environ("FAIRENS_CACHE", str(tmp / "cache")))
        results = run(args)
    print_table(results)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))
    return results


def run(args) -> dict:
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes throughout (importing airbench sets it too)
    ds = load_dataset("cifar10_jpeg", args.data_root, **args.dataset_options)  # decoded (and cached) once
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{platform.processor() or 'cpu'} ({torch.get_num_threads()} threads)"
    results = {"device": name, "torch": torch.__version__, "smoke": args.smoke,
               "cudnn_benchmark": torch.backends.cudnn.benchmark, "recipe": recipe(args, 1).key_fields(),
               "args": vars(args), "sections": {}}
    for section in args.sections:
        print(f"[{section}] ...", flush=True)
        budget = Budget(getattr(args, f"{section}_budget_s"))  # starts now
        if section == "airbench":
            out = section_airbench(args, ds, device, budget)
        elif section == "vectorized":
            out = section_vectorized(args, budget)
        elif section == "loop":
            out = section_loop(args, budget, results["sections"].get("vectorized"))
        else:
            out = section_mfu(args, device, budget)
        out["section_s"] = time.perf_counter() - budget.start
        results["sections"][section] = out
    return results


@contextlib.contextmanager
def _environ(key: str, value: str):
    before = os.environ.get(key)
    os.environ[key] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


if __name__ == "__main__":
    main()
