"""pros_hf: ProS prototype-based self-distillation for faces, as a Hugging Face plugin.

Importing the package registers the ProS classes with transformers' Auto classes, so that `AutoConfig`, `AutoModel`,
`AutoModelForPreTraining`, `AutoModelForImageClassification`, `AutoModelForPoseEstimation` (the landmark head, where
transformers keeps VitPose) and `AutoImageProcessor` resolve `model_type="pros"` without `trust_remote_code`, and
registers the "face-landmarks" pipeline. The trainer, augmentation and retrieval names load on first use, so
`import pros_hf` stays light.
"""

import importlib

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForImageClassification,
    AutoModelForPoseEstimation,
    AutoModelForPreTraining,
)

from .configuration_pros import PRESETS, ProSConfig, ProSLandmarkConfig, ProSPreTrainingConfig
from .image_processing_pros import ProSImageProcessor
from .loading import load_backbone
from .modeling_pros import ProSModel, ProSPreTrainedModel
from .modeling_pros_classification import ProSForImageClassification
from .modeling_pros_landmarks import (
    ProSForLandmarkDetection,
    ProSLandmarkDetectionOutput,
    denormalize_landmarks,
    normalize_landmarks,
    soft_argmax,
)
from .modeling_pros_pretraining import ProSForPreTraining, ProSPreTrainingOutput
from .pipelines import FaceLandmarksPipeline, register_pipelines

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
    "load_metric": "metrics",
    "load_benchmark": "benchmarks",
    "plot_confusion_matrix": "evaluation_plots",
    "plot_landmarks": "evaluation_plots",
    "plot_ced_curves": "evaluation_plots",
    "plot_attribute_accuracy": "evaluation_plots",
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
    AutoModelForImageClassification.register(ProSConfig, ProSForImageClassification, exist_ok=True)
    AutoModelForPoseEstimation.register(ProSConfig, ProSForLandmarkDetection, exist_ok=True)
    AutoImageProcessor.register(ProSConfig, slow_image_processor_class=ProSImageProcessor, exist_ok=True)
    ProSConfig.register_for_auto_class()
    ProSModel.register_for_auto_class("AutoModel")
    ProSForPreTraining.register_for_auto_class("AutoModelForPreTraining")
    ProSForImageClassification.register_for_auto_class("AutoModelForImageClassification")
    ProSForLandmarkDetection.register_for_auto_class("AutoModelForPoseEstimation")
    ProSImageProcessor.register_for_auto_class("AutoImageProcessor")


_register_auto_classes()
register_pipelines()

__all__ = [
    "PRESETS",
    "FaceLandmarksPipeline",
    "ProSConfig",
    "ProSForImageClassification",
    "ProSForLandmarkDetection",
    "ProSForPreTraining",
    "ProSImageProcessor",
    "ProSLandmarkConfig",
    "ProSLandmarkDetectionOutput",
    "ProSModel",
    "ProSPreTrainedModel",
    "ProSPreTrainingConfig",
    "ProSPreTrainingOutput",
    "denormalize_landmarks",
    "load_backbone",
    "normalize_landmarks",
    "soft_argmax",
    "__version__",
    *_LAZY,
]
