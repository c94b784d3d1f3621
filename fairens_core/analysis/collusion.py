"""Part II analyses (Jeffares et al. 2023 2023): diversity, the augmented objective, collusion.

Chapter `diversity` checks on real member predictions that diversity DIV = ERR-bar − ERR
(Def. 4.2) equals its closed forms (§4.2, Thm 4.3) and the Hessian form of Thm 4.5, and
draws Fig. 1's learner collusion. Chapter `augmented_objective` checks that
L_β = ERR-bar − β·DIV (eq. 2) interpolates between independent and joint training, that it
has no lower bound for β > 1 (Thm 5.1), and App. D's gradient-adjusted targets.

The formulas live in `fairens_core.metrics.diversity` and the training objective in
`fairens_core.objectives`; this module arranges them into tidy data frames. Everything is
computed in float64, so that "equal" can mean equal to rounding error.

Shapes: M members, N examples, D outputs, C classes; members come first.
"""

from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .. import objectives
from ..metrics import diversity as D

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _f64(x) -> torch.Tensor:
    return torch.as_tensor(x).detach().double()


def magnitude(x: float) -> str:
    """A rounding-level number for display: "0", or "< 1e-16" with the next power of ten above |x|.

    Differences like 3.5e-17 change in their last digits with the summation order (threads,
    BLAS); the power of ten is what a reader needs and stays put between runs.
    """
    x = abs(float(x))
    return "0" if x == 0 else f"< 1e{int(np.floor(np.log10(x))) + 1}"


def ensemble_weights(members: int, weighting: str = "uniform", seed: int = 0) -> torch.Tensor | None:
    """Ensemble weights w_j (M,): None for uniform, or Dirichlet(1) draws for "random" (§4.1)."""
    if weighting == "uniform":
        return None
    if weighting == "random":
        return torch.from_numpy(np.random.default_rng(seed).dirichlet(np.ones(members)))
    raise ValueError(f"weighting must be 'uniform' or 'random', got {weighting!r}")


# ------------------------------------------------------------------ §4: closed forms of DIV


def _identity_cases(reg_preds, reg_targets, logits, labels, weighting: str, seed: int, reduction: str) -> list:
    """(loss, averaged, closed form, members, ERR/ERR-bar/DIV, closed-form DIV) for the four pairs."""
    f, y = _f64(reg_preds), _f64(reg_targets)
    scores = _f64(logits)
    probs = scores.softmax(-1)
    labels = torch.as_tensor(labels).long()
    onehot = F.one_hot(labels, scores.shape[-1]).double()
    w_r = ensemble_weights(f.shape[0], weighting, seed)
    w_c = ensemble_weights(scores.shape[0], weighting, seed)
    m_r, m_c, r = f.shape[0], scores.shape[0], reduction
    return [
        ("squared error", "outputs", "Σ w_j (f_j − f̄)²  (eq. 1)", m_r,
         D.diversity_decomposition(f, y, "mse", w_r, r), D.mse_ambiguity(f, w_r, r)),
        ("Brier score", "probabilities", "Σ w_j ‖p_j − p̄‖²  (§4.2)", m_c,
         D.diversity_decomposition(probs, onehot, "mse", w_c, r), D.mse_ambiguity(probs, w_c, r)),
        ("cross-entropy", "scores", "Σ w_j KL(q̄ ‖ p_j)  (§4.2 ①)", m_c,
         D.diversity_decomposition(scores, labels, "ce_score", w_c, r), D.score_average_diversity(scores, w_c, r)),
        ("cross-entropy", "probabilities", "Σ w_j log(p̄_k⋆ / p_j,k⋆)  (Thm 4.3)", m_c,
         D.diversity_decomposition(probs, labels, "ce_prob", w_c, r), D.prob_average_diversity(probs, labels, w_c, r)),
    ]


