"""Local edits (seed 002): an edit, or another face's styles, inside a region; the rest untouched.

StyleMapGAN edits locally by blending two faces' spatial style maps under a mask. StyleGAN2 has
no spatial style map, but its synthesis keeps one per block: the features and the running skip
image. So the generator runs twice, for the original latent and for the edited one (a slider
edit, a style mix, another face), and from the *blend resolution* up, after every block, the
edited run continues from

    m_r * edited + (1 - m_r) * original

(features and skip image alike), ``m_r`` being the feathered mask averaged down to the block's
``r x r`` grid. The original run is never blended: it is the original image. At the last block
the blend is at full resolution, so

* where the feathered mask is 0 the output *is* the original's pixels (exactly, not nearly);
* where it is 1 the output is the edited run, whose features from the blend resolution up were
  pulled toward the original's around the region, so the generator's remaining blocks draw the
  seam; a low blend resolution (8 or 16 px) harmonises more and so weakens the edit near the
  region's edge, a high one (64 px and up) keeps the edit at full strength but only alpha-blends
  the seam. ``docs/local-editing.md`` measures the trade and picks the default.

The feather is a ramp outside the painted region: the painted pixels get the whole edit, and
the weight falls linearly to 0 over ``feather`` pixels beyond them.

The original run does not depend on the slider positions, so :class:`OriginalRun` computes it
once per latent; each slider move then costs one synthesis plus the blends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from stylelens.errors import LocalEditError
from stylelens.networks.stylegan2 import BlockOutput, SynthesisNetwork

# Pixels of feather per 256 px of output (8 at 256 px, 32 at 1024 px).
FEATHER_PER_256 = 8
# The default blend resolution is the output's 1 / BLEND_FRACTION.
BLEND_FRACTION = 8


def default_feather(resolution: int) -> int:
    return max(1, round(FEATHER_PER_256 * resolution / 256))


def default_blend_res(resolution: int) -> int:
    """The blend resolution measured best for the embedded model (32 px of 256, see
    ``docs/local-editing.md``), kept as a fraction of the output for other models."""
    return max(8, resolution // BLEND_FRACTION)


def check_blend_res(synthesis: SynthesisNetwork, blend_res: int) -> int:
    """``blend_res`` if it is one of the generator's block resolutions above 4 px."""
    choices = [r for r in synthesis.block_resolutions if r > 4]
    if blend_res not in choices:
        raise LocalEditError(
            f"blend resolution {blend_res} px: choose one of {', '.join(map(str, choices))}"
        )
    return blend_res


def feather_mask(region: torch.Tensor, feather: int) -> torch.Tensor:
    """A binary region [N, 1, R, R] -> weights in [0, 1]: 1 on the region, a linear ramp to 0
    over ``feather`` pixels outside it, 0 beyond.

    A dilation by ``ceil(feather / 2)`` followed by a box blur of half-width
    ``floor(feather / 2)``: every painted pixel keeps weight 1, and no pixel further than
    ``feather`` from the region (in the max-norm) gets any.
    """
    if feather < 0:
        raise LocalEditError(f"feather must be 0 or more pixels, got {feather}")
    region = region.float()
    if feather == 0:
        return region
    grow, pad = (feather + 1) // 2, feather // 2  # grow >= pad keeps the region at 1
    grown = F.max_pool2d(region, 2 * grow + 1, stride=1, padding=grow)
    k_blur = 2 * pad + 1
    padded = F.pad(grown, (pad, pad, pad, pad), mode="replicate")
    return F.avg_pool2d(padded, k_blur, stride=1).clamp(0, 1)


def mask_pyramid(weights: torch.Tensor, resolutions: list[int]) -> dict[int, torch.Tensor]:
    """The feathered mask [N, 1, R, R] averaged down to each resolution (area average)."""
    full = weights.shape[-1]
    out = {}
    for r in resolutions:
        if full % r:
            raise LocalEditError(f"a {full}-px mask does not divide into a {r}-px grid")
        out[r] = weights if r == full else F.avg_pool2d(weights, full // r)
    return out


@dataclass(frozen=True)
class OriginalRun:
    """The original latent's block outputs from the blend resolution up (computed once)."""

    blend_res: int
    blocks: dict[int, BlockOutput]

    @classmethod
    @torch.no_grad()
    def compute(
        cls,
        synthesis: SynthesisNetwork,
        ws: torch.Tensor,
        blend_res: int,
        *,
        noise: Mapping[str, torch.Tensor] | None = None,
    ) -> OriginalRun:
        check_blend_res(synthesis, blend_res)
        blocks = {
            out.resolution: out
            for out in synthesis.iter_blocks(ws, noise=noise)
            if out.resolution >= blend_res
        }
        return cls(blend_res, blocks)

    @property
    def image(self) -> torch.Tensor:
        return self.blocks[max(self.blocks)].img


def _blend(edited: BlockOutput, original: BlockOutput, m: torch.Tensor) -> BlockOutput:
    x = torch.lerp(original.x, edited.x, m.to(edited.x.dtype))
    img = torch.lerp(original.img, edited.img, m.to(edited.img.dtype))
    return BlockOutput(edited.resolution, x, img)


@torch.no_grad()
def render_local(
    synthesis: SynthesisNetwork,
    ws_edited: torch.Tensor,
    original: OriginalRun,
    weights: torch.Tensor,
    *,
    noise: Mapping[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """The edited latent's image inside the region, the original's outside.

    Args:
        synthesis: the generator's synthesis network.
        ws_edited: [N, num_ws, w_dim] the edited latent (sliders, mixing, another face).
        original: the original latent's run (:meth:`OriginalRun.compute`), same N or 1.
        weights: [N or 1, 1, R, R] feathered mask (:func:`feather_mask`), R the output size.
        noise: the per-layer noise maps both runs share (an inversion's), if any.

    Returns:
        [N, img_channels, R, R] image.
    """
    R = synthesis.img_resolution
    if tuple(weights.shape[-2:]) != (R, R) or weights.ndim != 4 or weights.shape[1] != 1:
        raise LocalEditError(
            f"the mask is {list(weights.shape)}; it must be [N, 1, {R}, {R}] like the output"
        )
    resolutions = [r for r in synthesis.block_resolutions if r >= original.blend_res]
    masks = mask_pyramid(weights.to(ws_edited.device), resolutions)
    out = synthesis.run_until(ws_edited, original.blend_res, noise=noise)
    out = _blend(out, original.blocks[out.resolution], masks[out.resolution])
    for r in resolutions[1:]:
        out = synthesis.run_until(ws_edited, r, start=out, noise=noise)
        out = _blend(out, original.blocks[r], masks[r])
    return out.img
