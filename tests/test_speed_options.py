"""Execution-only speed options of TrainConfig: channels_last and compile.

Both leave the cache key alone and, on the CPU, the result too (channels_last up to float
rounding; compile is ignored there with a warning). Their speed is measured on a GPU by
benchmarks/gpu_speed.py.
"""

import io
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from fairens_core import TrainConfig
from fairens_core.ensemble import StackedEnsemble, stacked_channels_last
from fairens_core.models import build_model
from fairens_core.train import train_ensemble, training_forward

TINY = dict(dataset="mnist1d", dataset_options={"n_samples": 700}, model="cnn1d", width=0.5,
            members=2, epochs=1, batch_size=64, lr=0.05, warmup_epochs=0.5, progress=False, device="cpu")


pytestmark = pytest.mark.usefixtures("cache")  # a fresh record cache per test (conftest)


def write_image_zip(path, n_train=160, n_test=40, side=16, seed=0):
    """A tiny cifar10-jpeg.zip: 10 classes of noisy single-colour RGB images (learnable)."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (10, 3))
    with zipfile.ZipFile(path, "w") as archive:
        for split, n in (("train", n_train), ("test", n_test)):
            for i in range(n):
                label = i % 10
                pixels = np.clip(colours[label] + rng.normal(0, 40, (side, side, 3)), 0, 255).astype(np.uint8)
                buffer = io.BytesIO()
                Image.fromarray(pixels).save(buffer, format="JPEG")
                archive.writestr(f"{split}/class{label}/{i:04d}.jpg", buffer.getvalue())


def test_options_stay_out_of_the_key():
    base = TrainConfig(**TINY)
    assert base.key() == base.replace(channels_last=True).key() == base.replace(compile=True).key()
    assert "channels_last" not in base.key_fields() and "compile" not in base.key_fields()


@pytest.mark.parametrize("field", ["channels_last", "compile"])
@pytest.mark.parametrize("value", ["yes", 1, None])
def test_non_bool_values_are_rejected_with_the_field_named(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**TINY, **{field: value}).validate()


def test_stacked_channels_last_feeds_vmap_convolutions_without_copies():
    M, B, C, H, W = 3, 4, 5, 6, 7
    x = torch.randn(M, B, C, H, W)
    y = stacked_channels_last(x)
    assert torch.equal(x, y)
    grouped = y.movedim(0, 1).reshape(B, M * C, H, W)  # what vmap's grouped convolution reads
    assert grouped.data_ptr() == y.data_ptr() and grouped.is_contiguous(memory_format=torch.channels_last)

    members = [build_model("fastcnn", (3, 16, 16), 10, width=0.125) for _ in range(M)]
    ens = StackedEnsemble(members)
    before = {k: v.clone() for k, v in ens.state_stacked().items()}
    ens.use_channels_last()
    for k, v in ens.state_stacked().items():
        assert torch.equal(v, before[k]), k
        if v.dim() == 5:
            assert v.flatten(0, 1).is_contiguous(memory_format=torch.channels_last), k


def test_channels_last_gives_the_same_members(tmp_path):
    write_image_zip(tmp_path / "cifar10-jpeg.zip")
    cfg = TrainConfig(dataset="cifar10_jpeg", data_root=str(tmp_path), dataset_options={"num_workers": 0},
                      model="fastcnn", width=0.125, members=2, epochs=2, batch_size=32, lr=0.4,
                      warmup_epochs=0.5, augment=("crop", "flip"), label_smoothing=0.2, progress=False, device="cpu")
    plain = train_ensemble(cfg)
    fast = train_ensemble(cfg.replace(channels_last=True))
    assert fast.key == plain.key
    assert plain.member_accuracy().min() > 0.2  # the members learn something (chance: 0.1)
    torch.testing.assert_close(fast.test_logits.float(), plain.test_logits.float(), atol=5e-2, rtol=1e-2)
    torch.testing.assert_close(fast.member_accuracy(), plain.member_accuracy(), atol=0.03, rtol=0)
    for k in plain.weights:
        assert fast.weights[k].is_contiguous()  # the record keeps the ordinary layout
        torch.testing.assert_close(fast.weights[k], plain.weights[k], atol=2e-3, rtol=1e-3)


def test_channels_last_is_ignored_where_onednn_would_hang(tmp_path, monkeypatch):
    """ResNet-18 at width 1/16 has a 1x1 convolution from 4 channels: no channels-last on an AVX2 CPU."""
    write_image_zip(tmp_path / "cifar10-jpeg.zip", n_train=64, n_test=16)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
    cfg = TrainConfig(dataset="cifar10_jpeg", data_root=str(tmp_path), dataset_options={"num_workers": 0},
                      model="resnet18", width=0.0625, members=2, epochs=1, warmup_epochs=0.2, batch_size=32,
                      progress=False, device="cpu", channels_last=True)
    laid_out = []
    monkeypatch.setattr(StackedEnsemble, "use_channels_last", lambda self: laid_out.append(self))
    with pytest.warns(UserWarning, match=r"channels_last=True ignored: resnet18 at width 0.0625 .*layer2"):
        train_ensemble(cfg)
    assert laid_out == []
    train_ensemble(cfg.replace(width=0.125, seed=1))  # 8 channels and more: the layout is used
    assert len(laid_out) == 1


def test_compile_is_ignored_on_cpu_with_a_warning():
    cfg = TrainConfig(**TINY)
    ens = StackedEnsemble([build_model("cnn1d", (1, 40), 10, width=0.5) for _ in range(2)])
    assert training_forward(cfg.replace(compile=True), ens) is ens
    with pytest.warns(UserWarning, match="CUDA-only"):
        compiled = train_ensemble(cfg.replace(compile=True))
    assert torch.equal(compiled.test_logits, train_ensemble(cfg).test_logits)
