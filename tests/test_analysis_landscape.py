"""Part IV analyses (Fort et al. 2019): similarity frames, subspace samplers, ensembles
and the diversity-vs-accuracy plane, checked against hand-computed values."""

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from fairens_core import TrainConfig
from fairens_core.analysis import landscape as L
from fairens_core.ensemble import StackedEnsemble
from fairens_core.models import build_model
from fairens_core.runner import run


def one_hot(labels, classes=3):
    return torch.nn.functional.one_hot(torch.tensor(labels), classes).float()


# ------------------------------------------------------------------ similarity

WEIGHTS = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
PROBS = torch.stack([one_hot([0, 1, 2, 0]), one_hot([0, 1, 2, 1]), one_hot([1, 2, 2, 1])])


def test_similarity_frame_by_hand():
    f = L.similarity_frame(WEIGHTS, PROBS, ["x", "y", "z"]).set_index(["a", "b"])
    assert len(f) == 9
    assert f.loc[("x", "x"), "cosine"] == pytest.approx(1.0)
    assert f.loc[("x", "y"), "cosine"] == pytest.approx(1 / math.sqrt(2))
    assert f.loc[("x", "z"), "cosine"] == pytest.approx(0.0)
    # x vs y differ on the last example only; x vs z on examples 0, 1 and 3
    assert f.loc[("x", "y"), "disagreement"] == pytest.approx(0.25)
    assert f.loc[("z", "x"), "disagreement"] == pytest.approx(0.75)
    assert f.loc[("y", "z"), "disagreement"] == pytest.approx(0.5)
    assert f.loc[("y", "y"), "disagreement"] == 0


def test_similarity_frame_rejects_mismatched_sizes():
    with pytest.raises(ValueError, match="same number"):
        L.similarity_frame(WEIGHTS, PROBS[:2], ["x", "y", "z"])


