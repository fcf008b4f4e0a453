"""Safe decoding of one image from any source into RGB, and its resize + center crop to a fixed source size.

Web-scale face data is dirty: empty and truncated files, text saved as `.jpg`, CMYK and 16-bit scans, palette PNGs
with transparency, phone photos whose pixels are stored sideways with an EXIF orientation tag, and the occasional
decompression bomb. Everything here either returns a correct RGB image or raises `UnreadableImageError` with a short
machine-friendly `.reason`, so that a loader can skip and count the file instead of stopping an epoch.

No process-wide Pillow setting is changed (`Image.MAX_IMAGE_PIXELS`, `ImageFile.LOAD_TRUNCATED_IMAGES`): the pixel
limit is checked per call against the header size, before any pixel is decoded, so concurrent callers with different
limits do not interfere.
"""

import io
import logging
import numbers
import os
from collections.abc import Iterable
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".apng",
        ".bmp",
        ".dib",
        ".gif",
        ".tif",
        ".tiff",
        ".webp",
        ".ppm",
        ".pgm",
        ".pbm",
        ".pnm",
        ".tga",
        ".ico",
        ".jp2",
        ".j2k",
        ".avif",
    }
)  # lower case, with the dot; matched case-insensitively by `is_image_file`

# Pillow's own default (about 89.5 megapixels, ~0.25 GiB as RGB). Larger faces never help a 224-px model.
DEFAULT_MAX_PIXELS: int = 1024 * 1024 * 1024 // 4 // 3

# Reasons carried by UnreadableImageError (stable strings: reports and tests key on them).
REASON_EMPTY = "empty file"
REASON_MISSING = "missing file"
REASON_UNREADABLE = "unreadable file"
REASON_TRUNCATED = "truncated"
REASON_CORRUPT = "corrupt"
REASON_NOT_IMAGE = "not an image"
REASON_BOMB = "decompression bomb"
REASON_TOO_SMALL = "too small"
REASON_UNSUPPORTED_MODE = "unsupported mode"
REASON_BAD_SOURCE = "unsupported source"

_RESAMPLE = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
}


# The checks below run where the user passes a setting (open_image_rgb, resize_center_crop, and the loader's
# constructor): a bad value found later, per image, would skip every image under a misleading reason.


def check_max_pixels(max_pixels: Any) -> None:
    """`max_pixels` is compared with width * height: a positive number or None (no limit of our own)."""
    if max_pixels is not None and (
        isinstance(max_pixels, bool) or not isinstance(max_pixels, numbers.Real) or not max_pixels > 0
    ):  # `not > 0` also refuses NaN
        raise ValueError(f"max_pixels must be a positive int or None (no limit of our own), got {max_pixels!r}")


def check_min_size(min_size: Any) -> None:
    """`min_size` is a side in pixels (it also sets the JPEG draft size): an int >= 0 or None."""
    if min_size is not None and (
        isinstance(min_size, bool) or not isinstance(min_size, numbers.Integral) or min_size < 0
    ):
        raise ValueError(f"min_size must be a non-negative int or None, got {min_size!r}")


def check_resample(resample: Any) -> None:
    if not isinstance(resample, str) or resample not in _RESAMPLE:
        raise ValueError(f"resample must be one of {sorted(_RESAMPLE)}, got {resample!r}")


def check_background(background: Any) -> tuple[int, int, int]:
    """The (R, G, B) ints in [0, 255] that transparent pixels are composited on, as a tuple.

    Exactly what `_to_rgb` can use (`Image.new("RGBA", size, (*background, 255))`): a colour name, a float or
    another length would only fail at the first transparent image, as a "corrupt" file.
    """
    values = tuple(background) if isinstance(background, (tuple, list, np.ndarray)) else None
    if (
        values is None
        or len(values) != 3
        or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and 0 <= v <= 255 for v in values)
    ):
        raise ValueError(f"background must be an (R, G, B) tuple of 3 ints in [0, 255], got {background!r}")
    return tuple(int(v) for v in values)


