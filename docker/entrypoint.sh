#!/usr/bin/env bash
# Start MINTIME on Triton (configs/<MINTIME_CONFIG_NAME>.pbtxt, default production).
#
# Before the server starts, `mintime export --trt --if-missing` makes sure that backbone/temporal have a
# TensorRT engine (model.plan) built on THIS GPU with THIS TensorRT: the first start builds them (minutes; mount
# a volume on /models to keep them), and a start on another GPU model or after a TensorRT upgrade rebuilds
# them (each plan carries a tag with the GPU name and TensorRT version; a plan loads only where it was built).
# An fp16 engine that fails its parity check against PyTorch is rebuilt from model.onnx (fp32), checked, and served
# (the export prints "the fp16 engine failed its parity check, rebuilt from model.onnx"); only a failed build or
# a failed fp32 check stops the container: Triton never starts with a wrong engine.
# A version counts only when its export completed and verified (the export.complete marker, written last) and
# was made from these weights; an export killed mid-way is removed and redone, never served. Before Triton
# starts, `mintime export --check` refuses an untrusted version or a backbone/temporal pair made from two
# different checkpoints, naming both.
#
# Environment:
#   MODEL_REPOSITORY      model repository (default /models; the image's copy is used when it is empty)
#   MINTIME_CONFIG_NAME   tritonserver --model-config-name (default production)
#   MINTIME_CHECKPOINT    project checkpoint (default: the shipped demo checkpoint)
#   MINTIME_EXPORT_ARGS   more `mintime export` options (e.g. the authors' weights)
#   MINTIME_SKIP_EXPORT=1 do not build engines (a repository prepared elsewhere)
#   MINTIME_MIN_SHM_MB    refuse to start with a smaller /dev/shm (default 512; see --shm-size)
#   MINTIME_CUDA_POOL_MB  Triton's CUDA memory pool per GPU (default 2048): the GPU tensors in flight between the
#                         models (NVDEC frames, ~100 MB per 1080p request at T=16; face slots ~10 MB) come from it;
#                         Triton's 64 MB default makes them fall back to CUDA IPC, with a warning per tensor.
#                         Size: requests in flight x (T x H x W x 3 + 10 MB); 2048 covers 16 1080p requests.
# Extra arguments go to tritonserver.
set -euo pipefail
# Large short-lived arrays (frames, crops) from mmap, heaps trimmed: no heap growth under a mixed load.
export MALLOC_MMAP_THRESHOLD_="${MALLOC_MMAP_THRESHOLD_:-1048576}" MALLOC_TRIM_THRESHOLD_="${MALLOC_TRIM_THRESHOLD_:-1048576}"

MODELS="${MODEL_REPOSITORY:-/models}"
CONFIG="${MINTIME_CONFIG_NAME:-production}"

# The Python backend exchanges tensors through /dev/shm: Docker's default 64 MB fails on the first 1080p video.
shm_mb="$(df -Pm /dev/shm 2>/dev/null | awk 'NR==2 {print $2}')"
if [ -n "${shm_mb}" ] && [ "${shm_mb}" -lt "${MINTIME_MIN_SHM_MB:-512}" ]; then
  echo "[mintime] ERROR: /dev/shm is ${shm_mb} MB; 16 frames of a 1080p video are ~100 MB per request." >&2
  echo "[mintime]        run with --shm-size=4g (Kubernetes: an emptyDir with medium: Memory on /dev/shm)," >&2
  echo "[mintime]        or set MINTIME_MIN_SHM_MB to accept it." >&2
  exit 2
fi

if [ ! -f "${MODELS}/mintime/config.pbtxt" ]; then
  echo "[mintime] ${MODELS} holds no model repository: copying the image's"
  mkdir -p "${MODELS}"
  cp -r /opt/mintime/model_repository/. "${MODELS}/"
fi

if [ "${MINTIME_SKIP_EXPORT:-0}" != "1" ]; then
  args=(--trt --if-missing --model-repository "${MODELS}")
  if [ -n "${MINTIME_CHECKPOINT:-}" ]; then
    args+=(--checkpoint "${MINTIME_CHECKPOINT}")
  fi
  # shellcheck disable=SC2206  # word splitting of the user's extra options is intended
  args+=(${MINTIME_EXPORT_ARGS:-})
  echo "[mintime] mintime export ${args[*]}"
  mintime export "${args[@]}"
fi
check=(--check --model-repository "${MODELS}")
if [ "${CONFIG}" = "production" ]; then
  check+=(--trt)
fi
mintime export "${check[@]}"

# One CUDA memory pool per visible GPU (GPU 0 when nvidia-smi is absent).
pool=()
gpus="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)"
for ((i = 0; i < ${gpus:-0} || i == 0; i++)); do
  pool+=("--cuda-memory-pool-byte-size=${i}:$(( ${MINTIME_CUDA_POOL_MB:-2048} * 1024 * 1024 ))")
done

exec tritonserver --model-repository="${MODELS}" --model-config-name="${CONFIG}" \
  --grpc-infer-allocation-pool-size=0 "${pool[@]}" "$@"  # refused large requests leave no memory behind
