"""Where a session's files are served: the one place the URL pattern is written (the route
that serves them is ``GET /api/sessions/{sid}/files/{iid}`` in ``api/routes.py``)."""

from __future__ import annotations

FILES_ROUTE = "/api/sessions/{sid}/files/{iid}"


def file_url(session: str, item: str) -> str:
    """The URL of item ``item`` of session ``session``."""
    return FILES_ROUTE.format(sid=session, iid=item)
