"""The frame baseline of the MINTIME paper ("EfficientNet-B0 + MLP"): per-face logits averaged per video.

Each face slot's feature map is average-pooled and sent through ``mlp_head`` = Linear(C → hidden) → Linear(hidden
→ 1) with **no nonlinearity between them** (as in the original, whose keys ``mlp_head.0.*`` / ``mlp_head.1.*`` this
module keeps). The video logit is the mean of the per-face logits. The original averaged over all 16 slots,
dummies included; here a ``mask`` restricts the mean to real faces (``mask=None`` reproduces the original).
"""

from __future__ import annotations

import logging

import torch
from torch import Tensor, nn

__all__ = ["FrameBaseline"]

logger = logging.getLogger(__name__)


class FrameBaseline(nn.Module):
    """Pooled backbone features → linear MLP → one logit per face → mean logit per video.

    Args:
        in_channels: backbone channels ``C`` (1280 for EfficientNet-B0 / Lite0, 2048 for Xception).
        hidden: width of the hidden linear layer (512 in the original).
    """

    def __init__(self, in_channels: int, hidden: int = 512) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.mlp_head = nn.Sequential(nn.Linear(in_channels, hidden), nn.Linear(hidden, 1))

    def face_logits(self, features: Tensor) -> Tensor:
        """Per-face logits.

        Args:
            features: ``(B, F, C, H, W)`` float backbone maps.

        Returns:
            ``(B, F)`` logits.
        """
        pooled = features.mean(dim=(-2, -1))  # (B, F, C): global average pooling
        return self.mlp_head(pooled).squeeze(-1)

    def forward(self, features: Tensor, mask: Tensor | None = None) -> Tensor:
        """Video logits.

        Args:
            features: ``(B, F, C, H, W)`` float backbone maps.
            mask: ``(B, F)`` bool, True = real face; None averages over every slot (the original behaviour).
                A video whose mask is all False gets logit 0 (probability 0.5) instead of NaN.

        Returns:
            ``(B, 1)`` logits.
        """
        logits = self.face_logits(features)  # (B, F)
        if mask is None:
            return logits.mean(dim=1, keepdim=True)
        mask = mask.to(torch.bool)
        total = torch.where(mask, logits, torch.zeros_like(logits)).sum(dim=1, keepdim=True)
        count = mask.sum(dim=1, keepdim=True).clamp_min(1).to(logits.dtype)
        return total / count
