"""What an upload of a small file that decodes to a huge image costs the server in memory.

For each kind of "bomb" (a file far smaller than its pixels) and for 1 and 4 uploads at once,
starts a fresh ``stylelens serve`` (embedded model, a temporary data dir) on a free port, sends
one small photo as a warm-up, then posts the bombs concurrently and reads the server process's
resident size from ``/proc/<pid>/status``: the peak (``VmHWM``, reset through
``/proc/<pid>/clear_refs`` just before) and the size a second after the last reply, both above
the size just before the posts.

``--code DIR`` runs the server from another checkout of the repository (e.g. the commit before
a change: ``git worktree add /tmp/old HEAD~1``), so old and new code are measured alike.

    python benchmarks/upload_memory.py --code /tmp/old --label before
    python benchmarks/upload_memory.py --label after --write-docs
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from common import ROOT, machine, write_docs
from PIL import Image

from stylelens.data.synthfaces import render_face

W40, H40 = 7740, 5160  # 39.9 megapixels (3:2), just under the 40 MP limit


def _gradient_rgb(w: int, h: int) -> Image.Image:
    """Smooth colour ramps: a photo's pixel count in a file that fits the 20 MB upload limit."""
    g = Image.linear_gradient("L").resize((w, h))
    return Image.merge("RGB", (g, g.transpose(Image.Transpose.FLIP_LEFT_RIGHT), g.rotate(180)))


def bombs() -> dict[str, tuple[str, bytes]]:
    """kind -> (description, file bytes)."""
    out = {}
    buf = io.BytesIO()
    Image.new("RGBA", (6300, 6300), (200, 30, 30, 128)).save(buf, "PNG")
    out["rgba-png"] = ("6300x6300 RGBA PNG", buf.getvalue())
    photo = _gradient_rgb(W40, H40)
    buf = io.BytesIO()
    photo.save(buf, "JPEG", quality=90)
    out["jpeg"] = (f"{W40}x{H40} JPEG", buf.getvalue())
    buf = io.BytesIO()
    photo.save(buf, "PNG")
    out["rgb-png"] = (f"{W40}x{H40} RGB PNG", buf.getvalue())
    return out


def face_png() -> bytes:
    img, _ = render_face(7, 512)
    buf = io.BytesIO()
    Image.fromarray(np.asarray(img)).save(buf, "PNG")
    return buf.getvalue()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _status_mb(pid: int, field: str) -> float:
    text = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(rf"{field}:\s+(\d+) kB", text)[1]) / 1024  # type: ignore[index]


@contextlib.contextmanager
def serve(code: Path) -> Iterator[tuple[str, int]]:
    """A fresh server running the code in ``code``; yields its URL and process id."""
    port = _free_port()
    data = tempfile.mkdtemp(prefix="stylelens-upload-mem-")
    env = {
        **os.environ,
        "PYTHONPATH": str(code / "backend"),
        "STYLELENS_DATA_DIR": data,
        "STYLELENS_MODELS_DIR": str(ROOT / "models"),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "stylelens.cli", "serve", "--port", str(port)],
        cwd=code,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}", server.pid
    finally:
        server.terminate()
        server.wait(timeout=30)


async def _wait_up(http: httpx.AsyncClient, timeout: float = 180) -> None:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        with contextlib.suppress(httpx.TransportError):
            if (await http.get("/healthz")).status_code == 200:
                return
        await asyncio.sleep(0.3)
    raise RuntimeError("the server did not come up")


async def _post(http: httpx.AsyncClient, data: bytes) -> int:
    sid = (await http.post("/api/sessions")).json()["id"]
    files = {"file": ("photo", data, "application/octet-stream")}
    return (await http.post(f"/api/sessions/{sid}/uploads", files=files)).status_code


