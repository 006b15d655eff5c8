"""Turn downloaded files into what StyleLens loads: model directories, LPIPS weights, directions.

Every install is staged in the download cache and moved into ``models/`` only when complete,
so a failed or interrupted fetch never leaves a half-written model behind.
"""

from __future__ import annotations

import json
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from stylelens.checkpoints.native import CARD_FILE, load_card, now_iso, save_card
from stylelens.directions.core import Direction, DirectionError
from stylelens.errors import CheckpointError
from stylelens.fetch.download import DownloadConfig, download, verify
from stylelens.fetch.registry import Entry, FetchError, Registry, RemoteFile
from stylelens.losses.lpips import LPIPS_DIR, LPIPS_FILE, expected_shapes, read_weights
from stylelens.networks.preview import FitConfig
from stylelens.networks.stylegan2 import Generator

Log = Callable[[str], None]
E4E_SLIDER = (-5.0, 5.0)  # e4e applies its InterFaceGAN edits with factors in about [-5, 5]


@dataclass(frozen=True)
class FetchOptions:
    """How ``fetch`` installs an entry."""

    models_dir: Path
    cache_dir: Path  # downloads and staging; on the same filesystem as models_dir
    overwrite: bool = False  # replace an installed model
    keep_downloads: bool = False  # keep the original files in cache_dir after converting
    sefa_top: int = 10  # SeFa directions computed for a fetched generator (0: none)
    preview_heads: FitConfig | None = None  # fit preview heads with this config
    device: str = "cpu"
    download: DownloadConfig = field(default_factory=DownloadConfig)
    local_files: dict[str, Path] = field(default_factory=dict)  # file name -> local copy


def fetch(registry: Registry, name: str, options: FetchOptions, log: Log = print) -> Path:
    """Download, verify and install registry entry ``name``. Returns the directory written.

    Raises:
        FetchError: unknown name, a failed or wrong download, or a file that is not what the
            registry says it is.
    """
    entry = registry.get(name)
    if entry.kind == "generator":
        return _install_generator(registry, name, entry, options, log)
    if entry.kind == "lpips":
        return _install_lpips(name, entry, options, log)
    targets = [options.models_dir / m for m in entry.applies_to]
    installed = [t for t in targets if (t / CARD_FILE).is_file()]
    if not installed:
        raise FetchError(
            f"{name} is made for {', '.join(entry.applies_to)}; fetch that model first "
            f"(stylelens fetch {entry.applies_to[0]})"
        )
    for target in installed:
        _install_directions(name, entry, target, options, log)
    return installed[0]


def _obtain(remote: RemoteFile, options: FetchOptions, log: Log) -> tuple[Path, bool]:
    """A verified local copy of ``remote`` and whether it is ours to delete."""
    local = options.local_files.get(remote.file)
    if local is not None:
        if not local.is_file():
            raise FetchError(f"{local}: no such file")
        verify(remote, local)
        log(f"using {local} for {remote.file}")
        return local, False
    log(f"downloading {remote.url} ({remote.describe_size()})")
    return download(remote, options.cache_dir / remote.file, options.download), True


def _cleanup(paths: list[tuple[Path, bool]], options: FetchOptions) -> None:
    if options.keep_downloads:
        return
    for path, ours in paths:
        if ours:
            path.unlink(missing_ok=True)


def _staging(options: FetchOptions, name: str) -> Path:
    stage = options.cache_dir / "staging"
    shutil.rmtree(stage / name, ignore_errors=True)
    stage.mkdir(parents=True, exist_ok=True)
    return stage


def _commit(staged: Path, target: Path) -> None:
    """Move a finished staging directory into place (replacing an old install)."""
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
        staged.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        target.parent.mkdir(parents=True, exist_ok=True)
        staged.rename(target)


# ---------------------------------------------------------------------------------------------
# Generators


