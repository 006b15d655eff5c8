"""What the worker does with the model: renders, inversion steps and commits.

A :class:`ModelRuntime` owns the generator, its preview heads, directions and perceptual loss
on one device. Only the worker thread calls its methods; they take request
values and return result values, and raise :class:`~stylelens.errors.StyleLensError` for
anything the user asked that cannot be done.
"""

from __future__ import annotations

import io
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from stylelens.directions.core import Direction
from stylelens.directions.edit import apply_directions, style_mix, truncate_toward
from stylelens.errors import StyleLensError
from stylelens.inversion import LearnedOptimizer, available_engines, make_engine
from stylelens.inversion.protocol import Engine, StepReport
from stylelens.jobs.regions import FoundRegion, SessionRegions
from stylelens.latents import Latent, load_latent, save_latent
from stylelens.losses.perceptual import PerceptualLoss
from stylelens.networks.preview import PreviewHeads
from stylelens.networks.stylegan2 import Generator
from stylelens.render import to_uint8, z_from_seed
from stylelens.sessions.protocol import (
    DirectionInfo,
    EditParams,
    InitKind,
    ModelInfo,
    RestoreParams,
)
from stylelens.sessions.storage import Checkpoint, Storage
from stylelens.sessions.urls import file_url
from stylelens.settings import Settings


