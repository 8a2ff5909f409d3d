"""Small networks for export tests: a tiny conv backbone and the ``tiny`` temporal preset."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.conftest import REPO

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


def tiny_backbone(channels: int = 8):
    """A Backbone with the real interface ((N, 3, 224, 224) BGR 0..255 -> (N, C, 7, 7)) and few weights."""
    from torch import nn

    from mintime.models.backbones.base import Backbone

    class TinyBackbone(Backbone):
        name = "tiny_test"
        out_channels = channels

        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, channels, 32, stride=32)

        def forward(self, x):
            return torch.relu(self.conv(x / 255.0))

    return TinyBackbone().eval()


def tiny_models(channels: int = 8, seed: int = 0) -> SimpleNamespace:
    """A stand-in for ``mintime.networks.Networks``: tiny backbone + tiny temporal (2 heads)."""
    from mintime.models import create_temporal

    torch.manual_seed(seed)
    return SimpleNamespace(
        backbone=tiny_backbone(channels), temporal=create_temporal("tiny", channels=channels).eval(), info={}
    )


@pytest.fixture
def repository_copy(tmp_path: Path) -> Path:
    """A copy of the committed model repository (no generated artifacts)."""
    dst = tmp_path / "model_repository"
    shutil.copytree(
        REPO / "model_repository",
        dst,
        ignore=shutil.ignore_patterns("*.onnx", "*.plan", "*.dali", "__pycache__"),
    )
    return dst
