"""Embedded synthetic face data set: parametric faces rendered with numpy + PIL, nothing downloaded.

Why: the demo, the examples and the tests must run offline, yet need *faces* (not noise) with labels for every
downstream task ProS is evaluated on: 68 iBUG 300-W landmarks, a basic-expression class, binary attributes
(CelebA-like) and an identity. ``make_synthetic_faces`` returns a ``datasets.Dataset``; ``synthetic_faces_arrays`` and
``iter_synthetic_faces`` give numpy for speed-critical consumers; ``render_face`` is the one-face primitive.

How a face is made: a per-identity :class:`FaceIdentity` (face shape, skin/hair/eye colour, hair style, beard, ...)
and a per-image :class:`FaceParams` (expression, pose, lighting, accessories) define every shape in a *canonical face
frame* (x to the image's right, y down, unit = roughly the half-width of the face; the origin lies between the eyes,
a little below them). Each point is given a depth on a head-sized ellipsoid, turned by yaw and pitch
(orthographic), then rolled, scaled and shifted into pixels. The 68 landmarks are vertices of the very polylines
that are drawn, and go through the same transform, so they lie on the drawn jaw, brows, nose, eyes and lips.
Drawing is done at twice the resolution and box-downsampled (anti-aliasing); lighting (a directional gradient,
brightness, colour cast) and sensor noise are applied afterwards in numpy.

Landmark convention: (x, y) pixel coordinates, float32, pixel (i, j)'s centre at x=i, y=j (PIL / OpenCV convention),
so valid points lie in [0, image_size - 1]. Points follow the iBUG 300-W 68-point layout (0-based): jaw 0-16, brows
17-21 and 22-26, nose bridge 27-30, nose bottom 31-35, eyes 36-41 (on the image's left) and 42-47, outer lips
48-59, inner lips 60-67. ``FLIP_PERMUTATION_68`` re-indexes them after a horizontal flip.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

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

# The seven basic expressions of FER-2013 / RAF-DB (ClassLabel order of the `expression` column).
EXPRESSION_NAMES = ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger")

# Binary attributes (CelebA-style names), in the order of `attributes_to_multi_hot` and of the arrays API.
ATTRIBUTE_NAMES = (
    "eyeglasses",
    "beard",
    "mustache",
    "smiling",  # exactly the images whose expression is happiness
    "hat",
    "dark_hair",  # black / dark brown hair; never set for bald faces (no hair is drawn)
    "bald",
    "earrings",
    "pale_skin",
    "wearing_lipstick",
    "long_hair",
    "mouth_open",  # lips visibly apart (surprise, fear, some happiness / disgust)
)

BACKGROUNDS = ("clutter", "gradient", "plain")
IMAGE_FORMATS = ("jpeg", "png")  # storage of the `image` column of make_synthetic_faces

# Labels of the debug label map (`render_face(..., return_masks=True)`): what is visible at each pixel.
MASK_LABELS = (
    "background", "clothes", "neck", "ear", "hair", "skin", "beard", "sclera", "iris", "brow", "nose", "lips",
    "mouth_interior", "teeth", "mustache", "hat", "glasses", "earring",
)  # fmt: skip
_L = {name: i for i, name in enumerate(MASK_LABELS)}

# iBUG 300-W horizontal-flip permutation: flipped_landmarks = mirror(landmarks)[FLIP_PERMUTATION_68].
FLIP_PERMUTATION_68 = (
    16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0,  # jaw
    26, 25, 24, 23, 22, 21, 20, 19, 18, 17,  # brows
    27, 28, 29, 30,  # nose bridge (on the mid-line)
    35, 34, 33, 32, 31,  # nose bottom
    45, 44, 43, 42, 47, 46,  # eye on the image's left <- right eye
    39, 38, 37, 36, 41, 40,  # eye on the image's right <- left eye
    54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55,  # outer lips
    64, 63, 62, 61, 60, 67, 66, 65,  # inner lips
)  # fmt: skip

MIN_IMAGE_SIZE = 32  # below this the eyes are a pixel or two and the landmarks stop meaning anything
MAX_IMAGE_SIZE = 1024
_SUPERSAMPLE = 2  # drawing resolution factor: anti-aliasing by box downsampling

# Per-expression deformation, as offsets in canonical units / multipliers (neutral = the identity's resting face):
# mouth corner dy (<0 up), lips opening, mouth width x, upper-lip raise, lip thickness x, upper-lid opening x,
# lower-lid opening x, brow raise, brow inner-end raise (<0: inner ends pulled down, frowning), brow arch x,
# nose wrinkle.
_EXPRESSION_SHAPES = {
    "neutral": (0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0),
    "happiness": (-0.12, 0.0, 1.15, 0.0, 0.9, 0.85, 0.5, 0.02, 0.0, 1.0, 0.0),
    "sadness": (0.10, 0.0, 0.9, 0.0, 0.9, 0.65, 1.0, 0.0, 0.10, 0.5, 0.0),
    "surprise": (0.0, 0.27, 0.62, 0.0, 0.9, 1.6, 1.2, 0.11, 0.02, 1.5, 0.0),
    "fear": (0.04, 0.12, 1.12, 0.0, 0.9, 1.5, 1.1, 0.07, 0.08, 0.8, 0.0),
    "disgust": (0.05, 0.02, 0.9, 0.06, 1.0, 0.7, 0.75, -0.04, -0.05, 0.9, 1.0),
    "anger": (0.03, 0.0, 0.85, 0.0, 0.55, 0.8, 0.9, -0.05, -0.09, 0.6, 0.0),
}
_MOUTH_OPEN_THRESHOLD = 0.045  # canonical lip gap above which `mouth_open` is set

_SKIN_DARK = np.array([78.0, 50.0, 36.0])
_SKIN_MID = np.array([190.0, 138.0, 100.0])
_SKIN_LIGHT = np.array([246.0, 214.0, 192.0])
_DARK_HAIR = ((22, 18, 18), (40, 30, 25), (58, 40, 28), (30, 26, 32))
_LIGHT_HAIR = ((205, 175, 112), (150, 105, 62), (155, 72, 40), (175, 172, 168), (228, 216, 188), (120, 85, 55))
_EYE_COLOURS = ((70, 42, 25), (45, 28, 18), (70, 110, 160), (80, 120, 80), (120, 90, 50), (110, 120, 130))
_LIPSTICK = ((190, 20, 40), (215, 60, 100), (140, 25, 60), (225, 90, 90), (160, 40, 40))
_FRAME_COLOURS = ((20, 20, 20), (90, 55, 30), (200, 170, 80), (180, 180, 190), (150, 30, 40), (30, 50, 120))
_METALS = ((212, 175, 55), (205, 205, 215), (240, 235, 225))


def _check_int(name: str, value, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < low or (high is not None and value > high):
        valid = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"{name} must be {valid}, got {value}")
    return int(value)


def _check_choice(name: str, value, options: Sequence[str]) -> str:
    if value not in options:
        raise ValueError(f"{name} must be one of {list(options)}, got {value!r}")
    return value


@dataclass(frozen=True)
class FaceIdentity:
    """Everything that makes two images the same person: shape, colouring, hair, facial hair, habits.

    Lengths are in canonical face units (the face's half-width is ``face_width`` ~ 1). ``p_*`` are the person's
    propensities for per-image accessories, so glasses or a hat come and go across one identity's images (as in
    CelebA) while staying characteristic of it.
    """

    face_width: float
    chin_y: float
    jaw_top_y: float
    jaw_exponent: float  # superellipse exponent of the jaw: 2 = oval, larger = squarer
    cranium_height: float
    eye_y: float
    eye_spacing: float
    eye_size: float
    eye_tilt: float
    brow_height: float
    brow_thickness: float
    brow_arch: float
    nose_length: float
    nose_width: float
    philtrum: float
    mouth_width: float
    lip_upper: float
    lip_lower: float
    ear_size: float
    skin_rgb: tuple
    hair_rgb: tuple
    eye_rgb: tuple
    lip_rgb: tuple
    hair_style: str  # "short", "long" or "bald"
    hair_volume: float
    hairline_y: float
    hairline_tilt: float
    hairline_curve: float
    beard: bool
    beard_style: str  # "full" or "goatee"
    mustache: bool
    pale_skin: bool
    dark_hair: bool
    p_glasses: float
    p_hat: float
    p_earrings: float
    p_lipstick: float


@dataclass(frozen=True)
class FaceParams:
    """One image's parameters: an identity plus expression, pose, lighting and accessories.

    Pose: ``yaw``/``pitch``/``roll`` in radians, ``scale`` = face half-width as a fraction of the image size,
    ``shift_*`` as fractions of the image size. ``extra_open`` opens the lips beyond the expression's default (a
    laughing smile shows teeth).
    """

    identity: FaceIdentity
    identity_index: int
    expression: int
    intensity: float
    extra_open: float
    gaze: tuple
    yaw: float
    pitch: float
    roll: float
    scale: float
    shift_x: float
    shift_y: float
    light_angle: float
    light_strength: float
    brightness: float
    colour_gain: tuple
    noise_std: float
    glasses: bool
    glasses_round: bool
    glasses_rgb: tuple
    glasses_width: float
    hat: bool
    hat_style: str  # "beanie" or "brim"
    hat_rgb: tuple
    earrings: bool
    earring_hoop: bool
    earring_rgb: tuple
    lipstick: bool
    lipstick_rgb: tuple
    clothes_rgb: tuple
    clothes_v_neck: bool

    @property
    def expression_name(self) -> str:
        return EXPRESSION_NAMES[self.expression]

    def expression_shape(self) -> tuple:
        """The expression's deformation vector scaled by ``intensity`` (neutral stays neutral)."""
        neutral = _EXPRESSION_SHAPES["neutral"]
        shape = _EXPRESSION_SHAPES[self.expression_name]
        return tuple(n + self.intensity * (s - n) for n, s in zip(neutral, shape))

    def mouth_gap(self) -> float:
        return self.expression_shape()[1] + self.extra_open

    def attributes(self) -> np.ndarray:
        """Multi-hot int8 vector in ``ATTRIBUTE_NAMES`` order; each attribute is drawn visibly."""
        ident = self.identity
        bald = ident.hair_style == "bald"
        values = {
            "eyeglasses": self.glasses,
            "beard": ident.beard,
            "mustache": ident.mustache,
            "smiling": self.expression_name == "happiness",
            "hat": self.hat,
            "dark_hair": ident.dark_hair and not bald,
            "bald": bald,
            "earrings": self.earrings,
            "pale_skin": ident.pale_skin,
            "wearing_lipstick": self.lipstick,
            "long_hair": ident.hair_style == "long",
            "mouth_open": self.mouth_gap() > _MOUTH_OPEN_THRESHOLD,
        }
        return np.array([values[name] for name in ATTRIBUTE_NAMES], dtype=np.int8)


