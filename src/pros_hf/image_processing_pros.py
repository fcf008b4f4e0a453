"""ProSImageProcessor: images in, normalised `pixel_values` out, in plain torch.

transformers' fast image processors need torchvision, which must not be installed next to a CPU torch;
this processor needs only torch, numpy and PIL, so `AutoImageProcessor` works everywhere and offline. The geometry is
the one pre-training uses for its source images: resize the shorter side, then center-crop a square. On face-dominant
images this keeps the whole face (a DINO-style 256 -> 224 crop would cut chins and foreheads).
"""

import numpy as np
import torch
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _pil_to_array(image) -> np.ndarray:
    """A PIL image as an HWC uint8 array. 16-bit and 32-bit greyscale modes ("I;16", "I", "F") are scaled by the
    training decoder's rule: `convert("RGB")` would clip them to 255, turning most of a 16-bit image white."""
    if image.mode.startswith("I;16") or image.mode in ("I", "F"):
        return np.repeat(_wide_grey_to_8_bit(np.asarray(image), image.mode)[..., None], 3, axis=-1)
    return np.array(image.convert("RGB"))  # a writable copy: torch.from_numpy warns on read-only arrays


def _wide_grey_to_8_bit(array: np.ndarray, mode: str) -> np.ndarray:
    """The rule of `pros_hf.data.decoding._sixteen_bit_to_l` (which this file, copied next to the weights, cannot
    import), so that inference sees the pixels pre-training saw: 16-bit values / 257, float [0, 1] x 255, anything
    wider stretched from its observed range."""
    if mode.startswith("I;16") or (mode == "I" and array.size and array.min() >= 0 and array.max() <= 65535):
        out = np.rint(array.astype(np.float32) / 257.0)
    elif mode == "F" and array.size and np.nanmax(array) <= 1.0 and np.nanmin(array) >= 0.0:
        out = np.rint(array * 255.0)
    else:
        array = np.nan_to_num(array.astype(np.float64))
        low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
        out = np.zeros_like(array) if high <= low else np.rint((array - low) * (255.0 / (high - low)))
    return np.clip(out, 0, 255).astype(np.uint8)


def _sixteen_bit_range(array, what: str):
    """16-bit values (0 .. 65535) mapped onto 0 .. 255 and rounded, as the training decoder does with a 16-bit file."""
    if array.min() < 0 or array.max() > 65535:
        raise ValueError(f"ProSImageProcessor: {what} has values outside 0 .. 65535 ({array.min()} .. {array.max()}).")
    scaled = array / 257.0
    return scaled.round() if isinstance(scaled, torch.Tensor) else np.rint(scaled)


def _float_range(tensor: torch.Tensor, what: str) -> torch.Tensor:
    """Float values as 0 .. 255: [0, 1] images are scaled, [0, 255] ones kept, both clipped to the range (a resampled
    image overshoots it: bicubic rings by a tenth of the range at a sharp edge). Normalised inputs (negative values
    with a maximum of a few units) and values far outside both ranges are refused."""
    tensor = tensor.float()
    if tensor.numel() and not torch.isfinite(tensor).all():
        raise ValueError(f"ProSImageProcessor: {what} holds NaN or infinite values.")
    low, high = (float(tensor.min()), float(tensor.max())) if tensor.numel() else (0.0, 0.0)
    unit_range = high <= 1.5
    normalised = low < -0.5 and high < 16
    if normalised or (unit_range and low < -0.5) or low < -128 or high > 383:
        raise ValueError(
            f"ProSImageProcessor: {what} has float values {low:g} .. {high:g}; pass floats in [0, 1] or [0, 255], "
            "or uint8 (normalised inputs are not accepted: normalisation is this processor's job)."
        )
    return (tensor * 255.0 if unit_range else tensor).clamp(0, 255)


