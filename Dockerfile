# syntax=docker/dockerfile:1
# MINTIME as an NVIDIA Triton service, production variant (configs/production.pbtxt of every model): TensorRT
# engines (backbone, temporal), NVDEC decoding through DALI inside the video_decode Python model (PyAV for
# streams NVDEC refuses), the face pipeline on the GPU.
#
#   docker build -t mintime-triton .                                   # server (last stage)
#   docker build -t mintime-sdk --target sdk .                         # client + perf_analyzer
#   docker build $(python3 deploy/image.py build-args --release 25.10) -t mintime-triton:25.10 .
#   docker run --gpus=1 --shm-size=4g -p8000:8000 -p8001:8001 -p8002:8002 -v mintime-models:/models mintime-triton
#
# Versions come from ONE table, deploy/ngc_releases.json (release -> Python, CUDA, DALI, TensorRT): the build
# checks the base image against its row (check-base) and the installed packages against it (check-installed),
# so a TensorRT or DALI that differs from the image's fails the build instead of failing at serving time.
# --shm-size: the Python backend passes tensors through /dev/shm (64 MB by default in Docker); 16 sampled
# frames of a 1080p video are ~100 MB. docs/deployment.md says how to size it.
ARG NGC_RELEASE=26.06

# ---------------------------------------------------------------------------------------------------------------
# Client and benchmarks: the SDK image already has tritonclient and perf_analyzer of the same release.
FROM nvcr.io/nvidia/tritonserver:${NGC_RELEASE}-py3-sdk AS sdk
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PIP_BREAK_SYSTEM_PACKAGES=1 \
    PYTHONUNBUFFERED=1
WORKDIR /opt/mintime
COPY pyproject.toml README.md ./
# The client's whole import closure inside the project (tests/deploy/test_image.py builds exactly this file set
# and imports the client from it without torch): contract (tensor names), limits (decode budget), explain (the
# human-readable verdict).
COPY mintime/__init__.py mintime/contract.py mintime/limits.py mintime/explain.py mintime/
COPY client client/
COPY benchmarks benchmarks/
# The client needs numpy, tqdm, tritonclient (present) and the four modules above only: no torch.
RUN python3 -m pip install --no-cache-dir "numpy>=1.24" "tqdm>=4.60" \
 && python3 -m pip install --no-cache-dir --no-deps -e .
USER 1000:1000
ENTRYPOINT ["mintime-client"]

# ---------------------------------------------------------------------------------------------------------------
# Server.
FROM nvcr.io/nvidia/tritonserver:${NGC_RELEASE}-py3 AS server
ARG NGC_RELEASE
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# PYTHONPATH="": the NGC server image sets PYTHONPATH=/opt/tritonserver/backends/dali/wheel/dali:..., where Triton's
# DALI backend installed its DALI wheel WITH its dependencies (pip install --target, numpy 2.x unpinned). That
# folder would shadow everything pip installs below (numpy, DALI), for the build's checks, for `mintime export` and
# for the Python-backend stubs. Nothing here uses Triton's DALI backend (video_decode runs DALI in-process), so the
# image clears it: python3 and the stubs see only the site-packages pip manages (check-installed prints where
# numpy comes from). An empty PYTHONPATH is the same as none to CPython.
# NVIDIA_DRIVER_CAPABILITIES: "video" makes the container runtime mount NVDEC's libnvcuvid.so (compute,utility
# alone do not; DALI's mixed decoder then cannot be built and video_decode falls back to PyAV, with a warning).
ENV PIP_BREAK_SYSTEM_PACKAGES=1 \
    PYTHONUNBUFFERED=1 \
    PYTHONPATH="" \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,video \
    MODEL_REPOSITORY=/models \
    MINTIME_NGC_RELEASE=${NGC_RELEASE}

WORKDIR /opt/mintime
# 1. The base image is the one the table describes (Python, CUDA, TensorRT, the DALI backend's DALI).
COPY deploy/ngc_releases.json deploy/image.py deploy/
COPY pyproject.toml ./
RUN python3 deploy/image.py check-base --release "${NGC_RELEASE}"

# 2. Heavy, rarely changing dependencies (one cached layer): torch (the PyPI wheel is a CUDA 13 build), the
#    core/export pins of pyproject.toml, DALI = the backend's version, the TensorRT bindings = the image's
#    libnvinfer (the bindings wheel has no libraries of its own). numpy: the pyproject pin; the row's
#    python_backend takes numpy 2 where it supports it (deploy/image.py check-installed).
RUN python3 deploy/image.py requirements --release "${NGC_RELEASE}" > /tmp/requirements-wheels.txt \
 && python3 deploy/image.py requirements --release "${NGC_RELEASE}" --kind sdist > /tmp/requirements-sdist.txt \
 && python3 deploy/image.py requirements --release "${NGC_RELEASE}" --kind no-deps > /tmp/requirements-nodeps.txt \
 && python3 -m pip install --no-cache-dir -r /tmp/requirements-wheels.txt -r /tmp/requirements-sdist.txt \
 && python3 -m pip install --no-cache-dir --no-deps -r /tmp/requirements-nodeps.txt \
 && python3 deploy/image.py check-installed --release "${NGC_RELEASE}" \
 && rm -f /tmp/requirements-*.txt

# 3. The project (the Python models import `mintime` and `dali_pipelines` from the image's python3).
COPY . /opt/mintime
RUN python3 -m pip install --no-cache-dir --no-deps . \
 && python3 -c "import mintime.pipeline, export.tensorrt" \
 && python3 -c "from dali_pipelines.video_decode import build_pipeline; build_pipeline('mixed', build=False).serialize()" \
 && mkdir -p /models \
 && cp -r /opt/mintime/model_repository/. /models/ \
 && chown -R 1000:1000 /models \
 && chmod 0755 /opt/mintime/docker/entrypoint.sh /opt/mintime/docker/healthcheck.py

# triton-server (uid/gid 1000) is the non-root user every NGC tritonserver image creates.
USER 1000:1000
EXPOSE 8000 8001 8002
# The first start builds the TensorRT engines (minutes); readiness waits for every model.
HEALTHCHECK --interval=30s --timeout=5s --start-period=900s --retries=3 \
    CMD ["python3", "/opt/mintime/docker/healthcheck.py"]
ENTRYPOINT ["/opt/mintime/docker/entrypoint.sh"]
