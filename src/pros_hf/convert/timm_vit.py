"""DINO / timm ViT state dicts (`cls_token`, `pos_embed`, `patch_embed.proj`, `blocks.N.attn.qkv`, ...).

The layout ProSModel follows (one fused qkv projection), so the weights map one to one. Projection-head keys (`head.*`)
are dropped; anything else that is not part of a plain ViT (e.g. the layer scale or register tokens of DINOv2's
original checkpoints) is refused by name, because silently ignoring it would change the model's output.
"""

import re

import torch

from ..configuration_pros import ProSConfig
from ..image_processing_pros import ProSImageProcessor
from .checkpoints import ConversionError, build_model, map_keys, unknown_keys_error

ANCHORS = ("cls_token",)
IGNORED_KEYS = re.compile(r"^(head|fc|pre_logits)\.")
REQUIRED = ("cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "blocks.0.mlp.fc1.weight")

# DINO/timm module of block i -> ProSModel module under encoder.layer.{i}.
BLOCK_KEY = re.compile(r"blocks\.(\d+)\.(.+)$")
BLOCK_KEY_MAP = {
    "norm1": "norm1",
    "attn.qkv": "attention.qkv",
    "attn.proj": "attention.o_proj",
    "norm2": "norm2",
    "mlp.fc1": "mlp.fc1",
    "mlp.fc2": "mlp.fc2",
}
TOP_KEY_MAP = {
    "cls_token": "embeddings.cls_token",
    "pos_embed": "embeddings.position_embeddings",
    "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
    "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
    "norm.weight": "layernorm.weight",
    "norm.bias": "layernorm.bias",
}


def matches(state_dict: dict[str, torch.Tensor]) -> bool:
    return "cls_token" in state_dict and any(name.startswith("blocks.") for name in state_dict)


def infer_config(
    state_dict: dict[str, torch.Tensor], num_attention_heads: int | None = None, **overrides
) -> ProSConfig:
    """Read the architecture off the tensor shapes; only the head count is not in the weights (default: width/64)."""
    for required in REQUIRED:
        if required not in state_dict:
            raise ConversionError(
                f"not a DINO/timm ViT state dict: key {required!r} is missing (found e.g. {sorted(state_dict)[:8]})."
            )
    hidden_size = state_dict["cls_token"].shape[-1]
    patch_size = state_dict["patch_embed.proj.weight"].shape[-1]
    num_layers = 1 + max(int(match.group(1)) for name in state_dict if (match := re.match(r"blocks\.(\d+)\.", name)))
    num_patches = state_dict["pos_embed"].shape[1] - 1
    grid = int(round(num_patches**0.5))
    if grid * grid != num_patches:
        raise ConversionError(f"pos_embed holds {num_patches} patch positions, not a square grid.")
    if num_attention_heads is None:
        num_attention_heads = max(hidden_size // 64, 1)
    overrides.setdefault("layer_norm_eps", 1e-6)  # DINO's and timm's ViTs
    return ProSConfig(
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=state_dict["blocks.0.mlp.fc1.weight"].shape[0],
        image_size=grid * patch_size,
        patch_size=patch_size,
        num_channels=state_dict["patch_embed.proj.weight"].shape[1],
        qkv_bias="blocks.0.attn.qkv.bias" in state_dict,
        **overrides,
    )


def rename_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map DINO/timm names to ProSModel names; refuse any key that would be silently dropped."""
    kept = {name: value for name, value in state_dict.items() if not IGNORED_KEYS.match(name)}
    renamed, unknown = map_keys(kept, TOP_KEY_MAP, BLOCK_KEY, BLOCK_KEY_MAP)
    if unknown:
        raise unknown_keys_error(unknown, "a plain DINO/timm ViT (layer scale, registers or another architecture?)")
    return renamed


def convert(state_dict: dict[str, torch.Tensor], num_attention_heads: int | None = None, **overrides):
    """(ProSModel, ProSImageProcessor) of a DINO/timm ViT state dict; the processor has ImageNet statistics at the
    position-embedding grid's size. The head count is not stored in the weights: pass it unless the head width is
    DINO's 64."""
    config = infer_config(state_dict, num_attention_heads=num_attention_heads, **overrides)
    model = build_model(config, rename_keys(state_dict), hint=" (is --num_attention_heads right?)")
    return model, ProSImageProcessor.from_model_config(config)