def identity_table(reg_preds, reg_targets, logits, labels, weighting: str = "uniform",
                   seed: int = 0) -> pd.DataFrame:
    """DIV from ERR-bar − ERR next to its closed form, for four loss / aggregation pairs.

    * squared error on regression outputs: ambiguity Σ_j w_j (f_j − f̄)² (Jeffares et al. 2023, eq. 1);
    * Brier score on class probabilities: Σ_j w_j ‖p_j − p̄‖² (§4.2);
    * cross-entropy, score averaging: Σ_j w_j KL(q̄ ‖ p_j) (§4.2 ①);
    * cross-entropy, probability averaging: Σ_j w_j log(p̄_k⋆ / p_j,k⋆) (Thm 4.3).

    Args:
        reg_preds: (M_r, N_r) or (M_r, N_r, 1) regression outputs; reg_targets: (N_r,).
        logits: (M_c, N_c, C) class scores; labels: (N_c,) int class ids.
        weighting: "uniform" or "random" (Dirichlet weights drawn with `seed`).

    Returns:
        One row per pair: loss, averaged (what the ensemble averages), closed_form, weights,
        members, ERR, ERR_bar, DIV_difference, DIV_closed_form, abs_difference (means over
        examples, float64).
    """
    rows = [{"loss": loss, "averaged": averaged, "closed_form": form, "weights": weighting, "members": m,
             "ERR": dec.err.item(), "ERR_bar": dec.err_bar.item(), "DIV_difference": dec.div.item(),
             "DIV_closed_form": closed.item(), "abs_difference": (dec.div - closed).abs().item()}
            for loss, averaged, form, m, dec, closed
            in _identity_cases(reg_preds, reg_targets, logits, labels, weighting, seed, "mean")]
    return pd.DataFrame(rows)


def per_example_identities(reg_preds, reg_targets, logits, labels) -> pd.DataFrame:
    """The identities of :func:`identity_table` example by example (uniform weights).

    Returns one row per (pair, example): loss (e.g. "cross-entropy, probabilities"), example,
    ERR_bar, DIV_difference, DIV_closed_form.
    """
    frames = []
    for loss, averaged, _, _, dec, closed in _identity_cases(reg_preds, reg_targets, logits, labels,
                                                             "uniform", 0, "none"):
        frames.append(pd.DataFrame({"loss": f"{loss}, {averaged}", "example": np.arange(len(closed)),
                                    "ERR_bar": dec.err_bar.numpy(), "DIV_difference": dec.div.numpy(),
                                    "DIV_closed_form": closed.numpy()}))
    return pd.concat(frames, ignore_index=True)


# ------------------------------------------------------- Thm 4.5: any twice differentiable loss


