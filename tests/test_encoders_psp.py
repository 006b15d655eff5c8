"""pSp / e4e: the architecture against a functional reference, and the official-file converter."""

from __future__ import annotations

import argparse
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from stylelens.checkpoints.encoder_pt import convert_encoder, encoder_config
from stylelens.checkpoints.native import sha256_file
from stylelens.cli import main
from stylelens.encoders.psp import IR_SE50_CHANNELS, E4EEncoder, PSPEncoder
from stylelens.encoders.store import ENCODER_FILE, load_encoder
from stylelens.errors import CheckpointError
from tests.encoder_formats import (
    IR_SE50_UNITS,
    TINY_CHANNELS,
    TINY_RESOLUTION,
    official_encoder_state,
    official_opts,
    write_encoder_pt,
)
from tests.formats import TINY_G, tiny_weights, write_rosinality_pt

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
    assert encoder_config(theirs, "official") == {  # what the converter reads off the shapes
        "num_ws": 18,
        "w_dim": 512,
        "input_resolution": 256,
        "stage_units": [3, 4, 14, 3],
        "stage_channels": [64, 128, 256, 512],
    }


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


# ----------------------------------------------------------------------------
# Converter: official .pt -> models/<id>/encoder.safetensors


@pytest.fixture
def model_dir(models_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny model (num_ws=8, w_dim=32), free to gain an encoder."""
    return Path(shutil.copytree(models_dir / "tiny-nvidia", tmp_path / "models" / "tiny-nvidia"))


@pytest.mark.parametrize(
    ("encoder_type", "cls", "arch"),
    [("Encoder4Editing", E4EEncoder, "e4e"), ("GradualStyleEncoder", PSPEncoder, "psp")],
)
def test_official_file_converts_to_the_same_encoder(
    model_dir: Path, tmp_path: Path, encoder_type: str, cls: type, arch: str
):
    src = write_encoder_pt(tmp_path / f"{arch}_ffhq_encode.pt", encoder_type)
    assert convert_encoder(src, model_dir=model_dir) == model_dir / ENCODER_FILE
    enc = load_encoder(model_dir)
    assert type(enc) is cls and (enc.num_ws, enc.w_dim, enc.input_resolution) == (8, 32, 32)
    g, _ = tiny_weights(0)
    img = _images()
    with torch.no_grad():
        heads = _ref_heads(official_encoder_state(), img, TINY_G.num_ws)
        if arch == "e4e":
            heads = heads[:, :1] + torch.cat([torch.zeros_like(heads[:, :1]), heads[:, 1:]], 1)
        assert torch.allclose(enc(img), heads + g["mapping.w_avg"], atol=1e-5, rtol=1e-4)
    entry = json.loads((model_dir / "card.json").read_text())["encoder"]
    assert entry["architecture"] == arch
    assert entry["config"] == {
        "num_ws": 8,
        "w_dim": 32,
        "input_resolution": 32,
        "stage_units": [3, 4, 14, 3],
        "stage_channels": list(TINY_CHANNELS),
    }
    assert entry["source"]["file"] == src.name and entry["source"]["format"] == f"{arch}-pt"
    assert entry["source"]["sha256"] == sha256_file(src)
    assert entry["trained_for"] == {"dataset_type": "ffhq_encode", "stylegan_size": 1024}


def test_unrepeated_latent_avg_and_no_latent_avg(model_dir: Path, tmp_path: Path):
    avg = torch.randn(TINY_G.w_dim)
    src = write_encoder_pt(tmp_path / "a.pt", "GradualStyleEncoder", latent_avg=avg)
    convert_encoder(src, model_dir=model_dir)
    enc = load_encoder(model_dir)
    assert enc is not None and torch.equal(enc.latent_avg, avg.expand(8, 32))
    opts = {**official_opts("GradualStyleEncoder"), "start_from_latent_avg": False}
    src = write_encoder_pt(tmp_path / "b.pt", "GradualStyleEncoder", opts=opts)
    convert_encoder(src, model_dir=model_dir)  # pSp adds nothing: the heads are absolute
    enc = load_encoder(model_dir)
    assert enc is not None and not enc.latent_avg.any()


def test_cli_installs_the_encoder(model_dir: Path, tmp_path: Path, capsys):
    src = write_encoder_pt(tmp_path / "e4e_ffhq_encode.pt")
    root = str(model_dir.parent)
    assert main(["convert-encoder", str(src), "--model", "tiny-nvidia", "--models-dir", root]) == 0
    assert (model_dir / ENCODER_FILE).is_file()
    assert main(["convert-encoder", str(src), "--model", "nope", "--models-dir", root]) == 2
    assert main(["convert-encoder", str(tmp_path / "x.pt"), "--model", "tiny-nvidia"]) == 2
    bad = tmp_path / "bad.pt"
    bad.write_bytes(src.read_bytes()[:1000])
    assert main(["convert-encoder", str(bad), "--model", "tiny-nvidia", "--models-dir", root]) == 2
    assert "truncated" in capsys.readouterr().err


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # unpickling would call marker.touch()
        return (Path.touch, (self.marker,))


def _refused(model_dir: Path, src: Path, match: str) -> None:
    card = (model_dir / "card.json").read_text()
    with pytest.raises(CheckpointError, match=match):
        convert_encoder(src, model_dir=model_dir)
    assert not (model_dir / ENCODER_FILE).exists()
    assert (model_dir / "card.json").read_text() == card


def test_pickled_code_is_refused_and_never_runs(model_dir: Path, tmp_path: Path):
    marker = tmp_path / "ran"
    src = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "opts": {"x": _RunsCode(marker)}}, src)
    _refused(model_dir, src, "refused to load.*beyond plain tensors")
    assert not marker.exists()
    ns = write_encoder_pt(tmp_path / "ns.pt", opts=argparse.Namespace(encoder_type="x"))  # type: ignore[arg-type]
    _refused(model_dir, ns, "refused to load")


def test_truncated_and_foreign_files_are_refused(model_dir: Path, tmp_path: Path, weights):
    src = write_encoder_pt(tmp_path / "e4e.pt")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    _refused(model_dir, cut, "truncated or not a torch checkpoint")
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    _refused(model_dir, text, "truncated or not a torch checkpoint")
    g, d = weights
    gen = write_rosinality_pt(tmp_path / "550000.pt", g, d, layout="convert")
    _refused(model_dir, gen, "rosinality generator checkpoint, not an encoder")
    tensor = tmp_path / "t.pt"
    torch.save(torch.zeros(3), tensor)
    _refused(model_dir, tensor, "not a pSp/e4e checkpoint")
    torch.save(
        {
            "state_dict": {"decoder.style.1.weight": torch.zeros(2)},
            "opts": official_opts("Encoder4Editing"),
        },
        tensor,
    )
    _refused(model_dir, tensor, "no 'encoder.\\*' weights")


def test_other_pSp_variants_are_refused(model_dir: Path, tmp_path: Path):
    src = write_encoder_pt(
        tmp_path / "w.pt", opts=official_opts("BackboneEncoderUsingLastLayerIntoW")
    )
    _refused(model_dir, src, "encoder_type 'BackboneEncoderUsingLastLayerIntoW' is not supported")
    sketch = {**official_opts("GradualStyleEncoder"), "input_nc": 1, "label_nc": 0}
    _refused(model_dir, write_encoder_pt(tmp_path / "s.pt", opts=sketch), "1-channel inputs")


def test_keys_and_shapes_are_checked(model_dir: Path, tmp_path: Path):
    state = official_encoder_state()
    extra = write_encoder_pt(
        tmp_path / "x.pt", encoder={**state, "output_pool.weight": torch.zeros(1)}
    )
    _refused(model_dir, extra, "unknown keys \\['output_pool.weight'\\]")
    missing = write_encoder_pt(
        tmp_path / "m.pt", encoder={k: v for k, v in state.items() if k != "latlayer2.bias"}
    )
    _refused(model_dir, missing, "missing keys \\['latlayer2.bias'\\]")
    wrong = write_encoder_pt(
        tmp_path / "w.pt", encoder={**state, "latlayer1.weight": torch.zeros(32, 27, 1, 1)}
    )
    _refused(model_dir, wrong, "'latlayer1.weight' has shape \\[32, 27, 1, 1\\]")
    avg = write_encoder_pt(tmp_path / "a.pt", latent_avg=torch.zeros(7, 32))
    _refused(model_dir, avg, "latent_avg has shape \\[7, 32\\], expected \\[8, 32\\]")
    src = write_encoder_pt(tmp_path / "e.pt")
    ckpt = torch.load(src, weights_only=True)
    ckpt["state_dict"]["discriminator.w.weight"] = torch.zeros(1)
    torch.save(ckpt, src)
    _refused(model_dir, src, "'discriminator.w.weight' is neither an encoder")
    backbone = {k: v for k, v in state.items() if not k.startswith("body.23.")}
    _refused(model_dir, write_encoder_pt(tmp_path / "b.pt", encoder=backbone), "IR-SE50 layout")


def test_an_encoder_for_another_generator_is_refused(model_dir: Path, tmp_path: Path):
    enc = official_encoder_state(num_ws=18)  # a 1024 px generator's 18 ws at tiny width
    src = write_encoder_pt(
        tmp_path / "e4e_ffhq_encode.pt", encoder=enc, latent_avg=torch.zeros(18, 32)
    )
    _refused(
        model_dir,
        src,
        "e4e_ffhq_encode.pt makes ws of num_ws=18, w_dim=32 \\(a 1024 px generator's\\), "
        "but model 'tiny-nvidia' takes num_ws=8, w_dim=32",
    )


def test_the_generator_in_the_file_must_be_the_models(model_dir: Path, tmp_path: Path, capsys):
    """The file's ``decoder.*`` is compared with the model's generator: the same one installs
    (and the card says how close), another one of the same shape is refused unless asked."""
    src = write_encoder_pt(tmp_path / "e4e_ffhq_encode.pt")
    convert_encoder(src, model_dir=model_dir)
    check = json.loads((model_dir / "card.json").read_text())["encoder"]["generator_check"]
    assert check["same"] is True and check["tensors"] > 10
    assert check["max_relative_difference"] < 1e-2
    (model_dir / ENCODER_FILE).unlink()
    other = write_encoder_pt(tmp_path / "other.pt", seed=1)  # another training run's generator
    _refused(model_dir, other, "other.pt was trained against another generator than model "
             "'tiny-nvidia'.*--other-generator")  # fmt: skip
    root = str(model_dir.parent)
    argv = ["convert-encoder", str(other), "--model", "tiny-nvidia", "--models-dir", root]
    assert main(argv) == 2 and "another generator" in capsys.readouterr().err
    assert main([*argv, "--other-generator"]) == 0
    check = json.loads((model_dir / "card.json").read_text())["encoder"]["generator_check"]
    assert check["same"] is False and check["max_relative_difference"] > 0.1
    # a file without its generator cannot be compared: installed, and the card says so
    ckpt = torch.load(src, weights_only=True)
    ckpt["state_dict"] = {k: v for k, v in ckpt["state_dict"].items() if k.startswith("encoder.")}
    bare = tmp_path / "bare.pt"
    torch.save(ckpt, bare)
    convert_encoder(bare, model_dir=model_dir)
    check = json.loads((model_dir / "card.json").read_text())["encoder"]["generator_check"]
    assert "no generator" in check["skipped"]
