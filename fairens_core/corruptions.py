"""Corrupted test inputs at severities 1-5, for the CIFAR-100-C experiment of Ko et al. 2023 (§3.2).

``corrupt(x, name, severity, seed=0)`` returns a corrupted copy of a batch ``x`` given in the
dataset's raw format (what ``RunRecord.predict`` takes). The input decides the family:

* **Images**, uint8 ``(N, C, H, W)`` with C = 1 or 3 and H, W >= 32: the 19 corruptions of
  Hendrycks & Dietterich (2019, CIFAR-10/100-C and ImageNet-C), :data:`CORRUPTIONS_IMAGE`.
  Fifteen are computed by the ``imagecorruptions`` package (Michaelis et al., 2019). Its other
  three fail with NumPy 2 and current scikit-image (``glass_blur`` and ``gaussian_blur`` call
  ``skimage.filters.gaussian(multichannel=...)``, a keyword that no longer exists; ``fog`` uses
  ``np.float_``, removed in NumPy 2), so they are re-implemented here with the same parameters;
  so is ``impulse_noise``, whose random numbers the package cannot seed.
  The package's severity parameters are those of ImageNet-C (224-pixel images); on 32-pixel
  images they are harsher than the CIFAR-10-C files that Hendrycks & Dietterich distribute.
* **1-D signals**, float ``(N, C, L)`` such as mnist1d: :data:`CORRUPTIONS_1D`. These are *our*
  analogues of the image corruptions, made up for this book. They are not part of Hendrycks &
  Dietterich's benchmark: ``gaussian_noise``, ``impulse_noise`` and ``dropout`` (lost samples)
  stand for the noise family, ``blur`` for the blurs, ``contrast`` for contrast, and ``shift``
  (a translation) for the geometric ones (zoom, elastic). Noise levels are relative to each
  signal's own standard deviation, so they do not depend on the units of x. The severities were
  chosen so that a cnn1d trained on mnist1d keeps roughly 90% accuracy at severity 1 and 35-70%
  at severity 5 (on each corruption, averaged over members).

Severity 0 is the identity; 1-5 are increasingly strong. Results are deterministic given
``seed``. A corruption draws the same random numbers at every severity (common random
numbers): severity 5 of ``gaussian_noise`` is the noise of severity 1 scaled up, and severity 5
of ``impulse_noise`` hits a superset of the samples that severity 1 hits. For the 1-D family the
damage thus grows with severity for each example, not only on average; the image corruptions
keep their reference parameters, which are not all monotone (``saturate`` at severity 3 is
almost the identity).
"""

from __future__ import annotations

import warnings
import zlib

import numpy as np
import torch
from scipy.ndimage import gaussian_filter, gaussian_filter1d

SEVERITIES = (1, 2, 3, 4, 5)

# Hendrycks & Dietterich's 15 benchmark corruptions, then their 4 held-out ones (imagecorruptions order).
CORRUPTIONS_IMAGE = (
    "gaussian_noise", "shot_noise", "impulse_noise", "defocus_blur", "glass_blur", "motion_blur",
    "zoom_blur", "snow", "frost", "fog", "brightness", "contrast", "elastic_transform", "pixelate",
    "jpeg_compression", "speckle_noise", "gaussian_blur", "spatter", "saturate",
)


# ------------------------------------------------------------------------------ 1-D signals
# Each function maps x (N, C, L) float64, a severity 1-5 and a generator to the corrupted x.
# The random draws never depend on the severity (see the module docstring).

def _scale(x: np.ndarray) -> np.ndarray:
    """Standard deviation of each signal over (C, L), shape (N, 1, 1); 1 for a constant signal."""
    s = x.std(axis=(1, 2), keepdims=True)
    return np.where(s > 0, s, 1.0)


def _gaussian_noise(x, severity, rng):
    """Additive white noise with standard deviation c × the signal's own."""
    c = (0.15, 0.25, 0.35, 0.5, 0.7)[severity - 1]
    return x + c * _scale(x) * rng.standard_normal(x.shape)


def _impulse_noise(x, severity, rng):
    """Salt and pepper: a fraction p of the samples jumps to the signal's maximum or minimum."""
    p = (0.01, 0.02, 0.04, 0.07, 0.12)[severity - 1]
    hit, salt = rng.random(x.shape) < p, rng.random(x.shape) < 0.5
    high, low = x.max(axis=(1, 2), keepdims=True), x.min(axis=(1, 2), keepdims=True)
    return np.where(hit, np.where(salt, high, low), x)


