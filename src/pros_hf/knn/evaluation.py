"""k-NN accuracy of a backbone on labelled `datasets`: label checks, and one stratified split that several models (e.g.
trained and random-init) are scored on."""

import logging
from collections.abc import Sequence

import numpy as np
import torch

from ..validation import check_k_temperature
from .classifier import knn_accuracy_from_features
from .features import check_image_column, extract_dataset_features

logger = logging.getLogger(__name__)


def _effective_k(k: int, num_train: int) -> int:
    """Small evaluation splits can hold fewer than ``k`` training examples: vote with all of them, and say so."""
    if k > num_train:
        logger.warning("k=%d is larger than the %d training examples; using k=%d.", k, num_train, num_train)
    return min(k, num_train)


def _labels_and_num_classes(dataset, label_column: str) -> tuple[torch.Tensor, int | None]:
    """Integer labels of a single-label column, and the class count a ``ClassLabel`` feature declares (else None)."""
    if label_column not in dataset.column_names:
        raise ValueError(f"label_column {label_column!r} is not a column of the dataset ({dataset.column_names}).")
    values = dataset[label_column]
    try:
        labels = np.asarray(values)
    except ValueError:  # ragged lists, e.g. a multi-label column
        labels = np.asarray([], dtype=object)
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise ValueError(
            f"label_column {label_column!r} must hold one integer label per example (k-NN is single-label), got "
            f"values like {values[:1]!r}."
        )
    feature = dataset.features.get(label_column)
    num_classes = getattr(feature, "num_classes", None)
    return torch.as_tensor(labels, dtype=torch.long), num_classes


def load_labelled_dataset(path: str, split: str = "train"):
    """A labelled set for k-NN from a `save_to_disk` folder: a `Dataset`, or the `split` of a `DatasetDict`."""
    import datasets

    try:
        loaded = datasets.load_from_disk(path)
    except FileNotFoundError as error:
        raise ValueError(f"{path!r} is not a dataset folder written by save_to_disk ({error}).") from None
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise ValueError(f"split {split!r} is not in the dataset at {path!r} (splits: {list(loaded)}).")
        loaded = loaded[split]
    return loaded


def stratified_split_indices(labels, test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Train / test indices with every class split in the same proportion (fixed ``seed``).

    Classes with a single example stay in train (a test example without any same-class neighbour only measures
    chance); otherwise each class puts ``round(test_fraction * n)`` of its ``n`` examples, at least 1 and at most
    ``n - 1``, in test. Raises ValueError when no class has 2 examples (nothing to query).
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}.")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = 0 if len(members) < 2 else min(max(1, round(test_fraction * len(members))), len(members) - 1)
        test.extend(members[:n_test])
        train.extend(members[n_test:])
    if not test:  # else an empty query set fails later with a message about its (empty) labels
        raise ValueError(
            f"the labelled set is too small to split into a k-NN memory bank and queries: {len(labels)} examples in "
            f"{len(np.unique(labels))} classes (test_fraction={test_fraction}); a query needs a class with at least 2 "
            "examples, one to query and one to find."
        )
    return np.sort(np.asarray(train, dtype=np.int64)), np.sort(np.asarray(test, dtype=np.int64))


def knn_accuracy(
    model: torch.nn.Module,
    train_dataset,
    test_dataset,
    label_column: str,
    k: int = 20,
    temperature: float = 0.07,
    image_processor=None,
    batch_size: int = 64,
    image_column: str = "image",
    device=None,
) -> dict[str, float]:
    """Weighted k-NN accuracy (percent) of ``model``'s CLS features for one label column of two datasets.

    Returns ``{"top1": ...}`` plus ``"top5"`` when the label has at least 5 classes.
    """
    check_k_temperature(k, temperature)
    check_image_column(train_dataset, image_column, "train_dataset")
    check_image_column(test_dataset, image_column, "test_dataset")
    train_labels, num_classes = _labels_and_num_classes(train_dataset, label_column)
    test_labels, _ = _labels_and_num_classes(test_dataset, label_column)
    common = dict(image_processor=image_processor, batch_size=batch_size, image_column=image_column, device=device)
    train = extract_dataset_features(model, train_dataset, name="train_dataset", **common)
    test = extract_dataset_features(model, test_dataset, name="test_dataset", **common)
    if num_classes is None:  # from every label, so that skipping an image cannot change the class count
        num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    return knn_accuracy_from_features(train.features, train_labels[train.kept], test.features, test_labels[test.kept],
                                      num_classes, k, temperature)  # fmt: skip


