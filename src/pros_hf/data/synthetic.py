"""Embedded synthetic face data set: parametric faces rendered with numpy + PIL, nothing downloaded.

Why: the demo, the examples and the tests must run offline, yet need *faces* (not noise) with labels for every
downstream task ProS is evaluated on: 68 iBUG 300-W landmarks, a basic-expression class, binary attributes
(CelebA-like) and an identity. ``make_synthetic_faces`` returns a ``datasets.Dataset``; ``synthetic_faces_arrays`` and
``iter_synthetic_faces`` give numpy for speed-critical consumers; ``render_face`` is the one-face primitive.

This module builds data sets of many faces. What one face is (identity, per-image parameters, labels) lives in
:mod:`.face_params`, how it is drawn in :mod:`.face_rendering`; their public names are re-exported here.
"""

import io
import math
import multiprocessing
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from PIL import Image

from ..validation import check_choice, check_int
from .face_params import (
    ATTRIBUTE_NAMES,
    DEFAULT_FACE_SCALE,
    EXPRESSION_NAMES,
    FLIP_PERMUTATION_68,
    FaceIdentity,
    FaceParams,
    sample_face_params,
    sample_identity,
)
from .face_rendering import BACKGROUNDS, MASK_LABELS, MAX_IMAGE_SIZE, MIN_IMAGE_SIZE, RenderedFace, render_face

__all__ = [
    "ATTRIBUTE_NAMES",
    "BACKGROUNDS",
    "EXPRESSION_NAMES",
    "FLIP_PERMUTATION_68",
    "IMAGE_FORMATS",
    "MASK_LABELS",
    "MIN_IMAGE_SIZE",
    "FaceIdentity",
    "FaceParams",
    "RenderedFace",
    "attributes_to_multi_hot",
    "iter_synthetic_faces",
    "make_synthetic_faces",
    "render_face",
    "sample_face_params",
    "sample_identity",
    "synthetic_faces_arrays",
    "synthetic_faces_features",
]

IMAGE_FORMATS = ("jpeg", "png")  # storage of the `image` column of make_synthetic_faces


# ---------------------------------------------------------------------------------------------------------------
# Data set builders


