"""Face alignment: any photo in, a square crop framed the way the model's faces are out.

StyleGAN2 models only reproduce faces placed the way their training images placed them. Models
trained on FFHQ saw faces upright, eyes level, eyes and mouth at fixed places; this module
re-implements the FFHQ procedure (Karras et al. 2019, ``ffhq-dataset``) from its description
(``docs/alignment.md``):

1. find the faces and their landmarks (MediaPipe face detection + face mesh, models bundled in
   the wheel, so nothing is downloaded); the largest face is used;
2. eye centres and mouth corners -> an oriented square (:func:`ffhq_quad`, pure maths);
3. crop around the quad, pad with a blurred reflection where it leaves the photo, and resample
   the quad to ``resolution`` x ``resolution`` (:func:`warp_quad`).

Models trained on SynthFaces saw faces drawn at varying places; with their framing
(``stylelens.data.framing``) step 2 is :func:`framing_quad`: the photo's own centred square when
the face already sits as the training faces do, else the square that puts it at their mean.

Coordinates are continuous pixel coordinates, ``(x, y)``: pixel ``(0, 0)`` covers ``[0, 1)^2``.
MediaPipe is imported only when a face is first detected; without it :class:`AlignUnavailable`
says how to install it.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

from stylelens.data.framing import FFHQ, UNIT_SQUARE, Framing, fit_similarity
from stylelens.errors import StyleLensError

MIN_RESOLUTION, MAX_RESOLUTION = 16, 4096
INSTALL_HINT = "face alignment needs the 'align' extra: pip install 'stylelens[align]'"

# MediaPipe face-mesh indices of the points dlib's 68-point model calls 36-41 (the eye on the
# image's left), 42-47 (image right) and 48 / 54 (mouth corners), which FFHQ was aligned with.
# The mesh contour points give the same eye centre as dlib's mean of six contour points, so the
# crops match FFHQ's statistics; the iris centres (468, 473) would follow the gaze instead.
MESH_EYE_LEFT = (33, 160, 158, 133, 153, 144)
MESH_EYE_RIGHT = (362, 385, 387, 263, 373, 380)
MESH_MOUTH_LEFT, MESH_MOUTH_RIGHT = 61, 291

DETECT_MAX_SIDE = 1024  # the photo is shrunk to this before the (192 px) face detector sees it
MESH_INPUT = 512  # the square around the chosen face is resampled to this for the face mesh


class NoFaceFound(StyleLensError):
    """No face was detected; the caller should offer a manual square crop instead."""


class AlignUnavailable(StyleLensError):
    """The optional face-landmark dependency (the ``align`` extra) is not installed."""


@dataclass(frozen=True)
class FaceLandmarks:
    """The four points FFHQ alignment uses, each ``(x, y)`` in the photo's pixel coordinates.

    ``eye_left`` / ``mouth_left`` are on the image's left (the person's right).
    """

    eye_left: tuple[float, float]
    eye_right: tuple[float, float]
    mouth_left: tuple[float, float]
    mouth_right: tuple[float, float]

    def as_array(self) -> np.ndarray:
        """``float64 [4, 2]``: eye_left, eye_right, mouth_left, mouth_right."""
        return np.array([self.eye_left, self.eye_right, self.mouth_left, self.mouth_right], float)

    @classmethod
    def from_mesh(cls, mesh: np.ndarray) -> FaceLandmarks:
        """The four points from MediaPipe's 468/478 face-mesh points ``[N, 2]``."""

        def pt(a: np.ndarray) -> tuple[float, float]:
            return (float(a[0]), float(a[1]))

        return cls(
            eye_left=pt(mesh[list(MESH_EYE_LEFT)].mean(axis=0)),
            eye_right=pt(mesh[list(MESH_EYE_RIGHT)].mean(axis=0)),
            mouth_left=pt(mesh[MESH_MOUTH_LEFT]),
            mouth_right=pt(mesh[MESH_MOUTH_RIGHT]),
        )


