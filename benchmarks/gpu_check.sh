#!/usr/bin/env bash
# The GPU path in one command: on a CUDA machine with PyTorch already installed, use the
# project without replacing torch, run the tests marked `cuda` (tests/test_cuda.py), run the GPU
# benchmarks (benchmarks/gpu.py), and write every result and log into $OUT (at most 8 files:
# log.txt, env.txt, cuda-tests.xml, gpu.json, gpu.md). Finishes within 8 minutes (each step has
# its own time limit). Runs anywhere: without CUDA the tests skip and the benchmarks run a
# small CPU check instead of config-f 1024.
#
#   bash benchmarks/gpu_wheels.sh                     # here, once: wheels the GPU machine lacks
#   OUT=/tmp/gpu bash benchmarks/gpu_check.sh         # there (the device tool: carry .whl)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-out/gpu-check}
mkdir -p "$OUT" && OUT=$(cd "$OUT" && pwd)
exec > >(tee "$OUT/log.txt") 2>&1
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1
start=$(date +%s)
status=0

# 1. The project, torch untouched: carried wheels (no index, no dependencies resolved) into a
#    side directory, the package itself from the checkout.
if compgen -G ".whl/*.whl" >/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --upgrade --target /tmp/stylelens-site .whl/*.whl \
        || { echo "installing the carried wheels failed"; exit 2; }
    export PYTHONPATH="/tmp/stylelens-site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD/backend:$PWD:${PYTHONPATH:-}"
"$PY" - <<'PYEOF' | tee "$OUT/env.txt"
import platform, torch, stylelens, fastapi, pydantic
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
print("cuda available", torch.cuda.is_available())
if torch.cuda.is_available():
    print("device", torch.cuda.get_device_name(0), torch.cuda.get_device_properties(0).total_memory // 2**20, "MiB")
print("stylelens from", stylelens.__file__, "fastapi", fastapi.__version__, "pydantic", pydantic.__version__)
PYEOF
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "the project does not import"; exit 2; }
cuda=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))")

# 2. The tests marked cuda (skipped without CUDA).
timeout 180 "$PY" -m pytest -q -m cuda -p no:cacheprovider --junitxml="$OUT/cuda-tests.xml" \
    tests/test_cuda.py || status=1

# 3. The GPU benchmarks: config-f 1024 on CUDA; a small check on a CPU.
if [ "$cuda" = 1 ]; then
    args=(--size 1024 --steps 100 --sessions 8)
else
    args=(--device cpu --size 32 --steps 6 --sessions 2 --repeats 2)
fi
timeout 300 "$PY" benchmarks/gpu.py "${args[@]}" --out "$OUT" || status=1

echo "gpu_check: status $status in $(( $(date +%s) - start )) s; files in $OUT:"
ls -1 "$OUT"
exit $status
