"""ProSImageProcessor: images in, normalised `pixel_values` out, in plain torch.

transformers' fast image processors need torchvision, which must not be installed next to a CPU torch (DESIGN.md);
this processor needs only torch, numpy and PIL, so `AutoImageProcessor` works everywhere and offline. The geometry is
the one pre-training uses for its source images: resize the shorter side, then center-crop a square. On face-dominant
images this keeps the whole face (a DINO-style 256 -> 224 crop would cut chins and foreheads).
"""

import numpy as np
import torch
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _to_float_chw(image) -> torch.Tensor:
    """One image (PIL, HWC/CHW numpy or torch, uint8 or float in [0, 1]) as a float32 (3, H, W) tensor in [0, 255]."""
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL.Image without importing PIL here
        array = np.asarray(image.convert("RGB"))
        return torch.from_numpy(array.copy()).permute(2, 0, 1).float()
    if isinstance(image, np.ndarray):
        tensor = torch.from_numpy(np.ascontiguousarray(image))
    elif isinstance(image, torch.Tensor):
        tensor = image.detach().cpu()
    else:
        raise TypeError(
            f"ProSImageProcessor takes PIL images, numpy arrays or torch tensors, got {type(image).__name__}."
        )
    if tensor.ndim == 2:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 3:
        raise ValueError(f"ProSImageProcessor expects one image of 2 or 3 dimensions, got shape {tuple(tensor.shape)}.")
    if tensor.shape[0] not in (1, 3, 4) and tensor.shape[-1] in (1, 3, 4):
        tensor = tensor.permute(2, 0, 1)  # HWC -> CHW
    if tensor.shape[0] == 1:
        tensor = tensor.expand(3, -1, -1)
    elif tensor.shape[0] == 4:
        tensor = tensor[:3]
    elif tensor.shape[0] != 3:
        raise ValueError(f"ProSImageProcessor expects 1, 3 or 4 channels, got shape {tuple(tensor.shape)}.")
    if tensor.is_floating_point():
        return tensor.float() * 255.0 if tensor.max() <= 1.0 else tensor.float()
    return tensor.float()


