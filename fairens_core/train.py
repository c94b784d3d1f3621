"""Train an ensemble: `train_ensemble(config) -> RunRecord`.

Members are trained in groups. A group is one module holding M members: a
`packed.PackedEnsemble` (execution='packed': grouped layers, the fast path) or a
`ensemble.StackedEnsemble` (execution='vectorized': stacked parameters under torch.vmap, the
reference), of all members or chunks of `max_group`; execution='loop' trains groups of one.
Every random number a member sees is a function of (seed, source, member, step) only (see
`randomness`), so neither the mode nor the grouping changes the result beyond float rounding.

Coupled runs (the coupling paper) first train one parent for `spawn_step` steps with shared
randomness, then copy its state (weights, BatchNorm statistics, optimizer state) into every
child, which continues with its own batch order and augmentation.

The whole dataset lives on the training device; batches are gathered by index and augmented
there with parameters drawn once per epoch (`EpochDraws`), so no step waits for the host.
A checkpoint is written at the first epoch end after every CHECKPOINT_EVERY_S seconds (and at
the end), so a killed run resumes at a saved epoch and finishes with the same record as an
uninterrupted one.

On a CPU, the parent and every group train with CPU_THREADS intra-op threads (`training_threads`),
so the record does not depend on the machine's core count or the caller's torch.set_num_threads.
"""
from __future__ import annotations

import copy
import math
import platform
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from . import randomness as rnd
from .augment import apply as apply_augment
from .augment import check_kinds as check_augment_kinds
from .augment import draw as draw_augment
from .config import TrainConfig
from .checkpoints import Checkpoint, to_device
from .config import FORMAT_VERSION
from .data import Dataset, load_dataset, prepare_inputs
from .ensemble import StackedEnsemble, init_member, init_members, reinit_names
from .models import model_flops
from .packed import PackedEnsemble
from .objectives import augmented_loss, member_losses
from .records import RunRecord, timestamp

EVAL_CHUNK = 1000  # test examples per evaluation batch
CHECKPOINT_EVERY_S = 60.0  # a group's state is saved at the first epoch end after this many seconds
# "loop" trains groups of one member: packed, a group of one is the plain member network
ENSEMBLES = {"packed": PackedEnsemble, "vectorized": StackedEnsemble, "loop": PackedEnsemble}
# Intra-op threads of every CPU training run. Some CPU kernels split a sum between threads (the
# weight gradients of convolutions and linear layers: measured on mnist1d's cnn1d, 1 and 4
# threads give other weights after one epoch), and training amplifies the last bit into other
# members. Two: the book's reference machine (and CI) has two cores; more cores are for training
# chapters or Ray tasks side by side, not for more threads inside one small network.
CPU_THREADS = 2


# ---------------------------------------------------------------------------- setup
def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use 'cpu' or 'auto'")
    return torch.device(device)


@contextmanager
def training_threads(device: torch.device):
    """Train with CPU_THREADS intra-op threads on a CPU (restored afterwards); a GPU run is left as is."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(CPU_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class DeviceData:
    """The dataset resident on the training device, inputs normalised once: float32, or bf16
    for bf16 training on CUDA (half the bytes gathered per step; the first layer would cast
    them anyway)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor

    @classmethod
    def from_dataset(cls, ds: Dataset, device: torch.device, dtype: torch.dtype = torch.float32) -> "DeviceData":
        prep = lambda x: prepare_inputs(x, ds.mean, ds.std, device).to(dtype)  # noqa: E731
        return cls(prep(ds.x_train), ds.y_train.to(device), prep(ds.x_test), ds.y_test.to(device))

    @classmethod
    def for_config(cls, cfg: TrainConfig, ds: Dataset, device: torch.device) -> "DeviceData":
        bf16 = cfg.precision == "bf16" and device.type == "cuda"
        return cls.from_dataset(ds, device, torch.bfloat16 if bf16 else torch.float32)


def resolve_execution(cfg: TrainConfig, device: torch.device) -> str:
    """cfg.execution with "auto" resolved: packed on CUDA, vectorized (vmap) elsewhere."""
    if cfg.execution != "auto":
        return cfg.execution
    return "packed" if device.type == "cuda" else "vectorized"


