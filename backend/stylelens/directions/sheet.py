"""The direction sheet: rows = directions, columns = slider amounts, for a few seeds."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from stylelens.directions.core import Direction
from stylelens.directions.edit import apply_directions
from stylelens.networks.runtime import autocast
from stylelens.networks.stylegan2 import Generator
from stylelens.render import to_uint8, z_from_seed

LABEL_WIDTH = 150
HEADER_HEIGHT = 18


@torch.no_grad()
def render_sheet(
    G: Generator,
    directions: Sequence[Direction],
    *,
    seeds: Sequence[int],
    steps: Sequence[float] = (-2, -1, 0, 1, 2),
    truncation_psi: float = 0.7,
    tile: int = 128,
    precision: str = "float32",
) -> Image.Image:
    """One row per direction; for each seed a group of columns at ``steps`` x the direction's
    default step. The left margin names the row, the header gives the amounts in steps."""
    device = next(G.parameters()).device
    z = torch.cat([z_from_seed(s, G.z_dim) for s in seeds]).float().to(device)
    ws = G.mapping(z, truncation_psi=truncation_psi)  # [S, num_ws, w_dim]
    cols = len(seeds) * len(steps)
    gap = 6  # between seed groups
    width = LABEL_WIDTH + cols * tile + (len(seeds) - 1) * gap
    sheet = Image.new("RGB", (width, HEADER_HEIGHT + len(directions) * tile), "white")
    draw = ImageDraw.Draw(sheet)
    x0 = [LABEL_WIDTH + g * (len(steps) * tile + gap) for g in range(len(seeds))]
    for g, seed in enumerate(seeds):
        for k, s in enumerate(steps):
            text = f"{s:+g}" if s else f"seed {seed}"
            draw.text((x0[g] + k * tile + 4, 3), text, fill="black")
    for r, d in enumerate(directions):
        edited = torch.cat([apply_directions(ws, [(d, s * d.step)]) for s in steps])
        with autocast(device, precision):
            img = G.synthesis(edited)  # [len(steps) * S, 3, R, R]
        img = torch.nn.functional.interpolate(img.float(), size=(tile, tile), mode="area")
        tiles = to_uint8(img).reshape(len(steps), len(seeds), tile, tile, 3)
        y = HEADER_HEIGHT + r * tile
        for g in range(len(seeds)):
            row = np.concatenate(list(tiles[:, g]), axis=1)
            sheet.paste(Image.fromarray(row), (x0[g], y))
        label = f"{d.name}\nstep {d.step:g} ({d.layers})"
        draw.multiline_text((4, y + tile // 2 - 12), label, fill="black")
    return sheet
