"""Scoring a trained head on one test split by the benchmark's protocol: accuracy (expressions), mean accuracy over
attributes, or for landmarks the NME under each normalisation the literature reports (in the source image's pixels,
box normalisations divided by the data set's face boxes) with the failure rate and AUC at the protocol's threshold."""

import functools

import numpy as np

from ..finetuning.data import TaskLabels, multi_hot
from ..finetuning.training import ignore_keys_for, task_metrics
from ..pipelines import image_height_width, processed_to_image_coordinates
from .framing import ProtocolFraming
from .protocols import BenchmarkProtocol


@functools.cache
def _landmark_nme():
    from ..metrics import load_metric

    return load_metric("landmark_nme")


def predict(trainer, split, task: str) -> np.ndarray:
    """The head's outputs on `split` (logits, or landmarks normalised to the model input)."""
    output = trainer.predict(split, ignore_keys=ignore_keys_for(task))
    predictions = output.predictions
    return np.asarray(predictions[0] if isinstance(predictions, tuple) else predictions)


def source_points(predictions, split, framing: ProtocolFraming, processor) -> list[np.ndarray]:
    """Predicted landmarks (normalised to the model input) -> the pixels of each row's source image."""
    boxes = split["face_box"] if "face_box" in split.column_names else [None] * len(split)
    sizes = [None] * len(split)
    if framing.rule.box is None:  # the image as distributed: its own size maps the points back
        sizes = [tuple(int(v) for v in image_height_width(image)) for image in split["image"]]
    points = []
    for prediction, box, size in zip(predictions, boxes, sizes):
        framed = processed_to_image_coordinates(prediction, framing.framed_size(size), processor)
        points.append(framing.to_source(framed, box, size))
    return points


def landmark_figures(protocol: BenchmarkProtocol, points, references, boxes) -> dict[str, float]:
    """`nme_<normalisation>` for each of the protocol's normalisations, and `failure_rate` / `auc` at its threshold
    under its curve normalisation (fractions: 0.0293 is "2.93")."""
    figures = {}
    for normalization in protocol.normalizations:
        result = _landmark_nme().compute(
            predictions=points, references=references, **protocol.nme_kwargs(normalization, boxes=boxes)
        )
        figures[f"nme_{normalization}"] = float(result["nme"])
        if normalization == protocol.curve_normalization:
            figures["failure_rate"], figures["auc"] = float(result["failure_rate"]), float(result["auc"])
    return figures


def score_split(
    trainer, split, protocol: BenchmarkProtocol, labels: TaskLabels, framing: ProtocolFraming, processor
) -> dict[str, float | int]:
    """The protocol's figures of the head in `trainer` on one test split, with `num_images` (an empty subset is
    reported with its count alone)."""
    figures: dict[str, float | int] = {"num_images": len(split)}
    if not len(split):
        return figures
    predictions = predict(trainer, split, labels.task)
    if labels.task == "landmarks":
        references = [np.asarray(p, dtype=np.float64) for p in split["landmarks"]]
        points = source_points(predictions, split, framing, processor)
        boxes = split["face_box"] if "face_box" in split.column_names else None
        figures.update(landmark_figures(protocol, points, references, boxes))
    elif labels.task == "attributes":
        full = task_metrics(labels, predictions, multi_hot(split["attributes"], labels.num_labels))
        figures["mean_accuracy"] = float(full["mean_accuracy"])
    else:
        full = task_metrics(labels, predictions, np.asarray(split["expression"]))
        figures.update(accuracy=float(full["accuracy"]), macro_f1=float(full["macro_f1"]))
    return figures


__all__ = ["landmark_figures", "predict", "score_split", "source_points"]
