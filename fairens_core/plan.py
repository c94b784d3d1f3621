"""Plan a profile's training before spending GPU time on it.

A `Planner` handed to `runner.instead_of_training` switches `runner.run` into planning:
every run is appended to the plan (one JSON line per run), and a cache miss trains nothing: the
chapter gets a *placeholder* record instead, with the real record's shapes, metadata and initial
weights but made-up predictions (`meta["placeholder"] = True`; never saved). Executing a chapter
this way (`python -m fairens_core plan --profile full ...`, which starts each chapter's kernel
with that call: see `__main__`) takes seconds on a CPU and gives

- the list of every run the chapter needs, with its training cost in FLOPs, and
- a check that the chapter's code runs through at that scale (its numbers mean nothing).

Then `python -m fairens_core train --plan PLAN` trains the list where the compute is (each run
checkpoints and is cached as usual), and `python -m fairens_core pack` copies the records into a
folder of compact records (float16 predictions, no weights unless asked) that `$FAIRENS_RECORDS`
points the book to.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .config import TrainConfig
from .data import load_dataset
from .ensemble import StackedEnsemble, init_member, init_members
from .records import RunRecord, find_record
from .train import (History, assemble, build_ensemble, evaluation_steps, group_members, make_optimizer, plan_phases,
                    training_step, training_threads)

SPEED_FIELDS = ("max_group", "channels_last", "compile")  # execution fields a plan keeps (not in the key)
PLACEHOLDER_FLOPS_PER_SECOND = 1e14  # a placeholder's stand-in wall time: its FLOPs at this rate


@dataclass
class Planner:
    """Notes every run of a chapter in the plan file `path` instead of training it."""

    path: Path
    chapter: str = ""

    def note(self, config: TrainConfig, record: RunRecord | None = None) -> RunRecord:
        """Add `config` to the plan, with the cost and size of its record (a placeholder when it
        is not cached) and its time: the cached record's wall time, or for a CPU run an estimate
        from this CPU's measured speed on the run's model; return that record."""
        cached = record is not None
        record = record if cached else placeholder_record(config)
        meta = record.meta
        flops = training_flops(config, meta["flops_per_example"], meta["n_train"], meta["n_test"])
        timing = {}
        if cached:
            timing["wall_s"] = round(float(meta.get("wall_time_s", 0.0)), 1)
        elif config.device == "cpu":  # "auto" means a GPU where the plan will run
            timing["est_cpu_s"] = float(f"{flops / cpu_training_speed(config, meta):.3g}")  # a tiny run: not 0
        add_to_plan(config, Path(self.path), flops, packed_bytes(record), self.chapter, **timing)
        return record


class MissingRecordError(LookupError):
    """A run that a page reads from shipped records is not among them."""

    def __init__(self, config: TrainConfig):
        super().__init__(f"no record {config.key()} ({config.model} x{config.members} on {config.dataset}) "
                         "among the shipped records: it has not been trained at this scale yet")
        self.config = config


class RecordsOnly:
    """Hands `runner.run` the cached and shipped records only: a miss raises
    `MissingRecordError` instead of training (full-profile pages rendered on a CPU).

    folder: a records folder searched after the cache and $FAIRENS_RECORDS. A full-profile page
    names the book's records/full here, so that it finds them wherever it is opened (JupyterLab,
    papermill, pytest), not only under `python -m fairens_core book --full`, which sets the variable.
    """

    def __init__(self, folder: str | Path | None = None):
        self.folder = None if folder is None else Path(folder)

    def note(self, config: TrainConfig, record: RunRecord | None = None) -> RunRecord:
        if record is None and self.folder is not None:
            record = find_record(config.key(), extra_dirs=[self.folder])
        if record is None:
            raise MissingRecordError(config)
        return record


# ---------------------------------------------------------------------------- the plan file
def read_plan(path: str | Path) -> list[dict]:
    """Entries of a plan file, in the order they were planned: {key, config, chapter, train_flops}."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"plan={str(path)!r}: no such file; write one with `python -m fairens_core plan`")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def add_to_plan(config: TrainConfig, path: Path, train_flops: int, packed_bytes: int = 0, chapter: str = "",
                **timing: float) -> None:
    """Append `config` to the plan at `path` unless it is already there. `timing`: `wall_s` (the
    cached record's training time) or `est_cpu_s` (an estimate for a CPU run)."""
    key = config.key()
    if path.exists() and any(e["key"] == key for e in read_plan(path)):
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {"key": key, "chapter": chapter, "train_flops": train_flops,
             "packed_bytes": packed_bytes, **timing,
             "config": config.key_fields() | {k: getattr(config, k) for k in SPEED_FIELDS}}
    with path.open("a") as f:
        f.write(json.dumps(entry, default=list) + "\n")


