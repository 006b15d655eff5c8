"""Deployment settings, read from ``STYLELENS_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Precision = Literal["float32", "bfloat16"]


class Settings(BaseSettings):
    """One place for everything a deployment may change."""

    model_config = SettingsConfigDict(env_prefix="STYLELENS_")

    models_dir: Path = Path("models")  # holds one directory per model id
    default_model: str = "synthfaces-256"
    device: str = "auto"  # "auto" (cuda if available), "cpu", "cuda", "cuda:1", ...
    precision: Precision = "float32"  # "bfloat16": autocast, ~2-3x faster on CPUs with AMX
    compile: bool = False  # torch.compile the synthesis network (slow first call)

    # The web app (``stylelens serve``)
    host: str = "127.0.0.1"  # loopback by default: set an auth_token before exposing it
    port: int = 8000
    # Set by the Docker image: there 0.0.0.0 is the container's own interface, and what is
    # reachable is decided by the published port (127.0.0.1 in docker-compose.yml), so a
    # non-loopback host needs no token. Obeyed only inside a real container (api/cli.py
    # check_exposure). The Host check below still applies without a token.
    in_container: bool = False
    serve_models: list[str] = []  # more model ids the app offers besides default_model
    data_dir: Path = Path("data")  # sessions' uploads, latents, results + index.sqlite3
    frontend_dir: Path | None = None  # None: the repository's frontend/ folder
    auth_token: str | None = None  # set: every request needs it (Bearer header or ?token=)
    allowed_origins: list[str] = []  # extra websocket Origins besides the page's own host
    # Without a token, requests must name one of these hosts (defeats DNS rebinding).
    allowed_hosts: list[str] = ["127.0.0.1", "localhost", "::1"]
    max_upload_bytes: int = 20_000_000  # larger request bodies get 413
    max_pixels: int = 40_000_000  # larger images are refused before decoding (bombs)
    max_steps: int = 1000  # inversion steps one job may ask for
    default_steps: int = 200
    default_engine: str = "progressive"
    perceptual: str = "auto"  # inversion's perceptual loss (see `stylelens invert --help`)
    preview_size: int = 256  # preview frames are at most this many pixels wide
    preview_interval_ms: int = 100  # at most one preview frame per connection this often
    queue_max: int = 64  # pending jobs of all sessions together; beyond it: "busy"
    queue_per_session: int = 8  # pending jobs of one session; beyond it that session: "busy"
    # Renders of sessions waiting at once drawn in one generator call, at most this many
    # (benchmarks/batching.py: 2-4 pay on a 2-core CPU, 8 no longer does); 1 turns it off.
    render_batch: int = Field(default=4, ge=1, le=32)
    # Inversion steps of sessions waiting at once run as one forward/backward, at most this many
    # (progressive engine, same stage; benchmarks/batching.py --part steps: 0.68x each at 4 at
    # full resolution, 1.06x at 8 on a 2-core CPU); 1 turns it off.
    step_batch: int = Field(default=4, ge=1, le=32)
    checkpoint_interval_s: float = 5.0  # a running inversion's latent is saved this often
    reconnect_grace_s: float = 60.0  # an inversion whose page went away runs on this long
    session_ttl_hours: float = 72.0  # sessions idle this long are deleted with their files

    # The Models dialog (docs/fetch.md): installs from the page. Refused anyway on a server
    # reachable beyond loopback without an auth_token (api/installs.py installs_refusal).
    allow_installs: bool = True
    registry: Path | None = None  # None: MODELS_DIR/registry.json, else the repository's
    max_checkpoint_bytes: int = 2_000_000_000  # an uploaded checkpoint larger than this: 413
