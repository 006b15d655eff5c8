"""Resumable, verified HTTP downloads (standard library only).

A download writes ``<file>.part`` and renames it to ``<file>`` only once its size (and SHA-256
where the registry has one) is right. An interrupted download -- a dropped connection in this
run or a ``.part`` left by an earlier run -- continues with an HTTP ``Range`` request; a server
that ignores ``Range`` makes it start over. The expected size is checked against the server's
``Content-Length`` before anything is written, so a wrong URL or an HTML error page fails fast.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from stylelens import __version__
from stylelens.fetch.registry import FetchError, RemoteFile

CHUNK = 1 << 20
USER_AGENT = f"stylelens/{__version__} (+fetch)"


@dataclass(frozen=True)
class DownloadConfig:
    retries: int = 5  # resumed attempts after a dropped connection or a 5xx answer
    backoff_s: float = 1.0  # wait before retry k: backoff_s * 2**k
    timeout_s: float = 60.0  # per socket operation
    progress: bool = True
    # Called with (file, bytes on disk, the file's full size or None) as blocks arrive: the
    # web app's progress bar. It may raise to stop the download; the .part stays, to resume.
    on_progress: Callable[[str, int, int | None], None] | None = None


class _Retry(Exception):
    """A transient failure: resume from what is on disk."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def verify(remote: RemoteFile, path: Path) -> None:
    """Raise FetchError unless ``path`` has the size (and hash) the registry expects."""
    size = path.stat().st_size
    lo, hi = remote.size_range()
    if not lo <= size <= hi:
        want = f"{lo} bytes" if lo == hi else f"{lo}-{hi} bytes"
        raise FetchError(
            f"{remote.file}: got {size} bytes, expected {want}; the file at {remote.url} is "
            "not the one the registry describes (moved, replaced or an error page)"
        )
    if remote.sha256 is not None and (digest := sha256_of(path)) != remote.sha256:
        raise FetchError(
            f"{remote.file}: SHA-256 {digest} does not match the registry's {remote.sha256}"
        )


def download(remote: RemoteFile, dest: Path, config: DownloadConfig | None = None) -> Path:
    """Download ``remote`` to ``dest`` (resuming ``dest.part``), verified. Returns ``dest``.

    An existing, valid ``dest`` is reused. Raises FetchError with the reason: unreachable host
    after all retries, an HTTP error, a size or hash that does not match the registry.
    """
    config = config or DownloadConfig()
    if dest.is_file():
        try:
            verify(remote, dest)
            return dest
        except FetchError:
            dest.unlink()
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    for attempt in range(config.retries + 1):
        try:
            _fetch_into(remote, part, config)
            break
        except _Retry as exc:
            if attempt == config.retries:
                raise FetchError(
                    f"{remote.file}: download failed after {attempt + 1} attempts ({exc}); "
                    "run the command again to resume from what was downloaded"
                ) from None
            time.sleep(config.backoff_s * 2**attempt)
    try:
        verify(remote, part)
    except FetchError:
        part.unlink()
        raise
    os.replace(part, dest)
    return dest


def _fetch_into(remote: RemoteFile, part: Path, config: DownloadConfig) -> None:
    """One HTTP request appending to ``part``; raises _Retry for transient failures."""
    lo, hi = remote.size_range()
    have = part.stat().st_size if part.exists() else 0
    if have > hi:
        part.unlink()
        have = 0
    headers = {"User-Agent": USER_AGENT}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(remote.url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=config.timeout_s)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have and lo <= have <= hi:
            return  # the .part is already complete
        if exc.code == 416:
            part.unlink(missing_ok=True)
            raise _Retry("the server refused to resume; starting over") from None
        if exc.code >= 500 or exc.code == 429:
            raise _Retry(f"HTTP {exc.code} {exc.reason}") from None
        raise FetchError(f"{remote.url}: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise _Retry(f"cannot reach {remote.url}: {reason}") from None
    with response:
        if response.status == 206:
            start = _range_start(response.headers.get("Content-Range"))
            if start != have:
                part.unlink(missing_ok=True)
                raise _Retry(f"the server resumed at byte {start}, not {have}; starting over")
        else:
            have = 0  # a plain 200: the server ignored Range, so the body is the whole file
        length = response.headers.get("Content-Length")
        if length is not None and length.isdigit():
            total = have + int(length)
            if not lo <= total <= hi:
                part.unlink(missing_ok=True)
                want = f"{lo} bytes" if lo == hi else f"{lo}-{hi} bytes"
                raise FetchError(
                    f"{remote.file}: the server offers {total} bytes, expected {want}; "
                    f"{remote.url} is not the file the registry describes"
                )
        else:
            total = None
        _stream(response, part, have, total, hi, remote, config)


def _stream(
    response: http.client.HTTPResponse,
    part: Path,
    have: int,
    total: int | None,
    limit: int,
    remote: RemoteFile,
    config: DownloadConfig,
) -> None:
    bar = tqdm(
        total=total,
        initial=have,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        desc=remote.file,
        disable=not config.progress,
        leave=False,
    )
    report = config.on_progress
    with part.open("ab" if have else "wb") as out, bar:
        if report is not None:
            report(remote.file, have, total)
        while True:
            try:
                block = response.read(CHUNK)
            except (http.client.IncompleteRead, OSError) as exc:
                raise _Retry(f"connection lost at {out.tell()} bytes: {exc!r}") from None
            if not block:
                break
            out.write(block)
            bar.update(len(block))
            if out.tell() > limit:
                out.close()
                part.unlink()
                raise FetchError(
                    f"{remote.file}: the server sent more than the expected {limit} bytes; "
                    f"{remote.url} is not the file the registry describes"
                )
            if report is not None:
                report(remote.file, out.tell(), total)
    size = part.stat().st_size
    if total is not None and size < total:
        raise _Retry(f"connection closed at {size} of {total} bytes")
    # Without a Content-Length a clean end of stream is the end of the file: verify() judges it.


def _range_start(content_range: str | None) -> int:
    # "bytes 100-199/200"
    try:
        assert content_range is not None
        return int(content_range.split()[1].split("-")[0])
    except (AssertionError, IndexError, ValueError):
        return -1
