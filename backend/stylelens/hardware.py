"""The machine a measurement or a training run was made on, in one line (for cards and logs)."""

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
