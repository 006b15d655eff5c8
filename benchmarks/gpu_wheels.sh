#!/usr/bin/env bash
# The wheels benchmarks/gpu_check.sh needs on a GPU machine that has PyTorch but reaches no
# package index (the lent H200: Python 3.12, torch with CUDA, no FastAPI/pydantic): downloaded
# here into .whl/ (git-ignored), for Python 3.12 on x86-64 Linux, without their dependencies
# (the list below is complete for what that image lacks). torch is never among them.
#   bash benchmarks/gpu_wheels.sh          # then carry .whl with the checkout
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VERSION=${WHEEL_PYTHON:-3.12}
mkdir -p .whl
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
# Versions: what the project's own environment has (pip freeze), so both run the same code.
freeze=$($PY -m pip freeze 2>/dev/null || true)
pinned() { echo "$freeze" | grep -i "^$1==" || echo "$1"; }
for name in fastapi starlette pydantic pydantic_core pydantic-settings python-dotenv \
    annotated-types typing-inspection uvicorn python-multipart websockets h11; do
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$VERSION" \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform any -d .whl "$(pinned "$name")"
done
ls -1 .whl