# ---------------------------------------------------------------------------- cost
def training_flops(config: TrainConfig, flops_per_example: int, n_train: int, n_test: int) -> int:
    """Floating-point operations of training `config` (forward + backward ≈ 3 × forward on every
    training example of every step, plus a forward pass over the test set at each evaluation)."""
    steps_per_epoch = n_train // config.batch_size
    parent, phase = plan_phases(config, steps_per_epoch)
    member_steps = config.members * (phase.stop - phase.start) + (parent.stop if parent else 0)
    fork = parent.stop if parent else -1  # evaluations up to the fork are the parent's alone
    evals = sum(1 if step <= fork else config.members for step in evaluation_steps(config, steps_per_epoch))
    tracked = n_train if config.track_outputs == -1 else min(config.track_outputs, n_train)
    return flops_per_example * (3 * member_steps * config.batch_size + evals * (n_test + tracked))


_cpu_speed: dict[tuple, float] = {}  # (architecture, group size, batch, objective) -> FLOP/s


def cpu_training_speed(config: TrainConfig, meta: dict, steps: int = 3) -> float:
    """Training FLOP/s this CPU achieves on `config`: `steps` timed optimizer steps (after one
    warm-up step) of one group of its members, with the training code itself (`build_ensemble`,
    `training_step`) on random inputs, counted as `training_flops` counts them (3 × forward).
    Measured once per architecture, group size and batch size in a process. A busy CPU measures
    slow, so the estimate errs long."""
    cfg = config.replace(device="cpu").validate()
    shape, classes = tuple(meta["input_shape"]), int(meta["num_classes"])
    group = len(group_members(cfg)[0])
    batch = min(cfg.batch_size, int(meta["n_train"]))
    ident = (cfg.model, cfg.width, cfg.dropout, shape, classes, group, batch, cfg.is_joint, cfg.execution)
    if ident not in _cpu_speed:
        device = torch.device("cpu")
        members = [init_member(cfg, shape, classes, seed) for seed in range(group)]
        ens = build_ensemble(cfg, members, device)
        opt = make_optimizer(cfg, ens.parameters())
        task = meta.get("task", "classification")
        x = torch.randn(group, batch, *shape)
        y = torch.randn(group, batch, classes) if task == "regression" else torch.randint(classes, (group, batch))
        ens.train()
        with training_threads(device):  # the threads the run will train with
            for i in range(steps + 1):
                if i == 1:
                    start = time.perf_counter()
                training_step(cfg, task, ens, opt, x, y)
            per_step = (time.perf_counter() - start) / steps
        _cpu_speed[ident] = 3 * meta["flops_per_example"] * batch * group / max(per_step, 1e-9)
    return _cpu_speed[ident]


# ---------------------------------------------------------------------------- placeholders
def placeholder_record(config: TrainConfig):
    """A record shaped like `config`'s real one, without training: real dataset, metadata and
    initial weights; made-up logits (right on most examples) and histories."""
    cfg = config.validate()
    ds = load_dataset(cfg.dataset, cfg.data_root, **cfg.dataset_options)
    spe = len(ds.y_train) // cfg.batch_size
    if spe == 0:
        raise ValueError(f"batch_size={cfg.batch_size} exceeds the {len(ds.y_train)} training examples")
    steps = evaluation_steps(cfg, spe)
    gen = torch.Generator().manual_seed(int(cfg.key(), 16) % 2**63)
    m = cfg.members

    def outputs(y: torch.Tensor) -> torch.Tensor:  # (M, n, C)
        if ds.task == "regression":
            return (y.float().view(1, -1, 1) + 0.5 * torch.randn(m, len(y), 1, generator=gen))
        noise = torch.randn(m, len(y), ds.num_classes, generator=gen)
        return noise + 3 * torch.nn.functional.one_hot(y, ds.num_classes)

    ens = None  # initial weights, only where the record keeps weights
    if cfg.save_weights or cfg.snapshot_weights:
        ens = StackedEnsemble(init_members(cfg, ds.input_shape, ds.num_classes, range(m)))
    n_probs = None if cfg.track_predictions == -1 else cfg.track_predictions
    n_out = None if cfg.track_outputs == -1 else cfg.track_outputs
    history = History()
    for step in steps:
        extra = {}
        if cfg.track_predictions:
            extra["probs"] = outputs(ds.y_test[:n_probs]).softmax(-1).half()
        if cfg.track_outputs:
            extra["train_outputs"], extra["test_outputs"] = outputs(ds.y_train[:n_out]), outputs(ds.y_test[:n_out])
        if cfg.snapshot_weights:
            extra["weights"] = ens.flat_weights()
        history.add(step, train_loss=torch.rand(m, generator=gen), train_acc=torch.rand(m, generator=gen),
                    test_loss=torch.rand(m, generator=gen), test_acc=torch.rand(m, generator=gen), **extra)
    part = {"test_logits": outputs(ds.y_test).half(), "history": history.state,
            "weights": ens.state_stacked() if cfg.save_weights else None}
    record = assemble(cfg, ds, [part], torch.device("cpu"), 0.0)
    meta = record.meta
    flops = training_flops(cfg, meta["flops_per_example"], meta["n_train"], meta["n_test"])
    meta["wall_time_s"] = flops / PLACEHOLDER_FLOPS_PER_SECOND  # a stand-in: costs stay > 0
    meta["placeholder"] = True
    return record


