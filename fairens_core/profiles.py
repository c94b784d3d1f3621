"""Profiles: the settings a chapter runs with when its parameters are left at None.

- `default`: embedded data (mnist1d, generated offline; scikit-learn's bundled sets) on a
  2-core CPU, each chapter in a few minutes (benchmarks/chapter_costs.json).
- `smoke`: the smallest run that exercises every code path (tests).
- `full`: CIFAR-10 on a GPU with the book's fast recipe (`fastcnn`, 10 epochs, bf16), sized so
  that the whole book's full profile trains in about 20 GPU-minutes on one H100-class GPU
  (`python -m fairens_core plan` lists every run and its cost).

A chapter calls `chapter_settings(name, profile, **parameters)`; every explicit (non-None)
parameter overrides the profile, and unknown names are an error. Every value is checked against
its spec (TrainConfig fields: config.SPECS; chapter knobs: KNOB_SPECS) and the chapter's rules
(check_knobs) before anything trains.
"""

from __future__ import annotations

import os
from types import SimpleNamespace

from .config import SPECS, TrainConfig
from .corruptions import CORRUPTIONS_1D, CORRUPTIONS_IMAGE, SEVERITIES, family
from .data import Dataset, load_dataset
from .models import check_input_shape
from .randomness import parse_vary
from .schema import Spec

PROFILES = ("default", "smoke", "full")

# Base training settings of each profile (fields of TrainConfig).
BASE = {
    # A one-cycle SGD recipe on mnist1d with 2,000 training signals (mnist1d's default 8,000 would put
    # members at the ceiling, ~95%). In 10 epochs a cnn1d member reaches ~74%, still climbing: Parts I,
    # III and IV train longer, to convergence (PART1_DEFAULT_TRAIN, _PART3, PART4_DEFAULT_TRAIN). Half
    # the signals are the test split (2,000, ~200 per class).
    "default": dict(dataset="mnist1d", dataset_options={"n_samples": 4000, "test_fraction": 0.5},
                    model="cnn1d", members=20, epochs=10, batch_size=64,
                    optimizer="nesterov", lr=0.1, momentum=0.9, weight_decay=5e-4,
                    schedule="triangular", warmup_epochs=2.5, device="cpu"),
    "smoke": dict(dataset="mnist1d", dataset_options={"n_samples": 1500}, model="cnn1d", width=0.5,
                  members=4, epochs=2, batch_size=64, optimizer="nesterov", lr=0.1,
                  schedule="triangular", warmup_epochs=0.5, device="cpu"),
    # The fast recipe: an airbench-class CNN (~0.24 GFLOP per image), one-cycle Nesterov SGD for 10
    # epochs at batch 512, label smoothing, crop + flip on the GPU, bf16, channels-last. Peak lr 0.8
    # was the best of 0.4 / 0.8 / 1.6 on a CPU proxy (width 0.25, 20k images, 8 epochs): untuned on GPU.
    "full": dict(dataset="cifar10_jpeg", model="fastcnn", members=20, epochs=10, batch_size=512,
                 optimizer="nesterov", lr=0.8, momentum=0.9, weight_decay=5e-4, schedule="triangular",
                 warmup_epochs=2, label_smoothing=0.2, augment=("crop", "flip"), device="auto",
                 precision="bf16", channels_last=True),
}

# Part I's default (FAIR-Ensemble): members trained to convergence (30 epochs: ~87 %, the bottom-3 classes
# ~77 %; at the base's 10 epochs they were still climbing, ~74 %) on the base's 2,000 training signals,
# tested on 8,000 (each class ~800 test examples): the claims compare gains of a few tenths of a point
# between class groups, which a 2,000-example test split cannot resolve (the bottom-k rise from 10 to 20
# members: SE 0.0032 over 3 pools, against 0.0007 with 8,000, the same training otherwise).
PART1_DEFAULT_TRAIN = dict(epochs=30, dataset_options={"n_samples": 10000, "test_fraction": 0.8})

# Part IV's full run keeps every epoch's weights: quarter-width fastcnn members (0.12M parameters)
# keep the shipped record small (5 members x 10 epochs x 0.5 MB).
PART4_FULL_TRAIN = dict(width=0.25, members=5, snapshot_weights=True, track_predictions=1000)
# Part IV's default keeps every epoch's weights and test predictions of 5 cnn1d members, and trains
# 40 epochs so that each run settles (see chapter similarity).
PART4_DEFAULT_TRAIN = dict(members=5, epochs=40, snapshot_weights=True, track_predictions=-1)

