#!/usr/bin/env bash
# One-command setup: a virtual environment in .venv with everything the project, its tests and the local
# Triton server need (CPU build of torch; the DALI wheel brings NVIDIA's CUDA 13 image libraries, ~590 MB,
# which need no GPU).
#   ./setup.sh            # full install (core, training, export, DALI, client, local server, tests)
#   EXTRAS=client ./setup.sh   # client-only install
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
EXTRAS=${EXTRAS:-all}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# torch is pinned in the same resolve so that no package can pull a CUDA build.
if [ "$EXTRAS" = "client" ]; then
  "$VENV/bin/python" -m pip install -e ".[client,test]"
else
  "$VENV/bin/python" -m pip install "torch==2.13.0" -e ".[$EXTRAS]"
  # MTCNN weights ship inside the facenet-pytorch wheel; it pins an old torch, so no deps.
  "$VENV/bin/python" -m pip install --no-deps "facenet-pytorch==2.6.0"
  # The tritonserver bundled in nvidia-pytriton finds its Python stub next to the backend.
  if "$VENV/bin/python" -c "import pytriton" 2>/dev/null; then
    "$VENV/bin/python" -m mintime.serving.install_stub
  fi
  # perf_analyzer 2.51.0 (benchmarks/perf): the binary from the tritonclient wheel, into .tools/ (git-ignored).
  "$VENV/bin/python" benchmarks/perf/get_perf_analyzer.py || echo "warning: perf_analyzer not installed" >&2
fi
echo "setup done: activate with  . $VENV/bin/activate"
