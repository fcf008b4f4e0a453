"""Data paths: synthetic faces (the embedded default data), safe decoding, and loading pre-training images."""

from .contact_sheet import draw_contact_sheet
from .decoding import (
    IMAGE_EXTENSIONS,
    UnreadableImageError,
    decode_to_array,
    list_image_files,
    open_image_rgb,
    resize_center_crop,
)
from .loading import (
    PretrainingImageDataset,
    PretrainingImageIterableDataset,
    PretrainingSourceError,
    collate_pretraining,
    load_pretraining_images,
    make_pretraining_dataloader,
)
from .skips import SkipReport
from .synthetic import (
    ATTRIBUTE_NAMES,
    EXPRESSION_NAMES,
    FLIP_PERMUTATION_68,
    attributes_to_multi_hot,
    iter_synthetic_faces,
    make_synthetic_faces,
    render_face,
    synthetic_faces_arrays,
)

__all__ = [
    "ATTRIBUTE_NAMES",
    "EXPRESSION_NAMES",
    "FLIP_PERMUTATION_68",
    "IMAGE_EXTENSIONS",
    "PretrainingImageDataset",
    "PretrainingImageIterableDataset",
    "PretrainingSourceError",
    "SkipReport",
    "UnreadableImageError",
    "attributes_to_multi_hot",
    "collate_pretraining",
    "decode_to_array",
    "draw_contact_sheet",
    "iter_synthetic_faces",
    "list_image_files",
    "load_pretraining_images",
    "make_pretraining_dataloader",
    "make_synthetic_faces",
    "open_image_rgb",
    "render_face",
    "resize_center_crop",
    "synthetic_faces_arrays",
]
