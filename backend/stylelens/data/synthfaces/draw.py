"""SynthFaces: procedural portrait faces with known attributes.

No face photographs or pretrained weights can be downloaded where StyleLens is built, yet the
app needs a face model out of the box and its inversions and edits need ground truth. This
module draws faces from a seed: every drawn attribute is returned as a label (``ATTRIBUTES``
documents each range), so a GAN trained on them can be measured against the truth.

How a face is drawn: a background, shoulders and neck, then the head in its own rolled frame
(ears, face with Lambertian shading on an ellipsoid, wrinkles, nose, beard, mouth, eyes, brows,
glasses, hair). Yaw and pitch move features over the head as on a sphere and foreshorten them.
Edges are anti-aliased analytically: every shape is a signed distance whose pixel coverage is
``clip(0.5 - d / pixel, 0, 1)``, the box-filtered edge that supersampling converges to, at the
cost of one sample; ``supersample=k`` additionally renders k times larger and box-downsamples.
Textures (hair strands, stubble, wrinkles) are faded out where they would alias.

A seed gives the same face at every resolution (64-512); only the pixel grid changes.
"""

from __future__ import annotations

import colorsys
import math
from typing import Any

import numpy as np
from PIL import Image

from stylelens.data.synthfaces.params import BEARDS, GLASSES, HAIR_STYLES, FaceParams, sample_params

MIN_RESOLUTION, MAX_RESOLUTION = 64, 512

# Where the eyes and the mouth sit on the head, as longitude / latitude (radians) on its sphere
# (``_Head.on_sphere``). The drawing and ``landmarks`` (which face alignment derives the
# SynthFaces framing from) both read them, so the two cannot drift apart.
EYE_LON, EYE_LAT = 0.42, -0.06  # the longitude is scaled by the face's eye_spacing
MOUTH_LAT = 0.68
MOUTH_HALF_WIDTH = 0.12  # x head_scale x mouth_width x foreshortening
SMILE_LIFT = 0.055  # the mouth corners rise by smile x this x head_scale

# ----------------------------------------------------------------------------------------------
# Drawing primitives. Units: the image spans [-1, 1] in x (left to right) and y (top to bottom).


def _cov(d: np.ndarray, px: float) -> np.ndarray:
    """Pixel coverage of the region ``d < 0`` for a signed distance ``d`` (box filter)."""
    return np.clip(0.5 - d * (1.0 / px), 0.0, 1.0)


def _blend(dst: np.ndarray, color: Any, alpha: np.ndarray) -> None:
    """Paint ``color`` (an RGB triple or an [..., 3] array) over ``dst`` in place."""
    color = np.asarray(color, dtype=np.float32)
    if alpha.size > 4096:  # paint only the rows and columns the shape touches
        rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
        if len(rows) == 0:
            return
        box = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        if color.ndim == 3:
            color = np.broadcast_to(color, dst.shape)[box]
        dst, alpha = dst[box], alpha[box]
    dst += (color - dst) * alpha[..., None]


def _ellipse(u: np.ndarray, v: np.ndarray, a: float, b: float) -> np.ndarray:
    """Approximate signed distance to an axis-aligned ellipse with half-axes ``a, b``."""
    return (np.sqrt((u / a) ** 2 + (v / b) ** 2) - 1.0) * min(a, b)


def _line(d_perp: np.ndarray, width: float, px: float) -> np.ndarray:
    """Coverage of a stroke of ``width`` around ``d_perp == 0``, never thinner than a pixel."""
    w = max(width, px)
    return _cov(np.abs(d_perp) - 0.5 * w, px) * min(1.0, width / px)


def _noise(rng: np.random.Generator, shape: tuple[int, ...], cells: int) -> np.ndarray:
    """Smooth value noise in about [-1, 1] of ``shape`` (height, width, ...): a cells x cells
    random grid, bicubic-upsampled."""
    grid = rng.standard_normal((cells, cells)).astype(np.float32)
    img = Image.fromarray(grid).resize((shape[1], shape[0]), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.float32) * 0.6


def _fade(period: float, px: float) -> float:
    """Contrast for a texture of ``period`` (image units): 1 when well resolved, 0 if aliased."""
    return float(np.clip((period / px - 2.5) / 2.5, 0.0, 1.0))


