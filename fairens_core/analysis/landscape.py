"""Part IV analyses (Fort et al. 2019, a report on Fort, Hu & Lakshminarayanan 2019, "Deep Ensembles:
A Loss Landscape Perspective"): how far apart are the solutions that ensembles average?

Three families of helpers, each turning run records into tidy `pandas.DataFrame`s:

* **similarity** (report "Dissecting the Weight Space"): cosine similarity of flattened
  weights and prediction disagreement between checkpoints of one run and between the runs of
  independent initialisations;
* **subspace sampling** (report "Perturbating an already optimized solution"; Fort et al. §4):
  ensembles drawn around one trained solution θ — isotropic Gaussian perturbation, MC dropout,
  a diagonal Gaussian and a low-rank Gaussian fitted to SWA-style iterates — evaluated by
  rebuilding members from flat weight vectors;
* **ensembles and diversity** (report "Accuracy as a Function of Ensemble Size"; Fort et al.
  Fig. 5-6): accuracy vs ensemble size, and the diversity-vs-accuracy plane, where diversity
  is the disagreement with the reference solution divided by the sample's own error rate.

Shapes: M members, E checkpoints (end of each epoch), P parameters, N test examples, C classes,
S sampled functions.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from .. import metrics as M
from ..config import TrainConfig
from ..data import load_dataset, prepare_inputs
from ..ensemble import init_members
from ..models import build_model
from . import stats

SUBSPACE_METHODS = ("gaussian", "mc_dropout", "diagonal", "low_rank")


# ------------------------------------------------------------------ similarity


def similarity_frame(weights: torch.Tensor, probs: torch.Tensor, labels) -> pd.DataFrame:
    """Pairwise weight cosine similarity and prediction disagreement of K models.

    Args:
        weights: (K, P) flattened weights.
        probs: (K, N, C) probabilities (or logits) of the same K models on N examples.
        labels: K names of the models (epochs, member indices), used in columns a and b.

    Returns:
        K × K rows with columns a, b, cosine (⟨θ_a, θ_b⟩ / ‖θ_a‖‖θ_b‖) and disagreement
        (fraction of the N examples whose predicted classes differ).
    """
    weights, probs = torch.as_tensor(weights), torch.as_tensor(probs)
    labels = list(labels)
    if not (weights.shape[0] == probs.shape[0] == len(labels)):
        raise ValueError(f"weights {tuple(weights.shape)}, probs {tuple(probs.shape)} and {len(labels)} labels "
                         "must describe the same number of models")
    cosine = M.pairwise_weight_cosine_similarity(list(weights)).numpy()
    disagreement = M.pairwise_disagreement(probs.float()).numpy()
    k = len(labels)
    return pd.DataFrame({"a": np.repeat(labels, k), "b": np.tile(labels, k),
                         "cosine": cosine.ravel(), "disagreement": disagreement.ravel()})


def _need_trajectories(record) -> None:
    if record.weight_snapshots is None or record.test_probs_trajectory is None:
        raise ValueError(f"record {record.key} lacks per-epoch weights or predictions: train with "
                         "snapshot_weights=True and track_predictions != 0")


def subspace_plan(cfg: TrainConfig, member: int, samples: int, iterate_fraction: float) -> int:
    """Check the subspace chapter's knobs before anything trains; returns `iterate_from`, the first
    epoch (1-based) of the SWA-style iterates the Gaussians are fitted to (at least 2 of them).

    Raises ValueError naming the knob: member in [0, members), iterate_fraction in [0, 1),
    samples ≥ 2, and epochs ≥ 2.
    """
    if not 0 <= member < cfg.members:
        raise ValueError(f"member={member}: must be in [0, members={cfg.members})")
    if not 0 <= iterate_fraction < 1:
        raise ValueError(f"iterate_fraction={iterate_fraction}: must be in [0, 1)")
    if samples < 2:
        raise ValueError(f"samples={samples}: at least 2 functions per sampler setting")
    iterate_from = min(int(cfg.epochs * iterate_fraction) + 1, cfg.epochs - 1)
    if iterate_from < 1:
        raise ValueError(f"epochs={cfg.epochs}: the Gaussians need at least 2 checkpoints, train for 2 epochs or more")
    return iterate_from


def checkpoint_similarity(record, member: int = 0, initial=None) -> pd.DataFrame:
    """Epoch × epoch similarity of the checkpoints of one run (report: "Snapshots").

    Uses ``record.weight_snapshots[member]`` (E, P) and ``record.test_probs_trajectory[member]``
    (E, n, C). ``initial``: optionally the (weights (M, P), probs (M, n, C)) of `initial_checkpoint`,
    added as epoch 0. Returns `similarity_frame` rows with a, b = epochs (0 or 1)..E and a column member.
    """
    _need_trajectories(record)
    if not 0 <= member < record.members:
        raise ValueError(f"member={member}: must be in [0, {record.members})")
    weights, probs = record.weight_snapshots[member].float(), record.test_probs_trajectory[member].float()
    first = 1
    if initial is not None:
        weights = torch.cat([initial[0][member : member + 1].float(), weights])
        probs = torch.cat([initial[1][member : member + 1].float(), probs])
        first = 0
    out = similarity_frame(weights, probs, range(first, record.weight_snapshots.shape[1] + 1))
    return out.assign(member=member)


def initial_checkpoint(record) -> tuple[torch.Tensor, torch.Tensor]:
    """Every member at epoch 0, before its first step: (weights (M, P), probs (M, n, C)).

    The weights are rebuilt from each member's init seed, as training drew them (members of
    independent runs only: a spawned child starts from its parent); probs are their softmax
    outputs on the n test examples the record tracks per epoch.
    """
    _need_trajectories(record)
    cfg = TrainConfig.from_dict(record.config)
    if cfg.spawn_step is not None:
        raise ValueError(f"record {record.key} spawns its members from a parent: they have no init of their own")
    shape, classes = tuple(record.meta["input_shape"]), record.meta["num_classes"]
    models = init_members(cfg, shape, classes, range(record.members))
    weights = torch.stack([torch.nn.utils.parameters_to_vector(model.parameters()) for model in models])
    x, _ = test_inputs(record)
    x = x[: record.test_probs_trajectory.shape[2]]
    with torch.no_grad():
        probs = torch.stack([model.eval()(x).softmax(-1) for model in models])
    return weights.detach(), probs


def cosine_to_initial(record, initial) -> np.ndarray:
    """Per member: cosine similarity between its last checkpoint and its own initial weights
    (``initial``: the pair returned by `initial_checkpoint`)."""
    _need_trajectories(record)
    final = record.weight_snapshots[:, -1].float()
    return torch.nn.functional.cosine_similarity(initial[0].float(), final, dim=1).numpy()


def init_similarity(record, epoch: int | None = None) -> pd.DataFrame:
    """Member × member similarity of independently initialised runs at one epoch (report: "Different Inits").

    ``epoch`` counts from 1 (None: the last). Returns `similarity_frame` rows with a, b = member indices.
    """
    _need_trajectories(record)
    n_epochs = record.weight_snapshots.shape[1]
    epoch = n_epochs if epoch is None else epoch
    if not 1 <= epoch <= n_epochs:
        raise ValueError(f"epoch={epoch}: must be in [1, {n_epochs}]")
    out = similarity_frame(record.weight_snapshots[:, epoch - 1], record.test_probs_trajectory[:, epoch - 1],
                           range(record.members))
    return out.assign(epoch=epoch)


def mean_pairs(frame: pd.DataFrame, values=("cosine", "disagreement"), min_label=None) -> dict[str, float]:
    """Mean of `values` over the pairs a ≠ b of a `similarity_frame` (optionally only a, b ≥ min_label)."""
    rows = frame[frame.a != frame.b]
    if min_label is not None:
        rows = rows[(rows.a >= min_label) & (rows.b >= min_label)]
    if rows.empty:
        raise ValueError("no pairs left: need at least two models (checkpoints) to compare")
    return {v: float(rows[v].mean()) for v in values}


def per_member_similarity(record, late_from: int) -> pd.DataFrame:
    """Each run's within-run and across-init similarity, for standard errors over the runs (seeds).

    One row per member m: ``late_cosine`` and ``late_disagreement`` (mean over pairs of m's own
    checkpoints from epoch ``late_from`` on), ``adjacent_disagreement`` (m's last two checkpoints;
    NaN with one epoch), ``init_cosine`` and ``init_disagreement`` (mean over m's pairs with the
    other runs at the final epoch) and ``init_disagreement_min`` (its least-disagreeing other run).
    Rows share runs in their across-init pairs, so the SE over rows is an approximation.
    """
    across = init_similarity(record)
    across = across[across.a != across.b]
    rows = []
    for m in range(record.members):
        within = checkpoint_similarity(record, m)
        late = mean_pairs(within, min_label=late_from)
        last = int(within.a.max())
        adjacent = within[(within.a == last - 1) & (within.b == last)].disagreement
        mine = across[across.a == m]
        rows.append({"member": m, "late_cosine": late["cosine"], "late_disagreement": late["disagreement"],
                     "adjacent_disagreement": float(adjacent.iloc[0]) if len(adjacent) else np.nan,
                     "init_cosine": float(mine.cosine.mean()), "init_disagreement": float(mine.disagreement.mean()),
                     "init_disagreement_min": float(mine.disagreement.min())})
    return pd.DataFrame(rows)


def mean_se(values, min_count: int = 2) -> tuple[float, float]:
    """(mean, standard error) of the finite values (`stats.mean_se` without the count); the SE is
    NaN below ``min_count`` values."""
    return stats.mean_se(values, min_count)[:2]


# ------------------------------------------------------------------ rebuilding members from weights


def template_model(record) -> torch.nn.Module:
    """A freshly built model of the record's architecture (weights to be overwritten), in eval mode."""
    cfg = TrainConfig.from_dict(record.config)
    model = build_model(cfg.model, tuple(record.meta["input_shape"]), record.meta["num_classes"],
                        width=cfg.width, dropout=cfg.dropout)
    return model.eval()


