"""Face detectors behind one interface, with weights that ship inside PyPI wheels (nothing downloads at run time).

Every back-end takes an RGB ``uint8`` array (H, W, 3) and returns :class:`Detection` objects in the pixel coordinates
of that array. The shared :class:`FaceDetector` base does the geometry every back-end needs:

* small images (e.g. 25x25 LFW crops) are upscaled to ``min_side`` first, because both detectors have a minimum face
  size (YuNet's smallest anchors are ~10 px, the Haar cascade's window is 24 px) and miss faces below it;
* large images are downscaled to ``max_side`` (YuNet degrades above ~960 px and both get slow);
* an optional border (``pad_fraction`` of the side, edge-replicated) gives tight face crops the context that a sliding
  window detector expects around a face;
* boxes and landmarks are mapped back to the input image's pixels.
"""

import math
from dataclasses import dataclass

import numpy as np

_INSTALL_HINT = 'pip install "pros-hf[faces]"'


@dataclass(frozen=True)
class Detection:
    """One detected face.

    ``box`` is (x0, y0, x1, y1) in pixels of the image given to ``detect``; it may extend past the image borders for
    faces cut by the frame (the face centre stays right, which the square crop needs). ``score`` is in [0, 1] for every
    back-end. ``landmarks`` are 5 (x, y) points (eyes, nose tip, mouth corners) when the back-end gives them.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: tuple[tuple[float, float], ...] | None = None

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


def _inside_fraction(box, width: int, height: int) -> float:
    x0, y0, x1, y1 = box
    area = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    inside = max(0.0, min(x1, width) - max(x0, 0.0)) * max(0.0, min(y1, height) - max(y0, 0.0))
    return inside / area if area > 0 else 0.0


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"Face detectors take an RGB uint8 array of shape (H, W, 3); got dtype {image.dtype} and shape "
            f"{image.shape}. Convert with np.asarray(pil_image.convert('RGB'))."
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"Empty image of shape {image.shape}.")
    return image


class FaceDetector:
    """Base class: resize/pad for the back-end, call :meth:`_detect_prepared`, map the results back.

    Args:
        min_side: images whose shorter side is below this are upscaled to it (bicubic) before detection. The default
            per back-end is tuned on scikit-image's 25x25 LFW crops (see the back-end docstrings).
        max_side: images whose longer side is above this are downscaled to it; faces that are the dominant region
            (what curation keeps) stay far above the detectors' minimum size.
        pad_fraction: edge-replicated border added on every side, as a fraction of the (resized) longer side. Helps
            detectors that need context around a face (Haar); hurts YuNet on tight crops, hence 0 there.
        max_outside_fraction: with padding, detections with more than this fraction of their box outside the
            original image are dropped: a "face" found mostly in the replicated border is an artefact of padding.
    """

    name = "base"

    def __init__(
        self, min_side: int = 64, max_side: int = 960, pad_fraction: float = 0.0, max_outside_fraction: float = 0.4
    ):
        if not 0.0 <= max_outside_fraction <= 1.0:
            raise ValueError(f"max_outside_fraction must be in [0, 1]; got {max_outside_fraction}.")
        self.max_outside_fraction = float(max_outside_fraction)
        if min_side < 1 or max_side < min_side:
            raise ValueError(f"Need 1 <= min_side <= max_side; got min_side={min_side}, max_side={max_side}.")
        if not 0.0 <= pad_fraction <= 1.0:
            raise ValueError(f"pad_fraction must be in [0, 1]; got {pad_fraction}.")
        self.min_side = int(min_side)
        self.max_side = int(max_side)
        self.pad_fraction = float(pad_fraction)

    def _detect_prepared(self, image: np.ndarray) -> list[Detection]:
        """Detect on an already resized/padded RGB uint8 image; coordinates in that image."""
        raise NotImplementedError

    def detect(self, image: np.ndarray) -> list[Detection]:
        """Faces in ``image`` (RGB uint8, H x W x 3), best score first, boxes in the input's pixels."""
        import cv2

        image = _check_image(image)
        height, width = image.shape[:2]
        scale = 1.0
        if min(height, width) < self.min_side:
            scale = self.min_side / min(height, width)
        if max(height, width) * scale > self.max_side:
            scale = self.max_side / max(height, width)
        prepared = image
        if scale != 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            interpolation = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
            prepared = cv2.resize(image, size, interpolation=interpolation)
        # the exact per-axis scales after rounding, so that boxes map back without drift
        scale_x = prepared.shape[1] / width
        scale_y = prepared.shape[0] / height
        pad = int(round(self.pad_fraction * max(prepared.shape[:2])))
        if pad > 0:
            prepared = cv2.copyMakeBorder(prepared, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        prepared = np.ascontiguousarray(prepared)

        results = []
        for det in self._detect_prepared(prepared):
            x0, y0, x1, y1 = det.box
            box = ((x0 - pad) / scale_x, (y0 - pad) / scale_y, (x1 - pad) / scale_x, (y1 - pad) / scale_y)
            landmarks = None
            if det.landmarks is not None:
                landmarks = tuple(((x - pad) / scale_x, (y - pad) / scale_y) for x, y in det.landmarks)
            if pad > 0 and _inside_fraction(box, width, height) < 1.0 - self.max_outside_fraction:
                continue  # mostly in the replicated border: an artefact of the padding, not a face of the image
            results.append(Detection(box=tuple(float(v) for v in box), score=float(det.score), landmarks=landmarks))
        results.sort(key=lambda d: d.score, reverse=True)
        return results

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(min_side={self.min_side}, max_side={self.max_side}, "
            f"pad_fraction={self.pad_fraction})"
        )


class YuNetDetector(FaceDetector):
    """YuNet (libfacedetection, BSD) through the ``yuface`` wheel: fast, accurate, 5 landmarks.

    ``yuface.detect`` wants BGR and returns confidences in 0..100 and boxes as (x, y, w, h); scores are divided by 100
    here. Defaults: upscaling to 80 px finds all 100 of scikit-image's ``lfw_subset`` faces at score >= 0.5 (larger
    targets, >=200 px, lose some: a face that fills the whole frame exceeds YuNet's largest anchors); no padding,
    which lowers YuNet's scores on tight crops.

    Args:
        raw_threshold: detections below this score are not returned at all. Kept low (0.05) so that the curation's
            own ``min_score`` decides, and "below score" is counted apart from "no face".
    """

    name = "yunet"

    def __init__(
        self,
        min_side: int = 80,
        max_side: int = 960,
        pad_fraction: float = 0.0,
        raw_threshold: float = 0.05,
        max_outside_fraction: float = 0.4,
    ):
        super().__init__(min_side, max_side, pad_fraction, max_outside_fraction)
        try:
            import yuface
        except ImportError as error:
            raise ImportError(f"The 'yunet' face detector needs the yuface package: {_INSTALL_HINT}") from error
        _import_cv2("yunet")
        self._yuface = yuface
        self.raw_threshold = float(raw_threshold)

    def _detect_prepared(self, image: np.ndarray) -> list[Detection]:
        bgr = np.ascontiguousarray(image[:, :, ::-1])
        confs, boxes, landmarks = self._yuface.detect(bgr, conf=self.raw_threshold)
        detections = []
        for conf, box, points in zip(confs, boxes, landmarks):
            x, y, w, h = (float(v) for v in box)  # int16 in yuface: cast before any arithmetic (overflow)
            if w <= 0 or h <= 0:
                continue
            pts = np.asarray(points, dtype=np.float64).reshape(5, 2)
            detections.append(
                Detection(
                    box=(x, y, x + w, y + h),
                    score=float(conf) / 100.0,
                    landmarks=tuple((float(px), float(py)) for px, py in pts),
                )
            )
        return detections


class HaarCascadeDetector(FaceDetector):
    """OpenCV 4.x Haar cascade (frontal face default): weaker than YuNet, a dependency-light fallback.

    The cascade gives no probability; its last-stage level weight (a margin, roughly -2..10) is mapped to [0, 1] with
    a logistic, so that ``min_score=0.5`` means "positive margin". No landmarks. Defaults, measured on scikit-image's
    ``lfw_subset``: a 25% edge-replicated border (the cascade needs context around a face: 85 -> 98 faces found) and
    ``min_neighbors=3`` (fewer merges keep false positives out; 0 of 100 non-faces found).

    Args:
        cascade: file name inside ``cv2.data.haarcascades`` or a path to a cascade XML.
        scale_factor: image pyramid step; smaller is slower and finds more sizes.
        min_neighbors: overlapping raw hits needed to accept a face; the cascade's own false positive control.
        min_size: smallest face, in pixels of the resized image (the cascade's window is 24 px).
    """

    name = "haar"

    def __init__(
        self,
        min_side: int = 64,
        max_side: int = 960,
        pad_fraction: float = 0.25,
        cascade: str = "haarcascade_frontalface_default.xml",
        scale_factor: float = 1.1,
        min_neighbors: int = 3,
        min_size: int = 24,
        max_outside_fraction: float = 0.4,
    ):
        super().__init__(min_side, max_side, pad_fraction, max_outside_fraction)
        cv2 = _import_cv2("haar")
        import os

        haar_dir = getattr(getattr(cv2, "data", None), "haarcascades", None)
        path = cascade if os.path.isfile(cascade) else os.path.join(haar_dir or "", cascade)
        if not os.path.isfile(path):
            raise ImportError(
                f"OpenCV has no Haar cascade file {cascade!r} (looked in {haar_dir!r}); opencv-python-headless 5.x "
                f"dropped them: {_INSTALL_HINT} (pins opencv <5)."
            )
        self._classifier = cv2.CascadeClassifier(path)
        if self._classifier.empty():
            raise ValueError(f"Could not load the Haar cascade {path!r}.")
        if scale_factor <= 1.0:
            raise ValueError(f"scale_factor must be > 1; got {scale_factor}.")
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.min_size = int(min_size)
        self._cv2 = cv2

    def _detect_prepared(self, image: np.ndarray) -> list[Detection]:
        gray = self._cv2.cvtColor(image, self._cv2.COLOR_RGB2GRAY)
        boxes, _, weights = self._classifier.detectMultiScale3(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size),
            outputRejectLevels=True,
        )
        weights = np.asarray(weights, dtype=np.float64).ravel()
        detections = []
        for (x, y, w, h), weight in zip(np.asarray(boxes).reshape(-1, 4), weights):
            x, y, w, h = (float(v) for v in (x, y, w, h))
            score = 1.0 / (1.0 + math.exp(-float(weight)))
            detections.append(Detection(box=(x, y, x + w, y + h), score=score))
        return detections


def _import_cv2(detector_name: str):
    try:
        import cv2
    except ImportError as error:
        raise ImportError(f"The {detector_name!r} face detector needs OpenCV: {_INSTALL_HINT}") from error
    return cv2


FACE_DETECTORS: dict[str, type[FaceDetector]] = {"yunet": YuNetDetector, "haar": HaarCascadeDetector}


def get_face_detector(name: str = "yunet", **kwargs) -> FaceDetector:
    """A face detector by name (``"yunet"``, the default and the accurate one, or ``"haar"``); kwargs go to its class."""
    try:
        detector_class = FACE_DETECTORS[name]
    except KeyError:
        raise ValueError(f"Unknown face detector {name!r}; valid names: {', '.join(sorted(FACE_DETECTORS))}.") from None
    return detector_class(**kwargs)
