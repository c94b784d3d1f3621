"""GPU speed of the fast CIFAR-10 recipe: which CUDA paths work, packed vs vmap vs loop, airbench, MFU.

Run on a GPU machine, in one call, from the repository root (cifar10-jpeg.zip in --data-root;
airbench 0.1.8 importable, e.g. its wheel installed into a folder on PYTHONPATH):

    python benchmarks/gpu_speed.py --data-root shared_data --json $OUT/gpu_speed.json

Sections (--sections picks a subset, in this order; each stops starting new work once its
time budget, --<section>-budget-s, would be exceeded):

    check       one training step (forward, backward, optimizer step, then an eval-mode forward)
                of every model in `models.MODELS` x execution packed / vectorized x precision
                fp32 / bf16 x channels-last on / off (image models), and torch.compile of the
                packed fastcnn forward: "ok" or the error's first line for each.
    profile     torch.profiler over training steps of packed fastcnn at M = min and max of
                --members: top kernels by self device time (CPU ops on a CPU) and the host gap
                (step wall time minus device busy time).
    airbench    airbench.train94 (a single ~94% model) timed over --airbench-runs runs after one
                warm-up run; test accuracy without and with test-time augmentation (tta_level 2).
    packed, vectorized
                fastcnn ensembles of M = --members with the fast recipe (`profiles.BASE["full"]`)
                and execution packed (grouped layers) or vectorized (torch.vmap): the time of a
                training step (and its MFU), then the whole run by `train_ensemble` where it fits
                the budget: wall time per member, mean member accuracy, ensemble accuracy.
    loop        the same recipe with execution="loop" (one member at a time): step time of a
                group of one, and as many whole members as fit the budget.
    mfu         model FLOP utilisation of one training step of a CIFAR ResNet-18 (bf16,
                channels-last, --mfu-batch) and of fastcnn at M = max(--members), packed and
                vectorized: FLOPs counted by FlopCounterMode, divided by the step time and by
                the bf16 matmul rate measured in the same run.

Every section runs in its own try/except: a failing one records its error (type, message,
traceback tail) and the next one runs. The JSON is rewritten before and after every section,
so a killed call still leaves what was measured (the section that was running says "running").

--smoke runs it all on the CPU in seconds (a generated 32x32 JPEG zip of a few hundred images,
one epoch, tiny widths): it keeps this script working, its figures mean nothing. On a CPU the
trainer leaves bf16 autocast off, so "bf16" there runs the fp32 path. Speed is measured here;
correctness is tested in tests/.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import os
import platform
import sys
import tempfile
import time
import traceback
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
from fairens_core.ensemble import init_member  # noqa: E402
from fairens_core.models import MODELS, build_model  # noqa: E402
from fairens_core.profiles import BASE  # noqa: E402
from fairens_core.records import cache_root, find_record  # noqa: E402
from fairens_core.train import build_ensemble, evaluate, make_optimizer, resolve_device  # noqa: E402
from fairens_core.train import train_ensemble, training_forward, training_step  # noqa: E402

SECTIONS = ("check", "profile", "airbench", "packed", "vectorized", "loop", "mfu")
NEEDS_DATA = ("airbench", "packed", "vectorized", "loop")  # the others run on random inputs
BUDGETS = {"check": 50, "profile": 20, "airbench": 45, "packed": 150, "vectorized": 70, "loop": 40, "mfu": 30}
CIFAR_SHAPE = (3, 32, 32)
INPUT_SHAPES = {"mlp": (20,), "cnn1d": (1, 40), "cnn1d_bn": (1, 40)}  # the others take CIFAR images
INTEGER_WIDTH = {"wrn16": 1}  # width is WRN's integer widening factor
CHECK_EXECUTIONS, CHECK_PRECISIONS = ("packed", "vectorized"), ("fp32", "bf16")


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


def error_info(err: BaseException, lines: int = 12) -> dict:
    """An exception as JSON: type, message, and the tail of its traceback."""
    tb = "".join(traceback.format_exception(type(err), err, err.__traceback__)).splitlines()
    return {"type": type(err).__name__, "message": str(err), "traceback": tb[-lines:]}


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


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
    the benchmark's flags: at the defaults, the 20-member run is chapter bottom_k's full pool
    (execution is not part of the cache key, so packed, vectorized and loop share it)."""
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


