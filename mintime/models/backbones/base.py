"""The backbone interface shared by every face feature extractor, and the per-video wrapper that is exported.

Every backbone maps faces ``(N, 3, 224, 224)`` float32, **BGR, 0..255, no normalisation** (the input convention of
the authors' checkpoints, see :mod:`mintime.contract`) to a feature map ``(N, C, 7, 7)`` float32. A backbone whose
weights expect something else (EfficientNet-Lite0: RGB, ``(x - 127) / 128``) converts inside its own ``forward``.
"""

from __future__ import annotations

import logging

from torch import Tensor, nn

__all__ = ["Backbone", "SlotBackbone"]

logger = logging.getLogger(__name__)


class Backbone(nn.Module):
    """Base class of the face feature extractors.

    Subclasses set the class attributes :attr:`name` (the registry name) and :attr:`out_channels` (``C``) and
    implement :meth:`forward`.
    """

    name: str = ""
    out_channels: int = 0
    #: Side of the input image the static padding was built for (every backbone here: 224).
    image_size: int = 224
    #: Side of the output feature map at :attr:`image_size` (every backbone here: 7).
    feature_size: int = 7

    def forward(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        """Extract features.

        Args:
            x: ``(N, 3, 224, 224)`` float32 faces, BGR, 0..255.

        Returns:
            ``(N, C, 7, 7)`` float32 feature map, ``C`` = :attr:`out_channels`.
        """
        raise NotImplementedError


class SlotBackbone(nn.Module):
    """Runs a :class:`Backbone` on every face slot of a batch of videos: the module behind the ``backbone`` engine.

    Its input and output are the tensors ``face_slots_faces`` and ``backbone_features`` of
    :data:`mintime.contract.BACKBONE` (with the batch dimension): one row per video.
    """

    def __init__(self, backbone: Backbone) -> None:
        super().__init__()
        self.backbone = backbone

    @property
    def out_channels(self) -> int:
        """Channels ``C`` of the feature map."""
        return self.backbone.out_channels

    @property
    def name(self) -> str:
        """Registry name of the wrapped backbone."""
        return self.backbone.name

    def forward(self, faces: Tensor) -> Tensor:
        """Extract features for every slot.

        Args:
            faces: ``(B, F, 3, 224, 224)`` float32, BGR, 0..255.

        Returns:
            ``(B, F, C, 7, 7)`` float32.
        """
        b, f = faces.shape[0], faces.shape[1]
        features = self.backbone(faces.flatten(0, 1))  # (B*F, C, 7, 7)
        return features.reshape(b, f, *features.shape[1:])