def fake_trajectory_record():
    # 2 members x 3 epochs; member 1's weights are member 0's negated, so cosine across members = -1
    snaps = torch.tensor([[[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]])
    snaps = torch.cat([snaps, -snaps])
    probs = torch.stack([PROBS[:, :3], PROBS[[2, 1, 0], :3]])  # (M=2, E=3, n=3, C=3)
    return SimpleNamespace(weight_snapshots=snaps, test_probs_trajectory=probs, members=2, key="fake")


def test_checkpoint_and_init_similarity():
    rec = fake_trajectory_record()
    within = L.checkpoint_similarity(rec, member=0).set_index(["a", "b"])
    assert list(within.index.get_level_values("a").unique()) == [1, 2, 3]  # epochs count from 1
    assert within.loc[(1, 2), "cosine"] == pytest.approx(1 / math.sqrt(2))
    across = L.init_similarity(rec, epoch=1).set_index(["a", "b"])
    assert across.loc[(0, 1), "cosine"] == pytest.approx(-1.0)
    # epoch 1: member 0 predicts [0, 1, 2], member 1 (its epoch 1 = PROBS[2][:3]) [1, 2, 2]
    assert across.loc[(0, 1), "disagreement"] == pytest.approx(2 / 3)
    assert (L.init_similarity(rec).epoch == 3).all()
    with pytest.raises(ValueError, match="epoch"):
        L.init_similarity(rec, epoch=4)
    with pytest.raises(ValueError, match="member"):
        L.checkpoint_similarity(rec, member=2)
    with pytest.raises(ValueError, match="snapshot_weights"):
        L.checkpoint_similarity(SimpleNamespace(weight_snapshots=None, test_probs_trajectory=None, key="k"))


def test_mean_pairs_skips_the_diagonal_and_filters_labels():
    f = L.similarity_frame(WEIGHTS, PROBS, [1, 2, 3])
    means = L.mean_pairs(f)
    assert means["disagreement"] == pytest.approx((0.25 + 0.75 + 0.5) / 3)
    assert means["cosine"] == pytest.approx((1 / math.sqrt(2) + 0 + 1 / math.sqrt(2)) / 3)
    assert L.mean_pairs(f, min_label=2)["disagreement"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="no pairs"):
        L.mean_pairs(f, min_label=3)


# ------------------------------------------------------------------ samplers


def test_gaussian_perturbation_scales_noise_per_tensor():
    center = torch.tensor([3.0, -3.0, 3.0, 0.1])  # tensor 1: rms 3; tensor 2: rms 0.1
    assert torch.equal(L.gaussian_perturbation(center, [3, 1], 0.0, 4), center.expand(4, -1))
    s = L.gaussian_perturbation(center, [3, 1], 0.5, 20000, seed=1)
    std = (s - center).std(0)
    assert std[:3].numpy() == pytest.approx([1.5] * 3, rel=0.03)
    assert std[3].item() == pytest.approx(0.05, rel=0.03)
    assert torch.equal(s, L.gaussian_perturbation(center, [3, 1], 0.5, 20000, seed=1))  # seeded
    with pytest.raises(ValueError, match="sizes"):
        L.gaussian_perturbation(center, [2, 1], 0.5, 3)


def test_diagonal_gaussian_matches_iterate_mean_and_spread():
    iterates = torch.tensor([[0.0, 1.0], [2.0, 1.0]])  # mean (1, 1), population std (1, 0)
    s = L.diagonal_gaussian(iterates, scale=2.0, samples=20000, seed=0)
    assert torch.all(s[:, 1] == 1.0)  # a weight that never moved is never perturbed
    assert s[:, 0].mean().item() == pytest.approx(1.0, abs=0.05)
    assert s[:, 0].std().item() == pytest.approx(2.0, rel=0.03)
    with pytest.raises(ValueError, match="T >= 2"):
        L.diagonal_gaussian(iterates[:1], 1.0, 3)


def test_low_rank_gaussian_stays_on_the_line_of_the_iterates():
    iterates = torch.tensor([[0.0, 0.0], [1.0, 2.0], [2.0, 4.0]])  # on y = 2x around (1, 2)
    s = L.low_rank_gaussian(iterates, rank=1, scale=1.0, samples=20000, seed=0)
    assert torch.allclose(s[:, 1], 2 * s[:, 0], atol=1e-5)
    # along the line the std is σ_1/√T = √(10/3); projected on x: the population std of (0, 1, 2)
    assert s[:, 0].std().item() == pytest.approx(math.sqrt(2 / 3), rel=0.03)
    assert s[:, 0].mean().item() == pytest.approx(1.0, abs=0.02)
    with pytest.raises(ValueError, match="rank"):
        L.low_rank_gaussian(iterates, rank=3, scale=1.0, samples=2)


# ------------------------------------------------------------------ rebuilding members


def tiny_record(seed_a=0, seed_b=1, dropout=0.0):
    cfg = TrainConfig(dataset="synthetic", model="mlp", width=0.05, dropout=dropout)
    members = []
    for seed in (seed_a, seed_b):
        torch.manual_seed(seed)
        members.append(build_model("mlp", (4,), 3, width=0.05, dropout=dropout))
    ens = StackedEnsemble(members)
    rec = SimpleNamespace(config=dataclasses.asdict(cfg), meta={"input_shape": [4], "num_classes": 3},
                          weights=ens.state_stacked(), key="tiny", members=2)
    return rec, ens, members


def test_final_weights_and_logits_from_weights_rebuild_the_members():
    rec, ens, members = tiny_record()
    flat = L.final_weights(rec)
    assert torch.equal(flat, ens.flat_weights())  # same order as weight_snapshots
    x = torch.randn(7, 4)
    logits = L.logits_from_weights(rec, flat, x)
    assert logits.shape == (2, 7, 3)
    for m, model in enumerate(members):
        assert torch.allclose(logits[m], model.eval()(x), atol=1e-6)
    with pytest.raises(ValueError, match="flat_weights"):
        L.logits_from_weights(rec, flat[:, :-1], x)


def test_mc_dropout_needs_dropout_and_varies_between_passes():
    rec, _, _ = tiny_record()
    with pytest.raises(ValueError, match="dropout"):
        L.mc_dropout_logits(rec, torch.randn(3, 4), samples=2)
    with pytest.raises(ValueError, match="method"):
        L.sample_subspace(rec, "swag", 1.0, 2, torch.randn(3, 4))


# ------------------------------------------------------------------ ensembles and the plane


def test_function_points_normalise_by_the_own_error():
    y = torch.tensor([0, 1, 2, 0])
    reference = one_hot([0, 1, 2, 1])  # 75% accurate
    logits = torch.stack([one_hot([0, 1, 2, 0]), one_hot([0, 2, 2, 1]), one_hot([1, 1, 2, 1])])
    p = L.function_points(logits, reference, y, method="m")
    assert p.accuracy.tolist() == pytest.approx([1.0, 0.5, 0.5])
    assert p.disagreement.tolist() == pytest.approx([0.25, 0.25, 0.25])
    assert math.isnan(p.normalised_disagreement[0])  # no errors: undefined
    assert p.normalised_disagreement[1:].tolist() == pytest.approx([0.5, 0.5])
    assert (p.method == "m").all()


def test_ensemble_accuracy_curve_by_hand():
    y = torch.tensor([0, 1])
    # each member is sure and right on one example, unsure and wrong on the other: the average is right on both
    logits = torch.stack([torch.tensor([[3.0, 0.0], [1.0, 0.0]]), torch.tensor([[0.0, 1.0], [0.0, 3.0]])])
    c = L.ensemble_accuracy_curve(logits, y, draws=10, method="m")
    assert c["size"].tolist() == [1, 2]
    assert c.accuracy.tolist() == pytest.approx([0.5, 1.0])
    assert (c.method == "m").all()


def test_diminishing_returns():
    concave = pd.DataFrame({"size": [1, 2, 3, 4, 5], "accuracy": [0.90, 0.93, 0.94, 0.945, 0.947]})
    linear_then_faster = pd.DataFrame({"size": [1, 2, 3, 4, 5], "accuracy": [0.90, 0.90, 0.90, 0.92, 0.95]})
    falling = pd.DataFrame({"size": [1, 2, 3], "accuracy": [0.9, 0.89, 0.88]})
    assert L.diminishing_returns(concave)
    assert not L.diminishing_returns(linear_then_faster)
    assert not L.diminishing_returns(falling)
    assert not L.diminishing_returns(concave.head(2))  # too few sizes to tell


def test_diversity_at_accuracy_interpolates_and_clips():
    pts = pd.DataFrame({"accuracy": [0.8, 0.9, 0.95], "normalised_disagreement": [0.9, 0.5, np.nan]})
    assert L.diversity_at_accuracy(pts, 0.85) == pytest.approx(0.7)
    assert L.diversity_at_accuracy(pts, 0.99) == pytest.approx(0.5)  # NaN row dropped, nearest end used
    assert L.diversity_at_accuracy(pts, 0.5) == pytest.approx(0.9)
    with pytest.raises(ValueError):
        L.diversity_at_accuracy(pts.iloc[2:], 0.9)


def test_mean_points_one_row_per_setting():
    p = pd.DataFrame({"method": ["g", "g", "d"], "scale": [1, 1, 2], "accuracy": [0.8, 0.9, 0.7],
                      "disagreement": [0.1, 0.3, 0.2], "normalised_disagreement": [0.5, 1.0, 0.4]})
    m = L.mean_points(p).set_index(["method", "scale"])
    assert m.loc[("g", 1), "accuracy"] == pytest.approx(0.85)
    assert m.loc[("g", 1), "normalised_disagreement"] == pytest.approx(0.75)
    assert len(m) == 2


def test_same_group_neighbour_share_by_hand():
    points = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0], [5.1, 5.0], [0.25, 0.0]])
    assert L.same_group_neighbour_share(points, ["a", "a", "b", "b", "a"]) == 1.0
    # relabelled point 4: its nearest neighbour is point 1 (group a); the other four are unaffected
    assert L.same_group_neighbour_share(points, ["a", "a", "b", "b", "b"]) == pytest.approx(4 / 5)
    with pytest.raises(ValueError):
        L.same_group_neighbour_share(points, ["a"])


