"""The web app: ``stylelens.api.app.create_app``, websocket protocol v1, sessions and storage.

Nothing is imported here, so that the ``stylelens`` command starts without loading FastAPI.
"""
