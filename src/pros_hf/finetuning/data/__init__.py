"""Labelled face data for fine-tuning: loading, validation, few-shot splits, transforms and the collator.

Modules: `tasks` (the label types shared by the rest), `sources` (the loaders below and `load_task_data`),
`validation` (`LabelError` and the label checks), `splits` (few-shot and train/test splits), `collate` (processor
geometry, augmentation, `FaceTaskCollator`). Every name is importable from `pros_hf.finetuning.data`.

Sources (one of them; `load_task_data` picks by argument):

(a) **A folder of images and a label file** (`image_dir` + `labels_file`, CSV or JSON). Every row has a `file_name`
    column (path relative to `image_dir`) and the label of the task:

    =============  ==========================================================================================
    task           columns
    =============  ==========================================================================================
    expression     `expression`: an integer class id in [0, C) or a class name from `label_names`
                   (default: the seven basic expressions `EXPRESSION_NAMES`, in that order)
    attributes     **one 0/1 column per attribute, named after it** (CelebA's layout, its -1 written as 0):
                   every column other than `file_name`, `expression`, `landmarks` and `identity` is an
                   attribute, unless `label_names` lists the ones to use
    landmarks      `landmarks`: 2N numbers in pixel coordinates of the image (x, y of point 0, then point 1, ...),
                   or N [x, y] pairs in JSON; in CSV one cell, numbers separated by spaces or commas
    =============  ==========================================================================================

    JSON is a list of records (`[{"file_name": ..., ...}, ...]`) or JSON Lines (`.jsonl`, one record a line);
    CSV has a header row. Pixel coordinates follow the package's convention: pixel (i, j)'s centre is at x=i, y=j.

(b) **A saved dataset** (`datasets.load_from_disk`) or (c) **a Hub dataset** (`datasets.load_dataset`), with an
    image column and the task's column: `expression` a `ClassLabel` or int; `attributes` a list of `ClassLabel` ids
    of the attributes present (the synthetic faces' encoding), or a fixed-length 0/1 vector with `label_names`,
    or separate 0/1 columns named by `attribute_columns`; `landmarks` (N, 2) or 2N pixel coordinates.

(d) **The synthetic faces** (default): `make_synthetic_faces` at 128 px, cropped around the detected face to 64 px
    with `crop_faces_in_dataset` (margin 0.05), exactly as `examples/demo.py` prepares its pre-training images;
    train and test sets are rendered with different seeds (0 and 1, the demo's). They are cached on disk.

Every source goes through `validate_task_dataset`: a missing label, a class id or attribute value out of range, or a
wrong number of landmarks raises `LabelError` naming the row (and its `file_name` when there is one); a label file
naming images that do not exist raises `FileNotFoundError` naming them, and one naming files that are not images (their
header is read) a `ValueError` naming them and their rows.
"""

from .collate import FaceTaskCollator, default_augmentation, processed_size, processor_point_transform
from .sources import (
    NON_ATTRIBUTE_COLUMNS,
    SYNTHETIC_CROP_MARGIN,
    SYNTHETIC_CROP_SIZE,
    SYNTHETIC_RENDER_SIZE,
    SYNTHETIC_TEST_SEED,
    SYNTHETIC_TRAIN_SEED,
    load_task_data,
    read_label_file,
    synthetic_face_crops,
)
from .splits import few_shot_indices, label_array, split_train_test
from .tasks import TASKS, TaskData, TaskLabels, default_label_names, multi_hot, task_features
from .validation import LabelError, normalize_task_dataset, validate_task_dataset

__all__ = [
    "NON_ATTRIBUTE_COLUMNS",
    "SYNTHETIC_CROP_MARGIN",
    "SYNTHETIC_CROP_SIZE",
    "SYNTHETIC_RENDER_SIZE",
    "SYNTHETIC_TEST_SEED",
    "SYNTHETIC_TRAIN_SEED",
    "TASKS",
    "FaceTaskCollator",
    "LabelError",
    "TaskData",
    "TaskLabels",
    "default_augmentation",
    "default_label_names",
    "few_shot_indices",
    "label_array",
    "load_task_data",
    "multi_hot",
    "normalize_task_dataset",
    "processor_point_transform",
    "processed_size",
    "read_label_file",
    "split_train_test",
    "synthetic_face_crops",
    "task_features",
    "validate_task_dataset",
]
