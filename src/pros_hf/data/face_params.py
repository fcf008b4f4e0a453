"""What a synthetic face is: its labels, the person and one image of that person, and how both are drawn at random.

A per-identity :class:`FaceIdentity` (face shape, skin/hair/eye colour, hair style, beard, ...) and a per-image
:class:`FaceParams` (expression, pose, lighting, accessories) define every shape in a *canonical face frame* (x to the
image's right, y down, unit = roughly the half-width of the face; the origin lies between the eyes, a little below
them); :mod:`.face_rendering` draws them. The labels of a face (``EXPRESSION_NAMES``, ``ATTRIBUTE_NAMES``) are
functions of these parameters, so they are exact by construction.

Landmark layout: the iBUG 300-W 68-point layout (0-based): jaw 0-16, brows 17-21 and 22-26, nose bridge 27-30, nose
bottom 31-35, eyes 36-41 (on the image's left) and 42-47, outer lips 48-59, inner lips 60-67.
``FLIP_PERMUTATION_68`` re-indexes them after a horizontal flip.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "ATTRIBUTE_NAMES",
    "EXPRESSION_NAMES",
    "FLIP_PERMUTATION_68",
    "FaceIdentity",
    "FaceParams",
    "sample_face_params",
    "sample_identity",
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
DEFAULT_FACE_SCALE = 0.24  # the face's mean half-width as a fraction of the image side
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
    face_scale: float = DEFAULT_FACE_SCALE,
    expression_strength: float = 1.0,
) -> FaceParams:
    """Draw one image of ``identity``. ``expressions``: label ids to choose from uniformly (default all).
    ``pose_scale`` multiplies the pose ranges: 0 gives a frontal, centred, unrolled face of fixed size.
    ``face_scale`` is the face's mean half-width as a fraction of the image (its pose jitter scales with it);
    ``expression_strength`` multiplies the expression's deformation (its ``intensity``)."""
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
        intensity=float(rng.uniform(0.8, 1.15)) * expression_strength,
        extra_open=extra_open,
        gaze=(float(rng.uniform(-1, 1)), float(rng.uniform(-1, 1))),
        yaw=float(ps * rng.uniform(-0.35, 0.35)),
        pitch=float(ps * rng.uniform(-0.12, 0.12)),
        roll=float(ps * rng.uniform(-0.3, 0.3)),
        scale=float(0.24 + ps * rng.uniform(-0.04, 0.03)) * (face_scale / DEFAULT_FACE_SCALE),
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
