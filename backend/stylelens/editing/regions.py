"""Semantic region presets for local edits: eyes, mouth, nose, face, hair, background.

Each preset is drawn from the face's own landmarks: MediaPipe's face mesh (the ``align``
extra, the detector alignment already uses) run on the image being edited, so the region
follows the face wherever it sits in the frame. Eyes, mouth and nose are the convex hulls of
the mesh's contours for them, grown around their centres (an edit of the mouth moves the
cheeks' corners too); face is the mesh's face oval. Hair and background are not in the mesh:
they are derived from the face oval (hair: an ellipse around the head above the mouth, less
the face; background: everything outside the head and the shoulders below it) and are
approximate by design: refine them with the brush.

Without the ``align`` extra, or when no face is found in the image, a preset is refused with
the reason; the brush always works.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from stylelens.errors import LocalEditError

PRESETS: tuple[str, ...] = ("eyes", "mouth", "nose", "face", "hair", "background")

# How much each hull grows around its centre, and how many pixels (per 256) it is then dilated.
_GROW = {"eyes": 1.25, "mouth": 1.5, "nose": 1.2, "face": 1.0}


def _indices(connections: Iterable[tuple[int, int]]) -> list[int]:
    return sorted({i for pair in connections for i in pair})


def _mesh_groups() -> dict[str, list[list[int]]]:
    """Mesh point indices per preset (a preset may be several hulls: the two eyes)."""
    from mediapipe.python.solutions import face_mesh_connections as c

    return {
        "eyes": [
            _indices(c.FACEMESH_LEFT_EYE | c.FACEMESH_LEFT_EYEBROW),
            _indices(c.FACEMESH_RIGHT_EYE | c.FACEMESH_RIGHT_EYEBROW),
        ],
        "mouth": [_indices(c.FACEMESH_LIPS)],
        "nose": [_indices(c.FACEMESH_NOSE)],
        "face": [_indices(c.FACEMESH_FACE_OVAL)],
    }


def convex_hull(points: np.ndarray) -> np.ndarray:
    """Andrew's monotone chain: the hull of ``points [N, 2]``, counter-clockwise, [M, 2]."""
    pts = sorted(map(tuple, np.asarray(points, float)))
    if len(pts) < 3:
        return np.array(pts)

    def half(seq: list[tuple[float, float]]) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        for p in seq:
            while len(out) >= 2:
                (ax, ay), (bx, by) = out[-2], out[-1]
                if (bx - ax) * (p[1] - ay) - (by - ay) * (p[0] - ax) > 0:
                    break
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(pts[::-1])
    return np.array(lower[:-1] + upper[:-1])


def _fill(polygons: list[np.ndarray], resolution: int) -> np.ndarray:
    canvas = Image.new("L", (resolution, resolution), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in polygons:
        draw.polygon([(float(x), float(y)) for x, y in poly], fill=255)
    return np.asarray(canvas) >= 128


def _ellipse(resolution: int, centre: np.ndarray, radii: tuple[float, float]) -> np.ndarray:
    ys, xs = np.mgrid[0:resolution, 0:resolution] + 0.5
    return ((xs - centre[0]) / radii[0]) ** 2 + ((ys - centre[1]) / radii[1]) ** 2 <= 1.0


def regions_from_mesh(mesh: np.ndarray, resolution: int) -> dict[str, np.ndarray]:
    """Every preset as a boolean [R, R] mask from face-mesh points ``[478, 2]`` in pixels."""
    groups = _mesh_groups()
    out: dict[str, np.ndarray] = {}
    for name, hulls in groups.items():
        polys = []
        for idx in hulls:
            hull = convex_hull(mesh[idx])
            centre = hull.mean(axis=0)
            polys.append(centre + _GROW[name] * (hull - centre))
        out[name] = _fill(polys, resolution)
    oval = convex_hull(mesh[groups["face"][0]])
    lo, hi = oval.min(axis=0), oval.max(axis=0)
    centre, size = (lo + hi) / 2, hi - lo
    mouth_y = float(mesh[groups["mouth"][0]][:, 1].mean())
    ys = np.mgrid[0:resolution, 0:resolution][0] + 0.5
    head = _ellipse(
        resolution,
        centre - np.array([0.0, 0.12 * size[1]]),
        (0.68 * size[0], 0.68 * size[1]),
    )
    out["hair"] = head & ~out["face"] & (ys < mouth_y)
    around = _ellipse(resolution, centre - np.array([0.0, 0.1 * size[1]]), tuple(0.8 * size))
    shoulders = (ys > centre[1] + 0.3 * size[1]) & (
        np.abs(np.mgrid[0:resolution, 0:resolution][1] + 0.5 - centre[0]) < 1.3 * size[0]
    )
    out["background"] = ~(around | shoulders | out["face"])
    return out


def preset_regions(image: Image.Image, *, landmarker: Any = None) -> dict[str, np.ndarray]:
    """Every preset for a square image of the model's size (the face being edited).

    Raises:
        LocalEditError: the ``align`` extra is not installed, or no face is found.
    """
    from stylelens.data.align import AlignUnavailable, default_landmarker

    lm = landmarker or default_landmarker()
    try:
        faces = lm.detect(image)
        mesh = lm.mesh(image, faces[0]) if faces else None
        if mesh is None:
            mesh = lm.mesh(image)
    except AlignUnavailable as e:
        raise LocalEditError(
            f"region presets need face landmarks, which need the align extra: {e}; "
            "paint the region with the brush instead"
        ) from None
    if mesh is None:
        raise LocalEditError(
            "no face found in the image, so no region preset can be placed; paint the region "
            "with the brush instead"
        )
    return regions_from_mesh(mesh, image.width)


def preset_mask(name: str, image: Image.Image, *, landmarker: Any = None) -> np.ndarray:
    """One preset (see :data:`PRESETS`) as a boolean [R, R] mask; refusals as
    :func:`preset_regions`, and an unknown name or an empty region."""
    if name not in PRESETS:
        raise LocalEditError(f"unknown region preset {name!r}; choose from {', '.join(PRESETS)}")
    mask = preset_regions(image, landmarker=landmarker)[name]
    if not mask.any():
        raise LocalEditError(f"the {name} region is empty on this face; paint it instead")
    return mask