async def measure(code: Path, data: bytes, n: int, warm: bytes) -> dict[str, Any]:
    """Peak and after-RSS of a fresh server for ``n`` concurrent uploads of ``data``."""
    with serve(code) as (url, pid):
        async with httpx.AsyncClient(base_url=url, timeout=300) as http:
            await _wait_up(http)
            assert await _post(http, warm) == 200
            await asyncio.sleep(1.0)
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
            base = _status_mb(pid, "VmRSS")
            t0 = time.perf_counter()
            codes = await asyncio.gather(*(_post(http, data) for _ in range(n)))
            wall = time.perf_counter() - t0
            await asyncio.sleep(1.0)
            return {
                "base_mb": base,
                "peak_mb": _status_mb(pid, "VmHWM") - base,
                "after_mb": _status_mb(pid, "VmRSS") - base,
                "codes": sorted(codes),
                "wall_s": wall,
            }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--code", type=Path, default=ROOT, help="checkout whose server to measure")
    ap.add_argument("--label", default="after", help="name of this run in the results")
    ap.add_argument("--json", type=Path, default=ROOT / "docs" / "logs" / "upload-memory.json")
    ap.add_argument("--write-docs", action="store_true", help="write docs/performance.md")
    ap.add_argument("--docs-only", action="store_true", help="only rewrite the docs from --json")
    args = ap.parse_args()
    results = json.loads(args.json.read_text()) if args.json.exists() else {}
    if args.docs_only:
        write_docs("upload-memory", render(results))
        return
    warm = face_png()
    run: dict[str, Any] = {"machine": machine(), "code": str(args.code), "cases": {}}
    for kind, (what, data) in bombs().items():
        for n in (1, 4):
            r = asyncio.run(measure(args.code, data, n, warm))
            r.update(what=what, file_kb=len(data) / 1000)
            run["cases"][f"{kind} x{n}"] = r
            print(args.label, kind, n, json.dumps({k: v for k, v in r.items() if k != "what"}))
    results[args.label] = run
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    if args.write_docs:
        write_docs("upload-memory", render(results))


def render(results: dict[str, Any]) -> str:
    after, before = results["after"], results.get("before")
    lines = [
        "## Upload memory (`benchmarks/upload_memory.py`)",
        "",
        f"Measured 2026-12-03 on {after['machine']}. A fresh `stylelens serve` (synthfaces-256) "
        "per row, warmed up with one 512 px photo; then 1 or 4 uploads posted at once. RSS of "
        "the server process from `/proc/<pid>/status`: peak (`VmHWM`, reset just before) and "
        "kept (a second after the last reply), above the size before the posts. "
        + ("Before: the code without the change, same script." if before else ""),
        "",
        "| upload | file | at once | peak before | **peak after** | kept before | kept after |"
        " wall before | wall after | replies |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for case, r in after["cases"].items():
        b = before["cases"].get(case) if before else None

        def mb(x: dict[str, Any] | None, key: str) -> str:
            return f"{x[key]:+.0f} MB" if x else "-"

        def wall(x: dict[str, Any] | None) -> str:
            return f"{x['wall_s']:.1f} s" if x else "-"

        lines.append(
            f"| {r['what']} | {r['file_kb']:.0f} kB | {case.split(' x')[1]} | "
            f"{mb(b, 'peak_mb')} | **{mb(r, 'peak_mb')}** | {mb(b, 'after_mb')} | "
            f"{mb(r, 'after_mb')} | {wall(b)} | {wall(r)} | {', '.join(map(str, r['codes']))} |"
        )
    lines += ["", READING]
    return "\n".join(lines)


READING = """What changed (`stylelens.data.images.load_image`, the upload route in `api/app.py`):

* **Decoded small.** An upload is decoded to at most `max(2048, 4 x the model's resolution)`
  pixels on its longer side, and stored at that size (the stored original is what the manual
  crop's coordinates refer to). Alignment detects faces at 1024 px and warps the face's square
  from at most 4x the output resolution, so only a face spanning less than half the photo (a
  quarter, for 256-px models) is warped from fewer pixels than the full photo had. JPEGs are
  decoded at libjpeg's 1/2, 1/4 or 1/8 scale (`draft`), never below that size: the 40 MP JPEG
  above never exists at full size.
* **No full-size copies.** Other formats must be decoded whole (Pillow has no partial PNG
  decode); the colour conversion (alpha composited on white, palette, 16-bit), the box reduction
  and the Lanczos resize then run one band of rows at a time into the small result, and the
  full-size decode is closed at once. Before, `exif_transpose`, `convert` and `alpha_composite`
  each made a full-size copy: four for an RGBA PNG (Pillow keeps RGB at 4 bytes a pixel too).
* **Two decodes at once.** Further uploads wait for a slot (up to 30 s, then 503 with
  `Retry-After`): 4 bombs at once peak at about twice one.
* **Memory given back.** glibc keeps freed memory in per-thread arenas, so four parallel
  decodes used to leave the server 1.3-1.8 GB larger for good; `malloc_trim(0)` (through ctypes,
  skipped where the C library has none) after each large decode and each upload returns it.

A 40 MP upload now costs at most about +200 MB at its peak (goal: +300 MB); the decode of a
40 MP RGBA image itself is 151 MB of it. For models of 1024 px (photos kept at 4096 px) the
6300x6300 RGBA bomb peaks at +250 MB (`load_image` measured alone, same machine). MB here are
MiB, as `/proc` counts them."""


if __name__ == "__main__":
    main()