class RenderedFace(NamedTuple):
    """``image`` uint8 (H, W, 3); ``landmarks`` float32 (68, 2) pixels; ``expression`` int; ``attributes`` int8
    multi-hot; ``masks`` a uint8 (H, W) label map indexing ``MASK_LABELS`` when requested, else None."""

    image: np.ndarray
    landmarks: np.ndarray
    expression: int
    attributes: np.ndarray
    masks: np.ndarray | None = None


def _pick(rng: np.random.Generator, options: Sequence) -> tuple:
    return tuple(options[int(rng.integers(len(options)))])


def _jitter(rng: np.random.Generator, rgb, amount: float) -> tuple:
    return tuple(float(c) for c in np.clip(np.asarray(rgb, float) * (1 + rng.uniform(-amount, amount, 3)), 0, 255))


def sample_identity(rng: np.random.Generator) -> FaceIdentity:
    """Draw one random person. A latent "masculine" trait only correlates beard / baldness / lipstick / hair length,
    as in real attribute data; it is not exposed as a label."""
    masculine = rng.random() < 0.5
    pale = bool(rng.random() < 0.25)
    tone = rng.uniform(0.86, 1.0) if pale else rng.uniform(0.0, 0.82)
    if tone < 0.5:
        skin = _SKIN_DARK + (_SKIN_MID - _SKIN_DARK) * (tone / 0.5)
    else:
        skin = _SKIN_MID + (_SKIN_LIGHT - _SKIN_MID) * ((tone - 0.5) / 0.5)
    skin = np.clip(skin * (1 + rng.uniform(-0.04, 0.04, 3)), 0, 255)
    dark_hair = bool(rng.random() < (0.75 if tone < 0.5 else 0.45))
    hair = _jitter(rng, _pick(rng, _DARK_HAIR if dark_hair else _LIGHT_HAIR), 0.08)
    if masculine:
        style = rng.choice(["short", "long", "bald"], p=[0.68, 0.1, 0.22])
        beard = bool(rng.random() < 0.45)
        mustache = bool(rng.random() < (0.75 if beard else 0.2))
        p_lipstick, p_earrings = 0.0, (0.5 if rng.random() < 0.15 else 0.0)
    else:
        style = rng.choice(["short", "long", "bald"], p=[0.3, 0.68, 0.02])
        beard = mustache = False
        p_lipstick = 0.8 if rng.random() < 0.6 else 0.05
        p_earrings = 0.7 if rng.random() < 0.5 else 0.05
    natural_lip = np.clip(skin * 0.72 + np.array([175.0, 75.0, 80.0]) * 0.28 - 10, 0, 255)
    return FaceIdentity(
        face_width=float(rng.uniform(0.9, 1.06)),
        chin_y=float(rng.uniform(0.98, 1.12)),
        jaw_top_y=float(rng.uniform(-0.16, -0.08)),
        jaw_exponent=float(rng.uniform(2.0, 2.9) if masculine else rng.uniform(1.9, 2.4)),
        cranium_height=float(rng.uniform(1.12, 1.28)),
        eye_y=float(rng.uniform(-0.22, -0.17)),
        eye_spacing=float(rng.uniform(0.38, 0.45)),
        eye_size=float(rng.uniform(0.15, 0.19)),
        eye_tilt=float(rng.uniform(-0.01, 0.035)),
        brow_height=float(rng.uniform(0.2, 0.26)),
        brow_thickness=float(rng.uniform(0.05, 0.075) if masculine else rng.uniform(0.035, 0.055)),
        brow_arch=float(rng.uniform(0.02, 0.055)),
        nose_length=float(rng.uniform(0.42, 0.52)),
        nose_width=float(rng.uniform(0.14, 0.2)),
        philtrum=float(rng.uniform(0.25, 0.3)),
        mouth_width=float(rng.uniform(0.3, 0.38)),
        lip_upper=float(rng.uniform(0.045, 0.075)),
        lip_lower=float(rng.uniform(0.065, 0.1)),
        ear_size=float(rng.uniform(0.17, 0.22)),
        skin_rgb=tuple(float(c) for c in skin),
        hair_rgb=hair,
        eye_rgb=_jitter(rng, _pick(rng, _EYE_COLOURS), 0.1),
        lip_rgb=tuple(float(c) for c in natural_lip),
        hair_style=str(style),
        hair_volume=float(rng.uniform(0.06, 0.2)),
        hairline_y=float(rng.uniform(-0.95, -0.78)),
        hairline_tilt=float(rng.uniform(-0.08, 0.08)),
        hairline_curve=float(rng.uniform(-0.12, 0.08)),
        beard=beard,
        beard_style="goatee" if rng.random() < 0.3 else "full",
        mustache=mustache,
        pale_skin=pale,
        dark_hair=dark_hair,
        p_glasses=0.75 if rng.random() < 0.28 else 0.04,
        p_hat=0.0 if style == "bald" else (0.6 if rng.random() < 0.2 else 0.05),
        p_earrings=p_earrings,
        p_lipstick=p_lipstick,
    )


