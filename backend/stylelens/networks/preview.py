"""Preview heads: a usable image from the generator's intermediate layers (seed 000).

After training, a skip generator's intermediate skip images are poor pictures of the final
image (wrong contrast and colour). A preview head replaces block R's toRGB by

    img_R = up(img_{R/2}) + toRGB'_R(AdaIN(IN(x_R), s, b), w)

where IN is instance normalisation over each feature channel, AdaIN(x, s, b) = s * x + b per
channel (s = 1, b = 0 while the heads are fitted), and toRGB' starts as a copy of the
generator's own toRGB at R and is fine-tuned so that img_R matches the final image
downsampled to R (Loss = sum_R ||img_R - y_R||^2, seed 000). Per target image, the (s, b)
of one head can then be fitted to the target's colours (:func:`fit_adain`): 2 x C numbers.

Where the generator's own skip image at R already matches the final image better than the
fitted head (a skip generator whose higher blocks add little, e.g. ones grown from a smaller
model), the head records that resolution in ``raw_resolutions`` and previews without the
AdaIN fit use the skip image there; the AdaIN fit can reproduce the skip image exactly
(s = sigma(x), b = mu(x)), so with it the head is used everywhere.

The generator itself is untouched: heads are a separate module, stored in a model directory
as ``preview_heads.safetensors``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from stylelens.networks.stylegan2 import BlockOutput, Generator, SynthesisBlock, ToRGBLayer

PREVIEW_HEADS_FILE = "preview_heads.safetensors"


def torgb_w_index(resolution: int) -> int:
    """Index into ws of the w that block ``resolution``'s toRGB takes (b4 -> 1, b8 -> 3, ...)."""
    return 2 * (resolution.bit_length() - 3) + 1


def downsample_to(img: torch.Tensor, resolution: int) -> torch.Tensor:
    """Box-filter ``img`` [N, C, H, H] down to [N, C, resolution, resolution] (area average)."""
    if img.shape[-1] == resolution:
        return img
    return F.adaptive_avg_pool2d(img, resolution)


def instance_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """(x - mu) / sigma over the spatial positions of each sample and channel. [N, C, H, W]."""
    x = x.float()
    mu = x.mean(dim=(2, 3), keepdim=True)
    var = x.var(dim=(2, 3), keepdim=True, unbiased=False)
    return (x - mu) * (var + eps).rsqrt()


class PreviewHead(nn.Module):
    """Instance norm + AdaIN (s, b) + a fine-tuned copy of one block's toRGB."""

    def __init__(self, torgb: ToRGBLayer, resolution: int) -> None:
        super().__init__()
        self.resolution = resolution
        self.torgb = copy.deepcopy(torgb).requires_grad_(True)

    def forward(
        self,
        out: BlockOutput,
        block: SynthesisBlock,
        w: torch.Tensor,  # [N, w_dim]: the w of this block's toRGB
        *,
        adain: tuple[torch.Tensor, torch.Tensor] | None = None,  # (s, b), each [N or 1, C]
        normalize: bool = True,
    ) -> torch.Tensor:
        """The preview [N, img_channels, R, R] for one block's output ``out``."""
        base = out.img - block.torgb(out.x, w).float()  # up(img_{R/2}): the skip before block R
        x = instance_norm(out.x) if normalize else out.x.float()
        if adain is not None:
            s, b = adain
            x = x * s[:, :, None, None] + b[:, :, None, None]
        return base + self.torgb(x, w).float()


@dataclass(frozen=True)
class FitConfig:
    """Hyper-parameters of :func:`fit_preview_heads`."""

    steps: int = 600  # Adam steps, each on a fresh batch of the generator's own samples.
    batch: int = 8
    lr: float = 0.01
    psi_range: tuple[float, float] = (0.5, 1.0)  # truncation psi sampled uniformly per image
    seed: int = 0


