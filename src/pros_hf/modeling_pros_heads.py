"""What the task heads share: a pre-trained backbone in a freshly initialised head, in one call (`from_backbone`).

Copied next to the weights of every head by `save_pretrained`, so it imports only torch, transformers and relative
modules, and none of the pre-training code: a head's folder holds no `modeling_pros_pretraining.py` or `losses.py`.

`from_backbone` takes a `ProSModel`, a `ProSForPreTraining` (its EMA teacher, through its own `export_teacher`), or
the folder / Hub id of a saved model. A folder goes to the toolkit's `pros_hf.loading.load_backbone`, the one loader
that knows every kind of ProS folder (an exported backbone, a pre-training checkpoint, a fine-tuned head) and refuses
the others by name. Why deferred rather than done here: taking the teacher of a pre-training checkpoint needs the
pre-training model, or else a copy here of transformers' weight-file resolution (Hub, shards, offline cache) to read
its `teacher.` weights by prefix; one loader keeps one set of rules and error messages. The import sits in a try
block, which transformers' remote-code loader neither copies (it follows relative imports only) nor requires to be
installed (it checks the absolute imports found outside try blocks). Without the package (a head class loaded with
`trust_remote_code=True`), a ProSModel folder or Hub id still loads here, and a pre-training checkpoint is refused
with the way out.
"""

import os

from .configuration_pros import ProSConfig
from .modeling_pros import ProSModel, ProSPreTrainedModel

# config entries that describe the saved model, not the head being built
_SAVED_MODEL_KEYS = ("architectures", "auto_map", "transformers_version", "_name_or_path", "model_type", "dtype")
_LABEL_KEYS = ("num_labels", "id2label", "label2id")


def backbone_for_head(pretrained) -> ProSModel:
    """The backbone `from_backbone` copies into a new head (see the module docstring)."""
    if isinstance(pretrained, ProSModel):
        return pretrained
    if callable(getattr(pretrained, "export_teacher", None)):  # a ProSForPreTraining, not imported here
        return pretrained.export_teacher()
    try:
        from pros_hf.loading import load_backbone
    except ImportError:
        return _saved_backbone_without_the_package(pretrained)
    return load_backbone(pretrained)


def _saved_backbone_without_the_package(pretrained) -> ProSModel:
    """A ProSModel folder or Hub id, where pros_hf is not installed (a head class loaded with remote code)."""
    if not isinstance(pretrained, (str, os.PathLike)):
        raise TypeError(
            "from_backbone takes a ProSModel, a ProSForPreTraining, or the folder / Hub id of a saved one, got "
            f"{type(pretrained).__name__}."
        )
    config_dict, _ = ProSConfig.get_config_dict(pretrained)
    if "ProSForPreTraining" in (config_dict.get("architectures") or []):
        raise ValueError(
            f"{os.fspath(pretrained)!r} is a pre-training checkpoint: taking its EMA teacher needs the pros_hf "
            "package (pip install pros_hf), or pass the backbone exported from it."
        )
    return ProSModel.from_pretrained(pretrained)


def head_config(backbone_config: ProSConfig, **config_overrides) -> ProSConfig:
    """The config of a head on a backbone of `backbone_config`: the backbone's fields (no pre-training or landmark
    section, nor what describes the saved backbone: architectures, auto_map, ...) plus `config_overrides`, without the
    backbone's label maps when the head sets its own."""
    ProSConfig.check_field_names(config_overrides, "from_backbone")
    config_dict = backbone_config.to_backbone_config().to_dict()
    for key in _SAVED_MODEL_KEYS + (_LABEL_KEYS if set(_LABEL_KEYS) & set(config_overrides) else ()):
        config_dict.pop(key, None)
    config = ProSConfig(**{**config_dict, **config_overrides})
    config._attn_implementation = backbone_config._attn_implementation
    return config


def head_from_backbone(head_class: type[ProSPreTrainedModel], pretrained, **config_overrides) -> ProSPreTrainedModel:
    """`head_class` built from the backbone's config plus `config_overrides`, with the backbone weights loaded into
    `head.pros` and the head freshly initialised; returned in eval mode, like `from_pretrained`."""
    backbone = backbone_for_head(pretrained)
    head = head_class(head_config(backbone.config, **config_overrides))
    head.pros.load_state_dict(backbone.state_dict())
    return head.eval()


__all__ = ["backbone_for_head", "head_config", "head_from_backbone"]
