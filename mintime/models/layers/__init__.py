"""Building blocks shared by the MINTIME networks (attention, pre-norm, feed-forward)."""

from mintime.models.layers.attention import (
    ATTENTION_IMPLS,
    GEGLU,
    Attention,
    AttentionImpl,
    FeedForward,
    PreNorm,
    attend,
)

__all__ = ["ATTENTION_IMPLS", "GEGLU", "Attention", "AttentionImpl", "FeedForward", "PreNorm", "attend"]
