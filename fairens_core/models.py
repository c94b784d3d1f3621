"""Model zoo of the book: small, readable networks used as ensemble members.

Every model maps a batch ``x`` of shape ``(B, *input_shape)`` to logits of shape
``(B, num_classes)`` (``num_classes=1`` gives a ``(B, 1)`` regression output).

Conventions the trainer relies on:

* ``build_model(name, input_shape, num_classes, width, dropout)`` validates every
  argument *before* building anything and raises ``ValueError`` naming the
  parameter and what is allowed.
* Sub-modules are registered in forward order (input side first), so walking
  ``named_parameters()`` goes from the input to the output.  This is what
  "re-initialise the first x% of parameters from the input side" uses.  Inside a
  residual block the shortcut runs in parallel with the main path; it is
  registered after the main path (as in torchvision), so the order is exact at
  block granularity.
* Models are ``torch.vmap``-compatible so that M members can be stacked with
  ``torch.func.stack_module_state`` and run in one vectorised call in train mode,
  BatchNorm included (its in-place running-stat updates work on the stacked
  buffers under vmap; see ``tests/test_models.py``).  There is no ``.item()``,
  no data-dependent control flow and no in-place op on the input tensor.  BatchNorm
  keeps the default ``momentum=0.1``: with ``momentum=None`` the update factor
  would be read from ``num_batches_tracked`` as a Python float, which vmap forbids.
* ``dropout > 0`` adds ``nn.Dropout`` layers (at least one right before the final
  linear layer) for MC dropout; with ``dropout == 0`` no dropout layer exists.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "MODELS",
    "build_model",
    "check_input_shape",
    "model_flops",
    "count_parameters",
    "MLP",
    "CNN1d",
    "CNN1dBN",
    "SmallCNN",
    "CifarResNet",
    "ResNet8",
    "ResNet20",
    "ResNet18",
    "WideResNet16",
    "VGGSmall",
    "FastCNN",
]


# --------------------------------------------------------------------------- helpers


def _channels(base: int, width: float) -> int:
    """Scale a channel / unit count by ``width``, keeping at least one unit."""
    return max(1, int(round(base * width)))


def _maybe_dropout(p: float) -> nn.Module:
    """``nn.Dropout(p)`` when ``p > 0``; otherwise a parameter-free identity."""
    return nn.Dropout(p) if p > 0 else nn.Identity()


def _image_shape(model: str, input_shape: tuple[int, ...], min_hw: int) -> tuple[int, int, int]:
    """Check that ``input_shape`` is an image ``(C, H, W)`` with ``H, W >= min_hw``."""
    if len(input_shape) != 3:
        raise ValueError(
            f"model {model!r} needs an image input (C, H, W); got input_shape={input_shape}"
        )
    c, h, w = input_shape
    if h < min_hw or w < min_hw:
        raise ValueError(
            f"model {model!r} needs an image input (C, H, W) with H, W >= {min_hw}; "
            f"got input_shape={input_shape}"
        )
    return c, h, w


def _conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    """Output length of a convolution / pooling along one axis."""
    return (size + 2 * padding - kernel) // stride + 1


# --------------------------------------------------------------------------- MLP


class MLP(nn.Module):
    """Multi-layer perceptron for tabular (or any flattened) input.

    ``(B, *input_shape) -> (B, num_classes)``.  The input is flattened, then
    ``depth`` hidden layers of ``round(128 * width)`` units with ReLU (and dropout
    after each activation when ``dropout > 0``, as in MC dropout, Gal & Ghahramani
    2016), then a linear output layer.  Two hidden layers of 128 units suit small
    tabular problems (UCI Adult / Abalone, 20-feature synthetic data).
    """

    name = "mlp"
    base_hidden = 128
    depth = 2

    @staticmethod
    def check_input_shape(input_shape: tuple[int, ...]) -> None:
        if len(input_shape) == 0:
            raise ValueError(
                "model 'mlp' needs at least one input dimension, e.g. (num_features,); "
                f"got input_shape={input_shape}"
            )

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: float = 1, dropout: float = 0.0):
        self.check_input_shape(input_shape)
        super().__init__()
        in_features = math.prod(input_shape)
        hidden = _channels(self.base_hidden, width)
        layers: list[nn.Module] = []
        for _ in range(self.depth):
            # Identity when dropout == 0 keeps parameter names independent of dropout
            layers += [nn.Linear(in_features, hidden), nn.ReLU(), _maybe_dropout(dropout)]
            in_features = hidden
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # reshape (not view): also accepts non-contiguous inputs.
        return self.fc(self.features(x.reshape(x.shape[0], -1)))


# --------------------------------------------------------------------------- CNN1d


class CNN1d(nn.Module):
    """1-D CNN for MNIST-1D (Greydanus 2020), input ``(C, L)`` or ``(L,)``, e.g. ``(1, 40)``.

    ``(B, C, L) -> (B, num_classes)``.  The shape of the strong MNIST-1D baseline
    CNN (three Conv1d + ReLU, then one linear layer), with kernel 5 everywhere and
    ``round(32 * width)`` channels: three stride-2 convolutions (padding 2) halve
    the length each time (40 -> 20 -> 10 -> 5), the ``32 x 5`` features are
    flattened and mapped to logits.  ``dropout > 0`` adds dropout before the
    linear layer.  ``batch_norm=True`` (registered as ``cnn1d_bn``) adds
    BatchNorm after each conv.

    Measured on MNIST-1D (8000 train / 2000 test, ``num_samples=10000``), mean of
    3 seeds: 96.6% test accuracy with SGD (Nesterov momentum 0.9, one-cycle lr
    0.1, weight decay 5e-4, batch 64, 20 epochs) and 95.5% with Adam (lr 1e-2,
    batch 100, 20 epochs); BatchNorm adds about one point (97.6% / 96.4%).  The
    plain model is the default: it sits in the usual 94-96% range of the MNIST-1D
    CNN, leaving room for ensembling gains, and has no running statistics.
    """

    name = "cnn1d"
    base_channels = 32
    kernel = 5
    n_convs = 3

    @classmethod
    def check_input_shape(cls, input_shape: tuple[int, ...]) -> None:
        if len(input_shape) not in (1, 2):
            raise ValueError(
                f"model {cls.name!r} needs a 1-D signal input (C, L) or (L,); "
                f"got input_shape={input_shape}"
            )
        if input_shape[-1] < 2 ** cls.n_convs:
            raise ValueError(
                f"model {cls.name!r} needs a signal length L >= {2 ** cls.n_convs}; "
                f"got input_shape={input_shape}"
            )

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        width: float = 1,
        dropout: float = 0.0,
        batch_norm: bool = False,
    ):
        self.check_input_shape(input_shape)
        super().__init__()
        self.in_channels, self.length = (1, input_shape[0]) if len(input_shape) == 1 else input_shape
        ch = _channels(self.base_channels, width)
        layers: list[nn.Module] = []
        c_in, length = self.in_channels, self.length
        for _ in range(self.n_convs):
            layers.append(nn.Conv1d(c_in, ch, self.kernel, stride=2, padding=self.kernel // 2, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm1d(ch))
            layers.append(nn.ReLU(inplace=True))
            c_in, length = ch, _conv_out(length, self.kernel, 2, self.kernel // 2)
        self.features = nn.Sequential(*layers)
        self.dropout = _maybe_dropout(dropout)
        self.fc = nn.Linear(ch * length, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # accepts (B, L) as well as (B, C, L); -1 channels: packed members (B, M*C, L) too
        x = x.reshape(x.shape[0], -1, self.length)
        h = self.features(x).flatten(1)
        return self.fc(self.dropout(h))


class CNN1dBN(CNN1d):
    """:class:`CNN1d` with BatchNorm after each convolution (``batch_norm=True``)."""

    name = "cnn1d_bn"

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: float = 1, dropout: float = 0.0):
        super().__init__(input_shape, num_classes, width=width, dropout=dropout, batch_norm=True)


# --------------------------------------------------------------------------- SmallCNN


class SmallCNN(nn.Module):
    """The "vanilla" CNN of Jeffares et al. (NeurIPS 2023), Appendix G.4, Table 3.

    ``(B, C, H, W) -> (B, num_classes)``::

        Conv2d(C -> 10, kernel 5, stride 2, padding 1) + ReLU
        Conv2d(10 -> 20, kernel 5, stride 2, padding 1) + ReLU
        Flatten
        Linear(flat -> 50) + ReLU
        Linear(50 -> num_classes)

    Channel / unit counts (10, 20, 50) are multiplied by ``width``.  The paper
    applies dropout 0.1 "throughout the network"; here ``dropout > 0`` puts a
    dropout layer after each of the three hidden ReLUs (pass ``dropout=0.1`` to
    reproduce the paper; the trainer chooses).

    Note: Table 3 lists ``Linear(500 -> 50)``, but with padding 1 a 32x32 input
    gives ``20 x 7 x 7 = 980`` features (500 = 20 x 5 x 5 would need padding 0).
    We keep the listed conv hyper-parameters and compute the flattened size from
    ``input_shape``, so the first linear layer is 980 -> 50 on CIFAR-10.
    """

    name = "small_cnn"

    @staticmethod
    def check_input_shape(input_shape: tuple[int, ...]) -> None:
        # two k5/s2/p1 convs need H, W >= 7 for a non-empty output
        _image_shape("small_cnn", input_shape, min_hw=7)

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: float = 1, dropout: float = 0.0):
        self.check_input_shape(input_shape)
        super().__init__()
        c, h, w = input_shape
        c1, c2, hidden = _channels(10, width), _channels(20, width), _channels(50, width)
        self.conv1 = nn.Conv2d(c, c1, kernel_size=5, stride=2, padding=1)
        self.drop1 = _maybe_dropout(dropout)
        self.conv2 = nn.Conv2d(c1, c2, kernel_size=5, stride=2, padding=1)
        self.drop2 = _maybe_dropout(dropout)
        for _ in range(2):
            h, w = _conv_out(h, 5, 2, 1), _conv_out(w, 5, 2, 1)
        self.fc1 = nn.Linear(c2 * h * w, hidden)
        self.drop3 = _maybe_dropout(dropout)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop1(F.relu(self.conv1(x)))
        x = self.drop2(F.relu(self.conv2(x)))
        x = self.drop3(F.relu(self.fc1(x.flatten(1))))
        return self.fc2(x)


# --------------------------------------------------------------------------- ResNets


class PadShortcut(nn.Module):
    """Parameter-free shortcut of He et al. (2016), CIFAR ResNets ("option A").

    Subsamples spatially by ``stride`` and zero-pads the new channels, so
    ``(B, C_in, H, W) -> (B, C_out, ceil(H/stride), ceil(W/stride))``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.stride, self.in_channels = stride, in_channels
        extra = out_channels - in_channels
        self.pad = (extra // 2, extra - extra // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        # pad each block of in_channels: one block, or one per member of a packed ensemble
        blocks = x.unflatten(1, (-1, self.in_channels))
        return F.pad(blocks, (0, 0, 0, 0, *self.pad)).flatten(1, 2)


class BasicBlock(nn.Module):
    """Post-activation basic residual block (He et al., CVPR 2016).

    ``relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))``;
    ``(B, C_in, H, W) -> (B, C_out, H/stride, W/stride)``.  When the shape
    changes, the shortcut is either the zero-padding "option A" (CIFAR ResNets,
    no parameters) or a 1x1 conv + BN ("option B", CIFAR ResNet-18).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, shortcut: str = "conv"):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        if stride == 1 and in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        elif shortcut == "pad":
            self.shortcut = PadShortcut(in_channels, out_channels, stride)
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR ResNet-(6n+2) of He et al. (CVPR 2016, Sec. 4.2), any ``(C, H, W)`` with H, W >= 8.

    ``(B, C, H, W) -> (B, num_classes)``.  3x3 conv (16 ch) + BN + ReLU, three
    stages of ``n`` basic blocks with 16/32/64 channels (x ``width``), the last two
    halving the resolution, global average pooling, (dropout,) linear layer.
    Shortcuts are the parameter-free zero-padding "option A" of the paper, giving
    0.27M parameters for ResNet-20 as in its Table 6.
    """

    name = "resnet"
    blocks_per_stage = 1

    @classmethod
    def check_input_shape(cls, input_shape: tuple[int, ...]) -> None:
        _image_shape(cls.name, input_shape, min_hw=8)

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: float = 1, dropout: float = 0.0):
        self.check_input_shape(input_shape)
        super().__init__()
        widths = [_channels(c, width) for c in (16, 32, 64)]
        self.conv1 = nn.Conv2d(input_shape[0], widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages, c_in = [], widths[0]
        for i, c_out in enumerate(widths):
            blocks = []
            for j in range(self.blocks_per_stage):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(BasicBlock(c_in, c_out, stride, shortcut="pad"))
                c_in = c_out
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.dropout = _maybe_dropout(dropout)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = x.mean(dim=(2, 3))  # global average pooling
        return self.fc(self.dropout(x))


class ResNet8(CifarResNet):
    """ResNet-8 (n = 1 basic block per stage); see :class:`CifarResNet`."""

    name = "resnet8"
    blocks_per_stage = 1


class ResNet20(CifarResNet):
    """ResNet-20 (n = 3 basic blocks per stage); see :class:`CifarResNet`."""

    name = "resnet20"
    blocks_per_stage = 3


class ResNet18(nn.Module):
    """CIFAR variant of ResNet-18 (He et al. 2016; the common CIFAR adaptation).

    ``(B, C, H, W) -> (B, num_classes)``, H, W >= 8.  A 3x3 stride-1 stem conv
    (64 ch) + BN + ReLU and no max-pool (32x32 inputs are small), four stages of
    two basic blocks with 64/128/256/512 channels (x ``width``; stages 2-4 halve
    the resolution, 1x1 conv + BN shortcuts), global average pooling, (dropout,)
    linear layer.  11.2M parameters at width 1 with 10 classes.
    """

    name = "resnet18"

    @staticmethod
    def check_input_shape(input_shape: tuple[int, ...]) -> None:
        _image_shape("resnet18", input_shape, min_hw=8)

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: float = 1, dropout: float = 0.0):
        self.check_input_shape(input_shape)
        super().__init__()
        widths = [_channels(c, width) for c in (64, 128, 256, 512)]
        self.conv1 = nn.Conv2d(input_shape[0], widths[0], 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        stages, c_in = [], widths[0]
        for i, c_out in enumerate(widths):
            stride = 1 if i == 0 else 2
            stages.append(nn.Sequential(BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out, 1)))
            c_in = c_out
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.dropout = _maybe_dropout(dropout)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = x.mean(dim=(2, 3))  # global average pooling
        return self.fc(self.dropout(x))


