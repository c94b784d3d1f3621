"""Weight-space and function-space views of the loss landscape.

* The Fort et al. (2019) reproduction (report reproducing Fort, Hu & Lakshminarayanan 2019, "Deep
  Ensembles: A Loss Landscape Perspective"): cosine similarity between the
  flattened weights of checkpoints / independently initialised runs, and t-SNE
  of the runs' predictions along training ("function-space trajectories").
* The coupling paper §3 / Fig. 3: the error
  barrier on the linear path between two trained children (linear mode
  connectivity, Frankle et al. 2020).

BatchNorm along the path.  Interpolating two networks' weights does not
interpolate their activation statistics, so the interpolated BatchNorm running
means/variances are not the statistics of the interpolated network and its
eval-mode error would be wrong (typically far too high).  As in the literature
(Frankle et al. 2020; Jordan et al. 2023, "REPAIR"), :func:`interpolation_curve`
re-estimates the running statistics of every BatchNorm layer on training
batches at each α (:func:`recompute_batchnorm_statistics`) before evaluating.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Iterable, Literal, Mapping, Sequence, Union

import numpy as np
import torch
from torch import nn

from ._utils import ArrayLike, as_tensor

Weights = Union[nn.Module, Mapping[str, torch.Tensor], torch.Tensor]
_BN_BUFFERS = ("running_mean", "running_var")


# ------------------------------------------------------------------ weight similarity


def flatten_weights(weights: Weights) -> torch.Tensor:
    """All weights of a model as one flat vector.

    * ``nn.Module``: its parameters (trainable weights and biases), in
      ``named_parameters`` order; buffers such as BatchNorm running statistics
      are not weights and are left out.
    * state dict: its floating-point tensors except BatchNorm running
      statistics (keys ending in ``running_mean`` / ``running_var``).
    * tensor: flattened as is.
    """
    if isinstance(weights, nn.Module):
        tensors = [p.detach() for p in weights.parameters()]
    elif isinstance(weights, Mapping):
        tensors = [
            t.detach() for key, t in weights.items()
            if t.is_floating_point() and not key.endswith(_BN_BUFFERS)
        ]
    else:
        return as_tensor(weights).detach().flatten()
    return torch.cat([t.flatten() for t in tensors])


def weight_cosine_similarity(weights_a: Weights, weights_b: Weights) -> float:
    """Cosine similarity ⟨θ_a, θ_b⟩ / (‖θ_a‖ ‖θ_b‖) of two flattened weight vectors (Fort et al. 2019).

    Args:
        weights_a, weights_b: models, state dicts or flat tensors of the same architecture.
    """
    a = flatten_weights(weights_a).double()
    b = flatten_weights(weights_b).double().to(a.device)
    if a.shape != b.shape:
        raise ValueError(f"weight vectors differ in size: {a.numel()} vs {b.numel()}")
    return float(torch.dot(a, b) / (a.norm() * b.norm()))


def pairwise_weight_cosine_similarity(models: Sequence[Weights]) -> torch.Tensor:
    """(M, M) cosine similarities between the weights of M models or checkpoints (Fort et al. 2019 heat maps)."""
    flat = torch.stack([flatten_weights(m).double().cpu() for m in models])
    flat = flat / flat.norm(dim=1, keepdim=True)
    return flat @ flat.T


# --------------------------------------------------------------- linear interpolation


def interpolate_state_dicts(
    state_a: Mapping[str, torch.Tensor], state_b: Mapping[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """θ(α) = (1 − α) θ_a + α θ_b for every floating-point entry.

    Integer entries (BatchNorm's ``num_batches_tracked``) are copied from
    ``state_a``.  Written as (1 − α) a + α b, not a + α (b − a), so that
    α = 0 and α = 1 return the endpoints bit for bit.
    """
    if state_a.keys() != state_b.keys():
        raise ValueError("state dicts have different keys")
    return {
        key: (1 - alpha) * a + alpha * state_b[key].to(a.device) if a.is_floating_point() else a.clone()
        for key, a in state_a.items()
    }


def has_batchnorm(model: nn.Module) -> bool:
    """Whether the model contains any BatchNorm layer."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def recompute_batchnorm_statistics(model: nn.Module, batches: Iterable) -> nn.Module:
    """Re-estimate every BatchNorm layer's running mean/variance from ``batches``, in place.

    The running statistics are reset and replaced by the plain average of the
    per-batch statistics over all batches (momentum=None).  Only the BatchNorm
    layers run in training mode during the pass: dropout and other layers stay
    in eval mode so the statistics match what the eval-mode network sees.
    Training modes and momenta are restored afterwards.  Equivalent to
    ``torch.optim.swa_utils.update_bn`` except for that eval-mode detail.

    Args:
        model: the network (modified in place and returned).
        batches: iterable of input tensors, or of (input, target, ...) tuples
            (e.g. a training DataLoader); inputs are moved to the model's device.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return model
    modes = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in norms}
    device = next(model.parameters()).device
    model.eval()
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average over the batches
        norm.train()
    try:
        for batch in batches:
            inputs = batch[0] if isinstance(batch, (list, tuple)) else batch
            model(inputs.to(device))
    finally:
        for module, training in modes.items():
            module.train(training)
        for norm, momentum in momenta.items():
            norm.momentum = momentum
    return model


def interpolate_models(
    model_a: nn.Module, model_b: nn.Module, alpha: float, bn_batches: Iterable | None = None
) -> nn.Module:
    """A copy of ``model_a`` with weights (1 − α) θ_a + α θ_b.

    Buffers are interpolated too; pass ``bn_batches`` (training inputs) to then
    recompute the BatchNorm statistics for the interpolated weights, which is
    what a faithful evaluation along the path needs (see module docstring).

    Args:
        model_a, model_b: two models of the same architecture (unchanged).
        alpha: interpolation coefficient; 0 gives model_a, 1 gives model_b.
        bn_batches: optional iterable of training batches for BatchNorm.
    """
    model = copy.deepcopy(model_a)
    model.load_state_dict(interpolate_state_dicts(model_a.state_dict(), model_b.state_dict(), alpha))
    if bn_batches is not None:
        recompute_batchnorm_statistics(model, bn_batches)
    return model


@dataclass
class InterpolationCurve:
    """Values of an evaluation function along the linear path between two models."""

    alphas: np.ndarray
    values: np.ndarray


def interpolation_curve(
    model_a: nn.Module,
    model_b: nn.Module,
    evaluate: Callable[[nn.Module], float],
    alphas: ArrayLike | int = 11,
    bn_batches: Iterable | None = None,
) -> InterpolationCurve:
    """Evaluate the models on the linear path θ(α) = (1 − α) θ_a + α θ_b.

    Args:
        model_a, model_b: endpoints (same architecture; not modified).
        evaluate: maps a model to a number, e.g. its test error in [0, 1].
        alphas: the α values, or their number for an even grid on [0, 1].
        bn_batches: training batches used to recompute BatchNorm statistics at
            every α (including the endpoints, so the whole path is evaluated the
            same way).  Required when the models contain BatchNorm; it must be
            re-iterable (a list or a DataLoader).

    Returns:
        :class:`InterpolationCurve` with the α grid and the values.
    """
    if has_batchnorm(model_a) and bn_batches is None:
        raise ValueError(
            "model has BatchNorm: pass bn_batches (training inputs) so that the running statistics "
            "are recomputed at each alpha; interpolated running statistics are wrong"
        )
    grid = np.linspace(0.0, 1.0, alphas) if isinstance(alphas, int) else np.asarray(alphas, dtype=np.float64)
    values = [float(evaluate(interpolate_models(model_a, model_b, float(a), bn_batches))) for a in grid]
    return InterpolationCurve(alphas=grid, values=np.asarray(values))


def error_barrier(
    alphas: ArrayLike, errors: ArrayLike, baseline: Literal["mean", "linear"] = "mean"
) -> float:
    """Height of the error barrier on a linear path (the coupling paper, Fig. 3).

    * ``baseline="mean"`` (Frankle et al. 2020, "instability"):
      max_α E(α) − ½ (E(0) + E(1));
    * ``baseline="linear"`` (Entezari et al. 2022):
      max_α [E(α) − ((1 − α) E(0) + α E(1))].

    Both are >= 0 because the endpoints lie on the path; 0 means no barrier.

    Args:
        alphas: (K,) increasing α values with alphas[0] = 0 and alphas[-1] = 1.
        errors: (K,) errors along the path, e.g. ``interpolation_curve(...).values``.
        baseline: "mean" or "linear".
    """
    alphas = np.asarray(alphas, dtype=np.float64)
    errors = np.asarray(errors, dtype=np.float64)
    if alphas.shape != errors.shape or alphas[0] != 0.0 or alphas[-1] != 1.0:
        raise ValueError("alphas and errors must align, with alphas running from 0 to 1")
    if baseline == "mean":
        return float(errors.max() - 0.5 * (errors[0] + errors[-1]))
    if baseline == "linear":
        return float(np.max(errors - ((1 - alphas) * errors[0] + alphas * errors[-1])))
    raise ValueError(f"baseline must be 'mean' or 'linear', got {baseline!r}")


# ------------------------------------------------------------ function-space t-SNE


def function_space_points(trajectory_probs: ArrayLike) -> np.ndarray:
    """Flatten function-space trajectories into t-SNE input rows (Fort et al. 2019 "Different Initializations").

    Each checkpoint is one point: its predictions on all test examples,
    concatenated.

    Args:
        trajectory_probs: (R, E, N, C) softmax outputs of R runs at E checkpoints.

    Returns:
        (R * E, N * C) float64 array; row r * E + e is run r at checkpoint e.
    """
    preds = as_tensor(trajectory_probs)
    if preds.ndim != 4:
        raise ValueError("trajectory_probs must have shape (runs, checkpoints, examples, classes)")
    runs, checkpoints = preds.shape[:2]
    return preds.reshape(runs * checkpoints, -1).detach().cpu().double().numpy()


def tsne_embedding(
    trajectory_probs: ArrayLike,
    n_components: int = 2,
    perplexity: float = 30.0,
    seed: int = 0,
    **tsne_kwargs,
) -> np.ndarray:
    """t-SNE of function-space trajectories with openTSNE (Fort et al. 2019).

    All runs and checkpoints are embedded together, since they live in the same
    function space.  The perplexity is lowered to (points − 1) / 3 when there
    are too few points for the requested value.

    Args:
        trajectory_probs: (R, E, N, C) softmax outputs of R runs at E checkpoints.
        n_components: embedding dimension.
        perplexity: t-SNE perplexity.
        seed: random state of openTSNE, for reproducible embeddings.
        **tsne_kwargs: passed to ``openTSNE.TSNE``.

    Returns:
        (R, E, n_components) embedding coordinates.
    """
    from openTSNE import TSNE  # imported lazily: only this function needs it

    points = function_space_points(trajectory_probs)
    runs, checkpoints = np.shape(trajectory_probs)[:2]
    perplexity = min(perplexity, (points.shape[0] - 1) / 3)
    embedding = TSNE(n_components=n_components, perplexity=perplexity, random_state=seed, **tsne_kwargs).fit(points)
    return np.asarray(embedding).reshape(runs, checkpoints, n_components)
