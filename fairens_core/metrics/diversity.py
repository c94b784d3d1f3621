"""Ensemble diversity as the gap between member loss and ensemble loss (Jeffares et al. 2023).

Jeffares et al. (2023) defines, for an
ensemble f̄ = Σ_j w_j f_j with weights summing to one:

* Def. 4.1  ERR = L(f̄, y)                 (ensemble loss, the joint objective)
            ERR-bar = Σ_j w_j L(f_j, y)    (weighted member loss, independent objective)
* Def. 4.2  DIV = ERR-bar − ERR             (diversity)

and shows that DIV has a closed form for the usual losses:

* squared error, eq. (1) (Krogh & Vedelsby's ambiguity): DIV = Σ_j w_j ‖f_j − f̄‖²;
* cross-entropy with score averaging (§4.2 ①): DIV = Σ_j w_j KL(q̄ ‖ p_j);
* cross-entropy with probability averaging (Thm 4.3):
  DIV = Σ_j w_j Σ_k y_k log(p̄_k / p_j,k)  (= Σ_j w_j log(p̄_k⋆ / p_j,k⋆) for one-hot y);
* any twice differentiable loss (Thm 4.5):
  DIV = ½ Σ_j w_j (f_j − f̄)ᵀ H_L(f_j⋆, y) (f_j − f̄) with f_j⋆ = f̄ + c_j (f_j − f̄), c_j ∈ [0, 1].

This module computes ERR, ERR-bar and DIV directly (:func:`diversity_decomposition`)
and each closed form separately, so that the tests can check that they agree.
It also holds the learner-collusion diagnostics of §6.1 (debiasing, App. C.1;
test-time learner dropout, Fig. 4) and the gradient-adjusted-target
equivalences of App. D.

Shapes: M members, N examples, D outputs (regression) or C classes.  Losses are
computed per example and averaged over examples (``reduction="mean"``) or
returned per example (``reduction="none"``); all identities hold per example.
Results are tensors (0-dim for the mean) so that they stay differentiable.
"""

from __future__ import annotations

import math
from typing import Callable, Literal, NamedTuple

import torch

from ._utils import ArrayLike, SeedLike, as_tensor, make_generator, member_weights, safe_log

Loss = Literal["mse", "ce_prob", "ce_score"]
Reduction = Literal["mean", "none"]


class DiversityDecomposition(NamedTuple):
    """ERR, ERR-bar and DIV = ERR-bar − ERR of Jeffares et al. 2023 Def. 4.1-4.2."""

    err: torch.Tensor
    err_bar: torch.Tensor
    div: torch.Tensor


# --------------------------------------------------------------------------- helpers


def _reduce(per_example: torch.Tensor, reduction: Reduction) -> torch.Tensor:
    if reduction == "mean":
        return per_example.mean()
    if reduction == "none":
        return per_example
    raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")


def _regression_preds(preds: ArrayLike) -> torch.Tensor:
    """(M, N) or (M, N, D) regression outputs as (M, N, D)."""
    preds = as_tensor(preds)
    if preds.ndim == 2:
        preds = preds.unsqueeze(-1)
    if preds.ndim != 3:
        raise ValueError(f"preds must be (M, N) or (M, N, D), got shape {tuple(preds.shape)}")
    return preds


def _regression_targets(targets: ArrayLike, like: torch.Tensor) -> torch.Tensor:
    """(N,) or (N, D) regression targets as (N, D)."""
    targets = as_tensor(targets, dtype=like.dtype, device=like.device)
    return targets.unsqueeze(-1) if targets.ndim == 1 else targets


def _target_distribution(targets: ArrayLike, like: torch.Tensor) -> torch.Tensor:
    """Class targets as (N, C) distributions y: int labels become one-hot."""
    targets = as_tensor(targets, device=like.device)
    if targets.is_floating_point():
        return targets.to(like.dtype)
    return torch.nn.functional.one_hot(targets.long(), like.shape[-1]).to(like.dtype)


