"""Tests of fairens_core.models: shapes, FLOPs, validation and vmap-stacked ensembles."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
from torch.func import functional_call, stack_module_state

from fairens_core.models import (
    MODELS,
    build_model,
    count_parameters,
    model_flops,
)

# name -> (natural input_shape, num_classes)
NATURAL = {
    "mlp": ((20,), 2),
    "cnn1d": ((1, 40), 10),
    "cnn1d_bn": ((1, 40), 10),
    "small_cnn": ((3, 32, 32), 10),
    "resnet8": ((3, 32, 32), 10),
    "resnet20": ((3, 32, 32), 10),
    "resnet18": ((3, 32, 32), 10),
    "wrn16": ((3, 32, 32), 10),
    "vgg_small": ((3, 32, 32), 10),
    "fastcnn": ((3, 32, 32), 10),
}
# small widths so that the big nets stay fast in tests (wrn16's k must be an int)
TINY_WIDTH = {
    "mlp": 0.25,
    "cnn1d": 0.25,
    "cnn1d_bn": 0.25,
    "small_cnn": 0.5,
    "resnet8": 0.25,
    "resnet20": 0.25,
    "resnet18": 0.0625,
    "wrn16": 1,
    "vgg_small": 0.0625,
    "fastcnn": 0.0625,
}
IMAGE_MODELS = ["small_cnn", "resnet8", "resnet20", "resnet18", "wrn16", "vgg_small"]


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # The tensors here are tiny: intra-op threads only add synchronisation cost,
    # which explodes (10x) when the 2 cores are shared with other processes.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_registry_covers_all_models():
    assert set(MODELS) == set(NATURAL)


# --------------------------------------------------------------------------- shapes


@pytest.mark.parametrize("name", sorted(NATURAL))
def test_forward_shape_natural_input(name):
    shape, nc = NATURAL[name]
    model = build_model(name, shape, nc, width=TINY_WIDTH[name])
    out = model(torch.randn(3, *shape))
    assert out.shape == (3, nc)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", sorted(NATURAL))
def test_regression_output(name):
    shape, _ = NATURAL[name]
    model = build_model(name, shape, 1, width=TINY_WIDTH[name])
    assert model(torch.randn(2, *shape)).shape == (2, 1)


@pytest.mark.parametrize("shape", [(20,), (14,), (1, 40), (3, 8, 8)])
def test_mlp_takes_any_input(shape):
    model = build_model("mlp", shape, 3)
    assert model(torch.randn(4, *shape)).shape == (4, 3)


@pytest.mark.parametrize("name", ["cnn1d", "cnn1d_bn"])
@pytest.mark.parametrize("shape", [(1, 40), (40,), (2, 64), (1, 8)])
def test_cnn1d_inputs(name, shape):
    model = build_model(name, shape, 10)
    assert model(torch.randn(4, *shape)).shape == (4, 10)


def test_cnn1d_accepts_unbatched_channel():
    # mnist1d arrays are (N, 40); a model built for (1, 40) also takes them
    model = build_model("cnn1d", (1, 40), 10)
    assert model(torch.randn(4, 40)).shape == (4, 10)


@pytest.mark.parametrize("name", IMAGE_MODELS)
@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 16, 16), (3, 9, 11)])
def test_image_models_other_resolutions(name, shape):
    model = build_model(name, shape, 7, width=TINY_WIDTH[name])
    assert model(torch.randn(2, *shape)).shape == (2, 7)


@pytest.mark.parametrize("name", ["resnet8", "resnet20", "wrn16", "vgg_small", "resnet18"])
def test_image_models_minimum_size(name):
    model = build_model(name, (3, 8, 8), 10, width=TINY_WIDTH[name])
    assert model(torch.randn(2, 3, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("shape", [(3, 16, 16), (1, 28, 28), (3, 17, 24), (3, 64, 64)])
def test_fastcnn_resolutions(shape):
    # 16 is the smallest side: the stem and three pools leave 1x1
    model = build_model("fastcnn", shape, 7, width=TINY_WIDTH["fastcnn"])
    assert model(torch.randn(2, *shape)).shape == (2, 7)


def test_fastcnn_layout():
    model = build_model("fastcnn", (3, 32, 32), 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [
        (3, 24, (2, 2)), (24, 64, (3, 3)), (64, 64, (3, 3)), (64, 256, (3, 3)),
        (256, 256, (3, 3)), (256, 256, (3, 3)), (256, 256, (3, 3))]
    assert model.fc.bias is None and model.scale == 1 / 9
    assert "scale" not in dict(model.named_parameters()) and "scale" not in dict(model.named_buffers())
    assert all(m.momentum == 0.1 for m in model.modules() if isinstance(m, nn.BatchNorm2d))


def test_reference_parameter_counts():
    # He et al. (2016) Table 6: ResNet-20 0.27M; WRN paper: WRN-16-8 11.0M;
    # CIFAR ResNet-18: 11.17M.
    assert count_parameters(build_model("resnet20", (3, 32, 32), 10)) == 269_722
    assert count_parameters(build_model("resnet18", (3, 32, 32), 10)) == 11_173_962
    assert round(count_parameters(build_model("wrn16", (3, 32, 32), 10, width=8)) / 1e6, 1) == 11.0


def test_small_cnn_matches_table3_layers():
    model = build_model("small_cnn", (3, 32, 32), 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.padding) for c in convs] == [
        (3, 10, (5, 5), (2, 2), (1, 1)),
        (10, 20, (5, 5), (2, 2), (1, 1)),
    ]
    assert [(l.in_features, l.out_features) for l in linears] == [(20 * 7 * 7, 50), (50, 10)]


def test_width_scales_channels():
    small = build_model("resnet20", (3, 32, 32), 10, width=0.5)
    big = build_model("resnet20", (3, 32, 32), 10, width=2)
    assert small.conv1.out_channels == 8 and big.conv1.out_channels == 32
    assert build_model("mlp", (20,), 2, width=0.5).fc.in_features == 64


# --------------------------------------------------------------------------- parameter order


@pytest.mark.parametrize("name", sorted(NATURAL))
def test_parameters_registered_in_forward_order(name):
    """named_parameters() order == order in which the owning modules run."""
    shape, nc = NATURAL[name]
    model = build_model(name, shape, nc, width=TINY_WIDTH[name])
    called: list[str] = []
    handles = [
        m.register_forward_pre_hook(lambda mod, args, n=n: called.append(n))
        for n, m in model.named_modules()
        if any(True for _ in m.parameters(recurse=False))
    ]
    model(torch.randn(2, *shape))
    for h in handles:
        h.remove()
    owners = []
    for pname, _ in model.named_parameters():
        owner = pname.rsplit(".", 1)[0]
        if not owners or owners[-1] != owner:
            owners.append(owner)
    assert called == owners
    # first parameter reads the input, last one produces the logits (a bias, or a bias-free weight)
    first = next(iter(model.parameters()))
    assert first.shape[1] in (shape[0], int(torch.tensor(shape).prod()))
    assert list(model.parameters())[-1].shape[0] == nc


# --------------------------------------------------------------------------- FLOPs


@pytest.mark.parametrize("name", sorted(NATURAL))
def test_flops_positive_and_deterministic(name):
    shape, nc = NATURAL[name]
    model = build_model(name, shape, nc, width=TINY_WIDTH[name])
    f1 = model_flops(model, shape)
    f2 = model_flops(model, list(shape))
    torch.manual_seed(1)
    other = build_model(name, shape, nc, width=TINY_WIDTH[name])
    assert isinstance(f1, int) and f1 > 0
    assert f1 == f2 == model_flops(other, shape)


def test_flops_known_value_mlp():
    # 2 FLOPs per multiply-add of each Linear weight; biases / ReLU are not counted
    model = build_model("mlp", (20,), 2)
    assert model_flops(model, (20,)) == 2 * (20 * 128 + 128 * 128 + 128 * 2)


def test_flops_wrn16_width_ratio():
    f1 = model_flops(build_model("wrn16", (3, 32, 32), 10, width=1), (3, 32, 32))
    f2 = model_flops(build_model("wrn16", (3, 32, 32), 10, width=2), (3, 32, 32))
    assert 3.0 < f2 / f1 < 4.2


@pytest.mark.parametrize("name", ["resnet8", "resnet20", "vgg_small"])
def test_flops_quadratic_in_width(name):
    shape, nc = NATURAL[name]
    f1 = model_flops(build_model(name, shape, nc, width=0.5), shape)
    f2 = model_flops(build_model(name, shape, nc, width=1), shape)
    assert 3.0 < f2 / f1 < 4.2


def test_flops_grow_with_resolution():
    model = build_model("resnet8", (3, 32, 32), 10)
    assert model_flops(model, (3, 64, 64)) > 3.5 * model_flops(model, (3, 32, 32))


@pytest.mark.parametrize("training", [True, False])
def test_model_flops_leaves_mode_and_buffers(training):
    model = build_model("resnet8", (3, 16, 16), 10, width=0.25, dropout=0.2)
    model.train(training)
    model.layer2.train(not training)  # mixed modes must survive too
    modes = {n: m.training for n, m in model.named_modules()}
    before = copy.deepcopy(model.state_dict())
    model_flops(model, (3, 16, 16))
    assert {n: m.training for n, m in model.named_modules()} == modes
    after = model.state_dict()
    assert before.keys() == after.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k


def test_model_flops_on_meta_device():
    model = build_model("wrn16", (3, 32, 32), 10)
    meta = copy.deepcopy(model).to("meta")
    assert model_flops(meta, (3, 32, 32)) == model_flops(model, (3, 32, 32))


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="resnet50", input_shape=(3, 32, 32)), r"unknown model name='resnet50'.*allowed"),
        (dict(name="resnet18", input_shape=(1, 40)), r"'resnet18' needs an image input \(C, H, W\).*\(1, 40\)"),
        (dict(name="wrn16", input_shape=(20,)), r"'wrn16' needs an image input"),
        (dict(name="small_cnn", input_shape=(1, 40)), r"'small_cnn' needs an image input"),
        (dict(name="resnet20", input_shape=(3, 4, 4)), r"H, W >= 8"),
        (dict(name="small_cnn", input_shape=(3, 6, 32)), r"H, W >= 7"),
        (dict(name="fastcnn", input_shape=(3, 15, 32)), r"'fastcnn' needs an image input.*H, W >= 16"),
        (dict(name="fastcnn", input_shape=(40,)), r"'fastcnn' needs an image input"),
        (dict(name="cnn1d", input_shape=(3, 32, 32)), r"'cnn1d' needs a 1-D signal input"),
        (dict(name="cnn1d", input_shape=(1, 4)), r"L >= 8"),
        (dict(name="cnn1d_bn", input_shape=(3, 8, 8)), r"'cnn1d_bn' needs a 1-D signal input"),
        (dict(name="mlp", input_shape=()), r"'mlp' needs at least one input dimension"),
        (dict(name="mlp", input_shape=(0, 3)), r"input_shape must be a tuple of positive ints"),
        (dict(name="mlp", input_shape=(2.5,)), r"input_shape"),
        (dict(name="mlp", input_shape=(20,), width=0), r"width must be a finite number > 0"),
        (dict(name="mlp", input_shape=(20,), width=-1), r"width"),
        (dict(name="mlp", input_shape=(20,), width=float("nan")), r"width"),
        (dict(name="mlp", input_shape=(20,), width="2"), r"width"),
        (dict(name="wrn16", input_shape=(3, 32, 32), width=1.5), r"width for model 'wrn16'.*positive integer"),
        (dict(name="mlp", input_shape=(20,), dropout=1.0), r"dropout must be a probability in \[0, 1\)"),
        (dict(name="mlp", input_shape=(20,), dropout=-0.1), r"dropout"),
        (dict(name="mlp", input_shape=(20,), num_classes=0), r"num_classes must be a positive int"),
    ],
)
def test_bad_arguments_raise_before_building(kwargs, match, monkeypatch):
    built = []
    original = nn.Module.__init__

    def spy(self, *args, **kw):
        built.append(type(self).__name__)
        original(self, *args, **kw)

    monkeypatch.setattr(nn.Module, "__init__", spy)
    kwargs.setdefault("num_classes", 10)
    with pytest.raises(ValueError, match=match):
        build_model(**kwargs)
    assert built == []


def test_wrn16_accepts_integral_float_width():
    assert count_parameters(build_model("wrn16", (3, 32, 32), 10, width=2.0)) == count_parameters(
        build_model("wrn16", (3, 32, 32), 10, width=2)
    )


# --------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("name", sorted(NATURAL))
def test_dropout_layers(name):
    shape, nc = NATURAL[name]
    plain = build_model(name, shape, nc, width=TINY_WIDTH[name])
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())
    model = build_model(name, shape, nc, width=TINY_WIDTH[name], dropout=0.3)
    drops = [m for m in model.modules() if isinstance(m, nn.Dropout)]
    assert drops and all(d.p == 0.3 for d in drops)
    leaves = [m for m in model.modules() if not list(m.children())]
    # a dropout layer right before the final linear layer (MC dropout)
    assert isinstance(leaves[-1], nn.Linear) and isinstance(leaves[-2], nn.Dropout)
    # stochastic in train mode, deterministic in eval mode
    x = torch.randn(4, *shape)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    if any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        return  # BN batch statistics make train-mode outputs differ anyway
    assert not torch.equal(model(x), model(x))


def test_dropout_does_not_change_parameters():
    for name, (shape, nc) in NATURAL.items():
        a = build_model(name, shape, nc, width=TINY_WIDTH[name])
        b = build_model(name, shape, nc, width=TINY_WIDTH[name], dropout=0.5)
        assert [(n, p.shape) for n, p in a.named_parameters()] == [(n, p.shape) for n, p in b.named_parameters()]


# --------------------------------------------------------------------------- vmap ensembles


def _members(make, m=3):
    members = []
    for seed in range(m):
        torch.manual_seed(100 + seed)
        members.append(make())
    return members


def _vmap_check(make, shape, dtype=torch.float64, batch=4, m=3):
    """Stacked vmapped train-mode forward/backward == per-member forward/backward.

    In float64 everything must agree to 1e-5 (in practice ~1e-12): this checks the
    logic.  In float32 vmap runs the M convolutions as one grouped convolution, a
    different summation order, so deep BatchNorm nets show ~1e-5 relative noise in
    gradients; there gradients are compared relative to their largest entry.
    """
    members = [mod.to(dtype) for mod in _members(make, m)]
    refs = [copy.deepcopy(mod) for mod in members]
    for mod in members + refs:
        mod.train()
    params, buffers = stack_module_state(members)
    base = copy.deepcopy(members[0]).to("meta")

    def call(p, b, x):
        return functional_call(base, (p, b), (x,))

    x = torch.randn(m, batch, *shape, dtype=dtype)
    out = torch.vmap(call, randomness="different")(params, buffers, x)
    (out.square().mean() + out.sum()).backward()

    ref_out = torch.stack([ref(x[i]) for i, ref in enumerate(refs)])
    (ref_out.square().mean() + ref_out.sum()).backward()

    # (a) outputs
    torch.testing.assert_close(out, ref_out, atol=1e-5, rtol=1e-5)
    # (b) buffers (BatchNorm running stats and num_batches_tracked) updated identically
    for name, stacked in buffers.items():
        expected = torch.stack([dict(ref.named_buffers())[name] for ref in refs])
        torch.testing.assert_close(stacked, expected, atol=1e-5, rtol=1e-5, msg=lambda s: f"{name}: {s}")
        if name.endswith("num_batches_tracked"):
            assert (stacked == 1).all()
    # (c) gradients
    for name, p in params.items():
        expected = torch.stack([dict(ref.named_parameters())[name].grad for ref in refs])
        atol = 1e-5 if dtype == torch.float64 else 1e-4 * max(1.0, expected.abs().max().item())
        torch.testing.assert_close(p.grad, expected, atol=atol, rtol=1e-4, msg=lambda s: f"{name}: {s}")

    # eval mode (running statistics) agrees as well
    base.eval()
    for ref in refs:
        ref.eval()
    with torch.no_grad():
        out_eval = torch.vmap(call, randomness="different")(params, buffers, x)
        ref_eval = torch.stack([ref(x[i]) for i, ref in enumerate(refs)])
    torch.testing.assert_close(out_eval, ref_eval, atol=1e-5, rtol=1e-5)
    return buffers


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("name", sorted(NATURAL))
def test_vmap_ensemble_matches_members(name, dtype):
    shape, nc = NATURAL[name]
    if name in ("resnet8", "resnet20", "resnet18", "vgg_small", "wrn16"):
        # keep the deep nets fast; in float32 the last BatchNorm of resnet18 would
        # normalise only B * 1 * 1 = 4 values at 8x8, amplifying rounding noise
        shape = (3, 8, 8) if dtype == torch.float64 else (3, 16, 16)
    if name == "fastcnn" and dtype == torch.float64:
        shape = (3, 16, 16)  # its smallest input; float32 keeps 32x32 (last BatchNorm over B * 3 * 3)
    buffers = _vmap_check(lambda: build_model(name, shape, nc, width=TINY_WIDTH[name]), shape, dtype)
    has_bn = any(k.endswith("running_mean") for k in buffers)
    assert has_bn == (name not in ("mlp", "cnn1d", "small_cnn"))


@pytest.mark.parametrize("name", ["mlp", "resnet8"])
def test_vmap_dropout_differs_between_members(name):
    shape, nc = NATURAL[name]
    members = _members(lambda: build_model(name, shape, nc, width=TINY_WIDTH[name], dropout=0.5))
    # identical weights, so any difference comes from the dropout masks
    for mod in members[1:]:
        mod.load_state_dict(members[0].state_dict())
    params, buffers = stack_module_state(members)
    base = copy.deepcopy(members[0]).to("meta").train()
    x = torch.randn(1, 4, *shape).expand(3, 4, *shape)
    out = torch.vmap(lambda p, b, x: functional_call(base, (p, b), (x,)), randomness="different")(params, buffers, x)
    out.sum().backward()
    assert not torch.allclose(out[0], out[1])
