"""Seeded, stratified subsets: few-shot training fractions and held-out test sets that keep every class present."""

import numpy as np

from .tasks import TaskLabels, multi_hot


def few_shot_indices(labels, fraction: float, seed: int, stratify: bool = True) -> np.ndarray:
    """Sorted indices of a seeded `fraction` of the examples (at least one), stratified where the labels allow.

    - 1-D integer labels (expression): per class, `round(fraction * count)` examples and at least one, so every class
      present in the data is present in the subset.
    - 2-D 0/1 labels (attributes, one column per attribute): multi-label sets cannot be split class by class, so
      every attribute first gets one positive and one negative example (greedy, rarest attribute first, examples
      drawn at random), and the rest of the `round(fraction * n)` examples are drawn uniformly at random.
    - Anything else (landmarks: (N, P, 2) points) or `stratify=False`: a uniform random subset.
    The same labels, fraction and seed always give the same indices.
    """
    if not 0.0 < float(fraction) <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}.")
    rng = np.random.default_rng(seed)
    array = np.asarray(labels)
    n = array.shape[0] if array.ndim else 0
    if n == 0:
        raise ValueError("few_shot_indices got no labels.")
    target = max(1, int(round(fraction * n)))
    if fraction >= 1.0:
        return np.arange(n)
    if not stratify or array.ndim not in (1, 2) or not np.issubdtype(array.dtype, np.number):
        return np.sort(rng.choice(n, size=target, replace=False))
    if array.ndim == 1:
        chosen = []
        for cls in np.unique(array):
            members = np.flatnonzero(array == cls)
            take = max(1, int(round(fraction * len(members))))
            chosen.append(rng.choice(members, size=min(take, len(members)), replace=False))
        return np.sort(np.concatenate(chosen))
    multi_hot = array.astype(bool)
    chosen: set[int] = set()
    for column in np.argsort(multi_hot.sum(axis=0), kind="stable"):
        for wanted in (True, False):
            have = [i for i in chosen if multi_hot[i, column] == wanted]
            pool = np.flatnonzero(multi_hot[:, column] == wanted)
            if not have and pool.size:
                chosen.add(int(rng.choice(pool)))
    rest = np.setdiff1d(np.arange(n), np.fromiter(chosen, dtype=np.int64, count=len(chosen)))
    extra = max(0, target - len(chosen))
    if extra:
        chosen.update(int(i) for i in rng.choice(rest, size=min(extra, rest.size), replace=False))
    return np.sort(np.fromiter(chosen, dtype=np.int64, count=len(chosen)))


def label_array(dataset, labels: TaskLabels) -> np.ndarray | None:
    """The labels as an array for splitting: class ids (N,), multi-hot (N, C), or the (N, P, 2) landmarks."""
    if labels.task == "expression":
        return np.asarray(dataset[labels.task], dtype=np.int64)
    if labels.task == "attributes":
        return multi_hot(dataset[labels.task], labels.num_labels)
    return np.asarray(dataset.with_format("numpy")[labels.task], dtype=np.float32)


def split_train_test(dataset, labels: TaskLabels, test_fraction: float, seed: int):
    """Hold out a seeded `test_fraction` (stratified like `few_shot_indices`) as the test set."""
    test_idx = few_shot_indices(label_array(dataset, labels), test_fraction, seed)
    train_idx = np.setdiff1d(np.arange(len(dataset)), test_idx)
    if not train_idx.size:
        raise ValueError(f"test_fraction {test_fraction} leaves no training examples out of {len(dataset)}.")
    return dataset.select(train_idx), dataset.select(test_idx)
