"""How good is each resolution's preview? PSNR against the downsampled final image.

Four variants per intermediate resolution (seed 000, Fig. 4 b-e, as numbers):
``raw`` the generator's own skip image at that resolution; ``instance_norm`` instance norm in
front of the generator's unchanged toRGB; ``fitted`` the fitted preview head; ``fitted_adain``
the fitted head plus the per-image AdaIN colour fit.
"""

from __future__ import annotations

import torch

from stylelens.networks.preview import (
    FitConfig,
    PreviewHeads,
    downsample_to,
    fit_adain,
    preview_targets,
    psnr,
    sample_ws,
)
from stylelens.networks.stylegan2 import BlockOutput, Generator

VARIANTS = ("raw", "instance_norm", "fitted", "fitted_adain")


def preview_variants(
    G: Generator,
    heads: PreviewHeads,
    untrained: PreviewHeads,
    out: BlockOutput,
    ws: torch.Tensor,
    target: torch.Tensor,
    *,
    adain_steps: int = 50,
) -> dict[str, torch.Tensor]:
    """The four previews [N, 3, r, r] of one block output (``target`` for the AdaIN fit)."""
    with torch.no_grad():
        images = {
            "raw": out.img,
            "instance_norm": untrained.preview(G, out, ws),
            "fitted": heads.preview(G, out, ws, allow_raw=False),
        }
    fitted = []
    for i in range(ws.shape[0]):
        one = BlockOutput(out.resolution, out.x[i : i + 1], out.img[i : i + 1])
        w_i = ws[i : i + 1]

        def head_fn(adain: tuple[torch.Tensor, torch.Tensor], one=one, w_i=w_i) -> torch.Tensor:
            return heads.preview(G, one, w_i, adain=adain)

        s, b = fit_adain(head_fn, target[i : i + 1], one.x.shape[1], steps=adain_steps)
        with torch.no_grad():
            fitted.append(head_fn(adain=(s, b)))
    images["fitted_adain"] = torch.cat(fitted)
    return images


def evaluate_preview_heads(
    G: Generator,
    heads: PreviewHeads,
    *,
    samples: int = 32,
    seed: int = 1,
    psi_range: tuple[float, float] = FitConfig.psi_range,
) -> dict[int, dict[str, float]]:
    """Mean PSNR (dB) per resolution and variant on ``samples`` fresh samples of G."""
    gen = torch.Generator().manual_seed(seed)
    untrained = PreviewHeads(G, heads.resolutions).requires_grad_(False)
    heads = heads.requires_grad_(False)
    with torch.no_grad():
        ws = sample_ws(G, samples, psi_range=psi_range, generator=gen)
        outs, img = preview_targets(G, ws, heads.resolutions)
    table: dict[int, dict[str, float]] = {}
    for r, out in outs.items():
        target = downsample_to(img, r)
        images = preview_variants(G, heads, untrained, out, ws, target)
        table[r] = {k: float(psnr(v, target).mean()) for k, v in images.items()}
    return table


def raw_is_better(table: dict[int, dict[str, float]]) -> list[int]:
    """Resolutions where the skip image beats the fitted head (without the AdaIN fit)."""
    return sorted(r for r, row in table.items() if row["raw"] > row["fitted"])