class Stepper:
    """One group's training step (`train.training_step`, the trainer's own) on fixed random inputs:
    forward (`training_forward`, so --compile applies) under the trainer's autocast, the members'
    losses summed, backward, optimizer step. No batch gathering or augmentation."""

    def __init__(self, cfg: TrainConfig, input_shape, num_classes: int, batch: int, device: torch.device,
                 compile_backend: str | None = None):
        members = [init_member(cfg, input_shape, num_classes, seed) for seed in range(cfg.members)]
        self.ens = build_ensemble(cfg, members, device)
        if cfg.channels_last:
            self.ens.use_channels_last()
        self.ens.train()
        self.opt = make_optimizer(cfg, self.ens.parameters())
        self.forward = torch.compile(self.ens, dynamic=False, backend=compile_backend) if compile_backend \
            else training_forward(cfg, self.ens)
        self.x = torch.randn(cfg.members, batch, *input_shape, device=device)
        self.y = torch.randint(0, num_classes, (cfg.members, batch), device=device)
        self.cfg, self.device = cfg, device

    def __call__(self) -> torch.Tensor:
        loss, _, _ = training_step(self.cfg, "classification", self.forward, self.opt, self.x, self.y)
        return loss


def time_steps(step, device: torch.device, steps: int, budget: Budget | None = None, warmup: int = 5) -> dict:
    """Seconds per call of `step` after `warmup` calls (cuDNN autotuning); fewer timed calls if the
    budget is short."""
    _, warm = timed(lambda: [step() for _ in range(warmup)], device)
    if budget is not None:
        steps = max(2, min(steps, int(0.8 * budget.left() * warmup / warm)))
    _, seconds = timed(lambda: [step() for _ in range(steps)], device)
    return {"steps": steps, "step_s": seconds / steps, "warmup_steps_s": warm}


@functools.lru_cache(maxsize=None)
def member_step_flops(model: str, width: float, input_shape=CIFAR_SHAPE, num_classes: int = 10) -> int:
    """FLOPs of one member's training step per example (counted once on the CPU). An ensemble's
    step is M times this: counted under vmap, FlopCounterMode would ignore the groups of the grouped
    convolution in the weight gradient and count it M times over."""
    return training_step_flops(build_model(model, input_shape, num_classes, width=width), input_shape, num_classes)


def matmul_peak(n: int, device: torch.device, warmup: int = 3, repeats: int = 10) -> float:
    """FLOP/s of an n x n x n bf16 matrix product (fp32 on the CPU): the mean of `repeats` after warm-up."""
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    for _ in range(warmup):
        a @ b
    _, seconds = timed(lambda: [a @ b for _ in range(repeats)], device)
    return 2 * n**3 * repeats / seconds


class Env:
    """What sections share: the device, the dataset (decoded on first use), the matmul peak
    (measured on first use) and the results so far."""

    def __init__(self, args, device: torch.device, results: dict):
        self.args, self.device, self.results = args, device, results
        self._ds, self._peak = None, None

    def dataset(self):
        if self._ds is None:
            start = time.perf_counter()
            self._ds = load_dataset("cifar10_jpeg", self.args.data_root, **self.args.dataset_options)
            self.results["data_load_s"] = time.perf_counter() - start
        return self._ds

    def peak(self) -> float:
        if self._peak is None:
            self._peak = matmul_peak(self.args.matmul_size, self.device)
            self.results["peak_flops"] = self._peak
            self.results["matmul_size"] = self.args.matmul_size
        return self._peak


