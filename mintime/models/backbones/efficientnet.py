"""EfficientNet feature extractors (B0 for MINTIME-EF; the Lite0 variant reuses this file) in the lukemelas layout.

EfficientNet: M. Tan and Q. V. Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
ICML 2019 (arXiv:1905.11946). Module names follow the PyTorch port the original MINTIME code uses
(``_conv_stem``, ``_bn0``, ``_blocks.{i}.{_expand_conv,_bn0,_depthwise_conv,_bn1,_se_reduce,_se_expand,
_project_conv,_bn2}``, ``_conv_head``, ``_bn1``, ``_fc``), so the authors' EfficientNet-B0 extractor files load
strictly: 360 state-dict entries for B0, including the unused 1000-class ``_fc``.

Behaviour that the weights depend on:
* TensorFlow "SAME" padding, computed statically for a 224 px input (a stride-2 3×3 conv pads (0, 1) per axis);
* BatchNorm eps 1e-3, momentum 0.01 (TF's 0.99);
* swish ``x * sigmoid(x)`` written with plain ops, so the module exports to ONNX without custom autograd functions;
* squeeze-and-excitation with ``max(1, int(in_filters * 0.25))`` channels;
* stochastic depth ("drop connect") in train mode only, rate ``0.2 * block_index / 16`` on identity-skip blocks.

The feature map is ``swish(bn1(conv_head(blocks(stem(x)))))``: ``(N, 1280, 7, 7)`` at 224 px.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mintime.models.backbones.base import Backbone

__all__ = [
    "Swish",
    "SameConv2d",
    "MBConvBlock",
    "StageSpec",
    "B0_STAGES",
    "EfficientNet",
    "EfficientNetB0",
]

logger = logging.getLogger(__name__)

BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # PyTorch convention (TensorFlow: decay 0.99)


@dataclass(frozen=True)
class StageSpec:
    """One stage of MBConv blocks: kernel, stride of its first block, expansion, channels, repeats."""

    kernel: int
    stride: int
    expand: int
    in_channels: int
    out_channels: int
    repeats: int


#: EfficientNet-B0 (and Lite0) stages at width/depth 1.0: 16 blocks in all.
B0_STAGES: tuple[StageSpec, ...] = (
    StageSpec(3, 1, 1, 32, 16, 1),
    StageSpec(3, 2, 6, 16, 24, 2),
    StageSpec(5, 2, 6, 24, 40, 2),
    StageSpec(3, 2, 6, 40, 80, 3),
    StageSpec(5, 1, 6, 80, 112, 3),
    StageSpec(5, 2, 6, 112, 192, 4),
    StageSpec(3, 1, 6, 192, 320, 1),
)


class Swish(nn.Module):
    """``x * sigmoid(x)`` with plain ops (exports as Sigmoid + Mul)."""

    def forward(self, x: Tensor) -> Tensor:
        """Elementwise, any shape."""
        return x * torch.sigmoid(x)


def _activation(kind: str) -> nn.Module:
    if kind == "swish":
        return Swish()
    if kind == "relu6":
        return nn.ReLU6()
    raise ValueError(f"unknown activation {kind!r} (expected 'swish' or 'relu6')")


def _same_pads(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TF "SAME" padding (before, after) along one axis of length ``size``."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TF "SAME" padding fixed for one input size (state-dict keys ``weight`` [, ``bias``]).

    Symmetric padding is done by the convolution itself; asymmetric padding (stride 2 on an even size) by an
    explicit zero pad in :meth:`forward`.

    Args:
        image_size: spatial side of the input the padding is computed for.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        image_size: int,
        stride: int = 1,
        groups: int = 1,
        bias: bool = False,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, groups=groups, bias=bias)
        before, after = _same_pads(image_size, kernel_size, stride)
        if before == after:
            self.padding = (before, before)
            self.explicit_pad: tuple[int, ...] | None = None
        else:
            self.explicit_pad = (before, after, before, after)  # F.pad order: (left, right, top, bottom)

    def forward(self, x: Tensor) -> Tensor:
        """``(N, in, H, W)`` → ``(N, out, ceil(H / stride), ceil(W / stride))`` at the configured size."""
        if self.explicit_pad is not None:
            x = F.pad(x, self.explicit_pad)
        return super().forward(x)


def drop_connect(x: Tensor, rate: float, *, training: bool) -> Tensor:
    """Stochastic depth: zero whole samples with probability ``rate`` and rescale the rest (train mode only).

    Args:
        x: ``(N, C, H, W)`` residual branch output.
        rate: drop probability in [0, 1).
        training: identity when False.
    """
    if not training or rate <= 0.0:
        return x
    keep = 1.0 - rate
    mask = torch.floor(keep + torch.rand((x.shape[0], 1, 1, 1), dtype=x.dtype, device=x.device))
    return x / keep * mask


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck: [1×1 expand] → k×k depthwise → [squeeze-excite] → 1×1 project [+ skip].

    Args:
        in_channels, out_channels: block input/output channels.
        kernel: depthwise kernel size.
        stride: depthwise stride.
        expand: expansion ratio (1 = no ``_expand_conv``/``_bn0``).
        se_ratio: squeeze ratio relative to ``in_channels``, or None for no SE (Lite).
        image_size: spatial side of the block input (for the static padding).
        activation: "swish" or "relu6".
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel: int,
        stride: int,
        expand: int,
        se_ratio: float | None,
        image_size: int,
        activation: str = "swish",
    ) -> None:
        super().__init__()
        mid = in_channels * expand
        self.has_skip = stride == 1 and in_channels == out_channels
        if expand != 1:
            self._expand_conv = SameConv2d(in_channels, mid, 1, image_size=image_size)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS, momentum=BN_MOMENTUM)
        else:
            self._expand_conv = None
            self._bn0 = None
        self._depthwise_conv = SameConv2d(mid, mid, kernel, image_size=image_size, stride=stride, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS, momentum=BN_MOMENTUM)
        if se_ratio is not None:
            squeezed = max(1, int(in_channels * se_ratio))
            self._se_reduce = nn.Conv2d(mid, squeezed, 1)
            self._se_expand = nn.Conv2d(squeezed, mid, 1)
        else:
            self._se_reduce = None
            self._se_expand = None
        out_size = math.ceil(image_size / stride)
        self._project_conv = SameConv2d(mid, out_channels, 1, image_size=out_size)
        self._bn2 = nn.BatchNorm2d(out_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._act = _activation(activation)

    def forward(self, x: Tensor, drop_connect_rate: float = 0.0) -> Tensor:
        """``(N, in, H, W)`` → ``(N, out, ceil(H / stride), ceil(W / stride))``.

        Args:
            x: block input.
            drop_connect_rate: stochastic-depth rate applied (train mode only) before the identity skip.
        """
        h = x
        if self._expand_conv is not None:
            h = self._act(self._bn0(self._expand_conv(h)))
        h = self._act(self._bn1(self._depthwise_conv(h)))
        if self._se_reduce is not None:
            s = h.mean(dim=(2, 3), keepdim=True)  # (N, mid, 1, 1)
            s = self._se_expand(self._act(self._se_reduce(s)))
            h = torch.sigmoid(s) * h
        h = self._bn2(self._project_conv(h))
        if self.has_skip:
            h = drop_connect(h, drop_connect_rate, training=self.training) + x
        return h


class EfficientNet(Backbone):
    """EfficientNet trunk (stem, 16 MBConv blocks, 1×1 head) returning the activated head map.

    Args:
        stages: the block plan (:data:`B0_STAGES` for B0 and Lite0).
        se_ratio: squeeze-excite ratio (0.25 for B0, None for Lite).
        activation: "swish" (B0) or "relu6" (Lite).
        image_size: input side the static padding is built for.
        head_channels: channels of ``_conv_head`` (the feature channels).
        drop_connect_rate: maximum stochastic-depth rate (block ``i`` of ``n`` uses ``rate * i / n``).
        num_classes: size of the unused ``_fc`` classifier, kept for key compatibility.
    """

    name = "efficientnet"
    out_channels = 1280

    def __init__(
        self,
        *,
        stages: Sequence[StageSpec] = B0_STAGES,
        se_ratio: float | None = 0.25,
        activation: str = "swish",
        image_size: int = 224,
        stem_channels: int = 32,
        head_channels: int = 1280,
        drop_connect_rate: float = 0.2,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        self.image_size = image_size
        self.out_channels = head_channels
        self.drop_connect_rate = drop_connect_rate
        self._conv_stem = SameConv2d(3, stem_channels, 3, image_size=image_size, stride=2)
        self._bn0 = nn.BatchNorm2d(stem_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        size = math.ceil(image_size / 2)
        blocks: list[nn.Module] = []
        for st in stages:
            for r in range(st.repeats):
                first = r == 0
                blocks.append(
                    MBConvBlock(
                        st.in_channels if first else st.out_channels,
                        st.out_channels,
                        kernel=st.kernel,
                        stride=st.stride if first else 1,
                        expand=st.expand,
                        se_ratio=se_ratio,
                        image_size=size,
                        activation=activation,
                    )
                )
                if first:
                    size = math.ceil(size / st.stride)
        self._blocks = nn.ModuleList(blocks)
        self.feature_size = size
        self._conv_head = SameConv2d(stages[-1].out_channels, head_channels, 1, image_size=size)
        self._bn1 = nn.BatchNorm2d(head_channels, eps=BN_EPS, momentum=BN_MOMENTUM)
        self._fc = nn.Linear(head_channels, num_classes)  # unused by forward; present in the checkpoints
        self._act = _activation(activation)

    def forward_features(self, x: Tensor) -> Tensor:
        """The network on already-normalised input.

        Args:
            x: ``(N, 3, S, S)`` float32 in the input convention of the weights.

        Returns:
            ``(N, head_channels, S/32, S/32)`` float32.
        """
        x = self._act(self._bn0(self._conv_stem(x)))  # (N, 32, 112, 112)
        n = len(self._blocks)
        for i, block in enumerate(self._blocks):
            x = block(x, self.drop_connect_rate * i / n)
        return self._act(self._bn1(self._conv_head(x)))  # (N, 1280, 7, 7)

    def forward(self, x: Tensor) -> Tensor:
        """Extract features.

        Args:
            x: ``(N, 3, 224, 224)`` float32, BGR, 0..255 (the input convention of the MINTIME-EF weights).

        Returns:
            ``(N, 1280, 7, 7)`` float32.
        """
        return self.forward_features(x)


class EfficientNetB0(EfficientNet):
    """EfficientNet-B0 of MINTIME-EF (swish, SE 0.25): ``(N, 3, 224, 224)`` BGR 0..255 → ``(N, 1280, 7, 7)``."""

    name = "efficientnet_b0"

    def __init__(self, *, drop_connect_rate: float = 0.2, num_classes: int = 1000) -> None:
        super().__init__(
            stages=B0_STAGES,
            se_ratio=0.25,
            activation="swish",
            drop_connect_rate=drop_connect_rate,
            num_classes=num_classes,
        )