def build_ensemble(cfg: TrainConfig, members: list, device: torch.device) -> PackedEnsemble | StackedEnsemble:
    """The members as one module on `device`: packed grouped layers (execution='packed', and
    'loop' with groups of one), or stacked parameters under torch.vmap ('vectorized')."""
    execution = resolve_execution(cfg, device)
    if execution == "vectorized" and cfg.precision == "bf16" and device.type == "cuda" \
            and any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in members[0].modules()):
        raise ValueError(f"execution='vectorized' cannot train {cfg.model} (BatchNorm) in bf16 on CUDA: torch.vmap's "
                         "batch-norm rule rejects bf16 activations with float32 statistics; use execution='packed'")
    return ENSEMBLES[execution](members).to(device)


def narrow_pointwise_convolutions(member: torch.nn.Module) -> list[str]:
    """The 1x1 convolutions of `member` with fewer than 8 input channels, by name: on a CPU without
    AVX-512, oneDNN's channels-last backward of such a convolution hangs or crashes (torch 2.14.1)."""
    return [name for name, m in member.named_modules()
            if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1) and m.in_channels < 8]


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    """One optimizer over the stacked parameters (elementwise, so exactly M optimizers). On CUDA
    the fused kernels: one launch per step for all parameters instead of one per tensor; on the
    CPU the default implementation, whose rounding the default-profile records were made with."""
    params = list(params)
    fused = {"fused": True} if params and params[0].is_cuda else {}
    if cfg.optimizer in ("sgd", "nesterov"):
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                               nesterov=cfg.optimizer == "nesterov", **fused)
    cls = torch.optim.Adam if cfg.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=cfg.lr, weight_decay=cfg.weight_decay, **fused)


def lr_factor(cfg: TrainConfig, step: int, total: int, steps_per_epoch: int) -> float:
    """Learning-rate multiplier at `step` of a schedule lasting `total` steps."""
    warmup = cfg.warmup_epochs * steps_per_epoch
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    if cfg.schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.schedule == "multistep":
        return cfg.gamma ** sum(step >= m * total for m in cfg.milestones)
    if cfg.schedule == "triangular":
        return 1 - progress
    return 1.0


# ---------------------------------------------------------------------------- one phase
@dataclass
class Phase:
    """A stretch of training with one set of seeds: steps [start, stop)."""

    name: str  # "" (plain run), "parent" or "child"
    start: int
    stop: int
    schedule_start: int  # the step at which this phase's LR schedule starts
    schedule_length: int
    eval_origin: int = 0  # evaluations fall every epoch counted from this step (a child's fork)


class History:
    """Per-evaluation metrics of a group, (G, E) each, plus optional trajectories."""

    KEYS = ("train_loss", "train_acc", "test_loss", "test_acc")

    def __init__(self, state: dict | None = None):
        self.state = state or {"eval_step": [], **{k: [] for k in self.KEYS}, "probs": [], "weights": [],
                               "train_outputs": [], "test_outputs": []}

    def add(self, step, **values):
        self.state["eval_step"].append(step)
        for k, v in values.items():
            self.state[k].append(v.cpu())

    def expand(self, n: int) -> "History":
        """Parent history repeated for n children."""
        s = {k: ([v.expand(n, *v.shape[1:]).clone() for v in vals] if k != "eval_step" else list(vals))
             for k, vals in self.state.items()}
        return History(s)

    def stacked(self, key):
        vals = self.state[key]
        return torch.stack(vals, 1) if vals else None


def epoch_order(seeds: list[int], epoch: int, n: int, device) -> torch.Tensor:
    """(G, n): member i's permutation of the training set in `epoch`, from its batch-order seed."""
    return torch.stack([torch.randperm(n, generator=rnd.generator(s, "epoch", epoch)) for s in seeds]).to(device)


