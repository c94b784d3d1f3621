"""Corruptions of test inputs (fairens_core.corruptions): 1-D analogues and the image wrappers."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch

from fairens_core.corruptions import CORRUPTIONS_1D, CORRUPTIONS_IMAGE, SEVERITIES, corrupt, family, names_for

RANDOM_1D = ("gaussian_noise", "impulse_noise", "dropout", "shift")


@pytest.fixture
def signals() -> torch.Tensor:
    """(3, 1, 40) float32: a bump on a ramp, a sine, a step; none is periodic on 40 samples."""
    t = torch.linspace(0, 1, 40)
    return torch.stack([
        2 * t + torch.exp(-((t - 0.4) / 0.1) ** 2),
        torch.sin(7 * t) + 0.3,
        (t > 0.55).float() * 3 - 1,
    ])[:, None, :]


@pytest.fixture
def images() -> np.ndarray:
    """(2, 3, 32, 32) uint8: gradients with an edge, and a random texture."""
    yy, xx = np.mgrid[0:32, 0:32]
    smooth = np.stack([xx * 8, yy * 8, (xx + yy) * 4]) % 256
    smooth[:, 10:20, 10:20] = 255
    texture = np.random.default_rng(0).integers(0, 256, (3, 32, 32))
    return np.stack([smooth, texture]).astype(np.uint8)


# ------------------------------------------------------------------------------ 1-D signals
@pytest.mark.parametrize("name", CORRUPTIONS_1D)
def test_severity_zero_is_an_identity_copy(signals, name):
    out = corrupt(signals, name, 0)
    assert torch.equal(out, signals)
    out += 1
    assert not torch.equal(out, signals)  # a copy, never the input itself


@pytest.mark.parametrize("name", CORRUPTIONS_1D)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_and_type_are_preserved(signals, name, dtype):
    x = signals.to(dtype)
    out = corrupt(x, name, 3, seed=1)
    assert isinstance(out, torch.Tensor) and out.shape == x.shape and out.dtype == dtype
    arr = corrupt(x.numpy(), name, 3, seed=1)
    assert isinstance(arr, np.ndarray) and arr.dtype == x.numpy().dtype
    np.testing.assert_array_equal(arr, out.numpy())


@pytest.mark.parametrize("name", CORRUPTIONS_1D)
def test_damage_grows_with_severity_on_a_fixed_signal(signals, name):
    x = signals.repeat(10, 1, 1)  # 1,200 samples: enough for impulse noise's 1% to hit some
    damage = [float((corrupt(x, name, s, seed=0) - x).norm()) for s in range(6)]
    assert damage[0] == 0
    assert all(a < b for a, b in zip(damage, damage[1:])), damage


@pytest.mark.parametrize("name", CORRUPTIONS_1D)
def test_deterministic_given_the_seed(signals, name):
    assert torch.equal(corrupt(signals, name, 4, seed=7), corrupt(signals, name, 4, seed=7))
    same = torch.equal(corrupt(signals, name, 4, seed=7), corrupt(signals, name, 4, seed=8))
    assert same == (name not in RANDOM_1D)


def test_noise_is_relative_to_each_signal(signals):
    # Scaling a signal scales its corruption: severities do not depend on the units of x.
    for name in CORRUPTIONS_1D:
        torch.testing.assert_close(corrupt(10 * signals, name, 3, seed=2), 10 * corrupt(signals, name, 3, seed=2))


def test_severities_share_their_random_numbers(signals):
    x = signals.repeat(20, 1, 1)
    low, high = corrupt(x, "impulse_noise", 1, seed=3) != x, corrupt(x, "impulse_noise", 5, seed=3) != x
    assert low.any() and (high | ~low).all()  # severity 5 hits every sample that severity 1 hits
    noise1, noise5 = corrupt(x, "gaussian_noise", 1, seed=3) - x, corrupt(x, "gaussian_noise", 5, seed=3) - x
    torch.testing.assert_close(noise5, noise1 * (0.7 / 0.15))


def test_individual_1d_corruptions(signals):
    x = signals.double()
    mean = x.mean(dim=(1, 2), keepdim=True)
    torch.testing.assert_close(corrupt(x, "contrast", 5), mean + 0.5 * (x - mean))
    # shift: every signal moves by 10 samples one way or the other, the edge value repeated
    out = corrupt(x, "shift", 5, seed=0)
    for o, s in zip(out[:, 0], x[:, 0]):
        left, right = torch.cat([s[10:], s[-1:].repeat(10)]), torch.cat([s[:1].repeat(10), s[:-10]])
        assert torch.equal(o, left) or torch.equal(o, right)
    # blur keeps a constant signal and smooths a step
    flat = torch.full((1, 1, 40), 2.0, dtype=torch.float64)
    torch.testing.assert_close(corrupt(flat, "blur", 5), flat)
    assert corrupt(x, "blur", 5)[2].diff().abs().max() < x[2].diff().abs().max()
    # dropout replaces samples by the signal's mean, impulse noise by its extremes
    changed = corrupt(x, "dropout", 5, seed=0)
    assert torch.isclose(changed, mean.expand_as(x))[changed != x].all()
    hit = corrupt(x, "impulse_noise", 5, seed=0)
    extremes = (hit == x.amax(dim=(1, 2), keepdim=True)) | (hit == x.amin(dim=(1, 2), keepdim=True))
    assert extremes[hit != x].all()


def test_accuracy_style_damage_on_average(signals):
    # Higher severity moves a batch of varied signals further on average, for every corruption.
    x = signals.repeat(30, 1, 1) * torch.linspace(0.5, 2, 90)[:, None, None]
    for name in CORRUPTIONS_1D:
        damage = [float((corrupt(x, name, s) - x).abs().mean()) for s in SEVERITIES]
        assert damage == sorted(damage), name


# ------------------------------------------------------------------------------ images
@pytest.mark.parametrize("name", ["gaussian_noise", "contrast", "motion_blur", "impulse_noise",
                                  "gaussian_blur", "glass_blur", "fog"])
def test_image_corruptions(images, name):
    out = corrupt(images, name, 3, seed=0)
    assert out.shape == images.shape and out.dtype == np.uint8
    assert not np.array_equal(out, images)
    np.testing.assert_array_equal(out, corrupt(images, name, 3, seed=0))
    np.testing.assert_array_equal(corrupt(images, name, 0), images)


def test_every_image_corruption_runs(images):
    for name in CORRUPTIONS_IMAGE:
        out = corrupt(images[:1], name, 5, seed=1)
        assert out.shape == (1, 3, 32, 32) and out.dtype == np.uint8, name


def test_image_tensors_and_grayscale(images):
    x = torch.from_numpy(images)
    out = corrupt(x, "gaussian_noise", 2, seed=0)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.uint8
    np.testing.assert_array_equal(out.numpy(), corrupt(images, "gaussian_noise", 2, seed=0))
    gray = images[:, :1].copy()
    out = corrupt(gray, "fog", 2)
    assert out.shape == gray.shape and out.dtype == np.uint8 and not np.array_equal(out, gray)


def test_noise_damage_grows_with_severity_on_images(images):
    for name in ("gaussian_noise", "impulse_noise", "gaussian_blur"):
        damage = [np.abs(corrupt(images, name, s).astype(float) - images).mean() for s in range(6)]
        assert all(a < b for a, b in zip(damage, damage[1:])), (name, damage)


def test_reimplemented_image_corruptions_match_the_reference(images, monkeypatch):
    """glass_blur, gaussian_blur and fog equal imagecorruptions' own code once its NumPy 2 /
    scikit-image incompatibilities are patched around, random numbers included."""
    from PIL import Image
    from skimage.filters import gaussian

    import imagecorruptions.corruptions as reference

    def old_gaussian(img, sigma, multichannel=False):
        return gaussian(img, sigma=sigma, channel_axis=-1 if multichannel else None)

    monkeypatch.setattr(reference, "gaussian", old_gaussian)
    monkeypatch.setattr(np, "float_", np.float64, raising=False)
    for name in ("glass_blur", "gaussian_blur", "fog"):
        for severity in (1, 5):
            ours = corrupt(images, name, severity, seed=4)
            for i, img in enumerate(images):
                np.random.seed([4, zlib.crc32(name.encode()), i])
                theirs = np.uint8(getattr(reference, name)(Image.fromarray(img.transpose(1, 2, 0)), severity))
                np.testing.assert_array_equal(ours[i], theirs.transpose(2, 0, 1), err_msg=f"{name} {severity}")


def test_impulse_noise_on_images_hits_the_expected_fraction(images):
    big = np.repeat(images, 5, axis=0)
    changed = (corrupt(big, "impulse_noise", 5, seed=0) != big).mean()
    assert 0.2 < changed < 0.3  # amount 0.27, minus the pixels already at 0 or 255


# ------------------------------------------------------------------------------ errors
def test_family_and_names(signals, images):
    assert family(signals) == "1d" and names_for(signals) == CORRUPTIONS_1D
    assert family(images) == "image" and names_for(images) == CORRUPTIONS_IMAGE
    assert len(CORRUPTIONS_IMAGE) == 19


@pytest.mark.parametrize("name, severity, seed, match", [
    ("frost", 1, 0, "unknown corruption 'frost' for 1d"),
    ("nope", 1, 0, "unknown corruption"),
    ("blur", 6, 0, "severity"),
    ("blur", -1, 0, "severity"),
    ("blur", 2.0, 0, "severity"),
    ("blur", True, 0, "severity"),
    ("blur", 1, -1, "seed"),
])
def test_bad_names_severities_and_seeds(signals, name, severity, seed, match):
    with pytest.raises(ValueError, match=match):
        corrupt(signals, name, severity, seed=seed)


def test_bad_names_for_images(images):
    with pytest.raises(ValueError, match="unknown corruption 'blur' for image"):
        corrupt(images, "blur", 1)


@pytest.mark.parametrize("x, match", [
    (torch.zeros(4, 40), "uint8 images .* or float signals"),
    (torch.zeros(2, 3, 32, 32), "uint8 images .* or float signals"),  # float images
    (torch.zeros(2, 1, 40, dtype=torch.uint8), "uint8 images .* or float signals"),
    (np.zeros((2, 3, 16, 16), np.uint8), "H, W >= 32"),
    (np.zeros((2, 2, 32, 32), np.uint8), "C in"),
])
def test_bad_shapes(x, match):
    with pytest.raises(ValueError, match=match):
        corrupt(x, "gaussian_noise", 1)
