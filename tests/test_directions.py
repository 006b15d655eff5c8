"""Directions (SeFa, GANSpace, InterFaceGAN, import, store), editing operations and their CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylelens.checkpoints import load_generator
from stylelens.checkpoints.attribute_net import AttributeNetCard, save_attribute_net
from stylelens.cli import main
from stylelens.directions import (
    Direction,
    DirectionError,
    apply_directions,
    delete_direction,
    interpolate,
    layer_indices,
    list_directions,
    load_direction,
    read_vector_file,
    save_directions,
    style_mix,
    truncate_toward,
)
from stylelens.directions.ganspace import pca
from stylelens.directions.gradients import mean_score_gradients, range_gradients
from stylelens.directions.interfacegan import condition, fit_boundary
from stylelens.directions.measure import (
    attribute_scores,
    clothes_colour,
    measure_edit,
    render_measures,
    score_names,
)
from stylelens.directions.sefa import affine_ws_index, modulation_weights, sefa
from stylelens.directions.sheet import render_sheet
from stylelens.editing.cli import parse_dir_spec
from stylelens.latents import Latent, save_latent
from stylelens.networks.attributes import AttributeNet, AttributeNetConfig
from stylelens.networks.stylegan2 import Generator
from tests.formats import TINY_G, random_state

NUM_WS, W_DIM = TINY_G.num_ws, TINY_G.w_dim  # 8, 32
# Wide enough that the 15 scores' gradients in W are independent (conditioning needs that).
TINY_NET = AttributeNetConfig(resolution=32, widths=(8, 64), feature_dim=64)


@pytest.fixture(scope="module")
def G() -> Generator:
    g = Generator(TINY_G)
    g.load_state_dict(random_state(g, seed=3), strict=False)
    return g.eval()


@pytest.fixture
def model(tmp_path: Path, models_dir: Path) -> Path:
    """A private copy of the tiny converted model (directions get written into it)."""
    root = tmp_path / "models"
    shutil.copytree(models_dir / "tiny-nvidia", root / "tiny")
    torch.manual_seed(1)
    net = AttributeNet(TINY_NET).eval()
    save_attribute_net(root / "attrs", AttributeNetCard(id="attrs", config=TINY_NET), net)
    return root


def _ws(n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, NUM_WS, W_DIM, generator=torch.Generator().manual_seed(seed))


def _direction(name: str = "d", layers: str = "all", seed: int = 1) -> Direction:
    v = torch.randn(W_DIM, generator=torch.Generator().manual_seed(seed))
    return Direction(name=name, vector=v / v.norm(), layers=layers, unit=0.5, method="sefa")


# ----------------------------------------------------------------------------
# Layer ranges


def test_layer_ranges_follow_the_resolution_of_each_ws() -> None:
    # 18 ws (1024 px): the usual coarse 0-3 / middle 4-7 / fine 8-17 split.
    assert layer_indices("coarse", 18) == [0, 1, 2, 3]
    assert layer_indices("middle", 18) == [4, 5, 6, 7]
    assert layer_indices("fine", 18) == list(range(8, 18))
    assert layer_indices("fine", 14) == list(range(8, 14))  # 256 px
    assert layer_indices("all", 8) == list(range(8))
    assert layer_indices("coarse+middle", 14) == list(range(8))
    assert layer_indices("0-2,5", 8) == [0, 1, 2, 5]
    with pytest.raises(DirectionError, match="unknown layer range"):
        layer_indices("eyes", 8)
    with pytest.raises(DirectionError, match="selects no ws"):
        layer_indices("fine", 6)  # a 16 px model has no 64 px layers
    with pytest.raises(DirectionError, match="0-7"):
        layer_indices("3-9", 8)


def test_affine_ws_index_matches_the_synthesis_wiring(G: Generator) -> None:
    # Perturbing ws[i] must change exactly the styles of the layers said to read ws[i].
    index = affine_ws_index(G)
    assert index["b4.conv1"] == 0 and index["b4.torgb"] == 1 and index["b8.conv0"] == 1
    assert index["b32.torgb"] == NUM_WS - 1
    ws = _ws(1)
    for name, i in index.items():
        block, layer = name.split(".")
        affine = getattr(getattr(G.synthesis, block), layer).affine
        bumped = ws.clone()
        bumped[:, i] += 1
        for j in range(NUM_WS):
            changed = not torch.equal(affine(bumped[:, j]), affine(ws[:, j]))
            assert changed == (j == i)
    rows = modulation_weights(G, "coarse").shape[0]  # b4.conv1, b4.torgb, b8.*, b16.conv0
    ch = TINY_G.channels
    assert rows == ch[4] * 2 + ch[4] + ch[8] * 2 + ch[8]


# ----------------------------------------------------------------------------
# SeFa, GANSpace, InterFaceGAN


@pytest.mark.parametrize("layers", ["all", "coarse", "middle"])
def test_sefa_directions_are_orthonormal_and_match_an_svd(G: Generator, layers: str) -> None:
    A = modulation_weights(G, layers)
    vectors, eigenvalues = sefa(A, 6)
    assert vectors.shape == (6, W_DIM)
    torch.testing.assert_close(vectors @ vectors.T, torch.eye(6), atol=1e-5, rtol=0)
    # Another route: right singular vectors of the row-normalised A, eigenvalues = s^2.
    a = (A / A.norm(dim=1, keepdim=True)).double()
    _, s, vh = torch.linalg.svd(a, full_matrices=False)
    torch.testing.assert_close(eigenvalues.double(), s[:6] ** 2, rtol=1e-4, atol=1e-6)
    cosines = (vectors.double() * vh[:6]).sum(dim=1).abs()
    torch.testing.assert_close(cosines, torch.ones(6, dtype=torch.float64), atol=1e-4, rtol=0)
    assert (eigenvalues[:-1] >= eigenvalues[1:]).all()
    with pytest.raises(ValueError, match="top"):
        sefa(A, W_DIM + 1)


def test_pca_matches_the_covariance_eigendecomposition() -> None:
    gen = torch.Generator().manual_seed(0)
    w = torch.randn(500, 6, generator=gen) @ torch.diag(torch.tensor([5.0, 3, 2, 1, 0.5, 0.1]))
    w = w @ torch.linalg.qr(torch.randn(6, 6, generator=gen))[0] + 3
    comps, stds = pca(w, 3)
    cov = torch.cov(w.double().T)
    evals, evecs = torch.linalg.eigh(cov)
    torch.testing.assert_close(stds.double() ** 2, evals.flip(0)[:3], rtol=1e-4, atol=1e-6)
    cos = (comps.double() * evecs.flip(1)[:, :3].T).sum(dim=1).abs()
    torch.testing.assert_close(cos, torch.ones(3, dtype=torch.float64), atol=1e-4, rtol=0)


def test_interfacegan_recovers_a_planted_boundary() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3000, 24, generator=gen) * 2 + 1
    truth = torch.randn(24, generator=gen)
    truth = truth / truth.norm()
    margin = (x - 1) @ truth
    labels = (margin + 0.2 * torch.randn(3000, generator=gen) > 0).float()
    fit = fit_boundary(x, labels, kind="binary")
    assert fit.metric == "accuracy" and fit.value > 0.9 and fit.n_val == 600
    assert float(fit.normal @ truth) > 0.97  # direction and sign
    values = 0.3 * margin + 0.1 * torch.randn(3000, generator=gen)
    reg = fit_boundary(x, values, kind="continuous")
    assert reg.metric == "r2" and reg.value > 0.9
    assert float(reg.normal @ truth) > 0.99
    # Random labels: no boundary to find, held-out accuracy near chance.
    noise = fit_boundary(x, (torch.rand(3000, generator=gen) > 0.5).float(), kind="binary")
    assert noise.value < 0.6
    with pytest.raises(ValueError, match="same label"):
        fit_boundary(x, torch.ones(3000), kind="binary")


def test_conditional_manipulation_is_orthogonal_to_the_fixed_directions() -> None:
    gen = torch.Generator().manual_seed(0)
    n, others = torch.randn(16, generator=gen), torch.randn(3, 16, generator=gen)
    c = condition(n, others)
    assert float(c.norm()) == pytest.approx(1.0, abs=1e-6)
    assert (others @ c).abs().max() < 1e-5
    assert float(c @ n) > 0  # still points the same way
    with pytest.raises(ValueError, match="span"):
        condition(others[0] + 2 * others[1], others)


# ----------------------------------------------------------------------------
# Editing operations


def test_scale_zero_is_the_identity_and_inputs_are_not_mutated() -> None:
    ws, d = _ws(), _direction()
    before, vec = ws.clone(), d.vector.clone()
    out = apply_directions(ws, [(d, 0.0), (_direction("e", seed=2), 0.0)])
    assert torch.equal(out, ws) and out is not ws
    moved = apply_directions(ws, [(d, 2.0)])
    assert torch.equal(ws, before) and torch.equal(d.vector, vec)
    torch.testing.assert_close(moved - ws, (2.0 * d.unit * d.vector).expand_as(ws))


def test_directions_act_only_on_their_layers_and_add_up() -> None:
    ws = _ws()
    coarse, fine = _direction("c", "coarse"), _direction("f", "middle", seed=5)
    out = apply_directions(ws, [(coarse, 1.5)])
    idx = layer_indices("coarse", NUM_WS)
    rest = [i for i in range(NUM_WS) if i not in idx]
    assert torch.equal(out[:, rest], ws[:, rest])
    assert (out[:, idx] - ws[:, idx]).abs().min() > 0
    both = apply_directions(ws, [(coarse, 1.5), (fine, -1.0)])
    separate = apply_directions(apply_directions(ws, [(coarse, 1.5)]), [(fine, -1.0)])
    torch.testing.assert_close(both, separate)
    per_layer = Direction(name="p", vector=torch.randn(NUM_WS, W_DIM), layers="0-1")
    torch.testing.assert_close(
        apply_directions(ws, [(per_layer, 1.0)])[:, :2] - ws[:, :2],
        per_layer.vector[None, :2].expand(3, -1, -1),
    )
    with pytest.raises(DirectionError, match="another model"):
        apply_directions(torch.zeros(1, NUM_WS, 64), [(coarse, 1.0)])


def test_style_mixing() -> None:
    ws, ref = _ws(seed=0), _ws(1, seed=1)
    before = ws.clone()
    assert torch.equal(style_mix(ws, ws, "coarse"), ws)  # mixing with itself: identity
    mixed = style_mix(ws, ref, "coarse")
    idx = layer_indices("coarse", NUM_WS)
    assert torch.equal(mixed[:, idx], ref[:, idx].expand(3, -1, -1))
    assert torch.equal(mixed[:, len(idx) :], ws[:, len(idx) :])
    assert torch.equal(ws, before)
    with pytest.raises(DirectionError, match="same model"):
        style_mix(ws, torch.zeros(1, NUM_WS + 2, W_DIM), "middle")


def test_truncation_and_interpolation() -> None:
    ws, other, w_avg = _ws(), _ws(seed=4), torch.randn(W_DIM)
    before = ws.clone()
    assert torch.equal(truncate_toward(ws, w_avg, 1.0), ws)
    assert torch.allclose(truncate_toward(ws, w_avg, 0.0), w_avg.expand_as(ws))
    half = truncate_toward(ws, w_avg, 0.5, layers="middle")
    fine = layer_indices("middle", NUM_WS)
    torch.testing.assert_close(half[:, fine], (ws[:, fine] + w_avg) / 2)
    assert torch.equal(half[:, : fine[0]], ws[:, : fine[0]])
    assert torch.equal(interpolate(ws, other, 0.0), ws)
    torch.testing.assert_close(interpolate(ws, other, 1.0), other)
    torch.testing.assert_close(interpolate(ws, other, 0.25), 0.75 * ws + 0.25 * other)
    assert torch.equal(ws, before)
    with pytest.raises(DirectionError, match="shapes"):
        interpolate(ws, other[:1], 0.5)


# ----------------------------------------------------------------------------
# Direction values, store and import


def test_direction_rejects_bad_values() -> None:
    with pytest.raises(DirectionError, match="name"):
        _direction("Smile!")
    with pytest.raises(DirectionError, match="NaN"):
        Direction(name="x", vector=torch.full((4,), float("nan")))
    with pytest.raises(DirectionError, match="float"):
        Direction(name="x", vector=torch.zeros(2, 3, 4))
    with pytest.raises(DirectionError, match="slider"):
        Direction(name="x", vector=torch.zeros(4), slider=(1.0, -1.0))


def test_store_round_trip_overwrite_and_delete(tmp_path: Path) -> None:
    a = Direction(
        name="smile",
        vector=torch.randn(W_DIM),
        layers="middle",
        unit=0.7,
        slider=(-2.0, 2.0),
        step=1.25,
        method="interfacegan",
        provenance={"held_out": {"r2": 0.9}},
    )
    b = Direction(name="per-layer", vector=torch.randn(NUM_WS, W_DIM))
    save_directions(tmp_path, [a, b])
    assert list_directions(tmp_path) == ["per-layer", "smile"]
    got = load_direction(tmp_path, "smile")
    assert torch.equal(got.vector, a.vector)
    assert (got.layers, got.unit, got.slider, got.step, got.method, got.provenance) == (
        a.layers,
        a.unit,
        a.slider,
        a.step,
        a.method,
        a.provenance,
    )
    assert load_direction(tmp_path, "per-layer").vector.shape == (NUM_WS, W_DIM)
    with pytest.raises(DirectionError, match="overwrite"):
        save_directions(tmp_path, [a])
    save_directions(tmp_path, [Direction(name="smile", vector=torch.zeros(W_DIM))], overwrite=True)
    assert load_direction(tmp_path, "smile").vector.abs().sum() == 0
    delete_direction(tmp_path, "smile")
    assert list_directions(tmp_path) == ["per-layer"]
    assert sorted(p.name for p in (tmp_path / "directions").iterdir()) == [
        "index.json",
        "per-layer.safetensors",
    ]  # no temporary files left
    with pytest.raises(DirectionError, match="known: per-layer"):
        load_direction(tmp_path, "smile")
    (tmp_path / "directions" / "index.json").write_text("{nope")
    with pytest.raises(DirectionError, match="not a directions index"):
        list_directions(tmp_path)


def test_import_reads_npy_and_pt_and_rejects_wrong_shapes(tmp_path: Path) -> None:
    np.save(tmp_path / "ok.npy", np.ones((1, W_DIM), dtype=np.float32))
    assert read_vector_file(tmp_path / "ok.npy", num_ws=NUM_WS, w_dim=W_DIM).shape == (W_DIM,)
    torch.save(torch.ones(1, NUM_WS, W_DIM), tmp_path / "e4e.pt")
    v = read_vector_file(tmp_path / "e4e.pt", num_ws=NUM_WS, w_dim=W_DIM)
    assert v.shape == (NUM_WS, W_DIM)
    np.save(tmp_path / "ffhq.npy", np.ones((1, 512), dtype=np.float32))
    torch.save(torch.ones(1, 18, W_DIM), tmp_path / "ffhq.pt")
    torch.save(torch.ones(2, W_DIM), tmp_path / "two.pt")
    for name in ("ffhq.npy", "ffhq.pt", "two.pt"):
        with pytest.raises(DirectionError, match="does not fit"):
            read_vector_file(tmp_path / name, num_ws=NUM_WS, w_dim=W_DIM)
    torch.save({"a": 1, "f": Path("x")}, tmp_path / "pickle.pt")  # not tensors only
    with pytest.raises(DirectionError, match="cannot read"):
        read_vector_file(tmp_path / "pickle.pt", num_ws=NUM_WS, w_dim=W_DIM)
    (tmp_path / "d.txt").write_text("1 2 3")
    with pytest.raises(DirectionError, match=r"\.npy"):
        read_vector_file(tmp_path / "d.txt", num_ws=NUM_WS, w_dim=W_DIM)


# ----------------------------------------------------------------------------
# Measuring and the sheet


def test_measuring_a_zero_step_changes_nothing(G: Generator) -> None:
    net = AttributeNet(TINY_NET).eval()
    names = score_names(net)
    assert names[-2:] == ["glasses", "beard"] and "hair_style" not in names
    ws = G.mapping(torch.randn(4, TINY_G.z_dim))
    with torch.no_grad():
        base = attribute_scores(net, G.synthesis(ws))
    assert base.shape == (4, len(names)) and (base[:, -2:] >= 0).all()
    scores, clothes = render_measures(G, net, ws, precision="float32")
    torch.testing.assert_close(scores, base)
    kw = {"names": names, "target": "smile", "precision": "float32", "base_clothes": clothes}
    e = measure_edit(G, net, ws, base, _direction(), 0.0, **kw)
    assert max(abs(v) for v in e.mean.values()) < 1e-5 and e.clothes is not None
    assert e.clothes < 1e-5
    moved = measure_edit(G, net, ws, base, _direction(), 3.0, **kw)
    assert max(abs(v) for v in moved.mean.values()) > 1e-4
    assert moved.clothes is not None and moved.clothes > 1e-4


def test_clothes_colour_is_the_mean_of_the_bottom_band() -> None:
    img = torch.full((2, 3, 20, 20), -1.0)
    img[0, 0, 17:] = 1.0  # the bottom 3 rows (15%) of image 0 are red
    img[1, :, :17] = 1.0  # image 1 is white above the band only
    torch.testing.assert_close(clothes_colour(img), torch.tensor([[1.0, 0, 0], [0, 0, 0]]))


def test_mean_gradients_predict_a_small_edit_on_a_layer_range(G: Generator) -> None:
    """The range gradient is the derivative of the mean scores along a direction applied on
    that range; conditioning it on the other attributes' leaves their mean scores still."""
    torch.manual_seed(2)
    net = AttributeNet(TINY_NET).eval()
    names = score_names(net)
    ws = G.mapping(torch.randn(5, TINY_G.z_dim)).detach()
    grads = mean_score_gradients(G, net, ws, batch=2, precision="float32")
    assert grads.shape == (len(names) + 3, NUM_WS, W_DIM)  # the scores, then clothes RGB
    rg = range_gradients(grads, "coarse")
    assert rg.shape == (len(names) + 3, W_DIM)
    t = names.index("smile")
    v = condition(rg[t], torch.cat([rg[:t], rg[t + 1 :]]))
    d = Direction(name="s", vector=v, layers="coarse", unit=1.0, method="interfacegan")
    eps = 0.03  # float32 scores: smaller steps drown in rounding, larger ones in curvature

    def mean_scores(amount: float) -> torch.Tensor:
        with torch.no_grad():
            img = G.synthesis(apply_directions(ws, [(d, amount)]))
            return torch.cat([attribute_scores(net, img), clothes_colour(img)], dim=1)

    fd = (mean_scores(eps) - mean_scores(-eps)).mean(dim=0).double() / (2 * eps)
    predicted = rg.double() @ v.double()
    size = rg.double().norm(dim=1)  # the largest first-order change along a unit vector
    others = [i for i in range(len(size)) if i != t]
    assert (
        float(predicted[t]) > 0.1 * size[t]
        and (predicted[others] / size[others]).abs().max() < 1e-6
    )
    assert ((fd - predicted).abs() / size).max() < 0.03  # the gradients are right
    assert float(fd[t]) > 0.1 * size[t] and (fd[others] / size[others]).abs().max() < 0.03
    plain = rg.double() @ (rg[t] / rg[t].norm()).double()  # unconditioned: moves the others
    assert (plain[others] / size[others]).abs().max() > 0.2
    with pytest.raises(ValueError, match="ws"):
        mean_score_gradients(G, net, ws[0])