# --------------------------------------------------------------------------- Wide ResNet


class WideBasicBlock(nn.Module):
    """Pre-activation wide basic block of Zagoruyko & Komodakis (BMVC 2016).

    ``out = conv2(dropout(relu(bn2(conv1(relu(bn1(x))))))) + shortcut``;
    ``(B, C_in, H, W) -> (B, C_out, H/stride, W/stride)``.  When the shape
    changes the shortcut is a 1x1 conv applied to the pre-activated input
    ``relu(bn1(x))``, as in the authors' code; otherwise it is ``x`` itself.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, dropout: float = 0.0):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.dropout = _maybe_dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.equal_in_out = stride == 1 and in_channels == out_channels
        self.shortcut = (
            None
            if self.equal_in_out
            else nn.Conv2d(in_channels, out_channels, 1, stride=stride, padding=0, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = F.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(self.dropout(F.relu(self.bn2(out))))
        # structural (not data-dependent) branch: fixed at construction time
        return out + (x if self.equal_in_out else self.shortcut(pre))


class WideResNet16(nn.Module):
    """Wide ResNet 16-k (Zagoruyko & Komodakis, BMVC 2016), any ``(C, H, W)`` with H, W >= 8.

    ``(B, C, H, W) -> (B, num_classes)``.  Depth 16 = 6N + 4 with N = 2 blocks per
    stage: a 3x3 conv with 16 channels, three stages of two pre-activation wide
    blocks with 16k/32k/64k channels (k = ``width``, a positive integer; stages 2-3
    halve the resolution), BN + ReLU, global average pooling, (dropout,) linear.
    ``dropout > 0`` puts dropout between the two convs of every block (as in the
    paper) and before the linear layer (for MC dropout).  This is the family used
    by Kondratyuk et al. (2020) with k in {1, 2, 4, 8}.
    """

    name = "wrn16"
    depth = 16

    @staticmethod
    def check_input_shape(input_shape: tuple[int, ...]) -> None:
        _image_shape("wrn16", input_shape, min_hw=8)

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: float = 1, dropout: float = 0.0):
        self.check_input_shape(input_shape)
        _check_integer_width("wrn16", width)
        super().__init__()
        k = int(width)
        n = (self.depth - 4) // 6
        widths = [16 * k, 32 * k, 64 * k]
        self.conv1 = nn.Conv2d(input_shape[0], 16, 3, stride=1, padding=1, bias=False)
        stages, c_in = [], 16
        for i, c_out in enumerate(widths):
            blocks = []
            for j in range(n):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(WideBasicBlock(c_in, c_out, stride, dropout))
                c_in = c_out
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.bn = nn.BatchNorm2d(c_in)
        self.dropout = _maybe_dropout(dropout)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.relu(self.bn(x)).mean(dim=(2, 3))  # global average pooling
        return self.fc(self.dropout(x))


# --------------------------------------------------------------------------- VGG


class VGGSmall(nn.Module):
    """A small VGG (Simonyan & Zisserman 2015 style), any ``(C, H, W)`` with H, W >= 8.

    ``(B, C, H, W) -> (B, num_classes)``.  Three stages of two 3x3 conv + BN +
    ReLU layers with 64/128/256 channels (x ``width``), each followed by a 2x2
    max-pool (32x32 -> 4x4), then flatten, (dropout,) and one linear layer.
    A scaled-down relative of the VGG of Jeffares et al. (2023), Table 4.
    """

    name = "vgg_small"
    stages = (64, 128, 256)

    @staticmethod
    def check_input_shape(input_shape: tuple[int, ...]) -> None:
        _image_shape("vgg_small", input_shape, min_hw=8)

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: float = 1, dropout: float = 0.0):
        self.check_input_shape(input_shape)
        super().__init__()
        c_in, h, w = input_shape
        layers: list[nn.Module] = []
        for base in self.stages:
            c_out = _channels(base, width)
            for _ in range(2):
                layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
                c_in = c_out
            layers.append(nn.MaxPool2d(2))
            h, w = h // 2, w // 2
        self.features = nn.Sequential(*layers)
        self.dropout = _maybe_dropout(dropout)
        self.fc = nn.Linear(c_in * h * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(self.features(x).flatten(1)))


# --------------------------------------------------------------------------- FastCNN


class ConvPoolGroup(nn.Module):
    """conv3x3 -> max-pool 2 -> BN -> GELU -> conv3x3 -> BN -> GELU.

    ``(B, C_in, H, W) -> (B, C_out, H // 2, W // 2)``.  Pooling right after the
    first conv makes the second conv (and both BatchNorms) run at a quarter of
    the pixels; the convs have no bias since a BatchNorm follows each.
    """

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.bn1(self.pool(self.conv1(x))))
        return F.gelu(self.bn2(self.conv2(x)))


class FastCNN(nn.Module):
    """A small, fast CIFAR-10 network for few-epoch training, any ``(C, H, W)`` with H, W >= 16.

    ``(B, C, H, W) -> (B, num_classes)``::

        Conv2d(C -> 8C, kernel 2, no padding, bias) + GELU     32x32 -> 31x31
        3 x ConvPoolGroup, 64 / 256 / 256 channels (x width)   31 -> 15 -> 7 -> 3
        global max pool, flatten, (dropout,)
        Linear(256 -> num_classes, no bias), times 1/9

    The 2x2 stem has ``2 * C * 2 * 2`` channels (24 for RGB: twice the size of
    a 2x2 patch), not scaled by ``width``.  The fixed output scale ``1/9`` (a
    plain float, not a parameter) keeps the initial logits small, which suits
    the large learning rates of short schedules.  1.97M parameters and 0.24
    forward GFLOPs per 32x32 example at width 1 (``model_flops``).  The layout
    of the fast CIFAR-10 trainers (Page 2018; Jordan 2024, "airbench"), without
    their whitening initialisation, frozen BatchNorm scales, lookahead or
    test-time augmentation: those belong to a training recipe, not to the
    architecture.
    """

    name = "fastcnn"
    stages = (64, 256, 256)
    stem_kernel = 2
    scale = 1 / 9

    @staticmethod
    def check_input_shape(input_shape: tuple[int, ...]) -> None:
        # stem (-1) then three halvings: 16 -> 15 -> 7 -> 3 -> 1
        _image_shape("fastcnn", input_shape, min_hw=16)

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: float = 1, dropout: float = 0.0):
        self.check_input_shape(input_shape)
        super().__init__()
        c_in = input_shape[0]
        stem = 2 * c_in * self.stem_kernel**2
        self.stem = nn.Conv2d(c_in, stem, self.stem_kernel, padding=0, bias=True)
        widths = [_channels(c, width) for c in self.stages]
        self.group1 = ConvPoolGroup(stem, widths[0])
        self.group2 = ConvPoolGroup(widths[0], widths[1])
        self.group3 = ConvPoolGroup(widths[1], widths[2])
        self.dropout = _maybe_dropout(dropout)
        self.fc = nn.Linear(widths[2], num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.stem(x))
        x = self.group3(self.group2(self.group1(x)))
        x = x.amax(dim=(2, 3))  # global max pool
        return self.fc(self.dropout(x)) * self.scale


# --------------------------------------------------------------------------- registry & API


MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": MLP,
    "cnn1d": CNN1d,
    "cnn1d_bn": CNN1dBN,
    "small_cnn": SmallCNN,
    "resnet8": ResNet8,
    "resnet20": ResNet20,
    "resnet18": ResNet18,
    "wrn16": WideResNet16,
    "vgg_small": VGGSmall,
    "fastcnn": FastCNN,
}

# models whose ``width`` is an integer widening factor rather than a multiplier
_INTEGER_WIDTH = {"wrn16"}


def _check_integer_width(name: str, width: float) -> None:
    if float(width) != int(width) or int(width) < 1:
        raise ValueError(
            f"width for model {name!r} is the integer widening factor k of WRN-16-k "
            f"and must be a positive integer (1, 2, 4, 8, ...); got width={width!r}"
        )


def _normalise_input_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    try:
        dims = tuple(input_shape)
    except TypeError:
        dims = None
    if dims is None or not all(isinstance(d, numbers.Integral) and not isinstance(d, bool) and d > 0 for d in dims):
        raise ValueError(
            "input_shape must be a tuple of positive ints without the batch dimension, "
            f"e.g. (1, 40), (3, 32, 32) or (20,); got input_shape={input_shape!r}"
        )
    return tuple(int(d) for d in dims)


def build_model(
    name: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    width: float = 1,
    dropout: float = 0.0,
) -> nn.Module:
    """Build model ``name`` for inputs of shape ``(B, *input_shape)``.

    Args:
        name: a key of :data:`MODELS`.
        input_shape: shape of one example, without the batch dimension, e.g.
            ``(1, 40)`` for MNIST-1D, ``(3, 32, 32)`` for CIFAR, ``(20,)`` for tabular.
        num_classes: number of output logits (1 for regression).
        width: channel / unit multiplier (> 0); for ``wrn16`` the integer k.
        dropout: dropout probability in [0, 1); 0 builds no dropout layers.

    Returns:
        An ``nn.Module`` mapping ``(B, *input_shape)`` to ``(B, num_classes)``.

    Raises:
        ValueError: unknown name, bad width/dropout/num_classes, or an
            ``input_shape`` the architecture cannot take; raised before building.
    """
    shape = check_input_shape(name, input_shape)
    if isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral) or num_classes < 1:
        raise ValueError(f"num_classes must be a positive int (1 for regression); got num_classes={num_classes!r}")
    if (
        isinstance(width, bool)
        or not isinstance(width, numbers.Real)
        or not math.isfinite(width)
        or width <= 0
    ):
        raise ValueError(f"width must be a finite number > 0 (1 = the reference size); got width={width!r}")
    if name in _INTEGER_WIDTH:
        _check_integer_width(name, width)
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a probability in [0, 1); got dropout={dropout!r}")
    return MODELS[name](shape, int(num_classes), width=width, dropout=float(dropout))


def check_input_shape(name: str, input_shape: Sequence[int]) -> tuple[int, ...]:
    """``input_shape`` as a tuple of ints if model ``name`` can take such inputs (checked without
    building it); ValueError naming the model and the shape otherwise."""
    if name not in MODELS:
        raise ValueError(f"unknown model name={name!r}; allowed: {sorted(MODELS)}")
    shape = _normalise_input_shape(input_shape)
    check = getattr(MODELS[name], "check_input_shape", None)
    if check is not None:
        check(shape)
    return shape


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters (each shared tensor counted once; buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def model_flops(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Forward FLOPs for one example of shape ``input_shape``, counted by PyTorch.

    Uses ``torch.utils.flop_counter.FlopCounterMode`` on a batch of one, in eval
    mode and under ``torch.no_grad``.  It counts matrix multiplications and
    convolutions (one multiply-add = 2 FLOPs); element-wise ops, BatchNorm and
    pooling are not counted.  Every module's training flag is restored afterwards
    and, since eval-mode BatchNorm does not update its running statistics, no
    buffer changes.  Works for models on any device, including ``meta``.
    """
    shape = _normalise_input_shape(input_shape)
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.get_default_dtype()
    x = torch.zeros((1, *shape), device=device, dtype=dtype)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            model(x)
    finally:
        for m, training in modes:
            m.train(training)
    return int(counter.get_total_flops())
