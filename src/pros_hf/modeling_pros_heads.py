"""What the task heads share: getting a pre-trained backbone into a freshly initialised head in one call.

Copied next to the weights of every head by `save_pretrained` (with `modeling_pros_pretraining.py`, which knows where
the teacher lives in a pre-training export), so it imports only torch, transformers and relative modules.
"""

import os

from .configuration_pros import ProSConfig
from .modeling_pros import ProSModel, ProSPreTrainedModel
from .modeling_pros_pretraining import ProSForPreTraining


# config entries that describe the saved model, not the head being built
_SAVED_MODEL_KEYS = ("architectures", "auto_map", "transformers_version", "_name_or_path", "model_type", "dtype")
_LABEL_KEYS = ("num_labels", "id2label", "label2id")


def hub_offline() -> bool:
    """Whether the Hub is switched off for this process (HF_HUB_OFFLINE, read now rather than at import)."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return bool(constants.HF_HUB_OFFLINE) or value in ("1", "ON", "YES", "TRUE")


def check_model_source(path_or_id) -> None:
    """Fail early, naming it, where transformers would fail deep inside: a local folder that does not exist (a typo
    in a path otherwise reads as a malformed Hub id), or, offline, a Hub id with no cached copy."""
    if not isinstance(path_or_id, (str, os.PathLike)):
        return
    text = os.fspath(path_or_id)
    if os.path.isdir(text):
        return
    looks_local = text.startswith((".", "/", "~")) or text.count("/") >= 2 or (os.sep != "/" and os.sep in text)
    if looks_local or os.path.exists(text):
        raise FileNotFoundError(
            f"No model folder {text!r} (relative to {os.getcwd()}): pass the folder of a saved ProSModel, head, or "
            "pre-training export or checkpoint, or a Hub id such as org/pros-vitb."
        )
    if hub_offline():
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(text, "config.json"), str):
            raise OSError(
                f"Cannot load {text!r}: it is not a local folder, and HF_HUB_OFFLINE is set with no cached copy of "
                "that Hub repository. Check the name, download it once online, or pass a local folder."
            )


def load_backbone(pretrained) -> ProSModel:
    """A `ProSModel` from a `ProSModel` (returned as is), a `ProSForPreTraining` (its EMA teacher), or the folder / Hub
    id of either (a pre-training export is recognised by `architectures` in its config). The folder of a fine-tuned
    head also works: its backbone is loaded and the head dropped. Raises `ValueError` for a folder that is not a ProS
    model (`model_type`) or whose checkpoint lacks backbone weights."""
    if isinstance(pretrained, ProSModel):
        return pretrained
    if isinstance(pretrained, ProSForPreTraining):
        return pretrained.export_teacher()
    if not isinstance(pretrained, (str, os.PathLike)):
        raise TypeError(
            "from_backbone takes a ProSModel, a ProSForPreTraining, or the folder / Hub id of a saved one, got "
            f"{type(pretrained).__name__}."
        )
    check_model_source(pretrained)
    # transformers loads any config.json into a ProSConfig (with a warning) and initialises every weight it does not
    # find at random, printing only a load report: a ViT or a BERT folder would then be fine-tuned, and reported, as a
    # pre-trained ProS backbone. Refuse both here, naming the folder (as `pros_hf.knn.load_backbone` does).
    config_dict, _ = ProSConfig.get_config_dict(pretrained)
    model_type = config_dict.get("model_type")
    if model_type != ProSConfig.model_type:
        raise ValueError(
            f"{os.fspath(pretrained)!r} is not a ProS model: its config.json has model_type {model_type!r}, not "
            f"{ProSConfig.model_type!r}. Pass a saved ProSModel, a fine-tuned ProS head, or a pre-training export."
        )
    if "ProSForPreTraining" in (config_dict.get("architectures") or []):
        model, info = ProSForPreTraining.from_pretrained(pretrained, output_loading_info=True)
        missing = [key for key in info["missing_keys"] if key.startswith("teacher.")]  # the teacher is what is kept
        backbone = model.export_teacher()
    else:
        backbone, info = ProSModel.from_pretrained(pretrained, output_loading_info=True)
        missing = list(info["missing_keys"])
    if missing:
        raise ValueError(
            f"{os.fspath(pretrained)!r}: {len(missing)} backbone weights are missing from its checkpoint (e.g. "
            f"{sorted(missing)[:3]}); they would be trained from random values. Pass a saved ProSModel, a fine-tuned "
            "ProS head, or a pre-training export."
        )
    return backbone


def head_config(backbone_config: ProSConfig, **config_overrides) -> ProSConfig:
    """The config of a head on a backbone of `backbone_config`: its fields plus `config_overrides`, without what
    describes the saved backbone (architectures, auto_map, ...) or its label maps when the head sets its own."""
    ProSConfig.check_field_names(config_overrides, "from_backbone")
    config_dict = backbone_config.to_dict()
    for key in _SAVED_MODEL_KEYS + (_LABEL_KEYS if set(_LABEL_KEYS) & set(config_overrides) else ()):
        config_dict.pop(key, None)
    config = ProSConfig(**{**config_dict, **config_overrides})
    config._attn_implementation = backbone_config._attn_implementation
    return config


def head_from_backbone(head_class: type[ProSPreTrainedModel], pretrained, **config_overrides) -> ProSPreTrainedModel:
    """`head_class` built from the backbone's config plus `config_overrides`, with the backbone weights loaded into
    `head.pros` and the head freshly initialised; returned in eval mode, like `from_pretrained`."""
    backbone = load_backbone(pretrained)
    head = head_class(head_config(backbone.config, **config_overrides))
    head.pros.load_state_dict(backbone.state_dict())
    return head.eval()


__all__ = ["load_backbone", "head_config", "head_from_backbone"]
