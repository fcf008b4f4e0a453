"""What the transformers-format sources share: reading a folder's or Hub id's config.json and preprocessor config,
and loading its weights with transformers' own classes, refusing what transformers would only warn about."""

import json
import logging
import os

import torch
from transformers import PreTrainedConfig
from transformers.utils import logging as transformers_logging

from ..image_processing_pros import ProSImageProcessor
from .checkpoints import ConversionError, first_line

logger = logging.getLogger(__name__)

# PIL's resampling codes, as transformers' processors save them, -> ProSImageProcessor's names
PIL_RESAMPLING = {0: "nearest", 2: "bilinear", 3: "bicubic"}


def read_config_dict(source: str) -> dict:
    """config.json of a folder or Hub id (downloaded if needed), as a dict."""
    if os.path.isdir(source) and not os.path.isfile(os.path.join(source, "config.json")):
        raise ConversionError("is a folder without config.json: pass a transformers model folder, or a weights file.")
    try:
        config_dict, _ = PreTrainedConfig.get_config_dict(source)
    except (OSError, ValueError, json.JSONDecodeError) as error:
        raise ConversionError(f"has no readable config.json ({first_line(error)}).") from None
    if not config_dict.get("model_type"):
        raise ConversionError("has a config.json without model_type: not a transformers model.")
    return config_dict


def read_preprocessor_dict(source: str) -> dict | None:
    """preprocessor_config.json of a folder or Hub id, or None where it has none."""
    from transformers.utils import cached_file

    try:
        path = cached_file(source, "preprocessor_config.json", _raise_exceptions_for_missing_entries=False)
    except OSError:
        return None
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, json.JSONDecodeError) as error:
        raise ConversionError(f"has an unreadable preprocessor_config.json ({first_line(error)}).") from None


def load_pretrained(model_class, source: str):
    """`model_class.from_pretrained(source)` in eval mode, refusing missing weights (transformers initialises them at
    random and prints a report) and turning loading failures (a truncated weights file, ...) into one line."""
    verbosity, progress_bars = transformers_logging.get_verbosity(), transformers_logging.is_progress_bar_enabled()
    transformers_logging.set_verbosity_error()  # the load report lists the text tower of a CLIPModel as unexpected
    transformers_logging.disable_progress_bar()  # an error is then the only line on stderr
    try:
        model, info = model_class.from_pretrained(source, output_loading_info=True)
    except Exception as error:  # safetensors, torch and transformers each raise their own kinds for a bad file
        raise ConversionError(
            f"its weights cannot be loaded as a {model_class.__name__} ({first_line(error)})."
        ) from None
    finally:
        transformers_logging.set_verbosity(verbosity)
        if progress_bars:
            transformers_logging.enable_progress_bar()
    missing = sorted(info.get("missing_keys") or [])
    mismatched = info.get("mismatched_keys") or []
    if missing or mismatched:
        raise ConversionError(
            f"its weights do not fill a {model_class.__name__}: missing {missing[:5]}, "
            f"mismatched {[entry[0] for entry in mismatched][:5]}."
        )
    return model.eval()


def image_processor(preprocessor: dict | None, image_size: int, image_mean, image_std) -> ProSImageProcessor:
    """A ProSImageProcessor with the source's normalisation and geometry (shorter side resized, then a center
    crop), or, where the source has no preprocessor config, `image_mean` / `image_std` at `image_size`."""
    if preprocessor is None:
        logger.info("No preprocessor_config.json: using the format's usual mean/std at %d px", image_size)
        return ProSImageProcessor(size=image_size, crop_size=image_size, image_mean=image_mean, image_std=image_std)
    crop = _side_dict(preprocessor.get("crop_size", image_size), ("height", "width"))
    size = preprocessor.get("size", image_size)
    if isinstance(size, dict) and "shortest_edge" not in size:  # a fixed (height, width) resize
        size = min(size.get("height", image_size), size.get("width", image_size))
        logger.info("The source resizes to a fixed size; ProSImageProcessor resizes the shorter side to %d", size)
    size = _side_dict(size, ("shortest_edge",))
    resample = preprocessor.get("resample", 3)
    if resample not in PIL_RESAMPLING:
        logger.info("Resampling %r has no ProSImageProcessor counterpart: using bicubic", resample)
    return ProSImageProcessor(
        do_resize=preprocessor.get("do_resize", True),
        size=size,
        do_center_crop=preprocessor.get("do_center_crop", True),
        crop_size=crop,
        resample=PIL_RESAMPLING.get(resample, "bicubic"),
        do_rescale=preprocessor.get("do_rescale", True),
        rescale_factor=preprocessor.get("rescale_factor", 1 / 255),
        do_normalize=preprocessor.get("do_normalize", True),
        image_mean=preprocessor.get("image_mean", image_mean),
        image_std=preprocessor.get("image_std", image_std),
    )


def _side_dict(value, keys: tuple[str, ...]) -> dict:
    if isinstance(value, dict):
        return {key: int(value[key]) for key in keys}
    return {key: int(value) for key in keys}


def fused_qkv(state_dict: dict[str, torch.Tensor], prefix: str, names: tuple[str, str, str]) -> dict[str, torch.Tensor]:
    """The query, key and value projections under `prefix` as ProSModel's one `qkv` projection (rows q, k, v, as
    DINO's and torch's MultiheadAttention's fused weight), popped from `state_dict`."""
    fused = {"weight": torch.cat([state_dict.pop(f"{prefix}{name}.weight") for name in names])}
    if f"{prefix}{names[0]}.bias" in state_dict:
        fused["bias"] = torch.cat([state_dict.pop(f"{prefix}{name}.bias") for name in names])
    return fused