def test_embed_functions_separates_two_clear_clusters():
    gen = torch.Generator().manual_seed(0)
    a = one_hot([0, 1, 2, 0, 1, 2]).expand(6, -1, -1) + 0.01 * torch.rand(6, 6, 3, generator=gen)
    b = one_hot([2, 0, 1, 1, 2, 0]).expand(6, -1, -1) + 0.01 * torch.rand(6, 6, 3, generator=gen)
    emb = L.embed_functions(torch.cat([a, b]), seed=0)
    assert emb.shape == (12, 2)
    assert L.same_group_neighbour_share(emb, [0] * 6 + [1] * 6) == 1.0
    with pytest.raises(ValueError, match="at least 4"):
        L.embed_functions(a[:3])


# ------------------------------------------------------------------ hardness


def test_confusion_frame_by_hand():
    y = torch.tensor([0, 0, 1, 2])
    traj = torch.stack([one_hot([0, 1, 1, 2]), one_hot([0, 0, 1, 1])])[None]  # 1 run, 2 epochs
    f = L.confusion_frame(traj, y, runs=["r"]).set_index(["epoch", "true", "predicted"])
    assert f.loc[(1, 0, 0), "count"] == 1 and f.loc[(1, 0, 1), "share"] == pytest.approx(0.5)
    assert f.loc[(2, 0, 0), "share"] == pytest.approx(1.0)
    assert f.loc[(2, 2, 1), "count"] == 1
    assert (2, 2, 2) not in f.index  # empty cells are left out
    assert f["count"].groupby(level="epoch").sum().tolist() == [4, 4]
    assert (f.run == "r").all()