# ---------------------------------------------------------------------------- check
def check_cases(models=None) -> list[dict]:
    """Every model x execution x precision x layout (channels-last only for image models), then
    torch.compile of the packed fastcnn forward; fastcnn, the recipe's model, first."""
    names = sorted(models or MODELS, key=lambda n: (n != "fastcnn", list(MODELS).index(n)))
    cases = []
    for model in names:
        shape = INPUT_SHAPES.get(model, CIFAR_SHAPE)
        layouts = (False, True) if len(shape) == 3 else (False,)
        for execution in CHECK_EXECUTIONS:
            for precision in CHECK_PRECISIONS:
                for channels_last in layouts:
                    cases.append(dict(model=model, execution=execution, precision=precision,
                                      channels_last=channels_last, compile=False))
    if "fastcnn" in names:  # the recipe's configuration, compiled
        cases.append(dict(model="fastcnn", execution="packed", precision="bf16", channels_last=True, compile=True))
    return cases


def case_name(case: dict) -> str:
    layout = "channels_last" if case["channels_last"] else "contiguous"
    return " ".join([case["model"], case["execution"], case["precision"], layout] + ["compile"] * case["compile"])


def check_case(args, case: dict, device: torch.device) -> str:
    """One training step and one eval-mode forward of a small ensemble of `case`: "ok" or why not."""
    shape = INPUT_SHAPES.get(case["model"], CIFAR_SHAPE)
    width = INTEGER_WIDTH.get(case["model"], args.check_width)
    cfg = TrainConfig(model=case["model"], width=width, members=args.check_members, execution=case["execution"],
                      precision=case["precision"], channels_last=case["channels_last"], device=str(device),
                      label_smoothing=0.2, progress=False)
    backend = args.check_compile_backend if case["compile"] else None
    step = Stepper(cfg, shape, 10, args.check_batch, device, compile_backend=backend)
    loss = step()
    logits = evaluate(step.ens, step.x[0], cfg)
    synchronize(device)  # an asynchronous CUDA error belongs to this case
    if not bool(torch.isfinite(loss)) or not bool(torch.isfinite(logits).all()):
        return "not finite: loss or eval logits"
    if logits.shape != (args.check_members, args.check_batch, 10):
        return f"eval logits of shape {tuple(logits.shape)}"
    return "ok"


def section_check(args, env: Env, budget: Budget) -> dict:
    results, seconds, skipped = {}, {}, []
    for case in check_cases(args.check_models):
        name = case_name(case)
        if case["compile"] and not budget.fits(args.check_compile_s):
            skipped.append(name)  # a compile takes tens of seconds: not started when it would overrun
            continue
        if not budget.fits(0):
            skipped.append(name)
            continue
        start = time.perf_counter()
        try:
            results[name] = check_case(args, case, env.device)
        except Exception as err:  # noqa: BLE001 (each path's failure is the finding)
            results[name] = first_line(err)
        seconds[name] = round(time.perf_counter() - start, 3)
    failed = [name for name, result in results.items() if result != "ok"]
    return {"status": "ok", "bf16_autocast": env.device.type == "cuda",  # the trainer's rule
            "members": args.check_members, "batch": args.check_batch, "width": args.check_width,
            "compile_backend": args.check_compile_backend, "passed": len(results) - len(failed),
            "failed": failed, "skipped": skipped, "results": results, "seconds": seconds}


