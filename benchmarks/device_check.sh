#!/usr/bin/env bash
# The lent GPU machine's run (benchmarks/device_check.py says what it measures). On the development machine first:
#   make device-pack     # .devpack/: the wheels the GPU image lacks and Fashion-MNIST, carried with the tree
# then with the device tool: carry [".devpack"], command "bash benchmarks/device_check.sh", timeout_s 570.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ -d .devpack/wheels ] && [ -z "${DEVICE_CHECK_NO_INSTALL:-}" ]; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .devpack/wheels/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
[ -d .devpack/fashion-mnist ] && export S2SNETS_DATA="$PWD/.devpack/fashion-mnist"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
exec "$PYTHON" benchmarks/device_check.py
