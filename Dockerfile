# StyleLens: one Dockerfile, two targets.
#   docker build --target cpu -t stylelens:cpu .     (PyTorch CPU wheels, ~1 GB image)
#   docker build --target gpu -t stylelens:gpu .     (PyPI's CUDA PyTorch; needs the NVIDIA
#                                                      Container Toolkit on the host to run)
# BASE_IMAGE must be Debian-based; it may lack Python (python3 is then installed with apt),
# which is how the image is built on machines that reach Debian mirrors but no registry.
# Offline/mirror builds: --build-arg TORCH_INDEX_URL=<index> (empty: pip's own configuration).
# See docs/docker.md.
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# libgl1 and libglib2.0-0: OpenCV, which MediaPipe's face alignment imports, needs them.
# Unpinned apt packages (DL3008): pins break on Debian point releases. $packages splits on purpose.
# hadolint ignore=DL3008,SC2086
RUN packages="libgl1 libglib2.0-0"; \
    command -v python3 >/dev/null || packages="$packages python3 python3-venv ca-certificates"; \
    apt-get update \
    && apt-get install -y --no-install-recommends $packages \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app

# ---- dependencies: torch first (CPU or CUDA build), then the package's own -----------------
# (DL3013 is ignored below: torch is pinned through TORCH_SPEC, the package by its pyproject.)
FROM base AS deps-cpu
ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# hadolint ignore=DL3013
RUN pip install ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL" --extra-index-url https://pypi.org/simple} "$TORCH_SPEC"

FROM base AS deps-gpu
ARG TORCH_SPEC="torch==2.13.0"
# hadolint ignore=DL3013
RUN pip install "$TORCH_SPEC"

# ---- the app: package, frontend and the embedded models -------------------------------------
FROM deps-cpu AS cpu
# EXTRAS: "align,cluster" for the compose cluster profile's nodes (Ray Serve, docs/cluster.md).
ARG EXTRAS=align
COPY pyproject.toml README.md ./
COPY backend ./backend
COPY frontend ./frontend
COPY models ./models
# hadolint ignore=DL3013
RUN pip install ".[${EXTRAS}]" \
    && useradd --uid 10001 --create-home --shell /usr/sbin/nologin stylelens \
    && mkdir -p /data \
    && chown -R stylelens:stylelens /data /app/models
ENV STYLELENS_HOST=0.0.0.0 \
    STYLELENS_IN_CONTAINER=true \
    STYLELENS_PORT=8000 \
    STYLELENS_MODELS_DIR=/app/models \
    STYLELENS_DATA_DIR=/data \
    STYLELENS_FRONTEND_DIR=/app/frontend \
    STYLELENS_DEVICE=cpu
USER 10001:10001
EXPOSE 8000
VOLUME ["/app/models", "/data"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["stylelens", "serve"]

FROM deps-gpu AS gpu
ARG EXTRAS=align
COPY pyproject.toml README.md ./
COPY backend ./backend
COPY frontend ./frontend
COPY models ./models
# hadolint ignore=DL3013
RUN pip install ".[${EXTRAS}]" \
    && useradd --uid 10001 --create-home --shell /usr/sbin/nologin stylelens \
    && mkdir -p /data \
    && chown -R stylelens:stylelens /data /app/models
ENV STYLELENS_HOST=0.0.0.0 \
    STYLELENS_IN_CONTAINER=true \
    STYLELENS_PORT=8000 \
    STYLELENS_MODELS_DIR=/app/models \
    STYLELENS_DATA_DIR=/data \
    STYLELENS_FRONTEND_DIR=/app/frontend \
    STYLELENS_DEVICE=auto
USER 10001:10001
EXPOSE 8000
VOLUME ["/app/models", "/data"]
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["stylelens", "serve"]