def _dropout(x, severity, rng):
    """Lost samples: a fraction p of the samples is replaced by the signal's mean."""
    p = (0.03, 0.07, 0.15, 0.25, 0.4)[severity - 1]
    return np.where(rng.random(x.shape) < p, x.mean(axis=(1, 2), keepdims=True), x)


def _blur(x, severity, rng):
    """Gaussian low-pass filter along time, sigma in samples (edges repeated)."""
    sigma = (0.5, 0.65, 0.8, 0.95, 1.2)[severity - 1]
    return gaussian_filter1d(x, sigma, axis=-1, mode="nearest")


def _contrast(x, severity, rng):
    """Amplitude shrunk towards the signal's mean by a factor c."""
    c = (0.9, 0.8, 0.7, 0.6, 0.5)[severity - 1]
    mean = x.mean(axis=(1, 2), keepdims=True)
    return mean + c * (x - mean)


def _shift(x, severity, rng):
    """Translation by d samples to the left or right (random per signal), edge values repeated."""
    d = (1, 3, 5, 7, 10)[severity - 1]
    sign = np.where(rng.random(len(x)) < 0.5, -1, 1)
    index = np.clip(np.arange(x.shape[-1]) - d * sign[:, None], 0, x.shape[-1] - 1)  # (N, L)
    return np.take_along_axis(x, np.broadcast_to(index[:, None, :], x.shape), axis=-1)


_FUNCTIONS_1D = {
    "gaussian_noise": _gaussian_noise,
    "impulse_noise": _impulse_noise,
    "dropout": _dropout,
    "blur": _blur,
    "contrast": _contrast,
    "shift": _shift,
}
CORRUPTIONS_1D = tuple(_FUNCTIONS_1D)


# ------------------------------------------------------------------------------ images
# The corruptions that imagecorruptions cannot run any more, or not reproducibly, with its
# parameters. Each maps an (H, W, 3) uint8 image, a severity and a RandomState to floats in [0, 255].

def _blur_image(img01: np.ndarray, sigma: float) -> np.ndarray:
    # What skimage.filters.gaussian(..., multichannel=True) computed: no blur across channels.
    return gaussian_filter(img01, sigma=(sigma, sigma, 0), mode="nearest", truncate=4.0)


def _gaussian_blur(img, severity, rs):
    sigma = (1, 2, 3, 4, 6)[severity - 1]
    return np.clip(_blur_image(img / 255.0, sigma), 0, 1) * 255


def _glass_blur(img, severity, rs):
    """Blur, jitter every pixel with a random neighbour, blur again.

    The reference code 'swaps' pixel pairs with a tuple assignment of numpy views, which in
    fact copies the neighbour's value into both places; we keep that behaviour so that the
    corruption matches the published datasets.
    """
    sigma, delta, iterations = ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2))[severity - 1]
    x = np.uint8(_blur_image(img / 255.0, sigma) * 255)
    height, width = x.shape[:2]
    rows, cols = range(height - delta, delta, -1), range(width - delta, delta, -1)
    offsets = rs.randint(-delta, delta, size=(iterations, len(rows), len(cols), 2))
    for it in range(iterations):
        for i, h in enumerate(rows):
            for j, w in enumerate(cols):
                dx, dy = offsets[it, i, j]
                x[h, w] = x[h + dy, w + dx]
    return np.clip(_blur_image(x / 255.0, sigma), 0, 1) * 255


def _plasma_fractal(size: int, decay: float, rs: np.random.RandomState) -> np.ndarray:
    """(size, size) diamond-square height map in [0, 1]; size is a power of two."""
    heights = np.zeros((size, size))
    step, wibble = size, 100.0

    def jitter(a):
        return a / 4 + wibble * rs.uniform(-wibble, wibble, a.shape)

    while step >= 2:
        half = step // 2
        corners = heights[0:size:step, 0:size:step]
        squares = corners + np.roll(corners, -1, axis=0)
        squares += np.roll(squares, -1, axis=1)
        heights[half:size:step, half:size:step] = jitter(squares)
        centres = heights[half:size:step, half:size:step]
        heights[0:size:step, half:size:step] = jitter(
            centres + np.roll(centres, 1, axis=0) + corners + np.roll(corners, -1, axis=1))
        heights[half:size:step, 0:size:step] = jitter(
            centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=0))
        step //= 2
        wibble /= decay
    heights -= heights.min()
    return heights / heights.max()


