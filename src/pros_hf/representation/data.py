"""Labelled images as the representation protocols read them: processed pixels and each task's targets."""

import logging
from collections import Counter
from collections.abc import Sequence

import numpy as np

from ..data.decoding import UnreadableImageError, open_image_rgb
from .evaluation import EvaluationData
from .tasks import RepresentationTask, task_targets

logger = logging.getLogger(__name__)


def _decoded_images(dataset, image_column: str):
    """(images as RGB arrays, rows kept, skip counts): undecodable images are left out, counted by reason."""
    import datasets

    column = dataset.select_columns([image_column])
    feature = column.features.get(image_column)
    pixel_arrays = isinstance(feature, (datasets.Array2D, datasets.Array3D))
    if isinstance(feature, datasets.Image) and feature.decode:
        column = column.cast_column(image_column, datasets.Image(decode=False))
    images, kept, skipped = [], [], Counter()
    for row, source in enumerate(column[image_column]):
        if pixel_arrays:
            images.append(np.asarray(source, dtype=np.uint8))
            kept.append(row)
            continue
        try:
            images.append(np.asarray(open_image_rgb(source)))
            kept.append(row)
        except UnreadableImageError as error:
            skipped[error.reason] += 1
    return images, np.asarray(kept, dtype=np.int64), skipped


def evaluation_data(
    dataset,
    tasks: Sequence[RepresentationTask],
    image_processor,
    image_column: str = "image",
    num_attributes: int | None = None,
    name: str = "the dataset",
) -> EvaluationData:
    """Decode, process and label every image of `dataset` (a `datasets.Dataset` with an image column and the tasks'
    columns). Undecodable images are left out with their labels, counted and logged; a set with none left raises."""
    needed = [image_column] + [task.column for task in tasks]
    missing = [column for column in needed if column not in dataset.column_names]
    if missing:
        raise ValueError(f"{name} lacks the column(s) {missing}; it has {dataset.column_names}.")
    images, kept, skipped = _decoded_images(dataset, image_column)
    if skipped:
        reasons = ", ".join(f"{n} {reason}" for reason, n in skipped.most_common())
        if not len(kept):
            raise ValueError(f"no image of {name} could be decoded ({reasons}).")
        logger.warning(
            "%d of %d images of %s could not be decoded (%s); left out with their labels.",
            sum(skipped.values()),
            len(dataset),
            name,
            reasons,
        )
    sizes = np.array([[image.shape[1], image.shape[0]] for image in images], dtype=np.float32)  # (width, height)
    pixel_values = image_processor(images, return_tensors="pt")["pixel_values"]
    rows = dataset.select(kept) if len(kept) != len(dataset) else dataset
    targets = {task.name: task_targets(task, rows[task.column], sizes, num_attributes) for task in tasks}
    return EvaluationData(pixel_values=pixel_values, targets=targets)


__all__ = ["evaluation_data"]
