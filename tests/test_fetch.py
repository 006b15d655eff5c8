"""``stylelens fetch`` against a local HTTP server on 127.0.0.1 serving files in the real formats.

The server answers ``Range`` requests like a CDN does (206 + Content-Range) and can be told to
drop a connection part-way, to ignore ``Range``, or to answer with an error status.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from stylelens.checkpoints import list_models, load_card, load_generator
from stylelens.cli import main
from stylelens.directions.store import list_directions, load_direction
from stylelens.fetch import DownloadConfig, FetchError, FetchOptions, Registry, fetch
from stylelens.fetch.registry import load_registry
from stylelens.losses.lpips import LPIPS, read_weights
from stylelens.networks.preview import FitConfig
from tests.formats import (
    TINY_G,
    write_e4e_direction,
    write_lpips_heads,
    write_nvidia_pkl,
    write_torchvision_vgg16,
)

REPO = Path(__file__).resolve().parents[1]
TINY_NUM_WS = 8  # 32 px: 2 * log2(32) - 2


@dataclass
class Served:
    """What the server serves and how it misbehaves."""

    files: dict[str, bytes] = field(default_factory=dict)
    drop_after: dict[str, int] = field(default_factory=dict)  # path -> bytes, once
    ignore_range: bool = False
    status: dict[str, int] = field(default_factory=dict)  # path -> forced HTTP status
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range)


class _Handler(BaseHTTPRequestHandler):
    served: Served

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:
        served = self.served
        rng = self.headers.get("Range")
        served.requests.append((self.path, rng))
        if self.path in served.status:
            self.send_error(served.status[self.path])
            return
        body = served.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if rng and not served.ignore_range:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(body) - start))
        self.send_header("Content-Type", "application/octet-stream")
        self.end_headers()
        chunk = body[start:]
        if self.path in served.drop_after:
            chunk = chunk[: served.drop_after.pop(self.path)]  # then hang up mid-body
            self.wfile.write(chunk)
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(chunk)


@pytest.fixture
def server() -> Iterator[tuple[str, Served]]:
    served = Served()
    handler = type("Handler", (_Handler,), {"served": served})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}", served
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def fixture_files(tmp_path_factory: pytest.TempPathFactory, weights) -> dict[str, bytes]:
    """The bytes of each fixture, under the path the server serves it at."""
    root = tmp_path_factory.mktemp("fixtures")
    g, d = weights
    paths = {
        "/nv/ffhq.pkl": write_nvidia_pkl(root / "ffhq.pkl", g, d),
        "/tv/vgg16-397923af.pth": write_torchvision_vgg16(root / "vgg16.pth"),
        "/lpips/vgg.pth": write_lpips_heads(root / "vgg.pth"),
        "/e4e/age.pt": write_e4e_direction(root / "age.pt", (1, TINY_G.w_dim), seed=1),
        "/e4e/pose.pt": write_e4e_direction(
            root / "pose.pt", (1, TINY_NUM_WS, TINY_G.w_dim), seed=2
        ),
    }
    return {url: p.read_bytes() for url, p in paths.items()}


def _remote(base: str, path: str, body: bytes, **extra: object) -> dict[str, object]:
    spec: dict[str, object] = {
        "role": "checkpoint",
        "file": path.rsplit("/", 1)[-1],
        "url": base + path,
        "size": len(body),
        "sha256": hashlib.sha256(body).hexdigest(),
    }
    spec.update(extra)
    return {k: v for k, v in spec.items() if v is not None}


def make_registry(base: str, files: dict[str, bytes], **generator: object) -> Registry:
    """A registry like models/registry.json whose URLs point at the local server."""
    pkl = files["/nv/ffhq.pkl"]
    return Registry.model_validate(
        {
            "entries": {
                "tiny-ffhq": {
                    "kind": "generator",
                    "title": "tiny test generator",
                    "resolution": generator.pop("resolution", 32),
                    "license": "test licence",
                    "directions": ["e4e-tiny"],
                    "files": [_remote(base, "/nv/ffhq.pkl", pkl, **generator)],
                },
                "lpips-vgg16": {
                    "kind": "lpips",
                    "title": "LPIPS",
                    "files": [
                        _remote(
                            base,
                            "/tv/vgg16-397923af.pth",
                            files["/tv/vgg16-397923af.pth"],
                            role="vgg16",
                        ),
                        _remote(
                            base, "/lpips/vgg.pth", files["/lpips/vgg.pth"], role="lpips-heads"
                        ),
                    ],
                },
                "e4e-tiny": {
                    "kind": "directions",
                    "title": "e4e-format directions",
                    "applies_to": ["tiny-ffhq"],
                    "files": [
                        _remote(
                            base,
                            "/e4e/age.pt",
                            files["/e4e/age.pt"],
                            role="direction",
                            name="e4e-age",
                        ),
                        _remote(
                            base,
                            "/e4e/pose.pt",
                            files["/e4e/pose.pt"],
                            role="direction",
                            name="e4e-pose",
                        ),
                    ],
                },
            }
        }
    )


def _options(tmp_path: Path, **kw: object) -> FetchOptions:
    defaults: dict[str, object] = {
        "models_dir": tmp_path / "models",
        "cache_dir": tmp_path / "models" / ".downloads",
        "sefa_top": 4,
        "download": DownloadConfig(retries=2, backoff_s=0.01, progress=False),
    }
    defaults.update(kw)
    return FetchOptions(**defaults)  # type: ignore[arg-type]


def _quiet(_: str) -> None:
    pass


def test_fetch_generator_converts_and_adds_sefa_and_e4e_directions(server, fixture_files, tmp_path):
    base, served = server
    served.files.update(fixture_files)
    registry = make_registry(base, fixture_files)
    opts = _options(tmp_path)
    target = fetch(registry, "tiny-ffhq", opts, log=_quiet)

    assert target == opts.models_dir / "tiny-ffhq"
    assert list_models(opts.models_dir) == ["tiny-ffhq"]  # the cache dir is not a model
    card = load_card(target)
    assert card.generator.img_resolution == 32
    assert card.source.format == "nvidia-pkl"
    assert card.source.sha256 == hashlib.sha256(fixture_files["/nv/ffhq.pkl"]).hexdigest()
    assert card.model_extra["fetched"]["url"] == f"{base}/nv/ffhq.pkl"
    assert card.license == "test licence"
    G, _ = load_generator(target)
    assert torch.isfinite(G(torch.randn(1, G.z_dim))).all()

    names = list_directions(target)
    assert [n for n in names if n.startswith("sefa-all-")] == [f"sefa-all-0{i}" for i in range(4)]
    age, pose = load_direction(target, "e4e-age"), load_direction(target, "e4e-pose")
    assert age.method == "imported" and tuple(age.vector.shape) == (TINY_G.w_dim,)
    assert tuple(pose.vector.shape) == (TINY_NUM_WS, TINY_G.w_dim)
    assert age.provenance["source"] == f"{base}/e4e/age.pt"
    assert not any(opts.cache_dir.glob("*.p*"))  # downloads removed once converted

    # A second run finds it installed and downloads nothing.
    served.requests.clear()
    fetch(registry, "tiny-ffhq", opts, log=_quiet)
    assert served.requests == []


def test_fetch_fits_preview_heads_when_asked(server, fixture_files, tmp_path):
    base, served = server
    served.files.update(fixture_files)
    opts = _options(tmp_path, preview_heads=FitConfig(steps=3, batch=2), keep_downloads=True)
    target = fetch(make_registry(base, fixture_files), "tiny-ffhq", opts, log=_quiet)
    assert (target / "preview_heads.safetensors").is_file()
    assert load_card(target).model_extra["preview_heads"]["steps"] == 3
    assert (opts.cache_dir / "ffhq.pkl").is_file()  # --keep-downloads


def test_interrupted_download_resumes_with_range(server, fixture_files, tmp_path):
    base, served = server
    served.files.update(fixture_files)
    served.drop_after["/nv/ffhq.pkl"] = 5000
    fetch(make_registry(base, fixture_files), "tiny-ffhq", _options(tmp_path), log=_quiet)
    pkl_requests = [r for p, r in served.requests if p == "/nv/ffhq.pkl"]
    assert pkl_requests == [None, "bytes=5000-"]


def test_partial_file_from_an_earlier_run_is_resumed(server, fixture_files, tmp_path):
    base, served = server
    served.files.update(fixture_files)
    registry = make_registry(base, fixture_files)
    served.drop_after["/nv/ffhq.pkl"] = 7000
    no_retry = _options(tmp_path, download=DownloadConfig(retries=0, progress=False))
    with pytest.raises(FetchError, match="run the command again to resume"):
        fetch(registry, "tiny-ffhq", no_retry, log=_quiet)
    part = no_retry.cache_dir / "ffhq.pkl.part"
    assert part.stat().st_size == 7000
    assert not (no_retry.models_dir / "tiny-ffhq").exists()

    fetch(registry, "tiny-ffhq", _options(tmp_path), log=_quiet)
    assert [r for p, r in served.requests if p == "/nv/ffhq.pkl"] == [None, "bytes=7000-"]
    assert load_card(no_retry.models_dir / "tiny-ffhq").source.sha256 == (
        hashlib.sha256(fixture_files["/nv/ffhq.pkl"]).hexdigest()
    )


def test_server_that_ignores_range_restarts_cleanly(server, fixture_files, tmp_path):
    base, served = server
    served.files.update(fixture_files)
    served.ignore_range = True
    served.drop_after["/nv/ffhq.pkl"] = 3000
    target = fetch(make_registry(base, fixture_files), "tiny-ffhq", _options(tmp_path), log=_quiet)
    digest = hashlib.sha256(fixture_files["/nv/ffhq.pkl"]).hexdigest()
    assert load_card(target).source.sha256 == digest  # not the first 3000 bytes twice


def test_wrong_size_is_rejected_before_download(server, fixture_files, tmp_path):
    base, served = server
    served.files.update(fixture_files)
    real = len(fixture_files["/nv/ffhq.pkl"])
    registry = make_registry(base, fixture_files, size=real + 10)
    opts = _options(tmp_path)
    with pytest.raises(FetchError, match=rf"offers {real} bytes, expected {real + 10} bytes"):
        fetch(registry, "tiny-ffhq", opts, log=_quiet)
    assert not (opts.models_dir / "tiny-ffhq").exists()
    assert not list(opts.cache_dir.glob("*.part"))


def test_approximate_size_outside_tolerance_is_rejected(server, fixture_files, tmp_path):
    base, served = server
    served.files.update(fixture_files)
    real = len(fixture_files["/nv/ffhq.pkl"])
    ok = make_registry(base, fixture_files, size=None, sha256=None, approx_size=int(real * 1.05))
    fetch(ok, "tiny-ffhq", _options(tmp_path / "a"), log=_quiet)  # within 10 %
    far = make_registry(base, fixture_files, size=None, sha256=None, approx_size=real * 2)
    with pytest.raises(FetchError, match="not the file the registry describes"):
        fetch(far, "tiny-ffhq", _options(tmp_path / "b"), log=_quiet)


def test_hash_mismatch_is_rejected(server, fixture_files, tmp_path):
    base, served = server
    served.files.update(fixture_files)
    registry = make_registry(base, fixture_files, sha256="0" * 64)
    opts = _options(tmp_path)
    with pytest.raises(FetchError, match="SHA-256"):
        fetch(registry, "tiny-ffhq", opts, log=_quiet)
    assert not list(opts.cache_dir.glob("ffhq.pkl*"))


def test_non_checkpoint_file_is_rejected_with_a_clear_message(server, fixture_files, tmp_path):
    base, served = server
    page = b"<!DOCTYPE html><html><body>Quota exceeded</body></html>" * 40
    files = {**fixture_files, "/nv/ffhq.pkl": page}
    served.files.update(files)
    opts = _options(tmp_path)
    with pytest.raises(FetchError, match="is not a StyleGAN2 checkpoint StyleLens can convert"):
        fetch(make_registry(base, files), "tiny-ffhq", opts, log=_quiet)
    assert list_models(opts.models_dir) == []


def test_generator_of_the_wrong_resolution_is_rejected(server, fixture_files, tmp_path):
    base, served = server
    served.files.update(fixture_files)
    registry = make_registry(base, fixture_files, resolution=256)
    opts = _options(tmp_path)
    with pytest.raises(FetchError, match="32px generator; the registry says tiny-ffhq is 256px"):
        fetch(registry, "tiny-ffhq", opts, log=_quiet)
    assert list_models(opts.models_dir) == []


def test_http_error_is_reported_without_retrying(server, fixture_files, tmp_path):
    base, served = server
    served.files.update(fixture_files)
    served.status["/nv/ffhq.pkl"] = 404
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch(make_registry(base, fixture_files), "tiny-ffhq", _options(tmp_path), log=_quiet)
    assert len(served.requests) == 1


def test_unreachable_server_fails_after_retries(fixture_files, tmp_path):
    registry = make_registry("http://127.0.0.1:9", fixture_files)  # discard port: refused
    with pytest.raises(FetchError, match="after 3 attempts"):
        fetch(registry, "tiny-ffhq", _options(tmp_path), log=_quiet)


def test_fetch_lpips_writes_weights_the_perceptual_loss_reads(server, fixture_files, tmp_path):
    base, served = server
    served.files.update(fixture_files)
    opts = _options(tmp_path)
    target = fetch(make_registry(base, fixture_files), "lpips-vgg16", opts, log=_quiet)
    state = read_weights(target / "weights.safetensors")
    assert not any(k.startswith("classifier") for k in state)
    src = torch.load(_write(tmp_path, fixture_files["/lpips/vgg.pth"]), weights_only=True)
    assert torch.equal(state["lin2.model.1.weight"], src["lin2.model.1.weight"])
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    assert LPIPS(state)(x, x).item() == pytest.approx(0, abs=1e-6)
    assert json.loads((target / "card.json").read_text())["kind"] == "lpips"
    assert list_models(opts.models_dir) == []  # LPIPS is not a generator model


def _write(tmp_path: Path, body: bytes) -> Path:
    path = tmp_path / "copy.pth"
    path.write_bytes(body)
    return path


def test_directions_need_their_model_and_must_fit_it(server, fixture_files, tmp_path):
    base, served = server
    served.files.update(fixture_files)
    registry = make_registry(base, fixture_files)
    with pytest.raises(FetchError, match="fetch that model first"):
        fetch(registry, "e4e-tiny", _options(tmp_path), log=_quiet)

    wide = _write(tmp_path, b"")
    write_e4e_direction(wide, (1, 512))  # an FFHQ-sized direction for a w_dim-32 model
    files = {**fixture_files, "/e4e/age.pt": wide.read_bytes()}
    served.files.update(files)
    with pytest.raises(FetchError, match="does not fit tiny-ffhq"):
        fetch(make_registry(base, files), "tiny-ffhq", _options(tmp_path), log=_quiet)
    assert list_models(tmp_path / "models") == []  # nothing half-installed


def test_from_file_uses_a_local_copy(fixture_files, tmp_path):
    registry = make_registry("http://127.0.0.1:9", fixture_files)
    local = {}
    for path, body in fixture_files.items():
        if path.startswith(("/nv/", "/e4e/")):
            local[path.rsplit("/", 1)[-1]] = _write_named(tmp_path, path, body)
    target = fetch(registry, "tiny-ffhq", _options(tmp_path, local_files=local), log=_quiet)
    assert "e4e-age" in list_directions(target)
    assert all(p.is_file() for p in local.values())  # the user's files are left alone


def _write_named(tmp_path: Path, url_path: str, body: bytes) -> Path:
    path = tmp_path / "local" / url_path.rsplit("/", 1)[-1]
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(body)
    return path


def test_cli_fetch_end_to_end(server, fixture_files, tmp_path, capsys):
    base, served = server
    served.files.update(fixture_files)
    registry_file = tmp_path / "registry.json"
    registry_file.write_text(make_registry(base, fixture_files).model_dump_json())
    models = tmp_path / "models"
    common = ["--models-dir", str(models), "--registry", str(registry_file)]
    assert main(["fetch", "tiny-ffhq", *common, "--quiet", "--sefa-top", "2"]) == 0
    out = capsys.readouterr().out
    assert "licence: test licence" in out and "installed tiny-ffhq" in out
    assert main(["fetch", "--list", *common]) == 0
    assert "tiny-ffhq" in capsys.readouterr().out
    assert main(["fetch", "nope", *common]) == 2
    assert "nothing called 'nope'" in capsys.readouterr().err


def test_shipped_registry_is_valid_and_complete():
    registry = load_registry(REPO / "models" / "registry.json")
    assert {"ffhq-1024", "ffhq-512", "ffhq-256", "lpips-vgg16", "e4e-ffhq"} <= set(registry.entries)
    for name, entry in registry.entries.items():
        assert entry.license, name
        for f in entry.files:
            assert f.url.startswith("https://"), f.url
    assert registry.entries["ffhq-1024"].directions == ["e4e-ffhq"]
    roles = {f.role for f in registry.entries["lpips-vgg16"].files}
    assert roles == {"vgg16", "lpips-heads"}
    names = {f.name for f in registry.entries["e4e-ffhq"].files}
    assert names == {"e4e-age", "e4e-smile", "e4e-pose"}


def test_cli_list_uses_the_shipped_registry(capsys, tmp_path):
    assert main(["fetch", "--list", "--models-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "ffhq-1024" in out and "lpips-vgg16" in out


def test_installed_files_are_readable_by_other_users(server, fixture_files, tmp_path):
    """The Docker image serves models/ as a non-root user; files must not be 0600."""
    base, served = server
    served.files.update(fixture_files)
    target = fetch(make_registry(base, fixture_files), "tiny-ffhq", _options(tmp_path), log=_quiet)
    for path in [*target.glob("*"), *(target / "directions").glob("*")]:
        if path.is_file():
            assert path.stat().st_mode & 0o044 == 0o044, path
