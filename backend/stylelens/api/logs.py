"""Logging for ``stylelens serve``: uvicorn's configuration with secrets redacted.

A session id is the only key to a session's files and the access token opens the whole
server, yet both travel in URLs (``/api/sessions/<sid>/...``, ``?session=``, ``?token=``),
which uvicorn writes into every access and websocket log line. :class:`RedactSecrets` sits on
every handler, so no line reaches a terminal, a file or a log collector with them.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

KEEP = 6  # leading characters of a session id kept, enough to tell sessions apart in a log

_TOKEN = re.compile(r"([?&]token=)[^&\s\"']*")
_SESSION_QUERY = re.compile(r"([?&]session=)([^&\s\"']*)")
_SESSION_PATH = re.compile(r"(sessions/)([A-Za-z0-9_-]{16,64})")  # URLs and data_dir paths


def _short(m: re.Match[str]) -> str:
    sid = m.group(2)
    return m.group(1) + (sid[:KEEP] + "…" if len(sid) > KEEP else sid)


def redact(text: str) -> str:
    """``text`` with access tokens removed and session ids shortened to their first 6
    characters (``?token=***``, ``/api/sessions/AbC123…/files/...``, ``data/sessions/AbC123…``)."""
    text = _TOKEN.sub(r"\1***", text)
    text = _SESSION_QUERY.sub(_short, text)
    return _SESSION_PATH.sub(_short, text)


class RedactSecrets(logging.Filter):
    """Redacts the message and its string arguments in place (the arguments stay a tuple:
    uvicorn's access formatter unpacks them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {
                k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()
            }
        if record.exc_info and not record.exc_text:  # a traceback may name a session's files
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's default logging configuration with :class:`RedactSecrets` on every handler,
    and StyleLens's own loggers (``stylelens.*``) going to the same place."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact": {"()": f"{__name__}.RedactSecrets"}}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact"]
    config["loggers"]["stylelens"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config
