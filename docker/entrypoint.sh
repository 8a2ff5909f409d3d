#!/usr/bin/env bash
# Start MINTIME on Triton (production configs). At first start (or after a new volume) it builds what the
# production variant needs and that cannot ship in the image because it depends on the GPU and the runtime:
#   * backbone/temporal TensorRT engines (model.plan) from the checkpoint: `mintime export --trt --if-missing`
#     (a version counts only when its export completed and verified - the export.complete marker, written last -
#     and was made from these weights; an export killed mid-way is removed and redone, never served)
#   * video_decode/1/model.dali (DALI pipeline, NVDEC) from dali_pipelines/video_decode.py: `--dali`
# Then it runs tritonserver with --model-config-name=production. Extra arguments go to tritonserver.
# Environment: MODEL_REPOSITORY (default /models), MINTIME_CHECKPOINT (project checkpoint; default: the
# shipped demo checkpoint), MINTIME_EXPORT_ARGS (more `mintime export` options, e.g. the authors' weights).
set -euo pipefail

MODELS="${MODEL_REPOSITORY:-/models}"
if [ ! -f "${MODELS}/mintime/config.pbtxt" ]; then
  echo "[mintime] ${MODELS} holds no model repository: copying the image's"
  mkdir -p "${MODELS}"
  cp -r /opt/mintime/model_repository/. "${MODELS}/"
fi

# TensorRT plans load only in the TensorRT that built them: refuse a mismatch loudly.
py_trt="$(python3 -c 'import tensorrt; print(tensorrt.__version__)')"
lib_trt="$(ls /usr/lib/x86_64-linux-gnu/libnvinfer.so.* 2>/dev/null | sed -n 's/.*libnvinfer\.so\.\([0-9.]*\)$/\1/p' | sort -V | tail -1 || true)"
if [ -n "${lib_trt}" ] && [ "${py_trt%.*}" != "${lib_trt%.*}" ] && [ "${py_trt}" != "${lib_trt}" ]; then
  echo "[mintime] WARNING: tensorrt Python ${py_trt} differs from the image's libnvinfer ${lib_trt}:" \
       "engines built here may not load (rebuild the image with --build-arg TENSORRT_VERSION=${lib_trt})" >&2
fi

args=(--trt --if-missing --model-repository "${MODELS}")
if [ -n "${MINTIME_CHECKPOINT:-}" ]; then
  args+=(--checkpoint "${MINTIME_CHECKPOINT}")
fi
if ! ls "${MODELS}"/video_decode/*/model.dali >/dev/null 2>&1; then
  args+=(--dali --dali-device mixed)
fi
# shellcheck disable=SC2206  # word splitting of the user's extra options is intended
args+=(${MINTIME_EXPORT_ARGS:-})
echo "[mintime] mintime export ${args[*]}"
mintime export "${args[@]}"
# Refuse to serve an untrusted version or a backbone/temporal pair from two checkpoints (names both).
mintime export --check --trt --model-repository "${MODELS}"

exec tritonserver --model-repository="${MODELS}" --model-config-name=production "$@"
