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


def make_tiny_training_checkpoint(path: Path) -> Path:
    """What ``mintime train --config tiny`` writes: the tiny_test backbone (stored) and an 8-slot tiny temporal
    (seed 0, random weights)."""
    import torch

    from mintime.checkpoints import save_checkpoint
    from mintime.models import create_backbone, create_temporal

    torch.manual_seed(0)
    backbone = create_backbone("tiny_test")
    temporal = create_temporal("tiny", channels=int(backbone.out_channels), num_frames=8)
    return save_checkpoint(
        path,
        temporal_config=temporal.config.to_dict(),
        temporal_state=temporal,
        backbone="tiny_test",
        backbone_state=backbone,
        metadata={"name": "tiny-8-slots", "training_config": {"num_slots": 8}},
    )