def test_hardest_examples_and_overlap():
    y = torch.tensor([0, 0, 0, 0])
    # probability of the true class per example: run 0 finds examples 0, 1 hardest; run 1 examples 1, 2
    p0 = torch.tensor([0.1, 0.2, 0.9, 0.8])
    p1 = torch.tensor([0.9, 0.1, 0.2, 0.8])
    traj = torch.stack([torch.stack([p, 1 - p], -1) for p in (p0, p1)])[:, None]  # (R=2, E=1, 4, 2)
    hard = L.hardest_examples(traj, y, k=2)
    assert sorted(hard[0, 0].tolist()) == [0, 1] and sorted(hard[1, 0].tolist()) == [1, 2]
    ov = L.hardest_overlap(hard).set_index("comparison").overlap
    assert ov["across inits, same epoch"] == pytest.approx(0.5)
    assert ov["same run, vs final epoch"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="k="):
        L.hardest_examples(traj, y, k=5)


@pytest.mark.parametrize("knobs, name", [(dict(member=5), "member"), (dict(iterate_fraction=1.0), "iterate_fraction"),
                                         (dict(samples=1), "samples"), (dict(epochs=1), "epochs")])
def test_subspace_plan_names_the_bad_knob(knobs, name):
    from fairens_core import TrainConfig

    cfg = TrainConfig(members=5, epochs=knobs.pop("epochs", 10))
    args = {**dict(member=0, samples=4, iterate_fraction=0.5), **knobs}
    with pytest.raises(ValueError, match=name):
        L.subspace_plan(cfg, **args)


def test_subspace_plan_starts_the_iterates_after_the_fraction():
    from fairens_core import TrainConfig

    assert L.subspace_plan(TrainConfig(members=5, epochs=10), 0, 4, 0.5) == 6
    assert L.subspace_plan(TrainConfig(members=5, epochs=2), 0, 4, 0.9) == 1


def test_per_member_similarity_and_mean_se():
    rec = fake_trajectory_record()
    runs = L.per_member_similarity(rec, late_from=2)
    assert runs.member.tolist() == [0, 1]
    assert runs.init_cosine.tolist() == pytest.approx([-1.0, -1.0])  # member 1 is member 0 negated
    # member 0's checkpoints 2 and 3: (1, 1) and (0, 1) -> cosine 1/sqrt(2)
    assert runs.late_cosine[0] == pytest.approx(1 / math.sqrt(2))
    within = L.checkpoint_similarity(rec, 0).set_index(["a", "b"])
    assert runs.adjacent_disagreement[0] == pytest.approx(within.loc[(2, 3), "disagreement"])
    assert runs.init_disagreement_min[0] == pytest.approx(runs.init_disagreement[0])  # one other run
    mean, se = L.mean_se([1.0, 2.0, 3.0, np.nan])
    assert mean == pytest.approx(2.0) and se == pytest.approx(1 / math.sqrt(3))
    assert np.isnan(L.mean_se([1.0])[1]) and np.isnan(L.mean_se([])[0])


def test_run_overlaps_by_hand():
    # 3 runs, 2 epochs, k = 2 hardest examples each
    hard = torch.tensor([[[0, 1], [0, 2]], [[0, 1], [0, 3]], [[4, 5], [2, 3]]])
    per_run = L.run_overlaps(hard, epoch=0).set_index("run")
    assert per_run.along.tolist() == pytest.approx([0.5, 0.5, 0.0])  # epoch 1 vs the final epoch
    # final sets {0,2}, {0,3}, {2,3}: each shares one example with each other run
    assert per_run.across.tolist() == pytest.approx([0.5, 0.5, 0.5])