@dataclass
class EpochDraws:
    """Every random number the steps of one epoch need, drawn on the CPU from the members' seeds
    and moved to the device in one transfer: batch order (G, n), augmentation parameters and
    learner-dropout masks per step. The steps themselves then never wait for the host."""

    first_step: int
    order: torch.Tensor  # (G, n) indices into the training set
    augment: dict[str, torch.Tensor]  # name -> (S, G*B, ...)
    keep: torch.Tensor | None  # (S, G) or, drawn per example, (S, B, G) bool: members kept in the ensemble term

    @classmethod
    def draw(cls, cfg, steps: range, epoch: int, order_seeds, aug_seeds, n_train, example_shape, device):
        augment_steps = [draw_augment(cfg.augment, cfg.batch_size, example_shape, [rnd.generator(s, "augment", t) for s in aug_seeds])
                         for t in steps] if cfg.augment else []
        augment = {k: torch.stack([a[k] for a in augment_steps]).to(device, non_blocking=True)
                   for k in (augment_steps[0] if augment_steps else {})}
        keep = (torch.stack([learner_dropout_mask(cfg, len(aug_seeds), t) for t in steps]).to(device)
                if cfg.learner_dropout else None)
        return cls(steps.start, epoch_order(order_seeds, epoch, n_train, device), augment, keep)

    def batch(self, step: int, batch_size: int, steps_per_epoch: int):
        """(indices (G, B), augmentation parameters, keep mask) of `step`."""
        pos = step % steps_per_epoch
        i = step - self.first_step
        idx = self.order[:, pos * batch_size:(pos + 1) * batch_size]
        return idx, {k: v[i] for k, v in self.augment.items()}, None if self.keep is None else self.keep[i]


@torch.no_grad()
def evaluate(ens: StackedEnsemble, x: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """Logits (G, N, C) of every member on x (N, ...), in eval mode."""
    was_training = ens.training
    ens.eval()
    out = []
    for chunk in x.split(EVAL_CHUNK):
        with autocast(cfg, chunk.device):
            out.append(ens(chunk.expand(ens.size, *chunk.shape)).float())
    ens.train(was_training)
    return torch.cat(out, 1)


def autocast(cfg, device):
    """bf16 autocast for precision='bf16' on CUDA; off elsewhere (a CPU trains in float32)."""
    enabled = cfg.precision == "bf16" and device.type == "cuda"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)


def training_forward(cfg, ens: StackedEnsemble):
    """The ensemble's forward for training steps: compiled with cfg.compile on CUDA, else `ens`.

    Only the train-mode forward is compiled (backward follows through AOTAutograd); evaluation
    stays eager. Static shapes: each group size compiles once, and every step has the same shape.
    """
    if cfg.compile and next(ens.parameters()).device.type == "cuda":
        return torch.compile(ens, dynamic=False)
    return ens


def training_step(cfg, task, forward, opt, x, y, keep=None):
    """One optimizer step of a group: every member on its own batch x (G, B, ...), the loss,
    backward, update. Returns the loss, each member's loss (G,) and the outputs (G, B, C), detached."""
    with autocast(cfg, y.device):
        out = forward(x).float()
    if cfg.is_joint:  # L_beta couples the members through their combined prediction
        loss, losses = augmented_loss(out, y[0], cfg.beta, task, cfg.combine, keep, cfg.label_smoothing)
    else:  # independent: the sum of the members' losses, so each gets its own gradient
        losses = member_losses(out, y, task, cfg.label_smoothing)
        loss, losses = losses.sum(), losses.detach()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach(), losses, out.detach()


class NonFiniteLossError(FloatingPointError):
    """Training produced a NaN or infinite loss; nothing of the run is cached."""


