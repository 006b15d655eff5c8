"""The page in a real browser: Playwright driving Debian's Chromium against a real uvicorn.

Skipped unless ``chromium`` is on PATH and the ``playwright`` package is installed (no browser
download: ``apt-get install chromium`` and ``pip install playwright``). Screenshots go to
``out/browser/`` (or ``$STYLELENS_SCREENSHOTS``) for a person to look at.
"""

from __future__ import annotations

import io
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from stylelens.api.app import create_app
from tests.live import live_server
from tests.test_api import settings_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's chromium on PATH")
playwright_sync = pytest.importorskip("playwright.sync_api")
SHOTS = Path(os.environ.get("STYLELENS_SCREENSHOTS", Path(__file__).parents[1] / "out" / "browser"))


@pytest.fixture()
def server(app_models: Path, tmp_path: Path) -> Iterator[str]:
    app = create_app(settings_for(app_models, tmp_path / "data", serve_models=["tiny-b"]))
    with live_server(app) as base:
        yield base


def face_file(tmp_path: Path) -> Path:
    im = Image.new("RGB", (120, 90), (210, 170, 140))
    im.paste((60, 40, 30), (40, 20, 80, 50))
    path = tmp_path / "face.png"
    im.save(path)
    return path


def canvas_pixels(page: object) -> list[int]:
    return page.evaluate(  # type: ignore[attr-defined, no-any-return]
        "Array.from(document.getElementById('preview').getContext('2d')"
        ".getImageData(0, 0, 256, 256).data.filter((_, i) => i % 97 === 0))"
    )


def test_upload_invert_slide_commit_download(server: str, tmp_path: Path) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_sync.sync_playwright() as p:
        browser = launch(p)
        page, errors = open_page(
            browser, server, viewport={"width": 1280, "height": 800}, accept_downloads=True
        )
        assert "tiny" in page.locator("#model").inner_text()
        order = []
        for _ in range(3):  # keyboard users reach the model picker, Models, the file picker
            page.keyboard.press("Tab")
            order.append(page.evaluate("document.activeElement.id"))
        assert order == ["model-picker", "models-open", "file"]
        page.set_input_files("#file", str(face_file(tmp_path)))
        page.wait_for_function("document.getElementById('target').src.includes('/files/')")
        first_target = page.locator("#target").get_attribute("src")
        page.locator("#manual summary").click()  # no face found here: choose the square
        page.locator("#crop-size").focus()
        for _ in range(10):
            page.keyboard.press("ArrowLeft")
        page.click("#crop-use")
        page.wait_for_function(
            "document.getElementById('upload-note').textContent === 'your square is used'"
        )
        assert page.locator("#target").get_attribute("src") != first_target
        page.fill("#steps", "30")
        page.click("#start")
        page.wait_for_function(
            "Number(document.getElementById('preview').dataset.frames || 0) >= 5", timeout=60000
        )
        page.wait_for_function(
            "document.getElementById('progress').textContent.startsWith('done')", timeout=60000
        )
        page.screenshot(path=str(SHOTS / "1-inverted.png"))
        page.wait_for_timeout(300)  # the post-inversion render
        before = canvas_pixels(page)
        frames = int(page.locator("#preview").get_attribute("data-frames") or 0)
        slider = page.locator("#dir-smile")
        slider.focus()
        for _ in range(20):
            page.keyboard.press("ArrowRight")
        page.wait_for_function(
            f"Number(document.getElementById('preview').dataset.frames) > {frames}"
        )
        page.wait_for_timeout(300)
        assert canvas_pixels(page) != before
        page.screenshot(path=str(SHOTS / "2-edited.png"))
        page.click("#commit")
        link = page.locator("#results a", has_text="PNG").first
        link.wait_for()
        with page.expect_download() as dl:
            link.click()
        png = Path(dl.value.path())
        assert Image.open(io.BytesIO(png.read_bytes())).size == (32, 32)
        old_session = page.evaluate("localStorage.getItem('stylelens.session')")
        page.select_option("#model-picker", "tiny-b")  # another model: a new session
        page.wait_for_function(
            "document.getElementById('model').textContent.includes('tiny-rosinality')"
        )
        assert page.evaluate("localStorage.getItem('stylelens.session')") != old_session
        assert page.locator("#results li").count() == 0
        page.set_viewport_size({"width": 390, "height": 844})
        page.screenshot(path=str(SHOTS / "3-phone.png"), full_page=True)
        assert not errors, errors
        browser.close()


