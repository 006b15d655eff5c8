"""Sessions and their files: ``<data_dir>/sessions/<session id>/<item id>.<ext>`` indexed by
one SQLite database (``<data_dir>/index.sqlite3``).

Several processes may share one data directory (cluster mode: the app and every model replica
open it; see docs/cluster.md): every change is one SQLite transaction, SQLite's file locks keep
them apart, and a writer waits up to ``BUSY_TIMEOUT_S`` for another process's.

Session and item ids are ``secrets.token_urlsafe`` values: nothing is listed and nothing is
guessable; every lookup names both the session and the item, so a session only ever reaches
its own files. Paths are built from ids the server made, never from client file names.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BUSY_TIMEOUT_S = 30.0
SIGNALS = ("accept", "abandon")  # what the app asks of an inversion running in another process
_JOB = re.compile(r"^[0-9a-f]{16}$")
ITEM_KINDS = ("upload", "crop", "latent", "result", "mask")
_ID = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    created REAL NOT NULL,
    last_seen REAL NOT NULL,
    upload TEXT,
    latent TEXT,
    model TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY,
    session TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    file TEXT NOT NULL,
    mime TEXT NOT NULL,
    created REAL NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS items_session ON items(session, kind);
CREATE TABLE IF NOT EXISTS inversions (
    session TEXT PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE,
    job TEXT NOT NULL,
    engine TEXT NOT NULL,
    step INTEGER NOT NULL,
    total INTEGER NOT NULL,
    upload TEXT NOT NULL,
    latent TEXT NOT NULL,
    status TEXT NOT NULL,
    updated REAL NOT NULL
);
"""
# An inversion's checkpoint (one per session): its latest latent, saved every few seconds while
# it runs ('running'), kept when it stops without finishing: the server died or restarted
# ('restart'), or its page went away and did not come back in time ('disconnected').
CHECKPOINT_STATUSES = ("running", "restart", "disconnected")


@dataclass(frozen=True)
class Checkpoint:
    session: str
    job: str
    engine: str
    step: int
    total: int
    upload: str
    latent: str  # the latent item holding its latest ws (and noise)
    status: str  # one of CHECKPOINT_STATUSES
    updated: float


@dataclass(frozen=True)
class Item:
    id: str
    session: str
    kind: str
    path: Path
    mime: str
    created: float
    meta: dict[str, Any]


