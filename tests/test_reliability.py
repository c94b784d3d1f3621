"""Fault injection for the record cache (issue 18): kills, damaged files, planted pickles,
concurrent processes and unwritable disks.

Every fault must end in one of two ways: the damage is named (a warning or an error naming the
file) and the final record equals an undamaged run's, bit for bit; or, for an unwritable cache,
a one-line error before training and no temporary files left. Nothing is ever silent: each test
below asserts the warning or error its fault must produce.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from fairens_core import checkpoints, records, runner
from fairens_core import train as train_mod
from fairens_core.config import TrainConfig
from fairens_core.data import load_dataset
from fairens_core.records import CacheWriteError, DamagedCacheWarning, RunRecord, find_record
from fairens_core.runner import run
from fairens_core.train import train_ensemble

ROOT = Path(__file__).resolve().parents[1]

# three groups of one member (max_group is not in the key), so that "a finished member is never
# lost" can be checked group by group; three epochs, so that a group can stop half way
CFG = TrainConfig(dataset="mnist1d", dataset_options={"n_samples": 700}, model="cnn1d", width=0.5, members=3,
                  epochs=3, batch_size=64, lr=0.05, warmup_epochs=0.5, progress=False, device="cpu",
                  execution="vectorized", max_group=1)
KEY = CFG.key()
STEPS_PER_EPOCH = 700 * 8 // 10 // 64
GROUPS = (0, 1, 2)

pytestmark = pytest.mark.usefixtures("cache")  # a fresh record cache per test (conftest)


# ---------------------------------------------------------------------------- shared pieces
class Interrupted(Exception):
    pass


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One intra-op thread for the work around training here and in the driver processes, which
    keeps a busy 2-core CI machine responsive (training itself runs with train.CPU_THREADS)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, one_thread):
    """Made once: the mnist1d data cache (copied into each test's cache, so no test waits for the
    generator), the reference record of an uninterrupted run, and the work folder of a run
    stopped after group 0 finished and group 1 saved two epochs."""
    base = tmp_path_factory.mktemp("reliability")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FAIRENS_CACHE", str(base))
        mp.delenv("FAIRENS_RECORDS", raising=False)
        mp.setattr(runner, "_instead", None)
        load_dataset("mnist1d", None, n_samples=700)
        reference = train_ensemble(CFG)
        mp.setattr(train_mod, "CHECKPOINT_EVERY_S", 0.0)
        saves = {"n": 0}
        real_save = checkpoints.Checkpoint.save

        def save_then_stop(self, state):  # saves 1-3: group 0's epochs, 4: its .done.pt, 5-6: group 1
            real_save(self, state)
            saves["n"] += 1
            if saves["n"] == 6:
                raise Interrupted

        mp.setattr(checkpoints.Checkpoint, "save", save_then_stop)
        with pytest.raises(Interrupted):
            run(CFG)
    partial = base / "records" / f"{KEY}.partial"
    assert sorted(p.name for p in partial.glob("*.pt")) == ["members_0-0.done.pt", "members_0-0.pt", "members_1-1.pt"]
    return {"data": base / "data", "reference": reference, "partial": partial}


@pytest.fixture
def seeded(cache, prepared, monkeypatch):
    """The test's cache with the data already generated; checkpoints at every epoch's end."""
    shutil.copytree(prepared["data"], cache / "data")
    monkeypatch.setattr(train_mod, "CHECKPOINT_EVERY_S", 0.0)
    return cache


def assert_same_record(record: RunRecord, reference: RunRecord):
    """Bit for bit: logits, labels, history, weights and every metadatum but time and date."""
    assert record.key == reference.key == KEY
    assert torch.equal(record.test_logits, reference.test_logits)
    assert torch.equal(record.y_test, reference.y_test)
    assert record.history.keys() == reference.history.keys()
    for k in reference.history:
        assert torch.equal(record.history[k], reference.history[k]), k
    assert record.weights.keys() == reference.weights.keys()
    for k in reference.weights:
        assert torch.equal(record.weights[k], reference.weights[k]), k
    timeless = lambda meta: {k: v for k, v in meta.items() if k not in ("wall_time_s", "created")}  # noqa: E731
    assert json.loads(json.dumps(timeless(record.meta), default=str)) == json.loads(
        json.dumps(timeless(reference.meta), default=str))
    reread = RunRecord.load(record.path)  # and what is on disk says the same
    assert torch.equal(reread.test_logits, reference.test_logits)


def leftovers(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if ".tmp" in p.name]


@pytest.fixture
def trainings(monkeypatch):
    """{group: first step} of every group trained in this process (a resumed group starts late)."""
    started = {}
    real = train_mod.train_steps

    def counted(cfg, task, data, ens, opt, phase, members, *rest):
        started[members[0]] = phase.start
        return real(cfg, task, data, ens, opt, phase, members, *rest)

    monkeypatch.setattr(train_mod, "train_steps", counted)
    return started


def expected_starts(partial: Path) -> dict[int, int]:
    """What a rerun must train, read from the work folder: nothing of a finished group, and a
    checkpointed group from its checkpoint's step."""
    out = {}
    for g in GROUPS:
        if (partial / f"members_{g}-{g}.done.pt").exists():
            continue
        ckpt = partial / f"members_{g}-{g}.pt"
        out[g] = torch.load(ckpt, weights_only=True)["step"] if ckpt.exists() else 0
    return out


