"""Test weights: a tiny project checkpoint (random temporal weights: the verdicts mean nothing)."""

from __future__ import annotations

from pathlib import Path


def make_tiny_checkpoint(path: Path) -> Path:
    """A project checkpoint: efficientnet_lite0 (ImageNet weights, not stored) + tiny temporal (seed 0)."""
    import torch

    from mintime.checkpoints import save_checkpoint
    from mintime.models import create_temporal

    torch.manual_seed(0)
    temporal = create_temporal("tiny", channels=1280)
    return save_checkpoint(
        path,
        temporal_config=temporal.config.to_dict(),
        temporal_state=temporal,
        backbone="efficientnet_lite0",
        backbone_state=None,
        metadata={"purpose": "tests only: random temporal weights"},
    )
