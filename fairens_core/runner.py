"""`run(config)`: the record of a config, read from the cache or trained now and cached.

This is the one door through which chapters get their data:

    config -> cache lookup (records.find_record) -> hit: the record
                                                 -> miss: train (train.train_ensemble, with the
                                                    groups run here or on Ray) -> save -> record

While a chapter is being *planned* (`python -m fairens_core plan`), `plan_instead_of_training`
hands `run` a `plan.Planner`: every config is noted in the plan and a cache miss is answered with
a placeholder record instead of training.
"""

from __future__ import annotations

import shutil

from .config import TrainConfig
from .distributed import train_groups_on_ray
from .plan import Planner
from .records import RunRecord, cache_root, find_record
from .train import train_ensemble, train_groups_here

_planner: Planner | None = None


def plan_instead_of_training(planner: Planner | None) -> None:
    """From now on in this process, `run` notes configs in `planner` and trains nothing
    (None: back to training)."""
    global _planner
    _planner = planner


def run(config: TrainConfig, quiet: bool = False) -> RunRecord:
    """The record of `config`: from the cache if present (checksum verified), else trained now.

    Training checkpoints into the cache as it goes, so an interrupted run resumes where it
    stopped and ends with the same record as an uninterrupted one.
    """
    config = config.validate()
    record = find_record(config.key())
    if _planner is not None:
        return _planner.note(config, record)
    if record is not None:
        return record
    if quiet:
        config = config.replace(progress=False)
    directory = cache_root() / "records"
    work = directory / f"{config.key()}.partial"
    train_groups = train_groups_on_ray if config.executor == "ray" else train_groups_here
    record = train_ensemble(config, workdir=work, train_groups=train_groups)
    record.save(directory)  # atomic; only then are the checkpoints it was made from removed
    shutil.rmtree(work, ignore_errors=True)
    return record
