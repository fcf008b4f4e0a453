"""Landmark-aware transforms for fine-tuning (300W, WFLW, AFLW-19): image and points move together.

Coordinates: a point ``(x, y)`` is in pixels of its image, ``x`` the column, with pixel ``j``'s centre at ``x = j``
(the convention of ``numpy`` indexing and most landmark files once made 0-based). Internally the maths uses "edge"
coordinates ``x + 0.5``, in which an image of width ``W`` spans ``[0, W]`` exactly as ``grid_sample`` with
``align_corners=False`` sees it, so an image and its points are mapped by the very same matrix.

Horizontal flip is only allowed with a point permutation (a flipped face's landmarks are wrong unless the indices
are remapped): after mirroring, the point that sat on the left eye corner is where the right one is, so
index ``i`` must take the mirrored point of its symmetric partner ``flip_permutation[i]``.
"""

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..validation import check_finite_triple, check_prob, check_range, check_source_size
from . import functional as AF
from .multicrop import OUTPUT_DTYPES, PADDING_MODES, _as_generator
from .serializable import ConfiguredTransform, SerializableConfig

__all__ = [
    "LandmarkAugmentationConfig",
    "LandmarkParams",
    "LandmarkAugmentation",
    "similarity_matrices",
    "affine_inverse",
    "transform_points",
    "warp_images",
    "resize_with_landmarks",
]


