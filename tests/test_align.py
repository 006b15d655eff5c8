"""FFHQ face alignment: the quad maths without a detector, then MediaPipe on real photos."""

from __future__ import annotations

import importlib.util
import io
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stylelens.cli import main
from stylelens.data.align import (
    AlignResult,
    AlignUnavailable,
    FaceLandmarker,
    FaceLandmarks,
    NoFaceFound,
    align_face,
    check_resolution,
    ffhq_quad,
    find_landmarks,
    manual_crop,
    quad_to_crop,
    warp_quad,
)
from stylelens.data.images import load_image

HAVE_MEDIAPIPE = importlib.util.find_spec("mediapipe") is not None
HAVE_SKIMAGE = importlib.util.find_spec("skimage") is not None
needs_detector = pytest.mark.skipif(
    not (HAVE_MEDIAPIPE and HAVE_SKIMAGE),
    reason="needs the 'align' extra and scikit-image (pip install -e '.[dev]')",
)
RES = 256
TOL_PX = 3.0  # "within a few pixels" at 256 px


def _face(eye_dist: float = 40.0, eye_mouth: float = 40.0, c=(100.0, 100.0)) -> FaceLandmarks:
    """An upright frontal face: eyes ``eye_dist`` apart, mouth ``eye_mouth`` below them."""
    cx, cy = c
    d = eye_dist / 2
    return FaceLandmarks(
        eye_left=(cx - d, cy),
        eye_right=(cx + d, cy),
        mouth_left=(cx - 0.8 * d, cy + eye_mouth),
        mouth_right=(cx + 0.8 * d, cy + eye_mouth),
    )


def _rotate_points(points: np.ndarray, degrees: float, centre: np.ndarray) -> np.ndarray:
    t = np.radians(degrees)
    rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    return (points - centre) @ rot.T + centre


def _points_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.hypot(*(a - b).T).max())


# --- pure maths ----------------------------------------------------------------------------


def test_upright_face_gives_axis_aligned_square_with_ffhq_template():
    lm = _face(eye_dist=40, eye_mouth=40)
    quad = ffhq_quad(lm)
    # half-side = max(2 * 40, 1.8 * 40) = 80; centre 0.1 of the way from eyes to mouth.
    np.testing.assert_allclose(quad, [[20, 24], [20, 184], [180, 184], [180, 24]], atol=1e-9)
    pts = quad_to_crop(quad, lm.as_array(), RES)
    # FFHQ template when the eye distance sets the scale: eyes at 3/8 and 5/8 of the width.
    np.testing.assert_allclose(pts[:2, 0], [0.375 * RES, 0.625 * RES])
    np.testing.assert_allclose(pts[:2, 1], 0.475 * RES)
    np.testing.assert_allclose(pts[2:, 1].mean(), 0.725 * RES)


def test_long_face_is_scaled_by_eye_to_mouth_distance():
    quad = ffhq_quad(_face(eye_dist=20, eye_mouth=50))
    assert np.hypot(*(quad[3] - quad[0])) == pytest.approx(2 * 1.8 * 50)
    pts = quad_to_crop(quad, _face(eye_dist=20, eye_mouth=50).as_array(), RES)
    assert pts[2:, 1].mean() == pytest.approx(0.75 * RES)  # mouth at 3/4 of the height


@pytest.mark.parametrize("degrees", [-90, -30, 12.5, 45, 180])
def test_quad_turns_with_the_face(degrees):
    lm = _face()
    centre = np.array([100.0, 100.0])
    turned = FaceLandmarks(
        *(tuple(p) for p in _rotate_points(lm.as_array(), degrees, centre))  # type: ignore[arg-type]
    )
    quad, quad_turned = ffhq_quad(lm), ffhq_quad(turned)
    np.testing.assert_allclose(quad_turned, _rotate_points(quad, degrees, centre), atol=1e-9)
    np.testing.assert_allclose(
        quad_to_crop(quad_turned, turned.as_array(), RES),
        quad_to_crop(quad, lm.as_array(), RES),
        atol=1e-9,
    )


def test_quad_corners_map_to_crop_corners():
    quad = ffhq_quad(_face())
    np.testing.assert_allclose(
        quad_to_crop(quad, quad, 64), [[0, 0], [0, 64], [64, 64], [64, 0]], atol=1e-9
    )


def test_degenerate_landmarks_are_refused():
    p = (10.0, 10.0)
    with pytest.raises(ValueError, match="degenerate"):
        ffhq_quad(FaceLandmarks(p, p, p, p))


