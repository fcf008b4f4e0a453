"""pros_hf: ProS prototype-based self-distillation for faces, as a Hugging Face plugin.

Importing the package registers the ProS classes with transformers' Auto classes, so that
`AutoConfig`, `AutoModel` and `AutoImageProcessor` resolve `model_type="pros"` without `trust_remote_code`.
"""

from transformers import AutoConfig, AutoImageProcessor, AutoModel

from .configuration_pros import PRESETS, ProSConfig
from .image_processing_pros import ProSImageProcessor
from .modeling_pros import ProSModel, ProSPreTrainedModel


__version__ = "0.1.0"


def _register_auto_classes() -> None:
    """Register with the Auto factories (for `import pros_hf` users) and mark each class for `auto_map` (so that
    `save_pretrained` writes the mapping and copies the code for `trust_remote_code=True` users)."""
    AutoConfig.register(ProSConfig.model_type, ProSConfig, exist_ok=True)
    AutoModel.register(ProSConfig, ProSModel, exist_ok=True)
    AutoImageProcessor.register(ProSConfig, slow_image_processor_class=ProSImageProcessor, exist_ok=True)
    ProSConfig.register_for_auto_class()
    ProSModel.register_for_auto_class("AutoModel")
    ProSImageProcessor.register_for_auto_class("AutoImageProcessor")


_register_auto_classes()

__all__ = ["PRESETS", "ProSConfig", "ProSImageProcessor", "ProSModel", "ProSPreTrainedModel", "__version__"]
