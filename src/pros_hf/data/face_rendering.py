"""Rendering one synthetic face with numpy + PIL: the image, its 68 landmarks and (optionally) a label map.

How a face is drawn: every shape of :mod:`.face_params`' canonical face frame is given a depth on a head-sized
ellipsoid, turned by yaw and pitch (orthographic), then rolled, scaled and shifted into pixels. The 68 landmarks are
vertices of the very polylines that are drawn, and go through the same transform, so they lie on the drawn jaw, brows,
nose, eyes and lips. Drawing is done at twice the resolution and box-downsampled (anti-aliasing); lighting (a
directional gradient, brightness, colour cast) and sensor noise are applied afterwards in numpy.

Landmark convention: (x, y) pixel coordinates, float32, pixel (i, j)'s centre at x=i, y=j (PIL / OpenCV convention),
so valid points lie in [0, image_size - 1].
"""

import math
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

from ..validation import check_choice, check_int
from .face_params import FaceParams

__all__ = ["BACKGROUNDS", "MASK_LABELS", "MAX_IMAGE_SIZE", "MIN_IMAGE_SIZE", "RenderedFace", "render_face"]

BACKGROUNDS = ("clutter", "gradient", "plain")

# Labels of the debug label map (`render_face(..., return_masks=True)`): what is visible at each pixel.
MASK_LABELS = (
    "background", "clothes", "neck", "ear", "hair", "skin", "beard", "sclera", "iris", "brow", "nose", "lips",
    "mouth_interior", "teeth", "mustache", "hat", "glasses", "earring",
)  # fmt: skip
_L = {name: i for i, name in enumerate(MASK_LABELS)}

MIN_IMAGE_SIZE = 32  # below this the eyes are a pixel or two and the landmarks stop meaning anything
MAX_IMAGE_SIZE = 1024
_SUPERSAMPLE = 2  # drawing resolution factor: anti-aliasing by box downsampling


class RenderedFace(NamedTuple):
    """``image`` uint8 (H, W, 3); ``landmarks`` float32 (68, 2) pixels; ``expression`` int; ``attributes`` int8
    multi-hot; ``masks`` a uint8 (H, W) label map indexing ``MASK_LABELS`` when requested, else None."""

    image: np.ndarray
    landmarks: np.ndarray
    expression: int
    attributes: np.ndarray
    masks: np.ndarray | None = None


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


class _RenderDraws(NamedTuple):
    """Every random draw of one render, taken in one go and in the order the drawing uses them (background, clutter,
    sensor noise). A face that is not drawn (its landmarks left the frame) still takes its draws, so the faces after
    it come out the same."""

    background: tuple  # colours (and the gradient's angle)
    clutter: list  # (kind, (cx, cy, rx, ry), colour, points or None, line width or None) at draw size
    noise: np.ndarray | None  # (H, W, 3) float32 standard normal, when the face has sensor noise


def _sample_draws(rng: np.random.Generator, size: int, kind: str, noise_std: float) -> _RenderDraws:
    c0 = rng.uniform(0, 255, 3)
    colours = (c0,) if kind == "plain" else (c0, rng.uniform(0, 255, 3), rng.uniform(0, 2 * math.pi))
    clutter = []
    if kind == "clutter":
        big = size * _SUPERSAMPLE
        for _ in range(int(rng.integers(2, 9))):
            shape = int(rng.integers(4))
            cx, cy = rng.uniform(-0.1, 1.1, 2) * big
            rx, ry = rng.uniform(0.05, 0.35, 2) * big
            colour = tuple(int(c) for c in rng.integers(0, 256, 3))
            points = width = None
            if shape == 2:  # polygon of 3-5 corners
                points = rng.uniform(-1, 1, (int(rng.integers(3, 6)), 2)) * (rx, ry) + (cx, cy)
            elif shape == 3:  # polyline of 2-4 points
                points = rng.uniform(-1, 1, (int(rng.integers(2, 5)), 2)) * (rx, ry) + (cx, cy)
                width = int(rng.integers(1, 3 * _SUPERSAMPLE + 1))
            clutter.append((shape, (cx, cy, rx, ry), colour, points, width))
    noise = rng.standard_normal((size, size, 3), dtype=np.float32) if noise_std > 0.5 else None
    return _RenderDraws(colours, clutter, noise)


def _background(colours: tuple, size: int) -> Image.Image:
    """Colour gradient (or flat colour) at final resolution, upsampled; clutter shapes are added at draw size."""
    if len(colours) == 1:
        arr = np.broadcast_to(colours[0], (size, size, 3))
    else:
        c0, c1, ang = colours
        lin = np.linspace(0.0, 1.0, size)
        t = (lin[None, :] * math.cos(ang) + lin[:, None] * math.sin(ang)) * 0.5
        t = t - t.min()
        t = t / max(t.max(), 1e-6)
        arr = c0 + (c1 - c0) * t[..., None]
    img = Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8))
    return img.resize((size * _SUPERSAMPLE, size * _SUPERSAMPLE), Image.Resampling.NEAREST)