def test_sheet_has_a_row_per_direction(G: Generator) -> None:
    sheet = render_sheet(
        G, [_direction("a"), _direction("b", seed=3)], seeds=[0, 1], steps=(-1, 0, 1), tile=32
    )
    assert sheet.size == (150 + 6 * 32 + 6, 18 + 2 * 32)
    px = np.asarray(sheet)
    left, right = px[18 : 18 + 32, 150:182], px[18 : 18 + 32, 214:246]
    assert np.abs(left.astype(int) - right.astype(int)).mean() > 1  # the slider moves the face


# ----------------------------------------------------------------------------
# CLI


def test_parse_dir_spec() -> None:
    assert parse_dir_spec("smile=+2") == ("smile", 2.0)
    assert parse_dir_spec("age=-1.5") == ("age", -1.5)
    assert parse_dir_spec("sefa-all-00=.5") == ("sefa-all-00", 0.5)
    for bad in ("smile", "smile=", "smile=big", "=2", "Smile=1"):
        with pytest.raises(DirectionError, match="NAME=AMOUNT"):
            parse_dir_spec(bad)


def test_directions_cli_end_to_end(model: Path, tmp_path: Path, capsys) -> None:
    m = ["--model", "tiny", "--models-dir", str(model)]
    assert main(["directions", "compute", *m, "--method", "sefa", "--top", "4"]) == 0
    assert (
        main(
            [
                "directions",
                "compute",
                *m,
                "--method",
                "ganspace",
                "--layers",
                "coarse",
                "--top",
                "3",
                "--n",
                "200",
            ]
        )
        == 0
    )
    argv = [
        "directions",
        "compute",
        *m,
        "--method",
        "interfacegan",
        "--attributes",
        "smile,yaw",
        "--n",
        "60",
        "--tune-faces",
        "4",
        "--gradient-faces",
        "6",
        "--attribute-model",
        "attrs",
        "--precision",
        "float32",
    ]
    assert main(argv) == 0
    np.save(tmp_path / "b.npy", np.ones((1, W_DIM), dtype=np.float32))
    assert main(["directions", "import", str(tmp_path / "b.npy"), *m, "--name", "ext"]) == 0
    capsys.readouterr()
    assert main(["directions", "list", *m, "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    names = {d["name"]: d for d in listed}
    assert {"sefa-all-00", "sefa-all-03", "ganspace-coarse-02", "smile", "yaw", "ext"} <= set(names)
    assert names["smile"]["method"] == "interfacegan"
    assert "r2" in names["smile"]["provenance"]["held_out"]
    trials = names["smile"]["provenance"]["tune_trials"]
    assert {t["conditioned"] for t in trials} == {"none", "boundaries", "gradients"}
    assert {t["layers"] for t in trials} >= {"all", "coarse", "middle"}
    assert names["smile"]["provenance"]["gradient_faces"] == 6
    assert names["ganspace-coarse-02"]["layers"] == "coarse"

    sheet = tmp_path / "sheet.png"
    assert (
        main(["directions", "sheet", *m, "--out", str(sheet), "--seeds", "0-1", "--tile", "32"])
        == 0
    )
    assert Image.open(sheet).size[1] == 18 + 2 * 32  # the two InterFaceGAN rows

    G, _ = load_generator(model / "tiny")
    ws = G.mapping(torch.randn(2, G.z_dim)).detach()
    save_latent(tmp_path / "a.safetensors", Latent(ws=ws[:1], metadata={"model": "tiny"}))
    save_latent(tmp_path / "ref.safetensors", Latent(ws=ws[1:], metadata={"model": "tiny"}))
    out, saved = tmp_path / "edited.png", tmp_path / "edited.safetensors"
    argv = [
        "edit",
        str(tmp_path / "a.safetensors"),
        *m,
        "--dir",
        "smile=+2",
        "--dir",
        "sefa-all-01=-1.5",
        "--mix",
        f"{tmp_path / 'ref.safetensors'}:coarse",
        "--trunc",
        "0.8",
        "--out",
        str(out),
        "--save-latent",
        str(saved),
    ]
    assert main(argv) == 0
    assert Image.open(out).size == (32, 32)
    from stylelens.latents import load_latent

    edited = load_latent(saved).ws
    expected = apply_directions(
        truncate_toward(style_mix(ws[:1], ws[1:], "coarse"), G.mapping.w_avg, 0.8),
        [
            (load_direction(model / "tiny", "smile"), 2.0),
            (load_direction(model / "tiny", "sefa-all-01"), -1.5),
        ],
    )
    torch.testing.assert_close(edited, expected)
    # No edits: the image is the latent's own rendering.
    plain = tmp_path / "plain.png"
    assert main(["edit", str(tmp_path / "a.safetensors"), *m, "--out", str(plain)]) == 0
    from stylelens.render import to_uint8

    with torch.no_grad():
        expected_img = to_uint8(G.synthesis(ws[:1]))[0]
    assert np.abs(np.asarray(Image.open(plain)).astype(int) - expected_img).max() <= 1


def test_cli_user_errors_exit_2(model: Path, tmp_path: Path, capsys) -> None:
    m = ["--model", "tiny", "--models-dir", str(model)]
    good = tmp_path / "a.safetensors"
    save_latent(good, Latent(ws=torch.zeros(1, NUM_WS, W_DIM), metadata={"model": "tiny"}))
    wrong = tmp_path / "wrong.safetensors"
    save_latent(wrong, Latent(ws=torch.zeros(1, 18, 512)))
    out = str(tmp_path / "e.png")
    cases = [
        (["edit", str(good), *m, "--dir", "smile=+2", "--out", out], "no direction 'smile'"),
        (["edit", str(good), *m, "--dir", "smile:2", "--out", out], "NAME=AMOUNT"),
        (["edit", str(wrong), *m, "--out", out], "takes [1, 8, 32]"),
        (["edit", str(tmp_path / "none.safetensors"), *m, "--out", out], "no such latent"),
        (["edit", str(good), *m, "--mix", "coarse", "--out", out], "REF:LAYERS"),
        (["edit", str(good), *m, "--out", str(tmp_path / "e.gif")], ".png"),
        (["directions", "compute", *m, "--method", "sefa", "--layers", "eyes"], "layer range"),
        (
            ["directions", "compute", *m, "--method", "interfacegan", "--gradient-faces", "-1"],
            "--gradient-faces >= 0",
        ),
        (
            [
                "directions",
                "compute",
                *m,
                "--method",
                "interfacegan",
                "--attributes",
                "wings",
                "--attribute-model",
                "attrs",
                "--n",
                "20",
            ],
            "unknown attributes",
        ),
        (["directions", "list", "--model", "nope", "--models-dir", str(model)], "no model"),
        (["directions", "delete", "smile", *m], "no direction"),
    ]
    torch.save(torch.ones(1, 512), tmp_path / "big.pt")
    cases.append(
        (["directions", "import", str(tmp_path / "big.pt"), *m, "--name", "x"], "does not fit")
    )
    for argv, message in cases:
        assert main(argv) == 2, argv
        assert message in capsys.readouterr().err, argv
    mixed = tmp_path / "m.safetensors"
    save_latent(mixed, Latent(ws=torch.zeros(1, NUM_WS, W_DIM), metadata={"model": "other"}))
    assert main(["edit", str(good), *m, "--mix", f"{mixed}:middle", "--out", out]) == 2
    assert "made with model 'other'" in capsys.readouterr().err


def test_the_embedded_model_ships_its_directions() -> None:
    from stylelens.checkpoints import load_card
    from stylelens.directions import load_directions

    model_dir = Path(__file__).resolve().parents[1] / "models" / "synthfaces-256"
    card = load_card(model_dir)
    directions = {d.name: d for d in load_directions(model_dir)}
    named = {"smile", "age", "yaw", "hair_lightness", "glasses", "beard", "mouth_open"}
    assert named <= set(directions)
    assert {f"sefa-all-{i:02d}" for i in range(10)} <= set(directions)
    assert {f"ganspace-all-{i:02d}" for i in range(10)} <= set(directions)
    for d in directions.values():
        d.check_fits(num_ws=card.generator.num_ws, w_dim=card.generator.w_dim)
        assert float(d.vector.norm()) == pytest.approx(1.0, abs=1e-4)
        assert d.slider[0] <= -d.step and d.step <= d.slider[1]
    for name in named:
        assert directions[name].method == "interfacegan"
        assert directions[name].provenance["held_out"]
    size = sum(p.stat().st_size for p in (model_dir / "directions").iterdir())
    assert size < 500_000


def test_measure_on_encoded_faces(model: Path, tmp_path: Path, capsys) -> None:
    """``directions measure --faces-from encoder`` measures on held-out SynthFaces through the
    model's encoder (and says so); without an encoder it refuses."""
    from stylelens.checkpoints.attribute_net import load_attribute_net
    from stylelens.directions.measure import score_names
    from stylelens.encoders.light import LightEncoder
    from stylelens.encoders.store import save_encoder
    from stylelens.evaluation.encoded import encode_synthfaces

    G, _ = load_generator(model / "tiny")
    target = score_names(load_attribute_net(model / "attrs")[0])[0]
    v = torch.randn(G.w_dim, generator=torch.Generator().manual_seed(4))
    save_directions(model / "tiny", [Direction(
        name="d", vector=v / v.norm(), layers="all", unit=0.5, step=1.0, method="interfacegan",
        provenance={"attribute": target, "held_out": {}},
    )])  # fmt: skip
    args = ["directions", "measure", "--models-dir", str(model), "--model", "tiny",
            "--attribute-model", "attrs", "--faces", "3", "--faces-from", "encoder",
            "--json", str(tmp_path / "m.json")]  # fmt: skip
    assert main(args) == 2
    assert "has no encoder" in capsys.readouterr().err
    config = {"num_ws": G.num_ws, "w_dim": G.w_dim, "input_resolution": 32,
              "channels": [8, 8, 16, 16], "pyramid_channels": 16}  # fmt: skip
    torch.manual_seed(0)
    encoder = LightEncoder(**config)
    for p in encoder.parameters():  # an encoder whose faces differ from w_avg and each other
        p.data.normal_(0, 0.05)
    encoder.w_avg.copy_(G.mapping.w_avg)
    save_encoder(model / "tiny", encoder, architecture="light", config=config, info={})
    assert main(args) == 0
    assert "3 held-out SynthFaces (seeds from 60,080,000) encoded" in capsys.readouterr().out
    report = json.loads((tmp_path / "m.json").read_text())
    assert report["faces"] == 3 and report["named"][0]["attribute"] == target
    ws = encode_synthfaces(encoder.eval(), 3, G.img_resolution)
    assert ws.shape == (3, G.num_ws, G.w_dim) and not torch.allclose(ws[0], ws[1])