# Chapter knobs that are not training fields (pool sizes, K, draws, ...), per profile.
CHAPTERS: dict[str, dict[str, dict]] = {
    # Part I ch. 4: pools = [model, width, members] (None: the profile's members). The first
    # pool is chapter bottom_k's own (a cache hit); the others are cheap, weaker networks.
    "churn": {
        "default": dict(train=dict(PART1_DEFAULT_TRAIN), K=3, pairs=100,
                        pools=[["cnn1d", 1, None], ["cnn1d", 0.5, 10], ["cnn1d", 0.25, 10], ["mlp", 1, 10]]),
        "smoke": dict(K=2, pairs=100, pools=[["cnn1d", 0.5, None], ["cnn1d", 0.25, None], ["mlp", 1, None]]),
        "full": dict(K=3, pairs=100, pools=[["fastcnn", 1, None], ["fastcnn", 0.5, 10], ["fastcnn", 0.25, 10],
                                            ["small_cnn", 1, 10]]),
    },
    # Part I ch. 2: 10 MLPs on synthetic data with a 10% minority (a 50% test split leaves 500
    # minority test examples), jittered features (the tabular stand-in for CelebA's crops and flips,
    # so DA and All have a source of their own), the paper's five ablations x 3 seeds (~3 s each on a
    # CPU); Adult: the ablations of the paper's Table 2 (no augmentation, as the paper's MLP: All =
    # Init&BatchOrder), 3 short epochs; depth-10 trees;
    # BatchOrder and Init again at a quarter and four times the peak learning rate (12 runs, ~2 min),
    # and at a quarter and four times the batch size: the same 16-fold span of lr / batch, the scale
    # of SGD's gradient noise.
    "minority_groups": {
        "default": dict(
            train=dict(dataset="synthetic", dataset_options={"n_samples": 10000, "test_fraction": 0.5},
                       model="mlp", members=10, epochs=8, batch_size=256, augment=("jitter",)),
            attribute="group", label=None, ablations=["batch_order", "init", "augmentation", "init+batch_order", "all"],
            repeats=3, adult_train=dict(model="mlp", augment=(), epochs=3, batch_size=512, warmup_epochs=1),
            adult_ablations=["batch_order", "init", "init+batch_order", "all"], tree_depth=10,
            lr_factors=[0.25, 1, 4], batch_sizes=[64, 256, 1024]),
        "smoke": dict(
            train=dict(dataset="synthetic", dataset_options={"n_samples": 2000, "test_fraction": 0.5},
                       model="mlp", members=4, epochs=2, batch_size=256, augment=("jitter",)),
            attribute="group", label=None, ablations=["batch_order", "init", "init+batch_order", "all"],
            repeats=2, adult_train=dict(model="mlp", augment=(), epochs=1, batch_size=1024),
            adult_ablations=["init+batch_order"], tree_depth=6, lr_factors=[1, 4], batch_sizes=[64, 256]),
        # Paper scale (GPU): CelebA blond vs not, the protected subgroup blond males (§3.1), 20
        # ResNet-18s with crop/flip (so All and DA differ from Init&BatchOrder); Adult ablations.
        "full": dict(
            train=dict(dataset="celeba", dataset_options={"target": "Blond_Hair", "group": "Male"},
                       model="resnet18", members=20, epochs=15, batch_size=512, warmup_epochs=3),
            attribute="Male", label=1,
            ablations=["batch_order", "init", "augmentation", "init+batch_order", "all"], repeats=3,
            adult_train=dict(model="mlp", augment=(), precision="fp32", label_smoothing=0.0, epochs=20,
                             batch_size=512, lr=0.1, warmup_epochs=2),
            adult_ablations=["batch_order", "init", "init+batch_order", "all"], tree_depth=10,
            lr_factors=[0.25, 1, 4], batch_sizes=[128, 512, 2048]),
    },
    # Part II ch. 2: no training of its own (it reuses the ensembles of chapters diversity and
    # bottom_k); knobs of the L_beta grid, the free-prediction descent and the GAT check.
    "augmented_objective": {
        "default": dict(betas=[0, 0.25, 0.5, 0.75, 1, 1.25, 1.5], descent_betas=[0, 0.5, 1, 1.5, 2], steps=300,
                        lr=0.05, alphas=[0.25, 0.5, 1, 2, 4], sizes=[2, 3, 5, 10, 20]),
        "smoke": dict(betas=[0, 0.5, 1, 1.5], descent_betas=[0, 1, 2], steps=60, lr=0.05, alphas=[0.5, 1, 2],
                      sizes=[2, 5]),
        "full": dict(betas=[0, 0.25, 0.5, 0.75, 1, 1.25, 1.5], descent_betas=[0, 0.5, 1, 1.5, 2], steps=1000,
                     lr=0.05, alphas=[0.25, 0.5, 1, 2, 4], sizes=[2, 3, 5, 10, 20]),
    },
    # Part I ch. 5: one ensemble per source of randomness (vary), all with an augmentation to vary
    # and per-epoch predictions of the whole test set (trajectories). 6 x 5 cnn1d members by default.
    "randomness": {
        "default": dict(K=3, draws=100, train=dict(PART1_DEFAULT_TRAIN, members=5, augment=("shift",),
                                                   track_predictions=-1)),
        "smoke": dict(K=2, draws=10, train=dict(members=3, augment=("shift",), track_predictions=-1)),
        "full": dict(K=3, draws=100, train=dict(members=5, track_predictions=1000)),  # curves on 1,000 test images
    },
    # Part I ch. 3: chapter bottom_k's pools (the same `train` and base seeds, so cache hits) on corrupted
    # test inputs; `repeats` pools give the claims a standard error over training seeds.
    # corruptions None: all of the input's family; n_eval None: the whole test set.
    "corruption": {
        "default": dict(train=dict(PART1_DEFAULT_TRAIN), K=3, corruptions=None, severities=[1, 2, 3, 4, 5],
                        sizes=[1, 2, 3, 5, 10, 20], draws=50, n_eval=None, repeats=3),
        "smoke": dict(K=2, corruptions=["gaussian_noise", "shift"], severities=[1, 3, 5], sizes=[1, 2, 4],
                      draws=5, n_eval=None, repeats=3),
        "full": dict(K=3, corruptions=None, severities=[1, 2, 3, 4, 5], sizes=[1, 2, 3, 5, 10, 20],
                     draws=100, n_eval=2000, repeats=3),
    },
    # Part II ch. 4 (Jeffares et al. 2023, §6.1): L_beta MLP ensembles on tabular regression, members differing by
    # init only (beta > 0 shares batches; beta = 0 uses the same vary for a like-for-like grid), 10 runs per beta
    # as in the paper (App. F: "repeated for 10 runs"). 10 MLPs
    # of 32 units, the book's one-cycle SGD for 30 epochs (~3 s per ensemble on diabetes); Abalone
    # (abalone_train overrides) only where its file is present.
    "tabular_collusion": {
        "default": dict(train=dict(dataset="diabetes", dataset_options={}, model="mlp", width=0.25, members=10,
                                   epochs=30, batch_size=32, lr=0.02, weight_decay=1e-2, warmup_epochs=2,
                                   vary="init", save_weights=False),
                        betas=[0, 0.25, 0.5, 0.75, 0.9, 1], repeats=10, dropout_ps=[0.2, 0.4, 0.6],
                        dropout_repeats=100, abalone_train=dict(batch_size=128, epochs=15, warmup_epochs=1),
                        abalone_repeats=10),
        "smoke": dict(train=dict(dataset="diabetes", dataset_options={}, model="mlp", width=0.25, members=3,
                                 epochs=2, batch_size=32, lr=0.02, weight_decay=1e-2, warmup_epochs=0.5,
                                 vary="init", save_weights=False),
                      betas=[0, 0.9, 1], repeats=2, dropout_ps=[0.2, 0.4, 0.6], dropout_repeats=10,
                      abalone_train=dict(batch_size=512, epochs=1, warmup_epochs=0), abalone_repeats=0),
        "full": dict(train=dict(dataset="diabetes", dataset_options={}, model="mlp", width=0.25, members=10,
                                epochs=30, batch_size=32, optimizer="nesterov", lr=0.02, weight_decay=1e-2,
                                schedule="triangular", warmup_epochs=2, augment=(), label_smoothing=0.0,
                                precision="fp32", vary="init", save_weights=False),
                     betas=[round(0.1 * i, 1) for i in range(11)], repeats=10, dropout_ps=[0.2, 0.4, 0.6],
                     dropout_repeats=100, abalone_train=dict(batch_size=64, epochs=30, warmup_epochs=2),
                     abalone_repeats=10),
    },
    # Part II ch. 5 (Jeffares et al. 2023, §6.2, App. G.1): beta = 0 vs 1 trained with Adam at a constant learning
    # rate, per-epoch raw outputs on train and test (track_outputs=-1). Default: diabetes, 5 MLPs,
    # 60 epochs, 5 repeats; full: CIFAR-10, 5 half-width fastcnn members, 30 epochs, 3 repeats (the paper
    # trains 100 epochs with 6 repeats: ~25x the GPU time).
    "generalization": {
        "default": dict(train=dict(dataset="diabetes", dataset_options={}, model="mlp", width=0.5, members=5,
                                   epochs=60, batch_size=32, optimizer="adam", lr=1e-3, weight_decay=0.0,
                                   schedule="constant", warmup_epochs=0, vary="init", save_weights=False,
                                   track_outputs=-1),
                        betas=[0, 1], repeats=5, tail_epochs=10),
        "smoke": dict(train=dict(dataset="diabetes", dataset_options={}, model="mlp", width=0.25, members=2,
                                 epochs=3, batch_size=32, optimizer="adam", lr=1e-3, weight_decay=0.0,
                                 schedule="constant", warmup_epochs=0, vary="init", save_weights=False,
                                 track_outputs=-1),
                      betas=[0, 1], repeats=2, tail_epochs=2),
        "full": dict(train=dict(width=0.5, members=5, epochs=30, optimizer="adam", lr=1e-3, weight_decay=0.0,
                                schedule="constant", warmup_epochs=0, label_smoothing=0.0, vary="init",
                                save_weights=False, track_outputs=500),
                     betas=[0, 1], repeats=3, tail_epochs=5),
    },
    # Part II ch. 1: a small regression ensemble (its own `train`) next to chapter bottom_k's pool.
    "diversity": {
        "default": dict(train=dict(dataset="diabetes", model="mlp", width=0.5, members=5, epochs=10, batch_size=32,
                                   lr=0.02, weight_decay=1e-2, warmup_epochs=2),
                        hessian_members=5, hessian_examples=500),
        "smoke": dict(train=dict(dataset="diabetes", dataset_options={}, model="mlp", width=0.5, members=3,
                                 epochs=2, batch_size=32, lr=0.02, weight_decay=1e-2, warmup_epochs=0.5),
                      hessian_members=3, hessian_examples=100),
        "full": dict(train=dict(dataset="abalone", model="mlp", members=20, epochs=40, batch_size=64,
                                optimizer="adam", lr=1e-3, weight_decay=0.0, warmup_epochs=2, augment=(),
                                label_smoothing=0.0, precision="fp32"),
                     hessian_members=10, hessian_examples=2000),
    },
    # Part II ch. 3: the L_beta sweep (Jeffares et al. 2023, §3, §6.3, App. G.2-G.6). vary="init": joint training
    # needs every member on the same batches, so beta = 0 uses them too and differs from beta = 1 by the
    # objective alone. Per-epoch test predictions (track_predictions) give ensemble accuracy during
    # training (Fig. 6 right). At beta = 0 the objective ignores `combine`, so the score-averaging sweep
    # reuses the beta = 0 record. cnn_train (full only): Table 3's small CNN as a second sweep (App. G.4).
    # ~2.5 min of 2-core CPU by default (width 0.5, 20 epochs: independent members ~80%, an ensemble ~85%; at
    # 6 epochs, ~50%, joint training's larger effective model still helps it and collusion barely shows).
    # repeats: six seeds, the paper's six runs of Fig. 6 (§6.3; App. G.2-G.3 use three).
    "independent_vs_joint": {
        "default": dict(train=dict(width=0.5, members=5, epochs=20, warmup_epochs=1.5, vary="init",
                                   track_predictions=-1),
                        betas=[0, 0.2, 0.4, 0.6, 0.8, 1], score_betas=[0, 1], large_members=10,
                        large_betas=[0, 1], repeats=6, cnn_train=None),
        "smoke": dict(train=dict(members=3, epochs=2, warmup_epochs=0.5, vary="init", track_predictions=-1),
                      betas=[0, 0.5, 1], score_betas=[0, 1], large_members=4, large_betas=[0, 1], repeats=1,
                      cnn_train=None),
        "full": dict(train=dict(width=0.5, members=5, vary="init", label_smoothing=0.0, track_predictions=1000),
                     betas=[0, 0.2, 0.4, 0.6, 0.8, 1], score_betas=[0, 0.4, 0.8, 1], large_members=10,
                     large_betas=[0, 0.4, 0.8, 1], repeats=1,
                     cnn_train=dict(model="small_cnn", dropout=0.1, optimizer="adam", lr=1e-3, weight_decay=0.0,
                                    schedule="constant", precision="fp32")),
    },
    # Part II ch. 6: joint training (beta = 1) with learner dropout (Jeffares et al. 2023, App. G.7, Fig. 18), next to
    # its independent (beta = 0) reference, with chapter independent_vs_joint's `train`: its beta = 0 and
    # beta = 1 (p = 0) records are cache hits. Masks are drawn per example with a fixed share dropped,
    # as in the authors' code (learner_dropout_draw="example"). repeats: five seeds, the paper's five runs
    # of Fig. 18. ~2 min of 2-core CPU by default.
    "learner_dropout": {
        "default": dict(train=dict(width=0.5, members=5, epochs=20, warmup_epochs=1.5, vary="init",
                                   learner_dropout_draw="example", track_predictions=-1),
                        dropouts=[0, 0.2, 0.4, 0.6], repeats=5),
        "smoke": dict(train=dict(members=3, epochs=2, warmup_epochs=0.5, vary="init", learner_dropout_draw="example",
                                 track_predictions=-1),
                      dropouts=[0, 0.5], repeats=1),
        "full": dict(train=dict(width=0.5, members=5, vary="init", label_smoothing=0.0, learner_dropout_draw="example",
                                track_predictions=1000),
                     dropouts=[0, 0.2, 0.4, 0.6], repeats=1),
    },
    # Part V ch. 1 (Kondratyuk et al. 2020, §2.1, Fig. 1): one pool of `members` per width of one architecture; an
    # n-member ensemble is a sub-ensemble of its width's pool (all subsets when there are <= draws of
    # them). plateau_at: the size whose share of the pool's gain tests "diminishing returns". Default:
    # cnn1d at four widths on mnist1d, 20 epochs; full: fastcnn at four widths (0.016 to 0.97 GFLOP per
    # image) on CIFAR-10 (GPU). The paper's WRN-16-k family at 8 members would need ~160 PFLOP, 10x this.
    # epoch_sweep: the whole family again at each of these training lengths (None: not run). Measured
    # (2026-12-05): at the base's 10 epochs the narrow members are far from trained (width 0.25: 54 %)
    # and a step of width beats any narrow ensemble; at 30 the family saturates (widths 1 -> 2 add
    # +0.5 +- 0.6 pts), so the paper's premise that width pays no longer holds; 20 has both.
    "flops": {
        "default": dict(train=dict(members=8, epochs=20), widths=[0.25, 0.5, 1, 2], sizes=None, draws=100,
                        plateau_at=4, epoch_sweep=[10, 20, 30]),
        "smoke": dict(train=dict(members=3), widths=[0.25, 0.5], sizes=None, draws=10, plateau_at=2,
                      epoch_sweep=[1, 2]),
        "full": dict(train=dict(members=8), widths=[0.25, 0.5, 1, 2], sizes=None, draws=100, plateau_at=4,
                     epoch_sweep=None),
    },
    # Part IV ch. 1 (Fort et al. 2019, "Dissecting the Weight Space"): one run of `members` independent
    # inits with every epoch's weights and test predictions (shared by all Part IV chapters).
    # member: the run whose checkpoints are compared; late_fraction: within-run pairs are taken
    # among the checkpoints after this share of training. The default trains 40 epochs so that the
    # second half of each run settles into its solution (members ~87%); at the book's usual 10 the
    # late checkpoints are still moving and disagree as much as independent runs. ~1 min of CPU.
    "similarity": {
        "default": dict(train=dict(PART4_DEFAULT_TRAIN), member=0,
                        late_fraction=0.5),
        "smoke": dict(train=dict(members=3, epochs=3, snapshot_weights=True, track_predictions=-1), member=0,
                      late_fraction=0.5),
        "full": dict(train=dict(PART4_FULL_TRAIN), member=0,
                     late_fraction=0.5),
    },
    # Part IV ch. 4 (Fort et al. 2019, "Perturbating an already optimized solution"; Fort et al. §4-5): chapter
    # similarity's record (same `train`: a cache hit) plus one dropout run per rate (members=1).
    # samples: functions drawn per sampler setting around member `member`; *_scales: relative noise
    # levels (gaussian) or multipliers of the fitted standard deviation (diagonal, low_rank);
    # iterate_fraction: SWA-style iterates are the weight snapshots after this share of training;
    # rank: principal directions of the low-rank Gaussian; draws: random sub-ensembles per size.
    "subspace": {
        "default": dict(train=dict(PART4_DEFAULT_TRAIN), member=0, samples=10,
                        gaussian_scales=[0.02, 0.05, 0.1, 0.2, 0.3], diagonal_scales=[0.5, 1, 2, 4],
                        low_rank_scales=[0.5, 1, 2, 4], rank=2, iterate_fraction=0.5, dropout_rates=[0.1, 0.25, 0.5],
                        draws=20),
        "smoke": dict(train=dict(members=3, epochs=3, snapshot_weights=True, track_predictions=-1), member=0,
                      samples=3, gaussian_scales=[0.05, 0.2], diagonal_scales=[1], low_rank_scales=[1], rank=2,
                      iterate_fraction=0.5, dropout_rates=[0.25], draws=3),
        "full": dict(train=dict(PART4_FULL_TRAIN), member=0, samples=10,
                     gaussian_scales=[0.01, 0.02, 0.05, 0.1, 0.2], diagonal_scales=[0.5, 1, 2, 4],
                     low_rank_scales=[0.5, 1, 2, 4], rank=5, iterate_fraction=0.5, dropout_rates=[0.1, 0.25, 0.5],
                     draws=20),
    },
    # Part IV ch. 2 (Fort et al. 2019, "Different Initializations and Their Paths"; Fort et al. Fig. 3):
    # chapter similarity's record (a cache hit); the first `runs` members' per-epoch softmax
    # outputs on the first `examples` test examples, embedded jointly with t-SNE (openTSNE),
    # together with `samples` Gaussian perturbations (relative scale `sample_scale`) of each final
    # solution. perplexity None: 30, lowered for few points.
    "function_space_tsne": {
        "default": dict(train=dict(PART4_DEFAULT_TRAIN), runs=3, examples=500,
                        samples=5, sample_scale=0.1, perplexity=None),
        "smoke": dict(train=dict(members=3, epochs=3, snapshot_weights=True, track_predictions=-1), runs=3,
                      examples=100, samples=2, sample_scale=0.1, perplexity=None),
        "full": dict(train=dict(PART4_FULL_TRAIN), runs=3, examples=1000,
                     samples=5, sample_scale=0.05, perplexity=None),
    },
    # Part IV ch. 3 (Fort et al. 2019, "Intrinsic Hardness as a Function of Initialization"): chapter
    # similarity's record (a cache hit); per-epoch confusion matrices of the first `runs` members
    # and the overlap of their `hardest` highest-loss test examples.
    "hardness": {
        "default": dict(train=dict(PART4_DEFAULT_TRAIN), runs=3, hardest=100),
        "smoke": dict(train=dict(members=3, epochs=3, snapshot_weights=True, track_predictions=-1), runs=3,
                      hardest=20),
        "full": dict(train=dict(PART4_FULL_TRAIN), runs=3, hardest=100),
    },
    # difficulty_sizes: mnist1d's n_samples for the map of gains over task difficulty (one pool each;
    # the default's own 10,000 among them, 80 % of each held out for testing: 1,000 to 5,000 training
    # signals); the full profile's CIFAR data has no such knob.
    # large_members: the pools of the paper's App. D (Fig. 17), `repeats` of them; not at full scale
    # (150 more GPU members).
    "bottom_k": {
        "default": dict(train=dict(PART1_DEFAULT_TRAIN), K=3, ks=[1, 2, 3, 4, 5], draws=100,
                        difficulty_sizes=[5000, 10000, 25000], large_members=50),
        "smoke": dict(K=2, ks=[1, 2], draws=10, difficulty_sizes=[1000, 1500], large_members=6),
        "full": dict(K=3, ks=[1, 2, 3, 4, 5], draws=100, difficulty_sizes=[], large_members=0),
    },
}


