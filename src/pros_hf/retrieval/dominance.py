"""Face dominance, the keep/reject thresholds, and face-centred square crops: pure functions of boxes and arrays.

ProS pre-trains on images in which the face is the dominant region. An image is kept when its largest confident face
is large in pixels and large relative to the image; the stored sample is a square crop centred on that face.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .detectors import Detection

Box = tuple[float, float, float, float]

# Why each image was rejected; "kept" is the status of accepted images. The report counts every status.
REJECTION_REASONS = ("no_face", "below_score", "below_face_size", "below_dominance")
PAD_MODES = ("edge", "constant", "reflect")


def clip_box(box: Sequence[float], width: int, height: int) -> Box:
    """``box`` (x0, y0, x1, y1) clipped to the image; an empty box collapses to zero area."""
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, x1 = min(max(x0, 0.0), width), min(max(x1, 0.0), width)
    y0, y1 = min(max(y0, 0.0), height), min(max(y1, 0.0), height)
    return (x0, y0, max(x0, x1), max(y0, y1))


def box_area(box: Sequence[float]) -> float:
    x0, y0, x1, y1 = box
    return max(0.0, x1 - x0) * max(0.0, y1 - y0)


def face_dominance(box: Sequence[float], width: int, height: int) -> float:
    """Face box area inside the image / image area, in [0, 1] (the part of a box outside the frame does not count)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"Image size must be positive; got {width}x{height}.")
    return box_area(clip_box(box, width, height)) / float(width * height)


@dataclass(frozen=True)
class FaceThresholds:
    """When an image counts as face-dominant. Checked in this order; the first failure is the rejection reason.

    Args:
        min_score: detector confidence in [0, 1]. 0.5 is YuNet's own default; lower admits profiles and blurred faces
            but also textures that look like faces, which pre-training would then learn as "faces". Raise it (0.7)
            on noisy web pools, where a false face costs more than a missed one.
        min_face_size: shorter side of the face box, in pixels of the ORIGINAL image. Crops are resized to
            ``crop_size``; a face much smaller than that is mostly interpolation blur, which teaches the model to
            ignore fine detail. 16 keeps 25x25 LFW crops (faces ~17-25 px); use ~64 for real pre-training at 224.
        min_dominance: largest face box area / image area. The face must be the dominant region, else the global
            crops of self-distillation are mostly background and the prototypes drift to scene content. 0.2 keeps
            portraits and head-and-shoulders shots and rejects group photos and street scenes; tight face crops
            (LFW) score 0.5-1.0.
    """

    min_score: float = 0.5
    min_face_size: float = 16.0
    min_dominance: float = 0.2

    def __post_init__(self):
        if not 0.0 <= self.min_score <= 1.0:
            raise ValueError(f"min_score must be in [0, 1]; got {self.min_score}.")
        if self.min_face_size < 0:
            raise ValueError(f"min_face_size must be >= 0; got {self.min_face_size}.")
        if not 0.0 <= self.min_dominance <= 1.0:
            raise ValueError(f"min_dominance must be in [0, 1]; got {self.min_dominance}.")


@dataclass(frozen=True)
class FaceDecision:
    """The outcome for one image: ``status`` is "kept" or one of :data:`REJECTION_REASONS`.

    ``face`` is the face the decision was taken on (the largest confident one, or the best-scoring one when none is
    confident; None when nothing was detected), ``dominance`` its dominance (0 when there is no face).
    """

    status: str
    face: Detection | None
    dominance: float

    @property
    def kept(self) -> bool:
        return self.status == "kept"


def select_face(detections: Sequence[Detection], width: int, height: int, thresholds: FaceThresholds) -> FaceDecision:
    """Keep or reject an image from its detections: largest face above ``min_score``, then size, then dominance."""
    if not detections:
        return FaceDecision("no_face", None, 0.0)
    confident = [d for d in detections if d.score >= thresholds.min_score]
    if not confident:
        best = max(detections, key=lambda d: d.score)
        return FaceDecision("below_score", best, face_dominance(best.box, width, height))
    face = max(confident, key=lambda d: box_area(clip_box(d.box, width, height)))
    dominance = face_dominance(face.box, width, height)
    x0, y0, x1, y1 = clip_box(face.box, width, height)
    if min(x1 - x0, y1 - y0) < thresholds.min_face_size:
        return FaceDecision("below_face_size", face, dominance)
    if dominance < thresholds.min_dominance:
        return FaceDecision("below_dominance", face, dominance)
    return FaceDecision("kept", face, dominance)


