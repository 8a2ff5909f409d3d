"""Settings of the self-blended recipe (:mod:`training.sbi_train`); imports nothing heavy, so that
``mintime sbi --help`` shows the defaults without loading torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["SbiConfig"]


@dataclass
class SbiConfig:
    """The recipe's settings (``mintime sbi --help`` lists them)."""

    bank: str = "outputs/sbi/bank"
    out: str = "outputs/sbi/run"
    validation: str | None = None
    seed: int = 0
    threads: int = 2
    # frames
    frame_minutes: float = 60.0
    frame_batch_pairs: int = 12
    frame_lr: float = 2e-4
    frame_weight_decay: float = 1e-4
    frozen_blocks: int = 3
    eval_every: int = 250
    holdout_fraction: float = 0.05
    face_side: tuple[float, float] = (48.0, 160.0)
    strength: float = 1.0
    # tracks
    track_videos: int = 600
    # temporal
    temporal_epochs: int = 30
    temporal_batch: int = 32
    temporal_lr: float = 3e-4
    temporal: dict[str, Any] = field(
        default_factory=lambda: {
            "dim": 128,
            "depth": 2,
            "heads": 4,
            "dim_head": 32,
            "attn_dropout": 0.1,
            "ff_dropout": 0.1,
        }
    )
    target_fpr: float = 0.1
