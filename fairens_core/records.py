"""Run records and the cache that makes re-running a chapter free.

A `RunRecord` is everything a chapter needs from one ensemble run (`runner.run(config)` finds
or trains it). On disk it is one
compressed NumPy archive, `<key>.npz`, next to `<key>.json` (config, metadata, SHA-256 of the
archive). `<key>` is `TrainConfig.key()`, a hash of every field that changes the result.

Archive contents (M members, N test examples, C classes, E evaluation points, P parameters):

    test_logits        (M, N, C) float16   final test logits of every member
    y_test             (N,)      int64/float32
    group/<attr>       (N,)      int64     test-set group codes (e.g. group/race)
    eval_step          (E,)      int64     optimizer step of each evaluation (end of epoch)
    train_loss, train_acc, test_loss, test_acc   (M, E) float32   per-epoch history
    test_probs_trajectory   (M, E, n, C) float16   optional: probabilities of the first n test examples
    train_outputs_trajectory (M, E, n, C) float32  optional: raw outputs on the first n train examples
    test_outputs_trajectory  (M, E, n, C) float32  optional: raw outputs on the first n test examples
    y_train_tracked    (n,)      int64/float32   optional: targets of those n train examples
    weight_snapshots   (M, E, P) float32   optional: flattened weights at every evaluation
    weight/<name>      (M, ...)  float32   optional: final parameters and buffers
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .config import FORMAT_VERSION, TrainConfig
from .data import prepare_inputs
from .ensemble import StackedEnsemble
from .models import build_model



def cache_root() -> Path:
    """$FAIRENS_CACHE, default ~/.cache/fairens."""
    return Path(os.environ.get("FAIRENS_CACHE", Path.home() / ".cache" / "fairens"))


def record_dirs() -> list[Path]:
    """Where records are looked up: the writable cache first, then read-only folders listed in
    $FAIRENS_RECORDS (os.pathsep-separated), e.g. the full-profile records shipped with the book."""
    extra = [Path(p) for p in os.environ.get("FAIRENS_RECORDS", "").split(os.pathsep) if p]
    return [cache_root() / "records", *extra]


@dataclass
class RunRecord:
    config: dict
    key: str
    test_logits: torch.Tensor  # (M, N, C) float16
    y_test: torch.Tensor  # (N,)
    history: dict[str, torch.Tensor]  # eval_step (E,), train_loss/train_acc/test_loss/test_acc (M, E)
    meta: dict = field(default_factory=dict)  # dataset info, device, wall time, flops, versions
    groups_test: dict[str, torch.Tensor] = field(default_factory=dict)
    test_probs_trajectory: torch.Tensor | None = None  # (M, E, n, C) float16
    train_outputs_trajectory: torch.Tensor | None = None  # (M, E, n, C) float32 raw outputs, train split
    test_outputs_trajectory: torch.Tensor | None = None  # (M, E, n, C) float32 raw outputs, test split
    y_train_tracked: torch.Tensor | None = None  # (n,) targets of the train examples in train_outputs_trajectory
    weight_snapshots: torch.Tensor | None = None  # (M, E, P) float32
    weights: dict[str, torch.Tensor] | None = None  # name -> (M, ...) float32
    path: Path | None = None

    # ------------------------------------------------------------------ views
    @property
    def members(self) -> int:
        return self.test_logits.shape[0]

    def logits(self) -> torch.Tensor:
        """(M, N, C) float32 test logits."""
        return self.test_logits.float()

    def probs(self) -> torch.Tensor:
        """(M, N, C) float32 test probabilities."""
        return self.logits().softmax(-1)

    def member_accuracy(self) -> torch.Tensor:
        """(M,) test accuracy of each member."""
        return (self.test_logits.argmax(-1) == self.y_test).float().mean(1)

    def ensemble_accuracy(self) -> float:
        """Test accuracy of the probability-averaged ensemble of all members."""
        return (self.probs().mean(0).argmax(-1) == self.y_test).float().mean().item()

    def models(self) -> list[torch.nn.Module]:
        """Rebuild every member as an nn.Module in eval mode (needs save_weights=True)."""
        if self.weights is None:
            why = ("they were dropped when it was packed (pack --keep-weights keeps them)"
                   if self.meta.get("weights_dropped") else "train with save_weights=True")
            raise ValueError(f"record {self.key} has no weights: {why}")
        cfg = TrainConfig.from_dict(self.config)
        shape, classes = tuple(self.meta["input_shape"]), self.meta["num_classes"]
        out = []
        for m in range(self.members):
            model = build_model(cfg.model, shape, classes, width=cfg.width, dropout=cfg.dropout)
            model.load_state_dict({k: v[m] for k, v in self.weights.items()})
            out.append(model.eval())
        return out

    @torch.no_grad()
    def predict(self, x: torch.Tensor, device: str = "cpu", chunk: int = 1000) -> torch.Tensor:
        """Logits of every member on new inputs x, given in the
        dataset's raw format (e.g. uint8 images, normalised here as in training).

        ``x`` (N, ...) -> (M, N, C) float32 on the CPU."""
        ens = StackedEnsemble(self.models()).to(device).eval()
        x = prepare_inputs(x, self.meta.get("mean"), self.meta.get("std"), torch.device(device))
        return torch.cat([ens(c.expand(self.members, *c.shape)) for c in x.split(chunk)], 1).float().cpu()

    # ------------------------------------------------------------------ disk
    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {"test_logits": self.test_logits.half(), "y_test": self.y_test}
        arrays.update({f"group/{k}": v for k, v in self.groups_test.items()})
        arrays.update(self.history)
        if self.test_probs_trajectory is not None:
            arrays["test_probs_trajectory"] = self.test_probs_trajectory.half()
        for name in ("train_outputs_trajectory", "test_outputs_trajectory"):
            if getattr(self, name) is not None:
                arrays[name] = getattr(self, name).float()
        if self.y_train_tracked is not None:
            arrays["y_train_tracked"] = self.y_train_tracked
        if self.weight_snapshots is not None:
            arrays["weight_snapshots"] = self.weight_snapshots
        if self.weights is not None:
            arrays.update({f"weight/{k}": v for k, v in self.weights.items()})
        path = directory / f"{self.key}.npz"
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(tmp, **{k: v.cpu().numpy() for k, v in arrays.items()})
        os.replace(tmp, path)  # atomic: a crash never leaves a half-written record
        sidecar = {"format": FORMAT_VERSION, "key": self.key, "sha256": _sha256(path),
                   "config": self.config, "meta": self.meta}
        _write_json(directory / f"{self.key}.json", sidecar)
        self.path = path
        return path

    @classmethod
    def load(cls, path: Path) -> "RunRecord":
        """Load `<key>.npz`, verifying its checksum against `<key>.json`."""
        path = Path(path)
        sidecar = json.loads(path.with_suffix(".json").read_text())
        if sidecar["sha256"] != _sha256(path):
            raise CorruptRecordError(f"checksum mismatch for {path}: the record is damaged")
        with np.load(path) as z:
            a = {k: torch.from_numpy(z[k]) for k in z.files}
        prefixed = lambda p: {k[len(p):]: v for k, v in a.items() if k.startswith(p)}  # noqa: E731
        history = {k: a[k] for k in ("eval_step", "train_loss", "train_acc", "test_loss", "test_acc")}
        return cls(config=sidecar["config"], key=sidecar["key"], test_logits=a["test_logits"],
                   y_test=a["y_test"], history=history, meta=sidecar["meta"],
                   groups_test=prefixed("group/"), test_probs_trajectory=a.get("test_probs_trajectory"),
                   train_outputs_trajectory=a.get("train_outputs_trajectory"),
                   test_outputs_trajectory=a.get("test_outputs_trajectory"), y_train_tracked=a.get("y_train_tracked"),
                   weight_snapshots=a.get("weight_snapshots"), weights=prefixed("weight/") or None, path=path)


class CorruptRecordError(RuntimeError):
    pass


def find_record(key: str) -> RunRecord | None:
    """The cached record for `key`, or None. A damaged record is ignored (and retrained)."""
    for d in record_dirs():
        path = d / f"{key}.npz"
        if path.exists() and path.with_suffix(".json").exists():
            try:
                return RunRecord.load(path)
            except CorruptRecordError as err:
                print(f"warning: {err}; it will be recomputed")
    return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=str))
    os.replace(tmp, path)


def timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")