class UnreadableImageError(ValueError):
    """An image that cannot be turned into a usable RGB picture; `.reason` says why, `.source` names the input."""

    def __init__(self, reason: str, source: Any = None, detail: str | None = None):
        super().__init__(reason, source, detail)
        self.reason = reason
        self.source = describe_source(source) if source is not None else None
        self.detail = detail

    def __str__(self) -> str:
        message = f"{self.reason}: {self.source}" if self.source else self.reason
        return f"{message} ({self.detail})" if self.detail else message

    def __reduce__(self):  # picklable across DataLoader worker processes (source is already a short string)
        return (type(self), (self.reason, self.source, self.detail))


def describe_source(source: Any) -> str:
    """A short printable name for a source: its path when it has one, else its type and size (never the bytes)."""
    if isinstance(source, dict):
        if source.get("path"):
            return str(source["path"])
        data = source.get("bytes")
        return f"<bytes: {len(data)}>" if data is not None else "<empty image dict>"
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<bytes: {len(source)}>"
    if isinstance(source, Image.Image):
        name = getattr(source, "filename", None)
        return name if name else f"<PIL.Image {source.mode} {source.size[0]}x{source.size[1]}>"
    name = getattr(source, "name", None)
    return str(name) if isinstance(name, (str, os.PathLike)) else f"<{type(source).__name__}>"


def is_image_file(path: str | os.PathLike) -> bool:
    """Whether the file name has a known image extension (case-insensitive) and is not hidden."""
    name = os.path.basename(os.fspath(path))
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def list_image_files(root: str | os.PathLike, recursive: bool = True) -> list[str]:
    """Sorted paths of the image files under `root`, by extension, skipping hidden files and hidden folders.

    Sorted so that every process (and every DataLoader worker) sees the same order and can shard it identically.
    """
    root = os.fspath(root)
    if not os.path.exists(root):
        raise FileNotFoundError(f"Image folder does not exist: {root!r}")
    if not os.path.isdir(root):
        raise NotADirectoryError(f"Not a folder: {root!r}")
    found: list[str] = []
    if recursive:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            found.extend(os.path.join(dirpath, f) for f in filenames if is_image_file(f))
    else:
        with os.scandir(root) as entries:
            found.extend(e.path for e in entries if e.is_file() and is_image_file(e.name))
    return sorted(found)


def _open_raw(source: Any) -> tuple[Image.Image, bool]:
    """Open lazily (header only). Returns the image and whether we own it (and may close / re-decode it)."""
    if isinstance(source, Image.Image):
        return source, False
    if isinstance(source, dict):
        if source.get("bytes") is not None:
            return _open_raw(source["bytes"])
        if source.get("path"):
            return _open_raw(source["path"])
        raise UnreadableImageError(REASON_EMPTY, source, "image dict has neither bytes nor path")
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise UnreadableImageError(REASON_EMPTY, source)
        return Image.open(io.BytesIO(bytes(source))), True
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        try:
            size = os.path.getsize(path)
        except FileNotFoundError:
            raise UnreadableImageError(REASON_MISSING, source) from None
        except OSError as e:
            raise UnreadableImageError(REASON_UNREADABLE, source, str(e)) from None
        if os.path.isdir(path):  # before the size test: a folder may have size 0, and open() fails on it
            raise UnreadableImageError(REASON_UNREADABLE, source, "a folder, not a file")
        if size == 0:
            raise UnreadableImageError(REASON_EMPTY, source)
        try:
            with open(path, "rb") as f:  # read once and close: no file handle outlives the call
                data = f.read()
        except FileNotFoundError:  # removed since getsize
            raise UnreadableImageError(REASON_MISSING, source) from None
        except OSError as e:  # permissions, I/O errors: the file, not its content, is at fault (not "corrupt")
            raise UnreadableImageError(REASON_UNREADABLE, source, f"{type(e).__name__}: {e}") from None
        return Image.open(io.BytesIO(data)), True
    if hasattr(source, "read"):
        data = source.read()
        if not data:
            raise UnreadableImageError(REASON_EMPTY, source)
        return Image.open(io.BytesIO(data)), True
    raise UnreadableImageError(
        REASON_BAD_SOURCE,
        None,
        f"got {type(source).__name__}; expected a path, bytes, a file object, a PIL image or a "
        "datasets image dict {'bytes': ..., 'path': ...}",
    )


