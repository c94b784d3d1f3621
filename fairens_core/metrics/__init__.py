"""Metrics of the fairens book: every chapter's analysis is a few calls into this package.

Metrics work on plain predictions, independent of how they were produced:
member predictions are (M, N, C) tensors (members × examples × classes) of
probabilities or logits, labels are (N,) int64; numpy arrays and lists of
per-member arrays are accepted too.  Computations stay on the input's device
(CPU or CUDA).  Anything random takes an explicit ``seed`` (int or
``torch.Generator``).

Modules, by topic (see ``book/reference/metrics.md`` for the paper and
equation behind every function):

* ``aggregation``   – mean / geometric-mean / score averaging, majority vote
* ``groups``        – accuracy, per-class, top-k / bottom-k groups, subgroups, relative gain, gain won / lost
* ``ensemble_size`` – any metric vs ensemble size (Ko et al. 2023, App. A.1 sampling)
* ``churn``         – churn between models, mean pairwise churn, Pearson r
* ``randomness``    – L1 distance / variance of accuracy trajectories
* ``diversity``     – ERR, ERR-bar, DIV and their closed forms, debiasing, learner dropout, GAT β
* ``calibration``   – NLL, Brier, ECE, MACE
* ``agreement``     – symmetric KL, pairwise disagreement
* ``forgetting``    – forgetting events, cumulative forgetting
* ``landscape``     – weight cosine similarity, linear interpolation and error barrier, t-SNE
* ``cost``          – ensemble FLOPs
"""

from .agreement import mean_off_diagonal, pairwise_disagreement, pairwise_symmetric_kl, symmetric_kl
from .aggregation import geometric_mean_probs, majority_vote, mean_probs, score_average
from .calibration import brier_score, expected_calibration_error, mace, nll
from .churn import churn, mean_pairwise_churn, pearson_r
from .cost import ensemble_flops
from .diversity import (
    DiversityDecomposition,
    debias_predictions,
    debiased_diversity,
    diversity_decomposition,
    ensemble_loss,
    gradient_adjusted_beta,
    gradient_adjusted_target_loss,
    lagrange_intermediate_points,
    learner_dropout_error_increase,
    leave_one_out_gradient_adjusted_beta,
    mse_ambiguity,
    optimal_debiasing,
    prob_average_diversity,
    score_average_diversity,
    second_order_diversity,
)
from .ensemble_size import EnsembleSizeCurve, ensemble_size_curve, mean_ensemble_size_curve, subset_means
from .forgetting import cumulative_forgetting, forgetting_events, forgetting_events_per_epoch
from .groups import (
    accuracy,
    bottom_k_classes,
    class_mask,
    errors_fixed,
    gain_won_lost,
    group_accuracy,
    per_class_accuracy,
    relative_gain,
    subgroup_accuracy,
    top_k_classes,
)
from .landscape import (
    InterpolationCurve,
    error_barrier,
    flatten_weights,
    function_space_points,
    has_batchnorm,
    interpolate_models,
    interpolate_state_dicts,
    interpolation_curve,
    pairwise_weight_cosine_similarity,
    recompute_batchnorm_statistics,
    tsne_embedding,
    weight_cosine_similarity,
)
from .randomness import accuracy_trajectories, trajectory_l1_distance, trajectory_variance

__all__ = [
    # aggregation
    "mean_probs", "geometric_mean_probs", "score_average", "majority_vote",
    # groups
    "accuracy", "per_class_accuracy", "top_k_classes", "bottom_k_classes", "class_mask",
    "group_accuracy", "gain_won_lost", "subgroup_accuracy", "relative_gain", "errors_fixed",
    # ensemble size
    "EnsembleSizeCurve", "ensemble_size_curve", "mean_ensemble_size_curve", "subset_means",
    # churn
    "churn", "mean_pairwise_churn", "pearson_r",
    # randomness
    "accuracy_trajectories", "trajectory_l1_distance", "trajectory_variance",
    # diversity
    "DiversityDecomposition", "ensemble_loss", "diversity_decomposition", "mse_ambiguity",
    "score_average_diversity", "prob_average_diversity", "second_order_diversity",
    "lagrange_intermediate_points", "optimal_debiasing", "debias_predictions", "debiased_diversity",
    "learner_dropout_error_increase", "gradient_adjusted_beta", "leave_one_out_gradient_adjusted_beta",
    "gradient_adjusted_target_loss",
    # calibration
    "nll", "brier_score", "expected_calibration_error", "mace",
    # agreement
    "symmetric_kl", "pairwise_symmetric_kl", "pairwise_disagreement", "mean_off_diagonal",
    # forgetting
    "forgetting_events", "forgetting_events_per_epoch", "cumulative_forgetting",
    # landscape
    "flatten_weights", "weight_cosine_similarity", "pairwise_weight_cosine_similarity",
    "interpolate_state_dicts", "has_batchnorm", "recompute_batchnorm_statistics", "interpolate_models",
    "InterpolationCurve", "interpolation_curve", "error_barrier", "function_space_points", "tsne_embedding",
    # cost
    "ensemble_flops",
]