@dataclass(frozen=True, eq=False)  # holds an image and an array: compare fields explicitly
class AlignResult:
    """An aligned face.

    Attributes:
        image: the ``resolution`` x ``resolution`` RGB crop.
        num_faces: how many faces were detected in the photo (the largest was used).
        landmarks: the points the crop was computed from, in the photo's coordinates.
        quad: ``float64 [4, 2]`` corners in the photo (top-left, bottom-left, bottom-right,
            top-right of the crop), see :func:`ffhq_quad`.
        framing: the framing's kind (``ffhq``, ``synthfaces``).
        kept_frame: the face already sat as the framing's faces do, so the crop is the photo's
            own centred square, only resized (never for ``ffhq``).
    """

    image: Image.Image
    num_faces: int
    landmarks: FaceLandmarks
    quad: np.ndarray
    framing: str = "ffhq"
    kept_frame: bool = False

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        """Photo coordinates ``[N, 2]`` -> coordinates in :attr:`image`."""
        return quad_to_crop(self.quad, points, self.image.size[0])


def check_resolution(resolution: int) -> None:
    """Raises ValueError unless ``resolution`` is a power of two in 16-4096."""
    if not (MIN_RESOLUTION <= resolution <= MAX_RESOLUTION and resolution & (resolution - 1) == 0):
        raise ValueError(
            f"resolution {resolution}: must be a power of two from {MIN_RESOLUTION} to "
            f"{MAX_RESOLUTION} (the model's, e.g. 256 or 1024)"
        )


def ffhq_quad(landmarks: FaceLandmarks) -> np.ndarray:
    """FFHQ's oriented crop square from eye centres and mouth corners: ``float64 [4, 2]``.

    The square's x axis is the mean of the eye-to-eye direction and the eye-to-mouth direction
    turned by -90 degrees (so a tilted head comes out upright); its half-side is
    ``max(2 |eye_to_eye|, 1.8 |eye_to_mouth|)`` and its centre lies 0.1 of the way from the eyes'
    midpoint to the mouth's. Corners: top-left, bottom-left, bottom-right, top-right of the crop.

    Raises:
        ValueError: the points are degenerate (eyes on top of each other and mouth on the eyes).
    """
    eye_l, eye_r, mouth_l, mouth_r = landmarks.as_array()
    eye_avg = (eye_l + eye_r) / 2
    eye_to_eye = eye_r - eye_l
    eye_to_mouth = (mouth_l + mouth_r) / 2 - eye_avg
    # (dx, dy) turned by -90 degrees in image coordinates (y down) is (dy, -dx).
    x = eye_to_eye + np.array([eye_to_mouth[1], -eye_to_mouth[0]])
    length = float(np.hypot(*x))
    half = max(2.0 * float(np.hypot(*eye_to_eye)), 1.8 * float(np.hypot(*eye_to_mouth)))
    if length < 1e-9 or half < 1e-9:
        raise ValueError("degenerate landmarks: eyes and mouth coincide")
    x = x / length * half
    y = np.array([-x[1], x[0]])  # x turned by +90 degrees: points down the face
    c = eye_avg + 0.1 * eye_to_mouth
    return np.stack([c - x - y, c - x + y, c + x + y, c + x - y])


