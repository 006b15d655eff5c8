"""The models as a pipeline of values: latents and edit parameters in, images and latents out.

A :class:`ModelRuntime` owns the generator, its preview heads, directions, encoder, learned
optimizer and perceptual loss on one device. It knows nothing of sessions, files, URLs or the
wire: ``jobs.session_model.SessionModel`` reads a session's latents and photos
(``sessions.files``), hands them to it, and stores and encodes (``sessions.frames``) what comes
back. Only the worker thread calls it. Anything asked of it that cannot be done raises
:class:`~stylelens.errors.StyleLensError` (``JobError`` with a protocol code).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from stylelens.directions.core import Direction
from stylelens.directions.edit import apply_directions, style_mix, truncate_toward
from stylelens.errors import JobError, StyleLensError
from stylelens.inversion import LearnedOptimizer, available_engines, make_engine
from stylelens.inversion.protocol import Engine, StepReport
from stylelens.latents import Fits, Latent
from stylelens.losses.perceptual import PerceptualLoss
from stylelens.networks.preview import PreviewHeads
from stylelens.networks.stylegan2 import Generator
from stylelens.render import z_from_seed
from stylelens.sessions.protocol import (
    DirectionInfo,
    EditParams,
    InitKind,
    ModelInfo,
    RestoreParams,
)
from stylelens.settings import Settings


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
class InversionResult:
    latent: Latent
    metrics: dict[str, float] = field(default_factory=dict)
    steps: int = 0
    image: torch.Tensor | None = None  # a restoration's restored image [1, 3, R, R]


class ModelRuntime:
    def __init__(
        self,
        *,
        G: Generator,
        model_id: str,
        model_name: str,
        model_dir: Path,
        heads: PreviewHeads | None,
        directions: list[Direction],
        perceptual: PerceptualLoss | None,
        device: torch.device,
        encoder: torch.nn.Module | None = None,
        learned: LearnedOptimizer | None = None,
    ) -> None:
        self.G = G
        self.model_id = model_id
        self.model_name = model_name
        self.model_dir = model_dir
        self.heads = heads
        self.directions = {d.name: d for d in directions}
        self.perceptual = perceptual
        self.device = device
        self.encoder = encoder
        self.learned = learned  # seed 001's learned optimizer (the "learned" engines)

    @classmethod
    def load(cls, settings: Settings, model_id: str | None = None) -> ModelRuntime:
        """Load a model (default: the default model) with its preview heads, directions,
        encoder, learned optimizer and perceptual loss.

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
            heads=load_preview_heads(model_dir, G),
            directions=directions,
            perceptual=perceptual,
            device=device,
            encoder=load_encoder(model_dir, device=device),
            learned=load_optimizer(model_dir, device=device),
        )

    def warm_up(self) -> torch.Tensor:
        """One render and one step of every engine, so the first user does not pay for
        PyTorch's first-call set-up (about a second on a CPU). Returns the render."""
        with torch.no_grad():
            ws = self.G.mapping.w_avg.reshape(1, 1, -1).expand(1, self.G.num_ws, -1)
            target = self.synthesize(ws, {})
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
        return target

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

    @property
    def fits(self) -> Fits:
        """What a latent must be to be used with this model."""
        return Fits(self.G.num_ws, self.G.w_dim, self.model_id)

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

    @torch.no_grad()
    def synthesize_many(
        self, ws: list[torch.Tensor], noise: list[dict[str, torch.Tensor]]
    ) -> torch.Tensor:
        """One synthesis for several latents [1, num_ws, w_dim], each with its own noise maps (a
        layer a latent has none for uses the model's stored noise, as a single render does);
        ``benchmarks/batching.py``: on a 2-core CPU two renders in one call cost 0.71x each."""
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

    @torch.no_grad()
    def random_latent(self, seed: int) -> Latent:
        """The face of ``seed`` (W from the mapping network, no truncation)."""
        ws = self.G.mapping(z_from_seed(seed, self.G.z_dim).float().to(self.device))
        return Latent(ws.cpu(), {}, {"model": self.model_id, "source": f"seed {seed}"})

    # inversion -------------------------------------------------------------------------------

    def start_inversion(
        self,
        photo: Image.Image,
        *,
        engine: str,
        steps: int,
        upload: str,
        init: Latent | None = None,
    ) -> Inversion:
        """Start inverting ``photo`` (the model's crop, RGB) from ``init``, else the encoder's
        guess where the model has an encoder, else the average latent."""
        from stylelens.data.images import to_tensor

        target = to_tensor(photo).to(self.device)
        init_ws = init.ws.to(self.device) if init is not None else None
        kind: InitKind = "latent" if init_ws is not None else "average"
        first = None
        if init_ws is None and self.encoder is not None:
            from stylelens.encoders.encode import encode

            init_ws = encode(self.encoder, target)
            kind, first = "encoder", self.synthesize(init_ws, {})
        eng, config = make_engine(
            engine,
            self.G,
            steps=steps,
            perceptual=self.perceptual,
            heads=self.heads,
            learned=self.learned,
        )
        state = eng.start(target, config, init_ws)
        return Inversion(eng, state, steps, upload, engine, kind, first)

    def start_restoration(
        self,
        photo: Image.Image,
        *,
        engine: str,
        steps: int,
        upload: str,
        params: RestoreParams,
        mask: Image.Image | None = None,
    ) -> Inversion:
        """mGANprior on ``photo``, then ``params.handoff_steps`` of ``engine`` from the
        encoder's guess of the restored face (``docs/restoration.md``); ``mask``: inpainting's
        painted hole."""
        from stylelens.data.images import to_tensor
        from stylelens.restoration.engine import RestoreConfig, RestoreEngine, restoration_config
        from stylelens.restoration.tasks import make_task, observe, read_mask

        R = self.G.img_resolution
        hole = read_mask(mask, R).hole.to(self.device) if mask is not None else None
        task = make_task(params.task, scale=params.scale, mask=hole)
        observed, notes = observe(task, to_tensor(photo).to(self.device), R)
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
        return Inversion(
            eng,
            state,
            rconfig.steps,
            upload,
            f"restore-{params.task}",
            note="; ".join(notes) or None,
        )

    def step(self, inv: Inversion) -> StepReport:
        return inv.engine.step(inv.state)

    def checkpoint_latent(self, inv: Inversion, step: int) -> Latent:
        """The inversion's latest latent (``ws`` only: noise maps stay at the model's)."""
        ws = inv.engine.current_ws(inv.state).detach().cpu()
        meta = {
            "model": self.model_id,
            "engine": inv.engine_name,
            "upload": inv.upload,
            "checkpoint": f"step {step} of {inv.total}",
        }
        return Latent(ws, {}, meta)

    def result(self, inv: Inversion) -> InversionResult:
        """The finished (or accepted) inversion's latent, metrics and, for a restoration, its
        restored image."""
        result = inv.engine.result(inv.state)
        latent = Latent(
            result.ws.detach().cpu(),
            {k: v.detach().cpu() for k, v in result.noise.items()},
            {"model": self.model_id, "engine": inv.engine_name, "upload": inv.upload},
        )
        metrics = {k: float(v) for k, v in result.metrics.items()}
        return InversionResult(latent, metrics, result.steps, result.image)
