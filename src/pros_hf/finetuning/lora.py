"""LoRA on a ProS head model through PEFT: adapters on the attention projections, the head trained in full.

`apply_lora` wraps a `ProSForImageClassification` / `ProSForLandmarkDetection` in a `PeftModel` with a `LoraConfig`
that targets the backbone's attention projections (`qkv`, the fused query/key/value projection, and `o_proj`) and
lists the head's modules in `modules_to_save` (a new head has no pre-trained weights to adapt: it is trained in full
and saved with the adapter). No `task_type` is set: PEFT's task types wrap the forward of text models
(`FEATURE_EXTRACTION` passes `input_ids`/`attention_mask`), which a vision model does not take.

The adapter saves with `save_adapter`, reloads onto a fresh base with `load_adapter` (`PeftModel.from_pretrained`)
and merges into a plain head model with `merge_adapter` (`merge_and_unload`), loadable with the Auto classes.
"""

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from .optim import BACKBONE_PREFIX

DEFAULT_TARGET_MODULES = ("qkv", "o_proj")


def head_module_names(model: nn.Module) -> list[str]:
    """The head's top-level modules: every child of the head model except the `pros` backbone."""
    backbone = BACKBONE_PREFIX.rstrip(".")
    names = [
        name for name, child in model.named_children() if name != backbone and any(True for _ in child.parameters())
    ]
    if not names:
        raise ValueError(
            f"{type(model).__name__} has no head module besides {backbone!r}: nothing for modules_to_save."
        )
    return names


def _target_regex(target_modules: Sequence[str], prefix: str = BACKBONE_PREFIX) -> str:
    """A full-match regex restricted to the backbone's blocks, so that a head module that happens to share a name
    (e.g. an `o_proj` in a decoder) is never adapted."""
    alternatives = "|".join(re.escape(name) for name in target_modules)
    return rf"{re.escape(prefix)}encoder\.layer\.\d+\.(?:.*\.)?(?:{alternatives})"


def check_target_modules(model: nn.Module, target_modules: Sequence[str], prefix: str = BACKBONE_PREFIX) -> list[str]:
    """The Linear layers of the backbone's blocks that `target_modules` adapt (`prefix=""` for a bare `ProSModel`,
    so that the names can be checked before any head is built). Raises `ValueError` naming every entry that matches
    none: with `qkv foo`, `foo` would otherwise be dropped silently and with `foo` alone PEFT fails deep inside."""
    block = re.compile(rf"{re.escape(prefix)}encoder\.layer\.\d+\.")
    linear = [name for name, module in model.named_modules() if isinstance(module, nn.Linear) and block.match(name)]
    unmatched = [
        target
        for target in target_modules
        if not any(re.fullmatch(_target_regex([target], prefix), name) for name in linear)
    ]
    if unmatched:
        names = sorted({name.split(".")[-1] for name in linear})
        raise ValueError(
            f"target_modules {unmatched} match no Linear layer of the backbone's blocks; its Linear "
            f"layers are named {names}."
        )
    regex = _target_regex(target_modules, prefix)
    return [name for name in linear if re.fullmatch(regex, name)]


def lora_config(
    model: nn.Module,
    r: int = 8,
    alpha: float = 16,
    dropout: float = 0.0,
    target_modules: Sequence[str] = DEFAULT_TARGET_MODULES,
    modules_to_save: Sequence[str] | None = None,
):
    from peft import LoraConfig

    if r < 1:
        raise ValueError(f"LoRA rank r must be >= 1, got {r}.")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"LoRA dropout must be in [0, 1), got {dropout}.")
    if not target_modules:
        raise ValueError("target_modules is empty: name the backbone Linear layers to adapt (qkv, o_proj, fc1, fc2).")
    if not any(name.startswith(BACKBONE_PREFIX) for name, _ in model.named_modules()):
        raise ValueError(
            f"LoRA here adapts the backbone of a task head, whose backbone modules are named {BACKBONE_PREFIX}*; got a "
            f"{type(model).__name__} without one. Build the head first, e.g. "
            "ProSForImageClassification.from_backbone(backbone, num_labels=...), then apply LoRA to it."
        )
    check_target_modules(model, target_modules)
    return LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=_target_regex(target_modules),
        bias="none",
        modules_to_save=list(modules_to_save or head_module_names(model)),
    )


def apply_lora(
    model: nn.Module,
    r: int = 8,
    alpha: float = 16,
    dropout: float = 0.0,
    target_modules: Sequence[str] = DEFAULT_TARGET_MODULES,
    modules_to_save: Sequence[str] | None = None,
):
    """Wrap `model` in a PEFT `PeftModel` (LoRA on `target_modules` of the backbone, the head in `modules_to_save`).

    The backbone's own weights are frozen; only the LoRA matrices and the head train.
    """
    from peft import get_peft_model

    return get_peft_model(model, lora_config(model, r, alpha, dropout, target_modules, modules_to_save))


@dataclass
class ParameterCount:
    """Trainable parameters of a (PEFT-wrapped) head model: LoRA matrices, head, rest, against the model's size.

    `total` counts the model as it runs inference after merging: backbone + head (+ LoRA matrices while unmerged),
    without PEFT's frozen copy of the original head that `modules_to_save` keeps next to the trained one.
    """

    lora: int
    head: int
    other_trainable: int
    total: int

    @property
    def trainable(self) -> int:
        return self.lora + self.head + self.other_trainable

    @property
    def fraction(self) -> float:
        return self.trainable / self.total

    @property
    def lora_fraction(self) -> float:
        return self.lora / self.total

    def as_dict(self) -> dict:
        return {
            "lora_parameters": self.lora,
            "head_parameters": self.head,
            "other_trainable": self.other_trainable,
            "trainable_parameters": self.trainable,
            "total_parameters": self.total,
            "trainable_fraction": self.fraction,
            "lora_fraction": self.lora_fraction,
        }


def count_trainable(model: nn.Module) -> ParameterCount:
    lora = head = other = total = 0
    for name, parameter in model.named_parameters():
        if ".original_module." in name:
            continue  # PEFT's untouched copy of a modules_to_save module: not part of the deployed model
        total += parameter.numel()
        if not parameter.requires_grad:
            continue
        if "lora_" in name:
            lora += parameter.numel()
        elif ".modules_to_save." in name or not (name.replace("base_model.model.", "", 1)).startswith(BACKBONE_PREFIX):
            head += parameter.numel()
        else:
            other += parameter.numel()
    return ParameterCount(lora=lora, head=head, other_trainable=other, total=total)


def save_adapter(peft_model, folder: str | os.PathLike, **kwargs) -> str:
    """Save the LoRA adapter (with the trained head, from `modules_to_save`): `adapter_config.json` +
    `adapter_model.safetensors`."""
    peft_model.save_pretrained(str(folder), **kwargs)
    return str(folder)


def load_adapter(base_model: nn.Module, folder: str | os.PathLike, is_trainable: bool = False, **kwargs):
    """The adapter in `folder` on a fresh `base_model` (same head architecture, any head weights)."""
    from peft import PeftModel

    return PeftModel.from_pretrained(base_model, str(folder), is_trainable=is_trainable, **kwargs)


def merge_adapter(peft_model) -> nn.Module:
    """Fold the LoRA matrices into the backbone weights and return the plain head model (with the trained head)."""
    return peft_model.merge_and_unload()


__all__ = [
    "DEFAULT_TARGET_MODULES",
    "ParameterCount",
    "apply_lora",
    "check_target_modules",
    "count_trainable",
    "head_module_names",
    "load_adapter",
    "lora_config",
    "merge_adapter",
    "save_adapter",
]
