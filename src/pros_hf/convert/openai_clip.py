"""OpenAI CLIP / open_clip state dicts, vision tower only: FaRL's released `.pth` files, OpenAI's `ViT-B-16.pt`
weights saved as a state dict, and open_clip's `open_clip_pytorch_model.bin`.

Keys under `visual.` (`visual.conv1.weight`, `visual.class_embedding`, `visual.positional_embedding`,
`visual.ln_pre`, `visual.transformer.resblocks.N.{ln_1, attn.in_proj_*, attn.out_proj, ln_2, mlp.c_fc, mlp.c_proj}`,
`visual.ln_post`, `visual.proj`), or the same keys without `visual.` for a vision tower saved alone. The text tower
and `visual.proj` (the projection into the joint image-text space, which `CLIPVisionModel` has no counterpart for
either) are dropped; open_clip's layer scale (`ls_1.gamma`, `ls_2.gamma`) is kept; anything else is refused by name.

Two things are not in the weights: the head count (OpenAI's rule, width / 64, unless `num_attention_heads` says
otherwise) and the MLP activation ("quick_gelu" for OpenAI's and FaRL's models; open_clip's own LAION models use
`hidden_act="gelu"`).
"""

import logging
import re

import torch

from ..configuration_pros import ProSConfig
from ..image_processing_pros import ProSImageProcessor
from .checkpoints import ConversionError, build_model, map_keys, unknown_keys_error

logger = logging.getLogger(__name__)

ANCHORS = ("visual.conv1.weight", "conv1.weight")
# the text tower's keys in a full CLIP state dict: a file holding these but no vision tower is text-only
TEXT_KEYS = ("token_embedding.weight", "text_projection", "ln_final.weight")
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
DROPPED_KEYS = ("proj",)

TOP_KEY_MAP = {
    "conv1.weight": "embeddings.patch_embeddings.projection.weight",
    "ln_pre.weight": "pre_layernorm.weight",
    "ln_pre.bias": "pre_layernorm.bias",
    "ln_post.weight": "layernorm.weight",
    "ln_post.bias": "layernorm.bias",
}
BLOCK_KEY_MAP = {
    "ln_1.weight": "norm1.weight",
    "ln_1.bias": "norm1.bias",
    "attn.in_proj_weight": "attention.qkv.weight",
    "attn.in_proj_bias": "attention.qkv.bias",
    "attn.out_proj.weight": "attention.o_proj.weight",
    "attn.out_proj.bias": "attention.o_proj.bias",
    "ln_2.weight": "norm2.weight",
    "ln_2.bias": "norm2.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight",
    "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight",
    "mlp.c_proj.bias": "mlp.fc2.bias",
    "ls_1.gamma": "layer_scale1.lambda1",
    "ls_2.gamma": "layer_scale2.lambda1",
}
BLOCK_KEY = re.compile(r"transformer\.resblocks\.(\d+)\.(.+)$")


def matches(state_dict: dict[str, torch.Tensor]) -> bool:
    return any(anchor in state_dict for anchor in ANCHORS)


def is_text_only(state_dict: dict[str, torch.Tensor]) -> bool:
    return any(key in state_dict for key in TEXT_KEYS) and not matches(state_dict)


def vision_tower(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The vision tower's keys without `visual.` (a full CLIP state dict), or the dict itself (a tower saved alone)."""
    if "visual.conv1.weight" not in state_dict:
        return state_dict
    return {name[len("visual.") :]: value for name, value in state_dict.items() if name.startswith("visual.")}


def infer_config(visual: dict[str, torch.Tensor], num_attention_heads: int | None = None, **overrides) -> ProSConfig:
    for required in (
        "class_embedding",
        "positional_embedding",
        "conv1.weight",
        "transformer.resblocks.0.attn.in_proj_weight",
        "transformer.resblocks.0.mlp.c_fc.weight",
    ):
        if required not in visual:
            raise ConversionError(f"not a CLIP vision tower: key 'visual.{required}' is missing.")
    hidden_size = visual["class_embedding"].shape[-1]
    patch_size = visual["conv1.weight"].shape[-1]
    num_layers = 1 + max(int(match.group(1)) for name in visual if (match := BLOCK_KEY.match(name)))
    num_patches = visual["positional_embedding"].shape[0] - 1
    grid = int(round(num_patches**0.5))
    if grid * grid != num_patches:
        raise ConversionError(f"visual.positional_embedding holds {num_patches} patch positions, not a square grid.")
    overrides.setdefault("layer_norm_eps", 1e-5)  # torch's LayerNorm default, which CLIP's code uses
    overrides.setdefault("hidden_act", "quick_gelu")
    return ProSConfig(
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_attention_heads or max(hidden_size // 64, 1),
        intermediate_size=visual["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
        image_size=grid * patch_size,
        patch_size=patch_size,
        num_channels=visual["conv1.weight"].shape[1],
        qkv_bias="transformer.resblocks.0.attn.in_proj_bias" in visual,
        use_pre_layernorm=True,
        layerscale_value=1.0 if "transformer.resblocks.0.ls_1.gamma" in visual else None,
        **overrides,
    )


def rename_keys(visual: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    patch_weight = visual["conv1.weight"]
    renamed = {
        "embeddings.cls_token": visual["class_embedding"].reshape(1, 1, -1),
        "embeddings.position_embeddings": visual["positional_embedding"].unsqueeze(0),
        # CLIP's patch projection has no bias; ProSModel's is zero, which computes the same
        "embeddings.patch_embeddings.projection.bias": patch_weight.new_zeros(patch_weight.shape[0]),
    }
    for name in DROPPED_KEYS:
        if name in visual:
            logger.info("Dropping visual.%s (the projection into CLIP's joint image-text space)", name)
    rest = {
        name: value
        for name, value in visual.items()
        if name not in DROPPED_KEYS and name not in ("class_embedding", "positional_embedding")
    }
    mapped, unknown = map_keys(rest, TOP_KEY_MAP, BLOCK_KEY, BLOCK_KEY_MAP)
    if unknown:
        raise unknown_keys_error(
            [f"visual.{name}" for name in unknown], "a CLIP ViT vision tower (attention pooling, a timm trunk?)"
        )
    return {**renamed, **mapped}


def convert(state_dict: dict[str, torch.Tensor], num_attention_heads: int | None = None, **overrides):
    """(ProSModel, ProSImageProcessor) of an OpenAI CLIP / open_clip state dict's vision tower; the processor has
    CLIP's normalisation at the position-embedding grid's size."""
    visual = vision_tower(state_dict)
    config = infer_config(visual, num_attention_heads=num_attention_heads, **overrides)
    model = build_model(config, rename_keys(visual), hint=" (is --num_attention_heads right?)")
    processor = ProSImageProcessor.from_model_config(config, image_mean=OPENAI_CLIP_MEAN, image_std=OPENAI_CLIP_STD)
    return model, processor
