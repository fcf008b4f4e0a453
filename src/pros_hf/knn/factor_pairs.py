"""Synthetic faces that differ in one factor only: which factors of variation does a backbone encode?

Why: k-NN accuracy says *whether* features separate expressions or identities, not *why not*. Rendered faces can be
changed one factor at a time, which real photographs cannot: the same person, pose, light and background with another
expression; the same face on another background; and so on. How far a backbone's features move for each change,
relative to two unrelated faces, shows what it attends to and what it has become invariant to
(:func:`pros_hf.knn.factor_sensitivity`; ``examples/factor_sensitivity.py``).

Each group holds a ``base`` face and one variant per factor in :data:`FACTORS`:

- ``expression``: another of the seven expressions (a laughing smile's extra lip opening is dropped);
- ``background``: the same face drawn on a new background (the renderer's own random draw);
- ``pose``: new yaw, pitch, roll, scale and position;
- ``lighting``: new light direction and strength, brightness and colour gain;
- ``identity``: another person's shape, colouring and hair, everything else kept.

Every variant is face-cropped like the demo's data, so a pose change also moves the crop, as it would in a data set.
"""

import dataclasses

import numpy as np

from ..data.face_params import EXPRESSION_NAMES, sample_face_params, sample_identity
from ..data.face_rendering import BACKGROUNDS, render_face
from ..validation import check_int

FACTORS = ("expression", "background", "pose", "lighting", "identity")


def _variants(index: int, seed: int, identities: list):
    """(name, FaceParams, background seed) of one group: the base face and one variant per factor."""
    rng = np.random.default_rng([seed, 3, index])
    base = sample_face_params(rng, identities[index], index)
    other = sample_face_params(np.random.default_rng([seed, 4, index]), identities[index], index)
    new_expression = (base.expression + 1 + int(rng.integers(len(EXPRESSION_NAMES) - 1))) % len(EXPRESSION_NAMES)
    pose = {name: getattr(other, name) for name in ("yaw", "pitch", "roll", "scale", "shift_x", "shift_y")}
    light = {name: getattr(other, name) for name in ("light_angle", "light_strength", "brightness", "colour_gain")}
    return (
        ("base", base, 0),
        ("expression", dataclasses.replace(base, expression=new_expression, extra_open=0.0), 0),
        ("background", base, 1),
        ("pose", dataclasses.replace(base, **pose), 0),
        ("lighting", dataclasses.replace(base, **light), 0),
        ("identity", dataclasses.replace(base, identity=identities[index + 1]), 0),
    )


def make_factor_pairs(
    num_groups: int = 150,
    seed: int = 0,
    image_size: int = 128,
    crop_size: int | None = 64,
    margin: float = 0.05,
    background: str = "clutter",
):
    """A ``datasets.Dataset`` of ``num_groups`` groups of faces that differ from their ``base`` in one factor.

    Columns: ``image`` (PIL), ``group`` (int), ``factor`` ("base" or a name from :data:`FACTORS`). With
    ``crop_size`` (default 64, the demo's face crops at ``margin`` 0.05), every image is replaced by its face crop
    through the same detector as the demo's data; a group in which any face is missed is dropped whole, so every
    returned group is complete. ``crop_size=None`` keeps the full renders at ``image_size``.
    Returns ``(dataset, counts)`` with ``counts`` = {"groups_kept", "groups_dropped"}.
    """
    import datasets

    num_groups = check_int("num_groups", num_groups, 1)
    if background not in BACKGROUNDS:
        raise ValueError(f"background must be one of {list(BACKGROUNDS)}, got {background!r}")
    identities_rng = np.random.default_rng([seed, 1])
    identities = [sample_identity(identities_rng) for _ in range(num_groups + 1)]
    rows = {"image": [], "group": [], "factor": []}
    for index in range(num_groups):
        for name, params, background_seed in _variants(index, seed, identities):
            face = render_face(np.random.default_rng([seed, 5, index, background_seed]), params, image_size, background)
            rows["image"].append(face.image)
            rows["group"].append(index)
            rows["factor"].append(name)
    features = datasets.Features(
        {"image": datasets.Image(), "group": datasets.Value("int64"), "factor": datasets.Value("string")}
    )
    faces = datasets.Dataset.from_dict(rows, features=features)
    if crop_size is not None:
        from ..retrieval import crop_faces_in_dataset

        faces, _ = crop_faces_in_dataset(faces, size=crop_size, margin=margin, landmarks_column=None)
    group_sizes = np.bincount(np.asarray(faces["group"], dtype=np.int64), minlength=num_groups)
    complete = set(np.flatnonzero(group_sizes == len(FACTORS) + 1).tolist())
    faces = faces.filter(lambda group: group in complete, input_columns="group")
    faces = faces.select_columns(["image", "group", "factor"])
    return faces, {"groups_kept": len(complete), "groups_dropped": num_groups - len(complete)}
