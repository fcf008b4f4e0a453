"""The embedded representation benchmark: face-dominant synthetic faces whose every label a micro ViT can learn.

Rendered directly as the crop a face detector would give (no detector pass), with the settings under which the
supervised ceiling of the micro ViT is far above the floor on every task:

- `face_scale` 0.38: the face fills the image as a tight detected crop does, so that the eyes are ~20 px apart at
  48 px and a landmark error of one pixel is an inter-ocular NME of ~0.05 (at 0.34 the ceiling's NME stayed at
  0.064). At 0.38 a face takes 2.5 draws of its pose on average before every landmark is in the frame (a draw
  that leaves it costs no drawing); above it, the share of faces kept shrinks fast;
- `expression_strength` 3: an expression moves enough pixels of a 48 px face for the ceiling to reach ~0.90 on
  7 classes (0.71 at 2, ~0.5 at 1);
- `pose_scale` 0.3: a third of the default yaw / pitch / roll / scale / shift ranges, as a face aligner leaves them;
- identities: 10 images per person, so the training set holds hundreds of people and the test set (another seed,
  other people) at least 100 held-out identities.

The train and test sets come from different seeds, so their people differ: identity is scored on people no
backbone trained on.
"""

import numpy as np

from ..data.synthetic import FLIP_PERMUTATION_68, make_synthetic_faces, synthetic_faces_arrays
from .evaluation import EvaluationData
from .tasks import TASKS, task_targets

BENCHMARK_FACES = {"face_scale": 0.38, "expression_strength": 3.0, "pose_scale": 0.3}
IMAGES_PER_PERSON = 10
TRAIN_SEED, TEST_SEED = 0, 1
FLIP_PERMUTATION = FLIP_PERMUTATION_68


def benchmark_settings(num_images: int, image_size: int, seed: int) -> dict:
    """The generator's arguments for `num_images` benchmark faces of `image_size` px drawn with `seed`."""
    return {
        "num_images": num_images,
        "image_size": image_size,
        "seed": seed,
        "num_identities": max(1, num_images // IMAGES_PER_PERSON),
        **BENCHMARK_FACES,
    }


def benchmark_faces_dataset(num_images: int, image_size: int = 48, seed: int = TRAIN_SEED, **kwargs):
    """The benchmark faces as a `datasets.Dataset` (the layout of `make_synthetic_faces`), e.g. to pre-train on
    with examples/pretrain.py --train_dir; `kwargs` go to `make_synthetic_faces` (image_format, num_proc, ...)."""
    return make_synthetic_faces(**benchmark_settings(num_images, image_size, seed), **kwargs)


def benchmark_evaluation_data(
    num_images: int, image_size: int, seed: int, image_processor, num_proc: int = 1
) -> EvaluationData:
    """The benchmark faces of `seed`, processed by `image_processor`, with every task's targets (landmarks
    normalised to the image, identities renumbered 0..P-1); `num_proc` processes render them."""
    arrays = synthetic_faces_arrays(**benchmark_settings(num_images, image_size, seed), num_proc=num_proc)
    pixel_values = image_processor(list(arrays["images"]), return_tensors="pt")["pixel_values"]
    sizes = np.full((num_images, 2), image_size, np.float32)
    _, identity = np.unique(arrays["identity"], return_inverse=True)
    columns = {
        "expression": arrays["expression"],
        "attributes": arrays["attributes"],
        "landmarks": arrays["landmarks"],
        "identity": identity.astype(np.int64),
    }
    targets = {
        name: task_targets(TASKS[name], column, sizes, num_attributes=arrays["attributes"].shape[1])
        for name, column in columns.items()
    }
    return EvaluationData(pixel_values=pixel_values.float(), targets=targets)


__all__ = [
    "BENCHMARK_FACES",
    "FLIP_PERMUTATION",
    "TEST_SEED",
    "TRAIN_SEED",
    "benchmark_evaluation_data",
    "benchmark_faces_dataset",
    "benchmark_settings",
]
