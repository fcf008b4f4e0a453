"""Batched, on-device DINO multi-crop augmentation for ProS pre-training.

DINO (Caron et al., 2021, ``main_dino.py: DataAugmentationDINO``) turns every image into 2 global and several local
crops with per-image PIL/torchvision transforms in the DataLoader workers. That starves a GPU (the CPU workers cannot
keep up with its steps), so here the same views are produced for a whole uint8 batch already on the accelerator with
plain tensor ops: one ``grid_sample`` per view group (crop + resize + flip in one resampling, straight from the uint8
values), colour jitter + grayscale + normalisation as one colour matrix per sample (one batched matmul), Gaussian
blur as grouped convolutions with a kernel per sample (one call per kernel radius), solarize elementwise. Loops run
over views, ops and kernel radii, never over the batch.

Per-view pipeline, in DINO's order:
``RandomResizedCrop -> RandomHorizontalFlip -> RandomApply(ColorJitter, 0.8) -> RandomGrayscale -> RandomApply(
GaussianBlur) -> RandomApply(Solarize) -> Normalize``. Where this differs from DINO's PIL pipeline, on purpose:

- resampling is ``grid_sample`` without an anti-aliasing prefilter, bilinear by default (see
  ``MultiCropConfig.interpolation``); crop boxes follow torchvision's ``RandomResizedCrop`` exactly;
- with ``color_jitter_mode="fused"`` (default) jitter is composed without clipping between its ops and hue is a
  YIQ chroma rotation instead of an HSV shift; ``"sequential"`` follows torchvision op by op;
- blur is an exact Gaussian truncated at 3 sigma (PIL approximates it with box filters);
- normalisation is folded into the colour matrix and solarize runs on normalised values (the same result, one pass
  fewer); values are not quantised to 8 bits between ops as PIL's are.
"""

import dataclasses
import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..validation import check_finite_triple, check_prob, check_range, check_source_size
from . import functional as AF
from .serializable import ConfiguredTransform, SerializableConfig

__all__ = ["MultiCropConfig", "ViewGroupParams", "MultiCropParams", "MultiCropAugmentation", "OUTPUT_DTYPES"]

OUTPUT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
COLOR_JITTER_MODES = ("fused", "sequential")
PADDING_MODES = ("border", "reflection", "zeros")

ProbSpec = float | Sequence[float]


def _as_generator(generator: None | int | torch.Generator) -> torch.Generator | None:
    """``generator`` as the augmentations take it: a ``torch.Generator``, None (torch's global CPU generator), or an
    int seed, read as ``torch.Generator().manual_seed(seed)`` (a CPU generator: the same draws as passing that)."""
    if generator is None or isinstance(generator, torch.Generator):
        return generator
    if isinstance(generator, numbers.Integral) and not isinstance(generator, bool):
        return torch.Generator().manual_seed(int(generator))
    raise TypeError(f"generator must be a torch.Generator, an int seed or None, got {type(generator).__name__}")