def packed_bytes(record) -> int:
    """Uncompressed bytes of `record` as `pack` writes it (no final weights); the archive is
    compressed, so this is an upper bound."""
    kept = [record.test_logits.half(), *record.history.values(), *record.groups_test.values()]
    if record.test_probs_trajectory is not None:
        kept.append(record.test_probs_trajectory.half())
    kept += [t.float() for t in (record.train_outputs_trajectory, record.test_outputs_trajectory,
                                 record.weight_snapshots) if t is not None]
    return sum(t.numel() * t.element_size() for t in kept)


# ---------------------------------------------------------------------------- reading a plan
def _si(flops: float) -> str:
    """FLOPs with an SI prefix: "1.2 T", "74.6 P"."""
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6)):
        if flops >= scale:
            return f"{flops / scale:.3g} {prefix}"
    return f"{flops:.3g} "


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min" if seconds < 5400 \
        else f"{seconds / 3600:.1f} h"


def entry_seconds(entry: dict, flops_per_second: float | None = None) -> tuple[float | None, str]:
    """(seconds, how it was obtained) for one plan entry: at `flops_per_second` when given,
    else the cached record's wall time, else the CPU estimate; (None, "") when none applies."""
    if flops_per_second:
        return entry["train_flops"] / flops_per_second, "est."
    if "wall_s" in entry:
        return entry["wall_s"], "cached"
    if "est_cpu_s" in entry:
        return entry["est_cpu_s"], "est. CPU"
    return None, ""


def describe(entries: list[dict], flops_per_second: float | None = None) -> str:
    """A table of planned runs, their training cost and time, with totals per chapter.

    Time: at `flops_per_second` when given (a GPU's achieved rate); otherwise a cached run's
    measured wall time, or an estimate for a CPU run measured on this CPU (`cpu_training_speed`)."""
    rows = [f"{'chapter':<22} {'key':<16} {'dataset':<13} {'model':<10} {'width':>5} {'M':>3} {'ep':>4} "
            f"{'FLOP':>8} {'MB':>7}  time"]
    by_chapter: dict[str, list[float]] = {}
    for e in entries:
        c, mb = e["config"], e.get("packed_bytes", 0) / 1e6
        seconds, how = entry_seconds(e, flops_per_second)
        totals = by_chapter.setdefault(e["chapter"] or "(no chapter)", [0.0, 0.0, 0.0])
        totals[0] += e["train_flops"]
        totals[1] += mb
        totals[2] += seconds or 0.0
        time_text = f"{_duration(seconds)} ({how})" if seconds is not None else "—"
        rows.append(f"{e['chapter']:<22} {e['key']:<16} {c['dataset']:<13} {c['model']:<10} {c['width']:>5} "
                    f"{c['members']:>3} {c['epochs']:>4} {_si(e['train_flops']):>8} {mb:7.1f}  {time_text}")
    by_chapter["total"] = [sum(v[i] for v in by_chapter.values()) for i in range(3)]
    for chapter, (flops, mb, seconds) in by_chapter.items():
        rows.append(f"{chapter:<22} {'':<16} {'':<13} {'':<10} {'':>5} {'':>3} {'':>4} {_si(flops):>8} {mb:7.1f}  "
                    f"{_duration(seconds) if seconds else '—'}")
    if flops_per_second:
        rows.append(f"(time: at {_si(flops_per_second)}FLOP/s achieved; MB: uncompressed, without weights)")
    else:
        rows.append("(time: cached = the record's measured training time; est. CPU = from this CPU's measured "
                    "speed on each model; a GPU run without --flops-per-second has none; MB: uncompressed, "
                    "without weights)")
    return "\n".join(rows)