def sample_face_params(
    rng: np.random.Generator,
    identity: FaceIdentity,
    identity_index: int = 0,
    expressions: Sequence[int] | None = None,
    pose_scale: float = 1.0,
) -> FaceParams:
    """Draw one image of ``identity``. ``expressions``: label ids to choose from uniformly (default all).
    ``pose_scale`` multiplies the pose ranges: 0 gives a frontal, centred, unrolled face of fixed size."""
    choices = range(len(EXPRESSION_NAMES)) if expressions is None else expressions
    expression = int(choices[int(rng.integers(len(choices)))])
    name = EXPRESSION_NAMES[expression]
    extra_open = 0.0
    if name == "happiness" and rng.random() < 0.45:
        extra_open = float(rng.uniform(0.06, 0.12))
    ps = pose_scale
    return FaceParams(
        identity=identity,
        identity_index=int(identity_index),
        expression=expression,
        intensity=float(rng.uniform(0.8, 1.15)),
        extra_open=extra_open,
        gaze=(float(rng.uniform(-1, 1)), float(rng.uniform(-1, 1))),
        yaw=float(ps * rng.uniform(-0.35, 0.35)),
        pitch=float(ps * rng.uniform(-0.12, 0.12)),
        roll=float(ps * rng.uniform(-0.3, 0.3)),
        scale=float(0.24 + ps * rng.uniform(-0.04, 0.03)),
        shift_x=float(ps * rng.uniform(-0.07, 0.07)),
        shift_y=float(ps * rng.uniform(-0.05, 0.05)),
        light_angle=float(rng.uniform(0, 2 * math.pi)),
        light_strength=float(rng.uniform(0.0, 0.35)),
        brightness=float(rng.uniform(0.8, 1.12)),
        colour_gain=tuple(float(g) for g in rng.uniform(0.95, 1.05, 3)),
        noise_std=float(rng.uniform(0.0, 7.0)),
        glasses=bool(rng.random() < identity.p_glasses),
        glasses_round=bool(rng.random() < 0.4),
        glasses_rgb=_pick(rng, _FRAME_COLOURS),
        glasses_width=float(rng.uniform(0.025, 0.045)),
        hat=bool(rng.random() < identity.p_hat),
        hat_style="beanie" if rng.random() < 0.5 else "brim",
        hat_rgb=tuple(float(c) for c in rng.uniform(20, 235, 3)),
        earrings=bool(rng.random() < identity.p_earrings),
        earring_hoop=bool(rng.random() < 0.5),
        earring_rgb=_pick(rng, _METALS),
        lipstick=bool(rng.random() < identity.p_lipstick),
        lipstick_rgb=_jitter(rng, _pick(rng, _LIPSTICK), 0.08),
        clothes_rgb=tuple(float(c) for c in rng.uniform(15, 240, 3)),
        clothes_v_neck=bool(rng.random() < 0.5),
    )


# ---------------------------------------------------------------------------------------------------------------
# Rendering


def _rgb(colour, factor: float = 1.0) -> tuple:
    return tuple(int(min(255.0, max(0.0, c * factor))) for c in colour)


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 16) -> np.ndarray:
    t = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


class _Projector:
    """Canonical face frame -> final pixel coordinates: depth on an ellipsoid, yaw/pitch (orthographic), roll, scale,
    shift. Landmarks and drawing both go through this one object, which is what keeps them consistent."""

    def __init__(self, params: FaceParams, image_size: int):
        ident = params.identity
        self.inv_w = 1.0 / (1.12 * ident.face_width)  # head ellipsoid slightly wider than the face
        self.cyaw, self.syaw = math.cos(params.yaw), math.sin(params.yaw)
        self.cpitch, self.spitch = math.cos(params.pitch), math.sin(params.pitch)
        s = params.scale * image_size
        self.a, self.b = s * math.cos(params.roll), s * math.sin(params.roll)
        self.cx = (image_size - 1) / 2 + params.shift_x * image_size
        # the origin sits between the eyes; move it down so that the whole head (hair to chin) is centred
        self.cy = (image_size - 1) / 2 + params.shift_y * image_size + 0.2 * s
        self.scale = s

    def __call__(self, pts: np.ndarray, extra_depth=0.0, flat: bool = False) -> np.ndarray:
        """``pts`` (n, 2) canonical -> (n, 2) pixels. ``extra_depth`` lifts points off the head ellipsoid (nose,
        glasses); ``flat`` puts them on the depth-0 plane (body, hair and hat silhouettes)."""
        x, y = pts[:, 0], pts[:, 1]
        if flat:
            z = extra_depth
        else:
            r = 1.0 - np.square(x * self.inv_w) - np.square((y + 0.1) * (1 / 1.5))
            z = 0.85 * np.sqrt(np.maximum(r, 0.0)) + extra_depth
        xr = x * self.cyaw + z * self.syaw
        yr = y * self.cpitch + z * self.spitch
        out = np.empty((len(pts), 2))
        out[:, 0] = self.a * xr - self.b * yr + self.cx
        out[:, 1] = self.b * xr + self.a * yr + self.cy
        return out


