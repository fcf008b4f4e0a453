"""Landmark NME: normalised mean error, failure rate and the AUC of the cumulative error distribution (CED).

Why a local evaluate module: ``evaluate.load("<hub name>")`` needs the network, and the face-alignment metrics are not
on the Hub in the variants papers report. This script is self-contained (numpy and evaluate only), because evaluate
copies it into its modules cache and imports it from there, away from the ``pros_hf`` package.

Protocol (300W, WFLW and AFLW-19 as in HRNet, ADNet, STAR and FaRL): the error of a point is its Euclidean distance to
the ground truth; the NME of an image is the mean over its points divided by a distance measured on the ground truth
(the eyes) or on the image's annotated face box; the dataset NME is the mean over images. The failure rate and the
AUC are read off the cumulative error distribution (CED) of the per-image NME, as FaRL's scorer does: the CED is
sampled every 1e-4 from 0 to the threshold (0.10 usually, 0.07 for AFLW-19), the AUC is its area by Simpson's rule
divided by the threshold, and the failure rate is 1 - CED(threshold).
"""

import datasets
import evaluate
import numpy as np

_CITATION = """\
@inproceedings{sagonas2013300w,
  title={300 Faces in-the-Wild Challenge: The first facial landmark localization Challenge},
  author={Sagonas, Christos and Tzimiropoulos, Georgios and Zafeiriou, Stefanos and Pantic, Maja},
  booktitle={ICCV Workshops},
  year={2013}
}
@inproceedings{wu2018wflw,
  title={Look at Boundary: A Boundary-Aware Face Alignment Algorithm},
  author={Wu, Wayne and Qian, Chen and Yang, Shuo and Wang, Quan and Cai, Yici and Zhou, Qiang},
  booktitle={CVPR},
  year={2018}
}
"""

_DESCRIPTION = """\
Normalised mean error (NME) of facial landmarks, with the failure rate and the area under the cumulative error
distribution (CED) at a threshold. All three are fractions, not percent: multiply by 100 to compare with papers that
print "NME 3.96" (%). Normalisations: "inter_ocular" (outer eye corners: 300W points 36/45, WFLW 60/72),
"inter_pupil" (eye centres: mean of 300W points 36-41 and 42-47, WFLW points 96/97), "box" (sqrt(w * h) of the face
box) and "box_diagonal" (sqrt(w^2 + h^2), AFLW-19's protocol). The box is the data set's annotated face box when
`boxes` are given (AFLW-19's protocol divides by it), otherwise the extent of the ground-truth points.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of (N, 2) point arrays): predicted (x, y) points per image, in any unit (pixels usually).
    references (`list` of (N, 2) point arrays): ground-truth points, same unit, same point count as the prediction.
    normalization (`str`, defaults to "inter_ocular"): "inter_ocular", "inter_pupil", "box" or "box_diagonal".
    boxes (`list` of (x0, y0, x1, y1), optional): one face box per image, in the points' unit, that "box" and
        "box_diagonal" divide by (the data set's annotated box, e.g. AFLW-19's). Without it they use the extent
        of each image's ground-truth points.
    failure_threshold (`float`, defaults to 0.10): an image fails when its NME exceeds this (0.07 for AFLW-19).
    ced_step (`float`, defaults to 1e-4): the CED is sampled every ced_step from 0 to failure_threshold (the number
        of intervals rounded to an even number, as Simpson's rule needs); the AUC is its area by Simpson's rule.
    left_eye, right_eye (`int` or `list` of `int`, optional): the eye points for the eye normalisations, needed for
        point counts other than 68 and 98. A list is averaged to an eye centre. Their order does not matter.
Returns:
    nme (`float`): mean over images of the per-image NME, a fraction (0.0396 is "3.96%").
    failure_rate (`float`): 1 - CED(failure_threshold), the fraction of images whose NME is above it.
    auc (`float`): area under the CED from 0 to failure_threshold (Simpson's rule) divided by failure_threshold.
    per_image_nme (`list` of `float`): the NME of each image, in input order (for CED plots).
Examples:
    >>> nme = evaluate.load("path/to/pros_hf/metrics/landmark_nme")
    >>> nme.compute(predictions=[[[0, 0], [10, 0]]], references=[[[0, 1], [10, 1]]], normalization="box_diagonal",
    ...             boxes=[[0, 0, 10, 10]])
"""

