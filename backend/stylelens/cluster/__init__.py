"""Cluster mode (``stylelens serve --cluster``): the same web app as a Ray Serve application.

``serve.py`` builds it: the FastAPI app as the ingress deployment and the models as a
deployment of replicas (``replica.py``); ``backend.py`` is the app's backend over them (the
``sessions.backend.Backend`` protocol, like the in-process worker). Nothing else in the package
imports this one, and this one is the only place that imports Ray (the ``cluster`` extra).
See docs/cluster.md.
"""
