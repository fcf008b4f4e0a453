"""Pipelines for ProS models; `import pros_hf` registers "face-landmarks".

- `pipeline("face-landmarks", model=<ProSForLandmarkDetection folder or Hub id>)` (`FaceLandmarksPipeline`): one
  `{"landmarks": [[x, y], ...]}` per image, in the pixel coordinates of the image as given (pixel centres at integers,
  the convention of the data sets in `pros_hf.data`), whatever resizing and centre cropping the image processor did.
  Saved through the pipeline (`pipeline("face-landmarks", model=head).save_pretrained(folder)`), the folder also
  carries this file and `custom_pipelines` in its config, so `pipeline("face-landmarks", model=folder_or_hub_id,
  trust_remote_code=True)` works where `pros_hf` is not installed (this file imports only numpy, torch, transformers).
- `pipeline("image-classification", model=<ProSForImageClassification folder>)` is transformers' own pipeline. For a
  multi-label (attribute) head, saved with `problem_type="multi_label_classification"`, it applies a sigmoid per
  label, so each score is that attribute's probability. It returns the 5 highest scores unless told otherwise: pass
  `top_k=model.config.num_labels` to get every attribute (in transformers 5.x `top_k=None` also means 5). A
  single-label (expression) head gets a softmax over the classes.
- Both transformers pipelines resolve an optional video processor from the saved image processor's `auto_map` and, with
  `trust_remote_code` unset, ask on stdin whether to trust a `ProSVideoProcessor` that does not exist. Pass
  `trust_remote_code=False` when `pros_hf` is imported (the local classes are used), or `True` when it is not.
- `pipeline("image-feature-extraction", model=<ProSModel folder>)` is transformers' own pipeline: all tokens of the
  final-norm output by default, or `pool=True` for the CLS embedding (`pooler_output`, what k-NN and retrieval use).
"""

import numpy as np
import torch
from transformers import AutoModelForPoseEstimation, Pipeline
from transformers.image_utils import load_image
from transformers.pipelines import PIPELINE_REGISTRY


def image_height_width(image) -> tuple[int, int]:
    """(height, width) of an image as ProSImageProcessor reads it (PIL, HWC/CHW/HW numpy or torch)."""
    if hasattr(image, "convert") and hasattr(image, "size"):
        width, height = image.size
        return height, width
    shape = tuple(image.shape)
    if len(shape) == 2:
        return shape
    # ProSImageProcessor's rule: channels last when only the last dimension can hold them, or, when both can,
    # for numpy (HWC by convention) but not for torch (CHW)
    first, last = shape[0] in (1, 3, 4), shape[-1] in (1, 3, 4)
    if last and (not first or isinstance(image, np.ndarray)):
        return shape[:2]
    return shape[1:]


def processed_to_image_coordinates(landmarks, image_size, image_processor) -> np.ndarray:
    """Normalised (x, y) on the processor's output -> pixel (x, y) of the original image of `image_size`
    (height, width): the inverse of `ProSImageProcessor.point_transform` (resize of the shorter side, centre crop
    with zero padding where the image is smaller)."""
    sx, sy, tx, ty, out_height, out_width = image_processor.point_transform(*image_size)
    landmarks = np.asarray(landmarks, dtype=np.float64)
    x = (landmarks[..., 0] * out_width - 0.5 - tx) / sx  # normalised -> processed pixel centres -> original
    y = (landmarks[..., 1] * out_height - 0.5 - ty) / sy
    return np.stack((x, y), axis=-1)


class FaceLandmarksPipeline(Pipeline):
    """Facial landmarks with a `ProSForLandmarkDetection` model (or any model whose output has `landmarks`,
    normalised to its input as that class documents).

    ```python
    >>> import pros_hf
    >>> from transformers import pipeline
    >>> detector = pipeline("face-landmarks", model="org/pros-landmarks")
    >>> detector(image)["landmarks"][:2]   # [[x, y], [x, y]] in the pixels of `image`
    ```
    Inputs: a PIL image, a path or URL, a numpy array / torch tensor, or a list of them.
    """

    _load_processor = False
    _load_image_processor = True
    _load_video_processor = False  # else transformers asks whether to trust a "ProSVideoProcessor" that does not exist
    _load_feature_extractor = False
    _load_tokenizer = False

    def _sanitize_parameters(self, timeout=None):
        """`timeout` (seconds, for URLs) is this pipeline's one call argument; any other raises a TypeError that
        names it, as transformers' own pipelines do."""
        return ({"timeout": timeout} if timeout is not None else {}), {}, {}

    def preprocess(self, image, timeout=None):
        if not isinstance(image, (np.ndarray, torch.Tensor)):
            image = load_image(image, timeout=timeout)
        elif image.ndim == 4:  # one image with a batch dimension; a batch is a list of images
            if image.shape[0] != 1:
                raise ValueError(
                    f"face-landmarks takes one image per input (HW, CHW or HWC), got a batch of shape "
                    f"{tuple(image.shape)}; pass a list of images instead."
                )
            image = image[0]
        model_inputs = self.image_processor(image, return_tensors="pt").to(self.dtype)
        model_inputs["target_size"] = torch.tensor([image_height_width(image)])
        return model_inputs

    def _forward(self, model_inputs):
        target_size = model_inputs.pop("target_size")
        return {"landmarks": self.model(**model_inputs).landmarks, "target_size": target_size}

    def postprocess(self, model_outputs):
        image_size = tuple(model_outputs["target_size"][0].tolist())
        points = processed_to_image_coordinates(
            model_outputs["landmarks"][0].float().numpy(), image_size, self.image_processor
        )
        return {"landmarks": points.tolist()}


def register_pipelines() -> None:
    """Register "face-landmarks" with transformers' `pipeline()` (once; `import pros_hf` calls it)."""
    if PIPELINE_REGISTRY.supported_tasks.get("face-landmarks", {}).get("impl") is not FaceLandmarksPipeline:
        PIPELINE_REGISTRY.register_pipeline(
            "face-landmarks", pipeline_class=FaceLandmarksPipeline, pt_model=AutoModelForPoseEstimation, type="image"
        )


__all__ = ["FaceLandmarksPipeline", "image_height_width", "processed_to_image_coordinates", "register_pipelines"]
