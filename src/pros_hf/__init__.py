"""pros_hf: ProS prototype-based self-distillation for faces, as a Hugging Face plugin.

Importing the package registers the ProS classes with transformers' Auto classes, so that `AutoConfig`, `AutoModel`,
`AutoModelForPreTraining` and `AutoImageProcessor` resolve `model_type="pros"` without `trust_remote_code`. The
trainer, augmentation and retrieval names load on first use, so `import pros_hf` stays light.
"""

import importlib

from transformers import AutoConfig, AutoImageProcessor, AutoModel, AutoModelForPreTraining

from .configuration_pros import PRESETS, ProSConfig
from .image_processing_pros import ProSImageProcessor
from .modeling_pros import ProSModel, ProSPreTrainedModel
from .modeling_pros_pretraining import ProSForPreTraining, ProSPreTrainingOutput


__version__ = "0.1.0"

# public name -> submodule that defines it, imported on first access
_LAZY = {
    "MultiCropAugmentation": "augmentation",
    "MultiCropConfig": "augmentation",
    "LandmarkAugmentation": "augmentation",
    "LandmarkAugmentationConfig": "augmentation",
    "ProSTrainer": "training",
    "ProSTrainingArguments": "training",
    "NonFiniteLossError": "training",
    "KNNCallback": "knn",
    "evaluate_knn": "knn",
    "weighted_knn_classify": "knn",
    "cls_attention_maps": "visualization",
    "curate": "retrieval",
    "CurationConfig": "retrieval",
    "get_face_detector": "retrieval",
    "make_synthetic_faces": "data",
    "load_pretraining_images": "data",
}


def __getattr__(name):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _register_auto_classes() -> None:
    """Register with the Auto factories (for `import pros_hf` users) and mark each class for `auto_map` (so that
    `save_pretrained` writes the mapping and copies the code for `trust_remote_code=True` users)."""
    AutoConfig.register(ProSConfig.model_type, ProSConfig, exist_ok=True)
    AutoModel.register(ProSConfig, ProSModel, exist_ok=True)
    AutoModelForPreTraining.register(ProSConfig, ProSForPreTraining, exist_ok=True)
    AutoImageProcessor.register(ProSConfig, slow_image_processor_class=ProSImageProcessor, exist_ok=True)
    ProSConfig.register_for_auto_class()
    ProSModel.register_for_auto_class("AutoModel")
    ProSForPreTraining.register_for_auto_class("AutoModelForPreTraining")
    ProSImageProcessor.register_for_auto_class("AutoImageProcessor")


_register_auto_classes()

__all__ = [
    "PRESETS",
    "ProSConfig",
    "ProSForPreTraining",
    "ProSImageProcessor",
    "ProSModel",
    "ProSPreTrainedModel",
    "ProSPreTrainingOutput",
    "__version__",
    *_LAZY,
]
