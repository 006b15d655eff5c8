"""Writers of checkpoint files in the exact on-disk structure of the real formats.

* NVIDIA stylegan2-ada-pytorch ``.pkl``: a plain pickle of ``{training_set_kwargs, G, D, G_ema,
  augment_pipe}`` whose networks reduce to ``torch_utils.persistence._reconstruct_persistent_obj``
  with ``{type, version, module_src, class_name, state}``; ``state`` is the module ``__dict__``.
  Throw-away ``torch_utils`` / ``dnnlib`` modules exist only while pickling, so nothing of
  NVIDIA's is imported. ``module_src`` is a tiny valid source so that NVIDIA's own loader could
  read the file too.
* rosinality stylegan2-pytorch ``.pt``: ``torch.save`` of ``train.py``'s dict (``g``, ``d``,
  ``g_ema``, optimiser states, ``args``, ``ada_aug_p``) or of ``convert_weight.py``'s
  ``{g_ema, latent_avg}``. The rosinality names here are written out independently of the
  converter's rule table, so the converter is checked against a second spelling of the format.
"""

from __future__ import annotations

import argparse
import contextlib
import pickle
import sys
import types
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stylelens.networks.discriminator import Discriminator, DiscriminatorConfig
from stylelens.networks.stylegan2 import Generator, GeneratorConfig

TINY_G = GeneratorConfig(
    z_dim=32, w_dim=32, img_resolution=32, mapping_layers=2, channel_base=256, channel_max=32
)
TINY_D = DiscriminatorConfig(img_resolution=32, channel_base=256, channel_max=32)
_TAPS = torch.tensor([1.0, 3.0, 3.0, 1.0])
FILTER = torch.outer(_TAPS, _TAPS) / 64  # NVIDIA's resample_filter buffer


def random_state(module: torch.nn.Module, seed: int = 0) -> dict[str, torch.Tensor]:
    """Every tensor random and non-trivial (biases, noise strengths, constants included)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in module.state_dict().items():
        t = torch.randn(value.shape, generator=g)
        if key.endswith("affine.bias"):
            t = 1 + 0.2 * t  # styles near 1, as after training
        elif key.endswith(("bias", "noise_strength")):
            t = 0.1 * t
        elif key.startswith("mapping.fc"):
            t = t / 0.01  # stored / lr_multiplier, as NVIDIA initialises and stores them
        elif key.endswith("w_avg"):
            t = 0.5 * t
        out[key] = t
    return out


def tiny_weights(seed: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Random NVIDIA-named (G, D) state dicts for the tiny architecture."""
    return random_state(Generator(TINY_G), seed), random_state(Discriminator(TINY_D), seed + 1)


# ----------------------------------------------------------------------------
# NVIDIA .pkl


def _reconstruct_persistent_obj(meta: dict[str, Any]) -> Any:  # only referenced by name
    raise RuntimeError("fixture hook; never called")


class EasyDict(dict):  # type: ignore[type-arg]
    pass


_reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
EasyDict.__module__ = "dnnlib.util"