def _per_view_probs(name: str, value: ProbSpec, n_views: int) -> tuple[float, ...]:
    """A probability for every view of a group: one float for all, or one per view."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        check_prob(name, value)
        return (float(value),) * n_views
    try:
        probs = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(
            f"{name} must be a probability or a sequence of {n_views} probabilities, got {value!r}"
        ) from None
    if len(probs) != n_views:
        # the defaults are DINO's two global views: say how to get them for another count
        hint = (
            f"; MultiCropConfig.dino_global_probabilities({n_views}) gives DINO's for {n_views} global views"
            if name.startswith("global_")
            else ""
        )
        raise ValueError(
            f"{name} must be one probability or exactly one per view ({n_views} views), got {len(probs)} values{hint}"
        )
    for i, p in enumerate(probs):
        check_prob(f"{name}[{i}]", p)
    return probs


@dataclass
class MultiCropConfig(SerializableConfig):
    """Every hyper-parameter of :class:`MultiCropAugmentation`, DINO's values by default.

    Serialisable with :meth:`to_dict` / :meth:`from_dict` (JSON-friendly), validated on construction.
    """

    n_global_crops: int = 2
    """Global views, seen by teacher and student. DINO uses 2; more costs teacher compute for little gain."""
    global_crop_size: int = 224
    """Side of a global crop in pixels: the backbone's pre-training resolution (ViT-B/16 at 224)."""
    global_crop_scale: tuple[float, float] = (0.4, 1.0)
    """Area fraction of the source for global crops. DINO: (0.4, 1); on face-dominant images 0.4 keeps most of the
    face in every global view, so teacher targets stay about the whole face."""
    n_local_crops: int = 6
    """Local views, student only. DINO uses 6-10; each costs ~ (96/224)^2 of a global view; 0 disables multi-crop."""
    local_crop_size: int = 96
    """Side of a local crop. 96 gives 6x6 patches at patch 16: small enough to be cheap, big enough to hold a part."""
    local_crop_scale: tuple[float, float] = (0.05, 0.4)
    """Area fraction for local crops. DINO: (0.05, 0.4). On faces 0.05 is an eye or a mouth: local-to-global
    matching ties parts to the whole. Keep max <= the global min so local views are really local."""
    crop_ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)
    """Aspect-ratio range (w/h), sampled log-uniformly (torchvision's RandomResizedCrop default)."""
    interpolation: str = "bilinear"
    """Resampling of crop + resize: "bilinear" (default), "bicubic" (DINO's PIL resize) or "nearest". Bilinear
    measured ~1.7x faster for the whole pipeline on a CPU (grid_sample's bicubic gathers 16 taps per pixel) and is
    only slightly softer; DINO then blurs every first global view with sigma up to 2 px, far more than the two
    kernels differ. Neither applies an anti-aliasing prefilter, unlike PIL: DINO's crops shrink at most ~1.7x (a
    0.4-scale local crop of a 256 source to 96 px) and mostly enlarge, so aliasing stays small. Pick "bicubic" to
    match DINO's resize as closely as possible."""
    padding_mode: str = "border"
    """What interpolation taps see past the source edge: "border" (edge pixels, like PIL), "reflection", "zeros"."""
    flip_p: float = 0.5
    """Horizontal flip probability per view (faces are near-symmetric: flip is a free invariance)."""
    color_jitter_p: float = 0.8
    """Probability that colour jitter is applied to a view at all (DINO: 0.8)."""
    brightness: float = 0.4
    """Brightness factor drawn from [max(0, 1 - b), 1 + b]. DINO: 0.4."""
    contrast: float = 0.4
    """Contrast factor drawn from [max(0, 1 - c), 1 + c]. DINO: 0.4."""
    saturation: float = 0.2
    """Saturation factor drawn from [max(0, 1 - s), 1 + s]. DINO: 0.2."""
    hue: float = 0.1
    """Hue shift drawn from [-h, h] (fraction of the colour circle, h in [0, 0.5]). DINO: 0.1; larger hue shifts
    make skin colours unnatural."""
    color_jitter_mode: str = "fused"
    """How jitter is computed. Both draw a random op order per sample (torchvision's ColorJitter draws a fresh order
    per image). "fused": brightness, contrast, saturation, hue (as a YIQ chroma rotation) and grayscale are composed
    into one 3x3 colour matrix per sample and applied with one batched matmul, clipped once at the end (fast, no
    intermediate clipping). "sequential": torchvision's semantics op by op, HSV hue and a clip after each op
    (slower; use it to match DINO's pipeline exactly)."""
    grayscale_p: float = 0.2
    """Probability of converting a view to grey (DINO: 0.2): makes features less colour-dependent."""
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    """Gaussian blur standard deviation range in output pixels, uniform (DINO's PIL radius 0.1-2.0)."""
    global_blur_p: ProbSpec = (1.0, 0.1)
    """Blur probability for each global view (or one value for all). DINO: always on view 1, 0.1 on view 2: the
    asymmetry gives the teacher one sharp and one blurred target."""
    local_blur_p: float = 0.5
    """Blur probability for every local view (DINO: 0.5)."""
    global_solarize_p: ProbSpec = (0.0, 0.2)
    """Solarize probability for each global view (or one value). DINO (BYOL's recipe): 0.2 on view 2 only."""
    local_solarize_p: float = 0.0
    """Solarize probability for local views (DINO: never)."""
    solarize_threshold: float = 128.0 / 255.0
    """Pixels >= this value are inverted (PIL's default 128 of 255)."""
    mean: tuple[float, float, float] = AF.IMAGENET_DEFAULT_MEAN
    """Per-channel normalisation mean (ImageNet's, like DINO; use the backbone's image processor values)."""
    std: tuple[float, float, float] = AF.IMAGENET_DEFAULT_STD
    """Per-channel normalisation standard deviation (ImageNet's by default)."""
    output_dtype: str = "float32"
    """dtype of the returned crops: "float32", or "bfloat16"/"float16" to halve memory for mixed-precision training
    (the maths is always float32)."""

    def __post_init__(self) -> None:
        for name in ("n_global_crops", "n_local_crops", "global_crop_size", "local_crop_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} must be an int, got {value!r}")
        if self.n_global_crops < 1:
            raise ValueError(f"n_global_crops must be >= 1, got {self.n_global_crops}")
        if self.n_local_crops < 0:
            raise ValueError(f"n_local_crops must be >= 0, got {self.n_local_crops}")
        for name in ("global_crop_size", "local_crop_size"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        self.global_crop_scale = check_range("global_crop_scale", self.global_crop_scale, 0.0, 1.0, lo_open=True)
        self.local_crop_scale = check_range("local_crop_scale", self.local_crop_scale, 0.0, 1.0, lo_open=True)
        self.crop_ratio = check_range("crop_ratio", self.crop_ratio, 0.0, math.inf, lo_open=True)
        if math.isinf(self.crop_ratio[1]):  # log(inf) makes the crop boxes non-finite at the first call
            raise ValueError(f"crop_ratio must be finite, got {self.crop_ratio!r}")
        if self.interpolation not in AF.INTERPOLATION_MODES:
            raise ValueError(f"interpolation must be one of {AF.INTERPOLATION_MODES}, got {self.interpolation!r}")
        if self.padding_mode not in PADDING_MODES:
            raise ValueError(f"padding_mode must be one of {PADDING_MODES}, got {self.padding_mode!r}")
        if self.color_jitter_mode not in COLOR_JITTER_MODES:
            raise ValueError(f"color_jitter_mode must be one of {COLOR_JITTER_MODES}, got {self.color_jitter_mode!r}")
        for name in ("flip_p", "color_jitter_p", "grayscale_p", "local_blur_p", "local_solarize_p"):
            check_prob(name, getattr(self, name))
        for name in ("brightness", "contrast", "saturation"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= float(value) < math.inf:
                raise ValueError(
                    f"{name} must be a non-negative float (factor range [max(0, 1 - x), 1 + x]), got {value!r}"
                )
        if not isinstance(self.hue, (int, float)) or not 0.0 <= float(self.hue) <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue!r}")
        self.blur_sigma = check_range("blur_sigma", self.blur_sigma, 0.0, math.inf, lo_open=True)
        if math.isinf(self.blur_sigma[1]):
            raise ValueError(f"blur_sigma must be finite, got {self.blur_sigma!r}")
        self.global_blur_p = _per_view_probs("global_blur_p", self.global_blur_p, self.n_global_crops)
        self.global_solarize_p = _per_view_probs("global_solarize_p", self.global_solarize_p, self.n_global_crops)
        if not isinstance(self.solarize_threshold, (int, float)) or not 0.0 <= float(self.solarize_threshold) <= 1.0:
            raise ValueError(f"solarize_threshold must be in [0, 1], got {self.solarize_threshold!r}")
        for name in ("mean", "std"):
            setattr(self, name, check_finite_triple(name, getattr(self, name)))
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be > 0 per channel, got {self.std!r}")
        if self.output_dtype not in OUTPUT_DTYPES:
            raise ValueError(f"output_dtype must be one of {tuple(OUTPUT_DTYPES)}, got {self.output_dtype!r}")

    @staticmethod
    def dino_global_probabilities(n_global_crops: int) -> dict:
        """DINO's per-view blur and solarize probabilities extended to ``n_global_crops`` global views.

        DINO defines them for two views: blur always on the first and 0.1 on the second, solarize never on the first
        and 0.2 on the second (the teacher gets one sharp and one degraded target). One view gets the first view's;
        each view past the second gets the second's. Returns ``{"global_blur_p": ..., "global_solarize_p": ...}``
        to pass along with ``n_global_crops``, e.g. ``MultiCropConfig(n_global_crops=3,
        **MultiCropConfig.dino_global_probabilities(3))``; for 2 views it gives the defaults.
        """
        if not isinstance(n_global_crops, int) or isinstance(n_global_crops, bool) or n_global_crops < 1:
            raise ValueError(f"n_global_crops must be an int >= 1, got {n_global_crops!r}")
        others = n_global_crops - 1
        return {"global_blur_p": (1.0,) + (0.1,) * others, "global_solarize_p": (0.0,) + (0.2,) * others}

    @property
    def blur_radius(self) -> int:
        """Kernel half-width: 3 sigma of the largest sigma (13 taps for DINO's 2.0)."""
        return max(1, int(math.ceil(3.0 * self.blur_sigma[1])))


@dataclass
class ViewGroupParams:
    """The random draws for one view group (``B`` images x ``V`` views), all tensors on one device.

    ``boxes`` ``(B, V, 4)`` crop boxes ``(x0, y0, w, h)`` in source pixels; ``flip``, ``jitter``, ``grayscale``,
    ``blur``, ``solarize`` ``(B, V)`` bool: whether each op is applied; ``brightness``, ``contrast``,
    ``saturation`` ``(B, V)`` factors and ``hue`` ``(B, V)`` shift (used where ``jitter``); ``jitter_order``
    ``(B, V, 4)`` the per-sample order of (brightness, contrast, saturation, hue) as op indices; ``sigma``
    ``(B, V)`` blur standard deviations (used where ``blur``).
    """

    boxes: Tensor
    flip: Tensor
    jitter: Tensor
    brightness: Tensor
    contrast: Tensor
    saturation: Tensor
    hue: Tensor
    jitter_order: Tensor
    grayscale: Tensor
    blur: Tensor
    sigma: Tensor
    solarize: Tensor

    def to(self, device: str | torch.device) -> "ViewGroupParams":
        return ViewGroupParams(**{f.name: getattr(self, f.name).to(device) for f in dataclasses.fields(self)})

    @property
    def num_views(self) -> int:
        return self.boxes.shape[1]


@dataclass
class MultiCropParams:
    """Random draws for a whole call: the global and local view groups."""

    global_views: ViewGroupParams
    local_views: ViewGroupParams
    source_size: tuple[int, int] = field(default=(0, 0))

    def to(self, device: str | torch.device) -> "MultiCropParams":
        return MultiCropParams(self.global_views.to(device), self.local_views.to(device), self.source_size)


@dataclass
class _DeviceGroup:
    """A view group ready to apply: its params, ``[(indices, radius), ...]`` of the views to blur, the indices of
    the views to solarize, all on the source's device."""

    params: ViewGroupParams
    blur_groups: list[tuple[Tensor, int]]
    solarize_idx: Tensor


class MultiCropAugmentation(ConfiguredTransform, nn.Module):
    """DINO multi-crop on a batch, on its own device: ``(B, 3, S, S)`` uint8 -> global and local crops.

    Args:
        config: a :class:`MultiCropConfig`; keyword arguments override its fields (or build one from defaults),
            e.g. ``MultiCropAugmentation(n_local_crops=8, output_dtype="bfloat16")``. Every field is documented on
            :class:`MultiCropConfig`.

    ``forward(images, generator=None)`` returns ``(global_crops, local_crops)`` shaped ``(B, G, 3, H, W)`` and
    ``(B, L, 3, h, w)``, normalised. ``images`` is uint8 in ``[0, 255]`` or float in ``[0, 1]``, any device; sources
    need not be square. All random draws come from ``generator`` (on the CPU unless the generator lives on another
    device, then there), so the same seed gives the same crops, and the same crops on every device up to float
    rounding. ``generator`` may also be an int seed, read as ``torch.Generator().manual_seed(seed)``: the same seed
    gives the same draws at every call, so pass a ``torch.Generator`` to get fresh crops batch after batch.
    ``sample_params`` and ``apply`` split the two steps (for tests, visualisation, or replaying a batch). The crops
    never require grad (computed under ``torch.no_grad``): an input that requires grad is read as data.

    Every op is applied per sample with its own probability and parameters; see the module docstring for the order.
    """

    config_class = MultiCropConfig

    def __init__(self, config: MultiCropConfig | None = None, **kwargs: Any) -> None:
        super().__init__()
        self.config = self._resolve_config(config, kwargs)

    def extra_repr(self) -> str:
        c = self.config
        return (
            f"global={c.n_global_crops}x{c.global_crop_size} scale={c.global_crop_scale}, "
            f"local={c.n_local_crops}x{c.local_crop_size} scale={c.local_crop_scale}, "
            f"interpolation={c.interpolation}, color_jitter_mode={c.color_jitter_mode}"
        )

    # -- sampling ------------------------------------------------------------------------------------------------

    def _sample_group(
        self,
        batch_size: int,
        n_views: int,
        height: int,
        width: int,
        scale: tuple[float, float],
        blur_p: Sequence[float],
        solarize_p: Sequence[float],
        generator: torch.Generator | None,
        device: torch.device,
    ) -> ViewGroupParams:
        c = self.config
        shape = (batch_size, n_views)
        n = batch_size * n_views

        def rand(*size: int) -> Tensor:
            return torch.rand(*size, generator=generator, device=device)

        def uniform(lo: float, hi: float) -> Tensor:
            return lo + (hi - lo) * rand(*shape)

        # Draw order is fixed and independent of the outcomes, so a seeded generator always replays the same views.
        boxes = AF.sample_resized_crop_boxes(
            n, height, width, scale, c.crop_ratio, generator=generator, device=device
        ).view(batch_size, n_views, 4)
        flip = rand(*shape) < c.flip_p
        jitter = rand(*shape) < c.color_jitter_p
        brightness = uniform(max(0.0, 1.0 - c.brightness), 1.0 + c.brightness)
        contrast = uniform(max(0.0, 1.0 - c.contrast), 1.0 + c.contrast)
        saturation = uniform(max(0.0, 1.0 - c.saturation), 1.0 + c.saturation)
        hue = uniform(-c.hue, c.hue)
        jitter_order = rand(batch_size, n_views, 4).argsort(dim=-1)
        grayscale = rand(*shape) < c.grayscale_p
        blur_probs = torch.tensor(blur_p, dtype=torch.float32, device=device).view(1, n_views)
        blur = rand(*shape) < blur_probs
        sigma = uniform(*c.blur_sigma)
        sol_probs = torch.tensor(solarize_p, dtype=torch.float32, device=device).view(1, n_views)
        solarize = rand(*shape) < sol_probs
        return ViewGroupParams(
            boxes, flip, jitter, brightness, contrast, saturation, hue, jitter_order, grayscale, blur, sigma, solarize
        )

    def sample_params(
        self, batch_size: int, height: int, width: int | None = None, generator: None | int | torch.Generator = None
    ) -> MultiCropParams:
        """Draw every random parameter for a batch of ``batch_size`` sources of ``height x width`` pixels.

        Draws happen on ``generator.device`` (CPU when no generator is given); global views first, then local.
        ``generator`` may also be an int seed (see the class docstring).
        """
        width = height if width is None else width
        batch_size, height, width = check_source_size(batch_size, height, width)
        generator = _as_generator(generator)
        c = self.config
        device = generator.device if generator is not None else torch.device("cpu")
        global_views = self._sample_group(
            batch_size,
            c.n_global_crops,
            height,
            width,
            c.global_crop_scale,
            c.global_blur_p,
            c.global_solarize_p,
            generator,
            device,
        )
        local_views = self._sample_group(
            batch_size,
            c.n_local_crops,
            height,
            width,
            c.local_crop_scale,
            (c.local_blur_p,) * c.n_local_crops,
            (c.local_solarize_p,) * c.n_local_crops,
            generator,
            device,
        )
        return MultiCropParams(global_views, local_views, (height, width))

    # -- application ---------------------------------------------------------------------------------------------

    def _color_fused(self, crops: Tensor, p: ViewGroupParams, value_range: float) -> Tensor:
        """Colour jitter + grayscale + the uint8 scale + normalisation as one colour matrix per sample.

        ``crops`` is ``(B, 3, V, h, w)`` in ``[0, value_range]``; returns ``(B * V, 3, h, w)`` normalised, clipped
        once (to ``[0, 1]`` in normalised units). See ``color_jitter_mode``.
        """
        c = self.config
        b, _, v, h, w = crops.shape
        n = b * v
        x = crops.reshape(b, 3, v, h * w)  # a view
        dtype, device = x.dtype, x.device
        jit = p.jitter.reshape(n)
        one = torch.ones(n, dtype=dtype, device=device)
        # neutral factors where jitter is not applied
        a, off = AF.color_jitter_matrices(
            x.mean(dim=-1).transpose(1, 2).reshape(n, 3) / value_range,
            brightness=torch.where(jit, p.brightness.reshape(n).to(dtype), one),
            contrast=torch.where(jit, p.contrast.reshape(n).to(dtype), one),
            saturation=torch.where(jit, p.saturation.reshape(n).to(dtype), one),
            hue=torch.where(jit, p.hue.reshape(n).to(dtype), one - 1.0),
            order=p.jitter_order.reshape(n, 4),
            grayscale=p.grayscale.reshape(n),
        )
        mean = AF.constant(c.mean, dtype, device)
        inv_std = 1.0 / AF.constant(c.std, dtype, device)
        a = (a * (inv_std.view(1, 3, 1) / value_range)).view(b, v, 3, 3)
        off = ((off - mean) * inv_std).view(b, v, 3, 1)
        out = torch.empty(b, v, 3, h * w, dtype=dtype, device=device)
        for view in range(v):  # reads the stacked layout, writes (B, V, 3, h*w): no separate re-layout copy
            torch.baddbmm(off[:, view], a[:, view], x[:, :, view], out=out[:, view])
        lo = (-mean * inv_std).view(1, 1, 3, 1)
        hi = ((1.0 - mean) * inv_std).view(1, 1, 3, 1)
        return out.clamp_(min=lo, max=hi).view(n, 3, h, w)

    def _jitter_sequential(self, x: Tensor, p: ViewGroupParams) -> Tensor:
        """torchvision ``ColorJitter`` op by op (random order per sample, clip after each), then grayscale."""
        n = x.shape[0]
        jit = p.jitter.reshape(n)
        order = p.jitter_order.reshape(n, 4)
        factors = (p.brightness.reshape(n), p.contrast.reshape(n), p.saturation.reshape(n), p.hue.reshape(n))
        ops = (AF.adjust_brightness, AF.adjust_contrast, AF.adjust_saturation, AF.adjust_hue)
        for pos in range(4):
            for op_idx, op in enumerate(ops):
                idx = torch.nonzero(jit & (order[:, pos] == op_idx)).squeeze(1)
                if idx.numel():
                    x[idx] = op(x[idx], factors[op_idx][idx].to(x.dtype))
        idx = torch.nonzero(p.grayscale.reshape(n)).squeeze(1)
        if idx.numel():
            x[idx] = AF.rgb_to_grayscale(x[idx])
        return x

    def _to_device(self, groups: Sequence[ViewGroupParams], device: torch.device) -> list[_DeviceGroup]:
        """Each group's params with its blur buckets and solarize indices (found where the params live, the CPU by
        default, so no device sync), all moved to ``device`` in one non-blocking copy."""
        c = self.config
        host = []
        for p in groups:
            blur_groups = AF.blur_radius_buckets(p.sigma.reshape(-1).cpu(), p.blur.reshape(-1).cpu(), c.blur_radius)
            sol_idx = torch.nonzero(p.solarize.reshape(-1).cpu()).squeeze(1)
            host.append((p, [idx for idx, _ in blur_groups], [radius for _, radius in blur_groups], sol_idx))
        tensors = [
            t
            for p, blur_idx, _, sol_idx in host
            for t in (*(getattr(p, f.name) for f in dataclasses.fields(p)), *blur_idx, sol_idx)
        ]
        moved = iter(AF.to_device(tensors, device))
        out = []
        for p, _blur_idx, radii, _ in host:
            params = ViewGroupParams(**{f.name: next(moved) for f in dataclasses.fields(p)})
            blur_groups = [(next(moved), radius) for radius in radii]
            out.append(_DeviceGroup(params, blur_groups, next(moved)))
        return out

    def _apply_group(self, src: Tensor, value_range: float, group: _DeviceGroup, size: int) -> Tensor:
        """All views of one group; ``src`` is float in ``[0, value_range]``, ``group`` on its device."""
        c = self.config
        p = group.params
        b, v = p.boxes.shape[:2]
        if v == 0:
            return torch.empty(b, 0, 3, size, size, dtype=OUTPUT_DTYPES[c.output_dtype], device=src.device)
        # crop + resize + flip: (B, 3, V, size, size); the colour step clips, so the crop's own clip is skipped
        crops = AF.resized_crop_stacked(src, p.boxes, p.flip, (size, size), c.interpolation, c.padding_mode)
        # colour, ending in normalised units (blur is linear per channel, so it commutes with the normalisation;
        # solarize is done in normalised units below); x is (B * V, 3, size, size)
        if c.color_jitter_mode == "fused":
            x = self._color_fused(crops, p, value_range)
        else:
            x = crops.transpose(1, 2).reshape(b * v, 3, size, size)
            x = x.mul_(1.0 / value_range).clamp_(0.0, 1.0)
            x = AF.normalize(self._jitter_sequential(x, p), c.mean, c.std)
        sigma = p.sigma.reshape(-1)
        for idx, radius in group.blur_groups:
            x[idx] = AF.gaussian_blur(x[idx], sigma[idx], radius)
        if group.solarize_idx.numel():
            x[group.solarize_idx] = AF.solarize_normalized(x[group.solarize_idx], c.solarize_threshold, c.mean, c.std)
        return x.view(b, v, 3, size, size).to(OUTPUT_DTYPES[c.output_dtype])

    # No autograd: the augmentation has nothing to train, its crops are the data of a step. It also has to be off:
    # the colour step writes into a preallocated output (baddbmm out=), which autograd refuses for an input that
    # requires grad, so such an input is read as plain data and the crops do not require grad.
    @torch.no_grad()
    def _apply(self, src: Tensor, value_range: float, params: MultiCropParams) -> tuple[Tensor, Tensor]:
        c = self.config
        global_views, local_views = self._to_device((params.global_views, params.local_views), src.device)
        return (
            self._apply_group(src, value_range, global_views, c.global_crop_size),
            self._apply_group(src, value_range, local_views, c.local_crop_size),
        )

    def apply(self, images: Tensor, params: MultiCropParams) -> tuple[Tensor, Tensor]:
        """Apply previously drawn ``params`` to ``images`` (uint8 or float ``[0, 1]``, ``(B, 3, H, W)``)."""
        src, value_range = AF.as_float_source(images)
        b, _, height, width = src.shape
        if params.global_views.boxes.shape[0] != b or params.local_views.boxes.shape[0] != b:
            raise ValueError(f"params were drawn for batch size {params.global_views.boxes.shape[0]}, images have {b}")
        if params.source_size not in ((0, 0), (height, width)):
            raise ValueError(f"params were drawn for {params.source_size} sources, images are {(height, width)}")
        return self._apply(src, value_range, params)

    def forward(self, images: Tensor, generator: None | int | torch.Generator = None) -> tuple[Tensor, Tensor]:
        """``(global_crops (B, G, 3, H, W), local_crops (B, L, 3, h, w))`` for a uint8/float ``(B, 3, H, W)`` batch."""
        generator = _as_generator(generator)  # a wrong type is refused before the batch is converted
        src, value_range = AF.as_float_source(images)
        params = self.sample_params(src.shape[0], src.shape[2], src.shape[3], generator=generator)
        return self._apply(src, value_range, params)
