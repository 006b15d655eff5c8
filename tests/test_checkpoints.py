"""Converters and the native format: parity between formats, and every bad file refused."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from stylelens.checkpoints import list_models, load_card, load_generator, model_dir_for
from stylelens.checkpoints.convert import convert_checkpoint
from stylelens.checkpoints.native import load_discriminator
from stylelens.errors import CheckpointError, ModelNotFound
from stylelens.render import z_from_seed
from tests.formats import (
    PersistentNode,
    _module_state,
    _nvidia_modules,
    tiny_weights,
    write_nvidia_pkl,
    write_rosinality_pt,
)


def test_both_converters_give_the_same_image(models_dir: Path):
    """The same weights through the NVIDIA and the rosinality converter render identically."""
    G_nv, card_nv = load_generator(models_dir / "tiny-nvidia")
    G_ro, card_ro = load_generator(models_dir / "tiny-rosinality")
    assert card_nv.generator == card_ro.generator
    z = torch.cat([z_from_seed(s, G_nv.z_dim) for s in range(4)]).float()
    for psi in (1.0, 0.7):
        a = G_nv(z, truncation_psi=psi)
        b = G_ro(z, truncation_psi=psi)
        assert (a - b).abs().max().item() <= 1e-5
    assert a.abs().max() > 0.1  # a real image, not zeros


def test_converted_weights_are_copies(models_dir: Path, weights):
    g, d = weights
    G, card = load_generator(models_dir / "tiny-nvidia")
    state = G.state_dict()
    assert set(state) == set(g)
    for key, value in g.items():
        assert torch.equal(state[key], value), key
    D, _ = load_discriminator(models_dir / "tiny-nvidia")
    assert all(torch.equal(D.state_dict()[k], v) for k, v in d.items())
    assert card.source.format == "nvidia-pkl" and len(card.source.sha256) == 64
    assert "Non-commercial" in card.license or "non-commercial" in card.license


def test_card_records_the_architecture(models_dir: Path):
    raw = json.loads((models_dir / "tiny-nvidia" / "card.json").read_text())
    assert raw["generator"]["z_dim"] == 32 and raw["generator"]["w_dim"] == 32
    assert raw["num_ws"] == 8 and raw["resolutions"] == [4, 8, 16, 32]
    assert raw["channels"] == {"4": 32, "8": 32, "16": 16, "32": 8}
    assert raw["discriminator"]["mbstd_group_size"] == 4
    assert sorted(p.name for p in (models_dir / "tiny-nvidia").iterdir()) == [
        "card.json", "discriminator.safetensors", "generator.safetensors"
    ]  # fmt: skip


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_nvidia_pickle_protocols(tmp_path: Path, weights, protocol: int):
    pkl = write_nvidia_pkl(tmp_path / "net.pkl", *weights, protocol=protocol)
    card = convert_checkpoint(pkl, model_id="p", models_dir=tmp_path / "models")
    assert card.generator.img_resolution == 32


def test_rosinality_training_checkpoint_without_latent_avg(tmp_path: Path, weights, models_dir):
    pt = write_rosinality_pt(tmp_path / "100000.pt", *weights, layout="train")
    card = convert_checkpoint(pt, model_id="ros-train", models_dir=tmp_path)
    assert "estimated from 10000 samples" in card.description
    G, _ = load_generator(tmp_path / "ros-train")
    G_ref, _ = load_generator(models_dir / "tiny-nvidia")
    ws = G_ref.mapping(torch.randn(2, 32))
    torch.testing.assert_close(G.synthesis(ws), G_ref.synthesis(ws), rtol=0, atol=1e-5)
    # The estimate is the mean of mapping(z), like rosinality's mean_latent.
    z = torch.randn(20_000, 32, generator=torch.Generator().manual_seed(9))
    sampled = G.mapping(z)[:, 0].mean(0)
    assert (G.mapping.w_avg - sampled).norm() < 0.05 * sampled.norm() + 1e-3


def test_convert_refuses_to_overwrite(tmp_path: Path, nvidia_pkl: Path):
    convert_checkpoint(nvidia_pkl, model_id="m", models_dir=tmp_path)
    with pytest.raises(CheckpointError, match="already exists; pass --overwrite"):
        convert_checkpoint(nvidia_pkl, model_id="m", models_dir=tmp_path)
    convert_checkpoint(nvidia_pkl, model_id="m", models_dir=tmp_path, overwrite=True)


# ----------------------------------------------------------------------------
# Files that must be refused


class _RunsCommand:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.pkl"
    bad.write_bytes(pickle.dumps({"G_ema": _RunsCommand(marker)}, protocol=3))
    with pytest.raises(CheckpointError, match=r"references (posix|os)\.system.*refusing"):
        convert_checkpoint(bad, model_id="evil", models_dir=tmp_path / "models")
    assert not marker.exists()
    assert not (tmp_path / "models").exists()


def test_disallowed_global_inside_a_network_is_refused(tmp_path: Path, weights):
    """A real-looking snapshot with an ``os.system`` call hidden in one of its entries."""
    marker = tmp_path / "pwned"
    pkl = write_nvidia_pkl(
        tmp_path / "net.pkl", *weights, extra_top={"augment_pipe": _RunsCommand(marker)}
    )
    with pytest.raises(CheckpointError, match="refusing to load it"):
        convert_checkpoint(pkl, model_id="x", models_dir=tmp_path)
    assert not marker.exists()


def test_stylegan3_pickle_is_not_supported_yet(tmp_path: Path):
    def node(name, params=None, modules=None):
        return PersistentNode(name, _module_state(params or {}, {}, modules or {}, {}))

    synthesis = node(
        "SynthesisNetwork",
        modules={
            "input": node("SynthesisInput", {"weight": torch.randn(4, 4)}),
            "L0_36_512": node("SynthesisLayer", {"weight": torch.randn(4, 4, 3, 3)}),
        },
    )
    g = node("Generator", modules={"synthesis": synthesis, "mapping": node("MappingNetwork")})
    path = tmp_path / "stylegan3-t.pkl"
    with _nvidia_modules(), path.open("wb") as f:
        pickle.dump({"G": g, "D": node("Discriminator"), "G_ema": g}, f, protocol=4)
    with pytest.raises(CheckpointError, match="stylegan3 checkpoints are not supported yet"):
        convert_checkpoint(path, model_id="sg3", models_dir=tmp_path)


def test_tensorflow_pickle_is_named(tmp_path: Path):
    path = tmp_path / "stylegan2-ffhq-config-f.pkl"
    # What a TF-era pickle starts with: a dnnlib.tflib.network.Network global.
    path.write_bytes(b"\x80\x03cdnnlib.tflib.network\nNetwork\nq\x00)\x81q\x01.")
    with pytest.raises(CheckpointError, match="TensorFlow-era"):
        convert_checkpoint(path, model_id="tf", models_dir=tmp_path)


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "is empty"),
        (b"\x89PNG\r\n\x1a\n" + bytes(100), "neither an NVIDIA .pkl"),
        (b"hello, I am a text file", "neither an NVIDIA .pkl"),
        (pickle.dumps([1, 2, 3]), "not a stylegan2-ada-pytorch snapshot"),
        (pickle.dumps({"G_ema": {"a": 1}}), "not a stylegan2-ada-pytorch snapshot"),
    ],
)
def test_non_checkpoints_are_refused(tmp_path: Path, content: bytes, message: str):
    path = tmp_path / "file.pkl"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        convert_checkpoint(path, model_id="x", models_dir=tmp_path / "models")


@pytest.mark.parametrize("fmt", ["pkl", "pt"])
def test_truncated_files_are_refused(tmp_path: Path, nvidia_pkl: Path, rosinality_pt: Path, fmt):
    src = nvidia_pkl if fmt == "pkl" else rosinality_pt
    cut = tmp_path / f"cut.{fmt}"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        convert_checkpoint(cut, model_id="cut", models_dir=tmp_path / "models")


def _edited_pkl(tmp_path: Path, edit) -> Path:
    g, d = tiny_weights()
    edit(g)
    return write_nvidia_pkl(tmp_path / "edited.pkl", g, d)


def test_unknown_key_is_named(tmp_path: Path):
    pkl = _edited_pkl(tmp_path, lambda g: g.__setitem__("synthesis.b8.conv0.extra", torch.ones(2)))
    with pytest.raises(CheckpointError, match=r"unknown keys \['synthesis.b8.conv0.extra'\]"):
        convert_checkpoint(pkl, model_id="x", models_dir=tmp_path)


def test_missing_key_is_named(tmp_path: Path):
    pkl = _edited_pkl(tmp_path, lambda g: g.pop("synthesis.b16.conv1.noise_strength"))
    with pytest.raises(
        CheckpointError, match=r"missing keys \['synthesis.b16.conv1.noise_strength'\]"
    ):
        convert_checkpoint(pkl, model_id="x", models_dir=tmp_path)


def test_shape_mismatch_is_named(tmp_path: Path):
    pkl = _edited_pkl(tmp_path, lambda g: g.__setitem__("synthesis.b8.conv1.bias", torch.ones(5)))
    with pytest.raises(CheckpointError, match=r"'synthesis.b8.conv1.bias' has shape \[5\]"):
        convert_checkpoint(pkl, model_id="x", models_dir=tmp_path)


def test_conditional_generator_is_refused(tmp_path: Path):
    pkl = _edited_pkl(tmp_path, lambda g: g.__setitem__("mapping.embed.weight", torch.ones(32, 10)))
    with pytest.raises(CheckpointError, match="conditional"):
        convert_checkpoint(pkl, model_id="x", models_dir=tmp_path)


def test_rosinality_unknown_key_is_named(tmp_path: Path, weights):
    pt = write_rosinality_pt(tmp_path / "r.pt", *weights, layout="convert")
    ckpt = torch.load(pt, weights_only=True)
    ckpt["g_ema"]["to_rgbs.9.extra"] = torch.ones(1)
    torch.save(ckpt, pt)
    with pytest.raises(CheckpointError, match=r"'to_rgbs\.9\.extra' is not a rosinality StyleGAN2"):
        convert_checkpoint(pt, model_id="x", models_dir=tmp_path / "m")


class Payload:  # a non-tensor object that torch.load(weights_only=True) must refuse
    pass


def test_rosinality_file_with_arbitrary_objects_is_refused(tmp_path: Path, weights):
    pt = write_rosinality_pt(tmp_path / "r.pt", *weights, layout="convert")
    ckpt = torch.load(pt, weights_only=True)
    ckpt["extra"] = Payload()
    torch.save(ckpt, pt)
    with pytest.raises(CheckpointError, match="refused to load"):
        convert_checkpoint(pt, model_id="x", models_dir=tmp_path / "m")


def test_rosinality_file_without_g_ema(tmp_path: Path):
    pt = tmp_path / "r.pt"
    torch.save({"state_dict": {"a": torch.ones(1)}}, pt)
    with pytest.raises(CheckpointError, match="no 'g_ema'"):
        convert_checkpoint(pt, model_id="x", models_dir=tmp_path / "m")


# ----------------------------------------------------------------------------
# Native directories


def test_model_lookup_errors(models_dir: Path):
    assert list_models(models_dir) == ["tiny-nvidia", "tiny-rosinality"]
    with pytest.raises(ModelNotFound, match=r"available: tiny-nvidia, tiny-rosinality"):
        model_dir_for(models_dir, "ffhq-1024")
    with pytest.raises(ModelNotFound, match="not a valid model id"):
        model_dir_for(models_dir, "../etc")
    with pytest.raises(ModelNotFound, match="convert one with: stylelens convert FILE --id ID"):
        model_dir_for(models_dir / "empty", "ffhq-1024")


def test_corrupt_native_files_are_refused(tmp_path: Path, nvidia_pkl: Path):
    convert_checkpoint(nvidia_pkl, model_id="m", models_dir=tmp_path)
    model = tmp_path / "m"
    weights = (model / "generator.safetensors").read_bytes()
    (model / "generator.safetensors").write_bytes(weights[:1000])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_generator(model)
    card = json.loads((model / "card.json").read_text())
    card["num_ws"] = 99
    (model / "card.json").write_text(json.dumps(card))
    with pytest.raises(CheckpointError, match=r"num_ws=99 does not match"):
        load_card(model)
    (model / "card.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not a valid model card"):
        load_card(model)


def test_rosinality_legacy_torch_save_format(tmp_path: Path, weights, models_dir: Path):
    """Checkpoints from torch < 1.6 (like the 2020 rosinality releases) are not zip files."""
    modern = write_rosinality_pt(tmp_path / "modern.pt", *weights, layout="convert")
    legacy = tmp_path / "legacy.pt"
    torch.save(torch.load(modern, weights_only=True), legacy, _use_new_zipfile_serialization=False)
    assert legacy.read_bytes()[:3] == b"\x80\x02\x8a"
    convert_checkpoint(legacy, model_id="legacy", models_dir=tmp_path / "m")
    G, card = load_generator(tmp_path / "m" / "legacy")
    G_ref, _ = load_generator(models_dir / "tiny-nvidia")
    assert card.source.format == "rosinality-pt"
    ws = G_ref.mapping(torch.randn(1, 32))
    torch.testing.assert_close(G.synthesis(ws), G_ref.synthesis(ws), rtol=0, atol=1e-5)
