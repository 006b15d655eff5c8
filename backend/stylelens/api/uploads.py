"""Uploads, checked and stored off the event loop: photos (decoded, aligned to the session's
model), masks (binary, at the model's resolution), a manual re-crop, and checkpoints for the
Models dialog (streamed to disk). Each refusal is an :class:`UploadRejected` with its status."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

from fastapi import (
    FastAPI,
    Request,
)
from pydantic import BaseModel, Field

from stylelens.api.installs import Installer
from stylelens.data.framing import FFHQ, Framing
from stylelens.sessions.storage import Storage
from stylelens.sessions.urls import file_url

# A decoded photo costs 3-4 bytes per pixel however small its file: a 40 MP upload holds ~160 MB
# while it is decoded. Two decodes at once keep a burst of uploads near +350 MB; the others wait.
UPLOAD_DECODES = 2


UPLOAD_WAIT_S = 30.0  # an upload waits this long for a decode slot, then gets 503


class UploadRejected(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def upload_max_side(resolution: int) -> int:
    """The longer side an upload is decoded and stored at: 4x the model's resolution, at
    least 2048 px.

    Alignment detects faces at 1024 px and warps the face's square from at most 4x the output
    resolution (``warp_quad`` box-shrinks anything larger), so only a face whose square spans
    less than half of the photo's longer side (a quarter, for models under 512 px) is warped
    from fewer pixels than the full photo would give. The stored original serves the manual
    crop, whose box is in its pixels.
    """
    return max(2048, 4 * resolution)


def upload_slots(app: FastAPI) -> asyncio.Semaphore:
    """The app's decode slots, made on first use (a semaphore belongs to its event loop)."""
    loop = asyncio.get_running_loop()
    held: tuple[asyncio.AbstractEventLoop, asyncio.Semaphore] | None = getattr(
        app.state, "upload_slots", None
    )
    if held is None or held[0] is not loop:
        held = app.state.upload_slots = (loop, asyncio.Semaphore(UPLOAD_DECODES))
    return held[1]


def process_upload(
    storage: Storage,
    sid: str,
    data: bytes,
    *,
    resolution: int,
    max_pixels: int,
    framing: Framing = FFHQ,  # the model card's: how the face is aligned
    notice: str | None = None,  # returned as photo_notice (see photo_notice)
) -> dict[str, Any]:
    """Decode, align (or centre-crop) and store an upload. Runs in a thread (CPU work).

    The photo is decoded and stored at most :func:`upload_max_side` pixels on its longer side;
    the reply's ``width`` and ``height`` are the stored photo's (the manual crop's coordinates).
    """
    from PIL import Image, UnidentifiedImageError

    from stylelens.data.images import InvalidImage, center_crop_resize, load_image

    if not data:
        raise UploadRejected(422, "the upload is empty")
    try:
        with Image.open(io.BytesIO(data)):
            pass  # sniff the format only: the bytes, not the name or content type, decide
    except UnidentifiedImageError:
        raise UploadRejected(415, "not an image format we can read (JPEG, PNG, WebP...)") from None
    except Exception:
        pass  # recognised but damaged: load_image says how
    try:
        photo = load_image(data, max_pixels=max_pixels, max_side=upload_max_side(resolution))
    except InvalidImage as e:
        raise UploadRejected(422, str(e)) from None
    aligned, faces, note, kept = False, None, "", False
    try:
        from stylelens.data.align import AlignUnavailable, NoFaceFound, align_face

        try:
            result = align_face(photo, resolution, framing=framing)
            crop, aligned, faces = result.image, True, result.num_faces
            kept = result.kept_frame
        except NoFaceFound:
            crop, faces = center_crop_resize(photo, resolution), 0
            note = "no face found: the centre of the photo is used"
        except AlignUnavailable:
            crop, note = center_crop_resize(photo, resolution), "face alignment is not installed"
    except ImportError:
        crop, note = center_crop_resize(photo, resolution), "face alignment is not installed"
    uid, upath = storage.new_item_path(sid, "jpg")
    photo.save(upath, "JPEG", quality=92)  # re-encoded: no user bytes or metadata kept
    storage.add(sid, uid, upath, kind="upload", mime="image/jpeg")
    cid, cpath = storage.new_item_path(sid, "png")
    crop.save(cpath, "PNG")
    meta = {"upload": uid, "aligned": aligned, "faces": faces, "framing": framing.kind}
    storage.add(sid, cid, cpath, kind="crop", mime="image/png", meta=meta)
    storage.set_current(sid, upload=cid)
    return {
        "upload": cid,
        "crop_url": file_url(sid, cid),
        "original_url": file_url(sid, uid),
        "width": photo.width,
        "height": photo.height,
        "aligned": aligned,
        "faces": faces,
        "note": note,
        "framing": framing.kind,
        "kept_frame": kept,
        "photo_notice": notice,
    }


MASK_MAX_BYTES = 4 * 1024 * 1024  # a 1024-px mask PNG is tens of kB


MASK_MAX_SIDE = 4096