class PreviewHeads(nn.Module):
    """One :class:`PreviewHead` per intermediate resolution of a generator (8 .. R/2)."""

    def __init__(
        self,
        G: Generator,
        resolutions: list[int] | None = None,
        *,
        raw_resolutions: list[int] | None = None,
    ) -> None:
        super().__init__()
        all_res = G.synthesis.block_resolutions
        resolutions = resolutions if resolutions is not None else all_res[1:-1]
        bad = [r for r in resolutions if r not in all_res[:-1]]
        if bad:
            raise ValueError(
                f"preview resolutions {bad} are not intermediate resolutions of the "
                f"generator ({all_res[:-1]})"
            )
        self.resolutions = sorted(resolutions)
        self.raw_resolutions = sorted(raw_resolutions or [])
        self.heads = nn.ModuleDict(
            {str(r): PreviewHead(getattr(G.synthesis, f"b{r}").torgb, r) for r in self.resolutions}
        )

    def head(self, resolution: int) -> PreviewHead:
        if str(resolution) not in self.heads:
            raise ValueError(f"no preview head at {resolution}; heads exist at {self.resolutions}")
        head = self.heads[str(resolution)]
        assert isinstance(head, PreviewHead)
        return head

    def preview(
        self,
        G: Generator,
        out: BlockOutput,
        ws: torch.Tensor,  # [N, num_ws, w_dim]
        *,
        adain: tuple[torch.Tensor, torch.Tensor] | None = None,
        normalize: bool = True,
        allow_raw: bool = True,
    ) -> torch.Tensor:
        """Preview of ``out`` (a block output of ``G.synthesis.iter_blocks(ws)``) at its resolution.

        At the generator's full resolution the preview is the image itself; at a resolution in
        ``raw_resolutions`` (and without ``adain``) it is the skip image unless ``allow_raw``
        is False.
        """
        r = out.resolution
        if r == G.img_resolution or (allow_raw and adain is None and r in self.raw_resolutions):
            return out.img
        block = getattr(G.synthesis, f"b{r}")
        w = ws[:, torgb_w_index(r)]
        return self.head(r)(out, block, w, adain=adain, normalize=normalize)


def preview_targets(
    G: Generator, ws: torch.Tensor, resolutions: list[int]
) -> tuple[dict[int, BlockOutput], torch.Tensor]:
    """Run ``G.synthesis`` once; return the block outputs at ``resolutions`` and the image."""
    outs: dict[int, BlockOutput] = {}
    img = None
    for out in G.synthesis.iter_blocks(ws):
        if out.resolution in resolutions:
            outs[out.resolution] = out
        img = out.img
    assert img is not None
    return outs, img


def sample_ws(
    G: Generator, n: int, *, psi_range: tuple[float, float], generator: torch.Generator
) -> torch.Tensor:
    """n ws from random z, each truncated with psi ~ U(psi_range). Returns [n, num_ws, w_dim]."""
    device = G.mapping.w_avg.device
    z = torch.randn(n, G.z_dim, generator=generator).to(device)
    psi = torch.empty(n, 1, 1).uniform_(*psi_range, generator=generator).to(device)
    ws = G.mapping(z)
    return G.mapping.w_avg.lerp(ws, psi)


def fit_preview_heads(
    G: Generator,
    heads: PreviewHeads,
    config: FitConfig = FitConfig(),
    *,
    progress: bool = False,
) -> list[float]:
    """Fine-tune every head's toRGB on G's own samples; returns the loss per step.

    Loss = sum over heads R of mean((img_R - downsample(G(w), R))^2), AdaIN fixed at s=1, b=0.
    """
    from tqdm import tqdm

    gen = torch.Generator().manual_seed(config.seed)
    params = [p for p in heads.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=config.lr, betas=(0.9, 0.99))
    losses: list[float] = []
    bar = tqdm(range(config.steps), desc="fit preview heads", disable=not progress)
    for _ in bar:
        with torch.no_grad():
            ws = sample_ws(G, config.batch, psi_range=config.psi_range, generator=gen)
            outs, img = preview_targets(G, ws, heads.resolutions)
        loss = torch.zeros([])
        for r, out in outs.items():
            pred = heads.preview(G, out, ws)
            loss = loss + (pred - downsample_to(img, r)).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    return losses


def fit_adain(
    head_fn: Callable[..., torch.Tensor],
    target: torch.Tensor,  # [1, C_img, R, R] at the head's resolution
    channels: int,
    *,
    steps: int = 30,
    lr: float = 0.05,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit one head's per-channel (s, b) so ``head_fn(adain=(s, b))`` matches ``target``.

    ``head_fn`` is a callable taking ``adain=(s, b)`` and returning the preview [1, C_img, R, R]
    for features that are already computed (detached): only 2 x ``channels`` numbers change.
    """
    device = target.device
    if init is None:
        s = torch.ones(1, channels, device=device)
        b = torch.zeros(1, channels, device=device)
    else:
        s, b = (t.detach().clone() for t in init)
    s.requires_grad_(True)
    b.requires_grad_(True)
    opt = torch.optim.Adam([s, b], lr=lr)
    for _ in range(steps):
        loss = (head_fn(adain=(s, b)) - target).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        opt.step()
    return s.detach(), b.detach()


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of images in [-1, 1] (peak-to-peak 2), per sample: [N]."""
    mse = (a.float() - b.float()).square().flatten(1).mean(dim=1)
    return 10 * torch.log10(4.0 / mse.clamp_min(1e-12))


__all__ = [
    "PREVIEW_HEADS_FILE",
    "FitConfig",
    "PreviewHead",
    "PreviewHeads",
    "downsample_to",
    "fit_adain",
    "fit_preview_heads",
    "instance_norm",
    "psnr",
    "torgb_w_index",
]