def parameter_sizes(record) -> list[int]:
    """Number of entries of each parameter tensor, in the order of the flattened weights."""
    return [p.numel() for p in template_model(record).parameters()]


def final_weights(record) -> torch.Tensor:
    """(M, P) flattened final weights, in the order of `weight_snapshots` (registration order)."""
    if record.weights is None:
        raise ValueError(f"record {record.key} has no weights: train with save_weights=True")
    names = [n for n, _ in template_model(record).named_parameters()]
    return torch.cat([record.weights[n].flatten(1).float() for n in names], dim=1)


def test_inputs(record) -> tuple[torch.Tensor, torch.Tensor]:
    """(x, y): the record's test inputs, as the model sees them, and labels (N,)."""

    cfg = TrainConfig.from_dict(record.config)
    ds = load_dataset(cfg.dataset, cfg.data_root, **cfg.dataset_options)
    x = prepare_inputs(ds.x_test, record.meta.get("mean"), record.meta.get("std"), torch.device("cpu"))
    return x, ds.y_test


@torch.no_grad()
def logits_from_weights(record, flat_weights: torch.Tensor, x: torch.Tensor, member: int = 0) -> torch.Tensor:
    """Logits of the models whose flattened weights are the rows of ``flat_weights``.

    Args:
        record: gives the architecture.
        flat_weights: (S, P) parameters in `weight_snapshots` order.
        x: (N, ...) prepared inputs (see `test_inputs`).
        member: whose buffers (BatchNorm running statistics) the models keep, when the record has
            final weights; cnn1d and mlp have none. The statistics are not re-estimated for the new
            parameters.

    Returns:
        (S, N, C) float32 logits, each model in eval mode.
    """
    model = template_model(record)
    if record.weights is not None:
        model.load_state_dict({k: v[member] for k, v in record.weights.items()})
    size = sum(parameter_sizes(record))
    flat_weights = torch.as_tensor(flat_weights, dtype=torch.float32)
    if flat_weights.ndim != 2 or flat_weights.shape[1] != size:
        raise ValueError(f"flat_weights must be (S, {size}); got {tuple(flat_weights.shape)}")
    out = []
    for theta in flat_weights:
        torch.nn.utils.vector_to_parameters(theta, model.parameters())
        out.append(model(x))
    return torch.stack(out)


