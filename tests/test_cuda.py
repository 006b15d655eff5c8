"""The GPU path, on CUDA: the networks against the CPU, every inversion engine, preview heads,
directions, converters loading straight to the GPU, and the worker and the app's websocket
flow on a CUDA device. Marked ``cuda`` and skipped where there is no CUDA (CI, this project's
CPU machines); ``benchmarks/gpu_check.sh`` runs them on a lent GPU."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient
from PIL import Image

from stylelens.api.app import create_app
from stylelens.checkpoints.native import load_generator
from stylelens.checkpoints.preview_heads import load_preview_heads
from stylelens.networks.stylegan2 import Generator
from tests.formats import TINY_G
from tests.test_api import (
    new_session,
    receive_until,
    receive_until_frame,
    settings_for,
    upload,
)

# STYLELENS_CUDA_TESTS_ON=cpu runs them on the CPU instead: a check of the tests themselves
# where no GPU is (the device-specific assertions then name the CPU).
CUDA = torch.device(os.environ.get("STYLELENS_CUDA_TESTS_ON", "cuda"))
pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(CUDA.type == "cuda" and not torch.cuda.is_available(), reason="needs CUDA"),
]
BF16_REL = 0.05  # bfloat16 autocast's image error against float32 (performance.md: ~1e-2)


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float().cpu() - b.float().cpu()).norm() / b.float().cpu().norm())


@pytest.fixture()
def G_pair(weights) -> tuple[Generator, Generator]:
    cpu = Generator(TINY_G)
    cpu.load_state_dict(weights[0])
    cpu.eval().requires_grad_(False)
    gpu = Generator(TINY_G)
    gpu.load_state_dict(weights[0])
    return cpu, gpu.to(CUDA).eval().requires_grad_(False)


def ws_for(G: Generator, n: int = 2, seed: int = 1) -> torch.Tensor:
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
    return G.mapping(z)


def test_generator_on_cuda_matches_the_cpu(G_pair) -> None:
    cpu, gpu = G_pair
    z = torch.randn(2, cpu.z_dim, generator=torch.Generator().manual_seed(0))
    ws = cpu.mapping(z)
    assert rel(gpu.mapping(z.to(CUDA)), ws) < 1e-4
    noise = {k: v.noise_const for k, v in cpu.synthesis.noise_layers().items()}
    ref = cpu.synthesis(ws, noise_mode="const")
    got = gpu.synthesis(ws.to(CUDA), noise_mode="const")
    assert got.device.type == CUDA.type and got.shape == ref.shape
    assert rel(got, ref) < 1e-4, "float32 on CUDA within 1e-4 relative of the CPU"
    assert noise  # the constant noise maps travelled with the weights


def test_bfloat16_autocast_on_cuda_is_close_to_float32(G_pair) -> None:
    _, gpu = G_pair
    ws = gpu.mapping(torch.randn(2, gpu.z_dim, device=CUDA))
    ref = gpu.synthesis(ws, noise_mode="const")
    with torch.autocast(CUDA.type, dtype=torch.bfloat16):
        low = gpu.synthesis(ws, noise_mode="const")
    assert torch.isfinite(low).all()
    assert 0 < rel(low, ref) < BF16_REL


def test_gradients_on_cuda_match_the_cpu(G_pair) -> None:
    cpu, gpu = G_pair
    ws = ws_for(cpu).detach()
    grads = []
    for G, w in ((cpu, ws.clone()), (gpu, ws.to(CUDA))):
        w.requires_grad_(True)
        G.synthesis(w, noise_mode="const").square().mean().backward()
        assert w.grad is not None
        grads.append(w.grad)
    assert rel(grads[1], grads[0]) < 1e-3


def test_block_by_block_synthesis_on_cuda_is_the_full_image(G_pair) -> None:
    _, gpu = G_pair
    ws = gpu.mapping(torch.randn(2, gpu.z_dim, device=CUDA))
    outs = list(gpu.synthesis.iter_blocks(ws, noise_mode="const"))
    assert [o.resolution for o in outs] == gpu.synthesis.block_resolutions
    full = gpu.synthesis(ws, noise_mode="const")
    assert torch.equal(outs[-1].img, full)
    assert all(o.x.device.type == CUDA.type for o in outs)


def test_converters_load_straight_to_cuda(models_dir: Path) -> None:
    for model in ("tiny-nvidia", "tiny-rosinality"):
        G, _ = load_generator(models_dir / model, device=CUDA)
        assert all(p.device.type == CUDA.type for p in G.parameters())
        assert all(b.device.type == CUDA.type for b in G.buffers())
        img = G.synthesis(G.mapping(torch.randn(1, G.z_dim, device=CUDA)))
        assert img.device.type == CUDA.type and torch.isfinite(img).all()


def test_preview_heads_and_every_engine_run_on_cuda(app_models: Path) -> None:
    from stylelens.inversion import available_engines, make_engine
    from stylelens.inversion.optimizer_store import load_optimizer
    from stylelens.losses import load_perceptual

    G, _ = load_generator(app_models / "tiny", device=CUDA)
    heads = load_preview_heads(app_models / "tiny", G)
    assert heads is not None
    heads.to(CUDA)
    ws = G.mapping(torch.randn(1, G.z_dim, device=CUDA))
    for out in G.synthesis.iter_blocks(ws):
        if out.resolution in heads.resolutions:
            preview = heads.preview(G, out, ws)
            assert preview.device.type == CUDA.type and torch.isfinite(preview).all()
    target = G.synthesis(G.mapping(torch.randn(1, G.z_dim, device=CUDA))).clamp(-1, 1)
    perceptual = load_perceptual(
        "ms-ssim", models_dir=app_models, model_dir=app_models / "tiny", device=CUDA
    )
    learned = load_optimizer(app_models / "tiny", device=CUDA)
    engines = [*available_engines(heads, learned), "projector"]
    assert "progressive" in engines and "adam" in engines
    for name in engines:
        engine, config = make_engine(
            name, G, steps=4, perceptual=perceptual, heads=heads, learned=learned
        )
        state = engine.start(target, config)
        for _ in range(4):
            report = engine.step(state)
            assert torch.isfinite(report.preview).all(), name
        result = engine.result(state)
        assert result.ws.device.type == CUDA.type and torch.isfinite(result.ws).all(), name


def test_sefa_on_cuda_matches_the_cpu(G_pair) -> None:
    from stylelens.directions.sefa import modulation_weights, sefa

    cpu, gpu = G_pair
    v_cpu, _ = sefa(modulation_weights(cpu), 3)
    v_gpu, _ = sefa(modulation_weights(gpu), 3)
    cos = torch.nn.functional.cosine_similarity(v_cpu, v_gpu.cpu(), dim=-1).abs()
    assert (cos > 0.999).all()


def test_the_app_on_cuda_inverts_edits_and_commits(app_models: Path, tmp_path: Path) -> None:
    settings = settings_for(app_models, tmp_path / "data", device=str(CUDA))
    with TestClient(create_app(settings)) as client:
        assert client.get("/api/model").json()["model"]["device"].startswith(CUDA.type)
        sid = new_session(client)
        assert upload(client, sid).status_code == 200
        with client.websocket_connect(f"/api/ws?session={sid}") as ws:
            ws.receive_json()
            ws.send_json({"type": "start_inversion", "engine": "progressive", "steps": 12})
            events, frames = receive_until(ws, "done")
            assert frames and events[-1]["metrics"]["psnr"] > 0
            ws.send_json({"type": "render_edit", "scales": {"smile": 2.0}})
            events, frames = receive_until_frame(ws)
            assert frames[-1].kind == "edit"
            ws.send_json({"type": "commit", "scales": {"smile": 2.0}})
            done = receive_until(ws, "done")[0][-1]
            png = client.get(done["result_url"])
            assert Image.open(io.BytesIO(png.content)).size == (32, 32)
