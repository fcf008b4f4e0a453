"""transformers `Dinov2Model` / `Dinov2WithRegistersModel` folders and Hub ids.

DINOv2's blocks are ProSModel's blocks with layer scale (`layerscale_value`; the learnt scales are copied); its mask
token is kept (`use_mask_token`), and the register tokens become `num_register_tokens`, with the antialiased
position-embedding resampling DINOv2-with-registers uses (`interpolate_antialias`). ProSModel returns the same CLS
and patch tokens as DINOv2 (`pooler_output` is the final-norm CLS in both), without the registers' outputs.
SwiGLU models (ViT-g) are refused: ProSModel's MLP is a plain two-layer one.
"""

import re

import torch
from transformers import AutoModel

from ..configuration_pros import ProSConfig
from ..image_processing_pros import IMAGENET_MEAN, IMAGENET_STD
from .checkpoints import ConversionError, build_model, unknown_keys_error
from .transformers_folders import fused_qkv, image_processor, load_pretrained, read_preprocessor_dict

MODEL_TYPES = ("dinov2", "dinov2_with_registers")

SAME_KEYS = re.compile(
    r"^(embeddings\.(cls_token|position_embeddings|register_tokens|patch_embeddings\.projection\.(weight|bias))"
    r"|encoder\.layer\.\d+\.(norm1|norm2|mlp\.fc1|mlp\.fc2)\.(weight|bias)"
    r"|encoder\.layer\.\d+\.layer_scale[12]\.lambda1"
    r"|layernorm\.(weight|bias))$"
)
# transformers' attention names: separate projections (`q_proj` ... in recent versions, `attention.query` ... before)
ATTENTION_NAMES = (
    ("attention.", ("q_proj", "k_proj", "v_proj"), "attention.o_proj"),
    ("attention.attention.", ("query", "key", "value"), "attention.output.dense"),
)


def config_from(dinov2_config, model_type: str, **overrides) -> ProSConfig:
    if getattr(dinov2_config, "use_swiglu_ffn", False):
        raise ConversionError("uses a SwiGLU MLP (use_swiglu_ffn=True); ProSModel's MLP is a plain two-layer one.")
    fields = dict(
        hidden_size=dinov2_config.hidden_size,
        num_hidden_layers=dinov2_config.num_hidden_layers,
        num_attention_heads=dinov2_config.num_attention_heads,
        intermediate_size=int(dinov2_config.hidden_size * dinov2_config.mlp_ratio),
        hidden_act=dinov2_config.hidden_act,
        layer_norm_eps=dinov2_config.layer_norm_eps,
        image_size=dinov2_config.image_size,
        patch_size=dinov2_config.patch_size,
        num_channels=dinov2_config.num_channels,
        qkv_bias=dinov2_config.qkv_bias,
        layerscale_value=dinov2_config.layerscale_value,
        num_register_tokens=getattr(dinov2_config, "num_register_tokens", 0),
        interpolate_antialias=model_type == "dinov2_with_registers",
        use_mask_token=getattr(dinov2_config, "use_mask_token", True),
    )
    return ProSConfig(**{**fields, **overrides})


def rename_keys(state_dict: dict[str, torch.Tensor], num_layers: int) -> dict[str, torch.Tensor]:
    state_dict = dict(state_dict)
    renamed = {}
    if "embeddings.mask_token" in state_dict:
        renamed["embeddings.mask_token"] = state_dict.pop("embeddings.mask_token").reshape(1, 1, -1)
    for index in range(num_layers):
        layer = f"encoder.layer.{index}."
        for qkv_prefix, names, output in ATTENTION_NAMES:
            if f"{layer}{qkv_prefix}{names[0]}.weight" in state_dict:
                qkv = fused_qkv(state_dict, layer + qkv_prefix, names)
                renamed.update({f"{layer}attention.qkv.{kind}": value for kind, value in qkv.items()})
                for kind in ("weight", "bias"):
                    renamed[f"{layer}attention.o_proj.{kind}"] = state_dict.pop(f"{layer}{output}.{kind}")
                break
    unknown = []
    for name, value in state_dict.items():
        if SAME_KEYS.match(name):
            renamed[name] = value
        else:
            unknown.append(name)
    if unknown:
        raise unknown_keys_error(unknown, "a DINOv2 ViT")
    return renamed


def convert(source: str, model_type: str, **overrides):
    """(ProSModel, ProSImageProcessor) of a DINOv2 folder or Hub id, with the normalisation and size of its
    preprocessor config (ImageNet's at the model's image_size where it has none)."""
    dinov2 = load_pretrained(AutoModel, source)
    config = config_from(dinov2.config, model_type, **overrides)
    model = build_model(config, rename_keys(dinov2.state_dict(), config.num_hidden_layers))
    processor = image_processor(read_preprocessor_dict(source), config.image_size, IMAGENET_MEAN, IMAGENET_STD)
    return model, processor