def _sixteen_bit_to_l(image: Image.Image) -> Image.Image:
    """Integer / float greyscale modes to 8-bit L by scaling, not clipping (65535 -> 255, 32768 -> 128)."""
    arr = np.asarray(image)
    if image.mode.startswith("I;16") or (image.mode == "I" and arr.size and arr.min() >= 0 and arr.max() <= 65535):
        # 16-bit data (PNG/TIFF 16-bit greyscale opens as I;16 or I): 65535 / 257 = 255 exactly.
        out = np.rint(arr.astype(np.float32) / 257.0)
    elif image.mode == "F" and arr.size and np.nanmax(arr) <= 1.0 and np.nanmin(arr) >= 0.0:
        out = np.rint(arr * 255.0)  # float images in [0, 1]
    else:  # wider integers or unbounded floats: stretch the observed range rather than clip it away
        arr = np.nan_to_num(arr.astype(np.float64))
        lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
        out = np.zeros_like(arr) if hi <= lo else np.rint((arr - lo) * (255.0 / (hi - lo)))
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), mode="L")


def _composite(rgba: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    canvas = Image.new("RGBA", rgba.size, (*background, 255))
    return Image.alpha_composite(canvas, rgba).convert("RGB")


def _to_rgb(image: Image.Image, background: tuple[int, int, int], source: Any) -> Image.Image:
    """Any Pillow mode to RGB; transparency is composited on `background` (dropping alpha leaves garbage colours)."""
    mode = image.mode
    # A PNG tRNS chunk makes one colour transparent in 1, L, P, RGB and 16-bit grey images: `info["transparency"]`.
    # It must be tested before any early return (an RGB image with one would otherwise keep its key colour opaque).
    key = image.info.get("transparency")
    if mode == "RGB" and key is None:
        return image
    if mode in ("I", "F") or mode.startswith("I;16"):
        grey = _sixteen_bit_to_l(image)
        if isinstance(key, (int, np.integer)) and not isinstance(key, bool) and mode != "F":
            # the key is a raw 16-bit value: compare before scaling (scaling merges it with its neighbours)
            grey.putalpha(Image.fromarray(np.where(np.asarray(image) == key, 0, 255).astype(np.uint8), mode="L"))
            return _composite(grey.convert("RGBA"), background)
        return grey.convert("RGB")
    if mode in ("RGBA", "LA", "La", "RGBa", "PA") or (mode in ("P", "L", "1", "RGB") and key is not None):
        return _composite(image.convert("RGBA"), background)
    try:
        return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, HSV, ...
    except (ValueError, OSError) as e:
        raise UnreadableImageError(REASON_UNSUPPORTED_MODE, source, f"mode {mode}: {e}") from None


def open_image_rgb(
    source: Any,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    *,
    background: tuple[int, int, int] = (255, 255, 255),
    exif_transpose: bool = True,
    draft_size: int | None = None,
) -> Image.Image:
    """Decode `source` fully into an RGB `PIL.Image`, or raise `UnreadableImageError` with a reason.

    Args:
        source: a path, bytes, a binary file object, a PIL image, or a `datasets` image dict `{"bytes", "path"}`.
        max_pixels: refuse images whose *declared* width x height exceeds this, before decoding a single pixel
            (reason "decompression bomb"). `None` keeps only Pillow's process-wide hard limit, which also applies
            above `2 * Image.MAX_IMAGE_PIXELS` whatever `max_pixels` says (raise that at program start if needed).
        background: colour transparent pixels are composited on.
        exif_transpose: apply the EXIF orientation tag, so that faces stand upright as the camera saw them.
        draft_size: JPEG only: let libjpeg decode at a reduced scale whose both sides stay >= this (much faster
            for large photos headed for a small source size). None decodes at full resolution.
    """
    check_max_pixels(max_pixels)
    background = check_background(background)  # a ValueError here, not an UnreadableImageError("corrupt") per image
    try:
        image, owned = _open_raw(source)
        width, height = image.size
        if max_pixels is not None and width * height > max_pixels:
            raise UnreadableImageError(
                REASON_BOMB, source, f"declares {width}x{height} = {width * height} pixels > max_pixels={max_pixels}"
            )
        if owned and draft_size is not None and image.format == "JPEG":
            image.draft(None, (draft_size, draft_size))
        image.load()  # decode now: a truncated or corrupt body must fail here, not in a later transform
        if exif_transpose:
            try:
                image = ImageOps.exif_transpose(image)
            except Exception as e:  # malformed EXIF is common and harmless to the pixels: keep them unrotated
                logger.debug("Ignoring unreadable EXIF orientation of %s: %s", describe_source(source), e)
        return _to_rgb(image, background, source)
    except UnreadableImageError as e:
        if e.source is None:
            e.source = describe_source(source)
        raise
    except Image.DecompressionBombError as e:
        raise UnreadableImageError(REASON_BOMB, source, str(e)) from None
    except UnidentifiedImageError:
        raise UnreadableImageError(REASON_NOT_IMAGE, source) from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError) as e:
        text = str(e)
        reason = REASON_TRUNCATED if "truncat" in text.lower() or isinstance(e, EOFError) else REASON_CORRUPT
        raise UnreadableImageError(reason, source, f"{type(e).__name__}: {text}") from None


