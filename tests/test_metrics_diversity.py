"""Tests for fairens_core.metrics.diversity (Jeffares et al. 2023)."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fairens_core.metrics import (
    debias_predictions,
    debiased_diversity,
    diversity_decomposition,
    ensemble_loss,
    gradient_adjusted_beta,
    gradient_adjusted_target_loss,
    lagrange_intermediate_points,
    learner_dropout_error_increase,
    leave_one_out_gradient_adjusted_beta,
    mean_probs,
    mse_ambiguity,
    optimal_debiasing,
    prob_average_diversity,
    score_average_diversity,
    second_order_diversity,
)

# torch.func emits a deprecation warning of torch.jit internals on first use; not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
F64 = torch.float64
TOL = dict(rtol=0, atol=1e-10)  # "agree to float precision" at float64


def random_problem(seed, members, examples, classes, weighted):
    g = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(members, examples, classes, generator=g, dtype=F64)
    labels = torch.randint(0, classes, (examples,), generator=g)
    soft = torch.randn(examples, classes, generator=g, dtype=F64).softmax(-1)
    regression_targets = torch.randn(examples, classes, generator=g, dtype=F64)
    weights = None
    if weighted:
        weights = torch.rand(members, generator=g, dtype=F64) + 0.05
        weights = weights / weights.sum()
    return logits, labels, soft, regression_targets, weights


problem_args = (st.integers(0, 2**31 - 1), st.integers(1, 6), st.integers(1, 12), st.integers(2, 6), st.booleans())


# ------------------------------------------------------------------ hand-computed cases


def test_mse_decomposition_hand_computed():
    preds = torch.tensor([[1.0], [3.0]], dtype=F64)  # two members, one example
    err, err_bar, div = diversity_decomposition(preds, torch.tensor([0.0], dtype=F64), "mse")
    assert (float(err), float(err_bar), float(div)) == pytest.approx((4.0, 5.0, 1.0))
    assert float(mse_ambiguity(preds)) == pytest.approx(1.0)


def test_prob_average_decomposition_hand_computed():
    probs = torch.tensor([[[0.5, 0.5]], [[0.9, 0.1]]], dtype=F64)
    label = torch.tensor([0])
    err, err_bar, div = diversity_decomposition(probs, label, "ce_prob")
    assert float(err) == pytest.approx(-math.log(0.7))
    assert float(err_bar) == pytest.approx(-(math.log(0.5) + math.log(0.9)) / 2)
    expected_div = 0.5 * math.log(0.7 / 0.5) + 0.5 * math.log(0.7 / 0.9)
    assert float(div) == pytest.approx(expected_div)
    assert float(prob_average_diversity(probs, label)) == pytest.approx(expected_div)


def test_score_average_decomposition_hand_computed():
    logits = torch.tensor([[[2.0, 0.0]], [[0.0, 0.0]]], dtype=F64)
    label = torch.tensor([1])
    # members: log p_1 = -log(1 + e^2), log(0.5); ensemble: logits (1, 0) -> -log(1 + e)
    err, err_bar, div = diversity_decomposition(logits, label, "ce_score")
    assert float(err) == pytest.approx(math.log(1 + math.e))
    assert float(err_bar) == pytest.approx((math.log(1 + math.e**2) + math.log(2)) / 2)
    assert float(score_average_diversity(logits)) == pytest.approx(float(div))


# ---------------------------------------------- closed forms agree with ERR-bar − ERR


@settings(max_examples=60, deadline=None)
@given(*problem_args)
def test_mse_ambiguity_equals_div(seed, members, examples, dim, weighted):
    preds, _, _, targets, w = random_problem(seed, members, examples, dim, weighted)
    div = diversity_decomposition(preds, targets, "mse", w, reduction="none").div
    torch.testing.assert_close(mse_ambiguity(preds, w, reduction="none"), div, **TOL)


@settings(max_examples=60, deadline=None)
@given(*problem_args)
def test_score_average_kl_equals_div(seed, members, examples, classes, weighted):
    logits, labels, soft, _, w = random_problem(seed, members, examples, classes, weighted)
    closed = score_average_diversity(logits, w, reduction="none")
    for targets in (labels, soft):  # holds for any target distribution
        div = diversity_decomposition(logits, targets, "ce_score", w, reduction="none").div
        torch.testing.assert_close(closed, div, **TOL)
    assert (closed >= -1e-12).all()


@settings(max_examples=60, deadline=None)
@given(*problem_args)
def test_prob_average_theorem_4_3_equals_div(seed, members, examples, classes, weighted):
    logits, labels, soft, _, w = random_problem(seed, members, examples, classes, weighted)
    probs = logits.softmax(-1)
    for targets in (labels, soft):
        div = diversity_decomposition(probs, targets, "ce_prob", w, reduction="none").div
        torch.testing.assert_close(prob_average_diversity(probs, targets, w, reduction="none"), div, **TOL)
        assert (div >= -1e-12).all()  # Jensen: cross-entropy is convex in p


def test_identical_members_have_no_diversity():
    logits = torch.randn(1, 5, 3, dtype=F64).expand(4, 5, 3)
    labels = torch.tensor([0, 1, 2, 0, 1])
    assert float(diversity_decomposition(logits, labels, "ce_score").div) == pytest.approx(0, abs=1e-12)
    assert float(diversity_decomposition(logits.softmax(-1), labels, "ce_prob").div) == pytest.approx(0, abs=1e-12)
    assert float(mse_ambiguity(logits)) == 0.0


@pytest.mark.parametrize("device", DEVICES)
def test_decomposition_stays_on_device_and_is_differentiable(device):
    logits = torch.randn(3, 4, 5, dtype=F64, device=device, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3], device=device)
    err, err_bar, div = diversity_decomposition(logits, labels, "ce_score")
    assert err.device == logits.device
    beta = 0.5
    (err_bar - beta * div).backward()  # the augmented objective L_beta of eq. 2
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


# ------------------------------------------------------------ Theorem 4.5 (general loss)


def cross_entropy_on_probs(f, y):
    return -(y * torch.log(f)).sum()


def logistic_loss(f, y):  # y in {-1, +1}
    return torch.nn.functional.softplus(-y * f).sum()


def squared_error(f, y):
    return ((f - y) ** 2).sum()


def test_theorem_4_5_exact_for_squared_error_at_any_c():
    g = torch.Generator().manual_seed(0)
    preds = torch.randn(4, 6, 3, generator=g, dtype=F64)
    targets = torch.randn(6, 3, generator=g, dtype=F64)
    ambiguity = mse_ambiguity(preds)
    for c in (0.0, 0.3, 1.0):  # constant Hessian 2I: c does not matter
        torch.testing.assert_close(second_order_diversity(squared_error, preds, targets, c=c), ambiguity, **TOL)


def test_lagrange_points_for_constant_hessian_and_coinciding_members():
    preds = torch.tensor([[[1.0, 2.0]], [[3.0, 0.0]], [[2.0, 1.0]]], dtype=F64)  # member 3 is the ensemble
    targets = torch.zeros(1, 2, dtype=F64)
    c = lagrange_intermediate_points(squared_error, preds, targets)
    torch.testing.assert_close(c, torch.zeros(3, 1, dtype=F64))  # any c is exact; the first grid point is kept


@pytest.mark.parametrize("weighted", [False, True])
def test_theorem_4_5_cross_entropy_with_lagrange_points(weighted):
    g = torch.Generator().manual_seed(1)
    probs = (1.5 * torch.randn(5, 8, 4, generator=g, dtype=F64)).softmax(-1)
    labels = torch.randint(0, 4, (8,), generator=g)
    one_hot = torch.nn.functional.one_hot(labels, 4).to(F64)
    w = torch.tensor([0.1, 0.3, 0.2, 0.15, 0.25], dtype=F64) if weighted else None
    div = diversity_decomposition(probs, labels, "ce_prob", w, reduction="none").div

    c = lagrange_intermediate_points(cross_entropy_on_probs, probs, one_hot, w)
    assert c.shape == (5, 8)
    assert ((c >= 0) & (c <= 1)).all()
    exact = second_order_diversity(cross_entropy_on_probs, probs, one_hot, w, c=c, reduction="none")
    torch.testing.assert_close(exact, div, **TOL)
    # the Hessian at the ensemble (c = 0) alone is only an approximation for this loss
    approx = second_order_diversity(cross_entropy_on_probs, probs, one_hot, w, c=0.0, reduction="none")
    assert (approx - div).abs().max() > 1e-4


def test_theorem_4_5_logistic_loss():
    g = torch.Generator().manual_seed(2)
    scores = 2 * torch.randn(4, 10, 1, generator=g, dtype=F64)
    y = torch.where(torch.rand(10, 1, generator=g) < 0.5, -1.0, 1.0).to(F64)
    ensemble = scores.mean(0)
    div = (logistic_loss_per_example(scores, y).mean(0) - logistic_loss_per_example(ensemble[None], y)[0]).mean()
    c = lagrange_intermediate_points(logistic_loss, scores, y)
    assert ((c >= 0) & (c <= 1)).all()
    torch.testing.assert_close(second_order_diversity(logistic_loss, scores, y, c=c), div, **TOL)
    assert float(div) > 0  # positive semi-definite Hessian -> DIV >= 0


def logistic_loss_per_example(scores, y):
    return torch.nn.functional.softplus(-y * scores).sum(-1)


def test_theorem_4_5_second_order_approximation_converges():
    # with members closer to the ensemble, c matters less: relative error of c = 0 is O(spread)
    g = torch.Generator().manual_seed(3)
    centre = torch.randn(1, 6, 4, generator=g, dtype=F64)
    noise = torch.randn(5, 6, 4, generator=g, dtype=F64)
    labels = torch.randint(0, 4, (6,), generator=g)
    one_hot = torch.nn.functional.one_hot(labels, 4).to(F64)
    errors = []
    for scale in (0.4, 0.04):
        probs = (centre + scale * noise).softmax(-1)
        div = diversity_decomposition(probs, labels, "ce_prob").div
        approx = second_order_diversity(cross_entropy_on_probs, probs, one_hot, c=0.0)
        errors.append(float(abs(approx - div) / div))
    assert errors[1] < errors[0] / 5


# ------------------------------------------------------------------------- debiasing


def test_debiasing_hand_computed():
    x = torch.tensor([0.0, 2.0, 4.0], dtype=F64)
    preds = torch.stack([x + 1, x - 1])  # two members colluding with a constant bias
    torch.testing.assert_close(optimal_debiasing(preds), torch.tensor([[1.0], [-1.0]], dtype=F64))
    torch.testing.assert_close(debias_predictions(preds), torch.stack([x, x]))
    assert float(mse_ambiguity(preds)) == pytest.approx(1.0)
    assert float(debiased_diversity(preds)) == pytest.approx(0.0)


@settings(max_examples=50, deadline=None)
@given(*problem_args)
def test_debiasing_keeps_ensemble_and_is_optimal(seed, members, examples, dim, weighted):
    preds, _, _, targets, w = random_problem(seed, members, examples, dim, weighted)
    weights = w if w is not None else torch.full((members,), 1 / members, dtype=F64)
    debiased = debias_predictions(preds, w)
    ensemble_before = torch.einsum("m,mnd->nd", weights, preds)
    torch.testing.assert_close(torch.einsum("m,mnd->nd", weights, debiased), ensemble_before, **TOL)
    torch.testing.assert_close(
        ensemble_loss(debiased, targets, "mse", w), ensemble_loss(preds, targets, "mse", w), **TOL
    )
    best = debiased_diversity(preds, w)
    assert float(best) <= float(mse_ambiguity(preds, w)) + 1e-12
    # any other ensemble-preserving constant shift s (Σ_j w_j s_j = 0) adds exactly Σ_j w_j ‖s_j‖²
    g = torch.Generator().manual_seed(seed + 1)
    shift = torch.randn(members, dim, generator=g, dtype=F64)
    shift = shift - (weights[:, None] * shift).sum(0)
    shifted = mse_ambiguity(debiased - shift[:, None, :], w)
    torch.testing.assert_close(shifted, best + (weights * (shift**2).sum(-1)).sum(), **TOL)


# ------------------------------------------------------------------ learner dropout


def test_learner_dropout_colluding_pair():
    y = torch.tensor([0.0, 1.0, -2.0], dtype=F64)
    preds = torch.stack([y + 5, y - 5])  # perfect ensemble, terrible members
    assert learner_dropout_error_increase(preds, y, p=0.5) == pytest.approx(25.0)
    assert learner_dropout_error_increase(preds, y, p=0.0) == 0.0


def test_learner_dropout_expected_increase():
    y = torch.zeros(4, dtype=F64)
    preds = torch.stack([y + 5, y - 5, y + 5, y - 5])
    # drop 2 of 4: the kept pair has equal signs with probability 2/6 -> ERR 25, else 0
    value = learner_dropout_error_increase(preds, y, p=0.5, repeats=3000, seed=0)
    assert value == pytest.approx(25 / 3, abs=1.5)
    assert value == learner_dropout_error_increase(preds, y, p=0.5, repeats=3000, seed=0)


def test_learner_dropout_independent_members_barely_hurt():
    y = torch.zeros(50, dtype=F64)
    preds = torch.stack([y + 0.1, y + 0.1, y + 0.1])  # identical members: dropping changes nothing
    assert learner_dropout_error_increase(preds, y, p=0.4, relative=True) == pytest.approx(0.0, abs=1e-12)


def test_learner_dropout_classification_loss():
    g = torch.Generator().manual_seed(0)
    probs = torch.randn(6, 20, 3, generator=g, dtype=F64).softmax(-1)
    labels = torch.randint(0, 3, (20,), generator=g)
    value = learner_dropout_error_increase(probs, labels, p=0.5, loss="ce_prob", repeats=20)
    assert math.isfinite(value)
    with pytest.raises(ValueError):
        learner_dropout_error_increase(probs, labels, p=1.0, loss="ce_prob")


# ------------------------------------------------------- gradient-adjusted targets (App. D)


def test_gradient_adjusted_beta_values():
    assert gradient_adjusted_beta(0.0) == 0.0
    assert gradient_adjusted_beta(1.0) == pytest.approx(0.75)  # Jeffares et al. 2023, App. D
    assert gradient_adjusted_beta(1e6) == pytest.approx(1.0)
    assert leave_one_out_gradient_adjusted_beta(0.0, 5) == 0.0
    # γ → β as the ensemble grows (the M − 1 mean approaches the full mean)
    assert leave_one_out_gradient_adjusted_beta(1.0, 10**6) == pytest.approx(0.75, abs=1e-5)
    # hand-computed: α = 1, M = 2: 1/4 * 2 (3*2 - 4) / 1 = 1
    assert leave_one_out_gradient_adjusted_beta(1.0, 2) == pytest.approx(1.0)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(2, 7), st.integers(1, 10), st.integers(1, 3),
       st.floats(0.0, 5.0), st.booleans())
def test_gradient_adjusted_targets_equal_augmented_objective(seed, members, examples, dim, alpha, loo):
    preds, _, _, targets, _ = random_problem(seed, members, examples, dim, weighted=False)
    _, err_bar, div = diversity_decomposition(preds, targets, "mse")
    beta = leave_one_out_gradient_adjusted_beta(alpha, members) if loo else gradient_adjusted_beta(alpha)
    gat = gradient_adjusted_target_loss(preds, targets, alpha, leave_one_out=loo)
    torch.testing.assert_close(gat, (1 + alpha) ** 2 * (err_bar - beta * div), rtol=1e-10, atol=1e-10)


def test_gradient_adjusted_target_loss_hand_computed():
    preds = torch.tensor([[1.0], [3.0]], dtype=F64)
    y = torch.tensor([0.0], dtype=F64)
    # f̄ − y = 2, α = 1: target −2, loss ((1+2)² + (3+2)²)/2 = 17
    assert float(gradient_adjusted_target_loss(preds, y, 1.0)) == pytest.approx(17.0)
    # M − 1 variant: member 1's target uses member 2: y − (3 − 0) = −3, member 2's: −1 -> (16 + 16)/2
    assert float(gradient_adjusted_target_loss(preds, y, 1.0, leave_one_out=True)) == pytest.approx(16.0)


def test_mean_probs_is_the_ce_prob_ensemble():
    g = torch.Generator().manual_seed(5)
    probs = torch.randn(3, 7, 4, generator=g, dtype=F64).softmax(-1)
    labels = torch.randint(0, 4, (7,), generator=g)
    expected = -torch.log(mean_probs(probs)[torch.arange(7), labels]).mean()
    torch.testing.assert_close(ensemble_loss(probs, labels, "ce_prob"), expected)
