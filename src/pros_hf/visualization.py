"""DINO-style attention maps: where the CLS token of the last block looks, per head.

Why: self-distilled ViTs learn to attend to the object without supervision (Caron et al. 2021, Fig. 1); on faces a
healthy backbone's heads settle on the face and its parts (eyes, mouth, hair), whereas a random-init or collapsed one
attends nearly uniformly or to the background. A glance at these maps is a cheap sanity check next to k-NN accuracy.
"""

import logging
import os
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from .data.decoding import open_image_rgb

logger = logging.getLogger(__name__)

__all__ = ["cls_attention_maps", "denormalize", "figure_path", "save_attention_figure"]


def _patch_size(model) -> tuple[int, int]:
    patch = model.config.patch_size
    return (patch, patch) if isinstance(patch, int) else tuple(patch)


@torch.no_grad()
def cls_attention_maps(model: torch.nn.Module, pixel_values: torch.Tensor, layer: int = -1) -> torch.Tensor:
    """Attention of the CLS query to every patch token, per head: float32 (B, heads, H / patch, W / patch).

    Taken from block ``layer`` (default the last, as DINO shows). The CLS-to-CLS weight is left out, so each map
    sums to 1 minus that weight. The model runs in eval mode (its mode is restored) with eager attention for this call.
    """
    if not isinstance(pixel_values, torch.Tensor) or pixel_values.ndim != 4:
        raise ValueError("pixel_values must be a (batch, channels, height, width) tensor.")
    patch_h, patch_w = _patch_size(model)
    grid_h, grid_w = pixel_values.shape[-2] // patch_h, pixel_values.shape[-1] // patch_w
    was_training = model.training
    model.eval()
    try:
        outputs = model(pixel_values=pixel_values, output_attentions=True)
    finally:
        model.train(was_training)
    attentions = outputs.attentions
    if not attentions:
        raise ValueError("the model returned no attentions; it must support output_attentions=True.")
    if not -len(attentions) <= layer < len(attentions):
        raise ValueError(f"layer must index one of the {len(attentions)} blocks, got {layer}.")
    attention = attentions[layer].float()  # (B, heads, 1 + extra + N, 1 + extra + N)
    num_patches = grid_h * grid_w
    cls_to_patches = attention[:, :, 0, -num_patches:]  # patch tokens come last (after CLS and any registers)
    return cls_to_patches.reshape(attention.shape[0], attention.shape[1], grid_h, grid_w)