class _Canvas:
    """Draws at `_SUPERSAMPLE`x resolution; optionally mirrors every shape into a label map (debug masks)."""

    def __init__(self, image: Image.Image, with_labels: bool):
        self.draw = ImageDraw.Draw(image)
        self.labels = Image.new("L", image.size, 0) if with_labels else None
        self.ldraw = ImageDraw.Draw(self.labels) if with_labels else None

    @staticmethod
    def _xy(pix: np.ndarray) -> list:
        return (pix * _SUPERSAMPLE + (_SUPERSAMPLE - 1) / 2).ravel().tolist()

    def polygon(self, pix, fill, label: str | None = None):
        """Filled polygon through ``pix`` ((n, 2) final pixels); ``label`` names it in the label map."""
        xy = self._xy(pix)
        self.draw.polygon(xy, fill=fill)
        if self.ldraw is not None and label is not None:
            self.ldraw.polygon(xy, fill=_L[label])

    def line(self, pix, fill, width: float, label: str | None = None, closed: bool = False):
        """``width`` in final pixels."""
        if closed:
            pix = np.concatenate([pix, pix[:1]])
        xy = self._xy(pix)
        w = max(1, int(round(width * _SUPERSAMPLE)))
        self.draw.line(xy, fill=fill, width=w, joint="curve")
        if self.ldraw is not None and label is not None:
            # at least 3 draw-pixels wide, so that decimating the label map never drops a thin line
            self.ldraw.line(xy, fill=_L[label], width=max(w, 3), joint="curve")


def _background(rng: np.random.Generator, size: int, kind: str) -> Image.Image:
    """Colour gradient (or flat colour) at final resolution, upsampled; clutter shapes are added at draw size."""
    c0 = rng.uniform(0, 255, 3)
    if kind == "plain":
        arr = np.broadcast_to(c0, (size, size, 3))
    else:
        c1 = rng.uniform(0, 255, 3)
        ang = rng.uniform(0, 2 * math.pi)
        lin = np.linspace(0.0, 1.0, size)
        t = (lin[None, :] * math.cos(ang) + lin[:, None] * math.sin(ang)) * 0.5
        t = t - t.min()
        t = t / max(t.max(), 1e-6)
        arr = c0 + (c1 - c0) * t[..., None]
    img = Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8))
    return img.resize((size * _SUPERSAMPLE, size * _SUPERSAMPLE), Image.Resampling.NEAREST)


def _clutter(rng: np.random.Generator, draw: ImageDraw.ImageDraw, size: int) -> None:
    n = int(rng.integers(2, 9))
    big = size * _SUPERSAMPLE
    for _ in range(n):
        kind = int(rng.integers(4))
        cx, cy = rng.uniform(-0.1, 1.1, 2) * big
        rx, ry = rng.uniform(0.05, 0.35, 2) * big
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if kind == 0:
            draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=colour)
        elif kind == 1:
            draw.rectangle([cx - rx, cy - ry, cx + rx, cy + ry], fill=colour)
        elif kind == 2:
            pts = rng.uniform(-1, 1, (int(rng.integers(3, 6)), 2)) * (rx, ry) + (cx, cy)
            draw.polygon(pts.ravel().tolist(), fill=colour)
        else:
            pts = rng.uniform(-1, 1, (int(rng.integers(2, 5)), 2)) * (rx, ry) + (cx, cy)
            draw.line(pts.ravel().tolist(), fill=colour, width=int(rng.integers(1, 3 * _SUPERSAMPLE + 1)))


def _mouth_curves(u, my, corner, gap, lip_up, lip_lo, upper_raise):
    """The four lip contours as functions of u in [-1, 1] (mouth corners at +-1, inner corners at +-0.75): all meet
    at the corners, the inner contours meet at the inner corners, and outer >= inner everywhere."""
    bend = corner * u * u  # smile (<0) or frown (>0) curve applied to the whole mouth
    one = np.clip(1.0 - u * u, 0.0, None)
    inner = np.clip(1.0 - (u / 0.75) ** 2, 0.0, None)
    opening = gap * inner**0.6
    cupid = one**0.55 * (1.0 - 0.3 * np.exp(-((u / 0.16) ** 2)))
    # the jaw drops: the lower lip takes most of the opening, so an open mouth does not climb into the nose
    upper_outer = my - 0.15 * opening - lip_up * cupid - upper_raise * one + bend
    mid_upper = my - 0.15 * opening - 0.8 * upper_raise * inner + bend
    mid_lower = my + 0.85 * opening + bend
    lower_outer = mid_lower + lip_lo * one**0.6
    return upper_outer, mid_upper, mid_lower, lower_outer


_U_MOUTH = np.linspace(-1.0, 1.0, 25)  # step 1/12: holds +-2/3, +-1/3, 0 and the inner corners +-0.75
_T_EYE = np.linspace(-1.0, 1.0, 13)  # step 1/6: holds the corners and +-1/3
_U_BROW = np.linspace(0.0, 1.0, 9)  # inner (0) to outer (1); holds the 5 landmark stations
_A_JAW = np.linspace(-math.pi / 2, math.pi / 2, 49)  # every 3rd sample is a jaw landmark


