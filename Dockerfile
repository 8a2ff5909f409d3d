# syntax=docker/dockerfile:1
# MINTIME as an NVIDIA Triton service, production variant: TensorRT engines (backbone, temporal), DALI/NVDEC
# decode, the face pipeline as a Python model on the GPU (configs/production.pbtxt of every model).
#
#   docker build -t mintime-triton .                      # server (last stage)
#   docker build -t mintime-sdk --target sdk .            # client + perf_analyzer
#   docker run --gpus=1 -p8000:8000 -p8001:8001 -p8002:8002 -v mintime-models:/models mintime-triton
#
# Not built in the development environment (no Docker engine there): kept correct by construction. The
# versions below must agree with the base image: TensorRT plans only load in the TensorRT that built them,
# and model.dali only in a DALI the image's DALI backend can read. Check them in a new base image with
#   dpkg -l | grep -E 'libnvinfer10 |tensorrt'     and     ls /opt/tritonserver/backends/dali
ARG TRITON_VERSION=24.10

# ---------------------------------------------------------------------------------------------------------------
# Client and benchmarks: the SDK image already has tritonclient and perf_analyzer of the same release.
FROM nvcr.io/nvidia/tritonserver:${TRITON_VERSION}-py3-sdk AS sdk
WORKDIR /opt/mintime
COPY pyproject.toml README.md ./
COPY mintime/__init__.py mintime/contract.py mintime/
COPY client client/
COPY benchmarks benchmarks/
# The client needs numpy, tqdm, tritonclient (present) and mintime.contract only: no torch.
RUN python3 -m pip install --no-cache-dir "numpy<2" "tqdm>=4.60" \
 && python3 -m pip install --no-cache-dir --no-deps -e .
ENTRYPOINT ["mintime-client"]

# ---------------------------------------------------------------------------------------------------------------
# Server.
FROM nvcr.io/nvidia/tritonserver:${TRITON_VERSION}-py3 AS server
ARG TRITON_VERSION
# torch for the face pipeline and for export (the default PyPI wheel of this version is a CUDA build; set
# TORCH_INDEX_URL to a https://download.pytorch.org/whl/cuXXX index for another CUDA).
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://pypi.org/simple
# TensorRT Python bindings equal to the image's TensorRT (24.10: TensorRT 10.5.0): builds plans it can load.
ARG TENSORRT_VERSION=10.5.0
# DALI used only to serialize model.dali at first start; its major version must be the one the image's DALI
# backend was built with (24.10: DALI 1.42).
ARG DALI_VERSION=1.42.0

ENV PIP_NO_CACHE_DIR=1 \
    PYTHONUNBUFFERED=1 \
    MODEL_REPOSITORY=/models

WORKDIR /opt/mintime
# Heavy, rarely changing dependencies first (one layer each, cached across code changes).
RUN python3 -m pip install --upgrade pip \
 && python3 -m pip install --index-url "${TORCH_INDEX_URL}" --extra-index-url https://pypi.org/simple \
        "torch==${TORCH_VERSION}"
RUN python3 -m pip install --extra-index-url https://pypi.nvidia.com \
        "tensorrt-cu12==${TENSORRT_VERSION}" "nvidia-dali-cuda120==${DALI_VERSION}"

# The project: the Python models import the `mintime` package from the image's python3 (the one the Python
# backend stub runs), with numpy < 2 (numpy 2 breaks the Python backend of this release).
COPY . /opt/mintime
RUN python3 -m pip install "torch==${TORCH_VERSION}" -e ".[core,export]" \
 && python3 -m pip install --no-deps "facenet-pytorch==2.6.0" \
 && python3 -c "import numpy, mintime.pipeline, tensorrt; assert numpy.__version__ < '2', numpy.__version__"

# The committed repository is the image's default; mount a volume on /models to keep built engines.
RUN mkdir -p /models && cp -r /opt/mintime/model_repository/. /models/ \
 && chmod +x /opt/mintime/docker/entrypoint.sh

EXPOSE 8000 8001 8002
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8000/v2/health/ready || exit 1
ENTRYPOINT ["/opt/mintime/docker/entrypoint.sh"]