class _Head:
    """The head's frame: local (u, v) from the head centre, rolled about a pivot near the chin.

    Windows are square crops of the canvas around a local point, so a feature touches only the
    pixels near it.
    """

    def __init__(self, img: np.ndarray, coords: np.ndarray, p: FaceParams) -> None:
        self.img, self.xs = img, coords
        self.n = img.shape[0]
        self.px = 2.0 / self.n
        self.s = p.head_scale
        self.a = (0.34 + 0.07 * p.face_width) * self.s  # face half-width
        self.b = 0.5 * self.s  # face half-height
        self.cx, self.cy = p.head_x, p.head_y
        r = math.radians(p.roll)
        self.cos, self.sin = math.cos(r), math.sin(r)
        self.pivot_v = 0.45 * self.b
        self.yaw = math.radians(p.yaw)
        self.pitch = math.radians(p.pitch)

    def to_image(self, u: float, v: float) -> tuple[float, float]:
        dv = v - self.pivot_v
        x = self.cx + self.cos * u - self.sin * dv
        y = self.cy + self.pivot_v + self.sin * u + self.cos * dv
        return x, y

    def window(
        self, u: float, v: float, radius: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Canvas crop around local point (u, v): ``(pixels [h, w, 3], u [h, w], v [h, w])``."""
        x, y = self.to_image(u, v)
        i0, i1 = self._span(y, radius)
        j0, j1 = self._span(x, radius)
        if i1 <= i0 or j1 <= j0:
            return None
        dx = self.xs[j0:j1][None, :] - self.cx
        dy = self.xs[i0:i1][:, None] - self.cy - self.pivot_v
        lu = self.cos * dx + self.sin * dy
        lv = -self.sin * dx + self.cos * dy + self.pivot_v
        return self.img[i0:i1, j0:j1], lu, lv

    def _span(self, c: float, r: float) -> tuple[int, int]:
        lo = math.floor((c - r + 1.0) / self.px)
        hi = math.ceil((c + r + 1.0) / self.px)
        return max(lo, 0), min(hi, self.n)

    def on_sphere(self, lon: float, lat: float, depth: float = 1.0) -> tuple[float, float, float]:
        """Local position of a point at ``lon, lat`` (radians) on the head, after yaw and pitch,
        and its horizontal foreshortening. ``depth`` > 1 for points standing out (the nose)."""
        u = self.a * depth * math.sin(lon + self.yaw)
        v = self.b * math.sin(lat + self.pitch)
        return u, v, max(math.cos(lon + self.yaw), 0.05)


# ----------------------------------------------------------------------------------------------
# The face, part by part.


def _skin_rgb(p: FaceParams) -> np.ndarray:
    light = np.array([0.97, 0.80, 0.69])
    mid = np.array([0.80, 0.57, 0.41])
    dark = np.array([0.36, 0.22, 0.14])
    t = p.skin_tone
    rgb = light + (mid - light) * (t / 0.5) if t < 0.5 else mid + (dark - mid) * ((t - 0.5) / 0.5)
    grey = rgb.mean()
    return (rgb + (grey - rgb) * 0.15 * p.age).astype(np.float32)


def _hair_rgb(p: FaceParams) -> np.ndarray:
    h = 0.01 + 0.1 * p.hair_hue
    lightness = p.hair_lightness
    rgb = np.array(colorsys.hsv_to_rgb(h, 0.75 - 0.25 * lightness, 0.07 + 0.8 * lightness))
    grey = max(0.0, p.age - 0.4) / 0.6 * 0.85
    return (rgb + (np.array([0.72, 0.72, 0.74]) - rgb) * grey).astype(np.float32)


def _light_vector(p: FaceParams) -> np.ndarray:
    ang = p.light * math.radians(65)
    v = np.array([math.sin(ang), -0.35, math.cos(ang)])
    return (v / np.linalg.norm(v)).astype(np.float32)


def _background(img: np.ndarray, xs: np.ndarray, p: FaceParams, rng: np.random.Generator) -> None:
    n = img.shape[0]
    base = np.array(
        colorsys.hsv_to_rgb(0.75 * p.background_hue, p.background_sat, p.background_val),
        dtype=np.float32,
    )
    lx = 0.8 * p.light
    glow = np.outer(np.exp(-0.8 * (xs + 0.5) ** 2), np.exp(-0.8 * (xs - lx) ** 2))  # [n, n]
    shade = 0.72 + 0.38 * glow - 0.12 * xs[:, None] + 0.06 * _noise(rng, (n, n), 4)
    img[:] = base * shade[..., None]


def _body(img: np.ndarray, xs: np.ndarray, p: FaceParams, skin: np.ndarray, px: float) -> None:
    n = img.shape[0]
    top = int(n * 0.55)
    x, y = xs[None, :], xs[top:, None]
    sub = img[top:]
    cx = p.head_x
    lit = 1.0 + 0.25 * p.light * (x - cx)
    # neck: a rounded column under the head, shadowed under the chin
    neck_w = 0.13 * p.head_scale * (0.9 + 0.2 * p.face_width)
    d_neck = np.abs(x - cx) - neck_w  # [1, n]: a column down to the shirt
    neck_shade = np.clip(0.62 + 0.5 * (y - (p.head_y + 0.45)), 0.55, 1.0) * lit
    _blend(sub, skin * neck_shade[..., None], _cov(d_neck, px))
    # shoulders and shirt, with a round neckline
    sh = _ellipse(x - cx, y - 1.22, 0.95, 0.55)
    neckline = _ellipse(x - cx, y - 0.66, neck_w * 1.25, 0.14)
    shirt = np.maximum(sh, -neckline)
    fold = 0.82 + 0.18 * np.cos((x - cx) * 3.0) * lit
    _blend(sub, np.asarray(p.shirt_rgb, np.float32) * fold[..., None], _cov(shirt, px))


def _hair_texture(
    u: np.ndarray, v: np.ndarray, noise: np.ndarray, *, curly: bool, px: float, scale: float
) -> np.ndarray:
    """Strand (or curl) pattern in about [0.7, 1.15], faded where it would alias."""
    if curly:  # ring-shaped curls around a jittered lattice of centres
        period = 0.05 * scale
        f = 2 * math.pi / period
        cu, cv = u + 0.4 * period * noise, v - 0.4 * period * noise
        cu = cu - period * np.round(cu / period)
        cv = cv - period * np.round(cv / period)
        t = np.cos(f * np.sqrt(cu * cu + cv * cv) * 1.4)
    else:
        period = 0.03 * scale
        ang = np.arctan2(u, -(v + 0.9 * scale))  # strands fan out from the crown
        t = np.sin(ang * (2 * math.pi / period) * 0.9 * scale + 6.0 * noise)
    return 0.92 + 0.22 * _fade(period, px) * t + 0.1 * noise


def _hair_back(h: _Head, p: FaceParams, hair: np.ndarray, rng: np.random.Generator) -> None:
    """Long hair falling behind the face to the shoulders; a bun on the crown."""
    style = HAIR_STYLES[p.hair_style]
    if style == "long":
        length = (0.35 + 0.45 * p.hair_length) * h.s
        top, bottom = -h.b - 0.08 * h.s, h.b + length
        mid = 0.5 * (top + bottom)
        win = h.window(0.0, mid, 0.5 * (bottom - top) + h.a + 0.3)
        if win is None:
            return
        dst, u, v = win
        half = h.a + 0.06 * h.s + 0.1 * h.s * np.clip((v - h.b * 0.2) / length, 0, 1)
        hang = np.maximum(np.abs(u) - half, np.maximum(-0.1 * h.s - v, v - bottom))
        crown = _ellipse(u, v + 0.04 * h.s, h.a + 0.07 * h.s, h.b + 0.08 * h.s)
        d = np.minimum(hang, crown)
        d = d - 0.015 * _noise(rng, u.shape, 6) * h.s
        tex = _hair_texture(u, v, _noise(rng, u.shape, 5), curly=False, px=h.px, scale=h.s)
        _blend(dst, hair * (0.75 * tex)[..., None], _cov(d, h.px))
    elif style == "bun":
        bu, bv, r = 0.0, -h.b - 0.1 * h.s, 0.16 * h.s
        win = h.window(bu, bv, r + 0.02)
        if win is None:
            return
        dst, u, v = win
        ang = np.arctan2(v - bv, u - bu)
        rad = np.sqrt((u - bu) ** 2 + (v - bv) ** 2)
        tex = 0.9 + 0.15 * _fade(0.03 * h.s, h.px) * np.sin(ang * 28 + rad * 40)
        shade = 1.05 - 0.5 * rad / r
        _blend(dst, hair * (tex * shade)[..., None], _cov(rad - r, h.px))


def _ears(h: _Head, p: FaceParams, skin: np.ndarray) -> None:
    for side in (-1.0, 1.0):
        width = 0.06 * h.s * float(np.clip(1 - side * math.sin(h.yaw) * 1.3, 0.15, 1.6))
        eu = side * (h.a * 0.98) + h.a * 0.3 * math.sin(h.yaw)
        ev = 0.02 * h.s + h.b * math.sin(h.pitch) * 0.5
        win = h.window(eu, ev, 0.12 * h.s)
        if win is None:
            continue
        dst, u, v = win
        d = _ellipse(u - eu - side * width * 0.5, v - ev, width, 0.095 * h.s)
        inner = np.exp(
            -(((u - eu - side * width * 0.5) / (0.5 * width)) ** 2 + ((v - ev) / 0.05) ** 2)
        )
        shade = (0.88 - 0.25 * inner)[..., None]
        _blend(dst, skin * shade, _cov(d, h.px))


def _face(h: _Head, p: FaceParams, skin: np.ndarray, light: np.ndarray) -> np.ndarray:
    """Draw the face (an egg, sheared by yaw toward the chin); returns its coverage window."""
    win = h.window(0.0, 0.0, h.b + 0.05)
    assert win is not None
    dst, u, v = win
    shear = math.sin(h.yaw) * h.a * 0.25 * np.clip(v / h.b, 0, 1)
    uu = u - shear
    taper = 1.0 - 0.18 * np.clip(v / h.b, 0, 1) ** 2  # narrower jaw
    d = _ellipse(uu / taper, v, h.a, h.b)
    nx = np.clip(uu / (h.a * taper), -1, 1)
    ny = np.clip(v / h.b, -1, 1)
    nz = np.sqrt(np.clip(1 - nx * nx - ny * ny, 0.0, 1.0))
    lam = np.clip(nx * light[0] + ny * light[1] + nz * light[2], 0.0, 1.0)
    shade = 0.5 + 0.58 * lam
    blush = 0.06 * np.exp(
        -(((np.abs(u) - 0.55 * h.a) / (0.2 * h.a)) ** 2 + ((v - 0.12) / 0.1) ** 2)
    )
    col = skin * shade[..., None]
    col[..., 0] += blush * shade
    alpha = _cov(d, h.px)
    _blend(dst, col, alpha)
    return alpha


def _wrinkles(h: _Head, p: FaceParams, skin: np.ndarray) -> None:
    strength = max(0.0, p.age - 0.3) / 0.7
    if strength <= 0:
        return
    fade = _fade(0.05 * h.s, h.px)  # the lines' spacing
    dark = skin * 0.55
    win = h.window(0.0, -0.36 * h.s, 0.5 * h.a)
    if win is not None:  # forehead lines
        dst, u, v = win
        alpha = np.zeros_like(u)
        for k, lv in enumerate((-0.3, -0.35, -0.4)):
            curve = lv * h.s + 0.05 * (u / h.a) ** 2 + math.sin(h.pitch) * h.b * 0.6
            line = _line(v - curve, 0.006 * h.s, h.px) * np.clip(1 - np.abs(u) / (0.45 * h.a), 0, 1)
            alpha = np.maximum(alpha, line * (0.45 - 0.1 * k))
        _blend(dst, dark, alpha * strength * fade)
    for side in (-1.0, 1.0):  # nasolabial folds, from the nose wing to past the mouth corner
        nu, nv, _ = h.on_sphere(side * 0.22, 0.24)
        win = h.window(nu, nv + 0.06 * h.s, 0.1 * h.s)
        if win is None:
            continue
        dst, u, v = win
        t = (v - nv) / (0.14 * h.s)
        curve = nu + side * 0.045 * h.s * np.clip(t, 0, 1) ** 0.7
        line = _line(u - curve, 0.007 * h.s, h.px) * np.clip(t, 0, 1) * np.clip(1.2 - t, 0, 1)
        _blend(dst, dark, line * 0.6 * strength)


def _nose(h: _Head, p: FaceParams, skin: np.ndarray) -> None:
    tu, tv, sq = h.on_sphere(0.0, 0.26 * p.nose_length, depth=1.15)
    bu, bv, _ = h.on_sphere(0.0, -0.02, depth=1.05)
    length = tv - bv
    win = h.window(0.5 * (tu + bu), 0.5 * (tv + bv), 0.5 * length + 0.07 * h.s)
    if win is None:
        return
    dst, u, v = win
    t = np.clip((v - bv) / length, 0, 1)
    axis = bu + (tu - bu) * t
    side = 1.0 if p.light < 0 else -1.0  # the shadow falls away from the light
    shadow_u = axis + side * 0.035 * h.s * (0.6 + 0.4 * t)
    shadow = np.exp(-(((u - shadow_u) / (0.016 * h.s)) ** 2)) * t * (1.0 - t**8) * (v > bv)
    _blend(dst, skin * 0.62, shadow * (0.3 + 0.25 * abs(p.light)))
    tip = np.exp(-((u - tu) ** 2 + (v - tv + 0.02 * h.s) ** 2) / (0.03 * h.s) ** 2)
    _blend(dst, np.minimum(skin * 1.18, 1.0), tip * 0.35)
    for s in (-1.0, 1.0):
        d = _ellipse(
            (u - tu - s * 0.028 * h.s * sq) / sq, v - tv - 0.008 * h.s, 0.014 * h.s, 0.008 * h.s
        )
        _blend(dst, skin * 0.3, _cov(d, h.px) * 0.85)


def _beard(h: _Head, p: FaceParams, hair: np.ndarray, rng: np.random.Generator) -> None:
    kind = BEARDS[p.beard]
    if kind == "none":
        return
    cu, cv, _ = h.on_sphere(0.0, 0.62)
    win = h.window(cu, cv, h.a + 0.04)
    if win is None:
        return
    dst, u, v = win
    shear = math.sin(h.yaw) * h.a * 0.25 * np.clip(v / h.b, 0, 1)
    uu = u - shear
    taper = 1.0 - 0.18 * np.clip(v / h.b, 0, 1) ** 2
    face = _ellipse(uu / taper, v, h.a, h.b)
    _, mv, _ = h.on_sphere(0.0, MOUTH_LAT)
    top = mv - 0.1 * h.s + 0.1 * h.s * (uu / h.a) ** 2  # below the cheekbones, over the lip
    jaw_color = hair * 0.8 if p.hair_lightness > 0.15 else hair
    if kind == "stubble":
        dots = _noise(rng, u.shape, max(8, u.shape[0] // 3))
        alpha = _cov(np.maximum(face, top - v), h.px * 6) * (0.28 + 0.14 * dots)
        _blend(dst, jaw_color * 0.6, np.clip(alpha, 0, 1) * (0.6 + 0.4 * _fade(0.01, h.px)))
    else:
        d = np.maximum(face - 0.05 * h.s, top - v) - 0.012 * h.s * _noise(rng, u.shape, 10)
        tex = 0.85 + 0.2 * _fade(0.02 * h.s, h.px) * np.sin(uu * 2 * math.pi / (0.02 * h.s))
        _blend(dst, jaw_color * tex[..., None], _cov(d, h.px) * 0.97)


def _mouth(h: _Head, p: FaceParams, skin: np.ndarray) -> None:
    cu, cv, sq = h.on_sphere(0.0, MOUTH_LAT)
    w = MOUTH_HALF_WIDTH * h.s * p.mouth_width * sq
    win = h.window(cu, cv, w + 0.03 * h.s + 0.12 * h.s)
    if win is None:
        return
    dst, u, v = win
    x = (u - cu) / w
    inside = np.clip(1 - x * x, 0, 1)  # 1 at the centre, 0 at the corners
    line = cv - p.smile * SMILE_LIFT * h.s * (1 - inside)  # corners up when smiling
    gap = p.mouth_open * 0.085 * h.s * np.sqrt(inside) * (1 + 0.3 * max(p.smile, 0))
    upper, lower = line - 0.35 * gap, line + 0.65 * gap
    lip_u = 0.018 * h.s * p.lip_fullness * np.sqrt(inside) + 1e-4
    lip_l = 0.026 * h.s * p.lip_fullness * np.sqrt(inside) + 1e-4
    across = np.abs(x) - 1.0  # < 0 between the corners
    lip_rgb = skin * np.array([0.9, 0.55, 0.55], np.float32) * (0.85 + 0.25 * p.lip_red)
    lips = np.maximum(np.maximum(upper - lip_u - v, v - lower - lip_l), across * w)
    _blend(dst, lip_rgb, _cov(lips, h.px))
    lower_lit = np.clip((v - lower) / lip_l, 0, 1) * (v > lower)
    _blend(
        dst,
        np.minimum(lip_rgb * 1.35, 1),
        np.exp(-(((lower_lit - 0.4) / 0.2) ** 2)) * 0.35 * inside,
    )
    if p.mouth_open > 0.02:
        hole = np.maximum(np.maximum(upper - v, v - lower), across * w)
        alpha = _cov(hole, h.px)
        teeth = (v < upper + 0.018 * h.s) * np.clip(1 - np.abs(x) * 1.1, 0, 1)
        col = np.where(
            teeth[..., None] > 0,
            np.array([0.93, 0.9, 0.84], np.float32),
            np.array([0.28, 0.06, 0.07], np.float32),
        )
        _blend(dst, col, alpha)
    _blend(
        dst, lip_rgb * 0.45, _line(v - line, 0.006 * h.s, h.px) * np.clip(1.05 - np.abs(x), 0, 1)
    )


def _eyes(h: _Head, p: FaceParams, skin: np.ndarray, hair: np.ndarray) -> None:
    light_u = 0.4 * p.light
    for side in (-1.0, 1.0):
        eu, ev, sq = h.on_sphere(side * EYE_LON * p.eye_spacing, EYE_LAT)
        ew = 0.075 * h.s * p.eye_size * sq
        eh = 0.042 * h.s * p.eye_size * (0.08 + 0.92 * p.eye_open)
        win = h.window(eu, ev - 0.05 * h.s, 0.14 * h.s)
        if win is None:
            continue
        dst, u, v = win
        x, y = (u - eu) / ew, v - ev
        lid = np.clip(1 - x * x, 0, 1)
        top, bottom = -eh * lid * (1 + 0.15 * x * side), 0.75 * eh * lid
        eye = np.maximum(np.maximum(top - y, y - bottom), (np.abs(x) - 1) * ew)
        # socket shadow and upper-lid crease
        socket = np.exp(-((x / 1.4) ** 2 + ((y + 0.4 * eh) / (0.05 * h.s)) ** 2))
        _blend(dst, skin * 0.72, socket * 0.35)
        crease = _line(y + eh * lid + 0.02 * h.s * lid, 0.005 * h.s, h.px) * lid
        _blend(dst, skin * 0.6, crease * 0.45)
        alpha = _cov(eye, h.px)
        _blend(dst, np.array([0.94, 0.92, 0.88], np.float32) * (0.8 + 0.2 * lid)[..., None], alpha)
        # iris, pupil and a highlight, clipped by the lids
        ir = 0.034 * h.s * p.eye_size
        r = np.sqrt(((u - eu) / sq) ** 2 + y**2)
        iris_col = np.asarray(p.iris_rgb, np.float32) * (1.1 - 0.5 * (r / ir))[..., None]
        _blend(dst, iris_col, _cov(r - ir, h.px) * alpha)
        _blend(dst, (0.03, 0.02, 0.02), _cov(r - 0.42 * ir, h.px) * alpha)
        hl = np.sqrt((u - eu - light_u * ir * 0.9) ** 2 + (y + 0.35 * ir) ** 2)
        _blend(dst, (1.0, 1.0, 1.0), _cov(hl - 0.22 * ir, h.px) * alpha * 0.9)
        # upper lid line (lashes) and the eyebrow
        _blend(
            dst,
            (0.08, 0.05, 0.04),
            _line(y - top, 0.007 * h.s, h.px) * (lid > 0) * np.clip(eh / (0.006 * h.s), 0.6, 1),
        )
        bw = 0.095 * h.s * sq
        bx = (u - eu - side * 0.01 * h.s) / bw
        brow_y = (
            ev
            - 0.085 * h.s
            - 0.02 * h.s * np.clip(1 - bx * bx, 0, 1)
            + side * p.brow_tilt * 0.03 * h.s * bx
        )
        thick = (
            0.012 * h.s * p.brow_thickness * (0.6 + 0.4 * np.clip(1 - (bx - side * 0.3) ** 2, 0, 1))
        )
        brow = np.maximum(np.abs(v - brow_y) - thick, (np.abs(bx) - 1) * bw)
        _blend(dst, hair * 0.8, _cov(brow, h.px) * 0.9)


def _glasses(h: _Head, p: FaceParams) -> None:
    kind = GLASSES[p.glasses]
    if kind == "none":
        return
    frame = np.asarray(p.glasses_rgb, np.float32)
    width = 0.012 * h.s
    centres = []
    for side in (-1.0, 1.0):
        eu, ev, sq = h.on_sphere(side * EYE_LON * p.eye_spacing, EYE_LAT)
        centres.append((eu, ev, sq))
        rw, rh = 0.1 * h.s * sq, 0.078 * h.s
        win = h.window(eu, ev, 0.12 * h.s)
        if win is None:
            continue
        dst, u, v = win
        x, y = (u - eu) / rw, (v - ev) / rh
        if kind == "round":
            d = (np.sqrt(x * x + y * y) - 1.0) * rh
        else:  # a rounded rectangle (superellipse)
            d = ((np.abs(x) ** 4 + np.abs(y) ** 4) ** 0.25 - 1.0) * rh
        lens = _cov(d, h.px)
        glint = np.clip(1 - np.abs(x + y - 0.6 * p.light) * 2.5, 0, 1)
        _blend(dst, (0.9, 0.95, 1.0), lens * (0.08 + 0.22 * glint))
        _blend(dst, frame, _line(d, width, h.px))
        # the temple arm toward the ear
        t = (u - eu) * side
        arm = np.maximum(
            np.abs(v - ev + 0.25 * rh) - 0.5 * width, np.maximum(rw - t, t - rw - 0.1 * h.s)
        )
        _blend(dst, frame, _cov(arm, h.px) * (sq if side * math.sin(h.yaw) > 0 else 1.0))
    (lu, lv, _), (ru, rv, _) = centres
    mid_u, mid_v = 0.5 * (lu + ru), 0.5 * (lv + rv)
    win = h.window(mid_u, mid_v, 0.08 * h.s)
    if win is not None:
        dst, u, v = win
        span = 0.5 * (ru - lu) - 0.1 * h.s * 0.5 * (centres[0][2] + centres[1][2])
        bridge = np.maximum(
            np.abs(v - mid_v + 0.03 * h.s + 0.01 * h.s * ((u - mid_u) / max(span, 1e-3)) ** 2)
            - 0.5 * width,
            np.abs(u - mid_u) - span - width,
        )
        _blend(dst, frame, _cov(bridge, h.px))


def _hair_front(
    h: _Head, p: FaceParams, hair: np.ndarray, light: np.ndarray, rng: np.random.Generator
) -> None:
    style = HAIR_STYLES[p.hair_style]
    if style == "bald":
        return
    win = h.window(0.0, -0.25 * h.s, h.b * 0.8 + 0.2 * h.s)
    if win is None:
        return
    dst, u, v = win
    volume = {"short": 0.045, "long": 0.06, "curly": 0.14, "bun": 0.025}[style] * h.s
    noise = _noise(rng, u.shape, 8)
    cu = 0.15 * h.a * math.sin(h.yaw)
    cap = _ellipse(u - cu, v + 0.04 * h.s, h.a + volume, h.b + volume + 0.02 * h.s)
    if style == "curly":
        ang = np.arctan2(v, u)
        cap = cap - 0.018 * h.s * np.abs(np.sin(ang * 9 + noise))
    # hairline: a fringe over the forehead, rising to the temples; a parting on one side
    pu = (u - cu) / h.a
    hairline = -0.3 * h.s + math.sin(h.pitch) * h.b * 0.7 + 0.12 * h.s * pu * pu
    hairline = hairline + 0.05 * h.s * np.clip(1 - np.abs(pu - 0.35 * p.hair_part) * 3, 0, 1)
    if style == "long":
        hairline = hairline + 0.45 * h.s * np.clip(np.abs(pu) - 0.75, 0, 1) * 3
    elif style == "curly":
        hairline = hairline + 0.3 * h.s * np.clip(np.abs(pu) - 0.8, 0, 1) * 4
    elif style in ("short", "bun"):
        hairline = hairline + 0.1 * h.s * np.clip(np.abs(pu) - 0.85, 0, 1) * 4
    hairline = hairline + 0.01 * h.s * noise
    d = np.maximum(cap, v - hairline)
    tex = _hair_texture(u, v, noise, curly=style == "curly", px=h.px, scale=h.s)
    ny = np.clip((v + 0.1 * h.s) / (h.b + volume), -1, 1)
    nx = np.clip((u - cu) / (h.a + volume), -1, 1)
    nz = np.sqrt(np.clip(1 - nx * nx - ny * ny, 0.0, 1.0))
    lam = np.clip(nx * light[0] + ny * light[1] + nz * light[2], 0, 1)
    sheen = 0.3 * np.exp(-(((lam - 0.9) / 0.08) ** 2)) * (0.3 + p.hair_lightness)
    col = hair * (0.55 + 0.55 * lam)[..., None] * tex[..., None] + sheen[..., None] * 0.5
    _blend(dst, np.clip(col, 0, 1), _cov(d, h.px))


def landmarks(params: FaceParams) -> np.ndarray:
    """Where the face's alignment points are drawn: ``float64 [4, 2]``, (x, y) as fractions of
    the image's side (x right, y down; the same at every resolution).

    Rows: the centre of the eye on the image's left, of the eye on the right, then the mouth's
    left and right corners: the points FFHQ alignment uses (``stylelens.data.align``). An eye's
    centre is the middle of its almond (where ``_eyes`` centres it), a corner is where the lip
    line ends (``_mouth``), smile included.
    """
    h = _Head(np.zeros((1, 1, 3), np.float32), np.zeros(1, np.float32), params)  # geometry only
    points = []
    for side in (-1.0, 1.0):
        eu, ev, _ = h.on_sphere(side * EYE_LON * params.eye_spacing, EYE_LAT)
        points.append(h.to_image(eu, ev))
    cu, cv, sq = h.on_sphere(0.0, MOUTH_LAT)
    w = MOUTH_HALF_WIDTH * h.s * params.mouth_width * sq
    corner_v = cv - params.smile * SMILE_LIFT * h.s
    points += [h.to_image(cu - w, corner_v), h.to_image(cu + w, corner_v)]
    return (np.array(points, np.float64) + 1.0) / 2.0  # image units [-1, 1] -> [0, 1]


def render(params: FaceParams, resolution: int, *, supersample: int = 1) -> np.ndarray:
    """Draw a face: ``uint8 [resolution, resolution, 3]``.

    Raises:
        ValueError: resolution outside 64-512 or supersample not in 1-4.
    """
    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise ValueError(
            f"resolution {resolution}: must be between {MIN_RESOLUTION} and {MAX_RESOLUTION}"
        )
    if supersample not in (1, 2, 3, 4):
        raise ValueError(f"supersample {supersample}: must be 1, 2, 3 or 4")
    n = resolution * supersample
    coords = ((np.arange(n, dtype=np.float32) + 0.5) * (2.0 / n) - 1.0).astype(np.float32)
    img = np.empty((n, n, 3), np.float32)
    rng = np.random.default_rng(params.texture_seed)
    skin, hair, light = _skin_rgb(params), _hair_rgb(params), _light_vector(params)
    px = 2.0 / n

    _background(img, coords, params, rng)
    head = _Head(img, coords, params)
    _hair_back(head, params, hair, rng)
    _body(img, coords, params, skin, px)
    _ears(head, params, skin)
    _face(head, params, skin, light)
    _wrinkles(head, params, skin)
    _nose(head, params, skin)
    _beard(head, params, hair, rng)
    _mouth(head, params, skin)
    _eyes(head, params, skin, hair)
    _glasses(head, params)
    _hair_front(head, params, hair, light, rng)

    if supersample > 1:
        img = img.reshape(resolution, supersample, resolution, supersample, 3).mean(axis=(1, 3))
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def render_face(
    seed: int, resolution: int, *, supersample: int = 1
) -> tuple[np.ndarray, dict[str, float | int]]:
    """The face for ``seed``: ``(uint8 [R, R, 3], labels)``."""
    params = sample_params(seed)
    return render(params, resolution, supersample=supersample), params.labels()