def test_uploads_to_a_synthfaces_model_show_the_photo_notice(
    app_models: Path,
    tmp_path: Path,
) -> None:
    import json

    models = tmp_path / "models"
    shutil.copytree(app_models / "tiny", models / "tiny")
    card_path = models / "tiny" / "card.json"
    card = json.loads(card_path.read_text())
    card.pop("framing", None)
    card["training"] = {"data": {"source": "synthfaces"}}  # as a SynthFaces run's export says
    card_path.write_text(json.dumps(card))
    app = create_app(settings_for(models, tmp_path / "data"))
    with live_server(app) as base, playwright_sync.sync_playwright() as p:
        browser = launch(p)
        page, errors = open_page(
            browser,
            base,
        )
        page.set_input_files("#file", str(face_file(tmp_path)))
        notice = page.locator("#photo-notice")
        notice.wait_for(state="visible")
        assert "cannot represent photographs" in notice.inner_text()
        assert "stylelens fetch ffhq-256" in notice.inner_text()
        assert not errors, errors
        browser.close()


def launch(p: object) -> object:
    return p.chromium.launch(  # type: ignore[attr-defined]
        executable_path=CHROMIUM,
        headless=True,
        args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
    )


def open_page(browser: Any, url: str, **page_options: Any) -> tuple[Any, list[str]]:
    """A new page of ``browser`` at ``url``, online (its socket greeted); the list collects
    the page's uncaught errors (a test ends by asserting it empty)."""
    page = browser.new_page(**page_options)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url + "/")
    page.wait_for_selector("#conn.online")
    return page, errors


REFUSAL_PROBE = """async ([url]) => {
  const { Client } = await import("/js/client.js");
  return await new Promise((resolve) => {
    const seen = [];
    const client = new Client(url, {
      onEvent: (e) => seen.push(`event ${e.type} ${e.code ?? ""}`.trim()),
      onFrame: () => {},
      onStatus: (s) => {
        seen.push(s);  // wait on: a client that reconnects would add "reconnecting"
        if (s === "gone" || s === "refused") setTimeout(() => resolve(seen), 1500);
        if (s === "reconnecting") { client.close(); resolve(seen); }
      },
    });
    client.connect();
  });
}"""


def test_refusals_say_why_and_inversions_outlive_reloads_and_absences(
    app_models: Path,
    tmp_path: Path,
) -> None:
    settings = settings_for(app_models, tmp_path / "data").model_copy(
        update={
            "allowed_hosts": ["127.0.0.1", "localhost"],
            "reconnect_grace_s": 1.0,
            "checkpoint_interval_s": 0.2,
        }
    )
    SHOTS.mkdir(parents=True, exist_ok=True)
    with live_server(create_app(settings)) as base, playwright_sync.sync_playwright() as p:
        browser = launch(p)
        context = browser.new_context()  # type: ignore[attr-defined]
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(base + "/")
        page.wait_for_selector("#conn.online")
        port = base.rsplit(":", 1)[1]
        sid = page.evaluate("localStorage.getItem('stylelens.session')")
        # An unknown session: 4404, the client says "gone" and does not reconnect.
        gone = page.evaluate(REFUSAL_PROBE, [f"ws://127.0.0.1:{port}/api/ws?session={'x' * 32}"])
        assert gone == ["gone", "event session_gone"], gone
        # Another origin (the page is 127.0.0.1, the socket localhost): 4403, "refused".
        refused = page.evaluate(REFUSAL_PROBE, [f"ws://localhost:{port}/api/ws?session={sid}"])
        assert refused == ["refused", "event error refused"], refused

        # A reload while the inversion runs: the stream goes on, no click needed.
        page.set_input_files("#file", str(face_file(tmp_path)))
        page.wait_for_function("document.getElementById('target').src.includes('/files/')")
        page.select_option("#engine", "adam")
        page.fill("#steps", "1000")
        page.click("#start")
        page.wait_for_function("Number(document.getElementById('preview').dataset.frames) >= 3")
        page.reload()
        page.wait_for_selector("#conn.online")
        page.wait_for_function("Number(document.getElementById('preview').dataset.frames) >= 3")
        assert page.locator("#stop").is_enabled()  # it knows the inversion is its own
        assert page.locator("#progress").inner_text().startswith(("resumed", "step"))

        # Away longer than the grace: the inversion stops; back, its latent is offered.
        page.close()
        time.sleep(2.5)
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(base + "/")
        offer = page.locator("#interrupted")
        offer.wait_for(state="visible")
        assert "away too long" in offer.inner_text() and "of 1000" in offer.inner_text()
        page.screenshot(path=str(SHOTS / "4-interrupted.png"))
        page.click("#interrupted-use")
        page.wait_for_function("Number(document.getElementById('preview').dataset.frames) >= 1")
        assert offer.is_hidden() and page.locator("#commit").is_enabled()
        assert not errors, errors
        browser.close()  # type: ignore[attr-defined]


