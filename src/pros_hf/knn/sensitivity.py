"""How far features move when one factor of a face changes, relative to two unrelated faces.

Why: a backbone that fails expression k-NN either never looked at expressions or learnt to ignore them. Paired faces
that differ in one factor (:func:`pros_hf.knn.factor_pairs.make_factor_pairs`) tell the two apart: the cosine
distance between a face and its variant, divided by the mean distance between unrelated faces of the same set, is 0
for a factor the features are invariant to and about 1 for one that moves them as far as a new face. Comparing it
with the same architecture at random initialisation shows which factors training made the features more or less
sensitive to.
"""

from collections.abc import Sequence

import numpy as np
import torch


def factor_sensitivity(features: torch.Tensor, groups: Sequence[int], factors: Sequence[str]) -> dict:
    """Cosine distances of each factor's variant to its ``base`` face, raw and relative to unrelated faces.

    ``features``: (N, D); ``groups`` and ``factors``: one entry per row (the ``group`` and ``factor`` columns of
    ``make_factor_pairs``). Every group needs one ``base`` row. Returns ``{"unrelated_distance": float,
    "distance": {factor: float}, "relative": {factor: float}}``, where ``unrelated_distance`` is the mean
    ``1 - cos`` between the base faces of different groups and ``relative = distance / unrelated_distance``.
    """
    features = torch.as_tensor(features)
    if features.dim() != 2:
        raise ValueError(f"features must be 2-D (N, D), got shape {tuple(features.shape)}.")
    if not len(groups) == len(factors) == features.shape[0]:
        raise ValueError(
            f"features ({features.shape[0]} rows), groups ({len(groups)}) and factors ({len(factors)}) "
            "must have one entry per image."
        )
    features = torch.nn.functional.normalize(features.float(), dim=1)
    base_rows = {}
    for row, (group, factor) in enumerate(zip(groups, factors)):
        if factor == "base":
            if group in base_rows:
                raise ValueError(f"group {group} has more than one 'base' row (rows {base_rows[group]} and {row}).")
            base_rows[group] = row
    if len(base_rows) < 2:
        raise ValueError(f"need 'base' rows in at least 2 groups to measure unrelated faces, got {len(base_rows)}.")
    distances: dict[str, list[float]] = {}
    for row, (group, factor) in enumerate(zip(groups, factors)):
        if factor == "base":
            continue
        if group not in base_rows:
            raise ValueError(f"row {row} (group {group}, factor {factor!r}) has no 'base' row in its group.")
        similarity = float(features[row] @ features[base_rows[group]])
        distances.setdefault(factor, []).append(1.0 - similarity)
    bases = features[list(base_rows.values())]
    similarity = bases @ bases.T
    off_diagonal = similarity[~torch.eye(len(bases), dtype=torch.bool)]
    unrelated = float(1.0 - off_diagonal.mean())
    mean_distance = {factor: float(np.mean(values)) for factor, values in distances.items()}
    return {
        "unrelated_distance": unrelated,
        "distance": mean_distance,
        "relative": {
            factor: value / unrelated if unrelated > 0 else float("nan") for factor, value in mean_distance.items()
        },  # fmt: skip
    }