def square_crop_box(box: Sequence[float], width: int, height: int, margin: float = 0.25, shift_inside: bool = True):
    """The integer square (x0, y0, x1, y1) around a face: side = longer face side * (1 + 2 * margin).

    Centred on the face box. With ``shift_inside`` a square that fits in the image but crosses a border is shifted
    back inside (real pixels beat padding; the face stays whole because the square contains it); a square larger than
    the image keeps its centre and is padded by :func:`crop_square_face`. The result may extend past the borders.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0; got {margin}.")
    x0, y0, x1, y1 = (float(v) for v in box)
    if x1 <= x0 or y1 <= y0:
        raise ValueError(f"Empty face box {tuple(box)}.")
    side = max(1, int(round(max(x1 - x0, y1 - y0) * (1.0 + 2.0 * margin))))
    left = int(round((x0 + x1) / 2.0 - side / 2.0))
    top = int(round((y0 + y1) / 2.0 - side / 2.0))
    if shift_inside:
        if side <= width:
            left = min(max(left, 0), width - side)
        if side <= height:
            top = min(max(top, 0), height - side)
    return (left, top, left + side, top + side)


def crop_square_face(
    image: np.ndarray,
    box: Sequence[float],
    margin: float = 0.25,
    size: int = 112,
    pad_mode: str = "edge",
    shift_inside: bool = True,
) -> np.ndarray:
    """A ``size`` x ``size`` RGB uint8 crop centred on the face ``box`` of ``image`` (H, W, 3 uint8).

    Args:
        margin: context around the face on each side, as a fraction of the longer face side. 0.25 keeps hair, ears
            and chin, which the multi-crop augmentation then cuts into (a crop without margin has no room for
            the global crops' scale jitter).
        size: stored side in pixels; the pre-training loader resizes again, so store at least the training size.
        pad_mode: how pixels outside the image are filled: "edge" (replicate; no artificial black frame the model
            could key on), "constant" (black), "reflect".
    """
    import cv2

    if pad_mode not in PAD_MODES:
        raise ValueError(f"Unknown pad_mode {pad_mode!r}; valid: {', '.join(PAD_MODES)}.")
    if size < 1:
        raise ValueError(f"size must be >= 1; got {size}.")
    image = np.asarray(image)
    height, width = image.shape[:2]
    x0, y0, x1, y1 = square_crop_box(box, width, height, margin=margin, shift_inside=shift_inside)
    pad_left, pad_top = max(0, -x0), max(0, -y0)
    pad_right, pad_bottom = max(0, x1 - width), max(0, y1 - height)
    crop = image[max(0, y0) : min(height, y1), max(0, x0) : min(width, x1)]
    if crop.size == 0:
        raise ValueError(f"Face box {tuple(box)} lies outside the {width}x{height} image.")
    if pad_left or pad_top or pad_right or pad_bottom:
        border = {"edge": cv2.BORDER_REPLICATE, "constant": cv2.BORDER_CONSTANT, "reflect": cv2.BORDER_REFLECT_101}
        if (
            pad_mode == "reflect"
            and max(pad_left, pad_right) >= crop.shape[1]
            or (pad_mode == "reflect" and max(pad_top, pad_bottom) >= crop.shape[0])
        ):
            pad_mode = "edge"  # reflection needs more pixels than the pad; replicate instead of failing
        crop = cv2.copyMakeBorder(crop, pad_top, pad_bottom, pad_left, pad_right, border[pad_mode], value=(0, 0, 0))
    interpolation = cv2.INTER_AREA if crop.shape[0] > size else cv2.INTER_CUBIC
    return np.ascontiguousarray(cv2.resize(crop, (size, size), interpolation=interpolation))
