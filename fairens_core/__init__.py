"""fairens_core: the library behind the fairens book.

    data      datasets as tensors (`load_dataset`)
    models    architectures and their FLOPs (`build_model`, `model_flops`)
    config    `TrainConfig`, the plain dataclass that determines a run
    train     `train_ensemble`: vectorized ensemble training with controlled randomness
    records   `RunRecord`: a run's results on disk, and the cache lookup
    runner    `run(config)`: the record from the cache, or trained now
    metrics   everything the papers measure
    analysis  chapter analyses: member predictions in, tidy data frames out
    profiles  default / smoke / full settings of each chapter
    claims, charts, book   the book's claims tables, offline charts and runner
"""

import importlib

# name -> submodule; imported on first use so that `import fairens_core.claims` stays light
_EXPORTS = {"TrainConfig": "config", "RunRecord": "records", "run": "runner",
            "train_ensemble": "train", "load_dataset": "data", "build_model": "models"}

__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'fairens_core' has no attribute {name!r}")
