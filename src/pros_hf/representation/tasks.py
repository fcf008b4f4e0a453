"""The downstream tasks a face representation is judged on, read from a labelled dataset.

Each task says what its labels are (the dataset column and the kind of target), how a probe scores them (the metric
and its direction) and which frozen features a probe reads:

- expression: one of 7 classes, accuracy, on the pooled features (CLS + mean patch token, as DINOv2's linear probe);
- attributes: a 0/1 vector (present attribute ids, or a multi-hot vector), mean accuracy over attributes, pooled;
- landmarks: (N, 2) points in pixels, inter-ocular NME (outer eye corners 36/45 of the 68-point layout; lower is
  better), read from the CLS and every patch token: a point's position is spatial, and a linear map from the token
  grid is the linear readout of it (DINOv2 probes dense tasks on patch tokens);
- identity: the person, scored on people the backbone never saw: half of each test person's images form the
  gallery (the probe's training set, or the k-NN memory bank) and the other half the queries; top-1 accuracy.

The floor of each task is what its labels alone predict, without looking at an image: the majority class, each
attribute's majority value, the mean face shape, the most frequent person of the gallery.
"""

from dataclasses import dataclass

import numpy as np
import torch

TASK_NAMES = ("expression", "attributes", "landmarks", "identity")
FEATURE_VIEWS = ("pooled", "tokens")


@dataclass(frozen=True)
class RepresentationTask:
    """One task of the representation protocols (see the module docstring)."""

    name: str
    column: str
    kind: str  # "single_label", "multi_label" or "regression" (pros_hf.representation.linear_probe.TARGET_KINDS)
    metric: str
    higher_is_better: bool
    features: str  # "pooled" or "tokens"
    held_out_people: bool = False  # scored within the test people: gallery / queries


TASKS = {
    "expression": RepresentationTask("expression", "expression", "single_label", "accuracy", True, "pooled"),
    "attributes": RepresentationTask("attributes", "attributes", "multi_label", "mean_accuracy", True, "pooled"),
    "landmarks": RepresentationTask("landmarks", "landmarks", "regression", "nme_inter_ocular", False, "tokens"),
    "identity": RepresentationTask(
        "identity", "identity", "single_label", "top1_accuracy", True, "pooled", held_out_people=True
    ),
}


def get_tasks(names) -> list[RepresentationTask]:
    names = list(names)
    unknown = [name for name in names if name not in TASKS]
    if unknown or not names:
        raise ValueError(f"tasks must be a non-empty list from {list(TASK_NAMES)}, got {names!r}.")
    return [TASKS[name] for name in names]


def landmark_nme(predictions: torch.Tensor, targets: torch.Tensor, left: int = 36, right: int = 45) -> float:
    """Mean over images of the mean point error divided by the inter-ocular distance (outer eye corners), for
    flattened (N, 2P) or (N, P, 2) coordinates in any common unit."""
    pred = torch.as_tensor(predictions, dtype=torch.float64).reshape(len(predictions), -1, 2)
    true = torch.as_tensor(targets, dtype=torch.float64).reshape(len(targets), -1, 2)
    distance = (true[:, left] - true[:, right]).norm(dim=1).clamp_min(1e-12)
    return float(((pred - true).norm(dim=2).mean(dim=1) / distance).mean())


def task_targets(
    task: RepresentationTask, column, image_sizes: np.ndarray | None = None, num_attributes: int | None = None
) -> torch.Tensor:
    """The column's labels as a probe's targets: class ids (long), 0/1 rows (float) or landmarks flattened to
    (N, 2P) and normalised by each image's (width, height) as `normalize_landmarks` does (pixel centres at
    integers: `u = (x + 0.5) / width`), so that images of any size share one frame and a flip is `u -> 1 - u`."""
    if task.kind == "single_label":
        values = np.asarray(column)
        if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
            raise ValueError(f"the {task.column!r} column must hold one integer class id per image.")
        return torch.from_numpy(values.astype(np.int64))
    if task.kind == "multi_label":
        rows = list(column)
        if (
            rows
            and np.asarray(rows[0]).ndim == 1
            and num_attributes is not None
            and len(rows[0]) == num_attributes
            and set(np.unique(np.asarray(rows))) <= {0, 1}
        ):
            return torch.as_tensor(np.asarray(rows, dtype=np.float32))
        if num_attributes is None:
            raise ValueError(f"the {task.column!r} column holds attribute ids: num_attributes is needed.")
        out = np.zeros((len(rows), num_attributes), np.float32)
        for i, ids in enumerate(rows):
            ids = list(ids)
            if any(not 0 <= int(j) < num_attributes for j in ids):
                raise ValueError(f"row {i} of {task.column!r}: attribute ids must be in [0, {num_attributes}).")
            out[i, ids] = 1.0
        return torch.from_numpy(out)
    points = np.asarray(column, dtype=np.float32)
    if points.ndim == 2 and points.shape[1] % 2 == 0:
        points = points.reshape(len(points), -1, 2)
    if points.ndim != 3 or points.shape[2] != 2:
        raise ValueError(f"the {task.column!r} column must hold (N, 2) points per image, got shape {points.shape}.")
    if image_sizes is not None:
        points = (points + 0.5) / np.asarray(image_sizes, np.float32)[:, None, :]
    return torch.from_numpy(points.reshape(len(points), -1))


def floor_score(task: RepresentationTask, train_targets: torch.Tensor, test_targets: torch.Tensor) -> float:
    """What the training labels alone predict on the test set (see the module docstring)."""
    if task.kind == "single_label":
        majority = torch.bincount(train_targets).argmax()
        return float((test_targets == majority).float().mean())
    if task.kind == "multi_label":
        majority = (train_targets.mean(0) > 0.5).float()
        return float((test_targets == majority).float().mean())
    mean_shape = train_targets.mean(0, keepdim=True).expand_as(test_targets)
    return landmark_nme(mean_shape, test_targets)


__all__ = [
    "FEATURE_VIEWS",
    "TASKS",
    "TASK_NAMES",
    "RepresentationTask",
    "floor_score",
    "get_tasks",
    "landmark_nme",
    "task_targets",
]