class Storage:
    """Thread-safe: the event loop, upload threads and the worker all use one instance."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir
        (self.root / "sessions").mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.root / "index.sqlite3", check_same_thread=False, timeout=BUSY_TIMEOUT_S
        )
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.executescript(_SCHEMA)
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(sessions)")}
        if "model" not in columns:  # an index written before sessions had a model
            self._db.execute("ALTER TABLE sessions ADD COLUMN model TEXT NOT NULL DEFAULT ''")
        self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # sessions ------------------------------------------------------------------------------

    def new_session(self, model: str = "") -> str:
        """A new session working with ``model`` (a session's latents belong to one model)."""
        sid = secrets.token_urlsafe(24)
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO sessions (id, created, last_seen, model) VALUES (?, ?, ?, ?)",
                (sid, now, now, model),
            )
            self._db.commit()
        self._session_dir(sid).mkdir(parents=True, exist_ok=True)
        return sid

    def has_session(self, sid: str) -> bool:
        if not _ID.match(sid):
            return False
        with self._lock:
            row = self._db.execute("SELECT 1 FROM sessions WHERE id = ?", (sid,)).fetchone()
        return row is not None

    def touch(self, sid: str) -> None:
        with self._lock:
            self._db.execute("UPDATE sessions SET last_seen = ? WHERE id = ?", (time.time(), sid))
            self._db.commit()

    def session_state(self, sid: str) -> tuple[str | None, str | None]:
        """(latest upload id, current latent id) of a session."""
        with self._lock:
            row = self._db.execute(
                "SELECT upload, latent FROM sessions WHERE id = ?", (sid,)
            ).fetchone()
        return (row[0], row[1]) if row else (None, None)

    def session_model(self, sid: str) -> str:
        with self._lock:
            row = self._db.execute("SELECT model FROM sessions WHERE id = ?", (sid,)).fetchone()
        return str(row[0]) if row else ""

    def set_current(
        self, sid: str, *, upload: str | None = None, latent: str | None = None
    ) -> None:
        with self._lock:
            if upload is not None:
                self._db.execute("UPDATE sessions SET upload = ? WHERE id = ?", (upload, sid))
            if latent is not None:
                self._db.execute("UPDATE sessions SET latent = ? WHERE id = ?", (latent, sid))
            self._db.commit()

    def expire(self, max_age_s: float) -> list[str]:
        """Delete sessions not seen for ``max_age_s`` seconds, with their files. Returns ids."""
        cutoff = time.time() - max_age_s
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM sessions WHERE last_seen < ?", (cutoff,)
            ).fetchall()
            ids = [r[0] for r in rows]
            for sid in ids:
                self._db.execute("DELETE FROM inversions WHERE session = ?", (sid,))
                self._db.execute("DELETE FROM items WHERE session = ?", (sid,))
                self._db.execute("DELETE FROM sessions WHERE id = ?", (sid,))
            self._db.commit()
        for sid in ids:
            shutil.rmtree(self._session_dir(sid), ignore_errors=True)
        return ids

    # inversion checkpoints -------------------------------------------------------------------

    def save_checkpoint(self, c: Checkpoint) -> None:
        """Record (or update) the session's inversion checkpoint; its latent item must exist."""
        if c.status not in CHECKPOINT_STATUSES:
            raise ValueError(f"unknown checkpoint status {c.status!r}")
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO inversions"
                " (session, job, engine, step, total, upload, latent, status, updated)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    c.session,
                    c.job,
                    c.engine,
                    c.step,
                    c.total,
                    c.upload,
                    c.latent,
                    c.status,
                    time.time(),
                ),
            )
            self._db.commit()

    def checkpoint(self, sid: str) -> Checkpoint | None:
        with self._lock:
            row = self._db.execute(
                "SELECT session, job, engine, step, total, upload, latent, status, updated"
                " FROM inversions WHERE session = ?",
                (sid,),
            ).fetchone()
        return Checkpoint(*row) if row else None

    def drop_checkpoint(self, sid: str, job: str | None = None, *, keep_latent: bool) -> None:
        """Forget the session's checkpoint (only if it is ``job``'s, when given); its latent
        item is deleted too unless ``keep_latent``."""
        c = self.checkpoint(sid)
        if c is None or (job is not None and c.job != job):
            return
        with self._lock:
            self._db.execute("DELETE FROM inversions WHERE session = ? AND job = ?", (sid, c.job))
            self._db.commit()
        if not keep_latent:
            self.remove(sid, c.latent)

    def interrupt_running(self) -> int:
        """At start-up: every checkpoint still 'running' belongs to a server that died.
        Returns how many."""
        with self._lock:
            n = self._db.execute(
                "UPDATE inversions SET status = 'restart' WHERE status = 'running'"
            ).rowcount
            self._db.commit()
        return int(n)

    def interrupt_job(self, sid: str, job: str) -> bool:
        """The process running ``job`` died: its checkpoint (if still 'running') is kept as
        'restart', offered to the session like one of a server that died. True if one was."""
        with self._lock:
            n = self._db.execute(
                "UPDATE inversions SET status = 'restart'"
                " WHERE session = ? AND job = ? AND status = 'running'",
                (sid, job),
            ).rowcount
            self._db.commit()
        return bool(n)

    # signals: the app's word to an inversion that runs in another process (cluster mode) -----

    def signal(self, sid: str, job: str, name: str) -> None:
        """Ask ``job`` of session ``sid`` to ``accept`` (finish with what it has reached) or
        ``abandon`` (stop, keep its checkpoint as 'disconnected'); read by :meth:`signals`."""
        self._signal_path(sid, job, name).touch()

    def signals(self, sid: str, job: str) -> set[str]:
        """The signals sent to ``job`` so far (one stat per signal: cheap enough per step)."""
        return {n for n in SIGNALS if self._signal_path(sid, job, n).exists()}

    def clear_signals(self, sid: str, job: str) -> None:
        for n in SIGNALS:
            self._signal_path(sid, job, n).unlink(missing_ok=True)

    def _signal_path(self, sid: str, job: str, name: str) -> Path:
        if name not in SIGNALS or not _JOB.match(job):
            raise ValueError(f"bad signal {name!r} for job {job!r}")
        return self._session_dir(sid) / f".{job}.{name}"

    # items ---------------------------------------------------------------------------------

    def remove(self, sid: str, iid: str) -> None:
        """Delete an item of the session and its file (nothing if there is none)."""
        item = self.get(sid, iid)
        if item is None:
            return
        with self._lock:
            self._db.execute("DELETE FROM items WHERE id = ? AND session = ?", (iid, sid))
            self._db.commit()
        item.path.unlink(missing_ok=True)

    def new_item_path(self, sid: str, ext: str) -> tuple[str, Path]:
        """A fresh item id and the path its file must be written to (then call :meth:`add`)."""
        iid = secrets.token_urlsafe(16)
        return iid, self._session_dir(sid) / f"{iid}.{ext}"

    def add(
        self,
        sid: str,
        iid: str,
        path: Path,
        *,
        kind: str,
        mime: str,
        meta: dict[str, Any] | None = None,
    ) -> Item:
        if kind not in ITEM_KINDS:
            raise ValueError(f"unknown item kind {kind!r}")
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO items (id, session, kind, file, mime, created, meta)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (iid, sid, kind, path.name, mime, now, json.dumps(meta or {})),
            )
            self._db.commit()
        return Item(iid, sid, kind, path, mime, now, meta or {})

    def get(self, sid: str, iid: str, kind: str | None = None) -> Item | None:
        """The item ``iid`` if it belongs to session ``sid`` (and is of ``kind``), else None."""
        if not (_ID.match(sid) and _ID.match(iid)):
            return None
        with self._lock:
            row = self._db.execute(
                "SELECT id, session, kind, file, mime, created, meta FROM items"
                " WHERE id = ? AND session = ?",
                (iid, sid),
            ).fetchone()
        if row is None or (kind is not None and row[2] != kind):
            return None
        path = self._session_dir(sid) / row[3]
        return Item(row[0], row[1], row[2], path, row[4], row[5], json.loads(row[6]))

    def items(self, sid: str, kind: str) -> list[Item]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id FROM items WHERE session = ? AND kind = ? ORDER BY created",
                (sid, kind),
            ).fetchall()
        return [it for (iid,) in rows if (it := self.get(sid, iid)) is not None]

    def _session_dir(self, sid: str) -> Path:
        if not _ID.match(sid):
            raise ValueError("malformed session id")
        return self.root / "sessions" / sid