# ---------------------------------------------------------------------------- profile
def profile_steps(step, device: torch.device, steps: int, top: int) -> dict:
    """torch.profiler over `steps` calls of `step` (already warm).

    On CUDA, device busy time is the summed duration of the device events (kernels, copies) per
    step, against the step time measured without the profiler; on a CPU it is the summed self
    time of the operators, against the profiled step time (the profiler inflates both alike).
    The host gap is the step time minus the busy time: launch overhead, Python, synchronisation.
    """
    cuda = device.type == "cuda"
    activities = [torch.profiler.ProfilerActivity.CPU] + [torch.profiler.ProfilerActivity.CUDA] * cuda
    _, plain = timed(lambda: [step() for _ in range(steps)], device)  # without the profiler's overhead
    with torch.profiler.profile(activities=activities) as prof:
        _, profiled = timed(lambda: [step() for _ in range(steps)], device)
    events = prof.key_averages()
    if cuda:  # device events only: an operator's self device time repeats its kernels'
        kernels = [e for e in events if e.device_type != torch.autograd.DeviceType.CPU]
        busy = lambda e: e.self_device_time_total  # noqa: E731
        step_s = plain / steps
    else:
        kernels, busy, step_s = list(events), (lambda e: e.self_cpu_time_total), profiled / steps
    kernels = sorted((e for e in kernels if busy(e) > 0), key=busy, reverse=True)
    busy_s = sum(busy(e) for e in kernels) / 1e6 / steps
    host = sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return {"steps": steps, "step_s": plain / steps, "profiled_step_s": profiled / steps,
            "busy_measured_on": "device events" if cuda else "CPU operators", "device_busy_s": busy_s,
            "host_gap_s": step_s - busy_s, "device_idle_share": max(0.0, 1 - busy_s / step_s),
            "kernels_per_step": sum(e.count for e in kernels) / steps,
            "top_kernels": [{"name": e.key, "self_ms_per_step": busy(e) / 1e3 / steps,
                             "calls_per_step": e.count / steps,
                             "share": busy(e) / 1e6 / steps / busy_s if busy_s else 0.0} for e in kernels[:top]],
            "top_host_ops": [{"name": e.key, "self_cpu_ms_per_step": e.self_cpu_time_total / 1e3 / steps,
                              "calls_per_step": e.count / steps} for e in host]}


def section_profile(args, env: Env, budget: Budget) -> dict:
    rows, skipped = [], []
    for m in sorted({min(args.members), max(args.members)}):
        if not budget.fits(0.2 * budget.seconds) and rows:
            skipped.append({"members": m, "reason": f"budget: {budget.left():.0f} s left"})
            continue
        cfg = recipe(args, m, execution="packed")
        step = Stepper(cfg, CIFAR_SHAPE, 10, args.batch_size, env.device)
        for _ in range(args.warmup_steps):  # cuDNN autotuning, lazy initialisation
            step()
        profiled = profile_steps(step, env.device, args.profile_steps, args.profile_top)
        rows.append({"members": m, "name": f"fastcnn x{m} packed", **profiled})
        del step
    return {"status": "ok", "batch": args.batch_size, "rows": rows, "skipped": skipped}