def _to_float_chw(image) -> torch.Tensor:
    """One image as a float32 (3, H, W) tensor in [0, 255]: PIL (any mode, 16-bit greyscale included), or numpy /
    torch, HW, CHW or HWC, uint8, uint16 (scaled to 8 bits) or float in [0, 1] or [0, 255]. When both the first and
    the last dimension could hold the channels (a 3 x 4 x 3 array), numpy arrays are read as HWC (numpy's and PIL's
    layout) and torch tensors as CHW (torch's)."""
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL.Image without importing PIL here
        tensor = torch.from_numpy(np.ascontiguousarray(_pil_to_array(image))).permute(2, 0, 1)
        return _checked_size(tensor.float())
    sixteen_bit = False  # scaled to 0 .. 255 here: not to be read as a [0, 1] float image below
    if isinstance(image, np.ndarray):
        channels_last = True
        if image.dtype == np.uint16:
            image, sixteen_bit = _sixteen_bit_range(image.astype(np.float32), "a uint16 array"), True
        tensor = torch.from_numpy(np.ascontiguousarray(image))
    elif isinstance(image, torch.Tensor):
        channels_last = False
        tensor = image.detach().cpu()
        if tensor.dtype == torch.uint16:  # torch has no min/max for uint16: scaled in float, as numpy's are
            tensor, sixteen_bit = _sixteen_bit_range(tensor.float(), "a uint16 tensor"), True
    else:
        raise TypeError(
            f"ProSImageProcessor takes PIL images, numpy arrays or torch tensors, got {type(image).__name__}."
        )
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise ValueError(
            f"ProSImageProcessor takes uint8 or float images, got dtype {tensor.dtype}; a boolean mask becomes an "
            "image with `mask.astype(np.uint8) * 255`."
        )
    if tensor.ndim == 2:
        tensor = tensor.unsqueeze(0)
    if tensor.ndim != 3:
        raise ValueError(f"ProSImageProcessor expects one image of 2 or 3 dimensions, got shape {tuple(tensor.shape)}.")
    first, last = tensor.shape[0] in (1, 3, 4), tensor.shape[-1] in (1, 3, 4)
    if last and (not first or channels_last):
        tensor = tensor.permute(2, 0, 1)  # HWC -> CHW
    if tensor.shape[0] == 1:
        tensor = tensor.expand(3, -1, -1)
    elif tensor.shape[0] == 4:
        tensor = tensor[:3]
    elif tensor.shape[0] != 3:
        raise ValueError(f"ProSImageProcessor expects 1, 3 or 4 channels, got shape {tuple(tensor.shape)}.")
    if sixteen_bit:
        return _checked_size(tensor.float())
    if tensor.is_floating_point():
        return _checked_size(_float_range(tensor, "the image"))
    if tensor.dtype != torch.uint8 and tensor.numel() and (int(tensor.min()) < 0 or int(tensor.max()) > 255):
        raise ValueError(
            f"ProSImageProcessor: an integer image of dtype {tensor.dtype} has values {int(tensor.min())} .. "
            f"{int(tensor.max())}; pass 8-bit values (0 .. 255), uint16 for 16-bit images, or floats."
        )
    return _checked_size(tensor.float())


def _checked_size(tensor: torch.Tensor) -> torch.Tensor:
    if tensor.shape[-1] == 0 or tensor.shape[-2] == 0:
        raise ValueError(f"ProSImageProcessor got an empty image (shape {tuple(tensor.shape)}).")
    return tensor


def _size_dict(value, name: str, keys: tuple[str, ...]) -> dict:
    """`size` / `crop_size` as the dict the processor reads; an int is accepted for either."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = {key: value for key in keys}
    if (
        not isinstance(value, dict)
        or set(value) != set(keys)
        or any(isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in value.values())
    ):
        layout = ", ".join(f"{key!r}: N" for key in keys)
        hint = (
            " ProSImageProcessor resizes the shorter side (keeping the aspect ratio), then center-crops crop_size."
            if name == "size"
            else ""
        )
        raise ValueError(
            f"ProSImageProcessor.{name} must be {{{layout}}} with positive ints (or one int), got {value!r}.{hint}"
        )
    return dict(value)


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
            raise ValueError(
                f"ProSImageProcessor.resample must be 'bicubic', 'bilinear' or 'nearest', got {resample!r}."
            )
        self.do_resize = do_resize
        self.size = _size_dict(size if size is not None else 224, "size", ("shortest_edge",))
        self.do_center_crop = do_center_crop
        self.crop_size = _size_dict(crop_size if crop_size is not None else 224, "crop_size", ("height", "width"))
        self.resample = resample
        self.do_rescale = do_rescale
        if isinstance(rescale_factor, bool) or not isinstance(rescale_factor, (int, float)) or rescale_factor <= 0:
            raise ValueError(f"ProSImageProcessor.rescale_factor must be a positive number, got {rescale_factor!r}.")
        self.rescale_factor = rescale_factor
        self.do_normalize = do_normalize
        for name, given in (("image_mean", image_mean), ("image_std", image_std)):
            try:
                values = [float(v) for v in given]
            except (TypeError, ValueError):
                values = []
            if len(values) != 3 or (name == "image_std" and min(values) <= 0):
                raise ValueError(
                    f"ProSImageProcessor.{name} must be 3 numbers (R, G, B)"
                    f"{', each > 0' if name == 'image_std' else ''}, got {given!r}."
                )
            setattr(self, name, values)

    @classmethod
    def from_model_config(cls, config, **kwargs) -> "ProSImageProcessor":
        """The processor matching a `ProSConfig`'s input size."""
        # the shorter side resized to the longer input side, so the crop never reaches past the image (no padding)
        side = config.image_size if isinstance(config.image_size, int) else max(config.image_size)
        height, width = (
            (config.image_size, config.image_size) if isinstance(config.image_size, int) else config.image_size
        )
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
        # "nearest-exact": centre-aligned like the other modes, as point_transform assumes (torch's "nearest"
        # samples pixel i at floor(i * scale), a shift of up to half a source pixel)
        mode = "nearest-exact" if self.resample == "nearest" else self.resample
        resized = torch.nn.functional.interpolate(
            image[None],
            size=new_size,
            mode=mode,
            antialias=antialias,
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
