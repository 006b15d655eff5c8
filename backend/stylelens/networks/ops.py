"""Pure-PyTorch StyleGAN2 primitives: FIR resampling, bias + activation, modulated convolution.

The maths follow Karras et al., "Analyzing and Improving the Image Quality of StyleGAN"
(CVPR 2020) as implemented in NVIDIA's stylegan2-ada-pytorch, so that weights converted from
NVIDIA or rosinality checkpoints give the same images. No compiled extension: every op is a
handful of PyTorch calls that run on CPU and CUDA, in float32 or under bfloat16 autocast.

Two choices here are about speed, measured in ``benchmarks/generator.py``:

* The [1, 3, 3, 1] blur runs as one depthwise convolution (``groups=C``) instead of folding the
  channels into the batch and running a single-channel convolution.
* Modulated convolution scales the activations before and after a plain convolution instead of
  building a per-sample weight ("non-fused" in NVIDIA's terms). The results are identical; the
  weight is shared by the batch, and when the weights are frozen (inversion, editing) the
  backward pass needs no weight gradient at all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

LRELU_SLOPE = 0.2
LRELU_GAIN = math.sqrt(2.0)  # keeps the activation variance of a leaky ReLU at ~1
DEMOD_EPS = 1e-8
# When gradients w.r.t. the styles are needed, modulating the weight costs one extra (weight-
# gradient) convolution while scaling the activations costs several passes over them. On the
# 2-core CPU (benchmarks/generator.py) the weight wins for narrow layers, the activations for
# wide ones; the crossover measured at O * I ~ 48 * (O + I), i.e. about 96 channels.
FUSED_GRAD_MAX_RATIO = 48

ACTIVATIONS = ("linear", "lrelu")


def assert_shape(x: torch.Tensor, shape: Sequence[int | None], name: str = "tensor") -> None:
    """Raise ``ValueError`` unless ``x`` has ``shape`` (``None`` matches any size)."""
    if x.ndim != len(shape) or any(
        want is not None and got != want for got, want in zip(x.shape, shape, strict=True)
    ):
        want_str = ", ".join("*" if s is None else str(s) for s in shape)
        raise ValueError(f"{name} has shape {list(x.shape)}, expected [{want_str}]")


def setup_filter(taps: Sequence[float] = (1, 3, 3, 1)) -> torch.Tensor:
    """Separable 2-D FIR filter from 1-D taps, normalised to sum 1. Returns [fh, fw]."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    f = torch.outer(f, f)
    return f / f.sum()


def upfirdn2d(
    x: torch.Tensor,
    f: torch.Tensor,
    *,
    up: int = 1,
    down: int = 1,
    padding: Sequence[int] = (0, 0, 0, 0),
    gain: float = 1.0,
) -> torch.Tensor:
    """Upsample by zero insertion, pad, convolve with the FIR filter ``f``, downsample.

    Args:
        x: [N, C, H, W] input.
        f: [fh, fw] filter (true convolution, i.e. the filter is flipped; ours are symmetric).
        up, down: integer resampling factors.
        padding: (x0, x1, y0, y1) padding after upsampling; negative values crop.
        gain: overall gain; up-sampling by 2 needs ``gain=4`` to keep the signal magnitude.

    Returns:
        [N, C, H', W'] with H' = (H * up + y0 + y1 - fh + 1) // down (rounded up).
    """
    n, c, h, w = x.shape
    if up > 1:
        # Zero insertion: [N, C, H, 1, W, 1] padded to [N, C, H, up, W, up].
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    px0, px1, py0, py1 = padding
    weight = (f * gain ** (f.ndim / 2)).flip([0, 1]).to(x.dtype)
    weight = weight[None, None].expand(c, 1, *f.shape)  # one depthwise filter per channel
    if px0 == px1 == py0 == py1 >= 0:  # let the convolution pad: saves a copy
        return F.conv2d(x, weight, stride=down, padding=px0, groups=c)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0) : x.shape[2] - max(-py1, 0), max(-px0, 0) : x.shape[3] - max(-px1, 0)]
    return F.conv2d(x, weight, stride=down, groups=c)


def upsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x FIR upsampling that keeps the image aligned: [N, C, H, W] -> [N, C, 2H, 2W]."""
    fw = f.shape[-1]
    p0, p1 = (fw + 1) // 2, (fw - 2) // 2
    return upfirdn2d(x, f, up=2, padding=(p0, p1, p0, p1), gain=4.0)


def downsample2d(x: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """2x FIR downsampling: [N, C, H, W] -> [N, C, H/2, W/2]."""
    fw = f.shape[-1]
    p0, p1 = (fw - 1) // 2, (fw - 2) // 2
    return upfirdn2d(x, f, down=2, padding=(p0, p1, p0, p1))


def bias_act(
    x: torch.Tensor,
    b: torch.Tensor | None = None,
    *,
    act: str = "linear",
    gain: float | None = None,
    clamp: float | None = None,
) -> torch.Tensor:
    """Add a per-channel bias (dim 1), apply the activation, scale by ``gain``, clamp.

    ``gain=None`` uses the activation's default gain (sqrt(2) for lrelu, 1 for linear).
    """
    if act not in ACTIVATIONS:
        raise ValueError(f"unknown activation {act!r}; expected one of {ACTIVATIONS}")
    if gain is None:
        gain = LRELU_GAIN if act == "lrelu" else 1.0
    if b is not None:
        x = x + b.to(x.dtype).reshape([1, -1] + [1] * (x.ndim - 2))
        if gain != 1:
            x.mul_(gain)  # x is our own fresh tensor: scale it in place, saving a pass
    elif gain != 1:
        x = x * gain
    if act == "lrelu":
        # Scaling before the activation is the same as after (gain > 0, lrelu is homogeneous).
        x = F.leaky_relu(x, LRELU_SLOPE)
    if clamp is not None:
        x = x.clamp(-clamp, clamp)
    return x


def conv2d_up2(x: torch.Tensor, weight: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """3x3 convolution at twice the resolution: [N, I, H, W] -> [N, O, 2H, 2W].

    A stride-2 transposed convolution followed by the FIR blur (StyleGAN2's upsampling
    convolution). ``weight`` is [O, I, k, k] in the stored (NVIDIA) orientation.
    """
    kw = weight.shape[-1]
    fw = f.shape[-1]
    x = F.conv_transpose2d(x, weight.transpose(0, 1).to(x.dtype), stride=2)
    # The transposed conv yields 2H + k - 2 samples; the blur trims them back to 2H.
    p0 = (fw + 1) // 2 - (kw - 1) + kw // 2
    p1 = (fw - 2) // 2 - (kw - 2) + kw // 2
    return upfirdn2d(x, f, padding=(p0, p1, p0, p1), gain=4.0)


def conv2d_down2(x: torch.Tensor, weight: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Convolution with 2x downsampling: [N, I, H, W] -> [N, O, H/2, W/2]. Blur first, then
    a stride-2 convolution (a 1x1 kernel downsamples the blurred input instead)."""
    kw = weight.shape[-1]
    fw = f.shape[-1]
    p = kw // 2
    p0, p1 = p + (fw - 1) // 2, p + (fw - 2) // 2
    if kw == 1:
        x = upfirdn2d(x, f, down=2, padding=(p0, p1, p0, p1))
        return F.conv2d(x, weight.to(x.dtype))
    x = upfirdn2d(x, f, padding=(p0, p1, p0, p1))
    return F.conv2d(x, weight.to(x.dtype), stride=2)


def demodulation_coefficients(weight: torch.Tensor, styles: torch.Tensor) -> torch.Tensor:
    """1 / ||w'_o|| for the style-modulated weight w'_oik = s_i * w_oik (StyleGAN2 eq. 3).

    Args:
        weight: [O, I, k, k]; styles: [N, I]. Returns [N, O] in float32.
    """
    with torch.autocast(device_type=weight.device.type, enabled=False):
        wsq = weight.float().square().sum(dim=[2, 3])  # [O, I]
        return (styles.float().square() @ wsq.t() + DEMOD_EPS).rsqrt()  # [N, O]


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    demodulate: bool = True,
    up: int = 1,
    resample_filter: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    fused: bool | None = None,
) -> torch.Tensor:
    """Modulated (and demodulated) convolution.

    Equivalent to convolving each sample with its own weight ``w'_oik = s_i * w_oik / ||w'_o||``.

    Args:
        x: [N, I, H, W] activations.
        weight: [O, I, k, k] shared weight, stored at N(0, 1) scale.
        styles: [N, I] per-sample input-channel scales.
        demodulate: divide each output channel by the norm of its modulated weight.
        up: 1 or 2 (2 needs ``resample_filter``).
        noise: optional tensor broadcastable to the output, added after demodulation.
        fused: True builds the per-sample weight (one sample only); False scales the
            activations around a shared convolution (batches; no weight gradient needed).
            None chooses the cheaper for the case at hand.

    Returns:
        [N, O, H * up, W * up].
    """
    n, i = styles.shape
    assert_shape(x, [n, i, None, None], "modulated_conv2d input")
    if up not in (1, 2):
        raise ValueError(f"up must be 1 or 2, got {up}")
    if up == 2 and resample_filter is None:
        raise ValueError("up=2 needs a resample_filter")
    if fused is None:
        o = weight.shape[0]
        needs_grad = torch.is_grad_enabled() and styles.requires_grad
        fused = n == 1 and (not needs_grad or o * i <= FUSED_GRAD_MAX_RATIO * (o + i))
    dcoefs = demodulation_coefficients(weight, styles) if demodulate else None  # [N, O]
    if fused:
        if n != 1:
            raise ValueError("fused modulated_conv2d handles one sample at a time")
        w = weight * styles.reshape(1, i, 1, 1)
        if dcoefs is not None:
            w = w * dcoefs.reshape(-1, 1, 1, 1)
        x = _conv(x, w, up, resample_filter)
    else:
        x = x * styles.to(x.dtype).reshape(n, i, 1, 1)
        x = _conv(x, weight, up, resample_filter)
        if dcoefs is not None:
            scale = dcoefs.to(x.dtype).reshape(n, -1, 1, 1)
            return x * scale if noise is None else torch.addcmul(noise.to(x.dtype), x, scale)
    return x if noise is None else x + noise.to(x.dtype)


def _conv(
    x: torch.Tensor, weight: torch.Tensor, up: int, resample_filter: torch.Tensor | None
) -> torch.Tensor:
    if up == 2:
        assert resample_filter is not None
        return conv2d_up2(x, weight, resample_filter)
    return F.conv2d(x, weight.to(x.dtype), padding=weight.shape[-1] // 2)