@contextlib.contextmanager
def _nvidia_modules() -> Iterator[None]:
    mods = {
        name: types.ModuleType(name)
        for name in ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util")
    }
    mods["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj  # type: ignore[attr-defined]
    mods["dnnlib.util"].EasyDict = EasyDict  # type: ignore[attr-defined]
    saved = {k: sys.modules.get(k) for k in mods}
    sys.modules.update(mods)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


class PersistentNode:
    """Pickles like an NVIDIA ``@persistent_class`` module."""

    def __init__(self, class_name: str, state: dict[str, Any]) -> None:
        self.class_name, self.state = class_name, state

    def __reduce__(self) -> tuple[Any, ...]:
        src = f"import torch\nclass {self.class_name}(torch.nn.Module):\n    pass\n"
        meta = dict(
            type="class", version=6, module_src=src, class_name=self.class_name, state=self.state
        )
        return (_reconstruct_persistent_obj, (meta,), None)


BUFFERS = ("noise_const", "w_avg", "resample_filter", "p")


def _module_state(
    params: dict[str, Any], buffers: dict[str, Any], modules: dict[str, Any], extra: dict[str, Any]
) -> dict[str, Any]:
    state: dict[str, Any] = {"training": False}
    state["_parameters"] = OrderedDict(
        (k, torch.nn.Parameter(v, requires_grad=False)) for k, v in params.items()
    )
    state["_buffers"] = OrderedDict(buffers)
    state["_non_persistent_buffers_set"] = set()
    for hooks in (
        "_backward_hooks",
        "_forward_hooks",
        "_forward_pre_hooks",
        "_state_dict_hooks",
        "_load_state_dict_pre_hooks",
    ):
        state[hooks] = OrderedDict()
    state["_modules"] = OrderedDict(modules)
    state.update(extra)
    return state


def _class_name(path: str, family: str) -> str:
    leaf = path.rsplit(".", 1)[-1]
    if path == "":
        return family
    if family == "Generator":
        table = {
            "synthesis": "SynthesisNetwork",
            "mapping": "MappingNetwork",
            "torgb": "ToRGBLayer",
            "conv0": "SynthesisLayer",
            "conv1": "SynthesisLayer",
        }
        if leaf.startswith("b"):
            return "SynthesisBlock"
        return table.get(leaf, "FullyConnectedLayer")
    if leaf == "b4":
        return "DiscriminatorEpilogue"
    if leaf.startswith("b"):
        return "DiscriminatorBlock"
    if leaf == "mbstd":
        return "MinibatchStdLayer"
    return "FullyConnectedLayer" if leaf in ("fc", "out") else "Conv2dLayer"


def _tree(
    flat: dict[str, torch.Tensor], family: str, init_kwargs: dict[str, Any]
) -> PersistentNode:
    """Nest a flat NVIDIA state dict into persistent modules."""
    root: dict[str, Any] = {}
    for key, value in flat.items():
        node = root
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value

    def build(node: dict[str, Any], path: str) -> PersistentNode:
        params = {k: v for k, v in node.items() if isinstance(v, torch.Tensor) and k not in BUFFERS}
        buffers = {k: v for k, v in node.items() if isinstance(v, torch.Tensor) and k in BUFFERS}
        children = {
            k: build(v, f"{path}.{k}".lstrip(".")) for k, v in node.items() if isinstance(v, dict)
        }
        extra: dict[str, Any] = {
            "_init_args": (),
            "_init_kwargs": EasyDict(init_kwargs if path == "" else {}),
        }
        if "weight" in params and params["weight"].ndim == 4:
            extra["act_gain"] = np.float64(np.sqrt(2))  # a numpy scalar, as in real files
        return PersistentNode(
            _class_name(path, family), _module_state(params, buffers, children, extra)
        )

    if family == "Discriminator":
        root["b4"]["mbstd"] = {}
    return build(root, "")


def with_nvidia_filters(state: dict[str, torch.Tensor], family: str) -> dict[str, torch.Tensor]:
    """Add the ``resample_filter`` buffers NVIDIA's modules register."""
    out = dict(state)
    owners = set()
    for key in state:
        parts = key.split(".")
        if family == "Generator" and key.startswith("synthesis.b"):
            owners.add(".".join(parts[:2]))
            if parts[2] in ("conv0", "conv1"):
                owners.add(".".join(parts[:3]))
        if family == "Discriminator":
            if parts[0] != "b4":
                owners.add(parts[0])
            if parts[1] in ("fromrgb", "conv0", "conv1", "skip", "conv"):
                owners.add(".".join(parts[:2]))
    for owner in owners:
        out[f"{owner}.resample_filter"] = FILTER.clone()
    return out


def g_init_kwargs(cfg: GeneratorConfig) -> dict[str, Any]:
    return {
        "z_dim": cfg.z_dim,
        "c_dim": 0,
        "w_dim": cfg.w_dim,
        "img_resolution": cfg.img_resolution,
        "img_channels": cfg.img_channels,
        "mapping_kwargs": EasyDict(num_layers=cfg.mapping_layers),
        "synthesis_kwargs": EasyDict(
            channel_base=cfg.channel_base,
            channel_max=cfg.channel_max,
            num_fp16_res=0,
            conv_clamp=cfg.conv_clamp,
        ),
    }


def d_init_kwargs(cfg: DiscriminatorConfig) -> dict[str, Any]:
    return {
        "c_dim": 0,
        "img_resolution": cfg.img_resolution,
        "img_channels": cfg.img_channels,
        "channel_base": cfg.channel_base,
        "channel_max": cfg.channel_max,
        "num_fp16_res": 0,
        "conv_clamp": cfg.conv_clamp,
        "epilogue_kwargs": EasyDict(mbstd_group_size=cfg.mbstd_group_size),
    }


def write_nvidia_pkl(
    path: Path,
    g_state: dict[str, torch.Tensor],
    d_state: dict[str, torch.Tensor],
    *,
    g_cfg: GeneratorConfig = TINY_G,
    d_cfg: DiscriminatorConfig = TINY_D,
    protocol: int = 3,
    extra_top: dict[str, Any] | None = None,
) -> Path:
    """A stylegan2-ada-pytorch ``network-snapshot-*.pkl``; G is a perturbed copy of G_ema."""
    g_full = with_nvidia_filters(g_state, "Generator")
    d_full = with_nvidia_filters(d_state, "Discriminator")
    g_train = {k: v + 0.01 if v.is_floating_point() else v for k, v in g_full.items()}
    snapshot = dict(
        training_set_kwargs=EasyDict(path="ffhq.zip", resolution=g_cfg.img_resolution, xflip=True),
        G=_tree(g_train, "Generator", g_init_kwargs(g_cfg)),
        D=_tree(d_full, "Discriminator", d_init_kwargs(d_cfg)),
        G_ema=_tree(g_full, "Generator", g_init_kwargs(g_cfg)),
        augment_pipe=PersistentNode(
            "AugmentPipe", _module_state({}, {"p": torch.zeros([])}, {}, {})
        ),
    )
    snapshot.update(extra_top or {})
    with _nvidia_modules(), path.open("wb") as f:
        pickle.dump(snapshot, f, protocol=protocol)
    return path


# ----------------------------------------------------------------------------
# rosinality .pt


def to_rosinality_generator(
    state: dict[str, torch.Tensor], cfg: GeneratorConfig = TINY_G
) -> dict[str, torch.Tensor]:
    """NVIDIA-named generator weights -> rosinality ``Generator.state_dict()`` (w_avg excluded)."""
    out: dict[str, torch.Tensor] = {}
    for i in range(cfg.mapping_layers):
        out[f"style.{i + 1}.weight"] = state[f"mapping.fc{i}.weight"]
        out[f"style.{i + 1}.bias"] = state[f"mapping.fc{i}.bias"]
    out["input.input"] = state["synthesis.b4.const"][None]

    def styled(dst: str, src: str, blur: bool) -> None:
        out[f"{dst}.conv.weight"] = state[f"{src}.weight"][None]
        out[f"{dst}.conv.modulation.weight"] = state[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = state[f"{src}.affine.bias"]
        if blur:
            out[f"{dst}.conv.blur.kernel"] = FILTER * 4
        out[f"{dst}.noise.weight"] = state[f"{src}.noise_strength"].reshape(1)
        out[f"{dst}.activate.bias"] = state[f"{src}.bias"]

    def to_rgb(dst: str, src: str, upsample: bool) -> None:
        out[f"{dst}.bias"] = state[f"{src}.bias"].reshape(1, -1, 1, 1)
        if upsample:
            out[f"{dst}.upsample.kernel"] = FILTER * 4
        out[f"{dst}.conv.weight"] = state[f"{src}.weight"][None]
        out[f"{dst}.conv.modulation.weight"] = state[f"{src}.affine.weight"]
        out[f"{dst}.conv.modulation.bias"] = state[f"{src}.affine.bias"]

    styled("conv1", "synthesis.b4.conv1", blur=False)
    to_rgb("to_rgb1", "synthesis.b4.torgb", upsample=False)
    noises = {"noises.noise_0": state["synthesis.b4.conv1.noise_const"][None, None]}
    for k, res in enumerate(cfg.block_resolutions[1:]):
        styled(f"convs.{2 * k}", f"synthesis.b{res}.conv0", blur=True)
        styled(f"convs.{2 * k + 1}", f"synthesis.b{res}.conv1", blur=False)
        to_rgb(f"to_rgbs.{k}", f"synthesis.b{res}.torgb", upsample=True)
        noises[f"noises.noise_{2 * k + 1}"] = state[f"synthesis.b{res}.conv0.noise_const"][
            None, None
        ]
        noises[f"noises.noise_{2 * k + 2}"] = state[f"synthesis.b{res}.conv1.noise_const"][
            None, None
        ]
    out.update(noises)
    return out


def to_rosinality_discriminator(
    state: dict[str, torch.Tensor], cfg: DiscriminatorConfig = TINY_D
) -> dict[str, torch.Tensor]:
    size = cfg.img_resolution
    out = {
        "convs.0.0.weight": state[f"b{size}.fromrgb.weight"],
        "convs.0.1.bias": state[f"b{size}.fromrgb.bias"],
    }
    for k, res in enumerate(cfg.block_resolutions, start=1):
        out[f"convs.{k}.conv1.0.weight"] = state[f"b{res}.conv0.weight"]
        out[f"convs.{k}.conv1.1.bias"] = state[f"b{res}.conv0.bias"]
        out[f"convs.{k}.conv2.0.kernel"] = FILTER.clone()
        out[f"convs.{k}.conv2.1.weight"] = state[f"b{res}.conv1.weight"]
        out[f"convs.{k}.conv2.2.bias"] = state[f"b{res}.conv1.bias"]
        out[f"convs.{k}.skip.0.kernel"] = FILTER.clone()
        out[f"convs.{k}.skip.1.weight"] = state[f"b{res}.skip.weight"]
    out.update(
        {
            "final_conv.0.weight": state["b4.conv.weight"],
            "final_conv.1.bias": state["b4.conv.bias"],
            "final_linear.0.weight": state["b4.fc.weight"],
            "final_linear.0.bias": state["b4.fc.bias"],
            "final_linear.1.weight": state["b4.out.weight"],
            "final_linear.1.bias": state["b4.out.bias"],
        }
    )
    return out


def write_rosinality_pt(
    path: Path,
    g_state: dict[str, torch.Tensor],
    d_state: dict[str, torch.Tensor] | None,
    *,
    layout: str = "train",
    g_cfg: GeneratorConfig = TINY_G,
    d_cfg: DiscriminatorConfig = TINY_D,
) -> Path:
    """``layout="train"``: train.py's checkpoint (no latent_avg); ``"convert"``:
    convert_weight.py's ``{g_ema, latent_avg[, d]}``."""
    g = to_rosinality_generator(g_state, g_cfg)
    d = to_rosinality_discriminator(d_state, d_cfg) if d_state is not None else None
    if layout == "train":
        adam = {
            "state": {0: {"step": torch.tensor(10.0), "exp_avg": torch.zeros(3)}},
            "param_groups": [{"lr": 0.002, "betas": (0.0, 0.99), "params": [0]}],
        }
        ckpt: dict[str, Any] = {
            "g": g,
            "d": d,
            "g_ema": g,
            "g_optim": adam,
            "d_optim": adam,
            "args": argparse.Namespace(
                size=g_cfg.img_resolution,
                channel_multiplier=2,
                latent=g_cfg.w_dim,
                n_mlp=g_cfg.mapping_layers,
            ),
            "ada_aug_p": 0.0,
        }
    else:
        ckpt = {"g_ema": g, "latent_avg": g_state["mapping.w_avg"]}
        if d is not None:
            ckpt["d"] = d
    torch.save(ckpt, path)
    return path


# ----------------------------------------------------------------------------
# LPIPS-VGG16 weights (what `stylelens fetch lpips-vgg16` writes)


def write_lpips_vgg16(path: Path, seed: int = 0) -> Path:
    """Random weights with torchvision's VGG16 names and LPIPS's linear-head names and shapes."""
    from safetensors.torch import save_file

    from stylelens.losses.lpips import expected_shapes

    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in expected_shapes().items():
        t = torch.randn(shape, generator=g)
        if key.startswith("features") and key.endswith("weight"):
            t = t * (2 / (shape[1] * 9)) ** 0.5  # He init keeps activations finite
        elif key.startswith("features"):
            t = t * 0.01
        else:
            t = t.abs() * 0.1  # LPIPS clamps its linear weights to be non-negative
        state[key] = t
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return path


def write_torchvision_vgg16(path: Path, seed: int = 0) -> Path:
    """``vgg16-397923af.pth`` as torchvision publishes it: a legacy (non-zip) ``torch.save`` of
    the whole VGG16 state dict, ``features.*`` plus the ``classifier.*`` layers LPIPS ignores
    (made small here: the real classifier is 25088 -> 4096 -> 4096 -> 1000)."""
    from safetensors.torch import load_file

    tmp = write_lpips_vgg16(path.with_suffix(".tmp.safetensors"), seed)
    state = OrderedDict((k, v) for k, v in load_file(str(tmp)).items() if k.startswith("features"))
    tmp.unlink()
    g = torch.Generator().manual_seed(seed + 1)
    for idx, (n_in, n_out) in {0: (512 * 7 * 7 // 64, 16), 3: (16, 16), 6: (16, 10)}.items():
        state[f"classifier.{idx}.weight"] = torch.randn(n_out, n_in, generator=g) * 0.01
        state[f"classifier.{idx}.bias"] = torch.zeros(n_out)
    torch.save(state, path, _use_new_zipfile_serialization=False)
    return path


def write_lpips_heads(path: Path, seed: int = 0) -> Path:
    """LPIPS's ``weights/v0.1/vgg.pth``: a legacy ``torch.save`` of five [1, C, 1, 1] heads."""
    from stylelens.losses.lpips import expected_shapes

    g = torch.Generator().manual_seed(seed + 2)
    state = OrderedDict(
        (k, torch.rand(shape, generator=g) * 0.1)
        for k, shape in expected_shapes().items()
        if k.startswith("lin")
    )
    torch.save(state, path, _use_new_zipfile_serialization=False)
    return path


def write_e4e_direction(path: Path, shape: tuple[int, ...], seed: int = 0) -> Path:
    """An e4e ``editings/interfacegan_directions/*.pt``: ``torch.save`` (zip) of one tensor,
    [1, w_dim] (age, smile) or [1, num_ws, w_dim] (pose), each row of unit norm."""
    v = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    torch.save(v / v.norm(dim=-1, keepdim=True), path)
    return path
