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

Nothing read from the cache can run code: the archive is read with `np.load(allow_pickle=False)`
and the sidecar is JSON. A record is trusted only for the key it was asked for: the sidecar's
`key`, and the key recomputed from its `config`, must both equal it, and the archive must match
its SHA-256. A record that fails any check is named in a `DamagedCacheWarning`, moved aside
(`<name>.corrupt-<time>`; records in the read-only $FAIRENS_RECORDS folders are only skipped)
and recomputed by `runner.run`.

Writes are atomic (a unique temporary file in the target folder, then `os.replace`) and the
archive lands before its sidecar, so a sidecar always has its archive beside it; an archive
without a sidecar is an unfinished write and counts as absent.

Same key, different numerics: `execution` (packed / vectorized / loop) is not in the key. The
three agree only to float rounding, so the record of a key is the one that was made first, and
`meta["execution"]` says which made it (so does `meta["device"]`, also outside the key).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .config import FORMAT_VERSION, TrainConfig
from .data import prepare_inputs
from .ensemble import StackedEnsemble
from .models import build_model

SIDECAR_FIELDS = ("key", "sha256", "config", "meta")
HISTORY_KEYS = ("eval_step", "train_loss", "train_acc", "test_loss", "test_acc")
PROBE_BYTES = 1 << 20  # written (and synced) by `check_writable`: a full disk fails here, not after training


class CorruptRecordError(RuntimeError):
    """A record, or another cache file, that cannot be trusted: unreadable, incomplete or foreign."""


class DamagedCacheWarning(UserWarning):
    """A damaged cache file was found, moved aside, and will be recomputed."""


class CacheWriteError(RuntimeError):
    """The cache cannot be written (read-only, full disk, permissions): names the path and why."""


def cache_root() -> Path:
    """$FAIRENS_CACHE, default ~/.cache/fairens."""
    return Path(os.environ.get("FAIRENS_CACHE", Path.home() / ".cache" / "fairens"))


def record_dirs() -> list[Path]:
    """Where records are looked up: the writable cache first, then read-only folders listed in
    $FAIRENS_RECORDS (os.pathsep-separated), e.g. the full-profile records shipped with the book."""
    extra = [Path(p) for p in os.environ.get("FAIRENS_RECORDS", "").split(os.pathsep) if p]
    return [cache_root() / "records", *extra]


