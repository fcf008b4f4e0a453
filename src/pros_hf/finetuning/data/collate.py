"""Rows -> model batches: the processor's geometry for landmark targets, training augmentation, the collator."""

import numpy as np
import torch

from .tasks import TaskLabels, multi_hot


def processor_point_transform(processor, height: int, width: int) -> tuple[float, float, float, float]:
    """`(sx, sy, tx, ty)` mapping a pixel-centre point of an `height x width` image into the processed image
    (`x' = sx * x + tx`): `ProSImageProcessor.point_transform` without the output size."""
    return processor.point_transform(height, width)[:4]


def processed_size(processor) -> tuple[int, int]:
    """(height, width) of the processor's output for square inputs."""
    if processor.do_center_crop:
        return int(processor.crop_size["height"]), int(processor.crop_size["width"])
    side = int(processor.size["shortest_edge"])
    return side, side


def default_augmentation(
    task: str, output_size: tuple[int, int], processor, num_landmarks: int | None = None, flip_landmarks: bool = False
):
    """Training-time augmentation (a `LandmarkAugmentation`).

    Landmarks: rotation up to 15 degrees, zoom 0.9-1.1, shift 5%, image and points together; no flip unless
    `flip_landmarks` (then iBUG's 68-point permutation is used, so left and right points swap). Classification: the
    same mild similarity plus horizontal flips (expressions and these attributes are symmetric).
    """
    from ...augmentation import LandmarkAugmentation
    from ...data.synthetic import FLIP_PERMUTATION_68

    common = dict(
        output_size=output_size,
        scale=(0.9, 1.1),
        translate=0.05,
        mean=tuple(processor.image_mean),
        std=tuple(processor.image_std),
    )
    if task == "landmarks":
        if flip_landmarks and num_landmarks != 68:
            raise ValueError(
                f"flip_landmarks needs the 68-point iBUG layout (its flip permutation), got {num_landmarks} points."
            )
        return LandmarkAugmentation(
            rotation_degrees=15.0,
            flip_p=0.5 if flip_landmarks else 0.0,
            flip_permutation=FLIP_PERMUTATION_68 if flip_landmarks else None,
            **common,
        )
    return LandmarkAugmentation(rotation_degrees=10.0, flip_p=0.5, flip_permutation=(0,), **common)


class FaceTaskCollator:
    """Rows of a canonical task dataset -> a batch: `pixel_values` plus `labels` (int64 class ids for expressions,
    float multi-hot for attributes) or `landmarks` ((B, N, 2) in [0, 1] of the model input, `u = (x + 0.5) / W`
    with pixel centres at integers: `pros_hf.normalize_landmarks`' convention).

    Images go through `image_processor` (resize + center crop + normalise). With `augmentation` (training), the
    processor output is left unnormalised and the augmentation's similarity transform moves image and points together,
    then normalises. `prepare_row` (a row -> row callable) runs on every row first: a benchmark frames its faces there
    (`pros_hf.benchmarks.ProtocolFraming`), on access, so that no cropped copy of the data set is written.
    """

    def __init__(self, labels: TaskLabels, image_processor, augmentation=None, prepare_row=None):
        self.labels = labels
        self.image_processor = image_processor
        self.augmentation = augmentation
        self.prepare_row = prepare_row
        # With augmentation the processor's geometry only: the augmentation normalises after its transform.
        self._processor = (
            image_processor
            if augmentation is None
            else type(image_processor)(**{**image_processor.to_dict(), "do_normalize": False})
        )

    def __call__(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        from ...pipelines import image_height_width

        if self.prepare_row is not None:
            rows = [self.prepare_row(row) for row in rows]
        images = [row["image"] for row in rows]
        processor = self._processor
        pixel_values = processor(images, return_tensors="pt")["pixel_values"]
        batch: dict[str, torch.Tensor] = {}
        task = self.labels.task
        if task == "landmarks":
            points = []
            for image, row in zip(images, rows):
                height, width = image_height_width(image)  # PIL, HWC / CHW numpy or torch
                sx, sy, tx, ty = processor_point_transform(processor, height, width)
                xy = np.asarray(row["landmarks"], dtype=np.float32)
                points.append(np.stack([xy[:, 0] * sx + tx, xy[:, 1] * sy + ty], axis=1))
            points = torch.from_numpy(np.stack(points)).float()
        else:
            points = torch.zeros(len(rows), 1, 2)
        if self.augmentation is not None:
            pixel_values, points = self.augmentation(pixel_values, points)
        batch["pixel_values"] = pixel_values.float()
        if task == "landmarks":
            # the landmark head's convention: the input spans [0, 1] edge to edge, u = (x + 0.5) / W, with W and H
            # those of the model input (after the augmentation, which may resize)
            out_h, out_w = pixel_values.shape[-2:]
            scale = torch.tensor([out_w, out_h], dtype=torch.float32)
            batch["landmarks"] = (points + 0.5) / scale
        elif task == "expression":
            batch["labels"] = torch.tensor([int(row["expression"]) for row in rows], dtype=torch.long)
        else:
            batch["labels"] = torch.from_numpy(multi_hot([row["attributes"] for row in rows], self.labels.num_labels))
        return batch