# ------------------------------------------------------------------ subspace samplers


def gaussian_perturbation(center: torch.Tensor, sizes, scale: float, samples: int, seed: int = 0) -> torch.Tensor:
    """Isotropic Gaussian samples around one solution (Fort et al. §4, "random subspace").

    θ_s = θ + scale · rms(θ_t) · ε, ε ~ N(0, I), where rms(θ_t) is the root mean square of the
    parameter tensor t an entry belongs to: a relative noise level, so that biases and large
    weight matrices are perturbed in proportion to their own size.

    Args:
        center: (P,) flattened solution θ.
        sizes: entries per parameter tensor (sum P), see `parameter_sizes`.
        scale: relative noise level (≥ 0; 0 returns copies of θ).
        samples: S.

    Returns:
        (S, P) samples.
    """
    center = torch.as_tensor(center, dtype=torch.float32)
    if sum(sizes) != center.numel():
        raise ValueError(f"sizes sum to {sum(sizes)} but center has {center.numel()} entries")
    if scale < 0:
        raise ValueError(f"scale={scale}: must be >= 0")
    rms = torch.cat([c.pow(2).mean().sqrt().expand(n) for c, n in zip(center.split(list(sizes)), sizes)])
    noise = torch.randn(samples, center.numel(), generator=torch.Generator().manual_seed(seed))
    return center + scale * rms * noise


