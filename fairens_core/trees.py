"""Homogeneous ensembles of decision trees (Ko et al. 2023, App. H, Table 3).

The paper's non-DNN control: trees of depth 10 on UCI Adult that differ only by scikit-learn's
`random_state`. With `max_features=None` every split considers every feature, in an order
the random state permutes; the state therefore only decides between splits that are exactly
equally good (e.g. the two complementary one-hot columns `sex=Female` / `sex=Male`), so the
members are expected to be nearly identical. `max_features="sqrt"` makes each split look at
a random subset of features, as a random forest's trees do (still without bootstrap).
"""

from __future__ import annotations

import torch

from .randomness import derive_seed


def train_tree_ensemble(dataset, members: int, max_depth: int = 10, seed: int = 0,
                        max_features=None) -> torch.Tensor:
    """(M, N_test, C) float32 class probabilities of `members` trees fitted on `dataset`.

    `dataset` is a classification `data.Dataset` with flat features (e.g. `load_dataset("adult")`).
    Member m is `DecisionTreeClassifier(max_depth, max_features, random_state=s_m)` with s_m
    derived from (`seed`, m), so a different `seed` is an independent repeat. A tree's
    probabilities are the class frequencies of the training examples in the leaf.
    """
    from sklearn.tree import DecisionTreeClassifier

    if dataset.task != "classification":
        raise ValueError(f"{dataset.name} is a {dataset.task} dataset; trees here are classifiers")
    x_train, y_train = dataset.x_train.flatten(1).numpy(), dataset.y_train.numpy()
    x_test = dataset.x_test.flatten(1).numpy()
    probs = torch.zeros(members, len(x_test), dataset.num_classes)
    for m in range(members):
        tree = DecisionTreeClassifier(max_depth=max_depth, max_features=max_features,
                                      random_state=derive_seed(seed, "tree", m) % 2**32)
        tree.fit(x_train, y_train)
        probs[m][:, tree.classes_] = torch.from_numpy(tree.predict_proba(x_test)).float()
    return probs