def _install_generator(
    registry: Registry, name: str, entry: Entry, options: FetchOptions, log: Log
) -> Path:
    from stylelens.checkpoints.convert import convert_checkpoint

    target = options.models_dir / name
    if (target / CARD_FILE).is_file() and not options.overwrite:
        log(f"{name} is already installed in {target} (pass --overwrite to reinstall)")
        return target
    remote = entry.files[0]
    got = _obtain(remote, options, log)
    stage = _staging(options, name)
    log(f"converting {remote.file}")
    try:
        card = convert_checkpoint(
            got[0], model_id=name, models_dir=stage, name=entry.title, license_note=entry.license
        )
    except CheckpointError as exc:
        raise FetchError(
            f"{remote.file} (from {remote.url}) is not a StyleGAN2 checkpoint StyleLens can "
            f"convert: {exc}"
        ) from None
    staged = stage / name
    if card.generator.img_resolution != entry.resolution:
        shutil.rmtree(staged)
        raise FetchError(
            f"{remote.file} is a {card.generator.img_resolution}px generator; the registry "
            f"says {name} is {entry.resolution}px"
        )
    extra = dict(card.model_extra or {})
    extra["fetched"] = {"entry": name, "url": remote.url, "at": now_iso()}
    save_card(staged, card.model_copy(update=extra))
    G = _load(staged, options)
    _add_sefa(G, staged, options, log)
    for other in entry.directions:
        _install_directions(other, registry.entries[other], staged, options, log)
    if options.preview_heads is not None:
        _fit_heads(G, staged, options, log)
    _commit(staged, target)
    _cleanup([got], options)
    log(f"installed {name} in {target}")
    return target


def install_checkpoint(
    src: Path, model_id: str, options: FetchOptions, log: Log = print, *, origin: str = "file"
) -> Path:
    """Convert a checkpoint the user already has (NVIDIA ``.pkl`` or rosinality ``.pt``) into
    ``models_dir/model_id`` as ``fetch`` installs a generator: converted with the safe readers
    in the staging area, SeFa directions added, then moved into place. ``src`` is left alone.

    Raises:
        FetchError: a bad id, an installed model of that id, or a file that is not a
            StyleGAN2 checkpoint StyleLens can convert.
    """
    from stylelens.checkpoints.convert import convert_checkpoint
    from stylelens.checkpoints.native import is_valid_model_id

    if not is_valid_model_id(model_id):
        raise FetchError(
            f"{model_id!r} is not a valid model id: use lowercase letters, digits, '.', '_' "
            "and '-', starting with a letter or digit (at most 64)"
        )
    target = options.models_dir / model_id
    if target.exists() and not options.overwrite:
        raise FetchError(f"a model called {model_id} is already installed; choose another id")
    stage = _staging(options, model_id)
    log(f"converting {src.name}")
    try:
        card = convert_checkpoint(src, model_id=model_id, models_dir=stage)
    except CheckpointError as exc:
        shutil.rmtree(stage / model_id, ignore_errors=True)
        raise FetchError(
            f"{src.name} is not a StyleGAN2 checkpoint StyleLens can convert: {exc}"
        ) from None
    staged = stage / model_id
    extra = dict(card.model_extra or {})
    extra["installed"] = {"from": origin, "file": src.name, "at": now_iso()}
    save_card(staged, card.model_copy(update=extra))
    G = _load(staged, options)
    _add_sefa(G, staged, options, log)
    if options.preview_heads is not None:
        _fit_heads(G, staged, options, log)
    _commit(staged, target)
    log(f"installed {model_id} in {target}")
    return target


def _load(model_dir: Path, options: FetchOptions) -> Generator:
    from stylelens.checkpoints.native import load_generator
    from stylelens.networks.runtime import resolve_device

    G, _ = load_generator(model_dir, device=resolve_device(options.device))
    return G


def _add_sefa(G: Generator, model_dir: Path, options: FetchOptions, log: Log) -> None:
    from stylelens.directions.compute import compute_sefa
    from stylelens.directions.store import save_directions

    if options.sefa_top <= 0:
        return
    top = min(options.sefa_top, G.w_dim)
    save_directions(model_dir, compute_sefa(G, layers="all", top=top), overwrite=True)
    log(f"computed {top} SeFa directions (sefa-all-00 ...)")


