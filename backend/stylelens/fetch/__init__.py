"""``stylelens fetch NAME``: download official weights and install them as native models.

``registry`` says what exists (``models/registry.json``), ``download`` gets files resumably and
checks them, ``install`` converts them (generators, LPIPS weights, direction files).
"""

from stylelens.fetch.download import DownloadConfig, download
from stylelens.fetch.install import FetchOptions, fetch
from stylelens.fetch.registry import FetchError, Registry, load_registry

__all__ = [
    "DownloadConfig",
    "FetchError",
    "FetchOptions",
    "Registry",
    "download",
    "fetch",
    "load_registry",
]
