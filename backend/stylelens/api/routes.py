"""The HTTP routes under ``/api`` (docs/protocol.md lists them): sessions, uploads, masks,
files, models. Thin: they check input, call the storage, the uploads or the backend, and map
domain errors to HTTP status codes."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Any

from fastapi import (
    APIRouter,
    Depends,
    HTTPException,
    Query,
    Request,
    UploadFile,
)
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field

from stylelens.api.deps import (
    InstallerDep,
    RuntimesDep,
    SettingsDep,
    StorageDep,
    existing_session,
    require_token,
)
from stylelens.api.installs import InstallRefused, ModelsInfo
from stylelens.api.uploads import (
    MASK_MAX_BYTES,
    UPLOAD_WAIT_S,
    CropBox,
    UploadRejected,
    process_mask,
    process_upload,
    receive_checkpoint,
    recrop_upload,
    too_large,
    upload_slots,
)
from stylelens.api.views import model_choices, photo_notice, session_info
from stylelens.checkpoints.native import load_card
from stylelens.sessions import protocol as p
from stylelens.settings import Settings

log = logging.getLogger("stylelens.api")


class NewSession(BaseModel):
    model: str | None = None


class InstallRequest(BaseModel):
    """``POST /api/models/install``: a registry entry's name (``GET /api/models``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def _refused(e: InstallRefused) -> HTTPException:
    return HTTPException(e.status, str(e))


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
        existing_session(storage, sid)
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

        existing_session(storage, sid)
        data = await file.read()
        card = await asyncio.to_thread(load_card, runtimes.for_session(sid).model_dir)
        slots = upload_slots(request.app)
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
        existing_session(storage, sid)
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
        existing_session(storage, sid)
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
