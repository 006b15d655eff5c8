"""Deployment settings, read from ``STYLELENS_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

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
