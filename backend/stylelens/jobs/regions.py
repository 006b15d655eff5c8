"""Local edits in the web app: renders confined to a region of the session, and region presets.

A slider move in region mode renders the edited latent blended into the original
(:mod:`stylelens.editing.local`). The original's run and the feathered mask do not change
while the sliders move, so they are kept per session, keyed by what they depend on (the
latent and blend resolution; the mask), and each move costs one synthesis plus the blends.
Only the worker thread calls this (like :class:`~stylelens.jobs.session_model.SessionModel`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import torch
from PIL import Image

from stylelens.editing.local import (
    OriginalRun,
    check_blend_res,
    default_blend_res,
    default_feather,
    feather_mask,
    render_local,
)
from stylelens.editing.regions import preset_mask
from stylelens.errors import StyleLensError
from stylelens.latents import Latent
from stylelens.masks import MaskError, read_mask
from stylelens.networks.stylegan2 import Generator
from stylelens.render import to_uint8
from stylelens.sessions.files import SessionFiles
from stylelens.sessions.protocol import Region
from stylelens.sessions.urls import file_url


@dataclass(frozen=True)
class FoundRegion:
    mask: str
    mask_url: str
    area: float  # the fraction of the image it covers


@dataclass
class _SessionCache:
    original: tuple[tuple[str, int], OriginalRun] | None = None  # (latent id, blend res)
    weights: tuple[str, torch.Tensor] | None = None  # (mask id, feathered mask)


class SessionRegions:
    def __init__(self, G: Generator, files: SessionFiles, device: torch.device) -> None:
        self.G, self.files, self.device = G, files, device
        self._cache: dict[str, _SessionCache] = {}
        self._lock = threading.Lock()

    def forget(self, session: str) -> None:
        with self._lock:
            self._cache.pop(session, None)

    def _entry(self, session: str) -> _SessionCache:
        with self._lock:
            return self._cache.setdefault(session, _SessionCache())

    def _noise(self, latent: Latent) -> dict[str, torch.Tensor] | None:
        return {k: v.to(self.device) for k, v in latent.noise.items()} or None

    def _weights(self, session: str, mask_id: str) -> torch.Tensor:
        entry = self._entry(session)
        if entry.weights is not None and entry.weights[0] == mask_id:
            return entry.weights[1]
        painted = self.files.mask(session, mask_id)
        R = self.G.img_resolution
        try:
            region = read_mask(painted, R).hole
        except MaskError as e:
            raise StyleLensError(f"the region's mask cannot be used: {e}") from None
        weights = feather_mask(region.to(self.device), default_feather(R))
        entry.weights = (mask_id, weights)
        return weights

    def _original(
        self, session: str, latent_id: str, latent: Latent, blend_res: int
    ) -> OriginalRun:
        entry = self._entry(session)
        key = (latent_id, blend_res)
        if entry.original is not None and entry.original[0] == key:
            return entry.original[1]
        run = OriginalRun.compute(
            self.G.synthesis, latent.ws.to(self.device), blend_res, noise=self._noise(latent)
        )
        entry.original = (key, run)
        return run

    @torch.no_grad()
    def render(
        self,
        session: str,
        latent_id: str,
        latent: Latent,
        ws_edited: torch.Tensor,
        region: Region,
    ) -> torch.Tensor:
        """The edited latent inside the region, the session's latent outside: [1, 3, R, R]."""
        R = self.G.img_resolution
        blend_res = check_blend_res(
            self.G.synthesis, region.blend_res if region.blend_res else default_blend_res(R)
        )
        weights = self._weights(session, region.mask)
        original = self._original(session, latent_id, latent, blend_res)
        return render_local(
            self.G.synthesis,
            ws_edited.to(self.device),
            original,
            weights,
            noise=self._noise(latent),
        )

    @torch.no_grad()
    def preset(self, session: str, latent: Latent, name: str) -> FoundRegion:
        """Find the ``name`` region on the latent's face and store it as a mask of the session."""
        img = self.G.synthesis(latent.ws.to(self.device), noise=self._noise(latent))
        mask = preset_mask(name, Image.fromarray(to_uint8(img)[0]))
        area = float(mask.mean())
        mid = self.files.save_mask(session, mask, {"preset": name, "hole": area})
        return FoundRegion(mid, file_url(session, mid), round(area, 4))
