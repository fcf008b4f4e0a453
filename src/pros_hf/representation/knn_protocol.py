"""DINO's weighted k-NN on frozen features, for every kind of target the representation protocols score.

The k most similar training rows (cosine similarity of L2-normalised features) vote with weight
`exp(similarity / temperature)` (DINO: k = 20, temperature 0.07): for class ids the weighted vote
(`pros_hf.knn.weighted_knn_classify`), for 0/1 attribute rows the weighted mean of each column thresholded at 0.5, for
landmark coordinates the weighted mean of the neighbours' points. No parameter is fitted: it shows what the geometry
of the feature space holds, as DINO uses it to tune pre-training.
"""

from collections.abc import Callable

import torch
from torch.nn import functional as F

from ..knn.classifier import weighted_knn_classify

DINO_K = 20
DINO_TEMPERATURE = 0.07


def _neighbour_weights(train_features, test_features, k, temperature, chunk_size=256):
    train = F.normalize(train_features.float(), dim=1)
    for start in range(0, len(test_features), chunk_size):
        chunk = F.normalize(test_features[start : start + chunk_size].float(), dim=1)
        similarity, indices = (chunk @ train.T).topk(min(k, len(train)), dim=1)
        weights = (similarity.double() / temperature).exp()
        yield indices, weights / weights.sum(dim=1, keepdim=True)


def knn_predict(
    train_features, train_targets, test_features, kind: str, k: int = DINO_K, temperature: float = DINO_TEMPERATURE
) -> torch.Tensor:
    """Predictions for `test_features`: class ids (single_label), 0/1 rows (multi_label) or coordinates
    (regression)."""
    if not isinstance(k, int) or k < 1 or not temperature > 0:
        raise ValueError(f"k must be a positive integer and temperature > 0, got k={k!r}, temperature={temperature!r}.")
    if kind == "single_label":
        labels = torch.as_tensor(train_targets).long()
        num_classes = int(labels.max()) + 1
        predictions, _ = weighted_knn_classify(
            F.normalize(train_features.float(), dim=1),
            labels,
            F.normalize(test_features.float(), dim=1),
            num_classes,
            min(k, len(labels)),
            temperature,
        )
        return predictions
    targets = torch.as_tensor(train_targets).double()
    out = []
    for indices, weights in _neighbour_weights(train_features, test_features, k, temperature):
        out.append((targets[indices] * weights.unsqueeze(-1)).sum(dim=1))
    mean = torch.cat(out).float()
    return (mean > 0.5).float() if kind == "multi_label" else mean


def knn_score(
    train_features,
    train_targets,
    test_features,
    test_targets,
    kind: str,
    regression_error: Callable | None = None,
    k: int = DINO_K,
    temperature: float = DINO_TEMPERATURE,
) -> float:
    """Accuracy (single_label), mean accuracy over columns (multi_label) or `regression_error(predictions,
    targets)` (regression, lower is better)."""
    predictions = knn_predict(train_features, train_targets, test_features, kind, k, temperature)
    test_targets = torch.as_tensor(test_targets)
    if kind == "single_label":
        return float((predictions == test_targets.long()).float().mean())
    if kind == "multi_label":
        return float((predictions == (test_targets > 0.5).float()).float().mean())
    if regression_error is None:
        return float(F.mse_loss(predictions, test_targets.float()))
    return float(regression_error(predictions, test_targets))


__all__ = ["DINO_K", "DINO_TEMPERATURE", "knn_predict", "knn_score"]
