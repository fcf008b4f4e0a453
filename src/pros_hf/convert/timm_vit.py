"""Import DINO/timm-format ViT weights as a saved `ProSModel`.

    python -m pros_hf.convert --checkpoint dino_vitbase16_pretrain.pth --output ./pros-vitb-from-dino

Accepted: a `.pth`/`.pt`/`.bin` file loadable with `torch.load(weights_only=True)` or a `.safetensors` file, holding
either a state dict or a training checkpoint whose `teacher`/`student`/`model`/`state_dict` entry is one. Keys may be
prefixed by `module.`, `backbone.`, `teacher.`, `student.` or `encoder.`. Projection-head keys (`head.*`) are dropped;
anything else that is not part of a plain ViT (e.g. DINOv2's layer scale or register tokens) is refused by name,
because silently ignoring it would change the model's output.
"""

import argparse
import logging
import os
import re
import sys

import torch

from .configuration_pros import ProSConfig
from .image_processing_pros import ProSImageProcessor
from .modeling_pros import ProSModel


logger = logging.getLogger(__name__)

PREFIXES = ("module.", "backbone.", "teacher.", "student.", "encoder.", "model.")
CHECKPOINT_ENTRIES = ("teacher", "model", "state_dict", "student", "backbone")
IGNORED_KEYS = re.compile(r"^(head|fc|pre_logits)\.")

# DINO/timm key -> ProSModel key; {i} is the block index.
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


class ConversionError(ValueError):
    """The checkpoint is not a plain DINO/timm ViT, or cannot be loaded safely."""


def load_checkpoint(path: str, key: str | None = None) -> dict[str, torch.Tensor]:
    """Load a state dict safely (no arbitrary pickled code) and pick the backbone's entry."""
    if not os.path.isfile(path):
        raise ConversionError(f"Checkpoint {path!r} does not exist or is not a file.")
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        checkpoint = load_file(path)
    else:
        try:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises UnpicklingError, RuntimeError or others depending on the file
            raise ConversionError(
                f"Refusing to load {path!r}: it cannot be read with torch.load(weights_only=True) ({error}). "
                "It may hold pickled Python objects, which could run arbitrary code. Save only its state dict "
                "(`torch.save(checkpoint['teacher'], 'weights.pth')`) from code you trust, or use safetensors."
            ) from None
    if not isinstance(checkpoint, dict):
        raise ConversionError(f"{path!r} holds a {type(checkpoint).__name__}, not a state dict.")
    if key is not None:
        if key not in checkpoint:
            raise ConversionError(f"{path!r} has no entry {key!r}; its entries are {sorted(checkpoint)[:20]}.")
        checkpoint = checkpoint[key]
    elif not any(isinstance(value, torch.Tensor) for value in checkpoint.values()):
        entry = next((name for name in CHECKPOINT_ENTRIES if isinstance(checkpoint.get(name), dict)), None)
        if entry is None:
            raise ConversionError(
                f"{path!r} holds no tensors at its top level and none of the entries {CHECKPOINT_ENTRIES}; pass "
                f"--key to pick one of {sorted(checkpoint)[:20]}."
            )
        logger.info("Using the %r entry of %s", entry, path)
        checkpoint = checkpoint[entry]
    return {name: value for name, value in checkpoint.items() if isinstance(value, torch.Tensor)}


def strip_prefixes(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Descend through wrapper prefixes (DDP's `module.`, DINO's `backbone.`, ...) until the ViT keys appear.

    At each level only the keys under the prefix are kept: DINO checkpoints hold `module.backbone.*` beside
    `module.head.*`, and the projection head is not part of the backbone.
    """
    while "cls_token" not in state_dict:
        for prefix in PREFIXES:
            kept = {name[len(prefix):]: value for name, value in state_dict.items() if name.startswith(prefix)}
            if kept:
                dropped = len(state_dict) - len(kept)
                if dropped:
                    logger.info("Keeping the %d keys under %r, dropping %d others", len(kept), prefix, dropped)
                state_dict = kept
                break
        else:
            break
    return state_dict


def infer_config(state_dict: dict[str, torch.Tensor], num_attention_heads: int | None = None, **overrides) -> ProSConfig:
    """Read the architecture off the tensor shapes; only the head count is not in the weights (default: width/64)."""
    for required in ("cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight",
                     "blocks.0.mlp.fc1.weight"):
        if required not in state_dict:
            raise ConversionError(
                f"Not a DINO/timm ViT state dict: key {required!r} is missing (found e.g. {sorted(state_dict)[:8]})."
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
    renamed, unknown = {}, []
    for name, value in state_dict.items():
        if IGNORED_KEYS.match(name):
            continue
        if name in TOP_KEY_MAP:
            renamed[TOP_KEY_MAP[name]] = value
            continue
        match = re.match(r"blocks\.(\d+)\.(.+)\.(weight|bias)$", name)
        if match and match.group(2) in BLOCK_KEY_MAP:
            index, module, kind = match.groups()
            renamed[f"encoder.layer.{index}.{BLOCK_KEY_MAP[module]}.{kind}"] = value
        else:
            unknown.append(name)
    if unknown:
        raise ConversionError(
            f"Keys that a plain ViT does not have (layer scale, registers or another architecture?): {unknown[:10]}"
            + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else "")
        )
    return renamed


def convert_checkpoint(path: str, key: str | None = None, num_attention_heads: int | None = None, **overrides):
    """A `ProSModel` holding the ViT weights of a DINO/timm-format checkpoint.

    The head count is not stored in the weights: pass it unless the head width is DINO's 64.
    """
    state_dict = strip_prefixes(load_checkpoint(path, key=key))
    config = infer_config(state_dict, num_attention_heads=num_attention_heads, **overrides)
    model = ProSModel(config)
    renamed = rename_keys(state_dict)
    missing = sorted(set(model.state_dict()) - set(renamed))
    if missing:
        raise ConversionError(f"The checkpoint lacks weights for {missing[:10]}.")
    mismatched = [
        f"{name}: {tuple(value.shape)} vs {tuple(model.state_dict()[name].shape)}"
        for name, value in renamed.items()
        if value.shape != model.state_dict()[name].shape
    ]
    if mismatched:
        raise ConversionError(f"Shape mismatches (is --num_attention_heads right?): {mismatched[:5]}")
    model.load_state_dict(renamed, strict=True)
    return model.eval()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pros_hf.convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="DINO/timm ViT weights (.pth/.pt/.bin or .safetensors).")
    parser.add_argument("--output", required=True, help="Folder to write the ProSModel and its image processor to.")
    parser.add_argument("--key", default=None, help="Entry of a training checkpoint to use (default: teacher, ...).")
    parser.add_argument(
        "--num_attention_heads", type=int, default=None,
        help="Heads per block; not stored in the weights. Default hidden_size/64 (ViT-S 6, ViT-B 12, ViT-L 16).",
    )
    parser.add_argument("--layer_norm_eps", type=float, default=1e-6, help="DINO and timm ViTs use 1e-6.")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        model = convert_checkpoint(
            args.checkpoint, key=args.key, num_attention_heads=args.num_attention_heads,
            layer_norm_eps=args.layer_norm_eps,
        )
    except ValueError as error:  # ConversionError, or a ProSConfig field the weights and flags make invalid
        print(f"error: {error}", file=sys.stderr)
        return 2
    model.save_pretrained(args.output)
    ProSImageProcessor.from_model_config(model.config).save_pretrained(args.output)
    print(f"Wrote {type(model).__name__} ({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters) "
          f"to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