def _cross_entropy(log_p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """-Σ_k y_k log p_k over the last dimension."""
    return -(y * log_p).sum(dim=-1)


def _weighted_mean(preds: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Σ_j w_j x_j over the member dimension: (M, N, K) -> (N, K)."""
    return torch.einsum("m,mnk->nk", w, preds)


def _losses(preds: ArrayLike, targets: ArrayLike, loss: Loss, weights) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example ensemble loss (N,) and member losses (M, N)."""
    if loss == "mse":
        f = _regression_preds(preds)
        y = _regression_targets(targets, f)
        w = member_weights(f.shape[0], weights, f)
        ensemble = ((_weighted_mean(f, w) - y) ** 2).sum(dim=-1)
        members = ((f - y) ** 2).sum(dim=-1)
    elif loss == "ce_prob":
        p = as_tensor(preds)
        y = _target_distribution(targets, p)
        w = member_weights(p.shape[0], weights, p)
        ensemble = _cross_entropy(safe_log(_weighted_mean(p, w)), y)
        members = _cross_entropy(safe_log(p), y)
    elif loss == "ce_score":
        f = as_tensor(preds)
        y = _target_distribution(targets, f)
        w = member_weights(f.shape[0], weights, f)
        ensemble = _cross_entropy(torch.log_softmax(_weighted_mean(f, w), dim=-1), y)
        members = _cross_entropy(torch.log_softmax(f, dim=-1), y)
    else:
        raise ValueError(f"loss must be 'mse', 'ce_prob' or 'ce_score', got {loss!r}")
    return ensemble, members


# ------------------------------------------------------------- decomposition (Def. 4.2)


def ensemble_loss(
    preds: ArrayLike, targets: ArrayLike, loss: Loss = "mse", weights: ArrayLike | None = None,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """ERR = L(f̄, y), the loss of the aggregated ensemble (Jeffares et al. 2023 Def. 4.1a).

    See :func:`diversity_decomposition` for ``preds`` / ``targets`` / ``loss``.
    """
    ensemble, _ = _losses(preds, targets, loss, weights)
    return _reduce(ensemble, reduction)


def diversity_decomposition(
    preds: ArrayLike,
    targets: ArrayLike,
    loss: Loss = "mse",
    weights: ArrayLike | None = None,
    reduction: Reduction = "mean",
) -> DiversityDecomposition:
    """ERR, ERR-bar and DIV = ERR-bar − ERR computed from the losses (Jeffares et al. 2023 Def. 4.1-4.2).

    Args:
        preds: member outputs, members first.

            * ``loss="mse"``: (M, N) or (M, N, D) regression outputs f_j,
              L(f, y) = ‖f − y‖² (summed over D);
            * ``loss="ce_prob"``: (M, N, C) member probabilities p_j, ensemble
              p̄ = Σ_j w_j p_j (probability averaging), L = cross-entropy;
            * ``loss="ce_score"``: (M, N, C) member logits f_j, members predict
              softmax(f_j) and the ensemble softmax(Σ_j w_j f_j) (score averaging).
        targets: (N,) / (N, D) regression targets, or for the CE losses (N,) int
            labels or (N, C) target distributions.
        loss: which loss / aggregation pair.
        weights: (M,) ensemble weights summing to 1; uniform if None.
        reduction: "mean" over examples or "none" for per-example values (N,).

    Returns:
        ``DiversityDecomposition(err, err_bar, div)`` of tensors.
    """
    ensemble, members = _losses(preds, targets, loss, weights)
    w = member_weights(members.shape[0], weights, members)
    err_bar = torch.einsum("m,mn->n", w, members)
    return DiversityDecomposition(
        err=_reduce(ensemble, reduction),
        err_bar=_reduce(err_bar, reduction),
        div=_reduce(err_bar - ensemble, reduction),
    )


# ----------------------------------------------------------------------- closed forms


def mse_ambiguity(preds: ArrayLike, weights: ArrayLike | None = None, reduction: Reduction = "mean") -> torch.Tensor:
    """Ambiguity Σ_j w_j ‖f_j − f̄‖²: DIV for squared error (Jeffares et al. 2023, eq. 1, Krogh & Vedelsby).

    Needs no targets: diversity is the weighted spread of the members around the
    ensemble.  Applied to probabilities it is also DIV for the Brier score
    (Jeffares et al. 2023, §4.2).

    Args:
        preds: (M, N) or (M, N, D) member outputs.
        weights: (M,) weights summing to 1; uniform if None.
        reduction: "mean" or "none".
    """
    f = _regression_preds(preds)
    w = member_weights(f.shape[0], weights, f)
    spread = ((f - _weighted_mean(f, w)) ** 2).sum(dim=-1)  # (M, N)
    return _reduce(torch.einsum("m,mn->n", w, spread), reduction)


def score_average_diversity(
    logits: ArrayLike, weights: ArrayLike | None = None, reduction: Reduction = "mean"
) -> torch.Tensor:
    """Σ_j w_j KL(q̄ ‖ p_j): DIV for cross-entropy with score averaging (Jeffares et al. 2023, §4.2 ①).

    q̄ = softmax(Σ_j w_j f_j) is the ensemble and p_j = softmax(f_j) member j.
    Needs no targets: it holds for any target distribution y.

    Args:
        logits: (M, N, C) member scores.
        weights: (M,) weights summing to 1; uniform if None.
        reduction: "mean" or "none".
    """
    f = as_tensor(logits)
    w = member_weights(f.shape[0], weights, f)
    log_q = torch.log_softmax(_weighted_mean(f, w), dim=-1)  # (N, C)
    log_p = torch.log_softmax(f, dim=-1)  # (M, N, C)
    kl = (log_q.exp() * (log_q - log_p)).sum(dim=-1)  # (M, N): KL(q̄ ‖ p_j)
    return _reduce(torch.einsum("m,mn->n", w, kl), reduction)


def prob_average_diversity(
    probs: ArrayLike, targets: ArrayLike, weights: ArrayLike | None = None, reduction: Reduction = "mean"
) -> torch.Tensor:
    """Σ_j w_j Σ_k y_k log(p̄_k / p_j,k): DIV for cross-entropy with probability averaging.

    Jeffares et al. (2023) Thm 4.3 (proof in App. C.3).  With one-hot targets only the true
    class k⋆ contributes: Σ_j w_j log(p̄_k⋆ / p_j,k⋆).

    Args:
        probs: (M, N, C) member probabilities.
        targets: (N,) int labels or (N, C) target distributions.
        weights: (M,) weights summing to 1; uniform if None.
        reduction: "mean" or "none".
    """
    p = as_tensor(probs)
    y = _target_distribution(targets, p)
    w = member_weights(p.shape[0], weights, p)
    log_ratio = safe_log(_weighted_mean(p, w)) - safe_log(p)  # (M, N, C): log p̄_k − log p_j,k
    return _reduce(torch.einsum("m,mn->n", w, (y * log_ratio).sum(dim=-1)), reduction)


# ------------------------------------------------- general twice-differentiable loss (Thm 4.5)

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _general_setup(preds: ArrayLike, targets: ArrayLike, weights):
    f = as_tensor(preds)
    if f.ndim != 3:
        raise ValueError("preds must be (M, N, D); add a trailing dimension for scalar outputs")
    y = as_tensor(targets, device=f.device)
    w = member_weights(f.shape[0], weights, f)
    f_bar = _weighted_mean(f, w)  # (N, D)
    return f, y, w, f_bar, f - f_bar  # last: displacements d_j = f_j − f̄, (M, N, D)


def _pairs(x: torch.Tensor, num_members: int) -> torch.Tensor:
    """Repeat a per-example tensor (N, ...) for every member: (M * N, ...)."""
    return x.expand(num_members, *x.shape).reshape(-1, *x.shape[1:])


def _curvature(loss_fn: LossFn, points: torch.Tensor, directions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """dᵀ H_L(x, y) d for every row, as the second derivative of t ↦ L(x + t d, y) at 0."""

    def one(x, d, y):
        slope = lambda z: torch.func.jvp(lambda u: loss_fn(u, y), (z,), (d,))[1]  # noqa: E731
        return torch.func.jvp(slope, (x,), (d,))[1]

    return torch.func.vmap(one)(points, directions, targets)


def _lagrange_form(loss_fn, f_bar, d, y, c) -> torch.Tensor:
    """½ d_jᵀ H_L(f̄ + c_j d_j, y) d_j for every member and example: (M, N)."""
    num_members, num_examples, _ = d.shape
    c = torch.as_tensor(c, dtype=d.dtype, device=d.device).expand(num_members, num_examples)
    points = f_bar + c[..., None] * d
    flat = _curvature(loss_fn, points.reshape(-1, d.shape[-1]), d.reshape(-1, d.shape[-1]), _pairs(y, num_members))
    return 0.5 * flat.reshape(num_members, num_examples)


def second_order_diversity(
    loss_fn: LossFn,
    preds: ArrayLike,
    targets: ArrayLike,
    weights: ArrayLike | None = None,
    c: float | torch.Tensor = 0.0,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Thm 4.5 of Jeffares et al. 2023: ½ Σ_j w_j (f_j − f̄)ᵀ H_L(f̄ + c_j (f_j − f̄), y) (f_j − f̄).

    The theorem states that DIV equals this for *some* c_j ∈ [0, 1]; with the
    points from :func:`lagrange_intermediate_points` the equality is exact.
    With ``c=0`` it is the second-order Taylor approximation of DIV around the
    ensemble prediction; for a quadratic loss (constant Hessian) every c is exact.

    Args:
        loss_fn: twice differentiable per-example loss ``loss_fn(f, y) -> scalar``
            for one output vector f of shape (D,) and that example's target; it
            is vectorised with ``torch.func.vmap``, so use tensor ops only
            (e.g. pass one-hot float targets rather than indexing with labels).
        preds: (M, N, D) member outputs.
        targets: (N, ...) targets, row n passed to ``loss_fn`` for example n.
        weights: (M,) weights summing to 1; uniform if None.
        c: scalar or (M, N) points in [0, 1] at which the Hessian is evaluated.
        reduction: "mean" or "none".
    """
    f, y, w, f_bar, d = _general_setup(preds, targets, weights)
    quadratic = _lagrange_form(loss_fn, f_bar, d, y, c)  # (M, N)
    return _reduce(torch.einsum("m,mn->n", w, quadratic), reduction)


def lagrange_intermediate_points(
    loss_fn: LossFn,
    preds: ArrayLike,
    targets: ArrayLike,
    weights: ArrayLike | None = None,
    grid_size: int = 101,
    iterations: int = 60,
) -> torch.Tensor:
    """The c_j ∈ [0, 1] of Jeffares et al. 2023, Thm 4.5, found numerically for every member and example.

    The proof (App. C.2) expands L(f_j) around f̄ to first order with a Lagrange
    remainder: L(f_j) = L(f̄) + ∇L(f̄)ᵀ d_j + ½ d_jᵀ H(f̄ + c_j d_j) d_j with
    d_j = f_j − f̄.  We compute the remainder R_j = L(f_j) − L(f̄) − ∇L(f̄)ᵀ d_j
    exactly, scan Q_j(c) = ½ d_jᵀ H(f̄ + c d_j) d_j on a grid of ``grid_size``
    points to bracket a root of Q_j − R_j, then bisect.  Members equal to the
    ensemble (d_j = 0), or losses whose Q_j is constant, get c_j = 0.

    Args:
        loss_fn, preds, targets, weights: as in :func:`second_order_diversity`.
        grid_size: grid points used to bracket each root.
        iterations: bisection steps (60 reach float64 resolution).

    Returns:
        (M, N) tensor of c_j.  Raises RuntimeError if a root is not bracketed
        (then increase ``grid_size``).
    """
    f, y, w, f_bar, d = _general_setup(preds, targets, weights)
    num_members, num_examples, dim = d.shape
    flat_bar, flat_d, flat_y = _pairs(f_bar, num_members), d.reshape(-1, dim), _pairs(y, num_members)

    def loss_and_slope(x, direction, target):  # L(x) and ∇L(x)ᵀ d
        return torch.func.jvp(lambda u: loss_fn(u, target), (x,), (direction,))

    at_bar, slope = torch.func.vmap(loss_and_slope)(flat_bar, flat_d, flat_y)
    at_member = torch.func.vmap(loss_fn)(f.reshape(-1, dim), flat_y)
    remainder = (at_member - at_bar - slope).reshape(num_members, num_examples)

    def gap(c: torch.Tensor) -> torch.Tensor:  # Q_j(c) − R_j
        return _lagrange_form(loss_fn, f_bar, d, y, c) - remainder

    grid = torch.linspace(0.0, 1.0, grid_size, dtype=d.dtype, device=d.device)
    gaps = torch.stack([gap(c) for c in grid])  # (G, M, N)
    scale = remainder.abs().clamp_min(1.0)
    exact = gaps.abs() <= 1e-12 * scale  # a grid point already solves it
    crossing = (gaps[:-1] * gaps[1:] <= 0) | exact[:-1]  # (G-1, M, N): bracket [grid[g], grid[g+1]]
    if not crossing.any(dim=0).all():
        raise RuntimeError("could not bracket every Lagrange point; increase grid_size")
    first = crossing.double().argmax(dim=0)  # first bracketing interval
    lo, hi = grid[first], grid[first + 1]
    lo_gap = torch.gather(gaps, 0, first[None]).squeeze(0)
    for _ in range(iterations):  # vectorised bisection on all (j, n) at once
        mid = (lo + hi) / 2
        mid_gap = gap(mid)
        keep_lo = (lo_gap * mid_gap) > 0  # root is in [mid, hi]
        lo, lo_gap = torch.where(keep_lo, mid, lo), torch.where(keep_lo, mid_gap, lo_gap)
        hi = torch.where(keep_lo, hi, mid)
    c = (lo + hi) / 2
    return torch.where(torch.gather(exact, 0, first[None]).squeeze(0), grid[first], c)


# ---------------------------------------------------- learner collusion diagnostics (§6.1)


def optimal_debiasing(preds: ArrayLike, weights: ArrayLike | None = None) -> torch.Tensor:
    """Per-member constant bias b_j that removes the most diversity (Jeffares et al. 2023, §6.1, App. C.1).

    b_j = (1/N) Σ_i (f_j(x_i) − f̄(x_i)): the minimiser of the (squared-error)
    diversity over constant shifts that leave the ensemble unchanged
    (Σ_j w_j b_j = 0; App. C.1 proves it with uniform weights, and the same
    Lagrange argument gives the same b_j for any weights summing to one).

    Args:
        preds: (M, N) or (M, N, D) member outputs.
        weights: (M,) weights summing to 1; uniform if None.

    Returns:
        (M, D) biases ((M, 1) for scalar outputs).
    """
    f = _regression_preds(preds)
    w = member_weights(f.shape[0], weights, f)
    return (f - _weighted_mean(f, w)).mean(dim=1)


def debias_predictions(preds: ArrayLike, weights: ArrayLike | None = None) -> torch.Tensor:
    """Members' outputs with their optimal bias removed: f_j − b_j (Jeffares et al. 2023, §6.1).

    Returns a tensor shaped like ``preds``; the ensemble prediction is unchanged.
    """
    f = as_tensor(preds)
    debiased = _regression_preds(f) - optimal_debiasing(f, weights)[:, None, :]
    return debiased.reshape(f.shape)


def debiased_diversity(preds: ArrayLike, weights: ArrayLike | None = None) -> torch.Tensor:
    """Squared-error diversity left after optimal debiasing (Jeffares et al. 2023, §6.1, Fig. 3).

    The share of diversity explained by constant biases (Fig. 3) is
    ``1 - debiased_diversity(f) / mse_ambiguity(f)``.

    Args:
        preds: (M, N) or (M, N, D) member outputs.
        weights: (M,) weights summing to 1; uniform if None.
    """
    return mse_ambiguity(debias_predictions(preds, weights), weights)


def learner_dropout_error_increase(
    preds: ArrayLike,
    targets: ArrayLike,
    p: float,
    loss: Loss = "mse",
    repeats: int = 100,
    seed: SeedLike = 0,
    relative: bool = False,
) -> float:
    """Mean increase of the ensemble loss when a fraction p of members is dropped at test time.

    Jeffares et al. (2023) §6.1 "Learner codependence", Fig. 4 and App. B: drop a random
    fraction p ∈ {0.2, 0.4, 0.6} of the base learners, re-average the rest
    (uniform weights), repeat 100 times and report the mean increase in test
    ERR.  round(p·M) members are dropped (at most M − 1).

    Args:
        preds, targets, loss: as in :func:`diversity_decomposition`.
        p: fraction of members dropped.
        repeats: random repetitions (100 in the paper).
        seed: int seed or ``torch.Generator``.
        relative: return (ERR_dropped − ERR) / ERR instead of the difference
            (Fig. 4 plots the relative increase, App. B reports the increase).

    Returns:
        Mean (relative) increase of ERR over the repeats.
    """
    preds = as_tensor(preds)
    num_members = preds.shape[0]
    num_dropped = math.floor(p * num_members + 0.5)
    if not 0 <= num_dropped < num_members:
        raise ValueError(f"dropping {num_dropped} of {num_members} members leaves none")
    full = ensemble_loss(preds, targets, loss)
    generator = make_generator(seed)
    increases = []
    for _ in range(repeats):
        kept = torch.randperm(num_members, generator=generator)[num_dropped:].to(preds.device)
        increases.append(ensemble_loss(preds.index_select(0, kept), targets, loss) - full)
    increase = torch.stack(increases).mean()
    return float(increase / full) if relative else float(increase)


# -------------------------------------------------------- gradient-adjusted targets (App. D)


def gradient_adjusted_beta(alpha: float) -> float:
    """β equivalent to a gradient-adjusted-target step α: β = 1 − 1/(1 + α)² (Jeffares et al. 2023, Thm D.1).

    Independent training on targets ỹ = y − α (f̄ − y) minimises
    (1 + α)² · (ERR-bar − β · DIV), the augmented objective L_β of eq. 2.
    α = 1 gives β = 0.75; β → 1 (joint training) as α → ∞ (Fig. 9).
    """
    return 1.0 - 1.0 / (1.0 + alpha) ** 2


def leave_one_out_gradient_adjusted_beta(alpha: float, num_members: int) -> float:
    """β (called γ) for the M − 1 gradient-adjusted targets of Jeffares et al. 2023, Thm D.3 (Fig. 8).

    With ỹ_i = y − α/(M−1) Σ_{j≠i} (f_j − y) the objective equals
    (1 + α)² (ERR-bar − γ DIV) with
    γ = α/(α+1)² · M((α+2)M − 2(α+1)) / (M−1)²,
    which tends to :func:`gradient_adjusted_beta` as M → ∞.
    """
    m = num_members
    if m < 2:
        raise ValueError("the leave-one-out variant needs at least two members")
    return alpha / (alpha + 1) ** 2 * m * ((alpha + 2) * m - 2 * (alpha + 1)) / (m - 1) ** 2


def gradient_adjusted_target_loss(
    preds: ArrayLike,
    targets: ArrayLike,
    alpha: float,
    leave_one_out: bool = False,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Independent squared error against gradient-adjusted targets (Jeffares et al. 2023, App. D).

    * eq. 8:  (1/M) Σ_i ‖f_i − (y − α (f̄ − y))‖², the target moved against the
      gradient of ½‖f̄ − y‖²;
    * eq. 10 (``leave_one_out=True``): the step uses the other members only,
      (1/M) Σ_i ‖f_i − (y − α/(M−1) Σ_{j≠i} (f_j − y))‖².

    Uniform weights, as in the paper.  Thm D.1 / D.3: this equals
    (1 + α)² (ERR-bar − β DIV) with β from :func:`gradient_adjusted_beta`
    (resp. :func:`leave_one_out_gradient_adjusted_beta`).

    Args:
        preds: (M, N) or (M, N, D) member outputs.
        targets: (N,) or (N, D) regression targets.
        alpha: gradient step size α >= 0.
        leave_one_out: use the M − 1 variant.
        reduction: "mean" or "none".
    """
    f = _regression_preds(preds)
    y = _regression_targets(targets, f)
    num_members = f.shape[0]
    residual = f - y  # (M, N, D)
    if leave_one_out:
        others = (residual.sum(dim=0, keepdim=True) - residual) / (num_members - 1)
        adjusted = y - alpha * others  # one target per member
    else:
        adjusted = y - alpha * residual.mean(dim=0)
    per_example = ((f - adjusted) ** 2).sum(dim=-1).mean(dim=0)
    return _reduce(per_example, reduction)