def render_face(
    rng: np.random.Generator,
    params: FaceParams,
    image_size: int = 128,
    background: str = "clutter",
    return_masks: bool = False,
) -> RenderedFace:
    """Render one face. ``rng`` draws only what is not in ``params`` (background, clutter, sensor noise), so one
    ``params`` renders the same face on different backgrounds. ``return_masks`` adds a label map (``MASK_LABELS``)
    of what is visible at each pixel, for checking that landmarks sit on the drawn features."""
    image_size = _check_int("image_size", image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
    _check_choice("background", background, BACKGROUNDS)
    ident = params.identity
    (corner, gap, mouth_wx, upper_raise, lip_thin, eye_up, eye_low, brow_raise, brow_inner, brow_arch_x,
     wrinkle) = params.expression_shape()  # fmt: skip
    gap += params.extra_open
    proj = _Projector(params, image_size)
    px = proj.scale / 128.0 * 2.2  # a "line unit": about 2 px at the default face size of 128 px images
    skin = ident.skin_rgb
    w, y0, chin = ident.face_width, ident.jaw_top_y, ident.chin_y
    landmarks = np.zeros((68, 2))

    img = _background(rng, image_size, background)
    cv = _Canvas(img, return_masks)
    if background == "clutter":
        _clutter(rng, cv.draw, image_size)

    # --- body: long hair (back), neck, clothes, ears, long hair (front locks) ---
    hair = ident.hair_rgb
    vol = ident.hair_volume
    ch = ident.cranium_height
    beta = np.linspace(0.0, math.pi, 17)
    cb, sb = np.cos(beta), np.sin(beta)
    cb_e = np.sign(cb) * np.abs(cb) ** (2 / 2.3)
    sb_e = np.abs(sb) ** (2 / 2.3)
    hair_outer = np.stack([w * (1 + vol) * cb_e, y0 - (ch + vol) * sb_e], axis=1)  # right -> top -> left
    long_hair = ident.hair_style == "long"
    if long_hair:
        hw = w + 0.3 + vol
        back = np.concatenate([hair_outer, [[-hw, 0.6], [-hw - 0.05, 1.45], [-hw + 0.15, 1.75], [hw - 0.15, 1.75],
                                            [hw + 0.05, 1.45], [hw, 0.6]]])  # fmt: skip
        cv.polygon(proj(back, flat=True), _rgb(hair, 0.7), "hair")
    neck_w = 0.42 * w
    cv.polygon(proj(np.array([[-neck_w, 0.2], [-neck_w * 1.08, 2.2], [neck_w * 1.08, 2.2], [neck_w, 0.2]]), flat=True),
               _rgb(skin, 0.8), "neck")  # fmt: skip
    collar_y = 1.75 if params.clothes_v_neck else 1.42
    clothes = np.array([[-3.2, 3.5], [-2.8, 1.75], [-1.5, 1.42], [-neck_w * 1.1, 1.3], [0.0, collar_y],
                        [neck_w * 1.1, 1.3], [1.5, 1.42], [2.8, 1.75], [3.2, 3.5]])  # fmt: skip
    cv.polygon(proj(clothes, flat=True), _rgb(params.clothes_rgb), "clothes")
    ear_y = y0 + 0.08
    for side in (-1.0, 1.0):
        ex = side * (w - 0.01)
        cv.polygon(proj(_ellipse(ex, ear_y, 0.1, ident.ear_size, 12), -0.1), _rgb(skin, 0.92), "ear")
        cv.polygon(proj(_ellipse(ex + side * 0.02, ear_y, 0.045, ident.ear_size * 0.6, 10), -0.1), _rgb(skin, 0.75),
                   "ear")  # fmt: skip
    if long_hair:
        for side in (-1.0, 1.0):  # locks falling over the ears and onto the shoulders, in front of the clothes
            lock = np.array([[w * (1 + vol), y0 - 0.3], [hw, 0.6], [hw + 0.05, 1.45], [hw - 0.12, 1.85],
                             [w * 0.75, 1.55], [w * 0.9, 0.9], [w * 0.9, y0]]) * np.array([side, 1.0])  # fmt: skip
            cv.polygon(proj(lock, flat=True), _rgb(hair, 0.92), "hair")
            strand = np.array([[w + 0.12, y0], [w + 0.2, 0.7], [w + 0.15, 1.5]]) * np.array([side, 1.0])
            cv.line(proj(strand, flat=True), _rgb(hair, 0.7), 0.5 * px)

    # --- face skin: jaw (landmarks 0-16) + cranium ---
    sa, ca = np.sin(_A_JAW), np.cos(_A_JAW)
    n = ident.jaw_exponent
    jaw = np.stack([w * np.sign(sa) * np.abs(sa) ** (2 / n), y0 + (chin - y0) * np.abs(ca) ** (2 / n)], axis=1)
    cranium = np.stack([w * cb_e, y0 - ch * sb_e], axis=1)[1:-1]
    jaw_pix = proj(jaw)
    landmarks[0:17] = jaw_pix[::3]
    cv.polygon(np.concatenate([jaw_pix, proj(cranium)]), _rgb(skin), "skin")

    # --- beard (under the lips, drawn before them) ---
    my = ident.eye_y + ident.nose_length + ident.philtrum
    mw = ident.mouth_width * mouth_wx
    lip_up, lip_lo = ident.lip_upper * lip_thin, ident.lip_lower * lip_thin
    mx = _U_MOUTH * mw
    upper_outer, mid_upper, mid_lower, lower_outer = _mouth_curves(
        _U_MOUTH, my, corner, gap, lip_up, lip_lo, upper_raise
    )
    if ident.beard:
        beard_rgb = _rgb(hair, 0.9)
        low = lower_outer[12] + 0.05
        if ident.beard_style == "full":
            outer = jaw * np.array([1.03, 1.0]) + np.array([0.0, 0.025]) * np.abs(ca)[:, None]
            inner = np.array([[w * 0.9, y0 + 0.02], [w * 0.72, my - 0.25], [mw + 0.1, my + 0.02],
                              [mw * 0.5, low - 0.01], [0.0, low], [-mw * 0.5, low - 0.01], [-mw - 0.1, my + 0.02],
                              [-w * 0.72, my - 0.25], [-w * 0.9, y0 + 0.02]])  # fmt: skip
        else:
            outer = jaw[14:35] * np.array([1.02, 1.0]) + np.array([0.0, 0.025])
            inner = np.array([[mw * 0.75, my + 0.12], [mw * 0.4, low], [-mw * 0.4, low], [-mw * 0.75, my + 0.12]])
        cv.polygon(proj(np.concatenate([outer, inner])), beard_rgb, "beard")

    # --- hair cap (short and long styles) ---
    if ident.hair_style != "bald":
        side_bottom = y0 + (0.12 if ident.hair_style == "short" else 0.35)
        hx = np.linspace(-0.78, 0.78, 9)
        hy = ident.hairline_y + ident.hairline_tilt * hx - ident.hairline_curve * hx * hx
        hairline = np.concatenate([
            [[-w * (1 + vol), side_bottom], [-w * 0.95, side_bottom], [-w * 0.95, y0 - 0.12], [-0.86, -0.62]],
            np.stack([hx, hy], axis=1),
            [[0.86, -0.62], [w * 0.95, y0 - 0.12], [w * 0.95, side_bottom], [w * (1 + vol), side_bottom]],
        ])  # fmt: skip
        cap = np.concatenate([hair_outer, hairline])
        cv.polygon(proj(cap), _rgb(hair), "hair")
        crown = np.array([0.15, y0 - ch - vol * 0.4])
        for k, end in enumerate(hairline[2:-2:2]):
            mid = (crown + end) / 2 + np.array([0.0, -0.12]) + np.array([0.1 * np.sign(end[0]), 0.0])
            shade = 0.72 if k % 2 else 1.25
            cv.line(proj(np.stack([crown, mid, end])), _rgb(hair, shade), 0.5 * px)

    # --- eyes (landmarks 36-47) ---
    a = ident.eye_size
    hu, hl = a * 0.6 * eye_up, a * 0.38 * eye_low
    f = (1.0 - _T_EYE * _T_EYE) ** 0.7
    for side, first in ((-1.0, 36), (1.0, 42)):
        cx, cy = side * ident.eye_spacing, ident.eye_y
        xs = cx + a * _T_EYE
        base = cy - ident.eye_tilt * (1.0 + side * _T_EYE) / 2
        upper = np.stack([xs, base - hu * f], axis=1)
        lower = np.stack([xs, base + hl * f], axis=1)
        up_pix, lo_pix = proj(upper), proj(lower)
        landmarks[first: first + 6] = [up_pix[0], up_pix[4], up_pix[8], up_pix[12], lo_pix[8], lo_pix[4]]
        cv.polygon(np.concatenate([up_pix, lo_pix[-2:0:-1]]), (238, 236, 230), "sclera")
        ix = cx + params.gaze[0] * a * 0.35
        iy = cy + params.gaze[1] * 0.015 - ident.eye_tilt / 2
        ri = a * 0.55
        cv.polygon(proj(_ellipse(ix, iy, ri, ri, 16)), _rgb(ident.eye_rgb), "iris")
        cv.polygon(proj(_ellipse(ix, iy, ri * 0.45, ri * 0.45, 10)), (12, 10, 10), "iris")
        glint_x = ix + 0.3 * ri * math.cos(params.light_angle + math.pi)  # catch-light towards the light
        glint_y = iy + 0.3 * ri * math.sin(params.light_angle + math.pi)
        cv.polygon(proj(_ellipse(glint_x, glint_y, ri * 0.16, ri * 0.16, 6)), (250, 250, 250), "iris")
        # skin-coloured lids clip the iris to the eye opening
        left, right = cx - a - 0.03, cx + a + 0.03
        lid = np.concatenate([upper, [[right, upper[-1, 1]], [right, cy - 0.24], [left, cy - 0.24],
                                      [left, upper[0, 1]]]])  # fmt: skip
        cv.polygon(proj(lid), _rgb(skin, 0.96), "skin")
        lid = np.concatenate([lower, [[right, lower[-1, 1]], [right, cy + 0.2], [left, cy + 0.2],
                                      [left, lower[0, 1]]]])  # fmt: skip
        cv.polygon(proj(lid), _rgb(skin), "skin")
        crease = upper[2:-2] + np.array([0.0, -0.055 - 0.1 * hu])
        cv.line(proj(crease), _rgb(skin, 0.8), 0.35 * px)
        cv.line(up_pix, (35, 25, 25), 0.55 * px)

    # --- brows (landmarks 17-26) ---
    brow_rgb = _rgb(hair, 0.75) if np.mean(hair) > 90 else _rgb(hair)
    by = ident.eye_y - ident.brow_height - brow_raise
    arch = ident.brow_arch * brow_arch_x
    u = _U_BROW
    centre_y = by - arch * (1.0 - ((u - 0.55) / 0.6) ** 2) - brow_inner * (1.0 - u) ** 1.5
    thick = ident.brow_thickness * (1.15 - 0.5 * u)
    for side, first in ((-1.0, 17), (1.0, 22)):
        inner_x = side * (ident.eye_spacing - 0.17)
        bx = inner_x + side * 0.45 * u
        top = proj(np.stack([bx, centre_y - thick / 2], axis=1))
        bottom = proj(np.stack([bx, centre_y + thick / 2], axis=1))
        mid = proj(np.stack([bx, centre_y], axis=1))[::2]  # inner -> outer, 5 stations
        landmarks[first: first + 5] = mid[::-1] if side < 0 else mid
        cv.polygon(np.concatenate([top, bottom[::-1]]), brow_rgb, "brow")
        cv.line(proj(np.stack([bx, centre_y], axis=1)), brow_rgb, 0.35 * px, "brow")  # keeps the tapered tail visible

    # --- nose (landmarks 27-35) ---
    tip = ident.eye_y + ident.nose_length
    nw = ident.nose_width * (1 + 0.15 * wrinkle)
    bridge = np.stack([np.zeros(4), np.linspace(ident.eye_y - 0.04, tip, 4)], axis=1)
    bridge_pix = proj(bridge, np.array([0.04, 0.12, 0.22, 0.34]))
    landmarks[27:31] = bridge_pix
    bottom = np.array([[-nw, tip + 0.035], [-0.075, tip + 0.08], [0.0, tip + 0.09], [0.075, tip + 0.08],
                       [nw, tip + 0.035]])  # fmt: skip
    bottom_z = np.array([0.1, 0.16, 0.2, 0.16, 0.1])
    bottom_pix = proj(bottom, bottom_z)
    landmarks[31:36] = bottom_pix
    shade_side = 1.0 if math.cos(params.light_angle) < 0 else -1.0
    cv.line(proj(np.array([[shade_side * 0.07, ident.eye_y + 0.02], [shade_side * 0.085, tip - 0.08],
                           [shade_side * (nw - 0.02), tip - 0.02]]), np.array([0.1, 0.25, 0.2])),
            _rgb(skin, 0.82), 0.5 * px)  # fmt: skip
    cv.line(bridge_pix, _rgb(skin, 1.1), 0.6 * px, "nose")
    for side in (-1.0, 1.0):
        ala = np.array([[side * nw, tip + 0.035], [side * (nw + 0.025), tip - 0.02], [side * (nw - 0.015), tip - 0.07]])
        cv.line(proj(ala, np.array([0.1, 0.08, 0.14])), _rgb(skin, 0.7), 0.45 * px, "nose")
        cv.polygon(proj(_ellipse(side * 0.07, tip + 0.06, 0.035, 0.017, 8), 0.16), _rgb(skin, 0.4), "nose")
    cv.line(bottom_pix, _rgb(skin, 0.6), 0.5 * px, "nose")
    if wrinkle > 0.3:
        for dy in (0.08, 0.13):
            cv.line(proj(np.array([[-0.07, ident.eye_y + dy], [0.0, ident.eye_y + dy - 0.015],
                                   [0.07, ident.eye_y + dy]]), 0.1), _rgb(skin, 0.75), 0.35 * px)  # fmt: skip

    # --- mustache (above the upper lip, below the nose) ---
    if ident.mustache:
        edge = np.stack([mx, upper_outer - 0.015], axis=1)
        top = np.array([[mw + 0.07, my + corner + 0.05], [nw + 0.03, tip + 0.08], [0.0, tip + 0.125],
                        [-nw - 0.03, tip + 0.08], [-mw - 0.07, my + corner + 0.05]])  # fmt: skip
        # lifted like the nose bottom, so that pitch does not slide the mustache over landmarks 31-35
        depth = np.concatenate([np.full(len(edge), 0.05), [0.05, 0.12, 0.16, 0.12, 0.05]])
        cv.polygon(proj(np.concatenate([edge, top]), depth), _rgb(hair, 0.85), "mustache")

    # --- lips (landmarks 48-67) ---
    lip_rgb = params.lipstick_rgb if params.lipstick else ident.lip_rgb
    uo, mu, ml, lo = (proj(np.stack([mx, c], axis=1)) for c in (upper_outer, mid_upper, mid_lower, lower_outer))
    landmarks[48:55] = uo[[0, 4, 8, 12, 16, 20, 24]]
    landmarks[55:60] = lo[[20, 16, 12, 8, 4]]
    landmarks[60:65] = mu[[3, 8, 12, 16, 21]]
    landmarks[65:68] = ml[[16, 12, 8]]
    cv.polygon(np.concatenate([uo, lo[::-1]]), _rgb(lip_rgb), "lips")
    cv.polygon(np.concatenate([uo, mu[::-1]]), _rgb(lip_rgb, 0.82), "lips")
    if float(np.max(mid_lower - mid_upper)) > 0.004:
        cv.polygon(np.concatenate([mu[3:22], ml[21:2:-1]]), (55, 18, 22), "mouth_interior")
        teeth_h = min(0.05, 0.45 * gap)
        if teeth_h > 0.012:
            teeth_low = np.minimum(mid_upper + teeth_h, mid_lower)[5:20]
            cv.polygon(np.concatenate([mu[5:20], proj(np.stack([mx[5:20], teeth_low], axis=1))[::-1]]),
                       (236, 232, 222), "teeth")  # fmt: skip
    cv.line(mu, _rgb(lip_rgb, 0.45), 0.4 * px, "lips")  # the lip line also reaches the corners 48 / 54

    # --- accessories: hat, glasses, earrings ---
    if params.hat:
        hat_y = ident.hairline_y - 0.02
        hx = np.linspace(-1.0, 1.0, 9) * w * 1.1
        brim_edge = np.stack([hx, hat_y + 0.05 - 0.06 * (hx / w) ** 2], axis=1)
        if params.hat_style == "beanie":
            # wider and taller than the hair so it sits on it rather than floating above it
            hw_ = w * (1 + vol) + 0.06
            brim_edge[:, 0] *= hw_ / (w * 1.1)
            dome = np.stack([hw_ * cb_e, hat_y - (hat_y - (y0 - ch - vol - 0.1)) * sb_e], axis=1)
            cv.polygon(proj(np.concatenate([dome, brim_edge]), flat=True), _rgb(params.hat_rgb), "hat")
            band = np.concatenate([brim_edge, brim_edge[::-1] + np.array([0.0, -0.2])])
            cv.polygon(proj(band, flat=True), _rgb(params.hat_rgb, 0.8), "hat")
        else:
            brim = _ellipse(0.0, hat_y - 0.02, w * 1.55, 0.13, 20)
            cv.polygon(proj(brim, flat=True), _rgb(params.hat_rgb, 0.85), "hat")
            crown_top = y0 - ch - 0.2
            crown = np.array([[-w * 0.85, hat_y - 0.02], [-w * 0.75, crown_top + 0.05], [-w * 0.3, crown_top],
                              [0.0, crown_top + 0.08], [w * 0.3, crown_top], [w * 0.75, crown_top + 0.05],
                              [w * 0.85, hat_y - 0.02]])  # fmt: skip
            cv.polygon(proj(crown, flat=True), _rgb(params.hat_rgb), "hat")
            band = np.array([[-w * 0.85, hat_y - 0.02], [-w * 0.83, hat_y - 0.14], [w * 0.83, hat_y - 0.14],
                             [w * 0.85, hat_y - 0.02]])  # fmt: skip
            cv.polygon(proj(band, flat=True), (25, 20, 20), "hat")
    if params.glasses:
        frame = _rgb(params.glasses_rgb)
        gw = params.glasses_width * px / 0.022
        rx = a + 0.07
        ry = 0.14 if not params.glasses_round else rx * 0.85
        t = np.linspace(0.0, 2 * math.pi, 20, endpoint=False)
        ex_ = 2.0 / (2.0 if params.glasses_round else 3.2)
        c, s = np.cos(t), np.sin(t)
        lens = np.stack([np.sign(c) * np.abs(c) ** ex_ * rx, np.sign(s) * np.abs(s) ** ex_ * ry], axis=1)
        gy = ident.eye_y + 0.01
        for side in (-1.0, 1.0):
            gx = side * ident.eye_spacing
            cv.line(proj(lens + np.array([gx, gy]), 0.12), frame, gw, "glasses", closed=True)
            arm = np.array([[side * (ident.eye_spacing + rx), gy - 0.04], [side * (w + 0.03), gy + 0.02]])
            cv.line(proj(arm, np.array([0.12, 0.0])), frame, gw, "glasses")
        inner = ident.eye_spacing - rx
        bridge_g = np.array([[-inner, gy - 0.03], [0.0, gy - 0.07], [inner, gy - 0.03]])
        cv.line(proj(bridge_g, 0.15), frame, gw, "glasses")
    if params.earrings:
        for side in (-1.0, 1.0):
            ex = side * (w - 0.01)
            ey = ear_y + ident.ear_size * 0.9
            if params.earring_hoop:
                cv.line(proj(_ellipse(ex, ey + 0.07, 0.06, 0.07, 12), -0.1), _rgb(params.earring_rgb), 0.45 * px,
                        "earring", closed=True)  # fmt: skip
            else:
                cv.polygon(proj(_ellipse(ex, ey + 0.02, 0.04, 0.04, 8), -0.1), _rgb(params.earring_rgb), "earring")

    # --- downsample, light, noise ---
    small = img.reduce(_SUPERSAMPLE)
    arr = np.asarray(small, dtype=np.float32)
    lin = np.linspace(-1.0, 1.0, image_size, dtype=np.float32)
    light = (1.0 + params.light_strength * (lin[None, :] * math.cos(params.light_angle)
                                            + lin[:, None] * math.sin(params.light_angle)))  # fmt: skip
    gain = np.asarray(params.colour_gain, dtype=np.float32) * params.brightness
    arr = arr * (light[..., None] * gain)
    if params.noise_std > 0.5:
        arr += rng.standard_normal(arr.shape, dtype=np.float32) * params.noise_std
    out = np.clip(arr, 0, 255).astype(np.uint8)
    masks = None
    if return_masks:
        off = _SUPERSAMPLE // 2
        masks = np.asarray(cv.labels, dtype=np.uint8)[off::_SUPERSAMPLE, off::_SUPERSAMPLE].copy()
    return RenderedFace(out, landmarks.astype(np.float32), params.expression, params.attributes(), masks)


# ---------------------------------------------------------------------------------------------------------------
# Data set builders


def _validate(num_images, image_size, seed, num_identities, expressions, background, pose_scale):
    num_images = _check_int("num_images", num_images, 1)
    image_size = _check_int("image_size", image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
    seed = _check_int("seed", seed, 0)
    if num_identities is None:
        num_identities = max(1, math.ceil(num_images / 10))
    num_identities = _check_int("num_identities", num_identities, 1, num_images)
    if expressions is None:
        expression_ids = None
    else:
        if isinstance(expressions, str) or not len(expressions):
            raise ValueError(f"expressions must be a non-empty list of names from {list(EXPRESSION_NAMES)}")
        expression_ids = [EXPRESSION_NAMES.index(_check_choice("expressions", e, EXPRESSION_NAMES))
                          for e in expressions]  # fmt: skip
    _check_choice("background", background, BACKGROUNDS)
    if not isinstance(pose_scale, (int, float)) or not 0.0 <= pose_scale <= 1.5:
        raise ValueError(f"pose_scale must be a number in [0, 1.5] (0: frontal, 1: default ranges), got {pose_scale!r}")
    return num_images, image_size, seed, num_identities, expression_ids, float(pose_scale)


def _generate(num_images, image_size, seed, num_identities, expression_ids, background, pose_scale, return_masks):
    """Yield (identity index, FaceParams, RenderedFace). Image i draws from its own generator seeded by (seed, i),
    so images can be rendered in any order or in parallel workers without changing the result."""
    id_rng = np.random.default_rng([seed, 1])
    identities = [sample_identity(id_rng) for _ in range(num_identities)]
    # balanced: every identity gets num_images // num_identities images or one more, in shuffled order
    assignment = np.random.default_rng([seed, 2]).permutation(np.arange(num_images) % num_identities)
    margin = 0.5
    for i in range(num_images):
        rng = np.random.default_rng([seed, 3, i])
        k = int(assignment[i])
        for attempt in range(20):
            # a pose that pushes a landmark out of the frame is redrawn (rare), then pose is switched off
            params = sample_face_params(rng, identities[k], k, expression_ids, pose_scale if attempt < 19 else 0.0)
            face = render_face(rng, params, image_size, background, return_masks)
            lm = face.landmarks
            if lm.min() >= margin and lm.max() <= image_size - 1 - margin:
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
) -> Iterator[dict]:
    """Yield examples one by one as plain numpy: ``{"image": uint8 (H, W, 3), "landmarks": float32 (68, 2),
    "expression": int, "attributes": int8 multi-hot (len(ATTRIBUTE_NAMES),), "identity": int}``.

    Use it for streaming or with ``datasets.Dataset.from_generator`` when the set is too big for memory; the
    arguments are those of :func:`make_synthetic_faces`.
    """
    args = _validate(num_images, image_size, seed, num_identities, expressions, background, pose_scale)
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
    return_params: bool = False,
    return_masks: bool = False,
) -> dict:
    """The data set as stacked numpy arrays (the fastest path, e.g. for pre-training batches):
    ``images`` uint8 (N, H, W, 3), ``landmarks`` float32 (N, 68, 2), ``expression`` int64 (N,), ``attributes`` int8
    (N, len(ATTRIBUTE_NAMES)) multi-hot, ``identity`` int64 (N,). ``return_params`` adds ``params`` (the
    :class:`FaceParams` of each image: ground-truth colours and shapes); ``return_masks`` adds ``masks`` uint8
    (N, H, W) label maps indexing ``MASK_LABELS``. Other arguments as in :func:`make_synthetic_faces`."""
    args = _validate(num_images, image_size, seed, num_identities, expressions, background, pose_scale)
    n, size, seed, n_id, expr_ids, pose = args
    out = {
        "images": np.empty((n, size, size, 3), np.uint8),
        "landmarks": np.empty((n, 68, 2), np.float32),
        "expression": np.empty(n, np.int64),
        "attributes": np.empty((n, len(ATTRIBUTE_NAMES)), np.int8),
        "identity": np.empty(n, np.int64),
    }
    if return_params:
        out["params"] = []
    if return_masks:
        out["masks"] = np.empty((n, size, size), np.uint8)
    for i, (k, params, face) in enumerate(_generate(n, size, seed, n_id, expr_ids, background, pose, return_masks)):
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
    batched = bool(seq) and not isinstance(seq[0], (int, np.integer))
    rows = seq if batched else [seq]
    out = np.zeros((len(rows), len(ATTRIBUTE_NAMES)), np.float32)
    for r, ids in enumerate(rows):
        out[r, list(ids)] = 1.0
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


