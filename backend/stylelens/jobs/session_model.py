"""A served model as the sessions use it: the model's pipeline of values
(``jobs.runtime.ModelRuntime``) between a session's files (``sessions.files``) and the wire's
images (``sessions.frames``).

Each method is one job of the worker (a render, a random face, a commit, an inversion's start,
step, checkpoint and end): read what the session has, run the model on values, store and encode
what comes out. Only the worker thread calls them.
"""

from __future__ import annotations

from pathlib import Path

import torch

from stylelens.errors import StyleLensError
from stylelens.inversion.protocol import StepReport
from stylelens.jobs.regions import FoundRegion, SessionRegions
from stylelens.jobs.runtime import Inversion, ModelRuntime
from stylelens.latents import Latent
from stylelens.render import to_uint8
from stylelens.sessions.files import Saved, SessionFiles
from stylelens.sessions.frames import Image8, encode_preview
from stylelens.sessions.protocol import DirectionInfo, EditParams, ModelInfo, RestoreParams
from stylelens.sessions.storage import Storage
from stylelens.settings import Settings


class SessionModel:
    """One served model (a ``sessions.backend.ServedModel``) and the sessions' files for it."""

    def __init__(self, runtime: ModelRuntime, storage: Storage, preview_size: int = 256) -> None:
        self.runtime = runtime
        self.storage = storage
        self.files = SessionFiles(storage, runtime.fits)
        self.regions = SessionRegions(runtime.G, self.files, runtime.device)  # local edits
        self.preview_size = preview_size

    @classmethod
    def load(
        cls, settings: Settings, storage: Storage, model_id: str | None = None
    ) -> SessionModel:
        """Load a model (``ModelRuntime.load``) to serve sessions kept in ``storage``."""
        return cls(ModelRuntime.load(settings, model_id), storage, settings.preview_size)

    # what the app is told about the model ----------------------------------------------------

    @property
    def model_id(self) -> str:
        return self.runtime.model_id

    @property
    def model_name(self) -> str:
        return self.runtime.model_name

    @property
    def model_dir(self) -> Path:
        return self.runtime.model_dir

    @property
    def resolution(self) -> int:
        return self.runtime.resolution

    def model_info(self) -> ModelInfo:
        return self.runtime.model_info()

    def direction_infos(self) -> list[DirectionInfo]:
        return self.runtime.direction_infos()

    def reload_directions(self) -> list[str]:
        return self.runtime.reload_directions()

    def warm_up(self) -> None:
        """The runtime's warm-up, and one frame encoded."""
        self.encode_preview(self.runtime.warm_up())

    def forget(self, session: str) -> None:
        self.files.forget(session)
        self.regions.forget(session)

    # renders ---------------------------------------------------------------------------------

    def encode_preview(self, img: torch.Tensor) -> Image8:
        return encode_preview(img, self.preview_size)

    def render(self, session: str, params: EditParams) -> tuple[torch.Tensor, torch.Tensor]:
        """The edit's latent and full-resolution image; with ``params.region`` the image is the
        session's latent outside the region (a local edit)."""
        base_id, latent = self.files.current_latent(session)
        ws = self.runtime.edited_ws(latent.ws, params)
        if params.region is None:
            return ws, self.runtime.synthesize(ws, latent.noise)
        return ws, self.regions.render(session, base_id, latent, ws, params.region)

    def render_edit(self, session: str, params: EditParams) -> Image8:
        return self.encode_preview(self.render(session, params)[1])

    def render_edits(self, requests: list[tuple[str, EditParams]]) -> list[Image8 | StyleLensError]:
        """Several sessions' slider renders, the whole-face ones as one batched synthesis. Each
        result is the frame, or the error of that request alone (a session without a latent,
        an unknown direction): one session's mistake does not cost the others theirs."""
        results: list[Image8 | StyleLensError | None] = [None] * len(requests)
        batch: list[tuple[int, torch.Tensor, dict[str, torch.Tensor]]] = []
        for i, (session, params) in enumerate(requests):
            try:
                if params.region is not None:
                    results[i] = self.render_edit(session, params)
                    continue
                _, latent = self.files.current_latent(session)
                batch.append((i, self.runtime.edited_ws(latent.ws, params), latent.noise))
            except StyleLensError as e:
                results[i] = e
        if batch:
            images = self.runtime.synthesize_many(
                [ws for _, ws, _ in batch], [n for _, _, n in batch]
            )
            for (i, _, _), img in zip(batch, images, strict=True):
                results[i] = self.encode_preview(img[None])
        done = [r for r in results if r is not None]
        assert len(done) == len(requests), "every request has its frame or its error"
        return done

    def region_preset(self, session: str, name: str) -> FoundRegion:
        """Find a region (eyes, mouth, ...) on the session's current face; store it as a mask."""
        _, latent = self.files.current_latent(session)
        return self.regions.preset(session, latent, name)

    def random_face(self, session: str, seed: int) -> tuple[Saved, Image8]:
        latent = self.runtime.random_latent(seed)
        iid = self.files.save_latent(session, latent, current=True, meta={"seed": seed})
        frame = self.encode_preview(self.runtime.synthesize(latent.ws, {}))
        return self.files.saved(session, iid), frame

    def use_latent(self, session: str, latent_id: str) -> Saved:
        return self.files.use_latent(session, latent_id)

    def commit(self, session: str, params: EditParams) -> Saved:
        """Render the edit at full resolution; store the PNG and the edited latent."""
        base_id, latent = self.files.current_latent(session)
        ws, rendered = self.render(session, params)
        # With a region, the stored latent is the whole-face edit; the PNG is the local one.
        meta = {"base": base_id, "edit": params.model_dump(mode="json")}
        edited = Latent(ws.cpu(), latent.noise, {"model": self.model_id, "base": base_id})
        lid = self.files.save_latent(session, edited, current=False, meta=meta)
        rid = self.files.save_result(session, to_uint8(rendered)[0], {**meta, "latent": lid})
        return self.files.saved(session, lid, rid)

    # inversions ------------------------------------------------------------------------------

    def start_inversion(
        self,
        session: str,
        *,
        engine: str,
        steps: int,
        upload: str | None,
        init_latent: str | None = None,
        restore: RestoreParams | None = None,
    ) -> Inversion:
        """Start inverting the session's upload (default: its latest), from the model's average
        latent or from ``init_latent``, a latent of the session (an interrupted inversion's
        checkpoint, an earlier inversion); or, with ``restore``, restoring it. An offered
        checkpoint is no longer offered."""
        init = self.files.latent(session, init_latent) if init_latent else None
        upload, photo = self.files.crop(session, upload)
        if restore is not None:
            mask = self.files.mask(session, restore.mask) if restore.mask is not None else None
            inv = self.runtime.start_restoration(
                photo, engine=engine, steps=steps, upload=upload, params=restore, mask=mask
            )
        else:
            inv = self.runtime.start_inversion(
                photo, engine=engine, steps=steps, upload=upload, init=init
            )
        self.files.replace_offer(session)
        return inv

    def step(self, inv: Inversion) -> StepReport:
        return self.runtime.step(inv)

    def checkpoint_inversion(
        self, session: str, job: str, inv: Inversion, step: int, *, status: str = "running"
    ) -> None:
        """Save the inversion's latest latent so that it outlives a crash, a restart or a page
        that went away."""
        self.files.save_checkpoint(
            session,
            job,
            self.runtime.checkpoint_latent(inv, step),
            engine=inv.engine_name,
            step=step,
            total=inv.total,
            upload=inv.upload,
            status=status,
        )

    def drop_checkpoint(self, session: str, job: str) -> None:
        """The inversion was cancelled: its checkpoint is not offered."""
        self.files.drop_checkpoint(session, job)

    def finish_inversion(self, session: str, inv: Inversion) -> Saved:
        result = self.runtime.result(inv)
        self.files.drop_checkpoint(session)  # superseded by the result
        meta = {"upload": inv.upload, "engine": inv.engine_name, "steps": result.steps}
        iid = self.files.save_latent(session, result.latent, current=True, meta=meta)
        rid = None
        if result.image is not None:  # a restoration: its image is a result to download
            rid = self.files.save_result(
                session, to_uint8(result.image)[0], {**meta, "latent": iid}
            )
        return self.files.saved(session, iid, rid, result.metrics)


class Runtimes:
    """The models the app offers, by id; a session works with the one it was created for."""

    def __init__(self, runtimes: list[SessionModel], storage: Storage) -> None:
        if not runtimes:
            raise StyleLensError("no model to serve")
        self.by_id = {rt.model_id: rt for rt in runtimes}
        self.default = runtimes[0]
        self.storage = storage

    @classmethod
    def load(cls, settings: Settings, storage: Storage) -> Runtimes:
        ids = list(dict.fromkeys([settings.default_model, *settings.serve_models]))
        return cls([SessionModel.load(settings, storage, i) for i in ids], storage)

    def add(self, runtime: SessionModel) -> None:
        """Serve one more model (installed while the server runs; call on the worker thread,
        which loaded it). The dict is replaced, not changed in place: other threads iterating
        the old one (``hello.models``, a new session's check) see it whole, before or after."""
        self.by_id = {**self.by_id, runtime.model_id: runtime}

    def for_session(self, session: str) -> SessionModel:
        model = self.storage.session_model(session)
        return self.by_id.get(model, self.default)

    def forget(self, session: str) -> None:
        for rt in self.by_id.values():
            rt.forget(session)