def framing_quad(
    landmarks: FaceLandmarks, size: tuple[int, int], framing: Framing
) -> tuple[np.ndarray, bool]:
    """The crop square for a framing with template points (``synthfaces``), and whether it is
    the photo's own frame: ``(float64 [4, 2] corners as in ffhq_quad, kept)``.

    The photo's largest centred square is kept when the face's placement in it (the similarity
    from the template points to the face's) lies within the framing's placement range: such a
    face is already framed as the training faces were. Otherwise the square is the one that
    puts the face's points on the template (the training faces' mean placement), as FFHQ does
    for every face.

    Raises:
        ValueError: the framing has no template (``ffhq``: use :func:`ffhq_quad`).
    """
    framing = framing.resolved()
    if framing.placement is None:
        raise ValueError(f"the {framing.kind} framing has no template; use ffhq_quad")
    template, points = framing.template(), landmarks.as_array()
    w, h = size
    side = min(w, h)
    origin = np.array([(w - side) // 2, (h - side) // 2], float)  # as center_crop_resize
    if framing.placement.contains(fit_similarity(template, (points - origin) / side)):
        return origin + UNIT_SQUARE * side, True
    return fit_similarity(template, points).apply(template, UNIT_SQUARE), False


def quad_to_crop(quad: np.ndarray, points: np.ndarray, resolution: int) -> np.ndarray:
    """Where photo points ``[N, 2]`` land in the ``resolution``-pixel crop of ``quad``."""
    origin, right, down = quad[0], quad[3] - quad[0], quad[1] - quad[0]
    d = np.asarray(points, float).reshape(-1, 2) - origin
    u = d @ right / float(right @ right)
    v = d @ down / float(down @ down)
    return np.stack([u, v], axis=1) * resolution


def warp_quad(
    image: Image.Image, quad: np.ndarray, resolution: int, *, supersample: int = 4
) -> Image.Image:
    """Resample the square ``quad`` of ``image`` to ``resolution`` x ``resolution``.

    As FFHQ: the photo is first box-shrunk by an integer factor while the quad stays above
    ``2 * resolution`` pixels, cropped to the quad plus a 10 % border, padded by reflection where
    the quad leaves the photo (blurred and faded towards the median colour, so the padding does not
    look like a mirrored face), warped bilinearly at ``supersample`` x the output size and then
    Lanczos-downscaled.

    Raises:
        ValueError: bad ``resolution`` or ``supersample``.
    """
    check_resolution(resolution)
    if supersample not in (1, 2, 4):
        raise ValueError(f"supersample {supersample}: must be 1, 2 or 4")
    quad = np.asarray(quad, float).copy()
    qsize = float(np.hypot(*(quad[3] - quad[0])))

    shrink = math.floor(qsize / resolution * 0.5)
    if shrink > 1:
        image = image.reduce(shrink)
        quad /= shrink
        qsize /= shrink

    border = max(int(np.rint(qsize * 0.1)), 3)
    lo = np.floor(quad.min(axis=0)).astype(int) - border
    hi = np.ceil(quad.max(axis=0)).astype(int) + border
    w, h = image.size
    box = (max(lo[0], 0), max(lo[1], 0), min(hi[0], w), min(hi[1], h))
    if box != (0, 0, w, h):
        image = image.crop(box)
        quad -= box[:2]
        lo, hi = lo - box[:2], hi - box[:2]

    w, h = image.size
    pad = np.array([-lo[0], -lo[1], hi[0] - w, hi[1] - h]).clip(0)  # left, top, right, bottom
    if pad.max() > border - 4:
        pad = np.maximum(pad, int(np.rint(qsize * 0.3))) * (pad > 0)
        image = _pad_blurred_reflection(image, pad, qsize)
        quad += pad[:2]

    size = resolution * supersample
    out = image.transform(
        (size, size), Image.Transform.QUAD, tuple(quad.flatten()), Image.Resampling.BILINEAR
    )
    if size != resolution:
        out = out.resize((resolution, resolution), Image.Resampling.LANCZOS)
    return out


def _pad_blurred_reflection(image: Image.Image, pad: np.ndarray, qsize: float) -> Image.Image:
    """Reflect-pad ``pad`` = (left, top, right, bottom) pixels; the further a padded pixel is from
    the photo, the more it is replaced by a blurred copy and then by the median colour."""
    left, top, right, bottom = (int(p) for p in pad)
    a = np.asarray(image, np.float32)
    h, w = a.shape[:2]
    a = np.pad(a, ((top, bottom), (left, right), (0, 0)), mode="reflect")
    ys, xs = np.ogrid[: a.shape[0], : a.shape[1]]
    # Fraction of the way into the padding, 0 at the photo's edge and 1 at the padding's edge.
    fx = np.maximum((left - xs) / max(left, 1), (xs - (left + w - 1)) / max(right, 1)).clip(0, 1)
    fy = np.maximum((top - ys) / max(top, 1), (ys - (top + h - 1)) / max(bottom, 1)).clip(0, 1)
    mask = np.maximum(fx, fy)[..., None].astype(np.float32)
    padded = Image.fromarray(np.rint(a).clip(0, 255).astype(np.uint8))
    blurred = np.asarray(
        padded.filter(ImageFilter.GaussianBlur(radius=max(qsize * 0.02, 1.0))), np.float32
    )
    a += (blurred - a) * (mask * 3.0).clip(0, 1)
    a += (np.median(a, axis=(0, 1)) - a) * mask
    return Image.fromarray(np.rint(a).clip(0, 255).astype(np.uint8))


def manual_crop(image: Image.Image, box: tuple[int, int, int, int], resolution: int) -> Image.Image:
    """The user's square ``box`` = (left, top, right, bottom) resized to ``resolution`` (Lanczos).

    For photos where no face is found: the web app lets the user drag a square instead.

    Raises:
        ValueError: the box is empty, not square (1 px slack), leaves the image, or the
            resolution is not a supported power of two.
    """
    check_resolution(resolution)
    left, top, right, bottom = (int(v) for v in box)
    w, h = image.size
    if right <= left or bottom <= top:
        raise ValueError(f"crop box {box}: right must exceed left and bottom must exceed top")
    if abs((right - left) - (bottom - top)) > 1:
        raise ValueError(f"crop box {box} is {right - left}x{bottom - top}; it must be square")
    if left < 0 or top < 0 or right > w or bottom > h:
        raise ValueError(f"crop box {box} leaves the {w}x{h} image")
    return image.crop((left, top, right, bottom)).resize(
        (resolution, resolution), Image.Resampling.LANCZOS
    )


# --- detection (MediaPipe) -----------------------------------------------------------------


@dataclass(frozen=True)
class DetectedFace:
    """One detected face: ``box`` = (left, top, right, bottom) in photo pixels and its score."""

    box: tuple[float, float, float, float]
    score: float

    @property
    def area(self) -> float:
        return (self.box[2] - self.box[0]) * (self.box[3] - self.box[1])


class FaceLandmarker:
    """MediaPipe's full-range face detector and refined face mesh, loaded on first use.

    One instance may be shared between threads (calls are serialised: MediaPipe graphs are not
    re-entrant). Use :func:`default_landmarker` rather than building several.
    """

    def __init__(self, *, min_confidence: float = 0.5) -> None:
        self.min_confidence = min_confidence
        self._lock = threading.Lock()
        self._detector: Any = None
        self._mesh: Any = None

    def _load(self) -> None:
        if self._mesh is not None:
            return
        try:
            from mediapipe.python.solutions import face_detection, face_mesh
        except ImportError as exc:  # absent, or numpy 2 under a numpy-1 build
            raise AlignUnavailable(f"{INSTALL_HINT} ({exc})") from None
        self._detector = face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=self.min_confidence
        )
        self._mesh = face_mesh.FaceMesh(
            static_image_mode=True,
            max_num_faces=1,
            refine_landmarks=True,
            min_detection_confidence=self.min_confidence,
        )

    def detect(self, image: Image.Image) -> list[DetectedFace]:
        """Every face the detector finds, largest first."""
        with self._lock:
            self._load()
            scale = min(1.0, DETECT_MAX_SIDE / max(image.size))
            small = image
            if scale < 1.0:
                size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
                small = image.resize(size, Image.Resampling.BILINEAR)
            found = self._detector.process(np.asarray(small.convert("RGB"))).detections or []
        faces = []
        for d in found:
            b = d.location_data.relative_bounding_box
            faces.append(
                DetectedFace(
                    box=(
                        b.xmin * image.width,
                        b.ymin * image.height,
                        (b.xmin + b.width) * image.width,
                        (b.ymin + b.height) * image.height,
                    ),
                    score=float(d.score[0]),
                )
            )
        return sorted(faces, key=lambda f: -f.area)

    def mesh(self, image: Image.Image, around: DetectedFace | None = None) -> np.ndarray | None:
        """Face-mesh points ``float64 [478, 2]`` in photo pixels, or None when none is found.

        With ``around``, the mesh sees a square twice the detected box's size around it (so a
        small face in a large photo is seen at the mesh's working size); else the whole photo.
        """
        if around is None:
            side = float(max(image.size))
            x0 = (image.width - side) / 2
            y0 = (image.height - side) / 2
        else:
            left, top, right, bottom = around.box
            side = 2.0 * max(right - left, bottom - top)
            x0 = (left + right - side) / 2
            y0 = (top + bottom - side) / 2
        n = min(MESH_INPUT, max(1, round(side)))
        crop = image.convert("RGB").transform(
            (n, n), Image.Transform.EXTENT, (x0, y0, x0 + side, y0 + side),
            Image.Resampling.BILINEAR,
        )  # fmt: skip
        with self._lock:
            self._load()
            res = self._mesh.process(np.asarray(crop))
        if not res.multi_face_landmarks:
            return None
        pts = np.array([(p.x, p.y) for p in res.multi_face_landmarks[0].landmark], float)
        return pts * side + np.array([x0, y0])


_default: FaceLandmarker | None = None
_default_lock = threading.Lock()


def default_landmarker() -> FaceLandmarker:
    """The process-wide :class:`FaceLandmarker` (models load on its first call, not here)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = FaceLandmarker()
        return _default


def warm_up() -> bool:
    """Load the detector and mesh models now (about a second), so that the first photo does
    not wait for them; False when the ``align`` extra is not installed."""
    try:
        find_landmarks(Image.new("RGB", (64, 64), (128, 128, 128)))
    except NoFaceFound:
        pass
    except AlignUnavailable:
        return False
    return True


def find_landmarks(
    image: Image.Image, *, landmarker: FaceLandmarker | None = None
) -> tuple[FaceLandmarks, int]:
    """The largest face's alignment points and how many faces were found.

    Raises:
        NoFaceFound: no face in the photo.
        AlignUnavailable: the ``align`` extra is not installed.
    """
    lm = landmarker or default_landmarker()
    faces = lm.detect(image)
    mesh = lm.mesh(image, faces[0]) if faces else None
    if mesh is None:  # the detector missed a face that fills the photo, or the mesh missed
        mesh = lm.mesh(image)
    if mesh is None:
        raise NoFaceFound(
            f"no face found in the {image.width}x{image.height} photo; crop the face by hand "
            "(a square box around it) or try a sharper, more frontal photo"
        )
    return FaceLandmarks.from_mesh(mesh), max(len(faces), 1)


def align_face(
    image: Image.Image,
    resolution: int,
    *,
    framing: Framing = FFHQ,
    landmarker: FaceLandmarker | None = None,
) -> AlignResult:
    """Detect the largest face in an upright RGB photo (see ``images.load_image``, which applies
    the EXIF orientation) and return its ``resolution`` x ``resolution`` crop, framed as
    ``framing`` says (the model card's ``framing``; default FFHQ's).

    Raises:
        ValueError: ``resolution`` is not a power of two in 16-4096.
        NoFaceFound: no face in the photo.
        AlignUnavailable: the ``align`` extra is not installed.
    """
    check_resolution(resolution)
    landmarks, num_faces = find_landmarks(image, landmarker=landmarker)
    kept = False
    if framing.kind == "ffhq":
        quad = ffhq_quad(landmarks)
    else:
        quad, kept = framing_quad(landmarks, image.size, framing)
    if kept:  # an axis-aligned square inside the photo: resized only, as center_crop_resize
        left, top = (int(v) for v in quad[0])
        side = int(quad[2, 0] - quad[0, 0])
        crop = manual_crop(image, (left, top, left + side, top + side), resolution)
    else:
        crop = warp_quad(image, quad, resolution)
    return AlignResult(
        image=crop,
        num_faces=num_faces,
        landmarks=landmarks,
        quad=quad,
        framing=framing.kind,
        kept_frame=kept,
    )
