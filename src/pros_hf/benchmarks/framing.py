"""A benchmark's faces framed as its protocol frames them, row by row as the model reads them, and the way back: the
model's points in the source image's pixels, where the protocol scores them."""

from dataclasses import dataclass

import numpy as np

from .crops import FaceCrop, square_around
from .protocols import CropRule


@dataclass(frozen=True)
class ProtocolFraming:
    """`framing(row)` is the row with its image (and landmarks) framed by `rule` at `image_size`: a square around
    `face_box`, enlarged and resized, or the image as distributed when the rule has no box. Used as the collators'
    `prepare_row`, so the crop happens on access and no cropped copy of the data set is written."""

    rule: CropRule
    image_size: int

    def __call__(self, row: dict) -> dict:
        landmarks = row.get("landmarks")
        crop = self.rule.apply(row["image"], row.get("face_box"), landmarks, self.image_size)
        framed = {**row, "image": crop.image}
        if landmarks is not None:
            framed["landmarks"] = crop.landmarks
        return framed

    def frame_of(self, box=None, size: tuple[int, int] | None = None) -> FaceCrop:
        """The crop geometry of a row without decoding its image: from its `face_box`, or for a rule without a box
        the whole image of `size` (height, width)."""
        if self.rule.box is None:
            height, width = size
            return FaceCrop(image=None, landmarks=None, region=(-0.5, -0.5, width - 0.5, height - 0.5), scale=1.0)
        square = square_around(box, self.rule.enlargement)
        return FaceCrop(image=None, landmarks=None, region=square, scale=self.image_size / (square[2] - square[0]))

    def framed_size(self, size: tuple[int, int]) -> tuple[int, int]:
        """(height, width) of a framed image whose source is `size`."""
        return size if self.rule.box is None else (self.image_size, self.image_size)

    def to_source(self, points, box=None, size: tuple[int, int] | None = None) -> np.ndarray:
        """`points` (N, 2) in the framed image's pixels -> the source image's pixels."""
        return self.frame_of(box, size).to_original(points)


__all__ = ["ProtocolFraming"]
