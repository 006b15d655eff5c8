"""The web app: ``create_app()`` builds it, ``lifespan`` loads the model and starts the worker.

Routes are thin: they check input, call the storage or the worker, and map domain errors to
HTTP status codes. The websocket protocol is in :mod:`stylelens.sessions.protocol`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import io
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import (
    APIRouter,
    Depends,
    FastAPI,
    HTTPException,
    Query,
    Request,
    UploadFile,
    WebSocket,
)
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.middleware.trustedhost import TrustedHostMiddleware

from stylelens import __version__
from stylelens.api.hub import Connection, Hub
from stylelens.api.installs import Installer, InstallRefused, ModelsInfo
from stylelens.checkpoints.native import ModelCard, load_card, training_source
from stylelens.data.framing import FFHQ, Framing
from stylelens.sessions import protocol as p
from stylelens.sessions.backend import Backend, ServedModels
from stylelens.sessions.storage import Storage
from stylelens.sessions.urls import file_url
from stylelens.settings import Settings

log = logging.getLogger("stylelens.api")
REPO_FRONTEND = Path(__file__).resolve().parents[3] / "frontend"


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    from stylelens.jobs.runtime import Runtimes
    from stylelens.jobs.worker import Worker

    settings: Settings = app.state.settings
    storage = await asyncio.to_thread(Storage, settings.data_dir)
    expired = await asyncio.to_thread(storage.expire, settings.session_ttl_hours * 3600)
    if expired:
        log.info("removed %d expired sessions", len(expired))
    interrupted = await asyncio.to_thread(storage.interrupt_running)
    if interrupted:  # the previous server died with these running: offered to their sessions
        log.info(
            "%d inversions were interrupted by a crash; their last latents are kept", interrupted
        )

    def load() -> Runtimes:  # on the worker's thread: the only thread that runs the model
        runtimes = Runtimes.load(settings, storage)
        for rt in runtimes.by_id.values():
            rt.warm_up()
        return runtimes

    hub = Hub(asyncio.get_running_loop(), settings.preview_interval_ms / 1000)
    worker = Worker(
        load,
        hub.publish,
        queue_max=settings.queue_max,
        queue_per_session=settings.queue_per_session,
        preview_interval_s=settings.preview_interval_ms / 1000,
        checkpoint_interval_s=settings.checkpoint_interval_s,
        reconnect_grace_s=settings.reconnect_grace_s,
    )
    backend: Backend = worker  # what the routes and the websocket see (sessions/backend.py)
    backend.start()
    runtimes: ServedModels = await asyncio.wrap_future(backend.ready)
    from stylelens.data.align import warm_up as warm_up_alignment

    await asyncio.to_thread(warm_up_alignment)  # the first upload need not load its models
    installer = await asyncio.to_thread(
        Installer, settings, worker=worker, storage=storage, broadcast=hub.broadcast
    )
    app.state.storage, app.state.runtimes, app.state.hub, app.state.worker = (
        storage,
        runtimes,
        hub,
        worker,
    )
    app.state.installer = installer
    janitor = asyncio.create_task(_expire_periodically(storage, settings.session_ttl_hours))
    try:
        yield
    finally:
        janitor.cancel()
        await asyncio.to_thread(installer.stop)  # a download stops; its .part is kept
        await asyncio.to_thread(worker.stop)
        storage.close()


async def _expire_periodically(storage: Storage, ttl_hours: float) -> None:
    interval = min(3600.0, max(60.0, ttl_hours * 360))  # a tenth of the TTL, 1 min to 1 h
    while True:
        await asyncio.sleep(interval)
        await asyncio.to_thread(storage.expire, ttl_hours * 3600)


# dependencies ----------------------------------------------------------------------------------


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_storage(request: Request) -> Storage:
    storage: Storage = request.app.state.storage
    return storage


def get_runtimes(request: Request) -> ServedModels:
    runtimes: ServedModels = request.app.state.runtimes
    return runtimes


def get_installer(request: Request) -> Installer:
    installer: Installer = request.app.state.installer
    return installer


def _token_ok(settings: Settings, header: str | None, query: str | None) -> bool:
    if not settings.auth_token:
        return True
    given = query or ""
    if header and header.lower().startswith("bearer "):
        given = header[7:]
    return hmac.compare_digest(given.encode(), settings.auth_token.encode())


def require_token(request: Request) -> None:
    settings = get_settings(request)
    if not _token_ok(
        settings, request.headers.get("authorization"), request.query_params.get("token")
    ):
        raise HTTPException(401, "this server needs its access token (?token=... or Bearer)")


SettingsDep = Annotated[Settings, Depends(get_settings)]
StorageDep = Annotated[Storage, Depends(get_storage)]
RuntimesDep = Annotated[ServedModels, Depends(get_runtimes)]
InstallerDep = Annotated[Installer, Depends(get_installer)]


def _session(storage: Storage, sid: str) -> str:
    if not storage.has_session(sid):
        raise HTTPException(404, "no such session; start a new one")
    return sid


def session_info(storage: Storage, sid: str) -> p.SessionInfo:
    upload, latent = storage.session_state(sid)
    results = [
        {
            "id": it.id,
            "url": file_url(sid, it.id),
            "latent_url": file_url(sid, it.meta.get("latent", "")),
        }
        for it in storage.items(sid, "result")
    ]
    return p.SessionInfo(
        id=sid,
        upload=upload,
        upload_url=file_url(sid, upload) if upload else None,
        latent=latent,
        results=results,
    )


# uploads ----------------------------------------------------------------------------------------


# A decoded photo costs 3-4 bytes per pixel however small its file: a 40 MP upload holds ~160 MB
# while it is decoded. Two decodes at once keep a burst of uploads near +350 MB; the others wait.
UPLOAD_DECODES = 2
UPLOAD_WAIT_S = 30.0  # an upload waits this long for a decode slot, then gets 503


def photo_notice(card: ModelCard) -> str | None:
    """What an upload to a model that cannot represent photographs is told, or None.

    The card decides, not the image: a model trained on SynthFaces (its card's training data)
    has never seen a photograph, and nothing here tells a photo from a drawn face reliably, so
    every upload to it gets the notice, worded to be true whatever was uploaded.
    """
    if training_source(card) != "synthfaces":
        return None
    return (
        f"{card.name or card.id} knows only SynthFaces, procedurally drawn faces: it cannot "
        "represent photographs, so a photo comes back as a drawn face that merely resembles "
        "it. For photos, install ffhq-256 with the Models button at the top of the page and "
        "choose it in the model list, or run `stylelens fetch ffhq-256` on the server (all "
        "choices: `stylelens fetch --list`) and restart it with "
        "STYLELENS_DEFAULT_MODEL=ffhq-256."
    )


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


def _upload_slots(app: FastAPI) -> asyncio.Semaphore:
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


class NewSession(BaseModel):
    model: str | None = None


def model_choices(runtimes: ServedModels) -> list[p.ModelChoice]:
    return [
        p.ModelChoice(id=rt.model_id, name=rt.model_name, resolution=rt.resolution)
        for rt in runtimes.by_id.values()
    ]


class InstallRequest(BaseModel):
    """``POST /api/models/install``: a registry entry's name (``GET /api/models``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


UPLOAD_IDLE_S = 60.0  # a checkpoint upload that sends nothing for this long is dropped (408)


def _refused(e: InstallRefused) -> HTTPException:
    return HTTPException(e.status, str(e))


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


# routes -----------------------------------------------------------------------------------------


def build_router(settings: Settings) -> APIRouter:
    router = APIRouter(prefix="/api", dependencies=[Depends(require_token)])

    @router.get("/model")
    def model(runtimes: RuntimesDep) -> dict[str, Any]:
        """The default model and its directions, and every model offered."""
        rt = runtimes.default
        return {
            "model": rt.model_info().model_dump(),
            "directions": [d.model_dump() for d in rt.direction_infos()],
            "models": [m.model_dump() for m in model_choices(runtimes)],
        }

    @router.post("/sessions", status_code=201)
    def new_session(
        storage: StorageDep, runtimes: RuntimesDep, body: NewSession | None = None
    ) -> p.SessionInfo:
        """Start a session (with ``model``, default: the default model); keep its id: it is
        the only key to its files."""
        model = body.model if body and body.model else runtimes.default.model_id
        if model not in runtimes.by_id:
            raise HTTPException(422, f"model {model!r} is not served here")
        return session_info(storage, storage.new_session(model))

    @router.get("/sessions/{sid}")
    def get_session(sid: str, storage: StorageDep) -> p.SessionInfo:
        """A session's current upload, latent and committed results (to resume it)."""
        _session(storage, sid)
        storage.touch(sid)
        return session_info(storage, sid)

    @router.post("/sessions/{sid}/uploads", max_body_size=settings.max_upload_bytes)
    async def upload(
        sid: str,
        file: UploadFile,
        request: Request,
        storage: StorageDep,
        runtimes: RuntimesDep,
        cfg: SettingsDep,
    ) -> dict[str, Any]:
        """Upload a photo (multipart field ``file``); returns its aligned crop. 503 when the
        server stays busy decoding other uploads (``UPLOAD_DECODES`` at once)."""
        from stylelens.data.images import release_memory

        _session(storage, sid)
        data = await file.read()
        card = await asyncio.to_thread(load_card, runtimes.for_session(sid).model_dir)
        slots = _upload_slots(request.app)
        try:
            async with asyncio.timeout(UPLOAD_WAIT_S):
                await slots.acquire()
        except TimeoutError:
            raise HTTPException(
                503,
                "the server is busy decoding other uploads; try again in a few seconds",
                headers={"Retry-After": "5"},
            ) from None
        try:
            return await asyncio.to_thread(
                process_upload,
                storage,
                sid,
                data,
                resolution=runtimes.for_session(sid).resolution,
                max_pixels=cfg.max_pixels,
                framing=card.framing,
                notice=photo_notice(card),
            )
        except UploadRejected as e:
            raise HTTPException(e.status, str(e)) from None
        finally:
            slots.release()
            await asyncio.to_thread(release_memory)  # the photo and alignment's copies

    @router.post("/sessions/{sid}/uploads/{crop_id}/crop")
    async def crop(
        sid: str, crop_id: str, box: CropBox, storage: StorageDep, runtimes: RuntimesDep
    ) -> dict[str, Any]:
        """Replace an upload's automatic crop by a square the user chose."""
        _session(storage, sid)
        try:
            return await asyncio.to_thread(
                recrop_upload,
                storage,
                sid,
                crop_id,
                box,
                resolution=runtimes.for_session(sid).resolution,
            )
        except UploadRejected as e:
            raise HTTPException(e.status, str(e)) from None

    @router.post("/sessions/{sid}/masks", max_body_size=MASK_MAX_BYTES)
    async def mask(
        sid: str, file: UploadFile, storage: StorageDep, runtimes: RuntimesDep
    ) -> dict[str, Any]:
        """Upload a mask (multipart field ``file``, an image the size of the model's crops or a
        whole multiple of it; white or opaque: the region to fill in or to edit). Stored
        binary; used by inpainting (``restore.mask``) and local edits (``region.mask``)."""
        _session(storage, sid)
        data = await file.read()
        resolution = runtimes.for_session(sid).resolution
        try:
            return await asyncio.to_thread(process_mask, storage, sid, data, resolution=resolution)
        except UploadRejected as e:
            raise HTTPException(e.status, str(e)) from None

    # the Models dialog (docs/fetch.md; the installs themselves: api/installs.py) ------------

    @router.get("/models")
    async def models(installer: InstallerDep) -> ModelsInfo:
        """Installed models (their cards), the registry's entries, the install under way, and
        whether this server installs from its pages at all (``can_install``, ``refusal``)."""
        return await asyncio.to_thread(installer.info)

    @router.post("/models/install", status_code=202)
    async def install(body: InstallRequest, installer: InstallerDep) -> p.InstallProgress:
        """Install a registry entry in the background; its progress and end come over every
        websocket (``install_progress``, ``install_done``, ``install_failed``). 403 this server
        refuses installs, 404 no such entry, 409 installed already or another install under
        way."""
        try:
            return await asyncio.to_thread(installer.start_fetch, body.name)
        except InstallRefused as e:
            raise _refused(e) from None

    @router.delete("/models/install")
    def cancel_install(installer: InstallerDep) -> dict[str, str]:
        """Stop the download under way (what it downloaded is kept: installing the entry
        again resumes). 404 nothing is installing, 409 it is past its download."""
        try:
            return {"cancelled": installer.cancel()}
        except InstallRefused as e:
            raise _refused(e) from None

    # No max_body_size here: the limit is checked as the body arrives, so that the 413 can say
    # what the limit is (Starlette's own answers a bare "Content Too Large").
    @router.post("/models/upload", status_code=202)
    async def upload_checkpoint(
        request: Request,
        installer: InstallerDep,
        cfg: SettingsDep,
        model_id: Annotated[str, Query(alias="id", max_length=200)],
        filename: Annotated[str, Query(max_length=1000)] = "",
    ) -> p.InstallProgress:
        """Install a checkpoint the user has (NVIDIA ``.pkl`` or rosinality ``.pt``) as model
        ``id``: the request body is the file itself, streamed to disk (limit
        ``STYLELENS_MAX_CHECKPOINT_BYTES``: 413). Converted in the background like an install
        (events over the websocket). 403, 409 as for installs; 408 stalled, 415 not a
        checkpoint, 422 a bad id or an empty body."""
        length = request.headers.get("content-length", "")
        size = int(length) if length.isdigit() else None
        limit = cfg.max_checkpoint_bytes
        try:
            await asyncio.to_thread(installer.check_upload, model_id)
        except InstallRefused as e:
            raise _refused(e) from None
        if request.headers.get("content-type", "").startswith("multipart/"):
            raise HTTPException(
                415,
                "send the checkpoint as the request body itself "
                "(Content-Type: application/octet-stream), not as a multipart form",
            )
        if size is not None and size > limit:
            raise HTTPException(413, too_large(size, limit))
        try:
            path = await asyncio.to_thread(installer.reserve_upload, model_id, filename, size)
        except InstallRefused as e:
            raise _refused(e) from None
        try:
            await receive_checkpoint(request, path, installer, limit=limit)
        except UploadRejected as e:
            installer.abandon_upload(path, str(e))
            raise HTTPException(e.status, str(e)) from None
        except BaseException:  # the client went away (ClientDisconnect), the server stops, ...
            installer.abandon_upload(path, "the upload was interrupted; nothing was installed")
            raise
        return installer.start_upload(path)

    @router.post("/models/{model_id}/load")
    async def load_model(model_id: str, installer: InstallerDep) -> dict[str, Any]:
        """Serve an installed model that this server does not serve yet (loaded on the worker
        thread, until the server stops); returns every model served. 403 as installs, 404 not
        installed, 409 served already, 422 it cannot be loaded."""
        from stylelens.errors import StyleLensError

        try:
            await asyncio.to_thread(installer.check_loadable, model_id)
            future = installer.load(model_id)
        except InstallRefused as e:
            raise _refused(e) from None
        try:
            await asyncio.wrap_future(future)
        except (StyleLensError, ValueError, OSError) as e:  # a broken model, not a bug of ours
            raise HTTPException(422, f"{model_id} cannot be loaded: {e}") from None
        return {"models": [m.model_dump() for m in installer.choices()]}

    @router.get("/sessions/{sid}/files/{iid}")
    def file(sid: str, iid: str, storage: StorageDep) -> FileResponse:
        """One of the session's files (upload, crop, latent, result)."""
        item = storage.get(sid, iid)
        if item is None or not item.path.is_file():
            raise HTTPException(404, "no such file in this session")
        names = {"result": "stylelens.png", "latent": "stylelens-latent.safetensors"}
        return FileResponse(
            item.path,
            media_type=item.mime,
            filename=names.get(item.kind),
            headers={"Cache-Control": "private, max-age=86400"},
        )

    return router


def interrupted_inversion(storage: Storage, sid: str) -> p.Interrupted | None:
    """The session's inversion that stopped unfinished (its checkpoint), if any."""
    c = storage.checkpoint(sid)
    if c is None or c.status == "running" or storage.get(sid, c.latent, "latent") is None:
        return None
    return p.Interrupted(
        job=c.job,
        engine=c.engine,
        step=c.step,
        total=c.total,
        upload=c.upload,
        latent=c.latent,
        latent_url=file_url(sid, c.latent),
        reason="restart" if c.status == "restart" else "disconnected",
    )


def _origin_ok(ws: WebSocket, settings: Settings) -> bool:
    origin = ws.headers.get("origin")
    if origin is None:  # not a browser (tests, tools): the token (if any) is the guard
        return True
    if origin in settings.allowed_origins:
        return True
    try:
        return urlsplit(origin).netloc == ws.headers.get("host")
    except ValueError:  # not a URL (``http://[::1``): not an origin we allow
        return False


async def websocket_endpoint(ws: WebSocket) -> None:
    """``/api/ws?session=ID``: protocol v1 (see ``docs/protocol.md``)."""
    app = ws.app
    settings: Settings = app.state.settings
    storage: Storage = app.state.storage
    hub: Hub = app.state.hub
    worker: Backend = app.state.worker
    runtimes: ServedModels = app.state.runtimes
    sid = ws.query_params.get("session", "")
    refusal = None
    if not _token_ok(settings, ws.headers.get("authorization"), ws.query_params.get("token")):
        refusal = (4401, "access token needed")
    elif not _origin_ok(ws, settings):
        refusal = (4403, "origin not allowed")
    elif not storage.has_session(sid):
        refusal = (4404, "no such session")
    # Accept, then close with the code: a close before the handshake reaches a browser as an
    # HTTP 403 (close code 1006), which a client cannot tell from a network failure.
    await ws.accept()
    if refusal is not None:
        await ws.close(code=refusal[0], reason=refusal[1])
        return
    storage.touch(sid)
    runtime = runtimes.for_session(sid)
    touched = time.monotonic()
    conn = hub.connect(sid, ws)
    running = worker.attach(sid)  # an inversion of this session streams on to this socket
    conn.push(
        p.Hello(
            session=session_info(storage, sid),
            limits=p.Limits(
                max_upload_bytes=settings.max_upload_bytes,
                max_pixels=settings.max_pixels,
                max_steps=settings.max_steps,
                preview_interval_ms=settings.preview_interval_ms,
                preview_size=settings.preview_size,
                default_engine=settings.default_engine,
                default_steps=settings.default_steps,
            ),
            model=runtime.model_info(),
            models=model_choices(runtimes),
            directions=runtime.direction_infos(),
            running=running,
            interrupted=interrupted_inversion(storage, sid),
        )
    )
    sender = asyncio.create_task(conn.run_sender())
    try:
        while True:
            msg = await ws.receive()
            if msg["type"] == "websocket.disconnect":
                break
            if time.monotonic() - touched > 60:  # an open tab keeps its session alive
                touched = time.monotonic()
                await asyncio.to_thread(storage.touch, sid)
            text = msg.get("text")
            if text is None:
                conn.push(p.Error(code="malformed", message="send JSON text frames, not binary"))
                continue
            try:
                handle_message(conn, p.parse_client_message(text), worker, settings)
            except p.ProtocolError as e:
                conn.push(p.Error(code=e.code, message=e.message))  # type: ignore[arg-type]
            except Exception as e:  # a bug of ours: say so, keep the socket
                log.exception("message of %s failed", sid[:6])
                conn.push(p.Error(code="internal", message=f"{type(e).__name__}"))
    except Exception as e:  # a broken socket; the session's jobs are dropped below
        log.debug("websocket of %s ended: %s", sid[:6], e)
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
        if hub.disconnect(conn):
            worker.detach(sid)  # its inversion runs on for a reconnect (reconnect_grace_s)
            runtimes.forget(sid)  # its latent is read from disk again if it comes back


def handle_message(conn: Connection, msg: Any, worker: Backend, settings: Settings) -> None:
    """Turn one client message into worker jobs; problems become error events."""
    from stylelens.jobs.worker import Busy

    sid = conn.session
    try:
        if isinstance(msg, p.StartInversion):
            engines = worker.runtimes.for_session(sid).model_info().engines
            if msg.engine not in engines:
                raise p.ProtocolError("invalid", f"engine {msg.engine!r}: choose from {engines}")
            total = msg.steps + (msg.restore.handoff_steps if msg.restore else 0)
            if total > settings.max_steps:
                raise p.ProtocolError(
                    "invalid",
                    f"steps: at most {settings.max_steps} on this server"
                    + (" (a restoration's hand-off steps count too)" if msg.restore else ""),
                )
            worker.submit_inversion(
                sid,
                engine=msg.engine,
                steps=msg.steps,
                upload=msg.upload,
                init_latent=msg.init_latent,
                restore=msg.restore,
            )
        elif isinstance(msg, p.Cancel):
            if not worker.cancel(sid, msg.job):
                conn.push(p.Error(code="unknown_job", job=msg.job, message="no such job to cancel"))
        elif isinstance(msg, p.Accept):
            if not worker.accept(sid, msg.job):
                conn.push(p.Error(code="unknown_job", job=msg.job, message="no such inversion"))
        elif isinstance(msg, p.RenderEdit):
            msg.check_scales(_sliders(worker, sid))
            job = worker.submit_render(sid, msg)
            conn.push(p.Queued(job=job, kind="render", position=0))
        elif isinstance(msg, p.Commit):
            msg.check_scales(_sliders(worker, sid))
            worker.submit_commit(sid, msg)
        elif isinstance(msg, p.RandomFace):
            worker.submit_random(sid, msg.seed)
        elif isinstance(msg, p.UseLatent):
            worker.submit_use_latent(sid, msg.latent)
        elif isinstance(msg, p.RegionPreset):
            worker.submit_region(sid, msg.preset)
    except Busy as e:
        conn.push(p.Error(code="busy", message=str(e)))


def _sliders(worker: Backend, sid: str) -> dict[str, tuple[float, float]]:
    return {d.name: d.slider for d in worker.runtimes.for_session(sid).direction_infos()}


def _printable(value: object) -> str | int:
    if isinstance(value, int):
        return value
    return str(value).encode("utf-8", "replace").decode("utf-8")[:200]


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 that names where and what, without echoing the input: FastAPI's own echoes it,
    and an input JSON cannot hold (bytes that are not UTF-8, NaN) turned the 422 into a 500."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    detail = [
        {
            "loc": [_printable(x) for x in e.get("loc", ())],
            "msg": _printable(e.get("msg", "")),
            "type": _printable(e.get("type", "")),
        }
        for e in errors
    ]
    return JSONResponse({"detail": detail}, status_code=422)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The StyleLens web app. Nothing is loaded until the app starts (``lifespan``)."""
    settings = settings or Settings()
    app = FastAPI(
        title="StyleLens",
        version=__version__,
        description="StyleGAN2 face editing. The websocket protocol is in docs/protocol.md.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.add_exception_handler(RequestValidationError, _validation_error)

    @app.get("/healthz", include_in_schema=False)
    def healthz(request: Request) -> dict[str, Any]:
        worker = getattr(request.app.state, "worker", None)
        if worker is None or not worker.alive:
            raise HTTPException(503, "the worker is not running")
        return {"status": "ok", "pending": worker.pending()}

    if not settings.auth_token:
        # A page on another site could otherwise reach a loopback server by rebinding its own
        # DNS name to 127.0.0.1 (the Origin check alone does not stop that).
        hosts = [f"[{h}]" if ":" in h else h for h in settings.allowed_hosts]
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=hosts)
    app.include_router(build_router(settings))
    app.add_api_websocket_route("/api/ws", websocket_endpoint)
    frontend = settings.frontend_dir or REPO_FRONTEND
    if frontend.is_dir():
        app.mount("/", StaticFiles(directory=frontend, html=True), name="frontend")
    return app
