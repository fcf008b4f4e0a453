"""Batched, on-device augmentations for ProS.

- :class:`MultiCropAugmentation` (``multicrop.py``): DINO multi-crop for pre-training, a uint8 batch in, global and
  local crops out, every op per sample without a Python loop over the batch.
- :class:`LandmarkAugmentation` and :func:`resize_with_landmarks` (``landmarks.py``): similarity transforms that move
  images and facial landmarks together, for fine-tuning.
- ``functional.py``: the pure per-op tensor functions both are built from.
"""

from . import functional
from .functional import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from .landmarks import (
    LandmarkAugmentation,
    LandmarkAugmentationConfig,
    LandmarkParams,
    resize_with_landmarks,
    similarity_matrices,
    transform_points,
    warp_images,
)
from .multicrop import MultiCropAugmentation, MultiCropConfig, MultiCropParams, ViewGroupParams

__all__ = [
    "functional",
    "IMAGENET_DEFAULT_MEAN",
    "IMAGENET_DEFAULT_STD",
    "MultiCropAugmentation",
    "MultiCropConfig",
    "MultiCropParams",
    "ViewGroupParams",
    "LandmarkAugmentation",
    "LandmarkAugmentationConfig",
    "LandmarkParams",
    "resize_with_landmarks",
    "similarity_matrices",
    "transform_points",
    "warp_images",
]
