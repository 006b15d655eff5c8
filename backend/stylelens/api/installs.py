"""The Models dialog's server side: what is installed, what the registry offers, and installs.

An install runs :func:`stylelens.fetch.fetch` (a registry entry) or
:func:`stylelens.fetch.install.install_checkpoint` (a checkpoint the user uploaded) in a thread
of its own: never on the worker thread, which serves every session's renders and inversions
while a download takes minutes. One install at a time per server; a second is refused (409).
Its progress goes to every socket of the server (``Hub.broadcast``: the models directory is
the whole server's): ``install_progress``, then ``install_done`` or ``install_failed``.

Converting and SeFa run in the install thread on the CPU: torch in a second thread gets an
OpenMP pool of its own that competes with the worker's for the cores (see jobs/worker.py), for
the seconds they take, once per install; the download, the long part, uses no torch.

A generator it installs is then loaded on the worker thread (``Worker.call``, the one thread
that runs models) and served until the server stops, so pages can pick it at once; directions
it adds to a served model are read again the same way. LPIPS weights are read at start-up only:
the dialog says to restart.

The install belongs to the server, not to the page that asked: a page that closes or loses its
socket changes nothing, the install goes on, and any page (this one reloaded) sees it in
``GET /api/models`` and in the events. ``DELETE /api/models/install`` stops a download; what it
has downloaded stays in ``MODELS_DIR/.downloads`` and the next install of the entry resumes
there (as ``stylelens fetch`` does). An upload whose connection drops is deleted: uploads do
not resume.

Who may install: with an access token, whoever has it (every ``/api`` route needs it). Without
one, only a server nobody beyond this machine reaches: bound to loopback and answering loopback
host names only. A server exposed without a token (``STYLELENS_IN_CONTAINER``, or a proxy's name
in ``STYLELENS_ALLOWED_HOSTS``) refuses installs: anyone who reaches it could fill its disk.
"""

from __future__ import annotations

import logging
import re
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from stylelens.checkpoints.native import (
    CARD_FILE,
    ModelCard,
    is_valid_model_id,
    list_models,
    load_card,
    training_source,
)
from stylelens.fetch.registry import Entry, FetchError, Registry, load_registry, registry_for
from stylelens.sessions.protocol import (
    InstallDone,
    InstalledModel,
    InstallFailed,
    InstallProgress,
    InstallSource,
    InstallStage,
    ModelChoice,
    ServerEvent,
)
from stylelens.settings import Settings

log = logging.getLogger("stylelens.installs")

# The names ``stylelens serve`` treats as loopback (api/cli.py check_exposure).
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
PROGRESS_INTERVAL_S = 0.2  # at most 5 install_progress events a second (the last always)
LOAD_TIMEOUT_S = 600.0  # loading and warming up a new model on the worker thread
SEFA_TOP = 10  # SeFa directions computed for an installed generator, as `stylelens fetch`
UPLOADS = "uploads"  # under MODELS_DIR/.downloads: checkpoints being uploaded
RESERVED_IDS = ("lpips-vgg16", "registry.json")  # in MODELS_DIR, but not model ids to take


class InstallRefused(Exception):
    """An install or load the server will not start; ``status`` is the HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class InstallCancelled(FetchError):
    """Raised inside the download's progress callback to stop it (the .part is kept)."""


class RegistryChoice(BaseModel):
    """A registry entry as the Models dialog offers it."""

    name: str
    kind: str  # generator, lpips, directions
    title: str
    license: str
    purpose: str  # one line: what it is for
    size: int  # bytes to download (approximate when ``size_exact`` is false)
    size_exact: bool
    installed: bool
    needs: list[str] = []  # models to install first (directions made for them)


class ModelsInfo(BaseModel):
    """``GET /api/models``."""

    installed: list[InstalledModel]
    registry: list[RegistryChoice]
    registry_error: str | None = None  # the registry file cannot be read: why
    install: InstallProgress | None = None  # the install under way, if any
    can_install: bool
    refusal: str | None = None  # why this server refuses installs (can_install false)
    max_checkpoint_bytes: int