def test_same_group_neighbour_per_point():
    pts = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 0.0], [5.1, 0.0], [2.6, 0.0]])
    same = L.same_group_neighbour(pts, ["a", "a", "b", "b", "a"])
    # the last point (2.6) is 2.4 from 5.0 (group b) and 2.5 from 0.1: its neighbour is in the other group
    assert same.tolist() == [True, True, True, True, False]
    assert same.mean() == pytest.approx(L.same_group_neighbour_share(pts, ["a", "a", "b", "b", "a"]))


def test_curve_slowdown_and_jackknife():
    curve = pd.DataFrame({"size": [1, 2, 3, 4, 5], "accuracy": [0.90, 0.93, 0.94, 0.945, 0.947]})
    # first half (sizes 1 -> 3): 0.02 per member; second half (3 -> 5): 0.0035
    assert L.curve_slowdown(curve) == pytest.approx(0.02 - 0.0035)
    assert np.isnan(L.curve_slowdown(curve.iloc[:2]))
    y = torch.tensor([0, 1, 0, 1])
    logits = torch.randn(4, 4, 2, generator=torch.Generator().manual_seed(0))
    est, se = L.curve_jackknife(logits, y, lambda c: c.accuracy.iloc[0], draws=10)
    assert 0 <= est <= 1 and se >= 0
    assert np.isnan(L.curve_jackknife(logits[:2], y, lambda c: c.accuracy.iloc[0])[1])


def test_subspace_by_centre_and_complementarity():
    y = torch.tensor([0, 1])
    right, wrong = torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([[0.0, 2.0], [2.0, 0.0]])
    # three solutions: 0 and 1 right on both examples, 2 wrong on both
    rec = SimpleNamespace(logits=lambda: torch.stack([right, right, wrong]))
    # around each centre, 3 samples; the samples around centre 2 are right
    pools = {(0, "g"): torch.stack([right, right, wrong]), (1, "g"): torch.stack([wrong, wrong, right]),
             (2, "g"): torch.stack([right, right, right])}
    frame = L.subspace_by_centre(pools, rec, y, size=2).set_index("centre")
    assert frame.solution.tolist() == [1.0, 1.0, 0.0]
    assert frame.ensemble.tolist() == [1.0, 0.0, 1.0]  # two samples: right+right, wrong+wrong, right+right
    assert frame.gain.tolist() == [0.0, -1.0, 1.0]
    comp = L.complementarity(pools, rec, y, "g", [0, 1, 2])
    # around: 3 samples around one centre -> right,right,wrong (1.0); wrong,wrong,right (0.0); all right (1.0)
    assert comp["around"].tolist() == [1.0, 0.0, 1.0]
    # across, sample j of each centre: (r, w, r) -> 1, (r, w, r) -> 1, (w, r, r) -> 1
    assert comp["across"].tolist() == [1.0, 1.0, 1.0]
    assert comp["solutions"] == 1.0 and comp["pooled"] == 1.0


def test_mean_se_min_count_leaves_the_se_undefined_below_it():
    mean, se = L.mean_se([1.0, 2.0, 3.0], min_count=3)
    assert mean == pytest.approx(2.0) and se == pytest.approx(1 / math.sqrt(3))
    mean, se = L.mean_se([1.0, 3.0], min_count=3)
    assert mean == pytest.approx(2.0) and np.isnan(se)
    assert np.isnan(L.mean_se([1.0, 2.0, 3.0, np.nan], min_count=4)[1])  # only three finite values


def test_curve_rise_is_largest_minus_smallest_size():
    curve = pd.DataFrame({"size": [3, 1, 2], "accuracy": [0.95, 0.90, 0.93]})  # unsorted on purpose
    assert L.curve_rise(curve) == pytest.approx(0.05)
    assert L.curve_rise(curve.iloc[[1]]) == 0.0


def centre_points_frame():
    """Two centres; the sampler's curve runs through (accuracy, normalised disagreement) (0.6, 1.0)
    and (0.8, 0.2) at two scales, the independent runs sit at accuracy 0.7."""
    rows = []
    for centre, ind_div in ((0, 0.9), (1, 0.5)):
        rows += [dict(centre=centre, method="independent inits", scale=0, accuracy=a, normalised_disagreement=ind_div)
                 for a in (0.65, 0.75)]
        rows += [dict(centre=centre, method="gaussian", scale=s, accuracy=a, normalised_disagreement=d)
                 for s, a, d in ((0.1, 0.8, 0.2), (0.1, 0.8, 0.2), (0.5, 0.6, 1.0), (0.5, 0.6, 1.0))]
    frame = pd.DataFrame(rows)
    frame["disagreement"] = frame.normalised_disagreement * (1 - frame.accuracy)
    return frame