def _validate(
    num_images,
    image_size,
    seed,
    num_identities,
    expressions,
    background,
    pose_scale,
    face_scale=DEFAULT_FACE_SCALE,
    expression_strength=1.0,
):
    num_images = check_int("num_images", num_images, 1)
    image_size = check_int("image_size", image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
    seed = check_int("seed", seed, 0)
    if num_identities is None:
        num_identities = max(1, math.ceil(num_images / 10))
    num_identities = check_int("num_identities", num_identities, 1, num_images)
    if expressions is None:
        expression_ids = None
    else:
        if isinstance(expressions, str) or not len(expressions):
            raise ValueError(f"expressions must be a non-empty list of names from {list(EXPRESSION_NAMES)}")
        expression_ids = [EXPRESSION_NAMES.index(check_choice("expressions", e, EXPRESSION_NAMES))
                          for e in expressions]  # fmt: skip
    check_choice("background", background, BACKGROUNDS)
    if not isinstance(pose_scale, (int, float)) or not 0.0 <= pose_scale <= 1.5:
        raise ValueError(f"pose_scale must be a number in [0, 1.5] (0: frontal, 1: default ranges), got {pose_scale!r}")
    if not isinstance(face_scale, (int, float)) or not 0.1 <= face_scale <= 0.42:
        raise ValueError(
            f"face_scale must be a number in [0.1, 0.42] (the face's half-width as a fraction of the "
            f"image; {DEFAULT_FACE_SCALE} by default), got {face_scale!r}"
        )
    if not isinstance(expression_strength, (int, float)) or not 0.0 <= expression_strength <= 3.0:
        raise ValueError(
            f"expression_strength must be a number in [0, 3] (1: the default deformations), got {expression_strength!r}"
        )
    style = (float(pose_scale), float(face_scale), float(expression_strength))
    return num_images, image_size, seed, num_identities, expression_ids, style


def _generate(
    num_images, image_size, seed, num_identities, expression_ids, background, style, return_masks, start=0, stop=None
):
    """Yield (identity index, FaceParams, RenderedFace) for images start..stop-1 of the set. Image i draws from its
    own generator seeded by (seed, i), so images can be rendered in any order or in parallel workers without changing
    the result."""
    id_rng = np.random.default_rng([seed, 1])
    identities = [sample_identity(id_rng) for _ in range(num_identities)]
    # balanced: every identity gets num_images // num_identities images or one more, in shuffled order
    assignment = np.random.default_rng([seed, 2]).permutation(np.arange(num_images) % num_identities)
    pose_scale, face_scale, expression_strength = style
    margin = 0.5
    for i in range(start, num_images if stop is None else stop):
        rng = np.random.default_rng([seed, 3, i])
        k = int(assignment[i])
        for attempt in range(20):
            # a face with a landmark out of the frame (a strong pose, or a tight crop) is redrawn before any pixel is
            # spent on it; the last try has no pose and is kept whatever it gives
            last = attempt == 19
            params = sample_face_params(
                rng,
                identities[k],
                k,
                expression_ids,
                0.0 if last else pose_scale,
                face_scale=face_scale,
                expression_strength=expression_strength,
            )
            face = render_face(rng, params, image_size, background, return_masks, None if last else margin)
            if face is not None:
                break
        yield k, params, face


def iter_synthetic_faces(
    num_images: int,
    image_size: int = 128,
    seed: int = 0,
    num_identities: int | None = None,
    expressions: Sequence[str] | None = None,
    background: str = "clutter",
    pose_scale: float = 1.0,
    face_scale: float = DEFAULT_FACE_SCALE,
    expression_strength: float = 1.0,
) -> Iterator[dict]:
    """Yield examples one by one as plain numpy: ``{"image": uint8 (H, W, 3), "landmarks": float32 (68, 2),
    "expression": int, "attributes": int8 multi-hot (len(ATTRIBUTE_NAMES),), "identity": int}``.

    Use it for streaming or with ``datasets.Dataset.from_generator`` when the set is too big for memory; the
    arguments are those of :func:`make_synthetic_faces`.
    """
    args = _validate(
        num_images,
        image_size,
        seed,
        num_identities,
        expressions,
        background,
        pose_scale,
        face_scale,
        expression_strength,
    )
    n, size, seed, n_id, expr_ids, pose = args
    for k, _, face in _generate(n, size, seed, n_id, expr_ids, background, pose, False):
        yield {
            "image": face.image,
            "landmarks": face.landmarks,
            "expression": face.expression,
            "attributes": face.attributes,
            "identity": k,
        }


def synthetic_faces_arrays(
    num_images: int,
    image_size: int = 128,
    seed: int = 0,
    num_identities: int | None = None,
    expressions: Sequence[str] | None = None,
    background: str = "clutter",
    pose_scale: float = 1.0,
    face_scale: float = DEFAULT_FACE_SCALE,
    expression_strength: float = 1.0,
    return_params: bool = False,
    return_masks: bool = False,
    num_proc: int = 1,
) -> dict:
    """The data set as stacked numpy arrays (the fastest path, e.g. for pre-training batches):
    ``images`` uint8 (N, H, W, 3), ``landmarks`` float32 (N, 68, 2), ``expression`` int64 (N,), ``attributes`` int8
    (N, len(ATTRIBUTE_NAMES)) multi-hot, ``identity`` int64 (N,). ``return_params`` adds ``params`` (the
    :class:`FaceParams` of each image: ground-truth colours and shapes); ``return_masks`` adds ``masks`` uint8
    (N, H, W) label maps indexing ``MASK_LABELS``. ``num_proc`` processes render in parallel; the arrays do not
    depend on it. Other arguments as in :func:`make_synthetic_faces`."""
    args = _validate(
        num_images,
        image_size,
        seed,
        num_identities,
        expressions,
        background,
        pose_scale,
        face_scale,
        expression_strength,
    )
    n, size, seed, n_id, expr_ids, pose = args
    num_proc = check_int("num_proc", num_proc, 1)
    render = (n, size, seed, n_id, expr_ids, background, pose, return_params, return_masks)
    if num_proc == 1 or n < 2 * num_proc:
        return _render_arrays(render, 0, n)
    parts = list(_in_chunks(_render_arrays, render, n, num_proc))
    return {
        name: sum((part[name] for part in parts), []) if name == "params" else np.concatenate([p[name] for p in parts])
        for name in parts[0]
    }


def _in_chunks(render_part, render: tuple, n: int, num_proc: int):
    """Yield `render_part(render, start, stop)` over images 0..n-1 in worker processes, in order (the rows come out
    as the sequential run gives them). A few chunks per process balance the load; fork where there is one (no
    re-import in the children)."""
    bounds = np.linspace(0, n, 4 * num_proc + 1).astype(int).tolist()
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(num_proc, mp_context=context) as pool:
        chunks = [pool.submit(render_part, render, a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        for chunk in chunks:
            yield chunk.result()


def _render_arrays(render: tuple, start: int, stop: int) -> dict:
    """Images start..stop-1 of `synthetic_faces_arrays`' set, as its arrays."""
    n, size, seed, n_id, expr_ids, background, pose, return_params, return_masks = render
    count = stop - start
    out = {
        "images": np.empty((count, size, size, 3), np.uint8),
        "landmarks": np.empty((count, 68, 2), np.float32),
        "expression": np.empty(count, np.int64),
        "attributes": np.empty((count, len(ATTRIBUTE_NAMES)), np.int8),
        "identity": np.empty(count, np.int64),
    }
    if return_params:
        out["params"] = []
    if return_masks:
        out["masks"] = np.empty((count, size, size), np.uint8)
    faces = _generate(n, size, seed, n_id, expr_ids, background, pose, return_masks, start, stop)
    for i, (k, params, face) in enumerate(faces):
        out["images"][i] = face.image
        out["landmarks"][i] = face.landmarks
        out["expression"][i] = face.expression
        out["attributes"][i] = face.attributes
        out["identity"][i] = k
        if return_params:
            out["params"].append(params)
        if return_masks:
            out["masks"][i] = face.masks
    return out


def attributes_to_multi_hot(attribute_ids) -> np.ndarray:
    """Convert the ``attributes`` column (list of present attribute ids) to a multi-hot float32 vector in
    ``ATTRIBUTE_NAMES`` order, the target format of multi-label classification heads. Accepts one example's list
    or a batch (list of lists) and returns (K,) or (B, K)."""
    seq = list(attribute_ids)
    # a scalar first item (an id, or a wrong float / None that the check below names) means one example, not a batch
    batched = bool(seq) and not (np.isscalar(seq[0]) or seq[0] is None)
    rows = seq if batched else [seq]
    num = len(ATTRIBUTE_NAMES)
    out = np.zeros((len(rows), num), np.float32)
    for r, ids in enumerate(rows):
        ids = list(ids)
        # Checked, not left to numpy: a negative id would silently set an attribute counted from the end.
        bad = [i for i in ids if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < num]
        if bad:
            where = f"example {r}: " if batched else ""
            raise ValueError(
                f"{where}attribute ids must be ints in [0, {num}) (indices into ATTRIBUTE_NAMES), got {bad[0]!r}"
            )
        out[r, ids] = 1.0
    return out if batched else out[0]


def synthetic_faces_features():
    """The ``datasets.Features`` of :func:`make_synthetic_faces`.

    ``attributes`` uses the standard multi-label encoding of ``datasets`` (a list of ``ClassLabel`` ids of the
    attributes present, like go_emotions' ``labels``), so the names are discoverable as
    ``features["attributes"].feature.names``; :func:`attributes_to_multi_hot` turns it into a target vector.
    ``landmarks`` is ``Array2D((68, 2), "float32")``: (x, y) pixels in the iBUG 300-W order.
    """
    import datasets

    return datasets.Features(
        {
            "image": datasets.Image(),
            "landmarks": datasets.Array2D(shape=(68, 2), dtype="float32"),
            "expression": datasets.ClassLabel(names=list(EXPRESSION_NAMES)),
            "attributes": datasets.List(datasets.ClassLabel(names=list(ATTRIBUTE_NAMES))),
            "identity": datasets.Value("int64"),
        }
    )


def _encode_image(image: np.ndarray, image_format: str) -> bytes:
    """Encode ourselves instead of letting ``datasets`` write PNG at its default level: with sensor noise a PNG costs
    ~2 ms per 128 px image (more than rendering it); JPEG at quality 95 without chroma subsampling costs ~0.15 ms,
    is what real face data sets (CelebA, 300-W) ship, and does not move landmarks."""
    buf = io.BytesIO()
    if image_format == "jpeg":
        Image.fromarray(image).save(buf, format="JPEG", quality=95, subsampling=0)
    else:
        Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


_COLUMNS = ("image", "landmarks", "expression", "attributes", "identity")


def _render_columns(render: tuple, start: int, stop: int, progress=None) -> dict[str, list]:
    """The columns of images start..stop-1 of ``make_synthetic_faces``, the image encoded (a top-level function, so
    that worker processes can run it)."""
    n, size, seed, n_id, expr_ids, background, pose, image_format = render
    columns = {name: [] for name in _COLUMNS}
    for k, _, face in _generate(n, size, seed, n_id, expr_ids, background, pose, False, start, stop):
        columns["image"].append({"bytes": _encode_image(face.image, image_format), "path": None})
        columns["landmarks"].append(face.landmarks)
        columns["expression"].append(face.expression)
        columns["attributes"].append(np.flatnonzero(face.attributes).tolist())
        columns["identity"].append(k)
        if progress is not None:
            progress.update(1)
    return columns


def make_synthetic_faces(
    num_images: int,
    image_size: int = 128,
    seed: int = 0,
    num_identities: int | None = None,
    expressions: Sequence[str] | None = None,
    background: str = "clutter",
    pose_scale: float = 1.0,
    face_scale: float = DEFAULT_FACE_SCALE,
    expression_strength: float = 1.0,
    image_format: str = "jpeg",
    show_progress: bool | None = None,
    num_proc: int = 1,
):
    """Render ``num_images`` synthetic faces into an in-memory ``datasets.Dataset``.

    Args:
        num_images: number of examples (>= 1).
        image_size: side of the square RGB images in pixels, in [MIN_IMAGE_SIZE, MAX_IMAGE_SIZE] = [32, 1024].
        seed: non-negative integer; the same seed (and arguments) gives identical data.
        num_identities: number of distinct people, in [1, num_images]; default ceil(num_images / 10). Images are
            spread evenly over identities; one identity keeps face shape and colouring while pose, expression,
            lighting, background and accessories (glasses, hat, earrings, lipstick) vary.
        expressions: names from ``EXPRESSION_NAMES`` to sample from (uniformly); default all. The ClassLabel keeps
            all names either way.
        background: "clutter" (gradient + random shapes, default), "gradient" or "plain".
        pose_scale: multiplies the yaw / pitch / roll / scale / shift ranges; 0 renders frontal, centred,
            unrolled faces, in [0, 1.5].
        face_scale: the face's half-width as a fraction of the image side, in [0.1, 0.42]; default 0.24, a face
            with hair, neck and background around it (a detector crops it). The representation benchmark
            (``pros_hf.representation.benchmark_faces``) renders face-dominant images directly with 0.38.
        expression_strength: multiplies every expression's deformation of the resting face (mouth, lids, brows),
            in [0, 3]; default 1. At 1 an expression moves a few pixels of a 48-64 px face, which a ViT trained
            from scratch on a few thousand images does not learn to read (supervised accuracy about 0.5 of 7
            classes); at 3 it reaches about 0.9 at 48 px (0.71 at 2), trained jointly with the other tasks.
        image_format: how the ``image`` column is stored: "jpeg" (quality 95, 4:4:4; default, fast) or "png"
            (lossless: pixels equal those of :func:`synthetic_faces_arrays`, ~5x slower to build).
        show_progress: tqdm progress bar; default on from 2,000 images.
        num_proc: processes rendering in parallel (>= 1). The images do not depend on it: each draws from its own
            seeded generator.

    Returns:
        ``datasets.Dataset`` with columns ``image`` (``Image()``), ``landmarks`` (``Array2D((68, 2), "float32")``),
        ``expression`` (``ClassLabel(EXPRESSION_NAMES)``), ``attributes`` (``List(ClassLabel(ATTRIBUTE_NAMES))``,
        ids of the attributes present) and ``identity`` (int64). See :func:`synthetic_faces_features`.
    """
    import datasets

    args = _validate(
        num_images,
        image_size,
        seed,
        num_identities,
        expressions,
        background,
        pose_scale,
        face_scale,
        expression_strength,
    )
    n, size, seed, n_id, expr_ids, pose = args
    check_choice("image_format", image_format, IMAGE_FORMATS)
    num_proc = check_int("num_proc", num_proc, 1)
    progress = None
    if show_progress if show_progress is not None else n >= 2000:
        from tqdm.auto import tqdm

        progress = tqdm(total=n, desc="Rendering synthetic faces")
    render = (n, size, seed, n_id, expr_ids, background, pose, image_format)
    if num_proc == 1 or n < 2 * num_proc:
        columns = _render_columns(render, 0, n, progress)
    else:
        columns = {name: [] for name in _COLUMNS}
        for part in _in_chunks(_render_columns, render, n, num_proc):
            for name in _COLUMNS:
                columns[name].extend(part[name])
            if progress is not None:
                progress.update(len(part["identity"]))
    if progress is not None:
        progress.close()
    return datasets.Dataset.from_dict(columns, features=synthetic_faces_features())
