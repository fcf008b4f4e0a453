"""Figures of downstream results: confusion matrix, landmarks on faces, CED curves, per-attribute accuracy.

Why: a results JSON says how good a head is; these PNGs say where it fails (which expressions are confused, which
points drift, how errors spread, which attributes the backbone does not encode), which is what people look at first.
Each function renders with matplotlib's ``Figure`` directly (Agg, no pyplot: no global figure state to leak or close,
and the user's backend is left alone), writes one PNG and returns its path. Errors are fractions, as the metrics in
``pros_hf.metrics`` return them.
"""

import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["plot_attribute_accuracy", "plot_ced_curves", "plot_confusion_matrix", "plot_landmarks"]

_DPI = 100


def new_figure(width: float, height: float):
    from matplotlib.figure import Figure  # import on use: matplotlib is only needed for figures

    return Figure(figsize=(width, height))


def save_figure(figure, path, what: str) -> str:
    path = os.fspath(path)
    if os.path.splitext(path)[1].lower() != ".png":
        raise ValueError(f"path must end in .png (a PNG is written), got {path!r}.")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=_DPI, format="png")
    logger.info("Saved %s to %s", what, path)
    return path


def plot_confusion_matrix(
    matrix, label_names: Sequence[str] | None, path, title: str | None = None, normalize: bool = True
) -> str:
    """Confusion matrix as an annotated heatmap: rows are reference classes, columns predicted ones (the layout of
    ``expression_metrics``' ``confusion_matrix``).

    ``normalize`` divides each row by its count, so the diagonal reads as per-class recall and rare classes (fear,
    disgust) are as visible as frequent ones; each cell then shows the fraction and the count.
    """
    counts = np.asarray(matrix)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] == 0:
        raise ValueError(f"matrix must be a square (classes, classes) array, got shape {counts.shape}.")
    if not np.isfinite(counts).all() or (counts < 0).any():
        raise ValueError("matrix must hold non-negative counts.")
    classes = counts.shape[0]
    names = [str(i) for i in range(classes)] if label_names is None else [str(name) for name in label_names]
    if len(names) != classes:
        raise ValueError(f"label_names has {len(names)} names but the matrix has {classes} classes.")
    support = counts.sum(axis=1, keepdims=True)
    values = np.divide(counts, support, out=np.zeros(counts.shape), where=support > 0) if normalize else counts

    size = max(4.0, 0.6 * classes + 2)
    figure = new_figure(size + 1, size)
    axis = figure.subplots()
    image = axis.imshow(values, cmap="Blues", vmin=0, vmax=1 if normalize else max(values.max(), 1))
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04, label="fraction of the row" if normalize else "count")
    fontsize = max(5, 10 - classes // 3)
    for row in range(classes):
        for col in range(classes):
            text = f"{values[row, col]:.2f}\n({counts[row, col]:g})" if normalize else f"{counts[row, col]:g}"
            dark = values[row, col] > 0.5 * (1 if normalize else values.max())
            axis.text(col, row, text, ha="center", va="center", fontsize=fontsize, color="white" if dark else "black")
    axis.set_xticks(range(classes), names, rotation=45, ha="right")
    axis.set_yticks(range(classes), names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("reference")
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    axis.set_title(f"{title + ' ' if title else ''}(accuracy {accuracy:.1%})", fontsize=10)
    return save_figure(figure, path, f"a {classes}-class confusion matrix")


def _display_array(image) -> np.ndarray:
    """An image as the uint8 array imshow draws, read as `ProSImageProcessor` reads it (the pixels the points were
    predicted on). `image.convert("RGB")` clips 16-bit and float greyscale (modes I;16, I, F) to 255, and imshow
    clips uint16 arrays and floats above 1: such faces came out white."""
    if hasattr(image, "convert"):  # PIL, without importing it here
        from .image_processing_pros import _pil_to_array

        array = _pil_to_array(image)  # 0 .. 255, float for the 16-bit and float modes
    else:
        array = np.asarray(image)
        if array.dtype == np.uint16:
            array = array / 257.0  # 65535 -> 255, as the processor scales it
        elif np.issubdtype(array.dtype, np.floating) and array.size and np.nanmax(array) <= 1.5:
            array = array * 255.0  # floats in [0, 1]; those in [0, 255] are kept, as the processor does
    if array.dtype != np.uint8:
        array = np.clip(np.rint(np.nan_to_num(np.asarray(array, dtype=np.float64))), 0, 255).astype(np.uint8)
    return array


def plot_landmarks(images, predictions, references=None, *, path, columns: int = 4, title: str | None = None) -> str:
    """Faces in a grid with the predicted points (red) and, when given, the ground truth (green) on each.

    ``images``: PIL images of any mode (16-bit and float greyscale scaled as ``ProSImageProcessor`` scales them) or
    HxWx3 arrays, uint8, uint16 or float in [0, 1] or [0, 255] (an (B, H, W, 3) array works too); sizes may differ.
    ``predictions`` and ``references``: per image, (N, 2) (x, y) points in that image's pixel coordinates (the landmark pipeline's
    output); pixel centres at integers (``x = 0`` is the centre of the first column).
    """
    images = [_display_array(image) for image in images]
    if not images:
        raise ValueError("images is empty: pass at least one face.")
    if not isinstance(columns, int) or columns < 1:
        raise ValueError(f"columns must be a positive integer, got {columns!r}.")
    point_sets = (
        {"predictions": predictions} if references is None else {"predictions": predictions, "references": references}
    )
    for name, points in point_sets.items():
        if len(points) != len(images):
            raise ValueError(f"{name} has {len(points)} entries but there are {len(images)} images.")
    for index, image in enumerate(images):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image {index}: must be HxWx3 (RGB), got shape {image.shape}.")
        shapes = {name: np.shape(points[index]) for name, points in point_sets.items()}
        if any(len(shape) != 2 or shape[1] != 2 for shape in shapes.values()) or len(set(shapes.values())) != 1:
            raise ValueError(f"image {index}: points must be (N, 2) arrays of the same shape, got {shapes}.")

    rows, columns = -(-len(images) // columns), min(columns, len(images))
    figure = new_figure(2.2 * columns, 2.2 * rows + (0.5 if title else 0.2))
    axes = figure.subplots(rows, columns, squeeze=False)
    for axis in axes.flat:
        axis.set_axis_off()
    # every cell is drawn the same size, so markers keep one size (in points) on 25 px and 512 px faces alike
    for index, (axis, image) in enumerate(zip(axes.flat, images)):
        axis.imshow(image)
        prediction = np.asarray(predictions[index], dtype=np.float64)
        if references is not None:
            reference = np.asarray(references[index], dtype=np.float64)
            axis.plot(
                np.stack([reference[:, 0], prediction[:, 0]]),
                np.stack([reference[:, 1], prediction[:, 1]]),
                color="yellow",
                linewidth=0.5,
                alpha=0.8,
            )  # the error of each point as a segment
            axis.scatter(reference[:, 0], reference[:, 1], s=5, c="lime", linewidths=0, label="reference")
        axis.scatter(prediction[:, 0], prediction[:, 1], s=5, c="red", linewidths=0, label="prediction")
        axis.set_xlim(-0.5, image.shape[1] - 0.5)
        axis.set_ylim(image.shape[0] - 0.5, -0.5)
    axes.flat[0].legend(loc="upper left", fontsize=6, markerscale=2, framealpha=0.6)
    if title:
        figure.suptitle(title, fontsize=10)
    return save_figure(figure, path, f"landmarks on {len(images)} faces")


def _ced_levels(threshold: float, step: float) -> np.ndarray:
    intervals = max(2, int(round(threshold / step)))
    return np.linspace(0.0, threshold, intervals + intervals % 2 + 1)


def _failure_rate_and_auc(errors: np.ndarray, threshold: float, step: float) -> tuple[float, float]:
    """The same numbers as the ``landmark_nme`` metric (kept in step by a test; importing it here would import
    evaluate, seconds for a figure): 1 - CED(threshold), and the CED's area by Simpson's rule over ``threshold``."""
    levels = _ced_levels(threshold, step)
    fractions = np.searchsorted(np.sort(errors), levels, side="right") / len(errors)
    weights = np.ones(len(levels))
    weights[1:-1:2], weights[2:-1:2] = 4.0, 2.0
    area = (levels[1] - levels[0]) / 3.0 * float(weights @ fractions)
    return float(1.0 - fractions[-1]), float(area / levels[-1])


def plot_ced_curves(
    per_image_errors: Mapping[str, Sequence[float]],
    path,
    threshold: float = 0.10,
    title: str | None = None,
    step: float = 1e-4,
) -> str:
    """Cumulative error distribution (fraction of images with NME at most x, for x from 0 to ``threshold``), one
    curve per model, each labelled with its NME, AUC and failure rate at ``threshold`` (as ``landmark_nme``, with
    ``ced_step=step``). ``per_image_errors``: label -> per-image NME (the metric's ``per_image_nme``), fractions.
    """
    if not isinstance(per_image_errors, Mapping) or not per_image_errors:
        raise ValueError("per_image_errors must be a non-empty dict of label -> per-image errors.")
    if not threshold > 0:
        raise ValueError(f"threshold must be positive, got {threshold!r}.")
    if not 0 < step <= threshold / 2:
        raise ValueError(f"step must be positive and at most half the threshold, got {step!r}.")
    figure = new_figure(5.5, 4.2)
    axis = figure.subplots()
    levels = _ced_levels(threshold, step)
    for label, errors in per_image_errors.items():
        errors = np.asarray(errors, dtype=np.float64)
        if errors.ndim != 1 or errors.size == 0 or not np.isfinite(errors).all() or (errors < 0).any():
            raise ValueError(f"per_image_errors[{label!r}] must be a non-empty list of finite non-negative errors.")
        failure_rate, auc = _failure_rate_and_auc(errors, threshold, step)
        fractions = np.searchsorted(np.sort(errors), levels, side="right") / errors.size
        axis.plot(
            levels,
            fractions,
            linewidth=1.5,
            label=f"{label}: NME {errors.mean():.2%}, AUC {auc:.3f}, FR {failure_rate:.1%}",
        )
    axis.set_xlim(0, threshold)
    axis.set_ylim(0, 1.01)
    axis.set_xlabel("NME (fraction of the normalising distance)")
    axis.set_ylabel("fraction of images")
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right", fontsize=7)
    axis.set_title(title or f"cumulative error distribution (AUC and FR at {threshold:g})", fontsize=10)
    return save_figure(figure, path, f"{len(per_image_errors)} CED curves")


def plot_attribute_accuracy(results: Mapping, path, title: str | None = None) -> str:
    """Horizontal bars of per-attribute accuracy, worst attribute at the top.

    ``results``: attribute -> accuracy for one model, or label -> (attribute -> accuracy) to compare models (e.g.
    ``{"pre-trained": ..., "random init": ...}``) as grouped bars; every model must name the same attributes. The
    legend carries each model's mean accuracy.
    """
    if not isinstance(results, Mapping) or not results:
        raise ValueError("results must be a non-empty dict of attribute -> accuracy (or label -> such a dict).")
    if not all(isinstance(value, Mapping) for value in results.values()):
        if any(isinstance(value, Mapping) for value in results.values()):
            raise ValueError("results must map every label to a dict of accuracies, or every attribute to a number.")
        results = {"accuracy": results}
    labels = list(results)
    attributes = list(results[labels[0]])
    if not attributes:
        raise ValueError(f"results[{labels[0]!r}] has no attributes.")
    for label in labels:
        if set(results[label]) != set(attributes):
            raise ValueError(
                f"results[{label!r}] names other attributes than results[{labels[0]!r}]: "
                f"{sorted(set(results[label]) ^ set(attributes))}."
            )
    values = np.array([[results[label][name] for name in attributes] for label in labels], dtype=np.float64)
    if not ((values >= 0) & (values <= 1)).all():
        raise ValueError("accuracies must be fractions in [0, 1].")

    order = np.argsort(-values[0], kind="stable")  # bars go up from y = 0: the first model's worst ends on top
    height = 0.8 / len(labels)
    figure = new_figure(8.0, 0.22 * len(attributes) * max(1.0, 0.6 * len(labels)) + 1.2)
    axis = figure.subplots()
    positions = np.arange(len(attributes))
    for index, label in enumerate(labels):
        offsets = positions + 0.4 - height * (index + 0.5)  # the first model on top in each group, as in the legend
        axis.barh(offsets, values[index, order], height=height, label=f"{label} (mean {values[index].mean():.1%})")
    axis.set_yticks(positions, [attributes[i] for i in order], fontsize=7)
    axis.set_xlim(0, 1)
    axis.set_ylim(-0.6, len(attributes) - 0.4)
    axis.set_xlabel("accuracy")
    axis.grid(axis="x", alpha=0.3)
    axis.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)  # bars fill the axes
    axis.set_title(title or "per-attribute accuracy", fontsize=10)
    return save_figure(figure, path, f"accuracy of {len(attributes)} attributes")
