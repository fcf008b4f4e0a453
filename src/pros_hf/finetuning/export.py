"""Folders ready for the Hub: a fine-tuned head, or its LoRA adapter, each with its image processor and card.

The folder is written completely before anything is uploaded (`pros_hf.hub.push_folder`), so that what a test
inspects offline is byte for byte what would be pushed.

- head folder: `config.json` (with `auto_map`), `model.safetensors`, the modeling code for `trust_remote_code=True`,
  `preprocessor_config.json` and its code, `README.md` (the card).
- adapter folder: PEFT's `adapter_config.json` + `adapter_model.safetensors` (LoRA matrices and the trained head),
  plus the head's `config.json` and code (so the head architecture can be built without pros_hf: labels, decoder),
  the image processor and the card. Load it with `load_adapter_folder`, or as the card shows.
"""

import os
from pathlib import Path

from torch import nn


def save_head_folder(model, image_processor, folder: str | os.PathLike) -> str:
    """`save_pretrained` of the head and its processor (both copy their code for remote-code users)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    image_processor.save_pretrained(folder)
    return str(folder)


def save_head_config(model: nn.Module, folder: str | os.PathLike) -> None:
    """The head's `config.json` with `auto_map` and its modeling code, without weights."""
    from transformers.dynamic_module_utils import custom_object_save

    config = model.config
    config.architectures = [type(model).__name__]
    if getattr(model, "_auto_class", None) is not None:
        custom_object_save(model, str(folder), config=config)
    config.save_pretrained(str(folder))


def save_adapter_folder(peft_model, image_processor, folder: str | os.PathLike, base_model: str | None) -> str:
    """The adapter (`PeftModel.save_pretrained`), the head's config and code, and the processor.

    `base_model` (the backbone's Hub id or folder) is recorded as the adapter's `base_model_name_or_path`.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for config in peft_model.peft_config.values():
        config.base_model_name_or_path = base_model
    readme = folder / "README.md"
    had_card = readme.exists()
    # no embedding layers to save (a vision model); "auto" would look the base model's vocabulary up on the Hub
    peft_model.save_pretrained(str(folder), save_embedding_layers=False)
    if not had_card:  # PEFT's blank template ("More Information Needed"): pros_hf.hub.head_card writes the real one
        readme.unlink(missing_ok=True)
    save_head_config(peft_model.get_base_model(), folder)
    image_processor.save_pretrained(folder)
    return str(folder)


def load_adapter_folder(
    folder: str | os.PathLike, base_model: str | None = None, trust_remote_code: bool = False, **kwargs
):
    """A `PeftModel` from an adapter folder (or Hub id) written by `save_adapter_folder`: the head architecture from
    its `config.json`, the backbone weights from `base_model` (default: the adapter's `base_model_name_or_path`),
    then the adapter and the trained head on top."""
    from peft import PeftConfig, PeftModel
    from transformers import AutoConfig, AutoModelForImageClassification, AutoModelForPoseEstimation

    peft_config = PeftConfig.from_pretrained(str(folder))
    base_model = base_model or peft_config.base_model_name_or_path
    if not base_model:
        raise ValueError(f"The adapter in {folder} names no base model; pass base_model (the backbone's folder or id).")
    config = AutoConfig.from_pretrained(str(folder), trust_remote_code=trust_remote_code, **kwargs)
    architectures = config.architectures or []
    auto_class = (
        AutoModelForPoseEstimation if "ProSForLandmarkDetection" in architectures else AutoModelForImageClassification
    )
    head = auto_class.from_config(config, trust_remote_code=trust_remote_code)
    from .. import load_backbone

    backbone = load_backbone(base_model)  # a ProSModel folder or a pre-training export (its teacher)
    head.pros.load_state_dict(backbone.state_dict())
    return PeftModel.from_pretrained(head, str(folder)).eval()


def write_card(card, folder: str | os.PathLike) -> str:
    path = Path(folder) / "README.md"
    card.save(str(path))
    return str(path)


def push_head_folder(
    folder: str | os.PathLike, repo_id: str, token: str | None = None, private: bool | None = None, what: str = "head"
) -> str:
    """Upload a finished folder (offline: `push_folder`'s clear error, the folder left complete on disk)."""
    from ..hub import push_folder

    return push_folder(folder, repo_id, token=token, private=private, commit_message=f"Upload ProS {what}")


__all__ = [
    "load_adapter_folder",
    "push_head_folder",
    "save_adapter_folder",
    "save_head_config",
    "save_head_folder",
    "write_card",
]