# Part III (the coupling paper, coupling and re-initialisation). The four chapters train with one recipe,
# so they share records: half-width cnn1d_bn members (with batch norm, as the paper's ResNet-20s), 80 epochs
# on mnist1d (members ~94%, near convergence, as the paper's ResNet-20s are; a child given T more steps
# after the fork is otherwise simply better trained: with cnn1d, at 10 epochs (~62%) extended training
# looks like it restores the gain, and at 40 (~92%) the coupled-to-T/4 children, trained T more steps,
# made an ensemble above the no-coupling one, leaving re-initialisation nothing to restore; measured
# 2026-12-05: members 91.7 / 93.6 / 94.4% at 40 / 80 / 120 epochs, and at 80 the children coupled to
# T/4 ensemble 0.7 pts below no coupling), with a cosine schedule
# after a one-epoch warm-up (like the paper's step schedule, and unlike the book's one-cycle recipe,
# the learning rate is high from the first epochs on, and the parent has learned before the earliest
# fork at T/32 = 2.5 epochs). Without batch norm this recipe was unstable at lr 0.1 (measured
# 2026-12-05, members' and children's accuracies only, 3 seeds): with a 0.5-epoch warm-up children
# re-initialised from the input at T/4 ended at 9.4-87 % (one at chance), with 1 epoch they recovered
# (87.6-95 %) but members of ordinary runs fell to 78-80 %; cnn1d_bn's 60 members and children of the
# same probe (no coupling, coupled at 0, re-initialised from the input or whole at T/4) all ended
# at 93.0-95.6 %. Every epoch's test predictions are kept (forgetting events). Spawn times are fractions
# of the T training steps: 0 (shared init only), log-spaced from T/32 to T/2, and 3T/4. K: ensemble size.
# Default: 5 members per condition, ~15 s of 2 CPU cores per ensemble. Full: half-width fastcnn on
# CIFAR-10 (GPU; the paper uses ResNet-20), without label smoothing (the chapters measure calibration).
_PART3 = {
    # random shifts: after the fork children differ in augmentation as well as batch order (the
    # paper's CIFAR recipe augments); mnist1d's default recipe has no augmentation otherwise
    "default": dict(train=dict(model="cnn1d_bn", width=0.5, members=5, epochs=80, schedule="cosine",
                               warmup_epochs=1, augment=("shift",), track_predictions=-1),
                    spawn_fractions=[0, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 3 / 4], K=5),
    "smoke": dict(train=dict(model="cnn1d_bn", members=3, schedule="cosine", warmup_epochs=0.5,
                             augment=("shift",), track_predictions=-1),
                  spawn_fractions=[0, 1 / 4, 1 / 2], K=3),
    "full": dict(train=dict(width=0.5, members=5, schedule="cosine", warmup_epochs=1, label_smoothing=0.0,
                            track_predictions=1000),
                 spawn_fractions=[0, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 3 / 4], K=5),
}
CHAPTERS.update({
    # Part III ch. 1 (§1-2, Fig. 1a-d, 2): no-coupling, coupled-order, coupled-to-t and
    # coupled-to-t-reset at every spawn time; draws: K-subsets averaged when members > K.
    # second_model_train: TrainConfig overrides of a second kind of network for the core comparison
    # (the paper: "similar results" with a ResNet-50 and a vision transformer); an MLP of two hidden
    # layers on mnist1d; not at full scale (no room in the GPU plan yet).
    "coupling": {p: dict(_PART3[p], draws=20, second_model_train=dict(model="mlp", width=1) if p != "full" else None)
                 for p in PROFILES},
    # Part III ch. 2 (Fig. 1e-f): symmetric KL between the children of one parent (chapter
    # coupling's coupled-to-t-reset records) and between ensembles of `parents` different parents
    # (seeds seed, seed + 1, ...: one more set of coupled-to-t-reset records per parent).
    "function_space": {p: dict(_PART3[p], parents=2) for p in PROFILES},
    # Part III ch. 3 (§2.1, Fig. 1g-h): forgetting_train overrides the recipe for one run of
    # many members that differ only in their batch order, with a step schedule (lr x0.1 at 50%
    # and 75% of training) to show its drops; Fig. 1h reuses chapter coupling's reset records.
    # Default 40 epochs: at 20 the constant phase (10 epochs) ended while the events were still
    # falling from their peak (-26 % over its last six epochs); at 40 they level off (-4 %).
    "forgetting": {
        "default": dict(_PART3["default"], forgetting_train=dict(members=10, vary="batch_order", epochs=40,
                                                                 schedule="multistep", warmup_epochs=1)),
        "smoke": dict(_PART3["smoke"], forgetting_train=dict(members=3, vary="batch_order", epochs=3,
                                                             schedule="multistep", warmup_epochs=0.5)),
        "full": dict(_PART3["full"], forgetting_train=dict(members=10, vary="batch_order", epochs=20,
                                                           schedule="multistep", warmup_epochs=1)),
    },
    # Part III ch. 4 (§3, Fig. 1i-j, 3): children spawned at reinit_spawn (a fraction of training,
    # one of the spawn_fractions, so that the no-re-init record is chapter coupling's) with a
    # share of the parameters re-initialised from the input or the output side. fractions None:
    # every layer boundary of the model (cnn1d_bn has four: a batch norm joins its convolution);
    # pairs: child pairs whose linear path is evaluated at `alphas` points.
    "reinit": {
        "default": dict(_PART3["default"], reinit_spawn=1 / 4, fractions=None, pairs=2, alphas=11, repeats=3),
        "smoke": dict(_PART3["smoke"], reinit_spawn=1 / 4, fractions=None, pairs=1, alphas=5, repeats=1),
        # one seed at full scale: the GPU plan (benchmarks/plans/full.jsonl) has no room for three yet
        "full": dict(_PART3["full"], reinit_spawn=1 / 4, fractions=[0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0], pairs=2,
                     alphas=11, repeats=1),
    },
})