def train_steps(cfg, task, data, ens, opt, phase, members, history, steps_per_epoch, save_ckpt, bar):
    """Train `ens` (members `members`) over the steps of `phase`; evaluate at each epoch's end
    (epochs counted from `phase.eval_origin`: a child's fork) and at the phase's end.

    This is the whole training loop: gather batches, augment, forward all members at once,
    L_beta, backward, step. Nothing in it waits for the device until the epoch's evaluation.
    """
    vary = () if phase.name == "parent" else cfg.vary_sources
    order = [rnd.source_seed(cfg.seed, "batch_order", m, vary, phase.name) for m in members]
    aug = [rnd.source_seed(cfg.seed, "augmentation", m, vary, phase.name) for m in members]
    # dropout masks (models with dropout) count as augmentation noise
    ens.randomness = "different" if "augmentation" in vary else "same"
    device = data.x_train.device
    n_train, example_shape = data.x_train.shape[0], tuple(data.x_train.shape[1:])
    run_loss = torch.zeros(len(members), device=device)
    run_correct = torch.zeros_like(run_loss)
    first_bad = torch.full((), -1, device=device)  # first step with a non-finite loss
    seen, draws = 0, None
    ens.train()
    forward = training_forward(cfg, ens)
    for step in range(phase.start, phase.stop):
        for group in opt.param_groups:
            group["lr"] = cfg.lr * lr_factor(cfg, step - phase.schedule_start, phase.schedule_length, steps_per_epoch)
        epoch = step // steps_per_epoch
        if draws is None or step % steps_per_epoch == 0:
            steps = range(step, min(phase.stop, (epoch + 1) * steps_per_epoch))
            draws = EpochDraws.draw(cfg, steps, epoch, order, aug, n_train, example_shape, device)
        idx, aug_params, keep = draws.batch(step, cfg.batch_size, steps_per_epoch)
        x = apply_augment(data.x_train[idx], cfg.augment, aug_params)
        y = data.y_train[idx]
        if cfg.dropout:
            torch.manual_seed(rnd.derive_seed(cfg.seed, "dropout", step))  # model dropout masks
        loss, losses, out = training_step(cfg, task, forward, opt, x, y, keep)

        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss), step, first_bad)
        run_loss += losses
        if task == "classification":
            run_correct += (out.argmax(-1) == y).float().mean(1)
        seen += 1
        bar.update(len(members))
        if evaluates_after(phase, step, steps_per_epoch):
            check_finite(cfg, int(first_bad))
            log_eval(cfg, task, data, ens, history, step + 1, run_loss / seen, run_correct / seen)
            bar.set_postfix(test_acc=f"{history.state['test_acc'][-1].mean():.3f}")
            run_loss.zero_(), run_correct.zero_()
            seen = 0
            save_ckpt(step + 1, final=step + 1 == phase.stop)


def evaluates_after(phase: Phase, step: int, steps_per_epoch: int) -> bool:
    """Whether training evaluates after `step` of `phase`: at each whole epoch counted from
    `phase.eval_origin` (a child's fork) and at the phase's end."""
    return (step + 1 - phase.eval_origin) % steps_per_epoch == 0 or step + 1 == phase.stop


def evaluation_steps(cfg, steps_per_epoch: int) -> list[int]:
    """Every step a record of `cfg` holds an evaluation for (its history's eval_step), in order:
    the parent's, the fork's when the parent has none (t = 0), then the members'."""
    parent, phase = plan_phases(cfg, steps_per_epoch)
    steps = [s + 1 for s in range(parent.start, parent.stop) if evaluates_after(parent, s, steps_per_epoch)] \
        if parent else []
    if parent and not steps:
        steps = [phase.start]
    return steps + [s + 1 for s in range(phase.start, phase.stop) if evaluates_after(phase, s, steps_per_epoch)]


def check_finite(cfg, first_bad_step: int) -> None:
    """Stop a run whose loss became NaN or infinite, naming the step and the usual suspects."""
    if first_bad_step < 0:
        return
    suspects = f"lr={cfg.lr:g}, weight_decay={cfg.weight_decay:g}, warmup_epochs={cfg.warmup_epochs:g}"
    if cfg.is_joint:
        suspects += f", beta={cfg.beta:g}"
    raise NonFiniteLossError(f"the training loss is not finite at step {first_bad_step}: the run diverged; "
                             f"nothing is cached. Check {suspects} (a smaller lr usually helps)")


def learner_dropout_mask(cfg, n: int, step: int) -> torch.Tensor | None:
    """Bool on the CPU, members kept in the ensemble term at `step` (Jeffares et al. 2023, App. G.7):
    (n,) for learner_dropout_draw="batch" (each dropped with probability p, at least one kept);
    (batch_size, n) for "example" (per example a random k = round((1 - p) n) of them, at least one)."""
    if not cfg.learner_dropout:
        return None
    if cfg.learner_dropout_draw == "example":
        k = max(1, round((1 - cfg.learner_dropout) * n))
        noise = torch.rand(cfg.batch_size, n, generator=rnd.generator(cfg.seed, "learner_dropout_example", step))
        return noise.argsort(1).argsort(1) < k  # each row: a uniformly random k-subset
    keep = torch.rand(n, generator=rnd.generator(cfg.seed, "learner_dropout", step)) >= cfg.learner_dropout
    keep[torch.randint(n, (1,), generator=rnd.generator(cfg.seed, "keep_one", step))] = True
    return keep


def tracked_count(n: int) -> int | None:
    """A track_* field as a slice end: the first n examples, None (all) for -1."""
    return None if n == -1 else n


