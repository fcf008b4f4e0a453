"""Optimizer parameter groups for fine-tuning a ProS head: backbone learning-rate scale, layer-wise decay, probes.

Full fine-tuning (BEiT / MAE recipe): every parameter gets a layer id from `ProSPreTrainedModel.get_layer_id` (0 the
patch and position embeddings, `i + 1` transformer block `i`, `L + 1` the final norm and the head, with `L` blocks)
and the learning rate

    lr * layer_decay ** (L + 1 - layer_id)            (times `backbone_lr_scale` for backbone parameters)

so the early blocks, which hold the most generic features, move least. LoRA matrices sit in the backbone's blocks and
get the layer decay, but not `backbone_lr_scale`: they start at zero and have everything to learn, like the head.
Biases, norms, the CLS token and the position embeddings get no weight decay (decaying them towards 0 only hurts).
A linear probe freezes the backbone (`requires_grad=False`) and trains the head alone.
"""

from collections.abc import Iterable

import torch
from torch import nn

BACKBONE_PREFIX = "pros."  # `base_model_prefix` of every ProS model: backbone parameters are named pros.*
NO_DECAY_NAMES = ("cls_token", "position_embeddings", "mask_token", "register_tokens")


def _strip_wrappers(name: str) -> str:
    """Parameter name as the plain head model names it (drops PEFT's `base_model.model.` and wrapper infixes)."""
    for prefix in ("base_model.model.", "module."):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    return name.replace(".modules_to_save.default.", ".").replace(".original_module.", ".").replace(".base_layer.", ".")


def is_backbone_parameter(name: str) -> bool:
    """Whether a parameter (of a head model, possibly PEFT-wrapped) belongs to the ProS backbone."""
    return _strip_wrappers(name).startswith(BACKBONE_PREFIX)


def is_adapter_parameter(name: str) -> bool:
    """LoRA matrices (PEFT names them `lora_A` / `lora_B` / ...): new weights that start at zero, so they take the
    head's learning rate (with layer decay) rather than the backbone's reduced one."""
    return ".lora_" in name


def num_backbone_layers(model: nn.Module) -> int:
    config = getattr(model, "config", None)
    while config is None and hasattr(model, "model"):  # PEFT wrappers
        model = model.model
        config = getattr(model, "config", None)
    if config is None or not hasattr(config, "num_hidden_layers"):
        raise ValueError("layer-wise decay needs a model with config.num_hidden_layers.")
    return int(config.num_hidden_layers)


def applies_weight_decay(name: str, parameter: torch.Tensor) -> bool:
    """No decay for 1-D tensors (biases, norm weights, layer scales), the CLS, mask and register tokens, position
    embeddings and LoRA's none."""
    base = _strip_wrappers(name).split(".")[-1]
    return parameter.ndim > 1 and base not in NO_DECAY_NAMES and not base.endswith("_token")


def layer_scale(layer: int, num_layers: int, layer_decay: float) -> float:
    return float(layer_decay) ** (num_layers + 1 - layer)


def parameter_groups(
    model: nn.Module,
    learning_rate: float,
    weight_decay: float = 0.05,
    backbone_lr_scale: float = 1.0,
    layer_decay: float = 1.0,
) -> list[dict]:
    """AdamW parameter groups of the trainable parameters, one per (learning rate, weight decay) pair.

    Each group holds `params`, `lr`, `weight_decay`, and for inspection `lr_scale`, `layer_id` and `names`.
    """
    if learning_rate <= 0:
        raise ValueError(f"learning_rate must be > 0, got {learning_rate}.")
    if not 0 < layer_decay <= 1:
        raise ValueError(f"layer_decay must be in (0, 1] (1 = no decay), got {layer_decay}.")
    if backbone_lr_scale < 0:
        raise ValueError(f"backbone_lr_scale must be >= 0, got {backbone_lr_scale}.")
    num_layers = num_backbone_layers(model)
    get_layer_id = getattr(model, "get_layer_id", None)  # ProSPreTrainedModel's (PEFT forwards the attribute)
    if get_layer_id is None:
        raise ValueError(f"parameter_groups needs a ProS model (with get_layer_id), got {type(model).__name__}.")
    groups: dict[tuple, dict] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        layer = int(get_layer_id(_strip_wrappers(name)))
        scale = layer_scale(layer, num_layers, layer_decay)
        if is_backbone_parameter(name) and not is_adapter_parameter(name):
            scale *= backbone_lr_scale
        decay = weight_decay if applies_weight_decay(name, parameter) else 0.0
        key = (layer, scale, decay)
        if key not in groups:
            groups[key] = {
                "params": [],
                "names": [],
                "lr": learning_rate * scale,
                "weight_decay": decay,
                "lr_scale": scale,
                "layer_id": layer,
            }
        groups[key]["params"].append(parameter)
        groups[key]["names"].append(name)
    return [groups[key] for key in sorted(groups)]


def freeze_backbone(model: nn.Module) -> int:
    """Linear probe: no gradient for backbone parameters. Returns how many parameters stay trainable (the head)."""
    trainable = 0
    for name, parameter in model.named_parameters():
        if is_backbone_parameter(name):
            parameter.requires_grad_(False)
        elif parameter.requires_grad:
            trainable += parameter.numel()
    if trainable == 0:
        raise ValueError("freeze_backbone left nothing to train: the model has no head parameters outside pros.*.")
    return trainable


def count_parameters(parameters: Iterable[torch.Tensor]) -> int:
    return sum(p.numel() for p in parameters)


__all__ = [
    "BACKBONE_PREFIX",
    "applies_weight_decay",
    "count_parameters",
    "freeze_backbone",
    "is_adapter_parameter",
    "is_backbone_parameter",
    "layer_scale",
    "num_backbone_layers",
    "parameter_groups",
]