# What each chapter knob may be (schema.Spec); chapter_settings checks every knob, explicit or
# from the profile, then the rules that tie knobs to the training config (check_knobs).
_COUNT = Spec("int", low=1)
_COUNT_OR_ZERO = Spec("int", low=0)
_POSITIVE = Spec("float", low=0, low_open=True)
_POSITIVES = Spec("list", item=_POSITIVE, min_items=1)
_CLASS_K = Spec("int", low=1, note="(classes per group: at most the dataset's number of classes)")
_ENSEMBLE_K = Spec("int", low=1, note="(ensemble size: at most members)")
_BETAS = Spec("list", item=Spec("float", low=0), min_items=1)
_ABLATIONS = Spec("list", item=Spec("str"), min_items=1, note="(presets of randomness.VARY_PRESETS)")
_OVERRIDES = Spec("dict", note="(TrainConfig fields)")
_SHARE_BELOW_ONE = Spec("float", low=0, high=1, high_open=True)
_RATES = Spec("list", item=Spec("float", low=0, high=1, low_open=True, high_open=True), min_items=1)
_PART3_SPECS = dict(spawn_fractions=Spec("list", item=_SHARE_BELOW_ONE, min_items=1), K=_ENSEMBLE_K)

KNOB_SPECS: dict[str, dict[str, Spec]] = {
    "churn": dict(K=_CLASS_K, pairs=_COUNT, pools=Spec("list", min_items=1, item=Spec("list", fields=(
        SPECS["model"], SPECS["width"], Spec("int", low=2, optional=True))))),
    "minority_groups": dict(attribute=Spec("str", note="(a protected attribute of the dataset)"),
                            label=Spec("int", low=0, optional=True), ablations=_ABLATIONS, repeats=_COUNT,
                            adult_train=_OVERRIDES, adult_ablations=_ABLATIONS, tree_depth=_COUNT,
                            lr_factors=Spec("list", item=_POSITIVE, note="([]: no learning-rate sweep)"),
                            batch_sizes=Spec("list", item=_COUNT, note="([]: no batch-size sweep)")),
    "augmented_objective": dict(betas=_BETAS, descent_betas=_BETAS, steps=_COUNT, lr=_POSITIVE, alphas=_POSITIVES,
                                sizes=Spec("list", item=Spec("int", low=2), min_items=1)),
    "randomness": dict(K=_CLASS_K, draws=_COUNT),
    "corruption": dict(K=_CLASS_K, draws=_COUNT, sizes=Spec("list", item=_COUNT, min_items=1),
                       corruptions=Spec("list", min_items=1, optional=True, item=Spec(
                           "str", choices=CORRUPTIONS_IMAGE + tuple(c for c in CORRUPTIONS_1D
                                                                    if c not in CORRUPTIONS_IMAGE))),
                       severities=Spec("list", item=Spec("int", choices=SEVERITIES), min_items=1),
                       n_eval=Spec("int", low=1, optional=True),
                       repeats=Spec("int", low=1, note="(pools with base seeds seed, seed + 1, ...)")),
    "tabular_collusion": dict(betas=_BETAS, repeats=_COUNT, dropout_ps=_RATES, dropout_repeats=_COUNT,
                              abalone_train=_OVERRIDES, abalone_repeats=_COUNT_OR_ZERO),
    "generalization": dict(betas=Spec("list", item=Spec("float", low=0), min_items=2, max_items=2,
                                      note="([independent, joint])"),
                           repeats=_COUNT, tail_epochs=Spec("int", low=1, note="(at most epochs)")),
    "diversity": dict(hessian_members=Spec("int", low=1, note="(at most members)"), hessian_examples=_COUNT),
    "independent_vs_joint": dict(betas=_BETAS, score_betas=_BETAS, large_members=Spec("int", low=2),
                                 large_betas=_BETAS, repeats=_COUNT, cnn_train=Spec("dict", optional=True)),
    "learner_dropout": dict(dropouts=Spec("list", item=_SHARE_BELOW_ONE, min_items=1), repeats=_COUNT),
    "flops": dict(widths=_POSITIVES, sizes=Spec("list", item=_COUNT, min_items=1, optional=True,
                                                note="(at most members, including 1)"),
                  draws=_COUNT, plateau_at=Spec("int", low=2, note="(at most members)"),
                  epoch_sweep=Spec("list", item=_COUNT, min_items=2, optional=True,
                                   note="(training lengths of the whole family; None: no sweep)")),
    "similarity": dict(member=Spec("int", low=0, note="(below members)"), late_fraction=_SHARE_BELOW_ONE),
    "subspace": dict(member=Spec("int", low=0, note="(below members)"), samples=_COUNT,
                     gaussian_scales=_POSITIVES, diagonal_scales=_POSITIVES, low_rank_scales=_POSITIVES,
                     rank=_COUNT, iterate_fraction=_SHARE_BELOW_ONE, dropout_rates=_RATES, draws=_COUNT),
    "function_space_tsne": dict(runs=Spec("int", low=2, note="(at most members)"), examples=_COUNT,
                                samples=_COUNT_OR_ZERO, sample_scale=_POSITIVE,
                                perplexity=Spec("float", low=0, low_open=True, optional=True)),
    "hardness": dict(runs=Spec("int", low=2, note="(at most members)"), hardest=_COUNT),
    "bottom_k": dict(K=_CLASS_K, ks=Spec("list", item=_CLASS_K, min_items=1), draws=_COUNT,
                     difficulty_sizes=Spec("list", item=Spec("int", low=100),
                                           note="(mnist1d's n_samples, one pool each; []: no map)"),
                     large_members=Spec("int", low=0, note="(more than members; 0: no larger pools)")),
    "coupling": dict(_PART3_SPECS, draws=_COUNT,
                     second_model_train=Spec("dict", optional=True, note="(TrainConfig overrides; None: not run)")),
    "function_space": dict(_PART3_SPECS, parents=Spec("int", low=2)),
    "forgetting": dict(_PART3_SPECS, forgetting_train=_OVERRIDES),
    "reinit": dict(_PART3_SPECS, reinit_spawn=_SHARE_BELOW_ONE, pairs=_COUNT, alphas=Spec("int", low=2), repeats=_COUNT,
                   fractions=Spec("list", min_items=1, optional=True,
                                  item=Spec("float", low=0, high=1, low_open=True))),
}

