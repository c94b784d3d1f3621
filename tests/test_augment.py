"""Batched augmentation: each op does what it says, per example, driven by each member's generator."""

import numpy as np
import pytest
import torch
from PIL import Image

from fairens_core import TrainConfig
from fairens_core.augment import CUTOUT, JITTER, PAD, _cutout, _translate, augment
from fairens_core.randomness import generator
from fairens_core.train import train_ensemble


def test_translate_moves_each_example_by_its_offset():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).view(2, 1, 6, 6) + 1
    offset = torch.tensor([[PAD, PAD], [PAD + 1, PAD - 2]])  # no shift; down 1 row / right 2 columns
    out = _translate(x, offset)
    assert torch.equal(out[0], x[0])
    assert torch.equal(out[1, 0, :-1, 2:], x[1, 0, 1:, :-2])
    assert (out[1, 0, -1] == 0).all() and (out[1, 0, :, :2] == 0).all()  # zero padding enters


def test_translate_1d_signal():
    x = torch.arange(1, 11, dtype=torch.float32).view(1, 1, 10)
    out = _translate(x, torch.tensor([[PAD - 3]]))
    assert out[0, 0].tolist() == [0, 0, 0, 1, 2, 3, 4, 5, 6, 7]


def test_cutout_zeroes_a_square_around_the_centre():
    x = torch.ones(1, 3, 16, 16)
    out = _cutout(x, torch.tensor([[8, 8]]))
    half = CUTOUT // 2
    assert (out[0, :, 8 - half:8 + half + 1, 8 - half:8 + half + 1] == 0).all()
    assert out.sum() == 3 * (16 * 16 - (2 * half + 1) ** 2)


def test_augment_is_per_member_and_reproducible():
    x = torch.randn(1, 8, 3, 8, 8).expand(2, -1, -1, -1, -1)  # two members, the same images
    kinds = ("flip", "crop")
    same = augment(x, kinds, [generator(7, "a"), generator(7, "a")])
    assert torch.equal(same[0], same[1])  # shared seed: identical augmentation
    differ = augment(x, kinds, [generator(7, "a"), generator(8, "a")])
    assert not torch.equal(differ[0], differ[1])
    again = augment(x, kinds, [generator(7, "a"), generator(8, "a")])
    assert torch.equal(differ, again)
    assert augment(x, (), []) is x


def test_flip_mirrors_the_last_axis():
    x = torch.arange(4, dtype=torch.float32).view(1, 1, 1, 1, 4).expand(1, 64, 1, 1, 4)
    out = augment(x, ("flip",), [generator(0)])
    flipped = (out[0, :, 0, 0] == torch.tensor([3.0, 2, 1, 0])).all(-1)
    kept = (out[0, :, 0, 0] == torch.tensor([0.0, 1, 2, 3])).all(-1)
    assert (flipped | kept).all() and 10 < flipped.sum() < 54  # about half, each example whole


def test_image_pipeline_trains_end_to_end(tmp_path, monkeypatch):
    """uint8 images from an ImageFolder zip-free directory, normalised and augmented on the fly."""
    monkeypatch.setenv("FAIRENS_CACHE", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for split, n in (("train", 24), ("test", 8)):
        for c, colour in enumerate(("red", "blue")):
            d = tmp_path / "imgs" / split / colour
            d.mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 80, (16, 16, 3), dtype=np.uint8)
                pixels[..., 0 if c == 0 else 2] += 150
                Image.fromarray(pixels).save(d / f"{i}.png")
    cfg = TrainConfig(dataset="imagefolder", dataset_options={"path": str(tmp_path / "imgs")}, model="resnet8",
                      width=0.5, members=2, epochs=3, batch_size=16, warmup_epochs=0.5, lr=0.05,
                      augment=("crop", "flip", "cutout"), progress=False, device="cpu")
    rec = train_ensemble(cfg)
    assert rec.test_logits.shape == (2, 16, 2)
    assert rec.meta["mean"] is not None and len(rec.meta["mean"]) == 3
    assert rec.ensemble_accuracy() > 0.5  # colour is trivially learnable
    raw = torch.stack([torch.from_numpy(np.array(Image.open(p))).permute(2, 0, 1)
                       for p in sorted((tmp_path / "imgs" / "test" / "red").glob("*.png"), key=lambda p: int(p.stem))])
    assert rec.predict(raw).shape == (2, 8, 2)


@pytest.mark.parametrize("kinds", [("crop",), ("shift",), ("cutout",)])
def test_augment_keeps_shape(kinds):
    x = torch.randn(3, 5, 1, 40)
    assert augment(x, kinds, [generator(i) for i in range(3)]).shape == x.shape


def test_jitter_adds_per_member_noise_of_the_stated_scale():
    x = torch.zeros(2, 4000, 5)  # two members, 4,000 tabular examples of 5 standardised features
    same = augment(x, ("jitter",), [generator(3, "a"), generator(3, "a")])
    assert torch.equal(same[0], same[1])
    out = augment(x, ("jitter",), [generator(3, "a"), generator(4, "a")])
    assert not torch.equal(out[0], out[1])
    assert out.mean().abs() < 0.01 and abs(out.std().item() - JITTER) < 0.1 * JITTER


@pytest.mark.parametrize("kinds, shape", [(("jitter",), (3, 5, 1, 40)), (("crop",), (3, 5, 20)),
                                          (("flip", "jitter"), (3, 5, 20))])
def test_augmentation_that_does_not_fit_the_examples_is_refused(kinds, shape):
    with pytest.raises(ValueError, match="augment="):
        augment(torch.zeros(shape), kinds, [generator(i) for i in range(shape[0])])


def test_training_refuses_image_augmentation_of_a_table(tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRENS_CACHE", str(tmp_path))
    cfg = TrainConfig(dataset="synthetic", model="mlp", members=2, epochs=1, warmup_epochs=0, augment=("crop",),
                      progress=False, device="cpu")
    with pytest.raises(ValueError, match=r"augment=\('crop',\).*jitter"):
        train_ensemble(cfg)