def log_eval(cfg, task, data, ens, history, step, train_loss, train_acc):
    logits = evaluate(ens, data.x_test, cfg)
    y = data.y_test.expand(ens.size, -1)
    test_loss = member_losses(logits, y, task)
    test_acc = (logits.argmax(-1) == y).float().mean(1) if task == "classification" else torch.zeros_like(test_loss)
    extra = {}
    if cfg.track_predictions:
        extra["probs"] = logits[:, :tracked_count(cfg.track_predictions)].softmax(-1).half()
    if cfg.track_outputs:  # raw outputs (logits, or regression values) in eval mode, e.g. for train ERR/DIV
        n = tracked_count(cfg.track_outputs)
        extra["train_outputs"] = evaluate(ens, data.x_train[:n], cfg)
        extra["test_outputs"] = logits[:, :n]
    if cfg.snapshot_weights:
        extra["weights"] = ens.flat_weights()
    history.add(step, train_loss=train_loss, train_acc=train_acc, test_loss=test_loss, test_acc=test_acc, **extra)


# ---------------------------------------------------------------------------- groups
def train_phase(cfg, ds, data, members, phase, device, workdir, bar, start=None):
    """Train one group of members through `phase` (built here, or resumed from its checkpoint);
    returns (ensemble, optimizer, history). `train_steps` is the loop itself.

    `start` optionally gives the (ensemble, optimizer, history) to begin from: a parent's
    state copied into its children. Otherwise members start from their own init seeds.
    """
    if start is None:
        vary = () if phase.name == "parent" else cfg.vary_sources  # a parent's init is shared
        ens = build_ensemble(cfg, init_members(cfg, ds.input_shape, ds.num_classes, members, vary), device)
        opt, history = make_optimizer(cfg, ens.parameters()), History()
    else:
        ens, opt, history = start
    if cfg.channels_last:
        ens.use_channels_last()
    name = "parent" if phase.name == "parent" else f"members_{members[0]}-{members[-1]}"
    ckpt = Checkpoint(workdir / f"{name}.pt" if workdir else None)
    saved = ckpt.load()
    if saved is not None:  # resume: restore everything and skip the steps already done
        ens.load_stacked(to_device(saved["ensemble"], device))
        opt.load_state_dict(saved["optimizer"])
        history = History(saved["history"])
        bar.update(len(members) * (saved["step"] - phase.start))
        phase = replace(phase, start=saved["step"])

    last_save = time.monotonic()

    def save_ckpt(step, final=False):
        """At an epoch's end: a checkpoint every CHECKPOINT_EVERY_S seconds, and at the phase's end."""
        nonlocal last_save
        if final or time.monotonic() - last_save >= CHECKPOINT_EVERY_S:
            ckpt.save({"ensemble": ens.state_stacked(), "optimizer": opt.state_dict(), "step": step,
                       "history": history.state})
            last_save = time.monotonic()

    steps_per_epoch = len(ds.y_train) // cfg.batch_size
    train_steps(cfg, ds.task, data, ens, opt, phase, members, history, steps_per_epoch, save_ckpt, bar)
    return ens, opt, history


def spawn(cfg, parent, members, device, ds):
    """Children of a parent (ensemble of one): copies of its weights, buffers and optimizer state,
    optionally with a fraction of the weights re-initialised per child (the coupling paper, §3)."""
    ens, opt, history = parent
    n = len(members)
    state = {k: v.expand(n, *v.shape[1:]).clone() for k, v in ens.state_stacked().items()}
    names = reinit_names(ens.parameter_counts(), cfg.reinit_fraction, cfg.reinit_from)
    for i, m in enumerate(members if names else ()):
        fresh = dict(init_member(cfg, ds.input_shape, ds.num_classes,
                                 rnd.derive_seed(cfg.seed, "reinit", m)).named_parameters())
        for name in names:
            state[name][i] = fresh[name].detach()
    children = build_ensemble(cfg, [ens.member(0)] * n, device)
    children.load_stacked(to_device(state, device))
    child_opt = make_optimizer(cfg, children.parameters())
    if not cfg.spawn_reset:  # coupled-to-t: the children inherit the parent's optimizer state
        # a deep copy: state_dict() shares the parent's state tensors, which the children's
        # optimizer would otherwise update in place for every later group spawned from it
        parent_state = copy.deepcopy(opt.state_dict())
        for s in parent_state["state"].values():
            for k, v in s.items():
                if torch.is_tensor(v) and v.dim() > 0:
                    s[k] = v.expand(n, *v.shape[1:]).clone()
        child_opt.load_state_dict(parent_state)
    return children, child_opt, history.expand(n)