NORMALIZATIONS = ("inter_ocular", "inter_pupil", "box", "box_diagonal")

# point count -> normalisation -> (left eye, right eye); a range is averaged to an eye centre
EYE_POINTS = {
    68: {"inter_ocular": (36, 45), "inter_pupil": (range(36, 42), range(42, 48))},  # 300W / iBUG 68
    98: {"inter_ocular": (60, 72), "inter_pupil": (96, 97)},  # WFLW 98 (96/97 are the pupils)
}


def _eye_position(points: np.ndarray, eye, index: int) -> np.ndarray:
    indices = np.atleast_1d(np.asarray(eye))
    if indices.size == 0 or not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"left_eye/right_eye must be a point index or a list of them, got {eye!r}.")
    if indices.min() < 0 or indices.max() >= len(points):
        raise ValueError(f"example {index}: eye point {eye!r} is out of range for its {len(points)} points.")
    return points[indices].mean(axis=0)


def _box_size(box, index: int) -> tuple[float, float]:
    values = np.asarray(box, dtype=np.float64).ravel() if box is not None else np.zeros(0)
    if values.shape != (4,) or not np.isfinite(values).all():
        raise ValueError(f"example {index}: a box is 4 finite numbers (x0, y0, x1, y1), got {box!r}.")
    width, height = values[2] - values[0], values[3] - values[1]
    if not (width > 0 and height > 0):
        raise ValueError(f"example {index}: box {values.tolist()} must have x1 > x0 and y1 > y0.")
    return width, height


def normalizing_distance(
    reference, normalization: str = "inter_ocular", left_eye=None, right_eye=None, index: int = 0, box=None
) -> float:
    """The distance one image's errors are divided by: measured on its ground-truth points ``reference`` (N, 2), or
    for the box normalisations on its face ``box`` (x0, y0, x1, y1) when one is given (else the points' extent)."""
    reference = np.asarray(reference, dtype=np.float64)
    if normalization in ("box", "box_diagonal"):
        if box is not None:
            width, height = _box_size(box, index)
        else:
            width, height = reference.max(axis=0) - reference.min(axis=0)
        return float(np.sqrt(width * height) if normalization == "box" else np.hypot(width, height))
    if (left_eye is None) != (right_eye is None):
        raise ValueError("left_eye and right_eye must be given together.")
    if left_eye is None:
        if len(reference) not in EYE_POINTS:
            raise ValueError(
                f"example {index}: {normalization} normalisation knows the eye points of 68 (300W) and 98 (WFLW) "
                f"point layouts, got {len(reference)} points; pass left_eye and right_eye, or use 'box' or "
                f"'box_diagonal'."
            )
        left_eye, right_eye = EYE_POINTS[len(reference)][normalization]
    left, right = _eye_position(reference, left_eye, index), _eye_position(reference, right_eye, index)
    return float(np.linalg.norm(left - right))


