"""One loader for a pre-trained ProS backbone, whatever the user has; used by the heads' `from_backbone`, k-NN,
fine-tuning and the examples.

Toolkit, not model core: it needs the pre-training model (to take a checkpoint's EMA teacher) and huggingface_hub's
cache (to name an uncached Hub id when offline), and a head's Hub folder ships neither.
"""

import os

from .configuration_pros import ProSConfig
from .modeling_pros import ProSModel
from .modeling_pros_pretraining import ProSForPreTraining


def hub_offline() -> bool:
    """Whether the Hub is switched off for this process (HF_HUB_OFFLINE, read now rather than at import)."""
    from huggingface_hub import constants

    value = os.environ.get("HF_HUB_OFFLINE", "").strip().upper()
    return bool(constants.HF_HUB_OFFLINE) or value in ("1", "ON", "YES", "TRUE")


class BackboneError(ValueError):
    """What `load_backbone` refuses, in one line naming the folder: another model type, missing backbone weights,
    weights that cannot be read or do not fit their config."""


WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)


def weight_file_name(pretrained) -> str:
    """The weight file `from_pretrained` reads in a local folder (its path), or the folder or id itself."""
    folder = os.fspath(pretrained)
    for name in WEIGHT_FILES:
        if os.path.isfile(os.path.join(folder, name)):
            return os.path.join(folder, name)
    return folder


def _load_weights(model_class, pretrained, **kwargs):
    """`model_class.from_pretrained(pretrained, output_loading_info=True)`, a weight file that cannot be read (cut
    short, garbled) or that does not fit its config.json raised as a `BackboneError` naming the file: safetensors'
    `SafetensorError` ("incomplete metadata") and transformers' size-mismatch `RuntimeError` name neither."""
    from safetensors import SafetensorError

    try:
        return model_class.from_pretrained(pretrained, output_loading_info=True, **kwargs)
    except SafetensorError as error:
        raise BackboneError(
            f"{weight_file_name(pretrained)} cannot be read ({error}): the file is truncated or "
            "corrupt; copy or download it again."
        ) from None
    except RuntimeError as error:
        if "mismatch" not in str(error):
            raise
        raise BackboneError(
            f"{weight_file_name(pretrained)}: the weights do not fit the sizes in its config.json "
            "(a config of another model size next to them); save the model and its config together."
        ) from None


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


def load_backbone(pretrained, **kwargs) -> ProSModel:
    """A `ProSModel` from:

    - a `ProSModel`, returned as it is;
    - a `ProSForPreTraining`: its EMA teacher, exported (`export_teacher`);
    - the folder or Hub id of a saved `ProSModel` (an exported backbone), of a pre-training checkpoint (its teacher,
      recognised by `architectures` in its config), or of a fine-tuned ProS head (its backbone; the head is dropped).

    `kwargs` go to `from_pretrained` (`revision`, `dtype`, `attn_implementation`, ...). A loaded backbone is in eval
    mode. Refuses, naming the folder, what transformers would load with only a printed report: a folder of another
    model type (a ViT or BERT folder would be loaded into a ProSConfig and initialised at random) and a checkpoint
    whose backbone weights are not all there (the missing ones would be random).
    """
    if isinstance(pretrained, ProSModel):
        return pretrained
    if isinstance(pretrained, ProSForPreTraining):
        return pretrained.export_teacher()
    if not isinstance(pretrained, (str, os.PathLike)):
        raise TypeError(
            "load_backbone (and from_backbone) takes a ProSModel, a ProSForPreTraining, or the folder / Hub id of a "
            f"saved one, got {type(pretrained).__name__}."
        )
    check_model_source(pretrained)
    folder = os.fspath(pretrained)
    if os.path.isdir(folder) and not os.path.isfile(os.path.join(folder, "config.json")):
        saved_data = any(
            os.path.isfile(os.path.join(folder, name))
            for name in ("dataset_info.json", "dataset_dict.json", "state.json")
        )
        raise BackboneError(
            f"{folder!r} has no config.json: it is "
            + ("a dataset folder (save_to_disk), not a model" if saved_data else "not a model folder")
            + "; pass the folder of a saved ProSModel, a fine-tuned ProS head or a pre-training export."
        )
    config_dict, _ = ProSConfig.get_config_dict(pretrained, **kwargs)
    model_type = config_dict.get("model_type")
    if model_type != ProSConfig.model_type:
        raise BackboneError(
            f"{os.fspath(pretrained)!r} is not a ProS model: its config.json has model_type {model_type!r}, not "
            f"{ProSConfig.model_type!r}, and loading it would start from random weights. Convert ViT weights with "
            "`python -m pros_hf.convert --checkpoint WEIGHTS --output FOLDER` and pass FOLDER, or pass a saved "
            "ProSModel, a fine-tuned ProS head or a pre-training export."
        )
    if "ProSForPreTraining" in (config_dict.get("architectures") or []):
        model, info = _load_weights(ProSForPreTraining, pretrained, **kwargs)
        missing = [key for key in info["missing_keys"] if key.startswith("teacher.")]  # the teacher is what is kept
        backbone = model.export_teacher()
    else:
        backbone, info = _load_weights(ProSModel, pretrained, **kwargs)
        missing = list(info["missing_keys"])
    if missing:
        raise BackboneError(
            f"{os.fspath(pretrained)!r}: {len(missing)} backbone weights are missing from its checkpoint (e.g. "
            f"{sorted(missing)[:3]}); they would be trained from random values. Pass a saved ProSModel, a fine-tuned "
            "ProS head, or a pre-training export."
        )
    return backbone.eval()


__all__ = ["BackboneError", "check_model_source", "hub_offline", "load_backbone", "weight_file_name"]
