"""Part II analyses (Jeffares et al. 2023): diversity identities, L_β, collusion, gradient-adjusted targets."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from fairens_core.analysis import collusion as C
from fairens_core.metrics import diversity as D


@pytest.fixture
def ensembles():
    g = torch.Generator().manual_seed(0)
    reg = torch.randn(4, 30, generator=g, dtype=torch.float64)
    y = torch.randn(30, generator=g, dtype=torch.float64)
    logits = 2 * torch.randn(5, 40, 3, generator=g, dtype=torch.float64)
    labels = torch.randint(3, (40,), generator=g)
    return reg, y, logits, labels


# ------------------------------------------------------------------ §4 identities


def test_identity_table_is_exact_for_both_weightings(ensembles):
    table = pd.concat([C.identity_table(*ensembles, weighting=w) for w in ("uniform", "random")])
    assert len(table) == 8
    assert (table.abs_difference < 1e-12).all()
    assert np.allclose(table.ERR_bar - table.ERR, table.DIV_difference, atol=1e-12)
    assert (table.DIV_difference > 0).all()


def test_identity_table_by_hand():
    # members at 0 and 2, target 1: ensemble exact (ERR 0), each member off by 1 (ERR-bar 1)
    reg, y = torch.tensor([[0.0], [2.0]]), torch.tensor([1.0])
    logits, labels = torch.zeros(2, 1, 2), torch.tensor([0])  # identical members: no diversity
    row = C.identity_table(reg, y, logits, labels).set_index(["loss", "averaged"])
    assert row.loc[("squared error", "outputs"), ["ERR", "ERR_bar", "DIV_difference"]].tolist() == [0, 1, 1]
    assert row.loc[("cross-entropy", "probabilities"), "DIV_difference"] == pytest.approx(0, abs=1e-15)
    assert row.loc[("cross-entropy", "probabilities"), "ERR"] == pytest.approx(math.log(2))


def test_random_weights_change_the_decomposition(ensembles):
    uniform = C.identity_table(*ensembles, weighting="uniform")
    weighted = C.identity_table(*ensembles, weighting="random", seed=3)
    assert not np.allclose(uniform.ERR, weighted.ERR)
    w = C.ensemble_weights(6, "random", seed=3)
    assert w.shape == (6,) and float(w.sum()) == pytest.approx(1) and (w >= 0).all()
    assert C.ensemble_weights(6) is None
    with pytest.raises(ValueError):
        C.ensemble_weights(6, "inverse-loss")


def test_per_example_identities(ensembles):
    frame = C.per_example_identities(*ensembles)
    assert len(frame) == 30 + 3 * 40  # one regression pair, three classification pairs
    assert frame.loss.nunique() == 4
    assert np.allclose(frame.DIV_difference, frame.DIV_closed_form, atol=1e-12)
    assert (frame.DIV_difference > -1e-12).all()  # PSD Hessians: no negative diversity


def test_magnitude():
    assert C.magnitude(0.0) == "0"
    assert C.magnitude(5.6e-17) == "< 1e-16"
    assert C.magnitude(-2.0e-14) == "< 1e-13"
    assert C.magnitude(0.3) == "< 1e0"


# ------------------------------------------------------------------ Thm 4.5


def test_general_decomposition_matches_squared_error(ensembles):
    reg, y, _, _ = ensembles
    general = C.general_decomposition(lambda f, t: ((f - t) ** 2).sum(), reg[..., None], y[:, None])
    direct = D.diversity_decomposition(reg, y, "mse")
    for a, b in zip(general, direct):
        assert float(a) == pytest.approx(float(b), abs=1e-12)


def test_hessian_form_is_exact(ensembles):
    reg, y, logits, labels = ensembles
    onehot = torch.nn.functional.one_hot(labels, 3).double()
    cases = {"log-cosh": (C.log_cosh, reg[..., None], y[:, None]),
             "ce probs": (C.probability_cross_entropy, logits.softmax(-1), onehot),
             "ce scores": (C.score_cross_entropy, logits, onehot),
             "square": (lambda f, t: ((f - t) ** 2).sum(), reg[..., None], y[:, None])}
    table, points = C.hessian_form(cases)
    table = table.set_index("loss")
    assert (table.abs_difference < 1e-12).all()
    assert table.loc["square", "taylor_rel_error"] < 1e-12  # constant Hessian: c_j irrelevant
    assert table.loc["ce probs", "taylor_rel_error"] > 1e-3  # curvature varies: c_j = 0 is not exact
    assert len(points) == 2 * 4 * 30 + 2 * 5 * 40
    assert points.c.between(0, 1).all()
    # the cross-entropies match the closed forms of the same losses
    assert table.loc["ce probs", "DIV_difference"] == pytest.approx(float(D.prob_average_diversity(
        logits.softmax(-1), labels)), abs=1e-12)
    assert table.loc["ce scores", "DIV_difference"] == pytest.approx(float(D.score_average_diversity(logits)), abs=1e-12)


def test_lagrange_point_tends_to_a_third_for_close_members():
    # members very close to the ensemble: the remainder is cubic-dominated, c_j -> 1/3
    f = 0.3 + 1e-3 * torch.tensor([[1.0], [-1.0]], dtype=torch.float64)[:, :, None]  # (2, 1, 1)
    _, points = C.hessian_form({"log-cosh": (C.log_cosh, f, torch.zeros(1, 1, dtype=torch.float64))})
    assert np.allclose(points.c, 1 / 3, atol=1e-3)


# ------------------------------------------------------------------ Fig. 1


def test_collusion_keeps_the_ensemble_and_err():
    deltas = [0.0, 0.5, 1.0, 2.0]
    losses = C.collusion_losses((0.2, -0.1), (1.0, 1.0), deltas).pivot(index="delta", columns="quantity",
                                                                       values="value")
    assert np.allclose(losses["ERR"], 0.8 ** 2 + 1.1 ** 2)
    assert np.allclose(losses["DIV"], np.square(deltas))  # two members at ±δ: ambiguity δ²
    assert np.allclose(losses["ERR-bar"], losses["ERR"] + losses["DIV"])
    points = C.collusion_points((0.2, -0.1), (1.0, 1.0), deltas).set_index(["delta", "point"])
    mid = (points.loc[(2.0, "learner f₁")] + points.loc[(2.0, "learner f₂")]) / 2
    assert np.allclose(mid, points.loc[(2.0, "ensemble f̄")])


def test_collusion_on_the_simplex():
    # probabilities moving in a direction that sums to zero: the ensemble stays, ERR-bar grows
    p_bar, target = (0.5, 0.3, 0.2), (1.0, 0.0, 0.0)
    frame = C.collusion_losses(p_bar, target, [0.0, 0.1, 0.2], direction=(1.0, -1.0, 0.0), loss="ce_prob")
    frame = frame.pivot(index="delta", columns="quantity", values="value")
    assert np.allclose(frame["ERR"], math.log(2))
    assert frame["DIV"].is_monotonic_increasing and frame["DIV"].iloc[0] == pytest.approx(0)


# ------------------------------------------------------------------ §5 L_β


def test_l_beta_endpoints_by_hand():
    outputs = torch.tensor([[[0.0]], [[2.0]]], dtype=torch.float64)  # members 0 and 2, target 1
    y = torch.tensor([1.0], dtype=torch.float64)
    assert float(C.l_beta(outputs, y, 0.0)) == pytest.approx(1.0)  # ERR-bar
    assert float(C.l_beta(outputs, y, 1.0)) == pytest.approx(0.0)  # ERR
    assert float(C.l_beta(outputs, y, 2.0)) == pytest.approx(-1.0)  # ERR-bar − 2·DIV


@pytest.mark.parametrize("loss", ["mse", "ce_prob", "ce_score"])
def test_interpolation_table_engine_matches_metrics(ensembles, loss):
    reg, y, logits, labels = ensembles
    out, target = (reg, y) if loss == "mse" else (logits, labels)
    table = C.interpolation_table(out, target, [0, 0.5, 1, 1.5], loss)
    assert (table.abs_difference < 1e-12).all()
    slope = np.polyfit(table.beta, table.L_beta, 1)[0]
    assert slope < 0  # −DIV
    assert np.allclose(np.diff(table.L_beta, 2), 0, atol=1e-12)  # a straight line


@pytest.mark.parametrize("loss", ["mse", "ce_prob", "ce_score"])
def test_collusion_descent_runs_away_only_above_one(loss):
    descent = C.collusion_descent(loss, betas=(0.5, 2.0), steps=120, lr=0.05, examples=6)
    assert descent.groupby("beta").size().tolist() == [121, 121]
    start = descent[descent.step == 0]
    assert start.L_beta.nunique() == 2 and start.DIV.nunique() == 1  # same start, different objectives
    summary = C.descent_summary(descent).set_index("beta")
    assert summary.loc[0.5, "minimum"] >= -1e-12
    assert summary.loc[2.0, "final"] < 0 and summary.loc[2.0, "tail_drop"] > 0
    assert summary.loc[2.0, "DIV_final"] > 5 * summary.loc[2.0, "DIV_start"]


def test_descent_summary_by_hand():
    frame = pd.DataFrame({"loss": "mse", "beta": 2.0, "step": range(11), "L_beta": [-float(s) ** 2 for s in range(11)],
                          "ERR": 1.0, "ERR_bar": 0.0, "DIV": 0.0})
    row = C.descent_summary(frame).iloc[0]
    assert row.final == -100 and row.minimum == -100
    assert row.tail_drop == pytest.approx(100 - 81)  # from step 9 to step 10


# ------------------------------------------------------------------ App. D


@pytest.mark.parametrize("leave_one_out", [False, True])
def test_gradient_adjusted_check(ensembles, leave_one_out):
    reg, y, _, _ = ensembles
    table = C.gradient_adjusted_check(reg, y, [0.5, 1.0, 3.0], leave_one_out)
    assert (table[["objective_gap", "gradient_gap", "detached_gradient_gap"]] < 1e-12).all().all()
    assert table.beta_fitted.tolist() == pytest.approx(table.beta.tolist(), abs=1e-9)  # measured, not the formula
    if leave_one_out:
        assert table.beta.tolist() == pytest.approx([D.leave_one_out_gradient_adjusted_beta(a, 4) for a in (0.5, 1, 3)])
        assert table.beta.iloc[-1] == pytest.approx(1.0)  # α = M − 1
    else:
        assert table.beta.tolist() == pytest.approx([1 - 1 / (1 + a) ** 2 for a in (0.5, 1, 3)])


def test_gradient_adjusted_check_detects_a_wrong_beta(ensembles, monkeypatch):
    reg, y, _, _ = ensembles
    monkeypatch.setattr(C, "detached_target_beta", lambda alpha, members=None: 1 - 1 / (1 + alpha) ** 2)
    table = C.gradient_adjusted_check(reg, y, [1.0])
    assert table.detached_gradient_gap.iloc[0] > 1e-3


def test_fitted_beta_does_not_read_the_formula(ensembles, monkeypatch):
    reg, y, _, _ = ensembles
    monkeypatch.setattr(C.D, "gradient_adjusted_beta", lambda alpha: 0.5)  # a wrong Thm D.1
    table = C.gradient_adjusted_check(reg, y, [1.0])
    assert table.beta.iloc[0] == 0.5 and table.objective_gap.iloc[0] > 1e-6
    assert table.beta_fitted.iloc[0] == pytest.approx(0.75, abs=1e-9)


def test_detached_target_beta():
    assert C.detached_target_beta(1.0) == pytest.approx(0.5)
    assert C.detached_target_beta(1.0, members=2) == pytest.approx(1.0)
    assert C.detached_target_beta(3.0, members=10 ** 9) == pytest.approx(C.detached_target_beta(3.0))


def test_gat_beta_curves():
    curves = C.gat_beta_curves([0.5, 1.0, 4.0, 50.0], [2, 5])
    assert len(curves) == 12 and str(curves.members.dtype) == "Int64"
    assert curves.members.isna().sum() == 4
    assert (curves.beta <= 1 + 1e-12).all()
    m5 = curves[curves.members == 5].set_index("alpha").beta
    assert m5[4.0] == pytest.approx(1.0)  # γ peaks at α = M − 1 ...
    assert m5[50.0] < m5[4.0]  # ... and falls after it


# ------------------------------------------------------------------ App. E gradients


def test_app_e_gradients_by_hand():
    # two members, two classes, true class 0; member scores (0, 0) and (log 3, 0): φ = (1/2, 1/2), (3/4, 1/4)
    f = torch.tensor([[[0.0, 0.0]], [[math.log(3), 0.0]]], dtype=torch.float64)
    y = torch.tensor([0])
    ind = C.objective_gradients(f, y, "independent")
    torch.testing.assert_close(ind, torch.tensor([[[-0.25, 0.25]], [[-0.125, 0.125]]], dtype=torch.float64))
    # probabilities averaged: -φ_i,0 (y - φ_i) / (φ_1,0 + φ_2,0), with φ_1,0 + φ_2,0 = 5/4
    pa = C.objective_gradients(f, y, "joint, probabilities averaged")
    torch.testing.assert_close(pa, torch.tensor([[[-0.2, 0.2]], [[-0.15, 0.15]]], dtype=torch.float64))
    # scores averaged: (φ(f̄) - y) / 2 for both members, f̄ = (log 3 / 2, 0): φ(f̄)_0 = √3 / (√3 + 1)
    sa = C.objective_gradients(f, y, "joint, scores averaged")
    q = math.sqrt(3) / (math.sqrt(3) + 1)
    expected = torch.tensor([(q - 1) / 2, (1 - q) / 2], dtype=torch.float64)
    torch.testing.assert_close(sa, expected.expand(2, 1, 2))


def test_app_e_closed_forms_match_autograd_and_only_score_averaging_shares_gradients():
    gen = torch.Generator().manual_seed(0)
    f, y = 3 * torch.randn(5, 200, 10, generator=gen), torch.randint(0, 10, (200,), generator=gen)
    for objective in C.GRADIENT_OBJECTIVES:
        torch.testing.assert_close(C.objective_gradients(f, y, objective), C.closed_form_gradients(f, y, objective))
    table = C.gradient_table(f, y)
    assert (table.closed_form_gap < 1e-12).all()
    assert table.member_spread["joint, scores averaged"] < 1e-12
    assert table.member_spread["joint, probabilities averaged"] > 0.1
    assert table.member_spread["independent"] > 0.1
    with pytest.raises(ValueError, match="objective"):
        C.objective_gradients(f, y, "joint")