def per_image_nme(
    predictions, references, normalization: str = "inter_ocular", left_eye=None, right_eye=None, boxes=None
) -> np.ndarray:
    """NME of each image: mean point-to-point distance over the image's normalising distance, float64 (num_images,).
    ``boxes`` (one (x0, y0, x1, y1) per image) are what "box" and "box_diagonal" divide by; without them, the
    extent of each image's ground-truth points."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}.")
    if normalization in ("box", "box_diagonal") and (left_eye is not None or right_eye is not None):
        raise ValueError(f"left_eye/right_eye apply to the eye normalisations only, not to {normalization!r}.")
    if boxes is not None and normalization not in ("box", "box_diagonal"):
        raise ValueError(f"boxes apply to the 'box' and 'box_diagonal' normalisations, not to {normalization!r}.")
    if len(predictions) != len(references):
        raise ValueError(f"got {len(predictions)} predictions but {len(references)} references.")
    if len(references) == 0:
        raise ValueError("no examples: pass at least one prediction and reference.")
    if boxes is not None and len(boxes) != len(references):
        raise ValueError(f"got {len(boxes)} boxes for {len(references)} references; pass one box per image.")
    errors = np.empty(len(references))
    for index, (prediction, reference) in enumerate(zip(predictions, references)):
        prediction, reference = np.asarray(prediction, np.float64), np.asarray(reference, np.float64)
        if reference.ndim != 2 or reference.shape[1] != 2 or len(reference) < 2:
            raise ValueError(f"example {index}: references must be (N >= 2, 2) points, got shape {reference.shape}.")
        if prediction.shape != reference.shape:
            raise ValueError(
                f"example {index}: prediction has shape {prediction.shape} but its reference {reference.shape}; "
                f"each must hold the same (N, 2) points."
            )
        if not (np.isfinite(prediction).all() and np.isfinite(reference).all()):
            raise ValueError(f"example {index}: points must be finite (found NaN or inf).")
        box = None if boxes is None else boxes[index]
        distance = normalizing_distance(reference, normalization, left_eye, right_eye, index, box)
        if not distance > 0:
            raise ValueError(f"example {index}: the {normalization} distance of its reference is 0; check its points.")
        errors[index] = np.linalg.norm(prediction - reference, axis=1).mean() / distance
    return errors


def _check_threshold(threshold) -> float:
    # a number, positive and finite: None is a bare TypeError below, and at inf the CED levels and the AUC are NaN
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float, np.integer, np.floating))
        or not 0 < threshold < np.inf
    ):
        raise ValueError(f"failure_threshold must be positive and finite, got {threshold!r}.")
    return float(threshold)


def ced_curve(errors, threshold: float = 0.10, step: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """The cumulative error distribution: error levels from 0 to ``threshold`` every ``step`` and, at each, the
    fraction of images whose error is at most that level.

    The number of intervals is ``threshold / step`` rounded, then rounded up to an even number (Simpson's rule
    needs one): 1,000 at 0.10 and 700 at 0.07 with the 1e-4 step. The levels end at the threshold exactly; FaRL's
    ``np.arange(0, threshold + step, step)`` overshoots to 0.0701 at 0.07 (702 levels), so its AFLW-19 AUC can differ
    from this one by up to step / threshold (0.0014); at 0.10 the levels are the same 1,001.
    """
    threshold = _check_threshold(threshold)
    if (
        isinstance(step, bool)
        or not isinstance(step, (int, float, np.integer, np.floating))
        or not 0 < step <= threshold / 2
    ):
        raise ValueError(f"ced_step must be positive and at most half the threshold {threshold}, got {step!r}.")
    intervals = max(2, int(round(threshold / step)))
    intervals += intervals % 2
    errors = np.sort(np.asarray(errors, dtype=np.float64))
    levels = np.linspace(0.0, threshold, intervals + 1)
    return levels, np.searchsorted(errors, levels, side="right") / len(errors)


def failure_rate_and_auc(errors, threshold: float = 0.10, step: float = 1e-4) -> tuple[float, float]:
    """FaRL's failure rate, 1 - CED(threshold), and AUC: the CED's area by Simpson's rule over its levels (see
    ``ced_curve``), divided by ``threshold``.

    Simpson's rule (h / 3 * (f0 + 4 f1 + 2 f2 + ... + 4 f(n-1) + fn)) weighs a step of the CED by where it falls on
    the grid, so it differs from the exact area, mean(max(0, 1 - error / threshold)), by less than step / threshold
    (in either direction); it is kept because published AUCs come from it.
    """
    levels, fractions = ced_curve(errors, threshold, step)
    weights = np.ones(len(levels))
    weights[1:-1:2], weights[2:-1:2] = 4.0, 2.0
    area = (levels[1] - levels[0]) / 3.0 * float(weights @ fractions)
    return float(1.0 - fractions[-1]), float(area / levels[-1])


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class LandmarkNME(evaluate.Metric):
    def _info(self):
        points = datasets.Sequence(datasets.Sequence(datasets.Value("float32")))  # (N, 2), N may vary per image
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": points, "references": points}),
        )

    def _compute(
        self,
        predictions,
        references,
        normalization="inter_ocular",
        failure_threshold=0.10,
        ced_step=1e-4,
        left_eye=None,
        right_eye=None,
        boxes=None,
    ):
        errors = per_image_nme(predictions, references, normalization, left_eye, right_eye, boxes)
        failure_rate, auc = failure_rate_and_auc(errors, failure_threshold, ced_step)
        return {"nme": float(errors.mean()), "failure_rate": failure_rate, "auc": auc, "per_image_nme": errors.tolist()}
