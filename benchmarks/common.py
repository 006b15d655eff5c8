"""What every benchmark script shares: the machine description and the docs writer.

Imported as ``from common import ...``: scripts run as ``python benchmarks/NAME.py``, which puts
this folder first on ``sys.path``.
"""

from __future__ import annotations

import contextlib
import os
import platform
import re
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "performance.md"


def machine() -> str:
    """CPU model (with AMX when present), cores, torch version and threads, Python version."""
    cpu = platform.processor() or "cpu"
    with contextlib.suppress(OSError):
        text = Path("/proc/cpuinfo").read_text()
        m = re.search(r"model name\s*:\s*(.+)", text)
        cpu = m[1].strip() if m else cpu
        flags = re.search(r"flags\s*:\s*(.+)", text)
        if flags and "amx_bf16" in flags[1]:
            cpu += ", AMX-BF16"
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, Python {platform.python_version()}"
    )


def write_docs(section: str, body: str, doc: Path = DOC) -> None:
    """Replace the text between ``<!-- section:start -->`` and ``<!-- section:end -->`` in
    ``doc`` (appending the section when it is new); nothing else in the file changes."""
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    text = doc.read_text() if doc.exists() else "# Performance\n"
    block = f"{start}\n{body}\n{end}"
    if start in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda m: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    doc.parent.mkdir(exist_ok=True)
    doc.write_text(text)
