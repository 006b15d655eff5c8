"""SynthFaces as PyTorch datasets: map-style by seed, or an endless stream."""

from __future__ import annotations

import json
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from stylelens.data.synthfaces.draw import MAX_RESOLUTION, MIN_RESOLUTION, render_face
from stylelens.data.synthfaces.latent import param_latent
from stylelens.data.synthfaces.params import labels_vector

T = TypeVar("T")


class SynthFacesDataset(torch.utils.data.Dataset[torch.Tensor]):
    """Faces on the fly: item ``i`` is the face of seed ``first_seed + i``, uint8 [3, R, R].

    Map-style so a trainer can choose the order (and resume it exactly); with ``labels=True``
    items are ``(image, float32 [len(ATTRIBUTES)])``, with ``param_latents=True``
    ``(image, float32 [PARAM_DIMS])``: the face's parameters as a standard-normal latent
    (``stylelens.data.synthfaces.latent``).
    """

    def __init__(
        self,
        resolution: int,
        *,
        first_seed: int = 0,
        length: int = 1_000_000,
        labels: bool = False,
        param_latents: bool = False,
    ) -> None:
        if labels and param_latents:
            raise ValueError("choose labels or param_latents, not both")
        if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
            raise ValueError(
                f"synthfaces resolution {resolution}: must be between "
                f"{MIN_RESOLUTION} and {MAX_RESOLUTION}"
            )
        self.resolution, self.first_seed, self.length, self.with_labels = (
            resolution,
            first_seed,
            length,
            labels,
        )
        self.with_param_latents = param_latents

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> Any:
        if not 0 <= i < self.length:
            raise IndexError(i)
        img, labels = render_face(self.first_seed + i, self.resolution)
        tensor = torch.from_numpy(img).permute(2, 0, 1).contiguous()
        if self.with_labels:
            return tensor, torch.from_numpy(labels_vector(labels))
        if self.with_param_latents:
            return tensor, torch.from_numpy(param_latent(self.first_seed + i))
        return tensor


class SynthFacesStream(torch.utils.data.IterableDataset[torch.Tensor]):
    """An endless stream of faces from ``first_seed`` on; DataLoader workers split the seeds.

    With several workers the images arrive in the same order as with none: worker k renders
    seeds ``first_seed + k, + k + W, ...`` and the DataLoader interleaves them round-robin.
    """

    def __init__(self, resolution: int, *, first_seed: int = 0, labels: bool = False) -> None:
        self.faces = SynthFacesDataset(
            resolution, first_seed=first_seed, length=2**62, labels=labels
        )

    def __iter__(self) -> Iterator[Any]:
        info = torch.utils.data.get_worker_info()
        k, step = (0, 1) if info is None else (info.id, info.num_workers)
        i = k
        while True:
            yield self.faces[i]
            i += step


def _in_order(fn: Callable[[Any], T], jobs: list[Any], workers: int) -> Iterator[T]:
    """``map(fn, jobs)`` in ``workers`` processes, results in job order.

    The pool forks where the OS can: workers start in milliseconds and need not re-import the
    caller's ``__main__`` (spawn fails for ``python -c`` / stdin scripts); they run numpy and
    PIL only, so forking a process that has used torch is safe.
    """
    if workers == 1:
        yield from map(fn, jobs)
        return
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with context.Pool(workers) as pool:
        yield from pool.imap(fn, jobs)


def _render_chunk(job: tuple[int, int, int, str]) -> list[dict[str, Any]]:
    first, count, resolution, out = job
    rows = []
    for seed in range(first, first + count):
        img, labels = render_face(seed, resolution)
        name = f"{seed:07d}.png"
        Image.fromarray(img).save(Path(out) / name, compress_level=1)
        rows.append({"file": name, "seed": seed, **labels})
    return rows


def write_folder(
    out: Path,
    *,
    n: int,
    resolution: int,
    first_seed: int = 0,
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Render seeds ``first_seed .. first_seed + n - 1`` into ``out`` as ``{seed:07d}.png`` plus
    ``labels.jsonl`` (one JSON object per image: file, seed and every attribute), in seed order.

    Returns the labels file. Raises ``ValueError`` for a bad count or resolution and ``OSError``
    when ``out`` cannot be written.
    """
    if n < 1:
        raise ValueError(f"--n {n}: must be at least 1")
    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise ValueError(
            f"resolution {resolution}: must be between {MIN_RESOLUTION} and {MAX_RESOLUTION}"
        )
    out.mkdir(parents=True, exist_ok=True)
    workers = workers or os.cpu_count() or 1
    chunk = max(1, min(64, n // (4 * workers) or 1))
    jobs = [
        (s, min(chunk, first_seed + n - s), resolution, str(out))
        for s in range(first_seed, first_seed + n, chunk)
    ]
    labels_path = out / "labels.jsonl"
    bar = tqdm(total=n, desc="synthfaces", unit="img", disable=not progress, file=sys.stderr)
    with labels_path.open("w") as f:
        for rows in _in_order(_render_chunk, jobs, workers):
            f.writelines(json.dumps(r) + "\n" for r in rows)
            bar.update(len(rows))
    bar.close()
    return labels_path


def _render_arrays(job: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    first, count, resolution = job
    faces = [render_face(s, resolution) for s in range(first, first + count)]
    images = np.stack([f[0] for f in faces]).transpose(0, 3, 1, 2)  # [n, 3, R, R]
    return images, np.stack([labels_vector(f[1]) for f in faces])


def render_arrays(
    *, first_seed: int, n: int, resolution: int, workers: int | None = None, progress: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Seeds ``first_seed ..`` as ``(uint8 [n, 3, R, R], float32 labels [n, len(ATTRIBUTES)])``,
    rendered by ``workers`` processes (default: all cores)."""
    workers = workers or os.cpu_count() or 1
    chunk = 64
    jobs = [
        (s, min(chunk, first_seed + n - s), resolution)
        for s in range(first_seed, first_seed + n, chunk)
    ]
    bar = tqdm(
        total=n,
        desc=f"synthfaces {resolution}px",
        unit="img",
        disable=not progress,
        file=sys.stderr,
    )
    parts = []
    for part in _in_order(_render_arrays, jobs, workers):
        parts.append(part)
        bar.update(len(part[0]))
    bar.close()
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