def plan_phases(cfg, steps_per_epoch) -> tuple[Phase | None, Phase]:
    """(parent phase or None, member phase) in optimizer steps."""
    total = cfg.epochs * steps_per_epoch
    if cfg.spawn_step is None:
        return None, Phase("", 0, total, 0, total)
    t = cfg.spawn_step
    parent = Phase("parent", 0, t, 0, total)
    # children are evaluated at whole epochs after their fork (and at its end), so every child's
    # history steps through the same number of epochs of its own training, whatever t
    if cfg.spawn_reset:  # coupled-to-t-reset: a fresh schedule of `total` steps after the fork
        return parent, Phase("child", t, t + total, t, total, eval_origin=t)
    return parent, Phase("child", t, total, 0, total, eval_origin=t)


def train_group(cfg, ds, data, members, phase, device, workdir, bar, parent=None) -> dict:
    """Train one group of members to the end (from the parent's state when there is one); returns
    what the record keeps of it: test logits (m, N, C) float16, history state and, optionally,
    weights. The unit an executor runs (`train_groups_here`, `distributed.train_groups_on_ray`)."""
    with training_threads(device):
        start = spawn(cfg, parent, members, device, ds) if parent else None
        if start is not None and not start[2].state["eval_step"]:  # a fork at step 0: no parent evaluation
            untrained = torch.full((len(members),), float("nan"))  # no training batches seen yet
            log_eval(cfg, ds.task, data, start[0], start[2], phase.start, untrained, untrained)
        ens, _, history = train_phase(cfg, ds, data, members, phase, device, workdir, bar, start)
        test_logits = evaluate(ens, data.x_test, cfg)
    return {"test_logits": test_logits.half().cpu(), "history": history.state,
            "weights": {k: v.float().cpu().contiguous() for k, v in ens.state_stacked().items()}
            if cfg.save_weights else None}


def done_path(workdir: Path | None, members: list[int]) -> Path | None:
    return workdir / f"members_{members[0]}-{members[-1]}.done.pt" if workdir else None


def group_members(cfg) -> list[list[int]]:
    ids = list(range(cfg.members))
    size = 1 if cfg.execution == "loop" else (cfg.max_group or cfg.members)
    return [ids[i:i + size] for i in range(0, len(ids), size)]


# ---------------------------------------------------------------------------- entry point
def train_groups_here(cfg, ds, data, groups, phase, parent, workdir, bar, device):
    """The local executor: train the groups one after another in this process; yield
    (members, part) as each finishes. (`distributed.train_groups_on_ray` is the other one.)"""
    for members in groups:
        yield members, train_group(cfg, ds, data, members, phase, device, workdir, bar, parent)


