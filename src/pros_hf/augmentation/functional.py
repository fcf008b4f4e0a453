"""Pure, batched, per-sample image operations used by the ProS augmentations.

Every function here takes a float image batch ``(N, 3, H, W)`` with values in ``[0, 1]`` and per-sample parameters
as tensors of shape ``(N,)`` (or ``(N, ...)``), and works on any device with plain tensor ops: no Python loop over
the batch, no global state, no randomness (random parameters are sampled by the callers, see ``multicrop.py``).

The semantics follow torchvision's functional transforms (which DINO's PIL pipeline matches) unless a docstring
says otherwise; the deviations are deliberate and documented where they are made (no anti-aliasing in crops,
YIQ hue rotation in the fused colour path).
"""

import functools
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

# the image processor's ImageNet statistics, under timm's names, which the augmentation configs use
from ..image_processing_pros import IMAGENET_MEAN as IMAGENET_DEFAULT_MEAN
from ..image_processing_pros import IMAGENET_STD as IMAGENET_DEFAULT_STD

__all__ = [
    "IMAGENET_DEFAULT_MEAN",
    "IMAGENET_DEFAULT_STD",
    "GRAYSCALE_WEIGHTS",
    "INTERPOLATION_MODES",
    "to_float_image",
    "as_float_source",
    "sample_resized_crop_boxes",
    "crop_boxes_to_theta",
    "crop_grid",
    "resized_crop_stacked",
    "resized_crop",
    "rgb_to_grayscale",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_saturation",
    "rgb_to_hsv",
    "hsv_to_rgb",
    "adjust_hue",
    "brightness_matrix",
    "contrast_matrix",
    "saturation_matrix",
    "hue_rotation_matrix",
    "grayscale_matrix",
    "color_jitter_matrices",
    "apply_color_matrix",
    "gaussian_kernel1d",
    "gaussian_blur",
    "blur_radius_buckets",
    "solarize",
    "solarize_normalized",
    "normalize",
    "constant",
    "pack_bytes",
    "unpack_bytes",
    "to_device",
]

# ITU-R 601-2 luma, the weights of PIL's ``convert("L")`` and (to 3 decimals) torchvision's ``rgb_to_grayscale``.
GRAYSCALE_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)
INTERPOLATION_MODES = ("bilinear", "bicubic", "nearest")


# ----------------------------------------------------------------------------------------------------------------
# getting small tensors onto the device without waiting for it
#
# `torch.tensor(values, device="cuda")` and `cpu_tensor.to("cuda")` copy from pageable memory, and torch then waits
# for the copy, so the host waits for every kernel queued before it: each such call lets the GPU run dry while the
# host catches up. The augmentation draws its parameters on the CPU (so that subsets are found without device syncs)
# and uses a few constant matrices; these two helpers move them with no wait at all after the first batch.


@functools.cache
def _cached_constant(values: tuple, dtype: torch.dtype, device: torch.device) -> Tensor:
    return torch.tensor(values, dtype=dtype, device=device)


def _frozen(values):
    """Nested lists as nested tuples: a hashable cache key."""
    return tuple(_frozen(value) for value in values) if isinstance(values, (list, tuple)) else values


def constant(values: Sequence, dtype: torch.dtype | None, device: torch.device) -> Tensor:
    """``torch.tensor(values, dtype, device)`` made once per (values, dtype, device) and then reused: read-only."""
    return _cached_constant(_frozen(values), dtype, torch.device(device))


def pack_bytes(tensors: Sequence[Tensor], pin_memory: bool = False) -> tuple[Tensor, list[int]]:
    """The bytes of ``tensors`` in one uint8 buffer, each at an 8-byte aligned offset (so that any dtype can be
    viewed back in place); returns the buffer and the offsets. See :func:`unpack_bytes`."""
    flat = [t.detach().contiguous().reshape(-1).view(torch.uint8) for t in tensors]
    offsets, total = [], 0
    for raw in flat:
        total += -total % 8
        offsets.append(total)
        total += raw.numel()
    buffer = torch.empty(total, dtype=torch.uint8, pin_memory=pin_memory)
    for raw, offset in zip(flat, offsets):
        buffer[offset : offset + raw.numel()].copy_(raw)
    return buffer, offsets


