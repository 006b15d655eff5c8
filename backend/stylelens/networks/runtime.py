"""How a network runs: device choice, bfloat16 autocast and optional ``torch.compile``.

Kept apart from the networks so that they stay plain modules; the CLI, the benchmarks and the
server choose the execution options from ``Settings``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import torch

from stylelens.errors import StyleLensError

PRECISIONS = ("float32", "bfloat16")


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` -> cuda when available, else cpu; anything else is passed to torch.device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} requested but CUDA is not available")
    return device


@contextlib.contextmanager
def autocast(device: torch.device, precision: str) -> Iterator[None]:
    """Run the enclosed ops in ``precision``: float32 (plain) or bfloat16 autocast."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "float32":
        yield
        return
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
        yield


def compiled(fn: Callable[..., Any], enabled: bool) -> Callable[..., Any]:
    """``torch.compile(fn)`` when enabled (the first call then takes tens of seconds).

    Raises StyleLensError, before anything is compiled, when the compiled code would run on a
    CPU (``fn``'s parameters, or no CUDA) and there is no C++ compiler for inductor to call.
    """
    if not enabled:
        return fn
    params = fn.parameters() if isinstance(fn, torch.nn.Module) else iter(())
    first = next(params, None)
    on_cpu = first.device.type == "cpu" if first is not None else not torch.cuda.is_available()
    if on_cpu and not (shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++")):
        raise StyleLensError(
            "compiling on a CPU needs a C++ compiler (g++), and none was found; install one "
            "(apt-get install g++) or run without compile"
        )
    return torch.compile(fn)