def installs_refusal(settings: Settings) -> str | None:
    """Why this server refuses installs from its pages, or None when it allows them."""
    if not settings.allow_installs:
        return (
            "installing models from the page is turned off on this server "
            "(STYLELENS_ALLOW_INSTALLS=false); run `stylelens fetch NAME` on the server instead"
        )
    if settings.auth_token:
        return None
    hosts = [settings.host, *settings.allowed_hosts]
    if all(h in LOOPBACK_HOSTS for h in hosts):
        return None
    return (
        "this server can be reached beyond this machine without an access token, so its pages "
        "cannot install models: set STYLELENS_AUTH_TOKEN and open the page with ?token=..., "
        "or run `stylelens fetch NAME` on the server"
    )


def model_purpose(card: ModelCard) -> str:
    """One line on what a model is good for, from its card's training data and framing."""
    if card.framing.kind == "synthfaces" or training_source(card) == "synthfaces":
        return "SynthFaces drawings only: it cannot represent photographs"
    source = training_source(card)
    if source is not None:
        return f"faces like its training data ({source}), aligned like FFHQ"
    return "photographs of faces (FFHQ)"


def installed_model(model_dir: Path, served: bool) -> InstalledModel:
    """The dialog's entry of one model directory. Raises CheckpointError for a bad card."""
    from stylelens.directions.store import list_directions

    card = load_card(model_dir)
    try:
        directions = len(list_directions(model_dir))
    except Exception:  # a damaged index: the model is still listed
        directions = 0
    return InstalledModel(
        id=model_dir.name,
        name=card.name or card.id,
        resolution=card.generator.img_resolution,
        license=card.license,
        purpose=model_purpose(card),
        description=card.description,
        served=served,
        directions=directions,
    )


def installed_models(models_dir: Path, served: set[str]) -> list[InstalledModel]:
    """Every generator model in ``models_dir``; one whose card cannot be read is left out."""
    out = []
    for model_id in list_models(models_dir):
        try:
            out.append(installed_model(models_dir / model_id, model_id in served))
        except Exception as e:  # listed by the dialog, not loaded: skip, say so in the log
            log.warning("model %s is not listed: %s", model_id, e)
    return out


def entry_installed(entry: Entry, name: str, models_dir: Path) -> bool:
    from stylelens.directions.store import list_directions
    from stylelens.losses.lpips import LPIPS_DIR, LPIPS_FILE

    if entry.kind == "generator":
        return (models_dir / name / CARD_FILE).is_file()
    if entry.kind == "lpips":
        return (models_dir / LPIPS_DIR / LPIPS_FILE).is_file()
    names = {f.name for f in entry.files}
    for model_id in entry.applies_to:
        try:
            if names <= set(list_directions(models_dir / model_id)):
                return True
        except Exception:
            continue
    return False


def entry_purpose(entry: Entry) -> str:
    if entry.kind == "generator":
        return f"photographs of faces (FFHQ), {entry.resolution} px"
    if entry.kind == "lpips":
        return "a perceptual loss: sharper inversions of every model (not a face model)"
    sliders = ", ".join(str(f.name) for f in entry.files)
    return f"sliders ({sliders}) for {', '.join(entry.applies_to)}"


def registry_choices(registry: Registry, models_dir: Path) -> list[RegistryChoice]:
    installed = set(list_models(models_dir))
    return [
        RegistryChoice(
            name=name,
            kind=entry.kind,
            title=entry.title,
            license=entry.license,
            purpose=entry_purpose(entry),
            size=entry.total_size(),
            size_exact=all(f.size is not None for f in entry.files),
            installed=entry_installed(entry, name, models_dir),
            needs=[m for m in entry.applies_to if m not in installed],
        )
        for name, entry in registry.entries.items()
    ]


def _printable(text: str, limit: int = 100) -> str:
    """A client's string, safe to put in a reply (a lone surrogate cannot be encoded)."""
    return text.encode("utf-8", "replace").decode("utf-8")[:limit]