# Datasets generated or bundled (loaded in well under a second once cached), and a reader's own
# table: loaded to count their classes, list their protected attributes and check that the model
# takes their inputs. The others are counted without reading their files.
LOADED_TO_CHECK = ("mnist1d", "digits", "synthetic", "diabetes", "csv")
CLASSES = {"cifar10": 10, "cifar10_jpeg": 10, "svhn": 10, "tinyimagenet": 200, "celeba": 2, "adult": 2,
           "abalone": 1}


def _loaded_to_check(config: TrainConfig, loaded: dict) -> Dataset:
    """The config's dataset, one of LOADED_TO_CHECK; `loaded` keeps the datasets already read, so
    that the checks of one chapter read a reader's table once."""
    key = (config.dataset, str(config.data_root), repr(sorted(config.dataset_options.items())))
    if key not in loaded:
        loaded[key] = load_dataset(config.dataset, config.data_root, **config.dataset_options)
    return loaded[key]


def dataset_facts(config: TrainConfig, loaded: dict | None = None) -> tuple[int | None, set[str] | None]:
    """(number of classes, protected attributes) of the config's dataset; None where unknown."""
    options = config.dataset_options
    if config.dataset in LOADED_TO_CHECK:
        data = _loaded_to_check(config, {} if loaded is None else loaded)
        return data.num_classes, set(data.group_names)
    if config.dataset == "cifar100":
        return (20 if options.get("label") == "coarse" else 100), set()
    if config.dataset == "celeba":
        return 2, {options.get("group", "Male")}
    if config.dataset == "adult":
        return 2, {"race", "sex"}
    return CLASSES.get(config.dataset), (set() if config.dataset in CLASSES else None)


