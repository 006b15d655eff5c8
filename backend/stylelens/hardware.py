"""The machine a measurement or a training run was made on, in one line (for cards and logs),
and what it can do natively."""

from __future__ import annotations

import contextlib
import os
import platform
import re
from pathlib import Path

import torch


def describe_hardware(device: torch.device) -> str:
    """The machine in one line: GPU name and CUDA version, or CPU model and cores; torch."""
    if device.type == "cuda":
        name = f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    else:
        name = platform.processor() or platform.machine() or "cpu"
        with contextlib.suppress(OSError):
            m = re.search(r"model name\s*:\s*(.+)", Path("/proc/cpuinfo").read_text())
            name = m[1].strip() if m else name
        name += f", {os.cpu_count()} cores"
    return f"{name}, torch {torch.__version__}"


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512-BF16 or AMX-BF16). Without it
    PyTorch emulates bfloat16 and a network runs tens of times slower than in float32
    (docs/encoder.md measured 40x); with it, training is about 1.5x as fast at 256 px
    (performance.md)."""
    with contextlib.suppress(OSError):
        flags = re.search(r"^flags\s*:\s*(.+)$", cpuinfo.read_text(), re.M)
        if flags is not None:
            return bool({"avx512_bf16", "amx_bf16"} & set(flags[1].split()))
    return False
