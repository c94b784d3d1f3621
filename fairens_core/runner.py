"""`run(config)`: the record of a config, read from the cache or trained now and cached.

This is the one door through which chapters get their data:

    config -> cache lookup (records.find_record) -> hit: the record
                                                 -> miss: train (train.train_ensemble, with the
                                                    groups run here or on Ray) -> save -> record

`instead_of_training(handler)` changes what a miss does, for the whole process: while a chapter
is being *planned* (`python -m fairens_core plan`), a `plan.Planner` notes every config in the plan
and answers a miss with a placeholder record; while a full-profile page is rendered from shipped
records (`book --full`), `plan.RecordsOnly` answers it with `MissingRecordError`, which
`run_available` turns into a list of the runs the page lacks.

On a miss, `run` first checks that the cache can be written (a clear error before training, not
after it), then takes a per-key lock (`<cache>/records/<key>.lock`): two processes asking for one
config (a notebook and the CLI, two Ray drivers) train it once; the second waits and reads the
first one's record. Damaged cache files met on the way are moved aside and recomputed (see
`records` and `checkpoints`).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from contextlib import contextmanager

from filelock import FileLock, Timeout

from .config import TrainConfig
from .distributed import train_groups_on_ray
from .plan import MissingRecordError, Planner, RecordsOnly
from .records import RunRecord, cache_root, check_writable, find_record, remove_temporaries
from .train import train_ensemble, train_groups_here

_instead: Planner | RecordsOnly | None = None


def instead_of_training(handler: Planner | RecordsOnly | None) -> None:
    """From now on in this process, `run` hands every config to `handler.note(config, record or
    None)` and trains nothing (None: back to training)."""
    global _instead
    _instead = handler


def run(config: TrainConfig, quiet: bool = False) -> RunRecord:
    """The record of `config`: from the cache if present (checksum verified), else trained now.

    Training checkpoints into the cache as it goes, so an interrupted run resumes where it
    stopped and ends with the same record as an uninterrupted one.
    """
    config = config.validate()
    key = config.key()
    record = find_record(key)
    if _instead is not None:
        return _instead.note(config, record)
    directory = cache_root() / "records"
    work = directory / f"{key}.partial"
    if record is not None:
        if work.exists():  # left by a run killed between saving the record and tidying up
            shutil.rmtree(work, ignore_errors=True)
        return record
    if quiet:
        config = config.replace(progress=False)
    check_writable(directory)
    with _lock(directory / f"{key}.lock", key):
        record = find_record(key)  # trained by another process while this one waited
        if record is not None:
            return record
        remove_temporaries(directory, key)
        train_groups = train_groups_on_ray if config.executor == "ray" else train_groups_here
        record = train_ensemble(config, workdir=work, train_groups=train_groups)
        record.save(directory)  # atomic; only then are the checkpoints it was made from removed
        shutil.rmtree(work, ignore_errors=True)
    return record


@contextmanager
def _lock(path, key: str):
    """Hold the lock on computing `key`: at once or, with a note, once its holder lets go (the OS
    releases the lock of a process that dies, so a killed run never blocks the next one)."""
    lock = FileLock(path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        print(f"waiting for another process that is computing record {key} (lock {path})", flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def run_available(configs: Mapping, quiet: bool = True) -> tuple[dict, dict]:
    """({name: record}, {name: config}) for {name: config}: the records that can be had — all of
    them, unless `RecordsOnly` is in force — and the configs whose records are missing."""
    records, missing = {}, {}
    for name, config in configs.items():
        try:
            records[name] = run(config, quiet=quiet)
        except MissingRecordError:
            missing[name] = config
    return records, missing