def resize_center_crop(
    image: Image.Image,
    size: int,
    *,
    min_size: int | None = None,
    resample: str = "bicubic",
    return_tensor: bool = False,
    source: Any = None,
):
    """Resize the shorter side to `size` and center crop to a `(3, size, size)` uint8 array (or torch tensor).

    The crop box is taken in original coordinates and resized in one antialiased step (`Image.resize(box=...)`),
    which equals resize-then-crop without resizing pixels that are thrown away. Images whose shorter side is below
    `size` are upscaled (blurry but usable); pass `min_size` to refuse images whose shorter side is below it instead
    (`UnreadableImageError` with reason "too small").
    """
    if not isinstance(size, int) or size <= 0:
        raise ValueError(f"size must be a positive int, got {size!r}")
    check_resample(resample)
    check_min_size(min_size)
    width, height = image.size
    short = min(width, height)
    if short == 0 or (min_size is not None and short < min_size):
        raise UnreadableImageError(
            REASON_TOO_SMALL, source if source is not None else image, f"{width}x{height}, min_size={min_size}"
        )
    if image.mode != "RGB":
        image = image.convert("RGB")
    left, top = (width - short) / 2.0, (height - short) / 2.0
    out = image.resize((size, size), _RESAMPLE[resample], box=(left, top, left + short, top + short))
    arr = np.asarray(out, dtype=np.uint8).transpose(2, 0, 1)
    arr = np.ascontiguousarray(arr)
    if return_tensor:
        import torch

        return torch.from_numpy(arr)
    return arr


def decode_to_array(
    source: Any,
    size: int,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    min_size: int | None = None,
    resample: str = "bicubic",
    background: tuple[int, int, int] = (255, 255, 255),
    return_tensor: bool = False,
):
    """`open_image_rgb` + `resize_center_crop` in one call: the per-sample work of a DataLoader worker."""
    # draft keeps both sides >= the request, so a min_size check after it still sees enough pixels
    image = open_image_rgb(source, max_pixels, background=background, draft_size=max(size, min_size or 0))
    return resize_center_crop(
        image, size, min_size=min_size, resample=resample, return_tensor=return_tensor, source=source
    )


__all__: Iterable[str] = [
    "IMAGE_EXTENSIONS",
    "DEFAULT_MAX_PIXELS",
    "UnreadableImageError",
    "open_image_rgb",
    "resize_center_crop",
    "decode_to_array",
    "list_image_files",
    "is_image_file",
    "describe_source",
]