def _model_takes_inputs(name: str, value, config: TrainConfig, loaded: dict) -> None:
    """The config's model must take one input of its dataset (checked for the datasets that are
    loaded to check); ValueError naming the knob, before anything trains."""
    if config.dataset not in LOADED_TO_CHECK:
        return
    shape = _loaded_to_check(config, loaded).input_shape
    try:
        check_input_shape(config.model, shape)
    except ValueError as err:
        raise ValueError(f"{name}={value!r} on dataset {config.dataset!r}: {err}") from None


def _corruptible(config: TrainConfig, loaded: dict) -> None:
    """The corruption chapter needs images or 1-D signals (`corruptions.family`); tables have neither."""
    if config.dataset in ("adult", "abalone", "csv"):
        raise ValueError(f"dataset={config.dataset!r}: the corruptions take images or 1-D signals, not table rows")
    if config.dataset in LOADED_TO_CHECK:
        try:
            family(_loaded_to_check(config, loaded).x_test[:1])
        except ValueError as err:
            raise ValueError(f"dataset={config.dataset!r}: {err}") from None


def _at_most(name: str, value, limit: int, what: str) -> None:
    if value > limit:
        raise ValueError(f"{name}={value!r}: must be at most {what}={limit}")


def _trainable(name: str, value, base: TrainConfig, **changes) -> None:
    """A knob that sets training fields must give a valid config; the error names the knob."""
    try:
        base.replace(**changes).validate()
    except ValueError as err:
        raise ValueError(f"{name}={value!r}: {err}") from None


