"""Test weights: tiny project checkpoints (random temporal weights: the verdicts mean nothing)."""

from __future__ import annotations

from pathlib import Path


def make_tiny_checkpoint(
    path: Path, *, backbone: str = "efficientnet_lite0", num_slots: int = 16, metadata: dict | None = None
) -> Path:
    """A project checkpoint with the ``tiny`` temporal preset (seed 0). Default: efficientnet_lite0 (ImageNet
    weights, not stored) and 16 slots; ``backbone="tiny_test"`` stores that small random backbone."""
    import torch

    from mintime.checkpoints import save_checkpoint
    from mintime.models import create_backbone, create_temporal

    torch.manual_seed(0)
    stored = create_backbone(backbone) if backbone == "tiny_test" else None
    channels = int(stored.out_channels) if stored is not None else 1280
    temporal = create_temporal("tiny", channels=channels, num_frames=num_slots)
    return save_checkpoint(
        path,
        temporal_config=temporal.config.to_dict(),
        temporal_state=temporal,
        backbone=backbone,
        backbone_state=stored,
        metadata=metadata or {"purpose": "tests only: random temporal weights"},
    )


def make_tiny_training_checkpoint(path: Path) -> Path:
    """What ``mintime train --config tiny`` writes: the tiny_test backbone (stored) and an 8-slot tiny temporal."""
    return make_tiny_checkpoint(
        path,
        backbone="tiny_test",
        num_slots=8,
        metadata={"name": "tiny-8-slots", "training_config": {"num_slots": 8}},
    )
