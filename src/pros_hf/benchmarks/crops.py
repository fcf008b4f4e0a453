"""The protocols' face crop: a square around the face box, enlarged, resized to the model's input size.

Coordinates follow the package's convention (pixel i's centre is at x = i), and the crop is an exact affine map (no
rounding of the square to whole pixels), so landmarks move with the image to within interpolation; parts of the
square outside the image are filled with black, as the affine warps of HRNet and FaRL do.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass
class FaceCrop:
    """A crop and how it maps back: `to_original(points)` takes points in the crop's pixels to the source image's
    (to score predictions where the protocol scores them, in the original image)."""

    image: Image.Image
    landmarks: np.ndarray | None  # (N, 2) float32 in the crop's pixels, when landmarks were given
    region: tuple[float, float, float, float]  # the cropped region's edges (x0, y0, x1, y1) in the source's pixels
    scale: float  # crop pixels per source pixel

    def to_original(self, points) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64)
        left, top = self.region[0], self.region[1]
        return ((points + 0.5) / self.scale + [left, top]).astype(np.float32)


def square_around(box: Sequence[float], enlargement: float) -> tuple[float, float, float, float]:
    """The square (x0, y0, x1, y1) centred on `box` whose side is the box's longer side times `enlargement`.

    The square's edges are pixel edges: (x0, y0, x1, y1) = (-0.5, -0.5, W - 0.5, H - 0.5) is a whole W x H image.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (np.isfinite([x0, y0, x1, y1]).all() and x1 > x0 and y1 > y0):
        raise ValueError(f"face box {tuple(box)} must be finite (x0, y0, x1, y1) with x1 > x0 and y1 > y0.")
    if not enlargement > 0:
        raise ValueError(f"enlargement must be positive, got {enlargement!r}.")
    side = max(x1 - x0, y1 - y0) * enlargement
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    return (cx - side / 2.0, cy - side / 2.0, cx + side / 2.0, cy + side / 2.0)


def crop_to_box(
    image, box: Sequence[float], landmarks=None, enlargement: float = 1.25, image_size: int = 224
) -> FaceCrop:
    """Crop `image` (PIL or (H, W, 3) uint8) to the square around `box` enlarged by `enlargement`, resized to
    `image_size` x `image_size` (bilinear), with `landmarks` (N, 2) mapped into the crop.

    224 is the ViT input of the classification protocols; FaRL's alignment runs at 448.
    """
    if not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ValueError(f"image_size must be a positive integer, got {image_size!r}.")
    if not isinstance(image, Image.Image):
        image = Image.fromarray(np.asarray(image))
    image = image.convert("RGB")
    square = square_around(box, enlargement)
    scale = image_size / (square[2] - square[0])
    # PIL's AFFINE maps output pixel edges to input pixel edges (pixel i spans [i, i + 1]); a square edge at x is the
    # pixel-edge coordinate x + 0.5
    step = 1.0 / scale
    coefficients = (step, 0.0, square[0] + 0.5, 0.0, step, square[1] + 0.5)
    cropped = image.transform(
        (image_size, image_size),
        Image.Transform.AFFINE,
        coefficients,
        resample=Image.Resampling.BILINEAR,
        fillcolor=(0, 0, 0),
    )
    points = None
    if landmarks is not None:
        points = np.asarray(landmarks, dtype=np.float64)
        if points.ndim != 2 or points.shape[1] != 2:
            raise ValueError(f"landmarks must be (N, 2) points, got shape {points.shape}.")
        points = ((points - [square[0], square[1]]) * scale - 0.5).astype(np.float32)
    return FaceCrop(image=cropped, landmarks=points, region=square, scale=scale)