def _overrides(name: str, overrides: dict, base: TrainConfig, loaded: dict, **fixed) -> None:
    """A dict knob of TrainConfig overrides must name fields and give a valid config."""
    unknown = sorted(set(overrides) - set(SPECS))
    if unknown:
        raise ValueError(f"{name}={overrides!r}: unknown TrainConfig field(s) {unknown}")
    _trainable(name, overrides, base, **fixed, **overrides)
    _model_takes_inputs(name, overrides, base.replace(**fixed, **overrides), loaded)


def check_knobs(chapter: str, knobs: dict, config: TrainConfig) -> None:
    """The rules that tie a chapter's knobs to its training config; ValueError naming the knob."""
    if chapter != "augmented_objective" and config.members < 2:  # it trains nothing of its own
        raise ValueError(f"members={config.members!r}: chapter {chapter!r} compares members: at least 2")
    members = config.members
    loaded = {}  # the datasets read so far, each read once
    if knobs.get("pools"):  # the pools name the models trained; the config's own is not
        for model, width, _ in knobs["pools"]:
            _model_takes_inputs("pools", knobs["pools"], config.replace(model=model, width=width), loaded)
    else:
        _model_takes_inputs("model", config.model, config, loaded)
    if chapter == "corruption":
        _corruptible(config, loaded)
    class_k = KNOB_SPECS[chapter].get("K") is _CLASS_K  # Part I: K classes per group (Part III: members)
    if class_k or any(name in knobs for name in ("ks", "label", "attribute")):
        classes, attributes = dataset_facts(config, loaded)
        if classes is not None:
            if class_k:
                _at_most("K", knobs["K"], classes, f"the number of classes of {config.dataset}")
            if max(knobs.get("ks", [0])) > classes:
                raise ValueError(f"ks={knobs['ks']!r}: every K must be at most the number of classes of "
                                 f"{config.dataset}={classes}")
            if knobs.get("label") is not None and knobs["label"] >= classes:
                raise ValueError(f"label={knobs['label']!r}: a class of {config.dataset}, 0 to {classes - 1}")
        if attributes is not None and "attribute" in knobs and knobs["attribute"] not in attributes:
            raise ValueError(f"attribute={knobs['attribute']!r}: {config.dataset} has the protected "
                             f"attribute(s) {sorted(attributes)}")
    if "K" in knobs and not class_k:
        _at_most("K", knobs["K"], members, "members")
    for name in ("ablations", "adult_ablations"):
        for vary in knobs.get(name, []):
            try:
                parse_vary(vary)
            except ValueError as err:
                raise ValueError(f"{name}={knobs[name]!r}: {err}") from None
    for name in ("runs", "hessian_members", "plateau_at"):
        if name in knobs:
            _at_most(name, knobs[name], members, "members")
    if "member" in knobs and knobs["member"] >= members:
        raise ValueError(f"member={knobs['member']!r}: a member index, 0 to members - 1 = {members - 1}")
    if "tail_epochs" in knobs:
        _at_most("tail_epochs", knobs["tail_epochs"], config.epochs, "epochs")
    if chapter == "bottom_k" and knobs["large_members"] and knobs["large_members"] <= members:
        raise ValueError(f"large_members={knobs['large_members']!r}: the larger pools need more than "
                         f"members={members} members (0: no larger pools)")
    if chapter == "reinit":
        _at_most("pairs", knobs["pairs"], members * (members - 1) // 2, "the child pairs of members")
    if chapter == "flops" and knobs["sizes"] is not None:
        sizes = knobs["sizes"]
        if 1 not in sizes or knobs["plateau_at"] not in sizes or max(sizes) > members:
            raise ValueError(f"sizes={sizes!r}: ensemble sizes of at most members={members}, including 1 and "
                             f"plateau_at={knobs['plateau_at']}")
    for name, fixed in (("adult_train", dict(dataset="adult", dataset_options={})),
                        ("abalone_train", dict(dataset="abalone", dataset_options={})),
                        ("forgetting_train", {}), ("cnn_train", {}), ("second_model_train", {})):
        if knobs.get(name):
            _overrides(name, knobs[name], config, loaded, **fixed)
    if chapter in ("tabular_collusion", "generalization", "independent_vs_joint"):
        for beta in knobs["betas"]:
            _trainable("betas", knobs["betas"], config, beta=beta)
    if chapter == "independent_vs_joint":
        for beta in knobs["large_betas"]:
            _trainable("large_betas", knobs["large_betas"], config, beta=beta, members=knobs["large_members"])
        for beta in knobs["score_betas"]:  # at beta = 0 the objective ignores combine: that run is the default's
            _trainable("score_betas", knobs["score_betas"], config, beta=beta,
                       combine="score" if beta else config.combine)
    if chapter == "learner_dropout":  # every rate trains a joint (beta = 1) ensemble
        for rate in knobs["dropouts"]:
            _trainable("dropouts", knobs["dropouts"], config, beta=1.0, learner_dropout=rate)


# Where and how members run (never part of a record's identity), settable for a whole book
# run from the environment, e.g. FAIRENS_EXECUTOR=ray FAIRENS_MAX_GROUP=5 (see book/howto.md).
EXECUTION_ENVIRONMENT = {"executor": "FAIRENS_EXECUTOR", "max_group": "FAIRENS_MAX_GROUP"}


def execution_from_environment() -> dict:
    """TrainConfig execution fields given by environment variables (EXECUTION_ENVIRONMENT)."""
    return {field: SPECS[field].check(f"${variable}", os.environ[variable])
            for field, variable in EXECUTION_ENVIRONMENT.items() if os.environ.get(variable)}


def chapter_settings(chapter: str | None, profile: str = "default", **parameters) -> SimpleNamespace:
    """Resolve a chapter's settings: profile defaults, then explicit parameters.

    Returns a namespace with `config` (a validated TrainConfig) and every chapter knob, checked
    and parsed (papermill hands `-p ks "[2, 3]"` over as text). Parameters that are None keep
    the profile's value; names that are neither TrainConfig fields nor knobs of this chapter,
    and values their spec or the chapter's rules reject, raise ValueError naming the parameter,
    before anything trains. A `dataset` other than the profile's drops the profile's
    `dataset_options` (they belong to its dataset) unless `dataset_options` is given too.
    """
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r} is not allowed; choose one of {list(PROFILES)}")
    if chapter is not None and chapter not in CHAPTERS:
        raise ValueError(f"chapter={chapter!r} is not allowed; choose one of {sorted(CHAPTERS)} or None")
    knobs = dict(CHAPTERS[chapter][profile]) if chapter else {}
    train = dict(BASE[profile])
    chapter_train = knobs.pop("train", {})
    if chapter_train.get("dataset", train["dataset"]) != train["dataset"]:
        train["dataset_options"] = {}  # the base's options belong to the base's dataset
    train.update(chapter_train)
    train.update(execution_from_environment())
    profile_dataset = train["dataset"]
    fields = set(TrainConfig.__dataclass_fields__)
    given = {name: value for name, value in parameters.items() if value is not None}
    for name, value in given.items():
        if name in knobs:
            knobs[name] = value
        elif name in fields:
            train[name] = value
        else:
            raise ValueError(f"unknown parameter {name!r} for chapter {chapter!r}; "
                             f"allowed: {sorted(set(knobs) | fields)}")
    if "dataset_options" not in given and train["dataset"] != profile_dataset:
        train["dataset_options"] = {}
    config = TrainConfig(**train).validate()
    if chapter:
        knobs = {name: KNOB_SPECS[chapter][name].check(name, value) for name, value in knobs.items()}
        if chapter == "bottom_k" and "large_members" not in given and knobs["large_members"] <= config.members:
            knobs["large_members"] = 0  # the profile's larger pools would be no larger than this pool
        check_knobs(chapter, knobs, config)
    return SimpleNamespace(config=config, profile=profile, **knobs)