def diagonal_gaussian(iterates: torch.Tensor, scale: float, samples: int, seed: int = 0) -> torch.Tensor:
    """Samples of the diagonal Gaussian fitted to SWA-style iterates (Fort et al. §4, SWAG-diagonal).

    Mean μ = average of the T iterates (the SWA solution), variance σ² = their per-coordinate
    (population) variance; θ_s = μ + scale · σ ⊙ ε, ε ~ N(0, I).

    Args:
        iterates: (T, P) flattened weights collected along training, T ≥ 2.
        scale: multiplies the standard deviation (1: the fitted Gaussian).

    Returns:
        (S, P) samples.
    """
    iterates = torch.as_tensor(iterates, dtype=torch.float32)
    if iterates.ndim != 2 or iterates.shape[0] < 2:
        raise ValueError("iterates must be (T, P) with T >= 2")
    mean, std = iterates.mean(0), iterates.std(0, unbiased=False)
    noise = torch.randn(samples, iterates.shape[1], generator=torch.Generator().manual_seed(seed))
    return mean + scale * std * noise


def low_rank_gaussian(iterates: torch.Tensor, rank: int, scale: float, samples: int, seed: int = 0) -> torch.Tensor:
    """Samples of a low-rank Gaussian fitted to SWA-style iterates (Fort et al. §4, PCA subspace).

    With D = iterates − μ (T, P) and its SVD D = U Σ Vᵀ, the covariance DᵀD / T is kept on its
    top `rank` principal directions: θ_s = μ + scale · Σ_k z_k (σ_k / √T) v_k, z ~ N(0, I_rank).

    Args:
        iterates: (T, P) flattened weights, T ≥ 2.
        rank: number of principal directions (1 ≤ rank ≤ T − 1).
        scale: multiplies the standard deviation along each direction.

    Returns:
        (S, P) samples; they lie in μ + span(v_1..v_rank).
    """
    iterates = torch.as_tensor(iterates, dtype=torch.float64)
    if iterates.ndim != 2 or iterates.shape[0] < 2:
        raise ValueError("iterates must be (T, P) with T >= 2")
    t = iterates.shape[0]
    if not 1 <= rank <= t - 1:
        raise ValueError(f"rank={rank}: must be in [1, {t - 1}] for {t} iterates")
    mean = iterates.mean(0)
    _, sigma, vt = torch.linalg.svd(iterates - mean, full_matrices=False)
    z = torch.randn(samples, rank, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return (mean + scale * (z * sigma[:rank] / t ** 0.5) @ vt[:rank]).float()


@torch.no_grad()
def mc_dropout_logits(record, x: torch.Tensor, samples: int, seed: int = 0, member: int = 0) -> torch.Tensor:
    """(S, N, C) logits of S stochastic forward passes with dropout on (Gal & Ghahramani 2016; Fort et al. §4).

    The record must be trained with dropout > 0; only dropout layers are switched to training mode.
    """
    cfg = TrainConfig.from_dict(record.config)
    if not cfg.dropout:
        raise ValueError(f"record {record.key} was trained without dropout: MC dropout needs dropout > 0")
    model = record.models()[member]
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.train()
    torch.manual_seed(seed)  # the dropout masks
    return torch.stack([model(x) for _ in range(samples)])


def sample_subspace(record, method: str, scale: float, samples: int, x: torch.Tensor, seed: int = 0,
                    member: int = 0, iterate_from: int = 1, rank: int = 2) -> torch.Tensor:
    """(S, N, C) logits of functions sampled around member `member` of `record`.

    method: "gaussian" (around its final weights), "diagonal" / "low_rank" (fitted to its weight
    snapshots from epoch `iterate_from` on), "mc_dropout" (`scale` is ignored: the record's
    dropout rate sets the noise). See the samplers above.
    """
    if method not in SUBSPACE_METHODS:
        raise ValueError(f"method={method!r}: choose one of {list(SUBSPACE_METHODS)}")
    if method == "mc_dropout":
        return mc_dropout_logits(record, x, samples, seed, member)
    if method == "gaussian":
        flat = gaussian_perturbation(final_weights(record)[member], parameter_sizes(record), scale, samples, seed)
    else:
        if record.weight_snapshots is None:
            raise ValueError(f"method={method!r} needs weight snapshots: train with snapshot_weights=True")
        iterates = record.weight_snapshots[member, iterate_from - 1:]
        if method == "diagonal":
            flat = diagonal_gaussian(iterates, scale, samples, seed)
        else:
            flat = low_rank_gaussian(iterates, min(rank, iterates.shape[0] - 1), scale, samples, seed)
    return logits_from_weights(record, flat, x, member)


# ------------------------------------------------------------------ ensembles and diversity


def function_points(logits: torch.Tensor, reference: torch.Tensor, y: torch.Tensor, **labels) -> pd.DataFrame:
    """One row per sampled function on the diversity-vs-accuracy plane (Fort et al. Fig. 5-6).

    Args:
        logits: (S, N, C) scores of S functions.
        reference: (N, C) scores of the reference solution.
        y: (N,) labels.
        **labels: constant columns (method, scale, ...).

    Returns:
        Columns sample, accuracy, disagreement (fraction of examples whose predicted class differs
        from the reference's), normalised_disagreement = disagreement / (1 − accuracy), the
        sample's own error rate (NaN for an error-free sample), plus `labels`.
    """
    pred = torch.as_tensor(logits).argmax(-1)
    ref = torch.as_tensor(reference).argmax(-1)
    acc = (pred == y).double().mean(1).numpy()
    dis = (pred != ref).double().mean(1).numpy()
    err = 1 - acc
    norm = np.divide(dis, err, out=np.full_like(dis, np.nan), where=err > 0)
    return pd.DataFrame({"sample": np.arange(len(acc)), "accuracy": acc, "disagreement": dis,
                         "normalised_disagreement": norm, **labels})


def ensemble_accuracy_curve(logits: torch.Tensor, y: torch.Tensor, sizes=None, draws: int = 20, seed: int = 0,
                            **labels) -> pd.DataFrame:
    """Accuracy of probability-averaged sub-ensembles vs their size (report "Accuracy as a Function of
    Ensemble Size"; sampling of Ko et al. 2023, App. A.1: `draws` random subsets per size).

    Args:
        logits: (S, N, C) scores of a pool of S functions.
        y: (N,) labels.
        sizes: ensemble sizes (default 1..S).

    Returns:
        Columns size, accuracy (mean over draws), accuracy_std, plus `labels`.
    """
    probs = torch.as_tensor(logits).float().softmax(-1)
    curve = M.mean_ensemble_size_curve(lambda ens: M.accuracy(ens, y), probs, sizes=sizes, draws=draws, seed=seed)
    return pd.DataFrame({"size": curve.sizes, "accuracy": curve.mean, "accuracy_std": curve.std, **labels})


def diminishing_returns(curve: pd.DataFrame) -> bool:
    """Whether accuracy rises with size while each step adds no more per member than the one before,
    on average: the gain per member over the second half of the sizes is below that over the first."""
    c = curve.sort_values("size")
    s, a = c["size"].to_numpy(), c["accuracy"].to_numpy()
    if len(s) < 3:
        return False
    mid = len(s) // 2
    first = (a[mid] - a[0]) / (s[mid] - s[0])
    second = (a[-1] - a[mid]) / (s[-1] - s[mid])
    return bool(a[-1] > a[0] and second < first)


def mean_points(points: pd.DataFrame, by=("method", "scale")) -> pd.DataFrame:
    """Average the `function_points` rows of each (method, scale): one point per sampler setting."""
    cols = ["accuracy", "disagreement", "normalised_disagreement"]
    return points.groupby(list(by), sort=False)[cols].mean().reset_index()


def diversity_at_accuracy(points: pd.DataFrame, accuracy: float) -> float:
    """Normalised disagreement of a sampler's curve at a given accuracy (Fort et al. Fig. 6 reading).

    ``points``: the `mean_points` rows of one method (one per scale). Linear interpolation of
    normalised disagreement against accuracy; outside the measured accuracies the nearest end is
    used. Since diversity falls as accuracy rises along such a curve, a target above every measured
    accuracy gets the diversity of the most accurate point: an upper bound of the method's diversity
    there, which errs in the sampler's favour when comparing with independent inits.
    """
    p = points.dropna(subset=["normalised_disagreement"]).sort_values("accuracy")
    if p.empty:
        raise ValueError("no points with a defined normalised disagreement")
    return float(np.interp(accuracy, p.accuracy.to_numpy(), p.normalised_disagreement.to_numpy()))


# ------------------------------------------------------------------ function-space embedding


def embed_functions(probs: torch.Tensor, perplexity: float | None = None, seed: int = 0) -> np.ndarray:
    """2-D t-SNE of K functions given by their probabilities on the same n examples (Fort et al. Fig. 3).

    Every function is one point (its n × C outputs concatenated), all embedded together since they
    live in one function space (`metrics.tsne_embedding`, openTSNE).

    Args:
        probs: (K, n, C) probabilities.
        perplexity: None for 30 (lowered to (K − 1) / 3 when K is small).

    Returns:
        (K, 2) coordinates.
    """
    probs = torch.as_tensor(probs).float()
    if probs.ndim != 3 or probs.shape[0] < 4:
        raise ValueError("probs must be (K, n, C) with at least 4 functions to embed")
    emb = M.tsne_embedding(probs[None], perplexity=30.0 if perplexity is None else perplexity, seed=seed)
    return emb[0]


def same_group_neighbour_share(points, groups) -> float:
    """Share of points whose nearest other point (Euclidean) belongs to the same group.

    Args:
        points: (K, D) coordinates (an embedding, or flattened predictions).
        groups: K group labels (e.g. the run of each checkpoint).

    Returns:
        A number in [0, 1]: 1 when every point's nearest neighbour is in its own group.
    """
    return float(np.mean(same_group_neighbour(points, groups)))


# ------------------------------------------------------------------ hardness per init


def confusion_frame(trajectory: torch.Tensor, y: torch.Tensor, runs=None) -> pd.DataFrame:
    """Per-epoch confusion matrices of each run, as tidy rows (report "Intrinsic Hardness", confusion slider).

    Args:
        trajectory: (R, E, n, C) probabilities of R runs at E epochs on n examples.
        y: (n,) labels.
        runs: names of the R runs (default 0..R−1).

    Returns:
        One row per non-empty cell: run, epoch (from 1), true, predicted, count, and share = count /
        number of examples of the true class (rows of a matrix sum to 1).
    """
    trajectory = torch.as_tensor(trajectory)
    r, e, n, c = trajectory.shape
    runs = list(range(r)) if runs is None else list(runs)
    pred = trajectory.argmax(-1)  # (R, E, n)
    cell = (y * c + pred).reshape(r * e, n)  # index of (true, predicted)
    counts = torch.zeros(r * e, c * c, dtype=torch.long).scatter_add_(1, cell, torch.ones_like(cell))
    counts = counts.reshape(r, e, c, c)
    per_class = torch.bincount(y, minlength=c).clamp(min=1)
    idx = counts.nonzero()
    vals = counts[tuple(idx.T)]
    return pd.DataFrame({"run": [runs[i] for i in idx[:, 0].tolist()], "epoch": idx[:, 1].numpy() + 1,
                         "true": idx[:, 2].numpy(), "predicted": idx[:, 3].numpy(), "count": vals.numpy(),
                         "share": (vals / per_class[idx[:, 2]]).numpy()})


def hardest_examples(trajectory: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """(R, E, k) indices of the k examples with the highest cross-entropy loss, per run and epoch.

    Ties are broken by the example index (stable), so the sets are reproducible.
    """
    trajectory = torch.as_tensor(trajectory).float()
    n = trajectory.shape[2]
    if not 1 <= k <= n:
        raise ValueError(f"k={k}: must be in [1, {n}] (the tracked examples)")
    loss = -trajectory.gather(-1, y.expand(*trajectory.shape[:2], -1)[..., None]).squeeze(-1).clamp_min(1e-12).log()
    return torch.sort(loss, dim=-1, descending=True, stable=True).indices[..., :k]


def overlap(a: torch.Tensor, b: torch.Tensor) -> float:
    """|A ∩ B| / k of two hardest-example sets of k indices each."""
    return len(set(a.tolist()) & set(b.tolist())) / len(a)


def hardest_overlap(hardest: torch.Tensor, runs=None) -> pd.DataFrame:
    """Overlap |A ∩ B| / k of hardest-example sets, across inits and along each run.

    Args:
        hardest: (R, E, k) indices from `hardest_examples`.

    Returns:
        Rows with epoch (from 1), comparison ("across inits, same epoch": mean over run pairs;
        "same run, vs final epoch": mean over runs) and overlap. Two random k-subsets of n examples
        overlap by k / n on average.
    """
    hardest = torch.as_tensor(hardest)
    r, e, _ = hardest.shape
    rows = []
    for epoch in range(e):
        if r >= 2:
            pairs = [overlap(hardest[i, epoch], hardest[j, epoch]) for i in range(r) for j in range(i + 1, r)]
            rows.append({"epoch": epoch + 1, "comparison": "across inits, same epoch",
                         "overlap": float(np.mean(pairs))})
        along = [overlap(hardest[i, epoch], hardest[i, -1]) for i in range(r)]
        rows.append({"epoch": epoch + 1, "comparison": "same run, vs final epoch", "overlap": float(np.mean(along))})
    return pd.DataFrame(rows)


def run_overlaps(hardest: torch.Tensor, epoch: int = -1, reference_epoch: int = -1) -> pd.DataFrame:
    """Per run r: ``along``, the overlap of r's hardest set at ``epoch`` with its own at
    ``reference_epoch`` (0-based indices; -1 the last), and ``across``, the mean overlap of r's
    hardest set at ``reference_epoch`` with each other run's there. For standard errors over the
    runs (seeds; the across values share pairs, so their SE is an approximation)."""
    hardest = torch.as_tensor(hardest)
    r = hardest.shape[0]
    rows = []
    for i in range(r):
        others = [overlap(hardest[i, reference_epoch], hardest[j, reference_epoch]) for j in range(r) if j != i]
        rows.append({"run": i, "along": overlap(hardest[i, epoch], hardest[i, reference_epoch]),
                     "across": float(np.mean(others)) if others else np.nan})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------ subspace ensembles around several solutions


def _ensemble_accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy of the probability average of (S, N, C) logits."""
    return M.accuracy(M.mean_probs(torch.as_tensor(logits).float().softmax(-1)), y)


def subspace_by_centre(pools: dict, record, y: torch.Tensor, size: int) -> pd.DataFrame:
    """Per solution (centre) and sampler: the solution's accuracy and that of an ensemble of ``size``
    functions sampled around it (the first ``size`` samples), for standard errors over centres.

    ``pools`` maps (centre, method) to (S, N, C) logits sampled around member ``centre`` of
    ``record``. Returns columns centre, method, solution, ensemble, gain (ensemble − solution).
    """
    logits = record.logits()
    rows = []
    for (centre, method), pool in pools.items():
        solution = M.accuracy(logits[centre], y)
        ensemble = _ensemble_accuracy(pool[:size], y)
        rows.append({"centre": centre, "method": method, "solution": solution, "ensemble": ensemble,
                     "gain": ensemble - solution})
    return pd.DataFrame(rows)


def complementarity(pools: dict, record, y: torch.Tensor, method: str, centres) -> dict:
    """Do samples around several solutions combine better than samples around one (Fort et al. 2019,
    the complementary benefits of subspace sampling and independent inits)?

    With c = len(centres) solutions and S samples around each (``pools[centre, method]``, (S, N, C)):

    * ``around``: per centre, the accuracy of an ensemble of c samples around that one centre;
    * ``across``: per sample index j < S, an ensemble of c samples, the j-th around each centre;
    * ``solutions``: the ensemble of the c solutions themselves;
    * ``pooled``: the ensemble of all c × S samples.

    Returns a dict of float arrays ``around`` (c,), ``across`` (S,), and floats ``solutions`` and ``pooled``.
    """
    centres = list(centres)
    c = len(centres)
    stacked = torch.stack([pools[m, method] for m in centres])  # (c, S, N, C)
    around = np.array([_ensemble_accuracy(stacked[i, :c], y) for i in range(c)])
    across = np.array([_ensemble_accuracy(stacked[:, j], y) for j in range(stacked.shape[1])])
    solutions = _ensemble_accuracy(record.logits()[centres], y)
    pooled = _ensemble_accuracy(stacked.flatten(0, 1), y)
    return {"around": around, "across": across, "solutions": solutions, "pooled": pooled}


def diversity_gap_by_centre(points: pd.DataFrame, method: str, independent: str = "independent inits") -> pd.Series:
    """Per solution (centre): how much less diverse ``method``'s samples are than the independent runs
    at the same accuracy (Fort et al. 2019, Fig. 6 reading), in units of normalised disagreement.

    ``points``: `function_points` rows with a ``centre`` column, holding for each centre the samples
    of ``method`` (any number of scales) and the other independent runs (method ``independent``)
    measured against that centre. The gap is the independent runs' mean normalised disagreement
    minus `diversity_at_accuracy` of the method's `mean_points` curve at the independent runs' mean
    accuracy (> 0: the samples are less diverse). Returns a Series indexed by centre, in the order
    of ``points``.
    """
    gaps = {}
    for centre, pts in points.groupby("centre", sort=False):
        ind = pts[pts.method == independent]
        sampler = mean_points(pts[pts.method == method])
        gaps[centre] = (float(ind.normalised_disagreement.mean())
                        - diversity_at_accuracy(sampler, float(ind.accuracy.mean())))
    return pd.Series(gaps, name="diversity_gap", dtype=float)


def across_minus_around(comp: dict) -> tuple[float, float]:
    """Accuracy (fraction) of ensembles of one sample around each of c solutions minus that of
    ensembles of c samples around one solution, from a `complementarity` dict, and its standard
    error as a difference of two independent means (over sample indices and over centres; NaN
    with fewer than two of either)."""
    across, around = np.asarray(comp["across"], float), np.asarray(comp["around"], float)
    gain = float(across.mean() - around.mean())
    if len(across) < 2 or len(around) < 2:
        return gain, float("nan")
    return gain, float(np.sqrt(across.var(ddof=1) / len(across) + around.var(ddof=1) / len(around)))


def pooling_gain(pools: dict, record, y: torch.Tensor, method: str, centres,
                 min_centres: int = 3) -> tuple[float, float]:
    """Accuracy (fraction) of the ensemble of every sample around every solution minus that of the
    solutions' own ensemble (`complementarity`'s pooled − solutions: does adding subspace samples to
    independent solutions help?), and its leave-one-centre-out jackknife standard error (NaN with
    fewer than ``min_centres`` centres). Arguments as for `complementarity`."""
    centres = list(centres)
    comp = complementarity(pools, record, y, method, centres)
    gain = float(comp["pooled"] - comp["solutions"])
    n = len(centres)
    if n < max(2, min_centres):
        return gain, float("nan")
    reps = []
    for left_out in centres:
        r = complementarity(pools, record, y, method, [c for c in centres if c != left_out])
        reps.append(r["pooled"] - r["solutions"])
    return gain, float(stats.jackknife_se(reps))


def curve_jackknife(logits: torch.Tensor, y: torch.Tensor, statistic, draws: int = 20, seed: int = 0):
    """A statistic of the accuracy-vs-size curve of a pool and its leave-one-member-out jackknife SE.

    ``statistic(curve)`` maps an `ensemble_accuracy_curve` frame to a float. The replicates drop one
    member each (their curves stop at M − 1). Returns (estimate, se); SE NaN with fewer than 3 members.
    """
    logits = torch.as_tensor(logits)
    m = logits.shape[0]
    estimate = float(statistic(ensemble_accuracy_curve(logits, y, draws=draws, seed=seed)))
    if m < 3:
        return estimate, float("nan")
    reps = np.array([statistic(ensemble_accuracy_curve(torch.cat([logits[:i], logits[i + 1:]]), y, draws=draws,
                                                       seed=seed)) for i in range(m)], float)
    return estimate, float(stats.jackknife_se(reps))


def curve_rise(curve: pd.DataFrame) -> float:
    """Accuracy (fraction) of the largest ensemble of an `ensemble_accuracy_curve` minus that of the
    smallest (size 1 for a full curve): what ensembling adds."""
    c = curve.sort_values("size")
    return float(c.accuracy.iloc[-1] - c.accuracy.iloc[0])


def curve_slowdown(curve: pd.DataFrame) -> float:
    """Gain per member over the first half of the sizes minus that over the second half (> 0: returns
    diminish); NaN with fewer than three sizes."""
    c = curve.sort_values("size")
    s, a = c["size"].to_numpy(), c["accuracy"].to_numpy()
    if len(s) < 3:
        return float("nan")
    mid = len(s) // 2
    return float((a[mid] - a[0]) / (s[mid] - s[0]) - (a[-1] - a[mid]) / (s[-1] - s[mid]))


def same_group_neighbour(points, groups) -> np.ndarray:
    """Per point: whether its nearest other point (Euclidean) belongs to the same group (the per-point
    form of `same_group_neighbour_share`, for shares per group and their standard errors)."""
    points = torch.as_tensor(np.asarray(points), dtype=torch.float64)
    groups = np.asarray(groups)
    if points.shape[0] != len(groups) or len(groups) < 2:
        raise ValueError("need at least 2 points and one group label per point")
    dist = torch.cdist(points, points)
    dist.fill_diagonal_(float("inf"))
    return groups[dist.argmin(1).numpy()] == groups