def _fog(img, severity, rs):
    strength, decay = ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4))[severity - 1]
    x = img / 255.0
    peak = x.max()
    size = 1 << (max(img.shape) - 1).bit_length()  # next power of two
    x = x + strength * _plasma_fractal(size, decay, rs)[: img.shape[0], : img.shape[1], None]
    return np.clip(x * peak / (peak + strength), 0, 1) * 255


def _impulse_noise_image(img, severity, rs):
    # imagecorruptions leaves the seed of skimage's random_noise unset, so its result is not reproducible.
    from skimage.util import random_noise

    amount = (0.03, 0.06, 0.09, 0.17, 0.27)[severity - 1]
    return np.clip(random_noise(img / 255.0, mode="s&p", amount=amount, rng=int(rs.randint(2**31))), 0, 1) * 255


_OWN_IMAGE = {"gaussian_blur": _gaussian_blur, "glass_blur": _glass_blur, "fog": _fog,
              "impulse_noise": _impulse_noise_image}


def _corrupt_image(img: np.ndarray, name: str, severity: int, seed: list[int]) -> np.ndarray:
    """One (H, W, 3) uint8 image; the global NumPy generator is seeded and then restored."""
    if name in _OWN_IMAGE:
        return np.uint8(_OWN_IMAGE[name](img, severity, np.random.RandomState(seed)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # imagecorruptions imports the deprecated pkg_resources
        from imagecorruptions import corrupt as reference
    state = np.random.get_state()  # imagecorruptions draws from the global generator
    try:
        np.random.seed(seed)
        return reference(img, severity=severity, corruption_name=name)
    finally:
        np.random.set_state(state)


# ------------------------------------------------------------------------------ entry point
def family(x) -> str:
    """"image" for uint8 (N, C, H, W), "1d" for float (N, C, L); ValueError otherwise."""
    shape, dtype = tuple(x.shape), x.dtype
    floating = dtype.is_floating_point if isinstance(dtype, torch.dtype) else np.issubdtype(dtype, np.floating)
    if len(shape) == 4 and dtype in (torch.uint8, np.uint8):
        if shape[1] not in (1, 3) or min(shape[2:]) < 32:
            raise ValueError(f"images must be uint8 (N, C, H, W) with C in (1, 3) and H, W >= 32 "
                             f"(imagecorruptions' limits), got shape {shape}")
        return "image"
    if len(shape) == 3 and floating:
        return "1d"
    raise ValueError(f"corrupt takes uint8 images (N, C, H, W) or float signals (N, C, L); "
                     f"got shape {shape} with dtype {dtype}")


def names_for(x) -> tuple[str, ...]:
    """The corruption names that apply to inputs like x: CORRUPTIONS_IMAGE or CORRUPTIONS_1D."""
    return CORRUPTIONS_IMAGE if family(x) == "image" else CORRUPTIONS_1D


def corrupt(x, name: str, severity: int, seed: int = 0):
    """A corrupted copy of the batch x: same type (tensor or array), shape and dtype.

    x: uint8 images (N, C, H, W) or float signals (N, C, L), see the module docstring.
    name: one of ``names_for(x)``. severity: 0 (identity) to 5. seed: int >= 0; the result is a
    deterministic function of (x, name, severity, seed).
    """
    names = names_for(x)
    if name not in names:
        raise ValueError(f"unknown corruption {name!r} for {family(x)} inputs; allowed: {list(names)}")
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not 0 <= severity <= 5:
        raise ValueError(f"severity must be an integer from 0 (none) to 5, got {severity!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    is_tensor = isinstance(x, torch.Tensor)
    a = x.detach().cpu().numpy() if is_tensor else np.asarray(x)
    code = zlib.crc32(name.encode())  # a different random stream for every corruption
    if severity == 0:
        out = a.copy()
    elif family(x) == "1d":
        rng = np.random.default_rng([int(seed), code])
        out = _FUNCTIONS_1D[name](a.astype(np.float64), int(severity), rng).astype(a.dtype)
    else:
        out = np.empty_like(a)
        for i, img in enumerate(a):
            hwc = np.repeat(img, 3, axis=0).transpose(1, 2, 0) if img.shape[0] == 1 else img.transpose(1, 2, 0)
            done = _corrupt_image(np.ascontiguousarray(hwc), name, int(severity), [int(seed), code, i])
            done = done.transpose(2, 0, 1)
            out[i] = np.round(done.mean(0, keepdims=True)) if img.shape[0] == 1 else done
    return torch.from_numpy(out).to(x.device) if is_tensor else out
