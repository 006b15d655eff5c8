"""The networks: block-by-block synthesis, noise, truncation, fast ops against plain ones."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from stylelens.networks import ops
from stylelens.networks.discriminator import Discriminator, minibatch_stddev
from stylelens.networks.stylegan2 import Generator, GeneratorConfig, channel_schedule
from tests.formats import TINY_D, TINY_G, random_state


@pytest.fixture(scope="module")
def G(weights) -> Generator:
    G = Generator(TINY_G)
    G.load_state_dict(weights[0])
    return G.eval().requires_grad_(False)


def ws_for(G: Generator, n: int = 2, seed: int = 1) -> torch.Tensor:
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
    return G.mapping(z)


def test_config_f_channels_and_num_ws():
    cfg = GeneratorConfig()  # FFHQ config-f
    assert cfg.channels == {
        4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128, 512: 64, 1024: 32
    }  # fmt: skip
    assert cfg.num_ws == 18
    assert GeneratorConfig(img_resolution=256).num_ws == 14
    paper256 = channel_schedule(256, channel_base=16384, channel_max=512)
    assert paper256 == {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64}


@pytest.mark.parametrize("res", [3, 2048, 48, 0])
def test_config_rejects_bad_resolution(res):
    with pytest.raises(ValueError, match="power of two"):
        GeneratorConfig(img_resolution=res)


def test_block_by_block_equals_full_pass(G):
    """iter_blocks/run_until give exactly the activations a full forward pass computes."""
    ws = ws_for(G)
    captured: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = [
        block.register_forward_hook(lambda m, i, o: captured.__setitem__(m.resolution, o))
        for block in G.synthesis.blocks()
    ]
    full = G.synthesis(ws)
    for h in hooks:
        h.remove()
    outs = list(G.synthesis.iter_blocks(ws))
    assert [o.resolution for o in outs] == [4, 8, 16, 32]
    for out in outs:
        x, img = captured[out.resolution]
        assert out.x.shape == x.shape and out.img.shape == (2, 3, out.resolution, out.resolution)
        torch.testing.assert_close(out.x, x, rtol=0, atol=0)
        torch.testing.assert_close(out.img, img, rtol=0, atol=0)
        partial = G.synthesis.run_until(ws, out.resolution)
        torch.testing.assert_close(partial.img, img, rtol=0, atol=0)
    torch.testing.assert_close(outs[-1].img, full, rtol=0, atol=0)


def test_run_until_rejects_unknown_resolution(G):
    with pytest.raises(ValueError, match="not one of the resolutions"):
        G.synthesis.run_until(ws_for(G), 12)


def test_ws_shape_is_checked(G):
    with pytest.raises(ValueError, match=r"ws has shape \[2, 7, 32\], expected \[\*, 8, 32\]"):
        G.synthesis(torch.zeros(2, 7, 32))
    with pytest.raises(ValueError, match="z has shape"):
        G.mapping(torch.zeros(2, 31))


def test_noise_modes(G):
    ws = ws_for(G)
    const_a, const_b = G.synthesis(ws, noise_mode="const"), G.synthesis(ws, noise_mode="const")
    torch.testing.assert_close(const_a, const_b, rtol=0, atol=0)
    none = G.synthesis(ws, noise_mode="none")
    rand_a = G.synthesis(ws, noise_mode="random", generator=torch.Generator().manual_seed(3))
    rand_b = G.synthesis(ws, noise_mode="random", generator=torch.Generator().manual_seed(3))
    rand_c = G.synthesis(ws, noise_mode="random", generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(rand_a, rand_b, rtol=0, atol=0)
    for a, b in [(const_a, none), (const_a, rand_a), (rand_a, rand_c)]:
        assert (a - b).abs().max() > 1e-3
    with pytest.raises(ValueError, match="noise_mode"):
        G.synthesis(ws, noise_mode="sometimes")


def test_explicit_noise_maps_replace_noise_mode(G):
    ws = ws_for(G)
    layers = G.synthesis.noise_layers()
    assert list(layers)[:3] == ["b4.conv1", "b8.conv0", "b8.conv1"]
    noise = {name: layer.noise_const[None, None] for name, layer in layers.items()}
    torch.testing.assert_close(
        G.synthesis(ws, noise_mode="none", noise=noise), G.synthesis(ws, noise_mode="const")
    )


def test_truncation(G):
    z = torch.randn(3, G.z_dim)
    ws = G.mapping(z)
    assert ws.shape == (3, G.num_ws, G.w_dim)
    assert torch.equal(ws[:, 0], ws[:, -1])  # W: one w repeated
    at_avg = G.mapping(z, truncation_psi=0.0)
    torch.testing.assert_close(at_avg, G.mapping.w_avg.expand_as(at_avg))
    cut = G.mapping(z, truncation_psi=0.5, truncation_cutoff=3)
    torch.testing.assert_close(cut[:, :3], G.mapping.w_avg.lerp(ws[:, :3], 0.5))
    torch.testing.assert_close(cut[:, 3:], ws[:, 3:])


def test_style_mixing_is_rows_of_ws(G):
    a, b = ws_for(G, 1, seed=1), ws_for(G, 1, seed=2)
    mixed = torch.cat([a[:, :4], b[:, 4:]], dim=1)
    img = G.synthesis(mixed)
    assert (img - G.synthesis(a)).abs().max() > 1e-3 and (img - G.synthesis(b)).abs().max() > 1e-3


def test_fused_and_unfused_modulated_conv_agree():
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(1, 8, 6, 6, generator=g), torch.randn(5, 8, 3, 3, generator=g)
    s, f = torch.rand(1, 8, generator=g) + 0.5, ops.setup_filter()
    noise = torch.randn(1, 1, 12, 12, generator=g)
    for up, nz in [(1, None), (2, noise)]:
        a = ops.modulated_conv2d(x, w, s, up=up, resample_filter=f, noise=nz, fused=True)
        b = ops.modulated_conv2d(x, w, s, up=up, resample_filter=f, noise=nz, fused=False)
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        grads = []
        for fused in (True, False):
            sg = s.clone().requires_grad_(True)
            out = ops.modulated_conv2d(x, w, sg, up=up, resample_filter=f, noise=nz, fused=fused)
            out.square().sum().backward()
            grads.append(sg.grad)
        torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5)


def _plain_upfirdn2d(x, f, up, down, pad, gain):
    """The straightforward form: fold channels into the batch, one single-channel filter."""
    n, c, h, w = x.shape
    y = x.reshape(n * c, 1, h, w)
    if up > 1:
        z = torch.zeros(n * c, 1, h * up, w * up)
        z[:, :, ::up, ::up] = y
        y = z
    y = F.pad(y, [max(pad[0], 0), max(pad[1], 0), max(pad[2], 0), max(pad[3], 0)])
    y = y[
        :,
        :,
        max(-pad[2], 0) : y.shape[2] - max(-pad[3], 0),
        max(-pad[0], 0) : y.shape[3] - max(-pad[1], 0),
    ]
    k = (f * gain ** (f.ndim / 2)).flip([0, 1])[None, None]
    y = F.conv2d(y, k)[:, :, ::down, ::down]
    return y.reshape(n, c, y.shape[2], y.shape[3])


@pytest.mark.parametrize(
    "up,down,pad,gain",
    [(1, 1, (1, 1, 1, 1), 1.0), (2, 1, (2, 1, 2, 1), 4.0), (1, 2, (1, 1, 1, 1), 1.0),
     (1, 1, (2, 0, -1, 1), 1.0), (2, 2, (0, 3, 1, 2), 4.0)],
)  # fmt: skip
def test_depthwise_upfirdn2d_equals_plain(up, down, pad, gain):
    x = torch.randn(2, 5, 9, 9)
    f = ops.setup_filter()
    torch.testing.assert_close(
        ops.upfirdn2d(x, f, up=up, down=down, padding=pad, gain=gain),
        _plain_upfirdn2d(x, f, up, down, pad, gain),
    )


def test_resampling_shapes_and_dc_gain():
    f = ops.setup_filter()
    assert f.sum().item() == pytest.approx(1.0)
    x = torch.ones(1, 2, 8, 8)
    up = ops.upsample2d(x, f)
    down = ops.downsample2d(x, f)
    assert up.shape == (1, 2, 16, 16) and down.shape == (1, 2, 4, 4)
    torch.testing.assert_close(up[:, :, 2:-2, 2:-2], torch.ones(1, 2, 12, 12))  # away from edges
    torch.testing.assert_close(down[:, :, 1:-1, 1:-1], torch.ones(1, 2, 2, 2))


def test_bias_act():
    x = torch.tensor([[-2.0, 3.0]])
    b = torch.tensor([1.0, -1.0])
    out = ops.bias_act(x, b, act="lrelu", clamp=2.0)
    torch.testing.assert_close(out, torch.tensor([[-0.2 * 2**0.5, 2.0]]))
    with pytest.raises(ValueError, match="unknown activation"):
        ops.bias_act(x, act="gelu")


def test_bfloat16_autocast_is_close_to_float32(G):
    ws = ws_for(G)
    ref = G.synthesis(ws)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = G.synthesis(ws)
    assert low.dtype == torch.float32  # the skip image accumulates in float32
    rel = (low - ref).norm() / ref.norm()
    assert 0 < rel < 0.05


def test_gradient_reaches_every_w(G):
    ws = ws_for(G, 1).requires_grad_(True)
    G.synthesis(ws).square().mean().backward()
    assert ws.grad is not None and (ws.grad.abs().sum(dim=2) > 0).all()


def test_discriminator_features_and_mbstd(weights):
    D = Discriminator(TINY_D)
    D.load_state_dict(random_state(D, seed=5))
    img = torch.randn(4, 3, 32, 32)
    feats = D.features(img)
    assert {r: tuple(v.shape) for r, v in feats.items()} == {
        32: (4, 16, 16, 16), 16: (4, 32, 8, 8), 8: (4, 32, 4, 4)
    }  # fmt: skip
    assert D(img).shape == (4, 1)
    # The stddev channel depends on the other samples of the group, nothing else does.
    x = torch.randn(4, 6, 4, 4)
    y = minibatch_stddev(x, group_size=2, num_channels=1)
    assert y.shape == (4, 7, 4, 4)
    torch.testing.assert_close(y[0, 6], y[2, 6])  # samples 0 and 2 share a group
    with pytest.raises(ValueError, match="not divisible"):
        minibatch_stddev(torch.randn(3, 6, 4, 4), group_size=2, num_channels=1)
