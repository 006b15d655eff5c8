"""The ``stylelens`` command as a user runs it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylelens.checkpoints import load_generator
from stylelens.cli import main
from stylelens.render import parse_seeds, to_uint8, z_from_seed


def test_convert_then_render_grid(tmp_path: Path, nvidia_pkl: Path, rosinality_pt: Path, capsys):
    models = tmp_path / "models"
    assert main(["convert", str(nvidia_pkl), "--id", "nv", "--models-dir", str(models)]) == 0
    assert main(["convert", str(rosinality_pt), "--id", "ro", "--models-dir", str(models)]) == 0
    assert '"num_ws": 8' in capsys.readouterr().out
    grids = []
    for model in ("nv", "ro"):
        out = tmp_path / f"{model}.png"
        argv = ["render", "--model", model, "--models-dir", str(models), "--seeds", "0-5",
                "--trunc", "0.7", "--out", str(out)]  # fmt: skip
        assert main(argv) == 0
        grids.append(np.asarray(Image.open(out)))
    assert grids[0].shape == (2 * 32, 3 * 32, 3)  # 6 images, 3 columns
    assert np.abs(grids[0].astype(int) - grids[1].astype(int)).max() <= 1
    # Seed 4 sits at row 1, column 1 and is the image of z = RandomState(4).randn(1, z_dim).
    G, _ = load_generator(models / "nv")
    expected = to_uint8(G(z_from_seed(4, G.z_dim), truncation_psi=0.7))[0]
    tile = grids[0][32:64, 32:64].astype(int)
    assert np.abs(tile - expected.astype(int)).max() <= 1
    assert tile.std() > 10  # an image, not a flat tile


def test_render_outdir(tmp_path: Path, models_dir: Path):
    outdir = tmp_path / "seeds"
    argv = [
        "render",
        "--model",
        "tiny-nvidia",
        "--models-dir",
        str(models_dir),
        "--seeds",
        "3,7-8",
        "--outdir",
        str(outdir),
        "--noise-mode",
        "random",
        "--precision",
        "bfloat16",
    ]
    assert main(argv) == 0
    assert sorted(p.name for p in outdir.iterdir()) == [
        "seed0003.png",
        "seed0007.png",
        "seed0008.png",
    ]
    assert Image.open(outdir / "seed0007.png").size == (32, 32)


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--model", "nope"], "no model 'nope'"),
        (["--seeds", "7-3"], "runs backwards"),
        (["--seeds", "a-b"], "malformed seed list"),
        (["--seeds", "99999999999"], "below 2**32"),
        (["--out", "/proc/stylelens/grid.png"], "cannot write to /proc/stylelens"),
        (["--out", "grid.gif"], "use a .png, .jpg or .webp"),
        (
            ["--device", "cuda:0"] if not torch.cuda.is_available() else ["--device", "tpu"],
            "device",
        ),
        (["--trunc-cutoff", "99"], "--trunc-cutoff must be between 0 and num_ws=8"),
        (["--cols", "0"], "--cols must be at least 1"),
    ],
)
def test_render_user_errors_exit_2(models_dir: Path, tmp_path: Path, capsys, argv, message):
    base = ["render", "--model", "tiny-nvidia", "--models-dir", str(models_dir),
            "--out", str(tmp_path / "g.png")]  # fmt: skip
    assert main(base + argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("stylelens render: error:") and message in err


def test_convert_user_errors_exit_2(tmp_path: Path, nvidia_pkl: Path, capsys):
    assert main(["convert", str(tmp_path / "missing.pkl"), "--id", "x"]) == 2
    assert "no such file" in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    assert main(["convert", str(bad), "--id", "x", "--models-dir", str(tmp_path)]) == 2
    assert "neither an NVIDIA .pkl" in capsys.readouterr().err
    assert main(["convert", str(nvidia_pkl), "--id", "Bad Id!", "--models-dir", str(tmp_path)]) == 2
    assert "not a valid model id" in capsys.readouterr().err


def test_parse_seeds():
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("1, 5,9-10") == [1, 5, 9, 10]
    with pytest.raises(ValueError):
        parse_seeds("")
    with pytest.raises(ValueError):
        parse_seeds("0-1000000")


def test_console_script(tmp_path: Path, models_dir: Path):
    """The installed ``stylelens`` entry point, in a fresh process."""
    exe = shutil.which("stylelens") or str(Path(sys.executable).parent / "stylelens")
    ok = subprocess.run(
        [exe, "models", "--models-dir", str(models_dir)], capture_output=True, text=True
    )
    assert ok.returncode == 0 and '"id": "tiny-nvidia"' in ok.stdout
    bad = subprocess.run([exe, "render", "--models-dir", str(models_dir), "--model", "x"],
                         capture_output=True, text=True)  # fmt: skip
    assert bad.returncode == 2 and "no model 'x'" in bad.stderr
    assert "Traceback" not in bad.stderr
    usage = subprocess.run([exe, "render", "--bogus"], capture_output=True, text=True)
    assert usage.returncode == 2


def test_help_groups_every_command(capsys) -> None:
    from stylelens.cli import build_parser
    from stylelens.cli_args import GROUPS
    from stylelens.settings import Settings

    parser = build_parser(Settings())
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    text = capsys.readouterr().out
    commands = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    listed = {
        line.split()[0] for line in text.splitlines() if line.startswith("  ") and line[2] != "-"
    }
    assert set(commands) <= listed, set(commands) - listed
    positions = [text.index(f"{title}:\n") for title in GROUPS.values()]
    assert positions == sorted(positions)  # the groups, in their order


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--replicas", "0"], "--replicas must be at least 1"),
        (["--replicas", "3", "--max-replicas", "2"], "--max-replicas 2 is below --replicas 3"),
        (["--replica-cpus", "0"], "--replica-cpus must be a positive number"),
        (["--replica-cpus", "nan"], "--replica-cpus must be a positive number"),
        (["--replica-gpus", "-1"], "--replica-gpus must be 0 or more"),
        (["--replica-gpus", "inf"], "--replica-gpus must be 0 or more"),
    ],
)
def test_serve_cluster_user_errors_exit_2(capsys, argv, message):
    """Refused before Ray is started (nothing is deployed)."""
    pytest.importorskip("ray.serve", reason="the cluster extra is not installed")
    assert main(["serve", "--cluster", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("stylelens serve: error:") and message in err
