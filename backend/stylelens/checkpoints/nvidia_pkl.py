"""Read NVIDIA stylegan2-ada-pytorch ``.pkl`` snapshots without running their code.

NVIDIA's pickles store each network as ``torch_utils.persistence._reconstruct_persistent_obj``
called on ``{type, version, module_src, class_name, state}``; the official loader ``exec``s
``module_src``. Here a restricted unpickler maps that function to :class:`PersistentStub`, which
keeps only the module's ``state`` (its ``__dict__``: parameters, buffers, child modules, init
kwargs) and ignores the source text. Any global outside a fixed allow-list is refused, so a file
whose reduce calls ``os.system`` (or anything else) fails before it can run.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch

from stylelens.errors import CheckpointError

# Globals that real stylegan2-ada / stylegan3 pickles reference (pickle protocols 2-5), besides
# the persistence hook, EasyDict and torch's storage loader, which are replaced below.
ALLOWED_GLOBALS = frozenset(
    {
        ("collections", "OrderedDict"),
        ("builtins", "set"),
        ("__builtin__", "set"),
        ("_codecs", "encode"),
        ("torch._utils", "_rebuild_tensor_v2"),
        ("torch._utils", "_rebuild_parameter"),
        ("numpy", "dtype"),
        ("numpy", "ndarray"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }
)


class EasyDictStub(dict):  # type: ignore[type-arg]
    """Stands in for ``dnnlib.util.EasyDict`` (a dict with attribute access)."""


class PersistentStub:
    """Stands in for every ``@persistent_class`` object; keeps its state, never its code."""

    def __init__(self, meta: Any) -> None:
        if not isinstance(meta, dict) or meta.get("type") != "class" or "state" not in meta:
            raise CheckpointError("malformed persistent object in the pickle")
        self.class_name = str(meta.get("class_name", ""))
        self.state: dict[str, Any] = meta["state"] if isinstance(meta["state"], dict) else {}

    def child(self, name: str) -> PersistentStub | None:
        child = self.state.get("_modules", {}).get(name)
        return child if isinstance(child, PersistentStub) else None

    def state_dict(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """Parameters and persistent buffers of this module and its children, torch-style."""
        out: dict[str, torch.Tensor] = {}
        skip = self.state.get("_non_persistent_buffers_set") or set()
        for group in ("_parameters", "_buffers"):
            for key, value in (self.state.get(group) or {}).items():
                if value is None or key in skip:
                    continue
                if not isinstance(value, torch.Tensor):
                    raise CheckpointError(f"{prefix}{key} is not a tensor")
                out[prefix + key] = value.detach()
        for key, module in (self.state.get("_modules") or {}).items():
            if isinstance(module, PersistentStub):
                out.update(module.state_dict(f"{prefix}{key}."))
            elif module is not None:
                raise CheckpointError(f"{prefix}{key} is not a network module")
        return out

    def init_kwargs(self) -> dict[str, Any]:
        kwargs = self.state.get("_init_kwargs")
        return dict(kwargs) if isinstance(kwargs, dict) else {}


def _load_storage(data: bytes) -> Any:
    # torch.storage._load_from_bytes would call torch.load(weights_only=False).
    return torch.load(io.BytesIO(data), weights_only=True)


class RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch_utils.persistence", "_reconstruct_persistent_obj"):
            return PersistentStub
        if module in ("dnnlib", "dnnlib.util") and name == "EasyDict":
            return EasyDictStub
        if (module, name) == ("torch.storage", "_load_from_bytes"):
            return _load_storage
        if module.startswith("dnnlib.tflib"):
            raise CheckpointError(
                "this is a TensorFlow-era StyleGAN/StyleGAN2 pickle, which is not supported; "
                "use NVIDIA's stylegan2-ada-pytorch .pkl of the same network instead"
            )
        if (module, name) in ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise CheckpointError(
            f"the pickle references {module}.{name}, which a StyleGAN2 checkpoint never does; "
            "refusing to load it (the file may be malicious or not a checkpoint)"
        )


def read_pickle(path: Path) -> Any:
    """Unpickle ``path`` with the restricted unpickler. Raises CheckpointError."""
    try:
        with path.open("rb") as f:
            return RestrictedUnpickler(f).load()
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError) as exc:
        raise CheckpointError(f"{path.name}: truncated or not a pickle ({exc})") from exc
    except (ValueError, TypeError, AttributeError, IndexError, KeyError, RuntimeError) as exc:
        raise CheckpointError(
            f"{path.name}: malformed pickle ({type(exc).__name__}: {exc})"
        ) from exc


def read_nvidia_pkl(
    path: Path,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None, dict[str, Any]]:
    """Read a stylegan2-ada-pytorch snapshot.

    Returns:
        (G_ema state dict, D state dict or None, {"G": G init kwargs, "D": D init kwargs}),
        with NVIDIA's own names (resample filters included).

    Raises:
        CheckpointError: not a snapshot, unsafe, or a stylegan3 network.
    """
    data = read_pickle(path)
    if not isinstance(data, dict) or not isinstance(data.get("G_ema"), PersistentStub):
        raise CheckpointError(
            f"{path.name}: not a stylegan2-ada-pytorch snapshot (expected a dict with a 'G_ema' "
            "network)"
        )
    G = data["G_ema"]
    synthesis = G.child("synthesis")
    if synthesis is not None and synthesis.child("input") is not None:
        raise CheckpointError(
            f"{path.name}: this is a StyleGAN3 network (synthesis.input, synthesis.L0_*); "
            "stylegan3 checkpoints are not supported yet"
        )
    D = data.get("D")
    hints = {"G": G.init_kwargs(), "D": D.init_kwargs() if isinstance(D, PersistentStub) else {}}
    d_state = D.state_dict() if isinstance(D, PersistentStub) else None
    return G.state_dict(), d_state, hints