def damaged_warning(caught, name: str) -> str:
    """The DamagedCacheWarning (or data-cache warning) naming `name`; fails if there is none."""
    texts = [str(w.message) for w in caught if name in str(w.message)]
    assert texts, f"no warning names {name}: {[str(w.message) for w in caught]}"
    return texts[0]


# ---------------------------------------------------------------------------- kill -9
# A training process that SIGKILLs itself at the n-th call of a writer, before it, half way
# through the bytes it writes, or after it.
DRIVER = r"""
import io, json, os, shutil, signal, sys, time
import numpy as np, torch
spec = json.loads(sys.argv[1])
torch.set_num_threads(spec["threads"])
from fairens_core import checkpoints, runner, train
from fairens_core.config import TrainConfig
train.CHECKPOINT_EVERY_S = 0.0
die = lambda: os.kill(os.getpid(), signal.SIGKILL)

def hook(owner, name, n, when, suffix=""):
    real, calls = getattr(owner, name), [0]
    def hooked(*args, **kwargs):
        if suffix and not str(args[-1]).endswith(suffix):
            return real(*args, **kwargs)
        calls[0] += 1
        if calls[0] != n:
            return real(*args, **kwargs)
        if when == "before":
            die()
        if when == "midwrite":  # the write cut short: half its bytes reach the file
            target, buf = args[1] if name == "save" else args[0], io.BytesIO()
            real(*((args[0], buf) if name == "save" else (buf,)), **kwargs)
            target.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            target.flush()
            die()
        out = real(*args, **kwargs)
        die()
    setattr(owner, name, hooked)

owners = {"Checkpoint": checkpoints.Checkpoint, "torch": torch, "os": os, "np": np, "shutil": shutil}
if spec.get("kill"):
    owner, name = spec["kill"]["at"].split(".")
    hook(owners[owner], name, spec["kill"]["n"], spec["kill"]["when"], spec["kill"].get("suffix", ""))
if spec.get("marker"):  # note each training, and hold the lock a while so that the others queue
    real_train = runner.train_ensemble
    def marked(*a, **k):
        with open(spec["marker"], "a") as f:
            f.write(f"{os.getpid()}\n")
        time.sleep(1.0)
        return real_train(*a, **k)
    runner.train_ensemble = marked
if spec.get("go"):  # start together
    open(spec["go"] + f".ready-{os.getpid()}", "w").close()
    while not os.path.exists(spec["go"]):
        time.sleep(0.01)
record = runner.run(TrainConfig.from_dict(spec["config"]))
print(json.dumps({"key": record.key, "logits": record.test_logits.float().sum().item()}))
"""


