"""The session layer: what the web app (``api/``) and the model worker (``jobs/``) share.

The wire protocol's value types (``protocol.py``: client messages, server events, image frames),
the sessions' files and state on disk (``storage.py``) and the URLs those files are served at
(``urls.py``). It imports neither ``api/`` nor ``jobs/``: both import it, and ``jobs/`` never
imports ``api/``.
"""