def _fit_heads(G: Generator, model_dir: Path, options: FetchOptions, log: Log) -> None:
    from stylelens.training.preview_heads import fit_and_save_preview_heads

    assert options.preview_heads is not None
    if len(G.synthesis.block_resolutions) < 3:
        log("no intermediate resolutions: no preview heads to fit")
        return
    log(f"fitting preview heads ({options.preview_heads.steps} steps)")
    _, heads, _, seconds = fit_and_save_preview_heads(G, model_dir, options.preview_heads)
    log(f"fitted preview heads for {heads.resolutions} in {seconds:.0f} s")


# ---------------------------------------------------------------------------------------------
# Directions


def _install_directions(
    name: str, entry: Entry, model_dir: Path, options: FetchOptions, log: Log
) -> None:
    from stylelens.directions.store import read_vector_file, save_directions

    card = load_card(model_dir)
    num_ws, w_dim = card.generator.num_ws, card.generator.w_dim
    got = [_obtain(remote, options, log) for remote in entry.files]
    directions = []
    for remote, (path, _) in zip(entry.files, got, strict=True):
        assert remote.name is not None
        try:
            vector = read_vector_file(path, num_ws=num_ws, w_dim=w_dim)
            d = Direction(
                name=remote.name,
                vector=vector,
                slider=E4E_SLIDER,
                step=3.0,
                method="imported",
                provenance={"entry": name, "source": remote.url, "sha256": remote.sha256},
            )
            d.check_fits(num_ws=num_ws, w_dim=w_dim)
        except DirectionError as exc:
            raise FetchError(f"{remote.file} does not fit {card.id}: {exc}") from None
        directions.append(d)
    save_directions(model_dir, directions, overwrite=True)
    _cleanup(got, options)
    log(f"added {', '.join(d.name for d in directions)} to {card.id}")


# ---------------------------------------------------------------------------------------------
# LPIPS


def _tensors(path: Path, what: str) -> dict[str, torch.Tensor]:
    """A torch.save state dict read as plain tensors (weights_only: no pickled code runs)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        raise FetchError(f"{path.name} is not a PyTorch state dict ({what}): {exc}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FetchError(f"{path.name} is not a PyTorch state dict ({what})")
    return state


def _install_lpips(name: str, entry: Entry, options: FetchOptions, log: Log) -> Path:
    target = options.models_dir / LPIPS_DIR
    if (target / LPIPS_FILE).is_file() and not options.overwrite:
        log(f"{name} is already installed in {target} (pass --overwrite to reinstall)")
        return target
    by_role = {f.role: f for f in entry.files}
    got = {role: _obtain(remote, options, log) for role, remote in by_role.items()}
    vgg = _tensors(got["vgg16"][0], "torchvision VGG16")
    heads = _tensors(got["lpips-heads"][0], "LPIPS linear heads")
    want = expected_shapes()
    state = {k: v for k, v in {**vgg, **heads}.items() if k in want}
    wrong = [k for k in want if k not in state or tuple(state[k].shape) != want[k]]
    if wrong:
        raise FetchError(
            f"the downloaded files are not VGG16 + LPIPS weights: bad or missing {wrong[:4]}"
        )
    stage = _staging(options, LPIPS_DIR) / LPIPS_DIR
    stage.mkdir()
    save_file({k: v.float().contiguous() for k, v in state.items()}, str(stage / LPIPS_FILE))
    (stage / LPIPS_FILE).chmod(0o644)  # safetensors writes 0600
    read_weights(stage / LPIPS_FILE)
    card = {
        "kind": "lpips",
        "id": LPIPS_DIR,
        "name": entry.title,
        "license": entry.license,
        "sources": [{"url": f.url, "sha256": f.sha256, "file": f.file} for f in entry.files],
        "fetched_at": now_iso(),
    }
    (stage / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
    _commit(stage, target)
    _cleanup(list(got.values()), options)
    log(f"installed {name} in {target}")
    return target