def process_mask(storage: Storage, sid: str, data: bytes, *, resolution: int) -> dict[str, Any]:
    """Read a mask (an inpainting hole or a local edit's region; :func:`stylelens.masks.read_mask`)
    and store it as a binary PNG at the model's resolution. Runs in a thread."""
    from PIL import Image, UnidentifiedImageError

    from stylelens.masks import MaskError, read_mask

    if not data:
        raise UploadRejected(422, "the mask is empty (no bytes)")
    try:
        with Image.open(io.BytesIO(data)) as opened:
            if max(opened.size) > MASK_MAX_SIDE:
                raise UploadRejected(422, f"the mask is {opened.width}x{opened.height}: too large")
            im = opened.convert("RGBA" if "A" in opened.getbands() else "L")
    except UnidentifiedImageError:
        raise UploadRejected(415, "the mask is not an image we can read (PNG, WebP...)") from None
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise UploadRejected(422, f"the mask cannot be decoded: {e}") from None
    try:
        mask = read_mask(
            im, resolution, marks="the region", whole="nothing would be left outside it"
        )
    except MaskError as e:
        raise UploadRejected(422, str(e)) from None
    mid, path = storage.new_item_path(sid, "png")
    Image.fromarray((mask.hole[0, 0].numpy() * 255).astype("uint8"), "L").save(path, "PNG")
    fraction = float(mask.hole.mean())
    storage.add(sid, mid, path, kind="mask", mime="image/png", meta={"hole": fraction})
    return {
        "mask": mid,
        "mask_url": file_url(sid, mid),
        "hole_fraction": round(fraction, 4),
        "notes": list(mask.notes),
    }


def recrop_upload(
    storage: Storage, sid: str, crop_id: str, box: CropBox, *, resolution: int
) -> dict[str, Any]:
    """A user-chosen square of the original photo as the new target (no face was found)."""
    from PIL import Image

    from stylelens.data.align import manual_crop

    crop = storage.get(sid, crop_id, "crop")
    original = storage.get(sid, str(crop.meta.get("upload", "")), "upload") if crop else None
    if crop is None or original is None:
        raise UploadRejected(404, "no such upload in this session")
    with Image.open(original.path) as im:
        photo = im.convert("RGB")
    try:
        image = manual_crop(
            photo, (box.left, box.top, box.left + box.size, box.top + box.size), resolution
        )
    except ValueError as e:
        raise UploadRejected(422, str(e)) from None
    cid, cpath = storage.new_item_path(sid, "png")
    image.save(cpath, "PNG")
    meta = {"upload": original.id, "aligned": False, "manual": [box.left, box.top, box.size]}
    storage.add(sid, cid, cpath, kind="crop", mime="image/png", meta=meta)
    storage.set_current(sid, upload=cid)
    return {"upload": cid, "crop_url": file_url(sid, cid)}


UPLOAD_IDLE_S = 60.0  # a checkpoint upload that sends nothing for this long is dropped (408)


def _size(n: int) -> str:
    if n >= 10_000_000:
        return f"{n / 1e6:.0f} MB"
    return f"{n / 1e6:.1f} MB" if n >= 1_000_000 else f"{n / 1e3:.0f} kB"


def too_large(size: int, limit: int) -> str:
    return (
        f"the checkpoint is {_size(size)}; this server takes at most {_size(limit)} "
        "(STYLELENS_MAX_CHECKPOINT_BYTES)"
    )


async def receive_checkpoint(
    request: Request,
    path: Path,
    installer: Installer,
    *,
    limit: int,
    idle_s: float = UPLOAD_IDLE_S,
) -> int:
    """Stream the request body to ``path`` (never whole in memory); returns its size.

    Raises:
        UploadRejected: 408 nothing arrived for ``idle_s``, 413 over ``limit`` bytes, 415
            not a checkpoint, 422 empty.
    """
    from stylelens.checkpoints.convert import sniff_format
    from stylelens.errors import CheckpointError

    received = 0
    out = await asyncio.to_thread(path.open, "wb")
    try:
        chunks = request.stream().__aiter__()
        while True:
            try:
                async with asyncio.timeout(idle_s):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise UploadRejected(
                    408, f"the upload stalled (nothing arrived for {idle_s:.0f} s); try again"
                ) from None
            if chunk:
                received += len(chunk)
                if received > limit:
                    raise UploadRejected(413, too_large(received, limit))
                await asyncio.to_thread(out.write, chunk)
                installer.upload_progress(path, received)
    finally:
        await asyncio.to_thread(out.close)
    if received == 0:
        raise UploadRejected(422, "the upload is empty: send the checkpoint file as the body")
    try:
        await asyncio.to_thread(sniff_format, path)
    except CheckpointError:
        raise UploadRejected(
            415,
            "not a checkpoint StyleLens can convert: send an NVIDIA stylegan2-ada-pytorch "
            ".pkl or a rosinality stylegan2-pytorch .pt",
        ) from None
    return received


class CropBox(BaseModel):
    """A square of the original photo, in its (upright) pixel coordinates."""

    left: int = Field(ge=0)
    top: int = Field(ge=0)
    size: int = Field(ge=1)
