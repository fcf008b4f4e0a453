"""Frozen CLS features for k-NN: which network to judge (the EMA teacher), its image processor, batched extraction."""

import logging
import math
import os
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import torch
from tqdm.auto import tqdm

from ..data.decoding import UnreadableImageError, describe_source, open_image_rgb

if TYPE_CHECKING:
    from ..image_processing_pros import ProSImageProcessor

logger = logging.getLogger(__name__)

_ACCEPTED = (
    "a datasets Image feature, image file paths, bytes, {'bytes', 'path'} dicts, or pixel arrays (Array2D / Array3D)"
)


def _is_pixel_array(feature) -> bool:
    """Decoded pixels stored as arrays, passed to the image processor as they are: HWC or CHW (Array3D with 1, 3 or
    4 channels at one end) or greyscale HW of integers (Array2D; a float (68, 2) array is landmarks, not an image)."""
    import datasets

    if isinstance(feature, datasets.Array3D):
        return feature.shape[0] in (1, 3, 4) or feature.shape[-1] in (1, 3, 4)
    return isinstance(feature, datasets.Array2D) and feature.dtype in ("uint8", "uint16")


def _fsdp_types() -> tuple[type, ...]:
    from torch.distributed import fsdp

    names = ("FullyShardedDataParallel", "FSDPModule")  # FSDP1 wrappers, FSDP2 modules
    return tuple(kind for kind in (getattr(fsdp, name, None) for name in names) if kind is not None)


def holds_shards(module: torch.nn.Module) -> bool:
    """Whether `module` holds FSDP-sharded parameters: its forward then gathers them from every process, so every
    process must run it."""
    kinds = _fsdp_types()
    return bool(kinds) and any(isinstance(child, kinds) for child in module.modules())


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """Strip accelerate / DDP / DataParallel / DeepSpeed wrappers (they keep the real model in ``.module``). An FSDP
    unit is kept: its forward is what gathers its sharded weights."""
    kinds = _fsdp_types()
    while hasattr(model, "module") and isinstance(model.module, torch.nn.Module) and not isinstance(model, kinds):
        model = model.module
    return model


def default_backbone(model: torch.nn.Module) -> torch.nn.Module:
    """The network k-NN should judge: the EMA teacher of a pre-training model (what ProS exports), else the model."""
    model = _unwrap(model)
    teacher = getattr(model, "teacher", None)
    return _unwrap(teacher) if isinstance(teacher, torch.nn.Module) else model


def random_init_backbone(config, seed: int) -> torch.nn.Module:
    """The same architecture as ``config`` with seeded random weights, in eval mode: the floor a pre-trained backbone
    is compared against (k-NN, factor sensitivity)."""
    from ..modeling_pros import ProSModel

    torch.manual_seed(seed)
    return ProSModel(config).eval()


def load_backbone_and_processor(path_or_id: str, **kwargs) -> tuple[torch.nn.Module, "ProSImageProcessor"]:
    """``load_backbone(path_or_id)`` and the image processor saved with it, or one made from its config when none
    was saved (a pre-training checkpoint, or a model saved without one, has no ``preprocessor_config.json``)."""
    from ..image_processing_pros import ProSImageProcessor
    from ..loading import load_backbone

    model = load_backbone(path_or_id, **kwargs)
    try:
        processor = ProSImageProcessor.from_pretrained(path_or_id)
    except OSError:  # no preprocessor_config.json saved with the model
        processor = ProSImageProcessor.from_model_config(model.config)
    return model, processor


def _model_device(model: torch.nn.Module) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _cls_features(model: torch.nn.Module, pixel_values: torch.Tensor) -> torch.Tensor:
    """The final-norm CLS token (``pooler_output``), falling back to the first token of ``last_hidden_state``."""
    outputs = model(pixel_values=pixel_values)
    pooled = getattr(outputs, "pooler_output", None)
    if pooled is None:
        hidden = outputs.last_hidden_state if hasattr(outputs, "last_hidden_state") else outputs[0]
        pooled = hidden[:, 0]
    return pooled