CAPTIONS = """() => {
  window.captions = [];
  new MutationObserver(() => {
    const text = document.getElementById('preview-caption').textContent;
    if (window.captions[window.captions.length - 1] !== text) window.captions.push(text);
  }).observe(document.getElementById('preview-caption'),
             {childList: true, characterData: true, subtree: true});
}"""


def invert_watching_captions(page: Any, photo: Path, *, steps: int) -> list[str]:
    """Upload ``photo``, invert it for ``steps`` steps; every preview caption shown meanwhile."""
    page.set_input_files("#file", str(photo))
    page.wait_for_function("document.getElementById('target').src.includes('/files/')")
    page.evaluate(CAPTIONS)
    page.fill("#steps", str(steps))
    page.click("#start")
    page.wait_for_function(
        "document.getElementById('progress').textContent.startsWith('done')", timeout=60000
    )
    return list(page.evaluate("window.captions"))


def test_inversion_starts_from_the_encoders_guess_and_says_so(
    app_models: Path,
    tmp_path: Path,
) -> None:
    """On a model with an encoder the first picture of an inversion is the encoder's guess,
    captioned as such, then the engine's previews; a model without one never shows it."""
    from stylelens.checkpoints.native import load_generator
    from stylelens.encoders.store import save_encoder
    from tests.test_encoder_use import CONFIG, tiny_encoder

    models = tmp_path / "models"
    shutil.copytree(app_models / "tiny", models / "tiny")
    shutil.copytree(app_models / "tiny-b", models / "tiny-b")
    G, _ = load_generator(models / "tiny")
    save_encoder(models / "tiny", tiny_encoder(G), architecture="light", config=CONFIG,
                 info={"trained": "test fixture"})  # fmt: skip
    app = create_app(settings_for(models, tmp_path / "data", serve_models=["tiny-b"]))
    SHOTS.mkdir(parents=True, exist_ok=True)
    with live_server(app) as base, playwright_sync.sync_playwright() as p:
        browser = launch(p)
        page, errors = open_page(browser, base, viewport={"width": 1280, "height": 800})
        captions = invert_watching_captions(page, face_file(tmp_path), steps=20)
        assert captions[0] == "the encoder's guess (one pass)", captions
        steps = [c for c in captions if c.startswith("preview · step")]
        assert steps and captions.index(steps[0]) > 0, captions
        page.screenshot(path=str(SHOTS / "4-encoder-guess-then-refined.png"))
        # the model without an encoder starts from w_avg: no guess is announced
        page.select_option("#model-picker", "tiny-b")
        page.wait_for_function(
            "document.getElementById('model').textContent.includes('tiny-rosinality')"
        )
        second = tmp_path / "second"
        second.mkdir()
        captions = invert_watching_captions(page, face_file(second), steps=5)  # a new file
        assert captions and "the encoder's guess (one pass)" not in captions, captions
        assert not errors, errors
        browser.close()  # type: ignore[attr-defined]


MASK_PAINT = """() => {
  const c = document.getElementById('mask');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i] >= 128) n++;
  return n;
}"""