class ProSImageProcessor(BaseImageProcessor):
    r"""
    Args:
        do_resize (`bool`, True): resize so that the shorter side equals `size["shortest_edge"]`.
        size (`dict`, {"shortest_edge": 224}).
        do_center_crop (`bool`, True): then crop the central `crop_size` region.
        crop_size (`dict`, {"height": 224, "width": 224}).
        resample (`str`, "bicubic"): "bicubic", "bilinear" or "nearest"; antialiased when shrinking.
        do_rescale (`bool`, True) and rescale_factor (`float`, 1/255): uint8 values to [0, 1].
        do_normalize (`bool`, True), image_mean / image_std: ImageNet statistics, the ones pre-training used.
    """

    model_input_names = ["pixel_values"]

    def __init__(
        self,
        do_resize: bool = True,
        size: dict | None = None,
        do_center_crop: bool = True,
        crop_size: dict | None = None,
        resample: str = "bicubic",
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        image_mean=IMAGENET_MEAN,
        image_std=IMAGENET_STD,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if resample not in ("bicubic", "bilinear", "nearest"):
            raise ValueError(f"ProSImageProcessor.resample must be 'bicubic', 'bilinear' or 'nearest', got {resample!r}.")
        self.do_resize = do_resize
        self.size = dict(size) if size is not None else {"shortest_edge": 224}
        self.do_center_crop = do_center_crop
        self.crop_size = dict(crop_size) if crop_size is not None else {"height": 224, "width": 224}
        self.resample = resample
        self.do_rescale = do_rescale
        self.rescale_factor = rescale_factor
        self.do_normalize = do_normalize
        self.image_mean = list(image_mean)
        self.image_std = list(image_std)

    @classmethod
    def from_model_config(cls, config, **kwargs) -> "ProSImageProcessor":
        """The processor matching a `ProSConfig`'s input size."""
        side = config.image_size if isinstance(config.image_size, int) else min(config.image_size)
        height, width = (config.image_size, config.image_size) if isinstance(config.image_size, int) else config.image_size
        return cls(size={"shortest_edge": side}, crop_size={"height": height, "width": width}, **kwargs)

    def _resized_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) after the resize of the shorter side to `size["shortest_edge"]`."""
        target = int(self.size["shortest_edge"])
        scale = target / min(height, width)
        return max(target, round(height * scale)), max(target, round(width * scale))

    def point_transform(self, height: int, width: int) -> tuple[float, float, float, float, int, int]:
        """`(sx, sy, tx, ty, out_height, out_width)`: where a point of a `height x width` image lands in the
        processed one, `x' = sx * x + tx`, `y' = sy * y + ty`, pixel centres at integers on both sides. The one
        place that knows this geometry: landmark targets (fine-tuning) and the face-landmarks pipeline (its inverse)
        both use it, so they cannot drift from `_resize` and `_center_crop`."""
        sx = sy = 1.0
        tx = ty = 0.0
        out_height, out_width = height, width
        if self.do_resize:
            out_height, out_width = self._resized_size(height, width)
            sx, sy = out_width / width, out_height / height
            tx, ty = 0.5 * sx - 0.5, 0.5 * sy - 0.5  # resampling with align_corners=False: (x + 0.5) * s - 0.5
        if self.do_center_crop:
            crop_height, crop_width = int(self.crop_size["height"]), int(self.crop_size["width"])
            pad_h, pad_w = max(crop_height - out_height, 0), max(crop_width - out_width, 0)
            padded_height, padded_width = out_height + pad_h, out_width + pad_w
            tx += pad_w // 2 - (padded_width - crop_width) // 2
            ty += pad_h // 2 - (padded_height - crop_height) // 2
            out_height, out_width = crop_height, crop_width
        return sx, sy, tx, ty, out_height, out_width

    def _resize(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        new_size = self._resized_size(height, width)
        if new_size == (height, width):
            return image
        antialias = self.resample != "nearest" and min(new_size) < min(height, width)  # only when shrinking
        resized = torch.nn.functional.interpolate(
            image[None], size=new_size, mode=self.resample, antialias=antialias,
            **({} if self.resample == "nearest" else {"align_corners": False}),
        )[0]
        return resized.clamp_(0, 255)

    def _center_crop(self, image: torch.Tensor) -> torch.Tensor:
        crop_height, crop_width = int(self.crop_size["height"]), int(self.crop_size["width"])
        height, width = image.shape[-2:]
        if height < crop_height or width < crop_width:  # pad with zeros, as transformers' center_crop does
            pad_h, pad_w = max(crop_height - height, 0), max(crop_width - width, 0)
            image = torch.nn.functional.pad(image, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2))
            height, width = image.shape[-2:]
        top, left = (height - crop_height) // 2, (width - crop_width) // 2
        return image[:, top : top + crop_height, left : left + crop_width]

    def preprocess(self, images, return_tensors=None, **overrides) -> BatchFeature:
        """`images`: one image or a list of them. Keyword overrides (e.g. `do_center_crop=False`) apply to this call."""
        unknown = set(overrides) - set(self.to_dict())
        if unknown:
            raise ValueError(f"ProSImageProcessor got unknown arguments {sorted(unknown)}.")
        processor = self if not overrides else type(self)(**{**self.to_dict(), **overrides})
        if isinstance(images, torch.Tensor) and images.ndim == 4:
            images = list(images)
        elif not isinstance(images, (list, tuple)):
            images = [images]
        if len(images) == 0:
            raise ValueError("ProSImageProcessor got an empty list of images.")
        processed = [processor._process_one(_to_float_chw(image)) for image in images]
        shapes = {tuple(p.shape) for p in processed}
        if len(shapes) == 1:
            pixel_values = torch.stack(processed)
            if return_tensors in (None, "np"):
                pixel_values = pixel_values.numpy()
        elif return_tensors is not None:
            raise ValueError(
                f"Images of different sizes {sorted(shapes)} cannot be stacked: enable do_center_crop or do_resize."
            )
        else:
            pixel_values = [p.numpy() for p in processed]
        return BatchFeature(data={"pixel_values": pixel_values}, tensor_type=return_tensors)

    def __call__(self, images, return_tensors=None, **overrides) -> BatchFeature:
        return self.preprocess(images, return_tensors=return_tensors, **overrides)

    def _process_one(self, image: torch.Tensor) -> torch.Tensor:
        if self.do_resize:
            image = self._resize(image)
        if self.do_center_crop:
            image = self._center_crop(image)
        if self.do_rescale:
            image = image * self.rescale_factor
        if self.do_normalize:
            mean = torch.tensor(self.image_mean, dtype=image.dtype).view(3, 1, 1)
            std = torch.tensor(self.image_std, dtype=image.dtype).view(3, 1, 1)
            image = (image - mean) / std
        return image.contiguous()


__all__ = ["ProSImageProcessor", "IMAGENET_MEAN", "IMAGENET_STD"]
