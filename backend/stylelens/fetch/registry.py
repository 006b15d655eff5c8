"""``models/registry.json``: what ``stylelens fetch`` can download, with expected sizes.

An entry is one installable thing: a generator checkpoint (converted into a native model
directory), the LPIPS-VGG16 weights, or a set of direction files for named models. Each file
has a URL and either an exact ``size`` (plus ``sha256`` where known) or, where NVIDIA publishes
no size, an ``approx_size`` computed from the architecture with a relative ``tolerance``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from stylelens.errors import StyleLensError

REGISTRY_FILE = "registry.json"
Kind = Literal["generator", "lpips", "directions"]


class FetchError(StyleLensError):
    """A download, its verification or its conversion failed; the message says which."""


class RemoteFile(BaseModel):
    """One file to download."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: str  # "checkpoint", "vgg16", "lpips-heads", "direction"
    file: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # name in the download cache
    url: str = Field(pattern=r"^https?://")
    size: int | None = Field(default=None, gt=0)  # exact bytes
    approx_size: int | None = Field(default=None, gt=0)  # bytes, when the exact size is unknown
    tolerance: float = Field(default=0.1, gt=0, lt=1)  # relative, for approx_size
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    name: str | None = None  # the direction's name, for role "direction"

    @model_validator(mode="after")
    def _one_size(self) -> RemoteFile:
        if (self.size is None) == (self.approx_size is None):
            raise ValueError(f"{self.file}: give exactly one of 'size' and 'approx_size'")
        return self

    def size_range(self) -> tuple[int, int]:
        """The smallest and largest acceptable byte count."""
        if self.size is not None:
            return self.size, self.size
        assert self.approx_size is not None
        lo = int(self.approx_size * (1 - self.tolerance))
        return lo, int(self.approx_size * (1 + self.tolerance))

    def describe_size(self) -> str:
        if self.size is not None:
            return f"{self.size / 1e6:.1f} MB"
        return f"~{self.approx_size / 1e6:.0f} MB" if self.approx_size else "?"


class Entry(BaseModel):
    """One thing ``stylelens fetch NAME`` installs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Kind
    title: str
    license: str = ""
    files: list[RemoteFile] = Field(min_length=1)
    resolution: int | None = None  # generators: the img_resolution the file must have
    directions: list[str] = []  # generators: direction entries installed with it
    applies_to: list[str] = []  # directions: the model ids they were made for

    def total_size(self) -> int:
        return sum(f.size or f.approx_size or 0 for f in self.files)


class Registry(BaseModel):
    model_config = ConfigDict(frozen=True)

    format_version: Literal[1] = 1
    about: str = ""
    entries: dict[str, Entry]

    @model_validator(mode="after")
    def _links(self) -> Registry:
        for name, entry in self.entries.items():
            for other in entry.directions:
                if other not in self.entries or self.entries[other].kind != "directions":
                    raise ValueError(f"{name}: {other!r} is not a directions entry")
            if entry.kind == "generator" and entry.resolution is None:
                raise ValueError(f"{name}: a generator entry needs 'resolution'")
            if entry.kind == "directions" and any(not f.name for f in entry.files):
                raise ValueError(f"{name}: every direction file needs a 'name'")
        return self

    def get(self, name: str) -> Entry:
        """The entry called ``name``; FetchError lists the known names if there is none."""
        if name not in self.entries:
            known = ", ".join(self.entries)
            raise FetchError(f"nothing called {name!r} in the registry; known: {known}")
        return self.entries[name]


def default_registry_path(models_dir: Path) -> Path:
    return models_dir / REGISTRY_FILE


# The registry that ships with the repository, for a models dir that has none of its own.
REPO_REGISTRY = Path(__file__).resolve().parents[3] / "models" / REGISTRY_FILE


def registry_for(models_dir: Path, given: Path | None = None) -> Path:
    """The registry file to read: ``given``, else ``models_dir/registry.json``, else the
    repository's (as ``stylelens fetch`` chooses)."""
    if given is not None:
        return given
    own = default_registry_path(models_dir)
    return own if own.is_file() else REPO_REGISTRY


def load_registry(path: Path) -> Registry:
    """Parse and check a registry file. Raises FetchError."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise FetchError(f"{path}: no registry file (pass --registry PATH)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise FetchError(f"{path}: cannot read the registry: {exc}") from None
    try:
        return Registry.model_validate(data)
    except ValidationError as exc:
        raise FetchError(f"{path}: not a valid registry: {exc}") from None
