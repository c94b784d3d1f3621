"""Profiles: the settings a chapter runs with when its parameters are left at None.

- `default`: embedded data (mnist1d, generated offline; scikit-learn's bundled sets) on a
  2-core CPU, each chapter in about two minutes.
- `smoke`: the smallest run that exercises every code path (tests).
- `full`: paper scale on a GPU (CIFAR-10 with CIFAR ResNets, many members).

A chapter calls `chapter_settings(name, profile, **parameters)`; every explicit (non-None)
parameter overrides the profile, and unknown names are an error.
"""

from __future__ import annotations

from types import SimpleNamespace

from .config import TrainConfig

PROFILES = ("default", "smoke", "full")

# Base training settings of each profile (fields of TrainConfig).
BASE = {
    # A one-cycle SGD recipe: a cnn1d member reaches ~95% on mnist1d in 10 epochs (~2 s of CPU).
    "default": dict(dataset="mnist1d", model="cnn1d", members=20, epochs=10, batch_size=64,
                    optimizer="nesterov", lr=0.1, momentum=0.9, weight_decay=5e-4,
                    schedule="triangular", warmup_epochs=2.5, device="cpu"),
    "smoke": dict(dataset="mnist1d", dataset_options={"n_samples": 1500}, model="cnn1d", width=0.5,
                  members=4, epochs=2, batch_size=64, optimizer="nesterov", lr=0.1,
                  schedule="triangular", warmup_epochs=0.5, device="cpu"),
    "full": dict(dataset="cifar10_jpeg", model="resnet20", members=50, epochs=30, batch_size=512,
                 optimizer="nesterov", lr=0.4, momentum=0.9, weight_decay=5e-4, schedule="triangular",
                 warmup_epochs=6, label_smoothing=0.1, augment=("crop", "flip"), device="auto",
                 precision="bf16"),
}

# Chapter knobs that are not training fields (pool sizes, K, draws, ...), per profile.
CHAPTERS: dict[str, dict[str, dict]] = {
    "bottom_k": {
        "default": dict(K=3, ks=[1, 2, 3, 4, 5], draws=100),
        "smoke": dict(K=2, ks=[1, 2], draws=10),
        "full": dict(K=3, ks=[1, 2, 3, 4, 5], draws=100),
    },
}


def chapter_settings(chapter: str | None, profile: str = "default", **parameters) -> SimpleNamespace:
    """Resolve a chapter's settings: profile defaults, then explicit parameters.

    Returns a namespace with `config` (a validated TrainConfig) and every chapter knob.
    Parameters that are None keep the profile's value; names that are neither TrainConfig
    fields nor knobs of this chapter raise ValueError.
    """
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is not allowed; choose one of {list(PROFILES)}")
    knobs = dict(CHAPTERS.get(chapter, {}).get(profile, {})) if chapter else {}
    train = dict(BASE[profile])
    train.update(knobs.pop("train", {}))
    fields = set(TrainConfig.__dataclass_fields__)
    for name, value in parameters.items():
        if value is None:
            continue
        if name in knobs:
            knobs[name] = value
        elif name in fields:
            train[name] = value
        else:
            raise ValueError(f"unknown parameter {name!r} for chapter {chapter!r}; "
                             f"allowed: {sorted(set(knobs) | fields)}")
    return SimpleNamespace(config=TrainConfig(**train).validate(), profile=profile, **knobs)
