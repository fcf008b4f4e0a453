"""DINO's weighted k-NN vote on L2-normalised features, chunked so the similarity matrix never has to fit at once."""

import torch

from ..validation import check_k_temperature


def _check_knn_inputs(train_features, train_labels, test_features, num_classes, k, temperature, chunk_size):
    check_k_temperature(k, temperature)
    if not isinstance(num_classes, int) or num_classes <= 0:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}.")
    if not isinstance(chunk_size, int) or chunk_size <= 0:
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}.")
    if train_features.ndim != 2 or test_features.ndim != 2:
        raise ValueError(
            f"train_features and test_features must be 2-D (N, D), got shapes {tuple(train_features.shape)} and "
            f"{tuple(test_features.shape)}."
        )
    if test_features.shape[1] != train_features.shape[1]:
        raise ValueError(
            f"test_features has dimension {test_features.shape[1]} but train_features has {train_features.shape[1]}."
        )
    if train_labels.ndim != 1 or len(train_labels) != len(train_features):
        raise ValueError(
            f"train_labels must be 1-D with one label per row of train_features ({len(train_features)}), got shape "
            f"{tuple(train_labels.shape)}."
        )
    if k > len(train_features):
        raise ValueError(f"k={k} is larger than the number of training features ({len(train_features)}).")
    if train_labels.is_floating_point() or train_labels.is_complex():
        raise ValueError(f"train_labels must be integer class ids, got dtype {train_labels.dtype}.")
    if len(train_labels) and (int(train_labels.min()) < 0 or int(train_labels.max()) >= num_classes):
        raise ValueError(
            f"train_labels must lie in [0, num_classes={num_classes}), got range "
            f"[{int(train_labels.min())}, {int(train_labels.max())}]."
        )


@torch.no_grad()
def weighted_knn_classify(
    train_features: torch.Tensor,
    train_labels: torch.Tensor,
    test_features: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DINO's weighted k-NN vote: returns ``(predictions, scores)``.

    Features are expected L2-normalised (as :func:`extract_features` returns them), so their dot product is the
    cosine similarity. For each test row, the ``k`` most similar training rows vote for their label with weight
    ``exp(similarity / temperature)``; ``scores`` (M, num_classes) are the summed votes (float64, so that small
    temperatures do not overflow) and ``predictions`` (M,) the best-scoring class. Ties go to the lower class id
    (DINO's unstable sort leaves them undefined). The test set is processed ``chunk_size`` rows at a time, so memory
    is O(chunk_size x N_train).
    ``k`` = 20 and ``temperature`` = 0.07 are DINO's defaults ("20 is usually working the best").
    """
    train_labels = torch.as_tensor(train_labels)
    _check_knn_inputs(train_features, train_labels, test_features, num_classes, k, temperature, chunk_size)
    train_labels = train_labels.to(train_features.device, torch.long)
    train_t = train_features.t()
    scores = []
    for start in range(0, len(test_features), chunk_size):
        chunk = test_features[start : start + chunk_size].to(train_features.device, train_features.dtype)
        similarity = chunk @ train_t
        top_similarity, indices = similarity.topk(k, dim=1, largest=True, sorted=True)
        neighbour_labels = train_labels[indices]  # (m, k)
        weights = (top_similarity.double() / temperature).exp()  # float64: exp(1 / 0.01) already overflows fp32
        votes = torch.zeros(len(chunk), num_classes, dtype=torch.float64, device=chunk.device)
        scores.append(votes.scatter_add_(1, neighbour_labels, weights))
    if not scores:
        scores = [torch.zeros(0, num_classes, dtype=torch.float64, device=train_features.device)]
    scores = torch.cat(scores)
    predictions = scores.sort(dim=1, descending=True, stable=True).indices[:, 0]
    return predictions, scores


def knn_accuracy_from_features(
    train_features: torch.Tensor,
    train_labels,
    test_features: torch.Tensor,
    test_labels,
    num_classes: int | None = None,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int = 256,
) -> dict[str, float]:
    """Top-1 (and, from 5 classes on, top-5) weighted k-NN accuracy in percent, from precomputed features.

    Top-5 follows DINO exactly: the first ``min(5, k)`` classes of the score ranking (with ``k`` < 5 it is top-k).
    ``num_classes`` defaults to 1 + the largest label seen.
    """
    train_labels, test_labels = torch.as_tensor(train_labels), torch.as_tensor(test_labels)
    if test_labels.ndim != 1 or len(test_labels) != len(test_features):
        raise ValueError(
            f"test_labels must be 1-D with one label per row of test_features ({len(test_features)}), got shape "
            f"{tuple(test_labels.shape)}."
        )
    if len(test_labels) == 0:
        raise ValueError("test_features is empty: nothing to evaluate.")
    if num_classes is None:
        num_classes = int(max(train_labels.max(), test_labels.max())) + 1
    if int(test_labels.min()) < 0 or int(test_labels.max()) >= num_classes:
        raise ValueError(
            f"test_labels must lie in [0, num_classes={num_classes}), got range "
            f"[{int(test_labels.min())}, {int(test_labels.max())}]."
        )
    _, scores = weighted_knn_classify(train_features, train_labels, test_features, num_classes, k, temperature,
                                      chunk_size)  # fmt: skip
    ranking = scores.sort(dim=1, descending=True, stable=True).indices
    correct = ranking.eq(test_labels.to(ranking.device, torch.long).view(-1, 1))
    result = {"top1": 100.0 * correct[:, 0].float().mean().item()}
    if num_classes >= 5:
        result["top5"] = 100.0 * correct[:, : min(5, k)].any(dim=1).float().mean().item()
    return result