def unpack_bytes(buffer: Tensor, offsets: Sequence[int], like: Sequence[Tensor]) -> list[Tensor]:
    """Views into ``buffer`` (wherever it now lives) with the dtypes and shapes of ``like``."""
    return [
        buffer[offset : offset + t.numel() * t.element_size()].view(t.dtype).view(t.shape)
        for t, offset in zip(like, offsets)
    ]


def to_device(tensors: Sequence[Tensor], device: torch.device) -> list[Tensor]:
    """The CPU ``tensors`` on ``device`` with one non-blocking copy (from pinned memory on CUDA) instead of one
    waiting copy each. Tensors bound for the CPU, or not all on the CPU, are moved one by one."""
    device = torch.device(device)
    if device.type == "cpu" or any(t.device.type != "cpu" for t in tensors):
        return [t.to(device) for t in tensors]
    buffer, offsets = pack_bytes(tensors, pin_memory=device.type == "cuda")
    return unpack_bytes(buffer.to(device, non_blocking=True), offsets, tensors)


# ----------------------------------------------------------------------------------------------------------------
# input


def to_float_image(images: Tensor, name: str = "images") -> Tensor:
    """Validate an image batch and return it as float32 in ``[0, 1]``.

    Accepts uint8 ``(B, 3, H, W)`` (divided by 255) or a floating tensor of that shape already in ``[0, 1]``.
    Raises ``ValueError`` naming the expected shape, dtypes and range otherwise. A float input is returned as a new
    float32 tensor (never the caller's storage), so callers may modify the result in place.
    """
    _check_shape(images, name)
    if images.dtype == torch.uint8:
        return images.to(torch.float32).div_(255.0)
    if images.is_floating_point():
        _check_unit_range(images, name)
        return images.to(torch.float32, copy=True)
    raise ValueError(f"{name} must be uint8 in [0, 255] or floating point in [0, 1], got dtype {images.dtype}")


def _check_shape(images: Tensor, name: str) -> None:
    if not isinstance(images, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, 3, H, W), got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{name} must have shape (B, 3, H, W) with 3 RGB channels, got {tuple(images.shape)}")
    if images.shape[0] == 0 or images.shape[2] == 0 or images.shape[3] == 0:
        raise ValueError(f"{name} must be non-empty, got shape {tuple(images.shape)}")


def _check_unit_range(images: Tensor, name: str) -> None:
    lo, hi = torch.aminmax(images.detach())
    # written so that NaN fails the check too
    if not (bool(lo >= 0.0) and bool(hi <= 1.0)):
        raise ValueError(
            f"float {name} must have values in [0, 1] (or pass uint8 in [0, 255]); got min {float(lo):.4g}, "
            f"max {float(hi):.4g}"
        )


def as_float_source(images: Tensor, name: str = "images") -> tuple[Tensor, float]:
    """Validate like :func:`to_float_image` but skip the division: returns ``(float32 tensor, value range)``.

    uint8 input comes back as float in ``[0, 255]`` with range 255 (the ``1 / 255`` is folded into a later linear
    op, saving a pass over the source); float input as float32 in ``[0, 1]`` with range 1. The result may share
    storage with ``images``: do not modify it in place.
    """
    if isinstance(images, Tensor) and images.dtype == torch.uint8:
        _check_shape(images, name)
        return images.to(torch.float32), 255.0
    if isinstance(images, Tensor) and images.dtype == torch.float32:
        _check_shape(images, name)
        _check_unit_range(images, name)
        return images, 1.0
    return to_float_image(images, name), 1.0


# ----------------------------------------------------------------------------------------------------------------
# geometry