def check_image_column(dataset, image_column: str, name: str = "the dataset") -> None:
    """Refuse, before any training step, an image column the training decoder (`open_image_rgb`) cannot read.

    Checks the column's type from the schema (not every image: one bad file is skipped later, not refused here). A
    string column must name existing files: a caption or an id column would otherwise fail every image at the end.
    """
    columns = getattr(dataset, "column_names", None)
    if columns is None:  # e.g. an IterableDataset without a known schema: each image is still decoded safely
        return
    if image_column not in columns:
        raise ValueError(f"image_column {image_column!r} is not a column of {name} ({columns}).")
    feature = (getattr(dataset, "features", None) or {}).get(image_column)
    if feature is None:
        return
    import datasets

    dtype = getattr(feature, "dtype", None) if isinstance(feature, datasets.Value) else None
    if isinstance(feature, datasets.Image) or dtype in ("binary", "large_binary") or _is_pixel_array(feature):
        return
    if isinstance(feature, dict) and feature and set(feature) <= {"bytes", "path"}:
        return
    if dtype in ("string", "large_string"):
        head = dataset.select_columns([image_column]).select(range(min(8, len(dataset))))[image_column]
        values = [value for value in head if value]
        if not values or any(os.path.isfile(value) for value in values):
            return
        raise ValueError(
            f"image_column {image_column!r} of {name} holds strings that are not paths of existing files "
            f"(e.g. {values[0][:80]!r}); expected {_ACCEPTED}."
        )
    raise ValueError(f"image_column {image_column!r} of {name} holds {feature}, not images; expected {_ACCEPTED}.")


def _tensor_or_loader_batches(source, batch_size: int) -> tuple[Iterable, int | None]:
    """Yield float pixel batches from a pixel tensor or a loader."""
    if isinstance(source, torch.Tensor):
        if source.ndim != 4 or not source.is_floating_point():
            raise ValueError(
                f"dataset_or_loader as a tensor must be float pixel values (N, C, H, W), got dtype {source.dtype} "
                f"and shape {tuple(source.shape)}."
            )
        starts = range(0, len(source), batch_size)
        return (source[i : i + batch_size] for i in starts), len(starts)

    def from_loader():  # a DataLoader (or any iterable) of dicts with pixel_values, tensors or (tensor, ...) tuples
        for batch in source:
            if isinstance(batch, dict) or hasattr(batch, "keys"):
                batch = batch["pixel_values"]
            elif isinstance(batch, (tuple, list)):
                batch = batch[0]
            yield batch

    return from_loader(), (len(source) if hasattr(source, "__len__") else None)


def _dataset_batches(dataset, image_processor, batch_size: int, image_column: str, kept: list[int],
                     skipped: Counter, examples: list[str]):  # fmt: skip
    """Yield pixel batches (None when a whole batch was skipped), appending decoded rows to `kept` and counting the
    others in `skipped` by reason."""
    import datasets

    images = dataset.select_columns([image_column])
    feature = images.features.get(image_column) if images.features else None
    if isinstance(feature, datasets.Image) and feature.decode:
        # raw bytes / paths: datasets' own decoder raises on one bad file, and decodes 16-bit and RGBA unlike training
        images = images.cast_column(image_column, datasets.Image(decode=False))
    pixel_arrays = _is_pixel_array(feature)
    for start in range(0, len(images), batch_size):
        decoded = []
        for row, source in enumerate(images[start : start + batch_size][image_column], start):
            if pixel_arrays:  # already pixels: nothing to decode
                decoded.append(np.asarray(source))
                kept.append(row)
                continue
            try:
                decoded.append(open_image_rgb(source))  # training's decoder: the k-NN sees the pixels training saw
                kept.append(row)
                continue
            except UnreadableImageError as error:
                reason, where = error.reason, error.source or describe_source(source)
            except Exception as error:  # as training does: one odd file must not end the evaluation
                reason, where = f"unexpected error ({type(error).__name__})", describe_source(source)
            skipped[reason] += 1
            if len(examples) < 3:
                examples.append(f"{where} ({reason})")
        yield image_processor(decoded, return_tensors="pt")["pixel_values"] if decoded else None


class DatasetFeatures(NamedTuple):
    """Features of the images of a dataset that could be decoded, and an account of those that could not."""

    features: torch.Tensor  # (len(kept), D), L2-normalised
    kept: np.ndarray  # the dataset rows the features belong to, increasing
    skipped: dict[str, int]  # reason -> images that could not be decoded (no feature, dropped)

    @property
    def num_skipped(self) -> int:
        return sum(self.skipped.values())


