"""Which format a source is in, and the converter that reads it.

A source is a weights file (a DINO/timm ViT or an OpenAI CLIP / open_clip state dict), or the folder or Hub id of a
transformers model (CLIP, DINOv2). Anything else is refused in one line that names the source and lists what is
accepted.
"""

import os
from dataclasses import dataclass

from ..image_processing_pros import ProSImageProcessor
from ..modeling_pros import ProSModel
from . import openai_clip, timm_vit, transformers_clip, transformers_dinov2
from .checkpoints import WEIGHT_FILE_EXTENSIONS, ConversionError, load_state_dict, strip_prefixes
from .transformers_folders import read_config_dict

FORMATS = {
    "timm-vit": "a DINO/timm ViT state dict (.pth/.pt/.bin/.safetensors; keys cls_token, pos_embed, blocks.N.*)",
    "openai-clip": "an OpenAI CLIP / open_clip / FaRL state dict (keys visual.conv1.weight, "
    "visual.transformer.resblocks.N.*; a 'state_dict' entry and 'module.' prefixes are fine)",
    "transformers-clip": "a transformers CLIPModel / CLIPVisionModel folder or Hub id",
    "transformers-dinov2": "a transformers Dinov2Model / Dinov2WithRegistersModel folder or Hub id",
}
ACCEPTED = "accepted are " + "; ".join(FORMATS.values())
# keys of a transformers model's own weights file, given without the folder that holds its config.json
TRANSFORMERS_KEYS = (
    "vision_model.",
    "text_model.",
    "embeddings.patch_embeddings.",
    "embeddings.patch_embedding.",
    "embeddings.class_embedding",
    "pre_layrnorm.",
)


@dataclass
class ConvertedModel:
    """A converted backbone, the image processor matching its source, and the format it was read from."""

    model: ProSModel
    image_processor: ProSImageProcessor
    source_format: str

    def save_pretrained(self, output: str) -> None:
        self.model.save_pretrained(output)
        self.image_processor.save_pretrained(output)


def convert_model(
    source: str, key: str | None = None, num_attention_heads: int | None = None, **overrides
) -> ConvertedModel:
    """Convert `source` (a weights file, or a transformers folder or Hub id; the format is detected) into a
    `ProSModel` computing the same features, and the image processor with the source's normalisation and size.

    `key` picks a training checkpoint's entry and `num_attention_heads` gives the head count, which state dicts do
    not store (default: width / 64); both apply to weights files only. `overrides` are ProSConfig fields
    (e.g. `hidden_act="gelu"` for open_clip's LAION models, `drop_path_rate` for later training). Every error is a
    `ConversionError` whose one-line message starts with the source.
    """
    source = os.fspath(source)
    try:
        if os.path.isfile(source):
            return _convert_file(source, key, num_attention_heads, overrides)
        if key is not None or num_attention_heads is not None:
            raise ConversionError(
                "--key and --num_attention_heads apply to weights files only; a transformers "
                "folder or Hub id states its architecture in its config.json."
            )
        if os.path.isdir(source) or _looks_like_hub_id(source):
            return _convert_transformers(source, overrides)
        raise ConversionError(f"does not exist (relative to {os.getcwd()}); {ACCEPTED}.")
    except ConversionError as error:
        raise ConversionError(f"{source}: {error}") from None
    except ValueError as error:  # a ProSConfig field the source or the overrides make invalid
        raise ConversionError(f"{source}: {error}") from None


def _looks_like_hub_id(source: str) -> bool:
    """`org/name` (or a bare name): not a path, which a typo would otherwise send to the Hub."""
    return (
        not source.startswith((".", "/", "~"))
        and source.count("/") <= 1
        and "\\" not in source
        and not source.lower().endswith(WEIGHT_FILE_EXTENSIONS)
    )


def _convert_file(path: str, key, num_attention_heads, overrides) -> ConvertedModel:
    state_dict = load_state_dict(path, key=key)
    if any(name.startswith(TRANSFORMERS_KEYS) for name in state_dict):  # before `encoder.` is taken for a wrapper
        raise ConversionError(
            "is the weights file of a transformers model: pass the folder that holds it and its config.json."
        )
    state_dict = strip_prefixes(state_dict, timm_vit.ANCHORS + openai_clip.ANCHORS)
    if timm_vit.matches(state_dict):
        return ConvertedModel(*timm_vit.convert(state_dict, num_attention_heads, **overrides), "timm-vit")
    if openai_clip.matches(state_dict):
        return ConvertedModel(*openai_clip.convert(state_dict, num_attention_heads, **overrides), "openai-clip")
    if openai_clip.is_text_only(state_dict):
        raise ConversionError(
            "is a CLIP text-only checkpoint (text tower keys, no visual.* weights); a ProSModel needs the vision tower."
        )
    found = sorted(state_dict)[:6]
    raise ConversionError(
        f"unknown checkpoint format (found keys {found}, no cls_token or visual.conv1.weight); {ACCEPTED}."
    )


def _convert_transformers(source: str, overrides) -> ConvertedModel:
    model_type = read_config_dict(source).get("model_type")
    if model_type in transformers_clip.MODEL_TYPES:
        return ConvertedModel(*transformers_clip.convert(source, **overrides), "transformers-clip")
    if model_type in transformers_dinov2.MODEL_TYPES:
        return ConvertedModel(*transformers_dinov2.convert(source, model_type, **overrides), "transformers-dinov2")
    if model_type in transformers_clip.TEXT_MODEL_TYPES:
        raise ConversionError(
            "is a CLIP text-only model (model_type 'clip_text_model'); a ProSModel needs the "
            "vision tower: pass a CLIPModel or CLIPVisionModel."
        )
    if model_type == "pros":
        raise ConversionError("is a ProS model already: load it with ProSModel.from_pretrained.")
    raise ConversionError(f"is a {model_type!r} model folder, not CLIP or DINOv2; {ACCEPTED}.")