@pytest.mark.parametrize("res", [0, 8, 100, 255, 8192])
def test_bad_resolutions_are_refused(res):
    with pytest.raises(ValueError, match="power of two"):
        check_resolution(res)


def test_warp_of_whole_image_quad_is_a_resize():
    yy, xx = np.mgrid[:256, :256] / 256
    smooth = np.stack([xx, yy, np.sin(6 * xx) * np.cos(4 * yy) / 2 + 0.5], axis=-1)
    im = Image.fromarray((smooth * 255).astype(np.uint8))
    quad = np.array([[0, 0], [0, 256], [256, 256], [256, 0]], float)
    out = warp_quad(im, quad, 64)
    ref = im.resize((64, 64), Image.Resampling.LANCZOS)
    assert out.size == (64, 64)
    assert np.abs(np.asarray(out, int) - np.asarray(ref, int)).max() <= 3


def test_quad_outside_the_photo_is_padded_not_black():
    im = Image.new("RGB", (200, 200), (200, 150, 100))
    quad = ffhq_quad(_face(eye_dist=60, eye_mouth=60, c=(30.0, 40.0)))  # reaches far off-image
    out = np.asarray(warp_quad(im, quad, 64), int)
    assert out.min() > 50  # reflected / median-filled, no black border
    np.testing.assert_allclose(out.mean(axis=(0, 1)), [200, 150, 100], atol=3)


def test_manual_crop_resizes_a_square_and_validates_it():
    im = Image.new("RGB", (300, 200), (10, 20, 30))
    assert manual_crop(im, (50, 20, 200, 170), 128).size == (128, 128)
    assert manual_crop(im, (0, 0, 201, 200), 64).size == (64, 64)  # 1 px slack
    for box, msg in [
        ((50, 20, 50, 170), "must exceed"),
        ((0, 0, 150, 100), "square"),
        ((200, 0, 400, 200), "leaves"),
        ((-10, 0, 190, 200), "leaves"),
    ]:
        with pytest.raises(ValueError, match=msg):
            manual_crop(im, box, 64)
    with pytest.raises(ValueError, match="power of two"):
        manual_crop(im, (0, 0, 200, 200), 100)


def test_missing_extra_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe.python.solutions", None)  # import -> ImportError
    with pytest.raises(AlignUnavailable, match=r"pip install 'stylelens\[align\]'"):
        align_face(Image.new("RGB", (64, 64)), 64, landmarker=FaceLandmarker())


def test_cli_missing_extra_exits_2(tmp_path, monkeypatch, capsys):
    import stylelens.data.align as align_mod

    monkeypatch.setitem(sys.modules, "mediapipe.python.solutions", None)
    monkeypatch.setattr(align_mod, "_default", FaceLandmarker())
    src = tmp_path / "a.png"
    Image.new("RGB", (64, 64)).save(src)
    assert main(["align", str(src), "--out", str(tmp_path / "o.png")]) == 2
    assert "stylelens[align]" in capsys.readouterr().err


