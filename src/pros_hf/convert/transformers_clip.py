"""transformers `CLIPModel` / `CLIPVisionModel` folders and Hub ids (the format of the community FaRL conversion),
vision tower only.

CLIP's blocks are ProSModel's blocks with quick-GELU and eps 1e-5 (both read from the config); what CLIP adds is the
`pre_layrnorm` before the first block (`use_pre_layernorm`) and a patch projection without bias (a zero bias here).
CLIP's `post_layernorm` becomes ProSModel's final norm: `pooler_output` is the same, and ProSModel's
`last_hidden_state` is normalised by it too (CLIP's un-normalised `last_hidden_state` is `hidden_states[-1]`).
"""

import re

import torch
from transformers import CLIPVisionModel

from ..configuration_pros import ProSConfig
from .checkpoints import ConversionError, build_model, map_keys, unknown_keys_error
from .openai_clip import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from .transformers_folders import fused_qkv, image_processor, load_pretrained, read_preprocessor_dict

MODEL_TYPES = ("clip", "clip_vision_model")
TEXT_MODEL_TYPES = ("clip_text_model",)

TOP_KEY_MAP = {
    "embeddings.patch_embedding.weight": "embeddings.patch_embeddings.projection.weight",
    "pre_layrnorm.weight": "pre_layernorm.weight",
    "pre_layrnorm.bias": "pre_layernorm.bias",
    "post_layernorm.weight": "layernorm.weight",
    "post_layernorm.bias": "layernorm.bias",
}
BLOCK_KEY_MAP = {
    "layer_norm1": "norm1",
    "self_attn.out_proj": "attention.o_proj",
    "layer_norm2": "norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
BLOCK_KEY = re.compile(r"encoder\.layers\.(\d+)\.(.+)$")


def config_from(vision_config, **overrides) -> ProSConfig:
    if vision_config.image_size % vision_config.patch_size:
        raise ConversionError(
            f"image_size {vision_config.image_size} is no multiple of patch_size {vision_config.patch_size}."
        )
    fields = dict(
        hidden_size=vision_config.hidden_size,
        num_hidden_layers=vision_config.num_hidden_layers,
        num_attention_heads=vision_config.num_attention_heads,
        intermediate_size=vision_config.intermediate_size,
        hidden_act=vision_config.hidden_act,
        layer_norm_eps=vision_config.layer_norm_eps,
        image_size=vision_config.image_size,
        patch_size=vision_config.patch_size,
        num_channels=vision_config.num_channels,
        qkv_bias=True,
        use_pre_layernorm=True,
    )
    return ProSConfig(**{**fields, **overrides})


def rename_keys(state_dict: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    state_dict = {name.removeprefix("vision_model."): value for name, value in state_dict.items()}
    weight = state_dict.pop("embeddings.patch_embedding.weight")
    renamed = {
        "embeddings.cls_token": state_dict.pop("embeddings.class_embedding").reshape(1, 1, -1),
        "embeddings.position_embeddings": state_dict.pop("embeddings.position_embedding.weight").unsqueeze(0),
        "embeddings.patch_embeddings.projection.weight": weight,
        "embeddings.patch_embeddings.projection.bias": weight.new_zeros(weight.shape[0]),  # CLIP's has none
    }
    for index in range(num_layers):
        qkv = fused_qkv(state_dict, f"encoder.layers.{index}.self_attn.", ("q_proj", "k_proj", "v_proj"))
        renamed.update({f"encoder.layer.{index}.attention.qkv.{kind}": value for kind, value in qkv.items()})
    mapped, unknown = map_keys(state_dict, TOP_KEY_MAP, BLOCK_KEY, BLOCK_KEY_MAP)
    if unknown:
        raise unknown_keys_error(unknown, "a CLIP vision tower")
    return {**renamed, **mapped}


def convert(source: str, **overrides):
    """(ProSModel, ProSImageProcessor) of a CLIP folder or Hub id's vision tower, with the normalisation and size of
    its preprocessor config (CLIP's own where it has none)."""
    clip = load_pretrained(CLIPVisionModel, source)
    config = config_from(clip.config, **overrides)
    model = build_model(config, rename_keys(clip.state_dict(), config.num_hidden_layers))
    processor = image_processor(read_preprocessor_dict(source), config.image_size, OPENAI_CLIP_MEAN, OPENAI_CLIP_STD)
    return model, processor
