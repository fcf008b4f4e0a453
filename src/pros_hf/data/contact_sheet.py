"""Contact sheet: a grid of face images with their landmarks drawn, to eyeball a data set (or predictions)."""

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["draw_contact_sheet"]

# One colour per landmark group (jaw, brows, nose, eyes, lips), so a swapped or misplaced group stands out.
_GROUP_COLOURS = (
    (range(0, 17), (255, 255, 0)),
    (range(17, 27), (255, 128, 0)),
    (range(27, 36), (0, 255, 255)),
    (range(36, 48), (0, 255, 0)),
    (range(48, 68), (255, 0, 255)),
)


def _caption(example, features) -> str | None:
    if "expression" not in example:
        return None
    value = example["expression"]
    feature = features.get("expression") if features is not None else None
    if hasattr(feature, "int2str") and isinstance(value, (int, np.integer)):
        return feature.int2str(int(value))
    return str(value)


def draw_contact_sheet(
    dataset,
    columns: int = 8,
    num: int | None = None,
    point_radius: float = 1.0,
    captions: bool = True,
    padding: int = 2,
) -> Image.Image:
    """Tile the first ``num`` examples (default all) of ``dataset`` into a ``columns``-wide RGB sheet.

    ``dataset``: a ``datasets.Dataset`` or any sequence of dicts with ``image`` (PIL image or uint8 HxWx3 array) and,
    optionally, ``landmarks`` ((K, 2) pixels, drawn as dots coloured by iBUG group when K == 68) and
    ``expression`` (printed under the image; ClassLabel ids are turned into names). Images of different sizes are
    placed in cells of the largest size.
    """
    if not isinstance(columns, int) or columns < 1:
        raise ValueError(f"columns must be a positive integer, got {columns!r}")
    total = len(dataset)
    num = total if num is None else num
    if not isinstance(num, int) or not 1 <= num <= total:
        raise ValueError(f"num must be an integer in [1, {total}] (the data set's length), got {num!r}")
    features = getattr(dataset, "features", None)
    examples = [dataset[i] for i in range(num)]
    images = []
    for ex in examples:
        img = ex["image"]
        img = Image.fromarray(np.asarray(img, dtype=np.uint8)) if not isinstance(img, Image.Image) else img
        images.append(img.convert("RGB"))
    cell_w = max(im.width for im in images)
    cell_h = max(im.height for im in images)
    caption_h = 11 if captions and _caption(examples[0], features) is not None else 0
    rows = -(-num // columns)
    sheet = Image.new("RGB", (columns * (cell_w + padding) + padding, rows * (cell_h + caption_h + padding) + padding),
                      (32, 32, 32))  # fmt: skip
    draw = ImageDraw.Draw(sheet)
    for i, (ex, img) in enumerate(zip(examples, images)):
        x0 = padding + (i % columns) * (cell_w + padding)
        y0 = padding + (i // columns) * (cell_h + caption_h + padding)
        sheet.paste(img, (x0, y0))
        lm = ex.get("landmarks")
        if lm is not None:
            pts = np.asarray(lm, dtype=np.float32).reshape(-1, 2)
            groups = _GROUP_COLOURS if len(pts) == 68 else ((range(len(pts)), (255, 0, 0)),)
            r = point_radius
            for idx, colour in groups:
                for x, y in pts[list(idx)]:
                    draw.ellipse([x0 + x - r, y0 + y - r, x0 + x + r, y0 + y + r], fill=colour)
        if caption_h:
            text = _caption(ex, features)
            if text:
                draw.text((x0 + 2, y0 + cell_h), text, fill=(230, 230, 230))
    return sheet