def denormalize(pixel_values: torch.Tensor, image_mean: Sequence[float], image_std: Sequence[float]) -> np.ndarray:
    """Undo the processor's normalisation for display: (B, C, H, W) tensor -> (B, H, W, C) float array in [0, 1]."""
    mean = torch.tensor(image_mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(image_std, dtype=torch.float32).view(1, -1, 1, 1)
    images = (pixel_values.detach().float().cpu() * std + mean).clamp(0, 1)
    return images.permute(0, 2, 3, 1).numpy()


def _upsample(maps: torch.Tensor, size: tuple[int, int], mode: str) -> np.ndarray:
    kwargs = {} if mode == "nearest" else {"align_corners": False}
    return torch.nn.functional.interpolate(maps.float(), size=size, mode=mode, **kwargs).numpy()


def figure_path(path) -> str:
    """The file :func:`save_attention_figure` writes for ``path``, checked before any work is done.

    A name without an extension gets ``.png`` (matplotlib would add it silently, and a caller would report a file
    that does not exist). Raises ValueError for an existing folder, an extension matplotlib cannot write, or a folder
    that does not exist.
    """
    from matplotlib.backend_bases import FigureCanvasBase

    path = os.fspath(path)
    if os.path.isdir(path):
        example = os.path.join(path, "attention.png")
        raise ValueError(f"output {path!r} is a folder; give a file name, e.g. {example!r}.")
    extension = os.path.splitext(path)[1][1:].lower()
    formats = FigureCanvasBase.get_supported_filetypes()
    if not extension:
        path += ".png"
    elif extension not in formats:
        raise ValueError(f"output {path!r}: matplotlib cannot write .{extension} files; use .png or one of "
                         f"{sorted(formats)}.")  # fmt: skip
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ValueError(f"output {path!r}: the folder {folder!r} does not exist.")
    if os.path.isdir(path):  # "name" given, and "name.png" is a folder
        raise ValueError(f"output {path!r} is a folder; give a file name.")
    return path


def save_attention_figure(
    images,
    maps: torch.Tensor,
    path,
    upsample: str = "nearest",
    cmap: str = "inferno",
    alpha: float = 0.6,
    title: str | None = None,
    dpi: int = 100,
) -> str:
    """Save a PNG grid: one row per image with the image, the mean over heads, then each head, overlaid; returns the
    path written (see :func:`figure_path`: ``.png`` is added to a name without an extension).

    ``images``: (B, H, W, 3) floats in [0, 1] (see :func:`denormalize`) or uint8, or a list of PIL images of the
    processed size. ``maps``: (B, heads, h, w) from :func:`cls_attention_maps`; they are upsampled to the image
    (``"nearest"`` keeps DINO's patch blocks, ``"bilinear"`` smooths) and min-max scaled per panel, since only the
    spatial pattern matters; the mean panel is labelled with its peak relative to uniform attention (1x = flat).
    """
    from matplotlib.figure import Figure  # no pyplot: renders with Agg and leaves the user's backend alone

    if upsample not in ("nearest", "bilinear", "bicubic"):
        raise ValueError(f"upsample must be 'nearest', 'bilinear' or 'bicubic', got {upsample!r}.")
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha!r}.")
    if isinstance(path, (str, os.PathLike)):  # a file object goes to matplotlib as it is
        path = figure_path(path)
    # PIL images go through the training decoder: convert("RGB") clips 16-bit greyscale to white and floats to black
    images = np.stack([np.asarray(open_image_rgb(image, None) if isinstance(image, Image.Image) else image)
                       for image in images])  # fmt: skip
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / 255.0
    if maps.ndim != 4 or len(maps) != len(images):
        raise ValueError(f"maps must be (batch, heads, h, w) with one entry per image, got shape {tuple(maps.shape)}.")
    batch, heads = maps.shape[:2]
    size = images.shape[1:3]
    panels = torch.cat([maps.mean(dim=1, keepdim=True), maps], dim=1)  # (B, 1 + heads, h, w)
    # Min-max scaling hides how peaked a map is; print the mean map's peak relative to uniform attention instead.
    mean_maps = panels[:, 0].flatten(1)
    peak_ratio = (mean_maps.max(dim=1).values * mean_maps.shape[1] / mean_maps.sum(dim=1).clamp_min(1e-12)).tolist()
    panels = _upsample(panels.cpu(), size, upsample)
    names = ["mean of heads"] + [f"head {h}" for h in range(heads)]

    columns = 2 + heads
    figure = Figure(figsize=(1.6 * columns, 1.6 * batch + (0.4 if title else 0)))
    axes = figure.subplots(batch, columns, squeeze=False)
    for row in range(batch):
        axes[row, 0].imshow(images[row])
        if row == 0:
            axes[row, 0].set_title("image", fontsize=8)
        for col, name in enumerate(names, start=1):
            panel = panels[row, col - 1]
            panel = (panel - panel.min()) / max(float(panel.max() - panel.min()), 1e-12)
            axes[row, col].imshow(images[row])
            axes[row, col].imshow(panel, cmap=cmap, alpha=alpha, vmin=0, vmax=1)
            if row == 0:
                axes[row, col].set_title(name, fontsize=8)
            if col == 1:
                axes[row, col].text(
                    0.03,
                    0.03,
                    f"peak {peak_ratio[row]:.2f}x uniform",
                    color="white",
                    fontsize=6,
                    transform=axes[row, col].transAxes,
                    bbox=dict(facecolor="black", alpha=0.5, pad=1),
                )
    for axis in axes.flat:
        axis.set_axis_off()
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    logger.info("Saved attention maps of %d images to %s", batch, path)
    return path