# ---------------------------------------------------------------------------- airbench
def write_airbench_data(ds, folder: Path) -> None:
    """Our decoded images in airbench's format: folder/{train,test}.pt, each
    {'images': uint8 (N, 32, 32, 3), 'labels': int64 (N,), 'classes': names}."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, x, y in (("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)):
        torch.save({"images": x.permute(0, 2, 3, 1).contiguous(), "labels": y, "classes": list(ds.classes)},
                   folder / f"{split}.pt")


def section_airbench(args, env: Env, budget: Budget) -> dict:
    """airbench.train94 (timed end to end) on our decoded images; it reads ./cifar10/{train,test}.pt."""
    device = env.device
    if device.type != "cuda":
        return {"status": "skipped", "reason": "airbench needs CUDA"}
    try:
        import airbench
    except ImportError as err:
        return {"status": "skipped", "reason": f"airbench is not importable ({err}); pip install airbench==0.1.8"}
    runs = []
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        write_airbench_data(env.dataset(), Path("cifar10"))
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


# ---------------------------------------------------------------------------- packed, vectorized, loop
def step_row(args, env: Env, cfg: TrainConfig, budget: Budget) -> dict:
    """Step time and MFU of one group of cfg.members; the time of a whole run predicted from it."""
    step = Stepper(cfg, CIFAR_SHAPE, 10, cfg.batch_size, env.device)
    timing = time_steps(step, env.device, args.speed_steps, budget, args.warmup_steps)
    del step
    flops = cfg.members * cfg.batch_size * member_step_flops(cfg.model, cfg.width)
    steps_per_epoch = len(env.dataset().y_train) // cfg.batch_size
    # training steps plus about 10% for the per-epoch evaluation
    predicted = 1.1 * timing["step_s"] * steps_per_epoch * cfg.epochs
    return {"members": cfg.members, **timing, "flops_per_step": flops, "achieved_flops": flops / timing["step_s"],
            "mfu": flops / timing["step_s"] / env.peak(), "predicted_run_s": predicted,
            "per_member_s_from_steps": predicted / cfg.members}


def section_speed(args, env: Env, budget: Budget, execution: str) -> dict:
    """Packed or vectorized groups of M = --members: the step, then the whole run where it fits.
    Largest M first: its whole run is the figure that matters (and chapter bottom_k's pool)."""
    rows, skipped = [], []
    for m in sorted(args.members, reverse=True):
        cfg = recipe(args, m, execution=execution)
        if rows and not budget.fits(rows[-1]["warmup_steps_s"] * m / rows[-1]["members"] + 1):
            skipped.append({"members": m, "reason": f"budget: {budget.left():.0f} s left"})
            continue
        row = step_row(args, env, cfg, budget)
        if budget.fits(row["predicted_run_s"] * (1 + args.compile / cfg.epochs)):
            warm = warm_up(cfg) if args.compile else 0.0  # compiling is not training time
            row.update(train_timed(cfg, save=args.save_records), whole_run=True, warmup_s=warm)
        else:
            row.update(whole_run=False, reason=f"budget: ~{row['predicted_run_s']:.0f} s predicted, "
                                               f"{budget.left():.0f} s left; per member from the step time")
        rows.append(row)
    return {"status": "ok" if rows else "skipped", "execution": execution, "channels_last": True,
            "compile": args.compile, "rows": rows, "skipped": skipped}


def section_packed(args, env: Env, budget: Budget) -> dict:
    return section_speed(args, env, budget, "packed")


def section_vectorized(args, env: Env, budget: Budget) -> dict:
    return section_speed(args, env, budget, "vectorized")


def section_loop(args, env: Env, budget: Budget) -> dict:
    """One member at a time: a group of one's step, then as many whole members as fit."""
    wanted = args.loop_members or max(args.members)
    row = step_row(args, env, recipe(args, 1, execution="loop"), budget)
    members = max(1, min(wanted, int(budget.left() // row["predicted_run_s"])))
    result = {"status": "ok", "requested_members": wanted, "step": row}
    result.update(train_timed(recipe(args, members, execution="loop")))
    if members < wanted:
        result["note"] = f"{members} of {wanted} members trained to fit the budget; time per member is what counts"
    return result


def comparison(sections: dict) -> list[dict]:
    """Seconds per member of packed, vectorized and loop at each M: the whole run's where there
    was one, else predicted from the step time (`from_steps` lists those); speed-ups over the loop."""
    loop = sections.get("loop", {})
    loop_s = loop.get("per_member_s") or loop.get("step", {}).get("per_member_s_from_steps")
    by_m = {}
    for execution in ("packed", "vectorized"):
        for row in sections.get(execution, {}).get("rows", []):
            entry = by_m.setdefault(row["members"], {"members": row["members"], "from_steps": []})
            entry[f"{execution}_s_per_member"] = row.get("per_member_s", row["per_member_s_from_steps"])
            if "per_member_s" not in row:
                entry["from_steps"].append(execution)
    out = []
    for m, entry in sorted(by_m.items()):
        if loop_s:
            entry["loop_s_per_member"] = loop_s
            for execution in ("packed", "vectorized"):
                if f"{execution}_s_per_member" in entry:
                    entry[f"loop_over_{execution}"] = loop_s / entry[f"{execution}_s_per_member"]
        if "packed_s_per_member" in entry and "vectorized_s_per_member" in entry:
            entry["vectorized_over_packed"] = entry["vectorized_s_per_member"] / entry["packed_s_per_member"]
        out.append(entry)
    return out


# ---------------------------------------------------------------------------- mfu
def step_mfu(name, params, forward, x, y, loss_fn, flops, device, peak, steps, budget: Budget, warmup: int) -> dict:
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

    timing = time_steps(step, device, steps, budget, warmup)
    return {"name": name, "batch": x.shape[-4], "steps": timing["steps"], "step_s": timing["step_s"],
            "flops_per_step": flops, "achieved_flops": flops / timing["step_s"], "mfu": flops / timing["step_s"] / peak}


def section_mfu(args, env: Env, budget: Budget) -> dict:
    device, peak = env.device, env.peak()
    rows, skipped = [], []
    # one ResNet-18 member, an ordinary module in channels-last layout; FLOPs counted on the CPU
    flops = args.mfu_batch * member_step_flops("resnet18", args.mfu_resnet_width)
    net = build_model("resnet18", CIFAR_SHAPE, 10, width=args.mfu_resnet_width)
    net = net.to(device).to(memory_format=torch.channels_last)
    x = torch.randn(args.mfu_batch, *CIFAR_SHAPE, device=device).to(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.mfu_batch,), device=device)
    forward = torch.compile(net) if args.compile and device.type == "cuda" else net
    rows.append(step_mfu("resnet18", net.parameters(), forward, x, y, F.cross_entropy, flops, device, peak,
                         args.mfu_steps, budget, args.warmup_steps))
    del net, forward, x, y
    # the fastcnn step of the largest ensemble, as train_ensemble takes it (minus batch gathering and
    # augmentation), packed and vectorized; each in its own try: the vmap path may fail on CUDA
    m = max(args.members)
    for execution in ("packed", "vectorized"):
        name = f"fastcnn x{m} {execution}"
        if budget.left() < 0.2 * budget.seconds:
            skipped.append({"name": name, "reason": f"budget: {budget.left():.0f} s left"})
            continue
        try:
            cfg = recipe(args, m, execution=execution)
            step = Stepper(cfg, CIFAR_SHAPE, 10, args.batch_size, device)
            timing = time_steps(step, device, args.mfu_steps, budget, args.warmup_steps)
            del step
        except Exception as err:  # noqa: BLE001
            skipped.append({"name": name, "reason": first_line(err)})
            continue
        flops = m * args.batch_size * member_step_flops(cfg.model, cfg.width)
        rows.append({"name": name, "members": m, "batch": args.batch_size, "steps": timing["steps"],
                     "step_s": timing["step_s"], "flops_per_step": flops, "achieved_flops": flops / timing["step_s"],
                     "mfu": flops / timing["step_s"] / peak})
    return {"status": "ok", "matmul_size": args.matmul_size, "peak_flops": peak, "rows": rows, "skipped": skipped}


# ---------------------------------------------------------------------------- main
def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=os.environ.get("FAIRENS_DATA"), help="folder of cifar10-jpeg.zip")
    p.add_argument("--json", help="also write the results here (rewritten after every section)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    p.add_argument("--device", default="auto")
    p.add_argument("--smoke", action="store_true", help="tiny CPU run of every section (airbench skips)")
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
                   help="keep the whole runs' records in the cache ($FAIRENS_CACHE) for the book")
    p.add_argument("--compile", action="store_true", help="torch.compile the training forward (CUDA)")
    p.add_argument("--speed-steps", type=int, default=20, help="timed steps per group in packed/vectorized/loop")
    p.add_argument("--check-models", type=lambda s: [m for m in s.split(",") if m],
                   help="comma-separated models of the check section (default: all of models.MODELS)")
    p.add_argument("--check-width", type=float, default=0.25, help="width of the check's models (wrn16: 1)")
    p.add_argument("--check-members", type=int, default=2)
    p.add_argument("--check-batch", type=int, default=8, help="per member")
    p.add_argument("--check-compile-backend", default="inductor", help="torch.compile backend of the check")
    p.add_argument("--check-compile-s", type=float, default=20, help="budget a compile case needs to start")
    p.add_argument("--profile-steps", type=int, default=3)
    p.add_argument("--profile-top", type=int, default=15)
    p.add_argument("--airbench-runs", type=int, default=5)
    p.add_argument("--mfu-batch", type=int, default=512)
    p.add_argument("--mfu-steps", type=int, default=20)
    p.add_argument("--mfu-resnet-width", type=float, default=1.0)
    p.add_argument("--matmul-size", type=int, default=8192)
    p.add_argument("--warmup-steps", type=int, default=5, help="untimed steps before a step is timed")
    for name, seconds in BUDGETS.items():
        p.add_argument(f"--{name}-budget-s", type=float, help=f"time budget of section {name} (default {seconds})")
    args = p.parse_args(argv)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        p.error(f"--sections: unknown {unknown}; choose from {list(SECTIONS)}")
    unknown = sorted(set(args.check_models or ()) - set(MODELS))
    if unknown:
        p.error(f"--check-models: unknown {unknown}; choose from {list(MODELS)}")
    args.dataset_options = {}
    if args.smoke:  # seconds on a CPU: every code path, no meaningful figure
        args.device, args.epochs, args.members, args.loop_members = "cpu", 1, [1, 2], 2
        args.batch_size, args.width, args.mfu_batch, args.mfu_steps = 32, 0.125, 8, 2
        # ResNet-18 at width 1/8 has 8 channels where it is narrowest: oneDNN's AVX2 kernel for the
        # backward of a channels-last 1x1 convolution with fewer than 8 input channels hangs or segfaults
        args.mfu_resnet_width, args.matmul_size, args.dataset_options = 0.125, 256, {"num_workers": 0}
        args.speed_steps, args.profile_steps, args.profile_top = 2, 1, 5
        args.check_width, args.check_batch = 0.125, 4
        args.check_compile_backend = "eager"  # graph capture only: inductor takes minutes on 2 cores
        args.warmup_steps = 1
    for name, seconds in BUDGETS.items():  # a smoke run exercises every path: no budget cuts it short
        if getattr(args, f"{name}_budget_s") is None:
            setattr(args, f"{name}_budget_s", 600.0 if args.smoke else float(seconds))
    if args.warmup_epochs is None:  # the recipe's own value (an int: it is part of the records' key)
        args.warmup_epochs = full["warmup_epochs"] if args.epochs == full["epochs"] else args.epochs / 5
    return args


def print_table(results: dict) -> None:
    s = results["sections"]
    smoke = " (SMOKE: figures mean nothing)" if results["smoke"] else ""
    print(f"\n{results['device']}, torch {results['torch']}{smoke}")
    for name, sec in s.items():
        if sec["status"] == "error":
            print(f"{name:11s} ERROR {sec['error']['type']}: {sec['error']['message'][:200]}")
        elif sec["status"] != "ok":
            print(f"{name:11s} {sec['status']}: {sec.get('reason', '')}")
    if s.get("check", {}).get("status") == "ok":
        c = s["check"]
        print(f"{'check':11s} {c['passed']} of {len(c['results'])} paths ok"
              + (f", {len(c['skipped'])} skipped (budget)" if c["skipped"] else ""))
        for name in c["failed"]:
            print(f"{'':11s} FAIL {name}: {c['results'][name]}")
    if s.get("profile", {}).get("status") == "ok":
        for r in s["profile"]["rows"]:
            what = "kernels" if r["busy_measured_on"] == "device events" else "CPU operators"
            print(f"{'profile':11s} {r['name']}: {1e3 * r['step_s']:.2f} ms/step, busy "
                  f"{1e3 * r['device_busy_s']:.2f} ms ({what}), idle {100 * r['device_idle_share']:.0f}%, "
                  f"{r['kernels_per_step']:.0f} {what}/step")
            for k in r["top_kernels"][:5]:
                print(f"{'':13s}{k['self_ms_per_step']:8.3f} ms {100 * k['share']:5.1f}%  {k['name'][:70]}")
    if s.get("airbench", {}).get("status") == "ok":
        a = s["airbench"]
        print(f"{'airbench':11s} train94 {a['time_s_mean']:.2f} s/model over {len(a['runs'])} runs, "
              f"acc {100 * a['acc_mean']:.2f}% (tta2 {100 * a['acc_tta2_mean']:.2f}%)")
    for name in ("packed", "vectorized"):
        if s.get(name, {}).get("status") != "ok":
            continue
        print(f"{name:11s} {'M':>4} {'ms/step':>8} {'MFU':>6} {'train s':>8} {'s/member':>9} {'member acc':>11} "
              f"{'ens acc':>8}")
        for r in s[name]["rows"]:
            run = (f"{r['train_s']:8.1f} {r['per_member_s']:9.2f} {100 * r['member_acc_mean']:10.2f}% "
                   f"{100 * r['ensemble_acc']:7.2f}%") if r["whole_run"] else \
                f"{'':8s} {r['per_member_s_from_steps']:9.2f} (from the step time: {r['reason'].split(';')[0]})"
            print(f"{'':11s} {r['members']:>4} {1e3 * r['step_s']:8.2f} {100 * r['mfu']:5.1f}% {run}")
        for r in s[name]["skipped"]:
            print(f"{'':11s} {r['members']:>4} skipped: {r['reason']}")
    if s.get("loop", {}).get("status") == "ok":
        lp = s["loop"]
        print(f"{'loop':11s} M={lp['members']}: {lp['per_member_s']:.2f} s/member, member acc "
              f"{100 * lp['member_acc_mean']:.2f}%; step {1e3 * lp['step']['step_s']:.2f} ms")
    for c in results.get("comparison", []):
        parts = [f"{e} {c[f'{e}_s_per_member']:.2f}" for e in ("packed", "vectorized", "loop")
                 if f"{e}_s_per_member" in c]
        ratios = [f"{k} {c[k]:.2f}x" for k in ("loop_over_packed", "loop_over_vectorized", "vectorized_over_packed")
                  if k in c]
        print(f"{'compare':11s} M={c['members']:<3} s/member: {', '.join(parts)}; {', '.join(ratios)}")
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
    return results


def save(results: dict, path: str | None) -> None:
    """Write the results so far (atomically: a killed call never leaves half a file)."""
    if not path:
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=1, default=str))
    tmp.replace(path)


