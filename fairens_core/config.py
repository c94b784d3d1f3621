"""`TrainConfig`: everything that determines an ensemble run, as one plain dataclass.

A record is keyed by a hash of this config (minus fields that only say *where* or *how fast*
it runs), so the same config gives the same record and re-running trains nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import inspect
import json
from dataclasses import dataclass, field

from .augment import AUGMENTATIONS
from .data import DATASETS
from .models import MODELS
from .randomness import parse_vary
from .schema import Spec

# Version of the record format and of the training numerics; part of every cache key, so a change
# that alters what a config trains (or how a record is laid out) retires the old records.
FORMAT_VERSION = 2  # 2: learner dropout scales the ensemble term by the kept members (objectives.augmented_loss)
# Version of what a spawned run (spawn_step set) records, in those runs' keys only.
SPAWN_PROTOCOL = 2  # 2: children are evaluated at their fork and at whole epochs after it (train.evaluation_steps)

OPTIMIZERS = ("sgd", "nesterov", "adam", "adamw")
SCHEDULES = ("constant", "multistep", "cosine", "triangular")
LEARNER_DROPOUT_DRAWS = ("batch", "example")
COMBINE = ("prob", "score")
REINIT_FROM = ("input", "output")
PRECISIONS = ("fp32", "bf16")
EXECUTIONS = ("auto", "packed", "vectorized", "loop")
EXECUTORS = ("local", "ray")

# Fields that do not change the result (where or how fast it runs) stay out of the cache key.
NOT_IN_KEY = ("device", "execution", "max_group", "data_root", "progress", "executor", "ray_address",
              "ray_cpus_per_task", "ray_gpus_per_task", "ray_retries", "channels_last", "compile")

_POSITIVE_INT = Spec("int", low=1)
_POSITIVE = Spec("float", low=0, low_open=True)
_NON_NEGATIVE = Spec("float", low=0)
_FRACTION = Spec("float", low=0, high=1)
_FRACTION_BELOW_ONE = Spec("float", low=0, high=1, high_open=True)
_BOOL = Spec("bool")

# What each field may be (schema.Spec); TrainConfig.validate checks every field against its spec,
# then the rules that tie fields together.
SPECS: dict[str, Spec] = {
    "dataset": Spec("str", choices=tuple(DATASETS)),
    "dataset_options": Spec("dict", note="(keyword options of the dataset's loader)"),
    "data_root": Spec("str", optional=True),
    "model": Spec("str", choices=tuple(MODELS)),
    "width": _POSITIVE,
    "dropout": _FRACTION_BELOW_ONE,
    "members": _POSITIVE_INT,
    "seed": Spec("int", low=0),
    "vary": Spec("str", note="(a preset of randomness.VARY_PRESETS or sources joined by '+')"),
    "epochs": _POSITIVE_INT,
    "batch_size": _POSITIVE_INT,
    "optimizer": Spec("str", choices=OPTIMIZERS),
    "lr": _POSITIVE,
    "momentum": _FRACTION,
    "weight_decay": _NON_NEGATIVE,
    "schedule": Spec("str", choices=SCHEDULES),
    "warmup_epochs": _NON_NEGATIVE,
    "milestones": Spec("tuple", item=Spec("float", low=0, high=1, low_open=True, high_open=True),
                       note="(fractions of training)"),
    "gamma": _FRACTION,
    "label_smoothing": _FRACTION_BELOW_ONE,
    "augment": Spec("tuple", item=Spec("str", choices=AUGMENTATIONS)),
    "beta": Spec("float", low=0, note="(0: independent, 1: joint)"),
    "combine": Spec("str", choices=COMBINE),
    "learner_dropout": _FRACTION_BELOW_ONE,
    "learner_dropout_draw": Spec("str", choices=LEARNER_DROPOUT_DRAWS),
    "allow_unbounded_beta": _BOOL,
    "spawn_step": Spec("int", low=0, optional=True, note="(a number of steps)"),
    "spawn_reset": _BOOL,
    "reinit_fraction": _FRACTION,
    "reinit_from": Spec("str", choices=REINIT_FROM),
    "track_predictions": Spec("int", low=-1, note="(-1: all)"),
    "track_outputs": Spec("int", low=-1, note="(-1: all)"),
    "snapshot_weights": _BOOL,
    "save_weights": _BOOL,
    "device": Spec("str", pattern=r"auto|cpu|cuda(:\d+)?", allowed="'auto', 'cpu' or 'cuda[:n]'"),
    "precision": Spec("str", choices=PRECISIONS),
    "execution": Spec("str", choices=EXECUTIONS),
    "max_group": Spec("int", low=1, optional=True),
    "progress": _BOOL,
    "executor": Spec("str", choices=EXECUTORS),
    "ray_address": Spec("str", optional=True),
    "ray_cpus_per_task": Spec("float", low=0, low_open=True, optional=True),
    "ray_gpus_per_task": Spec("float", low=0, optional=True),
    "ray_retries": Spec("int", low=0),
    "channels_last": _BOOL,
    "compile": _BOOL,
}


@dataclass
class TrainConfig:
    # data
    dataset: str = "mnist1d"
    dataset_options: dict = field(default_factory=dict)  # passed to load_dataset, e.g. n_samples
    data_root: str | None = None  # None: $FAIRENS_DATA
    # model
    model: str = "cnn1d"
    width: float = 1
    dropout: float = 0.0
    # ensemble and randomness (Ko et al. 2023, §4.2)
    members: int = 5
    seed: int = 0
    vary: str = "all"  # which sources differ between members, see randomness.VARY_PRESETS
    # optimisation (defaults: a one-cycle recipe that takes cnn1d to ~95% on mnist1d in 10 epochs)
    epochs: int = 10
    batch_size: int = 64
    optimizer: str = "nesterov"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "triangular"  # linear warm-up over warmup_epochs, then linear decay to 0
    warmup_epochs: float = 2.5
    milestones: tuple = (0.5, 0.75)  # multistep: fractions of training where lr *= gamma
    gamma: float = 0.1
    label_smoothing: float = 0.0
    augment: tuple = ()  # subset of AUGMENTATIONS
    # objective (Jeffares et al. 2023): L_beta = (1 - beta) * mean member loss + beta * ensemble loss
    beta: float = 0.0
    combine: str = "prob"  # ensemble of probabilities or of scores (logits)
    learner_dropout: float = 0.0  # drop members from the ensemble term during training
    # "batch": one mask per batch, each member dropped with probability p, at least one kept, the
    # ensemble term weighted by the k kept; "example": the authors' code (joint-ensembles): per
    # example a fixed k = round((1 - p) M) kept members, whose losses alone are averaged
    learner_dropout_draw: str = "batch"
    allow_unbounded_beta: bool = False  # beta > 1 is unbounded below (Thm 5.1)
    # coupling: shared early training, then spawned children (the coupling paper): one parent for spawn_step steps, then `members` children
    spawn_step: int | None = None
    spawn_reset: bool = False  # coupled-to-t-reset: fresh optimizer and schedule at the fork
    reinit_fraction: float = 0.0  # share of parameters re-initialised at the fork
    reinit_from: str = "input"
    # what the record keeps
    track_predictions: int = 0  # per-epoch test probabilities of the first n examples (-1: all)
    track_outputs: int = 0  # per-epoch raw outputs on the first n train and n test examples (-1: all)
    snapshot_weights: bool = False  # per-epoch flattened weights of every member
    save_weights: bool = True  # final weights (to rebuild the members later)
    # execution (not part of the cache key)
    device: str = "auto"
    precision: str = "fp32"
    # "packed": members as one network of grouped layers (packed.py), the fast path; "vectorized":
    # stacked parameters under torch.vmap, the reference; "loop": one member at a time; "auto":
    # packed on CUDA, vectorized elsewhere (equally fast on a CPU, and the CPU records stay those
    # of format 2). Not in the key: the modes agree to float rounding (tests/test_packed.py),
    # and a record names the mode that made it (meta["execution"]).
    execution: str = "auto"
    max_group: int | None = None  # members per vectorized group (memory); None: all at once
    progress: bool = True
    # where the groups of members run: "local" (this process) or "ray" (one Ray task per group of
    # max_group members; RAY_ADDRESS or ray_address picks the cluster, none starts a local instance)
    executor: str = "local"
    ray_address: str | None = None
    ray_cpus_per_task: float | None = None  # None: train.CPU_THREADS (a task on a CPU trains with as many)
    ray_gpus_per_task: float | None = None  # None: 1 when the device is CUDA ("auto" on a GPU cluster), else 0
    ray_retries: int = 3  # re-runs of a task whose worker died; a Python error is not retried
    # speed only, same result up to float rounding: image batches and conv weights in channels-last
    # memory layout (cuDNN's NHWC kernels under bf16), and torch.compile of the training forward
    # (CUDA only: on another device it is ignored with a warning)
    channels_last: bool = False
    compile: bool = False

    def __post_init__(self):
        # Normalise what can be (np.int64(3) -> 3, augment="crop" -> ("crop",)) so that the key is
        # right before validate(); a value that fails its spec stays as given for validate() to name.
        for name, spec in SPECS.items():
            with contextlib.suppress(ValueError):
                setattr(self, name, spec.check(name, getattr(self, name)))

    # ------------------------------------------------------------------ identity
    def key_fields(self) -> dict:
        d = {k: v for k, v in dataclasses.asdict(self).items() if k not in NOT_IN_KEY}
        if d["learner_dropout_draw"] == "batch" or not self.learner_dropout:
            del d["learner_dropout_draw"]  # added later: the records made before keep their names
        return d

    def key(self) -> str:
        """Hash of every field that changes the result: the record's name in the cache."""
        fields = {"format": FORMAT_VERSION, **self.key_fields()}
        if self.spawn_step is not None:  # spawned runs only, so other records keep their keys
            fields["spawn_protocol"] = SPAWN_PROTOCOL
        blob = json.dumps(fields, sort_keys=True, default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown config field(s) {unknown}; allowed: {sorted(names)}")
        return cls(**d)

    # ------------------------------------------------------------------ validation
    @property
    def vary_sources(self) -> tuple[str, ...]:
        return parse_vary(self.vary)

    @property
    def is_joint(self) -> bool:
        """True when the objective couples members (anything but independent training)."""
        return self.beta != 0

    def validate(self) -> "TrainConfig":
        """Check every field; raise ValueError naming the field and what is allowed."""
        for name, spec in SPECS.items():
            setattr(self, name, spec.check(name, getattr(self, name)))
        loader_options = [p.name for p in inspect.signature(DATASETS[self.dataset]).parameters.values()
                          if p.kind is p.KEYWORD_ONLY]
        unknown = sorted(set(self.dataset_options) - set(loader_options))
        if unknown:
            raise ValueError(f"dataset_options={self.dataset_options!r}: unknown option(s) {unknown} for "
                             f"dataset {self.dataset!r}; allowed: {loader_options}")
        if self.executor == "ray" and importlib.util.find_spec("ray") is None:
            raise ValueError("executor='ray' needs the ray package (pip install ray); use executor='local'")
        if self.warmup_epochs >= self.epochs:
            raise ValueError(f"warmup_epochs={self.warmup_epochs} must be < epochs={self.epochs}")
        sources = self.vary_sources  # raises on an unknown preset

        # objective (Jeffares et al. 2023)
        if self.beta > 1 and not self.allow_unbounded_beta:
            raise ValueError(
                f"beta={self.beta} > 1 makes L_beta unbounded below (Jeffares et al. 2023, Thm 5.1); "
                "set allow_unbounded_beta=True to train it anyway"
            )
        if self.is_joint:
            if "batch_order" in sources or "augmentation" in sources:
                raise ValueError(
                    f"beta={self.beta} couples members through the ensemble loss, so all members must "
                    f"see the same batches: vary={self.vary!r} must not include batch_order or augmentation "
                    "(use vary='init' or 'none')"
                )
            if self.execution == "loop":
                raise ValueError("execution='loop' trains members one at a time; beta > 0 needs 'vectorized'")
            if self.max_group is not None and self.max_group < self.members:
                raise ValueError("beta > 0 needs all members in one group: max_group must be None or >= members")
        if self.learner_dropout and not self.is_joint:
            raise ValueError("learner_dropout only acts on the ensemble term: it needs beta > 0")

        # coupling: shared early training, then spawned children (the coupling paper)
        if self.spawn_step is not None:
            if not ({"batch_order", "augmentation"} & set(sources)):
                raise ValueError(
                    f"spawn_step is set but vary={self.vary!r} gives children nothing to differ by after the "
                    "fork: include batch_order or augmentation"
                )
            if self.is_joint:
                raise ValueError("spawn_step with beta > 0 is not supported")
        elif self.spawn_reset or self.reinit_fraction:
            raise ValueError("spawn_reset and reinit_fraction need spawn_step (the fork point)")
        return self