def driver(cache: Path, **spec) -> subprocess.Popen:
    spec = {"config": {**CFG.key_fields(), "device": "cpu", "execution": "vectorized", "max_group": 1,
                       "progress": False}, "threads": torch.get_num_threads(), **spec}
    env = {**os.environ, "FAIRENS_CACHE": str(cache)}
    env.pop("FAIRENS_RECORDS", None)
    return subprocess.Popen([sys.executable, "-c", DRIVER, json.dumps(spec)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


KILLS = {  # name: (writer, n-th call, when); saves per group: 3 epochs then its .done.pt
    "first-checkpoint": ("Checkpoint.save", 1, "before", ""),
    "mid-checkpoint-write": ("torch.save", 2, "midwrite", ""),
    "after-group-done": ("Checkpoint.save", 4, "after", ""),
    "before-checkpoint-rename": ("os.replace", 6, "before", ".pt"),
    "mid-record-archive": ("np.savez_compressed", 1, "midwrite", ""),
    "record-archive-without-sidecar": ("os.replace", 1, "before", ".json"),
    "record-saved-work-left": ("shutil.rmtree", 1, "before", ""),
}


@pytest.mark.parametrize("point", list(KILLS))
def test_kill_9_then_rerun_loses_nothing(point, seeded, prepared, trainings):
    at, n, when, suffix = KILLS[point]
    proc = driver(seeded, kill={"at": at, "n": n, "when": when, "suffix": suffix})
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -9, err  # it died where it was told to
    partial = seeded / "records" / f"{KEY}.partial"
    expected = expected_starts(partial) if not (seeded / "records" / f"{KEY}.json").exists() else {}
    record = run(CFG)
    assert trainings == expected  # finished groups not retrained; checkpointed ones resumed
    assert_same_record(record, prepared["reference"])
    assert not partial.exists() and not leftovers(seeded)


# ---------------------------------------------------------------------------- damaged files
def truncate(path: Path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def garbage(path: Path):
    path.write_bytes(os.urandom(max(64, path.stat().st_size)))


def edit_sidecar(change):
    def damage(path: Path):
        sidecar = json.loads(path.read_text())
        change(sidecar)
        path.write_text(json.dumps(sidecar))
    return damage


def foreign(path: Path, prepared):
    """The record of another config, copied whole under this key's name."""
    other = prepared["reference"]
    other = RunRecord(**{**other.__dict__, "config": CFG.replace(seed=1).key_fields(), "key": CFG.replace(seed=1).key(),
                         "path": None})
    other.save(path.parent / "other")
    for suffix in (".npz", ".json"):
        shutil.copy(path.parent / "other" / f"{other.key}{suffix}", path.with_suffix(suffix))


def foreign_renamed(path: Path, prepared):
    """The same, with the sidecar's key rewritten to this key: its config still gives it away."""
    foreign(path, prepared)
    edit_sidecar(lambda s: s.update(key=KEY))(path.with_suffix(".json"))


RECORD_DAMAGE = {  # name: (file, damage)
    "sidecar-truncated": (".json", truncate),
    "sidecar-garbage": (".json", garbage),
    "sidecar-not-json-object": (".json", lambda p: p.write_text("[1, 2]")),
    "sidecar-without-sha": (".json", edit_sidecar(lambda s: s.pop("sha256"))),
    "sidecar-of-another-key": (".json", edit_sidecar(lambda s: s.update(key="0" * 16))),
    "sidecar-without-archive": (".npz", lambda p: p.unlink()),
    "archive-truncated": (".npz", truncate),
    "archive-garbage": (".npz", garbage),
    "foreign-record": (".npz", foreign),
    "foreign-record-renamed": (".npz", foreign_renamed),
}


@pytest.mark.parametrize("kind", list(RECORD_DAMAGE))
def test_damaged_record_is_named_moved_aside_and_recomputed(kind, seeded, prepared, trainings):
    suffix, damage = RECORD_DAMAGE[kind]
    prepared["reference"].save(seeded / "records")
    path = seeded / "records" / f"{KEY}.npz"
    if damage in (foreign, foreign_renamed):
        damage(path, prepared)
    else:
        damage(path.with_suffix(suffix))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record = run(CFG)
    assert damaged_warning(caught, f"{KEY}.")
    assert trainings == {0: 0, 1: 0, 2: 0}
    assert_same_record(record, prepared["reference"])
    assert list((seeded / "records").glob(f"{KEY}.json.corrupt-*"))  # kept for a look, out of the way
    assert run(CFG).path == record.path and len(trainings) == 3  # and now a plain hit


@pytest.mark.parametrize("name", ["members_1-1.pt", "members_0-0.done.pt"])
@pytest.mark.parametrize("damage", [truncate, garbage, lambda p: p.write_bytes(b"")],
                         ids=["truncated", "garbage", "empty"])
def test_damaged_checkpoint_is_named_and_its_group_retrained(name, damage, seeded, prepared, trainings):
    partial = seeded / "records" / f"{KEY}.partial"
    shutil.copytree(prepared["partial"], partial)
    damage(partial / name)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record = run(CFG)
    assert "unreadable checkpoint" in damaged_warning(caught, name)
    # the damaged file's group starts over; the rest resumes as usual
    # (a lost .done.pt is rebuilt from the group's last checkpoint, at the end of training)
    assert trainings == ({0: 3 * STEPS_PER_EPOCH, 1: 2 * STEPS_PER_EPOCH, 2: 0} if name.endswith("done.pt")
                         else {1: 0, 2: 0})
    assert_same_record(record, prepared["reference"])


@pytest.mark.parametrize("damage", [truncate, garbage], ids=["truncated", "garbage"])
def test_damaged_data_cache_is_named_and_regenerated(damage, seeded, prepared):
    (path,) = (seeded / "data").glob("mnist1d-*.npz")
    damage(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record = run(CFG)
    assert "unreadable cache file" in damaged_warning(caught, path.name)
    assert_same_record(record, prepared["reference"])
    assert list((seeded / "data").glob("mnist1d-*.npz.corrupt-*"))


# ---------------------------------------------------------------------------- planted pickles
class Payload:
    """Unpickling this creates `marker`: proof that a loader ran code it was handed."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def planted_archive(path: Path, marker: Path):
    """A record under KEY whose sidecar checks out (key, config, checksum) and whose archive
    holds an object array: only unpickling could read it."""
    with open(path, "wb") as f:
        np.savez(f, test_logits=np.array([Payload(marker)], dtype=object))
    sidecar = {"format": 2, "key": KEY, "sha256": records._sha256(path), "config": CFG.key_fields(), "meta": {}}
    path.with_suffix(".json").write_text(json.dumps(sidecar, default=list))


def test_the_planted_payload_is_live(tmp_path):
    """The files below would create their marker if anything unpickled them."""
    marker = tmp_path / "ran"
    torch.save({"ensemble": Payload(marker)}, tmp_path / "x.pt")
    torch.load(tmp_path / "x.pt", weights_only=False)
    assert marker.exists()
    marker.unlink()
    planted_archive(tmp_path / f"{KEY}.npz", marker)
    np.load(tmp_path / f"{KEY}.npz", allow_pickle=True)["test_logits"]
    assert marker.exists()


PLANTS = ["partial-checkpoint", "partial-done", "cache-record", "records-folder", "data-cache"]


@pytest.mark.parametrize("where", PLANTS)
def test_planted_pickle_never_runs(where, seeded, prepared, tmp_path, monkeypatch, trainings):
    marker = tmp_path / "code-ran"
    partial = seeded / "records" / f"{KEY}.partial"
    if where.startswith("partial"):
        shutil.copytree(prepared["partial"], partial)
        name = "members_1-1.pt" if where == "partial-checkpoint" else "members_0-0.done.pt"
        torch.save({"ensemble": Payload(marker), "history": [Payload(marker)]}, partial / name)
    elif where == "cache-record":
        name = f"{KEY}.npz"
        (seeded / "records").mkdir()
        planted_archive(seeded / "records" / name, marker)
    elif where == "records-folder":
        name = f"{KEY}.npz"
        shipped = tmp_path / "shipped"
        shipped.mkdir()
        planted_archive(shipped / name, marker)
        monkeypatch.setenv("FAIRENS_RECORDS", str(shipped))
    else:
        (path,) = (seeded / "data").glob("mnist1d-*.npz")
        name = path.name
        with open(path, "wb") as f:
            np.savez(f, x_train=np.array([Payload(marker)], dtype=object))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record = run(CFG)
    assert not marker.exists()
    damaged_warning(caught, name)
    assert_same_record(record, prepared["reference"])
    assert not marker.exists()


def test_done_parts_load_tensors_only(seeded, prepared):
    """A finished group's part (logits, history, weights) is plain tensors, lists and None."""
    part = torch.load(prepared["partial"] / "members_0-0.done.pt", weights_only=True)
    assert set(part) == {"test_logits", "history", "weights"}


# ---------------------------------------------------------------------------- concurrency
@pytest.mark.parametrize("processes", [3])
def test_concurrent_processes_train_once(processes, seeded, prepared, tmp_path):
    marker, go = tmp_path / "trainings", tmp_path / "go"
    procs = [driver(seeded, marker=str(marker), go=str(go)) for _ in range(processes)]
    deadline = time.monotonic() + 120
    while len(list(tmp_path.glob("go.ready-*"))) < processes and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    results = [json.loads(out.splitlines()[-1]) for out, _ in outs]
    assert len(marker.read_text().split()) == 1  # trained once
    assert all(r == results[0] for r in results)
    assert sum("waiting for another process" in out for out, _ in outs) >= 1
    assert_same_record(find_record(KEY), prepared["reference"])
    assert not leftovers(seeded)


# ---------------------------------------------------------------------------- unwritable cache
def no_training(monkeypatch):
    monkeypatch.setattr(runner, "train_ensemble", lambda *a, **k: pytest.fail("trained before the cache check"))


def one_line_error(excinfo, *words):
    message = str(excinfo.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_records_path_that_is_a_file(seeded, monkeypatch):
    no_training(monkeypatch)
    (seeded / "records").write_text("not a folder")
    with pytest.raises(CacheWriteError) as excinfo:
        run(CFG)
    one_line_error(excinfo, str(seeded / "records"))


def read_only(*args, **kwargs):
    raise OSError(errno.EROFS, "Read-only file system")


def test_read_only_cache(seeded, monkeypatch):
    no_training(monkeypatch)
    folder = seeded / "records"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        probe = folder / "probe"
        probe.touch()  # root writes anyway: simulate the read-only file system it would be
        probe.unlink()
        monkeypatch.setattr(records.tempfile, "mkstemp", read_only)
        reason = "Read-only file system"
    except PermissionError:
        reason = "Permission denied"
    try:
        with pytest.raises(CacheWriteError) as excinfo:
            run(CFG)
    finally:
        folder.chmod(0o755)
    one_line_error(excinfo, str(folder), reason)
    assert not leftovers(seeded)


def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_full_disk_is_reported_before_training(seeded, monkeypatch):
    no_training(monkeypatch)
    monkeypatch.setattr(records.os, "fsync", enospc)  # the probe's data does not fit
    with pytest.raises(CacheWriteError) as excinfo:
        run(CFG)
    one_line_error(excinfo, str(seeded / "records"), "No space left on device")
    assert not leftovers(seeded)


def test_disk_full_while_checkpointing(seeded, prepared, monkeypatch):
    real, calls = checkpoints.torch.save, []

    def fills_up(obj, f, *a, **k):
        calls.append(1)
        if len(calls) == 5:  # the disk fills half way through group 1's first checkpoint
            f.write(b"\0" * 100)
            enospc()
        return real(obj, f, *a, **k)

    monkeypatch.setattr(checkpoints.torch, "save", fills_up)
    with pytest.raises(CacheWriteError) as excinfo:
        run(CFG)
    one_line_error(excinfo, "members_1-1.pt", "No space left on device")
    assert not leftovers(seeded)
    monkeypatch.setattr(checkpoints.torch, "save", real)  # space freed
    assert_same_record(run(CFG), prepared["reference"])


def test_disk_full_while_saving_the_record(seeded, prepared, monkeypatch, trainings):
    """The record's archive meets a full disk: the kernel's own ENOSPC where /dev/full exists
    (its temporary file writes there), a raised one elsewhere."""
    real_mkstemp, real_savez = records.tempfile.mkstemp, records.np.savez_compressed

    def full_disk_file(*args, prefix="", **kwargs):
        fd, name = real_mkstemp(*args, prefix=prefix, **kwargs)
        if prefix.startswith(f".{KEY}.npz"):
            os.close(fd)
            fd = os.open("/dev/full", os.O_WRONLY)
        return fd, name

    def fills_up(f, **arrays):
        f.write(b"\0" * 1000)
        enospc()

    if Path("/dev/full").exists():
        monkeypatch.setattr(records.tempfile, "mkstemp", full_disk_file)
    else:
        monkeypatch.setattr(records.np, "savez_compressed", fills_up)
    with pytest.raises(CacheWriteError) as excinfo:
        run(CFG)
    one_line_error(excinfo, f"{KEY}.npz", "No space left on device")
    assert not leftovers(seeded) and not list((seeded / "records").glob(f"{KEY}.[nj][ps][zo]*"))
    # space freed: nothing is trained again
    monkeypatch.setattr(records.tempfile, "mkstemp", real_mkstemp)
    monkeypatch.setattr(records.np, "savez_compressed", real_savez)
    trainings.clear()
    assert_same_record(run(CFG), prepared["reference"])
    assert trainings == {}


# ---------------------------------------------------------------------------- keys and execution
def test_shipped_records_verify_under_their_keys(monkeypatch):
    shipped = ROOT / "records" / "full"
    monkeypatch.setenv("FAIRENS_RECORDS", str(shipped))
    keys = [p.stem for p in shipped.glob("*.json")]
    assert len(keys) >= 200
    with warnings.catch_warnings():
        warnings.simplefilter("error", DamagedCacheWarning)
        for key in keys:
            sidecar = records.read_sidecar(shipped / f"{key}.json", key)
            assert TrainConfig.from_dict(sidecar["config"]).key() == key
            assert find_record(key).key == key


def test_execution_is_outside_the_key_and_recorded(seeded, prepared):
    """§4: packed / vectorized / loop agree to float rounding and share a key; the record says
    which one made it, and a later run with another execution reads that record."""
    reference = prepared["reference"]
    assert reference.meta["execution"] == "vectorized"
    loop = train_ensemble(CFG.replace(execution="loop"))
    assert loop.key == reference.key and loop.meta["execution"] == "loop"
    torch.testing.assert_close(loop.test_logits.float(), reference.test_logits.float(), atol=2e-2, rtol=1e-2)
    reference.save(seeded / "records")
    assert run(CFG.replace(execution="loop")).meta["execution"] == "vectorized"


def test_pickled_objects_never_reach_a_sidecar(seeded, prepared):
    """Sidecars are JSON: a record's config and meta read back as plain data."""
    path = prepared["reference"].save(seeded / "records")
    sidecar = json.loads(path.with_suffix(".json").read_text())
    assert pickle.dumps(sidecar)  # plain, picklable data, nothing more
    assert sidecar["key"] == KEY and sidecar["meta"]["execution"] == "vectorized"
