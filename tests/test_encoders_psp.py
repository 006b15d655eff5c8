"""pSp / e4e: the architecture against a functional reference, and the official-file converter."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from stylelens.encoders.psp import IR_SE50_CHANNELS, E4EEncoder, PSPEncoder
from tests.encoder_formats import (
    IR_SE50_UNITS,
    TINY_CHANNELS,
    TINY_RESOLUTION,
    official_encoder_state,
)
from tests.formats import TINY_G

TINY = {
    "num_ws": TINY_G.num_ws,
    "w_dim": TINY_G.w_dim,
    "input_resolution": TINY_RESOLUTION,
    "stage_channels": TINY_CHANNELS,
}


def _images(n: int = 2, r: int = TINY_RESOLUTION, seed: int = 1) -> torch.Tensor:
    return torch.rand(n, 3, r, r, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _loaded(cls: type, seed: int = 0, latent_avg: torch.Tensor | None = None) -> torch.nn.Module:
    enc = cls(**TINY).eval()
    state = official_encoder_state(seed=seed)
    avg = torch.zeros(TINY_G.num_ws, TINY_G.w_dim) if latent_avg is None else latent_avg
    enc.load_state_dict({**state, "latent_avg": avg}, strict=True)
    return enc


# ----------------------------------------------------------------------------
# A straightforward reference: the official forward pass, written with torch.nn.functional
# on the official state dict (no modules of ours).


def _ref_bn(s: dict[str, torch.Tensor], p: str, x: torch.Tensor) -> torch.Tensor:
    return F.batch_norm(
        x, s[f"{p}.running_mean"], s[f"{p}.running_var"], s[f"{p}.weight"], s[f"{p}.bias"]
    )


def _ref_unit(s: dict[str, torch.Tensor], p: str, x: torch.Tensor, stride: int) -> torch.Tensor:
    if f"{p}.shortcut_layer.0.weight" in s:
        short = F.conv2d(x, s[f"{p}.shortcut_layer.0.weight"], stride=stride)
        short = _ref_bn(s, f"{p}.shortcut_layer.1", short)
    else:
        short = x[:, :, ::stride, ::stride]
    r = _ref_bn(s, f"{p}.res_layer.0", x)
    r = F.conv2d(r, s[f"{p}.res_layer.1.weight"], padding=1)
    r = F.prelu(r, s[f"{p}.res_layer.2.weight"])
    r = F.conv2d(r, s[f"{p}.res_layer.3.weight"], stride=stride, padding=1)
    r = _ref_bn(s, f"{p}.res_layer.4", r)
    gate = F.adaptive_avg_pool2d(r, 1)
    gate = F.conv2d(
        F.relu(F.conv2d(gate, s[f"{p}.res_layer.5.fc1.weight"])), s[f"{p}.res_layer.5.fc2.weight"]
    )
    return r * torch.sigmoid(gate) + short


def _ref_style(s: dict[str, torch.Tensor], j: int, x: torch.Tensor) -> torch.Tensor:
    k = 0
    while f"styles.{j}.convs.{k}.weight" in s:
        w, b = s[f"styles.{j}.convs.{k}.weight"], s[f"styles.{j}.convs.{k}.bias"]
        x = F.leaky_relu(F.conv2d(x, w, b, stride=2, padding=1), 0.01)
        k += 2
    x = x.view(-1, x.shape[1])
    w = s[f"styles.{j}.linear.weight"]
    return F.linear(x, w / math.sqrt(w.shape[1]), s[f"styles.{j}.linear.bias"])


def _ref_heads(s: dict[str, torch.Tensor], img: torch.Tensor, num_ws: int) -> torch.Tensor:
    x = F.conv2d(img, s["input_layer.0.weight"], padding=1)
    x = F.prelu(_ref_bn(s, "input_layer.1", x), s["input_layer.2.weight"])
    i, taps = 0, {}
    for n in IR_SE50_UNITS:
        for k in range(n):
            x = _ref_unit(s, f"body.{i}", x, 2 if k == 0 else 1)
            taps[i] = x
            i += 1
    c1, c2, c3 = taps[6], taps[20], taps[23]

    def up_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return F.interpolate(a, size=b.shape[-2:], mode="bilinear", align_corners=True) + b

    p2 = up_add(c3, F.conv2d(c2, s["latlayer1.weight"], s["latlayer1.bias"]))
    p1 = up_add(p2, F.conv2d(c1, s["latlayer2.weight"], s["latlayer2.bias"]))
    feats = [c3 if j < 3 else p2 if j < 7 else p1 for j in range(num_ws)]
    return torch.stack([_ref_style(s, j, f) for j, f in enumerate(feats)], dim=1)


# ----------------------------------------------------------------------------
# Architecture


def test_full_size_layout_has_the_official_names_and_shapes():
    with torch.device("meta"):
        for cls in (PSPEncoder, E4EEncoder):
            ours = cls(num_ws=18).state_dict()
            theirs = official_encoder_state(
                num_ws=18, channels=IR_SE50_CHANNELS, resolution=256, meta=True
            )
            assert set(ours) - set(theirs) == {"latent_avg"}
            assert set(theirs) <= set(ours)
            assert all(ours[k].shape == v.shape for k, v in theirs.items())
            assert ours["latent_avg"].shape == (18, 512)
            assert sum(v.numel() for k, v in theirs.items()) > 260e6  # pSp's ~267M parameters


def test_psp_equals_the_reference():
    enc = _loaded(PSPEncoder)
    img = _images()
    with torch.no_grad():
        ref = _ref_heads(official_encoder_state(), img, TINY_G.num_ws)
        ws = enc(img)
    assert ws.shape == (2, TINY_G.num_ws, TINY_G.w_dim)
    assert torch.allclose(ws, ref, atol=1e-5, rtol=1e-4)
    assert ws.abs().max() > 0.1 and ws.std(dim=0).mean() > 1e-3  # depends on the image


def test_e4e_is_w0_plus_deltas():
    enc = _loaded(E4EEncoder)
    img = _images()
    with torch.no_grad():
        heads = _ref_heads(official_encoder_state(), img, TINY_G.num_ws)
        ws = enc(img)
    expected = heads[:, :1] + torch.cat([torch.zeros_like(heads[:, :1]), heads[:, 1:]], 1)
    assert torch.allclose(ws, expected, atol=1e-5, rtol=1e-4)
    assert torch.allclose(ws[:, 0], heads[:, 0], atol=1e-5)  # delta_0 = 0


def test_latent_avg_is_added_per_w():
    avg = torch.randn(TINY_G.num_ws, TINY_G.w_dim)
    img = _images()
    with torch.no_grad():
        for cls in (PSPEncoder, E4EEncoder):
            a = _loaded(cls)(img)
            b = _loaded(cls, latent_avg=avg)(img)
            assert torch.allclose(b - a, avg.expand_as(a), atol=1e-5)


def test_deterministic_and_batch_independent():
    enc = _loaded(E4EEncoder)
    img = _images(3)
    with torch.no_grad():
        a, b = enc(img), enc(img)
        one = enc(img[1:2])
    assert torch.equal(a, b)
    assert torch.allclose(a[1:2], one, atol=1e-5)


@pytest.mark.parametrize("num_ws", [2, 5, 8, 14])
def test_style_counts_follow_num_ws(num_ws: int):
    enc = PSPEncoder(**{**TINY, "num_ws": num_ws})
    sizes = [len(s.convs) // 2 for s in enc.styles]  # log2 of each head's input size
    r = TINY_RESOLUTION
    expected = [int(math.log2(r // (16 if j < 3 else 8 if j < 7 else 4))) for j in range(num_ws)]
    assert sizes == expected
    with torch.no_grad():
        assert enc.eval()(_images(1)).shape == (1, num_ws, TINY_G.w_dim)


def test_bad_inputs_and_configs_are_refused():
    enc = _loaded(PSPEncoder)
    with pytest.raises(ValueError, match=r"img has shape \[1, 3, 64, 64\]"):
        enc(_images(1, r=64))
    with pytest.raises(ValueError, match="w_dim"):
        PSPEncoder(num_ws=8, w_dim=256)
    with pytest.raises(ValueError, match="power of two"):
        PSPEncoder(**{**TINY, "input_resolution": 48})


def test_bfloat16_autocast_is_close():
    enc = _loaded(PSPEncoder)
    img = _images()
    with torch.no_grad():
        ref = enc(img)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = enc(img)
    assert low.dtype == torch.float32 or low.dtype == torch.bfloat16
    err = (low.float() - ref).abs().max() / ref.abs().max()
    assert err < 0.1
