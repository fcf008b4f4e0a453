"""Frozen CLS features for k-NN: which network to judge (the EMA teacher), loading it, batched extraction."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from tqdm.auto import tqdm

if TYPE_CHECKING:
    from ..image_processing_pros import ProSImageProcessor


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


def load_backbone(path_or_id: str, **kwargs) -> torch.nn.Module:
    """A ``ProSModel`` from a saved backbone folder / Hub id, or the teacher of a ``ProSForPreTraining`` checkpoint.

    Refuses checkpoints whose backbone weights do not all load: transformers would otherwise initialise the missing
    ones at random with only a warning, and a k-NN number of a half-random model is worse than no number.
    """
    from ..configuration_pros import ProSConfig
    from ..modeling_pros_heads import check_model_source
    from ..modeling_pros import ProSModel

    check_model_source(path_or_id)
    config = ProSConfig.from_pretrained(path_or_id, **kwargs)
    if "ProSForPreTraining" in (config.architectures or []):
        from ..modeling_pros_pretraining import ProSForPreTraining

        model, info = ProSForPreTraining.from_pretrained(path_or_id, output_loading_info=True, **kwargs)
        missing = [key for key in info["missing_keys"] if key.startswith("teacher.")]
        model = model.teacher
    else:
        model, info = ProSModel.from_pretrained(path_or_id, output_loading_info=True, **kwargs)
        missing = list(info["missing_keys"])
    if missing:
        raise ValueError(
            f"path_or_id {path_or_id!r}: {len(missing)} backbone weights are missing from the checkpoint (e.g. "
            f"{missing[:3]}); pass a saved ProSModel or a ProSForPreTraining checkpoint."
        )
    return model.eval()


def random_init_backbone(config, seed: int) -> torch.nn.Module:
    """The same architecture as ``config`` with seeded random weights, in eval mode: the floor a pre-trained backbone
    is compared against (k-NN, factor sensitivity)."""
    from ..modeling_pros import ProSModel

    torch.manual_seed(seed)
    return ProSModel(config).eval()


def load_backbone_and_processor(path_or_id: str, **kwargs) -> tuple[torch.nn.Module, ProSImageProcessor]:
    """``load_backbone(path_or_id)`` and the image processor saved with it, or one made from its config when none
    was saved (checkpoints and older exports carry no ``preprocessor_config.json``)."""
    from ..image_processing_pros import ProSImageProcessor

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


def _pixel_batches(source, image_processor, batch_size: int, image_column: str) -> tuple[Iterable, int]:
    """Yield float pixel batches from a pixel tensor, a ``datasets.Dataset`` with an image column, or a loader."""
    if isinstance(source, torch.Tensor):
        if source.ndim != 4 or not source.is_floating_point():
            raise ValueError(
                f"dataset_or_loader as a tensor must be float pixel values (N, C, H, W), got dtype {source.dtype} "
                f"and shape {tuple(source.shape)}."
            )
        starts = range(0, len(source), batch_size)
        return (source[i : i + batch_size] for i in starts), len(starts)
    column_names = getattr(source, "column_names", None)
    if column_names is not None:  # datasets.Dataset
        if image_column not in column_names:
            raise ValueError(f"image_column {image_column!r} is not a column of the dataset ({column_names}).")
        if image_processor is None:
            raise ValueError("image_processor is required to turn dataset images into pixel values.")
        images = source.select_columns([image_column])

        def from_dataset():
            for start in range(0, len(images), batch_size):
                batch = images[start : start + batch_size][image_column]
                batch = [image.convert("RGB") if hasattr(image, "convert") else image for image in batch]
                yield image_processor(batch, return_tensors="pt")["pixel_values"]

        return from_dataset(), math.ceil(len(images) / batch_size)

    def from_loader():  # a DataLoader (or any iterable) of dicts with pixel_values, tensors or (tensor, ...) tuples
        for batch in source:
            if isinstance(batch, dict) or hasattr(batch, "keys"):
                batch = batch["pixel_values"]
            elif isinstance(batch, (tuple, list)):
                batch = batch[0]
            yield batch

    return from_loader(), (len(source) if hasattr(source, "__len__") else None)


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

    ``dataset_or_loader``: a ``datasets.Dataset`` with PIL images in ``image_column`` (processed with
    ``image_processor``, default ``ProSImageProcessor.from_model_config(model.config)``), a float tensor of pixel
    values (N, C, H, W), or an iterable of batches (dicts with ``pixel_values``, tensors, or tuples whose first item
    is the pixel tensor). The model runs in eval mode under ``torch.inference_mode()``; its train/eval mode is
    restored afterwards, so this is safe to call in the middle of training.
    """
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if image_processor is None and hasattr(dataset_or_loader, "column_names"):
        from ..image_processing_pros import ProSImageProcessor

        image_processor = ProSImageProcessor.from_model_config(model.config)
    device = torch.device(device) if device is not None else _model_device(model)
    batches, total = _pixel_batches(dataset_or_loader, image_processor, batch_size, image_column)
    was_training = model.training
    model.eval()
    features = []
    try:
        with torch.inference_mode():
            for pixel_values in tqdm(batches, total=total, desc="Extracting features", disable=not show_progress,
                                     leave=False):  # fmt: skip
                pooled = _cls_features(model, pixel_values.to(device, non_blocking=True))
                features.append(torch.nn.functional.normalize(pooled.float(), dim=1, p=2).cpu())
    finally:
        model.train(was_training)
    if not features:
        raise ValueError("dataset_or_loader is empty: no features to extract.")
    return torch.cat(features)
