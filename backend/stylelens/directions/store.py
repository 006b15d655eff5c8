"""A model's directions on disk: ``models/<id>/directions/``.

- ``index.json``: ``{"format_version": 1, "directions": {name: {file, shape, layers, unit,
  slider, step, method, provenance}}}``, sorted by name;
- ``<name>.safetensors``: one float32 tensor ``vector`` ([w_dim] or [num_ws, w_dim]).

Every write goes to a temporary file first and is renamed into place, so a reader never sees
half a file; the index is written after the vectors it names (and before a vector is removed).
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from stylelens.directions.core import Direction, DirectionError

DIRECTIONS_DIR = "directions"
INDEX_FILE = "index.json"
FORMAT_VERSION = 1


def directions_dir(model_dir: Path) -> Path:
    return model_dir / DIRECTIONS_DIR


def _read_index(model_dir: Path) -> dict[str, dict[str, Any]]:
    path = directions_dir(model_dir) / INDEX_FILE
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text())
        entries = raw["directions"]
        if not isinstance(entries, dict):
            raise TypeError("'directions' is not an object")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DirectionError(f"{path}: not a directions index ({exc}); delete or fix it") from exc
    return entries


def _write_index(model_dir: Path, entries: dict[str, dict[str, Any]]) -> None:
    path = directions_dir(model_dir) / INDEX_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    body = {"format_version": FORMAT_VERSION, "directions": dict(sorted(entries.items()))}
    tmp.write_text(json.dumps(body, indent=2) + "\n")
    os.replace(tmp, path)


def list_directions(model_dir: Path) -> list[str]:
    """Names of the stored directions, sorted."""
    return list(_read_index(model_dir))


def save_directions(
    model_dir: Path, directions: list[Direction], *, overwrite: bool = False
) -> list[Path]:
    """Store directions (vectors, then the index). Returns the vector files written.

    Raises:
        DirectionError: if a name already exists and ``overwrite`` is False.
    """
    folder = directions_dir(model_dir)
    folder.mkdir(parents=True, exist_ok=True)
    entries = _read_index(model_dir)
    clash = [d.name for d in directions if d.name in entries]
    if clash and not overwrite:
        raise DirectionError(
            f"{model_dir.name} already has directions {clash}; pass --overwrite to replace them"
        )
    written = []
    for d in directions:
        path = folder / f"{d.name}.safetensors"
        tmp = path.with_name(f".{path.name}.tmp")
        save_file({"vector": d.vector.detach().float().cpu().contiguous()}, str(tmp))
        tmp.chmod(0o644)  # safetensors writes 0600; the server may run as another user
        os.replace(tmp, path)
        written.append(path)
        entries[d.name] = {
            "file": path.name,
            "shape": list(d.vector.shape),
            "layers": d.layers,
            "unit": d.unit,
            "slider": list(d.slider),
            "step": d.step,
            "method": d.method,
            "provenance": d.provenance,
        }
    _write_index(model_dir, entries)
    return written


def load_direction(model_dir: Path, name: str) -> Direction:
    """Read one stored direction; DirectionError lists the known names if it is missing."""
    entries = _read_index(model_dir)
    if name not in entries:
        known = ", ".join(entries) or "none; make some with: stylelens directions compute"
        raise DirectionError(f"model {model_dir.name} has no direction {name!r} (known: {known})")
    entry = entries[name]
    path = directions_dir(model_dir) / entry["file"]
    try:
        vector = load_file(str(path))["vector"]
        return Direction(
            name=name,
            vector=vector.float(),
            layers=entry["layers"],
            unit=float(entry["unit"]),
            slider=(float(entry["slider"][0]), float(entry["slider"][1])),
            step=float(entry["step"]),
            method=entry["method"],
            provenance=entry.get("provenance", {}),
        )
    except (OSError, SafetensorError, KeyError, ValueError) as exc:
        raise DirectionError(f"{path}: cannot read direction {name!r}: {exc}") from exc


def load_directions(model_dir: Path) -> list[Direction]:
    return [load_direction(model_dir, name) for name in list_directions(model_dir)]


def delete_direction(model_dir: Path, name: str) -> None:
    """Remove a direction from the index, then its vector file."""
    entries = _read_index(model_dir)
    if name not in entries:
        raise DirectionError(f"model {model_dir.name} has no direction {name!r}")
    entry = entries.pop(name)
    _write_index(model_dir, entries)
    (directions_dir(model_dir) / entry["file"]).unlink(missing_ok=True)


def read_vector_file(path: Path, *, num_ws: int, w_dim: int) -> torch.Tensor:
    """An external direction as float32 [w_dim] or [num_ws, w_dim].

    Accepts InterFaceGAN ``.npy`` boundaries [1, w_dim] (or [w_dim]) and PyTorch ``.pt``
    tensors [1, w_dim] or [1, num_ws, w_dim] (e4e's StyleGAN2 editing files). ``.pt`` files
    are read with ``weights_only=True``: tensors only, never pickled code.

    Raises:
        DirectionError: unreadable file, unknown suffix, or a shape that does not fit.
    """
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            data = torch.from_numpy(np.load(path, allow_pickle=False))
        elif suffix in (".pt", ".pth"):
            data = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise DirectionError(f"{path}: use an InterFaceGAN .npy or a PyTorch .pt file")
    except FileNotFoundError:
        raise DirectionError(f"{path}: no such file") from None
    except (OSError, ValueError, RuntimeError, pickle.UnpicklingError) as exc:
        raise DirectionError(f"{path}: cannot read a tensor from it: {exc}") from None
    if not isinstance(data, torch.Tensor) or not data.is_floating_point():
        raise DirectionError(f"{path}: holds a {type(data).__name__}, not a float tensor")
    shape = list(data.shape)
    if shape in ([w_dim], [1, w_dim]):
        return data.reshape(w_dim).float()
    if shape == [1, num_ws, w_dim]:
        return data.reshape(num_ws, w_dim).float()
    raise DirectionError(
        f"{path}: shape {shape} does not fit this model; expected [1, {w_dim}] or "
        f"[1, {num_ws}, {w_dim}] (was it made for a model with another w_dim or resolution?)"
    )