def test_cli_bad_inputs_exit_2(tmp_path, capsys):
    bad = tmp_path / "not-an-image.png"
    bad.write_bytes(b"hello")
    assert main(["align", str(bad), "--out", str(tmp_path / "o.png")]) == 2
    assert "not an image" in capsys.readouterr().err
    assert main(["align", str(tmp_path / "missing.jpg")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert main(["align", str(bad), "--res", "300"]) == 2
    assert "power of two" in capsys.readouterr().err
    assert main(["align", str(bad), "--out", str(tmp_path / "o.gif")]) == 2
    assert main(["align", str(bad), "--out", str(tmp_path / "no" / "o.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("stylelens align: error: ") for line in err)


# --- with the detector ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())  # NASA photo, public domain, inside the wheel


@pytest.fixture(scope="module")
def aligned(astronaut) -> AlignResult:
    return align_face(astronaut, RES)


def _crop_points(crop: Image.Image) -> np.ndarray:
    """Landmarks detected again, on the aligned crop."""
    return find_landmarks(crop)[0].as_array()


@needs_detector
def test_astronaut_eyes_and_mouth_land_on_the_ffhq_template(aligned):
    assert aligned.image.size == (RES, RES) and aligned.num_faces == 1
    found = _crop_points(aligned.image)
    expected = aligned.to_crop(aligned.landmarks.as_array())  # where the template puts them
    assert _points_error(found, expected) < TOL_PX
    # Her eye distance sets the scale, so the eyes sit level at 3/8 and 5/8 of the width.
    np.testing.assert_allclose(found[:2, 0], [0.375 * RES, 0.625 * RES], atol=TOL_PX)
    assert abs(found[0, 1] - found[1, 1]) < TOL_PX


@needs_detector
@pytest.mark.parametrize("degrees", [25, -20])
def test_rotated_photo_aligns_to_the_same_crop(astronaut, aligned, degrees):
    turned = astronaut.rotate(degrees, resample=Image.Resampling.BICUBIC, expand=True)
    result = align_face(turned, RES)
    assert _points_error(_crop_points(result.image), _crop_points(aligned.image)) < TOL_PX
    diff = np.abs(np.asarray(result.image, float) - np.asarray(aligned.image, float))
    assert diff[64:192, 64:192].mean() < 12  # the face region is the same picture


@needs_detector
def test_exif_rotated_jpeg_is_turned_upright_before_detection(astronaut, aligned):
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: "rotate 90 degrees clockwise to display"
    buf = io.BytesIO()
    astronaut.transpose(Image.Transpose.ROTATE_90).save(buf, "JPEG", quality=95, exif=exif)
    photo = load_image(buf.getvalue())
    assert photo.size == astronaut.size
    result = align_face(photo, RES)
    assert _points_error(_crop_points(result.image), _crop_points(aligned.image)) < TOL_PX


@needs_detector
def test_largest_of_several_faces_is_used_and_counted(astronaut):
    group = Image.new("RGB", (1024, 512), (90, 90, 90))
    group.paste(astronaut.resize((384, 384)), (0, 64))
    group.paste(astronaut, (512, 0))
    result = align_face(group, 64)
    assert result.num_faces == 2
    assert result.landmarks.eye_left[0] > 512  # the big copy on the right


@needs_detector
def test_no_face_is_a_clear_error(tmp_path, capsys):
    rng = np.random.default_rng(1)
    sky = np.linspace(60, 200, 256)[:, None, None] + rng.normal(0, 4, (256, 384, 3))
    empty = Image.fromarray(sky.clip(0, 255).astype(np.uint8))
    with pytest.raises(NoFaceFound, match="crop the face by hand"):
        align_face(empty, RES)
    path = tmp_path / "sky.jpg"
    empty.save(path)
    assert main(["align", str(path), "--out", str(tmp_path / "o.png")]) == 2
    assert "no face found" in capsys.readouterr().err


@needs_detector
@pytest.mark.parametrize("seed", [0, 3])
def test_synthfaces_face_aligns_too(seed):
    from stylelens.data.synthfaces import render_face

    face, _ = render_face(seed, 256)
    result = align_face(Image.fromarray(face), RES)
    found = _crop_points(result.image)
    assert _points_error(found, result.to_crop(result.landmarks.as_array())) < 2 * TOL_PX


@needs_detector
def test_cli_aligns_a_photo(astronaut, tmp_path: Path, capsys):
    src = tmp_path / "astronaut.jpg"
    astronaut.save(src, quality=95)
    out = tmp_path / "crop.png"
    assert main(["align", str(src), "--res", "64", "--out", str(out)]) == 0
    assert "found 1 face" in capsys.readouterr().out
    assert Image.open(out).size == (64, 64)


def test_warm_up_says_whether_alignment_is_available(monkeypatch):
    import stylelens.data.align as align_mod

    assert align_mod.warm_up() is HAVE_MEDIAPIPE
    monkeypatch.setitem(sys.modules, "mediapipe.python.solutions", None)
    monkeypatch.setattr(align_mod, "_default", FaceLandmarker())
    assert align_mod.warm_up() is False


# --- framings: the model's, from its card ---------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
SYNTHFACES_MODEL = ROOT / "models" / "synthfaces-256"


def _psnr(a, b) -> float:
    d = np.asarray(a, np.float64) - np.asarray(b, np.float64)
    return float(10 * np.log10(255.0**2 / np.mean(d * d)))


def _png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG")
    return buf.getvalue()


def _drawn_landmarks(seed: int, size: int, *, scale: float = 1.0, offset=(0.0, 0.0)):
    """Where the renderer draws a face's four points when its ``size`` px drawing is pasted
    ``scale`` times as large at ``offset`` (no detector involved)."""
    from stylelens.data.synthfaces.draw import landmarks
    from stylelens.data.synthfaces.params import sample_params

    pts = landmarks(sample_params(seed)) * size * scale + np.asarray(offset)
    return FaceLandmarks(*(tuple(p) for p in pts))  # type: ignore[arg-type]


def test_similarity_fit_recovers_scale_roll_and_shift():
    from stylelens.data.framing import Similarity, fit_similarity

    src = np.array([[0.4, 0.45], [0.6, 0.45], [0.44, 0.64], [0.56, 0.64]])
    truth = Similarity(scale=1.13, roll_deg=-9.5, shift=(0.03, -0.02))
    fit = fit_similarity(src, truth.apply(src, src))
    assert fit.scale == pytest.approx(1.13)
    assert fit.roll_deg == pytest.approx(-9.5)
    np.testing.assert_allclose(fit.shift, (0.03, -0.02), atol=1e-12)
    with pytest.raises(ValueError, match="degenerate"):
        fit_similarity(np.zeros((4, 2)), src)


def test_embedded_card_framing_is_the_renderers_derived_one():
    from stylelens.checkpoints.native import load_card
    from stylelens.data.synthfaces.framing import derive_framing

    framing = load_card(SYNTHFACES_MODEL).framing
    assert framing.kind == "synthfaces"
    assert framing == derive_framing()  # not hand-tuned: it follows draw.py and params.py
    eye_l, eye_r, mouth_l, _ = framing.template()
    # Smaller in the frame than FFHQ's (eyes 1/4 of the width apart there), eyes level.
    assert 0.13 < eye_r[0] - eye_l[0] < 0.17 and abs(eye_l[1] - eye_r[1]) < 0.002
    assert mouth_l[1] > eye_l[1] + 0.15


def test_cards_without_a_framing_get_ffhq_or_synthfaces_from_their_training_data():
    import json

    from stylelens.checkpoints.native import ModelCard
    from stylelens.data.framing import FFHQ, Framing

    raw = json.loads((SYNTHFACES_MODEL / "card.json").read_text())
    written = ModelCard.model_validate(raw).framing
    del raw["framing"]
    card = ModelCard.model_validate(raw)
    assert card.framing == Framing(kind="synthfaces")  # its numbers come from the renderer
    assert card.framing.resolved() == written
    del raw["training"]
    assert ModelCard.model_validate(raw).framing == FFHQ
    with pytest.raises(ValueError, match="FFHQ's quad"):
        Framing(kind="ffhq", points=((0, 0),) * 4, placement=card.framing.resolved().placement)


def test_converted_checkpoints_say_ffhq(models_dir: Path):
    import json

    for name in ("tiny-nvidia", "tiny-rosinality"):
        card = json.loads((models_dir / name / "card.json").read_text())
        assert card["framing"]["kind"] == "ffhq"


def test_a_face_placed_as_the_renderer_places_it_keeps_its_frame():
    from stylelens.checkpoints.native import load_card
    from stylelens.data.align import framing_quad

    framing = load_card(SYNTHFACES_MODEL).framing
    for seed in range(8):
        quad, kept = framing_quad(_drawn_landmarks(seed, 512), (512, 512), framing)
        assert kept
        np.testing.assert_allclose(quad, [[0, 0], [0, 512], [512, 512], [512, 0]])
    # A wider photo: its centred square is the frame looked at.
    quad, kept = framing_quad(_drawn_landmarks(0, 512, offset=(64, 0)), (640, 512), framing)
    assert kept and quad[0].tolist() == [64, 0]


def test_a_face_placed_otherwise_is_moved_to_the_mean_placement():
    from stylelens.checkpoints.native import load_card
    from stylelens.data.align import framing_quad

    framing = load_card(SYNTHFACES_MODEL).framing
    for scale, offset in [(0.5, (300.0, 100.0)), (1.8, (-200.0, -150.0))]:  # small, zoomed in
        lm = _drawn_landmarks(5, 512, scale=scale, offset=offset)
        quad, kept = framing_quad(lm, (1024, 768), framing)
        assert not kept
        in_crop = quad_to_crop(quad, lm.as_array(), 1)
        # The least-squares fit puts the face's points near the template (the face's own
        # proportions differ from the mean face's a little).
        assert _points_error(in_crop, framing.template()) < 0.02
    # FFHQ's framing has no template: it goes through ffhq_quad.
    from stylelens.data.framing import FFHQ

    with pytest.raises(ValueError, match="ffhq_quad"):
        framing_quad(_drawn_landmarks(5, 512), (512, 512), FFHQ)


@pytest.fixture(scope="module")
def synthfaces_app(tmp_path_factory: pytest.TempPathFactory):
    from fastapi.testclient import TestClient

    from stylelens.api.app import create_app
    from stylelens.settings import Settings

    settings = Settings(
        models_dir=SYNTHFACES_MODEL.parent,
        default_model=SYNTHFACES_MODEL.name,
        data_dir=tmp_path_factory.mktemp("data"),
        device="cpu",
        perceptual="ms-ssim",
        allowed_hosts=["testserver"],
    )
    with TestClient(create_app(settings)) as client:
        yield client


def _upload(client, data: bytes) -> tuple[dict, Image.Image]:
    sid = client.post("/api/sessions").json()["id"]
    r = client.post(f"/api/sessions/{sid}/uploads", files={"file": ("f.png", data, "image/png")})
    assert r.status_code == 200, r.text
    body = r.json()
    crop = Image.open(io.BytesIO(client.get(body["crop_url"]).content)).convert("RGB")
    return body, crop


@needs_detector
@pytest.mark.parametrize("seed", [0, 3])
def test_a_512px_synthface_uploaded_comes_back_as_its_256px_drawing(synthfaces_app, seed):
    """Through the real upload route: the embedded model's framing keeps the drawing's frame.
    (FFHQ's quad, what every upload got before, gives 9-15 dB here.)"""
    from stylelens.data.synthfaces import render_face

    big, _ = render_face(seed, 512)
    small, _ = render_face(seed, 256)
    body, crop = _upload(synthfaces_app, _png(big))
    assert crop.size == (256, 256)
    assert _psnr(crop, small) >= 30.0
    assert body.get("framing") == "synthfaces" and body.get("kept_frame") is True


@needs_detector
def test_a_model_sample_sent_back_keeps_its_frame(synthfaces_app):
    import torch

    from stylelens.checkpoints.native import load_generator
    from stylelens.render import to_uint8, z_from_seed

    G, _ = load_generator(SYNTHFACES_MODEL)
    with torch.no_grad():
        sample = to_uint8(G.synthesis(G.mapping(z_from_seed(1234, G.z_dim), truncation_psi=0.7)))
    body, crop = _upload(synthfaces_app, _png(sample[0]))
    assert body["kept_frame"] is True
    np.testing.assert_array_equal(np.asarray(crop), sample[0])  # 256 -> 256: the sample itself


def test_uploads_to_the_synthfaces_model_carry_the_photo_notice(synthfaces_app):
    body, _ = _upload(synthfaces_app, _png(np.full((64, 64, 3), 128, np.uint8)))
    notice = body["photo_notice"]
    assert "cannot represent photographs" in notice
    assert "stylelens fetch ffhq-256" in notice and "stylelens fetch --list" in notice


@needs_detector
def test_photos_still_align_the_ffhq_way_for_ffhq_models(models_dir: Path, tmp_path, astronaut):
    from fastapi.testclient import TestClient

    from stylelens.api.app import create_app
    from stylelens.settings import Settings

    settings = Settings(
        models_dir=models_dir,
        default_model="tiny-nvidia",
        data_dir=tmp_path,
        device="cpu",
        perceptual="ms-ssim",
        allowed_hosts=["testserver"],
    )
    buf = io.BytesIO()
    astronaut.save(buf, "PNG")
    with TestClient(create_app(settings)) as client:
        body, crop = _upload(client, buf.getvalue())
    assert body["framing"] == "ffhq" and body["kept_frame"] is False
    assert body["photo_notice"] is None
    expected = align_face(astronaut, 32).image
    assert np.abs(np.asarray(crop, int) - np.asarray(expected, int)).max() <= 1


@needs_detector
def test_invert_and_align_commands_use_the_models_framing(tmp_path, capsys):
    from stylelens.checkpoints.native import load_card
    from stylelens.data.synthfaces import render_face
    from stylelens.inversion.cli import _crop

    big, _ = render_face(3, 512)
    small, _ = render_face(3, 256)
    framing = load_card(SYNTHFACES_MODEL).framing
    target, how = _crop(Image.fromarray(big), 256, "auto", framing)
    assert _psnr(target, small) >= 30.0 and "synthfaces-aligned" in how and "kept" in how
    src, out = tmp_path / "face.png", tmp_path / "crop.png"
    Image.fromarray(big).save(src)
    args = ["align", str(src), "--out", str(out)]
    models = ["--model", SYNTHFACES_MODEL.name, "--models-dir", str(SYNTHFACES_MODEL.parent)]
    assert main([*args, *models]) == 0
    assert "256x256, synthfaces framing, own frame kept" in capsys.readouterr().out
    assert _psnr(Image.open(out).convert("RGB"), small) >= 30.0
    assert main([*args, "--model", "nope", "--models-dir", str(tmp_path)]) == 2
    assert "no model 'nope'" in capsys.readouterr().err


def test_export_of_a_synthfaces_run_writes_the_renderers_framing():
    from stylelens.data.synthfaces.framing import derive_framing
    from stylelens.training.export import _framing

    assert _framing({"source": "synthfaces", "num_images": 10}) == derive_framing()
    assert _framing({"source": "/data/photos"}) is None  # the card's default: FFHQ's