def log_cosh(f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Σ_d log cosh(f_d − y_d): a smooth robust regression loss, Hessian diag(sech²(f − y))."""
    return torch.log(torch.cosh(f - y)).sum()


def probability_cross_entropy(p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """−yᵀ log p on probabilities (probability averaging); Hessian diag(y ⊘ p²) (Jeffares et al. 2023, §4.2)."""
    return -(y * torch.log(p)).sum()


def score_cross_entropy(f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """−yᵀ log softmax(f) on scores (score averaging); Hessian diag(p) − p pᵀ, not diagonal."""
    return -(y * torch.log_softmax(f, dim=-1)).sum()


def general_decomposition(loss_fn: LossFn, preds, targets, weights=None) -> D.DiversityDecomposition:
    """ERR, ERR-bar and DIV (Def. 4.1-4.2) for any per-example loss ``loss_fn(f (D,), y) -> scalar``.

    preds (M, N, D) outputs averaged as f̄ = Σ_j w_j f_j; targets (N, ...). Means over examples.
    """
    f, y = _f64(preds), _f64(targets)
    m, n, d = f.shape
    w = torch.full((m,), 1.0 / m, dtype=f.dtype) if weights is None else _f64(weights)
    f_bar = torch.einsum("m,mnd->nd", w, f)
    per_example = torch.func.vmap(loss_fn)
    err = per_example(f_bar, y)  # (N,)
    members = per_example(f.reshape(m * n, d), y.expand(m, *y.shape).reshape(m * n, *y.shape[1:])).reshape(m, n)
    err_bar = torch.einsum("m,mn->n", w, members)
    return D.DiversityDecomposition(err.mean(), err_bar.mean(), (err_bar - err).mean())


def hessian_form(cases: dict, weights=None, grid_size: int = 21) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Thm 4.5 of Jeffares et al. 2023 on real predictions: DIV = ½ Σ_j w_j d_jᵀ H_L(f̄ + c_j d_j, y) d_j.

    For every member and example the c_j ∈ [0, 1] of the Lagrange remainder (App. C.2) is
    found numerically (`metrics.lagrange_intermediate_points`); with them the Hessian form
    must equal ERR-bar − ERR to rounding error. The same form at c_j = 0 (the curvature at
    the ensemble prediction) is the second-order Taylor approximation of DIV.

    Args:
        cases: name -> (loss_fn, preds (M, N, D), targets (N, ...)); ``loss_fn(f (D,), y)``
            is a per-example loss written with tensor operations (it is vmapped).
        weights: (M,) ensemble weights, uniform if None.
        grid_size: grid used to bracket each c_j before bisection.

    Returns:
        ``(table, points)``. table: one row per case with loss, DIV_difference, DIV_hessian
        (with the c_j), abs_difference, c_min, c_max, DIV_taylor (c_j = 0),
        taylor_rel_error. points: one row per (case, member, example) with loss, c (c_j) and
        distance ‖f_j − f̄‖.
    """
    rows, points = [], []
    for name, (loss_fn, preds, targets) in cases.items():
        f, y = _f64(preds), _f64(targets)
        div = general_decomposition(loss_fn, f, y, weights).div.item()
        c = D.lagrange_intermediate_points(loss_fn, f, y, weights, grid_size=grid_size)
        exact = D.second_order_diversity(loss_fn, f, y, weights, c=c).item()
        taylor = D.second_order_diversity(loss_fn, f, y, weights, c=0.0).item()
        rows.append({"loss": name, "DIV_difference": div, "DIV_hessian": exact, "abs_difference": abs(div - exact),
                     "c_min": c.min().item(), "c_max": c.max().item(), "DIV_taylor": taylor,
                     "taylor_rel_error": abs(taylor - div) / abs(div)})
        w = torch.full((f.shape[0],), 1.0 / f.shape[0], dtype=f.dtype) if weights is None else _f64(weights)
        distance = (f - torch.einsum("m,mnd->nd", w, f)).norm(dim=-1)  # (M, N)
        points.append(pd.DataFrame({"loss": name, "c": c.flatten().numpy(), "distance": distance.flatten().numpy()}))
    return pd.DataFrame(rows), pd.concat(points, ignore_index=True)


# ------------------------------------------------------------------------ Fig. 1: collusion


def _colluding_pair(f_bar, direction, delta: float) -> torch.Tensor:
    """Two learners at f̄ ± δ·v (v the unit direction): (2, D); their average is f̄ for every δ."""
    f_bar, v = _f64(f_bar), _f64(direction)
    v = v / v.norm()
    return torch.stack([f_bar + delta * v, f_bar - delta * v])


def collusion_points(f_bar, target, deltas: Iterable[float], direction=(1.0, -1.0)) -> pd.DataFrame:
    """Positions in a 2-D output space of Fig. 1 (Jeffares et al. 2023): target, ensemble and two colluders.

    Returns one row per (delta, point) with columns delta, point, out_1, out_2.
    """
    rows = []
    for delta in deltas:
        f1, f2 = _colluding_pair(f_bar, direction, delta).tolist()
        named = {"target y": _f64(target).tolist(), "ensemble f̄": _f64(f_bar).tolist(),
                 "learner f₁": f1, "learner f₂": f2}
        rows += [{"delta": delta, "point": p, "out_1": xy[0], "out_2": xy[1]} for p, xy in named.items()]
    return pd.DataFrame(rows)


def collusion_losses(f_bar, target, deltas: Iterable[float], direction=(1.0, -1.0),
                     loss: D.Loss = "mse") -> pd.DataFrame:
    """ERR, ERR-bar and DIV of two learners colluding around a fixed ensemble (Jeffares et al. 2023, Fig. 1).

    The learners sit at f̄ ± δ·v, so the ensemble — and ERR — never moves, while ERR-bar and
    DIV grow with δ (for squared error both by exactly δ²). ``loss`` as in
    `metrics.diversity_decomposition` (for "ce_prob" pass probabilities and a target
    distribution, and a direction whose entries sum to zero).

    Returns one row per (delta, quantity) with columns delta, quantity ("ERR", "ERR-bar",
    "DIV"), value.
    """
    rows = []
    for delta in deltas:
        pair = _colluding_pair(f_bar, direction, delta)[:, None, :]  # (2, 1, D)
        dec = D.diversity_decomposition(pair, _f64(target)[None], loss)
        rows += [{"delta": delta, "quantity": q, "value": v.item()}
                 for q, v in zip(("ERR", "ERR-bar", "DIV"), dec)]
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ §5: the augmented objective

_TASKS = {"mse": ("regression", "prob"), "ce_prob": ("classification", "prob"),
          "ce_score": ("classification", "score")}


def _engine_terms(outputs: torch.Tensor, y: torch.Tensor, loss: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(ERR-bar, ERR) of the training engine for outputs (M, N, C) (regression: C = 1)."""
    task, combine = _TASKS[loss]
    m = outputs.shape[0]
    err_bar = objectives.member_losses(outputs, y.expand(m, -1), task).mean()
    return err_bar, objectives.ensemble_loss(outputs, y, task, combine)


def l_beta(outputs: torch.Tensor, y: torch.Tensor, beta: float, loss: str = "mse") -> torch.Tensor:
    """L_β = (1 − β)·ERR-bar + β·ERR (Jeffares et al. 2023, eq. 2) as the engine trains it, divided by M.

    `objectives.augmented_loss` returns M·L_β (so that each member's gradient at β = 0 is
    that of its own loss); we divide by M to get L_β itself. outputs (M, N, C) logits, or
    (M, N, 1) regression outputs; y (N,). ``loss``: "mse", "ce_prob" or "ce_score".
    """
    task, combine = _TASKS[loss]
    total, _ = objectives.augmented_loss(outputs, y, beta, task, combine)
    return total / outputs.shape[0]


def interpolation_table(outputs, y, betas: Iterable[float], loss: str = "mse") -> pd.DataFrame:
    """L_β of the engine against ERR-bar − β·DIV of the metrics, for a grid of β (Jeffares et al. 2023, eq. 2).

    Two independent implementations: `objectives.augmented_loss` (what training minimises)
    and `metrics.diversity_decomposition`. At β = 0 L_β is ERR-bar (independent training),
    at β = 1 it is ERR (joint training), and it is linear in β with slope −DIV.

    Args:
        outputs: (M, N, C) member logits, or (M, N) / (M, N, 1) regression outputs.
        y: (N,) labels or regression targets.
        loss: "mse" (regression), "ce_prob" or "ce_score" (classification).

    Returns:
        One row per β: beta, L_beta (engine), ERR_bar_minus_beta_DIV (metrics), abs_difference.
    """
    out, y = _f64(outputs), torch.as_tensor(y)
    if loss == "mse":
        out, y = (out[..., None] if out.ndim == 2 else out), y.double()
        dec = D.diversity_decomposition(out[..., 0], y, "mse")
    else:
        y = y.long()
        dec = D.diversity_decomposition(out.softmax(-1) if loss == "ce_prob" else out, y, loss)
    rows = []
    for beta in betas:
        engine = l_beta(out, y, beta, loss).item()
        metric = (dec.err_bar - beta * dec.div).item()
        rows.append({"beta": beta, "L_beta": engine, "ERR_bar_minus_beta_DIV": metric,
                     "abs_difference": abs(engine - metric)})
    return pd.DataFrame(rows)


def collusion_descent(loss: str = "mse", betas: Iterable[float] = (0.0, 0.5, 1.0, 1.5, 2.0), steps: int = 300,
                      lr: float = 0.05, members: int = 2, examples: int = 16, classes: int = 3,
                      seed: int = 0) -> pd.DataFrame:
    """Minimise L_β over free member predictions with Adam (Jeffares et al. 2023, Thm 5.1, App. F).

    The "learners" are the predictions themselves, a (members, examples, D) tensor with no
    network in between, so nothing but the objective limits them. Targets and the starting
    point are drawn once from `seed` and shared by every β. For β ≤ 1, L_β ≥ 0 and the
    descent settles; for β > 1 the learners collude — they move apart in opposite
    directions, DIV grows without limit while ERR stays small — and L_β falls without bound.

    Args:
        loss: "mse" (regression, D = 1), "ce_prob" or "ce_score" (classification, D = classes
            free logits per learner).
        betas: values of β, each optimised from the same start.
        steps, lr: Adam steps and learning rate.

    Returns:
        One row per (beta, step) with columns loss, beta, step, L_beta, ERR, ERR_bar, DIV
        (step 0 is the starting point).
    """
    g = torch.Generator().manual_seed(seed)
    if loss == "mse":
        y = torch.randn(examples, generator=g, dtype=torch.float64)
        start = torch.randn(members, examples, 1, generator=g, dtype=torch.float64)
    else:
        y = torch.randint(classes, (examples,), generator=g)
        start = torch.randn(members, examples, classes, generator=g, dtype=torch.float64)
    rows = []
    for beta in betas:
        outputs = start.clone().requires_grad_(True)
        opt = torch.optim.Adam([outputs], lr=lr)
        for step in range(steps + 1):
            objective = l_beta(outputs, y, beta, loss)
            err_bar, err = _engine_terms(outputs.detach(), y, loss)
            rows.append({"loss": loss, "beta": beta, "step": step, "L_beta": objective.item(),
                         "ERR": err.item(), "ERR_bar": err_bar.item(), "DIV": (err_bar - err).item()})
            if step < steps:
                opt.zero_grad()
                objective.backward()
                opt.step()
    return pd.DataFrame(rows)


def descent_summary(descent: pd.DataFrame, tail: float = 0.1) -> pd.DataFrame:
    """Where each descent of :func:`collusion_descent` ends, one row per (loss, beta).

    Columns: loss, beta, minimum (lowest L_β reached), final (L_β at the last step),
    tail_drop (how much L_β fell over the last `tail` fraction of the steps; ≈ 0 once it has
    converged, large while it is still running away), ERR_start, ERR_final, DIV_start,
    DIV_final.
    """
    rows = []
    for (loss, beta), run in descent.groupby(["loss", "beta"], sort=False):
        run = run.sort_values("step")
        first, last = run.iloc[0], run.iloc[-1]
        start_tail = run[run.step <= last.step * (1 - tail)].iloc[-1]
        rows.append({"loss": loss, "beta": beta, "minimum": run.L_beta.min(), "final": last.L_beta,
                     "tail_drop": start_tail.L_beta - last.L_beta, "ERR_start": first.ERR, "ERR_final": last.ERR,
                     "DIV_start": first.DIV, "DIV_final": last.DIV})
    return pd.DataFrame(rows)


# ------------------------------------------------------------ App. D: gradient-adjusted targets


def detached_target_beta(alpha: float, members: int | None = None) -> float:
    """β whose gradient a gradient-adjusted target has when the target is held fixed.

    App. D differentiates the GAT objective through the adjusted target ỹ (it depends on
    f̄), which gives β = 1 − 1/(1+α)². If ỹ is instead treated as a constant, as a training
    target usually is (stop-gradient), member i's gradient is (2/M)·(f_i − ỹ), which is
    (1 + α) times the gradient of L_β with β = α/(1 + α); for the M − 1 variant (eq. 10)
    β = α·M / ((M − 1)(1 + α)). ``members=None`` gives the full-ensemble variant (eq. 8).
    """
    if members is None:
        return alpha / (1 + alpha)
    return alpha * members / ((members - 1) * (1 + alpha))


def gradient_adjusted_check(preds, targets, alphas: Iterable[float], leave_one_out: bool = False) -> pd.DataFrame:
    """App. D of Jeffares et al. 2023: GAT objective = (1 + α)²·L_β, checked in value and gradient.

    For each α, the gradient-adjusted-target loss (`metrics.gradient_adjusted_target_loss`,
    eq. 8, or eq. 10 with ``leave_one_out``) and (1 + α)² times the engine's L_β at
    β = `gradient_adjusted_beta(α)` (Thm D.1) or γ = `leave_one_out_gradient_adjusted_beta`
    (Thm D.3) are compared, with gradients taken by autograd w.r.t. the (M, N) predictions.
    The last two columns repeat the gradient check with the adjusted target held fixed,
    against (1 + α)·∇L_β at β = :func:`detached_target_beta`.

    ``beta_fitted`` measures the β the GAT objective weights DIV by without the formula: L_β is
    linear in β, so GAT/(1+α)² = (1 − β)·L_0 + β·L_1 is solved for β from the engine's L_0 and L_1.

    Args:
        preds: (M, N) or (M, N, 1) regression outputs; targets: (N,).

    Returns:
        One row per α: alpha, variant, beta, beta_fitted, objective_gap |GAT − (1+α)² L_β|,
        gradient_gap max |∇GAT − (1+α)² ∇L_β|, beta_detached, detached_gradient_gap.
    """
    f0 = _f64(preds)
    f0 = f0[..., 0] if f0.ndim == 3 else f0
    y = _f64(targets)
    m = f0.shape[0]

    def grad(fn):
        f = f0.clone().requires_grad_(True)
        value = fn(f)
        return value.detach(), torch.autograd.grad(value, f)[0]

    def engine(beta):  # L_β on (M, N) outputs
        return lambda f: l_beta(f[..., None], y, beta, "mse")

    rows = []
    for alpha in alphas:
        if leave_one_out:
            beta = D.leave_one_out_gradient_adjusted_beta(alpha, m)
            beta_fixed = detached_target_beta(alpha, m)
        else:
            beta, beta_fixed = D.gradient_adjusted_beta(alpha), detached_target_beta(alpha)
        gat, g_gat = grad(lambda f: D.gradient_adjusted_target_loss(f, y, alpha, leave_one_out))
        lb, g_lb = grad(engine(beta))
        l0, l1 = engine(0.0)(f0), engine(1.0)(f0)
        _, g_fixed = grad(lambda f: _fixed_target_loss(f, y, alpha, leave_one_out))
        _, g_lb_fixed = grad(engine(beta_fixed))
        rows.append({
            "alpha": alpha, "variant": "M − 1 (eq. 10)" if leave_one_out else "ensemble (eq. 8)", "beta": beta,
            "beta_fitted": ((l0 - gat / (1 + alpha) ** 2) / (l0 - l1)).item(),
            "objective_gap": (gat - (1 + alpha) ** 2 * lb).abs().item(),
            "gradient_gap": (g_gat - (1 + alpha) ** 2 * g_lb).abs().max().item(),
            "beta_detached": beta_fixed,
            "detached_gradient_gap": (g_fixed - (1 + alpha) * g_lb_fixed).abs().max().item(),
        })
    return pd.DataFrame(rows)


def _fixed_target_loss(f: torch.Tensor, y: torch.Tensor, alpha: float, leave_one_out: bool) -> torch.Tensor:
    """eq. 8 / eq. 10 with the adjusted targets detached (no gradient through ỹ). f (M, N), y (N,)."""
    residual = (f - y).detach()
    m = f.shape[0]
    if leave_one_out:
        target = y - alpha * (residual.sum(0, keepdim=True) - residual) / (m - 1)
    else:
        target = y - alpha * residual.mean(0)
    return ((f - target) ** 2).mean(0).mean()


def gat_beta_curves(alphas: Iterable[float], sizes: Iterable[int]) -> pd.DataFrame:
    """β as a function of the target step α (Jeffares et al. 2023, Fig. 8-9).

    One row per (alpha, curve): the full-ensemble step (Thm D.1, β = 1 − 1/(1+α)², Fig. 9)
    and the M − 1 step for each ensemble size in `sizes` (Thm D.3, Fig. 8). Columns alpha,
    curve, members (missing, <NA>, for the full-ensemble curve), beta.
    """
    alphas = list(alphas)
    rows = [{"alpha": a, "curve": "ensemble step (Thm D.1)", "members": None, "beta": D.gradient_adjusted_beta(a)}
            for a in alphas]
    for m in sizes:
        rows += [{"alpha": a, "curve": f"M − 1 step, M = {m} (Thm D.3)", "members": m,
                  "beta": D.leave_one_out_gradient_adjusted_beta(a, m)} for a in alphas]
    frame = pd.DataFrame(rows)
    frame["members"] = frame["members"].astype("Int64")  # missing for the full-ensemble curve
    return frame


# ------------------------------------------------------------------ App. E: who gets which gradient

GRADIENT_OBJECTIVES = ("independent", "joint, probabilities averaged", "joint, scores averaged")


def objective_gradients(logits: torch.Tensor, labels: torch.Tensor, objective: str) -> torch.Tensor:
    """(M, N, C): the gradient of one example's loss with respect to each member's scores, for every
    example, by autograd through the engine's own losses (`fairens_core.objectives`) in float64.

    ``objective``: "independent" (the mean of the members' cross-entropies, Table 2's L_ind),
    "joint, probabilities averaged" (L_pa) or "joint, scores averaged" (L_sa).
    """
    if objective not in GRADIENT_OBJECTIVES:
        raise ValueError(f"objective={objective!r}: allowed values are {GRADIENT_OBJECTIVES}")
    f = _f64(logits).clone().requires_grad_(True)
    y = torch.as_tensor(labels).long()
    M, N = f.shape[:2]
    if objective == "independent":
        loss = objectives.member_losses(f, y.expand(M, -1), "classification").mean()
    else:
        combine = "prob" if objective.startswith("joint, prob") else "score"
        loss = objectives.ensemble_loss(f, y, "classification", combine)
    (grad,) = torch.autograd.grad(N * loss, f)  # the losses average over examples: N × that is per example
    return grad


def closed_form_gradients(logits: torch.Tensor, labels: torch.Tensor, objective: str) -> torch.Tensor:
    """(M, N, C): App. E's expressions for the same gradients as `objective_gradients`.

    independent: (φ(f_i) − y) / M; probabilities averaged: −φ(f_i)_k* (y − φ(f_i)) / Σ_j φ(f_j)_k*;
    scores averaged: (φ(f̄) − y) / M, the same for every member i.
    """
    if objective not in GRADIENT_OBJECTIVES:
        raise ValueError(f"objective={objective!r}: allowed values are {GRADIENT_OBJECTIVES}")
    f = _f64(logits)
    M, _, C = f.shape
    y = F.one_hot(torch.as_tensor(labels).long(), C).to(f.dtype)  # (N, C)
    p = f.softmax(-1)
    if objective == "independent":
        return (p - y) / M
    if objective == "joint, scores averaged":
        return ((f.mean(0).softmax(-1) - y) / M).expand(M, -1, -1)
    p_true = (p * y).sum(-1, keepdim=True)  # (M, N, 1): φ(f_i)_k*
    return -p_true * (y - p) / p_true.sum(0)


def gradient_table(logits: torch.Tensor, labels: torch.Tensor) -> pd.DataFrame:
    """One row per objective of `GRADIENT_OBJECTIVES`: how far autograd is from App. E's closed form
    (``closed_form_gap``, largest absolute difference) and how much the members' gradients differ
    (``member_spread``: per example, the largest distance of a member's gradient from the members'
    mean gradient over the mean gradient norm, averaged over examples; 0 when all members get the
    same gradient)."""
    rows = []
    for objective in GRADIENT_OBJECTIVES:
        grad = objective_gradients(logits, labels, objective)
        gap = (grad - closed_form_gradients(logits, labels, objective)).abs().max()
        distance = (grad - grad.mean(0)).norm(dim=-1).amax(0)  # (N,)
        scale = grad.norm(dim=-1).mean(0)
        spread = (distance / scale.clamp_min(torch.finfo(grad.dtype).tiny)).mean()
        rows.append({"objective": objective, "closed_form_gap": float(gap), "member_spread": float(spread)})
    return pd.DataFrame(rows).set_index("objective")
