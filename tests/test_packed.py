"""Packed members ≡ vmapped members ≡ members one at a time (outputs and one step's gradients)."""

import copy

import pytest
import torch

from fairens_core import TrainConfig
from fairens_core.ensemble import StackedEnsemble
from fairens_core.models import MODELS, build_model
from fairens_core.packed import PackedEnsemble, pack_layers
from fairens_core.train import train_ensemble

SHAPES = {"mlp": (20,), "cnn1d": (40,), "cnn1d_bn": (1, 40)}
M, B = 3, 8


def members(name, dropout=0.0, n=M, dtype=torch.float32):
    shape = SHAPES.get(name, (3, 32, 32))
    out = []
    for seed in range(n):
        torch.manual_seed(seed)
        out.append(build_model(name, shape, 10, width=1 if name == "wrn16" else 0.25, dropout=dropout).to(dtype))
    return out, shape


def step_grads(module, params):
    """Gradients of a loss that differs per member, so that members' gradients differ too."""
    out = module()
    weights = torch.arange(1, out.shape[-1] + 1, dtype=out.dtype)
    (out.square() * weights).sum().backward()
    return out.detach(), [p.grad.clone() for p in params]


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_packed_equals_vmap_and_loop(name, mode):
    # in float64, so that a difference is a bug and not rounding amplified by a deep network
    nets, shape = members(name, dtype=torch.float64)
    loop = [copy.deepcopy(n).train(mode == "train") for n in nets]
    stacked = StackedEnsemble(nets).train(mode == "train")
    packed = PackedEnsemble(nets).train(mode == "train")
    x = torch.randn(M, B, *shape, dtype=torch.float64)

    out_p, grads_p = step_grads(lambda: packed(x), list(packed.stacked()[0].values()))
    out_v, grads_v = step_grads(lambda: stacked(x), list(stacked.stacked()[0].values()))
    per_member = [step_grads(lambda m=m: loop[m](x[m]).unsqueeze(0), list(loop[m].parameters())) for m in range(M)]
    out_l = torch.cat([o for o, _ in per_member])
    grads_l = [torch.stack(g) for g in zip(*[g for _, g in per_member])]

    assert torch.allclose(out_p, out_v, atol=1e-9, rtol=1e-9)
    assert torch.allclose(out_p, out_l, atol=1e-9, rtol=1e-9)
    for gp, gv, gl in zip(grads_p, grads_v, grads_l):
        assert torch.allclose(gp, gv, atol=1e-8, rtol=1e-8) and torch.allclose(gp, gl, atol=1e-8, rtol=1e-8)
    # BatchNorm running statistics: per member, as if each member ran alone
    for (k, bp), bl in zip(packed.stacked()[1].items(), zip(*[dict(n.named_buffers()).values() for n in loop])):
        assert torch.allclose(bp.double(), torch.stack(bl).double(), atol=1e-9), k


def test_packed_state_has_the_stacked_layout_and_names():
    nets, _ = members("resnet8")
    packed, stacked = PackedEnsemble(nets), StackedEnsemble(nets)
    a, b = packed.state_stacked(), stacked.state_stacked()
    assert list(a) == list(b)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert packed.parameter_counts() == stacked.parameter_counts()
    assert torch.equal(packed.flat_weights(), stacked.flat_weights())
    for m in range(M):
        assert all(torch.equal(v, nets[m].state_dict()[k]) for k, v in packed.member(m).state_dict().items())
    # loading a state moves every member
    packed.load_stacked({k: v + 1 if v.is_floating_point() else v for k, v in b.items()})
    assert torch.equal(packed.state_stacked()["conv1.weight"], b["conv1.weight"] + 1)


def test_packed_channels_last_gives_the_same_outputs():
    nets, shape = members("fastcnn")
    x = torch.randn(M, B, *shape)
    plain = PackedEnsemble(nets).train()
    fast = PackedEnsemble(nets).train().use_channels_last()
    assert torch.allclose(plain(x), fast(x), atol=1e-5)
    conv = fast.net.group1.conv1
    assert conv.weight.flatten(0, 1).is_contiguous(memory_format=torch.channels_last)


def test_packed_dropout_masks_are_shared_or_per_member():
    nets, shape = members("mlp", dropout=0.5)
    same = [copy.deepcopy(nets[0]) for _ in range(M)]  # identical members on identical inputs
    packed = PackedEnsemble(same).train()
    x = torch.randn(1, B, *shape).expand(M, B, *shape)
    packed.randomness = "same"
    out = packed(x)
    assert all(torch.equal(out[0], out[m]) for m in range(M))
    packed.randomness = "different"
    out = packed(x)
    assert not torch.equal(out[0], out[1])
    assert torch.allclose(packed.eval()(x)[0], same[0].eval()(x[0]), atol=1e-6)


def test_an_unpackable_layer_is_named():
    class WithLayerNorm(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = torch.nn.LayerNorm(4)

    with pytest.raises(ValueError, match="cannot pack layer 'norm' of type LayerNorm"):
        pack_layers(WithLayerNorm(), 2)


TINY = dict(dataset="mnist1d", dataset_options={"n_samples": 700}, model="cnn1d_bn", width=0.5, members=3,
            epochs=1, batch_size=64, lr=0.05, warmup_epochs=0.5, progress=False, device="cpu")


@pytest.mark.parametrize("changes", [
    {},
    dict(spawn_step=3, vary="batch_order", epochs=2),
    dict(spawn_step=3, vary="batch_order", reinit_fraction=0.3, epochs=2),
    dict(vary="init", beta=0.5),
    dict(vary="init", beta=1.0, learner_dropout=0.4),
    dict(augment=("shift",), model="cnn1d"),
], ids=["independent", "spawned", "reinit", "l_beta", "learner-dropout", "augmented"])
def test_a_packed_record_matches_the_vmapped_and_loop_records(changes):
    cfg = TrainConfig(**{**TINY, **changes})
    packed = train_ensemble(cfg.replace(execution="packed"))
    vmapped = train_ensemble(cfg.replace(execution="vectorized"))
    assert packed.meta["execution"] == "packed" and vmapped.meta["execution"] == "vectorized"
    records = [vmapped]
    if not cfg.is_joint:  # L_beta couples members: no loop path
        records.append(train_ensemble(cfg.replace(execution="loop")))
    for other in records:
        assert packed.key == other.key
        # a few float-rounding steps apart: logits agree closely, predictions almost everywhere
        assert torch.allclose(packed.logits(), other.logits(), atol=0.05, rtol=0.01)
        agree = (packed.test_logits.argmax(-1) == other.test_logits.argmax(-1)).float().mean()
        assert agree > 0.99
        for k in packed.weights:
            assert torch.allclose(packed.weights[k], other.weights[k], atol=1e-2, rtol=1e-2), k
