"""MINTIME networks: backbones, the temporal model, the baseline and their registries.

The module split mirrors the engine split of the Triton ensemble: a backbone (faces → 7×7 feature maps) and a
temporal model (feature maps + slot metadata → logit). :class:`~mintime.models.detector.MintimeDetector`
composes them for training.
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_backbone", "create_temporal", "create_temporal_from_config", "TEMPORAL_PRESETS"]

#: Named temporal-model presets (``TemporalConfig`` classmethods).
TEMPORAL_PRESETS = ("original_xc", "original_ef", "tiny", "small")


def create_backbone(name: str, *, pretrained: bool = False):
    """A face backbone by name (``xception``, ``efficientnet_b0``, ``efficientnet_lite0``).

    Input (N, 3, 224, 224) float32 BGR 0..255 → output (N, C, 7, 7) float32.
    """
    from mintime.models.backbones import create_backbone as _create

    return _create(name, pretrained=pretrained)


def create_temporal(preset: str = "original_xc", **overrides: Any):
    """A :class:`~mintime.models.temporal.MintimeTemporal` from a named preset plus keyword overrides."""
    import dataclasses

    from mintime.models.temporal import MintimeTemporal, TemporalConfig

    if preset not in TEMPORAL_PRESETS or not hasattr(TemporalConfig, preset):
        raise ValueError(f"unknown temporal preset {preset!r}; choose from {TEMPORAL_PRESETS}")
    cfg = getattr(TemporalConfig, preset)()
    return MintimeTemporal(dataclasses.replace(cfg, **overrides))


def create_temporal_from_config(config: dict[str, Any]):
    """A :class:`~mintime.models.temporal.MintimeTemporal` from a config dict (as stored in checkpoints)."""
    from mintime.models.temporal import MintimeTemporal, TemporalConfig

    return MintimeTemporal(TemporalConfig.from_dict(config))