def test_restore_panel_paints_a_mask_inpaints_and_hands_off_to_the_sliders(
    server: str, tmp_path: Path
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_sync.sync_playwright() as p:
        browser = launch(p)
        page, errors = open_page(browser, server, viewport={"width": 1280, "height": 900})
        assert page.locator("#restore").is_visible()
        page.set_input_files("#file", str(face_file(tmp_path)))
        page.wait_for_function("document.getElementById('target').src.includes('/files/')")
        page.select_option("#restore-task", "superres")
        assert page.locator("#restore-scale-row").is_visible()
        page.select_option("#restore-task", "inpaint")
        mask = page.locator("#mask")
        mask.wait_for(state="visible")
        assert page.evaluate("document.getElementById('mask').width") == 32  # the model's size
        page.click("#restore-start")  # nothing painted yet: refused with a message
        page.wait_for_function("document.getElementById('message').textContent.includes('Paint')")
        box = mask.bounding_box()
        assert box is not None
        x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
        page.mouse.move(x0 + 0.25 * w, y0 + 0.5 * h)
        page.mouse.down()
        page.mouse.move(x0 + 0.75 * w, y0 + 0.55 * h, steps=8)
        page.mouse.up()
        painted = page.evaluate(MASK_PAINT)
        assert painted > 20
        page.click("#mask-eraser")  # erase a bit of it
        page.mouse.move(x0 + 0.5 * w, y0 + 0.52 * h)
        page.mouse.down()
        page.mouse.up()
        assert 0 < page.evaluate(MASK_PAINT) < painted
        page.keyboard.press("Control+z")  # undo covers the mask: the erasure is gone
        assert page.evaluate(MASK_PAINT) == painted
        page.click("#undo")  # and the stroke
        assert page.evaluate(MASK_PAINT) == 0
        page.click("#redo")
        assert page.evaluate(MASK_PAINT) == painted
        page.screenshot(path=str(SHOTS / "5-mask-painted.png"))
        page.click("#restore-start")
        page.wait_for_function(
            "Number(document.getElementById('preview').dataset.frames || 0) >= 3", timeout=60000
        )
        assert page.locator("#stop").is_enabled()
        page.wait_for_function(
            "document.getElementById('progress').textContent.startsWith('done')", timeout=120000
        )
        assert "% of the face to fill in" in page.locator("#restore-note").inner_text()
        assert "Restored" in page.locator("#message").inner_text()
        link = page.locator("#results a", has_text="PNG").first
        link.wait_for()
        page.wait_for_function(  # the restoration itself is shown, not its W+ latent's render
            "document.getElementById('preview-caption').textContent.startsWith('restored')"
        )
        page.screenshot(path=str(SHOTS / "6-restored.png"))
        frames = int(page.locator("#preview").get_attribute("data-frames") or 0)
        slider = page.locator("#dir-smile")  # the sliders edit the hand-off's latent
        slider.focus()
        for _ in range(10):
            page.keyboard.press("ArrowRight")
        page.wait_for_function(
            f"Number(document.getElementById('preview').dataset.frames) > {frames}"
        )
        page.select_option("#restore-task", "colorize")
        page.click("#restore-start")
        page.wait_for_function(
            "document.getElementById('restore-note').textContent.includes('converted to gray')",
            timeout=60000,
        )
        assert not errors, errors
        browser.close()  # type: ignore[attr-defined]


REGION_PAINT = MASK_PAINT.replace("'mask'", "'region-mask'")
PREVIEW_BOX = """([x0, y0, x1, y1]) => Array.from(document.getElementById('preview')
  .getContext('2d').getImageData(x0, y0, x1 - x0, y1 - y0).data)"""


def test_edit_only_here_paints_a_region_and_the_slider_changes_only_it(server: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_sync.sync_playwright() as p:
        browser = launch(p)
        page, errors = open_page(browser, server, viewport={"width": 1280, "height": 1000})
        page.fill("#seed", "5")
        page.click("#random-form button")
        page.wait_for_function("Number(document.getElementById('preview').dataset.frames) >= 1")
        page.check("#region-on")
        region = page.locator("#region-mask")
        region.wait_for(state="visible")
        assert "Paint the region" in page.locator("#region-note").inner_text()
        # A preset needs landmarks the tiny model's faces do not have: refused, with the reason.
        page.select_option("#region-preset", "mouth")
        page.click("#region-preset-add")
        page.wait_for_function(
            "document.getElementById('message').textContent.includes('paint the region')"
        )
        box = region.bounding_box()
        assert box is not None
        x0, y0, w, h = box["x"], box["y"], box["width"], box["height"]
        page.mouse.move(x0 + 0.1 * w, y0 + 0.15 * h)  # the top-left of the face
        page.mouse.down()
        page.mouse.move(x0 + 0.35 * w, y0 + 0.3 * h, steps=8)
        page.mouse.up()
        assert page.evaluate(REGION_PAINT) > 5
        page.wait_for_function(
            "document.getElementById('region-note').textContent.startsWith('region:')"
        )

        def frames() -> int:
            return int(page.locator("#preview").get_attribute("data-frames") or 0)

        def slide() -> None:  # one gesture: drag the smile slider to its right end
            n = frames()
            track = page.locator("#dir-smile").bounding_box()
            assert track is not None
            y = track["y"] + track["height"] / 2
            page.mouse.move(track["x"] + track["width"] / 2, y)
            page.mouse.down()
            page.mouse.move(track["x"] + track["width"] - 1, y, steps=6)
            page.mouse.up()
            page.wait_for_function(
                f"Number(document.getElementById('preview').dataset.frames) > {n}"
            )
            time.sleep(0.5)  # the last frame of the burst

        far, near = [160, 160, 256, 256], [24, 40, 90, 80]
        before_far, before_near = page.evaluate(PREVIEW_BOX, far), page.evaluate(PREVIEW_BOX, near)
        slide()
        after_far, after_near = page.evaluate(PREVIEW_BOX, far), page.evaluate(PREVIEW_BOX, near)
        page.screenshot(path=str(SHOTS / "7-edit-only-here.png"))

        def diff(a: list[int], b: list[int]) -> float:
            return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(a)

        assert diff(before_far, after_far) <= 1.0  # outside the region: the original
        assert diff(before_near, after_near) > 3.0  # inside: the edit

        # One history for strokes and sliders: Undo takes back the slider, then the stroke.
        def settle(n: int) -> None:
            page.wait_for_function(
                f"Number(document.getElementById('preview').dataset.frames) > {n}"
            )
            time.sleep(0.5)

        n = frames()
        page.keyboard.press("Control+z")
        settle(n)
        assert page.evaluate(REGION_PAINT) > 5
        assert diff(before_near, page.evaluate(PREVIEW_BOX, near)) <= 1.0
        page.keyboard.press("Control+z")
        assert page.evaluate(REGION_PAINT) == 0
        page.wait_for_function(
            "document.getElementById('region-note').textContent.includes('Paint the region')"
        )
        page.keyboard.press("Control+Shift+z")  # the stroke is back
        assert page.evaluate(REGION_PAINT) > 5
        page.wait_for_function(
            "document.getElementById('region-note').textContent.startsWith('region:')"
        )
        n = frames()
        page.keyboard.press("Control+Shift+z")  # and the slider
        settle(n)
        assert diff(before_near, page.evaluate(PREVIEW_BOX, near)) > 3.0
        assert diff(before_far, page.evaluate(PREVIEW_BOX, far)) <= 1.0
        # Without the region the same slider moves the whole face.
        n = frames()
        page.uncheck("#region-on")
        settle(n)
        assert diff(before_far, page.evaluate(PREVIEW_BOX, far)) > 3.0
        assert not errors, errors
        browser.close()  # type: ignore[attr-defined]


def test_the_page_works_on_a_phone_with_the_keyboard_alone(server: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    with playwright_sync.sync_playwright() as p:
        browser = launch(p)
        page, errors = open_page(
            browser, server, viewport={"width": 390, "height": 844}, is_mobile=True
        )
        # One column: nothing wider than the screen.
        assert page.evaluate("document.documentElement.scrollWidth") <= 390

        def tab_to(element_id: str, limit: int = 80) -> None:
            for _ in range(limit):
                page.keyboard.press("Tab")
                if (
                    page.evaluate("document.activeElement && document.activeElement.id")
                    == element_id
                ):
                    return
            raise AssertionError(f"Tab never reached #{element_id}")

        tab_to("seed")
        page.keyboard.press("Control+a")
        page.keyboard.type("3")
        page.keyboard.press("Enter")  # submits the random-face form
        page.wait_for_function("Number(document.getElementById('preview').dataset.frames) >= 1")
        n = int(page.locator("#preview").get_attribute("data-frames") or 0)
        tab_to("dir-smile")
        for _ in range(5):
            page.keyboard.press("ArrowRight")
        page.wait_for_function(f"Number(document.getElementById('preview').dataset.frames) > {n}")
        assert float(page.locator("#dir-smile").input_value()) > 0
        page.keyboard.press("Control+z")  # back to 4 steps
        tab_to("commit")
        page.keyboard.press("Enter")
        page.locator("#results a", has_text="PNG").first.wait_for()
        page.screenshot(path=str(SHOTS / "8-phone.png"), full_page=True)
        assert not errors, errors
        browser.close()  # type: ignore[attr-defined]


BAR_WATCH = """() => {
  window.barSeen = [];
  const bar = document.getElementById('models-bar');
  new MutationObserver(() => {
    if (bar.hasAttribute('value')) window.barSeen.push(bar.value / bar.max);
  }).observe(bar, {attributes: true});
}"""


def test_models_dialog_installs_from_the_registry_with_a_live_progress_bar(
    app_models: Path,
    tmp_path: Path,
    nvidia_pkl: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib

    from tests.formats import TINY_G, write_e4e_direction
    from tests.test_models_dialog import file_server, local_settings, write_registry

    models = tmp_path / "models"
    shutil.copytree(app_models / "tiny", models / "tiny")
    pkl = nvidia_pkl.read_bytes()
    direction = write_e4e_direction(tmp_path / "age.pt", (1, TINY_G.w_dim)).read_bytes()
    download = importlib.import_module("stylelens.fetch.download")
    monkeypatch.setattr(download, "CHUNK", 16384)
    SHOTS.mkdir(parents=True, exist_ok=True)
    app = create_app(local_settings(models, tmp_path / "data"))
    with (
        file_server() as (files, served),
        live_server(app) as base,
        playwright_sync.sync_playwright() as p,
    ):
        served.files.update({"/nv/ffhq.pkl": pkl, "/e4e/age.pt": direction})
        served.delay_s = 0.01  # about 2 s for the file: the bar is seen moving
        write_registry(models, files, pkl, direction)
        browser = launch(p)
        page, errors = open_page(browser, base, viewport={"width": 1280, "height": 900})
        assert page.locator("#model-picker").is_hidden()  # one model served
        page.click("#models-open")
        dialog = page.locator("#models")
        dialog.wait_for(state="visible")
        tiny = page.locator('#models-installed [data-model="tiny"]')
        tiny.wait_for()
        assert "photographs of faces (FFHQ)" in tiny.inner_text()
        assert "in use" in tiny.inner_text()
        entry = page.locator('#models-registry [data-entry="tiny-ffhq"]')
        assert f"{round(len(pkl) / 1e3)} kB download" in entry.inner_text()
        assert "test licence, non-commercial" in entry.inner_text()
        needs = page.locator('#models-registry [data-entry="e4e-tiny"] button')
        assert needs.is_disabled()  # its model is not installed yet
        page.evaluate(BAR_WATCH)
        entry.locator("button").click()
        page.wait_for_function(
            "document.getElementById('models-progress-text').textContent"
            ".startsWith('Downloading tiny-ffhq')"
        )
        assert page.locator("#models-cancel").is_visible()
        assert entry.locator("button").is_disabled()  # one install at a time
        installed = page.locator('#models-installed [data-model="tiny-ffhq"]')
        installed.wait_for(timeout=60000)
        seen = page.evaluate("window.barSeen")
        assert any(0 < v < 1 for v in seen), seen  # it moved
        assert max(seen) == 1, seen  # and reached its end
        assert page.locator("#models-bar").evaluate("b => b.value / b.max") == 1
        assert "installed and ready" in page.locator("#models-status").inner_text()
        assert "served" in installed.inner_text()
        assert entry.locator("button").inner_text() == "Installed"
        options = page.locator("#model-picker option").all_inner_texts()
        assert any("tiny test generator" in o for o in options), options
        assert page.locator("#model-picker").is_visible()
        page.screenshot(path=str(SHOTS / "9-models.png"))

        installed.locator("button", has_text="Use").click()  # a new session with it
        page.wait_for_function(
            "document.getElementById('model').textContent.includes('tiny test generator')"
        )
        assert dialog.is_hidden()
        assert not errors, errors
        browser.close()  # type: ignore[attr-defined]