def make_synthetic_faces(
    num_images: int,
    image_size: int = 128,
    seed: int = 0,
    num_identities: int | None = None,
    expressions: Sequence[str] | None = None,
    background: str = "clutter",
    pose_scale: float = 1.0,
    image_format: str = "jpeg",
    show_progress: bool | None = None,
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
        image_format: how the ``image`` column is stored: "jpeg" (quality 95, 4:4:4; default, fast) or "png"
            (lossless: pixels equal those of :func:`synthetic_faces_arrays`, ~5x slower to build).
        show_progress: tqdm progress bar; default on from 2,000 images.

    Returns:
        ``datasets.Dataset`` with columns ``image`` (``Image()``), ``landmarks`` (``Array2D((68, 2), "float32")``),
        ``expression`` (``ClassLabel(EXPRESSION_NAMES)``), ``attributes`` (``List(ClassLabel(ATTRIBUTE_NAMES))``,
        ids of the attributes present) and ``identity`` (int64). See :func:`synthetic_faces_features`.
    """
    import datasets

    args = _validate(num_images, image_size, seed, num_identities, expressions, background, pose_scale)
    n, size, seed, n_id, expr_ids, pose = args
    _check_choice("image_format", image_format, IMAGE_FORMATS)
    columns = {"image": [], "landmarks": [], "expression": [], "attributes": [], "identity": []}
    faces = _generate(n, size, seed, n_id, expr_ids, background, pose, False)
    if show_progress if show_progress is not None else n >= 2000:
        from tqdm.auto import tqdm

        faces = tqdm(faces, total=n, desc="Rendering synthetic faces")
    for k, _, face in faces:
        columns["image"].append({"bytes": _encode_image(face.image, image_format), "path": None})
        columns["landmarks"].append(face.landmarks)
        columns["expression"].append(face.expression)
        columns["attributes"].append(np.flatnonzero(face.attributes).tolist())
        columns["identity"].append(k)
    return datasets.Dataset.from_dict(columns, features=synthetic_faces_features())
