"""Tests for fairens_core.metrics.cost."""

import pytest
from torch import nn

from fairens_core.metrics import ensemble_flops


def test_sum_of_member_flops():
    assert ensemble_flops([100, 250, 100]) == 450
    assert ensemble_flops([]) == 0


def test_models_are_measured_with_model_flops(monkeypatch):
    calls = []

    def fake_model_flops(model, input_shape):
        calls.append((model, input_shape))
        return 7 * model.in_features

    monkeypatch.setattr("fairens_core.metrics.cost.model_flops", fake_model_flops)
    small, large = nn.Linear(3, 1), nn.Linear(5, 1)
    assert ensemble_flops([small, large, 4], input_shape=(3,)) == 7 * 3 + 7 * 5 + 4
    assert calls == [(small, (3,)), (large, (3,))]


def test_models_need_input_shape():
    with pytest.raises(ValueError):
        ensemble_flops([nn.Linear(2, 2)])


def test_with_the_real_model_flops():
    models = pytest.importorskip("fairens_core.models")
    if not hasattr(models, "model_flops"):
        pytest.skip("fairens_core.models.model_flops not available")
    linear = nn.Linear(10, 4, bias=False)  # one matmul: 2 * 10 * 4 FLOPs per example
    assert ensemble_flops([linear, linear], input_shape=(10,)) == 2 * models.model_flops(linear, (10,))
    assert models.model_flops(linear, (10,)) == 80
