"""Xception feature extractor of MINTIME-XC, in the key layout of the authors' extractor checkpoint.

Xception: F. Chollet, "Xception: Deep Learning with Depthwise Separable Convolutions", CVPR 2017
(arXiv:1610.02357). The module names follow the ImageNet port MINTIME used (``conv1``, ``bn1``, ``block1..12`` with
``rep``/``skip``/``skipbn``, ``conv3``, ``bn3``, ``conv4``, ``bn4``, an unused ``fc``): 276 state-dict entries, so the
published ``MINTIME_XC_Extractor_checkpoint30`` loads strictly (after its ``module.`` prefix is removed).

The feature map is the **bn4 output before its ReLU**, ``(N, 2048, 7, 7)`` at 224 px, from BGR 0..255 input
(no normalisation), as the original extractor returns it.
"""

from __future__ import annotations

import logging

from torch import Tensor, nn

from mintime.models.backbones.base import Backbone

__all__ = ["Xception", "SeparableConv2d", "XceptionBlock"]

logger = logging.getLogger(__name__)

# (in, out, reps, stride, start_with_relu, grow_first) for block1..block12
_BLOCKS: tuple[tuple[int, int, int, int, bool, bool], ...] = (
    (64, 128, 2, 2, False, True),
    (128, 256, 2, 2, True, True),
    (256, 728, 2, 2, True, True),
    *((728, 728, 3, 1, True, True),) * 8,
    (728, 1024, 2, 2, True, False),
)


class SeparableConv2d(nn.Module):
    """Depthwise ``conv1`` (k×k, groups = in) followed by pointwise ``pointwise`` (1×1); no biases."""

    def __init__(
        self, in_channels: int, out_channels: int, *, kernel_size: int = 3, padding: int = 1
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(
            in_channels, in_channels, kernel_size, padding=padding, groups=in_channels, bias=False
        )
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, in, H, W)`` → ``(N, out, H, W)``."""
        return self.pointwise(self.conv1(x))


class XceptionBlock(nn.Module):
    """One Xception block: ``rep`` (ReLU, SeparableConv2d, BN repeated; max-pool when strided) plus a residual.

    The residual is ``skipbn(skip(x))`` (1×1 strided conv + BN) when the channels or the stride change, the identity
    otherwise. Sub-module indices inside ``rep`` match the original (a block without a leading ReLU starts at 0).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        reps: int,
        stride: int,
        start_with_relu: bool,
        grow_first: bool,
    ) -> None:
        super().__init__()
        if out_channels != in_channels or stride != 1:
            self.skip: nn.Module | None = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
            self.skipbn: nn.Module | None = nn.BatchNorm2d(out_channels)
        else:
            self.skip = None
            self.skipbn = None

        # Channel plan of the `reps` separable convs: grow on the first (grow_first) or on the last one.
        if grow_first:
            plan = [(in_channels, out_channels)] + [(out_channels, out_channels)] * (reps - 1)
        else:
            plan = [(in_channels, in_channels)] * (reps - 1) + [(in_channels, out_channels)]
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(plan):
            # The first ReLU must not be in place: the block input also feeds the residual.
            layers += [nn.ReLU(inplace=i > 0), SeparableConv2d(cin, cout), nn.BatchNorm2d(cout)]
        if not start_with_relu:
            layers = layers[1:]
        if stride != 1:
            layers.append(nn.MaxPool2d(3, stride=stride, padding=1))
        self.rep = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, in, H, W)`` → ``(N, out, H/stride, W/stride)`` (rounded up)."""
        residual = x if self.skip is None else self.skipbn(self.skip(x))
        return self.rep(x) + residual


class Xception(Backbone):
    """Xception trunk returning the pre-activation bn4 map.

    Args:
        num_classes: size of the unused ``fc`` layer (1 in the MINTIME checkpoints; kept for key compatibility).
    """

    name = "xception"
    out_channels = 2048

    def __init__(self, *, num_classes: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, stride=2, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        for i, (cin, cout, reps, stride, start_relu, grow_first) in enumerate(_BLOCKS, start=1):
            block = XceptionBlock(
                cin, cout, reps=reps, stride=stride, start_with_relu=start_relu, grow_first=grow_first
            )
            self.add_module(f"block{i}", block)
        self.conv3 = SeparableConv2d(1024, 1536)
        self.bn3 = nn.BatchNorm2d(1536)
        self.conv4 = SeparableConv2d(1536, 2048)
        self.bn4 = nn.BatchNorm2d(2048)
        self.fc = nn.Linear(2048, num_classes)  # unused by forward; present in the checkpoints
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Extract features.

        Args:
            x: ``(N, 3, 224, 224)`` float32, BGR, 0..255.

        Returns:
            ``(N, 2048, 7, 7)`` float32: bn4 output, no ReLU.
        """
        x = self.relu(self.bn1(self.conv1(x)))  # (N, 32, 111, 111)
        x = self.relu(self.bn2(self.conv2(x)))  # (N, 64, 109, 109)
        for i in range(1, len(_BLOCKS) + 1):
            x = getattr(self, f"block{i}")(x)  # 55 → 28 → 14 → 14 ... → 7 (block12)
        x = self.relu(self.bn3(self.conv3(x)))  # (N, 1536, 7, 7)
        return self.bn4(self.conv4(x))  # (N, 2048, 7, 7)