def test_diversity_gap_by_centre_by_hand():
    gaps = L.diversity_gap_by_centre(centre_points_frame(), "gaussian")
    # at accuracy 0.7 the sampler's curve is halfway between 1.0 and 0.2: 0.6
    assert gaps.index.tolist() == [0, 1]
    assert gaps.tolist() == pytest.approx([0.9 - 0.6, 0.5 - 0.6])
    with pytest.raises(ValueError):  # no points of that method
        L.diversity_gap_by_centre(centre_points_frame(), "low_rank")


def test_across_minus_around_by_hand():
    comp = {"across": np.array([1.0, 0.5, 0.75]), "around": np.array([0.5, 0.25]), "solutions": 0.5, "pooled": 0.75}
    gain, se = L.across_minus_around(comp)
    assert gain == pytest.approx(0.75 - 0.375)
    assert se == pytest.approx(math.sqrt(0.0625 / 3 + 0.03125 / 2))  # sample variances 0.0625 and 0.03125
    assert np.isnan(L.across_minus_around({"across": np.array([1.0, 0.5]), "around": np.array([0.5])})[1])


def test_pooling_gain_and_its_jackknife_by_hand():
    y = torch.tensor([0, 1])

    def right(a):  # confidence sigmoid(a) in the right class of both examples
        return torch.tensor([[a, 0.0], [0.0, a]])

    def wrong(a):
        return torch.tensor([[0.0, a], [a, 0.0]])

    # solutions: 0 very sure and right (0.98), 1 sure and wrong (0.12 on the right class), 2 unsure and right (0.73)
    rec = SimpleNamespace(logits=lambda: torch.stack([right(4.0), wrong(2.0), right(1.0)]))
    pools = {(c, "g"): torch.stack([right(3.0), right(3.0)]) for c in range(3)}  # every sample right
    gain, se = L.pooling_gain(pools, rec, y, "g", [0, 1, 2])
    assert gain == pytest.approx(1.0 - 1.0)  # the three solutions average to right (mean 0.61)
    # leave one centre out: without 0 the solutions average to 0.43 (wrong), without 1 or 2 they are right;
    # replicates 1, 0, 0: mean 1/3, jackknife SE sqrt(2/3 * (4/9 + 1/9 + 1/9)) = 2/3
    assert se == pytest.approx(2 / 3)
    assert np.isnan(L.pooling_gain(pools, rec, y, "g", [0, 1])[1])  # two centres: no SE


def test_initial_checkpoint_is_the_weights_training_starts_from(cache):
    # at a negligible learning rate the epoch-1 snapshot is the init itself: a wrong seed would give
    # a cosine near 0 and different predictions
    cfg = TrainConfig(dataset="mnist1d", dataset_options={"n_samples": 600}, model="cnn1d", width=0.25,
                      members=2, epochs=1, batch_size=64, lr=1e-9, weight_decay=0.0, warmup_epochs=0,
                      snapshot_weights=True, track_predictions=50, device="cpu")
    rec = run(cfg)
    weights, probs = L.initial_checkpoint(rec)
    assert weights.shape == rec.weight_snapshots[:, 0].shape
    torch.testing.assert_close(weights, rec.weight_snapshots[:, 0].float(), atol=1e-6, rtol=0)
    assert probs.shape == rec.test_probs_trajectory[:, 0].shape
    torch.testing.assert_close(probs, rec.test_probs_trajectory[:, 0].float(), atol=2e-3, rtol=0)  # float16
    within = L.checkpoint_similarity(rec, member=1, initial=(weights, probs)).set_index(["a", "b"])
    assert within.loc[(0, 1), "cosine"] == pytest.approx(1.0, abs=1e-6)


def test_initial_checkpoint_refuses_spawned_children():
    config = dataclasses.asdict(TrainConfig(dataset="mnist1d", model="cnn1d", members=2, spawn_step=0))
    rec = SimpleNamespace(weight_snapshots=torch.zeros(2, 1, 3), test_probs_trajectory=torch.zeros(2, 1, 4, 10),
                          config=config, key="spawned")
    with pytest.raises(ValueError, match="parent"):
        L.initial_checkpoint(rec)