def _clutter(shapes: list, draw: ImageDraw.ImageDraw) -> None:
    for shape, (cx, cy, rx, ry), colour, points, width in shapes:
        if shape == 0:
            draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=colour)
        elif shape == 1:
            draw.rectangle([cx - rx, cy - ry, cx + rx, cy + ry], fill=colour)
        elif shape == 2:
            draw.polygon(points.ravel().tolist(), fill=colour)
        else:
            draw.line(points.ravel().tolist(), fill=colour, width=width)


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


class _FaceGeometry:
    """The shapes that carry the 68 landmarks (jaw, eyelids, brows, nose, lips), in the canonical frame and in pixels.
    The drawing and the landmarks both read them, so a face's landmarks are known before any pixel is drawn."""

    def __init__(self, params: FaceParams, image_size: int):
        ident = params.identity
        (corner, gap, mouth_wx, upper_raise, lip_thin, eye_up, eye_low, brow_raise, brow_inner, brow_arch_x,
         self.wrinkle) = params.expression_shape()  # fmt: skip
        self.corner, self.gap = corner, gap + params.extra_open
        proj = self.proj = _Projector(params, image_size)
        w, y0, chin = ident.face_width, ident.jaw_top_y, ident.chin_y
        landmarks = self.landmarks = np.zeros((68, 2))

        # jaw (landmarks 0-16)
        sa, self.jaw_cos = np.sin(_A_JAW), np.cos(_A_JAW)
        n = ident.jaw_exponent
        self.jaw = np.stack([w * np.sign(sa) * np.abs(sa) ** (2 / n), y0 + (chin - y0) * np.abs(self.jaw_cos) ** (2 / n)],
                            axis=1)  # fmt: skip
        self.jaw_pix = proj(self.jaw)
        landmarks[0:17] = self.jaw_pix[::3]

        # eyelids (landmarks 36-47): per eye its centre, upper and lower lid, and the lids' pixels
        a = ident.eye_size
        self.lid_upper, self.lid_lower = a * 0.6 * eye_up, a * 0.38 * eye_low
        f = (1.0 - _T_EYE * _T_EYE) ** 0.7
        self.eyes = []
        for side, first in ((-1.0, 36), (1.0, 42)):
            cx, cy = side * ident.eye_spacing, ident.eye_y
            xs = cx + a * _T_EYE
            base = cy - ident.eye_tilt * (1.0 + side * _T_EYE) / 2
            upper = np.stack([xs, base - self.lid_upper * f], axis=1)
            lower = np.stack([xs, base + self.lid_lower * f], axis=1)
            up_pix, lo_pix = proj(upper), proj(lower)
            landmarks[first : first + 6] = [up_pix[0], up_pix[4], up_pix[8], up_pix[12], lo_pix[8], lo_pix[4]]
            self.eyes.append((cx, cy, upper, lower, up_pix, lo_pix))

        # brows (landmarks 17-26): a centre line from the inner (u = 0) to the outer end, tapering
        by = ident.eye_y - ident.brow_height - brow_raise
        arch = ident.brow_arch * brow_arch_x
        u = _U_BROW
        self.brow_y = by - arch * (1.0 - ((u - 0.55) / 0.6) ** 2) - brow_inner * (1.0 - u) ** 1.5
        self.brow_thickness = ident.brow_thickness * (1.15 - 0.5 * u)
        self.brows = []
        for side, first in ((-1.0, 17), (1.0, 22)):
            inner_x = side * (ident.eye_spacing - 0.17)
            bx = inner_x + side * 0.45 * u
            centre_pix = proj(np.stack([bx, self.brow_y], axis=1))
            mid = centre_pix[::2]  # inner -> outer, 5 stations
            landmarks[first : first + 5] = mid[::-1] if side < 0 else mid
            self.brows.append((bx, centre_pix))

        # nose (landmarks 27-35): the bridge and the bottom edge, lifted off the head
        self.nose_tip = tip = ident.eye_y + ident.nose_length
        self.nose_width = nw = ident.nose_width * (1 + 0.15 * self.wrinkle)
        bridge = np.stack([np.zeros(4), np.linspace(ident.eye_y - 0.04, tip, 4)], axis=1)
        self.bridge_pix = proj(bridge, np.array([0.04, 0.12, 0.22, 0.34]))
        landmarks[27:31] = self.bridge_pix
        bottom = np.array([[-nw, tip + 0.035], [-0.075, tip + 0.08], [0.0, tip + 0.09], [0.075, tip + 0.08],
                           [nw, tip + 0.035]])  # fmt: skip
        self.nose_bottom_pix = proj(bottom, np.array([0.1, 0.16, 0.2, 0.16, 0.1]))
        landmarks[31:36] = self.nose_bottom_pix

        # lips (landmarks 48-67): outer upper, inner upper, inner lower, outer lower contours
        self.mouth_y = ident.eye_y + ident.nose_length + ident.philtrum
        self.mouth_width = ident.mouth_width * mouth_wx
        self.mouth_x = _U_MOUTH * self.mouth_width
        lip_up, lip_lo = ident.lip_upper * lip_thin, ident.lip_lower * lip_thin
        self.lip_curves = _mouth_curves(_U_MOUTH, self.mouth_y, corner, self.gap, lip_up, lip_lo, upper_raise)
        self.lip_pix = uo, mu, ml, lo = tuple(proj(np.stack([self.mouth_x, c], axis=1)) for c in self.lip_curves)
        landmarks[48:55] = uo[[0, 4, 8, 12, 16, 20, 24]]
        landmarks[55:60] = lo[[20, 16, 12, 8, 4]]
        landmarks[60:65] = mu[[3, 8, 12, 16, 21]]
        landmarks[65:68] = ml[[16, 12, 8]]

    def in_frame(self, image_size: int, margin: float) -> bool:
        """Whether every landmark lies at least `margin` pixels inside the image."""
        points = self.landmarks.astype(np.float32)  # as RenderedFace holds them
        return bool(points.min() >= margin and points.max() <= image_size - 1 - margin)