def sample_resized_crop_boxes(
    n: int,
    height: int,
    width: int,
    scale: Sequence[float],
    ratio: Sequence[float],
    generator: torch.Generator | None = None,
    device: torch.device | None = None,
    attempts: int = 10,
) -> Tensor:
    """Sample ``n`` RandomResizedCrop boxes ``(x0, y0, w, h)`` in source pixels, batched.

    Same algorithm as torchvision's ``RandomResizedCrop.get_params`` (used by DINO): up to ``attempts`` tries of an
    area fraction uniform in ``scale`` and an aspect ratio log-uniform in ``ratio``, integer sides rounded, the first
    try that fits the image wins and gets a uniformly random integer offset; if none fits, a central crop with the
    aspect ratio clamped to ``ratio``. Here all tries of all samples are drawn at once (a fixed number of random
    draws, so a seeded generator gives the same boxes whatever the outcome). Returns float32 ``(n, 4)``.
    """
    device = torch.device("cpu") if device is None else torch.device(device)
    area = float(height * width)
    frac = torch.empty(n, attempts, device=device).uniform_(float(scale[0]), float(scale[1]), generator=generator)
    log_r = torch.empty(n, attempts, device=device).uniform_(
        math.log(ratio[0]), math.log(ratio[1]), generator=generator
    )
    u_off = torch.rand(n, 2, device=device, generator=generator)
    aspect = torch.exp(log_r)
    w = torch.round(torch.sqrt(area * frac * aspect))
    h = torch.round(torch.sqrt(area * frac / aspect))
    fits = (w > 0) & (w <= width) & (h > 0) & (h <= height)
    # index of the first fitting try (argmax returns the first maximum); rows without any fit use the fallback
    first = fits.to(torch.uint8).argmax(dim=1, keepdim=True)
    any_fit = fits.any(dim=1)
    w = w.gather(1, first).squeeze(1)
    h = h.gather(1, first).squeeze(1)
    x0 = torch.floor(u_off[:, 0] * (width - w + 1)).clamp_max(width - w)
    y0 = torch.floor(u_off[:, 1] * (height - h + 1)).clamp_max(height - h)

    in_ratio = width / height
    if in_ratio < min(ratio):
        fw, fh = float(width), float(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        fh, fw = float(height), float(round(height * max(ratio)))
    else:
        fw, fh = float(width), float(height)
    fx0, fy0 = float((width - fw) // 2), float((height - fh) // 2)
    boxes = torch.stack([x0, y0, w, h], dim=1)
    fallback = torch.tensor([fx0, fy0, fw, fh], device=device)
    return torch.where(any_fit.unsqueeze(1), boxes, fallback).to(torch.float32)


def crop_boxes_to_theta(boxes: Tensor, flip: Tensor, height: int, width: int) -> Tensor:
    """Affine matrices ``(N, 2, 3)`` for ``F.affine_grid`` that crop ``boxes`` and optionally mirror them.

    ``boxes`` is ``(N, 4)`` = ``(x0, y0, w, h)`` in source pixels (pixel ``j`` covers ``[j, j + 1)``), ``flip`` is
    ``(N,)`` bool. With ``align_corners=False`` an output's edges map exactly onto the box edges, which is how PIL's
    ``crop`` + ``resize`` aligns pixels; a horizontal flip negates the x scale, so crop, resize and flip are one
    resampling.
    """
    x0, y0, w, h = boxes.unbind(-1)
    sign = 1.0 - 2.0 * flip.to(boxes.dtype)
    zeros = torch.zeros_like(x0)
    row0 = torch.stack([sign * w / width, zeros, (2.0 * x0 + w) / width - 1.0], dim=-1)
    row1 = torch.stack([zeros, h / height, (2.0 * y0 + h) / height - 1.0], dim=-1)
    return torch.stack([row0, row1], dim=-2)


def crop_grid(boxes: Tensor, flip: Tensor, height: int, width: int, size: tuple[int, int]) -> Tensor:
    """The ``grid_sample`` grid ``(N, h, w, 2)`` of :func:`crop_boxes_to_theta`, built directly.

    Equal to ``F.affine_grid(crop_boxes_to_theta(...), (N, 1, h, w), align_corners=False)`` but, since a crop is
    axis-aligned, x depends only on the column and y only on the row: two small outer sums and one write, several
    times faster than ``affine_grid``'s batched matmul on a CPU.
    """
    out_h, out_w = size
    x0, y0, w, h = boxes.unbind(-1)
    sign = 1.0 - 2.0 * flip.to(boxes.dtype)
    u = (2.0 * torch.arange(out_w, dtype=boxes.dtype, device=boxes.device) + 1.0) / out_w - 1.0
    v = (2.0 * torch.arange(out_h, dtype=boxes.dtype, device=boxes.device) + 1.0) / out_h - 1.0
    gx = (sign * w / width).unsqueeze(1) * u + ((2.0 * x0 + w) / width - 1.0).unsqueeze(1)  # (N, w)
    gy = (h / height).unsqueeze(1) * v + ((2.0 * y0 + h) / height - 1.0).unsqueeze(1)  # (N, h)
    n = boxes.shape[0]
    return torch.stack([gx.unsqueeze(1).expand(n, out_h, out_w), gy.unsqueeze(2).expand(n, out_h, out_w)], dim=-1)


def resized_crop_stacked(
    images: Tensor,
    boxes: Tensor,
    flip: Tensor,
    size: tuple[int, int],
    mode: str = "bicubic",
    padding_mode: str = "border",
) -> Tensor:
    """:func:`resized_crop` without the final re-layout: returns ``(B, 3, V, h, w)``, not clamped.

    The ``V`` grids of an image are stacked along the output height, so one ``grid_sample`` serves all views
    without copying the source per view; callers that write their next result in ``(B, V, 3, h, w)`` order
    anyway (the fused colour step) skip a full copy this way.
    """
    if mode not in INTERPOLATION_MODES:
        raise ValueError(f"mode must be one of {INTERPOLATION_MODES}, got {mode!r}")
    b, _, height, width = images.shape
    v = boxes.shape[1]
    out_h, out_w = size
    grid = crop_grid(boxes.reshape(b * v, 4).to(images.dtype), flip.reshape(b * v), height, width, (out_h, out_w))
    out = F.grid_sample(
        images, grid.reshape(b, v * out_h, out_w, 2), mode=mode, padding_mode=padding_mode, align_corners=False
    )
    return out.view(b, 3, v, out_h, out_w)


def resized_crop(
    images: Tensor,
    boxes: Tensor,
    flip: Tensor,
    size: tuple[int, int],
    mode: str = "bicubic",
    padding_mode: str = "border",
    clamp: bool = True,
) -> Tensor:
    """Crop ``V`` boxes per image, resize each to ``size`` and mirror the flagged ones: one ``grid_sample`` call.

    ``images`` is float ``(B, 3, H, W)``; ``boxes`` ``(B, V, 4)``; ``flip`` ``(B, V)``. The ``V`` sampling grids of
    an image are stacked along the output height, so the source is never copied per view. Returns
    ``(B * V, 3, h, w)`` (view-major within each image), clamped to ``[0, 1]`` unless ``clamp=False`` (bicubic
    overshoots, PIL clips; skip it only if a later op clamps anyway).

    Unlike PIL's resize there is no anti-aliasing filter when a crop is shrunk; with DINO's settings the shrink is
    at most ~1.7x (a 0.4-scale local crop of a 256 source to 96 px), where the difference is small.
    """
    out = resized_crop_stacked(images, boxes, flip, size, mode=mode, padding_mode=padding_mode)
    out = out.transpose(1, 2).reshape(-1, 3, size[0], size[1])
    return out.clamp_(0.0, 1.0) if clamp and mode == "bicubic" else out


# ----------------------------------------------------------------------------------------------------------------
# colour, one op at a time (torchvision semantics: clamp to [0, 1] after each)


def _per_sample(factor: Tensor, images: Tensor) -> Tensor:
    return factor.to(images.dtype).view(-1, 1, 1, 1)


def rgb_to_grayscale(images: Tensor) -> Tensor:
    """Luma ``0.299 R + 0.587 G + 0.114 B`` (PIL ``convert("L")``), replicated to 3 channels: ``(N, 3, H, W)``."""
    w = constant(GRAYSCALE_WEIGHTS, images.dtype, images.device).view(1, 3, 1, 1)
    return (images * w).sum(dim=1, keepdim=True).expand_as(images).contiguous()


def adjust_brightness(images: Tensor, factor: Tensor) -> Tensor:
    """torchvision ``adjust_brightness``: ``clamp(x * f)``; ``f = 1`` is identity, ``0`` black."""
    return (images * _per_sample(factor, images)).clamp_(0.0, 1.0)


def adjust_contrast(images: Tensor, factor: Tensor) -> Tensor:
    """torchvision ``adjust_contrast``: blend with the image's mean grey level, ``clamp(f x + (1 - f) mean(gray))``."""
    mean = rgb_to_grayscale(images)[:, :1].mean(dim=(1, 2, 3), keepdim=True)
    f = _per_sample(factor, images)
    return (f * images + (1.0 - f) * mean).clamp_(0.0, 1.0)


def adjust_saturation(images: Tensor, factor: Tensor) -> Tensor:
    """torchvision ``adjust_saturation``: blend with the grey image, ``clamp(f x + (1 - f) gray(x))``."""
    f = _per_sample(factor, images)
    return (f * images + (1.0 - f) * rgb_to_grayscale(images)).clamp_(0.0, 1.0)


def rgb_to_hsv(images: Tensor) -> Tensor:
    """RGB in ``[0, 1]`` to HSV with all three in ``[0, 1]`` (torchvision's tensor ``_rgb2hsv``)."""
    r, g, b = images.unbind(dim=1)
    maxc = images.amax(dim=1)
    minc = images.amin(dim=1)
    eqc = maxc == minc
    cr = maxc - minc
    ones = torch.ones_like(maxc)
    s = cr / torch.where(eqc, ones, maxc)
    cr_div = torch.where(eqc, ones, cr)
    rc = (maxc - r) / cr_div
    gc = (maxc - g) / cr_div
    bc = (maxc - b) / cr_div
    is_r = maxc == r
    is_g = (maxc == g) & ~is_r
    h = torch.where(is_r, bc - gc, torch.where(is_g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.remainder(h / 6.0, 1.0)
    return torch.stack([h, s, maxc], dim=1)


# For hue sector i (0..5) the R, G, B outputs are picked from the candidates (v, p, q, t) by these indices.
_HSV_SECTOR_PICK = ((0, 2, 1, 1, 3, 0), (3, 0, 0, 2, 1, 1), (1, 1, 3, 0, 0, 2))


def hsv_to_rgb(hsv: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_hsv` (torchvision's ``_hsv2rgb``), done with one ``gather`` over the hue sectors."""
    h, s, v = hsv.unbind(dim=1)
    h6 = h * 6.0
    i = torch.floor(h6)
    f = h6 - i
    sector = i.to(torch.long).remainder_(6)
    p = (v * (1.0 - s)).clamp_(0.0, 1.0)
    q = (v * (1.0 - s * f)).clamp_(0.0, 1.0)
    t = (v * (1.0 - s * (1.0 - f))).clamp_(0.0, 1.0)
    cand = torch.stack([v, p, q, t], dim=1)  # (N, 4, H, W)
    pick = constant(_HSV_SECTOR_PICK, None, hsv.device)  # (3, 6)
    idx = pick[:, sector].transpose(0, 1)  # (N, 3, H, W)
    return cand.gather(1, idx)


def adjust_hue(images: Tensor, shift: Tensor) -> Tensor:
    """torchvision ``adjust_hue``: rotate the HSV hue by ``shift`` (fraction of the circle, in ``[-0.5, 0.5]``)."""
    hsv = rgb_to_hsv(images)
    hue = torch.remainder(hsv[:, 0] + shift.to(images.dtype).view(-1, 1, 1), 1.0)
    hsv = torch.stack([hue, hsv[:, 1], hsv[:, 2]], dim=1)
    return hsv_to_rgb(hsv)


# ----------------------------------------------------------------------------------------------------------------
# colour as per-sample affine matrices (the fused path: all of colour jitter + grayscale in one bmm)
#
# Each op is ``x -> A x + c`` on the RGB vector of every pixel, with ``A`` (N, 3, 3) and ``c`` (N, 3). Composition
# is exact as long as nothing is clipped in between; the fused path clips once at the end.


def _eye(n: int, like: Tensor) -> Tensor:
    return torch.eye(3, dtype=like.dtype, device=like.device).expand(n, 3, 3)


def _gray_rows(like: Tensor) -> Tensor:
    """``1 w^T``: every output channel is the luma."""
    w = constant(GRAYSCALE_WEIGHTS, like.dtype, like.device)
    return w.view(1, 3).expand(3, 3)


def brightness_matrix(factor: Tensor) -> tuple[Tensor, Tensor]:
    """``f I``, no offset (see :func:`adjust_brightness`)."""
    a = factor.view(-1, 1, 1) * _eye(factor.shape[0], factor)
    return a, torch.zeros(factor.shape[0], 3, dtype=factor.dtype, device=factor.device)


def contrast_matrix(factor: Tensor, mean_gray: Tensor) -> tuple[Tensor, Tensor]:
    """``f I`` plus offset ``(1 - f) mean_gray`` on every channel (see :func:`adjust_contrast`).

    ``mean_gray`` ``(N,)`` is the image's mean luma at the point where contrast is applied.
    """
    a = factor.view(-1, 1, 1) * _eye(factor.shape[0], factor)
    c = ((1.0 - factor) * mean_gray).view(-1, 1).expand(-1, 3)
    return a, c


def saturation_matrix(factor: Tensor) -> tuple[Tensor, Tensor]:
    """``f I + (1 - f) 1 w^T`` (see :func:`adjust_saturation`)."""
    f = factor.view(-1, 1, 1)
    a = f * _eye(factor.shape[0], factor) + (1.0 - f) * _gray_rows(factor)
    return a, torch.zeros(factor.shape[0], 3, dtype=factor.dtype, device=factor.device)


# RGB -> YIQ (NTSC); Y is the luma of GRAYSCALE_WEIGHTS, I and Q are the two chroma axes.
_RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.595716, -0.274453, -0.321263), (0.211456, -0.522591, 0.311135))
# its exact inverse, computed once on the CPU in float64 (no linalg call, hence no device sync, at run time)
_YIQ_TO_RGB = tuple(tuple(row) for row in torch.linalg.inv(torch.tensor(_RGB_TO_YIQ, dtype=torch.float64)).tolist())


def hue_rotation_matrix(shift: Tensor) -> tuple[Tensor, Tensor]:
    """Hue shift as a rotation of the (I, Q) chroma plane by ``2 pi shift`` in YIQ space.

    Luma is kept exactly and grey pixels (I = Q = 0) are unchanged, like HSV's hue shift; the hue angle differs
    from HSV's by a smooth, monotone reparametrisation, and no value is clipped in between. This is the classic
    linear hue rotation (used e.g. by GPU image libraries) and is what lets colour jitter be one matrix.
    """
    t = constant(_RGB_TO_YIQ, shift.dtype, shift.device)
    t_inv = constant(_YIQ_TO_RGB, shift.dtype, shift.device)
    ang = 2.0 * math.pi * shift
    cos, sin = torch.cos(ang), torch.sin(ang)
    ones, zeros = torch.ones_like(ang), torch.zeros_like(ang)
    rot = torch.stack(
        [
            torch.stack([ones, zeros, zeros], -1),
            torch.stack([zeros, cos, -sin], -1),
            torch.stack([zeros, sin, cos], -1),
        ],
        dim=-2,
    )
    a = t_inv @ rot @ t
    return a, torch.zeros(shift.shape[0], 3, dtype=shift.dtype, device=shift.device)


def grayscale_matrix(n: int, like: Tensor) -> tuple[Tensor, Tensor]:
    """``1 w^T`` for ``n`` samples (see :func:`rgb_to_grayscale`)."""
    return _gray_rows(like).expand(n, 3, 3), torch.zeros(n, 3, dtype=like.dtype, device=like.device)


def color_jitter_matrices(
    mean_rgb: Tensor,
    brightness: Tensor,
    contrast: Tensor,
    saturation: Tensor,
    hue: Tensor,
    order: Tensor | None = None,
    grayscale: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Compose colour jitter (and optional grayscale) into one colour matrix per sample.

    ``brightness``, ``contrast``, ``saturation`` are factors and ``hue`` a shift, each ``(N,)`` (pass 1, 1, 1, 0
    for "no jitter"); ``order`` ``(N, 4)`` gives each sample's op order as indices 0 brightness, 1 contrast,
    2 saturation, 3 hue (torchvision's ColorJitter draws a random order per image), default that fixed order;
    ``grayscale`` ``(N,)`` bool appends a grayscale conversion. ``mean_rgb`` ``(N, 3)`` is the image's mean colour
    before jitter: contrast blends with the *current* mean luma, which for affine ops is known exactly from it.
    Returns ``(A (N, 3, 3), c (N, 3))`` for :func:`apply_color_matrix`. Equal to applying the ops one by one with
    :func:`adjust_brightness` etc. when no intermediate value leaves ``[0, 1]``, except that hue is the YIQ
    rotation of :func:`hue_rotation_matrix`.
    """
    n = mean_rgb.shape[0]
    dtype, device = mean_rgb.dtype, mean_rgb.device
    if order is None:
        order = torch.arange(4, device=device).expand(n, 4)
    gray_w = constant(GRAYSCALE_WEIGHTS, dtype, device)
    fixed = (
        brightness_matrix(brightness.to(dtype)),
        saturation_matrix(saturation.to(dtype)),
        hue_rotation_matrix(hue.to(dtype)),
    )
    contrast = contrast.to(dtype)
    rows = torch.arange(n, device=device)
    a = torch.eye(3, dtype=dtype, device=device).expand(n, 3, 3)
    off = torch.zeros(n, 3, dtype=dtype, device=device)
    for pos in range(4):
        cur_mean = torch.einsum("nij,nj->ni", a, mean_rgb) + off
        con = contrast_matrix(contrast, cur_mean @ gray_w)
        # candidates in op-index order: 0 brightness, 1 contrast, 2 saturation, 3 hue
        cand_a = torch.stack([fixed[0][0], con[0], fixed[1][0], fixed[2][0]], dim=1)  # (N, 4, 3, 3)
        cand_c = torch.stack([fixed[0][1], con[1], fixed[1][1], fixed[2][1]], dim=1)  # (N, 4, 3)
        op = order[:, pos]
        step_a, step_c = cand_a[rows, op], cand_c[rows, op]
        a = step_a @ a
        off = torch.einsum("nij,nj->ni", step_a, off) + step_c
    if grayscale is not None:
        g_a, g_c = grayscale_matrix(n, mean_rgb)
        gray = grayscale.view(n, 1, 1)
        a = torch.where(gray, g_a @ a, a)
        off = torch.where(gray.view(n, 1), torch.einsum("nij,nj->ni", g_a, off) + g_c, off)
    return a, off


def apply_color_matrix(images: Tensor, matrix: Tensor, offset: Tensor, clamp: bool = True) -> Tensor:
    """``A x + c`` per pixel with per-sample ``A`` ``(N, 3, 3)`` and ``c`` ``(N, 3)``: one batched matmul."""
    n, _, height, width = images.shape
    out = torch.baddbmm(
        offset.to(images.dtype).unsqueeze(-1), matrix.to(images.dtype), images.reshape(n, 3, height * width)
    )
    out = out.view(n, 3, height, width)
    return out.clamp_(0.0, 1.0) if clamp else out


# ----------------------------------------------------------------------------------------------------------------
# blur, solarize, normalise


def gaussian_kernel1d(sigma: Tensor, radius: int) -> Tensor:
    """Normalised 1-D Gaussian kernels ``(N, 2 radius + 1)``, one per sample's ``sigma`` ``(N,)``.

    Taps below ``1e-6`` of the centre are set to exactly 0: they change no 8-bit value, and a weight like 1e-37
    (a small sigma's far tail) turns products into denormal floats, which made the blur 4x slower on a CPU.
    """
    x = torch.arange(-radius, radius + 1, dtype=sigma.dtype, device=sigma.device)
    k = torch.exp(-(x * x) / (2.0 * sigma.view(-1, 1) ** 2))
    k = torch.where(k < 1e-6, torch.zeros_like(k), k)
    return k / k.sum(dim=1, keepdim=True)


def gaussian_blur(images: Tensor, sigma: Tensor, radius: int) -> Tensor:
    """Gaussian blur with a per-sample standard deviation ``sigma`` ``(N,)`` (in output pixels).

    Separable: one horizontal and one vertical depthwise (grouped) convolution over all samples and channels at
    once, each group with its own ``2 radius + 1``-tap kernel (use ``radius = ceil(3 * max sigma)``). Reflect
    padding as torchvision's ``GaussianBlur`` (replicate when the image is not larger than the radius). PIL's
    ``GaussianBlur(radius)`` used by DINO treats its radius as this sigma (it approximates the Gaussian with box
    filters). On a busy CPU the grouped convolution (cache-blocked by oneDNN) measured 1.5-3x faster than
    ``2 radius + 1`` shifted multiply-adds, which are memory bound.
    """
    n, c, height, width = images.shape
    if n == 0:
        return images
    size = 2 * radius + 1
    k = gaussian_kernel1d(sigma.to(images.dtype), radius).repeat_interleave(c, dim=0)  # (N*C, K)
    x = images.reshape(1, n * c, height, width)
    # pad both axes at once: row padding commutes with the horizontal pass, so one pad serves both passes
    x = F.pad(x, (radius,) * 4, mode="reflect" if radius < min(height, width) else "replicate")
    x = F.conv2d(x, k.view(n * c, 1, 1, size), groups=n * c)
    x = F.conv2d(x, k.view(n * c, 1, size, 1), groups=n * c)
    return x.view(n, c, height, width)


def blur_radius_buckets(sigma: Tensor, mask: Tensor, max_radius: int) -> list[tuple[Tensor, int]]:
    """Split the samples to blur into groups of equal kernel radius ``min(ceil(3 sigma), max_radius)``.

    ``sigma`` and ``mask`` ``(N,)`` should live on the CPU (no device sync). Returns ``[(indices, radius), ...]``.
    Blurring each group with its own radius instead of everyone with the largest one does ~30% fewer
    multiply-adds for sigma uniform in DINO's (0.1, 2.0); the taps dropped weigh < 0.3% of the kernel.
    """
    radius = torch.ceil(3.0 * sigma).clamp_(1, max_radius).to(torch.long)
    radius = torch.where(mask, radius, torch.zeros_like(radius))
    out = []
    for r in torch.unique(radius[mask]).tolist():
        out.append((torch.nonzero(radius == r).squeeze(1), int(r)))
    return out


def solarize(images: Tensor, threshold: float = 128.0 / 255.0, mask: Tensor | None = None) -> Tensor:
    """PIL ``ImageOps.solarize``: invert every pixel ``>= threshold`` (``x -> 1 - x``).

    ``mask`` ``(N,)`` bool restricts it to some samples. DINO uses PIL's default threshold 128 of 255.
    """
    hit = images >= threshold
    if mask is not None:
        hit &= mask.view(-1, 1, 1, 1)
    return torch.where(hit, 1.0 - images, images)


def solarize_normalized(images: Tensor, threshold: float, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """:func:`solarize` applied to images already normalised with ``mean``/``std`` (same result, normalised).

    ``x >= t`` becomes ``x_n >= (t - mean) / std`` and ``1 - x`` becomes ``(1 - 2 mean) / std - x_n``, per channel;
    this lets normalisation be folded into the colour matrix, before blur and solarize.
    """
    m = constant(mean, images.dtype, images.device).view(1, 3, 1, 1)
    s = constant(std, images.dtype, images.device).view(1, 3, 1, 1)
    return torch.where(images >= (threshold - m) / s, (1.0 - 2.0 * m) / s - images, images)


def normalize(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """``(x - mean) / std`` per channel (computed as one ``x * (1 / std) - mean / std`` pass)."""
    inv = constant([1.0 / s for s in std], images.dtype, images.device).view(1, 3, 1, 1)
    shift = constant([-m / s for m, s in zip(mean, std)], images.dtype, images.device)
    return torch.addcmul(shift.view(1, 3, 1, 1), images, inv)
