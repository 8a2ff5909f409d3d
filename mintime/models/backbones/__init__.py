"""Face feature extractors ("backbones") and their registry.

Every backbone maps ``(N, 3, 224, 224)`` float32 faces, **BGR, 0..255** to ``(N, C, 7, 7)`` float32:

| name | class | C | weights |
|---|---|---|---|
| ``xception`` | :class:`~mintime.models.backbones.xception.Xception` | 2048 | the authors' MINTIME-XC extractor (``load_original``) |
| ``efficientnet_b0`` | :class:`~mintime.models.backbones.efficientnet.EfficientNetB0` | 1280 | the authors' MINTIME-EF extractor (``load_original``) |
| ``efficientnet_lite0`` | :class:`~mintime.models.backbones.lite0.EfficientNetLite0` | 1280 | ImageNet (PyPI), ``pretrained=True`` |

:class:`SlotBackbone` wraps any of them for per-video input ``(B, F, 3, 224, 224)``: the exported ``backbone`` engine.
"""

from __future__ import annotations

import logging
import os

from mintime.models.backbones.base import Backbone, SlotBackbone

__all__ = ["BACKBONES", "Backbone", "SlotBackbone", "create_backbone", "load_backbone_weights"]

logger = logging.getLogger(__name__)

#: Registry names, in the order of the table above.
BACKBONES: tuple[str, ...] = ("xception", "efficientnet_b0", "efficientnet_lite0")


def create_backbone(
    name: str, *, pretrained: bool = False, weights: str | os.PathLike[str] | None = None
) -> Backbone:
    """Build a backbone by registry name.

    Args:
        name: one of :data:`BACKBONES`.
        pretrained: load the ImageNet weights; only ``efficientnet_lite0`` has any here (no ImageNet Xception or
            B0 weights are distributed with the project: load the authors' files with ``weights`` instead).
        weights: optional path of a state dict to load strictly: for ``xception`` / ``efficientnet_b0`` an
            authors' extractor file (``module.`` / ``efficient_net.`` prefixes removed), for any backbone a plain
            state dict in this module's key layout.

    Returns:
        The backbone in train mode (call ``.eval()`` for inference).

    Raises:
        ValueError: unknown name, or ``pretrained=True`` for a backbone without ImageNet weights.
        mintime.checkpoints.CheckpointError: ``weights`` does not fit the module.
    """
    if name == "xception":
        from mintime.models.backbones.xception import Xception

        _no_imagenet(name, pretrained)
        model: Backbone = Xception()
    elif name == "efficientnet_b0":
        from mintime.models.backbones.efficientnet import EfficientNetB0

        _no_imagenet(name, pretrained)
        model = EfficientNetB0()
    elif name == "efficientnet_lite0":
        from mintime.models.backbones.lite0 import EfficientNetLite0

        model = EfficientNetLite0(pretrained=pretrained and weights is None)
    else:
        raise ValueError(f"unknown backbone {name!r}; choose from {BACKBONES}")
    if weights is not None:
        load_backbone_weights(model, weights)
    return model


def load_backbone_weights(model: Backbone, path: str | os.PathLike[str]) -> None:
    """Load a state dict file into ``model`` strictly (``module.`` and, for EfficientNets, ``efficient_net.``
    prefixes removed by :func:`mintime.checkpoints.read_state_dict`).

    Args:
        model: a backbone from :func:`create_backbone`.
        path: the state-dict file.

    Raises:
        mintime.checkpoints.CheckpointError: missing/unexpected keys or shape mismatches.
    """
    from mintime.checkpoints import load_state_dict_strict, read_state_dict

    strip = "efficient_net." if model.name.startswith("efficientnet") else None
    state = read_state_dict(path, strip_through=strip)
    load_state_dict_strict(model, state, what=f"{model.name} backbone weights {os.fspath(path)!r}")
    logger.info("loaded %s backbone weights from %s", model.name, os.fspath(path))


def _no_imagenet(name: str, pretrained: bool) -> None:
    if pretrained:
        raise ValueError(
            f"no ImageNet weights are available for {name!r}; pass weights=<the authors' extractor file> "
            "(or use 'efficientnet_lite0', which ships ImageNet weights)"
        )