def render_face(
    rng: np.random.Generator,
    params: FaceParams,
    image_size: int = 128,
    background: str = "clutter",
    return_masks: bool = False,
    frame_margin: float | None = None,
) -> RenderedFace | None:
    """Render one face. ``rng`` draws only what is not in ``params`` (background, clutter, sensor noise), so one
    ``params`` renders the same face on different backgrounds. ``return_masks`` adds a label map (``MASK_LABELS``)
    of what is visible at each pixel, for checking that landmarks sit on the drawn features. With ``frame_margin``,
    a face with a landmark closer than that many pixels to the border is not drawn and None is returned (its random
    draws are taken all the same, so what ``rng`` gives next does not depend on it)."""
    image_size = check_int("image_size", image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
    check_choice("background", background, BACKGROUNDS)
    geometry = _FaceGeometry(params, image_size)
    draws = _sample_draws(rng, image_size, background, params.noise_std)
    if frame_margin is not None and not geometry.in_frame(image_size, frame_margin):
        return None
    return _draw_face(params, geometry, draws, image_size, return_masks)


def _draw_face(
    params: FaceParams, g: _FaceGeometry, draws: _RenderDraws, image_size: int, return_masks: bool
) -> RenderedFace:
    ident = params.identity
    proj = g.proj
    px = proj.scale / 128.0 * 2.2  # a "line unit": about 2 px at the default face size of 128 px images
    skin = ident.skin_rgb
    w, y0 = ident.face_width, ident.jaw_top_y
    corner, gap, wrinkle = g.corner, g.gap, g.wrinkle

    img = _background(draws.background, image_size)
    cv = _Canvas(img, return_masks)
    _clutter(draws.clutter, cv.draw)

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
    jaw, ca = g.jaw, g.jaw_cos
    cranium = np.stack([w * cb_e, y0 - ch * sb_e], axis=1)[1:-1]
    cv.polygon(np.concatenate([g.jaw_pix, proj(cranium)]), _rgb(skin), "skin")

    # --- beard (under the lips, drawn before them) ---
    my, mw, mx = g.mouth_y, g.mouth_width, g.mouth_x
    upper_outer, mid_upper, mid_lower, lower_outer = g.lip_curves
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
    a, hu = ident.eye_size, g.lid_upper
    for cx, cy, upper, lower, up_pix, lo_pix in g.eyes:
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
    centre_y, thick = g.brow_y, g.brow_thickness
    for bx, centre_pix in g.brows:
        top = proj(np.stack([bx, centre_y - thick / 2], axis=1))
        bottom = proj(np.stack([bx, centre_y + thick / 2], axis=1))
        cv.polygon(np.concatenate([top, bottom[::-1]]), brow_rgb, "brow")
        cv.line(centre_pix, brow_rgb, 0.35 * px, "brow")  # keeps the tapered tail visible

    # --- nose (landmarks 27-35) ---
    tip, nw = g.nose_tip, g.nose_width
    bridge_pix, bottom_pix = g.bridge_pix, g.nose_bottom_pix
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
    uo, mu, ml, lo = g.lip_pix
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
    if draws.noise is not None:
        arr += draws.noise * params.noise_std
    out = np.clip(arr, 0, 255).astype(np.uint8)
    masks = None
    if return_masks:
        off = _SUPERSAMPLE // 2
        masks = np.asarray(cv.labels, dtype=np.uint8)[off::_SUPERSAMPLE, off::_SUPERSAMPLE].copy()
    return RenderedFace(out, g.landmarks.astype(np.float32), params.expression, params.attributes(), masks)
