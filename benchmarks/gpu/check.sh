#!/usr/bin/env bash
# One-command GPU check of the deployment (benchmarks/gpu/check.py: CUDA tests, DALI decode rate, in-process
# pipeline fp32/fp16, the `gpu` variant under perf_analyzer at concurrency 1/4/16, GPU-vs-CPU agreement).
# Writes $OUT/gpu_check.json and $OUT/gpu_check.log.
#
# On a lent GPU machine (no network), from the repository root, after the parts that
# benchmarks/gpu/prepare.sh printed were carried to /tmp/bundle.tar and /tmp/extra.tar:
#   BUNDLE_SHA256=<sum> EXTRA_SHA256=<sum> benchmarks/gpu/check.sh
# Here, on the CPU (prints what would be carried and the step plan, then exercises the same steps, smaller; the
# JSON says dry_run):
#   benchmarks/gpu/check.sh --dry-run
# Extra arguments go to check.py (e.g. --steps decode pipeline, --budget-s 300). Results are written step by step
# (and during the long steps) to $OUT/gpu_check.json: a run cut off by the device's limits still returns them.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
ROOT=$PWD
OUT="${OUT:-$ROOT/outputs}"
TMP="${MINTIME_GPU_TMP:-/tmp}"  # where the carried parts were assembled
SITE="${MINTIME_GPU_SITE:-$TMP/site}"
mkdir -p "$OUT"

verify() {  # verify FILE EXPECTED_SHA256 (skipped when no sum is given)
  if [ -n "$2" ] && [ "$(sha256sum <"$1" | cut -d' ' -f1)" != "$2" ]; then
    echo "[gpu-check] $1: checksum mismatch (a part is missing or was carried twice)" >&2
    exit 3
  fi
}

# 1. wheels (DALI, nvidia-pytriton, tritonclient, numpy 1.26: ONE numpy for everything, since the pip tritonserver's
#    Python-backend stub needs numpy 1.x; closure.py checks that the rest imports with it) into $SITE
if [ -f "$TMP/bundle.tar" ] && [ ! -f "$SITE/.installed" ]; then
  verify "$TMP/bundle.tar" "${BUNDLE_SHA256:-}"
  (cd "$TMP" && tar xf bundle.tar) || exit 3
  python3 -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$TMP"/w/*.whl || exit 3
  touch "$SITE/.installed"
fi
if [ -d "$SITE" ]; then
  export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
fi

# 2. data and tools that are not wheels: the shared clips, dlib's two face models, the perf_analyzer binary
VIDEOS="${MINTIME_VIDEOS:-$ROOT/../shared/data/videos}"
if [ -f "$TMP/extra.tar" ]; then
  if [ ! -d "$TMP/x" ]; then
    verify "$TMP/extra.tar" "${EXTRA_SHA256:-}"
    (cd "$TMP" && tar xf extra.tar) || exit 3
  fi
  VIDEOS="$TMP/x/videos"
  if [ -d "$TMP/x/face_recognition_models" ] && [ -d "$SITE" ]; then
    cp -r "$TMP/x/face_recognition_models" "$SITE/"
  fi
  if [ -f "$TMP/x/perf_analyzer/perf_analyzer" ]; then
    mkdir -p .tools/perf_analyzer/bin
    cp "$TMP/x/perf_analyzer/perf_analyzer" .tools/perf_analyzer/bin/
    chmod +x .tools/perf_analyzer/bin/perf_analyzer
  fi
fi
if [ -x .tools/perf_analyzer/bin/perf_analyzer ]; then  # its libraries come from nvidia-pytriton's wheel
  python3 -c "from benchmarks.perf.get_perf_analyzer import link_libraries, pytriton_libs_dir as d; \
from pathlib import Path; link_libraries(d(), Path('.tools/perf_analyzer/lib'))" \
    || echo "[gpu-check] could not link perf_analyzer's libraries: the perf step will fail" >&2
fi
python3 -m mintime.serving.install_stub >/dev/null 2>&1 \
  || echo "[gpu-check] no Python-backend stub installed (nvidia-pytriton missing?): the perf step will fail" >&2

# 3. the check
export PYTHONUNBUFFERED=1
case " $* " in
  *" --dry-run "*)  # what a GPU session would carry, in how many calls, and the time plan
    python3 benchmarks/gpu/carry.py | tee "$OUT/gpu_carry.txt"
    python3 benchmarks/gpu/check.py --plan --out "$OUT/gpu_check.json" | tee -a "$OUT/gpu_carry.txt" ;;
esac
python3 benchmarks/gpu/check.py --out "$OUT/gpu_check.json" --videos "$VIDEOS" "$@" 2>&1 | tee "$OUT/gpu_check.log"
exit "${PIPESTATUS[0]}"