class JobError(StyleLensError):
    """A job cannot run as asked; ``code`` is the protocol error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Image8:
    """An encoded image for the wire."""

    data: bytes
    width: int
    height: int
    mime: str = "image/jpeg"


@dataclass
class Inversion:
    """A running inversion: the engine, its state and where it came from."""

    engine: Engine[Any]
    state: Any
    total: int
    upload: str
    engine_name: str
    init: InitKind = "average"  # where it started
    first_preview: torch.Tensor | None = None  # [1, 3, R, R]: the encoder's guess, if it ran
    note: str | None = None  # what was done to the input (a restoration's)


@dataclass(frozen=True)
class Saved:
    latent: str
    latent_url: str
    result_url: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)


class ModelRuntime:
    def __init__(
        self,
        *,
        G: Generator,
        model_id: str,
        model_name: str,
        model_dir: Path,
        models_dir: Path,
        heads: PreviewHeads | None,
        directions: list[Direction],
        perceptual: PerceptualLoss | None,
        device: torch.device,
        storage: Storage,
        preview_size: int = 256,
        encoder: torch.nn.Module | None = None,
        learned: LearnedOptimizer | None = None,
    ) -> None:
        self.G = G
        self.model_id = model_id
        self.model_name = model_name
        self.model_dir = model_dir
        self.models_dir = models_dir
        self.heads = heads
        self.directions = {d.name: d for d in directions}
        self.perceptual = perceptual
        self.device = device
        self.storage = storage
        self.preview_size = preview_size
        self.encoder = encoder
        self.learned = learned  # seed 001's learned optimizer (the "learned" engines)
        self._latents: dict[str, tuple[str, Latent]] = {}  # session -> (latent id, latent)
        self.regions = SessionRegions(G, storage, device)  # local edits
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls, settings: Settings, storage: Storage, model_id: str | None = None
    ) -> ModelRuntime:
        """Load a model (default: the default model) with its preview heads, directions and
        perceptual loss.

        Raises:
            StyleLensError: no such model, unreadable weights, bad device.
        """
        from stylelens.checkpoints.native import load_generator, model_dir_for
        from stylelens.checkpoints.preview_heads import load_preview_heads
        from stylelens.directions.store import load_directions
        from stylelens.encoders.store import load_encoder
        from stylelens.inversion.optimizer_store import load_optimizer
        from stylelens.losses import load_perceptual
        from stylelens.networks.runtime import resolve_device

        try:
            device = resolve_device(settings.device)
        except ValueError as e:
            raise StyleLensError(str(e)) from None
        model_id = model_id or settings.default_model
        model_dir = model_dir_for(settings.models_dir, model_id)
        G, card = load_generator(model_dir, device=device)
        G.requires_grad_(False)
        directions = [
            d
            for d in load_directions(model_dir)
            if d.vector.shape[-1] == G.w_dim  # a direction of another model is skipped
        ]
        perceptual = load_perceptual(
            settings.perceptual, models_dir=settings.models_dir, model_dir=model_dir, device=device
        )
        return cls(
            G=G,
            model_id=model_id,  # the directory name: what settings and sessions use
            model_name=card.name or card.id,
            model_dir=model_dir,
            models_dir=settings.models_dir,
            heads=load_preview_heads(model_dir, G),
            directions=directions,
            perceptual=perceptual,
            device=device,
            storage=storage,
            preview_size=settings.preview_size,
            encoder=load_encoder(model_dir, device=device),
            learned=load_optimizer(model_dir, device=device),
        )

    def warm_up(self) -> None:
        """One render and one step of every engine, so the first user does not pay for
        PyTorch's first-call set-up (about a second on a CPU)."""
        with torch.no_grad():
            ws = self.G.mapping.w_avg.reshape(1, 1, -1).expand(1, self.G.num_ws, -1)
            target = self.synthesize(ws, {})
        self.encode_preview(target)
        for name in self.model_info().engines:
            engine, config = make_engine(
                name,
                self.G,
                steps=2,
                perceptual=self.perceptual,
                heads=self.heads,
                learned=self.learned,
            )
            engine.step(engine.start(target, config))

    def reload_directions(self) -> list[str]:
        """Read the model's directions again (added by an install while the server runs;
        worker thread). The dict is replaced whole, so a reader on another thread sees the old
        set or the new one. Returns their names."""
        from stylelens.directions.store import load_directions

        found = [d for d in load_directions(self.model_dir) if d.vector.shape[-1] == self.G.w_dim]
        self.directions = {d.name: d for d in found}
        return list(self.directions)

    # descriptions ---------------------------------------------------------------------------

    @property
    def resolution(self) -> int:
        """The model's output resolution (px)."""
        return self.G.img_resolution

    def model_info(self) -> ModelInfo:
        engines = available_engines(self.heads, self.learned)
        return ModelInfo(
            id=self.model_id,
            name=self.model_name,
            resolution=self.G.img_resolution,
            num_ws=self.G.num_ws,
            w_dim=self.G.w_dim,
            device=str(self.device),
            engines=engines,
            preview_heads=self.heads is not None,
            encoder=self.encoder is not None,
            restore=["colorize", "superres", "inpaint"] if self.G.img_resolution >= 8 else [],
        )

    def direction_infos(self) -> list[DirectionInfo]:
        return [
            DirectionInfo(
                name=d.name, method=d.method, layers=d.layers, slider=d.slider, step=d.step
            )
            for d in self.directions.values()
        ]

    # latents ---------------------------------------------------------------------------------

    def current_latent(self, session: str) -> tuple[str, Latent]:
        """The latent a session's edits apply to (cached; read from disk after a restart)."""
        with self._lock:
            cached = self._latents.get(session)
        _, latent_id = self.storage.session_state(session)
        if cached is not None and cached[0] == latent_id:
            return cached
        if latent_id is None:
            raise JobError("no_latent", "no face yet: upload a photo or pick a random face")
        item = self.storage.get(session, latent_id, "latent")
        if item is None:
            raise JobError("no_latent", "the session's latent is gone; start again")
        latent = load_latent(item.path)
        latent.check_fits(num_ws=self.G.num_ws, w_dim=self.G.w_dim, model_id=self.model_id)
        with self._lock:
            self._latents[session] = (latent_id, latent)
        return latent_id, latent

    def forget(self, session: str) -> None:
        with self._lock:
            self._latents.pop(session, None)
        self.regions.forget(session)

    def _save_latent(
        self, session: str, latent: Latent, *, current: bool, meta: dict[str, Any]
    ) -> str:
        iid, path = self.storage.new_item_path(session, "safetensors")
        save_latent(path, latent)
        self.storage.add(
            session, iid, path, kind="latent", mime="application/octet-stream", meta=meta
        )
        if current:
            self.storage.set_current(session, latent=iid)
            with self._lock:
                self._latents[session] = (iid, latent)
        return iid

    # rendering -------------------------------------------------------------------------------

    def edited_ws(self, ws: torch.Tensor, params: EditParams) -> torch.Tensor:
        """Truncation, then style mixing, then the sliders (each a pure function of ws)."""
        ws = ws.to(self.device)
        if params.truncation != 1.0:
            ws = truncate_toward(ws, self.G.mapping.w_avg, params.truncation)
        if params.mixing is not None:
            ref = self.G.mapping(z_from_seed(params.mixing.seed, self.G.z_dim).float().to(ws))
            ws = style_mix(ws, ref, params.mixing.layers)
        unknown = sorted(set(params.scales) - set(self.directions))
        if unknown:
            raise JobError("bad_request", f"unknown directions {unknown}; see hello.directions")
        edits = [(self.directions[n], a) for n, a in params.scales.items() if a != 0]
        return apply_directions(ws, edits) if edits else ws

    @torch.no_grad()
    def synthesize(self, ws: torch.Tensor, noise: dict[str, torch.Tensor]) -> torch.Tensor:
        noise_dev = {k: v.to(self.device) for k, v in noise.items()} or None
        return self.G.synthesis(ws.to(self.device), noise=noise_dev)

    def encode_preview(self, img: torch.Tensor) -> Image8:
        """[1, 3, r, r] in [-1, 1] -> JPEG at most ``preview_size`` wide."""
        im = Image.fromarray(to_uint8(img)[0])
        if im.width > self.preview_size:
            im = im.resize((self.preview_size, self.preview_size), Image.Resampling.BILINEAR)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=85)
        return Image8(buf.getvalue(), im.width, im.height)

    def render(self, session: str, params: EditParams) -> tuple[torch.Tensor, torch.Tensor]:
        """The edit's latent and full-resolution image; with ``params.region`` the image is the
        session's latent outside the region (a local edit)."""
        base_id, latent = self.current_latent(session)
        ws = self.edited_ws(latent.ws, params)
        if params.region is None:
            return ws, self.synthesize(ws, latent.noise)
        return ws, self.regions.render(session, base_id, latent, ws, params.region)

    def render_edit(self, session: str, params: EditParams) -> Image8:
        return self.encode_preview(self.render(session, params)[1])

    def render_edits(self, requests: list[tuple[str, EditParams]]) -> list[Image8 | StyleLensError]:
        """Several sessions' slider renders, the whole-face ones as one batched synthesis
        (``benchmarks/batching.py``: on a 2-core CPU two renders in one call cost 0.71x each).
        Each result is the frame, or the error of that request alone (a session without a
        latent, an unknown direction): one session's mistake does not cost the others theirs."""
        results: list[Image8 | StyleLensError | None] = [None] * len(requests)
        batch: list[tuple[int, torch.Tensor, dict[str, torch.Tensor]]] = []
        for i, (session, params) in enumerate(requests):
            try:
                if params.region is not None:
                    results[i] = self.render_edit(session, params)
                    continue
                _, latent = self.current_latent(session)
                batch.append((i, self.edited_ws(latent.ws, params), latent.noise))
            except StyleLensError as e:
                results[i] = e
        if batch:
            images = self.synthesize_many([ws for _, ws, _ in batch], [n for _, _, n in batch])
            for (i, _, _), img in zip(batch, images, strict=True):
                results[i] = self.encode_preview(img[None])
        done = [r for r in results if r is not None]
        assert len(done) == len(requests), "every request has its frame or its error"
        return done

    @torch.no_grad()
    def synthesize_many(
        self, ws: list[torch.Tensor], noise: list[dict[str, torch.Tensor]]
    ) -> torch.Tensor:
        """One synthesis for several latents [1, num_ws, w_dim], each with its own noise maps (a
        layer a latent has none for uses the model's stored noise, as a single render does)."""
        names = sorted({k for maps in noise for k in maps})
        stacked: dict[str, torch.Tensor] | None = None
        if names:
            layers = self.G.synthesis.noise_layers()
            stacked = {}
            for name in names:
                own = layers[name].noise_const
                per = [maps.get(name, own).to(self.device) for maps in noise]
                stacked[name] = torch.stack([m.reshape(own.shape) for m in per])[:, None]
        return self.G.synthesis(torch.cat(ws).to(self.device), noise=stacked)

    def region_preset(self, session: str, name: str) -> FoundRegion:
        """Find a region (eyes, mouth, ...) on the session's current face; store it as a mask."""
        _, latent = self.current_latent(session)
        return self.regions.preset(session, latent, name)

    def random_face(self, session: str, seed: int) -> tuple[Saved, Image8]:
        with torch.no_grad():
            ws = self.G.mapping(z_from_seed(seed, self.G.z_dim).float().to(self.device))
        latent = Latent(ws.cpu(), {}, {"model": self.model_id, "source": f"seed {seed}"})
        iid = self._save_latent(session, latent, current=True, meta={"seed": seed})
        frame = self.encode_preview(self.synthesize(ws, {}))
        return Saved(iid, file_url(session, iid)), frame

    def commit(self, session: str, params: EditParams) -> Saved:
        """Render the edit at full resolution; store the PNG and the edited latent."""
        base_id, latent = self.current_latent(session)
        ws, rendered = self.render(session, params)
        img = Image.fromarray(to_uint8(rendered)[0])
        # With a region, the stored latent is the whole-face edit; the PNG is the local one.
        edits = params.model_dump(mode="json")
        meta = {"base": base_id, "edit": edits}
        lid = self._save_latent(
            session,
            Latent(ws.cpu(), latent.noise, {"model": self.model_id, "base": base_id}),
            current=False,
            meta=meta,
        )
        rid, path = self.storage.new_item_path(session, "png")
        img.save(path, "PNG")
        self.storage.add(
            session, rid, path, kind="result", mime="image/png", meta={**meta, "latent": lid}
        )
        return Saved(lid, file_url(session, lid), file_url(session, rid))

    # inversion -------------------------------------------------------------------------------

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
        checkpoint, an earlier inversion); or, with ``restore``, restoring it."""
        from stylelens.data.images import to_tensor

        upload = upload or self.storage.session_state(session)[0]
        item = self.storage.get(session, upload, "crop") if upload else None
        if upload is None or item is None:
            raise JobError("no_target", "nothing to invert: upload a photo first")
        init_ws = self._latent(session, init_latent).ws.to(self.device) if init_latent else None
        with Image.open(item.path) as im:
            target = to_tensor(im.convert("RGB")).to(self.device)
        if restore is not None:
            return self._start_restoration(session, target, engine, steps, upload, restore)
        init: InitKind = "latent" if init_ws is not None else "average"
        first = None
        if init_ws is None and self.encoder is not None:
            from stylelens.encoders.encode import encode

            init_ws = encode(self.encoder, target)
            init, first = "encoder", self.synthesize(init_ws, {})
        eng, config = make_engine(
            engine,
            self.G,
            steps=steps,
            perceptual=self.perceptual,
            heads=self.heads,
            learned=self.learned,
        )
        state = eng.start(target, config, init_ws)
        self.storage.drop_checkpoint(session, keep_latent=True)  # a new run replaces the offer
        return Inversion(eng, state, steps, upload, engine, init, first)

    def _start_restoration(
        self,
        session: str,
        photo: torch.Tensor,
        engine: str,
        steps: int,
        upload: str,
        params: RestoreParams,
    ) -> Inversion:
        """mGANprior on the upload, then ``params.handoff_steps`` of ``engine`` from the
        encoder's guess of the restored face (``docs/restoration.md``)."""
        from stylelens.restoration.engine import RestoreConfig, RestoreEngine, restoration_config
        from stylelens.restoration.tasks import make_task, observe, read_mask

        R = self.G.img_resolution
        hole = None
        notes: list[str] = []
        if params.mask is not None:
            item = self.storage.get(session, params.mask, "mask")
            if item is None:
                raise JobError("bad_request", f"mask {params.mask!r} is not one of this session's")
            with Image.open(item.path) as im:
                hole = read_mask(im.convert("L"), R).hole.to(self.device)
        task = make_task(params.task, scale=params.scale, mask=hole)
        observed, said = observe(task, photo, R)
        notes += said
        config = restoration_config(task, R, steps=steps, codes=params.codes, layer=params.layer)
        handoff = handoff_config = None
        if params.handoff_steps > 0:
            handoff, handoff_config = make_engine(
                engine,
                self.G,
                steps=params.handoff_steps,
                perceptual=self.perceptual,
                heads=self.heads,
                learned=self.learned,
            )
        encoder = self.encoder

        def init(image: torch.Tensor) -> torch.Tensor | None:
            if encoder is None:
                return None
            from stylelens.encoders.encode import encode

            return encode(encoder, image)

        eng = RestoreEngine(self.G, perceptual=self.perceptual, handoff=handoff, handoff_init=init)
        rconfig = RestoreConfig(config, handoff_config)
        state = eng.start(observed, rconfig)
        self.storage.drop_checkpoint(session, keep_latent=True)
        return Inversion(
            eng,
            state,
            rconfig.steps,
            upload,
            f"restore-{params.task}",
            note="; ".join(notes) or None,
        )

    def _latent(self, session: str, latent_id: str) -> Latent:
        item = self.storage.get(session, latent_id, "latent")
        if item is None:
            raise JobError("no_latent", f"latent {latent_id!r} is not one of this session's")
        latent = load_latent(item.path)
        latent.check_fits(num_ws=self.G.num_ws, w_dim=self.G.w_dim, model_id=self.model_id)
        return latent

    def use_latent(self, session: str, latent_id: str) -> Saved:
        """Make a latent of the session the one its edits apply to."""
        latent = self._latent(session, latent_id)
        self.storage.set_current(session, latent=latent_id)
        with self._lock:
            self._latents[session] = (latent_id, latent)
        c = self.storage.checkpoint(session)
        if c is not None and c.latent == latent_id:  # the offer is taken
            self.storage.drop_checkpoint(session, keep_latent=True)
        return Saved(latent_id, file_url(session, latent_id))

    def checkpoint_inversion(
        self, session: str, job: str, inv: Inversion, step: int, *, status: str = "running"
    ) -> None:
        """Save the inversion's latest latent (``ws`` only: noise maps stay at the model's)
        so that it outlives a crash, a restart or a page that went away."""
        ws = inv.engine.current_ws(inv.state).detach().cpu()
        latent = Latent(
            ws,
            {},
            {
                "model": self.model_id,
                "engine": inv.engine_name,
                "upload": inv.upload,
                "checkpoint": f"step {step} of {inv.total}",
            },
        )
        c = self.storage.checkpoint(session)
        item = self.storage.get(session, c.latent, "latent") if c and c.job == job else None
        if item is not None:
            tmp = item.path.with_suffix(".tmp")
            save_latent(tmp, latent)
            tmp.replace(item.path)  # atomic: a crash mid-write leaves the previous checkpoint
            latent_id = item.id
        else:
            latent_id = self._save_latent(
                session, latent, current=False, meta={"checkpoint": job, "upload": inv.upload}
            )
        self.storage.save_checkpoint(
            Checkpoint(
                session, job, inv.engine_name, step, inv.total, inv.upload, latent_id, status, 0.0
            )
        )

    def drop_checkpoint(self, session: str, job: str) -> None:
        """The inversion was cancelled: its checkpoint is not offered."""
        self.storage.drop_checkpoint(session, job, keep_latent=False)

    def step(self, inv: Inversion) -> StepReport:
        return inv.engine.step(inv.state)

    def finish_inversion(self, session: str, inv: Inversion) -> Saved:
        result = inv.engine.result(inv.state)
        latent = Latent(
            result.ws.detach().cpu(),
            {k: v.detach().cpu() for k, v in result.noise.items()},
            {"model": self.model_id, "engine": inv.engine_name, "upload": inv.upload},
        )
        metrics = {k: float(v) for k, v in result.metrics.items()}
        self.storage.drop_checkpoint(session, keep_latent=False)  # superseded by the result
        meta = {"upload": inv.upload, "engine": inv.engine_name, "steps": result.steps}
        iid = self._save_latent(session, latent, current=True, meta=meta)
        result_url = None
        if result.image is not None:  # a restoration: its image is a result to download
            rid, path = self.storage.new_item_path(session, "png")
            Image.fromarray(to_uint8(result.image)[0]).save(path, "PNG")
            self.storage.add(
                session, rid, path, kind="result", mime="image/png", meta={**meta, "latent": iid}
            )
            result_url = file_url(session, rid)
        return Saved(iid, file_url(session, iid), result_url, metrics=metrics)


class Runtimes:
    """The models the app offers, by id; a session works with the one it was created for."""

    def __init__(self, runtimes: list[ModelRuntime], storage: Storage) -> None:
        if not runtimes:
            raise StyleLensError("no model to serve")
        self.by_id = {rt.model_id: rt for rt in runtimes}
        self.default = runtimes[0]
        self.storage = storage

    @classmethod
    def load(cls, settings: Settings, storage: Storage) -> Runtimes:
        ids = list(dict.fromkeys([settings.default_model, *settings.serve_models]))
        return cls([ModelRuntime.load(settings, storage, i) for i in ids], storage)

    def add(self, runtime: ModelRuntime) -> None:
        """Serve one more model (installed while the server runs; call on the worker thread,
        which loaded it). The dict is replaced, not changed in place: other threads iterating
        the old one (``hello.models``, a new session's check) see it whole, before or after."""
        self.by_id = {**self.by_id, runtime.model_id: runtime}

    def for_session(self, session: str) -> ModelRuntime:
        model = self.storage.session_model(session)
        return self.by_id.get(model, self.default)

    def forget(self, session: str) -> None:
        for rt in self.by_id.values():
            rt.forget(session)
