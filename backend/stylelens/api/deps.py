"""The routes' dependencies: the app's settings, storage, served models and installer, the
access-token check, and a session id that must exist."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import (
    Depends,
    HTTPException,
    Request,
)

from stylelens.api.installs import Installer
from stylelens.sessions.backend import ServedModels
from stylelens.sessions.storage import Storage
from stylelens.settings import Settings


def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_storage(request: Request) -> Storage:
    storage: Storage = request.app.state.storage
    return storage


def get_runtimes(request: Request) -> ServedModels:
    runtimes: ServedModels = request.app.state.runtimes
    return runtimes


def get_installer(request: Request) -> Installer:
    installer: Installer = request.app.state.installer
    return installer


def token_ok(settings: Settings, header: str | None, query: str | None) -> bool:
    if not settings.auth_token:
        return True
    given = query or ""
    if header and header.lower().startswith("bearer "):
        given = header[7:]
    return hmac.compare_digest(given.encode(), settings.auth_token.encode())


def require_token(request: Request) -> None:
    settings = get_settings(request)
    if not token_ok(
        settings, request.headers.get("authorization"), request.query_params.get("token")
    ):
        raise HTTPException(401, "this server needs its access token (?token=... or Bearer)")


SettingsDep = Annotated[Settings, Depends(get_settings)]


StorageDep = Annotated[Storage, Depends(get_storage)]


RuntimesDep = Annotated[ServedModels, Depends(get_runtimes)]


InstallerDep = Annotated[Installer, Depends(get_installer)]


def existing_session(storage: Storage, sid: str) -> str:
    if not storage.has_session(sid):
        raise HTTPException(404, "no such session; start a new one")
    return sid