def run(args) -> dict:
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes throughout (importing airbench sets it too)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{platform.processor() or 'cpu'} ({torch.get_num_threads()} threads)"
    results = {"device": name, "torch": torch.__version__, "python": platform.python_version(), "smoke": args.smoke,
               "cudnn_benchmark": torch.backends.cudnn.benchmark, "recipe": recipe(args, 1).key_fields(),
               "args": vars(args), "sections": {}}
    env = Env(args, device, results)
    for section in args.sections:
        print(f"[{section}] ...", flush=True)
        results["sections"][section] = {"status": "running"}
        save(results, args.json)
        start = time.perf_counter()
        try:
            if section in NEEDS_DATA:
                env.dataset()  # decoded once, outside the section's budget
            budget = Budget(getattr(args, f"{section}_budget_s"))  # starts now
            out = globals()[f"section_{section}"](args, env, budget)
        except Exception as err:  # noqa: BLE001 (a failing section must not stop the others)
            out = {"status": "error", "error": error_info(err)}
            print(f"[{section}] ERROR {first_line(err)}", flush=True)
            if device.type == "cuda":
                torch.cuda.empty_cache()
        out["section_s"] = time.perf_counter() - start
        results["sections"][section] = out
        if any(s in results["sections"] for s in ("packed", "vectorized", "loop")):
            results["comparison"] = comparison(results["sections"])
        save(results, args.json)
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