def safe_filename(name: str) -> str:
    """An uploaded file's name as a plain file name (its base name, odd characters as '_')."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", name.replace("\\", "/").rsplit("/", 1)[-1])
    return base.lstrip(".")[:100] or "checkpoint"


class _Run:
    """The install under way: what, where it got to, and its stop flag."""

    def __init__(self, name: str, source: InstallSource, sizes: dict[str, int]) -> None:
        self.name = name
        self.source = source
        self.stage: InstallStage = "upload" if source == "file" else "download"
        self.sizes = dict(sizes)  # file -> expected bytes (the server's figure once known)
        self.got = dict.fromkeys(sizes, 0)  # file -> bytes on disk
        self.message = ""
        self.cancel = threading.Event()
        self.last_emit = 0.0

    def progress(self) -> InstallProgress:
        total = sum(self.sizes.values()) or None
        done = sum(self.got.values())
        return InstallProgress(
            name=self.name,
            source=self.source,
            stage=self.stage,
            bytes=min(done, total) if total else done,
            total=total,
            message=self.message,
        )


class Installer:
    """One install at a time, in its own thread; events through ``broadcast`` (thread-safe)."""

    def __init__(
        self,
        settings: Settings,
        *,
        worker: Any,
        storage: Any,
        broadcast: Callable[[ServerEvent], None],
    ) -> None:
        self.settings = settings
        self.worker = worker
        self.storage = storage
        self.broadcast = broadcast
        self.models_dir = settings.models_dir
        self.cache_dir = settings.models_dir / ".downloads"
        self._lock = threading.Lock()
        self._run: _Run | None = None
        self._thread: threading.Thread | None = None
        self._loading: set[str] = set()
        # Uploads do not resume: one left by a server that stopped mid-upload is dropped.
        shutil.rmtree(self.cache_dir / UPLOADS, ignore_errors=True)

    # what the dialog shows ----------------------------------------------------------------------

    def served(self) -> set[str]:
        return set(self.worker.runtimes.by_id)

    def choices(self) -> list[ModelChoice]:
        return [
            ModelChoice(id=rt.model_id, name=rt.model_name, resolution=rt.resolution)
            for rt in self.worker.runtimes.by_id.values()
        ]

    def registry(self) -> Registry:
        return load_registry(registry_for(self.models_dir, self.settings.registry))

    def info(self) -> ModelsInfo:
        """The dialog's contents (reads the models directory: call it in a thread)."""
        refusal = installs_refusal(self.settings)
        try:
            choices, error = registry_choices(self.registry(), self.models_dir), None
        except FetchError as e:
            choices, error = [], str(e)
        return ModelsInfo(
            installed=installed_models(self.models_dir, self.served()),
            registry=choices,
            registry_error=error,
            install=self.state(),
            can_install=refusal is None,
            refusal=refusal,
            max_checkpoint_bytes=self.settings.max_checkpoint_bytes,
        )

    def state(self) -> InstallProgress | None:
        with self._lock:
            return self._run.progress() if self._run is not None else None

    # starting, stopping --------------------------------------------------------------------------

    def _check_allowed(self) -> None:
        refusal = installs_refusal(self.settings)
        if refusal is not None:
            raise InstallRefused(403, refusal)

    def _check_idle(self) -> None:
        with self._lock:
            self._check_idle_locked()

    def _check_idle_locked(self) -> None:
        if self._run is not None:
            raise InstallRefused(
                409,
                f"{self._run.name} is being installed; wait for it to finish (one install at "
                "a time), or cancel it",
            )

    def _reserve(self, run: _Run) -> None:
        with self._lock:
            self._check_idle_locked()
            self._run = run

    def _release(self, run: _Run) -> None:
        with self._lock:
            if self._run is run:
                self._run = None

    def start_fetch(self, name: str) -> InstallProgress:
        """Start installing registry entry ``name`` (blocking checks: call it in a thread).

        Raises:
            InstallRefused: 403 refused on this server, 404 no such entry, 409 installed
                already, its model missing (directions), or another install under way; 503
                the registry cannot be read.
        """
        self._check_allowed()
        self._check_idle()  # first: "wait for the other" says more than what follows
        try:
            registry = self.registry()
        except FetchError as e:
            raise InstallRefused(503, str(e)) from None
        entry = registry.entries.get(name)
        if entry is None:
            known = ", ".join(registry.entries)
            raise InstallRefused(
                404, f"nothing called {_printable(name)!r} in the registry; known: {known}"
            )
        if entry_installed(entry, name, self.models_dir):
            raise InstallRefused(409, f"{name} is already installed")
        if entry.kind == "directions":
            present = set(list_models(self.models_dir))
            if not present & set(entry.applies_to):
                raise InstallRefused(
                    409,
                    f"{name} is made for {', '.join(entry.applies_to)}; install that model first",
                )
        run = _Run(name, "registry", {f.file: f.size or f.approx_size or 0 for f in entry.files})
        run.got.update(self._on_disk(run))  # a resumed download's bar starts where it stopped
        self._reserve(run)
        self._start(run, lambda: self._fetch(run, registry))
        return run.progress()

    def reserve_upload(self, model_id: str, filename: str, total: int | None) -> Path:
        """Hold the install slot for an upload; returns the path to write it to.

        Raises:
            InstallRefused: as :meth:`check_upload`; 409 another install is under way, 503
                the models directory cannot be written.
        """
        self.check_upload(model_id)
        name = safe_filename(filename)
        run = _Run(model_id, "file", {name: total or 0})
        run.message = f"receiving {name}"
        self._reserve(run)
        folder = self.cache_dir / UPLOADS / secrets.token_hex(8)
        try:
            folder.mkdir(parents=True)
        except OSError as e:
            self._release(run)
            raise InstallRefused(503, f"cannot write to {self.models_dir}: {e.strerror}") from None
        self._emit(run, force=True)
        return folder / name

    def check_upload(self, model_id: str) -> None:
        """Raise InstallRefused (403 refused on this server, 422 a bad id, 409 the id is
        taken, or another install is under way) unless a checkpoint may be installed as
        ``model_id``."""
        self._check_allowed()
        self._check_idle()
        if not is_valid_model_id(model_id):
            raise InstallRefused(
                422,
                f"{_printable(model_id)!r} is not a valid model id: use lowercase letters, "
                "digits, '.', '_' and '-', starting with a letter or digit (at most 64)",
            )
        if model_id in RESERVED_IDS:
            raise InstallRefused(
                422, f"{model_id} is a name the models directory uses; choose another id"
            )
        if (self.models_dir / model_id).exists():
            raise InstallRefused(
                409, f"a model called {model_id} is already installed; choose another id"
            )

    def upload_progress(self, path: Path, received: int) -> None:
        run = self._run
        if run is None or run.source != "file":
            return
        run.got[path.name] = received
        self._emit(run)

    def abandon_upload(self, path: Path, message: str) -> None:
        """The upload failed before its install started: delete it, free the slot, say so."""
        shutil.rmtree(path.parent, ignore_errors=True)
        with self._lock:
            run = self._run if self._run is not None and self._run.source == "file" else None
        if run is not None:
            self._release(run)
            self.broadcast(InstallFailed(name=run.name, message=message))

    def start_upload(self, path: Path) -> InstallProgress:
        """Install the uploaded checkpoint at ``path`` (reserved by :meth:`reserve_upload`)."""
        with self._lock:
            run = self._run
        assert run is not None and run.source == "file"
        run.stage, run.message = "convert", f"converting {path.name}"
        self._start(run, lambda: self._convert(run, path))
        return run.progress()

    def _start(self, run: _Run, work: Callable[[], InstallDone | InstallFailed]) -> None:
        def main() -> None:
            try:
                event = work()
            except Exception as e:  # a bug of ours: the pages still hear the install ended
                log.exception("install of %s failed", run.name)
                event = self._failed(run, f"{run.name}: {type(e).__name__}: {e}")
            self._release(run)  # free before the last event: a page may start the next one
            self.broadcast(event)

        self._emit(run, force=True)
        self._thread = threading.Thread(target=main, name="stylelens-install", daemon=True)
        self._thread.start()

    def cancel(self) -> str:
        """Stop the download under way; returns its name.

        Raises:
            InstallRefused: 404 nothing is being installed; 409 it is past its download.
        """
        with self._lock:
            run = self._run
        if run is None:
            raise InstallRefused(404, "nothing is being installed")
        if run.source == "file":
            raise InstallRefused(
                409,
                f"{run.name} is an upload: the page that sends it stops it (closing it does); "
                "once converting, it finishes in a moment",
            )
        if run.stage != "download":
            raise InstallRefused(
                409, f"{run.name} is past its download ({run.stage}); it finishes in a moment"
            )
        run.cancel.set()
        return run.name

    def stop(self, timeout: float = 10.0) -> None:
        """Server shutdown: stop a download (its .part stays, to resume) and wait a little for
        the thread; a conversion under way is left to finish or die with the process."""
        with self._lock:
            run, thread = self._run, self._thread
        if run is not None:
            run.cancel.set()
        if thread is not None:
            thread.join(timeout)

    # the install thread ------------------------------------------------------------------------

    def _emit(self, run: _Run, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - run.last_emit < PROGRESS_INTERVAL_S:
            return
        run.last_emit = now
        self.broadcast(run.progress())

    def _options(self, run: _Run) -> Any:
        from stylelens.fetch import DownloadConfig, FetchOptions

        def on_bytes(file: str, have: int, total: int | None) -> None:
            if run.cancel.is_set():
                raise InstallCancelled(f"{run.name}: cancelled")
            if run.stage != "download":  # a second file of the entry
                run.stage = "download"
            run.got[file] = have
            if total is not None:
                run.sizes[file] = total
            self._emit(run, force=have == total)

        return FetchOptions(
            models_dir=self.models_dir,
            cache_dir=self.cache_dir,
            sefa_top=SEFA_TOP,
            device="cpu",  # SeFa is seconds on a CPU; the worker keeps the accelerator
            download=DownloadConfig(progress=False, on_progress=on_bytes),
        )

    def _log(self, run: _Run) -> Callable[[str], None]:
        def say(line: str) -> None:
            run.stage = "download" if line.startswith("downloading ") else "convert"
            run.message = line
            log.info("install %s: %s", run.name, line)
            self._emit(run, force=True)

        return say

    def _on_disk(self, run: _Run) -> dict[str, int]:
        """Bytes of the entry's files in the download cache, whole or partial, by file."""
        out = {}
        for file in run.sizes:
            for path in (self.cache_dir / f"{file}.part", self.cache_dir / file):
                if path.is_file():
                    out[file] = path.stat().st_size
        return out

    def _kept(self, run: _Run) -> int:
        """Bytes of the entry's files left in the download cache (a later install resumes)."""
        return sum(self._on_disk(run).values())

    def _failed(self, run: _Run, message: str, *, cancelled: bool = False) -> InstallFailed:
        kept = self._kept(run) if run.source == "registry" else 0
        if kept:
            message += f" The {kept / 1e6:.1f} MB downloaded so far are kept: install it again "
            message += "to resume."
        log.info("install %s failed: %s", run.name, message)
        return InstallFailed(name=run.name, message=message, cancelled=cancelled, kept_bytes=kept)

    def _fetch(self, run: _Run, registry: Registry) -> InstallDone | InstallFailed:
        from stylelens.fetch import fetch

        entry = registry.entries[run.name]
        try:
            target = fetch(registry, run.name, self._options(run), log=self._log(run))
        except InstallCancelled:
            return self._failed(run, f"{run.name}: cancelled.", cancelled=True)
        except FetchError as e:
            return self._failed(run, str(e))
        except OSError as e:
            return self._failed(run, f"{run.name}: cannot write to {self.models_dir}: {e}")
        if entry.kind == "generator":
            return self._serve_new(run, target)
        if entry.kind == "directions":
            return self._refresh_directions(run, entry)
        return InstallDone(
            name=run.name,
            models=self.choices(),
            message=f"{entry.title} is installed. Restart the server to use it: models are "
            "given their perceptual loss when the server starts.",
        )

    def _convert(self, run: _Run, path: Path) -> InstallDone | InstallFailed:
        from stylelens.fetch.install import install_checkpoint

        try:
            target = install_checkpoint(
                path, run.name, self._options(run), self._log(run), origin="upload"
            )
        except FetchError as e:
            return self._failed(run, str(e))
        except OSError as e:
            return self._failed(run, f"{run.name}: cannot write to {self.models_dir}: {e}")
        finally:
            shutil.rmtree(path.parent, ignore_errors=True)  # the user has the file
        return self._serve_new(run, target)

    def _serve_new(self, run: _Run, target: Path) -> InstallDone:
        """Load a freshly installed generator on the worker thread; say how it went."""
        model_id = target.name
        run.stage, run.message = "load", f"loading {model_id} into this server"
        self._emit(run, force=True)
        try:
            self.load(model_id).result(timeout=LOAD_TIMEOUT_S)
            loaded = True
            message = f"{model_id} is installed and ready: choose it in the model list."
        except Exception as e:
            log.warning("installed %s, but could not load it: %s", model_id, e)
            loaded = False
            message = (
                f"{model_id} is installed, but this server could not load it now ({e}). "
                f"Restart the server with --model {model_id} (or add it to "
                "STYLELENS_SERVE_MODELS)."
            )
        try:
            model = installed_model(target, loaded)
        except Exception:
            model = None
        return InstallDone(
            name=run.name, model=model, loaded=loaded, models=self.choices(), message=message
        )

    def _refresh_directions(self, run: _Run, entry: Entry) -> InstallDone:
        """Directions added to models this server runs: read them again (worker thread)."""
        runtimes = self.worker.runtimes
        served = [runtimes.by_id[m] for m in entry.applies_to if m in runtimes.by_id]

        def reload() -> None:
            for rt in served:
                rt.reload_directions()

        names = ", ".join(str(f.name) for f in entry.files)
        try:
            if served:
                self.worker.call(reload).result(timeout=LOAD_TIMEOUT_S)
            message = f"{names} added. Reload the page to see their sliders."
        except Exception as e:
            message = f"{names} added; restart the server to use them ({e})."
        return InstallDone(name=run.name, models=self.choices(), message=message)

    # loading an installed model ------------------------------------------------------------------

    def load(self, model_id: str) -> Future[None]:
        """Load an installed model into this server, on the worker thread (then it is served
        until the server stops). The future fails with StyleLensError for a model that cannot
        be loaded.

        Raises:
            InstallRefused: 409 it is served or being loaded already.
        """
        from stylelens.jobs.session_model import SessionModel

        with self._lock:
            if model_id in self.served() or model_id in self._loading:
                raise InstallRefused(409, f"{model_id} is served already")
            self._loading.add(model_id)
        runtimes, settings, storage = self.worker.runtimes, self.settings, self.storage

        def load() -> None:
            try:
                rt = SessionModel.load(settings, storage, model_id)
                rt.warm_up()
                runtimes.add(rt)
            finally:
                with self._lock:
                    self._loading.discard(model_id)

        future: Future[None] = self.worker.call(load)
        if future.done() and future.exception() is not None:  # the worker is stopping
            with self._lock:
                self._loading.discard(model_id)
        return future

    def check_loadable(self, model_id: str) -> None:
        """Raise InstallRefused unless ``model_id`` is an installed model this server may load."""
        self._check_allowed()
        if not is_valid_model_id(model_id) or model_id not in list_models(self.models_dir):
            raise InstallRefused(404, f"no model {_printable(model_id)!r} is installed")