def _run_model(model, batches, total, device, show_progress) -> list[torch.Tensor]:
    was_training = model.training
    model.eval()
    features = []
    try:
        with torch.inference_mode():
            for pixel_values in tqdm(batches, total=total, desc="Extracting features", disable=not show_progress,
                                     leave=False):  # fmt: skip
                if pixel_values is None:  # every image of the batch was skipped
                    continue
                pooled = _cls_features(model, pixel_values.to(device, non_blocking=True))
                features.append(torch.nn.functional.normalize(pooled.float(), dim=1, p=2).cpu())
    finally:
        model.train(was_training)
    return features


def extract_dataset_features(
    model: torch.nn.Module,
    dataset,
    image_processor=None,
    batch_size: int = 64,
    image_column: str = "image",
    device: str | torch.device | None = None,
    show_progress: bool = True,
    name: str = "the dataset",
) -> DatasetFeatures:
    """Like :func:`extract_features` on a ``datasets.Dataset``, skipping the images that cannot be decoded.

    Images are decoded by the training decoder (`pros_hf.data.decoding.open_image_rgb`: paths, bytes, image dicts;
    16-bit scaled, transparency on white). An unreadable one is dropped, counted by reason and logged in one warning;
    use ``kept`` to select the matching labels. Raises ValueError when no image at all can be decoded.
    """
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    check_image_column(dataset, image_column, name)
    if image_processor is None:
        from ..image_processing_pros import ProSImageProcessor

        image_processor = ProSImageProcessor.from_model_config(model.config)
    device = torch.device(device) if device is not None else _model_device(model)
    kept, skipped, examples = [], Counter(), []
    batches = _dataset_batches(dataset, image_processor, batch_size, image_column, kept, skipped, examples)
    features = _run_model(model, batches, math.ceil(len(dataset) / batch_size), device, show_progress)
    if skipped:
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(skipped.items(), key=lambda kv: (-kv[1], kv[0])))
        message = f"{sum(skipped.values())} of {len(dataset)} images of {name} could not be decoded ({reasons})"
        if not kept:
            raise ValueError(f"{message}: no image left to extract features from; first: {'; '.join(examples)}.")
        logger.warning("k-NN: %s, left out with their labels; first: %s.", message, "; ".join(examples))
    if not features:
        raise ValueError(f"{name} is empty: no features to extract.")
    return DatasetFeatures(torch.cat(features), np.asarray(kept, dtype=np.int64), dict(skipped))


def extract_features(
    model: torch.nn.Module,
    dataset_or_loader,
    image_processor=None,
    batch_size: int = 64,
    image_column: str = "image",
    device: str | torch.device | None = None,
    show_progress: bool = True,
) -> torch.Tensor:
    """L2-normalised CLS features (float32, (N, D), on the CPU) of a frozen model, as DINO's k-NN uses them.

    ``dataset_or_loader``: a ``datasets.Dataset`` whose ``image_column`` holds images (a ``datasets.Image`` feature,
    file paths, bytes or ``{"bytes", "path"}`` dicts, decoded as training decodes them and processed with
    ``image_processor``, default ``ProSImageProcessor.from_model_config(model.config)``), a float tensor of pixel
    values (N, C, H, W), or an iterable of batches (dicts with ``pixel_values``, tensors, or tuples whose first item
    is the pixel tensor). The model runs in eval mode under ``torch.inference_mode()``; its train/eval mode is
    restored afterwards, so this is safe to call in the middle of training. One row per image: a dataset image that
    cannot be decoded raises ValueError (use :func:`extract_dataset_features` to skip such images instead).
    """
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if hasattr(dataset_or_loader, "column_names"):  # datasets.Dataset
        extracted = extract_dataset_features(model, dataset_or_loader, image_processor, batch_size, image_column,
                                             device, show_progress)  # fmt: skip
        if extracted.num_skipped:  # rows would no longer line up with the caller's labels
            raise ValueError(
                f"{extracted.num_skipped} images of the dataset could not be decoded ({extracted.skipped})"
                "; use extract_dataset_features to skip them and get the rows kept."
            )
        return extracted.features
    device = torch.device(device) if device is not None else _model_device(model)
    batches, total = _tensor_or_loader_batches(dataset_or_loader, batch_size)
    features = _run_model(model, batches, total, device, show_progress)
    if not features:
        raise ValueError("dataset_or_loader is empty: no features to extract.")
    return torch.cat(features)
