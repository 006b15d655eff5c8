"""A session's files as values: its latents (the current one cached), results, masks, the photo
to invert and the inversion checkpoint. What ``jobs/`` reads and writes for a session goes
through here, so the models' code (``jobs.runtime.ModelRuntime``) never touches storage.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from stylelens.errors import JobError
from stylelens.latents import Fits, Latent, load_latent, save_latent
from stylelens.sessions.storage import Checkpoint, Storage
from stylelens.sessions.urls import file_url


@dataclass(frozen=True)
class Saved:
    """What a job left in the session: a latent, maybe a result to download, its metrics."""

    latent: str
    latent_url: str
    result_url: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)


class SessionFiles:
    """Thread-safe; one per served model (the cache holds latents that fit that model)."""

    def __init__(self, storage: Storage, fits: Fits) -> None:
        self.storage = storage
        self.fits = fits
        self._current: dict[str, tuple[str, Latent]] = {}  # session -> (latent id, latent)
        self._lock = threading.Lock()

    # latents ---------------------------------------------------------------------------------

    def current_latent(self, session: str) -> tuple[str, Latent]:
        """The latent a session's edits apply to (cached; read from disk after a restart or
        where another process changed it: the storage's current id decides)."""
        with self._lock:
            cached = self._current.get(session)
        _, latent_id = self.storage.session_state(session)
        if cached is not None and cached[0] == latent_id:
            return cached
        if latent_id is None:
            raise JobError("no_latent", "no face yet: upload a photo or pick a random face")
        item = self.storage.get(session, latent_id, "latent")
        if item is None:
            raise JobError("no_latent", "the session's latent is gone; start again")
        latent = self.fits.check(load_latent(item.path))
        with self._lock:
            self._current[session] = (latent_id, latent)
        return latent_id, latent

    def latent(self, session: str, latent_id: str) -> Latent:
        """A latent of the session, by id."""
        item = self.storage.get(session, latent_id, "latent")
        if item is None:
            raise JobError("no_latent", f"latent {latent_id!r} is not one of this session's")
        return self.fits.check(load_latent(item.path))

    def save_latent(
        self, session: str, latent: Latent, *, current: bool, meta: dict[str, Any]
    ) -> str:
        """Store a latent; ``current``: the one the session's edits apply to from now on."""
        iid, path = self.storage.new_item_path(session, "safetensors")
        save_latent(path, latent)
        self.storage.add(
            session, iid, path, kind="latent", mime="application/octet-stream", meta=meta
        )
        if current:
            self.storage.set_current(session, latent=iid)
            with self._lock:
                self._current[session] = (iid, latent)
        return iid

    def use_latent(self, session: str, latent_id: str) -> Saved:
        """Make a latent of the session the one its edits apply to (an offered checkpoint so
        taken is no longer offered)."""
        latent = self.latent(session, latent_id)
        self.storage.set_current(session, latent=latent_id)
        with self._lock:
            self._current[session] = (latent_id, latent)
        c = self.storage.checkpoint(session)
        if c is not None and c.latent == latent_id:
            self.storage.drop_checkpoint(session, keep_latent=True)
        return self.saved(session, latent_id)

    def forget(self, session: str) -> None:
        with self._lock:
            self._current.pop(session, None)

    # images ----------------------------------------------------------------------------------

    def crop(self, session: str, upload: str | None) -> tuple[str, Image.Image]:
        """The upload to invert (default: the session's latest) as an RGB image."""
        upload = upload or self.storage.session_state(session)[0]
        item = self.storage.get(session, upload, "crop") if upload else None
        if upload is None or item is None:
            raise JobError("no_target", "nothing to invert: upload a photo first")
        with Image.open(item.path) as im:
            return upload, im.convert("RGB")

    def mask(self, session: str, mask_id: str) -> Image.Image:
        """A mask of the session (grey levels, as painted or found)."""
        item = self.storage.get(session, mask_id, "mask")
        if item is None:
            raise JobError(
                "bad_request",
                f"no mask {mask_id!r}: it is not one of this session's (masks expire with the "
                "session); paint it again",
            )
        with Image.open(item.path) as im:
            return im.convert("L")

    def save_mask(self, session: str, mask: np.ndarray, meta: dict[str, Any]) -> str:
        """Store a boolean [H, W] mask as a PNG of the session; returns its id."""
        mid, path = self.storage.new_item_path(session, "png")
        Image.fromarray(mask.astype(np.uint8) * 255, "L").save(path, "PNG")
        self.storage.add(session, mid, path, kind="mask", mime="image/png", meta=meta)
        return mid

    def save_result(self, session: str, image: np.ndarray, meta: dict[str, Any]) -> str:
        """Store a uint8 [H, W, 3] image as a downloadable PNG result; returns its id."""
        rid, path = self.storage.new_item_path(session, "png")
        Image.fromarray(image).save(path, "PNG")
        self.storage.add(session, rid, path, kind="result", mime="image/png", meta=meta)
        return rid

    def saved(
        self,
        session: str,
        latent_id: str,
        result_id: str | None = None,
        metrics: dict[str, float] | None = None,
    ) -> Saved:
        result_url = file_url(session, result_id) if result_id else None
        return Saved(latent_id, file_url(session, latent_id), result_url, metrics or {})

    # the inversion checkpoint ----------------------------------------------------------------

    def save_checkpoint(
        self,
        session: str,
        job: str,
        latent: Latent,
        *,
        engine: str,
        step: int,
        total: int,
        upload: str,
        status: str = "running",
    ) -> None:
        """Keep an inversion's latest latent so that it outlives a crash, a restart or a page
        that went away (its file replaced atomically: a crash mid-write leaves the previous)."""
        c = self.storage.checkpoint(session)
        item = self.storage.get(session, c.latent, "latent") if c and c.job == job else None
        if item is not None:
            tmp = item.path.with_suffix(".tmp")
            save_latent(tmp, latent)
            tmp.replace(item.path)
            latent_id = item.id
        else:
            latent_id = self.save_latent(
                session, latent, current=False, meta={"checkpoint": job, "upload": upload}
            )
        self.storage.save_checkpoint(
            Checkpoint(session, job, engine, step, total, upload, latent_id, status, 0.0)
        )

    def drop_checkpoint(self, session: str, job: str | None = None) -> None:
        """Forget the session's checkpoint (``job``'s only, when given) and its latent."""
        self.storage.drop_checkpoint(session, job, keep_latent=False)

    def replace_offer(self, session: str) -> None:
        """A new inversion starts: an offered checkpoint is no longer offered (its latent
        stays, a latent of the session)."""
        self.storage.drop_checkpoint(session, keep_latent=True)
