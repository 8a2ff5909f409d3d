"""A 4-conv test backbone (registry name ``tiny_test``): for tests and smoke runs only, never a detector.

``(N, 3, 224, 224)`` float32 BGR 0..255 → ``(N, 64, 7, 7)``. He-initialised without normalisation layers, so
that a frozen random instance still passes image differences on at unit scale. Registered so that a checkpoint
trained with the ``tiny`` config loads in ``mintime predict`` like any other.
"""

from __future__ import annotations

from torch import Tensor, nn

from mintime.models.backbones.base import Backbone

__all__ = ["TinyBackbone"]


class TinyBackbone(Backbone):
    """AvgPool 2 then four stride-2 3×3 convs with ReLU: 224 → 112 → 56 → 28 → 14 → 7."""

    name = "tiny_test"
    out_channels = 64

    def __init__(self) -> None:
        super().__init__()
        chans = [3, 16, 32, 64, 64]
        layers: list[nn.Module] = [nn.AvgPool2d(2)]
        for a, b in zip(chans[:-1], chans[1:], strict=True):
            conv = nn.Conv2d(a, b, 3, stride=2, padding=1)
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            layers += [conv, nn.ReLU()]
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """(N, 3, 224, 224) float32 BGR 0..255 → (N, 64, 7, 7) float32."""
        return self.net((x - 127.5) / 64.0)
