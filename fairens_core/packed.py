"""M members as one network of grouped layers ("packed" ensembles).

The members' channels are laid side by side: a batch for M members is one tensor
(B, M*C, H, W) whose channel block m belongs to member m. Every layer then keeps the blocks
apart by construction:

- convolutions are grouped convolutions with `groups = M * groups`, weight (M*O, I, kh, kw);
- BatchNorm over M*C channels keeps exactly one set of statistics per member, since the
  channels of different members never mix;
- a linear layer is a batched matrix product over the member axis;
- everything else in the zoo (activations, pooling, residual additions, flatten) acts per
  channel, so it needs no change.

This is what `torch.vmap` over stacked parameters does too, but as plain modules: cuDNN,
bf16 autocast, channels-last and `torch.compile` see ordinary convolutions.

A `PackedEnsemble` keeps every parameter and buffer in the same stacked layout as
`ensemble.StackedEnsemble` — (M, *member_shape), under the member's own names — so
checkpoints, records, spawning and re-initialisation are shared by both paths; the packed
layers only reshape views of those tensors.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import stack_module_state

from .ensemble import MemberState, stacked_channels_last


class PackedConv(nn.Module):
    """M convolutions as one grouped convolution; weight (M, O, I/groups, *kernel)."""

    def __init__(self, conv: nn.Conv1d | nn.Conv2d, members: int):
        super().__init__()
        if conv.padding_mode != "zeros":
            raise ValueError(f"packing supports zero-padded convolutions; got padding_mode={conv.padding_mode!r}")
        self.members = members
        self.conv = {1: F.conv1d, 2: F.conv2d}[conv.weight.dim() - 2]
        self.stride, self.padding, self.dilation, self.groups = conv.stride, conv.padding, conv.dilation, conv.groups
        self.weight = nn.Parameter(torch.empty(0))
        self.bias = nn.Parameter(torch.empty(0)) if conv.bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.flatten(0, 1)  # (M*O, I, *kernel): a view, channels-last when the weight is
        b = self.bias.flatten() if self.bias is not None else None
        return self.conv(x, w, b, self.stride, self.padding, self.dilation, self.groups * self.members)


class PackedLinear(nn.Module):
    """M linear layers as one batched product; weight (M, out, in), bias (M, out).

    (B, M*in) -> (B, M*out): member m reads features [m*in, (m+1)*in) and writes its block.
    """

    def __init__(self, linear: nn.Linear, members: int):
        super().__init__()
        self.members = members
        self.weight = nn.Parameter(torch.empty(0))
        self.bias = nn.Parameter(torch.empty(0)) if linear.bias is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xm = x.reshape(x.shape[0], self.members, -1).transpose(0, 1)  # (M, B, in)
        out = torch.bmm(xm, self.weight.transpose(1, 2))  # (M, B, out)
        if self.bias is not None:
            out = out + self.bias.unsqueeze(1)
        return out.transpose(0, 1).flatten(1)


class PackedBatchNorm(nn.Module):
    """M BatchNorms over M*C channels; weight, bias and running statistics (M, C).

    The running statistics are updated in place through flat views of the stacked buffers.
    """

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm, members: int):
        super().__init__()
        if not (bn.affine and bn.track_running_stats and bn.momentum is not None):
            raise ValueError("packing supports affine BatchNorm with running statistics and a fixed momentum")
        self.members, self.eps, self.momentum = members, bn.eps, bn.momentum
        self.weight = nn.Parameter(torch.empty(0))
        self.bias = nn.Parameter(torch.empty(0))
        self.register_buffer("running_mean", torch.empty(0))
        self.register_buffer("running_var", torch.empty(0))
        self.register_buffer("num_batches_tracked", torch.empty(0, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.num_batches_tracked.add_(1)
        return F.batch_norm(x, self.running_mean.view(-1), self.running_var.view(-1), self.weight.flatten(),
                            self.bias.flatten(), self.training, self.momentum, self.eps)


class PackedDropout(nn.Module):
    """Dropout of M members: independent masks, or one mask shared by all members
    (`shared`, the packed counterpart of vmap's randomness='same')."""

    def __init__(self, dropout: nn.Dropout, members: int):
        super().__init__()
        self.p, self.members, self.shared = dropout.p, members, False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if not self.shared:
            return F.dropout(x, self.p, training=True)
        per_member = x.unflatten(1, (self.members, -1))
        mask = F.dropout(torch.ones_like(per_member[:, :1]), self.p, training=True)
        return (per_member * mask).flatten(1, 2)


PACKED_LAYERS = {nn.Conv1d: PackedConv, nn.Conv2d: PackedConv, nn.Linear: PackedLinear,
                 nn.BatchNorm1d: PackedBatchNorm, nn.BatchNorm2d: PackedBatchNorm, nn.Dropout: PackedDropout}


def pack_layers(module: nn.Module, members: int) -> nn.Module:
    """Replace every layer of `module` (in place) by its packed counterpart; parameter-free
    layers that act per channel stay as they are."""
    for name, child in module.named_children():
        packed = PACKED_LAYERS.get(type(child))
        if packed is not None:
            setattr(module, name, packed(child, members))
        elif next(child.parameters(recurse=False), None) is not None:
            raise ValueError(f"cannot pack layer {name!r} of type {type(child).__name__}: "
                             f"packable layers are {[t.__name__ for t in PACKED_LAYERS]}")
        else:
            pack_layers(child, members)
    return module


class PackedEnsemble(MemberState, nn.Module):
    """M members of one architecture as one packed network.

    forward(x): x (M, B, *input_shape) -> logits (M, B, C); member m sees x[m]. Same
    interface and the same stacked state as `StackedEnsemble`.
    """

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        m = len(members)
        self.net = pack_layers(copy.deepcopy(members[0]), m)
        params, buffers = stack_module_state(members)
        with torch.no_grad():
            for name, value in {**params, **buffers}.items():
                owner, attr = self._owner(name)
                current = getattr(owner, attr)
                if isinstance(current, nn.Parameter):
                    setattr(owner, attr, nn.Parameter(value.detach().clone()))
                else:
                    setattr(owner, attr, value.detach().clone())
        self.names = list(params)
        self.buffer_names = list(buffers)
        self.randomness = "different"
        self.channels_last = False
        object.__setattr__(self, "template", copy.deepcopy(members[0]).to("meta"))

    def _owner(self, name: str) -> tuple[nn.Module, str]:
        path, _, attr = name.rpartition(".")
        return (self.net.get_submodule(path) if path else self.net), attr

    def stacked(self) -> tuple[dict, dict]:
        params = {k: self._get(k) for k in self.names}
        buffers = {k: self._get(k) for k in self.buffer_names}
        return params, buffers

    def _get(self, name: str) -> torch.Tensor:
        owner, attr = self._owner(name)
        return getattr(owner, attr)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shared = self.randomness == "same"
        for layer in self.net.modules():
            if isinstance(layer, PackedDropout):
                layer.shared = shared
        m, b = x.shape[:2]
        if self.channels_last and x.dim() == 5:  # (B, M*C, H, W) stored as B, H, W, M, C
            x = stacked_channels_last(x).movedim(0, 1).flatten(1, 2)
        else:
            x = x.movedim(0, 1).flatten(1, 2) if x.dim() > 2 else x.movedim(0, 1).reshape(b, -1)
        out = self.net(x)  # (B, M*C)
        return out.reshape(b, m, -1).movedim(1, 0)