def train_ensemble(cfg: TrainConfig, workdir: str | Path | None = None, train_groups=train_groups_here) -> RunRecord:
    """Train the ensemble described by `cfg` and return its record.

    With `workdir`, each group checkpoints there (at epoch ends, every CHECKPOINT_EVERY_S
    seconds) and a rerun resumes from it; finished groups are kept, so an interrupted run loses
    nothing already finished. The caller removes `workdir` once the record is safely saved. `train_groups` runs the groups of members: here
    (`train_groups_here`) or elsewhere (`distributed.train_groups_on_ray`).
    """
    cfg = cfg.validate()
    device = resolve_device(cfg.device)
    cfg = cfg.replace(execution=resolve_execution(cfg, device))
    if cfg.compile and device.type != "cuda":
        warnings.warn(f"compile=True is a CUDA-only speed option; ignored on {device.type}", stacklevel=2)
    workdir = Path(workdir) if workdir else None
    ds = load_dataset(cfg.dataset, cfg.data_root, **cfg.dataset_options)
    steps_per_epoch = len(ds.y_train) // cfg.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size={cfg.batch_size} exceeds the {len(ds.y_train)} training examples")
    total = cfg.epochs * steps_per_epoch
    if cfg.spawn_step is not None and cfg.spawn_step > total:
        raise ValueError(f"spawn_step={cfg.spawn_step} is beyond the {total} steps of training")
    if ds.task == "regression" and cfg.beta and cfg.combine == "score":
        raise ValueError("combine='score' is for classification; regression ensembles average outputs")
    check_augment_kinds(cfg.augment, tuple(ds.input_shape))
    if cfg.channels_last and device.type == "cpu" and not torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
        narrow = narrow_pointwise_convolutions(init_member(cfg, ds.input_shape, ds.num_classes, cfg.seed))
        if narrow:
            warnings.warn(f"channels_last=True ignored: {cfg.model} at width {cfg.width} has 1x1 convolutions with "
                          f"fewer than 8 input channels ({', '.join(narrow)}), whose channels-last backward hangs "
                          "in oneDNN on this CPU (no AVX-512); the members train in the ordinary layout", stacklevel=2)
            cfg = cfg.replace(channels_last=False)
    data = DeviceData.for_config(cfg, ds, device)
    parent_phase, phase = plan_phases(cfg, steps_per_epoch)

    started = time.perf_counter()
    work = cfg.members * (phase.stop - phase.start) + (parent_phase.stop if parent_phase else 0)
    bar = tqdm(total=work, unit="member-step", desc=f"{cfg.model} ×{cfg.members} on {cfg.dataset}",
               disable=not cfg.progress, leave=False)
    parent = None
    if parent_phase is not None:
        with training_threads(device):
            parent = train_phase(cfg, ds, data, [0], parent_phase, device, workdir, bar)

    parts, todo = {}, []
    for members in group_members(cfg):
        done = done_path(workdir, members)
        part = Checkpoint(done).load()  # None: absent, or damaged (warned and moved aside)
        if part is not None:  # finished before an interruption
            parts[members[0]] = part
            bar.update(len(members) * (phase.stop - phase.start))
        else:
            todo.append(members)
    finished = train_groups(cfg, ds, data, todo, phase, parent, workdir, bar, device)
    for members, part in finished:
        if workdir is not None:
            Checkpoint(done_path(workdir, members)).save(part)
        parts[members[0]] = part
    bar.close()
    return assemble(cfg, ds, [parts[k] for k in sorted(parts)], device, time.perf_counter() - started)


def assemble(cfg, ds, parts, device, wall_time) -> RunRecord:
    """Concatenate the groups' results along the member dimension into one record."""
    histories = [History(p["history"]) for p in parts]
    cat = lambda key: torch.cat([h.stacked(key) for h in histories])  # noqa: E731
    history = {"eval_step": torch.tensor(histories[0].state["eval_step"])}
    history.update({k: cat(k) for k in History.KEYS})
    weights = None
    if cfg.save_weights:
        weights = {k: torch.cat([p["weights"][k] for p in parts]) for k in parts[0]["weights"]}
    probe = init_member(cfg, ds.input_shape, ds.num_classes, 0)
    meta = {
        "dataset": ds.name, "task": ds.task, "classes": ds.classes, "num_classes": ds.num_classes,
        "input_shape": list(ds.input_shape), "n_train": len(ds.y_train), "n_test": len(ds.y_test),
        "group_names": ds.group_names, "mean": ds.mean, "std": ds.std, "flops_per_example": model_flops(probe, ds.input_shape),
        "parameters": sum(p.numel() for p in probe.parameters()),
        "steps_per_epoch": len(ds.y_train) // cfg.batch_size,
        "device": str(device), "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "execution": cfg.execution, "wall_time_s": round(wall_time, 3), "torch": torch.__version__,
        "format": FORMAT_VERSION, "created": timestamp(),
    }
    return RunRecord(
        config=cfg.key_fields(), key=cfg.key(), test_logits=torch.cat([p["test_logits"] for p in parts]),
        y_test=ds.y_test, history=history, meta=meta, groups_test=dict(ds.groups_test),
        test_probs_trajectory=cat("probs") if cfg.track_predictions else None,
        train_outputs_trajectory=cat("train_outputs") if cfg.track_outputs else None,
        test_outputs_trajectory=cat("test_outputs") if cfg.track_outputs else None,
        y_train_tracked=ds.y_train[:tracked_count(cfg.track_outputs)] if cfg.track_outputs else None,
        weight_snapshots=cat("weights") if cfg.snapshot_weights else None, weights=weights)
