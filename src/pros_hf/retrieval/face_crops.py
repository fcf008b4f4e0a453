"""Face-dominant crops of a labelled `datasets.Dataset`, keeping its labels (and moving its landmarks).

`curate` builds an unlabelled pre-training pool from raw sources; this is the same detection, thresholds and square
crop applied row by row to a labelled set, so that pre-training, k-NN evaluation and fine-tuning all see faces framed
alike (the ProS premise: the face is the dominant region). Rows without an accepted face are dropped and counted.
"""

from collections import Counter
from typing import Any

import datasets
import numpy as np
from PIL import Image

from .detectors import FaceDetector, get_face_detector
from .dominance import FaceThresholds, crop_square_face, select_face, square_crop_box


def crop_faces_in_dataset(
    dataset,
    detector: str | FaceDetector = "yunet",
    thresholds: FaceThresholds | None = None,
    margin: float = 0.25,
    size: int = 64,
    image_column: str = "image",
    landmarks_column: str | None = "landmarks",
    num_proc: int | None = None,
) -> tuple[Any, dict[str, int]]:
    """Replace every image by its square face crop (`size` px, `margin` of context), keep all other columns.

    `thresholds` default to accepting any confident face (no dominance or size minimum): a labelled set is cropped,
    not filtered. Landmarks in pixel coordinates, when the column exists, are mapped into the crop. Adds `face_box` (in the
    original image) and `detector_score`. Returns `(cropped_dataset, counts)`, `counts` holding how many rows were
    kept and how many were dropped for each rejection reason ("no_face", "below_score", ...).
    """
    if image_column not in dataset.column_names:
        raise ValueError(f"No column {image_column!r} in the dataset; its columns are {dataset.column_names}.")
    if size < 8:
        raise ValueError(f"size must be >= 8 pixels, got {size}.")
    thresholds = thresholds or FaceThresholds(min_face_size=0.0, min_dominance=0.0)
    face_detector = get_face_detector(detector) if isinstance(detector, str) else detector
    has_landmarks = landmarks_column is not None and landmarks_column in dataset.column_names

    def crop(example):
        image = np.asarray(example[image_column].convert("RGB"))
        height, width = image.shape[:2]
        decision = select_face(face_detector.detect(image), width, height, thresholds)
        example["_reason"] = decision.status
        example["face_box"] = [0.0, 0.0, 0.0, 0.0]
        example["detector_score"] = 0.0
        if decision.status != "kept":
            return example
        box = decision.face.box
        left, top, right, _ = square_crop_box(box, width, height, margin=margin)
        example[image_column] = Image.fromarray(crop_square_face(image, box, margin=margin, size=size))
        example["face_box"] = [float(v) for v in box]
        example["detector_score"] = float(decision.face.score)
        if has_landmarks:
            scale = size / (right - left)
            points = np.asarray(example[landmarks_column], dtype=np.float32)
            # pixel centres: a point at pixel x of the square maps to (x - left + 0.5) * scale - 0.5 in the crop
            example[landmarks_column] = ((points - [left, top] + 0.5) * scale - 0.5).tolist()
        return example

    features = dataset.features.copy()
    features["face_box"] = datasets.Sequence(datasets.Value("float32"), length=4)
    features["detector_score"] = datasets.Value("float32")
    features["_reason"] = datasets.Value("string")
    processed = dataset.map(crop, num_proc=num_proc, features=features, desc="Cropping faces")
    counts = Counter(processed["_reason"])
    kept = processed.filter(lambda reason: reason == "kept", input_columns="_reason").remove_columns("_reason")
    return kept, {"kept": counts.pop("kept", 0), **dict(counts)}


__all__ = ["crop_faces_in_dataset"]
