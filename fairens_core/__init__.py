"""fairens_core: the library behind the fairens book.

    data      datasets as tensors (`load_dataset`)
    models    architectures and their FLOPs (`build_model`, `model_flops`)
    config    `TrainConfig`, the plain dataclass that determines a run
    train     `train_ensemble`: vectorized ensemble training with controlled randomness
    records   `RunRecord` and the cache behind `run(config)`
    metrics   everything the papers measure
    profiles  default / smoke / full settings of each chapter
"""

from .config import TrainConfig
from .records import RunRecord, run

__all__ = ["TrainConfig", "RunRecord", "run", "train_ensemble", "load_dataset", "build_model"]


def __getattr__(name):  # keep `import fairens_core` light: torch models and data load on demand
    if name == "train_ensemble":
        from .train import train_ensemble

        return train_ensemble
    if name == "load_dataset":
        from .data import load_dataset

        return load_dataset
    if name == "build_model":
        from .models import build_model

        return build_model
    raise AttributeError(name)
