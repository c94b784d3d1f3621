"""Tests for fairens_core.metrics.landscape."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from fairens_core.metrics import (
    error_barrier,
    flatten_weights,
    function_space_points,
    interpolate_models,
    interpolate_state_dicts,
    interpolation_curve,
    pairwise_weight_cosine_similarity,
    recompute_batchnorm_statistics,
    tsne_embedding,
    weight_cosine_similarity,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def tiny_model(seed, batchnorm=False, dropout=0.0):
    torch.manual_seed(seed)
    layers = [nn.Linear(3, 8)]
    if dropout:
        layers.append(nn.Dropout(dropout))
    if batchnorm:
        layers.append(nn.BatchNorm1d(8))
    layers += [nn.ReLU(), nn.Linear(8, 2)]
    return nn.Sequential(*layers).double()


def trained_like(model, batches, steps=3):
    """Give BatchNorm non-trivial running statistics, like a trained model would have."""
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            for x in batches:
                model(x)
    return model.eval()


def data(seed=0, n=64, batches=4):
    g = torch.Generator().manual_seed(seed)
    x = 2 * torch.randn(n, 3, generator=g, dtype=torch.float64) + 1
    return x, list(x.chunk(batches))


# ---------------------------------------------------------------------- cosine similarity


def test_cosine_similarity_hand_computed():
    assert weight_cosine_similarity(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])) == pytest.approx(0.0)
    assert weight_cosine_similarity(torch.tensor([1.0, 1.0]), torch.tensor([2.0, 2.0])) == pytest.approx(1.0)
    assert weight_cosine_similarity(torch.tensor([1.0, 2.0]), torch.tensor([-1.0, -2.0])) == pytest.approx(-1.0)
    # (1, 0) vs (1, 1): 1 / sqrt(2)
    assert weight_cosine_similarity({"w": torch.tensor([1.0, 0.0])}, {"w": torch.tensor([1.0, 1.0])}) == pytest.approx(
        2**-0.5
    )


def test_cosine_similarity_of_models_ignores_batchnorm_statistics():
    a, b = tiny_model(0, batchnorm=True), tiny_model(1, batchnorm=True)
    value = weight_cosine_similarity(a, b)
    assert value == pytest.approx(weight_cosine_similarity(a.state_dict(), b.state_dict()))
    a[1].running_mean.fill_(100.0)  # buffers are not weights
    assert weight_cosine_similarity(a, b) == pytest.approx(value)
    with torch.no_grad():
        expected = torch.nn.functional.cosine_similarity(
            torch.cat([p.flatten() for p in a.parameters()]), torch.cat([p.flatten() for p in b.parameters()]), dim=0
        )
    assert value == pytest.approx(float(expected))
    assert flatten_weights(a).numel() == sum(p.numel() for p in a.parameters())


def test_pairwise_cosine_matrix():
    models = [tiny_model(s) for s in range(3)]
    matrix = pairwise_weight_cosine_similarity(models)
    torch.testing.assert_close(matrix.diagonal(), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(matrix, matrix.T)
    assert float(matrix[0, 2]) == pytest.approx(weight_cosine_similarity(models[0], models[2]))


# ----------------------------------------------------------------------- interpolation


def test_interpolate_state_dicts_endpoints_and_midpoint():
    a = {"w": torch.tensor([0.1, 0.7]), "n": torch.tensor(3)}
    b = {"w": torch.tensor([0.3, -0.2]), "n": torch.tensor(5)}
    assert torch.equal(interpolate_state_dicts(a, b, 0.0)["w"], a["w"])
    assert torch.equal(interpolate_state_dicts(a, b, 1.0)["w"], b["w"])
    torch.testing.assert_close(interpolate_state_dicts(a, b, 0.5)["w"], torch.tensor([0.2, 0.25]))
    assert int(interpolate_state_dicts(a, b, 0.5)["n"]) == 3  # integer counters are copied


@pytest.mark.parametrize("batchnorm", [False, True])
@pytest.mark.parametrize("device", DEVICES)
def test_interpolation_reproduces_endpoints(batchnorm, device):
    x, batches = data()
    a = trained_like(tiny_model(0, batchnorm), batches).to(device)
    b = trained_like(tiny_model(1, batchnorm), [2 * t for t in batches]).to(device)
    x = x.to(device)
    before = copy.deepcopy(a.state_dict())
    with torch.no_grad():
        out_a, out_b = a(x), b(x)
        assert torch.equal(interpolate_models(a, b, 0.0).eval()(x), out_a)
        assert torch.equal(interpolate_models(a, b, 1.0).eval()(x), out_b)
        assert not torch.allclose(interpolate_models(a, b, 0.5).eval()(x), out_a)
    for key, value in a.state_dict().items():  # the endpoints are not modified
        assert torch.equal(value, before[key])


def test_recomputed_batchnorm_statistics_are_those_of_the_interpolated_network():
    x, batches = data(n=64, batches=1)
    a = trained_like(tiny_model(0, batchnorm=True), batches)
    b = trained_like(tiny_model(1, batchnorm=True), [3 * x - 2])
    mid = interpolate_models(a, b, 0.5, bn_batches=batches)
    with torch.no_grad():
        pre_bn = mid[0](x)  # activations entering the BatchNorm layer
    torch.testing.assert_close(mid[1].running_mean, pre_bn.mean(0))
    torch.testing.assert_close(mid[1].running_var, pre_bn.var(0, unbiased=True))
    # naive interpolation of the running statistics is not the same thing
    naive = interpolate_models(a, b, 0.5)
    assert not torch.allclose(naive[1].running_mean, pre_bn.mean(0), atol=1e-3)


def test_recompute_batchnorm_averages_batches_keeps_dropout_off_and_restores_state():
    x, batches = data(n=60, batches=3)
    model = tiny_model(0, batchnorm=True, dropout=0.5)
    model.train()
    model[2].momentum = 0.3
    recompute_batchnorm_statistics(model, [(t, torch.zeros(len(t))) for t in batches])  # (input, target) tuples
    with torch.no_grad():
        per_batch = [model[0](t) for t in batches]  # dropout is off in eval mode
    torch.testing.assert_close(model[2].running_mean, torch.stack([p.mean(0) for p in per_batch]).mean(0))
    torch.testing.assert_close(model[2].running_var, torch.stack([p.var(0) for p in per_batch]).mean(0))
    assert model.training and model[1].training and model[2].momentum == 0.3


def test_recomputed_endpoint_equals_endpoint_with_recomputed_statistics():
    _, batches = data()
    a = trained_like(tiny_model(0, batchnorm=True), batches)
    b = trained_like(tiny_model(1, batchnorm=True), batches)
    reference = recompute_batchnorm_statistics(copy.deepcopy(a), batches)
    at_zero = interpolate_models(a, b, 0.0, bn_batches=batches)
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(at_zero.state_dict()[key], value)


def error_rate(x, labels):
    def evaluate(model):
        model.eval()
        with torch.no_grad():
            return float((model(x).argmax(1) != labels).double().mean())

    return evaluate


def test_interpolation_curve_without_batchnorm():
    x, _ = data()
    labels = (x[:, 0] > 1).long()
    a, b = tiny_model(0), tiny_model(1)
    evaluate = error_rate(x, labels)
    curve = interpolation_curve(a, b, evaluate, alphas=5)
    np.testing.assert_allclose(curve.alphas, [0, 0.25, 0.5, 0.75, 1])
    assert curve.values[0] == evaluate(a) and curve.values[-1] == evaluate(b)
    assert error_barrier(curve.alphas, curve.values) >= 0


def test_interpolation_curve_requires_batches_for_batchnorm():
    x, batches = data()
    labels = (x[:, 0] > 1).long()
    a, b = tiny_model(0, batchnorm=True), tiny_model(1, batchnorm=True)
    with pytest.raises(ValueError, match="BatchNorm"):
        interpolation_curve(a, b, error_rate(x, labels))
    curve = interpolation_curve(a, b, error_rate(x, labels), alphas=[0.0, 0.5, 1.0], bn_batches=batches)
    assert curve.values.shape == (3,)


def test_error_barrier_hand_computed():
    assert error_barrier([0, 0.5, 1], [0.1, 0.5, 0.2]) == pytest.approx(0.35)
    alphas, errors = [0, 1 / 3, 2 / 3, 1], [0.1, 0.3, 0.4, 0.5]
    assert error_barrier(alphas, errors, baseline="mean") == pytest.approx(0.2)
    # linear baseline at α = 1/3: 2/3 * 0.1 + 1/3 * 0.5 = 0.7 / 3, the largest gap (at 2/3 it is 0.1 / 3)
    assert error_barrier(alphas, errors, baseline="linear") == pytest.approx(0.3 - 0.7 / 3)
    assert error_barrier([0, 0.5, 1], [0.2, 0.1, 0.2]) == pytest.approx(0.0)  # no barrier
    with pytest.raises(ValueError):
        error_barrier([0.1, 1], [0.2, 0.2])


# ------------------------------------------------------------------------------ t-SNE


def test_function_space_points_layout():
    preds = torch.arange(2 * 3 * 4 * 5, dtype=torch.float64).reshape(2, 3, 4, 5)
    points = function_space_points(preds)
    assert points.shape == (6, 20)
    np.testing.assert_array_equal(points[1 * 3 + 2], preds[1, 2].flatten().numpy())


def test_tsne_embedding_separates_runs_and_is_reproducible():
    g = torch.Generator().manual_seed(0)
    runs, checkpoints, n, classes = 3, 12, 10, 4
    centres = 4 * torch.randn(runs, 1, n, classes, generator=g)  # each run explores its own region
    steps = 0.3 * torch.randn(runs, checkpoints, n, classes, generator=g).cumsum(1)
    probs = (centres + steps).softmax(-1)
    embedding = tsne_embedding(probs, seed=0)
    assert embedding.shape == (runs, checkpoints, 2)
    np.testing.assert_allclose(embedding, tsne_embedding(probs, seed=0))
    # nearest neighbour of every checkpoint in the embedding belongs to the same run
    flat = embedding.reshape(-1, 2)
    dist = np.linalg.norm(flat[:, None] - flat[None], axis=-1) + np.eye(len(flat)) * 1e9
    run_of = np.repeat(np.arange(runs), checkpoints)
    assert (run_of[dist.argmin(1)] == run_of).mean() > 0.9