def softmax_on_any_cpu(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dimension as float32, the same bits on every kind of x86 CPU.

    `torch.softmax` adds the exponentials with vector instructions whose width (AVX2 or AVX-512)
    sets the order of the additions, so its last bit depends on the CPU, and ties between classes
    (common in float16 records) would break differently from one machine to the next. Here the
    exponentials (elementwise, the same everywhere) are added class by class, in float64.
    """
    z = logits.double()
    exps = (z - z.amax(-1, keepdim=True)).exp()
    total = exps[..., 0].clone()
    for c in range(1, exps.shape[-1]):
        total += exps[..., c]
    return (exps / total.unsqueeze(-1)).float()


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
        """(M, N, C) float32 test probabilities, the same bits on every CPU (`softmax_on_any_cpu`)."""
        return softmax_on_any_cpu(self.logits())

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
        """Write `<key>.npz` then `<key>.json` into `directory`, each atomically; a write that
        fails (full disk, read-only) leaves no temporary file and raises CacheWriteError."""
        directory = Path(directory)
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
        try:
            directory.mkdir(parents=True, exist_ok=True)
            # the archive first: a sidecar never names an archive that is not there yet
            numpy = {k: v.cpu().numpy() for k, v in arrays.items()}
            digest = _atomic_write(path, lambda f: np.savez_compressed(f, **numpy))
            sidecar = {"format": FORMAT_VERSION, "key": self.key, "sha256": digest,
                       "config": self.config, "meta": self.meta}
            text = json.dumps(sidecar, indent=1, default=str).encode()
            _atomic_write(path.with_suffix(".json"), lambda f: f.write(text))
        except OSError as err:
            raise CacheWriteError(f"cannot write the record {path}: {_reason(err)}") from err
        self.path = path
        return path

    @classmethod
    def load(cls, path: Path, key: str | None = None) -> "RunRecord":
        """Load `<key>.npz` after checking `<key>.json`: the record of `key` (default: the file's
        name), checksum intact. Raises CorruptRecordError saying what is wrong."""
        path = Path(path)
        key = key or path.stem
        sidecar = read_sidecar(path.with_suffix(".json"), key)
        if not path.exists():
            raise CorruptRecordError(f"{path.with_suffix('.json')} has no archive {path.name} beside it")
        if sidecar["sha256"] != _sha256(path):
            raise CorruptRecordError(f"checksum mismatch for {path}: the record is damaged")
        try:
            with np.load(path, allow_pickle=False) as z:  # an object array would need unpickling: refused
                a = {k: torch.from_numpy(z[k]) for k in z.files}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
            raise CorruptRecordError(f"{path} is not a readable record archive: {err}") from err
        missing = [k for k in ("test_logits", "y_test", *HISTORY_KEYS) if k not in a]
        if missing:
            raise CorruptRecordError(f"{path} lacks the arrays {missing}")
        prefixed = lambda p: {k[len(p):]: v for k, v in a.items() if k.startswith(p)}  # noqa: E731
        history = {k: a[k] for k in HISTORY_KEYS}
        return cls(config=sidecar["config"], key=sidecar["key"], test_logits=a["test_logits"],
                   y_test=a["y_test"], history=history, meta=sidecar["meta"],
                   groups_test=prefixed("group/"), test_probs_trajectory=a.get("test_probs_trajectory"),
                   train_outputs_trajectory=a.get("train_outputs_trajectory"),
                   test_outputs_trajectory=a.get("test_outputs_trajectory"), y_train_tracked=a.get("y_train_tracked"),
                   weight_snapshots=a.get("weight_snapshots"), weights=prefixed("weight/") or None, path=path)


def read_sidecar(path: Path, key: str) -> dict:
    """The sidecar `path` of the record of `key`, checked: JSON with every field, and both its
    `key` and the key of its `config` equal to `key` (a record copied under another name is foreign)."""
    try:
        sidecar = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise CorruptRecordError(f"{path} is not a readable sidecar: {err}") from err
    if not isinstance(sidecar, dict) or any(f not in sidecar for f in SIDECAR_FIELDS):
        raise CorruptRecordError(f"{path} is incomplete: a sidecar needs the fields {list(SIDECAR_FIELDS)}")
    if sidecar["key"] != key:
        raise CorruptRecordError(f"{path} holds the record of key {sidecar['key']!r}, not of {key!r}")
    try:
        config_key = TrainConfig.from_dict(sidecar["config"]).key()
    except (TypeError, ValueError) as err:
        raise CorruptRecordError(f"{path}: its config is not a TrainConfig: {err}") from err
    if config_key != key:
        raise CorruptRecordError(f"{path}: its config has key {config_key!r}, not {key!r}")
    return sidecar


def find_record(key: str, extra_dirs: Sequence[Path] = ()) -> RunRecord | None:
    """The record of `key` from the cache, the $FAIRENS_RECORDS folders or then `extra_dirs`
    (read-only, like the second), or None.

    A record that fails its checks is named in a warning and skipped (and so recomputed); in the
    writable cache it is also moved aside. An archive without its sidecar is a write still in
    progress, or one a crash cut short: absent, silently (the next save replaces it)."""
    writable = cache_root() / "records"
    for d in [*record_dirs(), *map(Path, extra_dirs)]:
        path, sidecar = d / f"{key}.npz", d / f"{key}.json"
        if not sidecar.exists():
            continue
        try:
            return RunRecord.load(path, key)
        except CorruptRecordError as err:
            if d == writable:
                # sidecar first: until the archive follows, the pair reads as an unfinished write
                moved = [move_aside(p) for p in (sidecar, path)]
                where = f"moved aside to {', '.join(str(m) for m in moved if m)}"
            else:
                where = "skipped (read-only records folder)"
            warnings.warn(f"{err}; {where}; it will be recomputed", DamagedCacheWarning, stacklevel=2)
    return None


def move_aside(path: Path) -> Path | None:
    """Rename a damaged cache file to `<name>.corrupt-<time>`, out of every lookup; the new path,
    or None when it is already gone (another process moved it first)."""
    aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return None
    return aside


def remove_temporaries(directory: Path, key: str) -> None:
    """Delete the temporary files of `key`'s record that a killed writer left in `directory`
    (call it holding the key's lock: no live writer then)."""
    for tmp in directory.glob(f".{key}.*.tmp"):
        tmp.unlink(missing_ok=True)


def check_writable(directory: Path) -> None:
    """Fail early, in one line naming the folder and the reason, when records cannot be written
    to `directory` (read-only, full disk, permissions): create, fill, sync and remove a probe file."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".probe-", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(bytes(PROBE_BYTES))
                f.flush()
                os.fsync(f.fileno())
        finally:
            Path(probe).unlink(missing_ok=True)
    except OSError as err:
        raise CacheWriteError(f"cannot write to the record cache {directory}: {_reason(err)} "
                              "(free space, or point $FAIRENS_CACHE at a writable folder)") from err


def _reason(err: OSError) -> str:
    return f"{err.strerror or err} [{type(err).__name__}]"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _atomic_write(path: Path, write) -> str:
    """`write(file)` into a unique temporary file beside `path`, synced, then renamed over `path`
    (atomic: a reader sees the old file or the whole new one, never half). Returns the SHA-256
    of what was written. The temporary file is removed if anything fails."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        digest = _sha256(Path(tmp))
        os.replace(tmp, path)
        return digest
    finally:
        Path(tmp).unlink(missing_ok=True)


def timestamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S")