def _as_size(name: str, value: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    try:
        h, w = (int(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an int or an (height, width) pair, got {value!r}") from None
    if h <= 0 or w <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return h, w


def _check_points(points: Tensor, batch_size: int) -> None:
    if not isinstance(points, Tensor) or points.ndim != 3 or points.shape[-1] != 2 or points.shape[0] != batch_size:
        shape = tuple(points.shape) if isinstance(points, Tensor) else type(points).__name__
        raise ValueError(f"points must be a tensor of shape (B={batch_size}, N, 2) holding (x, y) pixels, got {shape}")
    if not points.is_floating_point():
        raise ValueError(f"points must be floating point, got dtype {points.dtype}")


def similarity_matrices(
    angle: Tensor,
    scale: Tensor,
    translate: Tensor,
    flip: Tensor,
    source_size: tuple[int, int],
    output_size: tuple[int, int],
) -> Tensor:
    """``(B, 3, 3)`` matrices from source edge coordinates to output edge coordinates.

    The source is first resized to ``output_size`` (``(height, width)``), mirrored where ``flip``, then rotated by
    ``angle`` (radians, positive turns clockwise on screen since y points down) and scaled by ``scale`` about the
    output centre, and finally shifted by ``translate`` ``(B, 2)`` given as fractions of the output width/height.
    """
    (src_h, src_w), (out_h, out_w) = source_size, output_size
    b = angle.shape[0]
    dtype, device = angle.dtype, angle.device

    def affine(a00, a01, a02, a10, a11, a12) -> Tensor:
        m = torch.zeros(b, 3, 3, dtype=dtype, device=device)
        m[:, 0, 0], m[:, 0, 1], m[:, 0, 2] = a00, a01, a02
        m[:, 1, 0], m[:, 1, 1], m[:, 1, 2] = a10, a11, a12
        m[:, 2, 2] = 1.0
        return m

    zero, one = torch.zeros_like(angle), torch.ones_like(angle)
    resize = affine(one * out_w / src_w, zero, zero, zero, one * out_h / src_h, zero)
    sign = 1.0 - 2.0 * flip.to(dtype)
    mirror = affine(sign, zero, flip.to(dtype) * out_w, zero, one, zero)
    cx, cy = out_w / 2.0, out_h / 2.0
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    # rotate+scale about the centre, then translate: p' = sR (p - c) + c + t
    tx = cx + translate[:, 0].to(dtype) * out_w - (cos * cx - sin * cy)
    ty = cy + translate[:, 1].to(dtype) * out_h - (sin * cx + cos * cy)
    rot = affine(cos, -sin, tx, sin, cos, ty)
    return rot @ mirror @ resize


def affine_inverse(matrix: Tensor) -> Tensor:
    """Inverse of affine ``(B, 3, 3)`` matrices (last row ``0 0 1``) in closed form: no linalg call, no sync."""
    a, b, tx = matrix[:, 0, 0], matrix[:, 0, 1], matrix[:, 0, 2]
    c, d, ty = matrix[:, 1, 0], matrix[:, 1, 1], matrix[:, 1, 2]
    det = a * d - b * c
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    out = torch.zeros_like(matrix)
    out[:, 0, 0], out[:, 0, 1], out[:, 0, 2] = ia, ib, -(ia * tx + ib * ty)
    out[:, 1, 0], out[:, 1, 1], out[:, 1, 2] = ic, id_, -(ic * tx + id_ * ty)
    out[:, 2, 2] = 1.0
    return out


def transform_points(points: Tensor, matrix: Tensor) -> Tensor:
    """Map pixel-centre points ``(B, N, 2)`` with edge-coordinate matrices ``(B, 3, 3)``."""
    edge = points + 0.5
    out = edge @ matrix[:, :2, :2].transpose(1, 2) + matrix[:, None, :2, 2]
    return out - 0.5


def warp_images(
    images: Tensor, matrix: Tensor, output_size: tuple[int, int], mode: str = "bilinear", padding_mode: str = "zeros"
) -> Tensor:
    """Resample float ``images`` ``(B, 3, H, W)`` so that source edge point ``p`` lands at ``matrix @ p``."""
    b, _, src_h, src_w = images.shape
    out_h, out_w = output_size
    dtype, device = matrix.dtype, matrix.device
    # normalised <-> edge coordinates (align_corners=False: -1 and +1 are the outer pixel edges)
    to_src_norm = torch.tensor(
        [[2.0 / src_w, 0.0, -1.0], [0.0, 2.0 / src_h, -1.0], [0.0, 0.0, 1.0]], dtype=dtype, device=device
    )
    from_out_norm = torch.tensor(
        [[out_w / 2.0, 0.0, out_w / 2.0], [0.0, out_h / 2.0, out_h / 2.0], [0.0, 0.0, 1.0]], dtype=dtype, device=device
    )
    theta = (to_src_norm @ affine_inverse(matrix) @ from_out_norm)[:, :2]
    grid = F.affine_grid(theta.to(images.dtype), [b, 1, out_h, out_w], align_corners=False)
    out = F.grid_sample(images, grid, mode=mode, padding_mode=padding_mode, align_corners=False)
    return out.clamp_(0.0, 1.0) if mode == "bicubic" else out


def resize_with_landmarks(
    images: Tensor,
    points: Tensor,
    size: int | tuple[int, int],
    mode: str = "bilinear",
    antialias: bool = True,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> tuple[Tensor, Tensor]:
    """Deterministic evaluation transform: resize images (uint8 or float ``[0, 1]``) to ``size`` and rescale points.

    Uses ``F.interpolate`` with anti-aliasing (``align_corners=False``, so pixel edges map onto pixel edges and
    ``x' = (x + 0.5) * W' / W - 0.5``); ``mode="nearest"`` runs torch's "nearest-exact", which takes the source
    pixel under each output pixel's centre as that formula does. With ``mean`` and ``std`` the images are also
    normalised. Returns float32 images ``(B, 3, h, w)`` and points ``(B, N, 2)``.
    """
    src = AF.to_float_image(images)
    _check_points(points, src.shape[0])
    out_h, out_w = _as_size("size", size)
    if mode not in AF.INTERPOLATION_MODES:
        raise ValueError(f"mode must be one of {AF.INTERPOLATION_MODES}, got {mode!r}")
    if mode == "nearest":
        # torch's "nearest" picks source pixel floor(j * W / W'), shifted by up to half a source pixel from the
        # centre alignment the point formula assumes (a dot and its point could land on different pixels);
        # "nearest-exact" picks floor((j + 0.5) * W / W'), the same mapping as the points
        out = F.interpolate(src, size=(out_h, out_w), mode="nearest-exact")
    else:
        out = F.interpolate(src, size=(out_h, out_w), mode=mode, antialias=antialias, align_corners=False)
    out = out.clamp_(0.0, 1.0)
    scale = torch.tensor([out_w / src.shape[3], out_h / src.shape[2]], dtype=points.dtype, device=points.device)
    new_points = (points + 0.5) * scale - 0.5
    if (mean is None) != (std is None):
        raise ValueError("pass both mean and std to normalise, or neither")
    if mean is not None:
        out = AF.normalize(out, mean, std)
    return out, new_points


@dataclass
class LandmarkAugmentationConfig(SerializableConfig):
    """Hyper-parameters of :class:`LandmarkAugmentation` (common face-alignment training ranges by default)."""

    output_size: tuple[int, int] = (224, 224)
    """Output ``(height, width)`` (an int means square): the fine-tuning resolution of the backbone."""
    rotation_degrees: float = 20.0
    """Rotation drawn uniformly from [-d, d] degrees: in-plane head roll; 300W/WFLW recipes use 15-30."""
    scale: tuple[float, float] = (0.9, 1.1)
    """Zoom about the centre, uniform: models tolerate detector boxes that are a bit loose or tight."""
    translate: float = 0.05
    """Shift drawn from [-t, t] of the output size per axis: tolerance to box centre errors."""
    flip_p: float = 0.0
    """Horizontal flip probability; > 0 requires ``flip_permutation`` (indices must swap left and right)."""
    flip_permutation: tuple[int, ...] | None = None
    """For each landmark index, the index of its mirror partner (an involution, e.g. 300W's 68-point map)."""
    color_jitter_p: float = 0.0
    """Probability of colour jitter (fixed order brightness, contrast, saturation, YIQ hue; one colour matrix)."""
    brightness: float = 0.4
    """Brightness factor range [max(0, 1 - b), 1 + b]."""
    contrast: float = 0.4
    """Contrast factor range [max(0, 1 - c), 1 + c]."""
    saturation: float = 0.2
    """Saturation factor range [max(0, 1 - s), 1 + s]."""
    hue: float = 0.0
    """Hue shift range [-h, h], h in [0, 0.5]."""
    interpolation: str = "bilinear"
    """Resampling: "bilinear", "bicubic" or "nearest"."""
    padding_mode: str = "zeros"
    """What appears outside the rotated source: "zeros" (black, like torchvision's RandomAffine), "border",
    "reflection" (reflection invents mirrored faces at the edges: avoid with large rotations)."""
    mean: tuple[float, float, float] | None = AF.IMAGENET_DEFAULT_MEAN
    """Normalisation mean (None with std None returns [0, 1] images)."""
    std: tuple[float, float, float] | None = AF.IMAGENET_DEFAULT_STD
    """Normalisation standard deviation."""
    output_dtype: str = "float32"
    """dtype of the returned images: "float32", "bfloat16" or "float16"."""

    def __post_init__(self) -> None:
        self.output_size = _as_size("output_size", self.output_size)
        if not isinstance(self.rotation_degrees, (int, float)) or not 0.0 <= float(self.rotation_degrees) <= 180.0:
            raise ValueError(f"rotation_degrees must be in [0, 180], got {self.rotation_degrees!r}")
        self.scale = check_range("scale", self.scale, 0.0, math.inf, lo_open=True)
        if math.isinf(self.scale[1]):
            raise ValueError(f"scale must be finite, got {self.scale!r}")
        if not isinstance(self.translate, (int, float)) or not 0.0 <= float(self.translate) <= 1.0:
            raise ValueError(f"translate must be a fraction in [0, 1], got {self.translate!r}")
        check_prob("flip_p", self.flip_p)
        check_prob("color_jitter_p", self.color_jitter_p)
        if self.flip_permutation is not None:
            perm = tuple(int(i) for i in self.flip_permutation)
            if sorted(perm) != list(range(len(perm))):
                raise ValueError(f"flip_permutation must be a permutation of 0..N-1, got {perm!r}")
            if any(perm[perm[i]] != i for i in range(len(perm))):
                raise ValueError("flip_permutation must be its own inverse (each point swaps with its mirror partner)")
            self.flip_permutation = perm
        if self.flip_p > 0 and self.flip_permutation is None:
            raise ValueError(
                "flip_p > 0 needs flip_permutation (the mirror partner of every landmark index); without it a flip "
                "would swap left and right landmarks' meaning. Pass flip_permutation or set flip_p=0."
            )
        for name in ("brightness", "contrast", "saturation"):
            value = getattr(self, name)
            # written so that NaN fails too: a NaN or infinite range turns every jittered image into NaN
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= float(value) < math.inf:
                raise ValueError(f"{name} must be a finite non-negative float, got {value!r}")
        if not isinstance(self.hue, (int, float)) or not 0.0 <= float(self.hue) <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue!r}")
        if self.interpolation not in AF.INTERPOLATION_MODES:
            raise ValueError(f"interpolation must be one of {AF.INTERPOLATION_MODES}, got {self.interpolation!r}")
        if self.padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {self.padding_mode!r}")
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std must both be given or both be None")
        if self.mean is not None:
            self.mean = check_finite_triple("mean", self.mean)
            self.std = check_finite_triple("std", self.std)
            if any(s <= 0 for s in self.std):
                raise ValueError(f"std must be > 0 per channel, got {self.std!r}")
        if self.output_dtype not in OUTPUT_DTYPES:
            raise ValueError(f"output_dtype must be one of {tuple(OUTPUT_DTYPES)}, got {self.output_dtype!r}")


@dataclass
class LandmarkParams:
    """Random draws of one call: ``matrix`` ``(B, 3, 3)`` source-to-output edge coordinates, ``flip`` ``(B,)``,
    ``jitter`` ``(B,)`` and the jitter factors ``brightness``, ``contrast``, ``saturation``, ``hue`` ``(B,)``."""

    matrix: Tensor
    flip: Tensor
    jitter: Tensor
    brightness: Tensor
    contrast: Tensor
    saturation: Tensor
    hue: Tensor
    source_size: tuple[int, int]

    def to(self, device: str | torch.device) -> "LandmarkParams":
        kw = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return LandmarkParams(**{k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in kw.items()})


class LandmarkAugmentation(ConfiguredTransform, nn.Module):
    """Random similarity transform (+ optional flip and colour jitter) of images and their landmarks, batched.

    Args:
        config: a :class:`LandmarkAugmentationConfig`; keyword arguments override or build one, e.g.
            ``LandmarkAugmentation(output_size=256, rotation_degrees=30, flip_p=0.5, flip_permutation=perm)``.

    ``forward(images, points, generator=None)`` takes uint8/float ``(B, 3, H, W)`` images and ``(B, N, 2)`` pixel
    points (see the module docstring for the convention) and returns ``(images (B, 3, h, w), points (B, N, 2))``.
    Points may leave the output frame under strong rotation/translation; they are returned as they are.
    ``generator`` may be a ``torch.Generator``, None or an int seed (``torch.Generator().manual_seed(seed)``: the
    same draws at every call with that seed).
    """

    config_class = LandmarkAugmentationConfig

    def __init__(self, config: LandmarkAugmentationConfig | None = None, **kwargs: Any) -> None:
        super().__init__()
        self.config = self._resolve_config(config, kwargs)

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"output_size={c.output_size}, rotation_degrees={c.rotation_degrees}, scale={c.scale}, "
            f"translate={c.translate}, flip_p={c.flip_p}"
        )

    def sample_params(
        self, batch_size: int, height: int, width: int | None = None, generator: None | int | torch.Generator = None
    ) -> LandmarkParams:
        """Draw the per-sample transforms (on ``generator.device``, the CPU by default; an int is a seed)."""
        width = height if width is None else width
        batch_size, height, width = check_source_size(batch_size, height, width)
        generator = _as_generator(generator)
        c = self.config
        device = generator.device if generator is not None else torch.device("cpu")

        def uniform(lo: float, hi: float, *shape: int) -> Tensor:
            return lo + (hi - lo) * torch.rand(*(shape or (batch_size,)), generator=generator, device=device)

        rad = math.radians(c.rotation_degrees)
        angle = uniform(-rad, rad)
        scale = uniform(*c.scale)
        translate = uniform(-c.translate, c.translate, batch_size, 2)
        flip = torch.rand(batch_size, generator=generator, device=device) < c.flip_p
        jitter = torch.rand(batch_size, generator=generator, device=device) < c.color_jitter_p
        brightness = uniform(max(0.0, 1.0 - c.brightness), 1.0 + c.brightness)
        contrast = uniform(max(0.0, 1.0 - c.contrast), 1.0 + c.contrast)
        saturation = uniform(max(0.0, 1.0 - c.saturation), 1.0 + c.saturation)
        hue = uniform(-c.hue, c.hue)
        matrix = similarity_matrices(angle, scale, translate, flip, (height, width), c.output_size)
        return LandmarkParams(matrix, flip, jitter, brightness, contrast, saturation, hue, (height, width))

    def apply(self, images: Tensor, points: Tensor, params: LandmarkParams) -> tuple[Tensor, Tensor]:
        """Apply drawn ``params`` to images and points."""
        c = self.config
        src = AF.to_float_image(images)
        b, _, height, width = src.shape
        _check_points(points, b)
        if params.source_size != (height, width) or params.matrix.shape[0] != b:
            raise ValueError(
                f"params were drawn for {params.matrix.shape[0]} images of {params.source_size}, got {b} of "
                f"{(height, width)}"
            )
        perm = c.flip_permutation
        # checked on every call, not only when this batch happens to draw a flip: a permutation for another point
        # layout (68 points vs WFLW's 98) would otherwise fail at a random step, or never where flip_p is small
        if perm is not None and len(perm) != points.shape[1]:
            raise ValueError(f"flip_permutation has {len(perm)} entries, points have {points.shape[1]}")
        p = params.to(src.device)
        out = warp_images(src, p.matrix, c.output_size, mode=c.interpolation, padding_mode=c.padding_mode)
        new_points = transform_points(points, p.matrix.to(points.device, points.dtype))
        if bool(params.flip.any()):
            if perm is None:
                raise ValueError("params flip some images but this transform has no flip_permutation")
            swapped = new_points[:, torch.tensor(perm, device=points.device)]
            new_points = torch.where(p.flip.to(points.device).view(b, 1, 1), swapped, new_points)
        if bool(params.jitter.any()):
            one = torch.ones(b, dtype=out.dtype, device=out.device)
            a, off = AF.color_jitter_matrices(
                out.mean(dim=(2, 3)),
                torch.where(p.jitter, p.brightness.to(out.dtype), one),
                torch.where(p.jitter, p.contrast.to(out.dtype), one),
                torch.where(p.jitter, p.saturation.to(out.dtype), one),
                torch.where(p.jitter, p.hue.to(out.dtype), one - 1.0),
            )
            out = AF.apply_color_matrix(out, a, off, clamp=True)
        if c.mean is not None:
            out = AF.normalize(out, c.mean, c.std)
        return out.to(OUTPUT_DTYPES[c.output_dtype]), new_points

    def forward(
        self, images: Tensor, points: Tensor, generator: None | int | torch.Generator = None
    ) -> tuple[Tensor, Tensor]:
        if not isinstance(images, Tensor) or images.ndim != 4:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise ValueError(f"images must have shape (B, 3, H, W), got {shape}")
        params = self.sample_params(images.shape[0], images.shape[2], images.shape[3], generator=generator)
        return self.apply(images, points, params)
