"""M models as one: stacked parameters, evaluated with `torch.vmap` (the reference path;
`packed.PackedEnsemble` is the fast one).

Every parameter and buffer of the M members is stacked along a new leading dimension, and
one vmapped `functional_call` runs all members in a single batched computation (one
kernel launch per layer instead of M). BatchNorm statistics stay per member because the
buffers are stacked too. Optimizers such as SGD and Adam act elementwise, so one optimizer
over the stacked tensors is exactly M independent optimizers.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.func import functional_call, stack_module_state

from .models import build_model
from .randomness import source_seed


def init_member(cfg, input_shape, num_classes: int, seed: int) -> nn.Module:
    """One freshly initialised member; its weights depend only on `seed`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed % 2**63)
        return build_model(cfg.model, input_shape, num_classes, width=cfg.width, dropout=cfg.dropout)


def init_members(cfg, input_shape, num_classes: int, members, vary=None) -> list[nn.Module]:
    """Members `members` (indices) as training initialises them: each from its own init seed, drawn
    from the sources in `vary` (default: the config's; () gives every member the same init)."""
    vary = cfg.vary_sources if vary is None else vary
    return [init_member(cfg, input_shape, num_classes, source_seed(cfg.seed, "init", m, vary)) for m in members]


class MemberState:
    """What both ensemble forms share: M members' parameters and buffers, each stacked as
    (M, *member_shape) under the member's own names (`stacked()`), and `template`, one
    member's architecture without storage."""

    @property
    def size(self) -> int:
        return next(iter(self.stacked()[0].values())).shape[0]

    @torch.no_grad()
    def use_channels_last(self):
        """Lay out image inputs and conv weights channels-last from now on (values unchanged).

        The M members' convolutions run as one grouped convolution over (B, M*C, H, W) inputs
        and (M*O, C, kh, kw) weights; both are channels-last views when every stacked conv
        weight (M, O, C, kh, kw) is stored in the order M, O, kh, kw, C and every input batch
        (M, B, C, H, W) in the order B, H, W, M, C (see `stacked_channels_last`).
        """
        for p in self.stacked()[0].values():
            if p.dim() == 5:  # stacked 4-D conv weights
                p.data = p.data.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)
        self.channels_last = True
        return self

    def member(self, m: int) -> nn.Module:
        """Member m as an ordinary nn.Module (a copy)."""
        model = copy.deepcopy(self.template).to_empty(device="cpu")
        params, buffers = self.stacked()
        state = {k: v[m].detach().cpu() for k, v in {**params, **buffers}.items()}
        model.load_state_dict(state)
        return model.train(self.training)

    def state_stacked(self) -> dict[str, torch.Tensor]:
        """All parameters and buffers, each (M, ...), detached."""
        params, buffers = self.stacked()
        return {k: v.detach().clone() for k, v in {**params, **buffers}.items()}

    @torch.no_grad()
    def load_stacked(self, state: dict[str, torch.Tensor]) -> None:
        params, buffers = self.stacked()
        for k, v in {**params, **buffers}.items():
            v.copy_(state[k])

    def flat_weights(self) -> torch.Tensor:
        """(M, P) float32: every member's parameters flattened in registration order."""
        params, _ = self.stacked()
        return torch.cat([params[k].detach().flatten(1).float() for k in self.names], dim=1)

    def parameter_counts(self) -> list[tuple[str, int]]:
        params, _ = self.stacked()
        return [(k, params[k][0].numel()) for k in self.names]


class StackedEnsemble(MemberState, nn.Module):
    """M members of one architecture with parameters of shape (M, *param_shape).

    forward(x): x (M, B, *input_shape) -> logits (M, B, C); member m sees x[m].
    """

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        params, buffers = stack_module_state(members)
        self.names = list(params)  # parameter names in registration (= data-flow) order
        self.params = nn.ParameterDict({k.replace(".", "/"): nn.Parameter(v) for k, v in params.items()})
        for k, v in buffers.items():
            self.register_buffer(k.replace(".", "/"), v)
        self.buffer_names = list(buffers)
        # architecture only, no storage; kept out of the module tree so .to(device) skips it
        object.__setattr__(self, "template", copy.deepcopy(members[0]).to("meta"))
        self.randomness = "different"
        self.channels_last = False  # see use_channels_last

    def stacked(self) -> tuple[dict, dict]:
        params = {k: self.params[k.replace(".", "/")] for k in self.names}
        buffers = {k: getattr(self, k.replace(".", "/")) for k in self.buffer_names}
        return params, buffers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.template.train(self.training)
        params, buffers = self.stacked()
        if self.channels_last and x.dim() == 5:
            x = stacked_channels_last(x)

        def one(p, b, xm):
            return functional_call(self.template, (p, b), (xm,))

        return torch.vmap(one, randomness=self.randomness)(params, buffers, x)


def stacked_channels_last(x: torch.Tensor) -> torch.Tensor:
    """The same (M, B, C, H, W) batch stored in the order B, H, W, M, C.

    Then vmap's grouped convolution reads it as a channels-last (B, M*C, H, W) tensor without
    a copy; storing each member's slice channels-last (order M, B, H, W, C) would not merge.
    """
    return x.permute(1, 3, 4, 0, 2).contiguous().permute(3, 0, 4, 1, 2)


def reinit_names(counts: list[tuple[str, int]], fraction: float, side: str) -> list[str]:
    """Parameters to re-initialise: whole tensors walked from the input or output side
    until `fraction` of all parameters is covered (the coupling paper, §3, 'low' / 'high')."""
    if fraction <= 0:
        return []
    order = counts if side == "input" else counts[::-1]
    total = sum(n for _, n in counts)
    chosen, covered = [], 0
    for name, n in order:
        if covered >= fraction * total:
            break
        chosen.append(name)
        covered += n
    return chosen