def evaluate_knn(
    model: torch.nn.Module,
    dataset,
    label_columns: Sequence[str] = ("expression", "identity"),
    test_fraction: float = 0.2,
    seed: int = 0,
    k: int = 20,
    temperature: float = 0.07,
    image_processor=None,
    batch_size: int = 64,
    image_column: str = "image",
    device=None,
    stratify_by: str | None = None,
    return_query_rows: bool = False,
) -> dict[str, float] | tuple[dict[str, float], np.ndarray]:
    """Split one labelled dataset (stratified on ``stratify_by``, default the first label column) and return
    ``{label: top-1 accuracy %}`` (with ``return_query_rows``, also the dataset rows of the queries scored, for
    counts and chance levels on exactly those).

    Features are extracted once and reused for every label column. The split depends only on ``seed`` and the
    labels, so two models (e.g. trained and random-init) are compared on the same examples. Images that cannot be
    decoded are left out of both sides of the split, and counted in a logged warning.
    """
    check_k_temperature(k, temperature)
    if isinstance(label_columns, str):
        label_columns = (label_columns,)
    if not label_columns:
        raise ValueError("label_columns must name at least one label column.")
    check_image_column(dataset, image_column)
    labels = {name: _labels_and_num_classes(dataset, name) for name in label_columns}
    stratify_by = stratify_by or label_columns[0]
    if stratify_by not in dataset.column_names:
        raise ValueError(f"stratify_by {stratify_by!r} is not a column of the dataset ({dataset.column_names}).")
    strata = labels[stratify_by][0] if stratify_by in labels else _labels_and_num_classes(dataset, stratify_by)[0]
    train_idx, test_idx = stratified_split_indices(strata.numpy(), test_fraction, seed)
    extracted = extract_dataset_features(model, dataset, image_processor=image_processor, batch_size=batch_size,
                                         image_column=image_column, device=device)  # fmt: skip
    train_rows = _decoded_rows(extracted.kept, train_idx, "memory bank")
    test_rows = _decoded_rows(extracted.kept, test_idx, "query")
    features, kept = extracted.features, torch.as_tensor(extracted.kept)
    results = {}
    for name, (values, num_classes) in labels.items():
        values = values[kept]
        if num_classes is None:  # from every label, so that skipping an image cannot change the class count
            num_classes = int(labels[name][0].max()) + 1
        k_used = _effective_k(k, len(train_rows))
        scores = knn_accuracy_from_features(
            features[train_rows],
            values[train_rows],
            features[test_rows],
            values[test_rows],
            num_classes,
            k_used,
            temperature,
        )
        results[name] = scores["top1"]
    if return_query_rows:
        return results, np.asarray(extracted.kept)[test_rows.numpy()]
    return results


def _decoded_rows(kept: np.ndarray, indices: np.ndarray, part: str) -> torch.Tensor:
    """Positions, among the decoded rows ``kept`` (sorted), of the dataset rows ``indices`` whose image decoded."""
    positions = np.searchsorted(kept, indices)
    found = positions < len(kept)
    found[found] = kept[positions[found]] == indices[found]
    if not found.any():
        raise ValueError(f"none of the {len(indices)} {part} images of the k-NN split could be decoded.")
    return torch.as_tensor(positions[found])
